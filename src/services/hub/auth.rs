//! The hub's `--hub-token` check, and the throttle on sources that keep failing it.
//!
//! The comparison is on keyed digests, so its time depends neither on how much of a guess was
//! right nor on the secret's length. Failures are counted per source (an IPv4 address, an IPv6
//! /64, or all Unix-socket peers together); a source that fails [`FAILURES_ALLOWED`] times
//! within [`FAILURE_WINDOW`] is refused for [`BLOCK_FOR`], correct token or not, so guessing
//! runs at a few attempts a minute instead of thousands a second. The table of sources is
//! bounded ([`MAX_SOURCES`]).

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::net::IpAddr;
use std::time::Duration;

use crate::addr::SocketAddress;

/// Failed attempts a source may make within `FAILURE_WINDOW`; one more blocks it.
pub const FAILURES_ALLOWED: u32 = 5;
/// How long failures are remembered, counted from a source's first failure.
pub const FAILURE_WINDOW: Duration = Duration::from_secs(10);
/// How long a blocked source is refused.
pub const BLOCK_FOR: Duration = Duration::from_secs(10);
/// Most sources tracked at once (about 64 bytes each). When full, forgotten first are the
/// sources whose failures have expired, then the unblocked ones whose windows started
/// earliest; blocked sources go last, those whose block ends first before the others.
pub const MAX_SOURCES: usize = 4096;

/// The secret, kept as two keyed SipHash digests (random keys per process).
#[derive(Debug)]
pub struct TokenCheck {
    keys: [RandomState; 2],
    digest: [u64; 2],
    secret: String,
}

impl TokenCheck {
    /// A check against `secret`.
    pub fn new(secret: &str) -> TokenCheck {
        let keys = [RandomState::new(), RandomState::new()];
        let digest = [keys[0].hash_one(secret.as_bytes()), keys[1].hash_one(secret.as_bytes())];
        TokenCheck { keys, digest, secret: secret.to_string() }
    }

    /// Whether `given` is the secret. The digests are compared without a branch; only when
    /// they match (the secret, or a 128-bit collision) are the texts compared themselves.
    pub fn matches(&self, given: &str) -> bool {
        let a = self.keys[0].hash_one(given.as_bytes());
        let b = self.keys[1].hash_one(given.as_bytes());
        let diff = std::hint::black_box((a ^ self.digest[0]) | (b ^ self.digest[1]));
        diff == 0 && given == self.secret
    }
}

/// Where attempts come from, as far as throttling is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    /// An IPv4 address, or the /64 prefix of an IPv6 address (one host usually has a whole
    /// /64, so single IPv6 addresses would cost an attacker nothing to change).
    Ip(IpAddr),
    /// Any Unix-socket peer: they have no address to tell apart.
    Local,
}

impl Source {
    /// The source of a peer; `None` when the address is unknown (the peer already left).
    pub fn of(peer: Option<SocketAddress>) -> Option<Source> {
        match peer? {
            SocketAddress::Inet(a) => Some(Source::Ip(match a.ip() {
                IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                    Some(v4) => IpAddr::V4(v4),
                    None => IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into()),
                },
                v4 => v4,
            })),
            SocketAddress::Unix(_) | SocketAddress::UnnamedUnix => Some(Source::Local),
        }
    }
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Ip(IpAddr::V6(v6)) => write!(f, "{v6}/64"),
            Source::Ip(ip) => write!(f, "{ip}"),
            Source::Local => f.write_str("unix peers"),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Record {
    window_start: Duration,
    failures: u32,
    blocked_until: Option<Duration>,
}

impl Record {
    /// Nothing left to remember at `now`: the block is over, or the failures have expired.
    fn expired(&self, now: Duration) -> bool {
        match self.blocked_until {
            Some(until) => until <= now,
            None => self.window_start + FAILURE_WINDOW <= now,
        }
    }
}

/// What a failure did to its source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Counted: this many failures in the current window.
    Counted(u32),
    /// This failure blocked the source.
    Blocked,
}

/// Failed attempts per source; `now` is always the loop's elapsed time.
#[derive(Debug, Default)]
pub struct AuthThrottle {
    sources: HashMap<Source, Record>,
}

impl AuthThrottle {
    /// Whether `source` is blocked at `now`, and if so for how much longer.
    pub fn blocked(&mut self, source: Source, now: Duration) -> Option<Duration> {
        let record = self.sources.get(&source)?;
        match record.blocked_until {
            Some(until) if until > now => Some(until - now),
            _ => {
                if record.expired(now) {
                    self.sources.remove(&source);
                }
                None
            }
        }
    }

