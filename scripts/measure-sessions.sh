#!/usr/bin/env bash
# Measures xg2g's stream sessions against the demo receiver (issue 3's closing note), loopback only:
#   - time to first byte of /stream/<HD>?profile=aac, cold (median of 5) and joining a running
#     session (median of 5), as curl's time_starttransfer (xg2g answers a session request only
#     once the session has media, so the headers come with the first bytes);
#   - time to the first HLS playlist (index.m3u8) for aac on the HD channel and h264 on the SD one,
#     cold (median of 3 each);
#   - CPU of the xg2g process per aac TS session (4 sessions, one per video channel, for a window),
#     its RSS and the demo receiver's CPU over the same window;
#   - P50/P95 of xg2g_transcode_latency_seconds over the windows (aac; h264 from one h264 TS
#     session on the SD channel), computed like Prometheus' histogram_quantile().
# Usage: scripts/measure-sessions.sh [window seconds=30]. Runs about 2 minutes after the build.
# Needs curl and python3 (scripts/prom.py). Every wait is bounded; everything started is stopped.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-30}
api=18490 stream=18401 relay=18499 port=18480
base="http://127.0.0.1:$port"
HD="1:0:19:283D:3FB:1:C00000:0:0:0:"
SD="1:0:1:6F0B:44D:1:C00000:0:0:0:"
ORF="1:0:19:132F:3EF:1:C00000:0:0:0:"
MUC="1:0:1:2EE3:441:1:C00000:0:0:0:"
prom() { python3 scripts/prom.py "$@"; }
now() { date +%s.%N; }
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }

echo "== machine: $(nproc) CPUs, $(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)"
echo "== load average at start: $(loadavg)"
build_start=$(now)
cargo build --release --quiet --example demo_receiver --bin xg2g
echo "== build: release profile ($(awk '/^\[profile.release\]/ {p=1; next} /^\[/ {p=0} p && NF' Cargo.toml | paste -sd' ' -)), $(awk -v a="$build_start" -v b="$(now)" 'BEGIN {printf "%.0f", b - a}') s"

for p in $api $stream $relay $port; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
    echo "port $p is already in use on 127.0.0.1; stop what uses it first" >&2
    exit 1
  fi
done

work=$(mktemp -d)
demo="" xg2g=""
cleanup() {
  local pids
  pids=$(jobs -p)
  [ -n "$pids" ] && kill $pids 2>/dev/null || true
  for pid in $xg2g $demo; do
    kill -TERM "$pid" 2>/dev/null || continue
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

DEMO_API_PORT=$api DEMO_STREAM_PORT=$stream DEMO_RELAY_PORT=$relay \
  ./target/release/examples/demo_receiver >"$work/demo.log" 2>&1 &
demo=$!
for _ in $(seq 50); do curl -s -o /dev/null "http://127.0.0.1:$api/api/about" && break; sleep 0.1; done

XG2G_OWI_BASE="http://127.0.0.1:$api" XG2G_STREAM_PORT=$stream XG2G_RELAY_PORT=$relay \
  XG2G_HDHR_SSDP=false XG2G_SESSION_GRACE=0s XG2G_HLS_IDLE_TIMEOUT=3s XG2G_LOG_LEVEL=info \
  ./target/release/xg2g --listen "127.0.0.1:$port" serve >"$work/xg2g.log" 2>&1 &
xg2g=$!
ready=""
for _ in $(seq 100); do
  if [ "$(curl -s -o /dev/null -w '%{http_code}' "$base/readyz")" = 200 ]; then ready=1; break; fi
  sleep 0.1
done
[ -n "$ready" ] || { echo "xg2g did not become ready; its log:" >&2; tail -20 "$work/xg2g.log" >&2; exit 1; }

scrape() { curl -s --max-time 5 "$base/metrics" >"$1"; }
gauge() { scrape "$work/m.now" && prom sum "$work/m.now" "$1"; }
# Waits (at most $3 seconds) until the gauge $1 (summed over its labels) is $2; prints how long
# that took.
wait_gauge() {
  local metric=$1 want=$2 limit=$3 start
  start=$(now)
  while [ "$(gauge "$metric")" != "$want" ]; do
    if awk -v a="$start" -v b="$(now)" -v l="$limit" 'BEGIN {exit !(b - a > l)}'; then
      echo "timed out waiting for $metric = $want (now $(gauge "$metric"))" >&2
      return 1
    fi
    sleep 0.02
  done
  awk -v a="$start" -v b="$(now)" 'BEGIN {printf "%.3f\n", b - a}'
}
wait_active() { wait_gauge xg2g_sessions_active "$@"; }
# One TS request that reads $2 bytes and hangs up; prints time_starttransfer (s) on success.
ts_first_byte() {
  local url=$1 bytes=$2 out
  out=$({ curl -s -N --max-time 20 -w '%{stderr}%{http_code} %{time_starttransfer}\n' "$url" |
    head -c "$bytes" >/dev/null; } 2>&1 || true)
  case $out in
    "200 "*) echo "${out#200 }" ;;
    *) echo "request failed: $url: $out" >&2; return 1 ;;
  esac
}
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
status_kib() { awk -v k="$2:" '$1 == k {print $2}' "/proc/$1/status"; }
machine_busy() { awk '/^cpu / {print $2 + $3 + $4 + $7 + $8 + $9, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9}' /proc/stat; }
hz=$(getconf CLK_TCK)
rss_ready=$(status_kib $xg2g VmRSS)

