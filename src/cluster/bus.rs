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

use crate::bus::{Audience, Bus, BusEvent, Claim, Holder, MemberView, Published};
use crate::context::Context;
use crate::handler::SocketId;
use crate::member_id::MemberId;
use crate::timers::TimerId;

use super::conn::{Conn, ConnEvent, Endpoint, Timing};
use super::envelope::{self, Body, Envelope, MemberInfo, NodeId};
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
    /// A claim of one name for a member, answered to the service.
    Claim(MemberId, String),
    /// A batch of lease refreshes (or re-assertions after an outage).
    Refresh(Vec<String>),
    Release,
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
    /// Names this node's members hold (or have asked Redis for), refreshed every heartbeat.
    names: HashMap<String, MemberId>,
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
    /// Session ids of this node's members (for the heartbeat's count).
    members_here: std::collections::HashSet<String>,
    /// Claims sent to Redis, awaiting its answer.
    claims: std::collections::HashSet<(MemberId, String)>,
    /// An announcement is open: `Announcing` was sent, `Announced` follows.
    announcing: bool,
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
            commands: Conn::commands(format!("{service} commands"), config.endpoint.clone(), timing),
            subscriber: Conn::subscriber(
                format!("{service} subscriber"),
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
            events: VecDeque::new(),
            tick: None,
            last_tick: Duration::ZERO,
            last_beat: Duration::ZERO,
            up: (false, false),
            rejoin_owed: true,
            outage: None,
            members_here: std::collections::HashSet::new(),
            claims: std::collections::HashSet::new(),
            announcing: false,
            out: Vec::new(),
            left: false,
        }
    }

    /// This node's id.
    pub fn node(&self) -> NodeId {
        self.me
    }

    /// The counters.
    pub fn counters(&self) -> BusCounters {
        self.peers.counters
    }

    fn heartbeat(&mut self, cx: &mut Context) {
        if self.left {
            return;
        }
        self.send_body(cx, Body::Heartbeat { members: self.members_here.len() as u64 });
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
    fn send_body(&mut self, cx: &mut Context, body: Body) {
        self.send_with(cx, |out, origin, seq| Envelope { origin, seq, body }.encode(out));
    }

    /// Publishes the message `encode` writes (given this node's id and the next sequence
    /// number) into the bus's reused buffer.
    fn send_with(&mut self, cx: &mut Context, encode: impl FnOnce(&mut Vec<u8>, NodeId, u64)) {
        if self.left {
            return;
        }
        self.seq += 1;
        self.out.clear();
        encode(&mut self.out, self.me, self.seq);
        let sent = self.commands.send(cx, Purpose::Publish, &[b"PUBLISH", &self.channel, &self.out]);
        if sent {
            self.peers.counters.published += 1;
        } else {
            self.peers.counters.unsent += 1;
        }
    }

    fn delete_name(&mut self, cx: &mut Context, name: &str) {
        let key = format!("{}{name}", self.key_prefix);
        let me = self.me.to_string();
        let args: [&[u8]; 5] = [b"EVAL", RELEASE_SCRIPT.as_bytes(), b"1", key.as_bytes(), me.as_bytes()];
        self.commands.send(cx, Purpose::Release, &args);
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
        if self.rejoin_owed && self.up == (true, true) && !self.left {
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
            // Claims awaiting an answer will get none: granted for now, asserted once back.
            let pending = std::mem::take(&mut self.claims);
            for (member, name) in pending {
                self.events.push_back(BusEvent::Granted(member, name));
            }
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
            // What was written to a connection as it died is lost too, uncounted here: the
            // other nodes count it as a gap in this node's sequence numbers.
            log::warn!(
                "cluster: Redis back after {} ms; {} message(s) of this node could not be published meanwhile \
                 (the other nodes log what they missed)",
                cx.elapsed().saturating_sub(since).as_millis(),
                now.unsent - before.unsent
            );
        }
        let names: Vec<String> = self.names.keys().cloned().collect();
        self.assert_names(cx, names);
        self.send_body(cx, Body::Hello);
        // Our own members, for the nodes that dropped us or never knew us.
        self.announce_owed(cx);
    }

    /// Starts an announcement: the service answers [`BusEvent::Announce`] with every member,
    /// and the bus closes it at the next event routed to it.
    fn announce_owed(&mut self, cx: &mut Context) {
        if !self.announcing {
            self.announcing = true;
            self.send_body(cx, Body::Announcing);
            self.events.push_back(BusEvent::Announce);
        }
    }

    fn on_message(&mut self, cx: &mut Context, payload: &[u8]) {
        let Some(envelope) = Envelope::decode(payload) else {
            self.peers.counters.malformed += 1;
            return;
        };
        match self.peers.receive(cx.elapsed(), envelope) {
            Verdict::Nothing => {}
            Verdict::Deliver(Body::Broadcast { room, kind, line }) => {
                self.events.push_back(BusEvent::Deliver { room, to: None, kind, line })
            }
            Verdict::Deliver(Body::Direct { to, kind, line }) => {
                if self.names.contains_key(&to) {
                    self.events.push_back(BusEvent::Deliver { room: None, to: Some(to), kind, line });
                }
            }
            Verdict::Deliver(_) => {}
            Verdict::Announce => self.announce_owed(cx),
            Verdict::Want(node) => self.send_body(cx, Body::Want(node)),
            Verdict::Left(members) => self.vanished(members),
            Verdict::Returned(info) => {
                if let Some(name) = info.name {
                    self.events.push_back(BusEvent::Returned(name, info.session));
                }
            }
        }
    }

    fn vanished(&mut self, members: Vec<MemberInfo>) {
        if !members.is_empty() {
            self.events
                .push_back(BusEvent::Vanished(members.into_iter().map(|m| (m.name, m.session)).collect()));
        }
    }

    fn on_reply(&mut self, purpose: Purpose, value: Value) {
        match purpose {
            Purpose::Publish | Purpose::Release => {
                if let Value::Error(e) = value {
                    log::warn!("cluster: Redis refused a command: {e}");
                }
            }
            Purpose::Claim(member, name) => {
                if !self.claims.remove(&(member, name.clone())) {
                    return; // already answered (the connection dropped meanwhile)
                }
                if granted(&value, 0) {
                    self.events.push_back(BusEvent::Granted(member, name));
                } else {
                    if self.names.get(&name) == Some(&member) {
                        self.names.remove(&name);
                    }
                    self.events.push_back(BusEvent::Refused(member, name));
                }
            }
            Purpose::Refresh(names) => {
                for (i, name) in names.into_iter().enumerate() {
                    if granted(&value, i) {
                        continue;
                    }
                    if let Some(member) = self.names.remove(&name) {
                        log::warn!(
                            "cluster: name {name:?} was taken by another node while this one was cut off"
                        );
                        self.events.push_back(BusEvent::NameLost(member, name));
                    }
                }
            }
        }
    }
}

