//! What nodes say to each other on the Redis channel: every message carries its origin node and
//! that node's sequence number, so a receiver drops duplicates and counts what it missed.
//!
//! Format: `nl1 NODE SEQ KIND\n` (node id in hex, sequence number in decimal, one-letter kind)
//! followed by the kind's fields as netstrings (`LEN:BYTES,`), so names, rooms and relayed JSON
//! travel as they are, whatever bytes they hold. Decoding is strict and bounded by the message
//! itself: a malformed message is dropped and counted, never a panic.

use std::fmt;
use std::io::Write;

use super::resp::decimal;

/// A node's identity for one process lifetime: random, so a restarted process is a new node
/// whose sequence numbers start again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(pub u64);

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl NodeId {
    /// Parses the 16 hex digits [`fmt::Display`] writes.
    pub fn parse(text: &[u8]) -> Option<NodeId> {
        if text.len() != 16 {
            return None;
        }
        u64::from_str_radix(std::str::from_utf8(text).ok()?, 16).ok().map(NodeId)
    }
}

/// One member of a node as the other nodes see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberInfo {
    /// The member's session id on its node (`ip:port`, `unix:n`): unique within the node.
    pub session: String,
    /// Its registered name (hub) or nick (chat), if any.
    pub name: Option<String>,
    /// Rooms it is in (hub).
    pub rooms: Vec<String>,
}

/// What a message says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    /// The sender (re)joined the cluster: every node answers with its members.
    Hello,
    /// Asks `node` to publish its members (a receiver heard from a node it did not know).
    Want(NodeId),
    /// The sender is alive, with this many members.
    Heartbeat {
        /// Its member count.
        members: u64,
    },
    /// A member's current state (upsert), with the notice its node sent its own members about
    /// it (an `online` line), which the other nodes relay to theirs.
    Member {
        /// Who.
        info: MemberInfo,
        /// The already-encoded notice to relay, if any.
        notice: Option<Vec<u8>>,
    },
    /// A member left its node, with the notice to relay (an `offline` line), if any.
    Gone {
        /// Its session id.
        session: String,
        /// The already-encoded notice to relay, if any.
        notice: Option<Vec<u8>>,
    },
    /// A line for every member (`room: None`) or a room's members: relayed as it is.
    Broadcast {
        /// The room, if only its members get it.
        room: Option<String>,
        /// Its type (`"broadcast"`, `"online"`, ...), for transports that name messages.
        kind: String,
        /// The encoded line.
        line: Vec<u8>,
    },
    /// A line for the member registered as `to`, on whichever node holds it.
    Direct {
        /// The recipient's name.
        to: String,
        /// Its type.
        kind: String,
        /// The encoded line.
        line: Vec<u8>,
    },
    /// The sender is about to publish all its members (answering `Hello` or `Want`).
    Announcing,
    /// The sender published all its members: any member of it not re-announced since
    /// `Announcing` is gone.
    Announced,
    /// The sender is leaving the cluster cleanly: its members are gone now.
    Bye,
}

/// One bus message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// Who sent it.
    pub origin: NodeId,
    /// The origin's sequence number: 1, 2, 3 ... per origin.
    pub seq: u64,
    /// What it says.
    pub body: Body,
}

fn netstring(out: &mut Vec<u8>, bytes: &[u8]) {
    let mut digits = [0u8; 20];
    out.extend_from_slice(decimal(bytes.len() as u64, &mut digits));
    out.push(b':');
    out.extend_from_slice(bytes);
    out.push(b',');
}

fn optional(out: &mut Vec<u8>, bytes: Option<&[u8]>) {
    match bytes {
        // A leading `-` marks absence, distinct from an empty value.
        None => out.extend_from_slice(b"-,"),
        Some(b) => netstring(out, b),
    }
}

/// Appends the `nl1 NODE SEQ ` that starts every message.
fn header(out: &mut Vec<u8>, origin: NodeId, seq: u64) {
    out.extend_from_slice(b"nl1 ");
    // Into a Vec, `write!` formats in place: no allocation per message.
    let _ = write!(out, "{origin} {seq} ");
}

/// Appends a [`Body::Broadcast`] message from borrowed parts (what
/// [`Envelope::encode`] writes for one), so publishing copies nothing into an owned `Body`.
pub fn encode_broadcast(
    out: &mut Vec<u8>,
    origin: NodeId,
    seq: u64,
    room: Option<&str>,
    kind: &str,
    line: &[u8],
) {
    header(out, origin, seq);
    out.extend_from_slice(b"C\n");
    optional(out, room.map(str::as_bytes));
    netstring(out, kind.as_bytes());
    netstring(out, line);
}

/// Appends a [`Body::Direct`] message from borrowed parts (see [`encode_broadcast`]).
pub fn encode_direct(out: &mut Vec<u8>, origin: NodeId, seq: u64, to: &str, kind: &str, line: &[u8]) {
    header(out, origin, seq);
    out.extend_from_slice(b"D\n");
    netstring(out, to.as_bytes());
    netstring(out, kind.as_bytes());
    netstring(out, line);
}

