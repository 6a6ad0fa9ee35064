//! OS errors named the way Node names them (`ECONNRESET`, `EADDRINUSE`), for logs and messages.

use std::io;

/// The OS error number behind `err`: its own, or that of the OS error it wraps through
/// [`context`]. Lets callers (the load generator's failure table, `netloop connect`'s message)
/// classify an error after it was given words.
pub fn os_error_code(err: &io::Error) -> Option<i32> {
    err.raw_os_error()
        .or_else(|| err.get_ref()?.downcast_ref::<Doing>().and_then(|d| os_error_code(&d.source)))
}

/// The errno name of an OS error (`"ECONNRESET"`), if it is one we name; sees through
/// [`context`].
pub fn errno_name(err: &io::Error) -> Option<&'static str> {
    let name = match os_error_code(err)? {
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
        libc::EAGAIN => "EAGAIN",
        libc::ENETDOWN => "ENETDOWN",
        _ => return None,
    };
    Some(name)
}

/// `"ECONNRESET: Connection reset by peer"`, or the plain message for non-OS errors.
pub fn describe(err: &io::Error) -> String {
    let text = message(err);
    // Only a bare OS error gets the name; a `context` error already carries it in its text.
    match err.raw_os_error().and(errno_name(err)) {
        Some(name) => format!("{name}: {text}"),
        None => text,
    }
}

/// The error's text without std's `" (os error N)"` suffix (the errno name says it better).
pub fn message(err: &io::Error) -> String {
    let mut text = err.to_string();
    if let Some(i) = text.find(" (os error") {
        text.truncate(i);
    }
    text
}

/// Wraps `err` with what we were doing (`"listen 127.0.0.1:80"`), keeping its kind and errno
/// name, as Node's `listen EADDRINUSE: address already in use 127.0.0.1:80`. The original
/// error stays inside (its errno is still found by [`os_error_code`] and [`errno_name`]).
pub fn context(err: io::Error, what: &str) -> io::Error {
    io::Error::new(err.kind(), Doing { what: what.to_string(), source: err })
}

/// An error and what we were doing when it happened; the payload of [`context`] errors.
#[derive(Debug)]
struct Doing {
    what: String,
    source: io::Error,
}

impl std::fmt::Display for Doing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.what, describe(&self.source))
    }
}

impl std::error::Error for Doing {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_keeps_the_text_and_the_errno() {
        let refused = io::Error::from_raw_os_error(libc::ECONNREFUSED);
        let wrapped = context(context(refused, "connect"), "connect 127.0.0.1:9");
        assert_eq!(wrapped.kind(), io::ErrorKind::ConnectionRefused);
        assert_eq!(os_error_code(&wrapped), Some(libc::ECONNREFUSED));
        assert_eq!(errno_name(&wrapped), Some("ECONNREFUSED"));
        let text = wrapped.to_string();
        assert!(text.starts_with("connect 127.0.0.1:9: connect: ECONNREFUSED: "), "{text}");
        assert_eq!(describe(&wrapped), text, "no second errno prefix");
    }

    #[test]
    fn plain_errors_have_no_errno() {
        let e = io::Error::other("boom");
        assert_eq!(os_error_code(&e), None);
        assert_eq!(describe(&context(e, "x")), "x: boom");
    }
}
