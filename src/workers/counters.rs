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

/// Field names in wire order; `fields`/`fields_mut` follow it.
const NAMES: [&str; 16] = [
    "connections",
    "accepted",
    "rejected",
    "rejected_no_fd",
    "output_limit",
    "input_limit",
    "input_total",
    "input_timeout",
    "timeout",
    "sender_stalls",
    "sender_stall_ms",
    "auth_failures",
    "auth_throttled",
    "input_held",
    "bytes_in",
    "bytes_out",
];

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

    fn fields(&self) -> [u64; 16] {
        [
            self.connections,
            self.accepted,
            self.rejected,
            self.rejected_no_fd,
            self.output_limit,
            self.input_limit,
            self.input_total,
            self.input_timeout,
            self.timeout,
            self.sender_stalls,
            self.sender_stall_ms,
            self.auth_failures,
            self.auth_throttled,
            self.input_held,
            self.bytes_in,
            self.bytes_out,
        ]
    }

    fn from_fields(f: [u64; 16]) -> Counters {
        Counters {
            connections: f[0],
            accepted: f[1],
            rejected: f[2],
            rejected_no_fd: f[3],
            output_limit: f[4],
            input_limit: f[5],
            input_total: f[6],
            input_timeout: f[7],
            timeout: f[8],
            sender_stalls: f[9],
            sender_stall_ms: f[10],
            auth_failures: f[11],
            auth_throttled: f[12],
            input_held: f[13],
            bytes_in: f[14],
            bytes_out: f[15],
        }
    }

    /// Field by field sum.
    pub fn add(&self, other: &Counters) -> Counters {
        let (a, b) = (self.fields(), other.fields());
        Counters::from_fields(std::array::from_fn(|i| a[i].saturating_add(b[i])))
    }

    /// The counters that only grow (everything but the connections and input held now): what
    /// a worker that is gone still contributes to the totals.
    pub fn cumulative(&self) -> Counters {
        Counters { connections: 0, input_held: 0, ..*self }
    }

    /// One line, `name=value` separated by spaces, for the worker-to-supervisor channel.
    pub fn to_wire(&self) -> String {
        let mut out = String::with_capacity(256);
        for (name, value) in NAMES.iter().zip(self.fields()) {
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
        let mut f = [0u64; 16];
        for pair in line.split_ascii_whitespace() {
            let (name, value) = pair.split_once('=')?;
            if let Some(i) = NAMES.iter().position(|n| *n == name) {
                f[i] = value.parse().ok()?;
            }
        }
        Some(Counters::from_fields(f))
    }
}

impl fmt::Display for Counters {
    /// The `stats:` log line's body.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "connections={} accepted={} rejected={} rejected_no_fd={} \
             disconnects(output_limit={} input_limit={} input_total={} input_timeout={} timeout={}) \
             sender_stalls={} sender_stall_ms={} auth_failures={} auth_throttled={} input_held={} \
             bytes_in={} bytes_out={}",
            self.connections,
            self.accepted,
            self.rejected,
            self.rejected_no_fd,
            self.output_limit,
            self.input_limit,
            self.input_total,
            self.input_timeout,
            self.timeout,
            self.sender_stalls,
            self.sender_stall_ms,
            self.auth_failures,
            self.auth_throttled,
            self.input_held,
            self.bytes_in,
            self.bytes_out
        )
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
}
