//! Engine.IO v4, sans I/O: packets, polling payloads and the handshake (socket.io's transport
//! layer: a session id, polling and WebSocket transports, the upgrade probe, server pings).
//!
//! A packet is a type digit and its data: `0` open, `1` close, `2` ping, `3` pong, `4`
//! message, `5` upgrade, `6` noop. Over WebSocket each text frame is one packet; over polling a
//! payload is packets joined by the record separator `\x1e`. Binary packets (`b` + base64 over
//! polling, binary frames over WebSocket) are not accepted: the endpoint speaks JSON only.

use std::fmt::Write as _;
use std::time::Duration;

/// The record separator between packets of one polling payload.
pub const SEPARATOR: char = '\x1e';

/// An Engine.IO packet type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketType {
    /// `0`: the handshake (server to client).
    Open,
    /// `1`: close the session.
    Close,
    /// `2`: ping (the server's heartbeat, or the client's upgrade probe `2probe`).
    Ping,
    /// `3`: pong.
    Pong,
    /// `4`: a message for the layer above (socket.io).
    Message,
    /// `5`: the client switched to the WebSocket transport.
    Upgrade,
    /// `6`: nothing; ends a pending poll during an upgrade.
    Noop,
}

impl PacketType {
    /// The type's digit.
    pub fn digit(self) -> char {
        match self {
            PacketType::Open => '0',
            PacketType::Close => '1',
            PacketType::Ping => '2',
            PacketType::Pong => '3',
            PacketType::Message => '4',
            PacketType::Upgrade => '5',
            PacketType::Noop => '6',
        }
    }

    fn from_digit(c: u8) -> Option<PacketType> {
        Some(match c {
            b'0' => PacketType::Open,
            b'1' => PacketType::Close,
            b'2' => PacketType::Ping,
            b'3' => PacketType::Pong,
            b'4' => PacketType::Message,
            b'5' => PacketType::Upgrade,
            b'6' => PacketType::Noop,
            _ => return None,
        })
    }
}

/// One decoded packet, borrowing its data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet<'a> {
    /// Its type.
    pub kind: PacketType,
    /// What follows the digit.
    pub data: &'a str,
}

/// A packet the endpoint cannot accept: the session is closed (a polling request gets 400).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadPacket;

/// Decodes one packet (a WebSocket text frame, or one record of a polling payload).
pub fn decode(text: &str) -> Result<Packet<'_>, BadPacket> {
    let first = *text.as_bytes().first().ok_or(BadPacket)?;
    let kind = PacketType::from_digit(first).ok_or(BadPacket)?;
    Ok(Packet { kind, data: &text[1..] })
}

/// Decodes a polling payload: the packets between separators, each checked.
pub fn decode_payload(body: &str) -> Result<Vec<Packet<'_>>, BadPacket> {
    body.split(SEPARATOR).map(decode).collect()
}

/// Appends one packet to a polling payload being built.
pub fn push_payload(out: &mut String, kind: PacketType, data: &str) {
    if !out.is_empty() {
        out.push(SEPARATOR);
    }
    out.push(kind.digit());
    out.push_str(data);
}

/// A packet as one WebSocket text frame's payload.
pub fn encode(kind: PacketType, data: &str) -> String {
    let mut out = String::with_capacity(data.len() + 1);
    out.push(kind.digit());
    out.push_str(data);
    out
}

/// The timing and size a session announces in its handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// How often the server pings.
    pub ping_interval: Duration,
    /// How long after a ping the client's pong may take before the session is closed.
    pub ping_timeout: Duration,
    /// Longest polling payload (request body) accepted, in bytes.
    pub max_payload: usize,
}

impl Default for Timing {
    /// socket.io's defaults (25 s, 20 s), with a 1 MB payload.
    fn default() -> Self {
        Timing {
            ping_interval: Duration::from_secs(25),
            ping_timeout: Duration::from_secs(20),
            max_payload: 1_000_000,
        }
    }
}

/// The open packet's data: `{"sid":...,"upgrades":[...],"pingInterval":...,...}`.
pub fn open_data(sid: &str, upgrades: bool, timing: &Timing) -> String {
    let mut out = String::with_capacity(128);
    let upgrades = if upgrades { r#"["websocket"]"# } else { "[]" };
    let _ = write!(
        out,
        r#"{{"sid":"{sid}","upgrades":{upgrades},"pingInterval":{},"pingTimeout":{},"maxPayload":{}}}"#,
        timing.ping_interval.as_millis(),
        timing.ping_timeout.as_millis(),
        timing.max_payload
    );
    out
}

/// Which transport a request names (`transport=` in the query).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// HTTP long-polling.
    Polling,
    /// WebSocket.
    WebSocket,
}

impl Transport {
    /// Parses the query value.
    pub fn from_query(value: Option<&str>) -> Option<Transport> {
        match value? {
            "polling" => Some(Transport::Polling),
            "websocket" => Some(Transport::WebSocket),
            _ => None,
        }
    }
}

/// Engine.IO's error codes for refused requests (the JSON body of a 400 reply).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestError {
    /// 0: unknown transport.
    UnknownTransport,
    /// 1: unknown or expired session id.
    UnknownSid,
    /// 2: bad handshake method.
    BadHandshakeMethod,
    /// 3: bad request (malformed payload, wrong protocol version, a second poll at once).
    BadRequest,
    /// 4: forbidden (an Origin not allowed).
    Forbidden,
    /// 5: unsupported protocol version.
    UnsupportedProtocolVersion,
}

impl RequestError {
    /// The JSON body engine.io's server sends for it.
    pub fn body(self) -> &'static str {
        match self {
            RequestError::UnknownTransport => r#"{"code":0,"message":"Transport unknown"}"#,
            RequestError::UnknownSid => r#"{"code":1,"message":"Session ID unknown"}"#,
            RequestError::BadHandshakeMethod => r#"{"code":2,"message":"Bad handshake method"}"#,
            RequestError::BadRequest => r#"{"code":3,"message":"Bad request"}"#,
            RequestError::Forbidden => r#"{"code":4,"message":"Forbidden"}"#,
            RequestError::UnsupportedProtocolVersion => {
                r#"{"code":5,"message":"Unsupported protocol version"}"#
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_split_on_the_record_separator() {
        let packets = decode_payload("4hello\x1e2\x1e40").unwrap();
        assert_eq!(
            packets,
            vec![
                Packet { kind: PacketType::Message, data: "hello" },
                Packet { kind: PacketType::Ping, data: "" },
                Packet { kind: PacketType::Message, data: "0" },
            ]
        );
        assert_eq!(decode_payload("4a\x1e\x1e4b"), Err(BadPacket));
        assert_eq!(decode_payload("9x"), Err(BadPacket));
        assert_eq!(decode_payload("bAAEC"), Err(BadPacket));
        let mut out = String::new();
        push_payload(&mut out, PacketType::Message, "a");
        push_payload(&mut out, PacketType::Ping, "");
        assert_eq!(out, "4a\x1e2");
    }

    #[test]
    fn the_open_packet_announces_the_session() {
        let t = Timing {
            ping_interval: Duration::from_millis(300),
            ping_timeout: Duration::from_millis(200),
            max_payload: 1000,
        };
        assert_eq!(
            encode(PacketType::Open, &open_data("abc", true, &t)),
            r#"0{"sid":"abc","upgrades":["websocket"],"pingInterval":300,"pingTimeout":200,"maxPayload":1000}"#
        );
        assert!(open_data("abc", false, &t).contains(r#""upgrades":[]"#));
    }
}
