#!/usr/bin/env python3
"""netloop against Node.js, side by side: every scenario, one command.

    python3 bench/run.py [--quick] [--reps N] [--only SCENARIO,...] [--netloop PATH] [--load PATH]

Builds the release binary, runs each scenario against `netloop serve` and the Node reference
servers in bench/node/ (server on CPU 0, load on CPU 1, alternating A/B), and writes
docs/benchmarks.md and docs/benchmarks.svg. See bench/README.md for what each figure means.

Python 3.11 standard library only. Every process it starts is killed before it exits.
"""

from __future__ import annotations

import argparse
import datetime
import fnmatch
import json
import math
import os
import re
import resource
import selectors
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
NODE_DIR = REPO / "bench" / "node"
DEFAULT_BIN = str(REPO / "target" / "release" / "netloop")  # /work/main/target/release/netloop here
CLK_TCK = os.sysconf("SC_CLK_TCK")
SERVER_CPU = 0
LOAD_CPU = 1
HOST = "127.0.0.1"
MiB = 1024 * 1024

# Durations (seconds) and sizes. The full run stays well under 25 minutes on 2 cores; --quick
# is a smoke test of the runner itself and its figures mean little.
FULL = dict(reps=3, echo_s=10.0, c1000_s=5.0, fanout_s=10.0, idle_n=10_000, idle_window_s=5.0,
            neverread_s=10.0, startup_reps=10, flat_s=3.0)
QUICK = dict(reps=1, echo_s=2.0, c1000_s=2.0, fanout_s=2.0, idle_n=2_000, idle_window_s=1.0,
             neverread_s=3.0, startup_reps=3, flat_s=2.0)

# Fan-out flat out (`-r 0`, 16 KiB): R receivers, S senders, default limits or --max-buffer 1m.
# netloop only: the point is that its output limits never cut a reader that keeps up (Node has
# no limit, and buffers without bound instead).
FLAT = [f"flat-{proto}-r{r}-s{s}{limit}" for limit in ("", "-1m") for proto in ("chat", "hub")
        for r in (4, 100) for s in (1, 8)]
NETLOOP_ONLY = {"binary", *FLAT}

SCENARIOS = ["echo-c100", "echo-c1000", "pipelined", "echo-64k", "idle-10k", "idle-max",
             "fanout-chat", "fanout-hub", "neverread", *FLAT, "startup", "binary"]
OPTIONAL = ["neverread-hub"]  # run only with --only
IMPLS = ["netloop", "node"]

# --------------------------------------------------------------------------------------------
# Process bookkeeping: everything we spawn is registered and killed on the way out.

_children: list[subprocess.Popen] = []


def _register(p: subprocess.Popen) -> subprocess.Popen:
    _children.append(p)
    return p


def kill_all() -> None:
    for p in _children:
        if p.poll() is None:
            try:
                p.kill()
            except ProcessLookupError:
                pass
    for p in _children:
        try:
            p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
    _children.clear()


def _on_term(signum, _frame):
    raise KeyboardInterrupt(f"signal {signum}")


def child_env() -> dict:
    """The environment servers and the load run in: defaults, no debug logging or Node flags."""
    env = dict(os.environ)
    for k in ("RUST_LOG", "NODE_OPTIONS", "NODE_DEBUG", "UV_THREADPOOL_SIZE"):
        env.pop(k, None)
    return env


# --------------------------------------------------------------------------------------------
# /proc

def cpu_ticks(pid: int) -> int:
    """utime + stime of the whole process (all threads), in clock ticks."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        data = f.read()
    fields = data[data.rindex(b")") + 2:].split()
    return int(fields[11]) + int(fields[12])


def rss_bytes(pid: int, key: str = "VmRSS") -> int:
    """VmRSS (or RssAnon, RssFile) of a process, in bytes."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {key} for {pid}")


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def cpu_busy_ticks() -> dict[int, int]:
    """Busy ticks (everything but idle and iowait) of each CPU, from /proc/stat."""
    out = {}
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith("cpu") and line[3].isdigit():
                name, *v = line.split()
                v = [int(x) for x in v]
                out[int(name[3:])] = sum(v[:8]) - v[3] - v[4]  # user..steal minus idle, iowait
    return out


class Sampler(threading.Thread):
    """Samples a server's CPU ticks (and RSS) every `every` seconds with a monotonic time, so
    the CPU spent inside any window can be read off afterwards."""

    def __init__(self, pid: int, every: float = 0.02, rss: bool = False, machine: bool = False):
        super().__init__(daemon=True)
        self.pid, self.every, self.want_rss, self.want_machine = pid, every, rss, machine
        self.samples: list[tuple[float, int, int]] = []  # (t, ticks, rss or 0)
        self.cpus: list[tuple[float, dict[int, int]]] = []  # (t, busy ticks per CPU)
        self._halt = threading.Event()

    def sample(self) -> None:
        try:
            t = time.monotonic()
            ticks = cpu_ticks(self.pid)
            rss = rss_bytes(self.pid) if self.want_rss else 0
            self.samples.append((t, ticks, rss))
            if self.want_machine:
                self.cpus.append((t, cpu_busy_ticks()))
        except (FileNotFoundError, ProcessLookupError, ValueError):
            pass

    def run(self) -> None:
        while not self._halt.is_set():
            self.sample()
            self._halt.wait(self.every)

    def stop(self) -> None:
        self._halt.set()
        if self.is_alive():
            self.join(timeout=2)
        self.sample()

    def ticks_at(self, t: float) -> float:
        """CPU ticks at time t, interpolated between the samples around it."""
        s = self.samples
        if not s:
            raise RuntimeError("no CPU samples")
        if t <= s[0][0]:
            return s[0][1]
        if t >= s[-1][0]:
            return s[-1][1]
        lo, hi = 0, len(s) - 1
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if s[mid][0] <= t:
                lo = mid
            else:
                hi = mid
        (t0, c0, _), (t1, c1, _) = s[lo], s[hi]
        return c0 if t1 == t0 else c0 + (c1 - c0) * (t - t0) / (t1 - t0)

    def cpu_seconds(self, t0: float, t1: float) -> float:
        return (self.ticks_at(t1) - self.ticks_at(t0)) / CLK_TCK

    def cpu_busy_pct(self, cpu: int, t0: float, t1: float) -> float | None:
        """How busy CPU `cpu` was between t0 and t1 (all processes and interrupts), in %."""
        inside = [(t, c[cpu]) for t, c in self.cpus if cpu in c]
        before = [x for x in inside if x[0] <= t0]
        after = [x for x in inside if x[0] >= t1]
        if not before or not after or after[0][0] <= before[-1][0]:
            return None
        (ta, ca), (tb, cb) = before[-1], after[0]
        return 100 * (cb - ca) / CLK_TCK / (tb - ta)


# --------------------------------------------------------------------------------------------
# Servers

@dataclass
class Server:
    impl: str
    service: str  # echo | chat | hub
    argv: list[str]
    proc: subprocess.Popen | None = None
    port: int = 0
    spawned_at: float = 0.0
    listening_at: float = 0.0
    stderr_path: str = ""
    # CPUs the server may run on; None: CPU 0 (SERVER_CPU). Workers get every core.
    cpus: set[int] | None = None
    _lines: list[str] = field(default_factory=list)
    _line_event: threading.Event = field(default_factory=threading.Event)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def addr(self) -> str:
        return f"{HOST}:{self.port}"

    def start(self, timeout: float = 15.0) -> None:
        err = tempfile.NamedTemporaryFile(prefix=f"bench-{self.impl}-{self.service}-", suffix=".log",
                                          delete=False)
        self.stderr_path = err.name
        # The server inherits the CPU affinity of the thread that spawns it: set CPU 0 for the
        # spawn (same as `taskset -c 0`, without an extra exec inside the start-up time).
        before = os.sched_getaffinity(0)
        os.sched_setaffinity(0, self.cpus or {SERVER_CPU})
        try:
            self.spawned_at = time.monotonic()
            self.proc = _register(subprocess.Popen(
                self.argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err,
                env=child_env(), cwd=REPO))
        finally:
            os.sched_setaffinity(0, before)
            err.close()
        threading.Thread(target=self._read_stdout, daemon=True).start()
        if not self._line_event.wait(timeout):
            self.stop()
            raise RuntimeError(f"{self.impl} {self.service}: no listening line within {timeout}s; "
                               f"stderr: {self.stderr_tail()}")
        line = self._lines[0]
        m = re.match(rf"^{self.service} listening on (\S+):(\d+)$", line)
        if not m:
            self.stop()
            raise RuntimeError(f"{self.impl}: unexpected first line {line!r}; stderr: {self.stderr_tail()}")
        self.port = int(m.group(2))

    def _read_stdout(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for raw in self.proc.stdout:
            if not self._lines:
                self.listening_at = time.monotonic()
            self._lines.append(raw.decode(errors="replace").rstrip("\n"))
            self._line_event.set()
        self._line_event.set()  # EOF: wake the waiter (it will find no line)
        if not self._lines:
            self._lines.append("<stdout closed without a line>")

    def stderr_tail(self, n: int = 600) -> str:
        try:
            return Path(self.stderr_path).read_text(errors="replace")[-n:].strip() or "(empty)"
        except OSError:
            return "(unreadable)"

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        p = self.proc
        if p is not None and p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout=1.5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=5)
        if p is not None and p in _children:
            _children.remove(p)
        if self.stderr_path:
            try:
                os.unlink(self.stderr_path)
            except OSError:
                pass
            self.stderr_path = ""


