//! Node's `process.stdin` as a loop socket, for the programs built on the loop (`netloop
//! connect`, examples). Not part of the core: it is the one place a thread appears, and only
//! in the programs that ask for it.
//!
//! A terminal, a regular file and `/dev/null` cannot all be polled (epoll refuses the last
//! two), and making a shared terminal non-blocking would leak into the parent shell. So a
//! thread copies stdin into one end of a socket pair and the loop owns the other end
//! ([`Context::wrap_unix_stream`]). Node does the same for a piped `process.stdin`.

use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::os::unix::net::UnixStream;

use crate::context::Context;
use crate::handler::SocketId;

/// Stdin as a socket of `cx`'s loop: data typed or piped in arrives as `on_data`, EOF as
/// `on_end`, with `pause`/`resume` backpressure. The socket keeps the loop alive like any
/// other; `unref` it (`set_socket_ref(s, false)`) if stdin should not.
pub fn socket(cx: &mut Context) -> io::Result<SocketId> {
    let (ours, theirs) = UnixStream::pair()?;
    let socket = cx.wrap_unix_stream(ours)?;
    std::thread::Builder::new().name("stdin".into()).spawn(move || pump(theirs))?;
    Ok(socket)
}

/// Copies stdin into the loop's end of the pair, then half-closes it at EOF. Blocking reads
/// and writes are fine here: this thread does nothing else, and a full pair means the peer
/// is not taking our input yet (backpressure).
fn pump(mut out: UnixStream) {
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