impl Bus for RedisBus {
    fn claim(&mut self, cx: &mut Context, member: MemberId, name: &str) -> Claim {
        match self.names.get(name) {
            Some(&holder) if holder == member => return Claim::Granted,
            Some(_) => return Claim::Taken,
            None => {}
        }
        if self.peers.holder(name).is_some() {
            return Claim::Taken;
        }
        // Held for the member from now on, so a second local claim is refused at once.
        self.names.insert(name.to_string(), member);
        let key = format!("{}{name}", self.key_prefix);
        let me = self.me.to_string();
        let lease = self.config.lease().as_millis().to_string();
        let args: [&[u8]; 6] =
            [b"EVAL", CLAIM_SCRIPT.as_bytes(), b"1", key.as_bytes(), me.as_bytes(), lease.as_bytes()];
        if self.commands.send(cx, Purpose::Claim(member, name.to_string()), &args) {
            self.claims.insert((member, name.to_string()));
            Claim::Pending
        } else {
            // Redis unreachable: granted for now, asserted when it is back (the member may
            // lose it then, if another node took it meanwhile).
            Claim::Granted
        }
    }

    fn release(&mut self, cx: &mut Context, member: MemberId, name: &str) {
        if self.names.get(name) != Some(&member) {
            return;
        }
        self.names.remove(name);
        self.delete_name(cx, name);
    }

    fn holder(&self, name: &str) -> Option<Holder> {
        if let Some(&member) = self.names.get(name) {
            return Some(Holder::Local(member));
        }
        self.peers.holder(name).map(|_| Holder::Remote)
    }

    fn publish(&mut self, cx: &mut Context, message: &Published<'_>) {
        // Encoded from the borrowed parts: no owned copy of the line per message.
        let Published { audience, kind, line, .. } = *message;
        self.send_with(cx, |out, origin, seq| match audience {
            Audience::Everyone => envelope::encode_broadcast(out, origin, seq, None, kind, line),
            Audience::Room(room) => envelope::encode_broadcast(out, origin, seq, Some(room), kind, line),
            Audience::Name(to) => envelope::encode_direct(out, origin, seq, to, kind, line),
        });
    }

