//! HTTP/1.1 request heads and responses, sans I/O: bytes in, a parsed head or a status out.
//!
//! Parsing is `httparse`'s (zero-copy, strict about syntax). The limits are ours: the request
//! line, the whole head and the header count are bounded, so a peer can never make the
//! endpoint hold more than [`HeadLimits::max_head`] bytes of an unfinished head. The endpoint
//! applies a deadline to heads that never finish.

use std::fmt::Write as _;

/// Bounds on one request head.
#[derive(Debug, Clone, Copy)]
pub struct HeadLimits {
    /// Longest request line (`GET /path HTTP/1.1`), in bytes: 414 past it.
    pub max_request_line: usize,
    /// Longest head (request line and headers), in bytes: 431 past it.
    pub max_head: usize,
    /// Most header fields: 431 past it.
    pub max_headers: usize,
}

impl Default for HeadLimits {
    fn default() -> Self {
        HeadLimits { max_request_line: 4096, max_head: 8192, max_headers: 32 }
    }
}

/// The status codes the endpoint answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// 101 Switching Protocols.
    SwitchingProtocols,
    /// 200 OK.
    Ok,
    /// 204 No Content (CORS preflight).
    NoContent,
    /// 400 Bad Request.
    BadRequest,
    /// 403 Forbidden (an Origin not on the allow-list).
    Forbidden,
    /// 404 Not Found.
    NotFound,
    /// 405 Method Not Allowed.
    MethodNotAllowed,
    /// 408 Request Timeout (a head or body that never finished).
    RequestTimeout,
    /// 411 Length Required (a POST without Content-Length).
    LengthRequired,
    /// 413 Content Too Large (a body over the endpoint's limit).
    ContentTooLarge,
    /// 414 URI Too Long (a request line over [`HeadLimits::max_request_line`]).
    UriTooLong,
    /// 426 Upgrade Required (a WebSocket path without a WebSocket handshake).
    UpgradeRequired,
    /// 431 Request Header Fields Too Large.
    HeaderFieldsTooLarge,
    /// 501 Not Implemented (Transfer-Encoding).
    NotImplemented,
    /// 503 Service Unavailable (over the connection cap).
    ServiceUnavailable,
    /// 505 HTTP Version Not Supported.
    VersionNotSupported,
}

impl Status {
    /// The numeric code.
    pub fn code(self) -> u16 {
        match self {
            Status::SwitchingProtocols => 101,
            Status::Ok => 200,
            Status::NoContent => 204,
            Status::BadRequest => 400,
            Status::Forbidden => 403,
            Status::NotFound => 404,
            Status::MethodNotAllowed => 405,
            Status::RequestTimeout => 408,
            Status::LengthRequired => 411,
            Status::ContentTooLarge => 413,
            Status::UriTooLong => 414,
            Status::UpgradeRequired => 426,
            Status::HeaderFieldsTooLarge => 431,
            Status::NotImplemented => 501,
            Status::ServiceUnavailable => 503,
            Status::VersionNotSupported => 505,
        }
    }

    /// The reason phrase.
    pub fn reason(self) -> &'static str {
        match self {
            Status::SwitchingProtocols => "Switching Protocols",
            Status::Ok => "OK",
            Status::NoContent => "No Content",
            Status::BadRequest => "Bad Request",
            Status::Forbidden => "Forbidden",
            Status::NotFound => "Not Found",
            Status::MethodNotAllowed => "Method Not Allowed",
            Status::RequestTimeout => "Request Timeout",
            Status::LengthRequired => "Length Required",
            Status::ContentTooLarge => "Content Too Large",
            Status::UriTooLong => "URI Too Long",
            Status::UpgradeRequired => "Upgrade Required",
            Status::HeaderFieldsTooLarge => "Request Header Fields Too Large",
            Status::NotImplemented => "Not Implemented",
            Status::ServiceUnavailable => "Service Unavailable",
            Status::VersionNotSupported => "HTTP Version Not Supported",
        }
    }
}

/// The parts of a request head the endpoint uses, owned (the head's bytes are dropped once
/// parsed).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Request {
    /// `GET`, `POST`, ...
    pub method: String,
    /// The path, without the query.
    pub path: String,
    /// The query string after `?`, raw (empty if none).
    pub query: String,
    /// `Host`.
    pub host: Option<String>,
    /// `Origin`.
    pub origin: Option<String>,
    /// `Upgrade`, lowercased.
    pub upgrade: Option<String>,
    /// `Connection`, lowercased (a token list).
    pub connection: Option<String>,
    /// `Sec-WebSocket-Key`; `Some("")` for an empty one, and repeated keys are an error.
    pub websocket_key: Option<String>,
    /// `Sec-WebSocket-Version`.
    pub websocket_version: Option<String>,
    /// `Content-Length`, parsed.
    pub content_length: Option<usize>,
    /// Whether `Transfer-Encoding` was present (chunked bodies are not accepted).
    pub transfer_encoding: bool,
    /// HTTP/1.0 (whose connections close after one response unless kept alive).
    pub http10: bool,
}

