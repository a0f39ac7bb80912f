"""Structural checks of the deployment files that no linter here covers, run by
scripts/check-deploy.sh inside its tool venv (PyYAML comes with kubernetes-validate).

  check-deploy.py dashboards                     Grafana JSON: ids, grid, datasource uids, targets
  check-deploy.py compose FILE                   `docker-compose config` output: hardening, volumes
  check-deploy.py kubernetes NAME FILE           `kubectl kustomize` output: references resolve
  check-deploy.py xg2g-env BIN FILE SOURCE       xg2g's own config loader accepts the env of
                                                 the compose xg2g service or the k8s ConfigMap
  check-deploy.py gpu-variant NAME OUT           the production compose file with the commented
                                                 GPU block of NAME (vaapi, nvidia) switched on

Each prints what it checked and exits 1 with every problem found.
"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
MONITORING = ROOT / "deploy" / "monitoring"
problems = []


def problem(text):
    problems.append(text)


def finish(what):
    if problems:
        print(f"{what}: {len(problems)} problem(s)")
        for p in problems:
            print(f"  - {p}")
        sys.exit(1)
    print(f"{what}: ok")


# ---------------------------------------------------------------------------------------------
def dashboards():
    provisioned = yaml.safe_load((MONITORING / "grafana/provisioning/datasources/prometheus.yml").read_text())
    uids = {d["uid"]: d["type"] for d in provisioned["datasources"]}
    provider = yaml.safe_load((MONITORING / "grafana/provisioning/dashboards/dashboards.yml").read_text())
    paths = [p["options"]["path"] for p in provider["providers"]]
    if paths != ["/etc/grafana/dashboards"]:
        problem(f"dashboard provider paths {paths}: docker-compose.production.yml mounts /etc/grafana/dashboards")
    seen_uids = set()
    files = sorted((MONITORING / "grafana/dashboards").glob("*.json"))
    if [f.name for f in files] != ["gpu-transcoding.json", "overview.json", "streaming.json"]:
        problem(f"dashboards: {[f.name for f in files]}")
    for path in files:
        name = path.name
        board = json.loads(path.read_text())
        for key, kind in [("uid", str), ("title", str), ("schemaVersion", int), ("panels", list)]:
            if not isinstance(board.get(key), kind):
                problem(f"{name}: `{key}` missing or not {kind.__name__}")
        if board.get("uid") in seen_uids:
            problem(f"{name}: uid {board.get('uid')} used twice")
        seen_uids.add(board.get("uid"))
        if len(board.get("uid", "")) > 40:
            problem(f"{name}: uid longer than Grafana's 40 characters")
        variables = {v["name"] for v in board.get("templating", {}).get("list", [])}
        for variable in board.get("templating", {}).get("list", []):
            if variable.get("type") == "query" and variable.get("datasource", {}).get("uid") not in uids:
                problem(f"{name}: variable {variable['name']}: datasource {variable.get('datasource')} is not provisioned")
        ids = set()
        cells = {}
        targets = 0
        for panel in board["panels"]:
            pid, title, kind = panel.get("id"), panel.get("title"), panel.get("type")
            where = f"{name}: panel {pid} {title!r}"
            if not isinstance(pid, int) or pid in ids:
                problem(f"{where}: id missing or repeated")
            ids.add(pid)
            grid = panel.get("gridPos", {})
            if not all(isinstance(grid.get(k), int) for k in "hwxy") or grid["x"] + grid["w"] > 24:
                problem(f"{where}: gridPos {grid}")
                continue
            area = {(x, y) for x in range(grid["x"], grid["x"] + grid["w"]) for y in range(grid["y"], grid["y"] + grid["h"])}
            overlapped = sorted({cells[c] for c in area if c in cells})
            if overlapped:
                problem(f"{where}: overlaps panel(s) {overlapped}")
            cells.update((c, pid) for c in area)
            if kind == "row":
                continue
            ds = panel.get("datasource", {}).get("uid")
            if ds not in uids:
                problem(f"{where}: datasource uid {ds!r} is not provisioned ({sorted(uids)})")
            refs = set()
            if not panel.get("targets"):
                problem(f"{where}: no targets")
            for target in panel.get("targets", []):
                targets += 1
                if target.get("datasource", {}).get("uid") not in uids:
                    problem(f"{where}: target datasource {target.get('datasource')}")
                if not target.get("expr") or target.get("refId") in refs:
                    problem(f"{where}: target without expr or with a repeated refId")
                refs.add(target.get("refId"))
                for var in re.findall(r"\$(\w+)", target.get("expr", "")):
                    if var not in variables and not var.startswith("__"):
                        problem(f"{where}: ${var} is not a variable of the dashboard")
        print(f"  {name}: uid {board['uid']}, {len(board['panels'])} panels, {targets} queries")
    finish("dashboards")


# ---------------------------------------------------------------------------------------------
def compose(path):
    config = yaml.safe_load(Path(path).read_text())
    services = config["services"]
    named = set(config.get("volumes") or {})
    for name, service in services.items():
        where = f"service {name}"
        if service.get("cap_drop") != ["ALL"]:
            problem(f"{where}: cap_drop is {service.get('cap_drop')}, not [ALL]")
        if "no-new-privileges:true" not in (service.get("security_opt") or []):
            problem(f"{where}: no no-new-privileges")
        if service.get("read_only") is not True:
            problem(f"{where}: root file system not read-only")
        if service.get("privileged"):
            problem(f"{where}: privileged")
        if "healthcheck" not in service and name != "cloudflared":
            problem(f"{where}: no health check")
        if not service.get("image", "").split(":")[-1] or ":" not in service.get("image", ""):
            problem(f"{where}: image {service.get('image')!r} has no pinned tag")
        for volume in service.get("volumes") or []:
            source, target, mode = (volume.split(":") + ["", ""])[:3]
            if source.startswith("/"):
                # A bind mount: only the repository's deploy/ configuration, read-only.
                if not source.startswith(str(ROOT / "deploy")) or mode != "ro":
                    problem(f"{where}: bind mount {volume} (only deploy/ files, read-only)")
            elif source not in named:
                problem(f"{where}: volume {source} is not a named volume")
        for port in service.get("ports") or []:
            if not str(port).startswith(("127.0.0.1:", "0.0.0.0:8080:")):
                problem(f"{where}: port {port} published beyond loopback")
    for want in ["xg2g", "prometheus", "grafana", "jaeger", "alertmanager"]:
        if want not in services:
            problem(f"no {want} service")
    xg2g_networks = set(services.get("xg2g", {}).get("networks") or {})
    for name, service in services.items():
        networks = set(service.get("networks") or {})
        if name == "cloudflared" and not networks & xg2g_networks:
            problem("cloudflared shares no network with xg2g")
        elif name != "cloudflared" and "xg2g" not in networks:
            problem(f"service {name} is not on the xg2g network: {networks}")
    env = services.get("xg2g", {}).get("environment", {})
    if env.get("XG2G_OTLP_ENDPOINT") != "http://jaeger:4318":
        problem(f"xg2g's XG2G_OTLP_ENDPOINT is {env.get('XG2G_OTLP_ENDPOINT')!r}, not Jaeger's OTLP/HTTP")
    volumes = " ".join(services.get("prometheus", {}).get("volumes", []))
    if str(MONITORING) + ":/etc/prometheus:ro" not in volumes:
        problem("prometheus does not mount deploy/monitoring at /etc/prometheus")
    print(f"  {path}: {len(services)} services: {', '.join(sorted(services))}")
    finish(f"compose {Path(path).name}")


# ---------------------------------------------------------------------------------------------
def kubernetes(name, path):
    docs = [d for d in yaml.safe_load_all(Path(path).read_text()) if d]
    by_kind = {}
    for doc in docs:
        by_kind.setdefault(doc["kind"], {})[doc["metadata"]["name"]] = doc
    deployment = by_kind.get("Deployment", {}).get("xg2g")
    if not deployment:
        problem("no Deployment xg2g")
        finish(f"kubernetes {name}")
    pod = deployment["spec"]["template"]
    pod_labels = pod["metadata"]["labels"]
    if deployment["spec"]["selector"]["matchLabels"].items() - pod_labels.items():
        problem("the Deployment's selector does not match its pod labels")
    container = next(c for c in pod["spec"]["containers"] if c["name"] == "xg2g")
    port_names = {p["name"] for p in container["ports"]}
    probes = {k: container.get(k, {}).get("httpGet", {}).get("path") for k in ["readinessProbe", "livenessProbe"]}
    if probes != {"readinessProbe": "/readyz", "livenessProbe": "/healthz"}:
        problem(f"probes {probes}")
    context = container.get("securityContext", {})
    pod_context = pod["spec"].get("securityContext", {})
    if not (
        context.get("readOnlyRootFilesystem")
        and context.get("allowPrivilegeEscalation") is False
        and context.get("capabilities", {}).get("drop") == ["ALL"]
        and pod_context.get("runAsNonRoot")
        and pod_context.get("runAsUser", 0) != 0
    ):
        problem(f"container not non-root and read-only: {context} {pod_context}")
    if not container.get("resources", {}).get("requests"):
        problem("no resource requests")
    for ref in container.get("envFrom", []):
        cm = ref.get("configMapRef", {}).get("name")
        if cm and cm not in by_kind.get("ConfigMap", {}):
            problem(f"envFrom ConfigMap {cm} is not in the manifests")
    services = by_kind.get("Service", {})
    for sname, service in services.items():
        selector = service["spec"]["selector"]
        if selector.items() - pod_labels.items():
            problem(f"Service {sname} selects {selector}, not the xg2g pods")
        for port in service["spec"]["ports"]:
            if port["targetPort"] not in port_names:
                problem(f"Service {sname} targets port {port['targetPort']}, not one of {port_names}")
    hashed = set()
    for iname, ingress in by_kind.get("Ingress", {}).items():
        annotations = ingress["metadata"].get("annotations", {})
        for rule in ingress["spec"]["rules"]:
            for path in rule["http"]["paths"]:
                backend = path["backend"]["service"]
                target = services.get(backend["name"])
                if not target:
                    problem(f"Ingress {iname} path {path['path']}: no Service {backend['name']}")
                elif backend["port"]["name"] not in {p["name"] for p in target["spec"]["ports"]}:
                    problem(f"Ingress {iname}: Service {backend['name']} has no port {backend['port']['name']}")
                if path["path"].startswith(("/stream/", "/hls/")):
                    if annotations.get("nginx.ingress.kubernetes.io/upstream-hash-by") != "$1":
                        problem(f"Ingress {iname} path {path['path']}: not hashed on the service ref ($1)")
                    if not path["path"].split("/")[2].startswith("("):
                        problem(f"Ingress {iname} path {path['path']}: the service ref is not group 1")
                    hashed.add(path["path"].split("/")[1])
                    if backend["name"] == "xg2g":
                        problem(f"Ingress {iname}: hashed paths share the round-robin Service")
                if path["path"].startswith(("/metrics", "/api")) or path["path"] in ("/", "/(.*)"):
                    problem(f"Ingress {iname} publishes {path['path']}")
    if hashed != {"stream", "hls"}:
        problem(f"hashed stream routes: {sorted(hashed)}, want stream and hls")
    hpa = by_kind.get("HorizontalPodAutoscaler", {}).get("xg2g")
    if not hpa or hpa["spec"]["scaleTargetRef"] != {"apiVersion": "apps/v1", "kind": "Deployment", "name": "xg2g"}:
        problem("the HorizontalPodAutoscaler does not scale Deployment xg2g")
    else:
        metrics = {m.get("pods", {}).get("metric", {}).get("name") or m.get("resource", {}).get("name") for m in hpa["spec"]["metrics"]}
        if metrics != {"xg2g_sessions_active", "cpu"}:
            problem(f"the autoscaler scales on {metrics}, want xg2g_sessions_active and cpu")
        adapter = yaml.safe_load((ROOT / "deploy/kubernetes/prometheus-adapter/rules.yaml").read_text())
        rules = yaml.safe_load(adapter["data"]["config.yaml"])["rules"]
        if not any(r["name"]["as"] == "xg2g_sessions_active" for r in rules):
            problem("no prometheus-adapter rule serves xg2g_sessions_active")
    monitors = by_kind.get("ServiceMonitor", {})
    for mname, monitor in monitors.items():
        selected = [
            s for s, svc in services.items()
            if not monitor["spec"]["selector"]["matchLabels"].items() - svc["metadata"].get("labels", {}).items()
        ]
        if selected != ["xg2g"]:
            problem(f"ServiceMonitor {mname} selects {selected}: want only Service xg2g (the job label the rules use)")
        for endpoint in monitor["spec"]["endpoints"]:
            if endpoint.get("path") != "/metrics" or endpoint.get("port") != "http":
                problem(f"ServiceMonitor {mname} endpoint {endpoint}")
    if not monitors:
        problem("no ServiceMonitor")
    for pname, pdb in by_kind.get("PodDisruptionBudget", {}).items():
        if pdb["spec"]["selector"]["matchLabels"].items() - pod_labels.items():
            problem(f"PodDisruptionBudget {pname} selects no xg2g pod")
    limits = container.get("resources", {}).get("limits", {})
    want_gpu = {"nvidia": "nvidia.com/gpu", "intel": "gpu.intel.com/i915"}.get(name)
    if want_gpu and str(limits.get(want_gpu)) != "1":
        problem(f"overlay {name}: no {want_gpu}: 1 limit ({limits})")
    if want_gpu and not pod["spec"].get("nodeSelector"):
        problem(f"overlay {name}: no node selector")
    if not want_gpu and any("gpu" in k for k in limits):
        problem(f"base requests a GPU: {limits}")
    kinds = ", ".join(f"{k} {len(v)}" for k, v in sorted(by_kind.items()))
    print(f"  {name}: {kinds}; image {container['image']}")
    finish(f"kubernetes {name}")


# ---------------------------------------------------------------------------------------------
def xg2g_env(binary, path, source):
    """Runs `xg2g check-config` with exactly the environment a deployment gives xg2g."""
    if source == "compose":
        env = yaml.safe_load(Path(path).read_text())["services"]["xg2g"]["environment"]
    else:
        docs = [d for d in yaml.safe_load_all(Path(path).read_text()) if d]
        env = next(d["data"] for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "xg2g-config")
        # The Secret is made by hand (README); stand-ins for its keys.
        env = dict(env, XG2G_API_TOKEN="stand-in", XG2G_OWI_USER="", XG2G_OWI_PASS="")
    env = {k: "" if v is None else str(v) for k, v in env.items()}
    result = subprocess.run(
        [binary, "check-config"],
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    if result.returncode != 0:
        problem(f"xg2g check-config refuses the {source} environment:\n{result.stderr}{result.stdout}")
    else:
        print(f"  xg2g check-config accepts the {len(env)} variables of the {source} environment")
    finish(f"xg2g environment ({source})")


# ---------------------------------------------------------------------------------------------
GPU_BLOCKS = {"vaapi": ("    # devices:", "    #   - PERFMON"), "nvidia": ("    # deploy:", "    #           capabilities:")}


def gpu_variant(name, out):
    """Uncomments one GPU block of docker-compose.production.yml, so `config -q` checks it too."""
    first, last = GPU_BLOCKS[name]
    lines = (ROOT / "docker-compose.production.yml").read_text().split("\n")
    start = next(i for i, line in enumerate(lines) if line.startswith(first))
    end = next(i for i, line in enumerate(lines) if i >= start and line.startswith(last))
    for i in range(start, end + 1):
        lines[i] = lines[i].replace("# ", "", 1)
    Path(out).write_text("\n".join(lines))
    print(f"  {name}: lines {start + 1}-{end + 1} switched on")


if __name__ == "__main__":
    command, args = sys.argv[1], sys.argv[2:]
    {
        "dashboards": dashboards,
        "compose": compose,
        "kubernetes": kubernetes,
        "xg2g-env": xg2g_env,
        "gpu-variant": gpu_variant,
    }[command](*args)
