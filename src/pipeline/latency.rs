//! Transcode latency: pad probes time each buffer through a branch bin and post the samples,
//! batched, as bus element messages that the session's bus reader turns into a histogram.
//!
//! Buffers are matched by running time (the PTS through its pad's segment), not by raw PTS:
//! encoders may move timestamps and segment together (x264enc adds 1000 hours to both). The
//! bin's `sink` ghost pad remembers when each input arrived (the last [`RING`] buffers, never
//! more); its `src` ghost pad matches each output buffer to the input with the nearest running
//! time at or before its own, and the difference of the two arrival times is one sample. A
//! transcoder keeps timestamps, so most outputs match exactly; where they change (a deinterlacer
//! doubling the rate, an audio encoder re-framing 1152-sample MP2 frames into 1024-sample AAC
//! frames) the nearest earlier input is the one that carried the output's first sample. Outputs
//! without PTS or segment, outputs before every remembered input (encoder priming) and outputs
//! more than [`MAX_GAP_NS`] after their nearest input (a timestamp jump) are skipped, not
//! guessed.
//!
//! Samples are posted at most once per [`BATCH_INTERVAL_NS`] (earlier only when [`BATCH_MAX`]
//! are waiting), and what is left at EOS is posted before the EOS goes on, so every sample of a
//! stream that ends is on the bus before the pipeline's EOS message.

use std::sync::{Arc, Mutex, PoisonError};

use gstreamer as gst;
use gstreamer::prelude::*;

/// Name of the element message's structure.
pub(crate) const MESSAGE: &str = "xg2g-latency";
/// Input arrivals remembered per branch: ~5 s of 50 fps video or MP2 audio, past any queue.
const RING: usize = 256;
/// Least time between two messages of one branch (unless a batch is full).
const BATCH_INTERVAL_NS: u64 = 100_000_000;
/// Samples after which a batch is posted even before the interval has passed.
const BATCH_MAX: usize = 64;
/// An output more than this much stream time after its nearest earlier input is not matched.
const MAX_GAP_NS: u64 = 1_000_000_000;

/// One element message read back from the bus.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct LatencySamples {
    /// The name given to [`instrument`] (`video`, `audio`).
    pub branch: String,
    /// Factory of the encoder in the branch: the `encoder` label of the histogram.
    pub encoder: String,
    /// Seconds each buffer took through the branch, in output order.
    pub seconds: Vec<f64>,
}

/// Measures buffers through `bin` (its `sink` and `src` ghost pads) on the monotonic system
/// clock. Returns false, and adds nothing, when the bin has no encoder (a copied stream is no
/// transcode stage) or lacks either ghost pad.
pub(crate) fn instrument(bin: &gst::Bin, branch: &str) -> bool {
    let Some(encoder) = encoder_in(bin) else {
        tracing::debug!(branch, "No encoder in the branch; its latency is not measured.");
        return false;
    };
    attach(bin, branch, encoder, gst::SystemClock::obtain())
}

/// Reads a message posted by an instrumented branch; `None` for every other message.
pub(crate) fn read_latency(msg: &gst::Message) -> Option<LatencySamples> {
    let gst::MessageView::Element(element) = msg.view() else {
        return None;
    };
    let s = element.structure().filter(|s| s.name() == MESSAGE)?;
    Some(LatencySamples {
        branch: s.get::<&str>("branch").ok()?.to_owned(),
        encoder: s.get::<&str>("encoder").ok()?.to_owned(),
        seconds: s
            .get::<gst::ArrayRef>("seconds")
            .ok()?
            .iter()
            .filter_map(|v| v.get::<f64>().ok())
            .collect(),
    })
}

/// Factory name of the first encoder element in the bin, looking into child bins.
fn encoder_in(bin: &gst::Bin) -> Option<String> {
    bin.iterate_recurse()
        .into_iter()
        .filter_map(Result::ok)
        .find_map(|element| {
            let factory = element.factory()?;
            factory.klass().contains("Encoder").then(|| factory.name().to_string())
        })
}

/// What both probes of one branch share. The bin is not in here: probes live on its pads.
struct Shared {
    clock: gst::Clock,
    state: Mutex<State>,
}

impl Shared {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // Nothing under this lock can panic; a poisoned lock still holds consistent numbers.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn now(&self) -> u64 {
        self.clock.time().nseconds()
    }
}

type Segment = gst::FormattedSegment<gst::ClockTime>;

#[derive(Default)]
struct State {
    arrivals: Arrivals,
    batch: Batch,
    input: Option<Segment>,
    output: Option<Segment>,
}

