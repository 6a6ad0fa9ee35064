//! The `netloop` command: parse arguments, hand them to the library, report errors.

use std::ffi::OsString;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use netloop::connect::ConnectConfig;
use netloop::input_budget::InputLimits;
use netloop::load::{EchoConfig, FanoutConfig, FanoutProtocol, LoadConfig, Mode};
use netloop::serve::{settle_max_sockets, Serve, ServeConfig, ServiceKind};
use netloop::services::chat::ChatConfig;
use netloop::services::hub::HubConfig;
use netloop::units::{parse_duration, parse_size};
use netloop::workers::{SupervisorConfig, WorkerSetup};
use netloop::{AddressSpec, EventLoop, ServerOptions, SocketOptions};

#[derive(Parser, Debug)]
#[command(name = "netloop", version, about = "Node.js's net socket-server model on one mio poll loop")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run services. With no service flag: echo on 127.0.0.1:8080, chat on 127.0.0.1:3000, hub on
    /// 127.0.0.1:9000, and the hub's web listener on 127.0.0.1:8081.
    Serve(ServeArgs),
    /// Line client: stdin to the server, the server to stdout; exits when the server closes.
    Connect(ConnectArgs),
    /// Load generator: hold idle connections, measure echo round trips or chat/hub fan-out.
    Load(LoadArgs),
}

#[derive(Args, Debug)]
struct ConnectArgs {
    /// Server address: HOST:PORT, PORT (127.0.0.1), [V6]:PORT or unix:PATH.
    #[arg(value_name = "ADDR", value_parser = parse_addr)]
    addr: AddressSpec,

    /// Speak the JSON hub: sync as NAME first, send typed lines as broadcasts (or /join ROOM,
    /// /leave ROOM, /list, /to NAME TEXT, /name NAME, raw {JSON}), print messages readably.
    #[arg(long, value_name = "NAME")]
    hub_name: Option<String>,
}

#[derive(Args, Debug)]
#[command(
    subcommand_value_name = "MODE",
    subcommand_help_heading = "Modes",
    after_help = "Every mode takes ADDR (HOST:PORT, PORT, [V6]:PORT or unix:PATH) and its own options:
netloop load MODE --help lists them.

-c is the connection count in every mode (fanout: receivers). -r is messages per second in
total over all (sending) connections; --rate-per-conn is tcpkali's per-connection -r. With a
rate, latency is timed from each message's scheduled send; without one (-r 0, echo's default),
from the actual send: closed loop, and the report says so.

Examples:
  netloop load idle 127.0.0.1:8080 -c 19000 -T 30s
  netloop load echo 127.0.0.1:8080 -c 100 --size 64 -T 10s
  netloop load echo 127.0.0.1:8080 -c 100 -r 10000 -T 10s
  netloop load echo unix:/tmp/echo.sock -c 10 --size 64k --pipeline 4 --json
  netloop load fanout 127.0.0.1:9000 --protocol hub -c 1000 -r 1000

Exit status: 0 when every check passed, 1 when one failed (failed or dropped connections,
corrupt echoes, lost/undelivered/duplicated/reordered deliveries, a rate not met; the report
says which), 2 for bad usage.
Reference: docs/load.md"
)]
struct LoadArgs {
    #[command(subcommand)]
    mode: LoadMode,
}

