//! WebSocket (RFC 6455), sans I/O: the server side of the opening handshake, and a strict
//! frame decoder and encoder with explicit limits.
//!
//! The decoder takes client bytes as they arrive and yields whole messages and control frames.
//! It enforces what a server must: client frames are masked, RSV bits are zero (no extension is
//! negotiated), opcodes are known, control frames are short and never fragmented, fragments
//! follow the rules, text is UTF-8 (checked as fragments arrive, so a bad byte fails at once),
//! and a frame or message over the limits fails with 1009 before its payload is buffered.

use base64::Engine as _;
use sha1::{Digest, Sha1};

use super::http::{Request, Response, Status};

/// The GUID of RFC 6455 section 1.3.
const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// `Sec-WebSocket-Accept` for a client's `Sec-WebSocket-Key`.
pub fn accept_key(key: &str) -> String {
    let mut sha = Sha1::new();
    sha.update(key.as_bytes());
    sha.update(GUID.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(sha.finalize())
}

/// Checks a request that asks for a WebSocket (RFC 6455 section 4.2.1) and returns the 101
/// response, or the status to refuse it with: 426 without an upgrade, 400 for a missing or
/// malformed key (it must be 16 bytes in base64), 426 with `Sec-WebSocket-Version: 13` for
/// another version.
pub fn handshake(req: &Request) -> Result<Response, Response> {
    if req.method != "GET" {
        return Err(Response::error(Status::MethodNotAllowed));
    }
    if req.upgrade.as_deref() != Some("websocket") || !req.connection_has("upgrade") {
        return Err(Response::new(Status::UpgradeRequired)
            .header("Upgrade", "websocket")
            .header("Connection", "close")
            .body(b"426 Upgrade Required\n".to_vec()));
    }
    if req.websocket_version.as_deref() != Some("13") {
        return Err(Response::new(Status::UpgradeRequired)
            .header("Sec-WebSocket-Version", "13")
            .header("Connection", "close")
            .body(b"426 Upgrade Required\n".to_vec()));
    }
    let key = req.websocket_key.as_deref().unwrap_or("");
    let decoded = base64::engine::general_purpose::STANDARD.decode(key);
    if !matches!(decoded, Ok(ref k) if k.len() == 16) {
        return Err(Response::error(Status::BadRequest));
    }
    Ok(Response::new(Status::SwitchingProtocols)
        .header("Upgrade", "websocket")
        .header("Connection", "Upgrade")
        .header("Sec-WebSocket-Accept", &accept_key(key)))
}

/// Frame opcodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opcode {
    /// 0x0: a later fragment.
    Continuation,
    /// 0x1: UTF-8 text.
    Text,
    /// 0x2: binary.
    Binary,
    /// 0x8: close.
    Close,
    /// 0x9: ping.
    Ping,
    /// 0xA: pong.
    Pong,
}

impl Opcode {
    fn from_bits(bits: u8) -> Option<Opcode> {
        Some(match bits {
            0x0 => Opcode::Continuation,
            0x1 => Opcode::Text,
            0x2 => Opcode::Binary,
            0x8 => Opcode::Close,
            0x9 => Opcode::Ping,
            0xA => Opcode::Pong,
            _ => return None,
        })
    }

    fn bits(self) -> u8 {
        match self {
            Opcode::Continuation => 0x0,
            Opcode::Text => 0x1,
            Opcode::Binary => 0x2,
            Opcode::Close => 0x8,
            Opcode::Ping => 0x9,
            Opcode::Pong => 0xA,
        }
    }

    fn is_control(self) -> bool {
        matches!(self, Opcode::Close | Opcode::Ping | Opcode::Pong)
    }
}

