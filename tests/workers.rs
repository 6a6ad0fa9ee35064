//! `netloop serve --workers N`: a supervisor and its worker processes, driven as real processes
//! over loopback TCP and Unix sockets.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

use support::WAIT;

/// A supervisor process whose stdout and stderr are read line by line as they come.
struct Supervisor {
    child: Child,
    out: Receiver<String>,
    err: Receiver<String>,
    /// Every stderr line seen so far.
    log: Vec<String>,
    listeners: Vec<String>,
}

fn lines_of(r: impl Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = channel();
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

impl Supervisor {
    /// Starts `netloop serve ARGS` and waits for `expected` listening lines.
    fn start(args: &[&str], expected: usize) -> Supervisor {
        Self::start_with(args, expected, |_| {})
    }

    /// Like `start`, with the command adjusted first (e.g. its own process group).
    fn start_with(args: &[&str], expected: usize, adjust: impl FnOnce(&mut Command)) -> Supervisor {
        Self::start_binary(env!("CARGO_BIN_EXE_netloop").as_ref(), args, expected, adjust)
    }

    /// Like `start_with`, running the netloop binary at `binary`.
    fn start_binary(
        binary: &std::path::Path,
        args: &[&str],
        expected: usize,
        adjust: impl FnOnce(&mut Command),
    ) -> Supervisor {
        let mut cmd = Command::new(binary);
        cmd.arg("serve")
            .args(args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        adjust(&mut cmd);
        let mut child = cmd.spawn().expect("spawn netloop");
        let out = lines_of(child.stdout.take().unwrap());
        let err = lines_of(child.stderr.take().unwrap());
        let mut s = Supervisor { child, out, err, log: Vec::new(), listeners: Vec::new() };
        let deadline = Instant::now() + WAIT;
        while s.listeners.len() < expected {
            let left = deadline.saturating_duration_since(Instant::now());
            match s.out.recv_timeout(left) {
                Ok(line) => {
                    if let Some((_, addr)) = line.split_once(" listening on ") {
                        s.listeners.push(addr.to_string());
                    }
                }
                Err(_) => {
                    s.drain_log();
                    panic!("no listening lines; stderr:\n{}", s.log.join("\n"));
                }
            }
        }
        s
    }

    fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    fn tcp(&self) -> SocketAddr {
        self.listeners[0].parse().unwrap()
    }

    fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(self.pid(), sig) };
    }

    /// Reads the stderr lines that arrived so far; once the process exited, all of them
    /// (until its stderr closes, bounded).
    fn drain_log(&mut self) {
        let exited = self.child.try_wait().ok().flatten().is_some();
        let deadline = Instant::now() + WAIT;
        loop {
            let next = if exited {
                self.err.recv_timeout(deadline.saturating_duration_since(Instant::now())).ok()
            } else {
                self.err.try_recv().ok()
            };
            match next {
                Some(line) => self.log.push(line),
                None => break,
            }
        }
    }

    /// Waits (bounded) for a stderr line containing `want`; returns it.
    fn wait_log(&mut self, want: &str) -> String {
        if let Some(l) = self.log.iter().find(|l| l.contains(want)) {
            return l.clone();
        }
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.err.recv_timeout(left) {
                Ok(line) => {
                    self.log.push(line.clone());
                    if line.contains(want) {
                        return line;
                    }
                }
                Err(_) => panic!("no log line with {want:?}; stderr:\n{}", self.log.join("\n")),
            }
        }
    }

    /// The worker processes now: the supervisor's children.
    fn workers(&self) -> Vec<i32> {
        children_of(self.pid())
    }

    /// Waits (bounded) until there are `n` workers, none of them in `not`.
    fn wait_workers(&self, n: usize, not: &[i32]) -> Vec<i32> {
        let deadline = Instant::now() + WAIT;
        loop {
            let w = self.workers();
            if w.len() == n && w.iter().all(|p| !not.contains(p)) {
                return w;
            }
            assert!(Instant::now() < deadline, "workers {w:?}, wanted {n} not in {not:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        support::wait_child(&mut self.child, limit)
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        // SIGKILL of the supervisor: its workers get SIGTERM from the kernel (parent death).
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Live (not zombie) children of `parent`, from `/proc/*/stat`, lowest pid first.
fn children_of(parent: i32) -> Vec<i32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        // "pid (comm) state ppid ...": comm may hold spaces, so split after its ')'.
        let Some((_, rest)) = stat.rsplit_once(')') else { continue };
        let f: Vec<&str> = rest.split_whitespace().collect();
        if f.len() > 1 && f[0] != "Z" && f[1] == parent.to_string() {
            out.push(pid);
        }
    }
    out.sort_unstable();
    out
}

fn echo_once(stream: &mut TcpStream, msg: &[u8]) -> std::io::Result<()> {
    stream.set_read_timeout(Some(WAIT))?;
    stream.write_all(msg)?;
    let mut got = vec![0; msg.len()];
    stream.read_exact(&mut got)?;
    assert_eq!(got, msg);
    Ok(())
}

fn connect_echo(addr: SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).expect("connect");
    echo_once(&mut s, b"hello\n").expect("echo");
    s
}