def server_argv(cfg: "Config", impl: str, service: str, extra: tuple[str, ...] = ()) -> list[str]:
    addr = f"{HOST}:0"
    if impl == "netloop":
        return [cfg.netloop, "serve", f"--{service}", addr, *extra]
    return [cfg.node, str(NODE_DIR / f"{service}.js"), "--listen", addr]


def start_server(cfg: "Config", impl: str, service: str, extra: tuple[str, ...] = ()) -> Server:
    s = Server(impl, service, server_argv(cfg, impl, service, extra))
    s.start()
    return s


def wait_connectable(port: int, timeout: float = 10.0) -> float:
    """Connects (and closes) until one connect succeeds; returns the time it did."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((HOST, port), timeout=1.0):
                return time.monotonic()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.0005)


# --------------------------------------------------------------------------------------------
# netloop load

class LoadRun:
    """One `netloop load` process on CPU 1 with --json; stdout is the report."""

    def __init__(self, cfg: "Config", args: list[str]):
        self.argv = ["taskset", "-c", str(LOAD_CPU), cfg.load, "load", *args, "--json"]
        self.err = tempfile.TemporaryFile()
        self.out = tempfile.TemporaryFile()
        self.started_at = time.monotonic()
        self.proc = _register(subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=self.out,
                                               stderr=self.err, env=child_env(), cwd=REPO))

    def wait(self, timeout: float) -> dict:
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise RuntimeError(f"load did not finish within {timeout:.0f}s: {self.stderr_tail()}")
        finally:
            self.ended_at = time.monotonic()
            if self.proc in _children:
                _children.remove(self.proc)
        self.out.seek(0)
        text = self.out.read().decode(errors="replace").strip()
        start = text.find("{")
        if start < 0:
            raise RuntimeError(f"load printed no JSON (exit {self.proc.returncode}): {self.stderr_tail()}")
        try:
            return json.loads(text[start:])
        except json.JSONDecodeError as e:
            raise RuntimeError(f"load printed bad JSON ({e}): {text[:300]!r}") from None

    def kill(self) -> None:
        """Stops the generator if it is still running (a scenario that failed part-way)."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def interrupt(self, timeout: float = 30.0) -> dict:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        return self.wait(timeout)

    def ramped_up(self) -> bool:
        """True once the progress line shows the measured phase (or the drain after it)."""
        self.err.seek(0)
        lines = self.err.read().decode(errors="replace").splitlines()
        return any(re.match(r"^\[\d+s\] (conns|draining)", ln) for ln in lines[-3:])

    def stderr_tail(self, n: int = 600) -> str:
        self.err.seek(0)
        return self.err.read().decode(errors="replace")[-n:].strip() or "(empty)"


def window_of(run: LoadRun, rep: dict, include_drain: bool = False) -> tuple[float, float]:
    """The load's measured window on our monotonic clock: it starts when every connection is
    ready (`ramp_up_s` after the load's clock started, a few ms after spawn) and lasts
    `duration_s` (plus `drain_s` for fan-out, when the last deliveries of the window arrive)."""
    t0 = run.started_at + float(rep.get("ramp_up_s") or 0.0)
    length = float(rep.get("duration_s") or 0.0)
    if include_drain:
        length += float((rep.get("fanout") or {}).get("drain_s") or 0.0)
    return t0, min(t0 + length, run.ended_at)


def quiet_check(sampler: Sampler, server_cpu: float, load_cpu: float, t0: float, t1: float) -> list[str]:
    """Notes when CPU 0 or CPU 1 did much besides the server and the load in the window:
    other processes (or ksoftirqd) took time the figures assume was theirs."""
    notes = []
    for cpu, own, who in ((SERVER_CPU, server_cpu, "the server"), (LOAD_CPU, load_cpu, "the load")):
        busy = sampler.cpu_busy_pct(cpu, t0, t1)
        if busy is None or t1 <= t0:
            continue
        other = busy - 100 * own / (t1 - t0)
        if other > 10:
            notes.append(f"machine not quiet: CPU {cpu} spent {other:.0f}% of the window on other "
                         f"work than {who} (busy {busy:.0f}%)")
    return notes


def load_problems(rep: dict) -> list[str]:
    out = list(rep.get("problems") or [])
    failed = (rep.get("connections") or {}).get("failed") or 0
    if failed and not any("fail" in p for p in out):
        out.append(f"{failed} connections failed: {rep['connections'].get('failures')}")
    return out


# --------------------------------------------------------------------------------------------
# Scenarios. Each runs one repetition against one server and returns {metric: value}, plus
# "_notes" (list of strings) and "_cmd" (the commands, with the port as PORT).

@dataclass
class Config:
    netloop: str
    load: str
    node: str
    quick: bool
    reps: int
    d: dict
    max_buffer: int  # netloop's per-connection output hard limit (its default)
    idle_max_n: int


def cmdline(argv: list[str], port: int) -> str:
    s = " ".join(shlex.quote(a) for a in argv).replace(f"{HOST}:{port}", "127.0.0.1:PORT")
    return s.replace(str(REPO) + "/", "")


def sampled_load(cfg: Config, srv: Server, args: list[str], timeout: float, include_drain: bool = False):
    """Runs `netloop load ARGS` to completion with the server's and the generator's CPU sampled.
    Returns (run, report, t0, t1, server CPU s, load CPU s, quiet-machine notes) for the
    measured window [t0, t1]."""
    sampler = Sampler(srv.pid, machine=True)
    sampler.start()
    run = load_sampler = None
    try:
        run = LoadRun(cfg, args)
        load_sampler = Sampler(run.proc.pid)
        load_sampler.start()
        rep = run.wait(timeout=timeout)
    finally:
        sampler.stop()
        if load_sampler is not None:
            load_sampler.stop()
        if run is not None:
            run.kill()
    t0, t1 = window_of(run, rep, include_drain=include_drain)
    cpu = sampler.cpu_seconds(t0, t1)
    load_cpu = load_sampler.cpu_seconds(t0, t1)
    return run, rep, t0, t1, cpu, load_cpu, quiet_check(sampler, cpu, load_cpu, t0, t1)


def run_echo_load(cfg: Config, impl: str, conns: int, size: int, pipeline: int, secs: float) -> dict:
    srv = start_server(cfg, impl, "echo")
    try:
        args = ["echo", srv.addr, "-c", str(conns), "--size", str(size), "--pipeline", str(pipeline),
                "-T", f"{secs:g}s"]
        run, rep, t0, t1, cpu, load_cpu, quiet = sampled_load(cfg, srv, args, timeout=secs + 90)
        rts = rep.get("round_trips") or 0
        lat = rep.get("latency_us") or {}
        echo = rep.get("echo") or {}
        out = {
            "cpu_per_msg_us": cpu * 1e6 / rts if rts else None,
            "msgs_per_s": rep.get("round_trips_per_s"),
            "server_cpu_pct": 100 * cpu / (t1 - t0) if t1 > t0 else None,
            "load_cpu_pct": 100 * load_cpu / (t1 - t0) if t1 > t0 else None,
            "p99_us": lat.get("p99"),
            "max_us": lat.get("max"),
            "max_over_p99": (lat["max"] / lat["p99"]) if lat.get("p99") else None,
            "zero_rt_conns": echo.get("zero_round_trip_connections"),
            "established": (rep.get("connections") or {}).get("established"),
            "_notes": load_problems(rep) + quiet,
            "_cmd": [cmdline(srv.argv, srv.port), cmdline(run.argv, srv.port)],
        }
        if not srv.alive():
            out["_notes"].append(f"server exited during the run: {srv.stderr_tail()}")
        return out
    finally:
        srv.stop()


def sc_echo_c100(cfg, impl):
    return run_echo_load(cfg, impl, 100, 64, 1, cfg.d["echo_s"])


def sc_echo_c1000(cfg, impl):
    return run_echo_load(cfg, impl, 1000, 64, 1, cfg.d["c1000_s"])


def sc_pipelined(cfg, impl):
    return run_echo_load(cfg, impl, 100, 64, 16, cfg.d["echo_s"])


def sc_echo_64k(cfg, impl):
    return run_echo_load(cfg, impl, 10, 64 * 1024, 1, cfg.d["echo_s"])