/// Appends a [`Body::Member`] message from borrowed parts (see [`encode_broadcast`]).
pub fn encode_member<R: AsRef<str>>(
    out: &mut Vec<u8>,
    origin: NodeId,
    seq: u64,
    session: &str,
    name: Option<&str>,
    rooms: &[R],
    notice: Option<&[u8]>,
) {
    header(out, origin, seq);
    out.extend_from_slice(b"M\n");
    netstring(out, session.as_bytes());
    optional(out, name.map(str::as_bytes));
    let mut digits = [0u8; 20];
    netstring(out, decimal(rooms.len() as u64, &mut digits));
    for room in rooms {
        netstring(out, room.as_ref().as_bytes());
    }
    optional(out, notice);
}

/// Appends a [`Body::Gone`] message from borrowed parts (see [`encode_broadcast`]).
pub fn encode_gone(out: &mut Vec<u8>, origin: NodeId, seq: u64, session: &str, notice: Option<&[u8]>) {
    header(out, origin, seq);
    out.extend_from_slice(b"G\n");
    netstring(out, session.as_bytes());
    optional(out, notice);
}

impl Envelope {
    /// Appends the encoded message to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let (origin, seq) = (self.origin, self.seq);
        let tag: &[u8] = match &self.body {
            Body::Broadcast { room, kind, line } => {
                return encode_broadcast(out, origin, seq, room.as_deref(), kind, line)
            }
            Body::Direct { to, kind, line } => return encode_direct(out, origin, seq, to, kind, line),
            Body::Hello => b"H\n",
            Body::Want(_) => b"W\n",
            Body::Heartbeat { .. } => b"B\n",
            Body::Member { info, notice } => {
                let MemberInfo { session, name, rooms } = info;
                return encode_member(out, origin, seq, session, name.as_deref(), rooms, notice.as_deref());
            }
            Body::Gone { session, notice } => {
                return encode_gone(out, origin, seq, session, notice.as_deref())
            }
            Body::Announcing => b"A\n",
            Body::Announced => b"Z\n",
            Body::Bye => b"Q\n",
        };
        header(out, origin, seq);
        out.extend_from_slice(tag);
        let mut digits = [0u8; 20];
        match &self.body {
            Body::Want(node) => netstring(out, node.to_string().as_bytes()),
            Body::Heartbeat { members } => netstring(out, decimal(*members, &mut digits)),
            _ => {}
        }
    }

    /// The message in `bytes`, or `None` if it is not a well-formed one.
    pub fn decode(bytes: &[u8]) -> Option<Envelope> {
        let nl = bytes.iter().position(|&b| b == b'\n')?;
        let mut head = bytes[..nl].split(|&b| b == b' ');
        if head.next()? != b"nl1" {
            return None;
        }
        let origin = NodeId::parse(head.next()?)?;
        let seq = std::str::from_utf8(head.next()?).ok()?.parse().ok()?;
        let kind = head.next()?;
        if head.next().is_some() {
            return None;
        }
        let mut r = Reader { rest: &bytes[nl + 1..] };
        let body = match kind {
            b"H" => Body::Hello,
            b"W" => Body::Want(NodeId::parse(r.field()?)?),
            b"B" => Body::Heartbeat { members: r.number()? },
            b"M" => {
                let session = r.text()?;
                let name = r.optional()?.map(|n| String::from_utf8(n.to_vec())).transpose().ok()?;
                let count = r.number()?;
                // Each room takes at least 3 bytes, so a count larger than that is a lie.
                if count > r.rest.len() as u64 / 3 {
                    return None;
                }
                let mut rooms = Vec::with_capacity(count as usize);
                for _ in 0..count {
                    rooms.push(r.text()?);
                }
                let notice = r.optional()?.map(<[u8]>::to_vec);
                Body::Member { info: MemberInfo { session, name, rooms }, notice }
            }
            b"G" => {
                let session = r.text()?;
                let notice = r.optional()?.map(<[u8]>::to_vec);
                Body::Gone { session, notice }
            }
            b"C" => {
                let room = r.optional()?.map(|n| String::from_utf8(n.to_vec())).transpose().ok()?;
                Body::Broadcast { room, kind: r.text()?, line: r.field()?.to_vec() }
            }
            b"D" => Body::Direct { to: r.text()?, kind: r.text()?, line: r.field()?.to_vec() },
            b"A" => Body::Announcing,
            b"Z" => Body::Announced,
            b"Q" => Body::Bye,
            _ => return None,
        };
        if !r.rest.is_empty() {
            return None;
        }
        Some(Envelope { origin, seq, body })
    }
}

struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn field(&mut self) -> Option<&'a [u8]> {
        let colon = self.rest.iter().take(21).position(|&b| b == b':')?;
        let len: usize = std::str::from_utf8(&self.rest[..colon]).ok()?.parse().ok()?;
        let start = colon + 1;
        let end = start.checked_add(len)?;
        if self.rest.get(end) != Some(&b',') {
            return None;
        }
        let field = &self.rest[start..end];
        self.rest = &self.rest[end + 1..];
        Some(field)
    }

    fn optional(&mut self) -> Option<Option<&'a [u8]>> {
        if let Some(rest) = self.rest.strip_prefix(b"-,") {
            self.rest = rest;
            return Some(None);
        }
        self.field().map(Some)
    }

    fn text(&mut self) -> Option<String> {
        String::from_utf8(self.field()?.to_vec()).ok()
    }

    fn number(&mut self) -> Option<u64> {
        std::str::from_utf8(self.field()?).ok()?.parse().ok()
    }
}

