//! Runs an `EventLoop` with a test handler on its own thread and records Node events, so
//! tests can drive it with ordinary blocking sockets and then check what the loop emitted.
#![allow(dead_code)]

use std::io;
use std::net::SocketAddr;
use std::sync::mpsc;
use std::time::Duration;

use netloop::{Context, EventLoop, Handler, ServerId, ServerOptions, SocketAddress, SocketError, SocketId};

/// Bound on how long a test loop may run.
pub const WAIT: Duration = Duration::from_secs(20);

/// One recorded event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ev {
    Connection,
    Connect,
    Data(usize),
    End,
    Drain,
    Timeout,
    /// Node's `'error'`: which error, its `code`, its message.
    Error(Cause, Option<&'static str>, String),
    Close(bool),
}

/// Which [`SocketError`] a socket closed with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cause {
    Io(io::ErrorKind),
    OutputLimit,
    SoftOutputLimit,
    WriteAfterEnd,
    InputCut,
}

impl Ev {
    /// The `'error'` event `on_close` reports with `e`.
    pub fn error(e: &SocketError) -> Ev {
        let cause = match e {
            SocketError::Io(e) => Cause::Io(e.kind()),
            SocketError::OutputLimit { .. } => Cause::OutputLimit,
            SocketError::SoftOutputLimit { .. } => Cause::SoftOutputLimit,
            SocketError::WriteAfterEnd => Cause::WriteAfterEnd,
            SocketError::InputCut(_) => Cause::InputCut,
            other => panic!("a socket error the tests do not know: {other}"),
        };
        Ev::Error(cause, e.code(), e.to_string())
    }
}

/// Events per socket, in order of emission.
#[derive(Debug, Default)]
pub struct Log {
    pub events: Vec<(SocketId, Ev)>,
}

impl Log {
    pub fn push(&mut self, id: SocketId, ev: Ev) {
        self.events.push((id, ev));
    }

    /// Records `on_close` as Node emits it: `'error'` (if any), then `'close'(hadError)`.
    pub fn close(&mut self, id: SocketId, error: Option<&SocketError>) {
        if let Some(e) = error {
            self.push(id, Ev::error(e));
        }
        self.push(id, Ev::Close(error.is_some()));
    }

    /// Events of one socket.
    pub fn of(&self, id: SocketId) -> Vec<Ev> {
        self.events.iter().filter(|(s, _)| *s == id).map(|(_, e)| e.clone()).collect()
    }

    /// Sockets in order of first appearance.
    pub fn sockets(&self) -> Vec<SocketId> {
        let mut v: Vec<SocketId> = Vec::new();
        for (id, _) in &self.events {
            if !v.contains(id) {
                v.push(*id);
            }
        }
        v
    }

    pub fn count(&self, id: SocketId, pred: impl Fn(&Ev) -> bool) -> usize {
        self.of(id).iter().filter(|e| pred(e)).count()
    }

    /// Node's guarantees for every socket: `close` exactly once and last; `error` only right
    /// before `close(true)`, and `close(true)` only after an `error`.
    pub fn check_invariants(&self) {
        for id in self.sockets() {
            let evs = self.of(id);
            let closes: Vec<usize> =
                evs.iter().enumerate().filter(|(_, e)| matches!(e, Ev::Close(_))).map(|(i, _)| i).collect();
            assert_eq!(closes.len(), 1, "socket {id:?}: close not exactly once: {evs:?}");
            assert_eq!(closes[0], evs.len() - 1, "socket {id:?}: close not last: {evs:?}");
            let had_error = matches!(evs.last(), Some(Ev::Close(true)));
            let errors = evs.iter().filter(|e| matches!(e, Ev::Error(..))).count();
            assert_eq!(errors, had_error as usize, "socket {id:?}: error/close(had_error) mismatch: {evs:?}");
            if had_error {
                assert!(matches!(evs[evs.len() - 2], Ev::Error(..)), "error not right before close: {evs:?}");
            }
        }
    }
}

/// Starts a loop on its own thread listening on `addr` with `options`, runs the handler
/// `make` builds until the loop has nothing left, and hands the handler back.
pub fn spawn<H, F>(addr: &str, options: ServerOptions, make: F) -> (SocketAddress, mpsc::Receiver<H>)
where
    H: Handler + Send + 'static,
    F: FnOnce(&mut Context, ServerId) -> H + Send + 'static,
{
    let target = match addr.strip_prefix("unix:") {
        Some(p) => SocketAddress::Unix(p.into()),
        None => SocketAddress::Inet(addr.parse::<SocketAddr>().unwrap()),
    };
    let (addr_tx, addr_rx) = mpsc::channel();
    let (done_tx, done_rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut el = EventLoop::new().unwrap();
        let cx = el.context();
        let server = cx.listen(&target, options).unwrap();
        addr_tx.send(cx.server_address(server).unwrap().clone()).unwrap();
        let mut h = make(cx, server);
        el.run(&mut h).unwrap();
        let _ = done_tx.send(h);
    });
    (addr_rx.recv_timeout(WAIT).unwrap(), done_rx)
}

/// Waits for the loop to finish and returns its handler.
pub fn finish<H>(rx: mpsc::Receiver<H>) -> H {
    rx.recv_timeout(WAIT).expect("loop did not finish in time")
}

pub fn inet(a: &SocketAddress) -> SocketAddr {
    match a {
        SocketAddress::Inet(a) => *a,
        other => panic!("not inet: {other}"),
    }
}
