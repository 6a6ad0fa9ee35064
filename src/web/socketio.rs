//! Socket.IO v5 packets, sans I/O: what rides in an Engine.IO message packet.
//!
//! A packet is `<type>[<namespace>,][<ack id>][<JSON>]`: `0` CONNECT, `1` DISCONNECT, `2`
//! EVENT, `3` ACK, `4` CONNECT_ERROR (`5`/`6`, the binary variants, are refused). The endpoint
//! serves the default namespace `/` only; a CONNECT to another gets CONNECT_ERROR, as
//! socket.io's server answers for a namespace it does not have.

use serde_json::Value;

/// Longest ack id accepted (socket.io's are counters; this keeps them in a `u64`).
const MAX_ACK_DIGITS: usize = 18;

/// A decoded client packet.
#[derive(Debug, Clone, PartialEq)]
pub enum Packet {
    /// Join a namespace, with the client's optional auth object.
    Connect {
        /// The namespace (`/` unless another was named).
        namespace: String,
        /// The `auth` payload, if any.
        auth: Option<Value>,
    },
    /// Leave a namespace.
    Disconnect {
        /// The namespace.
        namespace: String,
    },
    /// An event: its name and arguments, and the ack id if the client waits for an answer.
    Event {
        /// The namespace.
        namespace: String,
        /// The event's name (the first array element).
        name: String,
        /// The other elements.
        args: Vec<Value>,
        /// Set when the client passed a callback.
        ack: Option<u64>,
    },
    /// The answer to an event the server emitted with an ack.
    Ack {
        /// The namespace.
        namespace: String,
        /// The id the server gave.
        id: u64,
        /// The callback's arguments.
        args: Vec<Value>,
    },
}

/// Why a packet was refused: the client is disconnected, as socket.io's server does with a
/// packet it cannot decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadPacket(pub &'static str);

/// Decodes one packet.
pub fn decode(text: &str) -> Result<Packet, BadPacket> {
    let bytes = text.as_bytes();
    let kind = *bytes.first().ok_or(BadPacket("empty packet"))?;
    let mut rest = &text[1..];
    if matches!(kind, b'5' | b'6') {
        return Err(BadPacket("binary packets are not supported"));
    }
    let namespace = if rest.starts_with('/') {
        let end = rest.find(',').unwrap_or(rest.len());
        let ns = &rest[..end];
        rest = rest.get(end + 1..).unwrap_or("");
        ns.to_string()
    } else {
        "/".to_string()
    };
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    let ack = if digits > 0 {
        if digits > MAX_ACK_DIGITS {
            return Err(BadPacket("ack id too long"));
        }
        let id = rest[..digits].parse::<u64>().map_err(|_| BadPacket("bad ack id"))?;
        rest = &rest[digits..];
        Some(id)
    } else {
        None
    };
    let data: Option<Value> = if rest.is_empty() {
        None
    } else {
        Some(serde_json::from_str(rest).map_err(|_| BadPacket("payload is not JSON"))?)
    };
    match kind {
        b'0' => {
            if ack.is_some() || data.as_ref().is_some_and(|d| !d.is_object()) {
                return Err(BadPacket("CONNECT payload must be an object"));
            }
            Ok(Packet::Connect { namespace, auth: data })
        }
        b'1' => Ok(Packet::Disconnect { namespace }),
        b'2' => {
            let Some(Value::Array(mut items)) = data else {
                return Err(BadPacket("EVENT payload must be an array"));
            };
            if !matches!(items.first(), Some(Value::String(_))) {
                return Err(BadPacket("EVENT needs a name"));
            }
            let Value::String(name) = items.remove(0) else { unreachable!("checked above") };
            Ok(Packet::Event { namespace, name, args: items, ack })
        }
        b'3' => {
            let (Some(id), Some(Value::Array(args))) = (ack, data) else {
                return Err(BadPacket("ACK needs an id and an array"));
            };
            Ok(Packet::Ack { namespace, id, args })
        }
        _ => Err(BadPacket("unknown packet type")),
    }
}

/// `0{"sid":...}`: the server's answer to a CONNECT on the default namespace.
pub fn connect_ok(sid: &str) -> String {
    format!(r#"0{{"sid":"{sid}"}}"#)
}

/// `4{"message":...}`: a refused CONNECT.
pub fn connect_error(namespace: &str, message: &str) -> String {
    let prefix = if namespace == "/" { String::new() } else { format!("{namespace},") };
    format!("4{prefix}{{\"message\":{}}}", Value::String(message.to_string()))
}

/// `2["name",...args]`: an event for the default namespace; `args` is JSON text of the
/// elements after the name, comma-separated (empty for none).
pub fn event(name: &str, args_json: &str) -> String {
    let mut out = String::with_capacity(name.len() + args_json.len() + 8);
    out.push_str("2[");
    out.push_str(&Value::String(name.to_string()).to_string());
    if !args_json.is_empty() {
        out.push(',');
        out.push_str(args_json);
    }
    out.push(']');
    out
}

/// `2<id>["name",...]`: an event the client should acknowledge.
pub fn event_with_ack(name: &str, args_json: &str, id: u64) -> String {
    let plain = event(name, args_json);
    format!("2{id}{}", &plain[1..])
}

/// `3<id>[...]`: the server's answer to an event the client emitted with a callback.
pub fn ack(id: u64, args_json: &str) -> String {
    format!("3{id}[{args_json}]")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn client_packets_decode() {
        assert_eq!(decode("0").unwrap(), Packet::Connect { namespace: "/".into(), auth: None });
        assert_eq!(
            decode(r#"0{"token":"x"}"#).unwrap(),
            Packet::Connect { namespace: "/".into(), auth: Some(json!({"token": "x"})) }
        );
        assert_eq!(decode("0/admin,").unwrap(), Packet::Connect { namespace: "/admin".into(), auth: None });
        assert_eq!(
            decode(r#"212["sync",{"clientName":"ann"}]"#).unwrap(),
            Packet::Event {
                namespace: "/".into(),
                name: "sync".into(),
                args: vec![json!({"clientName": "ann"})],
                ack: Some(12)
            }
        );
        assert_eq!(
            decode(r#"2/admin,["hi"]"#).unwrap(),
            Packet::Event { namespace: "/admin".into(), name: "hi".into(), args: vec![], ack: None }
        );
        assert_eq!(
            decode(r#"33["ok"]"#).unwrap(),
            Packet::Ack { namespace: "/".into(), id: 3, args: vec![json!("ok")] }
        );
        assert_eq!(decode("1").unwrap(), Packet::Disconnect { namespace: "/".into() });
    }

    #[test]
    fn garbage_is_refused() {
        for bad in
            ["", "9", "2", "2{}", "2[1]", "2[", "0[1]", "3[1]", "51-[\"x\"]", "2123456789012345678901[\"x\"]"]
        {
            assert!(decode(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn server_packets_encode() {
        assert_eq!(connect_ok("s1"), r#"0{"sid":"s1"}"#);
        assert_eq!(connect_error("/x", "Invalid namespace"), r#"4/x,{"message":"Invalid namespace"}"#);
        assert_eq!(event("hello", r#"{"a":1}"#), r#"2["hello",{"a":1}]"#);
        assert_eq!(event("bye", ""), r#"2["bye"]"#);
        assert_eq!(event_with_ack("q", "1", 7), r#"27["q",1]"#);
        assert_eq!(ack(4, r#""ok""#), r#"34["ok"]"#);
    }
}