/// The worker that accepted `stream`: the process holding the server side of the connection.
fn worker_of(stream: &TcpStream, workers: &[i32]) -> Option<i32> {
    let (local, peer) = (stream.local_addr().unwrap(), stream.peer_addr().unwrap());
    // /proc/net/tcp lists "ADDR:PORT" in hex; the server side has our peer as local address.
    let hex = |a: SocketAddr| match a {
        SocketAddr::V4(v4) => format!("{:08X}:{:04X}", u32::from_le_bytes(v4.ip().octets()), v4.port()),
        SocketAddr::V6(_) => unreachable!("loopback v4 only"),
    };
    let (want_local, want_remote) = (hex(peer), hex(local));
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    let inode = table.lines().skip(1).find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.len() > 9 && f[1] == want_local && f[2] == want_remote).then(|| f[9].to_string())
    })?;
    let link = format!("socket:[{inode}]");
    workers.iter().copied().find(|pid| {
        std::fs::read_dir(format!("/proc/{pid}/fd"))
            .into_iter()
            .flatten()
            .flatten()
            .any(|e| std::fs::read_link(e.path()).map(|t| t.to_string_lossy() == link).unwrap_or(false))
    })
}

#[test]
fn a_killed_worker_is_replaced_the_port_keeps_answering_and_other_workers_keep_their_connections() {
    let mut sup = Supervisor::start(&["--echo", "127.0.0.1:0", "--workers", "2"], 1);
    let addr = sup.tcp();
    let workers = sup.wait_workers(2, &[]);
    // Enough connections that both workers hold some (the kernel hashes them over the group).
    let mut conns: Vec<TcpStream> = (0..40).map(|_| connect_echo(addr)).collect();
    let owners: Vec<Option<i32>> = conns.iter().map(|c| worker_of(c, &workers)).collect();
    let victim = workers[0];
    let on_victim = owners.iter().filter(|o| **o == Some(victim)).count();
    let on_survivor = owners.iter().filter(|o| **o == Some(workers[1])).count();
    assert!(on_victim > 0 && on_survivor > 0, "connections per worker: {owners:?}");
    assert_eq!(on_victim + on_survivor, conns.len(), "every connection has an owner: {owners:?}");

    // SAFETY: kill(2) on a process our supervisor started.
    unsafe { libc::kill(victim, libc::SIGKILL) };
    // New connections are answered at once: the dead worker's socket stays open in the
    // supervisor, so what the kernel queues on it waits for the replacement.
    for _ in 0..20 {
        connect_echo(addr);
    }
    let line = sup.wait_log("was killed by signal 9 (SIGKILL); restarting it");
    assert!(line.contains(&format!("(pid {victim})")), "{line}");
    let now = sup.wait_workers(2, &[victim]);
    assert!(now.contains(&workers[1]), "the survivor was left alone: {now:?}");
    let extra: Vec<String> = sup.out.try_iter().collect();
    assert!(extra.is_empty(), "the listening line is printed once, not per worker: {extra:?}");

    for (conn, owner) in conns.iter_mut().zip(&owners) {
        let result = echo_once(conn, b"still there?\n");
        if *owner == Some(victim) {
            assert!(result.is_err(), "a connection of the killed worker cannot answer");
        } else {
            result.expect("a connection on the surviving worker is untouched");
        }
    }
}