/// A buffer's running time in nanoseconds, when it has a PTS inside a time segment.
fn running_time(segment: Option<&Segment>, buffer: &gst::BufferRef) -> Option<u64> {
    Some(segment?.to_running_time(buffer.pts()?)?.nseconds())
}

/// The time segment an event sets, if it is a segment event.
fn segment_of(event: &gst::EventRef) -> Option<Segment> {
    match event.view() {
        gst::EventView::Segment(e) => e.segment().downcast_ref::<gst::ClockTime>().cloned(),
        _ => None,
    }
}

impl State {
    fn arrive(&mut self, buffer: &gst::BufferRef, now: u64) {
        if let Some(t) = running_time(self.input.as_ref(), buffer) {
            self.arrivals.record(t, now);
        }
    }

    fn leave(&mut self, buffer: &gst::BufferRef, now: u64) {
        let t = running_time(self.output.as_ref(), buffer);
        if let Some(at) = t.and_then(|t| self.arrivals.arrival_for(t)) {
            self.batch.push(now.saturating_sub(at) as f64 / 1e9, now);
        }
    }
}

/// The probes, with a clock to read (the system clock, or a test clock).
fn attach(bin: &gst::Bin, branch: &str, encoder: String, clock: gst::Clock) -> bool {
    let (Some(sink), Some(src)) = (bin.static_pad("sink"), bin.static_pad("src")) else {
        tracing::debug!(branch, "Branch without sink and src pads; its latency is not measured.");
        return false;
    };
    let shared = Arc::new(Shared {
        clock,
        state: Mutex::new(State::default()),
    });

    let data = gst::PadProbeType::BUFFER | gst::PadProbeType::BUFFER_LIST | gst::PadProbeType::EVENT_DOWNSTREAM;
    let input = Arc::clone(&shared);
    sink.add_probe(data, move |_, info| {
        let now = input.now();
        let mut state = input.state();
        match &info.data {
            Some(gst::PadProbeData::Buffer(buffer)) => state.arrive(buffer, now),
            Some(gst::PadProbeData::BufferList(list)) => list.iter().for_each(|b| state.arrive(b, now)),
            Some(gst::PadProbeData::Event(event)) => {
                if let Some(segment) = segment_of(event) {
                    state.input = Some(segment);
                }
            }
            _ => {}
        }
        gst::PadProbeReturn::Ok
    });

    let (weak, branch) = (bin.downgrade(), branch.to_owned());
    src.add_probe(data, move |_, info| {
        let now = shared.now();
        let ready = {
            let mut state = shared.state();
            match &info.data {
                Some(gst::PadProbeData::Buffer(buffer)) => {
                    state.leave(buffer, now);
                    state.batch.take_due(now)
                }
                Some(gst::PadProbeData::BufferList(list)) => {
                    list.iter().for_each(|b| state.leave(b, now));
                    state.batch.take_due(now)
                }
                Some(gst::PadProbeData::Event(event)) if event.type_() == gst::EventType::Eos => state.batch.take(),
                Some(gst::PadProbeData::Event(event)) => {
                    if let Some(segment) = segment_of(event) {
                        state.output = Some(segment);
                    }
                    None
                }
                _ => None,
            }
        };
        // Posted with the lock released.
        if let (Some(samples), Some(bin)) = (ready, weak.upgrade()) {
            post(&bin, &branch, &encoder, samples);
        }
        gst::PadProbeReturn::Ok
    });
    true
}

fn post(bin: &gst::Bin, branch: &str, encoder: &str, samples: Vec<f64>) {
    let structure = gst::Structure::builder(MESSAGE)
        .field("branch", branch)
        .field("encoder", encoder)
        .field("seconds", gst::Array::new(samples))
        .build();
    // Fails only when the bin is in no pipeline: nobody would read the figures.
    let _ = bin.post_message(gst::message::Element::builder(structure).src(bin).build());
}

/// Arrival times (ns) of the last [`RING`] inputs by running time (ns), oldest overwritten first.
struct Arrivals {
    entries: [(u64, u64); RING],
    len: usize,
    next: usize,
}

impl Default for Arrivals {
    fn default() -> Self {
        Self {
            entries: [(0, 0); RING],
            len: 0,
            next: 0,
        }
    }
}

impl Arrivals {
    fn record(&mut self, t: u64, at: u64) {
        self.entries[self.next] = (t, at);
        self.next = (self.next + 1) % RING;
        self.len = (self.len + 1).min(RING);
    }

