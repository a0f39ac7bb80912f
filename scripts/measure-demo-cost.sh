#!/usr/bin/env bash
# Measures what the demo receiver costs to serve N concurrent connections to one channel:
# CPU time of the simulator process (not the clients) over a window, as % of one core.
# Usage: scripts/measure-demo-cost.sh [connections=20] [seconds=30]. Loopback only.
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-20}
secs=${2:-30}
api=18090 stream=18001 relay=18999
cargo build --release --quiet --example demo_receiver
DEMO_API_PORT=$api DEMO_STREAM_PORT=$stream DEMO_RELAY_PORT=$relay ./target/release/examples/demo_receiver >/dev/null 2>&1 &
demo=$!
trap 'kill $demo 2>/dev/null; kill $(jobs -p) 2>/dev/null || true' EXIT
for _ in $(seq 50); do curl -s -o /dev/null "http://127.0.0.1:$api/api/about" && break; sleep 0.2; done
ref="1:0:19:283D:3FB:1:C00000:0:0:0:"
for _ in $(seq "$n"); do
  curl -s -o /dev/null --max-time $((secs + 5)) "http://127.0.0.1:$stream/$ref" &
done
sleep 2 # let every connection start before the window opens
ticks() { awk '{print $14 + $15}' "/proc/$demo/stat"; }
hz=$(getconf CLK_TCK)
t0=$(ticks)
start=$(date +%s.%N)
sleep "$secs"
t1=$(ticks)
end=$(date +%s.%N)
rss=$(awk '/VmRSS/ {print $2}' "/proc/$demo/status")
awk -v a="$t0" -v b="$t1" -v hz="$hz" -v s="$start" -v e="$end" -v n="$n" -v rss="$rss" 'BEGIN {
  cpu = (b - a) / hz; wall = e - s;
  printf "connections=%d window=%.1fs cpu=%.2fs => %.2f%% of one core, RSS %.1f MiB\n", n, wall, cpu, 100 * cpu / wall, rss / 1024 }'
