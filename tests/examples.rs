//! Runs every program in `examples/` (the classic Node programs' Node programs rebuilt on netloop) as a real
//! process, drives it with real clients over loopback, and checks what a Node user would see:
//! the exact lines printed and the exact bytes on the wire. Every wait is bounded and every
//! process is killed, pass or fail.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use support::{connect, connect_lines, pattern, read_line, read_to_end, send, WAIT};

/// `target/<profile>/examples`, next to this test's own `target/<profile>/deps`.
fn examples_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let profile_dir = exe.parent().and_then(Path::parent).expect("test binary is in <target>/<profile>/deps");
    profile_dir.join("examples")
}

/// Path of an example's binary, built first. `cargo test --test examples` builds only this
/// test, not the examples, so the first caller runs `cargo build --examples` once for the
/// whole run: it is quick when nothing changed, and it keeps a stale binary from being tested.
fn example_bin(name: &str) -> PathBuf {
    static BUILT: OnceLock<Result<(), String>> = OnceLock::new();
    let dir = examples_dir();
    if let Err(e) = BUILT.get_or_init(|| build_examples(&dir)) {
        panic!("building the examples failed:\n{e}");
    }
    dir.join(name)
}

fn build_examples(examples: &Path) -> Result<(), String> {
    let profile_dir = examples.parent().expect("profile dir");
    let target_dir = profile_dir.parent().expect("target dir");
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.args(["build", "--examples", "--quiet", "--target-dir"])
        .arg(target_dir)
        .current_dir(env!("CARGO_MANIFEST_DIR"));
    match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") => {}
        Some("release") => {
            cmd.arg("--release");
        }
        Some(other) => {
            cmd.args(["--profile", other]);
        }
        None => return Err(format!("unexpected target layout: {}", profile_dir.display())),
    }
    let out = cmd.output().map_err(|e| format!("running cargo: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// A running example, killed and reaped on drop. Its stdout is read line by line on a thread;
/// every line so far is kept, for assertions and for failure messages.
struct Example {
    name: String,
    child: Child,
    lines: Receiver<String>,
    seen: Vec<String>,
    stderr: Arc<Mutex<String>>,
    stdin: Option<ChildStdin>,
}

impl Example {
    /// Starts `examples/NAME ARGS` with stdin closed.
    fn spawn(name: &str, args: &[&str]) -> Example {
        Self::start(name, args, Stdio::null())
    }

    /// Starts it with a pipe on stdin ([`Example::type_line`], [`Example::close_stdin`]).
    fn spawn_with_stdin(name: &str, args: &[&str]) -> Example {
        Self::start(name, args, Stdio::piped())
    }

    /// Starts a server on a free port and returns the address from its first line, which
    /// must be `listening on ADDR`.
    fn server(name: &str, args: &[&str]) -> (Example, SocketAddr) {
        let mut all = vec!["--port", "0"];
        all.extend_from_slice(args);
        let mut ex = Self::spawn(name, &all);
        let first = ex.next_line().unwrap_or_else(|| ex.fail("no first line"));
        let Some(addr) = first.strip_prefix("listening on ").and_then(|a| a.parse().ok()) else {
            ex.fail(&format!("first line is not `listening on ADDR`: {first:?}"))
        };
        (ex, addr)
    }

    fn start(name: &str, args: &[&str], stdin: Stdio) -> Example {
        let mut child = Command::new(example_bin(name))
            .args(args)
            .stdin(stdin)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn example {name}: {e}"));
        let (tx, lines) = mpsc::channel();
        let stdout = child.stdout.take().expect("stdout");
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let (mut pipe, sink) = (child.stderr.take().expect("stderr"), Arc::clone(&stderr));
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            sink.lock().unwrap().push_str(&text);
        });
        let stdin = child.stdin.take();
        Example { name: name.to_string(), child, lines, seen: Vec::new(), stderr, stdin }
    }

    /// The next stdout line, waiting at most [`WAIT`]; `None` at EOF or on timeout.
    fn next_line(&mut self) -> Option<String> {
        let line = self.lines.recv_timeout(WAIT).ok()?;
        self.seen.push(line.clone());
        Some(line)
    }

    /// Waits (bounded) until some line, printed now or earlier, satisfies `pred`; returns it.
    fn wait_for(&mut self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        if let Some(line) = self.seen.iter().find(|l| pred(l)) {
            return line.clone();
        }
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if pred(&line) {
                        return line;
                    }
                }
                Err(RecvTimeoutError::Timeout) => self.fail(&format!("timed out waiting for {what}")),
                Err(RecvTimeoutError::Disconnected) => self.fail(&format!("exited before printing {what}")),
            }
        }
    }

    /// Waits (bounded) for exactly this line.
    fn wait_line(&mut self, expected: &str) {
        self.wait_for(&format!("{expected:?}"), |l| l == expected);
    }

    /// Writes a line to the example's stdin.
    fn type_line(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("spawned with stdin");
        stdin.write_all(format!("{line}\n").as_bytes()).expect("write to stdin");
    }

    /// Closes the example's stdin (EOF).
    fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// Waits (bounded) for the process to exit by itself; returns its status and every line
    /// it printed.
    fn finish(&mut self) -> (ExitStatus, Vec<String>) {
        let deadline = Instant::now() + WAIT;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                break status;
            }
            if Instant::now() > deadline {
                self.fail("did not exit by itself");
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        // The reader thread sees EOF now; collect what is left.
        while self.next_line().is_some() {}
        (status, self.seen.clone())
    }

    /// Kills the process and panics with everything it printed.
    fn fail(&mut self, why: &str) -> ! {
        self.kill();
        // Give the stderr reader a moment to see EOF.
        std::thread::sleep(Duration::from_millis(50));
        while let Ok(line) = self.lines.try_recv() {
            self.seen.push(line);
        }
        panic!(
            "example {}: {why}\nstdout:\n{}\nstderr:\n{}",
            self.name,
            self.seen.join("\n"),
            self.stderr.lock().unwrap()
        );
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Example {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Reads exactly `n` bytes (bounded by the stream's read timeout).
fn read_n(s: &mut TcpStream, n: usize) -> String {
    let mut buf = vec![0; n];
    s.read_exact(&mut buf).expect("read reply");
    String::from_utf8(buf).expect("utf-8")
}

fn count(lines: &[String], exact: &str) -> usize {
    lines.iter().filter(|l| *l == exact).count()
}

#[test]
fn you_said_answers_each_chunk_and_logs_connect_and_close() {
    let (mut server, addr) = Example::server("you_said", &[]);
    let mut s = connect(addr);
    let port = s.local_addr().unwrap().port();
    server.wait_line(&format!("CONNECTED: 127.0.0.1:{port}"));

    for said in ["I am Chuck Norris!", "and again"] {
        send(&mut s, said.as_bytes());
        let reply = format!("You said \"{said}\"");
        assert_eq!(read_n(&mut s, reply.len()), reply);
        server.wait_line(&format!("DATA 127.0.0.1: {said}"));
    }
    drop(s);
    server.wait_line(&format!("CLOSED: 127.0.0.1 {port}"));

    // The Node original's client against the same server: one exchange, destroy(), close.
    let mut client = Example::spawn("you_said", &["client", "--port", &addr.port().to_string()]);
    let (status, lines) = client.finish();
    assert!(status.success(), "client failed: {lines:?}");
    assert_eq!(
        lines,
        [
            format!("CONNECTED TO: {addr}"),
            "DATA: You said \"I am Chuck Norris!\"".into(),
            "Connection closed".into()
        ]
    );
}

#[test]
fn timeout_pair_converses_on_idle_timeouts_and_exits_once_every_connection_is_gone() {
    let mut pair = Example::spawn("timeout_pair", &["--port", "0"]);
    let (status, lines) = pair.finish();
    assert!(status.success(), "timeout_pair failed: {lines:#?}");
    assert!(lines[0].starts_with("listening on 127.0.0.1:"), "{lines:#?}");
    let server_addr = lines[0].trim_start_matches("listening on ");

    for name in ["example1", "example2"] {
        // The client's port, from its `connect` line, names it in the server's lines.
        let prefix = format!("[{name}] connected: local=127.0.0.1:");
        let connected = lines.iter().find(|l| l.starts_with(&prefix)).expect("connect line");
        let (port, remote) = connected[prefix.len()..].split_once(" remote=").expect("remote=");
        assert_eq!(remote, server_addr);
        assert_eq!(
            count(
                &lines,
                &format!("[server] client connection: local={server_addr} remote=127.0.0.1:{port}")
            ),
            1
        );

        let replies: Vec<&String> =
            lines.iter().filter(|l| l.starts_with(&format!("[{name}] from server: "))).collect();
        let mut sent_total = 0;
        for (k, reply) in replies.iter().enumerate() {
            let message = format!("This is {name}, message {}", k + 1);
            let answer = format!("Sending: {message}");
            assert_eq!(**reply, format!("[{name}] from server: {answer}"));
            assert_eq!(count(&lines, &format!("[server] received from port {port}: {message}")), 1);
            // bytesWritten is cumulative.
            sent_total += answer.len();
            assert_eq!(count(&lines, &format!("[server] bytes sent to port {port}: {sent_total}")), 1);
        }
        assert_eq!(replies.len(), 3, "{lines:#?}");

        // One idle timeout per reply on the client (it drives the next message), and the
        // server's side sees them too; a timeout never closes anything by itself.
        assert_eq!(count(&lines, &format!("[{name}] timeout")), 3, "{lines:#?}");
        assert!(count(&lines, &format!("[server] timeout on port {port}")) >= 1, "{lines:#?}");
        for line in [
            format!("[{name}] done, ending"),
            format!("[server] client on port {port} disconnected"),
            format!("[{name}] server ended the connection"),
            format!("[{name}] socket closed (had_error=false)"),
            format!("[server] connection from port {port} closed"),
        ] {
            assert_eq!(count(&lines, &line), 1, "missing {line:?} in {lines:#?}");
        }
    }
    // getConnections() at `end` counts the ending socket too; the first end sees both.
    let remaining: Vec<&str> =
        lines.iter().filter_map(|l| l.strip_prefix("[server] remaining connections: ")).collect();
    assert_eq!(remaining, ["2", "1"], "{lines:#?}");
    assert_eq!(lines[lines.len() - 2..], ["[server] no connections left, closing", "[server] terminated"]);
}

#[test]
fn hello_pipe_greets_echoes_with_backpressure_and_its_client_prints_the_greeting() {
    let (mut server, addr) = Example::server("hello_pipe", &[]);
    let mut s = connect(addr);
    assert_eq!(read_n(&mut s, 14), "Hello World!\r\n");
    server.wait_line("client connected");

    // 4 MiB sent by a writer that never waits for the echo, read only after it is well ahead:
    // the server must stop reading while we don't, and lose nothing.
    let data = pattern(4 << 20, 1);
    let (mut w, expected) = (s.try_clone().unwrap(), data.clone());
    let writer = std::thread::spawn(move || {
        w.write_all(&data).expect("write");
        w.shutdown(Shutdown::Write).expect("shutdown");
    });
    std::thread::sleep(Duration::from_millis(200));
    let echoed = read_to_end(&mut s);
    writer.join().unwrap();
    assert_eq!(echoed.len(), expected.len());
    assert!(echoed == expected, "echo differs");
    server.wait_line("client disconnected");

    let mut client = Example::spawn("hello_pipe", &["client", "--port", &addr.port().to_string()]);
    let (status, lines) = client.finish();
    assert!(status.success(), "client failed: {lines:?}");
    // console.log(data.toString()) of "Hello World!\r\n": the line, then an empty one.
    assert_eq!(lines, ["connected to server!", "Hello World!", "", "disconnected from server"]);
}

#[test]
fn hub_demo_broadcasts_to_all_then_each_named_client_gets_only_its_own_message() {
    let (mut server, addr) = Example::server("hub_demo", &["--delay-ms", "1000"]);
    let port = addr.port().to_string();
    let client = |name| Example::spawn("hub_demo", &["client", name, "--port", &port, "--delay-ms", "100"]);
    let (mut c1, mut c2) = (client("Client-1"), client("Client-2"));
    // A third client by hand: sync and info in one write, with no separator, as the Node original's
    // clients write them.
    let (raw, mut raw_lines) = connect_lines(addr);
    let raw_sid = format!("127.0.0.1:{}", raw.local_addr().unwrap().port());
    send(
        &mut raw.try_clone().unwrap(),
        br#"{"type":"sync","clientName":"Client-3","message":"hi"}{"type":"info","clientName":"Client-3","message":"333"}"#,
    );
    server.wait_line(&format!("[sync] {raw_sid} is Client-3: hi"));
    server.wait_line(&format!("[info] Client-3 ({raw_sid}): 333"));
    for name in ["Client-1", "Client-2"] {
        server.wait_for(&format!("{name}'s sync"), |l| {
            l.starts_with("[sync] ") && l.ends_with(&format!(" is {name}: basic information"))
        });
        server.wait_for(&format!("{name}'s info"), |l| {
            l.starts_with(&format!("[info] {name} (127.0.0.1:"))
                && l.ends_with(&format!("): hello from {name}"))
        });
    }

    const ALL: &str = "We have come to collect supplies";
    const TO_1: &str = "Hurry to get tested, everything is waiting for you";
    const TO_2: &str = "Come and get tested later";
    c1.wait_line(&format!("Client-1 received from the server: {TO_1}"));
    c2.wait_line(&format!("Client-2 received from the server: {TO_2}"));
    assert_eq!(read_line(&mut raw_lines), ALL);
    server.wait_line(&format!("Inform everyone: {ALL}"));

    // The raw client leaves (FIN; its reader still holds the fd): the server forgets it.
    raw.shutdown(Shutdown::Write).unwrap();
    server.wait_line(&format!("[offline] {raw_sid} (Client-3)"));
    let rest = String::from_utf8(read_to_end(&mut raw_lines.into_inner())).unwrap();
    assert!(rest.lines().all(|l| l == ALL), "Client-3 got a directed message: {rest:?}");

    // The Node original's server runs forever; stop it, and the clients see `end`, `close` and exit 0.
    server.kill();
    for (mut c, name, own, other) in [(c1, "Client-1", TO_1, TO_2), (c2, "Client-2", TO_2, TO_1)] {
        let (status, lines) = c.finish();
        assert!(status.success(), "{name} failed: {lines:#?}");
        let got = |text: &str| count(&lines, &format!("{name} received from the server: {text}"));
        // Exactly once each, unless a slow machine let the timer fire between the two clients'
        // connections (then the demo runs twice); never the other client's message.
        assert!(got(ALL) >= 1 && got(ALL) == got(own), "{lines:#?}");
        assert_eq!(got(other), 0, "{name} got the other client's message: {lines:#?}");
        assert_eq!(
            lines[..3],
            [
                "connected to server!".to_string(),
                format!("{name} syncs its basic information with the server"),
                format!("{name} sends to the server: hello from {name}")
            ][..],
            "{lines:#?}"
        );
        assert_eq!(lines[lines.len() - 2..], ["end", "close"], "{lines:#?}");
    }
}

#[test]
fn online_counter_greets_with_the_count_and_relays_to_everyone_else() {
    let (mut server, addr) = Example::server("online_counter", &[]);
    let greet = |lines: &mut BufReader<TcpStream>, s: &TcpStream, online: usize| {
        assert_eq!(read_line(lines), format!("welcome, online now: {online}"));
        assert_eq!(read_line(lines), "remoteAddress: 127.0.0.1");
        assert_eq!(read_line(lines), format!("remotePort: {}", s.local_addr().unwrap().port()));
    };
    let (mut a, mut a_lines) = connect_lines(addr);
    greet(&mut a_lines, &a, 1);
    let (mut b, mut b_lines) = connect_lines(addr);
    greet(&mut b_lines, &b, 2);
    let (a_port, b_port) = (a.local_addr().unwrap().port(), b.local_addr().unwrap().port());

    // The stdin chat client is the third user.
    let mut client =
        Example::spawn_with_stdin("online_counter", &["client", "--port", &addr.port().to_string()]);
    client.wait_line("welcome, online now: 3");
    client.wait_line("remoteAddress: 127.0.0.1");
    let c_port =
        client.wait_for("remotePort", |l| l.starts_with("remotePort: "))["remotePort: ".len()..].to_string();

    // Typed text is trimmed and goes to the others, prefixed with the sender's port.
    client.type_line("   hello from stdin  ");
    assert_eq!(read_line(&mut a_lines), format!("{c_port}:hello from stdin"));
    assert_eq!(read_line(&mut b_lines), format!("{c_port}:hello from stdin"));
    send(&mut a, b"hi all\r\n");
    assert_eq!(read_line(&mut b_lines), format!("{a_port}:hi all"));
    client.wait_line(&format!("{a_port}:hi all"));
    // Not back to the sender: the next thing A reads is B's message.
    send(&mut b, b"  from b \n");
    assert_eq!(read_line(&mut a_lines), format!("{b_port}:from b"));
    server.wait_line(&format!("{a_port}:hi all"));

    // stdin EOF half-closes; the server ends its side too and the client exits 0.
    client.close_stdin();
    let (status, lines) = client.finish();
    assert!(status.success(), "client failed: {lines:#?}");
    server.wait_line(&format!("{c_port} left, online now: 2"));
    drop((a, a_lines));
    server.wait_line(&format!("{a_port} left, online now: 1"));
    // The count is live: a newcomer is the second user now.
    let (c, mut c_lines) = connect_lines(addr);
    greet(&mut c_lines, &c, 2);
}

#[test]
fn chat_all_sends_every_chunk_to_every_client_including_the_sender() {
    let (mut server, addr) = Example::server("chat_all", &[]);
    let (mut a, mut a_lines) = connect_lines(addr);
    server.wait_line(&format!("{} joined, 1 online", a.local_addr().unwrap()));
    let (mut b, mut b_lines) = connect_lines(addr);
    server.wait_line(&format!("{} joined, 2 online", b.local_addr().unwrap()));

    send(&mut a, b"hello everyone\n");
    assert_eq!(read_line(&mut a_lines), "hello everyone");
    assert_eq!(read_line(&mut b_lines), "hello everyone");
    send(&mut b, b"hi\n");
    assert_eq!(read_line(&mut b_lines), "hi");
    assert_eq!(read_line(&mut a_lines), "hi");
    server.wait_line("hello everyone");

    // setEncoding('utf8'): a character split between two reads is printed whole.
    send(&mut a, b"caf\xc3");
    std::thread::sleep(Duration::from_millis(100)); // so the server most likely reads twice
    send(&mut a, b"\xa9 au lait\n");
    let line = server.wait_for("the rest of the split line", |l| l.ends_with("au lait"));
    assert!(line == "\u{e9} au lait" || line == "caf\u{e9} au lait", "{line:?}");
    assert!(server.seen.iter().all(|l| !l.contains('\u{fffd}')), "{:?}", server.seen);
    assert_eq!(read_line(&mut b_lines), "caf\u{e9} au lait");
    assert_eq!(read_line(&mut a_lines), "caf\u{e9} au lait");

    // A closed client is removed: the others carry on.
    drop((a, a_lines));
    server.wait_line("a client left, 1 online");
    send(&mut b, b"still here\n");
    assert_eq!(read_line(&mut b_lines), "still here");
}
