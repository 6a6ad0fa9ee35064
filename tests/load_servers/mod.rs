//! Servers written for the load tests, with behaviour netloop's own services never show: a
//! pause on a fixed schedule (a server blocked 100 ms every second, as by a GC or a slow
//! disk) and a fixed cost per message (a server that cannot keep up). Plain blocking std
//! sockets, one thread per connection; every thread ends when its peer closes, the accept
//! thread when the server is dropped.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// When the server does its work.
#[derive(Debug, Clone, Copy, Default)]
pub struct Pace {
    /// Every `period` (from the server's start) it is unavailable for `stall` (0: never).
    pub period: Duration,
    pub stall: Duration,
    /// It spends this long on every chunk (echo) or line (chat) before answering.
    pub cost: Duration,
}

impl Pace {
    /// Blocked for `stall` at the start of every `period`.
    pub fn stalls(stall: Duration, period: Duration) -> Pace {
        Pace { period, stall, cost: Duration::ZERO }
    }

    /// `cost` per chunk or line, no stalls.
    pub fn costs(cost: Duration) -> Pace {
        Pace { cost, ..Pace::default() }
    }

    /// Waits as the schedule says before handling one chunk or line.
    fn wait(&self, epoch: Instant) {
        if !self.cost.is_zero() {
            std::thread::sleep(self.cost);
        }
        if !self.stall.is_zero() && !self.period.is_zero() {
            let into = Duration::from_nanos((epoch.elapsed().as_nanos() % self.period.as_nanos()) as u64);
            if into < self.stall {
                std::thread::sleep(self.stall - into);
            }
        }
    }
}

/// A running test server, stopped when dropped.
pub struct TestServer {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
}

impl TestServer {
    /// `HOST:PORT`, as `netloop load` takes it.
    pub fn target(&self) -> String {
        self.addr.to_string()
    }

    fn start(serve: impl Fn(TcpStream, Instant) + Send + Sync + 'static) -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a test server");
        let addr = listener.local_addr().expect("local addr");
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let serve = Arc::new(serve);
        let epoch = Instant::now();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stopping.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let _ = stream.set_nodelay(true);
                let serve = serve.clone();
                std::thread::spawn(move || serve(stream, epoch));
            }
        });
        TestServer { addr, stop }
    }

    /// An echo server: each chunk read is written back after `pace` allows.
    pub fn echo(pace: Pace) -> TestServer {
        Self::start(move |mut stream, epoch| {
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let n = match stream.read(&mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                pace.wait(epoch);
                if stream.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
        })
    }

    /// A line chat in the shape of netloop's: `* welcome ADDR, online now: N` on connect, and
    /// each line a client sends goes to every other client as `ADDR: line`, after `pace`.
    pub fn chat(pace: Pace) -> TestServer {
        let clients: Arc<Mutex<Vec<(SocketAddr, TcpStream)>>> = Arc::default();
        Self::start(move |stream, epoch| {
            let Ok(peer) = stream.peer_addr() else { return };
            let Ok(mut writer) = stream.try_clone() else { return };
            {
                let mut all = clients.lock().expect("clients lock");
                let welcome = format!("* welcome {peer}, online now: {}\n", all.len() + 1);
                if writer.write_all(welcome.as_bytes()).is_err() {
                    return;
                }
                all.push((peer, writer));
            }
            let mut lines = BufReader::new(stream);
            let mut line = Vec::new();
            loop {
                line.clear();
                match lines.read_until(b'\n', &mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
                if line.last() != Some(&b'\n') {
                    break;
                }
                pace.wait(epoch);
                let out = [format!("{peer}: ").as_bytes(), &line].concat();
                let mut all = clients.lock().expect("clients lock");
                all.retain_mut(|(addr, w)| *addr == peer || w.write_all(&out).is_ok());
            }
            clients.lock().expect("clients lock").retain(|(addr, _)| *addr != peer);
        })
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop so it sees the flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
    }
}