def run_idle(cfg: Config, impl: str, n: int) -> dict:
    window = cfg.d["idle_window_s"]
    srv = start_server(cfg, impl, "echo")
    run = None
    try:
        time.sleep(0.5)  # let the server settle after start-up
        rss0, fds0 = rss_bytes(srv.pid), open_fds(srv.pid)
        hold = 60 + 2 * window  # the load is interrupted once we have measured
        run = LoadRun(cfg, ["idle", srv.addr, "-c", str(n), "-T", f"{hold:g}s"])
        # Wait until the server holds all N (counted from its open fds) or the load's ramp-up
        # is over (its progress line leaves "connecting": every connect succeeded or failed,
        # failures time out after 10 s), bounded by 90 s.
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and run.proc.poll() is None and srv.alive():
            if open_fds(srv.pid) - fds0 >= n or run.ramped_up():
                break
            time.sleep(0.2)
        time.sleep(1.0)  # settle: the last accepts done, nothing in flight
        held = open_fds(srv.pid) - fds0
        c0, t0 = cpu_ticks(srv.pid), time.monotonic()
        time.sleep(window)
        c1, t1 = cpu_ticks(srv.pid), time.monotonic()
        rss1 = rss_bytes(srv.pid)
        held_end = open_fds(srv.pid) - fds0
        rep = run.interrupt(timeout=60)
        notes = []
        if held_end < n:
            conns = rep.get("connections") or {}
            notes.append(f"held {held_end} of {n} (load: established {conns.get('established')}, "
                         f"failures {conns.get('failures')}, limit {conns.get('limit')})")
        conns = rep.get("connections") or {}
        return {
            "held": held_end,
            "ramp_s": rep.get("ramp_up_s"),
            "connects_per_s": conns.get("connects_per_s"),
            "rss_before": rss0,
            "rss_idle": rss1,
            "bytes_per_conn": (rss1 - rss0) / held_end if held_end else None,
            "idle_cpu_ms_per_s": 1000 * (c1 - c0) / CLK_TCK / (t1 - t0),
            "_notes": notes,
            "_cmd": [cmdline(srv.argv, srv.port), cmdline(run.argv, srv.port)],
        }
    finally:
        if run is not None:
            run.kill()
        srv.stop()


def sc_idle_10k(cfg, impl):
    return run_idle(cfg, impl, cfg.d["idle_n"])


def sc_idle_max(cfg, impl):
    return run_idle(cfg, impl, cfg.idle_max_n)


def run_fanout(cfg: Config, impl: str, protocol: str) -> dict:
    secs = cfg.d["fanout_s"]
    srv = start_server(cfg, impl, protocol)
    try:
        args = ["fanout", srv.addr, "--protocol", protocol, "--receivers", "1000", "--senders", "1",
                "-r", "1000", "-T", f"{secs:g}s"]
        run, rep, t0, t1, cpu, load_cpu, quiet = sampled_load(cfg, srv, args, timeout=secs + 120,
                                                              include_drain=True)
        f = rep.get("fanout") or {}
        deliveries = f.get("deliveries") or rep.get("round_trips") or 0
        lat = rep.get("latency_us") or {}
        return {
            # Deliveries over sending + draining: the load's own deliveries_per_s divides by the
            # sending window only, which flatters a server that falls behind and catches up later.
            "deliveries_per_s": deliveries / (t1 - t0) if t1 > t0 else None,
            "cpu_per_delivery_us": cpu * 1e6 / deliveries if deliveries else None,
            "p99_us": lat.get("p99"),
            "p50_us": lat.get("p50"),
            "max_us": lat.get("max"),
            "lost": f.get("lost"),
            "undelivered": f.get("undelivered"),
            "server_cpu_pct": 100 * cpu / (t1 - t0) if t1 > t0 else None,
            "load_cpu_pct": 100 * load_cpu / (t1 - t0) if t1 > t0 else None,
            "_notes": load_problems(rep) + quiet,
            "_cmd": [cmdline(srv.argv, srv.port), cmdline(run.argv, srv.port)],
        }
    finally:
        srv.stop()


def sc_fanout_chat(cfg, impl):
    return run_fanout(cfg, impl, "chat")


def sc_fanout_hub(cfg, impl):
    return run_fanout(cfg, impl, "hub")


def last_stats(srv: Server) -> dict[str, int]:
    """The counters of netloop's last `stats:` log line (`--stats-interval`), by name."""
    tail = srv.stderr_tail(4000)
    at = tail.rfind("stats:")
    if at < 0:
        return {}
    line = tail[at:].splitlines()[0]
    return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", line)}


def run_flat(cfg: Config, impl: str, scenario: str) -> dict:
    m = re.fullmatch(r"flat-(chat|hub)-r(\d+)-s(\d+)(-1m)?", scenario)
    protocol, receivers, senders, small = m.group(1), m.group(2), m.group(3), m.group(4)
    secs = cfg.d["flat_s"]
    extra = ("--stats-interval", "500ms") + (("--max-buffer", "1m") if small else ())
    srv = start_server(cfg, impl, protocol, extra)
    try:
        args = ["fanout", srv.addr, "--protocol", protocol, "--receivers", receivers, "--senders", senders,
                "-r", "0", "--size", "16k", "-T", f"{secs:g}s", "--drain-timeout", "20s"]
        run, rep, t0, t1, cpu, load_cpu, quiet = sampled_load(cfg, srv, args, timeout=secs + 120,
                                                              include_drain=True)
        time.sleep(0.6)  # one more stats line, covering the end of the run
        st = last_stats(srv)
        f = rep.get("fanout") or {}
        conns = rep.get("connections") or {}
        lat = rep.get("latency_us") or {}
        deliveries = f.get("deliveries") or 0
        sent = f.get("messages_sent") or 0
        dur = float(rep.get("duration_s") or 0.0)
        notes = load_problems(rep) + quiet
        if not st:
            notes.append("no stats line from the server")
        return {
            "sent_per_s": sent / dur if dur else None,
            "sent_mb_per_s": sent * 16384 / dur / 1e6 if dur else None,
            "deliveries_per_s": deliveries / (t1 - t0) if t1 > t0 else None,
            "p50_us": lat.get("p50"),
            "p99_us": lat.get("p99"),
            "cut": st.get("output_limit"),
            "dropped": conns.get("dropped"),
            "lost": f.get("lost"),
            "undelivered": f.get("undelivered"),
            "out_of_order": (f.get("reordered") or 0) + (f.get("duplicated") or 0),
            "problems": sum(v or 0 for v in (st.get("output_limit"), conns.get("dropped"), f.get("lost"),
                                             f.get("undelivered"), f.get("reordered"), f.get("duplicated")))
            if st else None,
            "stalls": st.get("sender_stalls"),
            "stall_ms_per_stall": (st["sender_stall_ms"] / st["sender_stalls"])
            if st.get("sender_stalls") else None,
            "cpu_per_delivery_us": cpu * 1e6 / deliveries if deliveries else None,
            "server_cpu_pct": 100 * cpu / (t1 - t0) if t1 > t0 else None,
            "load_cpu_pct": 100 * load_cpu / (t1 - t0) if t1 > t0 else None,
            "_notes": notes,
            "_cmd": [cmdline(srv.argv, srv.port), cmdline(run.argv, srv.port)],
        }
    finally:
        srv.stop()


NEVERREAD_CLIENTS = 100
BLAST_SIZE = 64 * 1024  # bytes per message on the wire, newline included
RSS_CAP = 6 * 1024 * MiB  # stop blasting if a server passes this (the machine has to survive)


def blast_message(protocol: str) -> bytes:
    if protocol == "chat":
        return b"x" * (BLAST_SIZE - 1) + b"\n"
    head, tail = b'{"type":"broadcast","message":"', b'"}\n'
    return head + b"x" * (BLAST_SIZE - len(head) - len(tail)) + tail


