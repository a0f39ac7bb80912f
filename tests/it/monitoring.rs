//! `deploy/` against a running xg2g: every metric that an alert rule, a rule test, a Grafana
//! dashboard or a Kubernetes manifest names is exposed at `/metrics` once each feature has run;
//! a real Prometheus (Debian's `prometheus`, skipped when absent) scrapes xg2g on loopback,
//! evaluates the alert rules and answers every dashboard query.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;

use xg2g::demo::{DemoReceiver, PortFault};
use xg2g::metrics::{GpuReading, Metrics};

use crate::common::{client, config_for, demo, ready, start_app};

const HD: &str = "1:0:19:283D:3FB:1:C00000:0:0:0:";
const SD: &str = "1:0:1:6F0B:44D:1:C00000:0:0:0:";
const RADIO: &str = "1:0:2:2F1C:441:1:C00000:0:0:0:";
const MUNICH: &str = "1:0:1:2EE3:441:1:C00000:0:0:0:";
/// Whitelisted: always the relay, never probed.
const ORF1: &str = "1:0:19:132F:3EF:1:C00000:0:0:0:";
/// A channel the demo does not have.
const UNKNOWN: &str = "1:0:1:FFFF:FFF:1:C00000:0:0:0:";
const TOKEN: &str = "m0nitoring-t0ken";

fn deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy")
}

fn relative(path: &Path) -> String {
    path.strip_prefix(env!("CARGO_MANIFEST_DIR"))
        .unwrap_or(path)
        .display()
        .to_string()
}

/// Files under `dir` (recursively) whose names end in one of `extensions`, sorted.
fn files_in(dir: &Path, extensions: &[&str]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else if extensions.iter().any(|ext| path.to_string_lossy().ends_with(ext)) {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// The files that name metrics: the alert rules and their tests, the dashboards, and the
/// Kubernetes manifests (the autoscaler's custom metric and the adapter rule behind it).
fn files_naming_metrics() -> Vec<PathBuf> {
    let monitoring = deploy().join("monitoring");
    let mut files = vec![monitoring.join("alerts.yml"), monitoring.join("alerts.test.yml")];
    files.extend(dashboards());
    files.extend(files_in(&deploy().join("kubernetes"), &[".yaml", ".yml"]));
    files
}

fn dashboards() -> Vec<PathBuf> {
    let found = files_in(&deploy().join("monitoring/grafana/dashboards"), &[".json"]);
    assert_eq!(found.len(), 3, "overview, streaming and gpu-transcoding: {found:?}");
    found
}

/// Metric names in a text: the words that start with `xg2g_` or `process_`.
fn metric_names(text: &str) -> BTreeSet<String> {
    let is_name = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_';
    let bytes = text.as_bytes();
    let mut names = BTreeSet::new();
    for prefix in ["xg2g_", "process_"] {
        for (start, _) in text.match_indices(prefix) {
            if start > 0 && (bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_') {
                continue;
            }
            let len = bytes[start..].iter().take_while(|b| is_name(**b)).count();
            if len > prefix.len() {
                names.insert(text[start..start + len].to_owned());
            }
        }
    }
    names
}

/// Every sample name the exposition has or can have: the names on sample lines, and for each
/// `# TYPE` line the names its type gives (a counter `foo` is queried as `foo_total`, a histogram
/// as `foo_bucket`, `foo_sum`, `foo_count`). prometheus-client leaves out families that have no
/// series yet, so a name shows only once its feature has run.
fn exposed_names(exposition: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in exposition.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split_whitespace();
            let (Some(family), Some(kind)) = (parts.next(), parts.next()) else {
                continue;
            };
            let suffixes: &[&str] = match kind {
                "counter" => &["_total", "_created"],
                "histogram" => &["_bucket", "_sum", "_count", "_created"],
                "gaugehistogram" => &["_gbucket", "_gsum", "_gcount"],
                "summary" => &["", "_sum", "_count", "_created"],
                "info" => &["_info"],
                _ => &[""],
            };
            for suffix in suffixes {
                names.insert(format!("{family}{suffix}"));
            }
        } else if !line.starts_with('#') && !line.trim().is_empty() {
            let name = line.split(['{', ' ']).next().unwrap_or_default();
            names.insert(name.to_owned());
        }
    }
    names
}

