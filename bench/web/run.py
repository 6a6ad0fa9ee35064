#!/usr/bin/env python3
"""netloop's web endpoint against Node's `ws` and socket.io servers, side by side in one run.

    python3 bench/web/run.py [--netloop PATH] [--idle N] [--fanout N] [--rate R] [--seconds S]

Figures (written to the web section of docs/benchmarks.md):
- memory per idle WebSocket (/ws) and per idle socket.io connection (WebSocket transport):
  the server's RSS growth over N connections, divided by N (kernel socket buffers are not in
  RSS, for either server);
- socket.io fan-out: N receivers, one sender emitting `broadcast` R times a second for S
  seconds: server CPU (user + system) per delivered message, and the delivery latency
  (p50/p99) the receivers measured.
Needs `npm ci` in bench/web (ws, socket.io, socket.io-client pinned there). Every process it
starts is killed before it exits; all traffic stays on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
CLK_TCK = os.sysconf("SC_CLK_TCK")


def rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def cpu_seconds(pid: int) -> float:
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rfind(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def start(cmd: list[str], want: str) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    deadline = time.time() + 20
    while time.time() < deadline:
        line = proc.stdout.readline()
        if line.startswith(want):
            return proc, line.split()[-1]
    proc.kill()
    raise SystemExit(f"{cmd[0]} did not print {want!r}")


def servers(netloop: str):
    """(label, kind, command, listening-line prefix) for each server."""
    node = ["node", str(HERE / "servers.js")]
    return [
        ("netloop", "ws", [netloop, "serve", "--web", "127.0.0.1:0", "--register-timeout", "0"], "web listening on"),
        ("Node ws", "ws", node + ["ws", "0"], "listening on"),
        ("netloop", "sio", [netloop, "serve", "--web", "127.0.0.1:0", "--register-timeout", "0"], "web listening on"),
        ("Node socket.io", "sio", node + ["socketio", "0"], "listening on"),
    ]


def settle(pid: int) -> int:
    """RSS once it stops moving (at most 3 s)."""
    last = rss(pid)
    for _ in range(15):
        time.sleep(0.2)
        now = rss(pid)
        if abs(now - last) < 64 * 1024:
            return now
        last = now
    return last


def idle_memory(netloop: str, n: int) -> list[tuple[str, str, float]]:
    rows = []
    for label, kind, cmd, want in servers(netloop):
        server, addr = start(cmd, want)
        try:
            time.sleep(0.3)
            before = settle(server.pid)
            clients = subprocess.Popen(
                ["node", str(HERE / "clients.js"), f"idle-{kind}", str(n), addr],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            line = clients.stdout.readline().strip()
            if line != "ready":
                raise SystemExit(f"{label} {kind}: clients failed: {line!r}")
            after = settle(server.pid)
            rows.append((label, kind, (after - before) / n))
            clients.stdin.close()
            clients.wait(timeout=20)
        finally:
            server.kill()
            server.wait()
    return rows


def fanout(netloop: str, n: int, rate: int, seconds: int) -> list[tuple[str, dict]]:
    rows = []
    for label, kind, cmd, want in servers(netloop):
        if kind != "sio":
            continue
        server, addr = start(cmd, want)
        try:
            clients = subprocess.Popen(
                ["node", str(HERE / "clients.js"), "fanout-sio", str(n), str(rate), str(seconds), addr],
                stdout=subprocess.PIPE, text=True)
            assert clients.stdout.readline().strip() == "ready"
            cpu0 = cpu_seconds(server.pid)
            result = json.loads(clients.stdout.readline())
            cpu1 = cpu_seconds(server.pid)
            clients.wait(timeout=30)
            result["cpu_us_per_delivery"] = (cpu1 - cpu0) * 1e6 / max(result["deliveries"], 1)
            result["server_rss_mib"] = rss(server.pid) / 2**20
            rows.append((label, result))
        finally:
            server.kill()
            server.wait()
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--netloop", default=str(REPO / "target" / "release" / "netloop"))
    ap.add_argument("--idle", type=int, default=2000)
    ap.add_argument("--fanout", type=int, default=1000)
    ap.add_argument("--rate", type=int, default=20)
    ap.add_argument("--seconds", type=int, default=10)
    args = ap.parse_args()
    idle = idle_memory(args.netloop, args.idle)
    fan = fanout(args.netloop, args.fanout, args.rate, args.seconds)
    out = [
        f"One run of `python3 bench/web/run.py --idle {args.idle} --fanout {args.fanout} --rate {args.rate} "
        f"--seconds {args.seconds}` on this 2-core machine, {time.strftime('%Y-%m-%d')}; server and clients "
        "share the cores, so the absolute numbers are pessimistic for both.",
        "",
        f"### Memory per idle connection ({args.idle} connections, server RSS growth / N)",
        "",
        "| server | transport | bytes per connection |",
        "|---|---|---:|",
    ]
    for label, kind, per in idle:
        out.append(f"| {label} | {'WebSocket (/ws)' if kind == 'ws' else 'socket.io (WebSocket)'} | {per:,.0f} |")
    out += [
        "",
        f"### socket.io fan-out: {args.fanout} receivers, {args.rate} broadcasts/s for {args.seconds} s",
        "",
        "| server | delivered / expected | server CPU per delivery (µs) | latency p50 (ms) | p99 (ms) | server RSS (MiB) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for label, r in fan:
        out.append(
            f"| {label} | {r['deliveries']:,} / {r['expected']:,} | {r['cpu_us_per_delivery']:.2f} | "
            f"{r['p50']:.1f} | {r['p99']:.1f} | {r['server_rss_mib']:.1f} |")
    text = "\n".join(out) + "\n"
    write_section(text)
    print(text)


BEGIN, END = "<!-- web:begin -->", "<!-- web:end -->"
# The hand-written reading of the figures, kept when the tables are measured again.
NOTES = "### Reading the figures"


def write_section(tables: str) -> None:
    """Replaces the web section of docs/benchmarks.md with `tables`, keeping its notes."""
    path = REPO / "docs" / "benchmarks.md"
    doc = path.read_text()
    notes = ""
    if BEGIN in doc and END in doc:
        old = doc[doc.index(BEGIN):doc.index(END)]
        if NOTES in old:
            notes = "\n" + old[old.index(NOTES):].rstrip() + "\n"
        before, after = doc[:doc.index(BEGIN)], doc[doc.index(END) + len(END):]
    else:
        before, after = doc.rstrip("\n") + "\n\n", "\n"
    section = f"{BEGIN}\n\n## Web endpoint: netloop vs Node's ws and socket.io\n\n{tables}{notes}\n{END}"
    path.write_text(before + section + after)


if __name__ == "__main__":
    sys.exit(main())
