//! `netloop load` and `netloop connect` as real processes against real servers: `netloop serve`
//! and the Node reference servers in `bench/node/`. Every run is short (about a second), every
//! wait is bounded, every child is killed when its guard drops.

mod load_servers;
mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use load_servers::{Pace, TestServer};
use serde_json::Value;
use support::{Netloop, WAIT};

/// A Node reference server (`bench/node/SCRIPT`), killed on drop.
struct NodeServer {
    child: Child,
    addr: String,
}

impl NodeServer {
    /// Starts `node bench/node/<service>.js --listen 127.0.0.1:0` and waits for its
    /// `<service> listening on ADDR` line.
    fn start(service: &str) -> NodeServer {
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("bench/node/{service}.js"));
        let mut child = Command::new("node")
            .arg(script)
            .args(["--listen", "127.0.0.1:0"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("node is required for these tests");
        let stdout = child.stdout.take().expect("piped stdout");
        let lines = line_channel(stdout);
        let prefix = format!("{service} listening on ");
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match lines.recv_timeout(left) {
                Ok(line) => {
                    if let Some(addr) = line.strip_prefix(&prefix) {
                        return NodeServer { child, addr: addr.to_string() };
                    }
                }
                Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("node {service}.js did not print its listening line");
                }
            }
        }
    }
}

impl Drop for NodeServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A child process killed (and reaped) if the test ends before it was waited for.
struct KillOnDrop(Option<Child>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Lines of `r`, read on a thread, delivered over a channel (so reads can time out).
fn line_channel(r: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(r).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Runs `netloop ARGS` with `stdin` as its input, killed if it outlives `WAIT`.
fn netloop(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_netloop"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn netloop");
    let mut input = child.stdin.take().expect("piped stdin");
    let data = stdin.to_vec();
    // A thread, so a child that stops reading cannot block the test.
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&data);
    });
    let out = wait_bounded(child);
    let _ = writer.join();
    out
}

/// Waits for `child` (bounded by `WAIT`, then killed) and collects its output.
fn wait_bounded(mut child: Child) -> Output {
    // Either stream may have been taken (or not piped) by the caller.
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let out_reader = std::thread::spawn(move || {
        let mut v = Vec::new();
        if let Some(mut s) = stdout {
            let _ = s.read_to_end(&mut v);
        }
        v
    });
    let err_reader = std::thread::spawn(move || {
        let mut v = Vec::new();
        if let Some(mut s) = stderr {
            let _ = s.read_to_end(&mut v);
        }
        v
    });
    let deadline = Instant::now() + WAIT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            break child.wait().expect("wait after kill");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Output {
        status,
        stdout: out_reader.join().unwrap_or_default(),
        stderr: err_reader.join().unwrap_or_default(),
    }
}

/// Runs `netloop load ARGS --json -q` and parses its report.
fn load_json(args: &[&str]) -> (Output, Value) {
    let mut full = vec!["load"];
    full.extend_from_slice(args);
    full.extend_from_slice(&["--json", "-q"]);
    let out = netloop(&full, b"");
    let text = String::from_utf8_lossy(&out.stdout);
    let report: Value = serde_json::from_str(text.trim()).unwrap_or_else(|e| {
        panic!("no JSON report ({e}); stdout:\n{text}\nstderr:\n{}", String::from_utf8_lossy(&out.stderr))
    });
    (out, report)
}

