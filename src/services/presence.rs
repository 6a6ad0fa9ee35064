//! Join and leave notices, coalesced so a storm of N joins costs O(N) output, not O(N²).
//!
//! Telling every member of every join is N notices per join: 10,000 clients joining cost 50
//! million lines. The chat instead tells the first [`BURST`] joins and leaves of each
//! [`PRESENCE_INTERVAL`] at once, in the classic form (`* <name> joined, online now: N`), and
//! gathers the rest of the interval into one summary line sent to everyone when it ends:
//! `* joined: a, b and 9810 more; left: c; online now: 9812` (a lone change keeps the classic
//! form). Then the next interval starts, until one passes with nothing to say. A storm thus
//! costs every member at most `BURST + 1` lines per interval, and the occasional join is still
//! announced with no delay.
//!
//! A [`Presence`] is the batch of one interval: at most [`SHOWN`] names of each kind are kept
//! (the rest only counted), so it holds a few bytes whatever the storm.

use std::time::Duration;

use crate::services::member::MemberId;
use crate::wire::chat::{self, Names as ShownNames};

pub use crate::wire::chat::Change;

/// How long join and leave notices are gathered into one summary once a storm starts.
pub const PRESENCE_INTERVAL: Duration = Duration::from_millis(200);

/// Joins and leaves told one by one in each interval before the rest are gathered.
pub const BURST: usize = 3;

/// Names of each kind a summary lists; the rest are counted (`and 9810 more`).
pub const SHOWN: usize = 5;

/// Names of one kind of change in the interval: the first few, and how many in all.
#[derive(Debug, Default)]
struct Names {
    shown: Vec<String>,
    count: usize,
}

impl Names {
    fn add(&mut self, name: &str) {
        if self.shown.len() < SHOWN {
            self.shown.push(name.to_string());
        }
        self.count += 1;
    }

    fn shown(&self) -> ShownNames<'_> {
        ShownNames { shown: &self.shown, count: self.count }
    }

    fn clear(&mut self) {
        self.shown.clear();
        self.count = 0;
    }
}

/// The joins and leaves of one interval, not yet told.
#[derive(Debug, Default)]
pub struct Presence {
    joined: Names,
    left: Names,
    /// The member the only recorded change is about, while there is exactly one.
    only: Option<(Change, MemberId)>,
}

impl Presence {
    /// An empty batch.
    pub fn new() -> Presence {
        Presence::default()
    }

    /// Whether nothing waits to be told.
    pub fn is_empty(&self) -> bool {
        self.joined.count == 0 && self.left.count == 0
    }

    /// Adds a change to the batch.
    pub fn record(&mut self, change: Change, member: MemberId, name: &str) {
        self.only = self.is_empty().then_some((change, member));
        match change {
            Change::Joined => self.joined.add(name),
            Change::Left => self.left.add(name),
        }
    }

    /// Writes the notice for the batch into `out` (cleared first) and empties the batch.
    /// Returns the member who must not get it: one who joined, when its join is all there is
    /// to tell (it had its welcome). A summary of several goes to everyone.
    pub fn take_notice(&mut self, online: usize, out: &mut Vec<u8>) -> Option<MemberId> {
        out.clear();
        let except = match self.only {
            Some((change, member)) if self.joined.count + self.left.count == 1 => {
                let name = match change {
                    Change::Joined => &self.joined.shown[0],
                    Change::Left => &self.left.shown[0],
                };
                write_single(out, change, name, online);
                (change == Change::Joined).then_some(member)
            }
            _ => {
                chat::write_summary(out, self.joined.shown(), self.left.shown(), online);
                None
            }
        };
        self.joined.clear();
        self.left.clear();
        self.only = None;
        except
    }
}

/// The classic notice for one change: `* <name> joined, online now: N` or
/// `* <name> left, online now: N`.
pub fn write_single(out: &mut Vec<u8>, change: Change, name: &str, online: usize) {
    chat::write_change(out, change, name, online);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u32) -> MemberId {
        MemberId { index: n, generation: 1 }
    }

    fn notice(p: &mut Presence, online: usize) -> (String, Option<MemberId>) {
        let mut out = Vec::new();
        let except = p.take_notice(online, &mut out);
        (String::from_utf8(out).unwrap(), except)
    }

    #[test]
    fn one_change_keeps_the_classic_form() {
        let mut p = Presence::new();
        p.record(Change::Joined, id(1), "127.0.0.1:5001");
        assert_eq!(notice(&mut p, 3), ("* 127.0.0.1:5001 joined, online now: 3\n".into(), Some(id(1))));
        assert!(p.is_empty());
        p.record(Change::Left, id(2), "ann");
        assert_eq!(notice(&mut p, 2), ("* ann left, online now: 2\n".into(), None));
    }

    #[test]
    fn several_changes_make_one_summary_for_everyone() {
        let mut p = Presence::new();
        p.record(Change::Joined, id(1), "a:1");
        p.record(Change::Left, id(2), "bob");
        p.record(Change::Joined, id(3), "a:3");
        assert_eq!(notice(&mut p, 7), ("* joined: a:1, a:3; left: bob; online now: 7\n".into(), None));
        p.record(Change::Left, id(1), "x");
        p.record(Change::Left, id(2), "y");
        assert_eq!(notice(&mut p, 5), ("* left: x, y; online now: 5\n".into(), None));
    }

    #[test]
    fn a_storm_lists_a_few_names_and_counts_the_rest() {
        let mut p = Presence::new();
        for n in 0..10_000 {
            p.record(Change::Joined, id(n), &format!("10.0.0.1:{n}"));
        }
        assert!(p.joined.shown.len() <= SHOWN, "the batch stays small");
        let (line, except) = notice(&mut p, 10_000);
        assert_eq!(
            line,
            "* joined: 10.0.0.1:0, 10.0.0.1:1, 10.0.0.1:2, 10.0.0.1:3, 10.0.0.1:4 and 9995 more; \
             online now: 10000\n"
        );
        assert_eq!(except, None);
    }
}