/// Close codes the server sends (RFC 6455 section 7.4.1).
pub mod close_code {
    /// Normal closure.
    pub const NORMAL: u16 = 1000;
    /// The server is going away (shutdown).
    pub const GOING_AWAY: u16 = 1001;
    /// A protocol error: unmasked frame, reserved bits, bad opcode, fragmented control frame.
    pub const PROTOCOL_ERROR: u16 = 1002;
    /// A data type the endpoint does not accept (binary on a text-only endpoint).
    pub const UNSUPPORTED_DATA: u16 = 1003;
    /// Text that is not UTF-8.
    pub const INVALID_PAYLOAD: u16 = 1007;
    /// A message that breaks the endpoint's policy (its protocol on top).
    pub const POLICY_VIOLATION: u16 = 1008;
    /// A frame or message over the size limits.
    pub const TOO_BIG: u16 = 1009;
}

/// Bounds on what one client may send.
#[derive(Debug, Clone, Copy)]
pub struct FrameLimits {
    /// Longest frame payload.
    pub max_frame: usize,
    /// Longest message (all its fragments together).
    pub max_message: usize,
}

/// Something the decoder got from the client.
#[derive(Debug, PartialEq, Eq)]
pub enum Incoming {
    /// A whole text message (valid UTF-8).
    Text(String),
    /// A whole binary message.
    Binary(Vec<u8>),
    /// A ping; answer with a pong carrying the same payload.
    Ping(Vec<u8>),
    /// A pong.
    Pong(Vec<u8>),
    /// The client's close frame: its code (1005 when it sent none) and reason.
    Close(u16, String),
}

/// Why the decoder failed: close the connection with this code (and reason).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Violation {
    /// The close code to send.
    pub code: u16,
    /// A short reason for the close frame.
    pub reason: &'static str,
}

fn violation(code: u16, reason: &'static str) -> Violation {
    Violation { code, reason }
}

/// The frame decoder for one connection.
#[derive(Debug)]
pub struct Decoder {
    limits: FrameLimits,
    /// Bytes of a frame not complete yet.
    pending: Vec<u8>,
    /// The message being assembled from fragments: its opcode and data so far.
    message: Option<(Opcode, Vec<u8>)>,
}

impl Decoder {
    /// A decoder with these limits.
    pub fn new(limits: FrameLimits) -> Self {
        Decoder { limits, pending: Vec::new(), message: None }
    }

    /// Bytes held for unfinished frames and messages.
    pub fn held(&self) -> usize {
        self.pending.len() + self.message.as_ref().map_or(0, |(_, m)| m.len())
    }

    /// Feeds client bytes; every complete message or control frame is passed to `each`. A
    /// violation stops decoding: the connection must be closed with its code.
    pub fn feed(&mut self, data: &[u8], mut each: impl FnMut(Incoming)) -> Result<(), Violation> {
        if self.pending.is_empty() {
            let used = self.decode(data, &mut each)?;
            self.pending.extend_from_slice(&data[used..]);
        } else {
            self.pending.extend_from_slice(data);
            let pending = std::mem::take(&mut self.pending);
            let used = self.decode(&pending, &mut each);
            let used = used?;
            if used < pending.len() {
                self.pending = pending;
                self.pending.drain(..used);
            }
            // Otherwise `pending` is dropped: an idle connection keeps no buffer.
        }
        Ok(())
    }

    /// Decodes every complete frame at the start of `buf`; returns the bytes used.
    fn decode(&mut self, buf: &[u8], each: &mut impl FnMut(Incoming)) -> Result<usize, Violation> {
        let mut at = 0;
        while let Some(used) = self.frame(&buf[at..], each)? {
            at += used;
        }
        Ok(at)
    }

