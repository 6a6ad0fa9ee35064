//! Echo writes back what it reads; the only line of its own is the refusal at
//! `--max-connections`.

use std::io::Write as _;

/// The refusal a connection gets at `--max-connections`, before the server closes it.
pub fn write_server_full(out: &mut Vec<u8>, max: usize) {
    out.clear();
    let _ = writeln!(out, "error: server full (max connections {max})");
}

#[cfg(test)]
mod tests {
    #[test]
    fn server_full_has_the_documented_bytes() {
        let mut out = Vec::new();
        super::write_server_full(&mut out, 9);
        assert_eq!(out, b"error: server full (max connections 9)\n");
    }
}
