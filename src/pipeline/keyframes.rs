//! Where HLS segments end, and key frames to match: the plan (a few short segments first, for
//! a fast start, then the target length) and a probe that asks a video encoder for a key frame
//! at each planned boundary, so that every cut of the session's segmenter lands on an IDR.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use gstreamer as gst;
use gstreamer::prelude::*;

/// Segment lengths over a session's life.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentPlan {
    first: Vec<Duration>,
    target: Duration,
}

impl SegmentPlan {
    /// `first` are the lengths of the first segments; every later one is `target` long.
    pub fn new(first: Vec<Duration>, target: Duration) -> Self {
        Self { first, target }
    }

    /// The planned length of segment `index` (0 is the session's first).
    pub fn duration_of(&self, index: u64) -> Duration {
        usize::try_from(index)
            .ok()
            .and_then(|i| self.first.get(i).copied())
            .unwrap_or(self.target)
    }

    /// The first boundary after `elapsed` (time since the first segment began).
    pub fn next_boundary(&self, elapsed: Duration) -> Duration {
        let mut at = Duration::ZERO;
        for length in &self.first {
            at += *length;
            if at > elapsed {
                return at;
            }
        }
        let target = self.target.max(Duration::from_millis(1));
        let periods = (elapsed - at).as_nanos() / target.as_nanos() + 1;
        at + target * u32::try_from(periods).unwrap_or(u32::MAX)
    }
}

/// Asks every video encoder in `bin` for a key frame at each boundary of `plan`, counted from
/// the encoder's first frame. Returns how many encoders it found.
pub(crate) fn force_key_units(bin: &gst::Bin, plan: &SegmentPlan) -> usize {
    force_key_units_paced(bin, plan, None)
}

/// [`force_key_units`], and with `pace` each encoder gets at most one frame per `pace` (see
/// [`Pace`]).
pub(crate) fn force_key_units_paced(bin: &gst::Bin, plan: &SegmentPlan, pace: Option<Duration>) -> usize {
    let encoders = video_encoders(bin);
    for encoder in &encoders {
        if let Some(pad) = encoder.static_pad("sink") {
            request_on_plan(&pad, plan, pace.map(Pace::new));
        }
    }
    encoders.len()
}

/// What a buffer probe returns to drop the buffer: `Handled`, with which gstreamer-rs releases
/// it. `Drop` made GStreamer 1.22 log `gst_mini_object_unref: assertion 'mini_object != NULL'
/// failed` for every dropped frame (50 a second in a ladder, found with G_DEBUG=fatal-criticals).
pub(crate) const DROP_BUFFER: gst::PadProbeReturn = gst::PadProbeReturn::Handled;

/// A lower frame rate for an encoder without moving its key frames: a frame is kept when a key
/// frame is due on it, or when it comes at least three quarters of the interval after the last
/// kept one (every other frame of 50p for 25 frames a second); the others are dropped before
/// the encoder. The encoder is told the lower rate by its caps (`capssetter` in front of it).
#[derive(Debug)]
pub(crate) struct Pace {
    interval: gst::ClockTime,
    last: Mutex<Option<gst::ClockTime>>,
}

impl Pace {
    pub(crate) fn new(interval: Duration) -> Self {
        Self {
            interval: gst::ClockTime::from_nseconds(interval.as_nanos() as u64),
            last: Mutex::new(None),
        }
    }

    /// Whether the frame at `running` goes to the encoder.
    fn keep(&self, running: gst::ClockTime, key_frame_due: bool) -> bool {
        let mut last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        let keep = key_frame_due
            || last.is_none_or(|l| running.saturating_sub(l).nseconds() * 4 >= self.interval.nseconds() * 3);
        if keep {
            *last = Some(running);
        }
        keep
    }
}

/// Running times at which an encoder is to make a key frame, in order; filled by whoever
/// decides them (the source's key frames of a ladder with a copied rung).
pub(crate) type KeyFrameTimes = Arc<Mutex<VecDeque<gst::ClockTime>>>;