def run_neverread(cfg: Config, impl: str, protocol: str) -> dict:
    """100 clients that connect and never read; one sender writes 64 KiB messages as fast as
    the server takes them for the window; the server's RSS is sampled every second."""
    secs = cfg.d["neverread_s"]
    srv = start_server(cfg, impl, protocol)
    socks: list[socket.socket] = []
    try:
        time.sleep(0.3)
        rss0, fds0 = rss_bytes(srv.pid), open_fds(srv.pid)
        for _ in range(NEVERREAD_CLIENTS):
            socks.append(socket.create_connection((HOST, srv.port), timeout=5))
        sender = socket.create_connection((HOST, srv.port), timeout=5)
        socks.append(sender)
        time.sleep(0.3)  # all accepted, greetings exchanged
        msg = memoryview(blast_message(protocol))
        stop = threading.Event()
        series: list[tuple[float, int]] = []
        sent = {"messages": 0, "bytes": 0, "closed": ""}

        def blaster():
            sender.setblocking(False)
            sel = selectors.DefaultSelector()
            sel.register(sender, selectors.EVENT_READ | selectors.EVENT_WRITE)
            off = 0
            try:
                while not stop.is_set():
                    for _key, ev in sel.select(timeout=0.1):
                        if ev & selectors.EVENT_READ:  # notices to the sender: read and drop
                            try:
                                if not sender.recv(1 << 16):
                                    sent["closed"] = "server closed the sender"
                                    return
                            except BlockingIOError:
                                pass
                        if ev & selectors.EVENT_WRITE:
                            try:
                                n = sender.send(msg[off:])
                            except BlockingIOError:
                                continue
                            sent["bytes"] += n
                            off += n
                            if off == len(msg):
                                off = 0
                                sent["messages"] += 1
            except OSError as e:
                sent["closed"] = f"sender: {e}"
            finally:
                sel.close()

        t_start = time.monotonic()
        ticks0 = cpu_ticks(srv.pid)
        th = threading.Thread(target=blaster, daemon=True)
        th.start()
        # RSS every second for the series; every 0.1 s for the peak, so a spike between two
        # whole seconds is not missed.
        capped, peak = False, 0
        for i in range(int(round(secs * 10)) + 1):
            time.sleep(max(0.0, t_start + i / 10 - time.monotonic()))
            if not srv.alive():
                break
            r = rss_bytes(srv.pid)
            peak = max(peak, r - rss0)
            if i % 10 == 0:
                series.append((time.monotonic() - t_start, r - rss0))
            if r > RSS_CAP:
                capped = True
                break
        stop.set()
        th.join(timeout=5)
        cpu_s = (cpu_ticks(srv.pid) - ticks0) / CLK_TCK if srv.alive() else None
        held = open_fds(srv.pid) - fds0 - 1 if srv.alive() else 0  # minus the sender
        growth = [g for _, g in series]
        half = len(growth) // 2
        notes = []
        if capped:
            notes.append(f"stopped early: server RSS passed {RSS_CAP // MiB} MiB")
        if sent["closed"]:
            notes.append(sent["closed"])
        if not srv.alive():
            notes.append(f"server exited: {srv.stderr_tail()}")
        return {
            "rss_growth_peak": peak if growth else None,
            "rss_growth_end": growth[-1] if growth else None,
            "rss_growth_2nd_half": (growth[-1] - growth[half]) if len(growth) > 2 else None,
            "blast_mb_per_s": sent["bytes"] / 1e6 / max(1e-9, time.monotonic() - t_start),
            "cpu_per_msg_us": (1e6 * cpu_s / sent["messages"]) if cpu_s is not None and sent["messages"] else None,
            "neverreaders_left": max(0, min(NEVERREAD_CLIENTS, held)),
            "rss_before": rss0,
            "_series": series,
            "_notes": notes,
            "_cmd": [cmdline(srv.argv, srv.port),
                     f"python3 bench/run.py --only {'neverread' if protocol == 'chat' else 'neverread-hub'}"
                     f"  # {NEVERREAD_CLIENTS} clients that never read + 1 sender of "
                     f"{BLAST_SIZE} B {protocol} messages for {secs:g}s, from bench/run.py itself"],
        }
    finally:
        for s in socks:
            try:
                s.close()
            except OSError:
                pass
        srv.stop()


def sc_neverread(cfg, impl):
    return run_neverread(cfg, impl, "chat")


def sc_neverread_hub(cfg, impl):
    return run_neverread(cfg, impl, "hub")


def sc_startup(cfg, impl):
    """Two spawns: (a) spawn -> the listening line AND one successful connect, then RSS half a
    second after that connection closed; (b) RSS half a second after the listening line, with
    no connection ever made (the "RSS at start" of the targets)."""
    srv = Server(impl, "echo", server_argv(cfg, impl, "echo"))
    try:
        srv.start()
        connected = wait_connectable(srv.port)
        line_ms = 1000 * (srv.listening_at - srv.spawned_at)
        time.sleep(0.5)
        rss_conn = rss_bytes(srv.pid)
    finally:
        srv.stop()
    srv2 = Server(impl, "echo", server_argv(cfg, impl, "echo"))
    try:
        srv2.start()
        time.sleep(max(0.0, srv2.listening_at + 0.5 - time.monotonic()))
        rss_start = rss_bytes(srv2.pid)
        anon_start = rss_bytes(srv2.pid, "RssAnon")
    finally:
        srv2.stop()
    return {
        "start_ms": 1000 * (connected - srv.spawned_at),
        "line_ms": line_ms,
        "rss_start": rss_start,
        "anon_start": anon_start,
        "rss_one_conn": rss_conn,
        "_notes": [],
        "_cmd": [cmdline(srv.argv, srv.port)],
    }


def elf_is_stripped(path: str) -> bool | None:
    """True when the ELF file has no .symtab section (None when it cannot tell)."""
    try:
        data = Path(path).read_bytes()
        if data[:4] != b"\x7fELF" or data[4] != 2:
            return None
        import struct
        e_shoff, = struct.unpack_from("<Q", data, 0x28)
        e_shentsize, e_shnum, e_shstrndx = struct.unpack_from("<HHH", data, 0x3A)
        sh = lambda i: struct.unpack_from("<IIQQQQ", data, e_shoff + i * e_shentsize)
        _, _, _, _, str_off, _ = sh(e_shstrndx)
        for i in range(e_shnum):
            name_off, sh_type = sh(i)[0], sh(i)[1]
            end = data.index(b"\0", str_off + name_off)
            if data[str_off + name_off:end] == b".symtab":
                return False
        return True
    except Exception:
        return None


def sc_binary(cfg, impl):
    return {"binary_bytes": os.path.getsize(cfg.netloop), "_notes": [] if elf_is_stripped(cfg.netloop)
            else ["binary is NOT stripped (or could not be checked)"], "_cmd": [f"stat -c %s {cfg.netloop}"]}


RUNNERS = {
    "echo-c100": sc_echo_c100, "echo-c1000": sc_echo_c1000, "pipelined": sc_pipelined,
    "echo-64k": sc_echo_64k, "idle-10k": sc_idle_10k, "idle-max": sc_idle_max,
    "fanout-chat": sc_fanout_chat, "fanout-hub": sc_fanout_hub, "neverread": sc_neverread,
    "neverread-hub": sc_neverread_hub, "startup": sc_startup, "binary": sc_binary,
    **{name: (lambda cfg, impl, name=name: run_flat(cfg, impl, name)) for name in FLAT},
}

# --------------------------------------------------------------------------------------------
# What the report shows: per scenario, the metrics (key, label, unit kind, lower-is-better).

TITLES = {
    "echo-c100": "echo ping-pong, C=100, 64 B",
    "echo-c1000": "echo ping-pong, C=1000, 64 B",
    "pipelined": "echo pipelined, C=100, K=16, 64 B",
    "echo-64k": "echo 64 KiB messages, C=10",
    "idle-10k": "idle connections, N={idle_n}",
    "idle-max": "idle connections, N={idle_max_n} (fd limit)",
    "fanout-chat": "chat fan-out, 1,000 receivers x 1,000 msg/s",
    "fanout-hub": "hub fan-out, 1,000 receivers x 1,000 msg/s",
    "neverread": "100 never-reading chat clients, 64 KiB blast",
    "neverread-hub": "100 never-reading hub clients, 64 KiB blast",
    "startup": "start-up (echo)",
    "binary": "release binary",
    **{name: "{proto} fan-out flat out, {r} receivers, {s} sender{pl}, 16 KiB, {limit}".format(
        proto=name.split("-")[1], r=name.split("-")[2][1:], s=name.split("-")[3][1:],
        pl="" if name.split("-")[3] == "s1" else "s",
        limit="--max-buffer 1m" if name.endswith("-1m") else "default limits") for name in FLAT},
}

BUSY = [("server_cpu_pct", "server CPU busy (of one core)", "pct", None),
        ("load_cpu_pct", "load generator CPU busy (of one core)", "pct", None)]
ECHO_METRICS = [("cpu_per_msg_us", "server CPU per message", "us", True),
                ("msgs_per_s", "messages/s", "rate", False)] + BUSY + [
                ("p99_us", "latency p99", "us", True)]
METRICS = {
    "echo-c100": [("cpu_per_msg_us", "server CPU per round trip", "us", True)] + ECHO_METRICS[1:],
    "echo-c1000": [("cpu_per_msg_us", "server CPU per round trip", "us", True),
                   ("msgs_per_s", "round trips/s", "rate", False)] + BUSY + [
                   ("zero_rt_conns", "connections with zero round trips", "count", True),
                   ("p99_us", "latency p99", "us", True),
                   ("max_us", "latency max", "us", True),
                   ("max_over_p99", "max / p99", "x", True)],
    "pipelined": ECHO_METRICS,
    "echo-64k": ECHO_METRICS,
    "idle-10k": [("held", "connections held", "count", None),
                 ("ramp_s", "time to open them all (load's ramp-up)", "s", True),
                 ("bytes_per_conn", "server RSS per connection", "bytes", True),
                 ("rss_idle", "server RSS with N idle", "mem", True),
                 ("idle_cpu_ms_per_s", "server CPU while idle", "ms/s", True)],
    "fanout-chat": [("deliveries_per_s", "deliveries/s", "rate", False),
                    ("cpu_per_delivery_us", "server CPU per delivery", "us", True),
                    ("p99_us", "delivery latency p99", "us", True),
                    ("p50_us", "delivery latency p50", "us", True),
                    ("lost", "deliveries lost (sequence gaps)", "count", True),
                    ("undelivered", "deliveries still missing after the 5 s drain", "count", True)] + BUSY,
    "neverread": [("rss_growth_peak", "server RSS growth, peak", "mem", True),
                  ("rss_growth_2nd_half", "RSS growth over the second half", "mem", True),
                  ("neverreaders_left", "never-readers still connected at the end", "count", None),
                  ("blast_mb_per_s", "sender throughput (MB/s)", "float", False),
                  ("cpu_per_msg_us", "server CPU per 64 KiB message from the sender", "us", True)],
    "startup": [("start_ms", "spawn to listening line + first connect", "ms", True),
                ("line_ms", "spawn to listening line", "ms", True),
                ("rss_start", "server RSS at start (0.5 s after the listening line)", "mem", True),
                ("anon_start", "of which anonymous (RssAnon; the rest is mapped code and libraries)",
                 "mem", True),
                ("rss_one_conn", "server RSS 0.5 s after one connection came and went", "mem", True)],
    "binary": [("binary_bytes", "stripped release binary size", "mem", None)],
}
FLAT_METRICS = [("sent_per_s", "messages/s the senders got through", "rate", False),
                ("sent_mb_per_s", "the same in MB/s", "float", False),
                ("deliveries_per_s", "deliveries/s (sending + draining)", "rate", False),
                ("p50_us", "delivery latency p50", "us", True),
                ("p99_us", "delivery latency p99", "us", True),
                ("cut", "connections cut by an output limit", "count", None),
                ("dropped", "load connections closed during the run", "count", None),
                ("lost", "deliveries lost (sequence gaps)", "count", None),
                ("undelivered", "deliveries still missing after the drain", "count", None),
                ("out_of_order", "deliveries reordered or duplicated", "count", None),
                ("problems", "cut, dropped, lost, undelivered, reordered or duplicated", "count", None),
                ("stalls", "sender stalls (server counter)", "count", None),
                ("stall_ms_per_stall", "mean stall", "ms", None),
                ("cpu_per_delivery_us", "server CPU per delivery", "us", True)] + BUSY
