//! Headless Chromium (Debian's `chromium`, driven by the pinned `playwright-core`) on the chat
//! page and on a page from another origin using the official socket.io client; see
//! `tests/node/browser.js`. Fails loudly with the install command when Chromium or the npm
//! packages are missing.

#![cfg(feature = "web")]

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn two_pages_and_a_tcp_member_chat_and_another_origin_uses_socketio() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let screenshot = std::env::temp_dir().join(format!("netloop-chat-page-{}.png", std::process::id()));
    let mut child = Command::new("node")
        .arg(root.join("tests/node/browser.js"))
        .arg(env!("CARGO_BIN_EXE_netloop"))
        .arg(&screenshot)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("node is required for these tests");
    let deadline = Instant::now() + Duration::from_secs(90);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "browser check failed ({:?})\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let png = std::fs::read(&screenshot).expect("the screenshot was saved");
    assert!(png.starts_with(b"\x89PNG"), "not a PNG");
    let _ = std::fs::remove_file(&screenshot);
}
