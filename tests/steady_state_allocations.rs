//! "The steady echo path allocates nothing per message": a counting global allocator watches
//! the loop thread while it echoes thousands of round trips on a warmed-up connection.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use netloop::services::echo::Echo;
use netloop::{Context, EventLoop, Handler, ServerOptions, SocketAddress, SocketId};

/// Counts allocations made by threads that opted in, and nothing else.
struct CountingAllocator;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);
/// `on_data` calls made while counting: proof that the window was really watched.
static WATCHED_READS: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
}

// SAFETY: every call is forwarded unchanged to the system allocator.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.with(Cell::get) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if COUNTING.with(Cell::get) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

const MESSAGE: usize = 64;
const WARM_UP: usize = 200;
const MEASURED: usize = 5_000;

/// The echo service, counting this thread's allocations between the end of the warm-up and
/// the last measured round trip.
struct CountedEcho {
    echo: Echo,
    received: usize,
}

impl Handler for CountedEcho {
    fn on_data(&mut self, cx: &mut Context, s: SocketId, data: &[u8]) {
        self.echo.on_data(cx, s, data);
        self.received += data.len();
        let messages = self.received / MESSAGE;
        let counting = (WARM_UP..WARM_UP + MEASURED).contains(&messages);
        COUNTING.with(|c| c.set(counting));
        if counting {
            WATCHED_READS.fetch_add(1, Ordering::Relaxed);
        }
    }
    fn on_drain(&mut self, cx: &mut Context, s: SocketId) {
        self.echo.on_drain(cx, s);
    }
    fn on_end(&mut self, cx: &mut Context, _s: SocketId) {
        COUNTING.with(|c| c.set(false));
        cx.stop();
    }
}

#[test]
fn echo_round_trips_allocate_nothing_once_warm() {
    let (addr_tx, addr_rx) = mpsc::channel();
    let loop_thread = std::thread::spawn(move || {
        let mut el = EventLoop::new().unwrap();
        let cx = el.context();
        let target = SocketAddress::Inet("127.0.0.1:0".parse().unwrap());
        let server = cx.listen(&target, ServerOptions::default()).unwrap();
        addr_tx.send(cx.server_address(server).unwrap().clone()).unwrap();
        el.run(&mut CountedEcho { echo: Echo::default(), received: 0 }).unwrap();
    });
    let SocketAddress::Inet(addr) = addr_rx.recv_timeout(Duration::from_secs(20)).unwrap() else {
        unreachable!("a TCP listener")
    };
    let mut c = TcpStream::connect(addr).unwrap();
    c.set_nodelay(true).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut back = [0u8; MESSAGE];
    for i in 0..WARM_UP + MEASURED + 10 {
        let msg = [(i % 251) as u8; MESSAGE];
        c.write_all(&msg).unwrap();
        c.read_exact(&mut back).unwrap();
        assert_eq!(back, msg, "round trip {i}");
    }
    drop(c);
    loop_thread.join().unwrap();
    // The loop thread counted only while the measured round trips were in flight.
    assert!(WATCHED_READS.load(Ordering::Relaxed) >= MEASURED / 2, "the window was not watched");
    assert_eq!(ALLOCATIONS.load(Ordering::Relaxed), 0, "allocations during {MEASURED} round trips");
}