for name in FLAT:
    METRICS[name] = FLAT_METRICS
METRICS["idle-max"] = METRICS["idle-10k"]
METRICS["fanout-hub"] = METRICS["fanout-chat"]
METRICS["neverread-hub"] = METRICS["neverread"]

# The targets of the comparison with Node. check(node_median, netloop_median, netloop_values)
# -> (met: bool | None, words). Judged on medians, except where the target is an absolute
# "0" or "flat", which must hold in every repetition.


def ratio(node, nl):
    if node is None or nl is None:
        return None
    if nl == 0:
        return math.inf if node > 0 else None
    return node / nl


def t_ratio_at_least(k):
    def check(node, nl, _vals, _cfg):
        r = ratio(node, nl)
        return (None if r is None else r >= k), f"Node/netloop >= {k:g}"
    return check


def t_zero_every_rep(_node, _nl, vals, _cfg):
    vals = [v for v in vals if v is not None]
    return (all(v == 0 for v in vals) if vals else None), "0 (every repetition)"


def t_at_most(limit, words):
    def check(_node, nl, _vals, _cfg):
        return (None if nl is None else nl <= limit), words
    return check


def t_latency_share(node, nl, _vals, _cfg):
    return (None if node is None or nl is None else nl <= 0.6 * node), "<= 0.6 x Node"


def t_neverread_peak(_node, nl, _vals, cfg):
    cap = 100 * cfg.max_buffer
    return (None if nl is None else nl <= cap), f"<= 100 x {fmt_mem(cfg.max_buffer)} = {fmt_mem(cap)}"


def t_neverread_flat(_node, _nl, vals, cfg):
    vals = [v for v in vals if v is not None]
    return (all(v <= cfg.max_buffer for v in vals) if vals else None), \
        f"flat: <= {fmt_mem(cfg.max_buffer)} (every repetition)"


TARGETS = {
    ("echo-c100", "cpu_per_msg_us"): t_ratio_at_least(1.6),
    ("pipelined", "cpu_per_msg_us"): t_ratio_at_least(1.6),
    ("echo-64k", "cpu_per_msg_us"): t_ratio_at_least(2),
    ("echo-c1000", "zero_rt_conns"): t_zero_every_rep,
    ("echo-c1000", "max_over_p99"): t_at_most(3, "<= 3"),
    ("idle-max", "bytes_per_conn"): t_at_most(128, "<= 128 B"),
    ("startup", "rss_start"): t_at_most(2_000_000, "<= 2 MB"),
    ("startup", "start_ms"): t_at_most(5, "<= 5 ms"),
    ("fanout-chat", "p99_us"): t_latency_share,
    ("fanout-hub", "p99_us"): t_latency_share,
    ("neverread", "rss_growth_peak"): t_neverread_peak,
    ("neverread", "rss_growth_2nd_half"): t_neverread_flat,
    ("neverread-hub", "rss_growth_peak"): t_neverread_peak,
    ("neverread-hub", "rss_growth_2nd_half"): t_neverread_flat,
    **{(name, "problems"): t_zero_every_rep for name in FLAT},
}

# The bars of the SVG chart: (scenario, metric, short label).
CHART = [
    ("echo-c100", "cpu_per_msg_us", "echo C=100: CPU/round trip", ">= 1.6x"),
    ("echo-c1000", "cpu_per_msg_us", "echo C=1000: CPU/round trip", ""),
    ("pipelined", "cpu_per_msg_us", "pipelined K=16: CPU/message", ">= 1.6x"),
    ("echo-64k", "cpu_per_msg_us", "64 KiB C=10: CPU/message", ">= 2x"),
    ("fanout-chat", "cpu_per_delivery_us", "chat fan-out: CPU/delivery", ""),
    ("fanout-chat", "p99_us", "chat fan-out: p99 latency", ">= 1.67x"),
    ("fanout-hub", "cpu_per_delivery_us", "hub fan-out: CPU/delivery", ""),
    ("fanout-hub", "p99_us", "hub fan-out: p99 latency", ">= 1.67x"),
    ("idle-10k", "bytes_per_conn", "idle 10k: RSS/connection", ""),
    ("idle-max", "bytes_per_conn", "idle max: RSS/connection", "<= 128 B"),
    ("neverread", "rss_growth_peak", "never-readers: RSS growth", "bounded"),
    ("startup", "rss_start", "RSS at start", "<= 2 MB"),
    ("startup", "start_ms", "start to accepting", "<= 5 ms"),
]


# --------------------------------------------------------------------------------------------
# Formatting

def fmt_mem(b) -> str:
    if b is None:
        return "-"
    if abs(b) >= 10 * MiB:
        return f"{b / MiB:,.0f} MiB"
    if abs(b) >= MiB:
        return f"{b / MiB:.1f} MiB"
    if abs(b) >= 10 * 1024:
        return f"{b / 1024:,.0f} KiB"
    return f"{b:,.0f} B"


def fmt_val(v, kind: str) -> str:
    if v is None:
        return "-"
    if isinstance(v, float) and math.isinf(v):
        return "inf"
    if kind == "us":
        if v >= 1_000_000:
            return f"{v / 1e6:.2f} s"
        if v >= 1000:
            return f"{v / 1000:.3g} ms" if v < 100_000 else f"{v / 1000:.0f} ms"
        return f"{v:.0f} us" if v >= 100 else f"{v:.3g} us"
    if kind == "ms":
        return f"{v:.1f} ms" if v >= 10 else f"{v:.2f} ms"
    if kind == "s":
        return f"{v:.2f} s"
    if kind == "ms/s":
        return f"{v:.1f} ms/s"
    if kind == "mem":
        return fmt_mem(v)
    if kind == "bytes":
        return f"{v:,.0f} B"
    if kind == "rate":
        return f"{v:,.0f}"
    if kind == "count":
        return f"{v:,.0f}"
    if kind == "pct":
        return f"{v:.0f}%"
    if kind == "x":
        return f"{v:.1f}"
    return f"{v:,.1f}"


def med(vals):
    vals = [v for v in vals if v is not None]
    return statistics.median(vals) if vals else None


def spread(vals, kind) -> str:
    vals = [v for v in vals if v is not None]
    if not vals:
        return "-"
    m = fmt_val(statistics.median(vals), kind)
    if len(vals) == 1:
        return m
    return f"{m} ({fmt_val(min(vals), kind)} – {fmt_val(max(vals), kind)})"


def fmt_ratio(r) -> str:
    if r is None:
        return "-"
    if math.isinf(r):
        return "inf"
    return f"{r:,.0f}x" if r >= 100 else (f"{r:.1f}x" if r >= 10 else f"{r:.2f}x")


# --------------------------------------------------------------------------------------------
# Machine and versions

def machine() -> dict:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass

    def out(argv):
        try:
            return subprocess.run(argv, capture_output=True, text=True, timeout=20).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            return "?"

    mem = "?"
    try:
        kb = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1))
        mem = f"{kb / 1024 / 1024:.1f} GiB"
    except (OSError, AttributeError):
        pass
    return {"nproc": out(["nproc"]), "cpu": cpu, "kernel": os.uname().release, "mem": mem,
            "fd_limit": "/".join(str(x) for x in resource.getrlimit(resource.RLIMIT_NOFILE))}


