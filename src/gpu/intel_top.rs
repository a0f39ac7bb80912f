//! The supervised `intel_gpu_top -J` child of one Intel card: started, read as it streams,
//! restarted with exponential backoff when it dies or falls silent, killed on shutdown.

use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt as _};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::intel::{ObjectSplitter, parse_sample};
use crate::metrics::GpuReading;

/// Stderr bytes kept to say why a child died.
const STDERR_TAIL: usize = 512;
/// How long a dying or killed child gets to exit.
const EXIT_WAIT: Duration = Duration::from_secs(2);

/// Exponential backoff: `initial`, doubling up to `max`; back to `initial` after a good run.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    initial: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    pub(crate) fn new(initial: Duration, max: Duration) -> Self {
        Self {
            initial,
            max,
            next: initial,
        }
    }

    /// The wait before the next start; each call doubles the one after.
    pub(crate) fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = (self.next * 2).min(self.max);
        delay
    }

    pub(crate) fn reset(&mut self) {
        self.next = self.initial;
    }
}

/// A sample of one Intel card, sent to the collector.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct IntelUpdate {
    pub device: String,
    pub reading: GpuReading,
}

/// How to run `intel_gpu_top` for one card.
#[derive(Debug, Clone)]
pub(crate) struct IntelTop {
    pub program: PathBuf,
    /// The card's label, `card0`.
    pub device: String,
    /// The card's DRM node for `-d drm:<node>`, e.g. `/dev/dri/card0`.
    pub node: PathBuf,
    /// `-s`: the sample period.
    pub period: Duration,
    /// A child that writes no sample for this long is killed and restarted.
    pub silence: Duration,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
}

/// How one run of the child ended.
#[derive(Debug)]
enum RunEnd {
    Cancelled,
    Ended {
        samples: u64,
        reason: &'static str,
        status: Option<ExitStatus>,
        stderr: String,
    },
}