fn assert_passed(out: &Output, report: &Value) {
    assert!(
        out.status.success() && report["ok"] == true,
        "run failed ({:?}): {report:#}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

fn int(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not an integer: {v}"))
}

/// A port nothing listens on: bound and released at once.
fn closed_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("local addr").port()
}

fn assert_clean_echo_run(report: &Value, connections: u64) {
    assert!(int(&report["round_trips"]) > 0, "{report:#}");
    assert_eq!(int(&report["echo"]["corrupt_connections"]), 0, "{report:#}");
    assert_eq!(int(&report["connections"]["failed"]), 0, "{report:#}");
    assert_eq!(int(&report["connections"]["established"]), connections, "{report:#}");
    assert_eq!(int(&report["echo"]["zero_round_trip_connections"]), 0, "{report:#}");
    let echoed = int(&report["echo"]["bytes_received"]);
    assert!(echoed > 0 && echoed <= int(&report["echo"]["bytes_sent"]), "{report:#}");
    for key in ["p50", "p90", "p99", "p999", "max"] {
        assert!(report["latency_us"][key].as_f64().is_some_and(|v| v > 0.0), "{key}: {report:#}");
    }
    assert!(report["round_trips_per_s"].as_f64().is_some_and(|v| v > 0.0));
    assert!(report["bytes_per_s"].as_f64().is_some_and(|v| v > 0.0));
}

// ----- load echo ------------------------------------------------------------------------------

#[test]
fn load_echo_against_netloop_verifies_every_byte() {
    let server = Netloop::serve(&["--echo", "127.0.0.1:0"], 1);
    let addr = server.addr("echo");
    let (out, report) =
        load_json(&["echo", &addr, "-c", "20", "--pipeline", "4", "--size", "1000", "-T", "1s"]);
    assert_passed(&out, &report);
    assert_eq!(report["mode"], "echo");
    assert_eq!(report["target"], addr.as_str());
    assert_clean_echo_run(&report, 20);
    assert!(report["duration_s"].as_f64().is_some_and(|d| (0.9..2.0).contains(&d)), "{report:#}");
}

#[test]
fn load_echo_against_node_verifies_every_byte() {
    let server = NodeServer::start("echo");
    let (out, report) = load_json(&["echo", &server.addr, "-c", "20", "--size", "64", "-T", "1s"]);
    assert_passed(&out, &report);
    assert_clean_echo_run(&report, 20);
}

#[test]
fn load_echo_over_a_unix_socket_with_large_messages() {
    let path = support::unix_path("load-echo");
    let unix = format!("unix:{}", path.display());
    let _server = Netloop::serve(&["--echo", &unix], 1);
    let (out, report) =
        load_json(&["echo", &unix, "-c", "4", "--size", "200k", "--pipeline", "2", "-T", "1s"]);
    assert_passed(&out, &report);
    assert_clean_echo_run(&report, 4);
}

#[test]
fn load_echo_with_a_rate_keeps_to_it() {
    let server = Netloop::serve(&["--echo", "127.0.0.1:0"], 1);
    let (out, report) = load_json(&["echo", &server.addr("echo"), "-c", "10", "-r", "2000", "-T", "1s"]);
    assert_passed(&out, &report);
    let per_s = report["round_trips_per_s"].as_f64().expect("rate");
    assert!((1500.0..=2100.0).contains(&per_s), "{report:#}");
    assert_eq!(report["echo"]["rate"], 2000);
    // A server that keeps up passes (above): within the rate's tolerance.
    assert!(int(&report["echo"]["behind_schedule"]) < 100, "{report:#}");
    assert_eq!(report["latency_measured_from"], "scheduled_send", "{report:#}");
}

#[test]
fn load_echo_without_a_rate_says_its_latency_is_closed_loop() {
    let server = Netloop::serve(&["--echo", "127.0.0.1:0"], 1);
    let (out, report) = load_json(&["echo", &server.addr("echo"), "-c", "2", "-T", "300ms"]);
    assert_passed(&out, &report);
    assert_eq!(report["latency_measured_from"], "actual_send", "{report:#}");
    assert!(report["echo"]["send_delay_us"].is_null(), "{report:#}");
    let table = netloop(&["load", "echo", &server.addr("echo"), "-c", "2", "-T", "300ms", "-q"], b"");
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(text.contains("(closed loop: from the actual send"), "{text}");
}

#[test]
fn load_echo_flags_a_server_that_does_not_echo_exactly() {
    // The banner is data nobody sent: the generator must call it corrupt and fail the run.
    let server = Netloop::serve(&["--echo", "127.0.0.1:0", "--echo-banner", "hello\\n"], 1);
    let (out, report) = load_json(&["echo", &server.addr("echo"), "-c", "3", "-T", "500ms"]);
    assert!(!out.status.success(), "{report:#}");
    assert_eq!(report["ok"], false);
    assert_eq!(int(&report["echo"]["corrupt_connections"]), 3, "{report:#}");
    // Before our first send it reads as unrequested data, after it as a wrong byte.
    let first = report["echo"]["first_corruption"].as_str().unwrap_or_default();
    assert!(first.contains("did not send") || first.contains("byte 0 of its stream"), "{report:#}");
}

// ----- -r: latency from the schedule, and overload ------------------------------------------

/// Latency percentile `key` of a report, in milliseconds.
fn latency_ms(report: &Value, key: &str) -> f64 {
    report["latency_us"][key].as_f64().unwrap_or_else(|| panic!("no latency {key}: {report:#}")) / 1000.0
}

#[test]
fn load_echo_with_a_rate_charges_a_stalled_server_from_the_schedule() {
    // Blocked 100 ms every second. Two connections at pipeline 1 can have only two messages
    // in flight when a stall starts; the other ~98 the schedule wants during it wait in the
    // generator. Timed from their actual send they would look instant (p99 well under 1 ms);
    // timed from their scheduled send, ~10% of messages wait 0-100 ms, so p99 is near 90 ms.
    let server = TestServer::echo(Pace::stalls(Duration::from_millis(100), Duration::from_secs(1)));
    let (out, report) =
        load_json(&["echo", &server.target(), "-c", "2", "--pipeline", "1", "-r", "1000", "-T", "3s"]);
    assert_passed(&out, &report);
    assert_eq!(report["latency_measured_from"], "scheduled_send", "{report:#}");
    let (p99, max) = (latency_ms(&report, "p99"), latency_ms(&report, "max"));
    assert!(p99 >= 50.0, "p99 {p99} ms hides the 100 ms stalls: {report:#}");
    assert!((90.0..1000.0).contains(&max), "max {max} ms for 100 ms stalls: {report:#}");
    // The wait before sending is shown on its own, and it is part of the latency.
    let delay_max = report["echo"]["send_delay_us"]["max"].as_f64().expect("send delay") / 1000.0;
    assert!(delay_max >= 50.0 && delay_max <= max, "send delay max {delay_max} ms: {report:#}");
}

#[test]
fn load_fanout_with_a_rate_shows_a_stalled_server_in_its_latency() {
    // The chat server stops 100 ms every second; messages sent meanwhile wait in it.
    let server = TestServer::chat(Pace::stalls(Duration::from_millis(100), Duration::from_secs(1)));
    let (out, report) =
        load_json(&["fanout", &server.target(), "--protocol", "chat", "-c", "2", "-r", "1000", "-T", "3s"]);
    assert_passed(&out, &report);
    assert_complete_fanout(&report, 2);
    let (p99, max) = (latency_ms(&report, "p99"), latency_ms(&report, "max"));
    assert!(p99 >= 50.0, "p99 {p99} ms hides the 100 ms stalls: {report:#}");
    assert!((90.0..1000.0).contains(&max), "max {max} ms for 100 ms stalls: {report:#}");
}

#[test]
fn load_fanout_with_a_rate_charges_messages_the_generator_sent_late() {
    // The generator itself is frozen (SIGSTOP) for 200 ms mid-window: the ~200 messages due
    // meanwhile leave late, all at once. Timed from that late send they would look instant;
    // from their scheduled send they wait 0-200 ms, ~7% of all messages.
    let server = Netloop::serve(&["--chat", "127.0.0.1:0"], 1);
    let child = Command::new(env!("CARGO_BIN_EXE_netloop"))
        .args(["load", "fanout", &server.addr("chat"), "--protocol", "chat", "-c", "2", "-r", "1000"])
        .args(["-T", "3s", "--json"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn netloop load");
    let mut child = KillOnDrop(Some(child));
    let running = child.0.as_mut().expect("running");
    let pid = running.id() as libc::pid_t;
    let progress = line_channel(running.stderr.take().expect("piped stderr"));
    // The first progress line of the window: messages are flowing.
    let deadline = Instant::now() + WAIT;
    loop {
        let line = progress
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("a progress line with sent/s");
        if line.contains("sent/s") {
            break;
        }
    }
    // SAFETY: signals to our own child, which is still running (it was not waited for).
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    std::thread::sleep(Duration::from_millis(200));
    unsafe { libc::kill(pid, libc::SIGCONT) };
    let out = wait_bounded(child.0.take().expect("running"));
    let report: Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    assert_passed(&out, &report);
    let (p99, max) = (latency_ms(&report, "p99"), latency_ms(&report, "max"));
    assert!(p99 >= 50.0, "p99 {p99} ms hides the 200 ms the messages waited: {report:#}");
    let delay_max = report["fanout"]["send_delay_us"]["max"].as_f64().expect("send delay") / 1000.0;
    assert!(delay_max >= 150.0, "send delay max {delay_max} ms for a 200 ms freeze: {report:#}");
    assert!(max >= delay_max, "the wait is part of the latency: {report:#}");
}

#[test]
fn load_echo_that_falls_short_of_its_rate_says_so_and_fails() {
    // 2 ms per message, one in flight per connection: two connections manage ~1,000/s of the
    // 5,000/s asked for.
    let server = TestServer::echo(Pace::costs(Duration::from_millis(2)));
    let out =
        netloop(&["load", "echo", &server.target(), "-c", "2", "-r", "5000", "-T", "2s", "--json"], b"");
    let report: Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    assert_eq!(out.status.code(), Some(1), "{report:#}");
    assert_eq!(report["ok"], false);
    let problems = report["problems"].to_string();
    assert!(problems.contains("rate not met") && problems.contains("of the 5,000/s requested"), "{report:#}");
    let e = &report["echo"];
    assert!(e["messages_per_s"].as_f64().is_some_and(|r| r < 2000.0), "{report:#}");
    assert!(int(&e["behind_schedule"]) > 3000, "{report:#}");
    // Said while it happens, in the progress line.
    let progress = String::from_utf8_lossy(&out.stderr);
    assert!(progress.contains("RATE NOT MET: sent"), "no warning in the progress line: {progress}");
}

#[test]
fn load_fanout_whose_senders_are_held_back_says_the_rate_was_not_met() {
    // The server takes 5 ms per line it reads: ~200 of the 2,000 messages/s asked for. The
    // 16 KiB messages fill the socket buffers in well under a second, then the sender waits.
    let server = TestServer::chat(Pace::costs(Duration::from_millis(5)));
    let (out, report) = load_json(&[
        "fanout",
        &server.target(),
        "--protocol",
        "chat",
        "-c",
        "1",
        "-r",
        "2000",
        "--size",
        "16k",
        "-T",
        "2s",
        "--drain-timeout",
        "200ms",
    ]);
    assert_eq!(out.status.code(), Some(1), "{report:#}");
    let problems = report["problems"].to_string();
    assert!(problems.contains("rate not met") && problems.contains("senders were blocked"), "{report:#}");
    assert!(int(&report["fanout"]["behind_schedule"]) > 1000, "{report:#}");
}

#[test]
fn load_echo_and_fanout_take_rate_per_conn_and_c_in_every_mode() {
    // tcpkali's per-connection rate: 4 connections x 250/s is 1,000/s in total.
    let server = Netloop::serve(&["--echo", "127.0.0.1:0", "--chat", "127.0.0.1:0"], 2);
    let (out, report) =
        load_json(&["echo", &server.addr("echo"), "-c", "4", "--rate-per-conn", "250", "-T", "1s"]);
    assert_passed(&out, &report);
    assert_eq!(report["echo"]["rate"], 1000, "{report:#}");
    let per_s = report["echo"]["messages_per_s"].as_f64().expect("rate");
    assert!((900.0..=1050.0).contains(&per_s), "{report:#}");
    // Fan-out: -c counts receivers (--receivers and --connections are the same option), and
    // --rate-per-conn is per sender.
    let (out, report) = load_json(&[
        "fanout",
        &server.addr("chat"),
        "--protocol",
        "chat",
        "-c",
        "3",
        "--senders",
        "2",
        "--rate-per-conn",
        "100",
        "-T",
        "1s",
    ]);
    assert_passed(&out, &report);
    assert_eq!(report["fanout"]["receivers"], 3, "{report:#}");
    assert_eq!(report["fanout"]["rate"], 200, "{report:#}");
    assert_eq!(int(&report["connections"]["requested"]), 5, "{report:#}");
    assert_complete_fanout(&report, 3);
    let closed = format!("127.0.0.1:{}", closed_port());
    for flag in ["--receivers", "--connections"] {
        let (_, report) = load_json(&["fanout", &closed, "--protocol", "hub", flag, "2", "-T", "100ms"]);
        assert_eq!(report["fanout"]["receivers"], 2, "{flag}: {report:#}");
    }
}

// ----- load idle ------------------------------------------------------------------------------

#[test]
fn load_idle_holds_2000_connections() {
    let server = Netloop::serve(&["--echo", "127.0.0.1:0"], 1);
    let (out, report) = load_json(&["idle", &server.addr("echo"), "-c", "2000", "-T", "1s"]);
    assert_passed(&out, &report);
    assert_eq!(report["mode"], "idle");
    let c = &report["connections"];
    assert_eq!(int(&c["requested"]), 2000);
    assert_eq!(int(&c["established"]), 2000, "{report:#}");
    assert_eq!(int(&c["open_at_end"]), 2000, "{report:#}");
    assert_eq!(int(&c["failed"]), 0);
    assert!(c["connect_time_us"]["p99"].as_f64().is_some_and(|v| v > 0.0), "{report:#}");
    assert!(c["connects_per_s"].as_f64().is_some_and(|v| v > 0.0), "{report:#}");
    assert!(report["duration_s"].as_f64().is_some_and(|d| (0.9..2.0).contains(&d)), "{report:#}");
    assert!(report["latency_us"].is_null());
}

#[test]
fn load_idle_against_a_closed_port_reports_econnrefused_and_fails() {
    let addr = format!("127.0.0.1:{}", closed_port());
    let (out, report) = load_json(&["idle", &addr, "-c", "5", "-T", "1s"]);
    assert_eq!(out.status.code(), Some(1), "{report:#}");
    assert_eq!(report["ok"], false);
    assert_eq!(int(&report["connections"]["failed"]), 5, "{report:#}");
    assert_eq!(int(&report["connections"]["failures"]["ECONNREFUSED"]), 5, "{report:#}");
    assert!(report["connections"]["limit"].as_str().is_some_and(|s| s.contains("refused")), "{report:#}");
    // The table says the same in words.
    let table = netloop(&["load", "idle", &addr, "-c", "5", "-T", "1s", "-q"], b"");
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(text.contains("ECONNREFUSED 5") && text.contains("FAILED"), "{text}");
}

#[test]
fn load_idle_against_node_holds_every_connection() {
    let server = NodeServer::start("echo");
    let (out, report) = load_json(&["idle", &server.addr, "-c", "300", "-T", "300ms"]);
    assert_passed(&out, &report);
    assert_eq!(int(&report["connections"]["established"]), 300, "{report:#}");
    assert_eq!(int(&report["connections"]["open_at_end"]), 300, "{report:#}");
}

#[test]
fn load_idle_keeps_to_the_connect_rate_and_prints_progress() {
    let server = Netloop::serve(&["--echo", "127.0.0.1:0"], 1);
    // No -q: the progress line goes to stderr once a second.
    let out = netloop(
        &[
            "load",
            "idle",
            &server.addr("echo"),
            "-c",
            "200",
            "--connect-rate",
            "400",
            "-T",
            "1200ms",
            "--json",
        ],
        b"",
    );
    let report: Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    assert_passed(&out, &report);
    let ramp = report["ramp_up_s"].as_f64().unwrap();
    assert!((0.4..2.0).contains(&ramp), "200 connections at 400/s took {ramp} s");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("conns 200/200"), "no progress line: {err}");
}

#[test]
fn load_idle_names_the_fd_limit_that_stops_it() {
    let server = Netloop::serve(&["--echo", "127.0.0.1:0"], 1);
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_netloop"));
    cmd.args(["load", "idle", &server.addr("echo"), "-c", "1000", "-T", "300ms", "--json", "-q"]);
    // SAFETY: setrlimit is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
            let lim = libc::rlimit { rlim_cur: 300, rlim_max: 300 };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = cmd.output().expect("run netloop load");
    let report: Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    assert_eq!(out.status.code(), Some(1), "{report:#}");
    let established = int(&report["connections"]["established"]);
    assert!((200..300).contains(&established), "{report:#}");
    let limit = report["connections"]["limit"].as_str().unwrap_or_default();
    assert!(limit.contains("open file limit 300") && limit.contains("ulimit -Hn"), "{report:#}");
    // And how to go past one process.
    assert!(limit.contains("split the run over processes with --workers N"), "{report:#}");
}

#[test]
fn load_idle_spreads_over_more_loopback_sources_by_itself() {
    // Past half the ephemeral port range one source address slows to a crawl (see
    // src/load/sources.rs), so the generator moves on to 127.0.0.2 without being told.
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").unwrap();
    let ports: Vec<usize> = range.split_whitespace().map(|p| p.parse().unwrap()).collect();
    let per_source = ports[1] - ports[0] + 1;
    let half = per_source / 2; // the fast (even) half, as sources.rs counts it
    let n = half + 300;
    assert!(n < 19_000, "the port range ({range}) is too wide for this machine's fd limit");
    let server = Netloop::serve(&["--echo", "127.0.0.1:0"], 1);
    let (out, report) = load_json(&["idle", &server.addr("echo"), "-c", &n.to_string(), "-T", "300ms"]);
    assert_passed(&out, &report);
    assert_eq!(int(&report["connections"]["established"]), n as u64, "{report:#}");
    let sources = report["connections"]["sources"].as_str().unwrap_or_default();
    assert!(sources.contains("127.0.0.2 (automatic)"), "{report:#}");
}

#[test]
fn load_idle_uses_the_given_source_addresses() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for _ in 0..6 {
            let Ok((stream, peer)) = listener.accept() else { return };
            held.push(stream);
            let _ = tx.send(peer.ip());
        }
        // Hold them until the generator closes them.
        for mut s in held {
            let _ = s.read(&mut [0u8; 1]);
        }
    });
    let (out, report) =
        load_json(&["idle", &addr, "-c", "6", "-T", "300ms", "--source", "127.0.0.1,127.0.0.2"]);
    assert_passed(&out, &report);
    let peers: Vec<IpAddr> = (0..6).map(|_| rx.recv_timeout(WAIT).expect("accepted")).collect();
    let from_second = peers.iter().filter(|ip| ip.to_string() == "127.0.0.2").count();
    assert_eq!(from_second, 3, "round-robin over two sources: {peers:?}");
    assert_eq!(report["connections"]["sources"], "127.0.0.1,127.0.0.2");
}

