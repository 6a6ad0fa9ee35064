//! The process's open-file limit: raised at start, reported when it is what stops us.
//!
//! Every connection is a file descriptor. The soft limit is often 1024 while the hard limit is
//! far higher (20,000 on our CI machines); like Redis's `adjustOpenFilesLimit`, we raise the
//! soft limit to the hard one at start and derive a safe connection cap from it.

use std::io;

/// Descriptors kept free for listeners, the poll fd, the signal pipe, logs and the EMFILE
/// reserve (Redis keeps 32).
pub const RESERVED_FDS: u64 = 32;

/// The current soft limit on open files.
pub fn fd_limit() -> Option<u64> {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit only writes the struct we pass.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) };
    (rc == 0).then_some(lim.rlim_cur)
}

/// Raises the soft open-file limit to the hard limit; returns `(before, after)`.
pub fn raise_fd_limit() -> io::Result<(u64, u64)> {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit read and write only the struct we pass.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let before = lim.rlim_cur;
    if lim.rlim_cur < lim.rlim_max {
        lim.rlim_cur = lim.rlim_max;
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok((before, lim.rlim_cur))
}

/// The most connections one process can hold with `limit` descriptors.
pub fn connection_capacity(limit: u64) -> usize {
    limit.saturating_sub(RESERVED_FDS) as usize
}