#[derive(Subcommand, Debug)]
enum LoadMode {
    /// Open and hold N connections; report how many came up, how fast, and what stopped them.
    Idle {
        /// Server address: HOST:PORT, PORT, [V6]:PORT or unix:PATH.
        #[arg(value_name = "ADDR", value_parser = parse_addr)]
        addr: AddressSpec,
        /// Connections to open and hold.
        #[arg(short = 'c', long, value_name = "N", default_value_t = 1000, value_parser = at_least_one)]
        connections: usize,
        #[command(flatten)]
        common: LoadCommon,
    },
    /// C connections send messages and verify every echoed byte; round trips/s and latency.
    Echo {
        /// Server address: HOST:PORT, PORT, [V6]:PORT or unix:PATH.
        #[arg(value_name = "ADDR", value_parser = parse_addr)]
        addr: AddressSpec,
        /// Connections.
        #[arg(short = 'c', long, value_name = "N", default_value_t = 100, value_parser = at_least_one)]
        connections: usize,
        /// Message size (64, 16k, 1m).
        #[arg(long, value_name = "SIZE", default_value = "64", value_parser = parse_message_size)]
        size: usize,
        /// Messages in flight per connection.
        #[arg(long, value_name = "K", default_value_t = 1, value_parser = parse_pipeline)]
        pipeline: usize,
        /// Messages per second in total, over all connections (tcpkali's -r is per connection:
        /// that is --rate-per-conn). Latency is then timed from each message's scheduled send, and
        /// a run more than 5% short of the rate fails. 0: closed loop, each connection sends as
        /// soon as its echoes return.
        #[arg(short = 'r', long, value_name = "PER_S", default_value_t = 0)]
        rate: u64,
        /// Messages per second per connection (tcpkali's -r): the same as -r with this times -c.
        #[arg(long, value_name = "PER_S", conflicts_with = "rate")]
        rate_per_conn: Option<u64>,
        #[command(flatten)]
        common: LoadCommon,
    },
    /// R receivers and S senders on a chat or hub server: delivery latency, loss, reordering.
    Fanout {
        /// Server address: HOST:PORT, PORT, [V6]:PORT or unix:PATH.
        #[arg(value_name = "ADDR", value_parser = parse_addr)]
        addr: AddressSpec,
        /// The server's protocol.
        #[arg(long, value_enum)]
        protocol: ProtocolArg,
        /// Receiving connections (senders come on top).
        #[arg(short = 'c', long, visible_alias = "connections", value_name = "R", default_value_t = 100, value_parser = at_least_one)]
        receivers: usize,
        /// Sending connections (separate from the receivers).
        #[arg(long, value_name = "S", default_value_t = 1, value_parser = at_least_one)]
        senders: usize,
        /// Messages per second in total, over all senders (tcpkali's -r is per connection: that
        /// is --rate-per-conn). Latency is timed from each message's scheduled send, and a run
        /// more than 5% short of the rate fails. 0: as fast as the server takes them.
        #[arg(short = 'r', long, value_name = "PER_S", default_value_t = 1000)]
        rate: u64,
        /// Messages per second per sender (tcpkali's -r): the same as -r with this times --senders.
        #[arg(long, value_name = "PER_S", conflicts_with = "rate")]
        rate_per_conn: Option<u64>,
        /// Pad each message text to this size (0: about 40 bytes, unpadded).
        #[arg(long, value_name = "SIZE", default_value = "0", value_parser = parse_size)]
        size: usize,
        /// Connect the senders here instead of ADDR: another node of the same --cluster, so
        /// every delivery crosses nodes.
        #[arg(long, value_name = "ADDR", value_parser = parse_addr)]
        senders_at: Option<AddressSpec>,
        /// Connect every other connection (receivers and senders alike) here: another node of
        /// the same --cluster, so both nodes have members and half the deliveries cross.
        #[arg(long, value_name = "ADDR", value_parser = parse_addr, conflicts_with = "senders_at")]
        half_at: Option<AddressSpec>,
        /// After -T, how long to wait for deliveries still in flight.
        #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_duration)]
        drain_timeout: Duration,
        #[command(flatten)]
        common: LoadCommon,
    },
}

#[derive(ValueEnum, Clone, Copy, Debug)]
enum ProtocolArg {
    Chat,
    Hub,
}

/// Options every load mode takes.
#[derive(Args, Debug)]
struct LoadCommon {
    /// Measured time after ramp-up: the hold (idle) or the traffic window (10s, 500ms, 1m).
    #[arg(short = 'T', long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    duration: Duration,

    /// New connections per second (0: as fast as --max-connecting allows).
    #[arg(long, value_name = "PER_S", default_value_t = 0)]
    connect_rate: u32,

    /// Connects in flight at once.
    #[arg(long, value_name = "N", default_value_t = 128, value_parser = at_least_one)]
    max_connecting: usize,

    /// A connect (or protocol handshake) slower than this fails (ETIMEDOUT).
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    connect_timeout: Duration,

    /// Source addresses, used round-robin [default: the kernel's, then 127.0.0.2, 127.0.0.3, ...
    /// every ~14k connections to a loopback target].
    #[arg(long, value_name = "IP,IP,...", value_delimiter = ',')]
    source: Vec<std::net::IpAddr>,

    /// Print the final report as one JSON object (keys in docs/load.md).
    #[arg(long)]
    json: bool,

    /// No progress line on stderr.
    #[arg(short = 'q', long)]
    quiet: bool,

    /// Split the run over this many processes, each one loop (auto: one per core): each
    /// opens its share of -c and sends its share of -r from its own source addresses; the
    /// report merges theirs (counts added, percentiles from the merged histograms). Idle and
    /// echo only.
    #[arg(long, value_name = "N|auto", default_value = "1", value_parser = parse_workers)]
    workers: usize,

    /// Set by a split run: this process runs share I of N.
    #[arg(long, hide = true, value_name = "I/N", value_parser = parse_part)]
    worker_part: Option<(usize, usize)>,
}

