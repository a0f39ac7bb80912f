//! The `xg2g` binary: parses the command line, loads the config and runs a subcommand.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use xg2g::config::{self, Override, Requirements, Sources};

#[derive(Parser)]
#[command(
    name = "xg2g",
    version,
    about = "Turns an Enigma2 receiver into a streaming server every client can play"
)]
struct Cli {
    /// TOML config file (also XG2G_CONFIG).
    #[arg(long, global = true, env = "XG2G_CONFIG")]
    config: Option<PathBuf>,
    /// Address to listen on, e.g. ":8080" (overrides `listen`).
    #[arg(long, global = true)]
    listen: Option<String>,
    /// Log filter, e.g. "info" or "xg2g=debug" (overrides `log.level`).
    #[arg(long, global = true)]
    log_level: Option<String>,
    /// "pretty" or "json" (overrides `log.format`).
    #[arg(long, global = true)]
    log_format: Option<String>,
    /// OpenWebIF base URL of the receiver (overrides `receiver.base_url`).
    #[arg(long, global = true)]
    receiver: Option<String>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve against the configured receiver (the default).
    Serve,
    /// Serve against the embedded demo receiver on loopback ports.
    Demo {
        /// The channels' bitrates: `light` (about 1 Mbit/s) or `broadcast` (as heavy as a real
        /// receiver: HD at about 10 Mbit/s, SD at 4.5; the first start encodes it, then it is cached).
        #[arg(long, value_enum, default_value = "light")]
        bitrate: xg2g::demo::DemoBitrate,
    },
    /// Print the effective config (secrets redacted) and exit 0, or every problem and exit 2.
    CheckConfig,
    /// Print a signed URL for a stream route (auth.streams = "signed"), e.g.
    /// `xg2g sign-url /playlist.m3u --ttl 30d`.
    SignUrl {
        /// A stream route: /playlist.m3u, /xmltv.xml, /lineup.json, /stream/{ref},
        /// /hls/{ref}/{profile}/index.m3u8 or /watch/{ref}.
        path: String,
        /// How long the URL works.
        #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
        ttl: std::time::Duration,
    },
}

