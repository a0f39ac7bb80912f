//! The bench's figures: one run's result, the spread over repeats, the xg2g / FFmpeg ratios,
//! and the Markdown table with the lines printed around it. Pure: no IO.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use super::procfs::MemoryKind;
use super::scenario::{Scenario, Server};

/// Median and 95th percentile of a sample, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub(crate) struct Quantiles {
    pub median: f64,
    pub p95: f64,
    pub n: usize,
}

impl Quantiles {
    pub(crate) fn of(durations: &[Duration]) -> Option<Self> {
        let mut ms: Vec<f64> = durations.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
        ms.sort_by(f64::total_cmp);
        Some(Self {
            median: percentile(&ms, 50.0)?,
            p95: percentile(&ms, 95.0)?,
            n: ms.len(),
        })
    }
}

/// Nearest-rank percentile of sorted values.
pub(crate) fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// Least-squares slope of `(x, y)` points; `None` with fewer than two distinct x.
pub(crate) fn slope(points: &[(f64, f64)]) -> Option<f64> {
    let n = points.len() as f64;
    let mean_x = points.iter().map(|p| p.0).sum::<f64>() / n;
    let mean_y = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = points.iter().map(|p| (p.0 - mean_x).powi(2)).sum();
    let sxy: f64 = points.iter().map(|p| (p.0 - mean_x) * (p.1 - mean_y)).sum();
    (points.len() >= 2 && sxx > 0.0).then(|| sxy / sxx)
}

/// What one run of one scenario against one server measured.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct RunResult {
    pub scenario: Scenario,
    pub server: Server,
    pub repeat: usize,
    pub clients: usize,
    /// Pipelines (xg2g) or ffmpeg processes (peers) running at the end of the window.
    pub sessions: usize,
    /// The CPU window: after the warm-up, until the clients stop.
    pub window_s: f64,
    /// CPU seconds of the server's process tree in the window.
    pub cpu_s: f64,
    pub memory_kind: MemoryKind,
    /// The tree's memory before the clients came, and at the end of the window, KiB.
    pub idle_kib: u64,
    pub loaded_kib: u64,
    pub ttfb_ms: Option<Quantiles>,
    pub first_playlist_ms: Option<Quantiles>,
    /// HLS: first request → first segment in hand, the earliest a player can show a frame.
    pub first_segment_ms: Option<Quantiles>,
    pub stalls: u32,
    /// Every client's own figures, in start order.
    pub per_client: Vec<ClientFigures>,
    pub errors: usize,
    /// A few error texts, for the reader.
    pub error_samples: Vec<String>,
    /// The slowest client's media time per wall second in the window.
    pub min_speed: Option<f64>,
    /// xg2g: the P95 of each transcode stage in the window; `None` for FFmpeg, or when xg2g's
    /// `/metrics` could not be read.
    pub transcode_p95: Option<Vec<TranscodeP95>>,
}

/// The P95 of one transcode stage (`xg2g_transcode_latency_seconds{mode, encoder}`) in a run's
/// measured window.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub(crate) struct TranscodeP95 {
    pub mode: String,
    pub encoder: String,
    pub p95_ms: f64,
    /// Buffers the histogram counted in the window.
    pub samples: u64,
}

impl RunResult {
    /// CPU seconds per minute of one client's stream.
    pub(crate) fn cpu_per_stream_minute(&self) -> f64 {
        self.cpu_s / (self.clients.max(1) as f64 * self.window_s / 60.0)
    }

    /// Percent of one core.
    pub(crate) fn cpu_percent(&self) -> f64 {
        100.0 * self.cpu_s / self.window_s
    }

    /// Memory growth under load per session, MiB.
    pub(crate) fn memory_per_session_mib(&self) -> f64 {
        self.loaded_kib.saturating_sub(self.idle_kib) as f64 / 1024.0 / self.sessions.max(1) as f64
    }

    /// Memory growth under load of the whole tree, MiB.
    pub(crate) fn memory_growth_mib(&self) -> f64 {
        self.loaded_kib.saturating_sub(self.idle_kib) as f64 / 1024.0
    }

    /// Memory growth under load per client, MiB.
    pub(crate) fn memory_per_client_mib(&self) -> f64 {
        self.loaded_kib.saturating_sub(self.idle_kib) as f64 / 1024.0 / self.clients.max(1) as f64
    }

    /// Kept real time: no stall, no error, and every measured client at ≥ 0.95× real time.
    pub(crate) fn kept_up(&self) -> bool {
        self.stalls == 0 && self.errors == 0 && self.min_speed.is_none_or(|s| s >= 0.95)
    }
}

