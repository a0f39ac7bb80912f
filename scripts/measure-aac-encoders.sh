#!/usr/bin/env bash
# Measures the AAC encoders an `aac` session can use: CPU seconds to encode 60 s of stereo at
# 192 kbit/s, and, without listening, how far the decoded result is from the source: the
# signal-to-distortion ratio (ffmpeg `asdr`, at the encoder's delay) and the loudness
# difference (ffmpeg `ebur128`, integrated). The source is synthetic (two chords and a high
# tone, amplitude-modulated, over pink noise), made by ffmpeg. Usage: scripts/measure-aac-encoders.sh [repeats=3].
# Needs gst-launch-1.0 (gstreamer1.0-tools) and ffmpeg; runs nothing but local processes.
set -euo pipefail
repeats=${1:-3}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
src=$dir/src.wav
ffmpeg -v error -y \
  -f lavfi -i "aevalsrc=exprs='(0.2*sin(2*PI*220*t)+0.1*sin(2*PI*440*t)+0.05*sin(2*PI*1320*t))*(0.6+0.4*sin(2*PI*0.7*t))+0.08*sin(2*PI*3000*t)*(0.5+0.5*sin(2*PI*5*t))|(0.2*sin(2*PI*277*t)+0.1*sin(2*PI*554*t)+0.05*sin(2*PI*1661*t))*(0.6+0.4*cos(2*PI*0.5*t))+0.06*sin(2*PI*6000*t)*(0.5+0.5*cos(2*PI*3*t))':s=48000:d=60" \
  -f lavfi -i "anoisesrc=c=pink:a=0.05:d=60:r=48000:seed=1" \
  -filter_complex "[1]aformat=channel_layouts=stereo[n];[0][n]amix=inputs=2:normalize=0" \
  -c:a pcm_s16le "$src"

loudness() { # integrated loudness in LUFS
  ffmpeg -hide_banner -nostats -i "$1" -af ebur128 -f null - 2>&1 | awk '/I:/ {v=$2} END {print v}'
}
src_lufs=$(loudness "$src")

printf '| encoder | CPU s per 60 s (median of %d) | SDR dB | loudness diff LU |\n|---|--:|--:|--:|\n' "$repeats"
for enc in "avenc_aac aac-coder=twoloop" "avenc_aac aac-coder=fast" "voaacenc"; do
  name=${enc// /_}
  out=$dir/$name.aac
  times=()
  for _ in $(seq "$repeats"); do
    t=$( { /usr/bin/time -f '%U %S' gst-launch-1.0 -q filesrc location="$src" ! wavparse ! audioconvert \
      ! $enc bitrate=192000 ! aacparse \
      ! 'audio/mpeg,stream-format=adts' ! filesink location="$out" >/dev/null; } 2>&1 | tail -1)
    times+=("$(awk '{print $1 + $2}' <<<"$t")")
  done
  cpu=$(printf '%s\n' "${times[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
  ffmpeg -v error -y -i "$out" -c:a pcm_s16le "$dir/dec.wav"
  # The encoder delays the signal by its priming (1024 samples for these); take the best of a
  # few alignments so that no encoder is charged for a different delay.
  best=-99
  for delay in 0 1024 2048 2112; do
    sdr=$(ffmpeg -hide_banner -nostats -i "$src" -i "$dir/dec.wav" -filter_complex \
      "[1]atrim=start_sample=$delay,asetpts=N/SR/TB[d];[0][d]asdr" -f null - 2>&1 |
      awk '/SDR ch0/ {a=$(NF-1)} /SDR ch1/ {b=$(NF-1)} END {if (a == "") print -99; else print (a + b) / 2}')
    best=$(awk -v a="$best" -v b="$sdr" 'BEGIN {print (b > a) ? b : a}')
  done
  lufs=$(loudness "$dir/dec.wav")
  printf '| %s | %.2f | %.1f | %+.2f |\n' "$enc" "$cpu" "$best" "$(awk -v a="$lufs" -v b="$src_lufs" 'BEGIN {print a - b}')"
done