impl IntelTop {
    fn command(&self) -> Command {
        let period_ms = self.period.as_millis().clamp(1, u128::from(u32::MAX));
        #[allow(
            clippy::disallowed_methods,
            reason = "intel_gpu_top is a supervised statistics tool, not media work"
        )]
        let mut command = Command::new(&self.program);
        command
            .arg("-J")
            .arg("-s")
            .arg(period_ms.to_string())
            .arg("-d")
            .arg(format!("drm:{}", self.node.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        command
    }

    /// Runs the child until `shutdown`, restarting it after each end.
    pub(crate) async fn supervise(self, updates: mpsc::Sender<IntelUpdate>, shutdown: CancellationToken) {
        let mut backoff = Backoff::new(self.initial_backoff, self.max_backoff);
        tracing::info!(program = %self.program.display(), node = %self.node.display(), "Sampling the Intel GPU.");
        loop {
            let (samples, reason, status, stderr) = match self.run_once(&updates, &shutdown).await {
                RunEnd::Cancelled => return,
                RunEnd::Ended {
                    samples,
                    reason,
                    status,
                    stderr,
                } => (samples, reason, status, stderr),
            };
            if samples > 0 {
                backoff.reset();
            }
            let delay = backoff.next_delay();
            tracing::warn!(
                reason,
                status = status.map(|s| s.to_string()),
                stderr = stderr.trim(),
                samples,
                retry_in_ms = delay.as_millis() as u64,
                "intel_gpu_top ended; starting it again after a pause."
            );
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(delay) => {}
            }
        }
    }

    async fn run_once(&self, updates: &mpsc::Sender<IntelUpdate>, shutdown: &CancellationToken) -> RunEnd {
        let mut child = match self.command().spawn() {
            Ok(child) => child,
            Err(error) => {
                return RunEnd::Ended {
                    samples: 0,
                    reason: "start failed",
                    status: None,
                    stderr: error.to_string(),
                };
            }
        };
        let (Some(mut stdout), mut stderr) = (child.stdout.take(), child.stderr.take()) else {
            stop(&mut child).await;
            return RunEnd::Ended {
                samples: 0,
                reason: "no stdout pipe",
                status: None,
                stderr: String::new(),
            };
        };
        let mut splitter = ObjectSplitter::default();
        let mut tail = Vec::new();
        let mut out_buf = vec![0u8; 16 * 1024];
        let mut err_buf = [0u8; 1024];
        let mut samples = 0u64;
        let mut deadline = Instant::now() + self.silence;
        let reason = loop {
            tokio::select! {
                () = shutdown.cancelled() => {
                    stop(&mut child).await;
                    return RunEnd::Cancelled;
                }
                () = tokio::time::sleep_until(deadline) => {
                    stop(&mut child).await;
                    break "silent";
                }
                read = stdout.read(&mut out_buf) => match read {
                    Ok(0) => break "output ended",
                    Err(_) => break "output unreadable",
                    Ok(n) => {
                        let dropped = splitter.dropped();
                        for object in splitter.push(&out_buf[..n]) {
                            match parse_sample(&object) {
                                Ok(sample) => {
                                    samples += 1;
                                    deadline = Instant::now() + self.silence;
                                    tracing::trace!(
                                        frequency_mhz = sample.frequency_mhz,
                                        rc6_percent = sample.rc6_percent,
                                        power_watts = sample.power_watts,
                                        period_ms = sample.period_ms,
                                        "Intel GPU sample."
                                    );
                                    let update = IntelUpdate { device: self.device.clone(), reading: sample.reading() };
                                    if let Err(mpsc::error::TrySendError::Closed(_)) = updates.try_send(update) {
                                        stop(&mut child).await;
                                        return RunEnd::Cancelled;
                                    }
                                }
                                Err(error) => tracing::debug!(%error, "Unreadable intel_gpu_top sample skipped."),
                            }
                        }
                        if splitter.dropped() > dropped {
                            tracing::debug!("Oversized intel_gpu_top output skipped.");
                        }
                    }
                },
                read = read_or_pend(&mut stderr, &mut err_buf) => match read {
                    Ok(0) | Err(_) => stderr = None,
                    Ok(n) => keep_tail(&mut tail, &err_buf[..n]),
                },
            }
        };
        // The child closed its output: it is exiting. Collect what it said on the way out.
        if let Some(mut rest) = stderr {
            let mut last = Vec::new();
            let mut limited = (&mut rest).take(STDERR_TAIL as u64);
            if tokio::time::timeout(EXIT_WAIT, limited.read_to_end(&mut last))
                .await
                .is_ok()
            {
                keep_tail(&mut tail, &last);
            }
        }
        let status = match tokio::time::timeout(EXIT_WAIT, child.wait()).await {
            Ok(Ok(status)) => Some(status),
            _ => {
                stop(&mut child).await;
                None
            }
        };
        RunEnd::Ended {
            samples,
            reason,
            status,
            stderr: String::from_utf8_lossy(&tail).into_owned(),
        }
    }
}

/// Kills the child and reaps it, bounded.
async fn stop(child: &mut Child) {
    let _ = child.start_kill();
    let _ = tokio::time::timeout(EXIT_WAIT, child.wait()).await;
}

/// Reads from the pipe while it is open; pends forever once it is closed.
async fn read_or_pend(pipe: &mut Option<impl AsyncRead + Unpin>, buf: &mut [u8]) -> std::io::Result<usize> {
    match pipe {
        Some(pipe) => pipe.read(buf).await,
        None => std::future::pending().await,
    }
}

