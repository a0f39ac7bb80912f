#!/usr/bin/env bash
# Profiles `xg2g serve` alone under a few sessions at broadcast bitrates: the demo receiver runs
# as its own process (examples/demo_receiver, DEMO_BITRATE=broadcast), one client per video
# channel with the given profile, and `perf record -g` samples only the xg2g process.
# Prints xg2g's CPU over the window (% of one core) and the top libraries and symbols.
# Usage: scripts/profile-sessions.sh [profile=aac] [seconds=60]. Needs linux-perf. Loopback only.
# CHANNELS="ref ..." picks the channels (default: the four video channels, one session each).
set -euo pipefail
cd "$(dirname "$0")/.."
profile=${1:-aac}
secs=${2:-60}
api=18090 stream=18001 relay=18999 listen=127.0.0.1:18080
out=target/profile
mkdir -p "$out"
cargo build --release --quiet --bin xg2g --example demo_receiver
DEMO_BITRATE=broadcast DEMO_API_PORT=$api DEMO_STREAM_PORT=$stream DEMO_RELAY_PORT=$relay \
  ./target/release/examples/demo_receiver >"$out/receiver.log" 2>&1 &
receiver=$!
trap 'kill $(jobs -p) 2>/dev/null || true' EXIT
for _ in $(seq 200); do curl -s -o /dev/null "http://127.0.0.1:$api/api/about" && break; sleep 0.3; done
XG2G_STREAM_PORT=$stream XG2G_RELAY_PORT=$relay XG2G_LISTEN=$listen \
  ./target/release/xg2g --receiver "http://127.0.0.1:$api" serve >"$out/serve.log" 2>&1 &
server=$!
for _ in $(seq 100); do curl -s -o /dev/null -w '%{http_code}' "http://$listen/readyz" | grep -q 200 && break; sleep 0.3; done
channels=${CHANNELS:-1:0:19:283D:3FB:1:C00000:0:0:0: 1:0:1:6F0B:44D:1:C00000:0:0:0: \
  1:0:19:132F:3EF:1:C00000:0:0:0: 1:0:1:2EE3:441:1:C00000:0:0:0:}
count=$(wc -w <<<"$channels")
for ref in $channels; do
  curl -s -o /dev/null --max-time $((secs + 10)) "http://$listen/stream/$ref?profile=$profile" &
done
sleep 5 # every session started before the window opens
ticks() { awk '{print $14 + $15}' "/proc/$server/stat"; }
t0=$(ticks)
perf record -F 499 -g -p "$server" -o "$out/perf.data" -- sleep "$secs" >/dev/null 2>&1
t1=$(ticks)
awk -v a="$t0" -v b="$t1" -v hz="$(getconf CLK_TCK)" -v s="$secs" -v p="$profile" -v n="$count" 'BEGIN {
  printf "xg2g serve, %d %s sessions at broadcast bitrates: %.1f%% of one core over %d s\n", n, p, 100 * (b - a) / hz / s, s }'
perf report -i "$out/perf.data" --no-children --sort dso -q -g none 2>/dev/null | head -10
perf report -i "$out/perf.data" --no-children --sort sym -q -g none 2>/dev/null | head -15
kill "$server" "$receiver" 2>/dev/null || true
