//! `xg2g-bench`: load scenarios against the embedded demo receiver, xg2g beside one FFmpeg
//! process per client, with CPU, memory, time to first byte, stalls, the slowest client's
//! speed and errors for both, and xg2g's transcode latency from its `/metrics`.
//!
//! The bench process runs the demo receiver (from the `xg2g` library) and every client; the two
//! servers under test run as child processes ([`servers`]): the `xg2g` binary itself and this
//! binary's `peer` subcommand, the FFmpeg proxy ([`peer`]). Both are measured from `/proc`
//! ([`procfs`]). It is a crate of its own so that the product binary never spawns FFmpeg. Runs
//! of the two servers alternate, so drift of the machine (heat, other load) spreads over both,
//! and every scenario repeats to give a spread. Linux only: it reads `/proc`.

pub(crate) mod client;
mod goals;
mod histogram;
pub mod peer;
mod procfs;
mod report;
mod scenario;
mod servers;

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use clap::ValueEnum as _;
use tokio::time::Instant;
use xg2g::demo::DemoBitrate;

use client::{ClientOutcome, ClientSpec};
use report::{Quantiles, RunResult};
use scenario::{Channels, Endpoints, Scenario, Server};
use servers::ServerProcess;

/// The nominal HLS segment and the stall threshold of a TS client.
const SEGMENT: Duration = Duration::from_secs(2);
/// Clients start this far apart, like viewers arriving, not one SYN flood.
const STAGGER: Duration = Duration::from_millis(20);
/// Clients stay connected this long after the measured window, so the window's end sample is
/// taken under load even when a saturated machine is slow to run the sampler.
const LINGER: Duration = Duration::from_secs(3);

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("the demo receiver did not start: {0}")]
    Demo(#[from] xg2g::demo::DemoError),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the {server} server is not usable: {why}\n{log}")]
    NotReady { server: Server, why: String, log: String },
    #[error("unknown scenario {0:?}; known: {known}", known = Scenario::NAMES.join(", "))]
    UnknownScenario(String),
    #[error("the xg2g binary {} does not exist: build it in xg2g-bench's profile (cargo build [--release] --bin xg2g) or pass --xg2g PATH", .0.display())]
    NoXg2g(PathBuf),
    #[error("ffmpeg is not installed (scripts/deps.sh installs it); run with --xg2g-only to skip the comparison")]
    NoFfmpeg,
    #[error("the soak saw {stalls} stalls and {errors} errors (see the report)")]
    SoakFailed { stalls: u32, errors: usize },
}

/// What to run; the command line fills it.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// The measured window of each run (after the warm-up).
    pub duration: Duration,
    /// From the first client's start to the start of the measured window.
    pub warmup: Duration,
    pub repeats: usize,
    /// Scenario families; empty = all.
    pub scenarios: Vec<String>,
    /// Clients of `aac-shared` on its one channel.
    pub shared_clients: usize,
    pub mixed_clients: usize,
    /// The h264 ramp stops here (at most two sessions a video channel: TS and HLS).
    pub max_h264: usize,
    /// Run the FFmpeg side too.
    pub ffmpeg: bool,
    /// Soak instead: the mixed load on xg2g alone for `duration`.
    pub soak: bool,
    pub json: Option<PathBuf>,
    /// Keep the servers' logs (the work directory) instead of removing them.
    pub keep_logs: bool,
    /// The xg2g binary to start as the server under test (`xg2g serve`).
    pub xg2g_exe: PathBuf,
    /// The binary whose `peer` subcommand is the FFmpeg proxy (normally this one).
    pub peer_exe: PathBuf,
    /// The demo receiver's media: `Broadcast` for figures that compare with a real receiver.
    pub demo_bitrate: DemoBitrate,
}

/// `light` or `broadcast`, as `--demo-bitrate` spells it.
fn bitrate_name(bitrate: DemoBitrate) -> String {
    bitrate
        .to_possible_value()
        .map_or_else(|| format!("{bitrate:?}"), |v| v.get_name().to_owned())
}

