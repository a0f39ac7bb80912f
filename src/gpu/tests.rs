//! The collector: device bookkeeping, Intel discovery, and whole runs on fakes and on this host.

use std::fmt;
use std::os::unix::fs::PermissionsExt as _;
use std::sync::Mutex;

use tracing_subscriber::layer::{Context, SubscriberExt as _};

use super::sysfs::fake;
use super::*;

/// Bound on every wait in these tests.
const WAIT: Duration = Duration::from_secs(20);
const INTERVAL: Duration = Duration::from_millis(250);

fn sample_lines(metrics: &Metrics, name: &str) -> Vec<String> {
    let prefix = format!("{name}{{");
    let plain = format!("{name} ");
    metrics
        .encode()
        .lines()
        .filter(|l| l.starts_with(&prefix) || l.starts_with(&plain))
        .map(str::to_owned)
        .collect()
}

fn host() -> HostSample {
    HostSample {
        cpu_percent: 12.5,
        memory_used_bytes: 3 << 30,
        memory_total_bytes: 16 << 30,
    }
}

fn device(name: &str, vendor: Vendor, utilization: f64) -> DeviceSample {
    DeviceSample {
        device: name.to_owned(),
        vendor,
        reading: GpuReading {
            utilization_percent: Some(utilization),
            vram_used_bytes: Some(1 << 30),
            vram_total_bytes: Some(2 << 30),
            ..GpuReading::default()
        },
    }
}

#[test]
fn a_round_writes_devices_and_host_and_drops_devices_gone() {
    let metrics = Metrics::new();
    let mut shown = BTreeSet::new();
    record(
        &metrics,
        &mut shown,
        &[
            device("nvidia0", Vendor::Nvidia, 50.0),
            device("card1", Vendor::Amd, 20.0),
        ],
        &host(),
    );
    let mut lines = sample_lines(&metrics, "xg2g_gpu_utilization_percent");
    lines.sort();
    assert_eq!(
        lines,
        [
            "xg2g_gpu_utilization_percent{device=\"card1\",vendor=\"amd\"} 20.0",
            "xg2g_gpu_utilization_percent{device=\"nvidia0\",vendor=\"nvidia\"} 50.0",
        ]
    );
    assert_eq!(
        sample_lines(&metrics, "xg2g_host_cpu_utilization_percent"),
        ["xg2g_host_cpu_utilization_percent 12.5"]
    );
    assert_eq!(
        sample_lines(&metrics, "xg2g_host_memory_total_bytes"),
        [format!("xg2g_host_memory_total_bytes {}", 16u64 << 30)]
    );

    // The AMD card is gone and the NVIDIA card lost its memory figures.
    let mut nvidia = device("nvidia0", Vendor::Nvidia, 70.0);
    nvidia.reading.vram_used_bytes = None;
    nvidia.reading.vram_total_bytes = None;
    record(&metrics, &mut shown, &[nvidia], &host());
    assert_eq!(
        sample_lines(&metrics, "xg2g_gpu_utilization_percent"),
        ["xg2g_gpu_utilization_percent{device=\"nvidia0\",vendor=\"nvidia\"} 70.0"]
    );
    assert!(sample_lines(&metrics, "xg2g_vram_usage_bytes").is_empty());
    assert!(sample_lines(&metrics, "xg2g_vram_total_bytes").is_empty());
}

#[test]
fn finds_a_program_on_the_path_only_when_executable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).expect("bin");
    let tool = bin.join("intel_gpu_top");
    std::fs::write(&tool, "#!/bin/sh\n").expect("write");
    let path = std::env::join_paths([dir.path().join("missing"), bin.clone()]).expect("path");
    std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    assert_eq!(find_program("intel_gpu_top", &path), None);
    std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    assert_eq!(find_program("intel_gpu_top", &path), Some(tool));
}

/// A fake sysfs and /dev: `card0` Intel with its render node, `card1` AMD, `card2` Intel whose
/// render node is not in /dev (not passed into the container).
fn fake_host(root: &Path) -> Sources {
    let sysfs = root.join("sys");
    let dev = root.join("dev");
    fake::card(&sysfs, "card0", &[("vendor", "0x8086\n")]);
    fake::render_node(&sysfs, "card0", "renderD128");
    fake::card(
        &sysfs,
        "card1",
        &[
            ("vendor", "0x1002\n"),
            ("gpu_busy_percent", "17\n"),
            ("mem_info_vram_used", "268435456\n"),
            ("mem_info_vram_total", "2147483648\n"),
        ],
    );
    fake::render_node(&sysfs, "card1", "renderD129");
    fake::card(&sysfs, "card2", &[("vendor", "0x8086\n")]);
    fake::render_node(&sysfs, "card2", "renderD130");
    std::fs::create_dir_all(dev.join("dri")).expect("dri");
    for node in ["card0", "renderD128", "card1", "renderD129"] {
        std::fs::write(dev.join("dri").join(node), "").expect("node");
    }
    Sources {
        sysfs_root: sysfs,
        dev_root: dev,
        intel_gpu_top: None,
        nvml: false,
    }
}

