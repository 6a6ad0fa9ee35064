//! Mixed soak (`docs/operations.md`: nothing lost, in order): many connections coming and
//! going, random message sizes and split points, checksums on both sides; every client that
//! keeps reading gets every byte and message, in order. Runs `NETLOOP_SOAK_SECS` seconds
//! (default 30; CI uses the default).

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::{connect, Netloop};

fn soak_duration() -> Duration {
    let secs = std::env::var("NETLOOP_SOAK_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(30);
    Duration::from_secs(secs)
}

/// A small deterministic generator, so a failure can be replayed from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// FNV-1a, the checksum both sides compute.
fn fnv(acc: u64, data: &[u8]) -> u64 {
    data.iter().fold(acc, |h, &b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3))
}

const FNV_START: u64 = 0xcbf2_9ce4_8422_2325;

/// Writes `data` in random pieces (random split points, as a real client's writes land).
fn write_split(s: &mut TcpStream, data: &[u8], rng: &mut Rng) {
    let mut at = 0;
    while at < data.len() {
        let n = (1 + rng.below(data.len() as u64 - at as u64)) as usize;
        s.write_all(&data[at..at + n]).unwrap();
        at += n;
    }
}

/// One echo client's life: connect, exchange random messages, verify, leave.
fn echo_session(addr: SocketAddr, rng: &mut Rng, stats: &SoakStats) {
    let mut s = connect(addr);
    let messages = 1 + rng.below(50);
    let (mut sent_sum, mut got_sum) = (FNV_START, FNV_START);
    for _ in 0..messages {
        // Mostly small, sometimes large enough to hit backpressure.
        let len = if rng.below(10) == 0 { 1 + rng.below(256 * 1024) } else { 1 + rng.below(2048) } as usize;
        let msg: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        sent_sum = fnv(sent_sum, &msg);
        let mut w = s.try_clone().unwrap();
        let mut wrng = Rng(rng.next() | 1);
        let writer = std::thread::spawn(move || write_split(&mut w, &msg, &mut wrng));
        let mut back = vec![0u8; len];
        s.read_exact(&mut back).expect("echo read");
        writer.join().unwrap();
        got_sum = fnv(got_sum, &back);
        stats.bytes.fetch_add(len as u64, Ordering::Relaxed);
    }
    assert_eq!(sent_sum, got_sum, "echo checksum mismatch");
    stats.sessions.fetch_add(1, Ordering::Relaxed);
    // Leave in one of three ways: FIN and wait for ours, plain close, or reset.
    match rng.below(3) {
        0 => {
            s.shutdown(std::net::Shutdown::Write).unwrap();
            let mut rest = Vec::new();
            s.read_to_end(&mut rest).unwrap();
            assert!(rest.is_empty());
        }
        1 => drop(s),
        _ => {
            socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO)).unwrap();
            drop(s);
        }
    }
}

#[derive(Default)]
struct SoakStats {
    sessions: AtomicU64,
    bytes: AtomicU64,
}

#[test]
fn echo_delivers_every_byte_in_order_under_churn() {
    let server = Netloop::serve(&["--echo", "127.0.0.1:0"], 1);
    let addr = server.tcp("echo");
    let deadline = Instant::now() + soak_duration();
    let stats = Arc::new(SoakStats::default());
    let workers: Vec<_> = (0..16u64)
        .map(|w| {
            let stats = stats.clone();
            std::thread::spawn(move || {
                let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (w + 1));
                while Instant::now() < deadline {
                    echo_session(addr, &mut rng, &stats);
                }
            })
        })
        .collect();
    for w in workers {
        w.join().expect("a soak worker failed");
    }
    let sessions = stats.sessions.load(Ordering::Relaxed);
    assert!(sessions >= 16, "too few sessions to mean anything: {sessions}");
    eprintln!("echo soak: {sessions} sessions, {} bytes verified", stats.bytes.load(Ordering::Relaxed));
    // The server is still healthy afterwards.
    let mut c = connect(addr);
    c.write_all(b"ping\n").unwrap();
    assert_eq!(support::read_line(&mut BufReader::new(c)), "ping");
}

/// Reads NDJSON lines from a hub connection.
fn lines(s: TcpStream) -> impl Iterator<Item = serde_json::Value> {
    BufReader::new(s).lines().map(|l| serde_json::from_str(&l.expect("hub read")).expect("hub sent JSON"))
}