fn main() -> ExitCode {
    limit_malloc_arenas();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("xg2g: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(run(cli))
}

/// How many malloc arenas glibc may keep, unless `MALLOC_ARENA_MAX` in the environment says.
const MALLOC_ARENAS: i32 = 2;

/// Caps glibc's malloc arenas at [`MALLOC_ARENAS`]. By default glibc gives a thread that meets
/// contention an arena of its own, up to eight per core, and GStreamer runs several streaming
/// threads a session: what a finished session frees stays spread over those arenas, so the
/// process grew with every round of sessions (six rounds of four `abr-fmp4` ladders, idle
/// between rounds: 300 MB resident after the first, 525 MB after the sixth; with two arenas
/// 216 and 257 MB; README "Performance"). `MALLOC_ARENA_MAX` set in the environment is left
/// to glibc, which reads it itself.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn limit_malloc_arenas() {
    if std::env::var_os("MALLOC_ARENA_MAX").is_some() {
        return;
    }
    // SAFETY: `mallopt` sets an allocator tunable and touches no Rust-managed memory; this runs
    // first thing in `main`, before any thread of ours exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, MALLOC_ARENAS);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn limit_malloc_arenas() {}

fn flag_overrides(cli: &Cli) -> Vec<Override> {
    let mut out = Vec::new();
    for (key, value, flag) in [
        ("listen", &cli.listen, "--listen"),
        ("log.level", &cli.log_level, "--log-level"),
        ("log.format", &cli.log_format, "--log-format"),
        ("receiver.base_url", &cli.receiver, "--receiver"),
    ] {
        if let Some(value) = value {
            out.push(Override::flag(key, value.clone(), flag));
        }
    }
    out
}

async fn run(cli: Cli) -> ExitCode {
    let command = cli.command.as_ref().unwrap_or(&Command::Serve);
    let signals = match xg2g::app::Signals::install() {
        Ok(signals) => signals,
        Err(error) => {
            eprintln!("xg2g: cannot install signal handlers: {error}");
            return ExitCode::FAILURE;
        }
    };
    let mut overrides = Vec::new();
    let mut demo = None;
    if let Command::Demo { bitrate } = command {
        // The demo's media is encoded before logging is configured; keep that quiet.
        let options = xg2g::demo::DemoOptions {
            bitrate: *bitrate,
            ..Default::default()
        };
        match xg2g::demo::DemoReceiver::start(options).await {
            Ok(receiver) => {
                let origin = "the embedded demo receiver";
                overrides.push(Override::new("receiver.base_url", receiver.api_url(), origin));
                overrides.push(Override::new(
                    "receiver.stream_port",
                    receiver.stream_addr().port().to_string(),
                    origin,
                ));
                overrides.push(Override::new(
                    "receiver.relay_port",
                    receiver.relay_addr().port().to_string(),
                    origin,
                ));
                overrides.push(Override::new("receiver.username", "", origin));
                overrides.push(Override::new("receiver.password", "", origin));
                demo = Some(receiver);
            }
            Err(error) => {
                eprintln!("xg2g: the demo receiver did not start: {error}");
                return ExitCode::FAILURE;
            }
        }
    }
    // Flags come last: they beat everything, the demo's receiver settings included.
    overrides.extend(flag_overrides(&cli));
    let requirements = if matches!(command, Command::CheckConfig | Command::Serve | Command::Demo { .. }) {
        Requirements::Receiver
    } else {
        Requirements::None
    };
    let sources = Sources {
        file: cli.config.as_deref(),
        env: &config::process_env,
        overrides,
    };
    let loaded = match config::load(&sources, requirements) {
        Ok(loaded) => loaded,
        Err(error) => {
            eprintln!("xg2g: the configuration has problems:\n{error}");
            return ExitCode::from(2);
        }
    };
    if matches!(command, Command::CheckConfig) {
        return check_templates(&loaded);
    }
    if let Command::SignUrl { path, ttl } = command {
        return sign_url(&loaded.config, path, *ttl);
    }
    let telemetry = match xg2g::telemetry::init(&loaded.config.log, &loaded.config.telemetry) {
        Ok(telemetry) => telemetry,
        Err(error) => {
            eprintln!("xg2g: cannot set up logging and traces: {error}");
            return ExitCode::from(2);
        }
    };
    let running = match xg2g::app::start(&loaded.config).await {
        Ok(running) => running,
        Err(xg2g::app::StartError::Templates(errors)) => {
            // One problem a line, as check-config prints them; not squeezed into one log field.
            eprintln!("xg2g: the pipeline templates have problems:\n{errors}");
            shutdown_telemetry(telemetry).await;
            return ExitCode::from(2);
        }
        Err(error) => {
            tracing::error!(%error, "xg2g did not start.");
            shutdown_telemetry(telemetry).await;
            return ExitCode::FAILURE;
        }
    };
    if demo.is_some() {
        tracing::info!(url = %format!("http://{}/", display_addr(running.addr())), "Demo ready: open the page in a browser.");
    }
    running.run_until(signals).await;
    if let Some(demo) = demo {
        demo.stop().await;
    }
    shutdown_telemetry(telemetry).await;
    ExitCode::SUCCESS
}

/// Sends the spans still buffered before the process exits.
async fn shutdown_telemetry(telemetry: xg2g::telemetry::Telemetry) {
    if let Err(error) = telemetry.shutdown().await {
        tracing::warn!(%error, code = error.code(), "Traces not flushed on exit.");
    }
}

/// `check-config` after the config itself: loads and validates the pipeline templates, then
/// prints the effective config, where the templates came from, the encoder and the profiles
/// (exit 0), or every template problem, one a line (exit 2).
fn check_templates(loaded: &config::Loaded) -> ExitCode {
    match xg2g::pipeline::load(Some(&loaded.config.streaming.pipelines_dir)) {
        Ok(profiles) => {
            print!("{}", loaded.render_effective());
            println!();
            println!("# pipeline templates: {}", profiles.origin);
            println!(
                "# H.264 encoder: {}",
                profiles
                    .encoder
                    .as_ref()
                    .map_or("none works here", |e| e.factory.as_str())
            );
            println!("# profiles: {}", profiles.names().collect::<Vec<_>>().join(", "));
            check_stream_auth(&loaded.config)
        }
        Err(errors) => {
            eprintln!("xg2g: the pipeline templates have problems:\n{errors}");
            ExitCode::from(2)
        }
    }
}

/// Says what `auth.streams` means as set, and loads the signing keys (exit 2 when they are bad).
fn check_stream_auth(config: &config::Config) -> ExitCode {
    match xg2g::app::stream_keys(&config.auth) {
        Ok(None) => {
            println!(
                "# auth.streams = \"open\": anyone who can reach this server can watch every channel; \
                 set \"signed\" to require signed URLs or device tokens."
            );
            ExitCode::SUCCESS
        }
        Ok(Some(keys)) => {
            println!(
                "# auth.streams = \"signed\": /stream, /hls, /watch, previews, M3U, XMLTV and the HDHomeRun JSON \
                 need a signed URL (xg2g sign-url PATH, or POST /api/v1/sign) or a device token \
                 (POST /api/v1/tokens; kept hashed in {}); the web page needs a sign-in; \
                 keys accepted: {} (\"{}\" signs).",
                config.auth.tokens_file.display(),
                keys.ids().collect::<Vec<_>>().join(", "),
                keys.current().id()
            );
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("xg2g: the signing keys have problems:\n{error}");
            ExitCode::from(2)
        }
    }
}

/// `sign-url`: the signed URL (absolute when `public_url` or `auth.allowed_hosts` gives a
/// base) on stdout.
fn sign_url(config: &config::Config, path: &str, ttl: std::time::Duration) -> ExitCode {
    let keys = match xg2g::app::stream_keys(&config.auth) {
        Ok(Some(keys)) => keys,
        Ok(None) => {
            eprintln!("xg2g: auth.streams is \"open\": stream URLs need no signature");
            return ExitCode::from(2);
        }
        Err(error) => {
            eprintln!("xg2g: the signing keys have problems:\n{error}");
            return ExitCode::from(2);
        }
    };
    if !path.starts_with('/') || path.contains(['?', '#']) {
        eprintln!("xg2g: expected a path such as /playlist.m3u, without a query");
        return ExitCode::from(2);
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let expires = now + ttl.as_secs().max(1);
    let query = xg2g::auth::sign(keys.current(), &xg2g::auth::Scope::of_path(path), expires);
    let base = match (&config.public_url, config.auth.allowed_hosts.first()) {
        (Some(url), _) => url.as_str().trim_end_matches('/').to_owned(),
        (None, Some(host)) => format!("http://{host}"),
        (None, None) => String::new(),
    };
    println!("{base}{path}?{query}");
    ExitCode::SUCCESS
}

fn display_addr(addr: std::net::SocketAddr) -> String {
    if addr.ip().is_unspecified() {
        format!("localhost:{}", addr.port())
    } else {
        addr.to_string()
    }
}