/// `--worker-part I/N`.
fn parse_part(s: &str) -> Result<(usize, usize), String> {
    let parsed = s.split_once('/').and_then(|(i, n)| Some((i.parse().ok()?, n.parse().ok()?)));
    match parsed {
        Some((i, n)) if i < n => Ok((i, n)),
        _ => Err(format!("expected I/N with I < N, got {s:?}")),
    }
}

/// The `load` arguments as typed, without those a split run sets for its processes.
fn load_part_args(argv: impl Iterator<Item = OsString>) -> Vec<OsString> {
    let mut out = Vec::new();
    let mut args = argv.skip_while(|a| a != "load").skip(1);
    while let Some(arg) = args.next() {
        let text = arg.to_string_lossy();
        if text == "--workers" {
            args.next();
        } else if !(text.starts_with("--workers=") || ["--json", "--quiet", "-q"].contains(&text.as_ref())) {
            out.push(arg);
        }
    }
    out
}

fn at_least_one(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(format!("expected a whole number of at least 1, got {s:?}")),
    }
}

fn parse_message_size(s: &str) -> Result<usize, String> {
    match parse_size(s)? {
        0 => Err("the message size must be at least 1 byte".into()),
        n if n > 64 * 1024 * 1024 => Err("the message size is limited to 64 MiB".into()),
        n => Ok(n),
    }
}

fn parse_pipeline(s: &str) -> Result<usize, String> {
    match at_least_one(s)? {
        n if n > 65_536 => Err("--pipeline is limited to 65536".into()),
        n => Ok(n),
    }
}

#[derive(Args, Debug)]
struct ServeArgs {
    /// Echo service address: HOST:PORT, PORT (127.0.0.1), [V6]:PORT or unix:PATH. Repeatable.
    #[arg(long, value_name = "ADDR", value_parser = parse_addr)]
    echo: Vec<AddressSpec>,

    /// Chat service address (line protocol, nc-friendly); same forms as --echo. Repeatable.
    #[arg(long, value_name = "ADDR", value_parser = parse_addr)]
    chat: Vec<AddressSpec>,

    /// JSON hub service address; same forms as --echo. Repeatable.
    #[arg(long, value_name = "ADDR", value_parser = parse_addr)]
    hub: Vec<AddressSpec>,

    /// Web listener for browsers (HTTP: the chat page at /, WebSocket at /ws, socket.io at
    /// /socket.io/), all hub members. Repeatable.
    #[cfg(feature = "web")]
    #[arg(long, value_name = "ADDR", value_parser = parse_addr)]
    web: Vec<AddressSpec>,

    /// An Origin allowed to use /ws and /socket.io/ (CORS for polling); `*` allows any.
    /// Repeatable. Without it any Origin may open a WebSocket and polling is same-origin only.
    #[cfg(feature = "web")]
    #[arg(long, value_name = "ORIGIN")]
    web_origin: Vec<String>,

    /// Chat: also send a client's own lines back to it.
    #[arg(long)]
    chat_echo_self: bool,

    /// Chat: only complete lines are messages; text without a newline waits for one (by
    /// default it is sent 50 ms after it arrives).
    #[arg(long)]
    chat_strict_lines: bool,

    /// Chat: longest line (without its terminator); longer gets an error and is disconnected.
    #[arg(long, value_name = "SIZE", default_value = "64k", value_parser = parse_limit)]
    max_line: usize,

    /// Hub: longest JSON frame; longer gets frame_too_large and is disconnected.
    #[arg(long, value_name = "SIZE", default_value = "1m", value_parser = parse_limit)]
    max_frame: usize,

    /// Hub: require the first frame to be a sync carrying "token":SECRET.
    #[arg(long, value_name = "SECRET")]
    hub_token: Option<String>,

    /// Hub: close a connection that sent no valid request within this long (slowloris). 0 = off.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    register_timeout: Duration,

    /// Chat and hub: most bytes of unfinished lines and frames all connections together may
    /// hold; past it the connection holding the most is cut with an error. 0 = off.
    #[arg(long, value_name = "SIZE", default_value = "64m", value_parser = parse_size)]
    max_input_total: usize,

    /// Chat and hub: a line or frame must complete within this long of its first byte held;
    /// a client that drips one slower is cut with an error (slowloris). 0 = off.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration)]
    input_timeout: Duration,

    /// Text each echo connection gets first; \r \n \t \\ are unescaped ("Hello World!\r\n").
    #[arg(long, value_name = "TEXT")]
    echo_banner: Option<String>,

    /// Queued bytes at which write() returns false and echo pauses reading (k/m suffixes).
    #[arg(long, value_name = "SIZE", default_value = "16k", value_parser = parse_size)]
    high_water_mark: usize,

    /// Hard limit of queued output per connection; a client past it is disconnected.
    #[arg(long, value_name = "SIZE", default_value = "8m", value_parser = parse_size)]
    max_buffer: usize,

