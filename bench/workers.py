#!/usr/bin/env python3
"""netloop with workers: 100,000 idle connections, and echo with 1 and 2 workers side by side.

    python3 bench/workers.py [--only idle-100k,scaling,auto] [--reps N] [--idle-n N] [--write]

Scenarios (see bench/README.md):
  idle-100k  `serve --echo --workers 6` held by `load idle -c 100000 --workers 6`: memory of all
             server processes per connection, the kernel's (/proc/net/sockstat), CPU while idle,
             ramp time, and how connections spread over the workers.
  scaling    echo ping-pong (C=100, 64 B) and pipelined (C=100, K=16, 64 B) against 1 and 2
             workers, alternating, --reps each: round trips/s and server CPU per round trip.
  auto       the same two loads against `--workers auto` with `load --workers auto`: on a
             bigger machine, the command that shows scaling there.

Nothing is pinned: with workers the server uses every core, and the load shares them. Prints a
Markdown section; --write puts it into docs/benchmarks.md between the workers markers (which
bench/run.py keeps when it rewrites the file). Uses bench/run.py's helpers; every process it
starts is killed before it exits.
"""

from __future__ import annotations

import argparse
import datetime
import os
import re
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run as R  # noqa: E402  (bench/run.py: process bookkeeping, /proc readers, load runs)

IDLE_NOTE = ("The server's share is its slab slot and owner-table entry per connection; the kernel's is the two sockets (client and server run on this machine). `proc_inode_cache` grows only because the benchmark reads every worker's `/proc/PID/fd`. The load is interrupted once measured, and its 100,000 closes leave TIME_WAIT entries for 60 s. What 1,000,000 would need, from these figures: [operations.md](operations.md#one-million-idle-connections-on-paper).")
SCALE_NOTE = ("On 2 cores the generator (one loop, or two with `auto`) and the kernel's loopback work share the cores with the workers, so these rates are the machine's limit, not the workers': the server CPU column shows how much of it the server got. Here 2 workers do not beat 1 and spend more CPU per round trip (two processes wake for the same load). Run `python3 bench/workers.py --only auto` on a machine with more cores to see scaling there.")
BEGIN, END = "<!-- workers:begin -->", "<!-- workers:end -->"
PAGE = os.sysconf("SC_PAGE_SIZE")


def children_of(pid: int) -> list[int]:
    """Live children of `pid` (the workers of a supervisor), from /proc/*/stat."""
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                data = f.read()
        except OSError:
            continue
        rest = data[data.rindex(b")") + 2:].split()
        if rest[0] != b"Z" and int(rest[1]) == pid:
            out.append(int(name))
    return sorted(out)


def tree(pid: int) -> list[int]:
    return [pid, *children_of(pid)]


def ticks(pids: list[int]) -> int:
    total = 0
    for p in pids:
        try:
            total += R.cpu_ticks(p)
        except (OSError, ValueError):
            pass
    return total


def rss(pids: list[int]) -> int:
    total = 0
    for p in pids:
        try:
            total += R.rss_bytes(p)
        except (OSError, RuntimeError):
            pass
    return total


def sockets(pid: int) -> int:
    n = 0
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:"):
                    n += 1
            except OSError:
                pass
    except OSError:
        pass
    return n


def sockstat() -> dict[str, int]:
    """TCP `inuse` sockets and `mem` (pages) from /proc/net/sockstat."""
    with open("/proc/net/sockstat") as f:
        for line in f:
            if line.startswith("TCP:"):
                v = line.split()[1:]
                return {v[i]: int(v[i + 1]) for i in range(0, len(v), 2)}
    return {}


def slab_kib() -> int:
    """Kernel slab memory in KiB (Slab: in /proc/meminfo): socket structures live there."""
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("Slab:"):
                return int(line.split()[1])
    return 0


def all_cpus() -> set[int]:
    return set(range(os.cpu_count() or 1))


def slabs() -> dict[str, int]:
    """Bytes in use per kernel slab cache (active objects x object size), from /proc/slabinfo
    (readable by root only; empty otherwise)."""
    out = {}
    try:
        with open("/proc/slabinfo") as f:
            for line in f:
                v = line.split()
                if len(v) > 4 and v[1].isdigit():
                    out[v[0]] = int(v[1]) * int(v[3])
    except OSError:
        pass
    return out


