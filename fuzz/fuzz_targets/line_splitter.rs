//! Fuzzes `netloop::line::LineSplitter` (the chat protocol's line decoder).
//!
//! Input layout and invariants: `fuzz/src/checks.rs`.

#![no_main]

use libfuzzer_sys::fuzz_target;
use netloop_fuzz::checks::check_line_splitter;

fuzz_target!(|data: &[u8]| {
    if let Err(msg) = check_line_splitter(data) {
        panic!("line_splitter invariant violated: {msg}");
    }
});
