//! What the bench reports: the JSON document, and a run's figures gathered from its clients'
//! outcomes.

use std::time::Duration;

use xg2g::demo::DemoBitrate;

use crate::client::ClientOutcome;
use crate::report::{self, Quantiles, RunResult};
use crate::scenario::{Scenario, Server};
use crate::{goals, procfs, servers};

/// Everything the bench writes to JSON.
#[derive(Debug, serde::Serialize)]
pub(crate) struct Output {
    pub(crate) machine: Machine,
    pub(crate) demo_bitrate: DemoBitrate,
    pub(crate) duration_s: f64,
    pub(crate) warmup_s: f64,
    pub(crate) repeats: usize,
    pub(crate) results: Vec<RunResult>,
    pub(crate) rows: Vec<report::Row>,
    pub(crate) goals: Vec<goals::Goal>,
    /// Figures printed beside the goals, without a goal of their own.
    pub(crate) reported: Vec<goals::Reported>,
    pub(crate) soak: Option<Soak>,
}

#[derive(Debug, serde::Serialize)]
pub(crate) struct Machine {
    cpus: usize,
    model: String,
    kernel: String,
    ffmpeg: Option<String>,
}

pub(crate) fn machine() -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")?
                .split_once(':')
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_default();
    Machine {
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        model,
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim()
            .to_owned(),
        ffmpeg: servers::ffmpeg_version(),
    }
}

/// The soak's verdict.
#[derive(Debug, serde::Serialize)]
pub(crate) struct Soak {
    pub(crate) clients: usize,
    pub(crate) duration_s: f64,
    pub(crate) stalls: u32,
    pub(crate) errors: usize,
    pub(crate) error_samples: Vec<String>,
    /// Seconds from the start, RSS KiB of the xg2g process.
    pub(crate) rss_samples: Vec<(f64, u64)>,
    /// Samples before this were warm-up, left out of the slope.
    pub(crate) warmup_s: f64,
    pub(crate) rss_slope_kib_per_min: Option<f64>,
    /// The slope over the second half of the run alone: allocator arenas and caches settle
    /// for minutes, so a slope that falls to zero here is growth that stopped, not a leak.
    pub(crate) rss_slope_last_half_kib_per_min: Option<f64>,
    pub(crate) ttfb_ms: Option<Quantiles>,
    pub(crate) first_playlist_ms: Option<Quantiles>,
    pub(crate) first_segment_ms: Option<Quantiles>,
    /// Every client's figures, in plan order.
    pub(crate) per_client: Vec<report::ClientFigures>,
}

/// Up to five distinct error texts.
pub(crate) fn error_samples(outcomes: &[ClientOutcome]) -> Vec<String> {
    let mut samples: Vec<String> = Vec::new();
    for e in outcomes.iter().flat_map(|o| &o.errors) {
        if samples.len() < 5 && !samples.contains(e) {
            samples.push(e.clone());
        }
    }
    samples
}

#[allow(clippy::too_many_arguments, reason = "one run's raw figures, gathered in one place")]
pub(crate) fn summarise(
    scenario: Scenario,
    server: Server,
    repeat: usize,
    labels: &[String],
    outcomes: &[ClientOutcome],
    sessions: usize,
    window_s: f64,
    cpu_s: f64,
    idle: procfs::Memory,
    loaded: procfs::Memory,
    transcode_p95: Option<Vec<report::TranscodeP95>>,
) -> RunResult {
    let ttfb: Vec<Duration> = outcomes.iter().filter_map(|o| o.ttfb).collect();
    let playlists: Vec<Duration> = outcomes.iter().filter_map(|o| o.first_playlist).collect();
    let segments: Vec<Duration> = outcomes.iter().filter_map(|o| o.first_segment).collect();
    RunResult {
        scenario,
        server,
        repeat,
        clients: outcomes.len(),
        sessions,
        window_s,
        cpu_s,
        memory_kind: loaded.kind,
        idle_kib: idle.kib,
        loaded_kib: loaded.kib,
        ttfb_ms: Quantiles::of(&ttfb),
        first_playlist_ms: Quantiles::of(&playlists),
        first_segment_ms: Quantiles::of(&segments),
        stalls: outcomes.iter().map(|o| o.stalls).sum(),
        per_client: labels
            .iter()
            .zip(outcomes)
            .map(|(label, o)| client_figures(label, o))
            .collect(),
        errors: outcomes.iter().map(|o| o.errors.len()).sum(),
        error_samples: error_samples(outcomes),
        min_speed: outcomes.iter().filter_map(|o| o.speed).min_by(f64::total_cmp),
        transcode_p95,
    }
}

/// One client's outcome as the report shows it.
pub(crate) fn client_figures(label: &str, o: &ClientOutcome) -> report::ClientFigures {
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    report::ClientFigures {
        client: label.to_owned(),
        ttfb_ms: o.ttfb.map(ms),
        first_playlist_ms: o.first_playlist.map(ms),
        first_segment_ms: o.first_segment.map(ms),
        bytes: o.bytes,
        stalls: o.stalls,
        stalled_at_s: o.stalled_at.iter().map(Duration::as_secs_f64).collect(),
        longest_wait_s: o.longest_wait.as_secs_f64(),
        speed: o.speed,
        errors: o.errors.len(),
        longest_segment_s: o.longest_segment.as_secs_f64(),
        slowest_playlist_s: o.slowest_playlist.as_secs_f64(),
        slowest_segment_s: o.slowest_segment.as_secs_f64(),
    }
}