def start_server(cfg: R.Config, workers: str) -> R.Server:
    """`netloop serve --echo` with `workers` (1: the single process), free to use every core;
    returns once every worker runs."""
    argv = [cfg.netloop, "serve", "--echo", f"{R.HOST}:0"]
    if workers != "1":
        argv += ["--workers", workers]
    srv = R.Server("netloop", "echo", argv, cpus=all_cpus())
    srv.start()
    want = 0 if workers == "1" else int(workers) if workers.isdigit() else len(os.sched_getaffinity(0))
    deadline = time.monotonic() + 15
    while len(children_of(srv.pid)) < want and time.monotonic() < deadline:
        time.sleep(0.05)
    return srv


def load_argv(cfg: R.Config, args: list[str]) -> list[str]:
    return [cfg.load, "load", *args, "--json"]


def run_load(cfg: R.Config, args: list[str], timeout: float) -> tuple[subprocess.Popen, float]:
    p = R._register(subprocess.Popen(load_argv(cfg, args), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, env=R.child_env(), cwd=R.REPO))
    return p, time.monotonic()


def finish(p: subprocess.Popen, timeout: float) -> dict:
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        out, err = p.communicate()
    if p in R._children:
        R._children.remove(p)
    text = out.decode(errors="replace")
    start = text.find("{")
    if start < 0:
        raise RuntimeError(f"load printed no JSON: {err.decode(errors='replace')[-600:]}")
    return R.json.loads(text[start:])


# --------------------------------------------------------------------------------------------

def idle_100k(cfg: R.Config, n: int, workers: int) -> dict:
    srv = start_server(cfg, str(workers))
    load = None
    try:
        time.sleep(1.0)
        pids = tree(srv.pid)
        rss0, ss0, slab0, caches0 = rss(pids), sockstat(), slab_kib(), slabs()
        socks0 = {p: sockets(p) for p in pids[1:]}
        t_start = time.monotonic()
        load, _ = run_load(cfg, ["idle", srv.addr, "-c", str(n), "--workers", str(workers), "-T", "600s", "-q"], 0)
        # Wait until the workers hold all N (counted from their sockets), bounded.
        deadline = time.monotonic() + 240
        held = 0
        while time.monotonic() < deadline and load.poll() is None:
            held = sum(sockets(p) - socks0.get(p, 0) for p in children_of(srv.pid))
            if held >= n:
                break
            time.sleep(0.2)
        ramp_wall = time.monotonic() - t_start
        time.sleep(2.0)  # settle
        pids = tree(srv.pid)
        c0, t0 = ticks(pids), time.monotonic()
        time.sleep(10.0)
        c1, t1 = ticks(pids), time.monotonic()
        rss1, ss1, slab1, caches1 = rss(pids), sockstat(), slab_kib(), slabs()
        grown = sorted(((caches1.get(k, 0) - caches0.get(k, 0), k) for k in caches1), reverse=True)[:8]
        per_worker = [sockets(p) - socks0.get(p, 0) for p in pids[1:]]
        load_pids = tree(load.pid)
        load_rss = rss(load_pids)
        load.send_signal(signal.SIGINT)
        rep = finish(load, 120)
        held = sum(per_worker)
        conns = rep.get("connections") or {}
        return {
            "n": n,
            "workers": workers,
            "held": held,
            "established": conns.get("established"),
            "ramp_s": rep.get("ramp_up_s"),
            "ramp_wall_s": ramp_wall,
            "connects_per_s": conns.get("connects_per_s"),
            "rss_before": rss0,
            "rss_held": rss1,
            "server_bytes_per_conn": (rss1 - rss0) / held if held else None,
            "tcp_inuse_delta": ss1.get("inuse", 0) - ss0.get("inuse", 0),
            "tcp_mem_delta_bytes": (ss1.get("mem", 0) - ss0.get("mem", 0)) * PAGE,
            "slab_delta_bytes": (slab1 - slab0) * 1024,
            "slab_caches": [(k, d) for d, k in grown if d > 0],
            "idle_cpu_ms_per_s": 1000 * (c1 - c0) / R.CLK_TCK / (t1 - t0),
            "per_worker": per_worker,
            "load_rss": load_rss,
            # The run is interrupted on purpose once measured: only other problems matter.
            "problems": [p for p in rep.get("problems") or [] if "interrupted by signal" not in p],
            "sources": conns.get("sources"),
            "cmd": [R.cmdline(srv.argv, srv.port),
                    R.cmdline(load_argv(cfg, ["idle", srv.addr, "-c", str(n), "--workers", str(workers), "-T", "600s"]),
                              srv.port)],
        }
    finally:
        if load is not None and load.poll() is None:
            load.kill()
            load.wait()
        srv.stop()
        # The supervisor drains its workers; give them a moment, then make sure none is left.
        deadline = time.monotonic() + 10
        while children_of(srv.pid) and time.monotonic() < deadline:
            time.sleep(0.1)


