#!/usr/bin/env bash
# Groundwork for issue 13 (an adaptive-bitrate ladder from one decode), measured before it is
# built: CPU seconds (user + sys) of a three-rung H.264 ladder made from one decode (tee +
# queues, as the ladder profile would) against the same three rungs as three separate
# transcodes, offline over 20 s captures of the demo's HD (H.264 720p50) and SD (MPEG-2 576i,
# deinterlaced to 50p) channels at broadcast bitrate. The HD ladder is also measured with its
# top rung copied (the source is H.264 a client decodes), as issue 13 asks. x264enc runs with
# the settings of pipelines/encoders.toml. Usage: scripts/measure-ladder.sh [repeats=3]
# Needs a release build (scripts/demo makes one), gst-launch-1.0 and curl; the demo receiver
# and xg2g run on loopback only, and only while the captures are taken.
set -euo pipefail
cd "$(dirname "$0")/.."
repeats=${1:-3}
dir=$(mktemp -d)
port=18399
trap 'pkill -f "listen 127.0.0.1:$port" || true; rm -rf "$dir"' EXIT

"${CARGO_TARGET_DIR:-target}/release/xg2g" demo --bitrate broadcast --listen "127.0.0.1:$port" >"$dir/demo.log" 2>&1 &
for _ in $(seq 300); do
  curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break
  sleep 1
done
capture() { timeout 21 curl -s "http://127.0.0.1:$port/stream/$1?profile=copy" -o "$2" || true; }
capture "1:0:19:283D:3FB:1:C00000:0:0:0:" "$dir/hd.ts"
capture "1:0:1:6F0B:44D:1:C00000:0:0:0:" "$dir/sd.ts"
pkill -f "listen 127.0.0.1:$port" || true

ENC="speed-preset=veryfast tune=zerolatency vbv-buf-capacity=1000 key-int-max=50 bframes=0"
QUEUE="queue max-size-buffers=0 max-size-bytes=0 max-size-time=3000000000"
rung() { # width height kbit/s
  echo "$QUEUE ! videoscale ! video/x-raw,format=I420,width=$1,height=$2,pixel-aspect-ratio=1/1 \
    ! x264enc $ENC bitrate=$3 ! h264parse ! fakesink sync=false"
}
cpu() { # CPU seconds of one gst-launch run
  { /usr/bin/time -f '%U %S' gst-launch-1.0 -q "$@" >/dev/null; } 2>&1 | tail -1 | awk '{printf "%.2f", $1 + $2}'
}
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

HD="filesrc location=$dir/hd.ts ! tsdemux ! h264parse ! avdec_h264 ! videoconvert"
SD="filesrc location=$dir/sd.ts ! tsdemux ! mpegvideoparse ! avdec_mpeg2video \
  ! deinterlace method=linear fields=all ! videoconvert"
seconds=$(ffprobe -v error -show_entries format=duration -of csv=p=0 "$dir/hd.ts" 2>/dev/null || echo "about 20")

printf 'Media: %s s a channel; CPU seconds, median of %d.\n\n' "$seconds" "$repeats"
printf '| source | rungs | ladder, one decode | three separate transcodes | ladder / separate |\n|---|---|--:|--:|--:|\n'
measure() { # label, decode chain, three rungs as "w h kbit" triples; sets $separate
  local label=$1 decode=$2 r1=$3 r2=$4 r3=$5 ladders=() separates=()
  for _ in $(seq "$repeats"); do
    # shellcheck disable=SC2046,SC2086
    ladders+=("$(cpu $decode ! tee name=t t. ! $(rung $r1) t. ! $(rung $r2) t. ! $(rung $r3))")
    local sum=0
    for r in "$r1" "$r2" "$r3"; do
      # shellcheck disable=SC2046,SC2086
      sum=$(awk -v a="$sum" -v b="$(cpu $decode ! $(rung $r))" 'BEGIN {print a + b}')
    done
    separates+=("$sum")
  done
  local l
  l=$(median "${ladders[@]}")
  separate=$(median "${separates[@]}")
  row "$label" "${r1// /x}, ${r2// /x}, ${r3// /x}" "$l" "$separate"
}
row() { # label, rungs, ladder, separate
  printf '| %s | %s | %s | %s | %s× |\n' "$1" "$2" "$3" "$4" "$(awk -v l="$3" -v s="$4" 'BEGIN {printf "%.2f", l / s}')"
}
separate=0
measure HD "$HD" "1280 720 3000" "854 480 1500" "640 360 800"
# The same HD ladder with its 720p rung copied from the source instead of re-encoded.
copied=()
for _ in $(seq "$repeats"); do
  # shellcheck disable=SC2046,SC2086
  copied+=("$(cpu filesrc location="$dir/hd.ts" ! tsdemux ! h264parse ! tee name=c c. ! queue ! fakesink sync=false \
    c. ! $QUEUE ! avdec_h264 ! videoconvert ! tee name=t t. ! $(rung 854 480 1500) t. ! $(rung 640 360 800))")
done
row "HD, top rung copied" "copy, 854x480x1500, 640x360x800" "$(median "${copied[@]}")" "$separate"
measure SD "$SD" "1024 576 2500" "854 480 1500" "640 360 800"