// ----- load fanout ----------------------------------------------------------------------------

fn assert_complete_fanout(report: &Value, receivers: u64) {
    let f = &report["fanout"];
    let sent = int(&f["messages_sent"]);
    assert!(sent > 100, "{report:#}");
    // Senders are separate connections and neither protocol echoes to the sender, so every
    // receiver gets every message.
    assert_eq!(int(&f["deliveries"]), sent * receivers, "{report:#}");
    assert_eq!(int(&f["deliveries_expected"]), sent * receivers, "{report:#}");
    assert_eq!(int(&f["lost"]), 0, "{report:#}");
    assert_eq!(int(&f["undelivered"]), 0, "{report:#}");
    assert_eq!(int(&f["reordered"]), 0, "{report:#}");
    assert_eq!(int(&f["duplicated"]), 0, "{report:#}");
    // Deliveries are not round trips: the report names them for what they are.
    assert!(report.get("round_trips").is_none(), "{report:#}");
    assert_eq!(report["latency_measured_from"], "scheduled_send", "{report:#}");
    assert!(report["latency_us"]["p99"].as_f64().is_some_and(|v| v > 0.0), "{report:#}");
}

/// Ten receivers and two senders at 500 msg/s for 1 s: every message reaches every receiver.
fn fanout_delivers_everything(addr: &str, protocol: &str) {
    let (out, report) = load_json(&[
        "fanout",
        addr,
        "--protocol",
        protocol,
        "--receivers",
        "10",
        "--senders",
        "2",
        "-r",
        "500",
        "--size",
        "200",
        "-T",
        "1s",
    ]);
    assert_passed(&out, &report);
    assert_eq!(report["fanout"]["protocol"], protocol);
    assert_complete_fanout(&report, 10);
}

