//! Node's `new net.Socket({ fd })`: an already connected stream made outside the loop becomes a
//! loop socket with the usual events.
//!
//! Why it exists: `netloop connect` reads stdin on a helper thread (stdin may be a regular
//! file or `/dev/null`, which epoll refuses, and making a shared terminal non-blocking would
//! leak into the parent shell). The thread writes into one end of a `UnixStream::pair()`; the
//! other end is wrapped here, so stdin arrives as `on_data`/`on_end` with `pause`/`resume`
//! backpressure, on the one poll loop, with no extra wake-up API in the library. Node does the
//! same for a piped `process.stdin` (a `net.Socket` on the pipe's fd).

use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::os::unix::net::UnixStream;

use crate::context::Context;
use crate::handler::SocketId;
use crate::socket::{Stream, NO_SERVER};

impl Context {
    /// Adopts a connected Unix stream (e.g. one end of `UnixStream::pair()`) as a socket of
    /// this loop. It is connected already, so no `on_connect` follows; data, `end`, `drain`,
    /// `error` and `close` are delivered as for any socket, with the client options
    /// ([`Context::set_client_options`]). Fails only if the stream cannot be made
    /// non-blocking.
    pub fn wrap_unix_stream(&mut self, stream: std::os::unix::net::UnixStream) -> io::Result<SocketId> {
        stream.set_nonblocking(true)?;
        Ok(self.adopt(Stream::Unix(mio::net::UnixStream::from_std(stream)), NO_SERVER, 0))
    }

    /// Node's `process.stdin` as a loop socket: data typed or piped in arrives as `on_data`,
    /// EOF as `on_end`, with `pause`/`resume` backpressure. A helper thread copies stdin into
    /// one end of a socket pair the loop owns, because a terminal, a regular file and
    /// `/dev/null` cannot all be polled (epoll refuses the last two) and making a terminal
    /// non-blocking would leak into the parent shell. The socket keeps the loop alive like any
    /// other; `unref` it (`set_socket_ref(s, false)`) if stdin should not.
    pub fn stdin_socket(&mut self) -> io::Result<SocketId> {
        let (ours, theirs) = UnixStream::pair()?;
        let socket = self.wrap_unix_stream(ours)?;
        std::thread::Builder::new().name("stdin".into()).spawn(move || pump_stdin(theirs))?;
        Ok(socket)
    }
}

/// Copies stdin into the loop's end of the pair, then half-closes it at EOF. Blocking reads
/// and writes are fine here: this thread does nothing else, and a full pair means the server
/// is not taking our input yet (backpressure).
fn pump_stdin(mut out: UnixStream) {
    let mut stdin = io::stdin().lock();
    // At least StdinLock's own buffer size, so reads go straight into ours.
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match stdin.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                if out.write_all(&buf[..n]).is_err() {
                    return; // the loop is gone
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    let _ = out.shutdown(Shutdown::Write);
}
