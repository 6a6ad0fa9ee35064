//! systemd: socket activation (`LISTEN_FDS`) through `systemd-socket-activate`, and readiness
//! notification to a `NOTIFY_SOCKET` the test binds itself. No running systemd is needed.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

use support::{free_port, WAIT};

/// Fails loudly, with the install command, when a tool the test drives is missing.
fn require(tool: &str, package: &str) {
    let found = Command::new("sh").args(["-c", &format!("command -v {tool}")]).output();
    assert!(
        found.is_ok_and(|o| o.status.success()),
        "{tool} is required for this test: apt-get install -y {package} (scripts/test installs it)"
    );
}

/// `netloop serve ARGS` under `systemd-socket-activate -l LISTEN`, notifying `notify`.
struct Activated {
    child: Child,
    err: Receiver<String>,
    log: Vec<String>,
}

impl Activated {
    fn start(listen: &str, fdname: Option<&str>, notify: &Path, args: &[&str]) -> Activated {
        require("systemd-socket-activate", "systemd");
        let mut cmd = Command::new("systemd-socket-activate");
        cmd.args(["-l", listen]);
        if let Some(name) = fdname {
            cmd.arg(format!("--fdname={name}"));
        }
        cmd.arg("-E")
            .arg("RUST_LOG=info")
            .arg("-E")
            .arg(format!("NOTIFY_SOCKET={}", notify.display()))
            .arg(env!("CARGO_BIN_EXE_netloop"))
            .arg("serve")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn systemd-socket-activate");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut a = Activated { child, err: rx, log: Vec::new() };
        a.wait_log("Listening on");
        a
    }

    fn wait_log(&mut self, want: &str) -> String {
        if let Some(l) = self.log.iter().find(|l| l.contains(want)) {
            return l.clone();
        }
        let deadline = Instant::now() + WAIT;
        loop {
            match self.err.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
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

    /// systemd-socket-activate executes netloop in its own process: same pid.
    fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(self.child.id() as i32, sig) };
    }

    fn wait_exit(&mut self) -> std::process::ExitStatus {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                while let Ok(line) = self.err.try_recv() {
                    self.log.push(line);
                }
                return st;
            }
            assert!(Instant::now() < deadline, "netloop did not exit; stderr:\n{}", self.log.join("\n"));
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Activated {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The test's own `NOTIFY_SOCKET`: collects the datagrams netloop sends.
struct NotifySocket {
    socket: UnixDatagram,
    path: std::path::PathBuf,
    seen: Vec<String>,
}

impl NotifySocket {
    fn bind() -> NotifySocket {
        let path = support::unix_path("notify");
        let socket = UnixDatagram::bind(&path).unwrap();
        socket.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
        NotifySocket { socket, path, seen: Vec::new() }
    }

    /// Waits (bounded) for a datagram containing `want`; returns it.
    fn wait(&mut self, want: &str) -> String {
        if let Some(m) = self.seen.iter().find(|m| m.contains(want)) {
            return m.clone();
        }
        let deadline = Instant::now() + WAIT;
        let mut buf = [0u8; 4096];
        while Instant::now() < deadline {
            if let Ok(n) = self.socket.recv(&mut buf) {
                let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
                self.seen.push(msg.clone());
                if msg.contains(want) {
                    return msg;
                }
            }
        }
        panic!("no notification with {want:?}; got {:?}", self.seen);
    }
}

impl Drop for NotifySocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn echo(stream: &mut TcpStream, msg: &[u8]) {
    stream.set_read_timeout(Some(WAIT)).unwrap();
    stream.write_all(msg).unwrap();
    let mut got = vec![0; msg.len()];
    stream.read_exact(&mut got).unwrap();
    assert_eq!(got, msg);
}

/// One process, or a supervisor with `workers`, on a socket systemd handed over, named echo.
fn activation_and_notification(workers: &str) {
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let mut notify = NotifySocket::bind();
    // No service flag: the socket's name says what it serves.
    let mut netloop = Activated::start(&addr, Some("echo"), &notify.path, &["--workers", workers]);
    // systemd-socket-activate starts netloop on the first connection, which waits in the
    // backlog of the socket it hands over.
    let mut first = TcpStream::connect(&addr).unwrap();
    echo(&mut first, b"first\n");
    let ready = notify.wait("READY=1");
    let total =
        if workers == "1" { "STATUS=0 connections".to_string() } else { "connections over 2 workers".into() };
    assert!(ready.contains(&total), "{ready:?}");
    netloop.wait_log(&format!("socket activation: {addr} (descriptor 3, name \"echo\")"));
    assert!(netloop.log.iter().all(|l| !l.contains("EADDRINUSE")));

    let mut more: Vec<TcpStream> = (0..4).map(|_| TcpStream::connect(&addr).unwrap()).collect();
    for s in &mut more {
        echo(s, b"more\n");
    }
    let want = if workers == "1" {
        "STATUS=5 connections".to_string()
    } else {
        "STATUS=5 connections over 2 workers".into()
    };
    notify.wait(&want);

    netloop.signal(libc::SIGTERM);
    notify.wait("STOPPING=1");
    drop(more);
    drop(first);
    let status = netloop.wait_exit();
    assert!(status.success(), "{status:?}; stderr:\n{}", netloop.log.join("\n"));
}

#[test]
fn one_process_serves_the_activated_socket_and_notifies_ready_status_and_stopping() {
    activation_and_notification("1");
}

#[test]
fn workers_share_the_activated_socket_and_the_supervisor_notifies_for_them() {
    activation_and_notification("2");
}

#[test]
fn an_activated_unix_socket_is_used_by_address_and_left_for_systemd_to_remove() {
    let path = support::unix_path("activated");
    let mut notify = NotifySocket::bind();
    let echo_flag = format!("unix:{}", path.display());
    let mut netloop = Activated::start(
        path.to_str().unwrap(),
        None,
        &notify.path,
        &["--echo", &echo_flag, "--workers", "2"],
    );
    let mut s = UnixStream::connect(&path).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.write_all(b"unix\n").unwrap();
    let mut got = [0; 5];
    s.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"unix\n");
    notify.wait("READY=1");
    drop(s);
    netloop.signal(libc::SIGTERM);
    assert!(netloop.wait_exit().success(), "{}", netloop.log.join("\n"));
    assert!(path.exists(), "the socket file belongs to the service manager");
    let _ = std::fs::remove_file(&path);
}

#[test]
fn an_activated_socket_no_flag_or_name_claims_is_refused_clearly() {
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let notify = NotifySocket::bind();
    let mut netloop = Activated::start(&addr, Some("other"), &notify.path, &["--echo", "127.0.0.1:0"]);
    let _trigger = TcpStream::connect(&addr).unwrap();
    let status = netloop.wait_exit();
    assert_eq!(status.code(), Some(1));
    let line = netloop.wait_log("which no --echo/--chat/--hub names");
    assert!(line.contains(&format!("socket activation passed {addr} (name \"other\")")), "{line}");
    assert!(line.contains("FileDescriptorName=echo"), "{line}");
}