/// Everything the bench writes to JSON.
#[derive(Debug, serde::Serialize)]
struct Output {
    machine: Machine,
    demo_bitrate: DemoBitrate,
    duration_s: f64,
    warmup_s: f64,
    repeats: usize,
    results: Vec<RunResult>,
    rows: Vec<report::Row>,
    goals: Vec<goals::Goal>,
    /// Figures printed beside the goals, without a goal of their own.
    reported: Vec<goals::Reported>,
    soak: Option<Soak>,
}

#[derive(Debug, serde::Serialize)]
struct Machine {
    cpus: usize,
    model: String,
    kernel: String,
    ffmpeg: Option<String>,
}

fn machine() -> Machine {
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
struct Soak {
    clients: usize,
    duration_s: f64,
    stalls: u32,
    errors: usize,
    error_samples: Vec<String>,
    /// Seconds from the start, RSS KiB of the xg2g process.
    rss_samples: Vec<(f64, u64)>,
    /// Samples before this were warm-up, left out of the slope.
    warmup_s: f64,
    rss_slope_kib_per_min: Option<f64>,
    /// The slope over the second half of the run alone: allocator arenas and caches settle
    /// for minutes, so a slope that falls to zero here is growth that stopped, not a leak.
    rss_slope_last_half_kib_per_min: Option<f64>,
    ttfb_ms: Option<Quantiles>,
    first_playlist_ms: Option<Quantiles>,
    first_segment_ms: Option<Quantiles>,
    /// Every client's figures, in plan order.
    per_client: Vec<report::ClientFigures>,
}

/// Runs the bench: prints the table (or the soak's verdict) and writes JSON.
pub async fn run(options: BenchOptions) -> Result<(), BenchError> {
    let families: Vec<String> = if options.scenarios.is_empty() {
        Scenario::NAMES.iter().map(|s| (*s).to_owned()).collect()
    } else {
        options.scenarios.clone()
    };
    if let Some(bad) = families.iter().find(|f| !Scenario::NAMES.contains(&f.as_str())) {
        return Err(BenchError::UnknownScenario(bad.clone()));
    }
    if !options.xg2g_exe.is_file() {
        return Err(BenchError::NoXg2g(options.xg2g_exe.clone()));
    }
    let ffmpeg = options.ffmpeg && !options.soak;
    if ffmpeg && servers::ffmpeg_version().is_none() {
        return Err(BenchError::NoFfmpeg);
    }
    let work = std::env::temp_dir().join(format!("xg2g-bench-{}", std::process::id()));
    std::fs::create_dir_all(&work).map_err(|source| BenchError::Io {
        what: format!("creating {}", work.display()),
        source,
    })?;
    let result = run_in(&options, &families, ffmpeg, &work).await;
    if options.keep_logs {
        eprintln!("bench: the servers' logs are in {}", work.display());
    } else {
        let _ = std::fs::remove_dir_all(&work);
    }
    result
}

async fn run_in(
    options: &BenchOptions,
    families: &[String],
    ffmpeg: bool,
    work: &std::path::Path,
) -> Result<(), BenchError> {
    let demo = xg2g::demo::DemoReceiver::start(xg2g::demo::DemoOptions {
        bitrate: options.demo_bitrate,
        ..Default::default()
    })
    .await?;
    let http = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .build()
        .map_err(|e| BenchError::Io {
            what: "building the HTTP client".into(),
            source: std::io::Error::other(e),
        })?;
    let target = servers::Xg2gTarget {
        api_url: demo.api_url(),
        stream_port: demo.stream_addr().port(),
        relay_port: demo.relay_addr().port(),
    };
    let mut xg2g = servers::start_xg2g(&options.xg2g_exe, &target, work)?;
    xg2g.ready(&http).await?;
    let mut peer = if ffmpeg {
        let mut p = servers::start_peer(&options.peer_exe, work)?;
        p.ready(&http).await?;
        Some(p)
    } else {
        None
    };
    let endpoints = Endpoints {
        xg2g: xg2g.base.clone(),
        ffmpeg: peer.as_ref().map(|p| p.base.clone()).unwrap_or_default(),
        stream: format!("http://{}", demo.stream_addr()),
        relay: format!("http://{}", demo.relay_addr()),
    };
    let channels = Channels::new(&xg2g::demo::lineup());
    let bench = Bench {
        http: &http,
        endpoints: &endpoints,
        channels: &channels,
        options,
    };
    // Load the plugins and fill the page cache once, outside any measurement.
    eprintln!("bench: warming up the servers");
    bench.warm_up(&mut xg2g).await?;
    if let Some(peer) = peer.as_mut() {
        bench.warm_up(peer).await?;
    }

    let outcome = if options.soak {
        bench.soak(&mut xg2g).await
    } else {
        bench.compare(&mut xg2g, peer.as_mut(), families).await
    };
    xg2g.stop().await;
    if let Some(peer) = peer {
        peer.stop().await;
    }
    demo.stop().await;
    let output = outcome?;
    if let Some(path) = &options.json {
        let json = serde_json::to_vec_pretty(&output).map_err(|e| BenchError::Io {
            what: "encoding the report".into(),
            source: std::io::Error::other(e),
        })?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            let _ = std::fs::create_dir_all(dir);
        }
        std::fs::write(path, json).map_err(|source| BenchError::Io {
            what: format!("writing {}", path.display()),
            source,
        })?;
        eprintln!("bench: wrote {}", path.display());
    }
    if let Some(soak) = &output.soak
        && (soak.stalls > 0 || soak.errors > 0)
    {
        return Err(BenchError::SoakFailed {
            stalls: soak.stalls,
            errors: soak.errors,
        });
    }
    Ok(())
}

