//! [`Stats`]: the loop's counters an operator wants (Redis's `INFO stats` spirit).

/// Counters since the loop started. Cheap: plain integers, bumped where things happen.
#[derive(Debug, Default, Clone)]
pub struct Stats {
    /// Connections accepted since start.
    pub accepted: u64,
    /// Connections refused by a server's `max_connections` or the loop-wide `max_sockets`.
    pub rejected: u64,
    /// Connections refused because no file descriptor was free.
    pub rejected_no_fd: u64,
    /// Sockets destroyed for passing their output hard or soft limit.
    pub output_limit_disconnects: u64,
    /// Connections closed by a service for an over-long line or frame.
    pub input_limit_disconnects: u64,
    /// Connections closed by a service for idleness or a missed registration deadline.
    pub timeout_disconnects: u64,
    /// Connections cut because all together held more unfinished input than
    /// `--max-input-total` and theirs was the largest.
    pub input_total_disconnects: u64,
    /// Connections cut because a line or frame did not complete within `--input-timeout`.
    pub input_timeout_disconnects: u64,
    /// Bytes read from all sockets.
    pub bytes_in: u64,
    /// Bytes written to all sockets.
    pub bytes_out: u64,
    /// Hub connections refused for a missing or wrong `--hub-token`.
    pub auth_failures: u64,
    /// Hub connections refused because their source failed the token check too often.
    pub auth_throttled: u64,
    /// Times a sender was stalled (not read) because its broadcasts left recipients behind.
    pub sender_stalls: u64,
    /// Total time senders spent stalled, in ms.
    pub sender_stall_ms: u64,
}
