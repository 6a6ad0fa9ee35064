//! Black-box tests of `netloop serve --chat`: every rule of the chat contract over real TCP
//! sockets, the Node client check over TCP and Unix sockets, hostile input, and slow consumers.

mod support;

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::{assert_node_ok, connect, node, LineClient, Netloop, WAIT};

/// One chat client; `id` is how the server labels it.
type Client = LineClient;

impl Client {
    /// Connects and checks the welcome line.
    fn join(addr: SocketAddr, online: usize) -> Client {
        let mut c = Client::connect(addr);
        let label = c.id.clone();
        c.expect(&format!("* welcome {label}, online now: {online}"));
        c
    }

    /// Sends `/who` and returns the reply: a round trip proving everything sent before it
    /// was handled.
    fn who(&mut self) -> String {
        self.send("/who\n");
        self.line()
    }
}

#[test]
fn node_pair_over_tcp() {
    let (server, _) = Netloop::serve_one("chat", &[]);
    assert_node_ok(&node("chat_pair.js", &[&server.addr("chat")]));
}

#[test]
fn node_pair_over_unix() {
    let (_server, addr) = Netloop::serve_unix("chat");
    let out = node("chat_pair.js", &[&addr]);
    assert_node_ok(&out);
    // Unix peers are numbered per service, from 1.
    let summary = String::from_utf8_lossy(&out.stdout);
    assert!(summary.contains(r#""a":"unix:1","b":"unix:2""#), "{summary}");
}

#[test]
fn a_half_closed_client_leaves_unless_half_open_is_allowed() {
    for allow in [false, true] {
        let (_server, addr) = Netloop::serve_one("chat", if allow { &["--allow-half-open"] } else { &[] });
        let mut a = Client::join(addr, 1);
        let mut b = Client::join(addr, 2);
        a.expect(&format!("* {} joined, online now: 2", b.id));
        // b says its last line and half-closes, as `netloop connect` does at stdin EOF.
        b.send("bye for now\n");
        b.writer.shutdown(Shutdown::Write).unwrap();
        a.expect(&format!("{}: bye for now", b.id));
        if allow {
            // Still a member: it hears the room until it closes.
            assert_eq!(a.who(), format!("* online now: 2: {}, {}", a.id, b.id));
            a.send("still there?\n");
            b.expect(&format!("{}: still there?", a.id));
        } else {
            a.expect(&format!("* {} left, online now: 1", b.id));
            b.expect_eof();
        }
    }
}

#[test]
fn welcome_joined_left_and_online_counts() {
    let (_server, addr) = Netloop::serve_one("chat", &[]);
    let mut a = Client::join(addr, 1);
    let mut b = Client::join(addr, 2);
    a.expect(&format!("* {} joined, online now: 2", b.id));
    let mut c = Client::join(addr, 3);
    a.expect(&format!("* {} joined, online now: 3", c.id));
    b.expect(&format!("* {} joined, online now: 3", c.id));
    // An abrupt close (no /quit) still counts as leaving.
    let b_label = b.id.clone();
    drop(b);
    a.expect(&format!("* {b_label} left, online now: 2"));
    c.expect(&format!("* {b_label} left, online now: 2"));
    assert_eq!(a.who(), format!("* online now: 2: {}, {}", a.id, c.id));
}

#[test]
fn text_goes_to_the_others_trimmed_however_it_is_split() {
    let (_server, addr) = Netloop::serve_one("chat", &[]);
    let mut a = Client::join(addr, 1);
    let mut b = Client::join(addr, 2);
    let mut c = Client::join(addr, 3);
    a.line();
    a.line();
    b.line();
    let from = a.id.clone();

    // Coalesced: several lines, blank and whitespace-only ones ignored, CRLF and LF mixed.
    a.send("one\n\n  \t \r\n  two  \r\n\tthree\t\n");
    for want in ["one", "two", "three"] {
        b.expect(&format!("{from}: {want}"));
        c.expect(&format!("{from}: {want}"));
    }
    // Split: one byte per write (each its own segment: the client sets TCP_NODELAY).
    for byte in "  four five \r\n".bytes() {
        a.send([byte]);
    }
    b.expect(&format!("{from}: four five"));
    c.expect(&format!("{from}: four five"));
    // A '\r' not before the '\n' is text, shown escaped; Unicode whitespace is trimmed like
    // str::trim.
    a.send("x\ry\n\u{3000}wide\u{a0}\n");
    b.expect(&format!("{from}: x\\ry"));
    b.expect(&format!("{from}: wide"));
    // The sender got nothing back: its next line is the answer to its /who.
    assert_eq!(a.who(), format!("* online now: 3: {}, {}, {}", a.id, b.id, c.id));
}

#[test]
fn echo_self_sends_the_line_back_to_the_sender_too() {
    let (_server, addr) = Netloop::serve_one("chat", &["--chat-echo-self"]);
    let mut a = Client::join(addr, 1);
    let mut b = Client::join(addr, 2);
    a.line();
    a.send("hi all\n");
    a.expect(&format!("{}: hi all", a.id));
    b.expect(&format!("{}: hi all", a.id));
    // Commands are not echoed.
    a.send("/nick ann\n");
    a.expect("* you are now ann");
    a.send("again\n");
    a.expect("ann: again");
    b.expect(&format!("* {} is now ann", a.id));
    b.expect("ann: again");
}

#[test]
fn nick_rules() {
    let (_server, addr) = Netloop::serve_one("chat", &[]);
    let mut a = Client::join(addr, 1);
    let mut b = Client::join(addr, 2);
    a.line();
    let a_label = a.id.clone();

    a.send("/nick  Al_i.ce-9 \n");
    a.expect("* you are now Al_i.ce-9");
    b.expect(&format!("* {a_label} is now Al_i.ce-9"));
    for bad in ["/nick\n", "/nick \n", "/nick two words\n", "/nick caf\u{e9}\n", "/nick a:b\n", "/nick a/b\n"]
    {
        a.send(bad);
        a.expect("* error: invalid name");
    }
    let longest = "n".repeat(32);
    a.send(format!("/nick {}n\n", longest));
    a.expect("* error: invalid name");
    a.send(format!("/nick {longest}\n"));
    a.expect(&format!("* you are now {longest}"));
    b.expect(&format!("* Al_i.ce-9 is now {longest}"));
    // Taking one's own name again is allowed; taking another's is not.
    a.send(format!("/nick {longest}\n"));
    a.expect(&format!("* you are now {longest}"));
    b.expect(&format!("* {longest} is now {longest}"));
    b.send(format!("/nick {longest}\n"));
    b.expect(&format!("* error: name {longest} is taken"));
    // Names are case-sensitive, and an old nick is free once its holder moved on.
    b.send("/nick Al_i.ce-9\n");
    b.expect("* you are now Al_i.ce-9");
    a.expect(&format!("* {} is now Al_i.ce-9", b.id));
    a.send("hello\n");
    b.expect(&format!("{longest}: hello"));
    // A nick is freed when its holder leaves.
    drop(a);
    b.expect(&format!("* {longest} left, online now: 1"));
    b.send(format!("/nick {longest}\n"));
    b.expect(&format!("* you are now {longest}"));
}

#[test]
fn who_lists_names_in_connection_order() {
    let (_server, addr) = Netloop::serve_one("chat", &[]);
    let mut a = Client::join(addr, 1);
    let mut b = Client::join(addr, 2);
    let mut c = Client::join(addr, 3);
    c.send("/nick carol\n");
    c.expect("* you are now carol");
    b.expect(&format!("* {} joined, online now: 3", c.id));
    b.expect(&format!("* {} is now carol", c.id));
    assert_eq!(b.who(), format!("* online now: 3: {}, {}, carol", a.id, b.id));
    b.send("/quit\n");
    b.expect("* bye");
    b.expect_eof();
    for _ in 0..3 {
        a.line(); // b's and c's joins, c's rename
    }
    a.expect(&format!("* {} left, online now: 2", b.id));
    assert_eq!(a.who(), format!("* online now: 2: {}, carol", a.id));
}

#[test]
fn quit_says_bye_closes_and_ignores_the_rest_of_the_read() {
    let (_server, addr) = Netloop::serve_one("chat", &[]);
    let mut a = Client::join(addr, 1);
    let mut b = Client::join(addr, 2);
    a.line();
    b.send("/quit\nafter quit\n/who\n");
    b.expect("* bye");
    b.expect_eof();
    a.expect(&format!("* {} left, online now: 1", b.id));
    assert_eq!(a.who(), format!("* online now: 1: {}", a.id));
}

#[test]
fn unknown_commands() {
    let (_server, addr) = Netloop::serve_one("chat", &[]);
    let mut a = Client::join(addr, 1);
    a.send("/frob x y\n/\n/NICK bob\n/who?\n  /quit now?\n");
    a.expect("* error: unknown command /frob");
    a.expect("* error: unknown command /");
    a.expect("* error: unknown command /NICK");
    a.expect("* error: unknown command /who?");
    // "/quit now?" is /quit with an argument: commands take the first word.
    a.expect("* bye");
    a.expect_eof();
}

#[test]
fn line_limit_is_exact_and_closes_the_offender() {
    let (_server, addr) = Netloop::serve_one("chat", &["--max-line", "16"]);
    let mut a = Client::join(addr, 1);
    let mut b = Client::join(addr, 2);
    a.line();
    let sixteen = "0123456789abcdef";
    b.send(format!("{sixteen}\n{sixteen}\r\n"));
    a.expect(&format!("{}: {sixteen}", b.id));
    a.expect(&format!("{}: {sixteen}", b.id));
    // 17 bytes with its newline: error, then the server closes.
    b.send(format!("{sixteen}x\nnot handled\n"));
    b.expect("* error: line too long (max 16 bytes)");
    b.expect_eof();
    a.expect(&format!("* {} left, online now: 1", b.id));

    // Without any newline: the error comes as soon as the line cannot fit.
    let mut c = Client::join(addr, 2);
    a.line();
    c.send(format!("{sixteen}xy"));
    c.expect("* error: line too long (max 16 bytes)");
    c.expect_eof();
    a.expect(&format!("* {} left, online now: 1", c.id));
}

#[test]
fn default_line_limit_is_64_kib() {
    let (_server, addr) = Netloop::serve_one("chat", &[]);
    let mut a = Client::join(addr, 1);
    let mut b = Client::join(addr, 2);
    a.line();
    let max = "m".repeat(65536);
    b.send(format!("{max}\n"));
    assert_eq!(a.line(), format!("{}: {max}", b.id));
    b.send(format!("{max}x\n"));
    b.expect("* error: line too long (max 65536 bytes)");
    b.expect_eof();
}

#[test]
fn invalid_utf8_is_replaced() {
    let (_server, addr) = Netloop::serve_one("chat", &[]);
    let mut a = Client::join(addr, 1);
    let mut b = Client::join(addr, 2);
    a.line();
    // 0xFF is telnet's command byte: doubled, or before a byte that is no command, it is data.
    b.send(b"caf\xc3\xa9 \xfe\xc0 \xff\xff \xffA ok\n");
    a.expect(&format!("{}: caf\u{e9} \u{fffd}\u{fffd} \u{fffd} \u{fffd}A ok", b.id));
}

#[test]
fn peer_fin_means_left_and_the_server_closes_too() {
    for strict in [false, true] {
        let (_server, addr) = Netloop::serve_one("chat", if strict { &["--chat-strict-lines"] } else { &[] });
        let mut a = Client::join(addr, 1);
        let mut b = Client::join(addr, 2);
        a.line();
        // Final words without a newline: complete at the FIN, unless only lines count.
        b.send("last words");
        b.writer.shutdown(Shutdown::Write).expect("shutdown");
        b.expect_eof();
        if !strict {
            a.expect(&format!("{}: last words", b.id));
        }
        a.expect(&format!("* {} left, online now: 1", b.id));
        assert_eq!(a.who(), format!("* online now: 1: {}", a.id));
    }
}

#[test]
fn server_full_is_refused_in_the_chat_protocol() {
    let (_server, addr) = Netloop::serve_one("chat", &["--max-connections", "1"]);
    let mut a = Client::join(addr, 1);
    let mut refused = Client::connect(addr);
    refused.expect("* error: server full (max connections 1)");
    refused.expect_eof();
    assert_eq!(a.who(), format!("* online now: 1: {}", a.id));
}

#[test]
fn binary_junk_never_hurts_the_server_or_the_others() {
    let (_server, addr) = Netloop::serve_one("chat", &[]);
    let mut watcher = Client::join(addr, 1);
    let mut junk = Client::join(addr, 2);
    watcher.line();
    // A few hundred KB of random bytes: many "lines" of garbage, some starting with '/'.
    junk.send(support::pattern(300 * 1024, 7));
    junk.send("\nstill here\n");
    let from = junk.id.clone();
    watcher.skip_until(10_000, |l| l == format!("{from}: still here"));
    // Random bytes without any newline: one over-long line, then the server hangs up.
    let mut flood = Client::join(addr, 3);
    let mut bytes = support::pattern(300 * 1024, 9);
    bytes.retain(|&b| b != b'\n');
    // The server may close while we are still writing; that is the point.
    let _ = flood.writer.write_all(&bytes);
    flood.skip_until(100, |l| l == "* error: line too long (max 65536 bytes)");
    // Everyone else carries on.
    let mut fresh = Client::join(addr, 3);
    fresh.send("hello after junk\n");
    let want = format!("{}: hello after junk", fresh.id);
    watcher.skip_until(10_000, |l| l == want);
    let expected = watcher.who_reply_expected(&[&junk.id, &fresh.id]);
    assert_eq!(watcher.skip_until(10_000, |l| l.starts_with("* online now")), expected);
}

impl Client {
    /// What `/who` answers with us first and `others` after us; sends the `/who`.
    fn who_reply_expected(&mut self, others: &[&str]) -> String {
        self.send("/who\n");
        let mut names = vec![self.id.as_str()];
        names.extend_from_slice(others);
        format!("* online now: {}: {}", names.len(), names.join(", "))
    }
}

/// 100 clients connect and never read while a sender blasts 64 KiB lines at a few healthy
/// readers, with `--max-buffer 1m`.
///
/// Memory bound: the core destroys a socket as soon as its queue passes `max_buffer`, so no
/// queue ever holds more than `max_buffer` plus the one line whose write crossed it. Even if
/// nothing were shared, the server could hold at most
/// `(100 non-readers + 3 readers + 1 sender) * (1 MiB + 64 KiB)` of output at once (~110 MiB);
/// add the sender's unfinished line (64 KiB) and 16 MiB for the allocator and read buffers.
/// Node, by contrast, would queue every line for every non-reader: 100 x the ~130 MB sent here.
///
/// Sharing bound: a broadcast is one allocation queued to everyone by reference, and every
/// queue holds a suffix of the same sequence of lines, so all queues together pin at most the
/// longest suffix, `max_buffer` plus one line. We assert twice that (slack for the core's
/// queues and the readers' notices) plus the same 16 MiB: copying lines per recipient would
/// blow through it at once.
#[test]
fn slow_consumers_are_dropped_and_memory_stays_bounded() {
    const NON_READERS: usize = 100;
    const READERS: usize = 3;
    const MESSAGES: usize = 2000;
    const PAYLOAD: usize = 64 * 1024 - 64;
    // Lines the sender may run ahead of the slowest reader: 8 x 64 KiB = 512 KiB, half the
    // limit, so a reader that keeps up is never dropped whatever the scheduler does.
    const WINDOW: usize = 8;
    const MAX_BUFFER: u64 = 1 << 20;

    let (mut server, addr) = Netloop::serve_one("chat", &["--max-buffer", "1m"]);
    let started = Instant::now();
    let mut stalled: Vec<TcpStream> = (0..NON_READERS).map(|_| connect(addr)).collect();
    let mut readers: Vec<Client> = (0..READERS).map(|_| Client::connect(addr)).collect();
    let mut sender = Client::connect(addr);
    let online = NON_READERS + READERS + 1;
    // The round trip proves every connection is a member before the blast starts.
    let welcome = sender.line();
    assert_eq!(welcome, format!("* welcome {}, online now: {online}", sender.id));
    let who = sender.who();
    assert!(who.starts_with(&format!("* online now: {online}:")), "{who}");

    let baseline = server.rss();
    let progress: Arc<Vec<AtomicUsize>> = Arc::new((0..READERS).map(|_| AtomicUsize::new(0)).collect());
    let failed = Arc::new(AtomicBool::new(false));
    let from = sender.id.clone();
    let line_of = move |i: usize| {
        let fill = (b'a' + (i % 26) as u8) as char;
        format!("{i:06} {}", fill.to_string().repeat(PAYLOAD))
    };
    let handles: Vec<_> = readers
        .drain(..)
        .enumerate()
        .map(|(r, mut reader)| {
            let progress = Arc::clone(&progress);
            let failed = Arc::clone(&failed);
            let prefix = format!("{from}: ");
            std::thread::spawn(move || {
                let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    let mut next = 0;
                    let mut line = String::new();
                    while next < MESSAGES {
                        line.clear();
                        let n = reader.reader.read_line(&mut line).expect("reader read");
                        assert!(n > 0, "reader {r}: EOF after {next} messages");
                        let Some(text) = line.strip_suffix('\n').and_then(|l| l.strip_prefix(&prefix)) else {
                            assert!(line.starts_with("* "), "reader {r}: unexpected line");
                            continue; // joins and the non-readers' "left" notices
                        };
                        assert!(text == line_of(next), "reader {r}: message {next} wrong or out of order");
                        next += 1;
                        progress[r].store(next, Ordering::Release);
                    }
                }));
                if result.is_err() {
                    failed.store(true, Ordering::Release);
                }
                reader // kept open until the checks below are done
            })
        })
        .collect();

    let mut peak = baseline;
    let deadline = Instant::now() + WAIT;
    for i in 0..MESSAGES {
        // Pace to the slowest healthy reader (bounded wait).
        while progress.iter().map(|p| p.load(Ordering::Acquire)).min().unwrap_or(0) + WINDOW < i {
            assert!(!failed.load(Ordering::Acquire), "a reader failed");
            assert!(Instant::now() < deadline, "readers stalled at {i}");
            std::thread::sleep(Duration::from_micros(200));
        }
        let mut line = line_of(i);
        line.push('\n');
        sender.send(&line);
        if i % 16 == 0 {
            peak = peak.max(server.rss());
        }
    }
    let readers: Vec<Client> = handles.into_iter().map(|h| h.join().expect("reader thread")).collect();
    assert!(!failed.load(Ordering::Acquire), "a healthy reader missed or reordered a message");
    peak = peak.max(server.rss());
    // The sender was never dropped (flow control stalls it at most briefly), and only the
    // non-readers are gone.
    sender.send("/who\n");
    let who = sender.skip_until(NON_READERS + 1, |l| l.starts_with("* online now"));
    assert!(who.starts_with(&format!("* online now: {}:", READERS + 1)), "{who}");

    // Every non-reader was cut off: reading now yields what the kernels buffered, then EOF
    // (or a reset), far less than what was sent.
    let sent_per_client = MESSAGES as u64 * (PAYLOAD as u64 + 8 + from.len() as u64 + 2);
    let mut buf = vec![0u8; 1 << 20];
    for (n, s) in stalled.iter_mut().enumerate() {
        let mut got = 0u64;
        loop {
            match s.read(&mut buf) {
                Ok(0) => break,
                Ok(k) => got += k as u64,
                Err(e) if e.kind() == ErrorKind::ConnectionReset => break,
                Err(e) => panic!("non-reader {n}: {e} after {got} bytes (not disconnected?)"),
            }
        }
        assert!(got < sent_per_client / 2, "non-reader {n} got {got} of {sent_per_client} bytes");
    }

    let bound = (NON_READERS + READERS + 1) as u64 * (MAX_BUFFER + 64 * 1024) + 64 * 1024 + (16 << 20);
    let grown = peak.saturating_sub(baseline);
    eprintln!(
        "chat slow consumers: rss baseline {} KiB, peak {} KiB (+{} KiB, bound {} KiB), {:?}",
        baseline >> 10,
        peak >> 10,
        grown >> 10,
        bound >> 10,
        started.elapsed()
    );
    assert!(grown < bound, "rss grew by {grown} bytes, bound {bound}");
    let shared_bound = 2 * (MAX_BUFFER + 64 * 1024) + (16 << 20);
    assert!(
        grown < shared_bound,
        "rss grew by {grown} bytes: broadcasts are not shared? (bound {shared_bound})"
    );
    server.kill();
    let log = server.stderr();
    let dropped =
        support::logged_events(&log, "output buffer limit exceeded", "cut at their output limit") as usize;
    assert!(
        dropped >= NON_READERS,
        "expected {NON_READERS} output-limit disconnects, log says {dropped}:\n{log}"
    );
    drop(readers);
}