#[test]
fn hub_delivers_every_message_in_order_under_churn() {
    let server = Netloop::serve(&["--hub", "127.0.0.1:0"], 1);
    let addr = server.tcp("hub");
    let deadline = Instant::now() + soak_duration();
    let sinks = 4;

    // Long-lived sinks: they keep reading the whole time, so they must see every message
    // from every sender, per sender in order, with matching checksums.
    let sink_threads: Vec<_> = (0..sinks)
        .map(|i| {
            let mut s = connect(addr);
            s.write_all(format!("{{\"type\":\"sync\",\"clientName\":\"sink-{i}\"}}\n").as_bytes()).unwrap();
            let reader = s.try_clone().unwrap();
            std::thread::spawn(move || {
                let _keep = s;
                let mut next: std::collections::HashMap<String, u64> = Default::default();
                let mut received = 0u64;
                for m in lines(reader) {
                    let ty = m["type"].as_str().unwrap_or("");
                    if ty == "info" && m["message"]["end"].as_bool() == Some(true) {
                        break;
                    }
                    if ty != "info" && ty != "broadcast" {
                        continue;
                    }
                    let from = m["from"].as_str().unwrap().to_string();
                    if from.starts_with("sink-") {
                        continue;
                    }
                    let seq = m["message"]["seq"].as_u64().unwrap();
                    let body = m["message"]["body"].as_str().unwrap();
                    assert_eq!(
                        m["message"]["sum"].as_u64().unwrap(),
                        fnv(FNV_START, body.as_bytes()),
                        "checksum"
                    );
                    // Broadcasts carry every seq; sink i gets the infos with seq % 4 == i.
                    let (first, step) = if ty == "info" { (i, 4) } else { (0, 1) };
                    let want = next.entry(format!("{ty}/{from}")).or_insert(first);
                    assert_eq!(seq, *want, "{ty} from {from}: expected seq {want}, got {seq}");
                    *want += step;
                    received += 1;
                }
                received
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(200));

    let sent = Arc::new(AtomicU64::new(0));
    let senders: Vec<_> = (0..8u64)
        .map(|w| {
            let sent = sent.clone();
            std::thread::spawn(move || {
                let mut rng = Rng(0x51ed_270b_a3f0_5c9d ^ (w + 1));
                let mut session = 0;
                while Instant::now() < deadline {
                    session += 1;
                    let name = format!("w{w}-s{session}");
                    let mut s = connect(addr);
                    let sync = format!("{{\"type\":\"sync\",\"clientName\":\"{name}\"}}");
                    write_split(&mut s, sync.as_bytes(), &mut rng);
                    let n = 1 + rng.below(40);
                    let mut frames = Vec::new();
                    for seq in 0..n {
                        let body: String =
                            (0..rng.below(3000)).map(|_| (b'a' + (rng.next() % 26) as u8) as char).collect();
                        let msg = format!(
                            "{{\"seq\":{seq},\"sum\":{},\"body\":\"{body}\"}}",
                            fnv(FNV_START, body.as_bytes())
                        );
                        // Broadcasts to everyone, and the same seq sent directly to one sink.
                        frames.extend_from_slice(
                            format!("{{\"type\":\"broadcast\",\"message\":{msg}}}").as_bytes(),
                        );
                        if rng.below(2) == 0 {
                            frames.push(b'\n');
                        }
                        let sink = seq % sinks;
                        frames.extend_from_slice(
                            format!("{{\"type\":\"info\",\"to\":\"sink-{sink}\",\"message\":{msg}}}")
                                .as_bytes(),
                        );
                    }
                    write_split(&mut s, &frames, &mut rng);
                    sent.fetch_add(n, Ordering::Relaxed);
                    // Read our own confirmation so we do not leave before our frames were read.
                    let mut reader = BufReader::new(s.try_clone().unwrap());
                    s.write_all(b"{\"type\":\"list\"}").unwrap();
                    loop {
                        let line = support::read_line(&mut reader);
                        if line.starts_with("{\"type\":\"list\"") {
                            break;
                        }
                    }
                    drop(s);
                }
            })
        })
        .collect();
    for s in senders {
        s.join().expect("a sender failed");
    }
    // Tell each sink to stop, then collect.
    let mut closer = connect(addr);
    closer.write_all(b"{\"type\":\"sync\",\"clientName\":\"closer\"}").unwrap();
    for i in 0..sinks {
        closer
            .write_all(
                format!("{{\"type\":\"info\",\"to\":\"sink-{i}\",\"message\":{{\"end\":true}}}}").as_bytes(),
            )
            .unwrap();
    }
    let received: Vec<u64> = sink_threads.into_iter().map(|t| t.join().expect("a sink failed")).collect();
    let sent = sent.load(Ordering::Relaxed);
    // Each message: one broadcast to every sink, plus one info to one sink.
    let total: u64 = received.iter().sum();
    assert_eq!(total, sent * sinks + sent, "sinks received {received:?} for {sent} messages");
    eprintln!("hub soak: {sent} messages, {total} deliveries verified");
}