/// One client's figures in one run.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct ClientFigures {
    pub client: String,
    pub ttfb_ms: Option<f64>,
    pub first_playlist_ms: Option<f64>,
    pub first_segment_ms: Option<f64>,
    pub bytes: u64,
    pub stalls: u32,
    /// When the stalls began, seconds after the client's start.
    pub stalled_at_s: Vec<f64>,
    pub longest_wait_s: f64,
    pub speed: Option<f64>,
    pub errors: usize,
    /// HLS: the longest segment and the slowest playlist answer.
    pub longest_segment_s: f64,
    pub slowest_playlist_s: f64,
    pub slowest_segment_s: f64,
}

impl ClientFigures {
    /// `TS aac Das Erste HD: 2 stalls, longest wait 3.1 s, from 4.0, 9.0 s after its start`,
    /// for a client that stalled.
    pub(crate) fn stall_line(&self) -> Option<String> {
        (self.stalls > 0).then(|| {
            let at: Vec<String> = self.stalled_at_s.iter().map(|s| format!("{s:.1}")).collect();
            format!(
                "{}: {} stalls, longest wait {:.1} s, from {} s after its start",
                self.client,
                self.stalls,
                self.longest_wait_s,
                at.join(", ")
            )
        })
    }
}

/// The median of a figure over repeats, with its range.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub(crate) struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Spread {
    pub(crate) fn of(values: impl IntoIterator<Item = f64>) -> Option<Self> {
        let mut v: Vec<f64> = values.into_iter().filter(|x| x.is_finite()).collect();
        v.sort_by(f64::total_cmp);
        let median = if v.is_empty() {
            return None;
        } else if v.len() % 2 == 1 {
            v[v.len() / 2]
        } else {
            (v[v.len() / 2 - 1] + v[v.len() / 2]) / 2.0
        };
        Some(Self {
            median,
            min: v[0],
            max: v[v.len() - 1],
        })
    }
}

/// One scenario on one server, over every repeat.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct Row {
    pub scenario: Scenario,
    pub server: Server,
    pub runs: usize,
    pub clients: usize,
    pub sessions: usize,
    pub cpu_percent: Option<Spread>,
    pub cpu_per_stream_minute: Option<Spread>,
    pub memory_per_session_mib: Option<Spread>,
    pub memory_per_client_mib: Option<Spread>,
    /// The whole tree's growth under load (a ladder is one session, its baseline three).
    pub memory_growth_mib: Option<Spread>,
    pub ttfb_median_ms: Option<Spread>,
    pub ttfb_p95_ms: Option<Spread>,
    pub first_playlist_median_ms: Option<Spread>,
    pub first_playlist_p95_ms: Option<Spread>,
    pub first_segment_median_ms: Option<Spread>,
    pub first_segment_p95_ms: Option<Spread>,
    pub stalls: u32,
    pub errors: usize,
    pub runs_kept_up: usize,
    /// The slowest client's speed in each repeat, over the repeats (`min`: the worst repeat).
    pub slowest_client_speed: Option<Spread>,
    /// xg2g: each transcode stage's P95 over the repeats, by mode and encoder.
    pub transcode_p95_ms: Vec<StageP95>,
}

/// One transcode stage's P95 over the repeats that measured it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub(crate) struct StageP95 {
    pub mode: String,
    pub encoder: String,
    pub p95_ms: Spread,
}

pub(crate) fn rows(results: &[RunResult]) -> Vec<Row> {
    let mut groups: BTreeMap<(Scenario, Server), Vec<&RunResult>> = BTreeMap::new();
    for r in results {
        groups.entry((r.scenario, r.server)).or_default().push(r);
    }
    groups
        .into_iter()
        .map(|((scenario, server), runs)| {
            let spread = |f: &dyn Fn(&RunResult) -> Option<f64>| Spread::of(runs.iter().filter_map(|r| f(r)));
            Row {
                scenario,
                server,
                runs: runs.len(),
                clients: runs[0].clients,
                sessions: runs.iter().map(|r| r.sessions).max().unwrap_or(0),
                cpu_percent: spread(&|r| Some(r.cpu_percent())),
                cpu_per_stream_minute: spread(&|r| Some(r.cpu_per_stream_minute())),
                memory_per_session_mib: spread(&|r| Some(r.memory_per_session_mib())),
                memory_per_client_mib: spread(&|r| Some(r.memory_per_client_mib())),
                memory_growth_mib: spread(&|r| Some(r.memory_growth_mib())),
                ttfb_median_ms: spread(&|r| r.ttfb_ms.map(|q| q.median)),
                ttfb_p95_ms: spread(&|r| r.ttfb_ms.map(|q| q.p95)),
                first_playlist_median_ms: spread(&|r| r.first_playlist_ms.map(|q| q.median)),
                first_playlist_p95_ms: spread(&|r| r.first_playlist_ms.map(|q| q.p95)),
                first_segment_median_ms: spread(&|r| r.first_segment_ms.map(|q| q.median)),
                first_segment_p95_ms: spread(&|r| r.first_segment_ms.map(|q| q.p95)),
                stalls: runs.iter().map(|r| r.stalls).sum(),
                errors: runs.iter().map(|r| r.errors).sum(),
                runs_kept_up: runs.iter().filter(|r| r.kept_up()).count(),
                slowest_client_speed: spread(&|r| r.min_speed),
                transcode_p95_ms: stages(&runs),
            }
        })
        .collect()
}

