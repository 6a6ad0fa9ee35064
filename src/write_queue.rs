//! A socket's pending output: the bytes `write()` accepted that the kernel has not taken yet.
//!
//! The queue is the part of Node's `Writable` state that matters on the wire: an ordered list
//! of chunks and their total length (`bufferSize`). It knows nothing about sockets or events; the
//! loop decides when to flush it and what `write()` returns. Keeping it pure lets every ordering
//! and partial-write rule be tested without a kernel.
//!
//! A chunk is either a private copy or a [`SharedBytes`] handle, so a broadcast is encoded once
//! and queued to many sockets by reference count, not by copying (Redis copies per subscriber;
//! see redis#1880). Flushing uses vectored writes so a queue of many small chunks costs one
//! syscall per batch.

use std::collections::VecDeque;
use std::io::{self, IoSlice, Write};
use std::rc::Rc;

/// Immutable bytes shared between many sockets' queues (one encoding of a broadcast).
///
/// The loop is single-threaded, so a plain `Rc` is enough and cheaper than an `Arc`.
pub type SharedBytes = Rc<[u8]>;

/// Small copied writes are appended to the last owned chunk up to this size, so a burst of
/// tiny writes becomes one chunk instead of thousands.
const COALESCE_LIMIT: usize = 16 * 1024;

/// At most this many chunks go into one `writev` (Linux's IOV_MAX is 1024; 64 keeps the
/// stack array small and already amortises the syscall).
const MAX_IOVECS: usize = 64;

enum Chunk {
    Owned(Vec<u8>),
    Shared(SharedBytes),
}

impl Chunk {
    fn bytes(&self) -> &[u8] {
        match self {
            Chunk::Owned(v) => v,
            Chunk::Shared(s) => s,
        }
    }
}

/// How a [`WriteQueue::flush_to`] call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flush {
    /// Everything queued reached the kernel; the queue is empty.
    Drained,
    /// The kernel said `WouldBlock`; a `WRITABLE` edge will come when there is room.
    Blocked,
    /// The per-wake byte budget ran out with data left and no `WouldBlock` seen. Edge-triggered
    /// readiness will not fire again by itself, so the caller must come back on its own.
    Budget,
}

/// The ordered chunks a socket still has to write, and their total length.
#[derive(Default)]
pub struct WriteQueue {
    chunks: VecDeque<Chunk>,
    /// Bytes of the front chunk that already reached the kernel.
    head_offset: usize,
    /// Total bytes still to write; Node's `bufferSize` / `writableLength`.
    len: usize,
    /// Loop time (ms) since which `len` has been above the owner's soft limit. Kept here, not
    /// in the socket, so only sockets with pending output pay for it.
    pub over_soft_since: Option<u64>,
    /// Loop time (ms) since which the owner has been behind on broadcasts (`crate::flow`):
    /// at or above its mark with the kernel full, and not emptied since.
    pub behind_since: Option<u64>,
}

impl std::fmt::Debug for WriteQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteQueue").field("chunks", &self.chunks.len()).field("len", &self.len).finish()
    }
}

impl WriteQueue {
    /// An empty queue. Sockets only own one while output is pending.
    pub fn new() -> Self {
        Self::default()
    }

    /// Bytes still to write.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when nothing is pending.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Queues a private copy of `data` behind everything already queued.
    pub fn push_copy(&mut self, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        self.len += data.len();
        // Coalesce into the tail only when it is ours and not partly written: the front
        // chunk's offset must keep pointing at the same bytes.
        let tail_is_front = self.chunks.len() == 1 && self.head_offset > 0;
        if let Some(Chunk::Owned(tail)) = self.chunks.back_mut() {
            if !tail_is_front && tail.len() + data.len() <= COALESCE_LIMIT {
                tail.extend_from_slice(data);
                return;
            }
        }
        self.chunks.push_back(Chunk::Owned(data.to_vec()));
    }

    /// Queues `data[offset..]` by reference behind everything already queued.
    ///
    /// `offset` lets a caller that already wrote a prefix straight to the kernel queue the
    /// rest without copying it.
    pub fn push_shared(&mut self, data: SharedBytes, offset: usize) {
        let rest = data.len().saturating_sub(offset);
        if rest == 0 {
            return;
        }
        if self.chunks.is_empty() {
            self.head_offset = offset;
            self.len += rest;
            self.chunks.push_back(Chunk::Shared(data));
        } else if offset == 0 {
            self.len += rest;
            self.chunks.push_back(Chunk::Shared(data));
        } else {
            // Only the front chunk can carry an offset; elsewhere copy the rest.
            self.push_copy(&data[offset..]);
        }
    }

    /// Drops everything queued (`destroy()`).
    pub fn clear(&mut self) {
        self.chunks.clear();
        self.head_offset = 0;
        self.len = 0;
        self.over_soft_since = None;
        self.behind_since = None;
    }

    /// Writes queued bytes to `out` until the queue is empty, `out` would block, or `budget`
    /// bytes have been written. Returns how it ended and how many bytes were written.
    pub fn flush_to<W: Write>(&mut self, out: &mut W, budget: usize) -> io::Result<(Flush, usize)> {
        let mut written = 0;
        while !self.is_empty() {
            if written >= budget {
                return Ok((Flush::Budget, written));
            }
            let n = {
                let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
                let mut count = 0;
                for (i, chunk) in self.chunks.iter().take(MAX_IOVECS).enumerate() {
                    let bytes = chunk.bytes();
                    slices[i] = IoSlice::new(if i == 0 { &bytes[self.head_offset..] } else { bytes });
                    count = i + 1;
                }
                match out.write_vectored(&slices[..count]) {
                    Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok((Flush::Blocked, written)),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                }
            };
            written += n;
            self.consume(n);
        }
        Ok((Flush::Drained, written))
    }