#[test]
fn load_fanout_hub_delivers_every_message_to_every_receiver() {
    fanout_delivers_everything(&NodeServer::start("hub").addr, "hub");
}

#[test]
fn load_fanout_chat_delivers_every_message_to_every_receiver() {
    fanout_delivers_everything(&NodeServer::start("chat").addr, "chat");
}

#[test]
fn load_fanout_delivers_everything_through_netloops_own_chat_and_hub() {
    let server = Netloop::serve(&["--chat", "127.0.0.1:0", "--hub", "127.0.0.1:0"], 2);
    fanout_delivers_everything(&server.addr("chat"), "chat");
    fanout_delivers_everything(&server.addr("hub"), "hub");
}

#[test]
fn load_fanout_against_the_wrong_protocol_fails_its_handshakes_in_time() {
    // An echo server returns our join/sync frames instead of joined/synced.
    let server = Netloop::serve(&["--echo", "127.0.0.1:0"], 1);
    let started = Instant::now();
    let (out, report) = load_json(&[
        "fanout",
        &server.addr("echo"),
        "--protocol",
        "hub",
        "--receivers",
        "3",
        "--connect-timeout",
        "300ms",
        "-T",
        "1s",
    ]);
    assert_eq!(out.status.code(), Some(1), "{report:#}");
    assert_eq!(int(&report["connections"]["established"]), 4, "{report:#}");
    assert_eq!(int(&report["connections"]["failures"]["handshake_timeout"]), 4, "{report:#}");
    assert!(started.elapsed() < Duration::from_secs(5), "gave up after the timeout, not later");
}