    /// Soft output limit: disconnect a client whose queue stays above this for
    /// --soft-limit-time (Redis's client-output-buffer-limit soft/seconds). 0 = off.
    #[arg(long, value_name = "SIZE", default_value = "2m", value_parser = parse_size)]
    soft_limit: usize,

    /// How long a client may stay above --soft-limit.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration)]
    soft_limit_time: Duration,

    /// Log the counters (connections, accepted, rejected, disconnects by reason, bytes) at
    /// info level this often. 0 = off.
    #[arg(long, value_name = "DURATION", default_value = "0", value_parser = parse_duration)]
    stats_interval: Duration,

    /// Close connections idle this long (500ms, 30s, 2m; bare number = ms). 0 = off.
    #[arg(long, value_name = "DURATION", default_value = "0", value_parser = parse_duration)]
    idle_timeout: Duration,

    /// Refuse connections beyond this many, all listeners together [default: open file limit - 32].
    #[arg(long, value_name = "N", value_parser = parse_max_connections)]
    max_connections: Option<usize>,

    /// listen() backlog.
    #[arg(long, value_name = "N", default_value_t = 1024)]
    backlog: u32,

    /// Chat and hub keep sending to a client that half-closed (Node's allowHalfOpen).
    #[arg(long)]
    allow_half_open: bool,

    /// TCP_NODELAY on accepted sockets (Node's default is off; on favours latency).
    #[arg(long, value_name = "on|off", default_value = "on", value_parser = parse_on_off, action = clap::ArgAction::Set)]
    no_delay: bool,

    /// TCP keepalive with this initial delay, 1s to 32767s (off by default).
    #[arg(long, value_name = "DURATION", value_parser = parse_keep_alive)]
    keep_alive: Option<Duration>,

    /// After SIGINT/SIGTERM, how long queued output may take to flush before exit.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_duration)]
    shutdown_timeout: Duration,

    /// Worker processes, each one loop, all accepting on every address (auto: one per core).
    /// Echo; chat and hub only with --cluster (every worker a node of the cluster), since they
    /// keep their members in one process. --max-connections is per worker.
    #[arg(long, value_name = "N|auto", default_value = "1", value_parser = parse_workers)]
    workers: usize,

    /// Set by the supervisor: this process is worker I.
    #[arg(long, hide = true, value_name = "I")]
    worker: Option<usize>,

    /// Set by the supervisor: the descriptor of the channel to it.
    #[arg(long, hide = true, value_name = "FD")]
    worker_report_fd: Option<i32>,

    /// Set by the supervisor: the inherited listening sockets, in the order of the listeners.
    #[arg(long, hide = true, value_name = "FD,...", value_delimiter = ',')]
    worker_listeners: Vec<i32>,

    #[cfg(feature = "cluster")]
    #[command(flatten)]
    cluster: ClusterArgs,
}

/// Most workers: far past any core count, low enough that a typo does not fork-bomb.
const MAX_WORKERS: usize = 1024;

/// `--workers`: a count, or `auto` for one per core.
fn parse_workers(s: &str) -> Result<usize, String> {
    if s == "auto" {
        return Ok(std::thread::available_parallelism().map_or(1, |n| n.get()));
    }
    match s.parse::<usize>() {
        Ok(n) if (1..=MAX_WORKERS).contains(&n) => Ok(n),
        _ => Err(format!("expected auto or a whole number from 1 to {MAX_WORKERS}, got {s:?}")),
    }
}

/// Chat and hub across processes and machines (see docs/operations.md, "Cluster").
#[cfg(feature = "cluster")]
#[derive(Args, Debug)]
struct ClusterArgs {
    /// Chat and hub: be one node of a cluster through this Redis: redis://[:PASSWORD@]HOST:PORT
    /// or unix:PATH. Unreachable at start: an error, unless --cluster-retry.
    #[arg(long, value_name = "URL")]
    cluster: Option<String>,

    /// With --cluster: start even if Redis is unreachable, serve alone and keep retrying.
    #[arg(long, requires = "cluster")]
    cluster_retry: bool,

    /// With --cluster: how often a node tells it is alive; it is gone for the others after
    /// three missed, and so are its names.
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = parse_duration)]
    cluster_heartbeat: Duration,
}