    /// Forgets the first `n` queued bytes (they reached the kernel).
    fn consume(&mut self, mut n: usize) {
        self.len -= n;
        while n > 0 {
            let front_len = match self.chunks.front() {
                Some(c) => c.bytes().len() - self.head_offset,
                None => break,
            };
            if n >= front_len {
                n -= front_len;
                self.chunks.pop_front();
                self.head_offset = 0;
            } else {
                self.head_offset += n;
                n = 0;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer that accepts at most `cap` bytes per call and then `WouldBlock`s once it has
    /// taken `room` bytes in total.
    struct Kernel {
        got: Vec<u8>,
        cap: usize,
        room: usize,
        calls: usize,
    }

    impl Write for Kernel {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.write_vectored(&[IoSlice::new(buf)])
        }
        fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
            self.calls += 1;
            let free = self.room - self.got.len();
            if free == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let mut take = free.min(self.cap);
            let start = self.got.len();
            for b in bufs {
                let n = take.min(b.len());
                self.got.extend_from_slice(&b[..n]);
                take -= n;
            }
            Ok(self.got.len() - start)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn kernel(cap: usize, room: usize) -> Kernel {
        Kernel { got: Vec::new(), cap, room, calls: 0 }
    }

    #[test]
    fn keeps_order_across_partial_writes_and_mixed_chunks() {
        let mut q = WriteQueue::new();
        let shared: SharedBytes = Rc::from(&b"-shared-"[..]);
        q.push_copy(b"hello ");
        q.push_shared(shared.clone(), 0);
        q.push_copy(b" world");
        assert_eq!(q.len(), 20);
        let mut k = kernel(3, 9);
        assert_eq!(q.flush_to(&mut k, usize::MAX).unwrap(), (Flush::Blocked, 9));
        assert_eq!(q.len(), 11);
        k.room = 100;
        assert_eq!(q.flush_to(&mut k, usize::MAX).unwrap(), (Flush::Drained, 11));
        assert_eq!(k.got, b"hello -shared- world");
        assert!(q.is_empty());
        assert_eq!(Rc::strong_count(&shared), 1, "queue released its reference");
    }

    #[test]
    fn shared_chunk_with_offset_skips_prefix_already_written() {
        let mut q = WriteQueue::new();
        q.push_shared(Rc::from(&b"0123456789"[..]), 4);
        q.push_shared(Rc::from(&b"ab"[..]), 1);
        assert_eq!(q.len(), 7);
        let mut k = kernel(usize::MAX, 100);
        q.flush_to(&mut k, usize::MAX).unwrap();
        assert_eq!(k.got, b"456789b");
    }

    #[test]
    fn small_copies_coalesce_into_one_chunk() {
        let mut q = WriteQueue::new();
        for _ in 0..1000 {
            q.push_copy(b"x");
        }
        assert_eq!(q.chunks.len(), 1);
        let mut k = kernel(usize::MAX, usize::MAX);
        assert_eq!(q.flush_to(&mut k, usize::MAX).unwrap(), (Flush::Drained, 1000));
        assert_eq!(k.calls, 1);
    }

    #[test]
    fn never_coalesces_into_a_partly_written_front_chunk() {
        let mut q = WriteQueue::new();
        q.push_copy(b"abcdef");
        let mut k = kernel(2, 2);
        q.flush_to(&mut k, usize::MAX).unwrap();
        q.push_copy(b"XY");
        k.room = 100;
        k.cap = 100;
        q.flush_to(&mut k, usize::MAX).unwrap();
        assert_eq!(k.got, b"abcdefXY");
    }

    #[test]
    fn budget_stops_with_data_left() {
        let mut q = WriteQueue::new();
        for _ in 0..10 {
            q.push_copy(&[7u8; COALESCE_LIMIT]);
        }
        let mut k = kernel(COALESCE_LIMIT, usize::MAX);
        let (how, n) = q.flush_to(&mut k, 3 * COALESCE_LIMIT).unwrap();
        assert_eq!((how, n), (Flush::Budget, 3 * COALESCE_LIMIT));
        assert_eq!(q.len(), 7 * COALESCE_LIMIT);
    }

    #[test]
    fn more_chunks_than_one_writev_holds() {
        let mut q = WriteQueue::new();
        let mut expect = Vec::new();
        for i in 0..(3 * MAX_IOVECS) {
            let chunk: SharedBytes = Rc::from(vec![i as u8; 3]);
            expect.extend_from_slice(&chunk);
            q.push_shared(chunk, 0);
        }
        let mut k = kernel(usize::MAX, usize::MAX);
        assert_eq!(q.flush_to(&mut k, usize::MAX).unwrap().0, Flush::Drained);
        assert_eq!(k.got, expect);
        assert_eq!(k.calls, 3);
    }

    #[test]
    fn clear_forgets_everything() {
        let mut q = WriteQueue::new();
        q.push_copy(b"abc");
        q.clear();
        assert!(q.is_empty());
        let mut k = kernel(usize::MAX, usize::MAX);
        assert_eq!(q.flush_to(&mut k, usize::MAX).unwrap(), (Flush::Drained, 0));
        assert!(k.got.is_empty());
    }
}
