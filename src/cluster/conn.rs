//! One connection to Redis as a loop socket: connect, `AUTH`, for a subscriber `SUBSCRIBE`,
//! then pipelined commands whose replies are matched in order. It never blocks and owns no
//! thread: the owner routes the socket's events here and calls [`Conn::tick`] from a timer.
//!
//! Faults it handles itself: a connect or reply that takes longer than
//! [`Timing::reply_timeout`] (a hung Redis must not hang the node) drops the connection; a
//! dropped connection is retried with exponential back-off and jitter; a subscriber
//! re-subscribes once per connection. What it reports ([`ConnEvent`]) lets the owner re-assert
//! its state and count what the outage lost.

use std::collections::VecDeque;
use std::fmt;
use std::time::Duration;

use crate::addr::SocketAddress;
use crate::context::Context;
use crate::handler::SocketId;

use super::resp::{encode_command, Decoder, Limits, Value};

/// Where Redis is and how to log in.
#[derive(Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// TCP or Unix socket address.
    pub addr: SocketAddress,
    /// `AUTH` password, if the URL had one.
    pub password: Option<String>,
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The password stays out of logs.
        f.debug_struct("Endpoint")
            .field("addr", &self.addr)
            .field("password", &self.password.is_some())
            .finish()
    }
}

impl Endpoint {
    /// Parses `redis://[:PASSWORD@]HOST:PORT` (port 6379 when left out) or `unix:PATH`.
    pub fn parse(url: &str) -> Result<Endpoint, String> {
        if url.starts_with("unix:") {
            let addr: crate::addr::AddressSpec =
                url.parse().map_err(|e: crate::addr::AddressSpecError| e.to_string())?;
            let addr = addr.resolve_one().map_err(|e| e.to_string())?;
            return Ok(Endpoint { addr, password: None });
        }
        let Some(rest) = url.strip_prefix("redis://") else {
            return Err(format!(
                "invalid --cluster {url:?}: expected redis://[:PASSWORD@]HOST:PORT or unix:PATH"
            ));
        };
        let rest = rest.trim_end_matches('/');
        let (password, hostport) = match rest.rsplit_once('@') {
            Some((auth, hostport)) => {
                // `redis://:pw@h:p` (Redis's own form) or `redis://default:pw@h:p`.
                let pw = auth.split_once(':').map_or(auth, |(_, pw)| pw);
                (Some(pw.to_string()).filter(|p| !p.is_empty()), hostport)
            }
            None => (None, rest),
        };
        let hostport = if hostport.starts_with('[') && !hostport.contains("]:") || !hostport.contains(':') {
            format!("{hostport}:6379")
        } else {
            hostport.to_string()
        };
        let addr: crate::addr::AddressSpec =
            hostport.parse().map_err(|e: crate::addr::AddressSpecError| format!("invalid --cluster: {e}"))?;
        let addr = addr.resolve_one().map_err(|e| format!("--cluster {hostport}: {e}"))?;
        Ok(Endpoint { addr, password })
    }
}

/// Timeouts and back-off of a connection.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// Longest wait for a connect or for any reply before the connection is dropped.
    pub reply_timeout: Duration,
    /// First retry delay; doubles per failed attempt.
    pub backoff_base: Duration,
    /// Longest retry delay.
    pub backoff_max: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            reply_timeout: Duration::from_secs(2),
            backoff_base: Duration::from_millis(100),
            backoff_max: Duration::from_secs(2),
        }
    }
}

/// Most replies awaited at once: past it a command is refused rather than queued without bound.
pub const MAX_PENDING: usize = 64 * 1024;

/// Most bytes of commands queued for a Redis that does not read them fast enough: past it a
/// command is refused (a hung Redis is dropped after the reply timeout anyway).
pub const MAX_QUEUED_BYTES: usize = 8 * 1024 * 1024;

/// What a connection reports to its owner, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnEvent<T> {
    /// Ready: logged in (and, for a subscriber, subscribed to every channel once).
    Up,
    /// The reply to the command sent with this tag.
    Reply(T, Value),
    /// A pub/sub message (subscriber only).
    Message {
        /// The channel it was published on.
        channel: Vec<u8>,
        /// What was published.
        payload: Vec<u8>,
    },
    /// The connection was lost or could not be made; replies still awaited will not come.
    /// A retry follows after back-off.
    Down(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Not connected; the next attempt is due at this loop time.
    Waiting(Duration),
    /// Connect in progress since this loop time.
    Connecting(Duration),
    /// Connected, handshake replies awaited.
    Handshake,
    /// Usable.
    Ready,
    /// Closed for good by its owner: never retried.
    Closed,
}