/// The cluster settings, after checking (unless told to retry) that Redis answers.
#[cfg(feature = "cluster")]
fn cluster_config(args: &ClusterArgs) -> std::io::Result<Option<netloop::cluster::ClusterConfig>> {
    use netloop::cluster::{conn::Endpoint, probe, ClusterConfig};
    let Some(url) = &args.cluster else { return Ok(None) };
    let endpoint = Endpoint::parse(url).map_err(std::io::Error::other)?;
    if args.cluster_heartbeat < Duration::from_millis(50) || args.cluster_heartbeat > Duration::from_secs(60)
    {
        return Err(std::io::Error::other("--cluster-heartbeat must be between 50ms and 60s"));
    }
    let mut config = ClusterConfig::new(endpoint);
    config.heartbeat = args.cluster_heartbeat;
    if !args.cluster_retry {
        probe(&config.endpoint, Duration::from_secs(3)).map_err(|e| {
            std::io::Error::other(format!(
                "--cluster: {e}; start Redis, fix the URL, or pass --cluster-retry to serve alone until it answers"
            ))
        })?;
    }
    Ok(Some(config))
}

fn parse_addr(s: &str) -> Result<AddressSpec, String> {
    s.parse::<AddressSpec>().map_err(|e| e.to_string())
}

/// Longest line or frame that may be asked for: each connection may buffer this much.
const MAX_INPUT_LIMIT: usize = 1 << 30;

/// A size limit for input: 0 would refuse every line or frame, so it is an error, not "off".
fn parse_limit(s: &str) -> Result<usize, String> {
    match parse_size(s)? {
        0 => Err(format!("{s:?}: must be at least 1 byte")),
        n if n > MAX_INPUT_LIMIT => {
            Err(format!("{s:?}: at most 1 GiB (each connection may buffer this much)"))
        }
        n => Ok(n),
    }
}

/// `--max-connections`: 0 would start a server that refuses everyone, so it is an error.
fn parse_max_connections(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => {
            Err("0 would refuse every connection; give at least 1 (or leave it unset for the fd limit)"
                .into())
        }
        Ok(n) => Ok(n),
        Err(_) => Err(format!("expected a whole number of at least 1, got {s:?}")),
    }
}

/// Linux takes a keepalive idle time of 1 to 32767 seconds (`TCP_KEEPIDLE`); outside that
/// the setting would silently fail on every socket.
fn parse_keep_alive(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d < Duration::from_secs(1) || d > Duration::from_secs(32_767) {
        return Err(format!("{s:?}: the keepalive delay must be between 1s and 32767s"));
    }
    Ok(d)
}

fn parse_on_off(s: &str) -> Result<bool, String> {
    match s {
        "on" | "true" | "1" => Ok(true),
        "off" | "false" | "0" => Ok(false),
        _ => Err(format!("expected on or off, got {s:?}")),
    }
}

/// Turns the two-character escapes a shell leaves alone into bytes.
fn unescape(s: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            let mut buf = [0; 4];
            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            continue;
        }
        match chars.next() {
            Some('r') => out.push(b'\r'),
            Some('n') => out.push(b'\n'),
            Some('t') => out.push(b'\t'),
            Some('\\') => out.push(b'\\'),
            Some(other) => {
                out.push(b'\\');
                let mut buf = [0; 4];
                out.extend_from_slice(other.encode_utf8(&mut buf).as_bytes());
            }
            None => out.push(b'\\'),
        }
    }
    out
}

/// The `serve` arguments as typed, without the ones only the supervisor acts on: `--workers`,
/// `--stats-interval` (it logs the workers' sum itself) and the listeners (it gives each
/// worker the addresses it bound, real ports and sockets handed over by systemd included).
fn worker_args(argv: impl Iterator<Item = OsString>) -> Vec<OsString> {
    const SUPERVISOR_ONLY: [&str; 5] = ["--workers", "--stats-interval", "--echo", "--chat", "--hub"];
    let mut out = Vec::new();
    let mut args = argv.skip_while(|a| a != "serve").skip(1);
    while let Some(arg) = args.next() {
        let text = arg.to_string_lossy();
        if SUPERVISOR_ONLY.contains(&text.as_ref()) {
            args.next();
        } else if !SUPERVISOR_ONLY.iter().any(|f| text.starts_with(&format!("{f}="))) {
            out.push(arg);
        }
    }
    out
}

