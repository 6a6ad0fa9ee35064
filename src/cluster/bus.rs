//! A service's bus to the other nodes of its cluster, through Redis: one command connection
//! (publish, name leases) and one subscriber, both loop sockets owned by the service.
//!
//! - Every node publishes on one channel per service (`netloop:SERVICE:bus`), so Redis delivers
//!   each node's messages to every other node in the order that node sent them.
//! - A name is a lease in Redis (`netloop:SERVICE:name:NAME` holds the node id, with a TTL),
//!   taken only if free, refreshed every heartbeat and deleted on release: a node that dies
//!   loses its names when their lease runs out.
//! - Every node publishes a heartbeat; a node silent for `dead_after` is gone for the others,
//!   who drop its members (and tell theirs they are offline).
//! - After a Redis outage, or after this node was stopped longer than `dead_after` (SIGSTOP),
//!   it re-asserts its names, says `Hello` so every node re-announces its members (stale ones
//!   are swept), and reports what the outage lost.
//!
//! Local delivery never waits on Redis: the service delivers to its own members first and
//! publishes for the others; while Redis is unreachable, publishing counts what is lost.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use crate::context::Context;
use crate::handler::SocketId;
use crate::timers::TimerId;

use super::conn::{Conn, ConnEvent, Endpoint, Timing};
use super::envelope::{Body, Envelope, MemberInfo, NodeId};
use super::peers::{BusCounters, Peers, Verdict};
use super::resp::Value;

/// How a cluster node is reached and timed (`--cluster`, `--cluster-heartbeat`).
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// Redis.
    pub endpoint: Endpoint,
    /// How often a node says it is alive and refreshes its name leases.
    pub heartbeat: Duration,
    /// Connect and reply timeouts, back-off.
    pub timing: Timing,
}

impl ClusterConfig {
    /// Defaults for `endpoint`: a 1 s heartbeat.
    pub fn new(endpoint: Endpoint) -> Self {
        ClusterConfig { endpoint, heartbeat: Duration::from_secs(1), timing: Timing::default() }
    }

    /// A node not heard from for this long is gone: three heartbeats.
    pub fn dead_after(&self) -> Duration {
        self.heartbeat * 3
    }

    /// A name's lease: as long as a node is given before it is declared gone, so names free up
    /// together with the members' `offline`.
    pub fn lease(&self) -> Duration {
        self.heartbeat * 3
    }
}

/// Atomically: take the name if free or already ours (then refresh it), else refuse. KEYS are
/// names, ARGV[1] the node id, ARGV[2] the lease in ms; returns one 1/0 per key.
const CLAIM_SCRIPT: &str = "local out = {} \
for i, k in ipairs(KEYS) do \
  local v = redis.call('GET', k) \
  if v == false then redis.call('SET', k, ARGV[1], 'PX', ARGV[2]) out[i] = 1 \
  elseif v == ARGV[1] then redis.call('PEXPIRE', k, ARGV[2]) out[i] = 1 \
  else out[i] = 0 end \
end \
return out";

/// Deletes the names that are still ours.
const RELEASE_SCRIPT: &str = "for i, k in ipairs(KEYS) do \
  if redis.call('GET', k) == ARGV[1] then redis.call('DEL', k) end \
end \
return 0";

/// Names refreshed per script call: one round trip for many leases, none too long.
const NAMES_PER_BATCH: usize = 256;

/// What a reply on the command connection was for.
#[derive(Debug, Clone)]
enum Purpose {
    Publish,
    /// A claim of one name, answered to the service.
    Claim(u64, String),
    /// A batch of lease refreshes (or re-assertions after an outage).
    Refresh(Vec<String>),
    Release,
}

/// The answer to [`RedisBus::claim`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// A node of the cluster holds it.
    Taken,
    /// Redis answers later: [`BusEvent::Claimed`] with this token.
    Pending(u64),
    /// Redis is unreachable: granted for now, asserted when Redis is back (the member may lose
    /// it then, [`BusEvent::NameLost`], if another node took it meanwhile).
    Provisional,
}

