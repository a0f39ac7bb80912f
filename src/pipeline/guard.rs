//! Ownership of a GStreamer pipeline: whoever holds the guard owns it, and dropping the guard
//! sets it to Null, whatever path left the scope.

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
}

impl Drop for PipelineGuard {
    fn drop(&mut self) {
        if let Err(error) = self.0.set_state(gst::State::Null) {
            tracing::warn!(pipeline = %self.0.name(), %error, "Pipeline did not go to Null.");
        }
    }
}
