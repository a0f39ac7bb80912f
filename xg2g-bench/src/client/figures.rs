//! What both clients measure: media time against wall time, and the waits between new data.

use std::time::Duration;

/// A speed over a shorter stretch of wall time is noise, not a measurement.
const MIN_SPEED_SPAN: Duration = Duration::from_secs(1);

/// Media time against wall time, from the first sample inside the window to the last.
#[derive(Debug)]
pub(crate) struct SpeedMeter {
    window_start: Duration,
    first: Option<(Duration, Duration)>,
    last: Option<(Duration, Duration)>,
}

impl SpeedMeter {
    pub(crate) fn new(window_start: Duration) -> Self {
        Self {
            window_start,
            first: None,
            last: None,
        }
    }

    /// `media`: media time received in all by wall offset `at`.
    pub(crate) fn sample(&mut self, at: Duration, media: Duration) {
        if at < self.window_start {
            return;
        }
        self.first.get_or_insert((at, media));
        self.last = Some((at, media));
    }

    pub(crate) fn speed(&self) -> Option<f64> {
        let ((first_at, first_media), (last_at, last_media)) = (self.first?, self.last?);
        let span = last_at.checked_sub(first_at)?;
        (span >= MIN_SPEED_SPAN).then(|| last_media.saturating_sub(first_media).as_secs_f64() / span.as_secs_f64())
    }
}

/// Waits between arrivals of new data, from the first on: a wait longer than what the previous
/// arrival allowed is a stall.
#[derive(Debug, Default)]
pub(crate) struct Waits {
    last: Option<(Duration, Duration)>,
    pub stalls: u32,
    pub longest: Duration,
    /// When the first few stalls began, from the client's start.
    pub stalled_at: Vec<Duration>,
}

impl Waits {
    /// New data at wall offset `at`; the wait that follows may last `allowed`.
    pub(crate) fn data(&mut self, at: Duration, allowed: Duration) {
        self.close(at);
        self.last = Some((at, allowed));
    }

    /// New data at `at` that was `took` in the making (an HLS segment: its duration plus a
    /// poll and a half). The wait it ends may last that long too: a long segment after a short
    /// one (FFmpeg cuts at the source's key frames) is no stall.
    pub(crate) fn data_after(&mut self, at: Duration, took: Duration, allowed: Duration) {
        if let Some((since, before)) = self.last {
            self.last = Some((since, before.max(took)));
        }
        self.data(at, allowed);
    }

    /// The run ended at `at`: the wait still open counts too.
    pub(crate) fn finish(&mut self, at: Duration) {
        self.close(at);
        self.last = None;
    }

    fn close(&mut self, at: Duration) {
        if let Some((since, allowed)) = self.last {
            let wait = at.saturating_sub(since);
            self.longest = self.longest.max(wait);
            if wait > allowed {
                self.stalls += 1;
                if self.stalled_at.len() < 5 {
                    self.stalled_at.push(since);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn speed_compares_media_and_wall_time_inside_the_window() {
        let ms = Duration::from_millis;
        let mut meter = SpeedMeter::new(ms(1000));
        meter.sample(ms(0), ms(0));
        meter.sample(ms(900), ms(5000));
        assert_eq!(meter.speed(), None, "nothing inside the window yet");
        meter.sample(ms(1000), ms(5000));
        meter.sample(ms(1500), ms(5500));
        assert_eq!(meter.speed(), None, "half a second is too short");
        meter.sample(ms(3000), ms(7000));
        assert_eq!(meter.speed(), Some(1.0));
        meter.sample(ms(5000), ms(7500));
        assert_eq!(meter.speed(), Some(0.625), "2.5 s of media in 4 s");
    }

    #[test]
    fn waits_count_stalls_after_the_first_data() {
        let ms = Duration::from_millis;
        let segment = ms(2000);
        let mut waits = Waits::default();
        for at in [5000, 5040, 7040, 7080, 9500, 9600, 12000] {
            waits.data(ms(at), segment);
        }
        assert_eq!(waits.stalls, 2, "2.42 s and 2.4 s; exactly 2 s is none");
        assert_eq!(waits.longest, ms(2420));
        waits.finish(ms(13000));
        assert_eq!(waits.stalls, 2);
        waits.data(ms(14000), segment);
        waits.finish(ms(17000));
        assert_eq!(waits.stalls, 3, "an open wait at the end counts");
        assert_eq!(waits.longest, ms(3000));

        let mut hls = Waits::default();
        hls.data(ms(0), ms(1920) + ms(1000));
        hls.data(ms(2900), ms(2600) + ms(1000));
        hls.data(ms(6500), ms(1920) + ms(1000));
        hls.finish(ms(9000));
        assert_eq!(hls.stalls, 0, "each wait within its segment's allowance");
        hls.data(ms(9000), ms(1920) + ms(1000));
        hls.data(ms(12000), ms(1920) + ms(1000));
        assert_eq!(hls.stalls, 1);
        assert_eq!(hls.longest, ms(3600));

        // A 2.56 s segment after a 1.28 s one: 3.5 s is within its own duration plus a poll.
        let mut cut_at_key_frames = Waits::default();
        let poll = ms(1000);
        cut_at_key_frames.data_after(ms(0), ms(1280) + poll, ms(1280) + poll);
        cut_at_key_frames.data_after(ms(3500), ms(2560) + poll, ms(2560) + poll);
        assert_eq!(cut_at_key_frames.stalls, 0);
        // Longer than both allowances: a stall.
        cut_at_key_frames.data_after(ms(8000), ms(1280) + poll, ms(1280) + poll);
        assert_eq!(cut_at_key_frames.stalls, 1);
    }
}