/// A reply awaited: the owner's tag, or the connection's own (handshake, liveness ping).
#[derive(Debug)]
enum Awaited<T> {
    Owner(T),
    Own,
}

/// One Redis connection; `T` tags the owner's commands so replies find their purpose.
#[derive(Debug)]
pub struct Conn<T> {
    /// What the logs call it (`hub commands`, `chat subscriber`).
    name: String,
    endpoint: Endpoint,
    timing: Timing,
    /// Channels to subscribe to on every connection; empty for a command connection.
    channels: Vec<Vec<u8>>,
    socket: Option<SocketId>,
    state: State,
    decoder: Decoder,
    /// Replies awaited, oldest first, with the loop time each was sent.
    pending: VecDeque<(Awaited<T>, Duration)>,
    /// Subscribe confirmations still awaited on this connection.
    unconfirmed: usize,
    events: VecDeque<ConnEvent<T>>,
    /// Failed attempts since the last time it was ready.
    failures: u32,
    out: Vec<u8>,
    rng: u64,
    /// Connections made ready so far.
    pub connects: u64,
}

impl<T> Conn<T> {
    /// A command connection (not started: call [`Conn::tick`]).
    pub fn commands(name: String, endpoint: Endpoint, timing: Timing) -> Self {
        Self::new(name, endpoint, timing, Vec::new())
    }

    /// A subscriber to `channels`.
    pub fn subscriber(name: String, endpoint: Endpoint, timing: Timing, channels: Vec<Vec<u8>>) -> Self {
        Self::new(name, endpoint, timing, channels)
    }

    fn new(name: String, endpoint: Endpoint, timing: Timing, channels: Vec<Vec<u8>>) -> Self {
        Conn {
            name,
            endpoint,
            timing,
            channels,
            socket: None,
            state: State::Waiting(Duration::ZERO),
            decoder: Decoder::new(Limits::default()),
            pending: VecDeque::new(),
            unconfirmed: 0,
            events: VecDeque::new(),
            failures: 0,
            out: Vec::new(),
            rng: seed(),
            connects: 0,
        }
    }

    /// Whether `socket` is this connection's.
    pub fn owns(&self, socket: SocketId) -> bool {
        self.socket == Some(socket)
    }