/// A child process driven through its stdin, its stdout read line by line with bounded waits;
/// killed on drop.
struct Driven {
    child: Child,
    stdin: ChildStdin,
    lines: Receiver<String>,
}

impl Driven {
    fn spawn(cmd: &mut Command) -> Driven {
        let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().expect("spawn");
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Driven { child, stdin, lines }
    }

    /// One of our Node client scripts, connected to `addr`.
    fn node(script: &str, addr: SocketAddr) -> Driven {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/node").join(script);
        Driven::spawn(Command::new("node").arg(path).arg(addr.to_string()))
    }

    fn send(&mut self, text: &str) {
        self.stdin.write_all(text.as_bytes()).expect("write to child");
        self.stdin.flush().expect("flush to child");
    }

    /// Reads stdout lines until one satisfies `want`; returns it. Bounded by `WAIT`.
    fn wait_for(&mut self, what: &str, want: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + WAIT;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if want(&line) => return line,
                Ok(line) => seen.push(line),
                Err(_) => panic!("no {what} from the child; it printed {seen:?}"),
            }
        }
    }
}

impl Drop for Driven {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The label in `* <label> joined, online now: N`.
fn joined_label(line: &str) -> String {
    let rest = line.strip_prefix("* ").and_then(|l| l.split_once(" joined, online now: "));
    rest.map(|(label, _)| label.to_string()).unwrap_or_else(|| panic!("not a join notice: {line:?}"))
}

/// The classic Node programs' own chat clients send no newline: the stdin client writes each chunk trimmed, the
/// readline client each line without its end. Each message must reach the others on its own,
/// promptly, neither held back nor merged with the next, and the others' lines reach them.
#[test]
fn the_seed_clients_messages_reach_the_others_without_a_newline() {
    let (_server, addr) = Netloop::serve_one("chat", &[]);
    let mut watcher = Client::join(addr, 1);
    for script in ["chat_stdin_client.js", "chat_readline_client.js"] {
        let mut client = Driven::node(script, addr);
        let label = joined_label(&watcher.line());
        client.wait_for("welcome", |l| l.contains(&format!("* welcome {label}, online now: 2")));
        for text in ["hello from node", "a second message", "\u{fc}ber \u{2713} third"] {
            let typed = Instant::now();
            client.send(&format!("{text}\n"));
            watcher.expect(&format!("{label}: {text}"));
            eprintln!("{script}: {text:?} reached the others in {:?}", typed.elapsed());
        }
        watcher.send("hi node\n");
        let want = format!("{}: hi node", watcher.id);
        client.wait_for("the watcher's line", |l| l.contains(&want));
        drop(client);
        watcher.expect(&format!("* {label} left, online now: 1"));
    }
}

#[test]
fn a_line_split_across_two_writes_10_ms_apart_is_one_message() {
    let (_server, addr) = Netloop::serve_one("chat", &[]);
    let mut a = Client::join(addr, 1);
    let mut b = Client::join(addr, 2);
    a.line();
    for _ in 0..3 {
        a.send("split in");
        std::thread::sleep(Duration::from_millis(10));
        a.send(" two\r\n");
        b.expect(&format!("{}: split in two", a.id));
    }
    // Text that stays without a newline goes out once it has waited 50 ms for the rest.
    let sent = Instant::now();
    a.send("ping");
    b.expect(&format!("{}: ping", a.id));
    let waited = sent.elapsed();
    eprintln!("text without a newline was relayed after {waited:?}");
    assert!(waited >= Duration::from_millis(40), "relayed after {waited:?}: it did not wait for the rest");
    // Its late newline is an empty line, ignored; the next message is whole.
    a.send("\nnext\n");
    b.expect(&format!("{}: next", a.id));
}

#[test]
fn strict_lines_wait_for_the_newline() {
    let (_server, addr) = Netloop::serve_one("chat", &["--chat-strict-lines"]);
    let mut a = Client::join(addr, 1);
    let mut b = Client::join(addr, 2);
    a.line();
    a.send("held for ");
    std::thread::sleep(Duration::from_millis(300));
    a.send("a while\n");
    b.expect(&format!("{}: held for a while", a.id));
}

/// A member's text cannot move the others' cursor, clear their screen or ring their bell: every
/// control character but tab is shown escaped.
#[test]
fn control_characters_in_text_are_shown_escaped() {
    let (_server, addr) = Netloop::serve_one("chat", &[]);
    let mut a = Client::join(addr, 1);
    let mut mallory = Client::join(addr, 2);
    a.line();
    let from = mallory.id.clone();
    mallory.send("harmless\rmallory-is-admin: send password\n");
    a.expect(&format!("{from}: harmless\\rmallory-is-admin: send password"));
    mallory.send("\u{1b}[2J\u{7}bell\0nul\tta\u{7f}b\u{202e}evil\n");
    a.expect(&format!("{from}: \\e[2J\\x07bell\\x00nul\tta\\x7fb\\u{{202e}}evil"));
    mallory.send("/\u{1b}[31m\n");
    mallory.expect("* error: unknown command /\\e[31m");
    // Nicks are printable ASCII only.
    mallory.send("/nick ad\u{1b}min\n");
    mallory.expect("* error: invalid name");
}

/// What `telnet` sends: its lines end in CRLF, Ctrl-C is `IAC IP IAC DO TIMING-MARK`, and some
/// modes negotiate options. The commands are stripped, requests refused, and the text between
/// them relayed as usual.
#[test]
fn telnet_commands_are_stripped_and_negotiation_refused() {
    let (_server, addr) = Netloop::serve_one("chat", &[]);
    let mut a = Client::join(addr, 1);
    let mut t = Client::join(addr, 2);
    a.line();
    let from = t.id.clone();
    t.send("before\r\n");
    a.expect(&format!("{from}: before"));
    // Ctrl-C: the timing mark is answered (refused), which is what telnet waits for.
    t.send(b"\xff\xf4\xff\xfd\x06");
    let mut reply = [0u8; 3];
    t.reader.read_exact(&mut reply).expect("an answer to DO TIMING-MARK");
    assert_eq!(reply, [255, 252, 6], "IAC WONT TIMING-MARK");
    // WILL NAWS gets DONT NAWS; a subnegotiation (split across writes) and WONT get nothing.
    t.send(b"\xff\xfb\x1fafter\xff\xfa\x1f\x00");
    std::thread::sleep(Duration::from_millis(5));
    t.send(b"\x50\x00\x18\xff\xf0 ctrl-c\xff\xfc\x01\r\n");
    t.reader.read_exact(&mut reply).expect("an answer to WILL NAWS");
    assert_eq!(reply, [255, 254, 31], "IAC DONT NAWS");
    a.expect(&format!("{from}: after ctrl-c"));
    // A literal 0xFF is doubled in telnet; it is data.
    t.send(b"\xff\xff!\r\n");
    a.expect(&format!("{from}: \u{fffd}!"));
    assert_eq!(t.who(), format!("* online now: 2: {}, {from}", a.id));
}

/// Fails with the install command when a tool the test needs is missing.
fn require(tool: &str, package: &str) {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(found, "this test needs `{tool}`: apt-get install -y {package}");
}

/// Runs `telnet HOST PORT` on a pseudo-terminal and takes commands on stdin: `type TEXT` types
/// TEXT (Python escapes: `\r` is Enter, `\x03` is Ctrl-C), `expect TEXT` waits until telnet
/// has shown TEXT and answers `ok` (or `timeout: ...`), `pause SECONDS`.
const TELNET_ON_A_PTY: &str = r#"
import codecs, os, pty, select, sys, time
pid, fd = pty.fork()
if pid == 0:
    os.execvp('telnet', ['telnet', sys.argv[1], sys.argv[2]])
shown = b''
for command in sys.stdin:
    verb, _, arg = command.rstrip('\n').partition(' ')
    if verb == 'type':
        os.write(fd, codecs.decode(arg, 'unicode_escape').encode('latin-1'))
    elif verb == 'pause':
        time.sleep(float(arg))
    elif verb == 'expect':
        want = arg.encode()
        deadline = time.time() + 20
        while want not in shown and time.time() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.1)
            if ready:
                try:
                    shown += os.read(fd, 4096)
                except OSError:
                    break
        if want in shown:
            shown = shown[shown.index(want) + len(want):]
            print('ok', flush=True)
        else:
            print('timeout: telnet showed %r' % shown[-300:], flush=True)