/// What the bus tells its service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BusEvent {
    /// Another node's message for this node's members.
    Deliver(Body),
    /// Another node left or was declared gone: these members are offline.
    Left(Vec<MemberInfo>),
    /// Publish every member with [`RedisBus::announce`] (a node asked).
    Announce,
    /// A claim was decided.
    Claimed {
        /// From [`Claim::Pending`].
        token: u64,
        /// Whether the name is the member's.
        granted: bool,
    },
    /// A name a local member held is now another node's (taken while this node was cut off).
    NameLost(String),
}

/// A service's bus to the rest of its cluster through Redis.
#[derive(Debug)]
pub struct RedisBus {
    config: ClusterConfig,
    me: NodeId,
    seq: u64,
    channel: Vec<u8>,
    key_prefix: String,
    commands: Conn<Purpose>,
    subscriber: Conn<()>,
    peers: Peers,
    /// Names this node's members hold, refreshed every heartbeat.
    names: HashMap<String, ()>,
    /// Claims awaiting Redis.
    next_claim: u64,
    events: VecDeque<BusEvent>,
    tick: Option<TimerId>,
    /// Loop time of the last tick and the last heartbeat.
    last_tick: Duration,
    last_beat: Duration,
    /// Both connections up since the last outage; a rejoin is owed when they are.
    up: (bool, bool),
    rejoin_owed: bool,
    /// Counters at the start of the current outage, to report what it lost.
    outage: Option<(Duration, BusCounters)>,
    members: u64,
    out: Vec<u8>,
    /// Set once `leave` ran: nothing more is published.
    left: bool,
}

impl RedisBus {
    /// A bus for `service` (`hub`, `chat`): its channel and keys are that service's.
    pub fn new(service: &str, config: ClusterConfig) -> Self {
        let me = NodeId(super::conn::seed() ^ u64::from(std::process::id()).rotate_left(17));
        let channel = format!("netloop:{service}:bus").into_bytes();
        let timing = config.timing;
        RedisBus {
            commands: Conn::commands("commands", config.endpoint.clone(), timing),
            subscriber: Conn::subscriber(
                "subscriber",
                config.endpoint.clone(),
                timing,
                vec![channel.clone()],
            ),
            config,
            me,
            seq: 0,
            channel,
            key_prefix: format!("netloop:{service}:name:"),
            peers: Peers::new(me),
            names: HashMap::new(),
            next_claim: 0,
            events: VecDeque::new(),
            tick: None,
            last_tick: Duration::ZERO,
            last_beat: Duration::ZERO,
            up: (false, false),
            rejoin_owed: true,
            outage: None,
            members: 0,
            out: Vec::new(),
            left: false,
        }
    }

    /// This node's id.
    pub fn node(&self) -> NodeId {
        self.me
    }

    /// Starts connecting, and the timer that drives heartbeats, timeouts and retries.
    pub fn start(&mut self, cx: &mut Context) {
        let every = (self.config.heartbeat / 4).max(Duration::from_millis(10));
        let timer = cx.set_interval(every);
        // The bus alone must not keep a shutting-down server alive.
        cx.set_timer_ref(timer, false);
        self.tick = Some(timer);
        self.last_tick = cx.elapsed();
        self.commands.tick(cx);
        self.subscriber.tick(cx);
    }

    /// Whether `socket` is one of the bus's connections.
    pub fn owns(&self, socket: SocketId) -> bool {
        self.commands.owns(socket) || self.subscriber.owns(socket)
    }

    /// A connection of the bus connected.
    pub fn on_connect(&mut self, cx: &mut Context, socket: SocketId) {
        if self.commands.owns(socket) {
            self.commands.on_connect(cx);
        } else if self.subscriber.owns(socket) {
            self.subscriber.on_connect(cx);
        }
        self.pump(cx);
    }

