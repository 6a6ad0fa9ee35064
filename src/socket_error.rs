//! [`SocketError`]: why the loop destroyed a socket with an error, as `on_close` receives it.
//!
//! Node hands `'error'` an `Error` whose `code` names the cause (`ECONNRESET`,
//! `ERR_STREAM_WRITE_AFTER_END`). Here each cause the loop itself decides on is a variant with
//! its figures, so a handler tells an output limit from a reset by matching, not by decoding
//! an `io::ErrorKind` or a message; errors from the OS (and those an application passes to
//! `destroy_with_error`) stay `io::Error`s.

use std::fmt;
use std::io;
use std::time::Duration;

use crate::error;
use crate::input_budget::InputCut;

/// Why a socket was destroyed with an error (Node's `'error'` argument).
#[derive(Debug)]
#[non_exhaustive]
pub enum SocketError {
    /// A socket call failed (read, write, connect, shutdown, registration), or the application
    /// gave this error to [`crate::Context::destroy_with_error`].
    Io(io::Error),
    /// The queued output passed the hard limit (`max_buffer`): the peer is not reading.
    OutputLimit {
        /// Bytes queued when the limit was checked.
        queued: usize,
        /// The limit.
        limit: usize,
    },
    /// The queued output stayed over the soft limit (`soft_limit`) for its whole window.
    SoftOutputLimit {
        /// Bytes queued when the window ran out.
        queued: usize,
        /// The soft limit.
        soft: usize,
        /// How long the queue may stay over it.
        window: Duration,
    },
    /// `write()` after `end()`: Node's `ERR_STREAM_WRITE_AFTER_END`.
    WriteAfterEnd,
    /// The socket held unfinished input past a bound and its handler did not hang up
    /// ([`crate::input_budget`]).
    InputCut(InputCut),
}

impl SocketError {
    /// Node's `err.code`: the errno name of an OS error (`"ECONNRESET"`, seen through
    /// [`error::context`]), `"ERR_STREAM_WRITE_AFTER_END"`; `None` where Node has no code
    /// (the loop's own limits, errors without an errno).
    pub fn code(&self) -> Option<&'static str> {
        match self {
            SocketError::Io(e) => error::errno_name(e),
            SocketError::WriteAfterEnd => Some("ERR_STREAM_WRITE_AFTER_END"),
            SocketError::OutputLimit { .. }
            | SocketError::SoftOutputLimit { .. }
            | SocketError::InputCut(_) => None,
        }
    }

    /// The OS error number behind an [`SocketError::Io`], if it has one.
    pub fn os_error_code(&self) -> Option<i32> {
        self.io_error().and_then(error::os_error_code)
    }

    /// The `io::Error` of an [`SocketError::Io`].
    pub fn io_error(&self) -> Option<&io::Error> {
        match self {
            SocketError::Io(e) => Some(e),
            _ => None,
        }
    }

    /// For logs: an OS error with its errno name first (`ECONNRESET: Connection reset by
    /// peer`, [`error::describe`]); the others as [`fmt::Display`] words them.
    pub fn describe(&self) -> String {
        match self {
            SocketError::Io(e) => error::describe(e),
            other => other.to_string(),
        }
    }
}

impl fmt::Display for SocketError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SocketError::Io(e) => e.fmt(f),
            SocketError::OutputLimit { queued, limit } => write!(
                f,
                "output buffer limit exceeded: {queued} bytes queued, limit {limit} (peer not reading)"
            ),
            SocketError::SoftOutputLimit { queued, soft, window } => write!(
                f,
                "output buffer over soft limit {soft} for {window:?} ({queued} bytes queued, peer too slow)"
            ),
            SocketError::WriteAfterEnd => f.write_str("write after end (ERR_STREAM_WRITE_AFTER_END)"),
            SocketError::InputCut(cut) => cut.fmt(f),
        }
    }
}

impl std::error::Error for SocketError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            // Its text is this error's text, so what is behind it comes next.
            SocketError::Io(e) => e.source(),
            _ => None,
        }
    }
}

impl From<io::Error> for SocketError {
    fn from(e: io::Error) -> Self {
        SocketError::Io(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_nodes() {
        let reset = SocketError::from(io::Error::from_raw_os_error(libc::ECONNRESET));
        assert_eq!(reset.code(), Some("ECONNRESET"));
        assert_eq!(reset.os_error_code(), Some(libc::ECONNRESET));
        let refused = error::context(io::Error::from_raw_os_error(libc::ECONNREFUSED), "connect");
        assert_eq!(SocketError::Io(refused).code(), Some("ECONNREFUSED"));
        assert_eq!(SocketError::WriteAfterEnd.code(), Some("ERR_STREAM_WRITE_AFTER_END"));
        assert_eq!(SocketError::OutputLimit { queued: 2, limit: 1 }.code(), None);
        assert_eq!(SocketError::Io(io::Error::other("boom")).code(), None);
    }

    #[test]
    fn messages_read_as_before() {
        assert_eq!(
            SocketError::OutputLimit { queued: 9000, limit: 8192 }.to_string(),
            "output buffer limit exceeded: 9000 bytes queued, limit 8192 (peer not reading)"
        );
        let soft =
            SocketError::SoftOutputLimit { queued: 5000, soft: 4096, window: Duration::from_millis(300) };
        assert_eq!(
            soft.to_string(),
            "output buffer over soft limit 4096 for 300ms (5000 bytes queued, peer too slow)"
        );
        assert_eq!(soft.code(), None);
        assert_eq!(SocketError::WriteAfterEnd.to_string(), "write after end (ERR_STREAM_WRITE_AFTER_END)");
        let cut = InputCut::Timeout { held: 10, timeout: Duration::from_secs(1) };
        assert_eq!(SocketError::InputCut(cut).to_string(), cut.to_string());
        let reset = io::Error::from_raw_os_error(libc::ECONNRESET);
        assert_eq!(
            SocketError::Io(io::Error::from_raw_os_error(libc::ECONNRESET)).to_string(),
            reset.to_string()
        );
        assert_eq!(
            SocketError::Io(io::Error::from_raw_os_error(libc::ECONNRESET)).describe(),
            "ECONNRESET: Connection reset by peer"
        );
    }
}
