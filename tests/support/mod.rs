//! Shared helpers for black-box tests: run `netloop serve` as a real process, talk to it over
//! real sockets, run our Node client scripts against it. Every wait is bounded.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, ChildStderr, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

pub mod redis;

/// Generous bound for anything a test waits on; CI machines are shared and noisy.
pub const WAIT: Duration = Duration::from_secs(20);

/// A running `netloop serve` process, killed on drop.
pub struct Netloop {
    child: Child,
    /// `(service, address)` in the order the listening lines were printed.
    pub listeners: Vec<(String, String)>,
    stderr: Option<ChildStderr>,
}

impl Netloop {
    /// Starts `netloop serve ARGS` and waits for `expected` listening lines.
    pub fn serve(args: &[&str], expected: usize) -> Netloop {
        Self::serve_env(args, expected, &[])
    }

    /// Starts one `service` (`echo`, `chat`, `hub`) on a free loopback port, with `extra`
    /// flags; returns the server and that port's address.
    pub fn serve_one(service: &str, extra: &[&str]) -> (Netloop, std::net::SocketAddr) {
        let flag = format!("--{service}");
        let mut args = vec![flag.as_str(), "127.0.0.1:0"];
        args.extend_from_slice(extra);
        let server = Self::serve(&args, 1);
        let addr = server.tcp(service);
        (server, addr)
    }

    /// Starts one `service` on a fresh Unix socket path; returns the server and its
    /// `unix:PATH` address, checked against the listening line.
    pub fn serve_unix(service: &str) -> (Netloop, String) {
        let addr = format!("unix:{}", unix_path(service).display());
        let server = Self::serve(&[&format!("--{service}"), &addr], 1);
        assert_eq!(server.addr(service), addr);
        (server, addr)
    }