    /// Whether commands can be sent now.
    pub fn is_ready(&self) -> bool {
        self.state == State::Ready
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<ConnEvent<T>> {
        self.events.pop_front()
    }

    /// Replies awaited.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Sends a command whose reply comes back as `ConnEvent::Reply(tag, ..)`. Returns false
    /// (and sends nothing) unless the connection is ready and under [`MAX_PENDING`] and
    /// [`MAX_QUEUED_BYTES`].
    pub fn send(&mut self, cx: &mut Context, tag: T, args: &[&[u8]]) -> bool {
        if self.state != State::Ready || self.pending.len() >= MAX_PENDING {
            return false;
        }
        if self.socket.is_some_and(|s| cx.buffer_size(s) >= MAX_QUEUED_BYTES) {
            return false;
        }
        self.write_command(cx, Awaited::Owner(tag), args);
        true
    }

    fn write_command(&mut self, cx: &mut Context, awaited: Awaited<T>, args: &[&[u8]]) {
        let Some(socket) = self.socket else { return };
        self.out.clear();
        encode_command(&mut self.out, args);
        // Pipelined: many commands of one turn leave in one write.
        cx.cork(socket);
        cx.write(socket, &self.out);
        self.pending.push_back((awaited, cx.elapsed()));
    }

    /// Timers: starts a due attempt, drops a connection whose connect or oldest reply is
    /// overdue. Call at least every [`Timing::reply_timeout`] / 4.
    pub fn tick(&mut self, cx: &mut Context) {
        let now = cx.elapsed();
        match self.state {
            State::Waiting(at) if now >= at => self.start(cx),
            State::Connecting(since) if now.saturating_sub(since) > self.timing.reply_timeout => {
                self.drop_connection(cx, format!("connect took longer than {:?}", self.timing.reply_timeout));
            }
            State::Handshake | State::Ready => {
                if let Some(&(_, sent)) = self.pending.front() {
                    if now.saturating_sub(sent) > self.timing.reply_timeout {
                        let why = format!("no reply within {:?} (Redis hung?)", self.timing.reply_timeout);
                        self.drop_connection(cx, why);
                    }
                }
            }
            _ => {}
        }
    }

    /// Liveness probe: a `PING` whose reply is awaited like any other, so a Redis that stops
    /// answering is noticed within the reply timeout even when the node has nothing to send.
    pub fn ping(&mut self, cx: &mut Context) {
        if self.state == State::Ready && self.pending.is_empty() {
            self.write_command(cx, Awaited::Own, &[b"PING"]);
        }
    }

    fn start(&mut self, cx: &mut Context) {
        let socket = cx.connect(&self.endpoint.addr);
        self.socket = Some(socket);
        self.state = State::Connecting(cx.elapsed());
        log::debug!("redis {}: connecting to {}", self.name, self.endpoint.addr);
    }

    /// The socket connected: log in and subscribe; ready once every reply is in.
    pub fn on_connect(&mut self, cx: &mut Context) {
        let Some(socket) = self.socket else { return };
        self.state = State::Handshake;
        let _ = cx.set_no_delay(socket, true);
        if let Some(pw) = self.endpoint.password.clone() {
            self.write_command(cx, Awaited::Own, &[b"AUTH", pw.as_bytes()]);
        }
        if !self.channels.is_empty() {
            let mut args: Vec<&[u8]> = vec![b"SUBSCRIBE"];
            args.extend(self.channels.iter().map(Vec::as_slice));
            self.out.clear();
            encode_command(&mut self.out, &args);
            cx.write(socket, &self.out);
            self.unconfirmed = self.channels.len();
        }
        self.maybe_ready(cx);
    }

    fn maybe_ready(&mut self, cx: &mut Context) {
        if self.state == State::Handshake && self.pending.is_empty() && self.unconfirmed == 0 {
            self.state = State::Ready;
            self.failures = 0;
            self.connects += 1;
            if self.connects > 1 {
                log::info!("redis {}: reconnected to {}", self.name, self.endpoint.addr);
            } else {
                log::info!("redis {}: connected to {}", self.name, self.endpoint.addr);
            }
            self.events.push_back(ConnEvent::Up);
            let _ = cx;
        }
    }

    /// Bytes from Redis.
    pub fn on_data(&mut self, cx: &mut Context, data: &[u8]) {
        self.decoder.feed(data);
        loop {
            match self.decoder.next_value() {
                Ok(Some(value)) => {
                    if let Err(why) = self.on_value(cx, value) {
                        return self.drop_connection(cx, why);
                    }
                }
                Ok(None) => return,
                Err(e) => return self.drop_connection(cx, e.to_string()),
            }
        }
    }

    fn on_value(&mut self, cx: &mut Context, value: Value) -> Result<(), String> {
        if !self.channels.is_empty() {
            if let Some(items) = value.items() {
                let kind = items.first().and_then(Value::bytes).unwrap_or_default();
                match kind {
                    b"message" if items.len() == 3 => {
                        let mut it = match value {
                            Value::Array(Some(v)) => v.into_iter(),
                            _ => unreachable!("checked above"),
                        };
                        let _ = it.next();
                        let channel = bulk(it.next());
                        let payload = bulk(it.next());
                        self.events.push_back(ConnEvent::Message { channel, payload });
                        return Ok(());
                    }
                    b"subscribe" => {
                        self.unconfirmed = self.unconfirmed.saturating_sub(1);
                        self.maybe_ready(cx);
                        return Ok(());
                    }
                    b"pong" => {}
                    _ => return Err(format!("unexpected push {:?}", String::from_utf8_lossy(kind))),
                }
            }
        }
        let Some((awaited, _)) = self.pending.pop_front() else {
            return Err("a reply nobody asked for".into());
        };
        match awaited {
            Awaited::Owner(tag) => self.events.push_back(ConnEvent::Reply(tag, value)),
            Awaited::Own => {
                if let Value::Error(e) = value {
                    // A wrong password or a refused command in the handshake: retrying at
                    // once would only repeat it, so back off like any failure.
                    return Err(format!("redis refused: {e}"));
                }
                self.maybe_ready(cx);
            }
        }
        Ok(())
    }

    /// Closes for good: what is queued is flushed, then FIN; no retry follows.
    pub fn close(&mut self, cx: &mut Context) {
        if let Some(socket) = self.socket {
            cx.end(socket);
        }
        self.state = State::Closed;
    }

    /// The socket closed (any reason).
    pub fn on_close(&mut self, cx: &mut Context) {
        if self.state == State::Closed {
            self.socket = None;
            return;
        }
        if self.socket.take().is_some() {
            let why = match self.state {
                State::Connecting(_) => "could not connect".to_string(),
                _ if !self.channels.is_empty() => {
                    "Redis closed the subscriber connection (a restart, or its client-output-buffer-limit \
                     for pubsub cut a subscriber that fell behind)"
                        .to_string()
                }
                _ => "Redis closed the connection".to_string(),
            };
            self.lost(cx, why);
        }
    }

    fn drop_connection(&mut self, cx: &mut Context, why: String) {
        if let Some(socket) = self.socket.take() {
            cx.destroy(socket);
        }
        self.lost(cx, why);
    }

    fn lost(&mut self, cx: &mut Context, why: String) {
        let was_ready = self.state == State::Ready;
        self.pending.clear();
        self.decoder.reset();
        self.unconfirmed = 0;
        self.failures = self.failures.saturating_add(1);
        let delay = self.backoff();
        self.state = State::Waiting(cx.elapsed() + delay);
        if was_ready || self.failures == 1 {
            log::warn!("redis {}: {why}; retrying in {} ms", self.name, delay.as_millis());
        } else {
            log::debug!("redis {}: {why}; retrying in {} ms", self.name, delay.as_millis());
        }
        self.events.push_back(ConnEvent::Down(why));
    }

    /// Exponential back-off with jitter: half the capped delay plus a random part of the
    /// other half, so nodes that lost Redis together do not retry in lockstep.
    fn backoff(&mut self) -> Duration {
        let exp = self.failures.saturating_sub(1).min(16);
        let full = self.timing.backoff_base.saturating_mul(1 << exp).min(self.timing.backoff_max);
        let half = full / 2;
        let jitter = (self.next_random() % 1000) as u32;
        half + half * jitter / 1000
    }

    fn next_random(&mut self) -> u64 {
        // xorshift64: jitter needs no quality, only independence between processes.
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng = x;
        x
    }
}

fn bulk(v: Option<Value>) -> Vec<u8> {
    match v {
        Some(Value::Bulk(Some(b))) => b,
        _ => Vec::new(),
    }
}

/// A per-process seed: the time and the pid.
pub(crate) fn seed() -> u64 {
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let s = (t.as_nanos() as u64) ^ (u64::from(std::process::id()) << 32) ^ 0x9E37_79B9_7F4A_7C15;
    if s == 0 {
        1
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_with_and_without_password() {
        let e = Endpoint::parse("redis://127.0.0.1:7000").unwrap();
        assert_eq!(e.addr.to_string(), "127.0.0.1:7000");
        assert_eq!(e.password, None);
        let e = Endpoint::parse("redis://:s3cret@127.0.0.1:7000/").unwrap();
        assert_eq!(e.password.as_deref(), Some("s3cret"));
        let e = Endpoint::parse("redis://default:pw@127.0.0.1").unwrap();
        assert_eq!(e.password.as_deref(), Some("pw"));
        assert_eq!(e.addr.port(), Some(6379));
        let e = Endpoint::parse("unix:/tmp/r.sock").unwrap();
        assert_eq!(e.addr.to_string(), "unix:/tmp/r.sock");
        assert!(Endpoint::parse("127.0.0.1:6379").is_err());
        assert!(Endpoint::parse("redis://127.0.0.1:notaport").is_err());
        assert!(!format!("{:?}", Endpoint::parse("redis://:s3cret@127.0.0.1:1").unwrap()).contains("s3cret"));
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_with_jitter() {
        let timing = Timing {
            reply_timeout: Duration::from_secs(1),
            backoff_base: Duration::from_millis(100),
            backoff_max: Duration::from_millis(800),
        };
        let mut c: Conn<()> = Conn::commands("t".into(), Endpoint::parse("unix:/x").unwrap(), timing);
        let mut seen = Vec::new();
        for n in 1..=8 {
            c.failures = n;
            let d = c.backoff();
            let full = Duration::from_millis(100 * (1 << (n - 1).min(3)));
            assert!(d >= full / 2 && d <= full, "attempt {n}: {d:?} vs {full:?}");
            seen.push(d);
        }
        assert!(seen.windows(2).any(|w| w[0] != w[1]));
    }
}