os.kill(pid, 9)
"#;

/// The real `telnet` client on a terminal: a user chats, presses Ctrl-C, and keeps chatting,
/// still seeing what the others say.
#[test]
fn a_real_telnet_session_keeps_working_after_ctrl_c() {
    require("telnet", "telnet");
    require("python3", "python3");
    let (_server, addr) = Netloop::serve_one("chat", &[]);
    let mut watcher = Client::join(addr, 1);
    let mut telnet = Driven::spawn(Command::new("python3").args([
        "-c",
        TELNET_ON_A_PTY,
        &addr.ip().to_string(),
        &addr.port().to_string(),
    ]));
    let expect = |telnet: &mut Driven, text: &str| {
        telnet.send(&format!("expect {text}\n"));
        let answer = telnet.wait_for("an answer from the pty driver", |_| true);
        assert_eq!(answer, "ok", "telnet never showed {text:?}");
    };
    expect(&mut telnet, "* welcome ");
    let label = joined_label(&watcher.line());
    telnet.send("type hello from telnet\\r\n");
    watcher.expect(&format!("{label}: hello from telnet"));
    watcher.send("hello telnet\n");
    expect(&mut telnet, &format!("{}: hello telnet", watcher.id));

    telnet.send("type \\x03\npause 0.3\n");
    telnet.send("type still here\\r\n");
    // Nothing of the interrupt reached the room: the next line is the text typed after it.
    watcher.expect(&format!("{label}: still here"));
    // And telnet, answered, shows the room again.
    watcher.send("after ctrl-c\n");
    expect(&mut telnet, &format!("{}: after ctrl-c", watcher.id));
}

