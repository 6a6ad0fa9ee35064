//! Parsing and formatting of human-written durations and byte sizes.
//!
//! Command-line options such as idle timeouts and maximum line or frame sizes
//! are easier to write as `30s` or `1m` / `64k` than as raw numbers. These
//! functions accept those forms strictly (a whole number, then an optional
//! unit, with optional spaces between) and explain what went wrong, naming the
//! input, so the error can be shown to the user as is.

use std::time::Duration;

const KIB: usize = 1024;
const MIB: usize = 1024 * 1024;
const GIB: usize = 1024 * 1024 * 1024;

/// The longest duration accepted: 2^31 - 1 ms (24 days 20 h), the most Node's timers (and the
/// loop's idle timers) can represent. Longer is refused rather than silently clamped.
pub const MAX_DURATION: Duration = Duration::from_millis(i32::MAX as u64);

/// The largest size accepted: 1 TiB. Every size is a limit on memory, and a larger one cannot
/// be meant (use the option's `0 = off` where it has one).
pub const MAX_SIZE: usize = 1 << 40;

/// Parses a duration: `500ms`, `30s`, `2m`, `1h`, or a bare number of
/// milliseconds (as Node's timer APIs take).
///
/// Units are case-insensitive and may be separated from the number by spaces.
/// `0` (in any unit) is accepted; callers treat a zero duration as "off".
/// Negative values, fractions, empty input, unknown units and values over
/// [`MAX_DURATION`] are rejected with a message naming the input.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let (n, unit) = split_number(s, "duration", "500ms, 30s, 2m, 1h or 250")?;
    let ms_per_unit: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => return Err(format!("invalid duration {s:?}: unknown unit {unit:?} (use ms, s, m or h)")),
    };
    let too_large = || format!("invalid duration {s:?}: too large (at most 24d 20h: 2147483647ms, 596h)");
    let number: u64 = n.parse().map_err(|_| too_large())?;
    let ms = number.checked_mul(ms_per_unit).filter(|&ms| ms <= MAX_DURATION.as_millis() as u64);
    ms.map(Duration::from_millis).ok_or_else(too_large)
}

/// Parses a byte size: a bare number of bytes, or a number followed by a unit
/// `b`, `k`/`kb`/`kib` (KiB), `m`/`mb`/`mib` (MiB) or `g`/`gb`/`gib` (GiB).
///
/// All units are binary (`1k` = 1024 bytes) and case-insensitive, and may be
/// separated from the number by spaces, so every string produced by
/// [`format_size`] parses back to the same value. Negative values, fractions,
/// empty input, unknown units and values over [`MAX_SIZE`] are rejected with a
/// message naming the input.
pub fn parse_size(s: &str) -> Result<usize, String> {
    let (n, unit) = split_number(s, "size", "65536, 64k, 1MiB or 2g")?;
    let multiplier = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => KIB,
        "m" | "mb" | "mib" => MIB,
        "g" | "gb" | "gib" => GIB,
        _ => {
            return Err(format!(
                "invalid size {s:?}: unknown unit {unit:?} (use k, m or g, optionally followed by b or ib)"
            ))
        }
    };
    let too_large = || format!("invalid size {s:?}: too large (at most 1 TiB)");
    let number: usize = n.parse().map_err(|_| too_large())?;
    number.checked_mul(multiplier).filter(|&n| n <= MAX_SIZE).ok_or_else(too_large)
}

/// Formats a byte count for messages: the largest binary unit that divides it
/// exactly (`16 KiB`, `8 MiB`, `1 GiB`), otherwise plain bytes (`100 B`,
/// `1536 B`).
///
/// Exactness matters more than brevity here because the text usually states a
/// limit; the output always parses back with [`parse_size`].
pub fn format_size(n: usize) -> String {
    if n == 0 {
        return "0 B".to_string();
    }
    for (unit, name) in [(GIB, "GiB"), (MIB, "MiB"), (KIB, "KiB")] {
        if n.is_multiple_of(unit) {
            return format!("{} {}", n / unit, name);
        }
    }
    format!("{n} B")
}

