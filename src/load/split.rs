//! `netloop load ... --workers N`: one run split over N processes, each one loop, and their
//! reports merged into one.
//!
//! Each process (the netloop binary again, with a hidden `--worker-part I/N`) opens its share
//! of the connections, sends its share of the rate, from source addresses of its own, and
//! prints its report with the raw histograms behind the percentiles. The parent adds the
//! counts and merges the histograms, so the percentiles are those of all samples together,
//! never an average of percentiles.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::{self, Read};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde_json::{json, Value};

use crate::load::report::{
    ConnectionReport, EchoReport, Histograms, IdleReport, LatencyFrom, ModeReport, Report,
};
use crate::load::stats::{new_histogram, per_second, percentiles_of};
use crate::load::{EchoConfig, Mode};

/// Share `part` of `parts` of `total`: the first `total % parts` shares get one more.
pub(crate) fn split(total: u64, part: usize, parts: usize) -> u64 {
    let (parts, part) = (parts as u64, part as u64);
    total / parts + u64::from(part < total % parts)
}

/// The mode of process `part` of `parts`: its connections and rate.
pub fn share_of(mode: &Mode, part: usize, parts: usize) -> io::Result<Mode> {
    let at_least_one = |n: u64, what: &str| {
        if n == 0 {
            Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("--workers {parts} is more than the {what}: each process needs at least one"),
            ))
        } else {
            Ok(n as usize)
        }
    };
    match mode {
        Mode::Idle { connections } => Ok(Mode::Idle {
            connections: at_least_one(split(*connections as u64, part, parts), "connections")?,
        }),
        Mode::Echo(e) => Ok(Mode::Echo(EchoConfig {
            connections: at_least_one(split(e.connections as u64, part, parts), "connections")?,
            rate: split(e.rate, part, parts),
            ..e.clone()
        })),
        Mode::Fanout(_) => Err(refuse_fanout(parts)),
    }
}

/// Fan-out times each delivery against its sender's clock and tracks every sender for every
/// receiver: both must live in one process.
pub fn refuse_fanout(parts: usize) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!(
            "fanout cannot be split over --workers {parts}: every receiver checks every sender's sequence and \
             times it on the sender's clock, so both must be in one process; run fanout with --workers 1"
        ),
    )
}

/// What a process of a split run prints: its report, and the raw figures the merge needs.
pub fn part_json(report: &Report) -> Value {
    let seconds = report.duration_s + drain_of(report);
    json!({
        "report": report.to_json(),
        "completed": report.completed,
        "bytes": (report.bytes_per_s * seconds).round() as u64,
        "seconds": seconds,
        "histograms": {
            "latency": report.histograms.latency.as_ref().map(histogram_json),
            "connect_time": report.histograms.connect_time.as_ref().map(histogram_json),
            "send_delay": report.histograms.send_delay.as_ref().map(histogram_json),
        },
    })
}

fn drain_of(report: &Report) -> f64 {
    if report.completed_per_s > 0.0 {
        (report.completed as f64 / report.completed_per_s - report.duration_s).max(0.0)
    } else {
        0.0
    }
}

/// `[[value, count], ...]`: each bucket's highest equivalent value, which records back into
/// the same bucket.
fn histogram_json(h: &Histogram<u64>) -> Value {
    let pairs: Vec<[u64; 2]> =
        h.iter_recorded().map(|v| [v.value_iterated_to(), v.count_at_value()]).collect();
    json!(pairs)
}

fn histogram_from(v: &Value) -> Option<Histogram<u64>> {
    let pairs = v.as_array()?;
    let mut h = new_histogram();
    for pair in pairs {
        let (value, count) = (pair.get(0)?.as_u64()?, pair.get(1)?.as_u64()?);
        h.saturating_record_n(value, count);
    }
    Some(h)
}

