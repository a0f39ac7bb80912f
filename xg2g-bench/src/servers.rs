//! The two servers under test as child processes of the bench: xg2g (the `xg2g` binary's
//! `serve` against the bench's demo receiver) and the FFmpeg proxy (`xg2g-bench peer`). Each is measured from
//! `/proc` as its own process tree, apart from the clients and the receiver, which run in the
//! bench's process.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

use super::BenchError;
use super::ladder::LadderSpec;
use super::procfs;
use super::scenario::Server;

/// How long a server may take to answer its health check after spawning: the first
/// `gst::init()` on a fresh machine builds GStreamer's plugin registry (several seconds).
const READY_WITHIN: Duration = Duration::from_secs(90);
/// How long sessions may take to close once their clients have gone.
const IDLE_WITHIN: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(100);

/// What the xg2g child is pointed at.
pub(crate) struct Xg2gTarget {
    pub api_url: String,
    pub stream_port: u16,
    pub relay_port: u16,
    /// Templates other than xg2g's default folder (the `ladder` scenario's).
    pub pipelines_dir: Option<PathBuf>,
}

/// A server child process; killed on drop, stopped politely by [`ServerProcess::stop`].
pub(crate) struct ServerProcess {
    pub server: Server,
    pub base: String,
    pub pid: u32,
    child: Child,
    log: PathBuf,
}

/// A free loopback port (the tiny race until the child binds it is harmless on loopback).
fn free_port() -> Result<u16, BenchError> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(|source| BenchError::Io {
        what: "picking a free port".into(),
        source,
    })?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|source| BenchError::Io {
            what: "picking a free port".into(),
            source,
        })
}

#[allow(
    clippy::disallowed_methods,
    reason = "the bench measures servers as separate processes: xg2g itself and the FFmpeg proxy"
)]
fn command(exe: &Path) -> Command {
    Command::new(exe)
}

fn spawn(server: Server, mut cmd: Command, log: PathBuf, base: String) -> Result<ServerProcess, BenchError> {
    let file = std::fs::File::create(&log).map_err(|source| BenchError::Io {
        what: format!("creating {}", log.display()),
        source,
    })?;
    let err = file.try_clone().map_err(|source| BenchError::Io {
        what: format!("opening {}", log.display()),
        source,
    })?;
    cmd.stdin(Stdio::null())
        .stdout(Stdio::from(file))
        .stderr(Stdio::from(err))
        .kill_on_drop(true);
    // SAFETY: prctl is async-signal-safe; the closure allocates nothing. The server gets
    // SIGTERM if the bench dies without stopping it (killed, or a panic that skips the drops).
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
    // Nothing of the caller's xg2g settings may leak into the server under test.
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("XG2G_") {
            cmd.env_remove(key);
        }
    }
    let child = cmd.spawn().map_err(|source| BenchError::Io {
        what: format!("starting the {server} server"),
        source,
    })?;
    let pid = child.id().ok_or_else(|| BenchError::NotReady {
        server,
        why: "exited at once".into(),
        log: String::new(),
    })?;
    Ok(ServerProcess {
        server,
        base,
        pid,
        child,
        log,
    })
}

/// Starts `exe serve` (the `xg2g` binary) against the demo receiver, with admission limits that do not get in the
/// way of a load test (rate limiting off; encoder slots not the bottleneck), and short idle
/// times so that sessions close between runs.
pub(crate) fn start_xg2g(exe: &Path, target: &Xg2gTarget, work: &Path) -> Result<ServerProcess, BenchError> {
    let port = free_port()?;
    let mut cmd = command(exe);
    cmd.args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--receiver", &target.api_url])
        .args(["--log-level", "info", "--log-format", "pretty", "serve"])
        .env("XG2G_STREAM_PORT", target.stream_port.to_string())
        .env("XG2G_RELAY_PORT", target.relay_port.to_string())
        .env("XG2G_RATE_LIMIT_ENABLED", "false")
        .env("XG2G_GPU_QUEUE_WORKERS", "16")
        .env("XG2G_SESSION_GRACE", "1s")
        .env("XG2G_HLS_IDLE_TIMEOUT", "5s")
        .env("NO_COLOR", "1");
    if let Some(dir) = &target.pipelines_dir {
        cmd.env("XG2G_PIPELINES_DIR", dir);
    }
    spawn(
        Server::Xg2g,
        cmd,
        work.join("xg2g.log"),
        format!("http://127.0.0.1:{port}"),
    )
}

