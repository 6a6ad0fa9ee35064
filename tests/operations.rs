//! Operations promises (docs/operations.md) that the other suites do not already cover:
//! loopback by default, the fd-derived connection cap, counters, the registration deadline.

mod support;

use std::io::{BufReader, Read, Write};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::{connect, read_line, Netloop};

#[test]
fn with_no_address_nothing_listens_beyond_loopback() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_netloop"))
        .arg("serve")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Either it starts (the classic Node programs' ports are free) and every listener is on 127.0.0.1, or a
    // port is taken and the error names the loopback address it tried.
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut lines = Vec::new();
    let deadline = Instant::now() + support::WAIT;
    while lines.len() < 3 && Instant::now() < deadline {
        let mut l = String::new();
        if std::io::BufRead::read_line(&mut out, &mut l).unwrap() == 0 {
            break;
        }
        lines.push(l.trim_end().to_string());
    }
    let _ = child.kill();
    let status = child.wait().unwrap();
    if lines.len() == 3 {
        let want = [
            "echo listening on 127.0.0.1:8080",
            "chat listening on 127.0.0.1:3000",
            "hub listening on 127.0.0.1:9000",
        ];
        assert_eq!(lines, want);
    } else {
        let mut err = String::new();
        child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
        assert!(!status.success());
        assert!(err.contains("EADDRINUSE") && err.contains("127.0.0.1:"), "{err}");
    }
}