/// Runs the split: `parts` processes of this binary with `load ARGS --worker-part I/N`, then
/// merges what they report. SIGINT/SIGTERM are passed on to them, so an interrupted run still
/// reports.
pub fn run(args: &[OsString], parts: usize, mode: &'static str, target: &str) -> io::Result<Report> {
    let exe = std::env::current_exe()?;
    // The running binary itself (its file may have been replaced since), named as it was run.
    let mut children = Vec::with_capacity(parts);
    let mut readers = Vec::with_capacity(parts);
    for part in 0..parts {
        let mut cmd = Command::new("/proc/self/exe");
        cmd.arg0(&exe)
            .arg("load")
            .args(args)
            .args(["--json", "--quiet", "--worker-part", &format!("{part}/{parts}")])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            // Signals come from this process only: a Ctrl-C to the terminal's process group
            // plus ours would be a second signal, which stops a run without a report.
            .process_group(0);
        let parent = std::process::id();
        // SAFETY: the closure only makes async-signal-safe calls (prctl, getppid).
        unsafe {
            cmd.pre_exec(move || {
                // A part whose parent died stops (and reports to no one) instead of loading on.
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) == -1
                    || libc::getppid() as u32 != parent
                {
                    return Err(io::Error::other("the parent load process is gone"));
                }
                Ok(())
            });
        }
        let mut child = cmd.spawn()?;
        let mut stdout = child.stdout.take().expect("piped");
        readers.push(std::thread::spawn(move || {
            let mut out = String::new();
            let _ = stdout.read_to_string(&mut out);
            out
        }));
        children.push(child);
    }
    let signal = Arc::new(AtomicUsize::new(0));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        let flag = Arc::clone(&signal);
        // SAFETY: the handler only stores to an atomic.
        unsafe {
            signal_hook::low_level::register(sig, move || flag.store(sig as usize, Ordering::Relaxed))
        }?;
    }
    let mut statuses = vec![None; parts];
    let mut forwarded = false;
    while statuses.iter().any(Option::is_none) {
        let sig = signal.load(Ordering::Relaxed);
        if sig != 0 && !forwarded {
            forwarded = true;
            for child in &children {
                // SAFETY: kill(2) on our own, unreaped children.
                unsafe { libc::kill(child.id() as i32, sig as i32) };
            }
        }
        for (child, status) in children.iter_mut().zip(&mut statuses) {
            if status.is_none() {
                *status = child.try_wait()?;
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let outputs: Vec<String> = readers.into_iter().map(|r| r.join().unwrap_or_default()).collect();
    let mut parsed = Vec::with_capacity(parts);
    let mut problems = Vec::new();
    for (part, (out, status)) in outputs.iter().zip(&statuses).enumerate() {
        match serde_json::from_str::<Value>(out.trim()) {
            Ok(v) if v.get("report").is_some() => parsed.push((part, v)),
            _ => problems.push(format!(
                "process {part} of {parts} reported nothing ({}): see its errors above",
                status.map_or_else(|| "?".into(), |s| s.to_string())
            )),
        }
    }
    Ok(merge(mode, target, parts, &parsed, problems))
}

/// One report from the reports of the processes of a split run.
fn merge(
    mode: &'static str,
    target: &str,
    parts: usize,
    reports: &[(usize, Value)],
    mut problems: Vec<String>,
) -> Report {
    let num = |v: &Value, path: &[&str]| -> f64 {
        path.iter().try_fold(v, |v, k| v.get(k)).and_then(Value::as_f64).unwrap_or(0.0)
    };
    let count = |v: &Value, path: &[&str]| -> u64 {
        path.iter().try_fold(v, |v, k| v.get(k)).and_then(Value::as_u64).unwrap_or(0)
    };
    let sum = |path: &[&str]| reports.iter().map(|(_, v)| count(v, path)).sum::<u64>();
    let max = |path: &[&str]| reports.iter().map(|(_, v)| num(v, path)).fold(0.0, f64::max);
    let merged = |key: &str| {
        let mut all: Option<Histogram<u64>> = None;
        for (_, v) in reports {
            if let Some(h) = v.get("histograms").and_then(|h| h.get(key)).and_then(histogram_from) {
                match &mut all {
                    Some(a) => {
                        let _ = a.add(&h);
                    }
                    None => all = Some(h),
                }
            }
        }
        all
    };
    let by_cause = |key: &str| {
        let mut out: BTreeMap<String, u64> = BTreeMap::new();
        for (_, v) in reports {
            if let Some(map) = v["report"]["connections"][key].as_object() {
                for (cause, n) in map {
                    *out.entry(cause.clone()).or_default() += n.as_u64().unwrap_or(0);
                }
            }
        }
        out
    };
    let first_text = |path: &[&str]| {
        reports.iter().find_map(|(_, v)| {
            path.iter().try_fold(v, |v, k| v.get(k)).and_then(Value::as_str).map(str::to_string)
        })
    };
    for (part, v) in reports {
        for p in v["report"]["problems"].as_array().into_iter().flatten() {
            problems.push(format!("process {part} of {parts}: {}", p.as_str().unwrap_or("?")));
        }
    }
    let duration_s = max(&["report", "duration_s"]);
    let ramp_up_s = max(&["report", "ramp_up_s"]);
    let seconds = max(&["seconds"]);
    let completed = sum(&["completed"]);
    let established = sum(&["report", "connections", "established"]);
    let sources: Vec<String> = reports
        .iter()
        .map(|(part, v)| {
            format!("{part}: {}", v["report"]["connections"]["sources"].as_str().unwrap_or("default"))
        })
        .collect();
    let latency = merged("latency");
    let connect_time = merged("connect_time");
    let send_delay = merged("send_delay");
    let details = match mode {
        "echo" => {
            let messages_sent = sum(&["report", "echo", "messages_sent"]);
            ModeReport::Echo(EchoReport {
                size: count(
                    &reports.first().map_or(Value::Null, |r| r.1.clone()),
                    &["report", "echo", "size"],
                ) as usize,
                pipeline: count(
                    &reports.first().map_or(Value::Null, |r| r.1.clone()),
                    &["report", "echo", "pipeline"],
                ) as usize,
                rate: sum(&["report", "echo", "rate"]),
                bytes_sent: sum(&["report", "echo", "bytes_sent"]),
                bytes_received: sum(&["report", "echo", "bytes_received"]),
                corrupt_connections: sum(&["report", "echo", "corrupt_connections"]),
                first_corruption: first_text(&["report", "echo", "first_corruption"]),
                zero_round_trip_connections: sum(&["report", "echo", "zero_round_trip_connections"]),
                messages_sent,
                messages_per_s: per_second(messages_sent, duration_s),
                behind_schedule: sum(&["report", "echo", "behind_schedule"]),
                send_delay: send_delay.as_ref().and_then(percentiles_of),
            })
        }
        _ => ModeReport::Idle(IdleReport { bytes_received: sum(&["report", "idle", "bytes_received"]) }),
    };
    let latency_from = match first_text(&["report", "latency_measured_from"]).as_deref() {
        Some("scheduled_send") => Some(LatencyFrom::ScheduledSend),
        Some("actual_send") => Some(LatencyFrom::ActualSend),
        _ => None,
    };
    Report {
        mode,
        target: target.to_string(),
        duration_s,
        ramp_up_s,
        connections: ConnectionReport {
            requested: sum(&["report", "connections", "requested"]),
            attempted: sum(&["report", "connections", "attempted"]),
            established,
            failed: sum(&["report", "connections", "failed"]),
            failures: by_cause("failures"),
            dropped: sum(&["report", "connections", "dropped"]),
            drops: by_cause("drops"),
            open_at_end: sum(&["report", "connections", "open_at_end"]),
            connects_per_s: per_second(established, ramp_up_s),
            connect_time: connect_time.as_ref().and_then(percentiles_of),
            limit: first_text(&["report", "connections", "limit"]),
            sources: Some(format!("{parts} processes; {}", sources.join("; "))),
        },
        completed,
        completed_per_s: per_second(completed, seconds),
        bytes_per_s: per_second(sum(&["bytes"]), seconds),
        latency: latency.as_ref().and_then(percentiles_of),
        latency_from,
        details,
        problems,
        interrupted: reports.iter().any(|(_, v)| v["report"]["interrupted"].as_bool() == Some(true)),
        histograms: Histograms { latency, connect_time, send_delay },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_add_up_and_differ_by_at_most_one() {
        for (total, parts) in [(100_000u64, 6usize), (7, 3), (5, 5), (0, 2)] {
            let shares: Vec<u64> = (0..parts).map(|p| split(total, p, parts)).collect();
            assert_eq!(shares.iter().sum::<u64>(), total, "{shares:?}");
            assert!(shares.iter().max().unwrap() - shares.iter().min().unwrap() <= 1, "{shares:?}");
        }
        assert!(share_of(&Mode::Idle { connections: 2 }, 2, 3).is_err(), "a process with nothing to do");
    }

    #[test]
    fn histograms_survive_the_trip_and_merge_into_the_percentiles_of_all_samples() {
        let (mut a, mut b, mut all) = (new_histogram(), new_histogram(), new_histogram());
        for v in 1..=1000u64 {
            a.record(v * 1000).unwrap();
            all.record(v * 1000).unwrap();
        }
        for v in 1..=10u64 {
            b.record(v * 1_000_000).unwrap();
            all.record(v * 1_000_000).unwrap();
        }
        let mut merged = histogram_from(&histogram_json(&a)).unwrap();
        merged.add(histogram_from(&histogram_json(&b)).unwrap()).unwrap();
        assert_eq!(percentiles_of(&merged), percentiles_of(&all));
        // An average of the two p99s would be ~5 ms; the merged p99 is the true one.
        assert!(percentiles_of(&merged).unwrap().p99 < 1100.0);
    }
}