// ----- connect --------------------------------------------------------------------------------

#[test]
fn connect_pipes_stdin_lines_to_an_echo_server_and_exits_zero_when_it_closes() {
    let server = Netloop::serve(&["--echo", "127.0.0.1:0"], 1);
    let out = netloop(&["connect", &server.addr("echo")], b"one\ntwo\nthree\n");
    assert!(out.status.success(), "{:?} {}", out.status, String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "one\ntwo\nthree\n");
}

#[test]
fn connect_takes_a_host_name_and_an_ipv6_address() {
    let server = Netloop::serve(&["--echo", "127.0.0.1:0"], 1);
    let port = server.tcp("echo").port();
    let out = netloop(&["connect", &format!("localhost:{port}")], b"by name\n");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "by name\n");

    if TcpListener::bind("[::1]:0").is_err() {
        eprintln!("no IPv6 loopback here; the [::1] half is skipped");
        return;
    }
    let server = Netloop::serve(&["--echo", "[::1]:0"], 1);
    let addr = server.addr("echo");
    assert!(addr.starts_with("[::1]:"), "{addr}");
    let out = netloop(&["connect", &addr], b"over v6\n");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "over v6\n");
}

#[test]
fn connect_half_closes_on_stdin_eof_and_still_prints_everything() {
    // 2 MiB is more than the socket buffers hold: the echo can only finish after our FIN if
    // we keep reading while stdin is closed (and stdin waits while the server is behind).
    let server = NodeServer::start("echo");
    let input: Vec<u8> = (0..40_000).flat_map(|i| format!("line {i:>45}\n").into_bytes()).collect();
    assert!(input.len() > 2_000_000);
    let out = netloop(&["connect", &server.addr], &input);
    assert!(out.status.success(), "{:?} {}", out.status, String::from_utf8_lossy(&out.stderr));
    assert!(out.stdout == input, "got {} of {} bytes back", out.stdout.len(), input.len());
}

