//! Which local address each outbound connection uses.
//!
//! A TCP connection is named by (source IP, source port, destination IP, destination port), so
//! one source IP reaches one destination through at most the ephemeral port range (32768-60999
//! on Linux: ~28k ports). Every 127.0.0.0/8 address is local, so against a loopback target the
//! generator goes past that by itself: connections move to 127.0.0.2, then 127.0.0.3, ...
//! (`Context::connect_from`).
//!
//! It moves on after *half* the range, not all of it. Since Linux 4.6 `connect()` tries the
//! even ports first and leaves the odd ones to `bind()`; once the even half toward one
//! destination is taken, every further connect scans the whole half before finding an odd
//! port, which cut the connect rate here from ~30,000/s to ~1,000/s at ~14k connections.
//! `--source` replaces the automatic choice with the user's list, used round-robin.

use std::net::{IpAddr, Ipv4Addr};

use crate::addr::SocketAddress;

/// Where the ephemeral port range is, and the range used when it cannot be read.
const PORT_RANGE_FILE: &str = "/proc/sys/net/ipv4/ip_local_port_range";
const DEFAULT_PORT_RANGE: (u32, u32) = (32768, 60999);

/// The plan: which source each connection slot gets and how many slots fit.
#[derive(Debug, Clone)]
pub(crate) struct SourcePlan {
    kind: Kind,
    /// Connections one source address may carry to the target.
    per_source: usize,
    /// Automatic spreading moves to the next address after this many (the fast half).
    spread_every: usize,
    /// Automatic spreading starts this many addresses past 127.0.0.1: one process of a split
    /// run (`--workers`) keeps clear of the addresses the others use.
    first: usize,
}

#[derive(Debug, Clone)]
enum Kind {
    /// Unix sockets: no ports, no limit from addresses.
    Unlimited,
    /// One source (the kernel's choice), `per_source` connections.
    Default,
    /// Loopback IPv4: the default source, then 127.0.0.2, 127.0.0.3, ... in turn.
    LoopbackSpread,
    /// The user's list, round-robin.
    Explicit(Vec<IpAddr>),
}

impl SourcePlan {
    /// Plans sources for connections to `target`. `explicit` is `--source`, if given.
    pub(crate) fn new(target: &SocketAddress, explicit: Option<&[IpAddr]>) -> Self {
        let per_source = ports_per_source();
        let kind = match (target, explicit) {
            (SocketAddress::Inet(_), Some(list)) if !list.is_empty() => Kind::Explicit(list.to_vec()),
            (SocketAddress::Inet(a), _) if matches!(a.ip(), IpAddr::V4(v4) if v4.is_loopback()) => {
                Kind::LoopbackSpread
            }
            (SocketAddress::Inet(_), _) => Kind::Default,
            _ => Kind::Unlimited,
        };
        SourcePlan { kind, per_source, spread_every: (per_source / 2).max(1), first: 0 }
    }

    /// The plan of process `part` of `parts` that split a run, each opening up to
    /// `connections`: automatic sources start past the addresses of the processes before it;
    /// an explicit list is dealt out (`part`, `part + parts`, ...) when it has enough entries.
    pub(crate) fn for_part(mut self, part: usize, parts: usize, connections: usize) -> Self {
        match &mut self.kind {
            Kind::LoopbackSpread => {
                let per_part = connections.div_ceil(self.spread_every).max(1);
                self.first = part * per_part;
            }
            Kind::Explicit(list) if list.len() >= parts => {
                *list = list.iter().skip(part).step_by(parts).copied().collect();
            }
            _ => {}
        }
        self
    }

    /// The source for connection slot `slot` (`None`: let the kernel choose).
    pub(crate) fn source_for(&self, slot: usize) -> Option<IpAddr> {
        match &self.kind {
            Kind::Unlimited | Kind::Default => None,
            Kind::LoopbackSpread => {
                let k = slot / self.spread_every + self.first;
                // 127.0.0.1 + k, kept inside 127.0.0.0/8.
                (k > 0).then(|| IpAddr::V4(Ipv4Addr::from(u32::from(Ipv4Addr::new(127, 0, 0, 1)) + k as u32)))
            }
            Kind::Explicit(list) => Some(list[slot % list.len()]),
        }
    }

    /// How many connections the plan can carry to one destination.
    pub(crate) fn capacity(&self) -> usize {
        match &self.kind {
            Kind::Unlimited => usize::MAX,
            Kind::Default => self.per_source,
            // 127.0.0.1 ..= 127.255.255.254
            Kind::LoopbackSpread => self.spread_every.saturating_mul((1 << 24) - 2),
            Kind::Explicit(list) => self.per_source.saturating_mul(list.len()),
        }
    }

    /// Why the plan stops at `capacity()` connections, for the report.
    pub(crate) fn limit_reason(&self) -> String {
        let per = crate::load::stats::fmt_count(self.per_source as u64);
        match &self.kind {
            Kind::Explicit(list) => format!(
                "ephemeral ports: {} source address(es) x ~{per} ports (net.ipv4.ip_local_port_range); \
                 add more with --source",
                list.len()
            ),
            _ => format!(
                "ephemeral ports: one source address carries ~{per} connections to one destination \
                 (net.ipv4.ip_local_port_range); add source addresses with --source"
            ),
        }
    }