struct Bench<'a> {
    http: &'a reqwest::Client,
    endpoints: &'a Endpoints,
    channels: &'a Channels,
    options: &'a BenchOptions,
}

impl Bench<'_> {
    async fn warm_up(&self, server: &mut ServerProcess) -> Result<(), BenchError> {
        let mut plan = scenario::plan(Scenario::AacOne, self.channels);
        plan.extend(scenario::plan(Scenario::Mixed { clients: 4 }, self.channels));
        let specs = self.specs(&plan, server.server, 1000);
        let start = Instant::now();
        let end = start + Duration::from_secs(6);
        let _ = self.clients(&specs, start, end).await;
        server.idle(self.http).await
    }

    /// The clients of a plan as `server` serves them; `first` numbers the peer's HLS clients.
    fn specs(&self, plan: &[scenario::Planned], server: Server, first: usize) -> Vec<ClientSpec> {
        plan.iter()
            .enumerate()
            .map(|(i, p)| ClientSpec {
                kind: p.kind,
                url: scenario::url(p, server, self.endpoints, first + i),
            })
            .collect()
    }

    /// Starts every client, staggered, and collects their outcomes.
    async fn clients(&self, specs: &[ClientSpec], window_start: Instant, end: Instant) -> Vec<ClientOutcome> {
        let start = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        let mut slots = std::collections::HashMap::new();
        for (i, spec) in specs.iter().enumerate() {
            // Each client is its own player with its own connections, as viewers are: no
            // connection pool shared across clients or carried over from an earlier run.
            let http = reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(5))
                .build()
                .unwrap_or_else(|_| self.http.clone());
            let spec = spec.clone();
            let at = start + STAGGER * i as u32;
            let task = tasks.spawn(async move {
                tokio::time::sleep_until(at).await;
                client::run(&http, &spec, window_start, end, SEGMENT).await
            });
            slots.insert(task.id(), i);
        }
        // In start order, whatever order they finish in: the report pairs them with the plan.
        let mut out = vec![ClientOutcome::default(); specs.len()];
        while let Some(joined) = tasks.join_next_with_id().await {
            let (id, outcome) = match joined {
                Ok((id, outcome)) => (id, outcome),
                Err(e) => (
                    e.id(),
                    ClientOutcome {
                        errors: vec![format!("client task failed: {e}")],
                        ..Default::default()
                    },
                ),
            };
            if let Some(&i) = slots.get(&id) {
                out[i] = outcome;
            }
        }
        out
    }

    /// xg2g's `/metrics`; `None` for the FFmpeg proxy, or when the scrape fails (the run then
    /// lacks its latency figures, nothing else).
    async fn scrape(&self, server: &ServerProcess) -> Option<String> {
        match server.server {
            Server::Xg2g => match server.metrics(self.http).await {
                Ok(text) => Some(text),
                Err(e) => {
                    eprintln!("bench: no transcode latency for this run: {e}");
                    None
                }
            },
            Server::Ffmpeg => None,
        }
    }

    /// One run of one scenario against one server.
    async fn run_once(
        &self,
        scenario: Scenario,
        server: &mut ServerProcess,
        repeat: usize,
    ) -> Result<RunResult, BenchError> {
        server.idle(self.http).await?;
        let plan = scenario::plan(scenario, self.channels);
        let specs = self.specs(&plan, server.server, 0);
        let idle = procfs::tree_memory(server.pid).map_err(|source| BenchError::Io {
            what: format!("reading the {} server's memory", server.server),
            source,
        })?;
        let start = Instant::now();
        let window_start = start + self.options.warmup;
        let window_end = window_start + self.options.duration;
        let pid = server.pid;
        // Memory and sessions are read three times in the window and the largest kept: on a
        // saturated machine the sampler itself may run late, when clients are already leaving.
        // xg2g's `/metrics` is read at the window's start and end, for the transcode latency
        // of the window alone.
        let sampler = async {
            tokio::time::sleep_until(window_start).await;
            let cpu0 = procfs::tree_cpu_seconds(pid);
            let t0 = Instant::now();
            let metrics0 = self.scrape(server).await;
            let mut snapshots = Vec::new();
            for at in [2, 3] {
                tokio::time::sleep_until(window_start + self.options.duration * at / 4).await;
                snapshots.push((server.sessions(self.http).await, procfs::tree_memory(pid)));
            }
            tokio::time::sleep_until(window_end).await;
            let cpu1 = procfs::tree_cpu_seconds(pid);
            let window = t0.elapsed();
            snapshots.push((server.sessions(self.http).await, procfs::tree_memory(pid)));
            let latency = match (metrics0, self.scrape(server).await) {
                (Some(start), Some(end)) => Some(histogram::transcode_p95(&start, &end)),
                _ => None,
            };
            (cpu0, cpu1, window, snapshots, latency)
        };
        let (outcomes, (cpu0, cpu1, window, snapshots, latency)) =
            tokio::join!(self.clients(&specs, window_start, window_end + LINGER), sampler);
        let io = |what: &str, source| BenchError::Io {
            what: format!("{what} of the {} server", server.server),
            source,
        };
        let cpu = cpu1.map_err(|e| io("reading the CPU time", e))? - cpu0.map_err(|e| io("reading the CPU time", e))?;
        let mut memory: Option<procfs::Memory> = None;
        let mut sessions = 0;
        for (counted, read) in snapshots {
            let read = read.map_err(|e| io("reading the memory", e))?;
            // The peer's sessions are its ffmpeg children: counted in the memory snapshot, so
            // that the two figures describe the same moment.
            let counted = match server.server {
                Server::Ffmpeg => read.processes - 1,
                Server::Xg2g => counted?,
            };
            sessions = sessions.max(counted);
            if memory.is_none_or(|m| read.kib > m.kib) {
                memory = Some(read);
            }
        }
        let memory = memory.unwrap_or(idle);
        let labels: Vec<String> = plan.iter().map(scenario::Planned::label).collect();
        let result = summarise(
            scenario,
            server.server,
            repeat,
            &labels,
            &outcomes,
            sessions,
            window.as_secs_f64(),
            cpu,
            idle,
            memory,
            latency,
        );
        eprintln!(
            "bench: {:<16} {:<6} repeat {} — {:.1} % CPU, {} sessions, {} stalls, {} errors",
            scenario.label(),
            server.server,
            repeat + 1,
            result.cpu_percent(),
            result.sessions,
            result.stalls,
            result.errors
        );
        let stalls = result.per_client.iter().filter_map(report::ClientFigures::stall_line);
        for line in stalls.chain(result.error_samples.iter().cloned()) {
            eprintln!("bench:     {line}");
        }
        Ok(result)
    }

    /// Every chosen scenario on both servers, alternating, `repeats` times.
    async fn compare(
        &self,
        xg2g: &mut ServerProcess,
        mut peer: Option<&mut ServerProcess>,
        families: &[String],
    ) -> Result<Output, BenchError> {
        let options = self.options;
        let mut results = Vec::new();
        let chosen = |s: &Scenario| families.iter().any(|f| f == s.family());
        let fixed: Vec<Scenario> = [
            Scenario::AacOne,
            Scenario::AacChannels,
            Scenario::AacShared {
                clients: options.shared_clients,
            },
            Scenario::Hls,
            Scenario::Mixed {
                clients: options.mixed_clients,
            },
        ]
        .into_iter()
        .filter(chosen)
        .collect();
        let ramp = chosen(&Scenario::H264 { streams: 1 });
        for repeat in 0..options.repeats {
            for (i, &scenario) in fixed.iter().enumerate() {
                // Alternate which server goes first, by repeat and by scenario.
                let xg2g_first = (repeat + i) % 2 == 0;
                for first in [true, false] {
                    if first == xg2g_first {
                        results.push(self.run_once(scenario, xg2g, repeat).await?);
                    } else if let Some(peer) = peer.as_deref_mut() {
                        results.push(self.run_once(scenario, peer, repeat).await?);
                    }
                }
            }
            if ramp {
                // As many transcodes as each server holds in real time: one more channel at a
                // time, until a run falls behind.
                let (mut xg2g_on, mut peer_on) = (true, peer.is_some());
                for streams in 1..=options.max_h264 {
                    let scenario = Scenario::H264 { streams };
                    let xg2g_first = (repeat + streams) % 2 == 0;
                    for first in [true, false] {
                        if first == xg2g_first {
                            if xg2g_on {
                                let r = self.run_once(scenario, xg2g, repeat).await?;
                                xg2g_on = r.kept_up();
                                results.push(r);
                            }
                        } else if let Some(peer) = peer.as_deref_mut()
                            && peer_on
                        {
                            let r = self.run_once(scenario, peer, repeat).await?;
                            peer_on = r.kept_up();
                            results.push(r);
                        }
                    }
                    if !xg2g_on && !peer_on {
                        break;
                    }
                }
            }
        }
        let rows = report::rows(&results);
        let goals = goals::goals(&rows);
        let reported = goals::reported(&rows);
        println!(
            "{}\n",
            report::header(
                &bitrate_name(options.demo_bitrate),
                options.repeats,
                options.duration.as_secs_f64(),
                options.warmup.as_secs_f64()
            )
        );
        println!("{}", report::table(&rows));
        let mut held_lines = String::new();
        for server in [Server::Xg2g, Server::Ffmpeg] {
            if let Some(held) = goals::held(&rows, server) {
                let top = if held.at_top {
                    " (the ramp's top, --max-h264)"
                } else {
                    ""
                };
                let _ = writeln!(
                    held_lines,
                    "h264 transcodes held in real time in every repeat, {server}: {}{top}",
                    held.streams
                );
            }
        }
        // Each block of lines after the table, a blank line after each.
        for block in [report::latency_text(&rows), held_lines] {
            if !block.is_empty() {
                println!("{block}");
            }
        }
        print!("{}", goals::text(&goals, &reported));
        Ok(Output {
            machine: machine(),
            demo_bitrate: options.demo_bitrate,
            duration_s: options.duration.as_secs_f64(),
            warmup_s: options.warmup.as_secs_f64(),
            repeats: options.repeats,
            results,
            rows,
            goals,
            reported,
            soak: None,
        })
    }

    /// The mixed load on xg2g alone for the whole duration, RSS sampled every 5 s.
    async fn soak(&self, xg2g: &mut ServerProcess) -> Result<Output, BenchError> {
        let options = self.options;
        let clients = options.mixed_clients;
        let plan = scenario::plan(Scenario::Mixed { clients }, self.channels);
        let specs = self.specs(&plan, Server::Xg2g, 0);
        let start = Instant::now();
        let window_start = start + options.warmup;
        let end = window_start + options.duration;
        let pid = xg2g.pid;
        let every = Duration::from_secs(5)
            .min(options.duration / 4)
            .max(Duration::from_millis(500));
        let sampler = async {
            let mut samples = Vec::new();
            let mut tick = tokio::time::interval(every);
            while Instant::now() < end {
                tick.tick().await;
                if let Some(kib) = procfs::rss_kib(pid) {
                    samples.push((start.elapsed().as_secs_f64(), kib));
                }
            }
            samples
        };
        eprintln!(
            "bench: soak, {clients} mixed clients on xg2g for {}, demo bitrate {}",
            humantime::format_duration(options.duration),
            bitrate_name(options.demo_bitrate)
        );
        let (outcomes, rss_samples) = tokio::join!(self.clients(&specs, window_start, end), sampler);
        // Warm-up for the slope: the client ramp and the first fifth of the run, when caches
        // and allocator arenas reach their working size.
        let warmup_s = (options.warmup + options.duration / 5).as_secs_f64();
        // KiB per minute over the samples from `from` seconds on.
        let slope_from = |from: f64| {
            let points: Vec<(f64, f64)> = rss_samples
                .iter()
                .filter(|(t, _)| *t >= from)
                .map(|&(t, kib)| (t / 60.0, kib as f64))
                .collect();
            report::slope(&points)
        };
        let after_warmup = slope_from(warmup_s);
        let last_half = slope_from((options.warmup + options.duration / 2).as_secs_f64());
        let ttfb: Vec<Duration> = outcomes.iter().filter_map(|o| o.ttfb).collect();
        let playlists: Vec<Duration> = outcomes.iter().filter_map(|o| o.first_playlist).collect();
        let segments: Vec<Duration> = outcomes.iter().filter_map(|o| o.first_segment).collect();
        let soak = Soak {
            rss_slope_last_half_kib_per_min: last_half,
            clients,
            duration_s: options.duration.as_secs_f64(),
            stalls: outcomes.iter().map(|o| o.stalls).sum(),
            errors: outcomes.iter().map(|o| o.errors.len()).sum(),
            error_samples: error_samples(&outcomes),
            rss_slope_kib_per_min: after_warmup,
            rss_samples,
            warmup_s,
            ttfb_ms: Quantiles::of(&ttfb),
            first_playlist_ms: Quantiles::of(&playlists),
            first_segment_ms: Quantiles::of(&segments),
            per_client: plan
                .iter()
                .zip(&outcomes)
                .map(|(planned, o)| client_figures(&planned.label(), o))
                .collect(),
        };
        let mib = |kib: u64| kib as f64 / 1024.0;
        let first_steady = soak.rss_samples.iter().find(|(t, _)| *t >= warmup_s).map(|s| s.1);
        println!(
            "soak: {} clients for {:.0} s: {} stalls, {} errors; RSS {:.1} MiB after warm-up, {:.1} MiB at the end, slope {} KiB/min after warm-up, {} KiB/min over the second half",
            soak.clients,
            soak.duration_s,
            soak.stalls,
            soak.errors,
            first_steady.map_or(0.0, mib),
            soak.rss_samples.last().map_or(0.0, |s| mib(s.1)),
            soak.rss_slope_kib_per_min
                .map_or_else(|| "–".into(), |s| format!("{s:.1}")),
            soak.rss_slope_last_half_kib_per_min
                .map_or_else(|| "–".into(), |s| format!("{s:.1}")),
        );
        for line in soak.per_client.iter().filter_map(report::ClientFigures::stall_line) {
            println!("  stall: {line}");
        }
        for sample in &soak.error_samples {
            println!("  error: {sample}");
        }
        Ok(Output {
            machine: machine(),
            demo_bitrate: options.demo_bitrate,
            duration_s: options.duration.as_secs_f64(),
            warmup_s: options.warmup.as_secs_f64(),
            repeats: 1,
            results: vec![],
            rows: vec![],
            goals: vec![],
            reported: vec![],
            soak: Some(soak),
        })
    }
}

