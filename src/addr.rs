//! Addresses: what a user types ([`AddressSpec`]) and what a socket is bound or connected to
//! ([`SocketAddress`]).
//!
//! The command line accepts `HOST:PORT`, `PORT` (meaning `127.0.0.1:PORT`), `[V6]:PORT` and
//! `unix:PATH`. [`AddressSpec`] is the parsed form; [`AddressSpec::resolve_one`] turns it into a
//! [`SocketAddress`], the union of TCP and Unix-domain addresses that Node folds into
//! `listen(port, host)` / `listen(path)` and reports through `remoteAddress`/`remoteFamily`.

use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::str::FromStr;

/// Host used when only a port is given.
const DEFAULT_HOST: &str = "127.0.0.1";

/// An address as the user wrote it, not yet resolved: a TCP host (a name such as `localhost`,
/// or a literal) and port, or a Unix socket path. [`AddressSpec::resolve_one`] makes it a
/// [`SocketAddress`], which is what a socket is bound or connected to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum AddressSpec {
    /// A TCP address. `host` is an IPv4 literal, an IPv6 literal (stored
    /// without brackets) or a host name such as `localhost`; port 0 asks the
    /// OS for a free port.
    Tcp {
        /// IP literal or host name, without brackets.
        host: String,
        /// Port number; 0 means "any free port".
        port: u16,
    },
    /// A Unix domain socket at this path (never empty).
    Unix(PathBuf),
}

/// Why an address string was rejected; its text names the input and the
/// problem, so it can be shown to the user as is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressSpecError {
    input: String,
    reason: String,
}

impl AddressSpecError {
    fn new(input: &str, reason: impl Into<String>) -> Self {
        AddressSpecError { input: input.to_string(), reason: reason.into() }
    }

    /// The rejected input, as given.
    pub fn input(&self) -> &str {
        &self.input
    }

    /// What was wrong with it, without the input.
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

impl fmt::Display for AddressSpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid address {:?}: {} (expected PORT, HOST:PORT, [IPV6]:PORT or unix:PATH)",
            self.input, self.reason
        )
    }
}

impl std::error::Error for AddressSpecError {}

impl FromStr for AddressSpec {
    type Err = AddressSpecError;

    /// Parses `unix:PATH`, `PORT`, `HOST:PORT` (IPv4 literal or host name) or
    /// `[V6]:PORT`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(path) = s.strip_prefix("unix:") {
            if path.is_empty() {
                return Err(AddressSpecError::new(s, "empty unix socket path"));
            }
            return Ok(AddressSpec::Unix(PathBuf::from(path)));
        }
        if s.is_empty() {
            return Err(AddressSpecError::new(s, "empty address"));
        }
        if let Some(rest) = s.strip_prefix('[') {
            let Some((v6, after)) = rest.split_once(']') else {
                return Err(AddressSpecError::new(s, "missing ']' after IPv6 address"));
            };
            if v6.parse::<Ipv6Addr>().is_err() {
                return Err(AddressSpecError::new(s, format!("invalid IPv6 address {v6:?}")));
            }
            let Some(port) = after.strip_prefix(':') else {
                return Err(AddressSpecError::new(s, "expected ':PORT' after ']'"));
            };
            let port = parse_port(s, port)?;
            return Ok(AddressSpec::Tcp { host: v6.to_string(), port });
        }
        if s.bytes().all(|b| b.is_ascii_digit()) {
            let port = parse_port(s, s)?;
            return Ok(AddressSpec::Tcp { host: DEFAULT_HOST.to_string(), port });
        }
        let Some((host, port)) = s.rsplit_once(':') else {
            return Err(AddressSpecError::new(s, "missing port"));
        };
        if host.contains(':') || host.parse::<Ipv6Addr>().is_ok() {
            return Err(AddressSpecError::new(s, "IPv6 addresses must be in brackets, e.g. [::1]:8080"));
        }
        validate_host(s, host)?;
        let port = parse_port(s, port)?;
        Ok(AddressSpec::Tcp { host: host.to_string(), port })
    }
}

impl fmt::Display for AddressSpec {
    /// Canonical text: `127.0.0.1:8080`, `[::1]:8080`, `localhost:80`, `unix:/p`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AddressSpec::Tcp { host, port } if host.contains(':') => write!(f, "[{host}]:{port}"),
            AddressSpec::Tcp { host, port } => write!(f, "{host}:{port}"),
            AddressSpec::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

impl AddressSpec {
    /// Resolves a TCP address to the socket addresses to bind or connect.
    ///
    /// IP literals are converted directly, without any DNS lookup; host names go
    /// through the system resolver ([`ToSocketAddrs`]). Errors name the host:
    /// a lookup failure keeps its [`io::ErrorKind`], and a lookup that yields no
    /// address is [`io::ErrorKind::NotFound`]. A Unix address has no socket
    /// address and gives [`io::ErrorKind::InvalidInput`].
    pub fn resolve(&self) -> io::Result<Vec<SocketAddr>> {
        match self {
            AddressSpec::Unix(_) => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{self} is a unix socket address, not a TCP one"),
            )),
            AddressSpec::Tcp { host, port } => {
                if let Ok(ip) = host.parse::<IpAddr>() {
                    return Ok(vec![SocketAddr::new(ip, *port)]);
                }
                let addrs: Vec<SocketAddr> = (host.as_str(), *port)
                    .to_socket_addrs()
                    .map_err(|e| io::Error::new(e.kind(), format!("cannot resolve host {host:?}: {e}")))?
                    .collect();
                if addrs.is_empty() {
                    return Err(io::Error::new(
                        io::ErrorKind::NotFound,
                        format!("cannot resolve host {host:?}: no addresses found"),
                    ));
                }
                Ok(addrs)
            }
        }
    }
}

