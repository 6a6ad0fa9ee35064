#!/usr/bin/env bash
# Server RSS and CPU with N idle connections (default 19,000): netloop vs Node, side by side.
# Server pinned to CPU 0, load to CPU 1. Run from the repo root after `cargo build --release`:
#   N=19000 bench/idle_rss.sh
set -u
N=${N:-19000}
rss() { awk '/VmRSS/{print $2}' /proc/$1/status; }
ticks() { awk '{print $14+$15}' /proc/$1/stat; }
run() {
  local name=$1; shift
  taskset -c 0 "$@" > /tmp/srv.out 2>/dev/null & local pid=$!
  for i in $(seq 50); do grep -q listening /tmp/srv.out && break; sleep 0.1; done
  local addr=$(sed -n 's/.* listening on //p' /tmp/srv.out | head -1)
  sleep 0.3; local before=$(rss $pid)
  taskset -c 1 target/release/netloop load idle $addr -c $N -T 12s -q --json > /tmp/idle.json &
  local lp=$!
  sleep 5; local t0=$(ticks $pid); local during=$(rss $pid); sleep 2; local t1=$(ticks $pid)
  wait $lp
  local up=$(python3 -c "import json;print(json.load(open('/tmp/idle.json'))['connections']['established'])")
  echo "$name: connections=$up rss_before_kB=$before rss_with_idle_kB=$during bytes_per_conn=$(( (during-before)*1024/up )) idle_cpu_ticks_2s=$((t1-t0))"
  kill $pid; wait $pid 2>/dev/null
}
run netloop target/release/netloop serve --echo 127.0.0.1:0
run node node bench/node/echo.js --listen 127.0.0.1:0
