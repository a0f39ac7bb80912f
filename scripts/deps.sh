#!/usr/bin/env bash
# Installs the system packages xg2g needs (REFERENCE: GStreamer 1.22 on Debian 12 / Ubuntu 24.04)
# when any is missing, then warms GStreamer's plugin registry once. Idempotent and quiet when all
# is present. Uses sudo when not root. `--test` adds the validators the tests and CI run
# (tv_validate_file, promtool, docker-compose, hdhomerun_config, a Python venv for
# kubernetes-validate).
set -euo pipefail

PACKAGES=(
  build-essential pkg-config
  libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev
  gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad
  gstreamer1.0-plugins-ugly gstreamer1.0-libav gstreamer1.0-tools
  libsoup-3.0-0 ffmpeg
)
if [ "${1:-}" = "--test" ]; then
  PACKAGES+=(xmltv-util prometheus docker-compose hdhomerun-config python3-venv)
  # VLC plays an M3U fetched with a device token (tests/it/signed_players.rs), as `nobody`.
  PACKAGES+=(vlc-bin vlc-plugin-base)
  # The browser tests play HLS in Chromium. Debian packages it; Ubuntu's `chromium` is a snap
  # wrapper that does not install in a container, so there the browser tests skip.
  if grep -qs '^ID=debian' /etc/os-release; then
    PACKAGES+=(chromium)
  fi
fi

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  echo "xg2g: installing system packages: ${missing[*]}" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The first gst_init on a fresh box scans every plugin (seconds). Do it once here so that the
# server and the tests start fast.
if command -v gst-inspect-1.0 >/dev/null 2>&1; then
  gst-inspect-1.0 coreelements >/dev/null 2>&1 || true
fi