    /// Arrival of the input with the greatest running time at or before `t` (the most recent
    /// arrival among equal times). Inputs may come in decode order, so every entry is looked
    /// at, newest first, stopping at an exact match.
    fn arrival_for(&self, t: u64) -> Option<u64> {
        let mut best: Option<(u64, u64)> = None;
        for i in 1..=self.len {
            let (input, at) = self.entries[(self.next + RING - i) % RING];
            if input == t {
                return Some(at);
            }
            if input < t && best.is_none_or(|(b, _)| input > b) {
                best = Some((input, at));
            }
        }
        best.filter(|(input, _)| t - input <= MAX_GAP_NS).map(|(_, at)| at)
    }
}

/// Samples waiting to be posted, and when the first of them was taken (ns).
#[derive(Default)]
struct Batch {
    samples: Vec<f64>,
    since: u64,
}

impl Batch {
    fn push(&mut self, seconds: f64, now: u64) {
        if self.samples.is_empty() {
            self.since = now;
            self.samples.reserve(BATCH_MAX);
        }
        self.samples.push(seconds);
    }

    /// The samples, once [`BATCH_INTERVAL_NS`] has passed since the first or the batch is full.
    fn take_due(&mut self, now: u64) -> Option<Vec<f64>> {
        let due = self.samples.len() >= BATCH_MAX
            || (!self.samples.is_empty() && now.saturating_sub(self.since) >= BATCH_INTERVAL_NS);
        if due { self.take() } else { None }
    }