/// Asks every video encoder in `bin` for a key frame at each running time put into the
/// returned queues (one per encoder): at the first frame at or past it.
pub(crate) fn key_frames_on_request(bin: &gst::Bin, pace: Option<Duration>) -> Vec<KeyFrameTimes> {
    let mut queues = Vec::new();
    for encoder in video_encoders(bin) {
        let Some(pad) = encoder.static_pad("sink") else {
            continue;
        };
        let times: KeyFrameTimes = Arc::default();
        let wanted = Arc::clone(&times);
        on_each_frame(&pad, pace.map(Pace::new), move |running| {
            let mut wanted = wanted.lock().unwrap_or_else(PoisonError::into_inner);
            let mut due = false;
            while wanted.front().is_some_and(|t| *t <= running) {
                wanted.pop_front();
                due = true;
            }
            due
        });
        queues.push(times);
    }
    queues
}

fn video_encoders(bin: &gst::Bin) -> Vec<gst::Element> {
    bin.iterate_recurse()
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.factory().is_some_and(|f| f.klass().contains("Encoder/Video")))
        .collect()
}

/// Asks the encoder behind `pad` (its sink pad) for a key frame at each boundary of `plan`,
/// counted from its first frame.
fn request_on_plan(pad: &gst::Pad, plan: &SegmentPlan, pace: Option<Pace>) {
    let plan = plan.clone();
    // (running time of the first frame, the next boundary after it).
    let mut state: Option<(gst::ClockTime, Duration)> = None;
    on_each_frame(pad, pace, move |running| {
        let (first, next) = state.get_or_insert((running, plan.next_boundary(Duration::ZERO)));
        let elapsed = Duration::from_nanos(running.saturating_sub(*first).nseconds());
        let due = elapsed >= *next;
        if due {
            *next = plan.next_boundary(elapsed);
        }
        due
    });
}

/// The probe on an encoder's sink pad that both ways of asking for key frames share: `due`
/// says, for each frame's running time, whether a key frame is due on it; with `pace`, frames
/// off the cadence are dropped (never one a key frame is due on); a due frame gets a
/// force-key-unit request just before it, except the encoder's first frame, which is a key
/// frame anyway (a request there would also stop GstVideoEncoder from honouring any later one:
/// it remembers the first frame's request at a running time past every real one).
fn on_each_frame(pad: &gst::Pad, pace: Option<Pace>, due: impl FnMut(gst::ClockTime) -> bool + Send + 'static) {
    // One streaming thread calls the probe; the mutex only makes the closure `Sync`.
    let state = Mutex::new((due, true));
    pad.add_probe(gst::PadProbeType::BUFFER, move |pad, info| {
        let Some(running) = info.buffer().and_then(|b| running_time(pad, b)) else {
            return gst::PadProbeReturn::Ok;
        };
        let (due, first) = {
            let mut state = state.lock().unwrap_or_else(PoisonError::into_inner);
            let due = (state.0)(running);
            (due, std::mem::replace(&mut state.1, false))
        };
        if pace.as_ref().is_some_and(|p| !p.keep(running, due)) {
            return DROP_BUFFER;
        }
        // Lock dropped: the encoder takes the request before this frame (GstVideoEncoder
        // keeps it until a frame at or past its running time).
        if due && !first {
            pad.send_event(force_key_unit(running));
        }
        gst::PadProbeReturn::Ok
    });
}

/// The running time of `buffer` on `pad`, from the pad's segment.
pub(crate) fn running_time(pad: &gst::Pad, buffer: &gst::BufferRef) -> Option<gst::ClockTime> {
    let segment = pad.sticky_event::<gst::event::Segment>(0)?;
    let segment = segment.segment().downcast_ref::<gst::format::Time>()?.clone();
    segment.to_running_time(buffer.pts()?)
}