/// Joins and leaves in a storm are told in a few summary lines, not one line per member per
/// change (O(N) output for N joins, not O(N²)); each joiner still gets its own welcome.
#[test]
fn a_join_storm_is_told_in_a_few_summary_lines() {
    const N: usize = 300;
    let (_server, addr) = Netloop::serve_one("chat", &[]);
    let mut watcher = Client::join(addr, 1);
    let storm: Vec<Client> = (0..N).map(|_| Client::connect(addr)).collect();

    let mut told = Vec::new();
    while !told.last().is_some_and(|l: &String| l.ends_with(&format!("; online now: {}", N + 1))) {
        assert!(told.len() < N, "one notice per join: {told:#?}");
        told.push(watcher.line());
    }
    eprintln!("{N} joins told in {} lines: {told:#?}", told.len());
    // At most 4 lines per 200 ms; the connects take far less than the 3 s this allows.
    assert!(told.len() <= N / 5, "{N} joins told in {} lines", told.len());
    let summary = told.last().unwrap();
    assert!(summary.starts_with("* joined: ") && summary.contains(" more; online now: "), "{summary}");
    for mut c in storm {
        let welcome = c.line();
        assert!(welcome.starts_with(&format!("* welcome {}, online now: ", c.id)), "{welcome}");
        drop(c); // a leave storm follows
    }

    let mut told = Vec::new();
    while !told.last().is_some_and(|l: &String| l.ends_with("online now: 1")) {
        assert!(told.len() < N, "one notice per leave: {told:#?}");
        told.push(watcher.line());
    }
    assert!(told.len() <= N / 5, "{N} leaves told in {} lines: {told:#?}", told.len());
    assert!(told.iter().any(|l| l.starts_with("* left: ") && l.contains(" more; ")), "{told:#?}");
    assert_eq!(watcher.who(), format!("* online now: 1: {}", watcher.id));
}

