//! Where an fMP4 ladder's renditions start their fragments (one fragment is one HLS segment):
//! decided once, for every rendition. The video leads: at the parser, before the tee, a key frame
//! (or, when every rung is encoded, any frame) at least a planned length after the last cut
//! starts the next fragment. Each muxer (`cmafmux`/`isofmp4mux` with `manual-split`) is told to
//! split by a `FMP4MuxSplitNow` event sent just before the first frame of each cut: a video
//! key frame at the cut, the audio frame nearest it. So fragment n of every rendition starts at
//! the same moment, within one audio frame, and the renditions switch by media sequence number.
//! Without video (radio) the shared AAC leads instead.
//!
//! An audio frame can reach its muxer before the parser has read the picture of that moment (a
//! transport stream may carry the sound ahead of the picture), and then the cut there is not
//! decided yet: an audio rendition waits, bounded, until the leader has read past its frame; one
//! that waited in vain stops waiting until the leader is ahead again, so a stalled picture never
//! holds the sound back.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::Duration;

use gstreamer as gst;
use gstreamer::prelude::*;

use super::keyframes::{KeyFrameTimes, SegmentPlan, running_time};

/// How long an audio rendition waits for the leader to read past one of its frames.
const MOST_WAIT: Duration = Duration::from_millis(500);
/// Cuts remembered for renditions behind the leader.
const CUTS_KEPT: usize = 256;
/// A key frame this close before the planned length still ends the fragment (frame timing;
/// as the TS segmenter's): a source with key frames every 480 ms keeps 500 ms segments.
const SLACK: u64 = 50_000_000;

/// The cuts the leader decided, as running times (nanoseconds). Pure.
#[derive(Debug, Clone)]
pub(crate) struct CutList {
    plan: SegmentPlan,
    /// Index of `cuts[0]` over the session (cut 0 starts the first fragment).
    first: u64,
    cuts: VecDeque<u64>,
    /// The latest running time the leader has read.
    reached: Option<u64>,
}

impl CutList {
    pub(crate) fn new(plan: SegmentPlan) -> Self {
        Self {
            plan,
            first: 0,
            cuts: VecDeque::new(),
            reached: None,
        }
    }

    /// The leader read a frame at `at`; `may_cut` when a fragment may start on it. Returns
    /// whether one does. A frame within `slack` of the planned length counts (frame timing).
    pub(crate) fn offer(&mut self, at: u64, may_cut: bool, slack: u64) -> bool {
        self.reached = Some(self.reached.map_or(at, |r| r.max(at)));
        if !may_cut {
            return false;
        }
        let count = self.first + self.cuts.len() as u64;
        let due = match self.cuts.back() {
            None => true,
            Some(&last) => {
                let length = self.plan.duration_of(count - 1).as_nanos() as u64;
                at + slack >= last + length
            }
        };
        if due {
            self.cuts.push_back(at);
            while self.cuts.len() > CUTS_KEPT {
                self.cuts.pop_front();
                self.first += 1;
            }
        }
        due
    }

    /// Whether the leader has read as far as `at`.
    pub(crate) fn covers(&self, at: u64) -> bool {
        self.reached.is_some_and(|r| r >= at)
    }

    /// Whether a rendition whose next cut to make is `next` splits before its frame at `at`
    /// (lasting `half` either side, for the nearest frame): the next cut's index after it.
    pub(crate) fn split_before(&self, next: u64, at: u64, half: u64) -> Option<u64> {
        let mut index = next.max(self.first).max(1);
        let mut split = false;
        while let Some(&cut) = usize::try_from(index - self.first).ok().and_then(|i| self.cuts.get(i)) {
            if at + half < cut {
                break;
            }
            split = true;
            index += 1;
        }
        split.then_some(index)
    }
}

/// The cut list shared by the graph's probes, with a wake-up for renditions waiting on it.
#[derive(Debug)]
pub(crate) struct CutClock {
    list: Mutex<CutList>,
    moved: Condvar,
}

impl CutClock {
    pub(crate) fn new(plan: SegmentPlan) -> Arc<Self> {
        Arc::new(Self {
            list: Mutex::new(CutList::new(plan)),
            moved: Condvar::new(),
        })
    }

    fn offer(&self, at: u64, may_cut: bool, slack: u64) -> bool {
        let cut = self
            .list
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .offer(at, may_cut, slack);
        self.moved.notify_all();
        cut
    }
}

/// The leader: on the pad in front of the video tee, every frame moves the clock; key frames
/// (any frame when `every_frame`, every rung being encoded) may start a fragment. Each cut goes
/// to the encoders' key-frame requests, `wanted`.
pub(crate) fn lead_on_video(pad: &gst::Pad, clock: &Arc<CutClock>, every_frame: bool, wanted: Vec<KeyFrameTimes>) {
    let clock = Arc::clone(clock);
    pad.add_probe(gst::PadProbeType::BUFFER, move |pad, info| {
        let Some(buffer) = info.buffer() else {
            return gst::PadProbeReturn::Ok;
        };
        let Some(running) = running_time(pad, buffer) else {
            return gst::PadProbeReturn::Ok;
        };
        let key = every_frame || !buffer.flags().contains(gst::BufferFlags::DELTA_UNIT);
        // Any frame may start a fragment: the one nearest the planned length does.
        let slack = match buffer.duration() {
            Some(frame) if every_frame => frame.nseconds() / 2,
            _ => SLACK,
        };
        if clock.offer(running.nseconds(), key, slack) {
            for times in &wanted {
                times.lock().unwrap_or_else(PoisonError::into_inner).push_back(running);
            }
        }
        gst::PadProbeReturn::Ok
    });
}

