//! Support code for netloop's fuzz targets (see `docs/fuzzing.md`).
//!
//! The checks live in `checks.rs` so that `tests/fuzz_corpus.rs` in the main
//! crate can include the very same file with `#[path]` and replay the corpus on
//! stable Rust.

pub mod checks;
