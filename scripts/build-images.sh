#!/usr/bin/env bash
# Builds Dockerfile.vaapi (and, with --nvidia, Dockerfile.nvidia) on a machine that cannot reach
# Docker Hub, FROM local base images made of Debian packages, then runs the vaapi image against
# the demo receiver and reports /readyz, a played stream, the chosen encoder, the image size and
# the time from `podman run` to a ready server.
#
#   ./scripts/build-images.sh            # needs root, podman, mmdebstrap, a Rust toolchain
#   ./scripts/build-images.sh --nvidia   # also Dockerfile.nvidia, FROM the Debian base instead
#                                        # of CUDA's (no NVENC in it: x264enc, as without a GPU)
#
# The base images: localhost/xg2g-debian:bookworm-slim from mmdebstrap (deb822 sources like the
# official debian image, so the Dockerfile's `non-free` edit applies), and
# localhost/xg2g-rust:<version>-bookworm, that base with build-essential and this machine's Rust
# toolchain (Debian's rustc is too old for the crate). The published Dockerfiles build unchanged
# elsewhere: only their RUST_IMAGE / RUNTIME_IMAGE / CUDA_IMAGE build arguments differ here.
# The cargo registry and target folder are cached in $XG2G_IMAGE_CACHE between builds. Builds use
# chroot isolation, and the check container runs with runc and lowered ulimits: this machine's
# hybrid cgroups make crun refuse containers, and without CAP_SYS_RESOURCE podman's default
# ulimits (nofile 1048576) cannot be set.
set -euo pipefail
cd "$(dirname "$0")/.."