/// Runs `netloop serve ARGS` with its open-file limit (soft and hard) set to `nofile`.
fn serve_with_fd_limit(args: &[&str], nofile: u64) -> (std::process::Child, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_netloop"));
    cmd.arg("serve").args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
    // SAFETY: setrlimit is async-signal-safe; it only changes the child's own limit.
    unsafe {
        cmd.pre_exec(move || {
            let lim = libc::rlimit { rlim_cur: nofile, rlim_max: nofile };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let line = read_line(&mut out);
    let addr = line.split_once(" listening on ").expect("listening line").1.to_string();
    (child, addr)
}

#[test]
fn the_connection_cap_defaults_to_the_fd_limit_minus_a_reserve_and_clamps_with_a_warning() {
    let (mut child, addr) = serve_with_fd_limit(
        &["--echo", "127.0.0.1:0", "--max-connections", "5000", "--echo-banner", "+"],
        100,
    );
    let addr: std::net::SocketAddr = addr.parse().unwrap();
    // 100 fds - 32 reserved = 68 connections; the rest are told why and closed.
    let mut conns = Vec::new();
    let mut refused = 0;
    for _ in 0..80 {
        let mut c = connect(addr);
        let mut b = [0u8; 1];
        c.read_exact(&mut b).unwrap();
        if b[0] == b'+' {
            conns.push(c);
        } else {
            let mut rest = vec![b[0]];
            c.read_to_end(&mut rest).unwrap();
            assert_eq!(String::from_utf8_lossy(&rest), "error: server full (max connections 68)\n");
            refused += 1;
        }
    }
    assert_eq!((conns.len(), refused), (68, 12));
    // Existing clients are unaffected.
    conns[0].write_all(b"!").unwrap();
    let mut b = [0u8; 1];
    conns[0].read_exact(&mut b).unwrap();
    assert_eq!(&b, b"!");
    let _ = child.kill();
    let _ = child.wait();
    let mut err = String::new();
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    assert!(err.contains("--max-connections 5000 exceeds") && err.contains("using 68"), "{err}");
    assert!(err.contains("max connections (68) reached"), "refusals are logged: {err}");
}

#[test]
fn counters_are_logged_and_available_to_hub_clients() {
    let mut server =
        Netloop::serve(&["--hub", "127.0.0.1:0", "--stats-interval", "200ms", "--max-frame", "64"], 1);
    let addr = server.tcp("hub");
    // One input-limit disconnect.
    let mut big = connect(addr);
    big.write_all(&[b'['; 100]).unwrap();
    let _ = support::read_to_end(&mut big);
    let mut c = connect(addr);
    c.write_all(br#"{"type":"stats"}"#).unwrap();
    let line = read_line(&mut BufReader::new(c.try_clone().unwrap()));
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["type"], "stats");
    assert!(v["accepted"].as_u64().unwrap() >= 2, "{line}");
    assert_eq!(v["inputLimitDisconnects"], 1, "{line}");
    for key in
        ["connections", "rejected", "outputLimitDisconnects", "timeoutDisconnects", "bytesIn", "bytesOut"]
    {
        assert!(v[key].is_u64(), "{key} missing: {line}");
    }
    std::thread::sleep(Duration::from_millis(500));
    server.kill();
    let err = server.stderr();
    assert!(err.contains("stats: connections=") && err.contains("input_limit=1"), "{err}");
}

/// A hub client registered as `name`: its stream, and a reader on it past the `synced` reply.
fn synced_hub_client(
    addr: std::net::SocketAddr,
    name: &str,
) -> (std::net::TcpStream, BufReader<std::net::TcpStream>) {
    let mut c = connect(addr);
    c.write_all(format!(r#"{{"type":"sync","clientName":"{name}"}}"#).as_bytes()).unwrap();
    let mut r = BufReader::new(c.try_clone().unwrap());
    assert!(read_line(&mut r).starts_with(r#"{"type":"synced""#));
    (c, r)
}

#[test]
fn a_client_that_never_registers_is_closed_after_the_register_timeout() {
    let server = Netloop::serve(&["--hub", "127.0.0.1:0", "--register-timeout", "400ms"], 1);
    let addr = server.tcp("hub");
    let (mut good, mut good_r) = synced_hub_client(addr, "good");
    // A listen-only client: joining a room is a valid request, so it meets the deadline.
    let mut listener = connect(addr);
    listener.write_all(br#"{"type":"join","room":"news"}"#).unwrap();
    let mut listener_r = BufReader::new(listener.try_clone().unwrap());
    assert_eq!(read_line(&mut listener_r), r#"{"type":"joined","room":"news"}"#);
    // Slowloris: a byte every 100 ms, never a complete useful frame.
    let mut slow = connect(addr);
    let start = Instant::now();
    let mut got = Vec::new();
    slow.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    while start.elapsed() < Duration::from_secs(5) {
        let _ = slow.write_all(b" ");
        let mut buf = [0u8; 256];
        match slow.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(_) => break,
        }
    }
    let elapsed = start.elapsed();
    let text = String::from_utf8_lossy(&got);
    assert!(text.contains(r#""code":"register_timeout""#), "{text}");
    assert!(elapsed >= Duration::from_millis(350) && elapsed < Duration::from_secs(3), "{elapsed:?}");
    // The registered and the listen-only clients are untouched.
    good.write_all(br#"{"type":"list"}"#).unwrap();
    assert!(read_line(&mut good_r).starts_with(r#"{"type":"list","count":2"#));
    listener.write_all(br#"{"type":"leave","room":"news"}"#).unwrap();
    assert_eq!(read_line(&mut listener_r), r#"{"type":"left","room":"news"}"#);
}

#[test]
fn sigterm_is_not_held_up_by_a_pending_registration_deadline() {
    // A client came and went: its 30 s registration deadline must not keep the server alive.
    let mut server = Netloop::serve(&["--hub", "127.0.0.1:0", "--register-timeout", "30s"], 1);
    drop(connect(server.tcp("hub")));
    std::thread::sleep(Duration::from_millis(200));
    let start = Instant::now();
    server.signal(libc::SIGTERM);
    let status = server.wait_exit(Duration::from_secs(10)).expect("exited");
    assert!(status.success(), "{status:?}");
    assert!(start.elapsed() < Duration::from_secs(3), "took {:?}", start.elapsed());
}

#[test]
fn refusals_and_timeouts_are_counted() {
    let server =
        Netloop::serve(&["--hub", "127.0.0.1:0", "--max-connections", "2", "--register-timeout", "300ms"], 1);
    let addr = server.tcp("hub");
    let (mut a, mut a_r) = synced_hub_client(addr, "a");
    // b says nothing: closed at the registration deadline.
    let mut b = connect(addr);
    let words = support::read_to_end(&mut b);
    assert!(String::from_utf8_lossy(&words).contains("register_timeout"));
    drop(b);
    std::thread::sleep(Duration::from_millis(100));
    // c takes the second place; d is one too many.
    let mut c = connect(addr);
    c.write_all(br#"{"type":"sync","clientName":"c"}"#).unwrap();
    assert!(read_line(&mut a_r).starts_with(r#"{"type":"online","clientName":"c""#));
    let refused = support::read_to_end(&mut connect(addr));
    assert!(String::from_utf8_lossy(&refused).contains("server_full"));
    a.write_all(br#"{"type":"stats"}"#).unwrap();
    let v: serde_json::Value = serde_json::from_str(&read_line(&mut a_r)).unwrap();
    assert_eq!(v["rejected"], 1, "{v}");
    assert_eq!(v["timeoutDisconnects"], 1, "{v}");
    assert_eq!(v["accepted"], 3, "{v}");
    assert_eq!(v["connections"], 2, "{v}");
    assert_eq!(v["hubClients"], 2, "{v}");
}

#[test]
fn sighup_is_logged_and_ignored_and_sigusr1_logs_the_counters() {
    let (mut server, addr) = Netloop::serve_one("echo", &[]);
    let mut c = connect(addr);
    for sig in [libc::SIGHUP, libc::SIGUSR1, libc::SIGHUP] {
        server.signal(sig);
        // Still serving, and the connection is untouched.
        c.write_all(b"ping").unwrap();
        let mut b = [0u8; 4];
        c.read_exact(&mut b).unwrap();
        assert_eq!(&b, b"ping");
    }
    assert!(server.wait_exit(Duration::from_millis(200)).is_none(), "a signal stopped the server");
    let mut fresh = connect(addr);
    fresh.write_all(b"x").unwrap();
    let mut b = [0u8; 1];
    fresh.read_exact(&mut b).unwrap();
    drop((c, fresh));
    server.signal(libc::SIGTERM);
    let status = server.wait_exit(support::WAIT).expect("exits on SIGTERM");
    assert!(status.success(), "{status:?}");
    let err = server.stderr();
    assert_eq!(err.matches("SIGHUP: ignored").count(), 2, "{err}");
    assert_eq!(
        err.matches("stats: connections=1 accepted=1 ").count(),
        1,
        "SIGUSR1 logs the counters: {err}"
    );
}

/// Runs `netloop serve ARGS`, which must refuse to start; returns its stderr.
fn refused_options(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_netloop"))
        .arg("serve")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{args:?} must be refused at parse time: {err}");
    assert!(out.stdout.is_empty(), "{args:?} started listening: {err}");
    err
}

#[test]
fn absurd_durations_sizes_and_a_zero_connection_cap_are_refused_at_start() {
    let echo = ["--echo", "127.0.0.1:0"];
    for (flag, value, reason) in [
        ("--idle-timeout", "18446744073709551s", "at most 24d 20h"),
        ("--idle-timeout", "597h", "at most 24d 20h"),
        ("--shutdown-timeout", "99999999999999999999", "at most 24d 20h"),
        ("--stats-interval", "2147483648", "at most 24d 20h"),
        ("--keep-alive", "10h", "between 1s and 32767s"),
        ("--keep-alive", "500ms", "between 1s and 32767s"),
        ("--max-buffer", "18446744073709551615", "at most 1 TiB"),
        ("--high-water-mark", "2048g", "at most 1 TiB"),
        ("--max-line", "2g", "at most 1 GiB"),
        ("--max-frame", "0", "at least 1 byte"),
        ("--max-connections", "0", "0 would refuse every connection"),
        ("--max-connections", "lots", "at least 1"),
    ] {
        let mut args = echo.to_vec();
        args.extend([flag, value]);
        let err = refused_options(&args);
        assert!(err.contains(flag) && err.contains(reason), "{flag} {value}: {err}");
    }
    // The largest accepted values still start.
    let (server, _) = Netloop::serve_one(
        "echo",
        &[
            "--idle-timeout",
            "596h",
            "--keep-alive",
            "32767s",
            "--max-buffer",
            "1024g",
            "--max-connections",
            "1",
        ],
    );
    drop(server);
}

#[test]
fn two_thousand_refusals_cost_a_few_log_lines_whose_counts_add_up() {
    const REFUSALS: u64 = 2000;
    let mut child = Command::new(env!("CARGO_BIN_EXE_netloop"))
        .args(["serve", "--echo", "127.0.0.1:0", "--max-connections", "1", "--echo-banner", "+"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let line = read_line(&mut BufReader::new(child.stdout.take().unwrap()));
    let addr: std::net::SocketAddr =
        line.split_once(" listening on ").expect("listening line").1.parse().unwrap();
    // The log, line by line, as the server writes it.
    let (tx, log) = std::sync::mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufRead::lines(BufReader::new(stderr)).map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut held = connect(addr);
    let mut b = [0u8; 1];
    held.read_exact(&mut b).unwrap();
    for _ in 0..REFUSALS {
        let reply = support::read_to_end(&mut connect(addr));
        assert!(reply.starts_with(b"error: server full"), "{}", String::from_utf8_lossy(&reply));
    }
    // Every refusal is accounted for, by its own line or a summary, without any further event
    // (the summary of the last burst comes from a timer) and while the server keeps running.
    let mut err = String::new();
    let deadline = Instant::now() + support::WAIT;
    let accounted = |err: &str| {
        support::logged_events(err, "max connections (1) reached", "refused at max connections, not logged")
    };
    while accounted(&err) < REFUSALS {
        let left = deadline.saturating_duration_since(Instant::now());
        match log.recv_timeout(left) {
            Ok(line) => err += &(line + "\n"),
            Err(_) => break,
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(accounted(&err), REFUSALS, "{err}");
    let refusal_lines = err.lines().filter(|l| l.contains("refused")).count();
    assert!(refusal_lines <= 40, "{refusal_lines} lines for {REFUSALS} refusals:\n{err}");
    drop(held);
}

#[test]
fn an_input_total_below_the_largest_frame_is_warned_about_at_start() {
    let (mut server, _) = Netloop::serve_one("hub", &["--max-frame", "2m", "--max-input-total", "1m"]);
    server.signal(libc::SIGTERM);
    server.wait_exit(support::WAIT).expect("exits");
    let err = server.stderr();
    assert!(
        err.contains("--max-input-total (1048576 bytes) is below --max-line/--max-frame (2097152 bytes)"),
        "{err}"
    );
    let (mut server, _) = Netloop::serve_one("hub", &[]);
    server.signal(libc::SIGTERM);
    server.wait_exit(support::WAIT).expect("exits");
    assert!(!server.stderr().contains("--max-input-total"), "the defaults are consistent");
}