def git_commit(repo: Path) -> str:
    """HEAD's commit, read from .git without running git (worktrees and packed refs too)."""
    try:
        git = repo / ".git"
        if git.is_file():  # a worktree: "gitdir: /path"
            git = Path(git.read_text().split(":", 1)[1].strip())
        head = (git / "HEAD").read_text().strip()
        if not head.startswith("ref:"):
            return head[:12]
        ref = head.split(None, 1)[1]
        common = git
        if (git / "commondir").exists():
            common = (git / (git / "commondir").read_text().strip()).resolve()
        for base in (git, common):
            if (base / ref).exists():
                return f"{(base / ref).read_text().strip()[:12]} ({ref.rsplit('/', 1)[-1]})"
        for base in (git, common):
            packed = base / "packed-refs"
            if packed.exists():
                for line in packed.read_text().splitlines():
                    if line.endswith(" " + ref):
                        return f"{line.split()[0][:12]} ({ref.rsplit('/', 1)[-1]})"
    except (OSError, IndexError):
        pass
    return "?"


def versions(cfg: Config) -> dict:
    def out(argv):
        try:
            r = subprocess.run(argv, capture_output=True, text=True, timeout=20)
            return (r.stdout or r.stderr).strip().splitlines()[0]
        except (OSError, subprocess.TimeoutExpired, IndexError):
            return "?"
    bin_repo = Path(cfg.netloop).resolve().parents[2]  # <repo>/target/release/netloop
    load_repo = Path(cfg.load).resolve().parents[2]
    v = {"node": out([cfg.node, "--version"]), "rustc": out(["rustc", "--version"]),
         "netloop": out([cfg.netloop, "--version"]), "netloop_commit": git_commit(bin_repo),
         "netloop_tree": str(bin_repo)}
    if load_repo != bin_repo:
        v["load_commit"] = f"HEAD {git_commit(load_repo)} of {load_repo}"
    return v


def default_max_buffer(netloop: str) -> int:
    """netloop's default per-connection output limit, read from `serve --help`."""
    try:
        text = subprocess.run([netloop, "serve", "--help"], capture_output=True, text=True, timeout=10).stdout
        m = re.search(r"--max-buffer.*?\[default:\s*(\d+)([kmg]?)\]", text, re.S | re.I)
        if m:
            return int(m.group(1)) * {"": 1, "k": 1024, "m": MiB, "g": 1024 * MiB}[m.group(2).lower()]
    except (OSError, subprocess.TimeoutExpired):
        pass
    return 8 * MiB


# --------------------------------------------------------------------------------------------
# Report

def metric_rows(cfg: Config, results: dict, scenario: str):
    """(label, kind, node_spread, netloop_spread, ratio, target_words, met) per metric."""
    for key, label, kind, lower_better in METRICS[scenario]:
        node_vals = [r.get(key) for r in results[scenario].get("node", [])]
        nl_vals = [r.get(key) for r in results[scenario].get("netloop", [])]
        node_m, nl_m = med(node_vals), med(nl_vals)
        # Ratios of counts (connections held, zero-round-trip connections) say nothing.
        r = ratio(node_m, nl_m) if lower_better is not None and kind != "count" else None
        check = TARGETS.get((scenario, key))
        words, met = "", None
        if check:
            met, words = check(node_m, nl_m, nl_vals, cfg)
        yield key, label, kind, lower_better, spread(node_vals, kind), spread(nl_vals, kind), r, words, met


def write_markdown(cfg: Config, results: dict, order: list[str], info: dict, path: Path) -> str:
    L = []
    L.append("# netloop vs Node.js: benchmarks")
    L.append("")
    if cfg.quick:
        L.append("> **QUICK SMOKE TEST (`--quick`)**: short windows, one repetition, small N. These "
                 "figures only show that the runner works; do not quote them.")
        L.append("")
    L.append(f"Generated by `{info['command']}` on {info['date']} (took {info['elapsed']}).")
    L.append("")
    m, v = info["machine"], info["versions"]
    L.append("| | |")
    L.append("|---|---|")
    L.append(f"| machine | {m['nproc']} CPUs, {m['cpu']}, {m['mem']} RAM, Linux {m['kernel']}, "
             f"open files {m['fd_limit']} (soft/hard) |")
    L.append(f"| Node | {v['node']} (`bench/node/*.js`) |")
    L.append(f"| netloop | {v['netloop']}, HEAD {v['netloop_commit']} (uncommitted changes "
             f"not detected), built by {v['rustc']} |")
    if "load_commit" in v:
        L.append(f"| load generator | `{cfg.load}`, {v['load_commit']} |")
    L.append(f"| pinning | server on CPU {SERVER_CPU}, load generator (and this runner) on CPU {LOAD_CPU} |")
    L.append(f"| repetitions | {cfg.reps} per scenario and server, alternating netloop/Node "
             f"(start-up: {cfg.d['startup_reps']}); figures are medians, (min – max) in brackets |")
    L.append("")
    L.append("Server CPU is utime+stime from `/proc/PID/stat` (all threads) over the load's measured "
             "window, divided by the work done in it; RSS is `VmRSS` from `/proc/PID/status`. "
             "\"Node/netloop\" is the ratio of the medians: above 1 means netloop uses less (for "
             "rates, above 1 means Node is faster). Each server runs with its defaults. See "
             "`bench/README.md` for what each scenario does.")
    L.append("")
    L.append("Against Node the load generator has spare CPU and Node's core is saturated; against "
             "netloop the generator's own core is the busier one (see \"load generator CPU busy\"), "
             "so netloop's messages/s and latencies are bounded by the generator, not by netloop. "
             "Server CPU per message is the fair comparison, and the one the targets use.")
    L.append("")

    if not cfg.quick and cfg.reps < 3:
        L.append(f"> **Only {cfg.reps} repetition(s)**: the targets ask for at least 3.")
        L.append("")
    runs = [r for sc in order for impl in IMPLS for r in results.get(sc, {}).get(impl, [])]
    noisy = [r for r in runs if any("machine not quiet" in n for n in r.get("_notes", []))]
    if noisy:
        L.append(f"> **Warning: the machine was not quiet.** In {len(noisy)} of {len(runs)} runs, CPU 0 "
                 "or CPU 1 spent more than 10% of the measured window on work other than the server "
                 "or the load generator (other processes, or ksoftirqd); see the notes under each "
                 "scenario. Rates and latencies of those runs are disturbed; CPU per message less so.")
        L.append("")

    # Summary of the targets.
    L.append("## Targets")
    L.append("")
    L.append("| scenario | figure | Node | netloop | Node/netloop | netloop target | |")
    L.append("|---|---|---:|---:|---:|---|---|")
    flat_done = False
    for sc in order:
        if sc not in results:
            continue
        if sc in FLAT:
            if not flat_done:
                flat_done = True
                L.append(flat_target_row(cfg, results, order))
            continue
        for key, label, kind, _lb, ns, nls, r, words, met in metric_rows(cfg, results, sc):
            if not words:
                continue
            mark = "**met**" if met else ("**not met**" if met is False else "n/a")
            L.append(f"| {title(cfg, sc)} | {label} | {ns} | {nls} | {fmt_ratio(r)} | {words} | {mark} |")
    L.append("")
    L.append("![Node/netloop ratios](benchmarks.svg)")
    L.append("")

    L.append("## All figures")
    L.append("")
    flat_done = False
    for sc in order:
        if sc not in results:
            continue
        if sc in FLAT:
            if not flat_done:
                flat_done = True
                L.extend(flat_section(cfg, results, order))
            continue
        L.append(f"### {title(cfg, sc)}")
        L.append("")
        if sc == "binary":
            L.append("| figure | netloop |")
            L.append("|---|---:|")
            for key, label, kind, _lb, _ns, nls, _r, _w, _m in metric_rows(cfg, results, sc):
                b = med([x.get(key) for x in results[sc]["netloop"]])
                L.append(f"| {label} | {nls} ({b:,} bytes) |")
        elif sc in NETLOOP_ONLY:
            L.append("| figure | netloop |")
            L.append("|---|---:|")
            for key, label, kind, _lb, _ns, nls, _r, _w, _m in metric_rows(cfg, results, sc):
                L.append(f"| {label} | {nls} |")
        else:
            L.append("| figure | Node | netloop | Node/netloop |")
            L.append("|---|---:|---:|---:|")
            for key, label, kind, lb, ns, nls, r, _w, _m in metric_rows(cfg, results, sc):
                L.append(f"| {label} | {ns} | {nls} | {fmt_ratio(r)} |")
        L.append("")
        if sc.startswith("neverread"):
            L.append("Server RSS growth over time, median repetition (seconds: MiB):")
            L.append("")
            for impl in IMPLS:
                s = median_series(results[sc].get(impl, []))
                if s:
                    L.append(f"- {impl}: " + ", ".join(f"{t:.0f}s {g / MiB:,.0f}" for t, g in s))
            L.append("")
        cmds = {}
        for impl in IMPLS:
            for r in results[sc].get(impl, []):
                cmds.setdefault(impl, r.get("_cmd"))
        L.append("Commands:")
        L.append("")
        L.append("```")
        for impl in IMPLS:
            for c in cmds.get(impl) or []:
                L.append(c)
        L.append("```")
        notes = []
        for impl in IMPLS:
            for i, r in enumerate(results[sc].get(impl, [])):
                for n in r.get("_notes", []):
                    notes.append(f"- {impl}, repetition {i + 1}: {n}")
        for impl, errs in results[sc].get("_errors", {}).items():
            for e in errs:
                notes.append(f"- {impl}: **failed**: {e}")
        if notes:
            L.append("")
            L.append("Notes:")
            L.append("")
            L.extend(notes)
        L.append("")
    text = "\n".join(L).rstrip() + "\n"
    # Sections written by their own runners (bench/workers.py, bench/cluster.py, bench/web/run.py,
    # bench/compare_builds.py): kept as they were.
    old = path.read_text() if path.exists() else ""
    for name in ("workers", "cluster", "web", "architecture"):
        begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
        if begin in old and end in old:
            text += "\n" + old[old.index(begin):old.index(end) + len(end)] + "\n"
    path.write_text(text)
    return text


