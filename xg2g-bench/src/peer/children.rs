//! The ffmpeg children: started, killed and reaped in one place, and counted while alive.

use std::io;
use std::process::Stdio;

use tokio::process::Child;
use tokio::sync::watch;

/// Starts and reaps ffmpeg children, counting those alive.
pub(super) struct Children {
    pub(super) live: watch::Sender<usize>,
    /// Every child's pid, for the test that checks none is left.
    #[cfg(test)]
    pub(super) pids: std::sync::Mutex<Vec<u32>>,
}

impl Children {
    pub(super) fn new() -> Self {
        Self {
            live: watch::channel(0).0,
            #[cfg(test)]
            pids: std::sync::Mutex::new(Vec::new()),
        }
    }

    #[allow(
        clippy::disallowed_methods,
        reason = "the bench's baseline is, by definition, one ffmpeg process per client"
    )]
    pub(super) fn spawn(&self, args: &[String], stdout: Stdio) -> io::Result<Child> {
        let child = tokio::process::Command::new("ffmpeg")
            .args(args)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()?;
        self.live.send_modify(|n| *n += 1);
        #[cfg(test)]
        if let Some(pid) = child.id() {
            self.pids.lock().expect("pids poisoned").push(pid);
        }
        Ok(child)
    }

    /// Kills the child (if it still runs) and waits for it.
    pub(super) async fn reap(&self, mut child: Child) {
        // An error here means it has already exited; waiting still collects it.
        let _ = child.start_kill();
        match child.wait().await {
            Ok(status) => tracing::debug!(%status, "An ffmpeg ended."),
            Err(error) => tracing::warn!(%error, "Could not wait for an ffmpeg."),
        }
        self.live.send_modify(|n| *n -= 1);
    }
}
