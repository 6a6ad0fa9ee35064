//! Node's `new net.Socket({ fd })`: an already connected stream made outside the loop becomes a
//! loop socket with the usual events.
//!
//! One end of a `UnixStream::pair()` wrapped here is how a byte source that cannot be polled
//! reaches the loop: whatever writes the other end (see [`crate::stdin`]) arrives as
//! `on_data`/`on_end` with `pause`/`resume` backpressure, with no extra wake-up API in the
//! library.

use std::io;

use crate::context::Context;
use crate::handler::SocketId;
use crate::socket::{Stream, NO_SERVER};

impl Context {
    /// Adopts a connected Unix stream (e.g. one end of `UnixStream::pair()`) as a socket of
    /// this loop. It is connected already, so no `on_connect` follows; data, `end`, `drain`
    /// and `close` (with its error) are delivered as for any socket, with the client options
    /// ([`Context::set_client_options`]). Fails only if the stream cannot be made
    /// non-blocking.
    pub fn wrap_unix_stream(&mut self, stream: std::os::unix::net::UnixStream) -> io::Result<SocketId> {
        stream.set_nonblocking(true)?;
        Ok(self.adopt(Stream::Unix(mio::net::UnixStream::from_std(stream)), NO_SERVER, false))
    }
}
