//! Replays the fuzz corpus (`fuzz/corpus/<target>/*`), the hand-written seeds
//! (`fuzz/seeds/<target>/*`) and any saved crash regressions
//! (`fuzz/regressions/<target>/*`) through the same invariant checks the fuzz
//! targets run, on stable Rust, as part of `cargo test`.
//!
//! The checks are the fuzz crate's own file, included here verbatim, so the two
//! can never drift apart. See `docs/fuzzing.md`.

#[path = "../fuzz/src/checks.rs"]
mod checks;

use std::fs;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use checks::{Case, Item, Run, TARGETS};
use netloop::line::LineTooLong;

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

/// Regular files directly inside `dir`, sorted; panics if `dir` is unreadable.
fn files_in(dir: &Path) -> Vec<PathBuf> {
    let entries = fs::read_dir(dir).unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()));
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display())).path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

/// Runs `target`'s check on every file in `dir`, returning how many were
/// replayed and a description of each failure (including panics).
fn replay_dir(target: &str, dir: &Path) -> (usize, Vec<String>) {
    let check = checks::check_for_target(target)
        .unwrap_or_else(|| panic!("{}: no fuzz target named {target:?}", dir.display()));
    let mut failures = Vec::new();
    let files = files_in(dir);
    for file in &files {
        let data = fs::read(file).unwrap_or_else(|e| panic!("cannot read {}: {e}", file.display()));
        match panic::catch_unwind(AssertUnwindSafe(|| check(&data))) {
            Ok(Ok(())) => {}
            Ok(Err(msg)) => failures.push(format!("{}: {msg}", file.display())),
            Err(_) => failures.push(format!("{}: panicked (message above)", file.display())),
        }
    }
    (files.len(), failures)
}

/// Subdirectories of `dir`, by name; each must be a known fuzz target.
fn target_dirs(dir: &Path) -> Vec<(String, PathBuf)> {
    let entries = fs::read_dir(dir).unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()));
    let mut dirs: Vec<(String, PathBuf)> = entries
        .map(|e| e.unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display())).path())
        .filter(|p| p.is_dir())
        .map(|p| (p.file_name().expect("dir name").to_string_lossy().into_owned(), p))
        .collect();
    dirs.sort();
    for (name, path) in &dirs {
        assert!(
            TARGETS.contains(&name.as_str()),
            "{}: not a fuzz target (known: {TARGETS:?})",
            path.display()
        );
    }
    dirs
}

/// Replays `fuzz/<tree>/<target>/*` for every target; each target's directory
/// must exist and hold at least one file, so a wrong path cannot pass silently.
fn replay_required(tree: &str) {
    let root = fuzz_dir().join(tree);
    assert!(root.is_dir(), "fuzz {tree} missing: {} is not a directory", root.display());
    let dirs = target_dirs(&root);
    let mut failures = Vec::new();
    for target in TARGETS {
        let dir = root.join(target);
        assert!(
            dirs.iter().any(|(name, _)| name == target),
            "fuzz {tree} for {target} missing: {}",
            dir.display()
        );
        let (count, failed) = replay_dir(target, &dir);
        assert!(count > 0, "fuzz {tree} for {target} is empty: {}", dir.display());
        eprintln!("{target}: replayed {count} inputs from fuzz/{tree}");
        failures.extend(failed);
    }
    assert!(failures.is_empty(), "{} inputs in fuzz/{tree} fail:\n{}", failures.len(), failures.join("\n"));
}

/// The minimized corpus the fuzzer grew (`cargo fuzz cmin` output).
#[test]
fn corpus_replays_clean() {
    replay_required("corpus");
}

/// The hand-written seeds (`fuzz/make_seeds.py` output).
#[test]
fn seeds_replay_clean() {
    replay_required("seeds");
}

/// Minimized crash inputs, kept once found; the directory exists only then.
#[test]
fn regressions_replay_clean() {
    let regressions = fuzz_dir().join("regressions");
    if !regressions.exists() {
        return;
    }
    let mut failures = Vec::new();
    for (target, dir) in target_dirs(&regressions) {
        let (count, failed) = replay_dir(&target, &dir);
        eprintln!("{target}: replayed {count} inputs from fuzz/regressions");
        failures.extend(failed);
    }
    assert!(failures.is_empty(), "{} regression inputs fail:\n{}", failures.len(), failures.join("\n"));
}

/// The input layout round-trips, so `checks::encode` writes what the targets read.
#[test]
fn input_layout_round_trips() {
    let input = checks::encode(7, &[3, 1, 3, 900], b"abcdef");
    let case = Case::parse(&input).expect("long enough");
    assert_eq!(case.max, 7);
    assert_eq!(case.cuts, vec![1, 3, 900 % 7]);
    assert_eq!(case.data, b"abcdef");
    assert_eq!(case.chunks(), vec![&b"a"[..], b"bc", b"d", b"ef"]);
    // Short inputs are skipped; a cut count larger than what fits is clamped.
    assert!(Case::parse(b"\x01\x00").is_none());
    let case = Case::parse(b"\x05\x00\x10\x02").expect("header present");
    assert_eq!((case.max, case.cuts.len(), case.data), (5, 0, &b"\x02"[..]));
    // max is taken modulo MAX_LIMIT + 1.
    let input = checks::encode(u16::MAX, &[], b"");
    let case = Case::parse(&input).expect("header present");
    assert_eq!(case.max, usize::from(u16::MAX) % (checks::MAX_LIMIT + 1));
}

/// The naive line model agrees with the examples in `src/line.rs`'s docs.
#[test]
fn reference_line_model_matches_documented_examples() {
    let lines = |items: &[&str]| items.iter().map(|s| Item::Bytes(s.as_bytes().to_vec())).collect::<Vec<_>>();
    let err = |max| Err(LineTooLong { max });
    assert_eq!(
        checks::reference_lines(100, b"a\r\nb\rc\n\r\r\n\rx\n"),
        Run { items: lines(&["a", "b\rc", "\r", "\rx"]), result: Ok(()) }
    );
    assert_eq!(checks::reference_lines(3, b"abc\r"), Run { items: vec![], result: Ok(()) });
    assert_eq!(checks::reference_lines(3, b"abc\rx"), Run { items: vec![], result: err(3) });
    assert_eq!(checks::reference_lines(3, b"ok\nabcd\n"), Run { items: lines(&["ok"]), result: err(3) });
    assert_eq!(checks::reference_lines(0, b"\n\r\n"), Run { items: lines(&["", ""]), result: Ok(()) });
}

/// The checks accept hand-written inputs of both targets (a smoke test that does
/// not depend on the corpus files).
#[test]
fn checks_accept_handwritten_inputs() {
    let line_input = checks::encode(4, &[2, 5, 6], b"ab\r\ncd\n\r\nabcd\r\nabcde\n");
    assert_eq!(checks::check_line_splitter(&line_input), Ok(()));
    let frame_input = checks::encode(64, &[3, 9, 10], b" {\"a\":\"\\\"}\"}[1,[2]]\njunk\n{\"b\":\n{}");
    assert_eq!(checks::check_hub_frames(&frame_input), Ok(()));
}