RELEASE=bookworm
MIRROR=${MIRROR:-http://deb.debian.org/debian}
BASE=localhost/xg2g-debian:${RELEASE}-slim
SYSROOT=$(rustc --print sysroot)
RUST_VERSION=$(rustc --version | awk '{print $2}')
RUST=localhost/xg2g-rust:${RUST_VERSION}-${RELEASE}
CACHE=${XG2G_IMAGE_CACHE:-$HOME/.cache/xg2g-images}
DEMO_API=${DEMO_API:-127.0.0.1:8090}
PORT=${PORT:-18088}
NVIDIA=0
[ "${1:-}" = "--nvidia" ] && NVIDIA=1

step() { printf '\n== %s\n' "$*" >&2; }
work=$(mktemp -d)
cleanup() {
  podman rm -f xg2g-image-check >/dev/null 2>&1 || true
  [ -n "${demo_pid:-}" ] && kill "$demo_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

if ! podman image exists "$BASE"; then
  step "base: mmdebstrap $RELEASE | podman import $BASE"
  cat >"$work/debian.sources" <<EOF
Types: deb
URIs: $MIRROR
Suites: $RELEASE $RELEASE-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: $RELEASE-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  # Without manuals, translations and documentation other than copyrights, like the official
  # -slim images.
  mmdebstrap --variant=apt --include=ca-certificates,debian-archive-keyring \
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/locale/*' \
    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --dpkgopt='path-exclude=/usr/share/info/*' \
    --customize-hook='rm -f "$1/etc/apt/sources.list"' \
    --customize-hook="copy-in $work/debian.sources /etc/apt/sources.list.d" \
    --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*.bin' \
    "$RELEASE" "$work/base.tar" "$MIRROR"
  podman import --change 'CMD ["bash"]' "$work/base.tar" "$BASE"
fi

if ! podman image exists "$RUST"; then
  step "builder: $BASE + build-essential + Rust $RUST_VERSION from $SYSROOT"
  mkdir -p "$work/rust/toolchain"
  cp -a "$SYSROOT"/bin "$SYSROOT"/lib "$SYSROOT"/libexec "$work/rust/toolchain/"
  cat >"$work/rust/Containerfile" <<EOF
FROM $BASE
RUN apt-get update && apt-get install -y --no-install-recommends build-essential && rm -rf /var/lib/apt/lists/*
COPY toolchain /usr/local/rust
ENV PATH=/usr/local/rust/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    CARGO_HOME=/usr/local/cargo
EOF
  podman build --isolation chroot --network host --pull=never -t "$RUST" "$work/rust"
fi

mkdir -p "$CACHE/registry" "$CACHE/target"
if [ -z "$(ls -A "$CACHE/registry")" ] && [ -d "$HOME/.cargo/registry" ]; then
  cp -a "$HOME/.cargo/registry/." "$CACHE/registry/"
fi
build() {
  local file=$1 tag=$2
  shift 2
  step "podman build -f $file -t $tag"
  local started=$SECONDS
  podman build --isolation chroot --network host --pull=never \
    --build-arg RUST_IMAGE="$RUST" "$@" \
    -v "$CACHE/registry:/usr/local/cargo/registry" -v "$CACHE/target:/src/target" \
    -f "$file" -t "$tag" .
  echo "built $tag in $((SECONDS - started)) s" >&2
}
build Dockerfile.vaapi localhost/xg2g:vaapi --build-arg RUNTIME_IMAGE="$BASE"
if [ "$NVIDIA" = 1 ]; then
  build Dockerfile.nvidia localhost/xg2g:nvidia-on-debian --build-arg CUDA_IMAGE="$BASE"
fi

step "image sizes"
podman image ls --format '{{.Repository}}:{{.Tag}} {{.Size}}' | grep -E 'xg2g' >&2

step "the demo receiver on $DEMO_API"
if ! curl -fsS -o /dev/null "http://$DEMO_API/api/bouquets" 2>/dev/null; then
  cargo run --quiet --example demo_receiver >"$work/demo.log" 2>&1 &
  demo_pid=$!
  for _ in $(seq 1 600); do curl -fsS -o /dev/null "http://$DEMO_API/api/bouquets" 2>/dev/null && break; sleep 0.5; done
fi

# Runs one image against the demo receiver: time to /readyz, a played stream, the encoder line.
check() {
  local image=$1
  step "run $image"
  podman rm -f xg2g-image-check >/dev/null 2>&1 || true
  local started ready
  started=$(date +%s.%N)
  podman --runtime runc run -d --name xg2g-image-check --network host \
    --ulimit nofile=16384:16384 --ulimit nproc=4096:4096 \
    -e XG2G_OWI_BASE="http://$DEMO_API" -e XG2G_LISTEN="127.0.0.1:$PORT" \
    -e XG2G_HDHR_SSDP=false -e XG2G_HDHR_DISCOVERY=false \
    "$image" >/dev/null
  until curl -fsS -o "$work/readyz.json" "http://127.0.0.1:$PORT/readyz" 2>/dev/null; do
    sleep 0.1
    podman container exists xg2g-image-check || { echo "the container died" >&2; exit 1; }
  done
  ready=$(date +%s.%N)
  printf 'ready after %.1f s: %s\n' "$(awk -v a="$started" -v b="$ready" 'BEGIN { print b - a }')" \
    "$(cat "$work/readyz.json")" >&2
  # Das Erste HD transcoded to H.264: 12 s of TS, then what ffprobe sees in it.
  curl -sS --max-time 12 -o "$work/h264.ts" \
    "http://127.0.0.1:$PORT/stream/1:0:19:283D:3FB:1:C00000:0:0:0:?profile=h264" 2>/dev/null || true
  printf 'played %s bytes of ?profile=h264: ' "$(stat -c %s "$work/h264.ts")" >&2
  ffprobe -v error -show_entries stream=codec_name,width,height -of csv=p=0 "$work/h264.ts" | sort -u | tr '\n' ' ' >&2
  echo >&2
  podman logs xg2g-image-check 2>&1 | grep -E 'Chose the H.264 encoder' >&2
  podman rm -f xg2g-image-check >/dev/null
}
check localhost/xg2g:vaapi
if [ "$NVIDIA" = 1 ]; then
  check localhost/xg2g:nvidia-on-debian
fi