async fn metrics_text(base: &str) -> String {
    let response = client().get(format!("{base}/metrics")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    response.text().await.unwrap()
}

async fn expect_status(request: reqwest::RequestBuilder, want: u16) {
    let response = request.send().await.unwrap();
    let url = response.url().clone();
    assert_eq!(response.status().as_u16(), want, "{url}");
    let _ = response.bytes().await;
}

/// Reads a live stream until `bytes` have come (bounded), then keeps the response open.
async fn first_bytes(url: &str, bytes: usize) -> reqwest::Response {
    let mut response = client().get(url).send().await.unwrap();
    assert_eq!(response.status(), 200, "{url}");
    let mut got = 0;
    tokio::time::timeout(Duration::from_secs(30), async {
        while got < bytes {
            match response.chunk().await {
                Ok(Some(chunk)) => got += chunk.len(),
                other => panic!("{url}: the stream ended after {got} bytes: {other:?}"),
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{url}: {got} of {bytes} bytes in 30 s"));
    response
}

/// The config of both tests: a token for the refresh API, a breaker that opens on the first
/// failure, ports probed at every start, and a limit of one new copy-profile session a second
/// (the exercise trips the breaker and the limit).
fn config(demo: &DemoReceiver) -> xg2g::config::Config {
    config_for(
        demo,
        &[
            ("api_token", TOKEN),
            ("circuit_breaker.threshold", "1"),
            // Every stream start probes again, so the last step can make a probe fail.
            ("receiver.detection_ttl", "1ms"),
            // Host statistics within the exercise's first second, not after the default 5 s.
            ("gpu.stats_interval", "250ms"),
            ("rate_limit.mode_standard", "1"),
        ],
    )
}

/// Runs each feature whose metrics the rules and dashboards read: pages, playlist, guide,
/// tuner, picon, port detection, a refresh, a 404, an HLS session, a video transcode (profile
/// `h264`, the mode the GPU panels show), a failed probe that opens the stream port's breaker,
/// rate-limited session starts, and an audio-proxy TS session that is returned still open (one
/// session, one client).
async fn exercise(base: &str, demo: &DemoReceiver) -> reqwest::Response {
    let http = client();
    for path in [
        "/",
        "/playlist.m3u",
        "/xmltv.xml",
        "/readyz",
        "/discover.json",
        "/lineup.json",
    ] {
        expect_status(http.get(format!("{base}{path}")), 200).await;
    }
    expect_status(http.get(format!("{base}/picon/{HD}.png")), 200).await;
    expect_status(http.get(format!("{base}/api/v1/channels/{HD}/source")), 200).await;
    expect_status(http.get(format!("{base}/stream/{UNKNOWN}")), 404).await;
    expect_status(http.post(format!("{base}/api/v1/refresh")).bearer_auth(TOKEN), 200).await;
    expect_status(http.get(format!("{base}/hls/{HD}/aac/index.m3u8")), 200).await;
    // A video transcode: delivered bytes mean the encoder ran and its latency was sampled.
    drop(first_bytes(&format!("{base}/stream/{SD}?profile=h264"), 256 * 1024).await);
    let open = first_bytes(&format!("{base}/stream/{HD}?profile=aac"), 64 * 1024).await;

    // Five new copy-profile sessions at once against a limit of one a second with a burst of
    // two: some are answered 429. (Joining a running session is free: five different channels.)
    let starts =
        [HD, SD, MUNICH, RADIO, ORF1].map(|channel| http.get(format!("{base}/stream/{channel}?profile=copy")).send());
    let statuses: Vec<u16> = futures_util::future::join_all(starts)
        .await
        .into_iter()
        .map(|response| response.unwrap().status().as_u16())
        .collect();
    assert!(statuses.contains(&429), "five copy starts at once: {statuses:?}");

    // The stream port refuses one probe: a detection error, the breaker opens (threshold 1) and
    // the relay answers instead.
    demo.set_faults(|f| f.stream_port = Some(PortFault::Refuse));
    expect_status(http.get(format!("{base}/api/v1/channels/{RADIO}/source")), 200).await;
    demo.set_faults(|f| f.stream_port = None);
    open
}

/// Names only a machine with a GPU exposes: taken from xg2g's metrics recorded with a fake
/// reading, since no device here gives the collector one.
fn gpu_device_names() -> BTreeSet<String> {
    let metrics = Metrics::new();
    let reading = GpuReading {
        utilization_percent: Some(50.0),
        vram_used_bytes: Some(1 << 30),
        vram_total_bytes: Some(8 << 30),
        encoder_utilization_percent: Some(20.0),
        encoder_sessions: Some(2),
    };
    metrics.gpu.gpu_device("card0", "amd", &reading);
    let mut with_gpu = exposed_names(&metrics.encode());
    with_gpu.retain(|name| name.starts_with("xg2g_gpu_") || name.starts_with("xg2g_vram_"));
    with_gpu.retain(|name| !name.starts_with("xg2g_gpu_queue_"));
    with_gpu
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_that_rules_and_dashboards_name_is_exposed() {
    let demo = demo().await;
    let (running, base) = start_app(&config(&demo)).await;
    ready(&running).await;
    let open = exercise(&base, &demo).await;
    let exposition = metrics_text(&base).await;
    drop(open);
    let mut exposed = exposed_names(&exposition);
    let from_fake_gpu: Vec<String> = gpu_device_names().difference(&exposed).cloned().collect();
    eprintln!("GPU device metrics from a fake reading (no GPU here): {from_fake_gpu:?}");
    exposed.extend(from_fake_gpu);

    let mut used: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in files_naming_metrics() {
        let text = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        for name in metric_names(&text) {
            used.entry(name).or_default().insert(relative(&file));
        }
    }
    // The extractor finds what the files are known to use, suffixes and all.
    for name in [
        "xg2g_sessions_active",
        "xg2g_http_requests_total",
        "xg2g_transcode_latency_seconds_bucket",
        "xg2g_time_to_first_byte_seconds_sum",
        "xg2g_gpu_utilization_percent",
        "process_cpu_seconds_total",
    ] {
        assert!(
            used.contains_key(name),
            "{name} not found in deploy/: {:?}",
            used.keys()
        );
    }
    eprintln!("{} metric names used in deploy/, checked against /metrics", used.len());
    let missing: Vec<String> = used
        .iter()
        .filter(|(name, _)| !exposed.contains(*name))
        .map(|(name, files)| {
            format!(
                "  {name}  (in {})",
                files.iter().cloned().collect::<Vec<_>>().join(", ")
            )
        })
        .collect();
    assert!(
        missing.is_empty(),
        "names that deploy/ uses but xg2g does not expose after running every feature:\n{}\n\nxg2g exposes:\n{}",
        missing.join("\n"),
        exposed.iter().cloned().collect::<Vec<_>>().join(" ")
    );
    running.stop().await;
}

/// A Prometheus server started for one test; killed when dropped.
struct Prometheus {
    child: tokio::process::Child,
    api: String,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    /// Starts `prometheus` with the production job name and the shipped alert rules, scraping
    /// `target` every second; `None` when the binary is not installed.
    fn start(target: &str) -> Option<Self> {
        let installed = std::process::Command::new("prometheus")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !installed {
            return None;
        }
        // The rules select `job="xg2g"` and the production config scrapes `/metrics` under it.
        let production = std::fs::read_to_string(deploy().join("monitoring/prometheus.yml")).unwrap();
        assert!(production.contains("- job_name: xg2g\n"), "{production}");
        assert!(production.contains("metrics_path: /metrics\n"), "{production}");
        assert!(production.contains("- alerts.yml\n"), "{production}");

        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let rules = deploy().join("monitoring/alerts.yml");
        let config = format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
             rule_files:\n  - {rules:?}\n\
             scrape_configs:\n  - job_name: xg2g\n    metrics_path: /metrics\n    static_configs:\n      - targets: [\"{target}\"]\n"
        );
        let config_path = dir.path().join("prometheus.yml");
        std::fs::write(&config_path, config).unwrap();
        let log = dir.path().join("prometheus.log");
        let log_file = std::fs::File::create(&log).unwrap();
        let child = tokio::process::Command::new("prometheus")
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(log_file.try_clone().unwrap())
            .stderr(log_file)
            .kill_on_drop(true)
            .spawn()
            .expect("prometheus starts");
        Some(Self {
            child,
            api: format!("http://127.0.0.1:{port}/api/v1"),
            log,
            _dir: dir,
        })
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `data` of an API answer, or `None` while Prometheus does not answer or reports an error.
    async fn get(&self, path: &str, query: &[(&str, &str)]) -> Option<Value> {
        let response = client()
            .get(format!("{}{path}", self.api))
            .query(query)
            .send()
            .await
            .ok()?;
        let body: Value = response.json().await.ok()?;
        (body["status"] == "success").then(|| body["data"].clone())
    }

    /// An instant query's result vector; panics on a query error.
    async fn query(&self, promql: &str) -> Vec<Value> {
        let response = client()
            .get(format!("{}/query", self.api))
            .query(&[("query", promql)])
            .send()
            .await
            .unwrap();
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["status"], "success", "{promql}: {body}");
        body["data"]["result"].as_array().cloned().unwrap_or_default()
    }

    /// Polls (every 200 ms, up to 30 s) until `check` passes on the API's answer to `path`.
    async fn wait_for(&self, what: &str, path: &str, query: &[(&str, &str)], check: impl Fn(&Value) -> bool) -> Value {
        let waited = tokio::time::timeout(Duration::from_secs(30), async {
            loop {
                if let Some(data) = self.get(path, query).await
                    && check(&data)
                {
                    return data;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
        .await;
        waited.unwrap_or_else(|_| panic!("Prometheus: {what} within 30 s. Its log:\n{}", self.log()))
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

fn value_of(sample: &Value) -> f64 {
    sample["value"][1]
        .as_str()
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::NAN)
}

/// Every Prometheus query in a dashboard: (panel title, expression), rows' panels included, and
/// the templating variables' `label_values(…)` queries.
fn dashboard_queries(dashboard: &Value) -> (Vec<(String, String)>, Vec<String>) {
    let mut queries = Vec::new();
    let mut panels: Vec<&Value> = dashboard["panels"].as_array().unwrap().iter().collect();
    while let Some(panel) = panels.pop() {
        if let Some(nested) = panel["panels"].as_array() {
            panels.extend(nested);
        }
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().expect("every target has an expr");
            queries.push((panel["title"].as_str().unwrap_or_default().to_owned(), expr.to_owned()));
        }
    }
    let variables = dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v["definition"].as_str().map(str::to_owned))
        .collect();
    (queries, variables)
}

/// A dashboard expression as Grafana sends it: variables replaced by "all" and the rate interval.
fn as_sent(expr: &str) -> String {
    let sent = expr
        .replace("$__rate_interval", "1m")
        .replace("$__interval", "15s")
        .replace("$instance", ".*")
        .replace("$device", ".*");
    assert!(!sent.contains('$'), "an unknown variable in {expr}");
    sent
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_xg2g_evaluates_the_rules_and_answers_the_dashboards() {
    let demo = demo().await;
    let (running, base) = start_app(&config(&demo)).await;
    ready(&running).await;
    let Some(prometheus) = Prometheus::start(&running.addr().to_string()) else {
        eprintln!("SKIPPED: no `prometheus` binary (apt-get install prometheus) for the live scrape test");
        running.stop().await;
        return;
    };

    // The target is up and xg2g's series are in the database.
    prometheus
        .wait_for(
            "up == 1 for job xg2g",
            "/query",
            &[("query", "up{job=\"xg2g\"}")],
            |data| {
                data["result"]
                    .as_array()
                    .is_some_and(|r| r.len() == 1 && value_of(&r[0]) == 1.0)
            },
        )
        .await;
    prometheus
        .wait_for(
            "xg2g_ series",
            "/query",
            &[("query", "count({__name__=~\"xg2g_.+\"})")],
            |data| {
                data["result"]
                    .as_array()
                    .is_some_and(|r| r.len() == 1 && value_of(&r[0]) > 0.0)
            },
        )
        .await;

    // Live data for the panels: every feature runs while Prometheus scrapes, and the audio-proxy
    // session stays open until a scrape has seen it. A counter or histogram series is born with
    // its first observation, which `rate` cannot see: a first short session, scraped before the
    // exercise, makes the exercise's starts and first-byte times increases that it can.
    drop(first_bytes(&format!("{base}/stream/{SD}?profile=aac"), 16 * 1024).await);
    prometheus
        .wait_for(
            "the first session's time to first byte",
            "/query",
            &[(
                "query",
                "xg2g_time_to_first_byte_seconds_count{job=\"xg2g\", output=\"ts\"}",
            )],
            |data| data["result"].as_array().is_some_and(|r| !r.is_empty()),
        )
        .await;
    let open = exercise(&base, &demo).await;
    let seen = prometheus
        .wait_for(
            "a scrape that sees the open session",
            "/query",
            &[(
                "query",
                "sum(xg2g_sessions_active{job=\"xg2g\"}) >= 1 and sum(xg2g_session_clients{job=\"xg2g\"}) >= 1",
            )],
            |data| data["result"].as_array().is_some_and(|r| !r.is_empty()),
        )
        .await;
    eprintln!("sessions seen by Prometheus: {}", seen["result"]);
    // The transcode outlives its client by `streaming.idle_grace`, sampling its latency all
    // along: wait for a scrape that shows the video encoder's histogram growing.
    let video =
        "sum(rate(xg2g_transcode_latency_seconds_count{job=\"xg2g\", mode=\"gpu\", encoder=~\".*26[45].*\"}[1m])) > 0";
    prometheus
        .wait_for(
            "the video encoder's latency samples",
            "/query",
            &[("query", video)],
            |data| data["result"].as_array().is_some_and(|r| !r.is_empty()),
        )
        .await;

    // Every rule of alerts.yml loaded and evaluated without error against xg2g's real series.
    let shipped = std::fs::read_to_string(deploy().join("monitoring/alerts.yml")).unwrap();
    let want_rules = shipped.matches("- alert: ").count();
    let rules = prometheus
        .wait_for("every rule evaluated", "/rules", &[], |data| {
            let rules: Vec<&Value> = data["groups"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|g| g["rules"].as_array().into_iter().flatten())
                .collect();
            rules.len() == want_rules && rules.iter().all(|r| r["health"] != "unknown")
        })
        .await;
    for group in rules["groups"].as_array().unwrap() {
        for rule in group["rules"].as_array().unwrap() {
            assert_eq!(rule["health"], "ok", "{}: {}", rule["name"], rule["lastError"]);
        }
    }
    let alerts = prometheus.query("ALERTS{alertname=\"XG2GDown\"}").await;
    assert!(alerts.is_empty(), "XG2GDown while xg2g answers: {alerts:?}");

    // Every dashboard query is valid PromQL; report which return data from the demo.
    let mut with_data = BTreeSet::new();
    let mut without_data = BTreeSet::new();
    for file in dashboards() {
        let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let (queries, variables) = dashboard_queries(&dashboard);
        for (title, expr) in queries {
            let result = prometheus.query(&as_sent(&expr)).await;
            let numbers = result.iter().filter(|s| value_of(s).is_finite()).count();
            let entry = format!("{name}: {title}");
            if numbers > 0 {
                with_data.insert(entry);
            } else {
                without_data.insert(format!("{entry}  [{}]", as_sent(&expr)));
            }
        }
        // `label_values(METRIC, LABEL)`: the series API with a match, as Grafana asks.
        for variable in variables {
            let inner = variable
                .strip_prefix("label_values(")
                .and_then(|v| v.strip_suffix(')'))
                .unwrap_or_else(|| panic!("{name}: variable query {variable}"));
            let (matcher, label) = inner.rsplit_once(", ").unwrap();
            let data = prometheus
                .get(&format!("/label/{label}/values"), &[("match[]", &as_sent(matcher))])
                .await
                .unwrap_or_else(|| panic!("{name}: {variable} fails"));
            eprintln!("{name}: variable {label} = {data}");
            if label == "instance" {
                assert_eq!(data, serde_json::json!([running.addr().to_string()]), "{name}");
            }
        }
    }
    drop(open);
    eprintln!(
        "Panels with live data from the demo:\n  {}",
        with_data.iter().cloned().collect::<Vec<_>>().join("\n  ")
    );
    eprintln!(
        "Panels without data here:\n  {}",
        without_data.iter().cloned().collect::<Vec<_>>().join("\n  ")
    );
    let latency = prometheus
        .query("histogram_quantile(0.95, sum by (le, mode, encoder) (rate(xg2g_transcode_latency_seconds_bucket[1m])))")
        .await;
    for sample in &latency {
        eprintln!(
            "P95 transcode latency {}: {:.1} ms",
            sample["metric"],
            value_of(sample) * 1000.0
        );
    }
    // What the demo runs must show: HTTP, sessions, clients, start times, transcode latency.
    for panel in [
        "overview.json: Requests by route",
        "overview.json: Latency P95 by route",
        "overview.json: Active sessions",
        "overview.json: Clients",
        "overview.json: Channels",
        "overview.json: Session starts",
        "overview.json: Server error share",
        "overview.json: Circuit breakers",
        "overview.json: xg2g CPU (cores)",
        "streaming.json: Time to first byte by output",
        "streaming.json: Time to first byte",
        "streaming.json: Mean time to first byte by mode",
        "streaming.json: Start failure share",
        "streaming.json: Transcode latency",
        "streaming.json: Transcode latency quantiles by encoder",
        "gpu-transcoding.json: Transcode latency P50 / P95 / P99",
    ] {
        assert!(with_data.contains(panel), "no live data for {panel}");
    }
    running.stop().await;
}

#[test]
fn metric_names_are_found_with_their_suffixes_and_nothing_else() {
    let text = "expr: sum(rate(xg2g_http_requests_total{job=\"xg2g\"}[5m])) / xg2g_vram_usage_bytes\n\
                uid: xg2g-overview, legend: \"xg2g transcode\", rate(process_cpu_seconds_total[1m]) my_xg2g_x";
    let names: Vec<String> = metric_names(text).into_iter().collect();
    assert_eq!(
        names,
        [
            "process_cpu_seconds_total",
            "xg2g_http_requests_total",
            "xg2g_vram_usage_bytes"
        ]
    );
}

#[test]
fn exposed_names_follow_the_openmetrics_types() {
    let exposition = "# HELP xg2g_a A.\n# TYPE xg2g_a counter\n# TYPE xg2g_h histogram\n\
                      # TYPE xg2g_b info\nxg2g_b_info{version=\"1\"} 1\n# TYPE xg2g_g gauge\n# EOF\n";
    let names = exposed_names(exposition);
    for name in [
        "xg2g_a_total",
        "xg2g_h_bucket",
        "xg2g_h_count",
        "xg2g_h_sum",
        "xg2g_b_info",
        "xg2g_g",
    ] {
        assert!(names.contains(name), "{name}: {names:?}");
    }
    for name in ["xg2g_a", "xg2g_h", "xg2g_g_total", "xg2g_b"] {
        assert!(!names.contains(name), "{name}: {names:?}");
    }
}