def flat_runs(results: dict, order: list[str]):
    return [(sc, r) for sc in order if sc in FLAT and sc in results for r in results[sc]["netloop"]]


def flat_target_row(cfg: Config, results: dict, order: list[str]) -> str:
    runs = flat_runs(results, order)
    bad = [f"{sc}: {r.get('problems')}" for sc, r in runs if r.get("problems") != 0]
    scenarios = len({sc for sc, _ in runs})
    met = "**met**" if runs and not bad else ("**not met**" if runs else "n/a")
    got = "0 in every run" if runs and not bad else "; ".join(bad) or "-"
    return (f"| fan-out flat out, 16 KiB ({scenarios} scenarios, {len(runs)} runs) | connections cut or "
            f"dropped, deliveries lost, undelivered, reordered or duplicated | - | {got} | - | "
            f"0 (every run) | {met} |")


def flat_section(cfg: Config, results: dict, order: list[str]) -> list[str]:
    """All flat-out fan-out scenarios in one table: medians over the repetitions."""
    scs = [sc for sc in order if sc in FLAT and sc in results]
    L = ["### chat and hub fan-out flat out, 16 KiB messages (`-r 0`)", "",
         f"netloop only. Medians over {cfg.reps} repetition(s); \"problems\" is the largest count, over "
         "the repetitions, of connections cut by an output limit or dropped, and deliveries lost, "
         "undelivered, reordered or duplicated. Sent: messages/s (MB/s) the senders got through; "
         "latency: from the sender's write to the receiver's read; stalls: the server's "
         "`sender_stalls` and their mean length. A flat-out sender fills its own socket buffers, "
         "so latency is mostly the time its kernel-buffered messages wait.", "",
         "| protocol | receivers | senders | limits | sent msg/s (MB/s) | deliveries/s | latency p50 | "
         "latency p99 | problems | stalls (mean) | server CPU per delivery | server / load CPU busy |",
         "|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for sc in scs:
        rs = results[sc]["netloop"]
        if not rs:
            errs = "; ".join(e for es in results[sc].get("_errors", {}).values() for e in es)
            L.append(f"| {sc} | | | | **failed**: {errs} | | | | | | | |")
            continue
        m = lambda k: med([r.get(k) for r in rs])
        worst = max((r.get("problems") for r in rs if r.get("problems") is not None), default=None)
        _, proto, recv, send, *small = sc.split("-")
        L.append(f"| {proto} | {recv[1:]} | {send[1:]} | {'--max-buffer 1m' if small else 'default'} | "
                 f"{fmt_val(m('sent_per_s'), 'rate')} ({fmt_val(m('sent_mb_per_s'), 'float')}) | "
                 f"{fmt_val(m('deliveries_per_s'), 'rate')} | {fmt_val(m('p50_us'), 'us')} | "
                 f"{fmt_val(m('p99_us'), 'us')} | {fmt_val(worst, 'count')} | "
                 f"{fmt_val(m('stalls'), 'count')} ({fmt_val(m('stall_ms_per_stall'), 'ms')}) | "
                 f"{fmt_val(m('cpu_per_delivery_us'), 'us')} | "
                 f"{fmt_val(m('server_cpu_pct'), 'pct')} / {fmt_val(m('load_cpu_pct'), 'pct')} |")
    L.append("")
    cmd = next((r.get("_cmd") for sc in scs for r in results[sc]["netloop"] if r.get("_cmd")), None)
    if cmd:
        L.append("Commands (first scenario; the others change `--protocol`, `--receivers`, `--senders`, "
                 "and add `--max-buffer 1m` to the server):")
        L.append("")
        L.append("```")
        L.extend(cmd)
        L.append("```")
    runs = [(sc, i, r) for sc in scs for i, r in enumerate(results[sc]["netloop"])]
    notes = [f"- {sc}, repetition {i + 1}: {n}" for sc, i, r in runs for n in r.get("_notes", [])
             if "machine not quiet" not in n]
    noisy = sum(1 for _, _, r in runs if any("machine not quiet" in n for n in r.get("_notes", [])))
    if noisy:
        notes.append(f"- machine not quiet in {noisy} of {len(runs)} runs: CPU 0 or CPU 1 spent more than "
                     "10% of the window on other work than the server or the load generator")
    if notes:
        L += ["", "Notes:", ""] + notes
    L.append("")
    return L


def title(cfg: Config, sc: str) -> str:
    t = TITLES[sc].format(idle_n=f"{cfg.d['idle_n']:,}", idle_max_n=f"{cfg.idle_max_n:,}")
    return t.replace("(fd limit)", "(capped by --quick)") if cfg.quick else t


def median_series(reps: list[dict]):
    rs = [r for r in reps if r.get("_series") and r.get("rss_growth_peak") is not None]
    if not rs:
        return None
    rs.sort(key=lambda r: r["rss_growth_peak"])
    return rs[len(rs) // 2]["_series"]


def nice_step(x: float) -> float:
    """The smallest 1, 2, 2.5 or 5 x 10^k MiB step >= x bytes."""
    x = max(x / MiB, 0.25)
    k = 10 ** math.floor(math.log10(x))
    for m in (1, 2, 2.5, 5, 10):
        if m * k >= x:
            return m * k * MiB
    return 10 * k * MiB


def esc(s: str) -> str:
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def write_svg(cfg: Config, results: dict, path: Path) -> None:
    bars = []
    for sc, key, label, goal in CHART:
        if sc not in results:
            continue
        node_m = med([r.get(key) for r in results[sc].get("node", [])])
        nl_m = med([r.get(key) for r in results[sc].get("netloop", [])])
        r = ratio(node_m, nl_m)
        if r is None or math.isinf(r) or r <= 0:
            continue
        check = TARGETS.get((sc, key))
        met = check(node_m, nl_m, [x.get(key) for x in results[sc].get("netloop", [])], cfg)[0] if check else None
        bars.append((f"{label} ({goal})" if goal else label, r, met))
    W, left, right, top, row = 880, 310, 70, 56, 26
    plot_w = W - left - right
    lo = min([0.5] + [b[1] / 1.5 for b in bars])
    hi = max([4.0] + [b[1] * 1.5 for b in bars])
    lo, hi = 10 ** math.floor(math.log10(lo)), 10 ** math.ceil(math.log10(hi))
    x = lambda v: left + plot_w * (math.log10(v) - math.log10(lo)) / (math.log10(hi) - math.log10(lo))
    h1 = top + row * max(1, len(bars)) + 40
    series = {impl: median_series(results.get("neverread", {}).get(impl, [])) for impl in IMPLS}
    have_series = any(series.values())
    H = h1 + (260 if have_series else 0)
    o = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" '
         f'font-family="sans-serif" font-size="13">',
         f'<rect width="{W}" height="{H}" fill="white"/>',
         f'<text x="{W / 2}" y="22" text-anchor="middle" font-size="16" font-weight="bold">'
         f'Node / netloop (log scale; right of 1x = netloop uses less)'
         f'{" — QUICK SMOKE TEST" if cfg.quick else ""}</text>',
         f'<text x="{W / 2}" y="40" text-anchor="middle" fill="#555">colour: target in brackets '
         f'(a ratio, or an absolute bound on netloop) green = met, red = not met, grey = none</text>']
    # grid
    d = lo
    while d <= hi * 1.0001:
        for mult in (1, 2, 5):
            g = d * mult
            if lo <= g <= hi * 1.0001:
                gx = x(g)
                o.append(f'<line x1="{gx:.1f}" y1="{top - 6}" x2="{gx:.1f}" y2="{h1 - 34}" '
                         f'stroke="{"#999" if mult == 1 else "#e3e3e3"}"/>')
                o.append(f'<text x="{gx:.1f}" y="{h1 - 20}" text-anchor="middle" fill="#555" '
                         f'font-size="11">{g:g}x</text>')
        d *= 10
    one = x(1)
    o.append(f'<line x1="{one:.1f}" y1="{top - 8}" x2="{one:.1f}" y2="{h1 - 34}" stroke="black" '
             f'stroke-width="1.5"/>')
    for i, (label, r, met) in enumerate(bars):
        y = top + i * row
        color = "#2e8b57" if met else ("#c0392b" if met is False else "#8c8c8c")
        x0, x1 = sorted((one, x(r)))
        o.append(f'<text x="{left - 8}" y="{y + 15}" text-anchor="end">{esc(label)}</text>')
        o.append(f'<rect x="{x0:.1f}" y="{y + 3}" width="{max(1.0, x1 - x0):.1f}" height="{row - 8}" '
                 f'fill="{color}"/>')
        o.append(f'<text x="{x(r) + (4 if r >= 1 else -4):.1f}" y="{y + 15}" '
                 f'text-anchor="{"start" if r >= 1 else "end"}" font-size="12">{fmt_ratio(r)}</text>')
    if have_series:
        # RSS growth over time in the never-reader scenario.
        px, py, pw, ph = left, h1 + 40, plot_w, 170
        pts = [g for s in series.values() if s for _, g in s]
        tmax = max([round(t) for s in series.values() if s for t, _ in s] + [1.0])
        gstep = nice_step(max(pts + [MiB]) * 1.05 / 4)
        gmax = 4 * gstep
        o.append(f'<text x="{W / 2}" y="{h1 + 14}" text-anchor="middle" font-size="15" font-weight="bold">'
                 f'100 never-reading clients, 64 KiB chat blast: server RSS growth</text>')
        o.append(f'<rect x="{px}" y="{py}" width="{pw}" height="{ph}" fill="none" stroke="#999"/>')
        for k in range(5):
            gv = gmax * k / 4
            gy = py + ph - ph * k / 4
            o.append(f'<text x="{px - 6}" y="{gy + 4:.1f}" text-anchor="end" font-size="11" fill="#555">'
                     f'{gv / MiB:,.4g} MiB</text>')
            if k:
                o.append(f'<line x1="{px}" y1="{gy:.1f}" x2="{px + pw}" y2="{gy:.1f}" stroke="#eee"/>')
        for t in range(int(tmax) + 1):
            o.append(f'<text x="{px + pw * t / tmax:.1f}" y="{py + ph + 15}" text-anchor="middle" '
                     f'font-size="11" fill="#555">{t}s</text>')
        cap = 100 * cfg.max_buffer
        if cap < gmax:
            cy = py + ph - ph * cap / gmax
            o.append(f'<line x1="{px}" y1="{cy:.1f}" x2="{px + pw}" y2="{cy:.1f}" stroke="#2e8b57" '
                     f'stroke-dasharray="5,4"/>')
            o.append(f'<text x="{px + 6}" y="{cy - 4:.1f}" text-anchor="start" font-size="11" '
                     f'fill="#2e8b57">netloop bound: 100 x {fmt_mem(cfg.max_buffer)}</text>')
        colors = {"node": "#c0392b", "netloop": "#1f5fa8"}
        for j, impl in enumerate(IMPLS):
            s = series.get(impl)
            if not s:
                continue
            p = " ".join(f"{px + pw * t / tmax:.1f},{py + ph - ph * max(0, g) / gmax:.1f}" for t, g in s)
            o.append(f'<polyline points="{p}" fill="none" stroke="{colors[impl]}" stroke-width="2.5"/>')
            o.append(f'<text x="{px + 10}" y="{py + 18 + 16 * j}" fill="{colors[impl]}" '
                     f'font-weight="bold">{impl}: {fmt_mem(s[-1][1])} at {s[-1][0]:.0f}s</text>')
    o.append("</svg>")
    path.write_text("\n".join(o) + "\n")


# --------------------------------------------------------------------------------------------

def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="scenarios: " + ", ".join(SCENARIOS) + " (optional: "
                                 + ", ".join(OPTIONAL) + ")")
    ap.add_argument("--quick", action="store_true", help="smoke test: short windows, 1 repetition, small N")
    ap.add_argument("--reps", type=int, help="repetitions per scenario and server (default 3; quick 1)")
    ap.add_argument("--only", help="comma-separated scenarios to run")
    ap.add_argument("--netloop", default=DEFAULT_BIN, help=f"netloop binary (default {DEFAULT_BIN})")
    ap.add_argument("--load", default=None, help="binary whose `load` subcommand drives the load "
                    "(default: the --netloop binary)")
    ap.add_argument("--node", default="node", help="node binary (default: node on PATH)")
    ap.add_argument("--no-build", action="store_true", help="skip `cargo build --release`")
    ap.add_argument("--workers", action="store_true", help="then run bench/workers.py --write: the "
                    "Workers section (100,000 idle connections over 6 workers; echo with 1, 2 and auto "
                    "workers), about 4 more minutes")
    ap.add_argument("--out", default=str(REPO / "docs"), help="where benchmarks.md/.svg go (default docs/)")
    args = ap.parse_args()

    d = dict(QUICK if args.quick else FULL)
    reps = args.reps if args.reps is not None else d["reps"]
    if reps < 1:
        ap.error("--reps must be at least 1")
    order = SCENARIOS
    if args.only:
        order = []
        for s in (s.strip() for s in args.only.split(",") if s.strip()):
            # A pattern (flat-*, flat-hub-*) stands for every scenario it matches.
            order += [n for n in SCENARIOS + OPTIONAL if fnmatch.fnmatch(n, s)] if "*" in s else [s]
        bad = [s for s in order if s not in RUNNERS]
        if bad:
            ap.error(f"unknown scenario(s) {', '.join(bad)}; known: {', '.join(SCENARIOS + OPTIONAL)}")
    if (os.cpu_count() or 1) < 2 or not {SERVER_CPU, LOAD_CPU} <= os.sched_getaffinity(0):
        print("bench: needs CPUs 0 and 1 (server on 0, load on 1)", file=sys.stderr)
        return 2

    started = time.monotonic()
    signal.signal(signal.SIGTERM, _on_term)
    if not args.no_build:
        print("bench: cargo build --release", flush=True)
        r = subprocess.run(["cargo", "build", "--release"], cwd=REPO)
        if r.returncode != 0:
            print("bench: build failed", file=sys.stderr)
            return 1
    netloop = str(Path(args.netloop).resolve())
    load = str(Path(args.load or args.netloop).resolve())
    for p in (netloop, load):
        if not os.access(p, os.X_OK):
            print(f"bench: {p} is not an executable", file=sys.stderr)
            return 2
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    # As many idle connections as the fd limit allows: the server and the load each need one fd
    # per connection under the same hard limit, and keep under 100 for themselves.
    idle_max = max(1000, ((hard if hard != resource.RLIM_INFINITY else 20_000) - 100) // 100 * 100)
    if args.quick:
        idle_max = min(idle_max, 4000)
    cfg = Config(netloop=netloop, load=load, node=args.node, quick=args.quick, reps=reps, d=d,
                 max_buffer=default_max_buffer(netloop), idle_max_n=idle_max)

    host = machine()  # before pinning: nproc counts the CPUs we may run on
    # The runner (and the Python never-readers) stay on the load's CPU.
    os.sched_setaffinity(0, {LOAD_CPU})
    results: dict = {}
    try:
        for sc in order:
            fn = RUNNERS[sc]
            results[sc] = {"netloop": [], "node": [], "_errors": {}}
            impls = ["netloop"] if sc in NETLOOP_ONLY else IMPLS
            n = 1 if sc == "binary" else (d["startup_reps"] if sc == "startup" else reps)
            for rep in range(n):
                for impl in (impls if rep % 2 == 0 else impls[::-1]):
                    t = time.monotonic()
                    try:
                        r = fn(cfg, impl)
                    except KeyboardInterrupt:
                        raise
                    except Exception as e:  # one failed run is reported, not fatal
                        results[sc]["_errors"].setdefault(impl, []).append(f"repetition {rep + 1}: {e}")
                        print(f"bench: {sc} {impl} #{rep + 1}: FAILED: {e}", flush=True)
                        continue
                    results[sc][impl].append(r)
                    shown = ", ".join(f"{k}={fmt_val(v, 'float') if isinstance(v, float) else v}"
                                      for k, v in r.items() if not k.startswith("_"))
                    notes = f"  [{'; '.join(r['_notes'])}]" if r.get("_notes") else ""
                    print(f"bench: {sc} {impl} #{rep + 1} ({time.monotonic() - t:.1f}s): {shown}{notes}",
                          flush=True)
    except KeyboardInterrupt:
        print("\nbench: interrupted; writing what was measured", file=sys.stderr)
    finally:
        kill_all()

    elapsed = time.monotonic() - started
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    argv = ["python3", "bench/run.py"] + sys.argv[1:]
    info = {"command": " ".join(shlex.quote(a) for a in argv),
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "elapsed": f"{elapsed / 60:.1f} min", "machine": host, "versions": versions(cfg)}
    text = write_markdown(cfg, results, order, info, out / "benchmarks.md")
    write_svg(cfg, results, out / "benchmarks.svg")
    print()
    print(text[text.index("## Targets"):text.index("![")].rstrip())
    print(f"\nbench: wrote {out / 'benchmarks.md'} and {out / 'benchmarks.svg'} in {elapsed:.0f}s")
    if args.workers:
        os.sched_setaffinity(0, set(range(os.cpu_count() or 1)))
        print("bench: bench/workers.py --write", flush=True)
        return subprocess.run([sys.executable, str(REPO / "bench" / "workers.py"), "--write",
                               "--netloop", netloop], cwd=REPO).returncode
    return 0


if __name__ == "__main__":
    sys.exit(main())