    /// Decodes one frame if it is complete; checks the header as soon as it is readable, so
    /// an oversized or invalid frame fails before its payload arrives.
    fn frame(&mut self, buf: &[u8], each: &mut impl FnMut(Incoming)) -> Result<Option<usize>, Violation> {
        if buf.len() < 2 {
            return Ok(None);
        }
        let (b0, b1) = (buf[0], buf[1]);
        let fin = b0 & 0x80 != 0;
        if b0 & 0x70 != 0 {
            return Err(violation(close_code::PROTOCOL_ERROR, "reserved bits set"));
        }
        let opcode =
            Opcode::from_bits(b0 & 0x0F).ok_or(violation(close_code::PROTOCOL_ERROR, "unknown opcode"))?;
        if b1 & 0x80 == 0 {
            return Err(violation(close_code::PROTOCOL_ERROR, "client frames must be masked"));
        }
        let short = usize::from(b1 & 0x7F);
        if opcode.is_control() {
            if !fin {
                return Err(violation(close_code::PROTOCOL_ERROR, "fragmented control frame"));
            }
            if short > 125 {
                return Err(violation(close_code::PROTOCOL_ERROR, "control frame too long"));
            }
        }
        let (len, header) = match short {
            126 => {
                if buf.len() < 4 {
                    return Ok(None);
                }
                (u64::from(u16::from_be_bytes([buf[2], buf[3]])), 4)
            }
            127 => {
                if buf.len() < 10 {
                    return Ok(None);
                }
                let mut b = [0u8; 8];
                b.copy_from_slice(&buf[2..10]);
                (u64::from_be_bytes(b), 10)
            }
            n => (n as u64, 2),
        };
        if len > self.limits.max_frame as u64 {
            return Err(violation(close_code::TOO_BIG, "frame too large"));
        }
        let len = len as usize;
        match (opcode, &self.message) {
            (Opcode::Continuation, None) => {
                return Err(violation(close_code::PROTOCOL_ERROR, "continuation without a message"))
            }
            (Opcode::Text | Opcode::Binary, Some(_)) => {
                return Err(violation(close_code::PROTOCOL_ERROR, "new message inside a fragmented one"))
            }
            (Opcode::Continuation, Some((_, so_far))) if so_far.len() + len > self.limits.max_message => {
                return Err(violation(close_code::TOO_BIG, "message too large"))
            }
            (Opcode::Text | Opcode::Binary, None) if len > self.limits.max_message => {
                return Err(violation(close_code::TOO_BIG, "message too large"))
            }
            _ => {}
        }
        let total = header + 4 + len;
        if buf.len() < total {
            return Ok(None);
        }
        let mask = [buf[header], buf[header + 1], buf[header + 2], buf[header + 3]];
        let mut payload = buf[header + 4..total].to_vec();
        for (i, b) in payload.iter_mut().enumerate() {
            *b ^= mask[i & 3];
        }
        match opcode {
            Opcode::Ping => each(Incoming::Ping(payload)),
            Opcode::Pong => each(Incoming::Pong(payload)),
            Opcode::Close => {
                let (code, reason) = parse_close(&payload)?;
                each(Incoming::Close(code, reason));
            }
            Opcode::Text | Opcode::Binary | Opcode::Continuation => {
                let (kind, data) = match (opcode, self.message.take()) {
                    (Opcode::Continuation, Some((kind, mut data))) => {
                        data.extend_from_slice(&payload);
                        (kind, data)
                    }
                    _ => (opcode, payload),
                };
                if kind == Opcode::Text {
                    check_utf8_prefix(&data, fin)?;
                }
                if !fin {
                    self.message = Some((kind, data));
                } else if kind == Opcode::Text {
                    // Checked above: the whole message is UTF-8.
                    let text = String::from_utf8(data)
                        .map_err(|_| violation(close_code::INVALID_PAYLOAD, "invalid UTF-8"))?;
                    each(Incoming::Text(text));
                } else {
                    each(Incoming::Binary(data));
                }
            }
        }
        Ok(Some(total))
    }
}

/// Fails on invalid UTF-8 in text received so far; an incomplete sequence at the end is fine
/// while more fragments may follow.
fn check_utf8_prefix(data: &[u8], fin: bool) -> Result<(), Violation> {
    match std::str::from_utf8(data) {
        Ok(_) => Ok(()),
        Err(e) if e.error_len().is_none() && !fin => Ok(()),
        Err(_) => Err(violation(close_code::INVALID_PAYLOAD, "invalid UTF-8")),
    }
}