/// GStreamer's downstream force-key-unit event (as `gst_video_event_new_downstream_force_key_unit`
/// makes it), with headers so that the key frame carries SPS and PPS.
pub(crate) fn force_key_unit(running: gst::ClockTime) -> gst::Event {
    let structure = gst::Structure::builder("GstForceKeyUnit")
        .field("timestamp", u64::MAX)
        .field("stream-time", u64::MAX)
        .field("running-time", running.nseconds())
        .field("all-headers", true)
        .field("count", 0u32)
        .build();
    gst::event::CustomDownstream::new(structure)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn short_segments_first_then_the_target() {
        let plan = SegmentPlan::new(vec![ms(300), ms(300), ms(400)], ms(1000));
        let lengths: Vec<Duration> = (0..5).map(|i| plan.duration_of(i)).collect();
        assert_eq!(lengths, [ms(300), ms(300), ms(400), ms(1000), ms(1000)]);
        let boundaries: Vec<Duration> = [0, 299, 300, 650, 999, 1000, 1999, 2000, 2500]
            .iter()
            .map(|&e| plan.next_boundary(ms(e)))
            .collect();
        assert_eq!(
            boundaries,
            [
                ms(300),
                ms(300),
                ms(600),
                ms(1000),
                ms(1000),
                ms(2000),
                ms(2000),
                ms(3000),
                ms(3000)
            ]
        );
    }

    #[test]
    fn a_plan_without_short_segments() {
        let plan = SegmentPlan::new(Vec::new(), ms(2000));
        assert_eq!(plan.duration_of(0), ms(2000));
        assert_eq!(plan.next_boundary(Duration::ZERO), ms(2000));
        assert_eq!(plan.next_boundary(ms(4000)), ms(6000));
    }

    #[test]
    fn encoders_get_key_frames_at_the_boundaries() {
        if gst::init().is_err() || gst::ElementFactory::find("x264enc").is_none() {
            eprintln!("SKIPPED encoders_get_key_frames_at_the_boundaries: no x264enc here");
            return;
        }
        // 50 fps for 3 s; the encoder's own key frames are 10 s apart, so every other key frame
        // comes from the plan.
        let pipeline = gst::parse::launch(
            "videotestsrc num-buffers=150 ! video/x-raw,format=I420,width=160,height=90,framerate=50/1 \
             ! x264enc key-int-max=500 bframes=0 tune=zerolatency speed-preset=ultrafast \
             ! h264parse config-interval=-1 ! video/x-h264,stream-format=byte-stream,alignment=au \
             ! appsink name=sink sync=false",
        )
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
        let plan = SegmentPlan::new(vec![ms(300), ms(300), ms(400)], ms(1000));
        assert_eq!(force_key_units(pipeline.upcast_ref(), &plan), 1);
        let sink = pipeline.by_name("sink").unwrap();
        let guard = super::super::PipelineGuard::new(pipeline.clone());
        guard.pipeline().set_state(gst::State::Playing).unwrap();
        let mut keys = Vec::new();
        let mut idrs = Vec::new();
        let appsink = sink.downcast::<gstreamer_app::AppSink>().unwrap();
        let mut first = None;
        while let Ok(sample) = appsink.pull_sample() {
            let buffer = sample.buffer().unwrap();
            let pts = buffer.pts().unwrap().mseconds();
            let at = pts - *first.get_or_insert(pts);
            if !buffer.flags().contains(gst::BufferFlags::DELTA_UNIT) {
                keys.push(at);
            }
            // NAL unit types after each start code: 5 is an IDR slice, 7 a sequence parameter set.
            let map = buffer.map_readable().unwrap();
            let types: Vec<u8> = map
                .windows(4)
                .filter(|w| w[..3] == [0, 0, 1])
                .map(|w| w[3] & 0x1F)
                .collect();
            if types.contains(&5) {
                assert!(types.contains(&7), "an IDR at {at} ms carries its SPS: {types:?}");
                idrs.push(at);
            }
        }
        assert_eq!(keys, [0, 300, 600, 1000, 2000], "key frames at the plan's boundaries");
        assert_eq!(idrs, keys, "every key frame is an IDR");
    }

    #[test]
    fn a_paced_encoder_gets_every_other_frame_and_every_key_frame_moment() {
        let pace = Pace::new(ms(40));
        let frame = |n: u64| gst::ClockTime::from_mseconds(1_000 + n * 20);
        // 50p into 25 a second; a key frame is due on frame 25 (odd: off the cadence).
        let kept: Vec<u64> = (0..30).filter(|&n| pace.keep(frame(n), n == 25)).collect();
        assert_eq!(
            kept,
            [0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 25, 27, 29],
            "the cadence restarts at the key frame"
        );
        let all = Pace::new(ms(20));
        assert!((0..10).all(|n| all.keep(frame(n), false)), "at the picture's own rate");
    }
}
