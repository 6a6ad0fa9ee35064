#!/usr/bin/env python3
"""Start-up time (spawn to the listening line and a successful connect) and RSS at start,
netloop vs Node, 7 runs each, medians. Run from the repo root after `cargo build --release`:
    python3 bench/startup.py
"""
import socket
import statistics
import subprocess
import time


def measure(cmd, runs=7):
    starts, rss = [], []
    for _ in range(runs):
        t0 = time.perf_counter()
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        try:
            addr = p.stdout.readline().split(" listening on ")[1].strip()
            host, port = addr.rsplit(":", 1)
            socket.create_connection((host, int(port)), timeout=5).close()
            starts.append((time.perf_counter() - t0) * 1000)
            time.sleep(0.2)
            with open(f"/proc/{p.pid}/status") as f:
                rss += [int(l.split()[1]) for l in f if l.startswith("VmRSS")]
        finally:
            p.terminate()
            p.wait()
    return statistics.median(starts), min(starts), max(starts), statistics.median(rss)


nl = measure(["target/release/netloop", "serve", "--echo", "127.0.0.1:0"])
nd = measure(["node", "bench/node/echo.js", "--listen", "127.0.0.1:0"])
for name, (med, lo, hi, rss) in (("netloop", nl), ("node", nd)):
    print(f"{name}: start->accepting median {med:.1f} ms (min {lo:.1f}, max {hi:.1f}); RSS at start {rss} kB")
print(f"node/netloop: start {nd[0] / nl[0]:.0f}x, RSS at start {nd[3] / nl[3]:.1f}x")