#[test]
fn sigterm_drains_every_worker_under_load_delivering_queued_echo_data_and_exits_0() {
    let mut sup =
        Supervisor::start(&["--echo", "127.0.0.1:0", "--workers", "2", "--shutdown-timeout", "15s"], 1);
    let addr = sup.tcp();
    let workers = sup.wait_workers(2, &[]);
    // Clients that send a lot and read nothing until the drain starts.
    const EACH: usize = 8 * 1024 * 1024;
    let clients: Vec<_> = (0..8)
        .map(|seed| {
            let stream = TcpStream::connect(addr).unwrap();
            let data = support::pattern(EACH, seed);
            let mut writer = stream.try_clone().unwrap();
            let sender = std::thread::spawn(move || {
                let _ = writer.write_all(&data);
                let _ = writer.shutdown(std::net::Shutdown::Write);
            });
            (stream, seed, sender)
        })
        .collect();
    let owners: Vec<_> = clients.iter().map(|(s, _, _)| worker_of(s, &workers)).collect();
    assert!(owners.iter().any(|o| *o == Some(workers[0])) && owners.iter().any(|o| *o == Some(workers[1])));
    // Under load: wait until the workers have echoed a good part of it and paused the clients
    // that do not read (the kernel buffers on both sides full, echo output queued).
    let line = counters_when(&mut sup, |l| counter(l, "bytes_out") >= 8 * 1024 * 1024);
    let written_before = counter(&line, "bytes_out");
    let started = Instant::now();
    sup.signal(libc::SIGTERM);
    // Now read: everything the workers had written comes back, in order, and ends with a
    // clean FIN. A worker that exited without draining would close with unread input, which
    // makes the kernel reset the connection and throw away what was still in flight.
    let readers: Vec<_> = clients
        .into_iter()
        .map(|(mut stream, seed, sender)| {
            std::thread::spawn(move || {
                stream.set_read_timeout(Some(WAIT)).unwrap();
                let mut got = Vec::new();
                let end = stream.read_to_end(&mut got);
                let _ = sender.join();
                let want = support::pattern(EACH, seed);
                assert!(end.is_ok(), "client {seed}: {end:?} after {} bytes", got.len());
                assert_eq!(got[..], want[..got.len()], "client {seed}: echo corrupted");
                got.len() as u64
            })
        })
        .collect();
    let echoed: u64 = readers.into_iter().map(|r| r.join().unwrap()).sum();
    assert!(
        echoed >= written_before,
        "delivered {echoed} of the {written_before} bytes written before the drain"
    );
    let status = sup.wait_exit(Duration::from_secs(30)).expect("the supervisor exits");
    assert!(status.success(), "exit status {status:?}");
    assert!(started.elapsed() < Duration::from_secs(15), "drained within the timeout");
    sup.drain_log();
    let drained = sup.log.iter().filter(|l| l.contains("drained and exited")).count();
    assert_eq!(drained, 2, "{}", sup.log.join("\n"));
}

#[test]
fn a_second_supervisor_on_the_same_address_fails_clearly() {
    let first = Supervisor::start(&["--echo", "127.0.0.1:0", "--workers", "2"], 1);
    let addr = first.tcp().to_string();
    for workers in ["2", "1"] {
        let out = Command::new(env!("CARGO_BIN_EXE_netloop"))
            .args(["serve", "--echo", &addr, "--workers", workers])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "--workers {workers}: {err}");
        assert!(err.contains(&format!("listen EADDRINUSE: Address already in use {addr}")), "{err}");
        if workers == "2" {
            assert!(err.contains("only with the other workers of their own supervisor"), "{err}");
        }
        assert!(out.stdout.is_empty(), "no listening line: {}", String::from_utf8_lossy(&out.stdout));
    }
    // The first group still answers.
    connect_echo(first.tcp());
}

#[test]
fn chat_and_hub_refuse_more_than_one_worker_and_say_what_to_use() {
    for args in [&["--chat", "127.0.0.1:0"][..], &["--echo", "127.0.0.1:0", "--hub", "127.0.0.1:0"], &[]] {
        let out = Command::new(env!("CARGO_BIN_EXE_netloop"))
            .arg("serve")
            .args(args)
            .args(["--workers", "2"])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.contains("--workers 2 applies to echo only"), "{err}");
        assert!(err.contains("--workers 1 (the default)"), "{err}");
    }
}

