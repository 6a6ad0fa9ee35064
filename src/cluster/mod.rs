//! Hub and chat across processes and machines through Redis: the bus of a node of a cluster.
//!
//! - [`bus`]: a service's bus to the other nodes: publish, name leases, heartbeats, re-joins.
//! - [`resp`]: RESP2, Redis's wire protocol, as a bounded sans-IO codec.
//! - [`conn`]: one Redis connection as a loop socket (handshake, pipelining, reply timeouts,
//!   reconnect with back-off).
//! - [`envelope`]: what nodes say to each other, with origin and sequence number.
//! - [`peers`]: the other nodes as this one knows them: their members, liveness, counters.

pub mod bus;
pub mod conn;
pub mod envelope;
pub mod peers;
pub mod resp;

pub use bus::{ClusterConfig, RedisBus};

use std::io::{BufRead, BufReader, Write};
use std::time::Duration;

use crate::addr::SocketAddress;

/// Checks at start that Redis answers (`AUTH` if needed, then `PING`), so `--cluster` with a
/// wrong address or password fails at once with a clear error instead of serving alone.
/// Blocking, with `timeout` on each step: it runs before the loop starts.
pub fn probe(endpoint: &conn::Endpoint, timeout: Duration) -> Result<(), String> {
    let mut request = Vec::new();
    if let Some(pw) = &endpoint.password {
        resp::encode_command(&mut request, &[b"AUTH", pw.as_bytes()]);
    }
    resp::encode_command(&mut request, &[b"PING"]);
    let replies = if endpoint.password.is_some() { 2 } else { 1 };
    let talk = |stream: &mut dyn ReadWrite| -> std::io::Result<Vec<String>> {
        stream.write_all(&request)?;
        let mut reader = BufReader::new(stream);
        let mut lines = Vec::new();
        for _ in 0..replies {
            let mut line = String::new();
            reader.read_line(&mut line)?;
            lines.push(line.trim_end().to_string());
        }
        Ok(lines)
    };
    let result = match &endpoint.addr {
        SocketAddress::Inet(a) => std::net::TcpStream::connect_timeout(a, timeout).and_then(|mut s| {
            s.set_read_timeout(Some(timeout))?;
            talk(&mut s)
        }),
        SocketAddress::Unix(p) => std::os::unix::net::UnixStream::connect(p).and_then(|mut s| {
            s.set_read_timeout(Some(timeout))?;
            talk(&mut s)
        }),
        SocketAddress::UnnamedUnix => return Err("no Redis address".into()),
    };
    let addr = &endpoint.addr;
    match result {
        Err(e) => Err(format!("cannot reach Redis at {addr}: {}", crate::error::describe(&e))),
        Ok(lines) => match lines.iter().find(|l| l.starts_with('-')) {
            Some(err) => Err(format!("Redis at {addr} refused: {}", &err[1..])),
            None if lines.last().map(String::as_str) == Some("+PONG") => Ok(()),
            None => Err(format!("Redis at {addr} answered PING with {:?}", lines.last())),
        },
    }
}

/// A stream `probe` can talk over.
trait ReadWrite: std::io::Read + Write {}
impl<T: std::io::Read + Write> ReadWrite for T {}