/// Each transcode stage's P95 over the runs, in mode and encoder order.
fn stages(runs: &[&RunResult]) -> Vec<StageP95> {
    let mut by_stage: BTreeMap<(&str, &str), Vec<f64>> = BTreeMap::new();
    for stage in runs.iter().filter_map(|r| r.transcode_p95.as_ref()).flatten() {
        by_stage
            .entry((&stage.mode, &stage.encoder))
            .or_default()
            .push(stage.p95_ms);
    }
    by_stage
        .into_iter()
        .filter_map(|((mode, encoder), p95s)| {
            Some(StageP95 {
                mode: mode.to_owned(),
                encoder: encoder.to_owned(),
                p95_ms: Spread::of(p95s)?,
            })
        })
        .collect()
}

/// xg2g's median over FFmpeg's, where both exist and FFmpeg's is not zero.
pub(crate) fn ratio(xg2g: Option<Spread>, ffmpeg: Option<Spread>) -> Option<f64> {
    let (x, f) = (xg2g?.median, ffmpeg?.median);
    (f > 0.0).then(|| x / f)
}

pub(crate) fn cell(spread: Option<Spread>, digits: usize) -> String {
    match spread {
        Some(s) if (s.max - s.min) > f64::EPSILON => {
            format!("{:.digits$} ({:.digits$}–{:.digits$})", s.median, s.min, s.max)
        }
        Some(s) => format!("{:.digits$}", s.median),
        None => "–".into(),
    }
}

fn ratio_cell(r: Option<f64>) -> String {
    r.map_or_else(|| "–".into(), |r| format!("**{r:.2}×**"))
}

/// The Markdown table: each scenario's rows for both servers, then the ratio row.
pub(crate) fn table(rows: &[Row]) -> String {
    let mut out = String::new();
    out.push_str(
        "| scenario | server | clients | sessions | CPU % of a core | CPU s / stream-min | memory MiB / session | TTFB ms median (P95) | first playlist ms median (P95) | first segment ms median (P95) | stalls | slowest client × real time | errors |\n",
    );
    out.push_str("|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n");
    let mut scenarios: Vec<Scenario> = rows.iter().map(|r| r.scenario).collect();
    scenarios.dedup();
    for scenario in scenarios {
        let of = |server| rows.iter().find(|r| r.scenario == scenario && r.server == server);
        for row in [of(Server::Xg2g), of(Server::Ffmpeg)].into_iter().flatten() {
            let latency = |median: Option<Spread>, p95: Option<Spread>| match (median, p95) {
                (Some(m), Some(p)) => format!("{} ({:.0})", cell(Some(m), 0), p.median),
                _ => "–".into(),
            };
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                scenario.label(),
                row.server,
                row.clients,
                row.sessions,
                cell(row.cpu_percent, 1),
                cell(row.cpu_per_stream_minute, 3),
                cell(row.memory_per_session_mib, 1),
                latency(row.ttfb_median_ms, row.ttfb_p95_ms),
                latency(row.first_playlist_median_ms, row.first_playlist_p95_ms),
                latency(row.first_segment_median_ms, row.first_segment_p95_ms),
                row.stalls,
                cell(row.slowest_client_speed, 2),
                row.errors,
            );
        }
        if let (Some(x), Some(f)) = (of(Server::Xg2g), of(Server::Ffmpeg)) {
            let _ = writeln!(
                out,
                "| {} | xg2g / ffmpeg | | | {} | {} | {} | {} | {} | {} | | | |",
                scenario.label(),
                ratio_cell(ratio(x.cpu_percent, f.cpu_percent)),
                ratio_cell(ratio(x.cpu_per_stream_minute, f.cpu_per_stream_minute)),
                ratio_cell(ratio(x.memory_per_session_mib, f.memory_per_session_mib)),
                ratio_cell(ratio(x.ttfb_median_ms, f.ttfb_median_ms)),
                ratio_cell(ratio(x.first_playlist_median_ms, f.first_playlist_median_ms)),
                ratio_cell(ratio(x.first_segment_median_ms, f.first_segment_median_ms)),
            );
        }
    }
    out
}