#[test]
fn connect_to_a_closed_port_fails_with_econnrefused() {
    let addr = format!("127.0.0.1:{}", closed_port());
    let out = netloop(&["connect", &addr], b"hello\n");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("netloop: connect ECONNREFUSED {addr}")), "{err}");
}

#[test]
fn connect_hub_name_syncs_and_prints_hub_messages_readably() {
    let server = NodeServer::start("hub");
    // Alice stays connected (her stdin stays open) while Bob broadcasts.
    let mut alice = KillOnDrop(Some(
        Command::new(env!("CARGO_BIN_EXE_netloop"))
            .args(["connect", &server.addr, "--hub-name", "Alice"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn netloop connect"),
    ));
    let child = alice.0.as_mut().expect("running");
    let lines = line_channel(child.stdout.take().expect("piped stdout"));
    let stdin = child.stdin.take();
    let next =
        |what: &str| lines.recv_timeout(WAIT).unwrap_or_else(|_| panic!("alice printed no {what} line"));
    let synced = next("synced");
    assert!(synced.starts_with("[synced as Alice, session 127.0.0.1:"), "{synced}");
    let bob = netloop(&["connect", &server.addr, "--hub-name", "Bob"], b"hello from bob\n/list\n");
    assert!(bob.status.success(), "{}", String::from_utf8_lossy(&bob.stderr));
    let bob_out = String::from_utf8_lossy(&bob.stdout);
    assert!(bob_out.contains("[synced as Bob, session "), "{bob_out}");
    assert!(bob_out.contains("[list: 2 online] Alice ("), "{bob_out}");
    assert!(next("online").starts_with("[online Bob, session "));
    assert_eq!(next("broadcast"), "[broadcast from Bob] hello from bob");
    drop(stdin); // EOF: Alice half-closes, the hub ends, she exits 0.
    let out = wait_bounded(alice.0.take().expect("running"));
    assert!(out.status.success(), "{:?}", out.status);
}

#[test]
fn bad_load_arguments_are_rejected_with_a_reason() {
    for (args, needle) in [
        (&["load", "echo", "127.0.0.1:1", "--size", "0"][..], "at least 1 byte"),
        (&["load", "echo", "127.0.0.1:1", "-c", "0"], "at least 1"),
        (&["load", "idle", "127.0.0.1:1", "-T", "soon"], "invalid duration"),
        (&["load", "fanout", "127.0.0.1:1"], "--protocol"),
        (&["load", "idle", "::1:80"], "brackets"),
        (&["load", "echo", "127.0.0.1:1", "-r", "10", "--rate-per-conn", "1"], "cannot be used with"),
        (
            &["load", "fanout", "127.0.0.1:1", "--protocol", "hub", "-r", "10", "--rate-per-conn", "1"],
            "cannot be used with",
        ),
    ] {
        let out = netloop(args, b"");
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{args:?}: {err}");
    }
}

#[test]
fn load_help_says_what_c_and_r_count() {
    let out = netloop(&["load", "echo", "--help"], b"");
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("in total, over all connections") && help.contains("--rate-per-conn"), "{help}");
    let out = netloop(&["load", "fanout", "--help"], b"");
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("-c, --receivers <R>") && help.contains("--connections"), "{help}");
    assert!(help.contains("in total, over all senders"), "{help}");
}

