//! What a node knows of the other nodes: each one's members (the replicated directory that
//! answers `list`, counts and "is this name held anywhere?" without asking anyone), the last
//! sequence number heard from it, and when it was last heard. A node silent for longer than
//! the dead-after time is gone: its members are dropped, and the caller announces them offline.
//!
//! Sans-IO: it judges messages and time, the bus acts on the verdicts.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use super::envelope::{Body, Envelope, MemberInfo, NodeId, Order, SeqTracker};

/// Most members one node may claim in the directory: a bound on what a misbehaving node can
/// make the others hold. Past it, its extra members are not listed (and counted).
pub const MAX_MEMBERS_PER_NODE: usize = 1_000_000;

/// Most other nodes a node keeps track of: a bound on what a flood of made-up node ids can
/// cost. Messages from further nodes are dropped (and counted as malformed).
pub const MAX_NODES: usize = 1024;

/// Most members remembered as vanished (to announce them online when they come back).
pub const MAX_VANISHED: usize = 100_000;

/// One other node.
#[derive(Debug, Default)]
struct Peer {
    seq: SeqTracker,
    last_heard: Duration,
    /// Its members by session id.
    members: HashMap<String, Known>,
    /// Counts member arrivals and refreshes (each member's marks below).
    order: u64,
    /// `order` when its current announcement began.
    announcing: Option<u64>,
}

/// One member of another node, with where it stands in its node's count of arrivals and
/// refreshes.
#[derive(Debug)]
struct Known {
    info: MemberInfo,
    /// When it arrived: orders `list`.
    joined: u64,
    /// When it was last announced: finds the members an announcement did not repeat.
    touched: u64,
}

/// Counters the bus reports (stats, logs).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct BusCounters {
    /// Messages published.
    pub published: u64,
    /// Messages not published because Redis was unreachable (lost to the other nodes).
    pub unsent: u64,
    /// Messages received from other nodes and acted on.
    pub received: u64,
    /// Messages dropped as already seen.
    pub duplicates: u64,
    /// Messages other nodes sent that never arrived here (gaps in their sequence numbers).
    pub missed: u64,
    /// Messages that were not well-formed.
    pub malformed: u64,
    /// Nodes declared gone after the dead-after time without a word.
    pub nodes_timed_out: u64,
    /// Redis (re)connections after the first.
    pub reconnects: u64,
}

/// What the bus must do about one received message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing (own message, duplicate, bookkeeping only).
    Nothing,
    /// Deliver to this node's members.
    Deliver(Body),
    /// Publish this node's members (a node asked for them).
    Announce,
    /// Ask the origin for its members (it was unknown here).
    Want(NodeId),
    /// The origin left; these were its members.
    Left(Vec<MemberInfo>),
    /// A named member of the origin is known again (re-announced after an absence).
    Returned(MemberInfo),
}

/// The other nodes, as this node knows them.
#[derive(Debug)]
pub struct Peers {
    me: NodeId,
    nodes: HashMap<NodeId, Peer>,
    /// Registered names of remote members: name -> (node, session).
    names: HashMap<String, (NodeId, String)>,
    /// Members dropped because their node (or this one) went silent, until they come back.
    vanished: HashSet<(NodeId, String)>,
    /// Counters.
    pub counters: BusCounters,
}

impl Peers {
    /// No other node known yet.
    pub fn new(me: NodeId) -> Self {
        Peers {
            me,
            nodes: HashMap::new(),
            names: HashMap::new(),
            vanished: HashSet::new(),
            counters: BusCounters::default(),
        }
    }