fn keep_tail(tail: &mut Vec<u8>, bytes: &[u8]) {
    tail.extend_from_slice(bytes);
    if tail.len() > STDERR_TAIL {
        tail.drain(..tail.len() - STDERR_TAIL);
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;
    use std::path::Path;

    use super::*;

    const SAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/gpu/intel_gpu_top.json");
    /// Bound on every wait in these tests.
    const WAIT: Duration = Duration::from_secs(20);

    #[test]
    fn backoff_doubles_up_to_the_cap_and_resets() {
        let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(10));
        let delays: Vec<_> = (0..6).map(|_| backoff.next_delay().as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 10, 10]);
        backoff.reset();
        assert_eq!(backoff.next_delay(), Duration::from_secs(1));
    }

    /// A fake `intel_gpu_top`: a shell script in `dir` running `body`.
    fn fake_tool(dir: &Path, body: &str) -> IntelTop {
        let program = dir.join("intel_gpu_top");
        std::fs::write(&program, format!("#!/bin/sh\n{body}\n")).expect("write fake tool");
        std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        IntelTop {
            program,
            device: "card0".to_owned(),
            node: PathBuf::from("/dev/dri/card0"),
            period: Duration::from_millis(250),
            silence: Duration::from_secs(10),
            initial_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(100),
        }
    }

    async fn next(rx: &mut mpsc::Receiver<IntelUpdate>) -> IntelUpdate {
        tokio::time::timeout(WAIT, rx.recv())
            .await
            .expect("an update in time")
            .expect("supervisor alive")
    }

    #[tokio::test]
    async fn samples_flow_and_a_dead_child_is_restarted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let runs = dir.path().join("runs");
        let tool = fake_tool(
            dir.path(),
            &format!(
                "echo \"$@\" >> '{}'\ncat '{SAMPLES}'\necho 'Failed to initialize PMU! (Permission denied)' >&2\nexit 1",
                runs.display()
            ),
        );
        let (tx, mut rx) = mpsc::channel(16);
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(tool.supervise(tx, shutdown.clone()));
        // Three samples per run; six updates need two runs.
        let mut updates = Vec::new();
        for _ in 0..6 {
            updates.push(next(&mut rx).await);
        }
        shutdown.cancel();
        tokio::time::timeout(WAIT, task)
            .await
            .expect("stops")
            .expect("no panic");
        assert!(updates.iter().all(|u| u.device == "card0"));
        let utilization: Vec<_> = updates.iter().map(|u| u.reading.utilization_percent).collect();
        let run = [Some(35.105474), Some(38.250911), Some(71.330012)];
        assert_eq!(utilization[..3], run);
        assert_eq!(utilization[3..], run);
        let runs = std::fs::read_to_string(runs).expect("runs recorded");
        assert!(runs.lines().count() >= 2, "{runs}");
        assert_eq!(runs.lines().next(), Some("-J -s 250 -d drm:/dev/dri/card0"));
    }

    #[tokio::test]
    async fn the_child_is_killed_on_shutdown() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pid_file = dir.path().join("pid");
        let tool = fake_tool(
            dir.path(),
            &format!("echo $$ > '{}'\ncat '{SAMPLES}'\nexec sleep 600", pid_file.display()),
        );
        let (tx, mut rx) = mpsc::channel(16);
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(tool.supervise(tx, shutdown.clone()));
        next(&mut rx).await;
        let pid = std::fs::read_to_string(&pid_file).expect("pid written");
        let proc_dir = PathBuf::from(format!("/proc/{}", pid.trim()));
        assert!(proc_dir.exists(), "the child runs");
        shutdown.cancel();
        tokio::time::timeout(WAIT, task)
            .await
            .expect("stops")
            .expect("no panic");
        // Killed and reaped: no process, not even a zombie.
        assert!(!proc_dir.exists(), "the child is gone");
    }

    #[tokio::test]
    async fn a_silent_child_is_replaced() {
        let dir = tempfile::tempdir().expect("tempdir");
        let marker = dir.path().join("ran");
        // The first run writes nothing and hangs; the second writes samples.
        let mut tool = fake_tool(
            dir.path(),
            &format!(
                "if [ -e '{m}' ]; then cat '{SAMPLES}'; exec sleep 600; fi\ntouch '{m}'\nexec sleep 600",
                m = marker.display()
            ),
        );
        tool.silence = Duration::from_millis(300);
        let (tx, mut rx) = mpsc::channel(16);
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(tool.supervise(tx, shutdown.clone()));
        let update = next(&mut rx).await;
        assert_eq!(update.reading.utilization_percent, Some(35.105474));
        assert!(marker.exists());
        shutdown.cancel();
        tokio::time::timeout(WAIT, task)
            .await
            .expect("stops")
            .expect("no panic");
    }
}
