//! Fuzzes `netloop::frame::FrameDecoder` (the hub protocol's JSON framer) and the
//! serde_json parse the hub runs on each frame.
//!
//! Input layout and invariants: `fuzz/src/checks.rs`.

#![no_main]

use libfuzzer_sys::fuzz_target;
use netloop_fuzz::checks::check_hub_frames;

fuzz_target!(|data: &[u8]| {
    if let Err(msg) = check_hub_frames(data) {
        panic!("hub_frames invariant violated: {msg}");
    }
});
