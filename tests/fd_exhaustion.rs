//! Accept survives file-descriptor exhaustion (a promise in `docs/operations.md`): with every
//! fd in use the loop neither spins nor stalls, and once fds are free a new connection is
//! accepted promptly with no other traffic.
//!
//! This file is its own test binary because it lowers its own open-file limit. The clients
//! live in a Node process started before the limit is lowered.

mod loop_support;
mod support;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use netloop::{Context, Handler, ServerId, ServerOptions, SocketId};

/// Greets each connection so the client knows it was really accepted, then holds it.
struct Greeter;

impl Handler for Greeter {
    fn on_connection(&mut self, cx: &mut Context, _: ServerId, s: SocketId) {
        cx.write(s, b"hi\n");
    }
}

/// utime + stime of this process, read through a file opened before fds ran out.
fn cpu_ticks(stat_file: &std::fs::File) -> u64 {
    use std::os::unix::fs::FileExt;
    let mut buf = [0u8; 1024];
    let n = stat_file.read_at(&mut buf, 0).unwrap();
    support::cpu_ticks_in(&String::from_utf8_lossy(&buf[..n]))
}

#[test]
fn accept_survives_running_out_of_file_descriptors() {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/node/hold_connections.js");
    let mut holder =
        Command::new("node").arg(script).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().expect("node");
    let mut to_holder = holder.stdin.take().unwrap();
    // `ask` owns the pipe: dropping it closes stdin, which ends the holder.
    let mut from_holder = BufReader::new(holder.stdout.take().unwrap());
    let mut ask = move |cmd: &str| -> serde_json::Value {
        writeln!(to_holder, "{cmd}").unwrap();
        let mut line = String::new();
        from_holder.read_line(&mut line).unwrap();
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("holder said {line:?}: {e}"))
    };

    let (addr, _done) = loop_support::spawn("127.0.0.1:0", ServerOptions::default(), |_, _| Greeter);
    let addr = loop_support::inet(&addr).to_string();

    let stat_file = std::fs::File::open("/proc/self/stat").unwrap();
    // Leave room for only ~20 more descriptors in this process.
    let open_now = std::fs::read_dir("/proc/self/fd").unwrap().count() as u64;
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) };
    lim.rlim_cur = open_now + 20;
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) }, 0);

    // Far more connections than fds: the server fills up, then sheds the rest.
    let flood = ask(&format!("open {addr} 60"));
    let accepted = flood["accepted"].as_u64().unwrap();
    assert!(accepted > 0 && accepted < 60, "{flood}");
    assert!(
        flood["closed"].as_u64().unwrap() > 0,
        "pending connections were closed, not left to rot: {flood}"
    );

    // Saturated: the loop must not spin.
    let before = cpu_ticks(&stat_file);
    std::thread::sleep(Duration::from_secs(1));
    let used = cpu_ticks(&stat_file) - before;
    // One tick is 10 ms: a spinning loop would use ~100; retrying every 100 ms uses ~0.
    assert!(used <= 3, "loop used {used} ticks in 1 s while out of fds");

    // Free some fds; a new connection is accepted without any other traffic.
    assert_eq!(ask("drop 5")["dropped"], 5);
    let retry = ask(&format!("open {addr} 1"));
    assert_eq!(retry["accepted"], 1, "{retry}");
    drop(ask); // closes the holder's stdin: it exits
    let _ = holder.kill();
    let _ = holder.wait();
}