#[test]
fn intel_gpu_top_runs_for_intel_cards_with_a_render_node_when_installed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut sources = fake_host(dir.path());
    assert!(sources.intel_children(INTERVAL).is_empty(), "no tool, no child");
    sources.intel_gpu_top = Some(PathBuf::from("/usr/bin/intel_gpu_top"));
    let children = sources.intel_children(INTERVAL);
    let summary: Vec<_> = children.iter().map(|c| (c.device.as_str(), c.node.clone())).collect();
    assert_eq!(summary, [("card0", sources.dev_root.join("dri/card0"))]);
    assert_eq!(children[0].period, INTERVAL);
}

/// Waits, bounded, until one exposition shows every line of `want` (checked after each round);
/// returns that exposition.
async fn until_lines(stats: &GpuStats, metrics: &Metrics, want: &[&str]) -> String {
    let mut rounds = stats.rounds();
    let found = tokio::time::timeout(WAIT, async {
        loop {
            let text = metrics.encode();
            if want.iter().all(|line| text.lines().any(|l| l == *line)) {
                return text;
            }
            rounds.changed().await.expect("collector alive");
        }
    })
    .await;
    found.unwrap_or_else(|_| panic!("{want:?} within {WAIT:?}; have:\n{}", metrics.encode()))
}

#[tokio::test]
async fn the_collector_reads_intel_and_amd_from_a_fake_host() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut sources = fake_host(dir.path());
    let tool = dir.path().join("intel_gpu_top");
    let samples = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/gpu/intel_gpu_top.json");
    // Paced like the real tool, which writes a sample every period until killed.
    let script = format!("#!/bin/sh\nwhile :; do cat '{samples}'; sleep 0.2; done\n");
    std::fs::write(&tool, script).expect("write tool");
    std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    sources.intel_gpu_top = Some(tool);
    let metrics = Arc::new(Metrics::new());
    let shutdown = CancellationToken::new();
    let stats = spawn_with(sources, INTERVAL, Arc::clone(&metrics), shutdown.clone());

    // The tool writes three samples a time; the last one of a batch stands.
    let text = until_lines(
        &stats,
        &metrics,
        &[
            "xg2g_gpu_utilization_percent{device=\"card0\",vendor=\"intel\"} 71.330012",
            "xg2g_gpu_encoder_utilization_percent{device=\"card0\"} 54.002301",
            "xg2g_gpu_utilization_percent{device=\"card1\",vendor=\"amd\"} 17.0",
            "xg2g_vram_usage_bytes{device=\"card1\"} 268435456",
            "xg2g_vram_total_bytes{device=\"card1\"} 2147483648",
        ],
    )
    .await;
    assert!(
        !text.contains("card2"),
        "an Intel card without a render node is not sampled"
    );
    // Intel gives no memory figures; AMD no encoder figures.
    assert!(!text.contains("xg2g_vram_usage_bytes{device=\"card0\"}"));
    assert!(!text.contains("xg2g_gpu_encoder_utilization_percent{device=\"card1\"}"));
    shutdown.cancel();
    assert!(stats.join().await, "stops on shutdown");
}

/// Log events: level and message.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<(tracing::Level, String)>>>);

impl Captured {
    fn events(&self) -> Vec<(tracing::Level, String)> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Captured {
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        struct Message(String);
        impl tracing::field::Visit for Message {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn fmt::Debug) {
                if field.name() == "message" {
                    self.0 = format!("{value:?}");
                }
            }
        }
        let mut message = Message(String::new());
        event.record(&mut message);
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((*event.metadata().level(), message.0));
    }
}