#[test]
fn a_unix_path_is_one_socket_shared_by_every_worker() {
    let path = support::unix_path("workers");
    let addr = format!("unix:{}", path.display());
    let mut sup = Supervisor::start(&["--echo", &addr, "--workers", "2"], 1);
    assert_eq!(sup.listeners[0], addr);
    let workers = sup.wait_workers(2, &[]);
    for _ in 0..10 {
        let mut s = std::os::unix::net::UnixStream::connect(&path).unwrap();
        s.set_read_timeout(Some(WAIT)).unwrap();
        s.write_all(b"over unix\n").unwrap();
        let mut got = [0; 10];
        s.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"over unix\n");
    }
    // A worker that dies must not take the path with it.
    // SAFETY: kill(2) on a process our supervisor started.
    unsafe { libc::kill(workers[0], libc::SIGKILL) };
    sup.wait_workers(2, &[workers[0]]);
    assert!(std::os::unix::net::UnixStream::connect(&path).is_ok());
    sup.signal(libc::SIGTERM);
    assert!(sup.wait_exit(WAIT).expect("exits").success());
    assert!(!path.exists(), "the supervisor removes the socket file it made");
}

#[test]
fn the_counters_of_all_workers_are_summed_on_sigusr1_and_every_interval() {
    let mut sup =
        Supervisor::start(&["--echo", "127.0.0.1:0", "--workers", "2", "--stats-interval", "500ms"], 1);
    let addr = sup.tcp();
    let workers = sup.wait_workers(2, &[]);
    let conns: Vec<TcpStream> = (0..30).map(|_| connect_echo(addr)).collect();
    let spread: Vec<_> = conns.iter().map(|c| worker_of(c, &workers)).collect();
    assert!(spread.contains(&Some(workers[0])) && spread.contains(&Some(workers[1])), "{spread:?}");
    // Each connection echoed "hello\n": 6 bytes in and out.
    let want = "stats: workers=2 connections=30 accepted=30";
    let deadline = Instant::now() + WAIT;
    let line = loop {
        let line = sup.wait_log("stats: workers=");
        if line.contains(want) || Instant::now() > deadline {
            break line;
        }
        sup.log.retain(|l| !l.contains("stats: workers="));
    };
    assert!(line.contains(want), "{line}");
    assert!(line.contains("bytes_in=180 bytes_out=180"), "{line}");
    // SIGUSR1 asks at once; counters of a worker that died still count.
    drop(conns);
    // SAFETY: kill(2) on a process our supervisor started.
    unsafe { libc::kill(workers[0], libc::SIGKILL) };
    sup.wait_workers(2, &[workers[0]]);
    sup.log.clear();
    sup.signal(libc::SIGUSR1);
    let deadline = Instant::now() + WAIT;
    let line = loop {
        let line = sup.wait_log("stats: workers=2");
        if line.contains("connections=0 accepted=30") || Instant::now() > deadline {
            break line;
        }
        sup.log.clear();
        sup.signal(libc::SIGUSR1);
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(line.contains("connections=0 accepted=30"), "{line}");
}

#[test]
fn a_worker_that_cannot_start_is_a_reported_crash_loop() {
    // A worker that dies before serving, every time: the hidden flag the supervisor passes
    // its workers, given once more, hands each worker one listener too many and it exits 1.
    let mut sup =
        Supervisor::start(&["--echo", "127.0.0.1:0", "--workers", "2", "--worker-listeners", "999"], 1);
    let status = sup.wait_exit(Duration::from_secs(60)).expect("the supervisor gives up");
    sup.drain_log();
    let log = sup.log.join("\n");
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(log.contains("is crash-looping"), "{log}");
    assert!(log.contains("every worker is crash-looping"), "{log}");
    assert!(log.contains("exited with status 1"), "{log}");
}

/// Runs `netloop load ARGS --json`, bounded; returns its exit code and report.
fn load_json(args: &[&str]) -> (Option<i32>, serde_json::Value) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_netloop"))
        .arg("load")
        .args(args)
        .arg("--json")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "netloop load did not finish");
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    (out.status.code(), serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("{e}: {text}")))
}