echo "== cold aac TS: 5 sessions one after the other (grace 0 s; each waits for the previous to end)"
scrape "$work/m.cold0"
: >"$work/cold" && : >"$work/teardown"
for _ in 1 2 3 4 5; do
  ts_first_byte "$base/stream/$HD?profile=aac" 188 >>"$work/cold"
  wait_active 0 15 >>"$work/teardown"
done
scrape "$work/m.cold1"

echo "== joining a running aac TS session: 5 joins"
curl -s -N --max-time 60 -o /dev/null "$base/stream/$HD?profile=aac" &
holder=$!
wait_gauge xg2g_session_clients 1 20 >/dev/null # counted once the session's first media is out
: >"$work/join"
for _ in 1 2 3 4 5; do
  ts_first_byte "$base/stream/$HD?profile=aac" 188 >>"$work/join"
  wait_gauge xg2g_session_clients 1 10 >/dev/null # the join has left; the holder keeps the session
done
kill $holder 2>/dev/null || true
wait $holder 2>/dev/null || true
wait_active 0 15 >/dev/null

echo "== cold HLS playlists: 3 each (idle timeout 3 s; each waits for the previous to end)"
: >"$work/hls_aac" && : >"$work/hls_h264" && : >"$work/hls_teardown"
scrape "$work/m.hls0"
for _ in 1 2 3; do
  for spec in "aac $HD" "h264 $SD"; do
    set -- $spec
    out=$(curl -s --max-time 30 -o "$work/playlist" -w '%{http_code} %{time_total}' "$base/hls/$2/$1/index.m3u8")
    if [ "${out%% *}" != 200 ] || ! head -1 "$work/playlist" | grep -q '^#EXTM3U'; then
      echo "HLS $1 failed: $out $(head -c 300 "$work/playlist")" >&2
      exit 1
    fi
    echo "${out#* }" >>"$work/hls_$1"
    wait_active 0 20 >>"$work/hls_teardown"
  done
done
scrape "$work/m.hls1"

# Runs $1 (a list of "profile ref") as TS sessions for the window; leaves results in $work/$2.*
window() {
  local specs=$1 tag=$2 n=0 spec clients=""
  for spec in $specs; do
    curl -s -N --max-time $((secs + 6)) -o /dev/null -w '%{size_download}\n' \
      "$base/stream/${spec#*@}?profile=${spec%@*}" >>"$work/$tag.bytes" &
    clients="$clients $!"
    n=$((n + 1))
  done
  wait_gauge xg2g_session_clients $n 30 >/dev/null
  sleep 2 # past every session's start-up
  scrape "$work/m.$tag.0"
  local t0 d0 b0 s0 t1 d1 b1 s1
  t0=$(ticks $xg2g) d0=$(ticks $demo) b0=$(machine_busy) s0=$(now)
  sleep "$secs"
  t1=$(ticks $xg2g) d1=$(ticks $demo) b1=$(machine_busy) s1=$(now)
  scrape "$work/m.$tag.1"
  echo "$n $t0 $t1 $d0 $d1 $s0 $s1 $b0 $b1 $(status_kib $xg2g VmRSS) $(status_kib $xg2g VmHWM)" \
    "$(awk '/^Threads:/ {print $2}' /proc/$xg2g/status)" >"$work/$tag.cpu"
  wait $clients || true # the clients end by their --max-time
  wait_active 0 15 >/dev/null
}
echo "== $secs s window: 4 aac TS sessions (HD, SD, ORF1 HD via relay, Münchner), one client each"
window "aac@$HD aac@$SD aac@$ORF aac@$MUC" aac
echo "== $secs s window: 1 h264 TS session (SD)"
window "h264@$SD" h264
rss_end=$(status_kib $xg2g VmRSS)

