//! `deploy/` against a running xg2g: every metric that an alert rule, a rule test, a Grafana
//! dashboard or a Kubernetes manifest names is exposed at `/metrics` once each feature has run;
//! a real Prometheus (Debian's `prometheus`, skipped when absent) scrapes xg2g on loopback,
//! evaluates the alert rules and answers every dashboard query.

mod exercise;
mod names;
mod prometheus;

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use crate::common::{demo, ready, start_app};
use exercise::{config, exercise, first_bytes, metrics_text};
use names::{dashboards, deploy, exposed_names, files_naming_metrics, gpu_device_names, metric_names, relative};
use prometheus::{Prometheus, as_sent, dashboard_queries, value_of};

const HD: &str = "1:0:19:283D:3FB:1:C00000:0:0:0:";
const SD: &str = "1:0:1:6F0B:44D:1:C00000:0:0:0:";
const RADIO: &str = "1:0:2:2F1C:441:1:C00000:0:0:0:";
const MUNICH: &str = "1:0:1:2EE3:441:1:C00000:0:0:0:";
/// Whitelisted: always the relay, never probed.
const ORF1: &str = "1:0:19:132F:3EF:1:C00000:0:0:0:";
/// A channel the demo does not have.
const UNKNOWN: &str = "1:0:1:FFFF:FFF:1:C00000:0:0:0:";
const TOKEN: &str = "m0nitoring-t0ken";

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
