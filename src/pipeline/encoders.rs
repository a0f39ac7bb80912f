//! Encoder choice: `encoders.toml` lists element factories per logical encoder in preference
//! order; the first that exists and actually encodes a test frame wins.

use std::time::Duration;

use gstreamer as gst;
use gstreamer::prelude::*;
use serde::Deserialize;

use super::guard::PipelineGuard;

const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct EncodersFile {
    #[serde(default)]
    pub h264: Vec<Candidate>,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub(crate) struct Candidate {
    pub factory: String,
    pub properties: String,
    /// Added in a ladder's rungs: key frames only where xg2g asks for them, so that every
    /// rung's segments can be cut at the same moments.
    #[serde(default)]
    pub ladder: String,
}

/// The H.264 encoder sessions use, with its live settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncoderChoice {
    pub factory: String,
    properties: String,
    ladder: String,
}

impl EncoderChoice {
    /// The gst-launch fragment for a bitrate (kb/s) and a key-frame interval (frames).
    pub fn fragment(&self, video_bitrate: &str, keyint: u32) -> String {
        let props = self
            .properties
            .replace("{video_bitrate}", video_bitrate)
            .replace("{keyint}", &keyint.to_string());
        format!("{} {props}", self.factory)
    }

    /// [`EncoderChoice::fragment`] for a ladder's rung, with the candidate's `ladder` properties.
    pub fn ladder_fragment(&self, video_bitrate: &str, keyint: u32) -> String {
        format!("{} {}", self.fragment(video_bitrate, keyint), self.ladder)
    }
}

/// Why a candidate was passed over, for the start-up log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    pub factory: String,
    pub reason: String,
}

/// Picks the first candidate that exists and encodes one frame.
pub(crate) fn choose(candidates: &[Candidate]) -> (Option<EncoderChoice>, Vec<Skipped>) {
    let mut skipped = Vec::new();
    for c in candidates {
        if gst::ElementFactory::find(&c.factory).is_none() {
            skipped.push(Skipped {
                factory: c.factory.clone(),
                reason: "not installed or no device".into(),
            });
            continue;
        }
        let choice = EncoderChoice {
            factory: c.factory.clone(),
            properties: c.properties.clone(),
            ladder: c.ladder.clone(),
        };
        match probe(&choice) {
            Ok(()) => return (Some(choice), skipped),
            Err(reason) => skipped.push(Skipped {
                factory: c.factory.clone(),
                reason,
            }),
        }
    }
    (None, skipped)
}

/// Encodes a few frames of 320x240 to prove the encoder starts (a driver present but broken,
/// or a GPU without an encoder, fails here rather than in a viewer's session).
fn probe(choice: &EncoderChoice) -> Result<(), String> {
    let description = format!(
        "videotestsrc num-buffers=5 ! video/x-raw,format=I420,width=320,height=240,framerate=25/1 ! {} ! fakesink",
        choice.fragment("1000", 25)
    );
    let pipeline = gst::parse::launch(&description).map_err(|e| e.to_string())?;
    let pipeline = pipeline
        .downcast::<gst::Pipeline>()
        .map_err(|_| "not a pipeline".to_owned())?;
    let guard = PipelineGuard::new(pipeline);
    guard
        .pipeline()
        .set_state(gst::State::Playing)
        .map_err(|e| e.to_string())?;
    let bus = guard.pipeline().bus().ok_or("no bus")?;
    let msg = bus.timed_pop_filtered(
        gst::ClockTime::from_mseconds(PROBE_TIMEOUT.as_millis() as u64),
        &[gst::MessageType::Eos, gst::MessageType::Error],
    );
    match msg.as_ref().map(|m| m.view()) {
        Some(gst::MessageView::Eos(_)) => Ok(()),
        Some(gst::MessageView::Error(e)) => Err(e.error().to_string()),
        _ => Err(format!("no output within {PROBE_TIMEOUT:?}")),
    }
}