cpu_line() { # tag label
  read -r n t0 t1 d0 d1 s0 s1 bb0 bt0 bb1 bt1 rss hwm threads <"$work/$1.cpu"
  awk -v n="$n" -v t0="$t0" -v t1="$t1" -v d0="$d0" -v d1="$d1" -v s0="$s0" -v s1="$s1" \
    -v bb0="$bb0" -v bt0="$bt0" -v bb1="$bb1" -v bt1="$bt1" -v hz="$hz" -v rss="$rss" \
    -v hwm="$hwm" -v th="$threads" -v label="$2" -v cores="$(nproc)" 'BEGIN {
      wall = s1 - s0; x = 100 * (t1 - t0) / hz / wall; d = 100 * (d1 - d0) / hz / wall
      busy = 100 * (bb1 - bb0) / (bt1 - bt0)
      printf "| %s | %d | %.1f s | %.1f %% | %.1f %% | %.0f MiB (peak %.0f) | %d | %.1f %% | %.0f %% of all %d CPUs |\n",
        label, n, wall, x, x / n, rss / 1024, hwm / 1024, th, d, busy, cores }'
}
median() { prom median <"$work/$1"; }
ms() { awk -v s="$1" 'BEGIN {printf "%.0f ms", s * 1000}'; }
list() { awk '{printf "%s%.0f", (NR > 1 ? " " : ""), $1 * 1000}' "$work/$1"; }

echo
echo "### Stream sessions on the demo receiver ($(nproc) CPUs, $(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo), release build)"
echo
echo "| measurement | median | runs (ms) |"
echo "|---|---|---|"
echo "| TS aac, cold: time to first byte | $(ms "$(median cold)") | $(list cold) |"
echo "| TS aac, joining a running session: time to first byte | $(ms "$(median join)") | $(list join) |"
echo "| HLS aac (HD), cold: first index.m3u8 | $(ms "$(median hls_aac)") | $(list hls_aac) |"
echo "| HLS h264 (SD), cold: first index.m3u8 | $(ms "$(median hls_h264)") | $(list hls_h264) |"
echo "| TS session end after its last client left (grace 0 s) | $(ms "$(median teardown)") | $(list teardown) |"
echo "| HLS session end after the playlist (idle timeout 3 s) | $(ms "$(median hls_teardown)") | $(list hls_teardown) |"
echo
echo "xg2g's own xg2g_time_to_first_byte_seconds over the same requests:" \
  "TS cold $(prom mean "$work/m.cold0" "$work/m.cold1" xg2g_time_to_first_byte_seconds output=ts)," \
  "HLS $(prom mean "$work/m.hls0" "$work/m.hls1" xg2g_time_to_first_byte_seconds output=hls)"
echo
echo "| window | sessions | length | xg2g CPU (% of one core) | per session | xg2g RSS | xg2g threads | demo receiver CPU | whole machine busy |"
echo "|---|---|---|---|---|---|---|---|---|"
cpu_line aac "aac TS"
cpu_line h264 "h264 TS (x264enc)"
echo
echo "Bytes each client read in its window (curl --max-time $((secs + 6)) s): aac $(paste -sd' ' "$work/aac.bytes"); h264 $(paste -sd' ' "$work/h264.bytes")"
echo "xg2g RSS: $((rss_ready / 1024)) MiB when ready, $((rss_end / 1024)) MiB after every session ended"
echo
echo "xg2g_transcode_latency_seconds over each window: histogram_quantile over the window's increase" \
  "(buckets double from 1 ms, so a quantile is interpolated inside a bucket twice as wide as its start):"
prom quantiles "$work/m.aac.0" "$work/m.aac.1" xg2g_transcode_latency_seconds 0.5 0.95 | sed 's/^/  aac window:  /'
prom quantiles "$work/m.h264.0" "$work/m.h264.1" xg2g_transcode_latency_seconds 0.5 0.95 | sed 's/^/  h264 window: /'
echo
errors=$(grep -c -E ' (WARN|ERROR) ' "$work/xg2g.log" || true)
echo "xg2g log: $errors WARN/ERROR lines$([ "$errors" -gt 0 ] && echo '; the first ones:')"
grep -E ' (WARN|ERROR) ' "$work/xg2g.log" | head -5 | sed 's/\x1b\[[0-9;]*m//g' || true
echo "== load average at the end: $(loadavg)"