/// Starts the FFmpeg proxy (`peer`, a subcommand of `exe`: this `xg2g-bench`), whose ladder
/// clients get `ladder`.
pub(crate) fn start_peer(exe: &Path, work: &Path, ladder: LadderSpec) -> Result<ServerProcess, BenchError> {
    let port = free_port()?;
    let hls = work.join("peer-hls");
    std::fs::create_dir_all(&hls).map_err(|source| BenchError::Io {
        what: format!("creating {}", hls.display()),
        source,
    })?;
    let mut cmd = command(exe);
    cmd.arg("peer")
        .args(["--bind", &format!("127.0.0.1:{port}")])
        .arg("--work-dir")
        .arg(&hls)
        .args(["--ladder", &ladder.to_string()]);
    spawn(
        Server::Ffmpeg,
        cmd,
        work.join("ffmpeg-proxy.log"),
        format!("http://127.0.0.1:{port}"),
    )
}

impl ServerProcess {
    /// The last lines of the server's log, for error messages.
    pub(crate) fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }

    fn not_ready(&self, why: impl Into<String>) -> BenchError {
        BenchError::NotReady {
            server: self.server,
            why: why.into(),
            log: self.log_tail(),
        }
    }

    /// Waits until the server answers its health check (xg2g: `/readyz`, the channel list loaded).
    pub(crate) async fn ready(&mut self, http: &reqwest::Client) -> Result<(), BenchError> {
        let path = match self.server {
            Server::Xg2g => "/readyz",
            Server::Ffmpeg => "/healthz",
        };
        let deadline = tokio::time::Instant::now() + READY_WITHIN;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(self.not_ready(format!("exited with {status}")));
            }
            if let Ok(response) = http.get(format!("{}{path}", self.base)).send().await
                && response.status().is_success()
            {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(self.not_ready(format!("no answer on {path} within {READY_WITHIN:?}")));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Sessions running now: xg2g's `xg2g_sessions_active`, or the proxy's ffmpeg children.
    pub(crate) async fn sessions(&self, http: &reqwest::Client) -> Result<usize, BenchError> {
        match self.server {
            Server::Ffmpeg => Ok(procfs::children(self.pid).len()),
            Server::Xg2g => Ok(sum_metric(&self.metrics(http).await?, "xg2g_sessions_active") as usize),
        }
    }

    /// xg2g's `/metrics` text (the FFmpeg proxy has none).
    pub(crate) async fn metrics(&self, http: &reqwest::Client) -> Result<String, BenchError> {
        http.get(format!("{}/metrics", self.base))
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .map_err(|e| self.not_ready(format!("/metrics: {e}")))?
            .text()
            .await
            .map_err(|e| self.not_ready(format!("/metrics: {e}")))
    }

    /// Waits until no session runs (the proxy is told to drop its HLS children first).
    pub(crate) async fn idle(&mut self, http: &reqwest::Client) -> Result<(), BenchError> {
        if self.server == Server::Ffmpeg {
            let _ = http.post(format!("{}/reset", self.base)).send().await;
        }
        let deadline = tokio::time::Instant::now() + IDLE_WITHIN;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(self.not_ready(format!("exited with {status}")));
            }
            if self.sessions(http).await? == 0 {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(self.not_ready(format!("sessions still running {IDLE_WITHIN:?} after the clients left")));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// SIGTERM, then SIGKILL after 10 s.
    pub(crate) async fn stop(mut self) {
        if let Ok(pid) = i32::try_from(self.pid) {
            // SAFETY: kill(2) with a pid this process spawned and has not reaped yet.
            unsafe {
                libc::kill(pid, libc::SIGTERM);
            }
        }
        if tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }
}

/// The first line of `ffmpeg -version`, or `None` when ffmpeg is not installed.
#[allow(clippy::disallowed_methods, reason = "asks the peers' tool for its version")]
pub(crate) fn ffmpeg_version() -> Option<String> {
    let output = std::process::Command::new("ffmpeg").arg("-version").output().ok()?;
    let text = String::from_utf8_lossy(&output.stdout);
    Some(text.lines().next()?.to_owned())
}

/// The sum of every sample of a metric family in Prometheus' text format.
fn sum_metric(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|line| {
            line.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[cfg(test)]
mod tests {
    use super::sum_metric;

    #[test]
    fn metric_sums_take_every_label_set_and_no_other_family() {
        let text = "# HELP xg2g_sessions_active Running stream sessions\n\
                    xg2g_sessions_active{mode=\"audio_proxy\",output=\"ts\"} 3\n\
                    xg2g_sessions_active{mode=\"gpu\",output=\"hls\"} 1\n\
                    xg2g_sessions_active_total 99\n";
        assert_eq!(sum_metric(text, "xg2g_sessions_active"), 4.0);
        assert_eq!(sum_metric(text, "xg2g_missing"), 0.0);
    }
}
