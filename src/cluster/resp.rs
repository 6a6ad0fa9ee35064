//! RESP2, Redis's wire protocol, as a sans-IO codec: commands are encoded into a buffer the
//! caller writes to a loop socket, and replies are decoded from whatever bytes arrived.
//!
//! Our own small strict codec rather than a general crate: the bus sends a handful of commands
//! and reads five reply types, and the decoder must be bounded (a reply larger than
//! [`Limits::max_bulk`], an array longer than [`Limits::max_items`] or nested deeper than
//! [`MAX_DEPTH`] is an error that drops the connection, never an allocation on the peer's say).

use std::fmt;

/// Nesting depth accepted in replies (pub/sub pushes are depth 1; nothing we send gets deeper
/// than 2).
pub const MAX_DEPTH: usize = 4;

/// Bounds on one decoded reply.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Longest bulk string.
    pub max_bulk: usize,
    /// Most elements in one array.
    pub max_items: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_bulk: 16 * 1024 * 1024, max_items: 1024 * 1024 }
    }
}

/// One RESP2 value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// `+OK`
    Simple(String),
    /// `-ERR ...`
    Error(String),
    /// `:42`
    Int(i64),
    /// `$5\r\nhello` (`None`: the null bulk `$-1`)
    Bulk(Option<Vec<u8>>),
    /// `*2 ...` (`None`: the null array `*-1`)
    Array(Option<Vec<Value>>),
}

impl Value {
    /// The bytes of a bulk or simple string.
    pub fn bytes(&self) -> Option<&[u8]> {
        match self {
            Value::Bulk(Some(b)) => Some(b),
            Value::Simple(s) => Some(s.as_bytes()),
            _ => None,
        }
    }

    /// The elements of a non-null array.
    pub fn items(&self) -> Option<&[Value]> {
        match self {
            Value::Array(Some(v)) => Some(v),
            _ => None,
        }
    }
}

/// The peer broke the protocol or a limit; the connection must be dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtocolError(pub String);

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "redis protocol error: {}", self.0)
    }
}

impl std::error::Error for ProtocolError {}

/// Appends one command (an array of bulk strings) to `out`.
pub fn encode_command(out: &mut Vec<u8>, args: &[&[u8]]) {
    out.push(b'*');
    push_decimal(out, args.len());
    out.extend_from_slice(b"\r\n");
    for arg in args {
        out.push(b'$');
        push_decimal(out, arg.len());
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
}

fn push_decimal(out: &mut Vec<u8>, n: usize) {
    let mut digits = [0u8; 20];
    out.extend_from_slice(decimal(n as u64, &mut digits));
}

/// `n` in decimal, written into the end of `digits` (no allocation): the digits written.
pub(crate) fn decimal(n: u64, digits: &mut [u8; 20]) -> &[u8] {
    let mut i = digits.len();
    let mut n = n;
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    &digits[i..]
}

/// Incremental reply decoder: feed bytes as they arrive, take whole values out.
#[derive(Debug, Default)]
pub struct Decoder {
    buf: Vec<u8>,
    /// Bytes of `buf` already consumed by values taken out.
    start: usize,
    limits: Limits,
}

/// Outcome of parsing at one position.
enum Step {
    /// A whole value, ending at this offset.
    Done(Value, usize),
    /// More bytes are needed.
    Partial,
}

impl Decoder {
    /// A decoder with these bounds.
    pub fn new(limits: Limits) -> Self {
        Decoder { buf: Vec::new(), start: 0, limits }
    }

    /// Adds received bytes.
    pub fn feed(&mut self, data: &[u8]) {
        if self.start > 0 && self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        }
        self.buf.extend_from_slice(data);
    }

    /// Bytes held for a value not yet complete.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }

    /// Forgets everything held (the connection was dropped).
    pub fn reset(&mut self) {
        self.buf = Vec::new();
        self.start = 0;
    }

    /// The next whole value, `Ok(None)` when more bytes are needed.
    pub fn next_value(&mut self) -> Result<Option<Value>, ProtocolError> {
        match parse(&self.buf, self.start, 0, &self.limits)? {
            Step::Partial => {
                // Keep the unfinished tail only.
                if self.start > 0 {
                    self.buf.drain(..self.start);
                    self.start = 0;
                }
                Ok(None)
            }
            Step::Done(value, end) => {
                self.start = end;
                Ok(Some(value))
            }
        }
    }
}

