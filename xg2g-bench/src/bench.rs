//! One bench against started servers: every scenario's clients with the samplers beside them,
//! the comparison of the two servers, and the soak.

use std::fmt::Write as _;
use std::time::Duration;

use clap::ValueEnum as _;
use tokio::time::Instant;
use xg2g::demo::DemoBitrate;

use crate::client::{self, ClientOutcome, ClientSpec};
use crate::ladder::LadderSpec;
use crate::output::{Output, Soak, client_figures, error_samples, machine, summarise};
use crate::report::{self, Quantiles, RunResult};
use crate::scenario::{self, Channels, Endpoints, LadderChannel, LadderSetup, Scenario, Server, TopRung};
use crate::servers::ServerProcess;
use crate::{BenchError, BenchOptions, goals, histogram, procfs};

/// The nominal HLS segment and the stall threshold of a TS client.
const SEGMENT: Duration = Duration::from_secs(2);
/// Clients start this far apart, like viewers arriving, not one SYN flood.
const STAGGER: Duration = Duration::from_millis(20);
/// Clients stay connected this long after the measured window, so the window's end sample is
/// taken under load even when a saturated machine is slow to run the sampler.
const LINGER: Duration = Duration::from_secs(3);

/// `light` or `broadcast`, as `--demo-bitrate` spells it.
fn bitrate_name(bitrate: DemoBitrate) -> String {
    bitrate
        .to_possible_value()
        .map_or_else(|| format!("{bitrate:?}"), |v| v.get_name().to_owned())
}

pub(crate) struct Bench<'a> {
    pub(crate) http: &'a reqwest::Client,
    pub(crate) endpoints: &'a Endpoints,
    pub(crate) channels: &'a Channels,
    pub(crate) options: &'a BenchOptions,
    /// The `abr` ladder, read from the templates xg2g runs; `None` unless `ladder` runs.
    pub(crate) ladder: Option<LadderSpec>,
}

impl Bench<'_> {
    pub(crate) async fn warm_up(&self, server: &mut ServerProcess) -> Result<(), BenchError> {
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
                variant: p.variant,
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

    /// One ramp of one repeat: sizes 1 to `top` of `scenario`, on each server until a run
    /// falls behind there (alternating which server goes first).
    async fn ramp(
        &self,
        xg2g: &mut ServerProcess,
        mut peer: Option<&mut ServerProcess>,
        repeat: usize,
        top: usize,
        scenario: &dyn Fn(usize) -> Scenario,
        results: &mut Vec<RunResult>,
    ) -> Result<(), BenchError> {
        let (mut xg2g_on, mut peer_on) = (true, peer.is_some());
        for size in 1..=top {
            let scenario = scenario(size);
            let xg2g_first = (repeat + size).is_multiple_of(2);
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
        Ok(())
    }

    /// Every chosen scenario on both servers, alternating, `repeats` times.
    pub(crate) async fn compare(
        &self,
        xg2g: &mut ServerProcess,
        mut peer: Option<&mut ServerProcess>,
        families: &[String],
    ) -> Result<Output, BenchError> {
        let options = self.options;
        let mut results = Vec::new();
        let chosen = |s: &Scenario| families.iter().any(|f| f == s.family());
        let mut fixed: Vec<Scenario> = [
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
        // The ladder on each channel on both servers, and its rungs as separate xg2g sessions:
        // on HD the top one as `aac` (what a player of the copied top rung costs) and, for
        // reference, as `h264`; on SD as `h264` (the ladder encodes its top rung there too).
        let ladder = self.ladder.filter(|_| {
            chosen(&Scenario::Ladders {
                ladders: 1,
                copy_h264: true,
            })
        });
        if let Some(spec) = ladder {
            let abr = LadderSetup::Abr {
                copy_h264: spec.copy_h264,
            };
            let separate = |top| LadderSetup::Separate {
                top,
                lower: spec.lower_heights(),
            };
            fixed.extend(
                [
                    (LadderChannel::Hd, abr),
                    (LadderChannel::Hd, separate(TopRung::Aac)),
                    (LadderChannel::Hd, separate(TopRung::H264)),
                    (LadderChannel::Sd, abr),
                    (LadderChannel::Sd, separate(TopRung::H264)),
                ]
                .map(|(channel, setup)| Scenario::Ladder { channel, setup }),
            );
        }
        let h264_ramp = chosen(&Scenario::H264 { streams: 1 });
        for repeat in 0..options.repeats {
            for (i, &scenario) in fixed.iter().enumerate() {
                // Alternate which server goes first, by repeat and by scenario.
                let xg2g_first = (repeat + i) % 2 == 0;
                for first in [true, false] {
                    if first == xg2g_first {
                        results.push(self.run_once(scenario, xg2g, repeat).await?);
                    } else if let Some(peer) = peer.as_deref_mut()
                        && scenario.on_ffmpeg()
                    {
                        results.push(self.run_once(scenario, peer, repeat).await?);
                    }
                }
            }
            // As many transcodes (ladders) as each server holds in real time: one more at a
            // time, until a run falls behind.
            if h264_ramp {
                let sizes = |streams| Scenario::H264 { streams };
                self.ramp(
                    xg2g,
                    peer.as_deref_mut(),
                    repeat,
                    options.max_h264,
                    &sizes,
                    &mut results,
                )
                .await?;
            }
            if let Some(spec) = ladder {
                let sizes = |ladders| Scenario::Ladders {
                    ladders,
                    copy_h264: spec.copy_h264,
                };
                let top = scenario::max_ladders(self.channels);
                self.ramp(xg2g, peer.as_deref_mut(), repeat, top, &sizes, &mut results)
                    .await?;
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
        let ramps = [
            (goals::Ramp::H264, "h264 transcodes", " (the ramp's top, --max-h264)"),
            (
                goals::Ramp::Ladders,
                "ladders (abr)",
                " (the ramp's top: one a video channel)",
            ),
        ];
        for (ramp, what, at_top) in ramps {
            for server in [Server::Xg2g, Server::Ffmpeg] {
                if let Some(held) = goals::held(&rows, server, ramp) {
                    let top = if held.at_top { at_top } else { "" };
                    let _ = writeln!(
                        held_lines,
                        "{what} held in real time in every repeat, {server}: {}{top}",
                        held.streams
                    );
                }
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
    pub(crate) async fn soak(&self, xg2g: &mut ServerProcess) -> Result<Output, BenchError> {
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