    /// Like `serve`, with extra environment variables (e.g. `RUST_LOG`).
    pub fn serve_env(args: &[&str], expected: usize, env: &[(&str, &str)]) -> Netloop {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_netloop"));
        cmd.arg("serve").args(args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn netloop");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut listeners = Vec::new();
        let deadline = Instant::now() + WAIT;
        while listeners.len() < expected {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = match rx.recv_timeout(left) {
                Ok(l) => l,
                Err(_) => {
                    let _ = child.kill();
                    let mut err = String::new();
                    child.stderr.take().unwrap().read_to_string(&mut err).ok();
                    panic!("netloop did not print {expected} listening lines; stderr:\n{err}");
                }
            };
            if let Some((svc, addr)) = line.split_once(" listening on ") {
                listeners.push((svc.to_string(), addr.to_string()));
            }
        }
        let stderr = child.stderr.take();
        Netloop { child, listeners, stderr }
    }

    /// The address of the first listener of `service`.
    pub fn addr(&self, service: &str) -> String {
        self.listeners.iter().find(|(s, _)| s == service).map(|(_, a)| a.clone()).expect("no such listener")
    }

    /// `host:port` of the first TCP listener of `service`, as a `SocketAddr`.
    pub fn tcp(&self, service: &str) -> std::net::SocketAddr {
        self.listeners
            .iter()
            .find(|(s, a)| s == service && !a.starts_with("unix:"))
            .map(|(_, a)| a.parse().unwrap())
            .expect("no tcp listener")
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Sends a signal (SIGTERM = 15, SIGINT = 2).
    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.pid(), sig) };
    }

    /// Waits (bounded) for the process to exit.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        wait_child(&mut self.child, limit)
    }

    /// Everything the process wrote to stderr (call after it exited or was killed).
    pub fn stderr(&mut self) -> String {
        let mut s = String::new();
        if let Some(mut e) = self.stderr.take() {
            e.read_to_string(&mut s).ok();
        }
        s
    }

    /// Resident set size in bytes, from /proc.
    pub fn rss(&self) -> u64 {
        rss_of(self.pid())
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Netloop {
    fn drop(&mut self) {
        self.kill();
    }
}

/// VmRSS of a process in bytes.
pub fn rss_of(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// Runs `node tests/node/SCRIPT ARGS`, bounded by `WAIT`; returns its output.
pub fn node(script: &str, args: &[&str]) -> Output {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/node").join(script);
    run_script("node", path, args)
}

/// Runs `INTERPRETER PATH ARGS` with piped output, killed if still running after `WAIT`.
pub fn run_script(interpreter: &str, path: PathBuf, args: &[&str]) -> Output {
    let mut child = Command::new(interpreter)
        .arg(path)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{interpreter} is required for these tests: {e}"));
    let deadline = Instant::now() + WAIT;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    child.wait_with_output().unwrap()
}

/// Asserts a Node script succeeded, showing its output otherwise.
pub fn assert_node_ok(out: &Output) {
    assert!(
        out.status.success(),
        "node script failed ({:?})\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A fresh path for a Unix socket in the temp dir.
pub fn unix_path(tag: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    std::env::temp_dir().join(format!("netloop-test-{}-{tag}-{n}.sock", std::process::id()))
}

/// Connects with a bounded read timeout so a missing reply fails the test, not hangs it.
pub fn connect(addr: std::net::SocketAddr) -> TcpStream {
    let s = TcpStream::connect_timeout(&addr, WAIT).expect("connect");
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.set_nodelay(true).unwrap();
    s
}

/// A connection plus a line reader on it.
pub fn connect_lines(addr: std::net::SocketAddr) -> (TcpStream, BufReader<TcpStream>) {
    let s = connect(addr);
    let r = BufReader::new(s.try_clone().expect("clone"));
    (s, r)
}

/// One client of a line protocol (chat lines, hub frames): a buffered reader and a writer on
/// the same TCP connection. Tests add their protocol's requests in their own `impl` blocks.
pub struct LineClient {
    pub reader: BufReader<TcpStream>,
    pub writer: TcpStream,
    /// Our own `ip:port`: how chat labels us, and our hub session id.
    pub id: String,
}

impl LineClient {
    /// Connects without reading anything.
    pub fn connect(addr: std::net::SocketAddr) -> LineClient {
        LineClient::over(connect(addr))
    }

    /// A client on an already connected stream.
    pub fn over(stream: TcpStream) -> LineClient {
        let id = stream.local_addr().expect("local addr").to_string();
        let writer = stream.try_clone().expect("clone");
        LineClient { reader: BufReader::new(stream), writer, id }
    }

    pub fn send(&mut self, data: impl AsRef<[u8]>) {
        self.writer.write_all(data.as_ref()).expect("write");
    }

    pub fn line(&mut self) -> String {
        read_line(&mut self.reader)
    }

    pub fn expect(&mut self, want: &str) {
        assert_eq!(self.line(), want, "{}: unexpected line", self.id);
    }

    /// The server must close now: EOF with nothing more before it.
    pub fn expect_eof(&mut self) {
        let mut rest = Vec::new();
        self.reader.read_to_end(&mut rest).expect("clean EOF");
        assert_eq!(String::from_utf8_lossy(&rest), "", "{}: bytes before EOF", self.id);
    }

    /// Reads lines until one satisfies `want`, skipping others (junk broadcasts); bounded by
    /// the read timeout and by `max_lines`.
    pub fn skip_until(&mut self, max_lines: usize, want: impl Fn(&str) -> bool) -> String {
        let mut buf = Vec::new();
        for _ in 0..max_lines {
            buf.clear();
            let n = self.reader.read_until(b'\n', &mut buf).expect("read");
            assert!(n > 0, "{}: EOF while waiting", self.id);
            let line = String::from_utf8(buf.clone()).expect("the server only sends UTF-8");
            let line = line.strip_suffix('\n').unwrap_or(&line);
            if want(line) {
                return line.to_string();
            }
        }
        panic!("{}: no matching line in {max_lines} lines", self.id);
    }
}

/// utime + stime in clock ticks, from the text of a `/proc/PID/stat` file.
pub fn cpu_ticks_in(stat: &str) -> u64 {
    // The command name (field 2) may hold spaces; the fields after its `)` are fixed.
    let f: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split_whitespace().collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

/// utime + stime of a process, in clock ticks.
pub fn cpu_ticks(pid: i32) -> u64 {
    cpu_ticks_in(&std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap())
}

/// Reads one `\n`-terminated line (without the terminator) from a buffered stream.
pub fn read_line<R: BufRead>(r: &mut R) -> String {
    let mut s = String::new();
    r.read_line(&mut s).expect("read line");
    assert!(s.ends_with('\n'), "connection ended mid-line or early: {s:?}");
    s.pop();
    s
}

/// Reads until EOF, returning everything received (panics on timeout or reset).
pub fn read_to_end(s: &mut TcpStream) -> Vec<u8> {
    let mut v = Vec::new();
    s.read_to_end(&mut v).expect("read to end");
    v
}

/// Writes all of `data`.
pub fn send(s: &mut TcpStream, data: &[u8]) {
    s.write_all(data).expect("write");
}

/// A deterministic pseudo-random byte pattern (xorshift), so echoes can be checked exactly.
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Events of one kind a server log accounts for: one per line containing `each`, plus the
/// counts of its rate-limit summaries (`N more ... {summary}`).
pub fn logged_events(log: &str, each: &str, summary: &str) -> u64 {
    let mut total = 0;
    for line in log.lines() {
        if line.contains(each) {
            total += 1;
        } else if line.contains(summary) {
            let after = line.split_once("] ").map_or(line, |(_, rest)| rest);
            let count = after.split_whitespace().next().and_then(|n| n.parse::<u64>().ok());
            total += count.expect("a summary starts with its count");
        }
    }
    total
}

/// Waits up to `limit` for `child` to exit; its status, or `None` if it is still running.
pub fn wait_child(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return Some(st);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A TCP port on 127.0.0.1 that was free a moment ago (for programs that must be told a port).
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    l.local_addr().unwrap().port()
}