    /// Bytes on a connection of the bus.
    pub fn on_data(&mut self, cx: &mut Context, socket: SocketId, data: &[u8]) {
        if self.commands.owns(socket) {
            self.commands.on_data(cx, data);
        } else if self.subscriber.owns(socket) {
            self.subscriber.on_data(cx, data);
        }
        self.pump(cx);
    }

    /// A connection of the bus closed.
    pub fn on_close(&mut self, cx: &mut Context, socket: SocketId) {
        if self.commands.owns(socket) {
            self.commands.on_close(cx);
        } else if self.subscriber.owns(socket) {
            self.subscriber.on_close(cx);
        }
        self.pump(cx);
    }

    /// Whether `timer` was the bus's; if so, heartbeats, expiries, timeouts and retries ran.
    pub fn on_timer(&mut self, cx: &mut Context, timer: TimerId) -> bool {
        if self.tick != Some(timer) {
            return false;
        }
        let now = cx.elapsed();
        let away = now.saturating_sub(self.last_tick);
        self.last_tick = now;
        if away > self.config.dead_after() && !self.left {
            // Stopped (SIGSTOP, a swapped-out machine) past the time the others wait: they
            // have dropped our members and may hold our names. Start over from fresh state.
            log::warn!(
                "cluster: this node was stalled for {} ms (over the {} ms the others wait); re-joining",
                away.as_millis(),
                self.config.dead_after().as_millis()
            );
            for (_, members) in self.peers.forget_all() {
                if !members.is_empty() {
                    self.events.push_back(BusEvent::Left(members));
                }
            }
            self.rejoin_owed = true;
        }
        self.commands.tick(cx);
        self.subscriber.tick(cx);
        if now.saturating_sub(self.last_beat) >= self.config.heartbeat {
            self.last_beat = now;
            self.heartbeat(cx);
        }
        // Silence means a node is gone only while we can hear: not while our own subscriber
        // is down (Redis restarting), when every node is silent.
        if self.up.1 {
            for (_, members) in self.peers.expire(now, self.config.dead_after()) {
                if !members.is_empty() {
                    self.events.push_back(BusEvent::Left(members));
                }
            }
        }
        self.pump(cx);
        true
    }

    fn heartbeat(&mut self, cx: &mut Context) {
        if self.left {
            return;
        }
        self.publish(cx, Body::Heartbeat { members: self.members });
        let names: Vec<String> = self.names.keys().cloned().collect();
        self.assert_names(cx, names);
        self.subscriber.ping(cx);
    }

    /// Claims (or refreshes) `names` in batches.
    fn assert_names(&mut self, cx: &mut Context, names: Vec<String>) {
        if !self.commands.is_ready() {
            return;
        }
        let lease = self.config.lease().as_millis().to_string();
        let me = self.me.to_string();
        for batch in names.chunks(NAMES_PER_BATCH) {
            let keys: Vec<String> = batch.iter().map(|n| format!("{}{n}", self.key_prefix)).collect();
            let count = keys.len().to_string();
            let mut args: Vec<&[u8]> = vec![b"EVAL", CLAIM_SCRIPT.as_bytes(), count.as_bytes()];
            args.extend(keys.iter().map(|k| k.as_bytes()));
            args.push(me.as_bytes());
            args.push(lease.as_bytes());
            self.commands.send(cx, Purpose::Refresh(batch.to_vec()), &args);
        }
    }

    /// Publishes `body` to the other nodes. While Redis is unreachable it is counted as lost
    /// (its sequence number is spent, so the others see the gap).
    pub fn publish(&mut self, cx: &mut Context, body: Body) {
        if self.left {
            return;
        }
        self.seq += 1;
        let envelope = Envelope { origin: self.me, seq: self.seq, body };
        self.out.clear();
        envelope.encode(&mut self.out);
        let payload = std::mem::take(&mut self.out);
        let sent = self.commands.send(cx, Purpose::Publish, &[b"PUBLISH", &self.channel, &payload]);
        self.out = payload;
        if sent {
            self.peers.counters.published += 1;
        } else {
            self.peers.counters.unsent += 1;
        }
    }

