//! Coalesced `online`/`offline` notices, so a storm of N joins costs O(N) output, not O(N²).
//!
//! Sent one by one, every join is a line to every member: N joins cost N² lines (10,000 joins,
//! gigabytes). Here an event after a quiet spell goes out at once and opens a window of
//! [`PRESENCE_WINDOW`]; events during the window are held, and at its end each member gets
//! what happened in it after the member itself arrived: the notices themselves when there are
//! at most [`MAX_NOTICES`] of them, otherwise one summary line
//! `{"type":"presence","online":N,"offline":M}` (send `list` for the names). A window that
//! held anything opens the next, so a storm costs each member at most one summary per window
//! and the whole storm O(members × windows), whatever the rate of joins.
//!
//! Members that arrive during a window are not told about events from before they arrived (as
//! with immediate notices), nor about their own, which is what [`Mark`] records.

use std::collections::VecDeque;
use std::rc::Rc;
use std::time::Duration;

use crate::context::Context;
use crate::services::member::{self, Link, MemberId, Outgoing};
use crate::timers::TimerId;
use crate::wire::hub::Reply;
use crate::write_queue::SharedBytes;

/// How long events are held once one has gone out: the most a notice is delayed.
pub const PRESENCE_WINDOW: Duration = Duration::from_millis(100);
/// Most notices a member gets one by one for one window; with more it gets a summary.
pub const MAX_NOTICES: usize = 8;

/// A member's place in the stream: the window it arrived in, how many events that window held
/// when it arrived, and how many of the window's `online` events are its own.
#[derive(Debug, Clone, Copy, Default)]
pub struct Mark {
    window: u64,
    online_before: u32,
    offline_before: u32,
    own_online: u32,
}

/// The notices of the current window.
#[derive(Debug, Default)]
pub struct Presence {
    /// Armed while a window is open.
    timer: Option<TimerId>,
    /// Numbers the windows, so marks from earlier windows read as "arrived before this one".
    window: u64,
    /// Events held in this window.
    online: u32,
    offline: u32,
    /// The last [`MAX_NOTICES`] events held: who it is about, its type and its line.
    recent: VecDeque<(MemberId, &'static str, SharedBytes)>,
    /// Where a summary line is built.
    out: Vec<u8>,
}

impl Presence {
    /// The mark of a member that starts receiving notices now.
    pub fn mark(&self) -> Mark {
        Mark { window: self.window, online_before: self.online, offline_before: self.offline, own_online: 0 }
    }

    /// An event about `subject` (whose mark is `mark`; irrelevant for `offline`, the subject
    /// is gone), of type `kind`. Returns true when no window was open: the caller sends `line`
    /// to every member now, and a window opens. Otherwise the event is held for the window's
    /// end.
    pub fn event(
        &mut self,
        cx: &mut Context,
        subject: MemberId,
        mark: &mut Mark,
        online: bool,
        kind: &'static str,
        line: &SharedBytes,
    ) -> bool {
        if self.timer.is_none() {
            self.timer = Some(window_timer(cx));
            return true;
        }
        if online {
            if mark.window != self.window {
                *mark = Mark { window: self.window, ..Mark::default() };
            }
            mark.own_online += 1;
            self.online = self.online.saturating_add(1);
        } else {
            self.offline = self.offline.saturating_add(1);
        }
        if self.recent.len() == MAX_NOTICES {
            self.recent.pop_front();
        }
        self.recent.push_back((subject, kind, Rc::clone(line)));
        false
    }

    /// Whether the window holds an `online` notice of the member with `mark`. Before that
    /// member's own messages go out, the window is ended ([`Presence::flush_now`]), so nobody
    /// hears from a member before hearing it is online. That costs one flush per held
    /// `online` at most, never more than the message it precedes.
    pub fn holds_own(&self, mark: &Mark) -> bool {
        self.timer.is_some() && mark.window == self.window && mark.own_online > 0
    }

    /// Ends the window now rather than when its timer fires.
    pub fn flush_now(&mut self, cx: &mut Context, recipients: impl Iterator<Item = (MemberId, Link, Mark)>) {
        if let Some(timer) = self.timer {
            cx.clear_timer(timer);
        }
        self.flush(cx, recipients);
    }

    /// Whether `timer` is the window's.
    pub fn is_timer(&self, timer: TimerId) -> bool {
        self.timer == Some(timer)
    }

    /// The window ended: every recipient, with its mark, gets what the window held for it.
    /// The next window opens if this one held anything.
    pub fn flush(&mut self, cx: &mut Context, recipients: impl Iterator<Item = (MemberId, Link, Mark)>) {
        self.timer = None;
        let held = self.online as usize + self.offline as usize;
        if held > 0 {
            // Each notice, and the summary most recipients get, is framed once per kind of
            // link for all of them, not once per recipient.
            let notices: Vec<(MemberId, Outgoing<'_>)> = self
                .recent
                .iter()
                .map(|(subject, kind, line)| (*subject, Outgoing::new(kind, line).with_line(line)))
                .collect();
            let common_line = (held > MAX_NOTICES).then(|| summary(&mut self.out, self.online, self.offline));
            let common = common_line.as_ref().map(|line| Outgoing::new("presence", line).with_line(line));
            for (id, link, mark) in recipients {
                let (on_before, off_before, own) = if mark.window == self.window {
                    (mark.online_before, mark.offline_before, mark.own_online)
                } else {
                    (0, 0, 0)
                };
                let after = (self.online - on_before) as usize + (self.offline - off_before) as usize;
                if after == 0 {
                    continue;
                }
                if after <= MAX_NOTICES {
                    for (subject, notice) in &notices[notices.len() - after..] {
                        if *subject != id {
                            member::deliver(cx, link, notice);
                        }
                    }
                    continue;
                }
                let (online, offline) = (self.online - on_before - own, self.offline - off_before);
                if online == 0 && offline == 0 {
                    continue;
                }
                match &common {
                    Some(common) if (on_before, off_before, own) == (0, 0, 0) => {
                        member::deliver(cx, link, common)
                    }
                    _ => {
                        let line = summary(&mut self.out, online, offline);
                        member::deliver(cx, link, &Outgoing::new("presence", &line).with_line(&line));
                    }
                }
            }
            self.timer = Some(window_timer(cx));
        }
        self.window += 1;
        self.online = 0;
        self.offline = 0;
        self.recent.clear();
    }
}

/// `{"type":"presence","online":N,"offline":M}`.
fn summary(out: &mut Vec<u8>, online: u32, offline: u32) -> SharedBytes {
    Reply::Presence { online: online.into(), offline: offline.into() }.encode(out);
    Rc::from(&out[..])
}

/// Unreferenced, like the registration sweep: pending notices must not hold up a shutdown.
fn window_timer(cx: &mut Context) -> TimerId {
    let timer = cx.set_timer(PRESENCE_WINDOW);
    cx.set_timer_ref(timer, false);
    timer
}