/// How a muxer's input follows the clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Follow {
    /// A video rung: splits at key frames on a cut.
    Video,
    /// An audio rendition while there is video: waits for the leader, splits at the frame
    /// nearest a cut.
    Audio,
    /// The shared AAC without video: it leads.
    LeadAudio,
}

/// Splits the muxer behind `pad` (the pad that feeds it) where the clock cuts.
pub(crate) fn follow(pad: &gst::Pad, clock: &Arc<CutClock>, how: Follow) {
    let clock = Arc::clone(clock);
    // (the next cut to split at (cut 0 starts the first fragment), whether waiting has been
    // given up until the leader is ahead)
    let state = Mutex::new((1u64, false));
    pad.add_probe(gst::PadProbeType::BUFFER, move |pad, info| {
        let Some(buffer) = info.buffer() else {
            return gst::PadProbeReturn::Ok;
        };
        let Some(running) = running_time(pad, buffer) else {
            return gst::PadProbeReturn::Ok;
        };
        let at = running.nseconds();
        let half = buffer.duration().map_or(0, |d| d.nseconds() / 2);
        let mut state = state.lock().unwrap_or_else(PoisonError::into_inner);
        let split = match how {
            Follow::LeadAudio => {
                let cut = clock.offer(at, true, SLACK);
                // The first cut starts the first fragment: nothing to split.
                let split = cut && state.1;
                state.1 |= cut;
                split
            }
            Follow::Video if buffer.flags().contains(gst::BufferFlags::DELTA_UNIT) => false,
            Follow::Video | Follow::Audio => {
                let mut list = clock.list.lock().unwrap_or_else(PoisonError::into_inner);
                if how == Follow::Audio {
                    if list.covers(at) {
                        state.1 = false;
                    } else if !state.1 {
                        let (waited, timeout) = clock
                            .moved
                            .wait_timeout_while(list, MOST_WAIT, |l| !l.covers(at))
                            .unwrap_or_else(PoisonError::into_inner);
                        list = waited;
                        state.1 = timeout.timed_out();
                    }
                }
                match list.split_before(state.0, at, half) {
                    Some(next) => {
                        state.0 = next;
                        true
                    }
                    None => false,
                }
            }
        };
        drop(state);
        if split {
            let event = gst::event::CustomDownstream::new(gst::Structure::new_empty("FMP4MuxSplitNow"));
            pad.push_event(event);
        }
        gst::PadProbeReturn::Ok
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    fn plan() -> SegmentPlan {
        SegmentPlan::new(vec![Duration::from_millis(500); 2], Duration::from_secs(1))
    }

    #[test]
    fn the_leader_cuts_at_the_first_key_frame_a_planned_length_on() {
        let mut list = CutList::new(plan());
        // Key frames every 240 ms (copied H.264 with short GOPs), frames every 40 ms.
        let cuts: Vec<u64> = (0..80)
            .map(|n| n * 40 * MS)
            .filter(|&at| list.offer(at, at % (240 * MS) == 0, 20 * MS))
            .map(|at| at / MS)
            .collect();
        // 500 ms, 500 ms, then 1 s: each at the first key frame at or past the length.
        assert_eq!(cuts, [0, 480, 960, 2160]);
        assert!(list.covers(3160 * MS) && !list.covers(3200 * MS));
    }

    #[test]
    fn followers_split_at_the_cuts_only() {
        let mut list = CutList::new(plan());
        for n in 0..60 {
            list.offer(n * 40 * MS, true, 20 * MS);
        }
        // Cuts at 0, 480 (the first frame within 20 ms of 500 ms), 960, 1960 ...
        let mut next = 1;
        let mut splits = Vec::new();
        // An audio rendition, 21.333 ms frames starting 7 ms off the video.
        for n in 0..110u64 {
            let at = 7 * MS + n * 21_333_333;
            if let Some(after) = list.split_before(next, at, 10_666_666) {
                next = after;
                splits.push(at / MS);
            }
        }
        let cuts: Vec<u64> = list.cuts.iter().map(|c| c / MS).collect();
        assert_eq!(cuts[..4], [0, 480, 960, 1960]);
        assert_eq!(splits.len(), 3, "no split at cut 0, one at each later cut: {splits:?}");
        for (split, cut) in splits.iter().zip(&cuts[1..]) {
            assert!(
                split.abs_diff(*cut) <= 11,
                "audio split {split} ms is the frame nearest {cut} ms"
            );
        }
        // A video follower that missed a cut's key frame splits at its next key frame, once.
        assert_eq!(list.split_before(1, 1100 * MS, 0), Some(3));
        assert_eq!(list.split_before(3, 1100 * MS, 0), None);
    }
}
