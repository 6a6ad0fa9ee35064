#!/usr/bin/env python3
"""Hub fan-out across two nodes of a cluster against one node alone.

    python3 bench/cluster.py [--secs 10] [--reps 3] [--netloop PATH] [--write]

Starts a private redis-server (Unix socket in a temp dir, no persistence), two
`netloop serve --hub --cluster` nodes and `netloop load fanout` with its senders on node A and
its receivers on node B (`--senders-at`), so every delivery crosses Redis; then the same load
on one node without --cluster. Nodes and Redis run on CPU 0, the load on CPU 1. Reports
delivery latency (p50/p99/max, from each message's scheduled send), server CPU per delivery
(both nodes together, and each), and Redis's CPU. With --write, the table replaces the
"Cluster" section of docs/benchmarks.md (bench/run.py keeps that section when it rewrites the
file).

Python 3.11 standard library only; every process it starts is killed before it exits.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SERVER_CPU, LOAD_CPU = 0, 1
BEGIN, END = "<!-- cluster:begin -->", "<!-- cluster:end -->"
RECEIVERS = 100
# Deliveries per second = receivers x messages per second.
RATES = [(1_000, 10), (10_000, 100), (100_000, 1000)]

children: list[subprocess.Popen] = []


def spawn(argv: list[str], cpu: int | None, **kw) -> subprocess.Popen:
    before = os.sched_getaffinity(0)
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
    try:
        p = subprocess.Popen(argv, **kw)
    finally:
        os.sched_setaffinity(0, before)
    children.append(p)
    return p


def kill_all() -> None:
    for p in children:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout=3)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=5)
    children.clear()


def cpu_ns(pid: int) -> int:
    """CPU time of every thread of `pid`, in ns (schedstat: finer than clock ticks)."""
    total = 0
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return total


class Sampler(threading.Thread):
    """CPU time of some processes every 50 ms, to cut out the measured window afterwards."""

    def __init__(self, pids: dict[str, int]):
        super().__init__(daemon=True)
        self.pids, self.samples, self.done = pids, [], threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            self.samples.append((time.monotonic(), {k: cpu_ns(p) for k, p in self.pids.items()}))
            time.sleep(0.05)

    def cpu_s(self, name: str, t0: float, t1: float) -> float:
        def at(t: float) -> int:
            best = min(self.samples, key=lambda s: abs(s[0] - t))
            return best[1][name]
        return (at(t1) - at(t0)) / 1e9


def start_node(netloop: str, cluster: str | None) -> tuple[subprocess.Popen, str]:
    argv = [netloop, "serve", "--hub", "127.0.0.1:0"]
    if cluster:
        argv += ["--cluster", cluster]
    p = spawn(argv, SERVER_CPU, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
              stderr=subprocess.DEVNULL)
    line = p.stdout.readline().decode().strip()
    m = re.match(r"^hub listening on (\S+)$", line)
    if not m:
        raise RuntimeError(f"unexpected first line {line!r}")
    return p, m.group(1)


def start_redis(dir_: str) -> tuple[subprocess.Popen, str]:
    sock = os.path.join(dir_, "redis.sock")
    p = spawn(["redis-server", "--port", "0", "--unixsocket", sock, "--save", "", "--appendonly", "no",
               "--dir", dir_], SERVER_CPU, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
              stderr=subprocess.DEVNULL)
    for _ in range(200):
        if os.path.exists(sock):
            return p, sock
        time.sleep(0.02)
    raise RuntimeError("redis-server did not start")


WHERE = {"one": "one node", "across": "across nodes", "both": "both nodes"}


def one_run(netloop: str, where: str, rate: int, secs: float) -> dict:
    cross = where != "one"
    tmp = tempfile.mkdtemp(prefix="netloop-bench-cluster-")
    try:
        pids: dict[str, int] = {}
        if cross:
            redis, sock = start_redis(tmp)
            a, a_addr = start_node(netloop, f"unix:{sock}")
            b, b_addr = start_node(netloop, f"unix:{sock}")
            pids = {"redis": redis.pid, "sender_node": a.pid, "receiver_node": b.pid}
            time.sleep(0.5)  # both nodes subscribed and introduced
        else:
            b, b_addr = start_node(netloop, None)
            a_addr = None
            pids = {"receiver_node": b.pid}
        sampler = Sampler(pids)
        sampler.start()
        argv = [netloop, "load", "fanout", b_addr, "--protocol", "hub", "-c", str(RECEIVERS),
                "--senders", "1", "-r", str(rate), "-T", f"{secs:g}s", "-q", "--json"]
        if a_addr:
            argv += ["--senders-at" if where == "across" else "--half-at", a_addr]
        load = spawn(argv, LOAD_CPU, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                     stderr=subprocess.PIPE)
        out, err = load.communicate(timeout=secs + 120)
        t_end = time.monotonic()
        time.sleep(0.1)
        sampler.done.set()
        sampler.join()
        rep = json.loads(out)
        f = rep["fanout"]
        window = rep["duration_s"] + f.get("drain_s", 0.0)
        t0, t1 = t_end - window, t_end
        deliveries = f["deliveries"]
        cpu = {k: sampler.cpu_s(k, t0, t1) for k in pids}
        servers = sum(v for k, v in cpu.items() if k != "redis")
        lat = rep["latency_us"]
        return {
            "ok": rep["ok"] and f["lost"] == 0 and f["undelivered"] == 0,
            "deliveries_per_s": deliveries / window,
            "p50_us": lat["p50"], "p99_us": lat["p99"], "max_us": lat["max"],
            "server_cpu_per_delivery_us": servers * 1e6 / deliveries,
            "receiver_cpu_per_delivery_us": cpu["receiver_node"] * 1e6 / deliveries,
            "sender_cpu_per_message_us": cpu.get("sender_node", 0.0) * 1e6 / max(1, f["messages_sent"]),
            "redis_cpu_pct": 100 * cpu.get("redis", 0.0) / window,
            "redis_cpu_per_message_us": cpu.get("redis", 0.0) * 1e6 / max(1, f["messages_sent"]),
            "problems": rep.get("problems", []),
        }
    finally:
        kill_all()
        shutil.rmtree(tmp, ignore_errors=True)


def fmt_us(us: float) -> str:
    return f"{us / 1000:.2f} ms" if us >= 1000 else f"{us:.1f} us"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--secs", type=float, default=10.0)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--netloop", default=str(REPO / "target" / "release" / "netloop"))
    ap.add_argument("--write", action="store_true", help="replace the Cluster section of docs/benchmarks.md")
    args = ap.parse_args()
    if shutil.which("redis-server") is None:
        sys.exit("redis-server is missing: sudo apt-get install -y redis-server")
    subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=REPO, check=True)
    started = time.monotonic()
    load_at_start = Path("/proc/loadavg").read_text().split()[0]
    rows = []
    try:
        for deliveries, rate in RATES:
            for where in WHERE:
                cross = where != "one"
                runs = [one_run(args.netloop, where, rate, args.secs) for _ in range(args.reps)]
                med = {k: statistics.median(r[k] for r in runs)
                       for k in runs[0] if isinstance(runs[0][k], (int, float)) and k != "ok"}
                ok = all(r["ok"] for r in runs)
                rows.append((deliveries, rate, where, med, ok, [p for r in runs for p in r["problems"]]))
                print(f"{deliveries:>7,} deliveries/s {WHERE[where]:>12}: p50 {fmt_us(med['p50_us'])}, "
                      f"p99 {fmt_us(med['p99_us'])}, max {fmt_us(med['max_us'])}, "
                      f"server CPU/delivery {med['server_cpu_per_delivery_us']:.2f} us, "
                      f"redis CPU {med['redis_cpu_pct']:.1f}% {'' if ok else '(LOSSES)'}", flush=True)
    finally:
        kill_all()
    took = time.monotonic() - started
    L = [BEGIN, "", "## Cluster: hub fan-out across nodes through Redis", ""]
    L.append(f"Generated by `python3 bench/cluster.py --secs {args.secs:g} --reps {args.reps}` on "
             f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC (took {took / 60:.1f} min), "
             f"with Redis {subprocess.run(['redis-server', '--version'], capture_output=True, text=True).stdout.split()[2].removeprefix('v=')}.")
    L.append("")
    L.append(f"{RECEIVERS} hub receivers (joined to one room) and 1 sender broadcasting to the room. "
             "*One node*: `netloop serve --hub` alone, everyone on it. *Across nodes*: two "
             "`netloop serve --hub --cluster unix:redis.sock` nodes, the sender on node A and the "
             "receivers on node B (`netloop load fanout B --senders-at A`), so every message goes "
             "A -> Redis -> B. *Both nodes*: every other receiver and sender on each node "
             "(`--half-at A`), so half the deliveries cross. Nodes and Redis on CPU 0, the load on CPU 1; medians of the "
             "repetitions. Latency is from each message's scheduled send to its arrival. Server "
             "CPU is both nodes together (schedstat, over the sending and draining window), per "
             "delivery (\"receiving node\" is node B, \"sending node\" node A); Redis CPU is redis-server's own, per message published. At these low rates "
             "a node's and Redis's fixed costs (heartbeats, lease refreshes, Redis's own timer) "
             "weigh on the per-message figures; Redis CPU % is the one to read. The 1-minute load "
             f"average was {load_at_start} at the start: on a shared machine the tails (p99, max) "
             "mostly measure scheduling delays, the p50 and CPU figures less so.")
    L.append("")
    L.append("| deliveries/s | where | p50 | p99 | max | server CPU per delivery | receiving node CPU per delivery | sending node CPU per message | Redis CPU | Redis CPU per message | lost or undelivered |")
    L.append("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for deliveries, rate, where, med, ok, _ in rows:
        cross = where != "one"
        # With members on both nodes, each node both sends and receives: only the sum means much.
        sender = fmt_us(med["sender_cpu_per_message_us"]) if where == "across" else "-"
        receiver = f"{med['receiver_cpu_per_delivery_us']:.2f} us" if where != "both" else "-"
        redis = f"{med['redis_cpu_pct']:.2f}%" if cross else "-"
        redis_msg = fmt_us(med["redis_cpu_per_message_us"]) if cross else "-"
        L.append(f"| {deliveries:,} ({RECEIVERS} x {rate} msg/s) | {WHERE[where]} | {fmt_us(med['p50_us'])} | "
                 f"{fmt_us(med['p99_us'])} | {fmt_us(med['max_us'])} | "
                 f"{med['server_cpu_per_delivery_us']:.2f} us | {receiver} | "
                 f"{sender} | {redis} | {redis_msg} | {'none' if ok else '**yes**'} |")
    problems = sorted({p for *_, ps in rows for p in ps})
    if problems:
        L += ["", "Problems reported by the load generator:", ""] + [f"- {p}" for p in problems]
    L += ["", END]
    block = "\n".join(L)
    print("\n" + block)
    if args.write:
        path = REPO / "docs" / "benchmarks.md"
        text = path.read_text()
        if BEGIN in text:
            text = text[:text.index(BEGIN)] + block + text[text.index(END) + len(END):]
        else:
            text = text.rstrip() + "\n\n" + block + "\n"
        path.write_text(text)
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    finally:
        kill_all()