    fn take(&mut self) -> Option<Vec<f64>> {
        (!self.samples.is_empty()).then(|| std::mem::take(&mut self.samples))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::{Duration, Instant};

    use gstreamer_check as gst_check;

    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn outputs_match_the_nearest_earlier_input() {
        let mut a = Arrivals::default();
        // Decode order, as tsdemux hands out video with B-frames: I0 P3 B1 B2.
        for (pts, at) in [(0, 100), (3 * 40, 110), (40, 120), (2 * 40, 130)] {
            a.record(pts * MS, at);
        }
        assert_eq!(a.arrival_for(40 * MS), Some(120), "an exact time wins");
        assert_eq!(
            a.arrival_for(60 * MS),
            Some(120),
            "a doubled field rate maps to its frame"
        );
        assert_eq!(a.arrival_for(500 * MS), Some(110), "later than every input: the newest");
        a.record(0, 140);
        assert_eq!(a.arrival_for(0), Some(140), "equal times: the most recent arrival");
        assert_eq!(a.arrival_for(121 * MS + MAX_GAP_NS), None, "too far after any input");
        assert_eq!(Arrivals::default().arrival_for(0), None);
        let mut late = Arrivals::default();
        late.record(1_000 * MS, 1);
        assert_eq!(late.arrival_for(999 * MS), None, "before every input (encoder priming)");
    }

    #[test]
    fn arrivals_are_bounded_to_the_ring() {
        let mut a = Arrivals::default();
        for i in 0..(RING as u64 + 44) {
            a.record(i * 20 * MS, i);
        }
        assert_eq!(a.len, RING);
        assert_eq!(a.arrival_for(43 * 20 * MS), None, "overwritten");
        assert_eq!(a.arrival_for(44 * 20 * MS), Some(44), "the oldest kept");
        assert_eq!(a.arrival_for((RING as u64 + 43) * 20 * MS), Some(RING as u64 + 43));
    }

    #[test]
    fn batches_wait_for_the_interval_or_a_full_batch() {
        let mut b = Batch::default();
        assert_eq!(b.take_due(0), None);
        b.push(0.5, 10 * MS);
        b.push(0.25, 60 * MS);
        assert_eq!(b.take_due(109 * MS), None, "less than 100 ms since the first sample");
        assert_eq!(b.take_due(110 * MS), Some(vec![0.5, 0.25]));
        assert_eq!(b.take_due(500 * MS), None, "empty");
        for i in 0..BATCH_MAX {
            b.push(i as f64, 600 * MS);
        }
        assert_eq!(b.take_due(600 * MS).map(|s| s.len()), Some(BATCH_MAX), "full");
        b.push(1.0, 700 * MS);
        assert_eq!(b.take(), Some(vec![1.0]), "EOS takes what is left");
        assert_eq!(b.take(), None);
    }

    #[test]
    fn read_latency_reads_only_its_own_messages() {
        gst::init().unwrap();
        let ours = gst::Structure::builder(MESSAGE)
            .field("branch", "audio")
            .field("encoder", "avenc_aac")
            .field("seconds", gst::Array::new([0.012f64, 0.034]))
            .build();
        assert_eq!(
            read_latency(&gst::message::Element::new(ours)),
            Some(LatencySamples {
                branch: "audio".into(),
                encoder: "avenc_aac".into(),
                seconds: vec![0.012, 0.034],
            })
        );
        let other = gst::Structure::builder("level").field("branch", "audio").build();
        assert_eq!(read_latency(&gst::message::Element::new(other)), None);
        let incomplete = gst::Structure::builder(MESSAGE).field("branch", "audio").build();
        assert_eq!(read_latency(&gst::message::Element::new(incomplete)), None);
        assert_eq!(read_latency(&gst::message::Eos::new()), None);
    }

    #[test]
    fn a_test_clock_gives_exact_samples_and_batches() {
        gst::init().unwrap();
        let (pipeline, bin) = pipeline(
            "audiotestsrc num-buffers=20",
            "identity name=work",
            "fakesink sync=false",
        );
        let clock = gst_check::TestClock::new();
        // Every buffer takes 7 ms of test-clock time between the bin's two pads.
        let advancing = clock.clone();
        bin.by_name("work").unwrap().connect("handoff", false, move |_| {
            advancing.advance_time(7 * MS as gst::ClockTimeDiff);
            None
        });
        assert!(attach(&bin, "audio", "test".into(), clock.upcast()));
        let (messages, _) = run(&pipeline);
        // Samples leave at 7, 14, …, 140 ms; the first batch is due at 112 ms (16 samples,
        // 105 ms after the first), the other 4 wait for EOS.
        let sizes: Vec<usize> = messages.iter().map(|m| m.seconds.len()).collect();
        assert_eq!(sizes, [16, 4]);
        for m in &messages {
            assert_eq!((m.branch.as_str(), m.encoder.as_str()), ("audio", "test"));
            assert!(m.seconds.iter().all(|&s| s == 0.007), "{:?}", m.seconds);
        }
    }

    #[test]
    fn probes_hold_no_strong_reference_to_the_bin() {
        gst::init().unwrap();
        let (pipeline, bin) = pipeline("audiotestsrc", "identity", "fakesink");
        assert!(attach(&bin, "audio", "test".into(), gst::SystemClock::obtain()));
        let weak = bin.downgrade();
        drop((bin, pipeline));
        assert!(weak.upgrade().is_none(), "the probes kept the bin alive");
    }

    #[test]
    fn a_branch_without_an_encoder_is_not_instrumented() {
        gst::init().unwrap();
        let (_pipeline, bin) = pipeline("audiotestsrc", "queue ! audioconvert", "fakesink");
        assert!(!instrument(&bin, "audio"));
    }

    #[test]
    fn aac_branch_latency_is_measured() {
        gst::init().unwrap();
        let Some(found) = live_branch(
            "audio",
            "audiotestsrc is-live=true num-buffers=50 ! capsfilter caps=audio/x-raw,rate=48000,channels=2",
            "queue ! audioconvert ! audioresample ! audio/x-raw,format=F32LE,rate=48000,channels=2 \
             ! avenc_aac bitrate=192000 ! aacparse",
            "avenc_aac",
        ) else {
            return;
        };
        found.check("audio", "avenc_aac");
    }

    #[test]
    fn x264_720p_branch_latency_is_measured() {
        gst::init().unwrap();
        // The properties encoders.toml gives x264enc.
        let Some(found) = live_branch(
            "video",
            "videotestsrc is-live=true num-buffers=50 \
             ! capsfilter caps=video/x-raw,format=I420,width=1280,height=720,framerate=50/1",
            "queue ! x264enc speed-preset=veryfast tune=zerolatency bitrate=3000 vbv-buf-capacity=1000 \
             key-int-max=50 bframes=0 ! h264parse",
            "x264enc",
        ) else {
            return;
        };
        found.check("video", "x264enc");
    }

    /// `source ! branch ! sink`, the branch a bin with `sink` and `src` ghost pads as a
    /// session's branch is.
    fn pipeline(source: &str, branch: &str, sink: &str) -> (gst::Pipeline, gst::Bin) {
        let pipeline = gst::Pipeline::new();
        let parts = [source, branch, sink].map(|d| gst::parse::bin_from_description(d, true).unwrap());
        pipeline.add_many(&parts).unwrap();
        gst::Element::link_many(&parts).unwrap();
        let [_, bin, _] = parts;
        (pipeline, bin)
    }

    /// Runs to EOS (within a bounded time) and returns the latency messages and the run time.
    fn run(pipeline: &gst::Pipeline) -> (Vec<LatencySamples>, Duration) {
        let bus = pipeline.bus().unwrap();
        let started = Instant::now();
        pipeline.set_state(gst::State::Playing).unwrap();
        let deadline = started + Duration::from_secs(30);
        let mut found = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let msg = bus
                .timed_pop_filtered(
                    gst::ClockTime::from_nseconds(left.as_nanos() as u64),
                    &[
                        gst::MessageType::Element,
                        gst::MessageType::Eos,
                        gst::MessageType::Error,
                    ],
                )
                .expect("EOS within 30 s");
            match msg.view() {
                gst::MessageView::Eos(_) => break,
                gst::MessageView::Error(e) => panic!("pipeline error: {} ({:?})", e.error(), e.debug()),
                _ => found.extend(read_latency(&msg)),
            }
        }
        let elapsed = started.elapsed();
        pipeline.set_state(gst::State::Null).unwrap();
        (found, elapsed)
    }