    /// Judges one message heard at loop time `now`.
    pub fn receive(&mut self, now: Duration, envelope: Envelope) -> Verdict {
        let Envelope { origin, seq, body } = envelope;
        if origin == self.me {
            return Verdict::Nothing;
        }
        let known = self.nodes.contains_key(&origin);
        if !known && self.nodes.len() >= MAX_NODES {
            self.counters.malformed += 1;
            return Verdict::Nothing;
        }
        let peer = self.nodes.entry(origin).or_default();
        match peer.seq.observe(seq) {
            Order::Duplicate => {
                self.counters.duplicates += 1;
                return Verdict::Nothing;
            }
            Order::AfterGap(missed) if known => {
                self.counters.missed += missed;
                log::warn!(
                    "cluster: missed {missed} message(s) from node {origin} (lost in a Redis outage?)"
                );
            }
            _ => {}
        }
        peer.last_heard = now;
        self.counters.received += 1;
        let asked_for_us = matches!(body, Body::Want(n) if n == self.me);
        match body {
            Body::Hello => Verdict::Announce,
            Body::Want(_) if asked_for_us => Verdict::Announce,
            Body::Want(_) => Verdict::Nothing,
            Body::Bye => Verdict::Left(self.forget(origin)),
            Body::Heartbeat { .. } if !known => Verdict::Want(origin),
            Body::Heartbeat { .. } => Verdict::Nothing,
            Body::Member { info, notice } => {
                // A member dropped when its node (or this one) was away is back: the members
                // here, told it went offline, hear it is online again.
                let returning = self.vanished.remove(&(origin, info.session.clone()));
                self.upsert(origin, info.clone());
                if returning && info.name.is_some() {
                    Verdict::Returned(info)
                } else if known || notice.is_some() {
                    Verdict::Deliver(Body::Member { info, notice })
                } else {
                    Verdict::Want(origin)
                }
            }
            Body::Gone { session, notice } => {
                self.remove_member(origin, &session);
                Verdict::Deliver(Body::Gone { session, notice })
            }
            Body::Announcing => {
                peer.announcing = Some(peer.order);
                Verdict::Nothing
            }
            Body::Announced => {
                let Some(mark) = peer.announcing.take() else { return Verdict::Nothing };
                let stale: Vec<String> =
                    peer.members.iter().filter(|(_, k)| k.touched <= mark).map(|(s, _)| s.clone()).collect();
                let gone: Vec<MemberInfo> =
                    stale.iter().filter_map(|s| self.remove_member(origin, s)).collect();
                if gone.is_empty() {
                    Verdict::Nothing
                } else {
                    Verdict::Left(gone)
                }
            }
            // From a node not known yet, too: its next heartbeat asks for its members.
            body @ (Body::Broadcast { .. } | Body::Direct { .. }) => Verdict::Deliver(body),
        }
    }

    fn upsert(&mut self, node: NodeId, info: MemberInfo) {
        let Some(peer) = self.nodes.get_mut(&node) else { return };
        if !peer.members.contains_key(&info.session) && peer.members.len() >= MAX_MEMBERS_PER_NODE {
            return;
        }
        peer.order += 1;
        let order = peer.order;
        if let Some(name) = &info.name {
            self.names.insert(name.clone(), (node, info.session.clone()));
        }
        match peer.members.get_mut(&info.session) {
            Some(known) => {
                if let Some(old_name) = &known.info.name {
                    if info.name.as_ref() != Some(old_name)
                        && self.names.get(old_name).is_some_and(|(n, _)| *n == node)
                    {
                        self.names.remove(old_name);
                    }
                }
                known.touched = order;
                known.info = info;
            }
            None => {
                peer.members.insert(info.session.clone(), Known { info, joined: order, touched: order });
            }
        }
    }

    fn remove_member(&mut self, node: NodeId, session: &str) -> Option<MemberInfo> {
        let peer = self.nodes.get_mut(&node)?;
        let gone = peer.members.remove(session)?.info;
        if let Some(name) = &gone.name {
            if self.names.get(name).is_some_and(|(n, s)| *n == node && s == session) {
                self.names.remove(name);
            }
        }
        Some(gone)
    }

    /// Drops a node and returns its members.
    fn forget(&mut self, node: NodeId) -> Vec<MemberInfo> {
        let Some(peer) = self.nodes.remove(&node) else { return Vec::new() };
        let mut members: Vec<Known> = peer.members.into_values().collect();
        members.sort_by_key(|k| k.joined);
        let members: Vec<MemberInfo> = members.into_iter().map(|k| k.info).collect();
        for m in &members {
            if let Some(name) = &m.name {
                if self.names.get(name).is_some_and(|(n, _)| *n == node) {
                    self.names.remove(name);
                }
            }
        }
        members
    }