/// Runs the services until every connection closed after a signal (`Ok(None)`), or a second
/// signal asked to exit at once (`Ok(Some(128 + signal))`).
fn serve(args: ServeArgs) -> std::io::Result<Option<u8>> {
    let mut listeners: Vec<(ServiceKind, AddressSpec)> = Vec::new();
    listeners.extend(args.echo.iter().map(|a| (ServiceKind::Echo, a.clone())));
    listeners.extend(args.chat.iter().map(|a| (ServiceKind::Chat, a.clone())));
    listeners.extend(args.hub.iter().map(|a| (ServiceKind::Hub, a.clone())));
    #[cfg(feature = "web")]
    listeners.extend(args.web.iter().map(|a| (ServiceKind::Web, a.clone())));
    if args.worker.is_none() {
        netloop::systemd::init_notify();
        let activated = netloop::systemd::take_activated_sockets()?;
        add_activated(&mut listeners, &activated)?;
    }
    if listeners.is_empty() {
        let local = |port| AddressSpec::Tcp { host: "127.0.0.1".into(), port };
        listeners.push((ServiceKind::Echo, local(8080)));
        listeners.push((ServiceKind::Chat, local(3000)));
        listeners.push((ServiceKind::Hub, local(9000)));
        #[cfg(feature = "web")]
        listeners.push((ServiceKind::Web, local(8081)));
    }
    if args.workers > 1 && args.worker.is_none() {
        return supervise(&args, &listeners);
    }
    let largest_unit = args.max_line.max(args.max_frame);
    if args.max_input_total > 0 && largest_unit > args.max_input_total {
        log::warn!(
            "--max-input-total ({} bytes) is below --max-line/--max-frame ({largest_unit} bytes): one client \
             sending a line or frame that large is cut with input_limit",
            args.max_input_total
        );
    }
    let max_sockets = settle_max_sockets(args.max_connections);
    #[cfg(feature = "cluster")]
    let cluster = cluster_config(&args.cluster)?;
    let config = ServeConfig {
        #[cfg(feature = "cluster")]
        cluster,
        listeners,
        max_sockets: Some(max_sockets),
        server: ServerOptions {
            backlog: args.backlog,
            max_connections: None,
            reject_message: None,
            socket: SocketOptions {
                high_water_mark: args.high_water_mark.max(1),
                max_buffer: (args.max_buffer > 0).then_some(args.max_buffer),
                soft_limit: (args.soft_limit > 0).then_some((args.soft_limit, args.soft_limit_time)),
                allow_half_open: args.allow_half_open,
                no_delay: args.no_delay,
                keep_alive: args.keep_alive,
                idle_timeout: (!args.idle_timeout.is_zero()).then_some(args.idle_timeout),
            },
        },
        echo_banner: args.echo_banner.as_deref().map(unescape),
        chat: ChatConfig {
            max_line: args.max_line,
            echo_self: args.chat_echo_self,
            strict_lines: args.chat_strict_lines,
        },
        hub: HubConfig {
            max_frame: args.max_frame,
            token: args.hub_token.clone(),
            register_timeout: (!args.register_timeout.is_zero()).then_some(args.register_timeout),
        },
        #[cfg(feature = "web")]
        web: netloop::web::WebConfig {
            origins: args.web_origin.clone(),
            // A polling session's outbox is its output queue: the same hard limit.
            outbox_limit: if args.max_buffer > 0 { args.max_buffer } else { usize::MAX },
            ..Default::default()
        },
        stats_interval: (!args.stats_interval.is_zero()).then_some(args.stats_interval),
        shutdown_timeout: args.shutdown_timeout,
        input: InputLimits {
            max_total: (args.max_input_total > 0).then_some(args.max_input_total),
            timeout: (!args.input_timeout.is_zero()).then_some(args.input_timeout),
        },
    };
    if let (Some(index), Some(report_fd)) = (args.worker, args.worker_report_fd) {
        let setup = WorkerSetup { index, report_fd, listener_fds: args.worker_listeners.clone() };
        let addresses: Vec<AddressSpec> = config.listeners.iter().map(|(_, a)| a.clone()).collect();
        // SAFETY: the supervisor opened these descriptors for us and nothing else uses them.
        unsafe { netloop::workers::become_worker(&setup, &addresses)? };
    }
    let mut event_loop = EventLoop::new()?;
    let mut app = Serve::start(event_loop.context(), &config)?;
    netloop::workers::worker::report_ready();
    netloop::systemd::notify(&format!("READY=1\n{}", netloop::systemd::status_line(0, None)));
    event_loop.run(&mut app)?;
    if let Some(status) = app.exit_status() {
        return Ok(Some(u8::try_from(status).unwrap_or(u8::MAX)));
    }
    log::info!("all connections closed; exiting");
    Ok(None)
}

/// Sockets handed over by systemd: each serves the listener given for its address, or, if
/// none is, the service it is named after (`FileDescriptorName=echo|chat|hub`).
fn add_activated(
    listeners: &mut Vec<(ServiceKind, AddressSpec)>,
    activated: &[netloop::systemd::ActivatedSocket],
) -> std::io::Result<()> {
    for socket in activated {
        let claimed = listeners.iter().any(|(_, a)| a.resolve_one().ok().as_ref() == Some(&socket.address));
        if claimed {
            continue;
        }
        let kind = match socket.name.as_str() {
            "echo" => ServiceKind::Echo,
            "chat" => ServiceKind::Chat,
            "hub" => ServiceKind::Hub,
            #[cfg(feature = "web")]
            "web" => ServiceKind::Web,
            other => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    format!(
                        "socket activation passed {} (name {other:?}), which no --echo/--chat/--hub names: \
                         add FileDescriptorName=echo, chat or hub to its socket unit, or give its address \
                         to the service flag",
                        socket.address
                    ),
                ))
            }
        };
        let address = match &socket.address {
            netloop::SocketAddress::Inet(a) => AddressSpec::Tcp { host: a.ip().to_string(), port: a.port() },
            netloop::SocketAddress::Unix(p) => AddressSpec::Unix(p.clone()),
            netloop::SocketAddress::UnnamedUnix => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    "socket activation passed an unnamed Unix socket",
                ))
            }
        };
        listeners.push((kind, address));
    }
    Ok(())
}