#[tokio::test]
async fn on_this_host_the_collector_gives_host_metrics_and_logs_no_error() {
    let captured = Captured::default();
    let _guard = tracing::subscriber::set_default(tracing_subscriber::registry().with(captured.clone()));
    let metrics = Arc::new(Metrics::new());
    let shutdown = CancellationToken::new();
    let stats = spawn_with(Sources::system(), INTERVAL, Arc::clone(&metrics), shutdown.clone());
    let mut rounds = stats.rounds();
    tokio::time::timeout(WAIT, rounds.wait_for(|n| *n >= 3))
        .await
        .expect("three rounds in time")
        .expect("collector alive");
    shutdown.cancel();
    assert!(stats.join().await, "stops on shutdown");

    let total = sample_lines(&metrics, "xg2g_host_memory_total_bytes");
    assert_eq!(total.len(), 1, "{total:?}");
    let bytes: u64 = total[0]
        .rsplit(' ')
        .next()
        .and_then(|v| v.parse().ok())
        .expect("a number");
    assert!(bytes > 0);
    assert_eq!(sample_lines(&metrics, "xg2g_host_memory_used_bytes").len(), 1);
    let cpu = sample_lines(&metrics, "xg2g_host_cpu_utilization_percent");
    let percent: f64 = cpu[0]
        .rsplit(' ')
        .next()
        .and_then(|v| v.parse().ok())
        .expect("a number");
    assert!((0.0..=100.0).contains(&percent), "{percent}");

    let events = captured.events();
    let loud: Vec<_> = events
        .iter()
        .filter(|(level, _)| *level <= tracing::Level::WARN)
        .collect();
    assert!(loud.is_empty(), "no warnings or errors: {loud:?}");

    let no_driver = nvml_wrapper::Nvml::init().is_err();
    let no_cards = sysfs::cards(Path::new("/sys")).is_empty();
    if no_driver && no_cards {
        for name in [
            "xg2g_gpu_utilization_percent",
            "xg2g_vram_usage_bytes",
            "xg2g_vram_total_bytes",
            "xg2g_gpu_encoder_utilization_percent",
            "xg2g_gpu_encoder_sessions",
        ] {
            assert!(sample_lines(&metrics, name).is_empty(), "{name} on a host without GPUs");
        }
    } else {
        eprintln!(
            "this host has a GPU (NVML: {}, DRM cards: {}); GPU series not checked",
            !no_driver, !no_cards
        );
    }
    if no_driver {
        let info: Vec<_> = events
            .iter()
            .filter(|(_, message)| message == "No NVIDIA driver; no NVIDIA metrics.")
            .collect();
        assert_eq!(
            info.len(),
            1,
            "one info line for the missing driver, not one per round: {events:?}"
        );
        assert_eq!(info[0].0, tracing::Level::INFO);
    }
}

#[test]
fn config_defaults_and_the_interval_floor() {
    use crate::config::{self, Requirements};
    let defaults = crate::config::Config::default();
    assert!(defaults.gpu.stats_enabled);
    assert_eq!(defaults.gpu.stats_interval, Duration::from_secs(5));
    let env = |var: &str| match var {
        "XG2G_GPU_STATS_ENABLED" => Some("false".to_owned()),
        "XG2G_GPU_STATS_INTERVAL" => Some("100ms".to_owned()),
        _ => None,
    };
    let sources = config::Sources {
        file: None,
        env: &env,
        overrides: Vec::new(),
    };
    let error = config::load(&sources, Requirements::None).expect_err("100ms is below the floor");
    let text = error.to_string();
    assert!(
        text.contains("gpu.stats_interval") && text.contains("must be at least 200ms"),
        "{text}"
    );
    let env = |var: &str| match var {
        "XG2G_GPU_STATS_ENABLED" => Some("false".to_owned()),
        "XG2G_GPU_STATS_INTERVAL" => Some("2s".to_owned()),
        _ => None,
    };
    let sources = config::Sources {
        file: None,
        env: &env,
        overrides: Vec::new(),
    };
    let gpu = config::load(&sources, Requirements::None).expect("loads").config.gpu;
    assert!(!gpu.stats_enabled);
    assert_eq!(gpu.stats_interval, Duration::from_secs(2));
}

#[test]
fn host_series_are_absent_until_the_first_sample() {
    let metrics = Metrics::new();
    for name in [
        "xg2g_host_cpu_utilization_percent",
        "xg2g_host_memory_used_bytes",
        "xg2g_host_memory_total_bytes",
    ] {
        assert!(sample_lines(&metrics, name).is_empty(), "{name} before any sample");
    }
    record(&metrics, &mut BTreeSet::new(), &[], &host());
    assert_eq!(
        sample_lines(&metrics, "xg2g_host_memory_used_bytes"),
        [format!("xg2g_host_memory_used_bytes {}", 3u64 << 30)]
    );
}
