//! Metric names on both sides: the files under `deploy/` that name metrics and the names in
//! them, and the names an exposition has or can have (a fake GPU reading's included).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use xg2g::metrics::{GpuReading, Metrics};

pub(super) fn deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy")
}

pub(super) fn relative(path: &Path) -> String {
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
pub(super) fn files_naming_metrics() -> Vec<PathBuf> {
    let monitoring = deploy().join("monitoring");
    let mut files = vec![monitoring.join("alerts.yml"), monitoring.join("alerts.test.yml")];
    files.extend(dashboards());
    files.extend(files_in(&deploy().join("kubernetes"), &[".yaml", ".yml"]));
    files
}

pub(super) fn dashboards() -> Vec<PathBuf> {
    let found = files_in(&deploy().join("monitoring/grafana/dashboards"), &[".json"]);
    assert_eq!(found.len(), 3, "overview, streaming and gpu-transcoding: {found:?}");
    found
}

/// Metric names in a text: the words that start with `xg2g_` or `process_`.
pub(super) fn metric_names(text: &str) -> BTreeSet<String> {
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
pub(super) fn exposed_names(exposition: &str) -> BTreeSet<String> {
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

/// Names only a machine with a GPU exposes: taken from xg2g's metrics recorded with a fake
/// reading, since no device here gives the collector one.
pub(super) fn gpu_device_names() -> BTreeSet<String> {
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
