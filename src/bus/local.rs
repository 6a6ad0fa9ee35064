//! The bus of a service alone in its process.

use std::collections::HashMap;

use super::{Bus, Claim, Holder, Published};
use crate::context::Context;
use crate::member_id::MemberId;

/// Names held by this process's members; nobody elsewhere to tell.
#[derive(Debug, Default)]
pub struct LocalBus {
    names: HashMap<String, MemberId>,
}

impl LocalBus {
    /// A bus with no names held.
    pub fn new() -> Self {
        Self::default()
    }

    /// Names held.
    pub fn names_held(&self) -> usize {
        self.names.len()
    }
}

impl Bus for LocalBus {
    fn claim(&mut self, _cx: &mut Context, member: MemberId, name: &str) -> Claim {
        match self.names.get(name) {
            Some(&holder) if holder != member => Claim::Taken,
            Some(_) => Claim::Granted,
            None => {
                self.names.insert(name.to_string(), member);
                Claim::Granted
            }
        }
    }

    fn release(&mut self, _cx: &mut Context, member: MemberId, name: &str) {
        if self.names.get(name) == Some(&member) {
            self.names.remove(name);
        }
    }

    fn holder(&self, name: &str) -> Option<Holder> {
        self.names.get(name).map(|&m| Holder::Local(m))
    }

    /// Nobody else: this process's members are all there is.
    fn publish(&mut self, _cx: &mut Context, _message: &Published<'_>) {}

    fn members_elsewhere(&self) -> usize {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event_loop::EventLoop;

    #[test]
    fn a_name_has_one_holder_until_released() {
        let mut el = EventLoop::new().unwrap();
        let cx = el.context();
        let a = MemberId { index: 0, generation: 1 };
        let b = MemberId { index: 1, generation: 2 };
        let mut bus = LocalBus::new();
        assert_eq!(bus.claim(cx, a, "ada"), Claim::Granted);
        assert_eq!(bus.claim(cx, a, "ada"), Claim::Granted, "claiming one's own name again");
        assert_eq!(bus.claim(cx, b, "ada"), Claim::Taken);
        assert_eq!(bus.holder("ada"), Some(Holder::Local(a)));
        bus.release(cx, b, "ada");
        assert_eq!(bus.holder("ada"), Some(Holder::Local(a)), "only the holder releases a name");
        bus.release(cx, a, "ada");
        assert_eq!(bus.holder("ada"), None);
        assert_eq!(bus.claim(cx, b, "ada"), Claim::Granted);
        assert_eq!(bus.names_held(), 1);
        assert_eq!(bus.members_elsewhere(), 0);
    }
}
