//! A private `redis-server` per test: on a Unix socket in a fresh temp dir (or a free loopback
//! port when a test needs TCP), no persistence, killed on drop. A machine without
//! `redis-server` fails the test loudly with the install command; nothing is skipped.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::WAIT;

/// Where a test's Redis listens.
#[derive(Debug, Clone)]
pub enum Listen {
    /// A Unix socket (the default: no port to race for).
    Unix(PathBuf),
    /// A loopback TCP port.
    Tcp(u16),
}

/// A running private `redis-server`, killed on drop.
pub struct Redis {
    child: Option<Child>,
    dir: PathBuf,
    listen: Listen,
    extra: Vec<String>,
}

/// Fails the test with the install command when `redis-server` is missing.
pub fn require_redis_server() {
    let found = Command::new("redis-server")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        found,
        "redis-server is not installed; the cluster tests need it. Install it with \
         `sudo apt-get install -y redis-server` (scripts/test does this for you)"
    );
}

fn fresh_dir() -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("netloop-redis-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir for redis");
    dir
}

impl Redis {
    /// A Redis on a Unix socket in a fresh temp dir.
    pub fn start() -> Redis {
        Self::start_with(&[])
    }

    /// Like [`Redis::start`], with extra `redis-server` arguments (`--requirepass`, ...).
    pub fn start_with(extra: &[&str]) -> Redis {
        let dir = fresh_dir();
        let listen = Listen::Unix(dir.join("redis.sock"));
        Self::launch(dir, listen, extra.iter().map(|s| s.to_string()).collect())
    }

    /// A Redis on the Unix socket `path` (which must not exist yet).
    pub fn start_at(path: &Path) -> Redis {
        Self::launch(fresh_dir(), Listen::Unix(path.to_path_buf()), Vec::new())
    }

    /// A Redis on a free loopback TCP port.
    pub fn start_tcp(extra: &[&str]) -> Redis {
        let dir = fresh_dir();
        Self::launch(dir, Listen::Tcp(super::free_port()), extra.iter().map(|s| s.to_string()).collect())
    }

    fn launch(dir: PathBuf, listen: Listen, extra: Vec<String>) -> Redis {
        require_redis_server();
        let mut redis = Redis { child: None, dir, listen, extra };
        redis.spawn();
        redis
    }

    fn spawn(&mut self) {
        let mut cmd = Command::new("redis-server");
        cmd.args(["--save", "", "--appendonly", "no", "--daemonize", "no", "--loglevel", "warning"]);
        cmd.arg("--dir").arg(&self.dir);
        match &self.listen {
            Listen::Unix(path) => {
                cmd.args(["--port", "0", "--unixsocket"]).arg(path).args(["--unixsocketperm", "700"]);
            }
            Listen::Tcp(port) => {
                cmd.args(["--bind", "127.0.0.1", "--port", &port.to_string()]);
            }
        }
        cmd.args(&self.extra);
        cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
        let child = cmd.spawn().expect("spawn redis-server");
        self.child = Some(child);
        let deadline = Instant::now() + WAIT;
        loop {
            if self.try_ping() {
                return;
            }
            if let Some(st) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("redis-server exited at start ({st}); args: {:?}", self.extra);
            }
            assert!(Instant::now() < deadline, "redis-server did not answer PING within {WAIT:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn try_ping(&self) -> bool {
        let password = self.password();
        self.try_commands(password.as_deref(), &["PING"]).is_some_and(|r| r == "+PONG")
    }

    fn password(&self) -> Option<String> {
        let at = self.extra.iter().position(|a| a == "--requirepass")?;
        self.extra.get(at + 1).cloned()
    }

    /// The `--cluster` argument that reaches this Redis (with its password, if any).
    pub fn url(&self) -> String {
        match (&self.listen, self.password()) {
            (Listen::Unix(path), _) => format!("unix:{}", path.display()),
            (Listen::Tcp(port), None) => format!("redis://127.0.0.1:{port}"),
            (Listen::Tcp(port), Some(p)) => format!("redis://:{p}@127.0.0.1:{port}"),
        }
    }

    /// The Unix socket path, for a Unix-socket Redis.
    pub fn socket_path(&self) -> Option<&Path> {
        match &self.listen {
            Listen::Unix(p) => Some(p),
            Listen::Tcp(_) => None,
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().map_or(0, |c| c.id() as i32)
    }

    /// Stops Redis (SIGKILL: a crash, nothing saved, which is moot with `--save ''`).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Listen::Unix(p) = &self.listen {
            let _ = std::fs::remove_file(p);
        }
    }

    /// Starts it again on the same address, empty.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// Runs one command and returns its reply in RESP's first line (`+OK`, `:3`, `$5` ...),
    /// with a bulk string's body appended after a space.
    pub fn command(&self, args: &[&str]) -> String {
        let password = self.password();
        self.try_commands(password.as_deref(), args)
            .unwrap_or_else(|| panic!("redis command {args:?} failed"))
    }

    fn try_commands(&self, password: Option<&str>, args: &[&str]) -> Option<String> {
        let mut out = Vec::new();
        if let Some(p) = password {
            encode(&mut out, &["AUTH", p]);
        }
        encode(&mut out, args);
        let (mut reader, mut writer): (Box<dyn BufRead>, Box<dyn Write>) = match &self.listen {
            Listen::Unix(path) => {
                let s = UnixStream::connect(path).ok()?;
                s.set_read_timeout(Some(WAIT)).ok()?;
                (Box::new(BufReader::new(s.try_clone().ok()?)), Box::new(s))
            }
            Listen::Tcp(port) => {
                let s = std::net::TcpStream::connect(("127.0.0.1", *port)).ok()?;
                s.set_read_timeout(Some(WAIT)).ok()?;
                (Box::new(BufReader::new(s.try_clone().ok()?)), Box::new(s))
            }
        };
        writer.write_all(&out).ok()?;
        if password.is_some() {
            let mut line = String::new();
            reader.read_line(&mut line).ok()?;
        }
        let mut line = String::new();
        reader.read_line(&mut line).ok()?;
        let line = line.trim_end().to_string();
        if let Some(len) = line.strip_prefix('$').and_then(|n| n.parse::<usize>().ok()) {
            let mut body = vec![0; len + 2];
            reader.read_exact(&mut body).ok()?;
            return Some(format!("{line} {}", String::from_utf8_lossy(&body[..len])));
        }
        Some(line)
    }

    /// Waits (bounded) until `check` holds for the reply of `args`.
    pub fn wait_for(&self, args: &[&str], what: &str, check: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let reply = self.command(args);
            if check(&reply) {
                return reply;
            }
            assert!(Instant::now() < deadline, "redis never showed {what}; last reply to {args:?}: {reply}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One command, encoded by the codec the bus itself uses.
fn encode(out: &mut Vec<u8>, args: &[&str]) {
    let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
    netloop::cluster::resp::encode_command(out, &args);
}