/// What a receiver makes of one message's sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// The next one, or the first heard from this origin: deliver.
    InOrder,
    /// Already seen (or older): drop.
    Duplicate,
    /// This many messages before it never arrived (lost in a Redis outage, or cut off with a
    /// subscriber Redis dropped); deliver it.
    AfterGap(u64),
}

/// The last sequence number seen from one origin.
#[derive(Debug, Clone, Copy, Default)]
pub struct SeqTracker {
    last: Option<u64>,
}

impl SeqTracker {
    /// Judges `seq` and remembers it if it is new.
    pub fn observe(&mut self, seq: u64) -> Order {
        match self.last {
            None => {
                self.last = Some(seq);
                Order::InOrder
            }
            Some(last) if seq <= last => Order::Duplicate,
            Some(last) => {
                self.last = Some(seq);
                match seq - last - 1 {
                    0 => Order::InOrder,
                    missed => Order::AfterGap(missed),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(body: Body) {
        let e = Envelope { origin: NodeId(0xabcdef0123456789), seq: 42, body };
        let mut out = Vec::new();
        e.encode(&mut out);
        assert_eq!(Envelope::decode(&out), Some(e.clone()), "{}", String::from_utf8_lossy(&out));
        // Every strict prefix is malformed, never a panic or a different message.
        for cut in 0..out.len() {
            assert_ne!(Envelope::decode(&out[..cut]).as_ref(), Some(&e));
        }
    }

    #[test]
    fn every_kind_round_trips_with_awkward_bytes() {
        round_trip(Body::Hello);
        round_trip(Body::Bye);
        round_trip(Body::Announcing);
        round_trip(Body::Announced);
        round_trip(Body::Want(NodeId(7)));
        round_trip(Body::Heartbeat { members: 12345 });
        round_trip(Body::Member {
            info: MemberInfo {
                session: "127.0.0.1:5000".into(),
                name: Some("al,i:ce\n".into()),
                rooms: vec!["a".into(), "".into(), "r,:9".into()],
            },
            notice: Some(b"{\"type\":\"online\"}".to_vec()),
        });
        round_trip(Body::Member {
            info: MemberInfo { session: "unix:1".into(), name: None, rooms: vec![] },
            notice: None,
        });
        round_trip(Body::Member {
            info: MemberInfo { session: "s".into(), name: Some("".into()), rooms: vec![] },
            notice: Some(Vec::new()),
        });
        round_trip(Body::Gone { session: "s".into(), notice: Some(b"x\ny".to_vec()) });
        round_trip(Body::Broadcast {
            room: None,
            kind: "broadcast".into(),
            line: b"{\"a\":\"-,\"}".to_vec(),
        });
        round_trip(Body::Broadcast { room: Some("lobby".into()), kind: "".into(), line: Vec::new() });
        round_trip(Body::Direct { to: "bob".into(), kind: "info".into(), line: b"hi".to_vec() });
    }

    #[test]
    fn malformed_messages_are_refused() {
        let bad: [&[u8]; 9] = [
            b"",
            b"nl1 0000000000000001 1 H",
            b"nl2 0000000000000001 1 H\n",
            b"nl1 1 1 H\n",
            b"nl1 0000000000000001 x H\n",
            b"nl1 0000000000000001 1 Y\n",
            b"nl1 0000000000000001 1 H\ntrailing",
            b"nl1 0000000000000001 1 D\n3:bob,4:info,99:hi,",
            b"nl1 0000000000000001 1 M\n1:s,-,99999999999:",
        ];
        for b in bad {
            assert_eq!(Envelope::decode(b), None, "{:?}", String::from_utf8_lossy(b));
        }
    }

    proptest::proptest! {
        /// Any payload on the channel (another program may publish there) is a message or
        /// nothing: never a panic.
        #[test]
        fn any_payload_decodes_without_panicking(tail in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..256), kind in 0usize..12) {
            let kinds = ["H", "W", "B", "M", "G", "C", "D", "A", "Z", "Q", "X", ""];
            let mut bytes = format!("nl1 0000000000000001 7 {}\n", kinds[kind]).into_bytes();
            bytes.extend_from_slice(&tail);
            let _ = Envelope::decode(&bytes);
            let _ = Envelope::decode(&tail);
        }
    }

    #[test]
    fn sequence_numbers_drop_duplicates_and_count_gaps() {
        let mut t = SeqTracker::default();
        assert_eq!(t.observe(5), Order::InOrder);
        assert_eq!(t.observe(6), Order::InOrder);
        assert_eq!(t.observe(6), Order::Duplicate);
        assert_eq!(t.observe(3), Order::Duplicate);
        assert_eq!(t.observe(10), Order::AfterGap(3));
        assert_eq!(t.observe(11), Order::InOrder);
    }
}
