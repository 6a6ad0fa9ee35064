//! The process's open-file limit: raised at start, reported when it is what stops us.
//!
//! Every connection is a file descriptor. The soft limit is often 1024 while the hard limit is
//! far higher (20,000 on our CI machines); like Redis's `adjustOpenFilesLimit`, we raise the
//! soft limit to the hard one at start and derive a safe connection cap from it.

use std::io;

/// Descriptors kept free for listeners, the poll fd, the signal pipe, logs and the EMFILE
/// reserve (Redis keeps 32).
pub const RESERVED_FDS: u64 = 32;

/// The open-file limits, `(soft, hard)`: the one place that asks the kernel.
pub fn fd_limits() -> io::Result<(u64, u64)> {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit only writes the struct we pass.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((lim.rlim_cur, lim.rlim_max))
}

/// The current soft limit on open files.
pub fn fd_limit() -> Option<u64> {
    fd_limits().ok().map(|(soft, _)| soft)
}

/// The hard limit on open files: how far `ulimit -n` can go without privileges.
pub fn hard_fd_limit() -> Option<u64> {
    fd_limits().ok().map(|(_, hard)| hard)
}

/// Raises the soft open-file limit to the hard limit; returns `(before, after)`.
pub fn raise_fd_limit() -> io::Result<(u64, u64)> {
    let (before, hard) = fd_limits()?;
    if before < hard {
        let lim = libc::rlimit { rlim_cur: hard, rlim_max: hard };
        // SAFETY: setrlimit only reads the struct we pass.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok((before, hard))
}

/// The most connections one process can hold with `limit` descriptors.
pub fn connection_capacity(limit: u64) -> usize {
    limit.saturating_sub(RESERVED_FDS) as usize
}
