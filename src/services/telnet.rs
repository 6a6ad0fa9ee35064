//! Telnet commands in a line service's input: removed, and option negotiation refused.
//!
//! `telnet HOST PORT` speaks plain lines until the user presses a key it handles itself: Ctrl-C
//! sends `IAC IP IAC DO TIMING-MARK` and then hides everything the server sends until the
//! timing mark is answered. A server that relays those bytes as text shows garbage to the
//! others and leaves the telnet user staring at a silent screen. [`TelnetFilter`] takes every
//! command out of the byte stream (subnegotiations included, however the reads split them) and
//! answers each request the way a server that supports no option does (RFC 854, RFC 1143):
//! `DO x` gets `WONT x`, `WILL x` gets `DONT x`, and `DONT`/`WONT` need no answer because
//! every option is already off. `IAC IAC` is a literal 0xFF data byte, so is an `IAC` before a
//! byte that is no command (below 240), and `CR NUL` (the NVT's bare carriage return) is a `CR`.
//!
//! Sans-IO: bytes in, data bytes and reply bytes out; no buffering beyond one state byte.

use std::borrow::Cow;

/// "Interpret as command": starts every telnet command; doubled, a literal 0xFF.
pub const IAC: u8 = 255;
/// Refuses, or confirms the refusal of, an option at our side.
pub const DONT: u8 = 254;
/// Asks us to enable an option.
pub const DO: u8 = 253;
/// Refuses, or confirms the refusal of, an option at the peer's side.
pub const WONT: u8 = 252;
/// The peer offers to enable an option at its side.
pub const WILL: u8 = 251;
/// Subnegotiation begins; runs to `IAC SE`.
pub const SB: u8 = 250;
/// Subnegotiation ends.
pub const SE: u8 = 240;
/// Interrupt process (telnet's Ctrl-C).
pub const IP: u8 = 244;
/// The timing-mark option telnet asks for after an interrupt.
pub const TIMING_MARK: u8 = 6;

/// Where the filter is in the command syntax between two reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum State {
    /// Plain data.
    #[default]
    Data,
    /// Plain data, the last byte a `CR` (a `NUL` right after it is dropped).
    Cr,
    /// After `IAC`.
    Iac,
    /// After `IAC` and a negotiation verb; the option byte comes next.
    Option(u8),
    /// Inside a subnegotiation.
    Sub,
    /// Inside a subnegotiation, after `IAC`.
    SubIac,
}

/// Strips telnet commands from one connection's input. One per connection; one byte of state.
#[derive(Debug, Clone, Default)]
pub struct TelnetFilter {
    state: State,
}

impl TelnetFilter {
    /// A filter at the start of a stream.
    pub fn new() -> TelnetFilter {
        TelnetFilter::default()
    }