/// The line above the table: what the demo receiver sent, and how long each run measured.
pub(crate) fn header(demo_bitrate: &str, repeats: usize, window_s: f64, warmup_s: f64) -> String {
    let repeats = match repeats {
        1 => "1 repeat".to_owned(),
        n => format!("{n} repeats"),
    };
    format!("Demo bitrate {demo_bitrate}; {repeats} of a {window_s:.0} s window after {warmup_s:.0} s of warm-up.")
}

/// xg2g's transcode P95s after the table, a line per scenario that transcoded:
/// `- h264 ×2: gpu/avenc_aac 40 ms; gpu/x264enc 180 (170–190) ms`. Empty when none did.
pub(crate) fn latency_text(rows: &[Row]) -> String {
    let mut out = String::new();
    for row in rows
        .iter()
        .filter(|r| r.server == Server::Xg2g && !r.transcode_p95_ms.is_empty())
    {
        let stages: Vec<String> = row
            .transcode_p95_ms
            .iter()
            .map(|s| format!("{}/{} {} ms", s.mode, s.encoder, cell(Some(s.p95_ms), 0)))
            .collect();
        let _ = writeln!(out, "- {}: {}", row.scenario.label(), stages.join("; "));
    }
    if !out.is_empty() {
        out.insert_str(
            0,
            "P95 transcode latency, xg2g (each run's window; median over repeats, range in brackets):\n",
        );
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// An `aac-channels` run of 4 clients over 30 s, 10 MiB idle.
    pub(crate) fn run(server: Server, repeat: usize, cpu_s: f64, loaded_kib: u64, ttfb: &[u64]) -> RunResult {
        RunResult {
            scenario: Scenario::AacChannels,
            server,
            repeat,
            clients: 4,
            sessions: 4,
            window_s: 30.0,
            cpu_s,
            memory_kind: MemoryKind::Pss,
            idle_kib: 10 * 1024,
            loaded_kib,
            ttfb_ms: Quantiles::of(&ttfb.iter().map(|&ms| Duration::from_millis(ms)).collect::<Vec<_>>()),
            first_playlist_ms: None,
            first_segment_ms: None,
            stalls: 0,
            per_client: vec![],
            errors: 0,
            error_samples: vec![],
            min_speed: Some(1.0),
            transcode_p95: None,
        }
    }

    fn stage(mode: &str, encoder: &str, p95_ms: f64) -> TranscodeP95 {
        TranscodeP95 {
            mode: mode.into(),
            encoder: encoder.into(),
            p95_ms,
            samples: 100,
        }
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<f64> = (1..=20).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), Some(10.0));
        assert_eq!(percentile(&v, 95.0), Some(19.0));
        assert_eq!(percentile(&[7.0], 95.0), Some(7.0));
        assert_eq!(percentile(&[], 50.0), None);
    }

    #[test]
    fn slope_fits_a_line() {
        let points: Vec<(f64, f64)> = (0..10).map(|x| (f64::from(x), 3.0 * f64::from(x) + 1.0)).collect();
        assert!((slope(&points).expect("slope") - 3.0).abs() < 1e-9);
        assert_eq!(slope(&[(1.0, 1.0)]), None);
        assert_eq!(slope(&[(1.0, 1.0), (1.0, 2.0)]), None);
    }

    #[test]
    fn rows_take_the_median_over_repeats_and_ratios_compare_medians() {
        let results = vec![
            run(Server::Xg2g, 0, 3.0, 14 * 1024, &[200, 210, 220, 900]),
            run(Server::Xg2g, 1, 6.0, 18 * 1024, &[200, 250, 260, 300]),
            run(Server::Xg2g, 2, 3.6, 14 * 1024, &[100, 200, 300, 400]),
            run(Server::Ffmpeg, 0, 6.0, 90 * 1024, &[1500, 1600, 1700, 1800]),
            run(Server::Ffmpeg, 1, 6.0, 90 * 1024, &[1500, 1600, 1700, 1800]),
        ];
        let rows = rows(&results);
        assert_eq!(rows.len(), 2);
        let x = &rows[0];
        assert_eq!((x.server, x.runs), (Server::Xg2g, 3));
        // 3.6 CPU s over 30 s and 4 clients: 1.8 s per stream-minute.
        let cpu = x.cpu_per_stream_minute.expect("cpu");
        assert!((cpu.median - 1.8).abs() < 1e-9 && (cpu.min - 1.5).abs() < 1e-9 && (cpu.max - 3.0).abs() < 1e-9);
        let f = &rows[1];
        assert!((ratio(x.cpu_per_stream_minute, f.cpu_per_stream_minute).expect("ratio") - 0.6).abs() < 1e-9);
        // Memory: (14 - 10) MiB / 4 sessions = 1 MiB vs (90 - 10) / 4 = 20 MiB.
        assert!((ratio(x.memory_per_session_mib, f.memory_per_session_mib).expect("ratio") - 0.05).abs() < 1e-9);
        let table = table(&rows);
        assert!(table.contains("| aac-channels | xg2g / ffmpeg |"), "{table}");
        assert!(table.contains("**0.60×**"), "{table}");
    }

    #[test]
    fn a_run_with_a_stall_or_a_slow_client_did_not_keep_up() {
        let mut r = run(Server::Xg2g, 0, 1.0, 11 * 1024, &[100]);
        assert!(r.kept_up());
        r.min_speed = Some(0.8);
        assert!(!r.kept_up());
        r.min_speed = Some(1.0);
        r.stalls = 1;
        assert!(!r.kept_up());
    }

    #[test]
    fn the_slowest_client_column_shows_each_repeats_slowest_over_the_repeats() {
        let mut results = vec![
            run(Server::Xg2g, 0, 3.0, 14 * 1024, &[200]),
            run(Server::Xg2g, 1, 3.0, 14 * 1024, &[200]),
            run(Server::Xg2g, 2, 3.0, 14 * 1024, &[200]),
            run(Server::Ffmpeg, 0, 6.0, 90 * 1024, &[1500]),
        ];
        for (r, speed) in results.iter_mut().zip([0.9, 1.0, 0.98, 0.995]) {
            r.min_speed = Some(speed);
        }
        let rows = rows(&results);
        assert_eq!(
            rows[0].slowest_client_speed.map(|s| s.min),
            Some(0.9),
            "the JSON keeps the worst repeat"
        );
        let table = table(&rows);
        assert!(
            table.contains("| stalls | slowest client × real time | errors |"),
            "{table}"
        );
        assert!(table.contains("| 0 | 0.98 (0.90–1.00) | 0 |"), "{table}");
        assert!(table.contains("| 0 | 0.99 | 0 |"), "one repeat, no range: {table}");
        // Every line has the header's number of cells.
        let cells = |line: &str| line.matches('|').count();
        assert!(table.lines().all(|l| cells(l) == 14), "{table}");
    }

    #[test]
    fn transcode_p95s_aggregate_by_stage_and_print_per_scenario() {
        let mut results = vec![
            run(Server::Xg2g, 0, 3.0, 14 * 1024, &[200]),
            run(Server::Xg2g, 1, 3.0, 14 * 1024, &[200]),
            run(Server::Ffmpeg, 0, 6.0, 90 * 1024, &[1500]),
        ];
        results[0].transcode_p95 = Some(vec![
            stage("gpu", "x264enc", 170.0),
            stage("audio_proxy", "avenc_aac", 31.0),
        ]);
        results[1].transcode_p95 = Some(vec![stage("gpu", "x264enc", 190.0)]);
        let rows = rows(&results);
        let x = &rows[0];
        assert_eq!(x.transcode_p95_ms.len(), 2);
        assert_eq!(
            (x.transcode_p95_ms[0].mode.as_str(), x.transcode_p95_ms[0].p95_ms.median),
            ("audio_proxy", 31.0)
        );
        assert_eq!(x.transcode_p95_ms[1].p95_ms.median, 180.0);
        assert!(rows[1].transcode_p95_ms.is_empty());
        let text = latency_text(&rows);
        assert_eq!(
            text,
            "P95 transcode latency, xg2g (each run's window; median over repeats, range in brackets):\n\
             - aac-channels: audio_proxy/avenc_aac 31 ms; gpu/x264enc 180 (170–190) ms\n"
        );
        assert_eq!(latency_text(&rows[1..]), "", "nothing to say without a transcode");
    }

    #[test]
    fn the_header_names_the_demo_bitrate() {
        assert_eq!(
            header("broadcast", 3, 20.0, 5.0),
            "Demo bitrate broadcast; 3 repeats of a 20 s window after 5 s of warm-up."
        );
        assert!(header("light", 1, 5.0, 5.0).starts_with("Demo bitrate light; 1 repeat of"));
    }
}
