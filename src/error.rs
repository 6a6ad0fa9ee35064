//! OS errors named the way Node names them (`ECONNRESET`, `EADDRINUSE`), for logs and messages.

use std::io;

/// The errno name of an OS error (`"ECONNRESET"`), if it is one we name.
pub fn errno_name(err: &io::Error) -> Option<&'static str> {
    let name = match err.raw_os_error()? {
        libc::EADDRINUSE => "EADDRINUSE",
        libc::EADDRNOTAVAIL => "EADDRNOTAVAIL",
        libc::EACCES => "EACCES",
        libc::ECONNREFUSED => "ECONNREFUSED",
        libc::ECONNRESET => "ECONNRESET",
        libc::ECONNABORTED => "ECONNABORTED",
        libc::EPIPE => "EPIPE",
        libc::ETIMEDOUT => "ETIMEDOUT",
        libc::EMFILE => "EMFILE",
        libc::ENFILE => "ENFILE",
        libc::ENOENT => "ENOENT",
        libc::ENOTCONN => "ENOTCONN",
        libc::EHOSTUNREACH => "EHOSTUNREACH",
        libc::ENETUNREACH => "ENETUNREACH",
        libc::ENOBUFS => "ENOBUFS",
        libc::ENOMEM => "ENOMEM",
        libc::EINVAL => "EINVAL",
        _ => return None,
    };
    Some(name)
}

/// `"ECONNRESET: Connection reset by peer"`, or the plain message for non-OS errors.
pub fn describe(err: &io::Error) -> String {
    let text = err.to_string();
    // std appends " (os error N)"; the errno name says the same more usefully.
    let text = match text.find(" (os error") {
        Some(i) => &text[..i],
        None => &text[..],
    };
    match errno_name(err) {
        Some(name) => format!("{name}: {text}"),
        None => text.to_string(),
    }
}

/// Wraps `err` with what we were doing (`"listen 127.0.0.1:80"`), keeping its kind and errno
/// name, as Node's `listen EADDRINUSE: address already in use 127.0.0.1:80`.
pub fn context(err: io::Error, what: &str) -> io::Error {
    io::Error::new(err.kind(), format!("{what}: {}", describe(&err)))
}

/// The error a socket is destroyed with when its queued output passes its hard limit.
pub(crate) fn output_limit(queued: usize, limit: usize) -> io::Error {
    io::Error::new(
        io::ErrorKind::OutOfMemory,
        format!("output buffer limit exceeded: {queued} bytes queued, limit {limit} (peer not reading)"),
    )
}

/// The error a socket is destroyed with when its queue stayed over the soft limit too long.
pub(crate) fn soft_output_limit(queued: usize, soft: usize, window: std::time::Duration) -> io::Error {
    io::Error::new(
        io::ErrorKind::OutOfMemory,
        format!("output buffer over soft limit {soft} for {window:?} ({queued} bytes queued, peer too slow)"),
    )
}

/// Node's `ERR_STREAM_WRITE_AFTER_END`.
pub(crate) fn write_after_end() -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, "write after end (ERR_STREAM_WRITE_AFTER_END)")
}