    struct Measured {
        messages: Vec<LatencySamples>,
        elapsed: Duration,
        /// Output buffers whose running time is at or after the first input's (those that can match).
        matchable: usize,
        outputs: usize,
    }

    /// Runs a live pipeline with its middle instrumented; `None` (and a note) when an element
    /// is not installed here.
    fn live_branch(branch: &str, source: &str, graph: &str, encoder: &str) -> Option<Measured> {
        if gst::ElementFactory::find(encoder).is_none() {
            eprintln!("skipped: {encoder} is not installed here");
            return None;
        }
        let (pipeline, bin) = pipeline(source, graph, "fakesink sync=false");
        assert!(instrument(&bin, branch));
        // The test's own view of the pads (running times through the pads' sticky segments),
        // to know how many samples to expect.
        fn running(pad: &gst::Pad, info: &gst::PadProbeInfo) -> Option<u64> {
            let segment = pad.sticky_event::<gst::event::Segment>(0)?;
            running_time(segment.segment().downcast_ref::<gst::ClockTime>(), info.buffer()?)
        }
        let first_input = Arc::new(Mutex::new(None::<u64>));
        let seen = Arc::clone(&first_input);
        bin.static_pad("sink")
            .unwrap()
            .add_probe(gst::PadProbeType::BUFFER, move |pad, info| {
                if let Some(t) = running(pad, info) {
                    seen.lock().unwrap().get_or_insert(t);
                }
                gst::PadProbeReturn::Ok
            });
        let (outputs, matchable) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let (o, m) = (Arc::clone(&outputs), Arc::clone(&matchable));
        bin.static_pad("src")
            .unwrap()
            .add_probe(gst::PadProbeType::BUFFER, move |pad, info| {
                o.fetch_add(1, Ordering::Relaxed);
                let first = *first_input.lock().unwrap();
                if running(pad, info).zip(first).is_some_and(|(t, first)| t >= first) {
                    m.fetch_add(1, Ordering::Relaxed);
                }
                gst::PadProbeReturn::Ok
            });
        let (messages, elapsed) = run(&pipeline);
        Some(Measured {
            messages,
            elapsed,
            matchable: matchable.load(Ordering::Relaxed),
            outputs: outputs.load(Ordering::Relaxed),
        })
    }

    impl Measured {
        fn check(&self, branch: &str, encoder: &str) {
            let mut all: Vec<f64> = self.messages.iter().flat_map(|m| m.seconds.iter().copied()).collect();
            assert!(self.outputs > 0);
            assert_eq!(all.len(), self.matchable, "one sample per output that has an input");
            assert!(all.len() >= 40, "only {} samples", all.len());
            for m in &self.messages {
                assert_eq!((m.branch.as_str(), m.encoder.as_str()), (branch, encoder));
                assert!(m.seconds.len() <= BATCH_MAX);
            }
            assert!(all.iter().all(|&s| s > 0.0 && s < 1.0), "{all:?}");
            // Batches span at least 100 ms of the run, plus the one flushed at EOS.
            let bound = self.elapsed.as_millis() as usize / 100 + 1;
            assert!(
                self.messages.len() <= bound,
                "{} messages in {:?}",
                self.messages.len(),
                self.elapsed
            );
            all.sort_by(f64::total_cmp);
            let pct = |p: f64| all[((p * all.len() as f64).ceil() as usize).clamp(1, all.len()) - 1];
            println!(
                "{branch}/{encoder}: {} samples in {} messages over {:?}; P50 {:.1} ms, P95 {:.1} ms, max {:.1} ms",
                all.len(),
                self.messages.len(),
                self.elapsed,
                pct(0.5) * 1e3,
                pct(0.95) * 1e3,
                all[all.len() - 1] * 1e3,
            );
        }
    }
}
