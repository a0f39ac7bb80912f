//! The `xg2g-bench` binary: load scenarios against the embedded demo receiver, the `xg2g`
//! binary beside one FFmpeg per client (README "Performance"); `xg2g-bench peer` is that FFmpeg
//! proxy, which the bench starts as its own process.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "xg2g-bench",
    version,
    about = "Load scenarios against the embedded demo receiver: xg2g beside one FFmpeg per client",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(flatten)]
    bench: BenchArgs,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// The FFmpeg-per-client proxy alone (the bench starts it as its own process).
    Peer {
        /// Address to listen on, e.g. 127.0.0.1:8099.
        #[arg(long)]
        bind: std::net::SocketAddr,
        /// Where the HLS ffmpeg processes write their playlists and segments.
        #[arg(long)]
        work_dir: PathBuf,
        /// The ladder a `ladder` client gets: WIDTHxHEIGHT@KBPS of each rung, top first, then
        /// the AAC of the video rungs and of the audio-only rung (the bench passes xg2g's abr.toml).
        #[arg(long, default_value_t = xg2g_bench::ladder::LadderSpec::default())]
        ladder: xg2g_bench::ladder::LadderSpec,
    },
}

#[derive(clap::Args)]
struct BenchArgs {
    /// Measured window of each run [default: 20s; 10m with --soak].
    #[arg(long, value_parser = humantime::parse_duration)]
    duration: Option<Duration>,
    /// Time from the first client to the start of the measured window.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "5s")]
    warmup: Duration,
    /// Runs of each scenario on each server.
    #[arg(long, default_value_t = 3)]
    repeats: usize,
    /// Scenarios to run, comma-separated: aac-one, aac-channels, aac-shared, hls, h264, mixed, ladder [default: all].
    #[arg(long = "scenario", value_delimiter = ',')]
    scenarios: Vec<String>,
    /// Clients on one channel in aac-shared (viewers of one popular channel).
    #[arg(long, default_value_t = 150)]
    shared_clients: usize,
    /// Clients of the mixed load (and the soak).
    #[arg(long, default_value_t = 50)]
    mixed_clients: usize,
    /// Most h264 transcodes the ramp tries: TS on each video channel, then HLS on each.
    #[arg(long, default_value_t = 8)]
    max_h264: usize,
    /// Measure xg2g only, without the FFmpeg comparison.
    #[arg(long)]
    xg2g_only: bool,
    /// Soak: the mixed load on xg2g alone for the duration; exits 1 on any stall or error.
    #[arg(long)]
    soak: bool,
    /// Keep the servers' logs (printed at the end) for a look at what went wrong.
    #[arg(long)]
    keep_logs: bool,
    /// Where to write the JSON report.
    #[arg(long, default_value = "target/bench/bench.json")]
    json: PathBuf,
    /// The demo receiver's media; `broadcast` gives figures that compare with a real receiver.
    #[arg(long, value_enum, default_value = "broadcast")]
    demo_bitrate: xg2g::demo::DemoBitrate,
    /// xg2g's template folder (with abr.toml), which the ladder scenario copies and adds the
    /// h264 profiles of its lower rungs to.
    #[arg(long, value_name = "DIR", default_value = "pipelines")]
    pipelines: PathBuf,
    /// The xg2g binary to measure [default: `xg2g` next to this binary, in the same target dir].
    #[arg(long = "xg2g", value_name = "PATH")]
    xg2g: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("xg2g-bench: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match cli.command {
        Some(Command::Peer { bind, work_dir, ladder }) => runtime.block_on(peer(bind, work_dir, ladder)),
        None => runtime.block_on(bench(cli.bench)),
    }
}

/// `xg2g-bench peer`: serves until SIGTERM or SIGINT.
async fn peer(bind: std::net::SocketAddr, work_dir: PathBuf, ladder: xg2g_bench::ladder::LadderSpec) -> ExitCode {
    match xg2g_bench::run_peer(bind, work_dir, ladder).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("xg2g-bench peer: {error}");
            ExitCode::FAILURE
        }
    }
}

/// The bench: needs no config; it starts its own receiver and servers.
async fn bench(args: BenchArgs) -> ExitCode {
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(error) => {
            eprintln!("xg2g-bench: cannot find this binary to start the FFmpeg proxy: {error}");
            return ExitCode::FAILURE;
        }
    };
    // `cargo build --bin xg2g -p xg2g-bench` puts both binaries in the same target dir.
    let xg2g_exe = args.xg2g.unwrap_or_else(|| exe.with_file_name("xg2g"));
    let default_duration = if args.soak { 600 } else { 20 };
    let options = xg2g_bench::BenchOptions {
        duration: args.duration.unwrap_or(Duration::from_secs(default_duration)),
        warmup: args.warmup,
        repeats: args.repeats.max(1),
        scenarios: args.scenarios,
        shared_clients: args.shared_clients.max(1),
        mixed_clients: args.mixed_clients.max(1),
        max_h264: args.max_h264,
        ffmpeg: !args.xg2g_only,
        soak: args.soak,
        json: Some(args.json),
        keep_logs: args.keep_logs,
        xg2g_exe,
        peer_exe: exe,
        demo_bitrate: args.demo_bitrate,
        pipelines: args.pipelines,
    };
    match xg2g_bench::run(options).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("xg2g-bench: {error}");
            ExitCode::FAILURE
        }
    }
}