/// The keys `docs/load.md` documents for the JSON report (the backticked names in the first
/// column of its key table), with `a.b` for a key inside an object.
fn documented_keys() -> std::collections::BTreeSet<String> {
    let doc = std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/load.md"))
        .expect("docs/load.md");
    let table = doc.split("### JSON report").nth(1).expect("a JSON report section");
    let mut keys = std::collections::BTreeSet::new();
    for row in table.lines().filter(|l| l.starts_with("| `")) {
        let first = row.split('|').nth(1).unwrap_or_default();
        keys.extend(first.split('`').skip(1).step_by(2).map(str::to_string));
    }
    keys
}

/// A report's keys: top-level ones, and one level into `connections` and the mode's object.
fn report_keys(report: &Value) -> std::collections::BTreeSet<String> {
    let mut keys = std::collections::BTreeSet::new();
    for (k, v) in report.as_object().expect("an object") {
        match v.as_object() {
            Some(inner) if ["connections", "idle", "echo", "fanout"].contains(&k.as_str()) => {
                keys.extend(inner.keys().map(|i| format!("{k}.{i}")));
            }
            _ => {
                keys.insert(k.clone());
            }
        }
    }
    keys
}

#[test]
fn every_report_key_of_every_mode_is_the_documented_schema() {
    let documented = documented_keys();
    // Round trips exist only in echo; fan-out counts deliveries under its own name.
    let echo_only = ["round_trips", "round_trips_per_s"];
    let closed = format!("127.0.0.1:{}", closed_port());
    for args in [
        vec!["idle", closed.as_str(), "-c", "1", "-T", "100ms"],
        vec!["echo", closed.as_str(), "-c", "1", "-r", "10", "-T", "100ms"],
        vec!["fanout", closed.as_str(), "--protocol", "chat", "-c", "1", "-T", "100ms"],
    ] {
        let mode = args[0];
        let (_, report) = load_json(&args);
        let keys = report_keys(&report);
        let undocumented: Vec<_> = keys.difference(&documented).collect();
        assert!(undocumented.is_empty(), "{mode}: keys missing from docs/load.md: {undocumented:?}");
        for key in &documented {
            let (top, inner) = key.split_once('.').map_or((key.as_str(), None), |(a, b)| (a, Some(b)));
            let expected = match inner {
                Some(_) => top == "connections" || top == mode,
                None => mode == "echo" || !echo_only.contains(&top),
            };
            assert_eq!(keys.contains(key), expected, "{mode}: documented key {key}: {report:#}");
        }
    }
}

