#!/usr/bin/env python3
"""Two netloop builds side by side: the same scenarios of bench/run.py, the builds alternating
rep by rep in one run, so both see the same machine. For a change that must not cost speed.

    python3 bench/compare_builds.py --before OLD/netloop --after target/release/netloop \
        --only echo-c100,pipelined,fanout-chat,fanout-hub --reps 3

Prints one markdown table: each figure's median per build and after/before.
"""

import argparse
import importlib.util
import os
import statistics
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def load_runner():
    spec = importlib.util.spec_from_file_location("bench_run", HERE / "run.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["bench_run"] = mod
    spec.loader.exec_module(mod)
    return mod


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--before", required=True, help="netloop binary before the change")
    ap.add_argument("--after", required=True, help="netloop binary after the change")
    ap.add_argument("--only", default="echo-c100,pipelined,fanout-chat,fanout-hub")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="short windows (a smoke test)")
    args = ap.parse_args()
    run = load_runner()
    builds = {"before": str(Path(args.before).resolve()), "after": str(Path(args.after).resolve())}
    for path in builds.values():
        if not os.access(path, os.X_OK):
            print(f"compare: {path} is not an executable", file=sys.stderr)
            return 2
    d = dict(run.QUICK if args.quick else run.FULL)
    scenarios = args.only.split(",")
    for sc in scenarios:
        if sc not in run.RUNNERS:
            print(f"compare: unknown scenario {sc}; known: {', '.join(run.RUNNERS)}", file=sys.stderr)
            return 2
    cfgs = {
        name: run.Config(netloop=path, load=builds["after"], node="node", quick=args.quick, reps=args.reps,
                         d=d, max_buffer=run.default_max_buffer(path), idle_max_n=1000)
        for name, path in builds.items()
    }
    os.sched_setaffinity(0, {run.LOAD_CPU})
    results = {sc: {"before": [], "after": []} for sc in scenarios}
    for sc in scenarios:
        for rep in range(args.reps):
            # Alternate which build goes first, so a drift in the machine favours neither.
            order = ["before", "after"] if rep % 2 == 0 else ["after", "before"]
            for name in order:
                print(f"compare: {sc} rep {rep + 1}/{args.reps} {name}", file=sys.stderr, flush=True)
                results[sc][name].append(run.RUNNERS[sc](cfgs[name], "netloop"))
    print(f"| scenario | figure | before | after | after/before |\n|---|---|---:|---:|---:|")
    for sc in scenarios:
        keys = [k for k in results[sc]["after"][0] if not k.startswith("_")]
        for key in keys:
            med = {}
            for name in ("before", "after"):
                vals = [r.get(key) for r in results[sc][name] if isinstance(r.get(key), (int, float))]
                med[name] = statistics.median(vals) if vals else None
            if med["before"] is None or med["after"] is None:
                continue
            ratio = f"{med['after'] / med['before']:.2f}" if med["before"] else "-"
            print(f"| {sc} | {key} | {med['before']:.4g} | {med['after']:.4g} | {ratio} |")
    notes = [n for sc in scenarios for name in ("before", "after") for r in results[sc][name]
             for n in r.get("_notes", [])]
    if notes:
        print("\nNotes:\n" + "\n".join(f"- {n}" for n in sorted(set(notes))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