    /// Nodes not heard from for longer than `dead_after`: dropped, with their members.
    pub fn expire(&mut self, now: Duration, dead_after: Duration) -> Vec<(NodeId, Vec<MemberInfo>)> {
        let dead: Vec<NodeId> = self
            .nodes
            .iter()
            .filter(|(_, p)| now.saturating_sub(p.last_heard) > dead_after)
            .map(|(id, _)| *id)
            .collect();
        let mut out = Vec::new();
        for node in dead {
            self.counters.nodes_timed_out += 1;
            let members = self.forget(node);
            self.remember_vanished(node, &members);
            log::warn!(
                "cluster: node {node} silent for over {} ms: treating it as gone ({} member(s) offline)",
                dead_after.as_millis(),
                members.len()
            );
            out.push((node, members));
        }
        out
    }

    /// Counts every node as heard at `now` (this node could not hear anyone until now).
    pub fn heard_all(&mut self, now: Duration) {
        for peer in self.nodes.values_mut() {
            peer.last_heard = now;
        }
    }

    /// Forgets every node (this node was away and its view is stale), returning each node's
    /// members, so the caller can announce them offline before the fresh state arrives.
    pub fn forget_all(&mut self) -> Vec<(NodeId, Vec<MemberInfo>)> {
        let nodes: Vec<NodeId> = self.nodes.keys().copied().collect();
        let mut out = Vec::with_capacity(nodes.len());
        for node in nodes {
            let members = self.forget(node);
            self.remember_vanished(node, &members);
            out.push((node, members));
        }
        out
    }

    fn remember_vanished(&mut self, node: NodeId, members: &[MemberInfo]) {
        // Bounded: past the bound the oldest memories go (those members come back unannounced).
        if self.vanished.len() + members.len() > MAX_VANISHED {
            self.vanished.clear();
        }
        for m in members.iter().take(MAX_VANISHED) {
            self.vanished.insert((node, m.session.clone()));
        }
    }

    /// Where a name is registered on another node.
    pub fn holder(&self, name: &str) -> Option<(NodeId, &str)> {
        self.names.get(name).map(|(n, s)| (*n, s.as_str()))
    }

    /// Members of other nodes.
    pub fn member_count(&self) -> usize {
        self.nodes.values().map(|p| p.members.len()).sum()
    }

    /// Other nodes known.
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// The other nodes' members: node by node (in node id order), each in join order.
    pub fn members(&self) -> Vec<(NodeId, &MemberInfo)> {
        let mut nodes: Vec<_> = self.nodes.iter().collect();
        nodes.sort_by_key(|(id, _)| **id);
        let mut out = Vec::with_capacity(self.member_count());
        for (id, peer) in nodes {
            let mut ms: Vec<&Known> = peer.members.values().collect();
            ms.sort_by_key(|k| k.joined);
            out.extend(ms.into_iter().map(|k| (*id, &k.info)));
        }
        out
    }