    fn members_elsewhere(&self) -> usize {
        self.peers.member_count()
    }

    fn counters(&self) -> Option<String> {
        let c = self.peers.counters;
        Some(format!(
            "node={} nodes={} members_elsewhere={} redis={} published={} unsent={} received={} duplicates={} \
             missed={} malformed={} nodes_timed_out={} reconnects={}",
            self.me,
            self.peers.node_count(),
            self.peers.member_count(),
            if self.up == (true, true) { "up" } else { "down" },
            c.published,
            c.unsent,
            c.received,
            c.duplicates,
            c.missed,
            c.malformed,
            c.nodes_timed_out,
            c.reconnects
        ))
    }

    fn start(&mut self, cx: &mut Context) {
        let every = (self.config.heartbeat / 4).max(Duration::from_millis(10));
        let timer = cx.set_interval(every);
        // The bus alone must not keep a shutting-down server alive.
        cx.set_timer_ref(timer, false);
        self.tick = Some(timer);
        self.last_tick = cx.elapsed();
        self.commands.tick(cx);
        self.subscriber.tick(cx);
    }

    fn owns(&self, socket: SocketId) -> bool {
        self.commands.owns(socket) || self.subscriber.owns(socket)
    }

    fn on_connect(&mut self, cx: &mut Context, socket: SocketId) {
        self.finish_announcing(cx);
        if self.commands.owns(socket) {
            self.commands.on_connect(cx);
        } else if self.subscriber.owns(socket) {
            self.subscriber.on_connect(cx);
        }
        self.pump(cx);
    }

    fn on_data(&mut self, cx: &mut Context, socket: SocketId, data: &[u8]) {
        self.finish_announcing(cx);
        if self.commands.owns(socket) {
            self.commands.on_data(cx, data);
        } else if self.subscriber.owns(socket) {
            self.subscriber.on_data(cx, data);
        }
        self.pump(cx);
    }

    fn on_close(&mut self, cx: &mut Context, socket: SocketId) {
        self.finish_announcing(cx);
        if self.commands.owns(socket) {
            self.commands.on_close(cx);
        } else if self.subscriber.owns(socket) {
            self.subscriber.on_close(cx);
        }
        self.pump(cx);
    }

    fn on_timer(&mut self, cx: &mut Context, timer: TimerId) -> bool {
        if self.tick != Some(timer) {
            return false;
        }
        if self.left {
            return true;
        }
        self.finish_announcing(cx);
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
                self.vanished(members);
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
                self.vanished(members);
            }
        }
        self.pump(cx);
        true
    }

    fn poll_event(&mut self) -> Option<BusEvent> {
        self.events.pop_front()
    }

    fn member_changed(&mut self, cx: &mut Context, view: &MemberView<'_>) {
        if !self.members_here.contains(view.session) {
            self.members_here.insert(view.session.to_string());
        }
        self.send_with(cx, |out, origin, seq| {
            envelope::encode_member(out, origin, seq, view.session, view.name, &view.rooms, None)
        });
    }

    fn member_gone(&mut self, cx: &mut Context, session: &str) {
        self.members_here.remove(session);
        self.send_with(cx, |out, origin, seq| envelope::encode_gone(out, origin, seq, session, None));
    }

    fn members_elsewhere_from(&self, from: usize, each: &mut dyn FnMut(&MemberView<'_>) -> bool) {
        for (_, m) in self.peers.members().into_iter().skip(from) {
            let view = MemberView {
                session: &m.session,
                name: m.name.as_deref(),
                rooms: m.rooms.iter().map(String::as_str).collect(),
            };
            if !each(&view) {
                break;
            }
        }
    }

    fn leave(&mut self, cx: &mut Context) {
        if self.left {
            return;
        }
        self.send_body(cx, Body::Bye);
        let names: Vec<String> = self.names.keys().cloned().collect();
        for name in names {
            self.delete_name(cx, &name);
        }
        self.names.clear();
        self.left = true;
        self.commands.close(cx);
        self.subscriber.close(cx);
    }
}

impl RedisBus {
    /// Ends an announcement the service answered (its `member_changed` calls came in between).
    fn finish_announcing(&mut self, cx: &mut Context) {
        if self.announcing {
            self.announcing = false;
            self.send_body(cx, Body::Announced);
        }
    }
}

/// Whether the claim script granted its `i`-th key. An error counts as granted: the name stays
/// the member's rather than being taken from it on Redis's hiccup.
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
