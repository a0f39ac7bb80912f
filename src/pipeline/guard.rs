//! Ownership of a GStreamer pipeline: whoever holds the guard owns it, and dropping the guard
//! sets it to Null, whatever path left the scope; async code stops it off the runtime's workers.

use std::time::Duration;

use gstreamer as gst;
use gstreamer::prelude::*;

#[derive(Debug)]
pub struct PipelineGuard(gst::Pipeline);

impl PipelineGuard {
    pub fn new(pipeline: gst::Pipeline) -> Self {
        Self(pipeline)
    }

    pub fn pipeline(&self) -> &gst::Pipeline {
        &self.0
    }

    /// Sets the pipeline to Null on a blocking thread and waits at most [`STOP_TIMEOUT`]: a
    /// source stuck in a read (a receiver that went silent) can hold the change until its own
    /// timeout, and must not hold an async worker meanwhile. Past the bound the change goes on
    /// in its thread, and this returns.
    pub async fn stop(self) {
        let name = self.0.name();
        let stopping = tokio::task::spawn_blocking(move || drop(self));
        if tokio::time::timeout(STOP_TIMEOUT, stopping).await.is_err() {
            tracing::warn!(pipeline = %name, timeout_s = STOP_TIMEOUT.as_secs(), "Pipeline still stopping; leaving it to its thread.");
        }
    }
}

/// How long [`PipelineGuard::stop`] waits for the change to Null.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(5);

impl Drop for PipelineGuard {
    fn drop(&mut self) {
        if let Err(error) = self.0.set_state(gst::State::Null) {
            tracing::warn!(pipeline = %self.0.name(), %error, "Pipeline did not go to Null.");
        }
    }
}