/// A close frame's payload: empty (1005, no code), or a valid code and a UTF-8 reason.
fn parse_close(payload: &[u8]) -> Result<(u16, String), Violation> {
    match payload.len() {
        0 => Ok((1005, String::new())),
        1 => Err(violation(close_code::PROTOCOL_ERROR, "close payload of one byte")),
        _ => {
            let code = u16::from_be_bytes([payload[0], payload[1]]);
            let valid = matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999);
            if !valid {
                return Err(violation(close_code::PROTOCOL_ERROR, "invalid close code"));
            }
            let reason = std::str::from_utf8(&payload[2..])
                .map_err(|_| violation(close_code::INVALID_PAYLOAD, "invalid UTF-8 in close reason"))?;
            Ok((code, reason.to_string()))
        }
    }
}

/// A server frame (unmasked, final) with `payload`.
pub fn encode(opcode: Opcode, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 10);
    encode_into(&mut out, opcode, payload);
    out
}

/// Appends a server frame with `payload` to `out`.
pub fn encode_into(out: &mut Vec<u8>, opcode: Opcode, payload: &[u8]) {
    out.push(0x80 | opcode.bits());
    let len = payload.len();
    if len < 126 {
        out.push(len as u8);
    } else if len <= usize::from(u16::MAX) {
        out.push(126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    out.extend_from_slice(payload);
}

/// A close frame with `code` and a reason (cut to fit a control frame).
pub fn encode_close(code: u16, reason: &str) -> Vec<u8> {
    let mut payload = code.to_be_bytes().to_vec();
    let mut cut = reason.len().min(123);
    while !reason.is_char_boundary(cut) {
        cut -= 1;
    }
    payload.extend_from_slice(&reason.as_bytes()[..cut]);
    encode(Opcode::Close, &payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A masked client frame.
    fn client(first: u8, payload: &[u8]) -> Vec<u8> {
        let mask = [0x11, 0x22, 0x33, 0x44];
        let mut out = vec![first];
        let len = payload.len();
        if len < 126 {
            out.push(0x80 | len as u8);
        } else if len <= 0xFFFF {
            out.push(0x80 | 126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            out.push(0x80 | 127);
            out.extend_from_slice(&(len as u64).to_be_bytes());
        }
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i & 3]));
        out
    }

    fn decoder() -> Decoder {
        Decoder::new(FrameLimits { max_frame: 1000, max_message: 1500 })
    }

    fn feed(d: &mut Decoder, bytes: &[u8]) -> Result<Vec<Incoming>, Violation> {
        let mut got = Vec::new();
        d.feed(bytes, |m| got.push(m))?;
        Ok(got)
    }

    #[test]
    fn the_accept_key_is_the_rfc_example() {
        assert_eq!(accept_key("dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }

    #[test]
    fn the_handshake_refuses_bad_keys_and_versions() {
        let mut req = Request {
            method: "GET".into(),
            upgrade: Some("websocket".into()),
            connection: Some("upgrade".into()),
            websocket_version: Some("13".into()),
            websocket_key: Some("dGhlIHNhbXBsZSBub25jZQ==".into()),
            ..Request::default()
        };
        assert_eq!(handshake(&req).unwrap().status(), Status::SwitchingProtocols);
        req.websocket_key = Some("short".into());
        assert_eq!(handshake(&req).unwrap_err().status(), Status::BadRequest);
        req.websocket_key = None;
        assert_eq!(handshake(&req).unwrap_err().status(), Status::BadRequest);
        req.websocket_key = Some("dGhlIHNhbXBsZSBub25jZQ==".into());
        req.websocket_version = Some("8".into());
        assert_eq!(handshake(&req).unwrap_err().status(), Status::UpgradeRequired);
        req.websocket_version = Some("13".into());
        req.upgrade = None;
        assert_eq!(handshake(&req).unwrap_err().status(), Status::UpgradeRequired);
    }

    #[test]
    fn messages_arrive_whole_however_the_bytes_are_split() {
        let mut bytes = client(0x01, b"hel"); // text, not final
        bytes.extend(client(0x89, b"p")); // a ping between fragments
        bytes.extend(client(0x80, "lo \u{e9}".as_bytes()));
        bytes.extend(client(0x82, &[0, 1, 2]));
        let mut d = decoder();
        let mut got = Vec::new();
        for b in &bytes {
            got.extend(feed(&mut d, std::slice::from_ref(b)).unwrap());
        }
        assert_eq!(
            got,
            vec![
                Incoming::Ping(b"p".to_vec()),
                Incoming::Text("hello \u{e9}".into()),
                Incoming::Binary(vec![0, 1, 2])
            ]
        );
        assert_eq!(d.held(), 0);
    }

    #[test]
    fn protocol_errors_get_their_close_codes() {
        let cases: Vec<(Vec<u8>, u16)> = vec![
            (vec![0x81, 0x02, b'h', b'i'], close_code::PROTOCOL_ERROR), // unmasked
            (client(0xC1, b"hi"), close_code::PROTOCOL_ERROR),          // RSV1
            (client(0x83, b"hi"), close_code::PROTOCOL_ERROR),          // reserved opcode 3
            (client(0x8B, b""), close_code::PROTOCOL_ERROR),            // reserved control 0xB
            (client(0x09, b"p"), close_code::PROTOCOL_ERROR),           // fragmented ping
            (client(0x89, &[0; 126]), close_code::PROTOCOL_ERROR),      // long ping
            (client(0x80, b"x"), close_code::PROTOCOL_ERROR),           // continuation alone
            (client(0x81, &[0xFF]), close_code::INVALID_PAYLOAD),       // bad UTF-8
            (client(0x81, &[0; 1001]), close_code::TOO_BIG),            // frame > 1000
            (client(0x88, &[0x03]), close_code::PROTOCOL_ERROR),        // 1-byte close
            (client(0x88, &[0x03, 0xED]), close_code::PROTOCOL_ERROR),  // close code 1005
        ];
        for (bytes, code) in cases {
            let err = feed(&mut decoder(), &bytes).unwrap_err();
            assert_eq!(err.code, code, "{bytes:02x?}: {err:?}");
        }
    }

    #[test]
    fn an_oversized_frame_fails_on_its_header() {
        let header = [0x81, 0x80 | 127, 0, 0, 0, 1, 0, 0, 0, 0];
        assert_eq!(feed(&mut decoder(), &header).unwrap_err().code, close_code::TOO_BIG);
    }

    #[test]
    fn messages_over_the_limit_fail_across_fragments() {
        let mut d = decoder();
        feed(&mut d, &client(0x01, &[b'a'; 1000])).unwrap();
        assert_eq!(feed(&mut d, &client(0x80, &[b'a'; 501])).unwrap_err().code, close_code::TOO_BIG);
    }

    #[test]
    fn invalid_utf8_fails_in_the_fragment_that_carries_it() {
        let mut d = decoder();
        // A split two-byte sequence is fine; a bad byte fails before the message ends.
        feed(&mut d, &client(0x01, &[b'a', 0xC3])).unwrap();
        feed(&mut d, &client(0x00, &[0xA9])).unwrap();
        assert_eq!(feed(&mut d, &client(0x00, &[0xFF])).unwrap_err().code, close_code::INVALID_PAYLOAD);
        // A truncated sequence at the end of the message is invalid.
        assert_eq!(
            feed(&mut decoder(), &client(0x81, &[0xC3])).unwrap_err().code,
            close_code::INVALID_PAYLOAD
        );
    }

    #[test]
    fn frames_are_encoded_with_the_shortest_length() {
        assert_eq!(encode(Opcode::Text, b"hi"), vec![0x81, 2, b'h', b'i']);
        assert_eq!(&encode(Opcode::Binary, &[0; 200])[..4], &[0x82, 126, 0, 200]);
        assert_eq!(&encode(Opcode::Text, &[0; 70000])[..10], &[0x81, 127, 0, 0, 0, 0, 0, 1, 0x11, 0x70]);
        assert_eq!(encode_close(1000, "bye"), vec![0x88, 5, 0x03, 0xE8, b'b', b'y', b'e']);
    }
}