/// Up to five distinct error texts.
fn error_samples(outcomes: &[ClientOutcome]) -> Vec<String> {
    let mut samples: Vec<String> = Vec::new();
    for e in outcomes.iter().flat_map(|o| &o.errors) {
        if samples.len() < 5 && !samples.contains(e) {
            samples.push(e.clone());
        }
    }
    samples
}

#[allow(clippy::too_many_arguments, reason = "one run's raw figures, gathered in one place")]
fn summarise(
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
fn client_figures(label: &str, o: &ClientOutcome) -> report::ClientFigures {
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

/// `xg2g-bench peer`: the FFmpeg proxy as its own process, until SIGTERM or SIGINT.
pub async fn run_peer(listen: std::net::SocketAddr, work_dir: PathBuf) -> std::io::Result<()> {
    let listener = std::net::TcpListener::bind(listen)?;
    let shutdown = tokio_util::sync::CancellationToken::new();
    let mut signals = xg2g::app::Signals::install()?;
    let stop = shutdown.clone();
    tokio::spawn(async move {
        signals.wait().await;
        stop.cancel();
    });
    peer::serve(listener, work_dir, shutdown).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(xg2g_exe: PathBuf) -> BenchOptions {
        BenchOptions {
            duration: Duration::from_secs(1),
            warmup: Duration::from_secs(1),
            repeats: 1,
            scenarios: vec!["aac-one".into()],
            shared_clients: 1,
            mixed_clients: 1,
            max_h264: 1,
            ffmpeg: false,
            soak: false,
            json: None,
            keep_logs: false,
            xg2g_exe,
            peer_exe: PathBuf::from("/nonexistent/xg2g-bench"),
            demo_bitrate: DemoBitrate::Light,
        }
    }

    #[tokio::test]
    async fn a_missing_xg2g_binary_is_named_before_anything_starts() {
        let missing = PathBuf::from("/nonexistent/target/release/xg2g");
        let error = run(options(missing)).await.expect_err("no server to start");
        assert!(matches!(&error, BenchError::NoXg2g(path) if path.ends_with("release/xg2g")));
        let text = error.to_string();
        assert!(text.contains("/nonexistent/target/release/xg2g"), "{text}");
        assert!(text.contains("--xg2g PATH"), "{text}");
    }

    #[tokio::test]
    async fn unknown_scenarios_are_refused_with_the_known_ones() {
        let mut options = options(PathBuf::from("/nonexistent/xg2g"));
        options.scenarios = vec!["aac-one".into(), "nope".into()];
        let text = run(options).await.expect_err("unknown scenario").to_string();
        assert!(text.contains("\"nope\"") && text.contains("aac-shared"), "{text}");
    }
}