impl Request {
    /// Whether the `Connection` header lists `token` (case-insensitive).
    pub fn connection_has(&self, token: &str) -> bool {
        self.connection.as_deref().is_some_and(|c| c.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    }

    /// The value of query parameter `name`, percent-decoding not needed for the parameters we
    /// read (`EIO`, `transport`, `sid`, `t`).
    pub fn query_param(&self, name: &str) -> Option<&str> {
        self.query.split('&').find_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (k == name).then_some(v)
        })
    }
}

/// What [`parse_head`] made of the bytes so far.
#[derive(Debug, PartialEq, Eq)]
pub enum Head {
    /// The head is not complete yet (and within the limits).
    Partial,
    /// A complete head, and how many bytes it took.
    Complete(Box<Request>, usize),
    /// The head breaks the syntax or a limit: answer with this status and close.
    Invalid(Status),
}

/// Parses the request head at the start of `buf`.
pub fn parse_head(buf: &[u8], limits: &HeadLimits) -> Head {
    // The request line's limit is checked on the raw bytes, so an endless line is refused as
    // soon as it passes the limit, not only when the head limit is reached.
    let line_end = buf.iter().position(|&b| b == b'\n');
    if line_end.unwrap_or(buf.len()) > limits.max_request_line {
        return Head::Invalid(Status::UriTooLong);
    }
    let mut headers = vec![httparse::EMPTY_HEADER; limits.max_headers];
    let mut req = httparse::Request::new(&mut headers);
    let window = &buf[..buf.len().min(limits.max_head)];
    match req.parse(window) {
        Ok(httparse::Status::Partial) => {
            if buf.len() >= limits.max_head {
                Head::Invalid(Status::HeaderFieldsTooLarge)
            } else {
                Head::Partial
            }
        }
        Ok(httparse::Status::Complete(used)) => match owned(&req) {
            Ok(request) => Head::Complete(Box::new(request), used),
            Err(status) => Head::Invalid(status),
        },
        Err(httparse::Error::TooManyHeaders) => Head::Invalid(Status::HeaderFieldsTooLarge),
        Err(httparse::Error::Version) => Head::Invalid(Status::VersionNotSupported),
        Err(_) => Head::Invalid(Status::BadRequest),
    }
}

/// Copies what the endpoint needs out of a parsed head, checking the headers it relies on.
fn owned(req: &httparse::Request<'_, '_>) -> Result<Request, Status> {
    let target = req.path.unwrap_or("/");
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let mut out = Request {
        method: req.method.unwrap_or("").to_string(),
        path: path.to_string(),
        query: query.to_string(),
        http10: req.version == Some(0),
        ..Request::default()
    };
    for h in req.headers.iter() {
        let value = std::str::from_utf8(h.value).map_err(|_| Status::BadRequest)?.trim();
        let name = h.name;
        let set = |slot: &mut Option<String>, v: String| -> Result<(), Status> {
            // A repeated header the endpoint decides on is ambiguous: refuse it (request
            // smuggling and key confusion both start with two values).
            if slot.replace(v).is_some() {
                return Err(Status::BadRequest);
            }
            Ok(())
        };
        if name.eq_ignore_ascii_case("host") {
            set(&mut out.host, value.to_string())?;
        } else if name.eq_ignore_ascii_case("origin") {
            set(&mut out.origin, value.to_string())?;
        } else if name.eq_ignore_ascii_case("upgrade") {
            set(&mut out.upgrade, value.to_ascii_lowercase())?;
        } else if name.eq_ignore_ascii_case("connection") {
            let lower = value.to_ascii_lowercase();
            out.connection = Some(match out.connection.take() {
                Some(prev) => format!("{prev}, {lower}"),
                None => lower,
            });
        } else if name.eq_ignore_ascii_case("sec-websocket-key") {
            set(&mut out.websocket_key, value.to_string())?;
        } else if name.eq_ignore_ascii_case("sec-websocket-version") {
            set(&mut out.websocket_version, value.to_string())?;
        } else if name.eq_ignore_ascii_case("content-length") {
            let n = value.parse::<usize>().map_err(|_| Status::BadRequest)?;
            if out.content_length.replace(n).is_some() {
                return Err(Status::BadRequest);
            }
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            out.transfer_encoding = true;
        }
    }
    Ok(out)
}

/// A response under construction: status, headers, body.
#[derive(Debug)]
pub struct Response {
    status: Status,
    head: String,
    body: Vec<u8>,
}

impl Response {
    /// A response with `status` and no headers yet.
    pub fn new(status: Status) -> Self {
        let mut head = String::with_capacity(128);
        let _ = write!(head, "HTTP/1.1 {} {}\r\n", status.code(), status.reason());
        Response { status, head, body: Vec::new() }
    }

