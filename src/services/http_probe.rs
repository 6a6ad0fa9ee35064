//! A browser (or `curl`) pointed at a raw TCP port: recognise its request line and answer in
//! its own protocol.
//!
//! Chat and hub are not HTTP. Without this, a browser's request would be relayed to the chat
//! room as lines of text, and the browser would wait on a reply it cannot read. A first line
//! of the form `METHOD SP target SP HTTP/d.d` gets a short `400 Bad Request` saying what the
//! port is and how to connect to it, and the connection is closed.

use crate::addr::SocketAddress;

/// Longest method name recognised (`PROPPATCH`, `MKCALENDAR`, ... fit).
const MAX_METHOD: usize = 20;

/// Whether `line` (without its line end) is an HTTP/1.x request line, or the HTTP/2 preface's
/// `PRI * HTTP/2.0`.
pub fn is_request_line(line: &[u8]) -> bool {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let mut parts = line.split(|&b| b == b' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let method_ok = (1..=MAX_METHOD).contains(&method.len())
        && method.iter().all(|&b| b.is_ascii_uppercase() || b == b'-' || b == b'_');
    let target_ok = !target.is_empty() && target.iter().all(|&b| b.is_ascii_graphic() || b >= 0x80);
    let version_ok = matches!(version, [b'H', b'T', b'T', b'P', b'/', major, b'.', minor]
        if major.is_ascii_digit() && minor.is_ascii_digit());
    method_ok && target_ok && version_ok
}

/// Whether `data`, the first bytes of a connection, starts with a complete HTTP request line.
pub fn starts_with_request(data: &[u8]) -> bool {
    data.iter().position(|&b| b == b'\n').is_some_and(|nl| is_request_line(&data[..nl]))
}

/// The whole reply to the request line `line`: `HTTP/1.1 400 Bad Request` with `body` as
/// `text/plain`, and `Connection: close`. A `HEAD` request gets the head only.
pub fn bad_request(line: &[u8], body: &str) -> Vec<u8> {
    let mut reply = format!(
        "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if !line.starts_with(b"HEAD ") {
        reply.extend_from_slice(body.as_bytes());
    }
    reply
}

/// Which raw TCP service a port runs, for the reply's wording.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Port {
    /// The line chat.
    Chat,
    /// The JSON hub.
    Hub,
}

/// The reply to an HTTP request (starting with `request`) that reached a `port` at `local`:
/// what the port is, and the commands that connect to it.
pub fn refusal(port: Port, request: &[u8], local: Option<&SocketAddress>) -> Vec<u8> {
    let (addr, nc) = connect_hints(local);
    let body = match port {
        Port::Chat => format!(
            "This is a netloop chat port: a line chat over raw TCP, not HTTP.\n\
             Connect with a line client: nc {nc}, or netloop connect {addr}.\n"
        ),
        Port::Hub => format!(
            "This is a netloop hub port: JSON messages over raw TCP, not HTTP.\n\
             Connect with netloop connect {addr} --hub-name NAME, \
             or nc {nc} and send {{\"type\":\"sync\",\"clientName\":\"NAME\"}}.\n"
        ),
    };
    bad_request(request, &body)
}

/// How a user names the address `local` (the one this connection reached) to the tools that
/// speak raw TCP: `(netloop connect ADDR, nc ARGS)`, e.g. `("127.0.0.1:3000", "127.0.0.1
/// 3000")` or `("unix:/tmp/chat.sock", "-U /tmp/chat.sock")`.
pub fn connect_hints(local: Option<&SocketAddress>) -> (String, String) {
    match local {
        Some(SocketAddress::Inet(a)) => {
            (crate::addr::display_socket_addr(a), format!("{} {}", a.ip(), a.port()))
        }
        Some(SocketAddress::Unix(path)) => {
            (format!("unix:{}", path.display()), format!("-U {}", path.display()))
        }
        _ => ("HOST:PORT".to_string(), "HOST PORT".to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_lines_are_recognised() {
        for line in [
            "GET / HTTP/1.1",
            "GET /favicon.ico HTTP/1.1\r",
            "HEAD /index.html?q=1 HTTP/1.0",
            "POST http://example.test/x HTTP/1.1",
            "OPTIONS * HTTP/1.1",
            "CONNECT example.test:443 HTTP/1.1",
            "PRI * HTTP/2.0",
            "PROPFIND /dav/ HTTP/1.1",
        ] {
            assert!(is_request_line(line.as_bytes()), "{line:?}");
        }
    }

    #[test]
    fn chat_text_is_not_a_request_line() {
        for line in [
            "",
            "hello",
            "GET / HTTP/1.1 extra",
            "get / HTTP/1.1",
            "GET  / HTTP/1.1",
            "GET / HTTP/1",
            "GET / http/1.1",
            "GET / HTTP/1.1x",
            "GET /\u{1b}[2J HTTP/1.1",
            "I GET it HTTP/1.1",
            "/nick ann",
        ] {
            assert!(!is_request_line(line.as_bytes()), "{line:?}");
        }
    }

    #[test]
    fn only_a_complete_first_line_counts() {
        assert!(starts_with_request(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
        assert!(!starts_with_request(b"GET / HTTP/1.1"));
        assert!(!starts_with_request(b"hello\nGET / HTTP/1.1\r\n"));
    }

    #[test]
    fn the_reply_is_well_formed_http() {
        let reply = String::from_utf8(bad_request(b"GET / HTTP/1.1", "not http\n")).unwrap();
        assert_eq!(
            reply,
            "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 9\r\n\
             Connection: close\r\n\r\nnot http\n"
        );
        let head = String::from_utf8(bad_request(b"HEAD / HTTP/1.1", "not http\n")).unwrap();
        assert!(head.ends_with("Content-Length: 9\r\nConnection: close\r\n\r\n"), "{head}");
    }

    #[test]
    fn refusals_say_what_the_port_is_and_how_to_connect() {
        let local = SocketAddress::Inet("127.0.0.1:3000".parse().unwrap());
        let chat = String::from_utf8(refusal(Port::Chat, b"GET / HTTP/1.1", Some(&local))).unwrap();
        assert!(chat.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{chat}");
        assert!(chat.contains("chat port"), "{chat}");
        assert!(
            chat.contains("nc 127.0.0.1 3000") && chat.contains("netloop connect 127.0.0.1:3000"),
            "{chat}"
        );
        let hub = String::from_utf8(refusal(Port::Hub, b"GET / HTTP/1.1", Some(&local))).unwrap();
        assert!(hub.contains("hub port") && hub.contains(r#"{"type":"sync","clientName":"NAME"}"#), "{hub}");
    }

    #[test]
    fn hints_name_the_address_as_each_tool_wants_it() {
        let v4 = SocketAddress::Inet("127.0.0.1:3000".parse().unwrap());
        assert_eq!(connect_hints(Some(&v4)), ("127.0.0.1:3000".into(), "127.0.0.1 3000".into()));
        let v6 = SocketAddress::Inet("[::1]:9000".parse().unwrap());
        assert_eq!(connect_hints(Some(&v6)), ("[::1]:9000".into(), "::1 9000".into()));
        let unix = SocketAddress::Unix("/tmp/c.sock".into());
        assert_eq!(connect_hints(Some(&unix)), ("unix:/tmp/c.sock".into(), "-U /tmp/c.sock".into()));
    }
}