def echo_run(cfg: R.Config, workers: str, load_workers: str, pipeline: int, secs: float) -> dict:
    srv = start_server(cfg, workers)
    try:
        time.sleep(0.3)
        args = ["echo", srv.addr, "-c", "100", "--size", "64", "--pipeline", str(pipeline), "-T", f"{secs:g}s",
                "--workers", load_workers, "-q"]
        pids = tree(srv.pid)
        load, started = run_load(cfg, args, 0)
        c0 = ticks(pids)
        rep = finish(load, secs + 90)
        c1 = ticks(pids)
        rts = rep.get("round_trips") or 0
        # CPU over the whole load run (ramp-up is milliseconds against a 10 s window).
        cpu = (c1 - c0) / R.CLK_TCK
        lat = rep.get("latency_us") or {}
        return {
            "rts_per_s": rep.get("round_trips_per_s"),
            "cpu_per_rt_us": cpu * 1e6 / rts if rts else None,
            "server_cpu_pct": 100 * cpu / (rep.get("duration_s") or 1),
            "p99_us": lat.get("p99"),
            "problems": rep.get("problems") or [],
            "cmd": [R.cmdline(srv.argv, srv.port), R.cmdline(load_argv(cfg, args), srv.port)],
        }
    finally:
        srv.stop()
        deadline = time.monotonic() + 10
        while children_of(srv.pid) and time.monotonic() < deadline:
            time.sleep(0.1)


# --------------------------------------------------------------------------------------------

def fmt_bytes(b: float) -> str:
    if b >= R.MiB:
        return f"{b / R.MiB:.1f} MiB"
    if b >= 1024:
        return f"{b / 1024:.1f} KiB"
    return f"{b:.0f} B"


def markdown(results: dict, info: dict) -> str:
    L = [BEGIN, "", "## Workers", ""]
    L.append(f"Generated by `{info['command']}` on {info['date']}, {info['machine']}. Absolute "
             "figures move with whatever else the machine runs, so compare the ratios measured side "
             "by side (runs alternate).")
    L.append("")
    if "idle-100k" in results:
        r = results["idle-100k"]
        L += ["### 100,000 idle connections with workers", ""]
        L.append("```sh")
        L += r["cmd"]
        L.append("```")
        L.append("")
        pw = r["per_worker"]
        mean = statistics.mean(pw) if pw else 0
        L += ["| figure | value |", "|---|---|"]
        L.append(f"| connections held (server side, counted from the workers' sockets) | {r['held']:,} of {r['n']:,} |")
        L.append(f"| ramp-up (load report: first connect to all established) | {r['ramp_s']:.2f} s "
                 f"({r['connects_per_s']:,.0f} connects/s) |")
        L.append(f"| server RSS, supervisor + {r['workers']} workers: before / holding | "
                 f"{fmt_bytes(r['rss_before'])} / {fmt_bytes(r['rss_held'])} |")
        L.append(f"| server memory per connection (RSS growth / connections) | {r['server_bytes_per_conn']:.0f} B |")
        L.append(f"| kernel: TCP sockets in use (both ends, /proc/net/sockstat) | +{r['tcp_inuse_delta']:,} |")
        L.append(f"| kernel: TCP buffer memory (sockstat `mem`; idle sockets hold no buffers) | "
                 f"{r['tcp_mem_delta_bytes'] // PAGE:+,} pages |")
        L.append(f"| kernel: slab growth (/proc/meminfo `Slab`, both ends of every connection) | "
                 f"+{fmt_bytes(r['slab_delta_bytes'])} ({r['slab_delta_bytes'] / max(r['held'], 1):,.0f} B per connection) |")
        if r.get("slab_caches"):
            per = ", ".join(f"`{k}` {d / max(r['held'], 1):,.0f} B" for k, d in r["slab_caches"])
            L.append(f"| kernel: largest slab caches grown, per connection (both ends) | {per} |")
        L.append(f"| server CPU while idle (all processes, 10 s) | {r['idle_cpu_ms_per_s']:.2f} ms/s |")
        L.append(f"| connections per worker | {', '.join(f'{x:,}' for x in pw)} "
                 f"(max/mean {max(pw) / mean:.3f}, min/mean {min(pw) / mean:.3f}) |")
        L.append(f"| load generator RSS ({r['workers']} processes + parent) | {fmt_bytes(r['load_rss'])} |")
        L.append(f"| load sources | {r['sources']} |")
        if r["problems"]:
            L.append(f"| load report problems | {'; '.join(r['problems'])} |")
        L.append("")
        L.append(IDLE_NOTE)
        L.append("")
    for key, title in (("scaling", "Echo with 1 and 2 workers, side by side"), ("auto", "`--workers auto`")):
        if key not in results:
            continue
        L += [f"### {title}", ""]
        rows = results[key]
        if key == "scaling":
            L += [SCALE_NOTE, ""]
        L += ["| load | server | round trips/s (median) | server CPU per round trip | server CPU | p99 | reps |",
              "|---|---|---|---|---|---|---|"]
        for (load_name, server), reps in rows.items():
            def m(k):
                vals = [x[k] for x in reps if x.get(k) is not None]
                return statistics.median(vals) if vals else None
            L.append(f"| {load_name} | {server} | {m('rts_per_s'):,.0f} | {m('cpu_per_rt_us'):.2f} us | "
                     f"{m('server_cpu_pct'):.0f}% | {m('p99_us'):,.0f} us | {len(reps)} |")
        L.append("")
        L.append("Commands (PORT is the server's):")
        L.append("")
        L.append("```sh")
        seen = set()
        for reps in rows.values():
            for c in reps[0]["cmd"]:
                if c not in seen:
                    seen.add(c)
                    L.append(c)
        L.append("```")
        L.append("")
        notes = sorted({p for reps in rows.values() for x in reps for p in x["problems"]})
        if notes:
            L.append("Problems reported by the load: " + "; ".join(notes))
            L.append("")
    L.append(END)
    return "\n".join(L)