/// Times the server's loop went to sleep and woke up (the main thread's voluntary context
/// switches): a loop with no timer armed and nothing to do sleeps through.
fn wakeups(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("voluntary_ctxt_switches")
}

/// Text without a newline costs a timer only while it waits: once it went out (or when all a
/// member holds is half a character), the room holds no timer and the server sleeps.
#[test]
fn an_idle_room_holds_no_timer() {
    const MEMBERS: usize = 50;
    let (server, addr) = Netloop::serve_one("chat", &[]);
    let mut watcher = Client::join(addr, 1);
    let mut members: Vec<Client> = (0..MEMBERS).map(|_| Client::connect(addr)).collect();
    for m in &mut members {
        m.line(); // its welcome
        m.send("typed, no newline");
    }
    // Half a character: held, but there is nothing to send yet.
    members[0].send(b"\xc3");
    let mut relayed = 0;
    while relayed < MEMBERS {
        if watcher.line().ends_with(": typed, no newline") {
            relayed += 1;
        }
    }
    // Let the presence interval run out, then watch the server sleep.
    std::thread::sleep(Duration::from_millis(600));
    let before = wakeups(server.pid());
    std::thread::sleep(Duration::from_secs(1));
    let woke = wakeups(server.pid()) - before;
    assert!(woke <= 2, "an idle chat woke {woke} times in 1 s: a timer is still armed");
    // The half character completes into the next message.
    members[0].send(b"\xa9!\n");
    watcher.expect(&format!("{}: \u{e9}!", members[0].id));
}

