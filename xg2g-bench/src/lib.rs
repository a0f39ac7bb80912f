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

mod bench;
pub(crate) mod client;
mod goals;
mod histogram;
pub mod ladder;
mod output;
pub mod peer;
mod pipelines;
mod procfs;
mod report;
mod scenario;
mod servers;

use std::path::PathBuf;
use std::time::Duration;

use xg2g::demo::DemoBitrate;

use bench::Bench;
use scenario::{Channels, Endpoints, Scenario, Server};

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
    #[error("the ladder scenario needs {}: xg2g's templates, with its abr profile (--pipelines DIR names the folder)", .0.display())]
    NoTemplate(PathBuf),
    #[error("the ladder scenario: {0}")]
    Ladder(#[from] ladder::LadderError),
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
    /// xg2g's template folder, copied for the `ladder` scenario with the rung profiles added.
    pub pipelines: PathBuf,
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
    // The ladder scenario runs xg2g on the bench's templates (the shipped ones and the rung
    // profiles of its baseline); the others on xg2g's own.
    let pipelines = if families.iter().any(|f| f == "ladder") && !options.soak {
        Some(pipelines::prepare(&options.pipelines, work)?)
    } else {
        None
    };
    let target = servers::Xg2gTarget {
        api_url: demo.api_url(),
        stream_port: demo.stream_addr().port(),
        relay_port: demo.relay_addr().port(),
        pipelines_dir: pipelines.as_ref().map(|p| p.dir.clone()),
    };
    let ladder = pipelines.map(|p| p.ladder);
    let mut xg2g = servers::start_xg2g(&options.xg2g_exe, &target, work)?;
    xg2g.ready(&http).await?;
    let mut peer = if ffmpeg {
        let mut p = servers::start_peer(&options.peer_exe, work, ladder.unwrap_or_default())?;
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
        ladder,
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

/// `xg2g-bench peer`: the FFmpeg proxy as its own process, until SIGTERM or SIGINT.
pub async fn run_peer(
    listen: std::net::SocketAddr,
    work_dir: PathBuf,
    ladder: ladder::LadderSpec,
) -> std::io::Result<()> {
    let listener = std::net::TcpListener::bind(listen)?;
    let shutdown = tokio_util::sync::CancellationToken::new();
    let mut signals = xg2g::app::Signals::install()?;
    let stop = shutdown.clone();
    tokio::spawn(async move {
        signals.wait().await;
        stop.cancel();
    });
    peer::serve(listener, work_dir, ladder, shutdown).await
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
            pipelines: PathBuf::from("pipelines"),
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