    /// Counts a failed attempt from `source`.
    pub fn failed(&mut self, source: Source, now: Duration) -> Failure {
        if !self.sources.contains_key(&source) && self.sources.len() >= MAX_SOURCES {
            self.make_room(now);
        }
        let fresh = Record { window_start: now, failures: 0, blocked_until: None };
        let record = self.sources.entry(source).or_insert(fresh);
        if record.expired(now) {
            *record = fresh;
        }
        record.failures += 1;
        if record.failures > FAILURES_ALLOWED {
            // When the block ends the record has expired, and the next failure starts afresh.
            record.blocked_until = Some(now + BLOCK_FOR);
            return Failure::Blocked;
        }
        Failure::Counted(record.failures)
    }

    /// A source got the token right: its earlier slips are forgotten.
    pub fn succeeded(&mut self, source: Source) {
        self.sources.remove(&source);
    }

    /// Sources tracked now.
    #[cfg(test)]
    pub fn tracked(&self) -> usize {
        self.sources.len()
    }

    /// Frees slots when the table is full: the expired records, and if that is not enough an
    /// eighth of the table in eviction order, so the O(tracked) pass runs at most once per
    /// `MAX_SOURCES / 8` new sources.
    fn make_room(&mut self, now: Duration) {
        self.sources.retain(|_, r| !r.expired(now));
        if self.sources.len() < MAX_SOURCES {
            return;
        }
        let mut order: Vec<_> = self
            .sources
            .iter()
            .map(|(s, r)| ((r.blocked_until.is_some(), r.blocked_until, r.window_start), *s))
            .collect();
        let evict = MAX_SOURCES / 8;
        order.select_nth_unstable_by_key(evict - 1, |(key, _)| *key);
        for (_, source) in &order[..evict] {
            self.sources.remove(source);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Source {
        Source::Ip(s.parse().expect("ip"))
    }

    #[test]
    fn token_check() {
        let check = TokenCheck::new("s3cret");
        assert!(check.matches("s3cret"));
        for wrong in ["s3cre", "s3creT", "", "s3cret ", "s3cret\0"] {
            assert!(!check.matches(wrong), "{wrong:?}");
        }
        assert!(TokenCheck::new("").matches(""));
    }

    #[test]
    fn sources() {
        let v6: std::net::SocketAddr = "[2001:db8::1:2:3:4]:80".parse().expect("addr");
        assert_eq!(Source::of(Some(SocketAddress::Inet(v6))), Some(ip("2001:db8::")));
        assert_eq!(ip("2001:db8::").to_string(), "2001:db8::/64");
        let mapped: std::net::SocketAddr = "[::ffff:10.0.0.1]:80".parse().expect("addr");
        assert_eq!(Source::of(Some(SocketAddress::Inet(mapped))), Some(ip("10.0.0.1")));
        assert_eq!(Source::of(Some(SocketAddress::UnnamedUnix)), Some(Source::Local));
        assert_eq!(Source::of(None), None);
    }

    #[test]
    fn blocks_after_the_allowed_failures_and_releases() {
        let mut t = AuthThrottle::default();
        let (a, b) = (ip("10.0.0.1"), ip("10.0.0.2"));
        let t0 = Duration::from_secs(100);
        for n in 1..=FAILURES_ALLOWED {
            assert_eq!(t.blocked(a, t0), None);
            assert_eq!(t.failed(a, t0), Failure::Counted(n));
        }
        assert_eq!(t.failed(a, t0), Failure::Blocked);
        assert_eq!(t.blocked(a, t0), Some(BLOCK_FOR));
        assert_eq!(t.blocked(b, t0), None, "other sources are not affected");
        let later = t0 + BLOCK_FOR - Duration::from_millis(1);
        assert_eq!(t.blocked(a, later), Some(Duration::from_millis(1)));
        let released = t0 + BLOCK_FOR;
        assert_eq!(t.blocked(a, released), None);
        // A fresh window after the block.
        assert_eq!(t.failed(a, released), Failure::Counted(1));
        t.succeeded(a);
        assert_eq!(t.tracked(), 0);
    }

    #[test]
    fn failures_expire_with_their_window() {
        let mut t = AuthThrottle::default();
        let a = ip("10.0.0.1");
        let t0 = Duration::from_secs(5);
        for _ in 0..FAILURES_ALLOWED {
            t.failed(a, t0);
        }
        assert_eq!(t.failed(a, t0 + FAILURE_WINDOW), Failure::Counted(1));
        assert_eq!(t.blocked(a, t0 + FAILURE_WINDOW * 3), None);
        assert_eq!(t.tracked(), 0, "an expired record is forgotten when looked at");
    }

    #[test]
    fn the_table_is_bounded_and_keeps_blocked_sources() {
        let mut t = AuthThrottle::default();
        let now = Duration::from_secs(1);
        let blocked = ip("10.255.255.255");
        for _ in 0..=FAILURES_ALLOWED {
            t.failed(blocked, now);
        }
        for i in 0..(2 * MAX_SOURCES as u32) {
            t.failed(Source::Ip(IpAddr::V4(i.into())), now);
            assert!(t.tracked() <= MAX_SOURCES);
        }
        assert!(t.blocked(blocked, now).is_some(), "a blocked source is not evicted by a flood of new ones");
    }
}