    /// The data bytes of `input` with every telnet command taken out; the answers owed to the
    /// peer's negotiation are appended to `replies`. Borrows `input` when it holds no command
    /// (the common case: no `IAC` byte, no `CR NUL`), so plain text costs no copy.
    pub fn filter<'a>(&mut self, input: &'a [u8], replies: &mut Vec<u8>) -> Cow<'a, [u8]> {
        // No IAC and no NUL (so no `CR NUL` either), between commands: nothing to take out.
        // Both scans are memchr.
        let between_commands = matches!(self.state, State::Data | State::Cr);
        if between_commands && !input.contains(&IAC) && !input.contains(&0) {
            if let Some(&last) = input.last() {
                self.state = if last == b'\r' { State::Cr } else { State::Data };
            }
            return Cow::Borrowed(input);
        }
        let mut data = Vec::with_capacity(input.len());
        for &byte in input {
            self.state = match (self.state, byte) {
                (State::Data | State::Cr, IAC) => State::Iac,
                (State::Cr, 0) => State::Data,
                (State::Data | State::Cr, b) => {
                    data.push(b);
                    if b == b'\r' {
                        State::Cr
                    } else {
                        State::Data
                    }
                }
                (State::Iac, IAC) => {
                    data.push(IAC);
                    State::Data
                }
                // Not a command byte (they are 240 to 255): the 0xFF was data after all.
                (State::Iac, b) if b < SE => {
                    data.extend_from_slice(&[IAC, b]);
                    if b == b'\r' {
                        State::Cr
                    } else {
                        State::Data
                    }
                }
                (State::Iac, verb @ (DO | DONT | WILL | WONT)) => State::Option(verb),
                (State::Iac, SB) => State::Sub,
                // NOP, IP, AO, AYT, EC, EL, GA, BRK, DM, a stray SE: nothing to do for a line
                // service, and nothing to show.
                (State::Iac, _) => State::Data,
                (State::Option(verb), option) => {
                    match verb {
                        DO => replies.extend_from_slice(&[IAC, WONT, option]),
                        WILL => replies.extend_from_slice(&[IAC, DONT, option]),
                        // DONT / WONT: the option is off already, and acknowledging a state
                        // we are in would start a negotiation loop.
                        _ => {}
                    }
                    State::Data
                }
                (State::Sub, IAC) => State::SubIac,
                (State::Sub, _) => State::Sub,
                (State::SubIac, SE) => State::Data,
                // `IAC IAC` is an escaped data byte of the subnegotiation; anything else is
                // malformed, and the subnegotiation is still skipped to its `IAC SE`.
                (State::SubIac, _) => State::Sub,
            };
        }
        Cow::Owned(data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `chunks` in turn; returns all data and all replies.
    fn run(chunks: &[&[u8]]) -> (Vec<u8>, Vec<u8>) {
        let mut f = TelnetFilter::new();
        let mut data = Vec::new();
        let mut replies = Vec::new();
        for c in chunks {
            data.extend_from_slice(&f.filter(c, &mut replies));
        }
        (data, replies)
    }

    /// Every way of cutting `stream` into two reads gives the same result as one read.
    fn same_however_split(stream: &[u8]) -> (Vec<u8>, Vec<u8>) {
        let whole = run(&[stream]);
        for at in 0..=stream.len() {
            assert_eq!(run(&[&stream[..at], &stream[at..]]), whole, "split at {at} of {stream:?}");
        }
        let bytes: Vec<&[u8]> = stream.chunks(1).collect();
        assert_eq!(run(&bytes), whole, "one byte at a time");
        whole
    }

    #[test]
    fn plain_text_is_borrowed_and_unchanged() {
        let mut f = TelnetFilter::new();
        let mut replies = Vec::new();
        let input = "hello wörld\r\n".as_bytes();
        assert!(matches!(f.filter(input, &mut replies), Cow::Borrowed(b) if b == input));
        assert!(replies.is_empty());
    }

    #[test]
    fn ctrl_c_is_stripped_and_the_timing_mark_refused() {
        // What telnet sends for Ctrl-C, between two lines.
        let (data, replies) = same_however_split(b"before\r\n\xff\xf4\xff\xfd\x06after\r\n");
        assert_eq!(data, b"before\r\nafter\r\n");
        assert_eq!(replies, [IAC, WONT, TIMING_MARK]);
    }

    #[test]
    fn negotiation_is_refused_and_refusals_get_no_answer() {
        // DO ECHO, WILL NAWS, DONT SGA, WONT LINEMODE.
        let (data, replies) = same_however_split(b"\xff\xfd\x01\xff\xfb\x1f\xff\xfe\x03\xff\xfc\x22x");
        assert_eq!(data, b"x");
        assert_eq!(replies, [IAC, WONT, 1, IAC, DONT, 31]);
    }

    #[test]
    fn subnegotiation_is_skipped_whole() {
        // NAWS 80x24 with an escaped 255 inside, then terminal type, then text.
        let (data, replies) =
            same_however_split(b"a\xff\xfa\x1f\x00\x50\xff\xff\x18\xff\xf0b\xff\xfa\x18\x00xterm\xff\xf0c");
        assert_eq!(data, b"abc");
        assert!(replies.is_empty());
    }

    #[test]
    fn doubled_iac_is_a_data_byte() {
        let (data, _) = same_however_split(b"\xff\xff\xff\xf1\xff\xffend");
        assert_eq!(data, b"\xff\xffend", "IAC IAC, IAC NOP, IAC IAC");
        let (data, _) = same_however_split(b"\xff\xff");
        assert_eq!(data, [IAC]);
    }

    #[test]
    fn a_lone_ff_before_a_non_command_byte_is_data() {
        let (data, replies) = same_however_split(b"a\xffb\xff\r\0c");
        assert_eq!(data, b"a\xffb\xff\rc");
        assert!(replies.is_empty());
    }

    #[test]
    fn other_commands_vanish() {
        // NOP, AYT, GA, a stray SE, DM.
        let (data, replies) = same_however_split(b"x\xff\xf1y\xff\xf6\xff\xf9\xff\xf0\xff\xf2z");
        assert_eq!(data, b"xyz");
        assert!(replies.is_empty());
    }

    #[test]
    fn cr_nul_is_a_bare_cr() {
        let (data, _) = same_however_split(b"one\r\0two\r\nthree\0\r\r\0");
        assert_eq!(data, b"one\rtwo\r\nthree\0\r\r");
    }

    #[test]
    fn an_unfinished_command_at_the_end_waits_for_the_next_read() {
        let mut f = TelnetFilter::new();
        let mut replies = Vec::new();
        assert_eq!(&*f.filter(b"hi\xff", &mut replies), b"hi");
        assert_eq!(&*f.filter(b"\xfd", &mut replies), b"");
        assert!(replies.is_empty());
        assert_eq!(&*f.filter(b"\x18ok", &mut replies), b"ok");
        assert_eq!(replies, [IAC, WONT, 24]);
    }
}