fn line(buf: &[u8], at: usize) -> Result<Option<(&[u8], usize)>, ProtocolError> {
    // A header line is short: a type byte and a number or a status text.
    const MAX_LINE: usize = 64 * 1024;
    let rest = &buf[at..];
    match rest.windows(2).position(|w| w == b"\r\n") {
        Some(n) => Ok(Some((&rest[..n], at + n + 2))),
        None if rest.len() > MAX_LINE => Err(ProtocolError("header line too long".into())),
        None => Ok(None),
    }
}

fn number(text: &[u8]) -> Result<i64, ProtocolError> {
    std::str::from_utf8(text)
        .ok()
        .and_then(|s| s.parse::<i64>().ok())
        .ok_or_else(|| ProtocolError(format!("bad number {:?}", String::from_utf8_lossy(text))))
}

fn parse(buf: &[u8], at: usize, depth: usize, limits: &Limits) -> Result<Step, ProtocolError> {
    if at >= buf.len() {
        return Ok(Step::Partial);
    }
    let Some((head, next)) = line(buf, at + 1)? else { return Ok(Step::Partial) };
    let text = || String::from_utf8_lossy(head).into_owned();
    match buf[at] {
        b'+' => Ok(Step::Done(Value::Simple(text()), next)),
        b'-' => Ok(Step::Done(Value::Error(text()), next)),
        b':' => Ok(Step::Done(Value::Int(number(head)?), next)),
        b'$' => {
            let len = number(head)?;
            if len == -1 {
                return Ok(Step::Done(Value::Bulk(None), next));
            }
            if len < 0 || len as u64 > limits.max_bulk as u64 {
                return Err(ProtocolError(format!("bulk string of {len} bytes (limit {})", limits.max_bulk)));
            }
            let len = len as usize;
            if buf.len() < next + len + 2 {
                return Ok(Step::Partial);
            }
            if &buf[next + len..next + len + 2] != b"\r\n" {
                return Err(ProtocolError("bulk string not followed by CRLF".into()));
            }
            Ok(Step::Done(Value::Bulk(Some(buf[next..next + len].to_vec())), next + len + 2))
        }
        b'*' => {
            let n = number(head)?;
            if n == -1 {
                return Ok(Step::Done(Value::Array(None), next));
            }
            if n < 0 || n as u64 > limits.max_items as u64 {
                return Err(ProtocolError(format!("array of {n} items (limit {})", limits.max_items)));
            }
            if depth + 1 >= MAX_DEPTH {
                return Err(ProtocolError(format!("arrays nested deeper than {MAX_DEPTH}")));
            }
            // Grown as items arrive, not reserved on the peer's say.
            let mut items = Vec::new();
            let mut pos = next;
            for _ in 0..n {
                match parse(buf, pos, depth + 1, limits)? {
                    Step::Partial => return Ok(Step::Partial),
                    Step::Done(v, end) => {
                        items.push(v);
                        pos = end;
                    }
                }
            }
            Ok(Step::Done(Value::Array(Some(items)), pos))
        }
        other => Err(ProtocolError(format!("unknown type byte 0x{other:02x}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(bytes: &[u8]) -> Vec<Value> {
        let mut d = Decoder::default();
        d.feed(bytes);
        let mut out = Vec::new();
        while let Some(v) = d.next_value().unwrap() {
            out.push(v);
        }
        out
    }

    #[test]
    fn commands_are_arrays_of_bulk_strings() {
        let mut out = Vec::new();
        encode_command(&mut out, &[b"SET", b"k", b"a\r\nb"]);
        assert_eq!(out, b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$4\r\na\r\nb\r\n");
        out.clear();
        encode_command(&mut out, &[b"PING"]);
        assert_eq!(out, b"*1\r\n$4\r\nPING\r\n");
    }

    #[test]
    fn every_reply_type_decodes() {
        let v = all(b"+OK\r\n-ERR no\r\n:-7\r\n$3\r\nabc\r\n$-1\r\n*-1\r\n*0\r\n$0\r\n\r\n");
        assert_eq!(
            v,
            vec![
                Value::Simple("OK".into()),
                Value::Error("ERR no".into()),
                Value::Int(-7),
                Value::Bulk(Some(b"abc".to_vec())),
                Value::Bulk(None),
                Value::Array(None),
                Value::Array(Some(vec![])),
                Value::Bulk(Some(vec![])),
            ]
        );
    }

    #[test]
    fn a_pubsub_push_decodes_whole_from_any_split() {
        let push = b"*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$5\r\nhe\r\nl\r\n";
        for cut in 0..push.len() {
            let mut d = Decoder::default();
            d.feed(&push[..cut]);
            assert_eq!(d.next_value().unwrap(), None, "cut at {cut}");
            d.feed(&push[cut..]);
            let v = d.next_value().unwrap().expect("whole");
            let items = v.items().unwrap();
            assert_eq!(items[2].bytes().unwrap(), b"he\r\nl");
            assert_eq!(d.next_value().unwrap(), None);
            assert_eq!(d.buffered(), 0);
        }
    }

    #[test]
    fn byte_by_byte_feeding_yields_the_same_values() {
        let bytes = b"+OK\r\n*2\r\n:1\r\n*1\r\n$1\r\nx\r\n:5\r\n";
        let mut d = Decoder::default();
        let mut got = Vec::new();
        for b in bytes {
            d.feed(&[*b]);
            while let Some(v) = d.next_value().unwrap() {
                got.push(v);
            }
        }
        assert_eq!(got, all(bytes));
        assert_eq!(got.len(), 3);
    }

    proptest::proptest! {
        /// Whatever Redis (or something posing as it) sends, the decoder answers values, "more
        /// please" or an error: never a panic, never more than the bytes it was given.
        #[test]
        fn any_bytes_decode_without_panicking(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            let mut d = Decoder::new(Limits { max_bulk: 64, max_items: 16 });
            d.feed(&bytes);
            for _ in 0..bytes.len() + 1 {
                match d.next_value() {
                    Ok(Some(_)) => {}
                    Ok(None) | Err(_) => break,
                }
            }
        }

        /// A stream of replies cut anywhere decodes to the same values.
        #[test]
        fn replies_split_anywhere_decode_the_same(cuts in proptest::collection::vec(0usize..200, 0..8)) {
            let stream: &[u8] = b"+OK\r\n*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$5\r\nhe\r\nl\r\n:42\r\n$-1\r\n-ERR x\r\n";
            let want = all(stream);
            let mut d = Decoder::default();
            let mut got = Vec::new();
            let mut at = 0;
            let mut cuts = cuts;
            cuts.sort_unstable();
            for cut in cuts.into_iter().map(|c| c.min(stream.len())).chain([stream.len()]) {
                if cut < at {
                    continue;
                }
                d.feed(&stream[at..cut]);
                at = cut;
                while let Some(v) = d.next_value().unwrap() {
                    got.push(v);
                }
            }
            proptest::prop_assert_eq!(got, want);
        }
    }

    #[test]
    fn limits_and_garbage_are_errors_not_allocations() {
        let limits = Limits { max_bulk: 10, max_items: 3 };
        let cases: [&[u8]; 7] = [
            b"$11\r\n",
            b"*4\r\n",
            b"$-2\r\n",
            b"?x\r\n",
            b":12a\r\n",
            b"$3\r\nabcXY",
            b"*1\r\n*1\r\n*1\r\n*1\r\n:1\r\n",
        ];
        for case in cases {
            let mut d = Decoder::new(limits);
            d.feed(case);
            assert!(d.next_value().is_err(), "{:?}", String::from_utf8_lossy(case));
        }
        // A claimed huge length is refused before any byte of it arrives.
        let mut d = Decoder::default();
        d.feed(b"$999999999999\r\n");
        assert!(d.next_value().is_err());
        let mut d = Decoder::default();
        d.feed(&vec![b'+'; 70 * 1024]);
        assert!(d.next_value().is_err(), "endless header line");
    }
}