    /// An error response: the reason as a plain-text body, and the connection closes.
    pub fn error(status: Status) -> Self {
        Response::new(status)
            .header("Content-Type", "text/plain; charset=utf-8")
            .header("Connection", "close")
            .body(format!("{} {}\n", status.code(), status.reason()).into_bytes())
    }

    /// Adds a header (the caller passes only names and values it built itself).
    pub fn header(mut self, name: &str, value: &str) -> Self {
        let _ = write!(self.head, "{name}: {value}\r\n");
        self
    }

    /// Sets the body (Content-Length is written for it).
    pub fn body(mut self, body: Vec<u8>) -> Self {
        self.body = body;
        self
    }

    /// The status.
    pub fn status(&self) -> Status {
        self.status
    }

    /// The bytes on the wire.
    pub fn into_bytes(self) -> Vec<u8> {
        let mut out = self.head.into_bytes();
        if self.status != Status::SwitchingProtocols {
            let _ = write!(ByteWriter(&mut out), "Content-Length: {}\r\n", self.body.len());
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&self.body);
        out
    }
}

/// The answer to a connection over the server's connection cap: `503`, retry in a second.
pub fn over_capacity() -> Vec<u8> {
    Response::new(Status::ServiceUnavailable)
        .header("Content-Type", "text/plain; charset=utf-8")
        .header("Retry-After", "1")
        .header("Connection", "close")
        .body(b"503 Service Unavailable: too many connections\n".to_vec())
        .into_bytes()
}

/// `fmt::Write` over a byte vector.
struct ByteWriter<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for ByteWriter<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Head {
        parse_head(s.as_bytes(), &HeadLimits::default())
    }

    #[test]
    fn a_complete_head_is_parsed_with_the_headers_the_endpoint_reads() {
        let text = "GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: x\r\nOrigin: http://a\r\n\
                    Connection: keep-alive, Upgrade\r\nUpgrade: WebSocket\r\n\r\nrest";
        let Head::Complete(req, used) = parse(text) else { panic!("not complete") };
        assert_eq!(used, text.len() - 4);
        assert_eq!(req.method, "GET");
        assert_eq!(req.path, "/socket.io/");
        assert_eq!(req.query_param("EIO"), Some("4"));
        assert_eq!(req.query_param("transport"), Some("polling"));
        assert_eq!(req.query_param("sid"), None);
        assert_eq!(req.origin.as_deref(), Some("http://a"));
        assert_eq!(req.upgrade.as_deref(), Some("websocket"));
        assert!(req.connection_has("upgrade"));
    }

    #[test]
    fn an_unfinished_head_is_partial_until_a_limit_is_reached() {
        assert_eq!(parse("GET / HTTP/1.1\r\nHost: x\r\n"), Head::Partial);
        let long_line = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(5000));
        assert_eq!(parse(&long_line), Head::Invalid(Status::UriTooLong));
        let endless = format!("GET /{}", "a".repeat(5000));
        assert_eq!(parse(&endless), Head::Invalid(Status::UriTooLong));
        let big_headers = format!("GET / HTTP/1.1\r\nX: {}\r\n", "b".repeat(9000));
        assert_eq!(parse(&big_headers), Head::Invalid(Status::HeaderFieldsTooLarge));
        let many: String = (0..40).map(|i| format!("X{i}: y\r\n")).collect();
        assert_eq!(
            parse(&format!("GET / HTTP/1.1\r\n{many}\r\n")),
            Head::Invalid(Status::HeaderFieldsTooLarge)
        );
    }

    #[test]
    fn malformed_heads_are_bad_requests() {
        assert_eq!(parse("GET\x01 / HTTP/1.1\r\n\r\n"), Head::Invalid(Status::BadRequest));
        assert_eq!(parse("GET / HTTP/1.1\r\nBad Header\r\n\r\n"), Head::Invalid(Status::BadRequest));
        assert_eq!(parse("GET / HTTP/2.0\r\n\r\n"), Head::Invalid(Status::VersionNotSupported));
        assert_eq!(
            parse("POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"),
            Head::Invalid(Status::BadRequest)
        );
        assert_eq!(parse("POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n"), Head::Invalid(Status::BadRequest));
        assert_eq!(
            parse("GET / HTTP/1.1\r\nSec-WebSocket-Key: a\r\nSec-WebSocket-Key: b\r\n\r\n"),
            Head::Invalid(Status::BadRequest)
        );
    }

    #[test]
    fn responses_carry_a_content_length() {
        let bytes =
            Response::new(Status::Ok).header("Content-Type", "text/plain").body(b"hi".to_vec()).into_bytes();
        assert_eq!(bytes, b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nhi");
        let err = String::from_utf8(Response::error(Status::UriTooLong).into_bytes()).unwrap();
        assert!(err.starts_with("HTTP/1.1 414 URI Too Long\r\n"), "{err}");
        assert!(err.contains("Connection: close\r\n"));
    }
}