/// The supervisor's summed counters, asked for with SIGUSR1, once `done` holds for them.
fn counters_when(sup: &mut Supervisor, done: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        sup.log.retain(|l| !l.contains("stats: workers="));
        sup.signal(libc::SIGUSR1);
        let line = sup.wait_log("stats: workers=");
        if done(&line) || Instant::now() > deadline {
            return line;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn counter(line: &str, name: &str) -> u64 {
    let at = line.find(&format!(" {name}=")).or_else(|| line.find(&format!("({name}="))).expect(name);
    let rest = &line[at + name.len() + 2..];
    rest.split(|c: char| !c.is_ascii_digit()).next().unwrap().parse().unwrap()
}

#[test]
fn a_split_load_run_reports_what_the_workers_saw_added_up() {
    let mut sup = Supervisor::start(&["--echo", "127.0.0.1:0", "--workers", "2"], 1);
    let addr = sup.tcp().to_string();
    sup.wait_workers(2, &[]);
    let (code, report) = load_json(&["echo", &addr, "-c", "40", "-r", "2000", "-T", "1s", "--workers", "3"]);
    assert_eq!(code, Some(0), "{report}");
    let c = &report["connections"];
    assert_eq!((c["requested"].as_u64(), c["established"].as_u64()), (Some(40), Some(40)), "{report}");
    assert!(c["sources"].as_str().unwrap().starts_with("3 processes; 0: default; 1: 127.0.0."), "{report}");
    let echo = &report["echo"];
    assert_eq!(echo["rate"].as_u64(), Some(2000), "the rates of the parts add up to -r");
    assert!(report["round_trips"].as_u64().unwrap() > 1000, "{report}");
    assert!(report["latency_us"]["p99"].as_f64().is_some(), "percentiles of the merged histograms: {report}");
    let line = counters_when(&mut sup, |l| l.contains("connections=0 "));
    assert_eq!(counter(&line, "accepted"), 40, "{line}");
    assert_eq!(counter(&line, "bytes_in"), echo["bytes_sent"].as_u64().unwrap(), "{line}\n{report}");
    // The workers echoed every byte; the report counts those back within the window (the last
    // messages in flight when it closed come back after it).
    assert_eq!(counter(&line, "bytes_out"), echo["bytes_sent"].as_u64().unwrap(), "{line}");
    let in_flight = counter(&line, "bytes_out") - echo["bytes_received"].as_u64().unwrap();
    assert!(in_flight <= 40 * 64, "at most one message per connection: {in_flight}\n{report}");

    // Idle: what the processes held together is what the workers held.
    let (code, report) = load_json(&["idle", &addr, "-c", "300", "-T", "1s", "--workers", "2"]);
    assert_eq!(code, Some(0), "{report}");
    assert_eq!(report["connections"]["established"].as_u64(), Some(300), "{report}");
    let line = counters_when(&mut sup, |l| l.contains("connections=0 "));
    assert_eq!(counter(&line, "accepted"), 340, "{line}");

    // --connect-rate is the total too: 100 connections at 200/s take half a second, however
    // many processes open them.
    let (code, report) =
        load_json(&["idle", &addr, "-c", "100", "--connect-rate", "200", "-T", "100ms", "--workers", "2"]);
    assert_eq!(code, Some(0), "{report}");
    assert!(report["ramp_up_s"].as_f64().unwrap() >= 0.4, "{report}");
}

#[test]
fn fanout_refuses_to_be_split_and_says_why() {
    let out = Command::new(env!("CARGO_BIN_EXE_netloop"))
        .args(["load", "fanout", "127.0.0.1:9", "--protocol", "chat", "--workers", "2"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("fanout cannot be split over --workers 2"), "{err}");
    assert!(err.contains("run fanout with --workers 1"), "{err}");
}

#[test]
fn ctrl_c_to_the_terminal_group_drains_the_workers_once_instead_of_killing_them() {
    // The supervisor leads its own process group, as a shell's foreground job does; Ctrl-C
    // sends SIGINT to the whole group.
    let mut sup = Supervisor::start_with(&["--echo", "127.0.0.1:0", "--workers", "2"], 1, |cmd| {
        cmd.process_group(0);
    });
    sup.wait_workers(2, &[]);
    let mut held = connect_echo(sup.tcp());
    // SAFETY: kill(2) on the process group our child leads.
    unsafe { libc::kill(-sup.pid(), libc::SIGINT) };
    // The held connection is ended politely (FIN after its output), not reset.
    let mut rest = Vec::new();
    held.set_read_timeout(Some(WAIT)).unwrap();
    assert!(held.read_to_end(&mut rest).is_ok());
    // Our FIN in turn lets the worker close it at once.
    drop(held);
    let status = sup.wait_exit(WAIT).expect("the supervisor exits");
    sup.drain_log();
    let log = sup.log.join("\n");
    assert!(status.success(), "{status:?}\n{log}");
    assert_eq!(log.matches("drained and exited").count(), 2, "{log}");
    assert!(!log.contains("second signal"), "{log}");
}

#[test]
fn an_interrupted_split_load_run_still_reports_what_its_processes_held() {
    let sup = Supervisor::start(&["--echo", "127.0.0.1:0", "--workers", "2"], 1);
    let addr = sup.tcp().to_string();
    let mut child = Command::new(env!("CARGO_BIN_EXE_netloop"))
        .args(["load", "idle", &addr, "-c", "200", "-T", "60s", "--workers", "2", "--json"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .unwrap();
    // Wait until the workers hold all 200, then Ctrl-C the load's process group.
    let deadline = Instant::now() + WAIT;
    let workers = sup.wait_workers(2, &[]);
    while workers.iter().map(|&w| sockets_of(w)).sum::<usize>() < 200 + 2 {
        assert!(Instant::now() < deadline, "the load did not connect");
        std::thread::sleep(Duration::from_millis(50));
    }
    // SAFETY: kill(2) on the process group our child leads.
    unsafe { libc::kill(-(child.id() as i32), libc::SIGINT) };
    let deadline = Instant::now() + WAIT;
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "the load did not stop");
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let report: serde_json::Value =
        serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("{e}: {text}"));
    assert_eq!(out.status.code(), Some(1), "an interrupted run fails");
    assert_eq!(report["interrupted"], true, "{report}");
    assert_eq!(report["connections"]["established"].as_u64(), Some(200), "{report}");
    let problems = report["problems"].as_array().unwrap();
    assert_eq!(problems.len(), 2, "one interruption per process, once each: {report}");
}

/// Socket descriptors a process holds (its listener and report channel included).
fn sockets_of(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| std::fs::read_link(e.path()).is_ok_and(|t| t.to_string_lossy().starts_with("socket:")))
        .count()
}

#[test]
fn workers_auto_starts_one_worker_per_core() {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut sup = Supervisor::start(&["--echo", "127.0.0.1:0", "--workers", "auto"], 1);
    connect_echo(sup.tcp());
    if cores == 1 {
        // One core: the single process, no supervisor.
        assert!(sup.workers().is_empty());
        return;
    }
    sup.wait_workers(cores, &[]);
    sup.wait_log(&format!("({cores} workers)"));
}

#[test]
fn a_worker_restarted_after_the_binary_was_replaced_runs_the_supervisors_own_binary() {
    // An upgrade replaces the file under a running supervisor; its restarts must not start the
    // new binary, whose hidden worker flags may differ.
    let dir = std::env::temp_dir().join(format!("netloop-test-{}-upgrade", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let binary = dir.join("netloop");
    std::fs::copy(env!("CARGO_BIN_EXE_netloop"), &binary).unwrap();
    let mut sup = Supervisor::start_binary(&binary, &["--echo", "127.0.0.1:0", "--workers", "2"], 1, |_| {});
    let workers = sup.wait_workers(2, &[]);
    // The new "version": a script that would only fail.
    std::fs::remove_file(&binary).unwrap();
    std::fs::write(&binary, "#!/bin/sh\nexit 3\n").unwrap();
    std::fs::set_permissions(&binary, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    // SAFETY: kill(2) on a process our supervisor started.
    unsafe { libc::kill(workers[0], libc::SIGKILL) };
    sup.wait_log("was killed by signal 9 (SIGKILL); restarting it");
    let now = sup.wait_workers(2, &[workers[0]]);
    for _ in 0..20 {
        connect_echo(sup.tcp());
    }
    sup.drain_log();
    assert!(!sup.log.iter().any(|l| l.contains("exited with status 3")), "{}", sup.log.join("\n"));
    assert!(now.iter().all(|p| std::fs::read_link(format!("/proc/{p}/exe")).is_ok_and(|e| e != binary)));
    let _ = std::fs::remove_dir_all(&dir);
}
