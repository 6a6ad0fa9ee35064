//! The serve counters as one value: logged by a process, sent by a worker to its supervisor,
//! summed over workers.

use std::fmt;

use crate::context::Context;

/// A snapshot of the counters `netloop serve` logs (`stats:` lines).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Connected clients now.
    pub connections: u64,
    /// Connections accepted since start.
    pub accepted: u64,
    /// Refused by the connection cap.
    pub rejected: u64,
    /// Refused for want of a file descriptor.
    pub rejected_no_fd: u64,
    /// Disconnected past the output limit.
    pub output_limit: u64,
    /// Disconnected for an over-long line or frame.
    pub input_limit: u64,
    /// Cut for holding the most when input held by all passed its total.
    pub input_total: u64,
    /// Cut for a line or frame that did not complete in time.
    pub input_timeout: u64,
    /// Closed for idleness or a missed registration.
    pub timeout: u64,
    /// Broadcast senders stalled.
    pub sender_stalls: u64,
    /// Time senders spent stalled, ms.
    pub sender_stall_ms: u64,
    /// Failed hub-token checks.
    pub auth_failures: u64,
    /// Refused for failing the token check too often.
    pub auth_throttled: u64,
    /// Unfinished input held now, bytes.
    pub input_held: u64,
    /// Bytes read.
    pub bytes_in: u64,
    /// Bytes written.
    pub bytes_out: u64,
}

impl Counters {
    /// The counters of the loop behind `cx`.
    pub fn of(cx: &Context) -> Counters {
        let st = cx.stats();
        Counters {
            connections: cx.socket_count() as u64,
            accepted: st.accepted,
            rejected: st.rejected,
            rejected_no_fd: st.rejected_no_fd,
            output_limit: st.output_limit_disconnects,
            input_limit: st.input_limit_disconnects,
            input_total: st.input_total_disconnects,
            input_timeout: st.input_timeout_disconnects,
            timeout: st.timeout_disconnects,
            sender_stalls: st.sender_stalls,
            sender_stall_ms: st.sender_stall_ms,
            auth_failures: st.auth_failures,
            auth_throttled: st.auth_throttled,
            input_held: cx.total_held_input() as u64,
            bytes_in: st.bytes_in,
            bytes_out: st.bytes_out,
        }
    }

    /// Every counter with its name, in wire and log order: the one list the rest follows.
    fn fields_mut(&mut self) -> [(&'static str, &mut u64); 16] {
        [
            ("connections", &mut self.connections),
            ("accepted", &mut self.accepted),
            ("rejected", &mut self.rejected),
            ("rejected_no_fd", &mut self.rejected_no_fd),
            ("output_limit", &mut self.output_limit),
            ("input_limit", &mut self.input_limit),
            ("input_total", &mut self.input_total),
            ("input_timeout", &mut self.input_timeout),
            ("timeout", &mut self.timeout),
            ("sender_stalls", &mut self.sender_stalls),
            ("sender_stall_ms", &mut self.sender_stall_ms),
            ("auth_failures", &mut self.auth_failures),
            ("auth_throttled", &mut self.auth_throttled),
            ("input_held", &mut self.input_held),
            ("bytes_in", &mut self.bytes_in),
            ("bytes_out", &mut self.bytes_out),
        ]
    }

    /// The counters with their names, in wire and log order.
    fn pairs(&self) -> [(&'static str, u64); 16] {
        let mut copy = *self;
        copy.fields_mut().map(|(name, value)| (name, *value))
    }

    /// Field by field sum.
    pub fn add(&self, other: &Counters) -> Counters {
        let mut sum = *self;
        for ((_, a), (_, b)) in sum.fields_mut().into_iter().zip(other.pairs()) {
            *a = a.saturating_add(b);
        }
        sum
    }

    /// The counters that only grow (everything but the connections and input held now): what
    /// a worker that is gone still contributes to the totals.
    pub fn cumulative(&self) -> Counters {
        Counters { connections: 0, input_held: 0, ..*self }
    }

    /// One line, `name=value` separated by spaces, for the worker-to-supervisor channel.
    pub fn to_wire(&self) -> String {
        let mut out = String::with_capacity(256);
        for (name, value) in self.pairs() {
            if !out.is_empty() {
                out.push(' ');
            }
            out.push_str(name);
            out.push('=');
            out.push_str(&value.to_string());
        }
        out
    }

    /// Parses [`Counters::to_wire`]; unknown names are skipped (a newer worker), absent ones
    /// stay 0.
    pub fn from_wire(line: &str) -> Option<Counters> {
        let mut counters = Counters::default();
        for pair in line.split_ascii_whitespace() {
            let (name, value) = pair.split_once('=')?;
            if let Some((_, slot)) = counters.fields_mut().into_iter().find(|(n, _)| *n == name) {
                *slot = value.parse().ok()?;
            }
        }
        Some(counters)
    }
}

impl fmt::Display for Counters {
    /// The `stats:` log line's body: the wire pairs, the five disconnect causes grouped.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (name, value)) in self.pairs().into_iter().enumerate() {
            let sep = if i == 0 { "" } else { " " };
            let open = if name == "output_limit" { "disconnects(" } else { "" };
            let close = if name == "timeout" { ")" } else { "" };
            write!(f, "{sep}{open}{name}={value}{close}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_round_trips_and_sums() {
        let a = Counters { connections: 3, accepted: 10, bytes_in: 7, bytes_out: 9, ..Counters::default() };
        let b = Counters { connections: 1, accepted: 5, rejected: 2, ..Counters::default() };
        assert_eq!(Counters::from_wire(&a.to_wire()), Some(a));
        let sum = a.add(&b);
        assert_eq!((sum.connections, sum.accepted, sum.rejected, sum.bytes_in), (4, 15, 2, 7));
        assert_eq!(a.cumulative().connections, 0);
        assert_eq!(Counters::from_wire("accepted=x"), None);
        assert_eq!(Counters::from_wire("future=1 accepted=2").map(|c| c.accepted), Some(2));
    }

    #[test]
    fn log_line_groups_the_disconnects() {
        let c = Counters {
            connections: 1,
            accepted: 2,
            rejected: 3,
            rejected_no_fd: 4,
            output_limit: 5,
            input_limit: 6,
            input_total: 7,
            input_timeout: 8,
            timeout: 9,
            sender_stalls: 10,
            sender_stall_ms: 11,
            auth_failures: 12,
            auth_throttled: 13,
            input_held: 14,
            bytes_in: 15,
            bytes_out: 16,
        };
        assert_eq!(
            c.to_string(),
            "connections=1 accepted=2 rejected=3 rejected_no_fd=4 \
             disconnects(output_limit=5 input_limit=6 input_total=7 input_timeout=8 timeout=9) \
             sender_stalls=10 sender_stall_ms=11 auth_failures=12 auth_throttled=13 input_held=14 \
             bytes_in=15 bytes_out=16"
        );
    }
}