/// Formats a resolved socket address like [`AddressSpec`]'s `Display`:
/// `127.0.0.1:54321` or `[::1]:54321`.
///
/// It exists because the contract's chat labels, hub session ids and
/// `listening on` lines use exactly this form; an IPv6 scope id and flow info,
/// if any, are left out.
pub fn display_socket_addr(a: &SocketAddr) -> String {
    match a {
        SocketAddr::V4(v4) => format!("{}:{}", v4.ip(), v4.port()),
        SocketAddr::V6(v6) => format!("[{}]:{}", v6.ip(), v6.port()),
    }
}

/// Parses a port number, rejecting non-digits and values above 65535.
fn parse_port(input: &str, port: &str) -> Result<u16, AddressSpecError> {
    if port.is_empty() {
        return Err(AddressSpecError::new(input, "missing port"));
    }
    if !port.bytes().all(|b| b.is_ascii_digit()) {
        return Err(AddressSpecError::new(input, format!("invalid port {port:?}")));
    }
    port.parse::<u16>()
        .map_err(|_| AddressSpecError::new(input, format!("port {port} out of range (0-65535)")))
}

/// Accepts an IPv4 literal or a plausible host name (ASCII letters, digits,
/// `-`, `_` and `.`); rejects malformed dotted-decimal such as `999.1.1.1`.
fn validate_host(input: &str, host: &str) -> Result<(), AddressSpecError> {
    if host.is_empty() {
        return Err(AddressSpecError::new(input, "empty host"));
    }
    if host.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return match host.parse::<Ipv4Addr>() {
            Ok(_) => Ok(()),
            Err(_) => Err(AddressSpecError::new(input, format!("invalid IPv4 address {host:?}"))),
        };
    }
    let ok = host.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if !ok || host.starts_with('.') || host.contains("..") {
        return Err(AddressSpecError::new(input, format!("invalid host name {host:?}")));
    }
    Ok(())
}

impl AddressSpec {
    /// Resolves to the first socket address (names through the system resolver; Node's
    /// `lookup` then `listen`/`connect`).
    pub fn resolve_one(&self) -> io::Result<SocketAddress> {
        match self {
            AddressSpec::Unix(p) => Ok(SocketAddress::Unix(p.clone())),
            AddressSpec::Tcp { .. } => self
                .resolve()?
                .into_iter()
                .next()
                .map(SocketAddress::Inet)
                .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("{self}: no address"))),
        }
    }
}
/// A resolved address: what a socket is bound or connected to, and a socket's own or peer
/// address (never a host name).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SocketAddress {
    /// An IPv4 or IPv6 address and port.
    Inet(SocketAddr),
    /// A Unix-domain socket path.
    Unix(PathBuf),
    /// A Unix-domain peer without a name (clients normally do not bind), Node's `undefined`.
    UnnamedUnix,
}

impl SocketAddress {
    /// Node's `remoteFamily`: `"IPv4"`, `"IPv6"`, or `"unix"` (Node says `undefined`).
    pub fn family(&self) -> &'static str {
        match self {
            SocketAddress::Inet(SocketAddr::V4(_)) => "IPv4",
            SocketAddress::Inet(SocketAddr::V6(_)) => "IPv6",
            _ => "unix",
        }
    }

    /// Node's `remoteAddress`/`localAddress` for TCP sockets.
    pub fn ip(&self) -> Option<std::net::IpAddr> {
        match self {
            SocketAddress::Inet(a) => Some(a.ip()),
            _ => None,
        }
    }

    /// Node's `remotePort`/`localPort` for TCP sockets.
    pub fn port(&self) -> Option<u16> {
        match self {
            SocketAddress::Inet(a) => Some(a.port()),
            _ => None,
        }
    }

    pub(crate) fn from_unix(addr: &std::os::unix::net::SocketAddr) -> Self {
        match addr.as_pathname() {
            Some(p) => SocketAddress::Unix(p.to_path_buf()),
            None => SocketAddress::UnnamedUnix,
        }
    }
}

impl From<SocketAddr> for SocketAddress {
    fn from(a: SocketAddr) -> Self {
        SocketAddress::Inet(a)
    }
}