/// Splits `s` into its leading ASCII digits and its unit (spaces between them
/// dropped), rejecting empty input, signs and fractions with a message.
fn split_number<'a>(s: &'a str, what: &str, examples: &str) -> Result<(&'a str, &'a str), String> {
    if s.is_empty() {
        return Err(format!("invalid {what}: empty (expected e.g. {examples})"));
    }
    let digits_end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, rest) = s.split_at(digits_end);
    if n.is_empty() {
        let reason = if s.starts_with('-') {
            "negative values are not allowed".to_string()
        } else {
            format!("expected a whole number with an optional unit, e.g. {examples}")
        };
        return Err(format!("invalid {what} {s:?}: {reason}"));
    }
    if rest.starts_with(['.', ',']) {
        return Err(format!("invalid {what} {s:?}: fractions are not allowed, use a smaller unit"));
    }
    let unit = rest.trim_start_matches(' ');
    if unit.contains(|c: char| !c.is_ascii_alphabetic()) {
        return Err(format!(
            "invalid {what} {s:?}: expected a whole number with an optional unit, e.g. {examples}"
        ));
    }
    Ok((n, unit))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_with_units() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("10S"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("5 s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("007s"), Ok(Duration::from_secs(7)));
    }

    #[test]
    fn bare_number_is_milliseconds() {
        assert_eq!(parse_duration("250"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
    }

    #[test]
    fn bad_durations_name_the_input() {
        for bad in ["", "-5", "-5s", "+5", "abc", "5x", "1.5s", "5 s x", " 5", "5s ", "ms", "1d", "5mss"] {
            let err = parse_duration(bad).expect_err(bad);
            if !bad.is_empty() {
                assert!(err.contains(&format!("{bad:?}")), "{err}");
            }
            assert!(err.starts_with("invalid duration"), "{err}");
        }
        assert!(parse_duration("-1").unwrap_err().contains("negative"));
        assert!(parse_duration("1.5s").unwrap_err().contains("fraction"));
        assert!(parse_duration("").unwrap_err().contains("empty"));
    }

    #[test]
    fn duration_overflow() {
        assert_eq!(parse_duration("2147483647"), Ok(MAX_DURATION));
        assert_eq!(parse_duration("596h"), Ok(Duration::from_secs(596 * 3600)));
        for bad in ["2147483648", "597h", "2147484s", "18446744073709551s", "99999999999999999999999"] {
            let err = parse_duration(bad).expect_err(bad);
            assert!(err.contains("too large") && err.contains("24d 20h"), "{err}");
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("0"), Ok(0));
        assert_eq!(parse_size("100"), Ok(100));
        assert_eq!(parse_size("100b"), Ok(100));
        assert_eq!(parse_size("100 B"), Ok(100));
        for k in ["16k", "16K", "16kb", "16KB", "16KiB", "16kib", "16 KiB"] {
            assert_eq!(parse_size(k), Ok(16 * 1024), "{k}");
        }
        for m in ["8m", "8M", "8mb", "8MiB", "8 MiB"] {
            assert_eq!(parse_size(m), Ok(8 * 1024 * 1024), "{m}");
        }
        for g in ["2g", "2G", "2gb", "2GiB"] {
            assert_eq!(parse_size(g), Ok(2 * 1024 * 1024 * 1024), "{g}");
        }
    }

    #[test]
    fn bad_sizes_name_the_input() {
        for bad in ["", "-1", "-1k", "k", "1.5k", "1x", "1kibb", "1 k b", "0x10", " 1"] {
            let err = parse_size(bad).expect_err(bad);
            if !bad.is_empty() {
                assert!(err.contains(&format!("{bad:?}")), "{err}");
            }
            assert!(err.starts_with("invalid size"), "{err}");
        }
    }

    #[test]
    fn size_overflow() {
        assert_eq!(parse_size("1024g"), Ok(MAX_SIZE));
        let max = usize::MAX.to_string();
        for bad in [max.clone(), format!("{max}k"), format!("{max}0"), "1025g".into(), "1099511627777".into()]
        {
            assert!(parse_size(&bad).unwrap_err().contains("too large (at most 1 TiB)"), "{bad}");
        }
    }

    #[test]
    fn formats_sizes() {
        assert_eq!(format_size(0), "0 B");
        assert_eq!(format_size(100), "100 B");
        assert_eq!(format_size(1536), "1536 B");
        assert_eq!(format_size(16 * 1024), "16 KiB");
        assert_eq!(format_size(65536), "64 KiB");
        assert_eq!(format_size(8 * 1024 * 1024), "8 MiB");
        assert_eq!(format_size(1024 * 1024 * 1024), "1 GiB");
        assert_eq!(format_size(1024 * 1024 + 1024), "1025 KiB");
    }

    #[test]
    fn format_parses_back() {
        for n in [0, 1, 1023, 1024, 1536, 65536, 1 << 20, 3 << 30, MAX_SIZE] {
            assert_eq!(parse_size(&format_size(n)), Ok(n), "{n}");
        }
    }
}