/// `--workers N` with N > 1: this process supervises N workers. Chat and hub keep their
/// members in one process, so they would split into N rooms that cannot see each other,
/// unless `--cluster` makes every worker a node of one cluster.
fn supervise(args: &ServeArgs, listeners: &[(ServiceKind, AddressSpec)]) -> std::io::Result<Option<u8>> {
    #[cfg(feature = "cluster")]
    let clustered = cluster_config(&args.cluster)?.is_some();
    #[cfg(not(feature = "cluster"))]
    let clustered = false;
    let unshared = listeners.iter().find(|(k, _)| *k != ServiceKind::Echo && !clustered);
    if let Some((kind, addr)) = unshared {
        let name = service_name(*kind);
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!(
                "--workers {} applies to echo only: {name} ({addr}) keeps its members in one process, so \
                 workers would split them into rooms that cannot see each other. Run {name} with \
                 --workers 1 (the default), in its own `netloop serve --{name} ...` next to the echo workers, \
                 or give --cluster URL so every worker is a node of one cluster through Redis",
                args.workers
            ),
        ));
    }
    let config = SupervisorConfig {
        workers: args.workers,
        listeners: listeners.iter().map(|(k, a)| (service_name(*k), a.clone())).collect(),
        backlog: args.backlog,
        worker_args: worker_args(std::env::args_os()),
        shutdown_timeout: args.shutdown_timeout,
        stats_interval: (!args.stats_interval.is_zero()).then_some(args.stats_interval),
    };
    netloop::workers::run(config)
}

fn service_name(kind: ServiceKind) -> &'static str {
    match kind {
        ServiceKind::Echo => "echo",
        ServiceKind::Chat => "chat",
        ServiceKind::Hub => "hub",
        #[cfg(feature = "web")]
        ServiceKind::Web => "web",
    }
}

fn connect(args: ConnectArgs) -> std::io::Result<()> {
    netloop::connect::run(&ConnectConfig { target: args.addr, hub_name: args.hub_name })
}

/// Runs a load test; prints the report (table or JSON) on stdout. Exit status: 0 when every
/// check passed, 1 when one failed (the report says which) or the run could not start.
fn load(args: LoadArgs) -> ExitCode {
    let (addr, common, mode) = match args.mode {
        LoadMode::Idle { addr, connections, common } => (addr, common, Mode::Idle { connections }),
        LoadMode::Echo { addr, connections, size, pipeline, rate, rate_per_conn, common } => {
            let rate = total_rate(rate, rate_per_conn, connections);
            (addr, common, Mode::Echo(EchoConfig { connections, size, pipeline, rate }))
        }
        LoadMode::Fanout {
            addr,
            protocol,
            receivers,
            senders,
            rate,
            rate_per_conn,
            size,
            senders_at,
            half_at,
            drain_timeout,
            common,
        } => {
            let protocol = match protocol {
                ProtocolArg::Chat => FanoutProtocol::Chat,
                ProtocolArg::Hub => FanoutProtocol::Hub,
            };
            let rate = total_rate(rate, rate_per_conn, senders);
            let mode =
                Mode::Fanout(FanoutConfig { protocol, receivers, senders, rate, size, senders_at, half_at });
            return run_load(addr, common, mode, drain_timeout);
        }
    };
    run_load(addr, common, mode, Duration::ZERO)
}

/// `-r` is the total; `--rate-per-conn` (tcpkali's meaning) is per sending connection.
fn total_rate(total: u64, per_conn: Option<u64>, connections: usize) -> u64 {
    per_conn.map_or(total, |r| r.saturating_mul(connections as u64))
}

