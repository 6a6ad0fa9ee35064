//! How one hub message (compact JSON, no newline) is framed for the web transports: computed
//! once per message and framing, then shared by every recipient of that kind.

use super::engineio::{PacketType, SEPARATOR};
use super::websocket::{encode, Opcode};

/// A WebSocket text frame holding `text`.
pub fn websocket_text(text: &[u8]) -> Vec<u8> {
    encode(Opcode::Text, text)
}

/// `42["<kind>",<text>]`: the Engine.IO message packet carrying the socket.io event named
/// `kind` with the message as its one argument.
pub fn socketio_packet(kind: &str, text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() + kind.len() + 8);
    out.push(PacketType::Message.digit() as u8);
    out.extend_from_slice(b"2[");
    crate::wire::json::write_str(&mut out, kind);
    out.push(b',');
    out.extend_from_slice(text);
    out.push(b']');
    out
}

/// The socket.io event in a WebSocket text frame.
pub fn socketio_websocket(kind: &str, text: &[u8]) -> Vec<u8> {
    websocket_text(&socketio_packet(kind, text))
}

/// The socket.io event as a polling packet ending with the record separator, so a stream of
/// them is a polling payload once the last separator is dropped.
pub fn socketio_polling(kind: &str, text: &[u8]) -> Vec<u8> {
    let mut out = socketio_packet(kind, text);
    out.push(SEPARATOR as u8);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hub_messages_become_socketio_events() {
        let text = br#"{"type":"joined","room":"ops"}"#;
        assert_eq!(
            socketio_packet("joined", text),
            br#"42["joined",{"type":"joined","room":"ops"}]"#.to_vec()
        );
        assert_eq!(socketio_polling("joined", text).last(), Some(&0x1e));
        let frame = socketio_websocket("joined", text);
        assert_eq!(&frame[..2], &[0x81, socketio_packet("joined", text).len() as u8]);
        assert_eq!(websocket_text(b"{}"), vec![0x81, 2, b'{', b'}']);
    }
}