    /// Publishes one member (arrived, renamed, joined or left a room), with the notice this
    /// node's members got about it.
    pub fn member(&mut self, cx: &mut Context, info: MemberInfo, notice: Option<Vec<u8>>) {
        self.publish(cx, Body::Member { info, notice });
    }

    /// Publishes that a member left, with the notice this node's members got.
    pub fn gone(&mut self, cx: &mut Context, session: String, notice: Option<Vec<u8>>) {
        self.publish(cx, Body::Gone { session, notice });
    }

    /// Answers [`BusEvent::Announce`]: `members` are all this node's members.
    pub fn announce(&mut self, cx: &mut Context, members: impl IntoIterator<Item = MemberInfo>) {
        self.publish(cx, Body::Announcing);
        for info in members {
            self.publish(cx, Body::Member { info, notice: None });
        }
        self.publish(cx, Body::Announced);
    }

    /// This node's member count, sent with heartbeats.
    pub fn set_members(&mut self, members: u64) {
        self.members = members;
    }

    /// Asks for `name` cluster-wide.
    pub fn claim(&mut self, cx: &mut Context, name: &str) -> Claim {
        if self.peers.holder(name).is_some() {
            return Claim::Taken;
        }
        if !self.commands.is_ready() {
            self.names.insert(name.to_string(), ());
            return Claim::Provisional;
        }
        self.next_claim += 1;
        let token = self.next_claim;
        let key = format!("{}{name}", self.key_prefix);
        let me = self.me.to_string();
        let lease = self.config.lease().as_millis().to_string();
        let args: [&[u8]; 6] =
            [b"EVAL", CLAIM_SCRIPT.as_bytes(), b"1", key.as_bytes(), me.as_bytes(), lease.as_bytes()];
        if self.commands.send(cx, Purpose::Claim(token, name.to_string()), &args) {
            Claim::Pending(token)
        } else {
            self.names.insert(name.to_string(), ());
            Claim::Provisional
        }
    }

    /// A local member gave up `name`.
    pub fn release(&mut self, cx: &mut Context, name: &str) {
        if self.names.remove(name).is_none() {
            return;
        }
        let key = format!("{}{name}", self.key_prefix);
        let me = self.me.to_string();
        let args: [&[u8]; 5] = [b"EVAL", RELEASE_SCRIPT.as_bytes(), b"1", key.as_bytes(), me.as_bytes()];
        self.commands.send(cx, Purpose::Release, &args);
    }

    /// Leaving the cluster (shutdown): says `Bye` and releases every name.
    pub fn leave(&mut self, cx: &mut Context) {
        if self.left {
            return;
        }
        self.publish(cx, Body::Bye);
        let names: Vec<String> = self.names.keys().cloned().collect();
        for name in names {
            self.release(cx, &name);
        }
        self.left = true;
    }

    /// Where `name` is held on another node: `(node, session)`.
    pub fn remote_holder(&self, name: &str) -> Option<(NodeId, &str)> {
        self.peers.holder(name)
    }

    /// The other nodes' members, node by node.
    pub fn remote_members(&self) -> Vec<(NodeId, &MemberInfo)> {
        self.peers.members()
    }

    /// How many members the other nodes have.
    pub fn remote_member_count(&self) -> usize {
        self.peers.member_count()
    }

    /// The counters.
    pub fn counters(&self) -> BusCounters {
        self.peers.counters
    }

    /// The next event for the service.
    pub fn poll_event(&mut self) -> Option<BusEvent> {
        self.events.pop_front()
    }