#[test]
fn a_second_signal_stops_load_at_once_with_128_plus_the_signal() {
    let server = Netloop::serve(&["--echo", "127.0.0.1:0"], 1);
    let mut load = Command::new(env!("CARGO_BIN_EXE_netloop"))
        .args(["load", "idle", &server.addr("echo"), "-c", "5", "-T", "60s", "-q"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run netloop load");
    std::thread::sleep(Duration::from_millis(300));
    // Both signals pending when the loop next wakes: the first one ends the run, the second
    // must stop it there, without a report.
    let pid = load.id() as i32;
    for sig in [libc::SIGSTOP, libc::SIGINT, libc::SIGTERM, libc::SIGCONT] {
        // SAFETY: kill has no memory effects; the pid is our own child.
        assert_eq!(unsafe { libc::kill(pid, sig) }, 0);
    }
    let deadline = Instant::now() + WAIT;
    let status = loop {
        if let Some(status) = load.try_wait().expect("wait") {
            break status;
        }
        assert!(Instant::now() < deadline, "load did not stop after two signals");
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut err = String::new();
    load.stderr.take().expect("stderr").read_to_string(&mut err).expect("stderr");
    let mut out = String::new();
    load.stdout.take().expect("stdout").read_to_string(&mut out).expect("stdout");
    let code = status.code().expect("an exit status, not a signal");
    assert!(code == 128 + libc::SIGINT || code == 128 + libc::SIGTERM, "exit {code}: {err}");
    assert!(err.contains("second signal"), "{err}");
    assert!(out.is_empty(), "no report after a second signal: {out}");
}
