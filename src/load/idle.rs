//! `load idle`: open N connections and hold them. Measures how many a server (and this
//! machine) can hold, how fast they come up, and what stops them.

use crate::context::Context;
use crate::handler::SocketId;
use crate::load::report::{Histograms, IdleReport, ModeReport};
use crate::load::runner::{Handshake, Summary, Workload};

/// Holds connections and reads (and drops) whatever the server sends, so a server's banner or
/// notices never back up into its own buffers.
#[derive(Debug)]
pub(crate) struct IdleLoad {
    connections: usize,
    /// Everything the server sent; and only what it sent during the hold (for the rate).
    bytes_received: u64,
    window_bytes: u64,
    holding: bool,
}

impl IdleLoad {
    pub(crate) fn new(connections: usize) -> Self {
        IdleLoad { connections, bytes_received: 0, window_bytes: 0, holding: false }
    }
}

impl Workload for IdleLoad {
    fn connections(&self) -> usize {
        self.connections
    }

    fn on_connect(&mut self, _cx: &mut Context, _slot: usize, _socket: SocketId) -> Handshake {
        Handshake::Ready
    }

    fn on_data(&mut self, _cx: &mut Context, _: usize, _: SocketId, data: &[u8], _: u64) -> Handshake {
        self.bytes_received += data.len() as u64;
        if self.holding {
            self.window_bytes += data.len() as u64;
        }
        Handshake::Pending
    }

    fn start(&mut self, _cx: &mut Context, _now_ns: u64) {
        self.holding = true;
    }

    fn stop(&mut self) {
        self.holding = false;
    }

    fn progress(&mut self, _out: &mut String, _seconds: f64) {}

    fn finish(&mut self, _duration_s: f64, _drain_s: f64, _problems: &mut Vec<String>) -> Summary {
        Summary {
            completed: 0,
            bytes: self.window_bytes,
            latency: None,
            latency_from: None,
            details: ModeReport::Idle(IdleReport { bytes_received: self.bytes_received }),
            histograms: Histograms::default(),
        }
    }
}
