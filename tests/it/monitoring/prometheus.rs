//! A real Prometheus started for one test ([`Prometheus`]), and the dashboards' queries as
//! Grafana sends them.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;

use super::names::deploy;
use crate::common::client;

/// A Prometheus server started for one test; killed when dropped.
pub(super) struct Prometheus {
    child: tokio::process::Child,
    api: String,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    /// Starts `prometheus` with the production job name and the shipped alert rules, scraping
    /// `target` every second; `None` when the binary is not installed.
    pub(super) fn start(target: &str) -> Option<Self> {
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
    pub(super) async fn get(&self, path: &str, query: &[(&str, &str)]) -> Option<Value> {
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
    pub(super) async fn query(&self, promql: &str) -> Vec<Value> {
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
    pub(super) async fn wait_for(
        &self,
        what: &str,
        path: &str,
        query: &[(&str, &str)],
        check: impl Fn(&Value) -> bool,
    ) -> Value {
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

pub(super) fn value_of(sample: &Value) -> f64 {
    sample["value"][1]
        .as_str()
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::NAN)
}

/// Every Prometheus query in a dashboard: (panel title, expression), rows' panels included, and
/// the templating variables' `label_values(…)` queries.
pub(super) fn dashboard_queries(dashboard: &Value) -> (Vec<(String, String)>, Vec<String>) {
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
pub(super) fn as_sent(expr: &str) -> String {
    let sent = expr
        .replace("$__rate_interval", "1m")
        .replace("$__interval", "15s")
        .replace("$instance", ".*")
        .replace("$device", ".*");
    assert!(!sent.contains('$'), "an unknown variable in {expr}");
    sent
}