fn run_load(addr: AddressSpec, common: LoadCommon, mode: Mode, drain_timeout: Duration) -> ExitCode {
    if common.workers > 1 && common.worker_part.is_none() {
        let report = match mode {
            Mode::Fanout(_) => Err(netloop::load::split::refuse_fanout(common.workers)),
            _ => netloop::load::split::run(
                &load_part_args(std::env::args_os()),
                common.workers,
                mode.name(),
                &addr.to_string(),
            ),
        };
        return print_report(report, &mode, common.json);
    }
    let config = LoadConfig {
        target: addr,
        duration: common.duration,
        connect_rate: common.connect_rate,
        max_connecting: common.max_connecting,
        connect_timeout: common.connect_timeout,
        drain_timeout,
        sources: (!common.source.is_empty()).then_some(common.source),
        progress: !common.quiet,
        part: common.worker_part,
    };
    let report = netloop::load::run(&config, &mode);
    if let (Some(_), Ok(r)) = (common.worker_part, &report) {
        println!("{}", netloop::load::split::part_json(r));
        return ExitCode::SUCCESS;
    }
    print_report(report, &mode, common.json)
}

/// Prints the report (table or JSON); the exit status says whether every check passed.
fn print_report(report: std::io::Result<netloop::load::Report>, mode: &Mode, json: bool) -> ExitCode {
    let report = match report {
        Ok(r) => r,
        Err(e) => {
            if let Some(signal) = netloop::load::SecondSignal::of(&e) {
                eprintln!("netloop: {e}");
                return ExitCode::from((128 + signal).clamp(0, 255) as u8);
            }
            eprintln!("netloop: load {}: {e}", mode.name());
            return ExitCode::FAILURE;
        }
    };
    let text = if json { format!("{}\n", report.to_json()) } else { report.to_table() };
    let mut out = std::io::stdout().lock();
    let _ = std::io::Write::write_all(&mut out, text.as_bytes());
    let _ = std::io::Write::flush(&mut out);
    if report.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn main() -> ExitCode {
    // Warnings only for the client commands: their stdout/stderr belong to the user.
    let cli = Cli::parse();
    let default_level = if matches!(cli.command, Command::Serve(_)) { "info" } else { "warn" };
    let mut logger =
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(default_level));
    if let Command::Serve(ServeArgs { worker: Some(index), .. }) = &cli.command {
        // Workers share the supervisor's stderr: each line says whose it is.
        let index = *index;
        logger.format(move |buf, record| {
            use std::io::Write;
            let ts = buf.timestamp();
            writeln!(buf, "[{ts} {} worker {index}] {}", record.level(), record.args())
        });
    }
    logger.init();
    let result = match cli.command {
        Command::Serve(args) => serve(args),
        Command::Connect(args) => connect(args).map(|()| None),
        Command::Load(args) => return load(args),
    };
    match result {
        Ok(None) => ExitCode::SUCCESS,
        Ok(Some(status)) => ExitCode::from(status),
        Err(e) => {
            eprintln!("netloop: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn serve_args(args: &[&str]) -> ServeArgs {
        let mut argv = vec!["netloop", "serve"];
        argv.extend_from_slice(args);
        match Cli::try_parse_from(argv).unwrap().command {
            Command::Serve(a) => a,
            other => panic!("not serve: {other:?}"),
        }
    }

    fn os(args: &[&str]) -> Vec<OsString> {
        args.iter().map(OsString::from).collect()
    }

    #[test]
    fn workers_get_the_serve_arguments_without_the_supervisors_own() {
        let argv = os(&[
            "netloop",
            "serve",
            "--echo",
            "127.0.0.1:0",
            "--workers",
            "4",
            "--echo-banner",
            "hi",
            "--stats-interval=1s",
            "--idle-timeout",
            "5s",
            "--echo=unix:/tmp/x",
        ]);
        assert_eq!(worker_args(argv.into_iter()), os(&["--echo-banner", "hi", "--idle-timeout", "5s"]));
    }

    #[test]
    fn load_parts_get_the_load_arguments_without_output_and_split_flags() {
        let argv = os(&[
            "netloop",
            "load",
            "echo",
            "127.0.0.1:1",
            "-c",
            "10",
            "--workers=2",
            "--json",
            "-q",
            "-T",
            "1s",
        ]);
        assert_eq!(load_part_args(argv.into_iter()), os(&["echo", "127.0.0.1:1", "-c", "10", "-T", "1s"]));
        assert_eq!(parse_part("1/3"), Ok((1, 3)));
        assert!(parse_part("3/3").is_err() && parse_part("x").is_err());
        assert!(parse_workers("0").is_err() && parse_workers("auto").is_ok_and(|n| n >= 1));
    }

    #[test]
    fn no_delay_takes_on_and_off() {
        assert!(serve_args(&[]).no_delay, "on by default");
        assert!(!serve_args(&["--no-delay", "off"]).no_delay);
        assert!(serve_args(&["--no-delay", "on"]).no_delay);
        assert!(Cli::try_parse_from(["netloop", "serve", "--no-delay", "maybe"]).is_err());
    }
}