def write_section(text: str) -> None:
    path = R.REPO / "docs" / "benchmarks.md"
    doc = path.read_text()
    if BEGIN in doc and END in doc:
        doc = doc[:doc.index(BEGIN)] + text + doc[doc.index(END) + len(END):]
    else:
        doc = doc.rstrip("\n") + "\n\n" + text + "\n"
    path.write_text(doc)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", default="idle-100k,scaling,auto")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--secs", type=float, default=10.0)
    ap.add_argument("--idle-n", type=int, default=100_000)
    ap.add_argument("--idle-workers", type=int, default=6)
    ap.add_argument("--netloop", default=R.DEFAULT_BIN)
    ap.add_argument("--write", action="store_true")
    a = ap.parse_args()
    signal.signal(signal.SIGTERM, R._on_term)
    cfg = R.Config(netloop=a.netloop, load=a.netloop, node="node", quick=False, reps=a.reps, d={},
                   max_buffer=0, idle_max_n=0)
    only = a.only.split(",")
    results: dict = {}
    t_begin = time.monotonic()
    try:
        if "idle-100k" in only:
            print(f"idle-100k: {a.idle_n} connections, {a.idle_workers} workers", file=sys.stderr)
            results["idle-100k"] = idle_100k(cfg, a.idle_n, a.idle_workers)
            print(results["idle-100k"], file=sys.stderr)
        for key, servers in (("scaling", ("1", "2")), ("auto", ("auto",))):
            if key not in only:
                continue
            rows: dict = {}
            for rep in range(a.reps):
                for pipeline, name in ((1, "ping-pong C=100"), (16, "pipelined C=100 K=16")):
                    for workers in servers:
                        load_workers = "auto" if workers == "auto" else "1"
                        r = echo_run(cfg, workers, load_workers, pipeline, a.secs)
                        label = f"{name}" + (", load --workers auto" if workers == "auto" else "")
                        rows.setdefault((label, f"--workers {workers}"), []).append(r)
                        print(key, rep, name, workers, {k: r[k] for k in ("rts_per_s", "cpu_per_rt_us")},
                              file=sys.stderr)
            results[key] = rows
    finally:
        R.kill_all()
    mach = R.machine()
    info = {
        "command": "python3 bench/workers.py" + (f" --only {a.only}" if a.only != "idle-100k,scaling,auto" else ""),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{mach['nproc']} CPUs, {mach['cpu']}, Linux {mach['kernel']}, took "
                   f"{time.monotonic() - t_begin:.0f} s",
    }
    text = markdown(results, info)
    print(text)
    if a.write:
        write_section(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