    /// The source addresses the first `n` connections use, for the report (`127.0.0.1 (default),
    /// 127.0.0.2`), `None` when only the kernel's default is used.
    pub(crate) fn describe(&self, n: usize) -> Option<String> {
        match &self.kind {
            Kind::LoopbackSpread if self.first > 0 => {
                let first = self.source_for(0).map_or_else(String::new, |ip| ip.to_string());
                let last = self.source_for(n.max(1) - 1).map_or_else(String::new, |ip| ip.to_string());
                Some(if first == last {
                    format!("{first} (automatic)")
                } else {
                    format!("{first} .. {last} (automatic)")
                })
            }
            Kind::LoopbackSpread if n > self.spread_every => {
                let last = self.source_for(n - 1).map_or_else(String::new, |ip| ip.to_string());
                Some(if last == "127.0.0.2" {
                    "default, 127.0.0.2 (automatic)".to_string()
                } else {
                    format!("default, 127.0.0.2 .. {last} (automatic)")
                })
            }
            Kind::Explicit(list) => {
                let used: Vec<String> = list.iter().take(n.max(1)).map(IpAddr::to_string).collect();
                Some(used.join(","))
            }
            _ => None,
        }
    }
}

/// Ports one source address can use toward one destination: the ephemeral range less a small
/// margin for whatever else is connected to that same destination.
fn ports_per_source() -> usize {
    let (lo, hi) = std::fs::read_to_string(PORT_RANGE_FILE)
        .ok()
        .and_then(|s| {
            let mut it = s.split_whitespace().map(|p| p.parse::<u32>().ok());
            Some((it.next()??, it.next()??))
        })
        .filter(|(lo, hi)| lo <= hi)
        .unwrap_or(DEFAULT_PORT_RANGE);
    let range = (hi - lo + 1) as usize;
    range - range / 64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inet(s: &str) -> SocketAddress {
        SocketAddress::Inet(s.parse().expect("literal"))
    }

    #[test]
    fn loopback_targets_spread_over_127_addresses_past_half_a_port_range() {
        let plan = SourcePlan::new(&inet("127.0.0.1:80"), None);
        let per = plan.spread_every;
        assert!(per <= plan.per_source / 2);
        assert!(per > 1000, "{per}");
        assert_eq!(plan.source_for(0), None);
        assert_eq!(plan.source_for(per - 1), None);
        assert_eq!(plan.source_for(per), Some("127.0.0.2".parse().expect("ip")));
        assert_eq!(plan.source_for(2 * per), Some("127.0.0.3".parse().expect("ip")));
        assert_eq!(plan.source_for(300 * per), Some("127.0.1.45".parse().expect("ip")));
        assert!(plan.capacity() > 1_000_000);
    }

    #[test]
    fn the_processes_of_a_split_run_use_separate_source_addresses() {
        let per = SourcePlan::new(&inet("127.0.0.1:80"), None).spread_every;
        let part = |i| SourcePlan::new(&inet("127.0.0.1:80"), None).for_part(i, 3, per + 1);
        assert_eq!(part(0).source_for(0), None);
        assert_eq!(part(0).source_for(per), Some("127.0.0.2".parse().expect("ip")));
        assert_eq!(part(1).source_for(0), Some("127.0.0.3".parse().expect("ip")));
        assert_eq!(part(2).source_for(per), Some("127.0.0.6".parse().expect("ip")));
        let list: Vec<IpAddr> = (1..=4).map(|i| format!("127.0.0.{i}").parse().expect("ip")).collect();
        let p1 = SourcePlan::new(&inet("127.0.0.1:80"), Some(&list)).for_part(1, 2, 10);
        assert_eq!((p1.source_for(0), p1.source_for(1)), (Some(list[1]), Some(list[3])));
    }

    #[test]
    fn explicit_sources_are_used_round_robin() {
        let list: Vec<IpAddr> = vec!["127.0.0.5".parse().expect("ip"), "127.0.0.6".parse().expect("ip")];
        let plan = SourcePlan::new(&inet("127.0.0.1:80"), Some(&list));
        assert_eq!(plan.source_for(0), Some(list[0]));
        assert_eq!(plan.source_for(1), Some(list[1]));
        assert_eq!(plan.source_for(2), Some(list[0]));
        assert_eq!(plan.capacity(), 2 * plan.per_source);
        assert_eq!(plan.describe(10).as_deref(), Some("127.0.0.5,127.0.0.6"));
    }

    #[test]
    fn other_targets_use_the_default_source_and_unix_has_no_limit() {
        let plan = SourcePlan::new(&inet("[::1]:80"), None);
        assert_eq!(plan.source_for(100_000), None);
        assert_eq!(plan.capacity(), plan.per_source);
        let unix = SourcePlan::new(&SocketAddress::Unix("/tmp/x".into()), None);
        assert_eq!(unix.capacity(), usize::MAX);
        assert_eq!(unix.source_for(5), None);
    }
}