/// `127.0.0.1:8080`, `[::1]:8080`, `unix:/run/x.sock`, `unix:(unnamed)`.
impl fmt::Display for SocketAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SocketAddress::Inet(a) => write!(f, "{a}"),
            SocketAddress::Unix(p) => write!(f, "unix:{}", p.display()),
            SocketAddress::UnnamedUnix => f.write_str("unix:(unnamed)"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp(host: &str, port: u16) -> AddressSpec {
        AddressSpec::Tcp { host: host.to_string(), port }
    }

    fn parse(s: &str) -> AddressSpec {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn parses_forms() {
        assert_eq!(parse("8080"), tcp("127.0.0.1", 8080));
        assert_eq!(parse("0"), tcp("127.0.0.1", 0));
        assert_eq!(parse("65535"), tcp("127.0.0.1", 65535));
        assert_eq!(parse("0.0.0.0:80"), tcp("0.0.0.0", 80));
        assert_eq!(parse("localhost:3000"), tcp("localhost", 3000));
        assert_eq!(parse("my-host.example_1.com:1"), tcp("my-host.example_1.com", 1));
        assert_eq!(parse("[::1]:8080"), tcp("::1", 8080));
        assert_eq!(parse("[::]:0"), tcp("::", 0));
        assert_eq!(parse("[::ffff:1.2.3.4]:9"), tcp("::ffff:1.2.3.4", 9));
        assert_eq!(parse("unix:/tmp/x.sock"), AddressSpec::Unix("/tmp/x.sock".into()));
        assert_eq!(parse("unix:rel/x"), AddressSpec::Unix("rel/x".into()));
    }

    #[test]
    fn rejects_bad_forms() {
        let cases = [
            ("", "empty address"),
            ("unix:", "empty unix socket path"),
            ("::1", "brackets"),
            ("::1:8080", "brackets"),
            ("fe80::1:80", "brackets"),
            ("65536", "out of range"),
            ("99999999999999999999", "out of range"),
            ("localhost:70000", "out of range"),
            ("[::1]:65536", "out of range"),
            ("localhost", "missing port"),
            ("localhost:", "missing port"),
            ("localhost:-1", "invalid port"),
            ("localhost:8o", "invalid port"),
            (":8080", "empty host"),
            ("[::1]", "expected ':PORT'"),
            ("[::1]8080", "expected ':PORT'"),
            ("[::1:8080", "missing ']'"),
            ("[nope]:80", "invalid IPv6"),
            ("[1.2.3.4]:80", "invalid IPv6"),
            ("999.1.1.1:80", "invalid IPv4"),
            ("1.2.3:80", "invalid IPv4"),
            ("bad host:80", "invalid host name"),
            ("a..b:80", "invalid host name"),
            ("-1", "missing port"),
        ];
        for (input, needle) in cases {
            let err = input.parse::<AddressSpec>().expect_err(&format!("{input:?} should be rejected"));
            let text = err.to_string();
            assert!(text.contains(needle), "{input:?}: {text}");
            assert!(text.contains(&format!("{input:?}")), "{input:?}: {text}");
            assert_eq!(err.input(), input);
        }
    }

    #[test]
    fn displays_canonically() {
        assert_eq!(tcp("127.0.0.1", 8080).to_string(), "127.0.0.1:8080");
        assert_eq!(tcp("::1", 8080).to_string(), "[::1]:8080");
        assert_eq!(tcp("localhost", 1).to_string(), "localhost:1");
        assert_eq!(AddressSpec::Unix("/p".into()).to_string(), "unix:/p");
        for s in ["127.0.0.1:8080", "[::1]:8080", "unix:/p", "localhost:0"] {
            assert_eq!(parse(s).to_string(), s);
        }
        assert_eq!(parse("80").to_string(), "127.0.0.1:80");
    }

    #[test]
    fn displays_socket_addrs() {
        let v4: SocketAddr = "127.0.0.1:54321".parse().expect("literal");
        assert_eq!(display_socket_addr(&v4), "127.0.0.1:54321");
        let v6: SocketAddr = "[::1]:8080".parse().expect("literal");
        assert_eq!(display_socket_addr(&v6), "[::1]:8080");
        let scoped: SocketAddr = "[fe80::1%2]:80".parse().expect("literal");
        assert_eq!(display_socket_addr(&scoped), "[fe80::1]:80");
    }

    #[test]
    fn resolves_literals_without_dns() {
        assert_eq!(
            parse("127.0.0.1:80").resolve().expect("literal"),
            vec!["127.0.0.1:80".parse::<SocketAddr>().expect("literal")]
        );
        assert_eq!(
            parse("[::1]:0").resolve().expect("literal"),
            vec!["[::1]:0".parse::<SocketAddr>().expect("literal")]
        );
        assert_eq!(
            parse("9").resolve().expect("literal"),
            vec!["127.0.0.1:9".parse::<SocketAddr>().expect("literal")]
        );
    }

    #[test]
    fn resolves_localhost() {
        let addrs = parse("localhost:8080").resolve().expect("localhost resolves");
        assert!(!addrs.is_empty());
        assert!(addrs.iter().all(|a| a.ip().is_loopback() && a.port() == 8080));
    }

    #[test]
    fn unix_address_does_not_resolve() {
        let err = parse("unix:/p").resolve().expect_err("not tcp");
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert!(err.to_string().contains("unix:/p"));
    }
}