    /// Handles what the connections reported.
    fn pump(&mut self, cx: &mut Context) {
        while let Some(ev) = self.subscriber.poll_event() {
            match ev {
                ConnEvent::Up => self.connection_up(cx, false),
                ConnEvent::Down(_) => self.connection_down(cx, false),
                ConnEvent::Message { payload, .. } => self.on_message(cx, &payload),
                ConnEvent::Reply(..) => {}
            }
        }
        while let Some(ev) = self.commands.poll_event() {
            match ev {
                ConnEvent::Up => self.connection_up(cx, true),
                ConnEvent::Down(_) => self.connection_down(cx, true),
                ConnEvent::Reply(purpose, value) => self.on_reply(purpose, value),
                ConnEvent::Message { .. } => {}
            }
        }
        if self.rejoin_owed && self.up == (true, true) {
            self.rejoin(cx);
        }
    }

    fn connection_up(&mut self, cx: &mut Context, commands: bool) {
        if commands {
            self.up.0 = true;
        } else {
            self.up.1 = true;
            // The others get a full dead-after time from now to be heard again.
            self.peers.heard_all(cx.elapsed());
        }
    }

    fn connection_down(&mut self, cx: &mut Context, commands: bool) {
        if commands {
            self.up.0 = false;
        } else {
            self.up.1 = false;
        }
        if self.outage.is_none() {
            self.outage = Some((cx.elapsed(), self.peers.counters));
        }
        // We may have missed members arriving and leaving: ask everyone again once back.
        self.rejoin_owed = true;
    }

    /// Both connections are (back) up: re-assert names, ask everyone for their members, and
    /// report the outage.
    fn rejoin(&mut self, cx: &mut Context) {
        self.rejoin_owed = false;
        if let Some((since, before)) = self.outage.take() {
            self.peers.counters.reconnects += 1;
            let now = self.peers.counters;
            log::warn!(
                "cluster: Redis back after {} ms: {} message(s) of this node were not sent meanwhile",
                cx.elapsed().saturating_sub(since).as_millis(),
                now.unsent - before.unsent
            );
        }
        let names: Vec<String> = self.names.keys().cloned().collect();
        self.assert_names(cx, names);
        self.publish(cx, Body::Hello);
        // Our own members, for the nodes that dropped us or never knew us.
        self.events.push_back(BusEvent::Announce);
    }

    fn on_message(&mut self, cx: &mut Context, payload: &[u8]) {
        let Some(envelope) = Envelope::decode(payload) else {
            self.peers.counters.malformed += 1;
            return;
        };
        match self.peers.receive(cx.elapsed(), envelope) {
            Verdict::Nothing => {}
            Verdict::Deliver(body) => self.events.push_back(BusEvent::Deliver(body)),
            Verdict::Announce => self.events.push_back(BusEvent::Announce),
            Verdict::Want(node) => self.publish(cx, Body::Want(node)),
            Verdict::Left(members) => {
                if !members.is_empty() {
                    self.events.push_back(BusEvent::Left(members));
                }
            }
        }
    }

    fn on_reply(&mut self, purpose: Purpose, value: Value) {
        match purpose {
            Purpose::Publish | Purpose::Release => {
                if let Value::Error(e) = value {
                    log::warn!("cluster: Redis refused a command: {e}");
                }
            }
            Purpose::Claim(token, name) => {
                let granted = granted(&value, 0);
                if granted {
                    self.names.insert(name, ());
                }
                self.events.push_back(BusEvent::Claimed { token, granted });
            }
            Purpose::Refresh(names) => {
                for (i, name) in names.into_iter().enumerate() {
                    if !granted(&value, i) && self.names.remove(&name).is_some() {
                        log::warn!(
                            "cluster: name {name:?} was taken by another node while this one was cut off"
                        );
                        self.events.push_back(BusEvent::NameLost(name));
                    }
                }
            }
        }
    }
}

/// Whether the claim script granted its `i`-th key. An error counts as granted: the name stays
/// provisional rather than being taken from a member on Redis's hiccup.
fn granted(value: &Value, i: usize) -> bool {
    match value {
        Value::Array(Some(items)) => !matches!(items.get(i), Some(Value::Int(0))),
        Value::Error(e) => {
            log::warn!("cluster: Redis refused a name lease: {e}");
            true
        }
        _ => true,
    }
}