/// The wire layer is what a real chat speaks: lines built by `netloop::wire::chat` are
/// understood, and every line the server sends is byte for byte what its writers produce.
#[test]
fn wire_lines_are_what_the_chat_speaks() {
    use netloop::wire::chat::{self, Change, Input, ServerLine};
    let (_server, addr) = Netloop::serve_one("chat", &[]);
    let mut out = Vec::new();
    let mut expect = |c: &mut Client, write: &dyn Fn(&mut Vec<u8>)| {
        out.clear();
        write(&mut out);
        let want = String::from_utf8(out.clone()).expect("UTF-8");
        assert_eq!(format!("{}\n", c.line()), want, "{}", c.id);
    };
    let mut line = Vec::new();
    let mut say = |c: &mut Client, input: Input<'_>| {
        input.encode(&mut line);
        c.send(&line);
    };

    let mut ann = Client::connect(addr);
    let ann_label = ann.id.clone();
    say(&mut ann, Input::Nick("ann"));
    expect(&mut ann, &|o| chat::write_welcome(o, &ann_label, 1));
    expect(&mut ann, &|o| chat::write_you_are_now(o, "ann"));
    let mut bob = Client::connect(addr);
    let bob_label = bob.id.clone();
    say(&mut bob, Input::Who);
    let welcome = bob.line();
    assert_eq!(ServerLine::decode(welcome.as_bytes()), ServerLine::Welcome { label: bob_label.as_bytes() });
    expect(&mut bob, &|o| chat::write_who(o, 2, ["ann", bob_label.as_str()].into_iter()));
    expect(&mut ann, &|o| chat::write_change(o, Change::Joined, &bob_label, 2));

    say(&mut bob, Input::Text("hi \u{1b}[2J there"));
    let relayed = ann.line();
    let mut want = Vec::new();
    chat::write_message(&mut want, &bob_label, "hi \u{1b}[2J there");
    assert_eq!(format!("{relayed}\n").as_bytes(), want.as_slice());
    assert_eq!(
        ServerLine::decode(relayed.as_bytes()),
        ServerLine::Message { from: bob_label.as_bytes(), text: br"hi \e[2J there" }
    );
    say(&mut bob, Input::Nick("ann"));
    expect(&mut bob, &|o| chat::write_name_taken(o, "ann"));
    say(&mut bob, Input::Nick("no way"));
    expect(&mut bob, &|o| o.extend_from_slice(chat::INVALID_NAME));
    say(&mut bob, Input::Unknown("frob"));
    expect(&mut bob, &|o| chat::write_unknown_command(o, "frob"));
    say(&mut bob, Input::Quit);
    expect(&mut bob, &|o| o.extend_from_slice(chat::BYE));
    bob.expect_eof();
    expect(&mut ann, &|o| chat::write_change(o, Change::Left, &bob_label, 1));
}