    /// The members of other nodes in `room`.
    pub fn in_room(&self, room: &str) -> usize {
        self.nodes
            .values()
            .flat_map(|p| p.members.values())
            .filter(|k| k.info.rooms.iter().any(|r| r == room))
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ME: NodeId = NodeId(1);
    const OTHER: NodeId = NodeId(2);
    const MS: Duration = Duration::from_millis(1);

    fn env(seq: u64, body: Body) -> Envelope {
        Envelope { origin: OTHER, seq, body }
    }

    fn member(session: &str, name: Option<&str>) -> Body {
        Body::Member {
            info: MemberInfo { session: session.into(), name: name.map(Into::into), rooms: vec!["r".into()] },
            notice: Some(b"online".to_vec()),
        }
    }

    #[test]
    fn own_messages_duplicates_and_gaps() {
        let mut p = Peers::new(ME);
        assert_eq!(p.receive(MS, Envelope { origin: ME, seq: 1, body: Body::Hello }), Verdict::Nothing);
        assert_eq!(p.receive(MS, env(1, Body::Heartbeat { members: 0 })), Verdict::Want(OTHER));
        assert_eq!(p.receive(MS, env(1, Body::Heartbeat { members: 0 })), Verdict::Nothing);
        assert_eq!(p.counters.duplicates, 1);
        let b = Body::Broadcast { room: None, kind: "broadcast".into(), line: b"x".to_vec() };
        assert_eq!(p.receive(MS, env(5, b.clone())), Verdict::Deliver(b));
        assert_eq!(p.counters.missed, 3);
        assert_eq!(p.receive(MS, env(6, Body::Hello)), Verdict::Announce);
        assert_eq!(p.receive(MS, env(7, Body::Want(ME))), Verdict::Announce);
        assert_eq!(p.receive(MS, env(8, Body::Want(NodeId(9)))), Verdict::Nothing);
    }

    #[test]
    fn the_directory_follows_members_and_names() {
        let mut p = Peers::new(ME);
        p.receive(MS, env(1, Body::Hello));
        assert!(matches!(p.receive(MS, env(2, member("s1", Some("ann")))), Verdict::Deliver(_)));
        p.receive(MS, env(3, member("s2", None)));
        assert_eq!(p.holder("ann"), Some((OTHER, "s1")));
        assert_eq!(p.member_count(), 2);
        assert_eq!(p.in_room("r"), 2);
        // A rename frees the old name.
        p.receive(MS, env(4, member("s1", Some("bob"))));
        assert_eq!(p.holder("ann"), None);
        assert_eq!(p.holder("bob"), Some((OTHER, "s1")));
        let sessions: Vec<_> = p.members().iter().map(|(_, m)| m.session.clone()).collect();
        assert_eq!(sessions, ["s1", "s2"]);
        p.receive(MS, env(5, Body::Gone { session: "s1".into(), notice: None }));
        assert_eq!(p.holder("bob"), None);
        assert_eq!(p.member_count(), 1);
        match p.receive(MS, env(6, Body::Bye)) {
            Verdict::Left(ms) => assert_eq!(ms.len(), 1),
            v => panic!("{v:?}"),
        }
        assert_eq!(p.node_count(), 0);
    }

    #[test]
    fn an_announcement_sweeps_the_members_it_did_not_repeat() {
        let mut p = Peers::new(ME);
        p.receive(MS, env(1, member("s1", Some("ann"))));
        p.receive(MS, env(2, member("s2", Some("bob"))));
        p.receive(MS, env(3, Body::Announcing));
        p.receive(MS, env(4, member("s2", Some("bob"))));
        match p.receive(MS, env(5, Body::Announced)) {
            Verdict::Left(ms) => assert_eq!(ms[0].session, "s1"),
            v => panic!("{v:?}"),
        }
        assert_eq!(p.holder("ann"), None);
        assert_eq!(p.holder("bob"), Some((OTHER, "s2")));
        assert_eq!(p.receive(MS, env(6, Body::Announced)), Verdict::Nothing);
    }

    #[test]
    fn a_silent_node_expires_with_its_members() {
        let mut p = Peers::new(ME);
        p.receive(MS, env(1, member("s1", Some("ann"))));
        assert!(p.expire(Duration::from_millis(1000), Duration::from_millis(1500)).is_empty());
        let gone = p.expire(Duration::from_millis(2000), Duration::from_millis(1500));
        assert_eq!(gone.len(), 1);
        assert_eq!(gone[0].1[0].name.as_deref(), Some("ann"));
        assert_eq!(p.holder("ann"), None);
        assert_eq!(p.counters.nodes_timed_out, 1);
        // Heard again later: a new acquaintance, asked for its members.
        assert_eq!(
            p.receive(Duration::from_secs(3), env(9, Body::Heartbeat { members: 1 })),
            Verdict::Want(OTHER)
        );
        assert_eq!(p.counters.missed, 0, "a gap across a node's absence is not counted twice");
        // ann, announced again, is back; heard of again, she is not news.
        match p.receive(Duration::from_secs(3), env(10, member("s1", Some("ann")))) {
            Verdict::Returned(info) => assert_eq!(info.name.as_deref(), Some("ann")),
            v => panic!("{v:?}"),
        }
        assert!(matches!(
            p.receive(Duration::from_secs(3), env(11, member("s1", Some("ann")))),
            Verdict::Deliver(_)
        ));
    }
}
