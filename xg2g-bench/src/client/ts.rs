//! The TS client: one long GET read as it arrives, and the PCR in it turned into media time.

use std::time::Duration;

use futures_util::StreamExt;
use tokio::time::{Instant, timeout_at};
use xg2g::mpegts::{self, PACKET as TS_PACKET, SYNC as TS_SYNC};

use super::figures::{SpeedMeter, Waits};
use super::{ClientOutcome, Clock, describe};

/// Bytes of a TS packet the scanner reads: header, adaptation field length and flags, PCR.
const TS_HEADER: usize = 12;
/// The PCR counts 27 MHz ticks and wraps at 2^33 × 300.
const PCR_WRAP: u64 = (1 << 33) * 300;
/// A PCR step further ahead of the wall time than this is a discontinuity, not media.
const PCR_JUMP_SLACK: Duration = Duration::from_secs(5);

pub(super) async fn run_ts(
    http: &reqwest::Client,
    url: &str,
    clock: &Clock,
    segment: Duration,
    out: &mut ClientOutcome,
) {
    let sent = Instant::now();
    let response = match timeout_at(clock.end, http.get(url).send()).await {
        Err(_) => return out.error("no answer before the end of the run"),
        Ok(Err(e)) => return out.error(describe(&e)),
        Ok(Ok(response)) => response,
    };
    if !response.status().is_success() {
        return out.error(format!("HTTP {}", response.status().as_u16()));
    }
    let mut body = response.bytes_stream();
    let mut scanner = PcrScanner::default();
    let mut pcr_clock = PcrClock::default();
    let mut speed = SpeedMeter::new(clock.window_start);
    let mut waits = Waits::default();
    loop {
        match timeout_at(clock.end, body.next()).await {
            Ok(Some(Ok(chunk))) => {
                if chunk.is_empty() {
                    continue;
                }
                let (now, at) = clock.now();
                out.ttfb.get_or_insert(now.saturating_duration_since(sent));
                out.bytes += chunk.len() as u64;
                waits.data(at, segment);
                if let Some(pcr) = scanner.scan(&chunk) {
                    speed.sample(at, pcr_clock.sample(at, pcr));
                }
            }
            Ok(Some(Err(e))) => {
                out.error(format!("stream broke after {} bytes: {}", out.bytes, describe(&e)));
                break;
            }
            Ok(None) => {
                out.error(format!("stream ended after {} bytes", out.bytes));
                break;
            }
            Err(_) => {
                waits.finish(clock.now().1);
                break;
            }
        }
    }
    out.stalls = waits.stalls;
    out.longest_wait = waits.longest;
    out.stalled_at = waits.stalled_at;
    out.speed = speed.speed();
}

/// Finds the PCR in a transport stream fed in arbitrary chunks, without copying them: only the
/// header of a packet cut by a chunk boundary is kept. Loses and regains sync on 0x47.
#[derive(Debug, Default)]
pub(crate) struct PcrScanner {
    /// The first bytes of a packet cut by the chunk boundary.
    head: [u8; TS_HEADER],
    /// Bytes of that packet seen so far (0: none is cut).
    have: usize,
    /// The PID whose PCR is read: the first that carried one.
    pid: Option<u16>,
    /// Bytes skipped while looking for sync.
    pub skipped: u64,
}

impl PcrScanner {
    /// Scans one chunk; returns the last PCR (27 MHz ticks) it completed, if any.
    pub(crate) fn scan(&mut self, chunk: &[u8]) -> Option<u64> {
        let mut last = None;
        self.scan_each(chunk, |pcr| last = Some(pcr));
        last
    }

    /// Scans one chunk and hands every PCR it completes to `on_pcr`, in order. A packet counts
    /// once the sync byte of the next one confirms it, so a 0x47 inside a payload is no packet.
    pub(crate) fn scan_each(&mut self, chunk: &[u8], mut on_pcr: impl FnMut(u64)) {
        let mut i = 0;
        if self.have > 0 {
            let take = (TS_PACKET - self.have).min(chunk.len());
            if self.have < TS_HEADER {
                let n = (TS_HEADER - self.have).min(take);
                self.head[self.have..self.have + n].copy_from_slice(&chunk[..n]);
            }
            self.have += take;
            i = take;
            if self.have < TS_PACKET || i == chunk.len() {
                return;
            }
            self.have = 0;
            if chunk[i] == TS_SYNC {
                let head = self.head;
                if let Some(pcr) = self.pcr(&head) {
                    on_pcr(pcr);
                }
            } else {
                self.skipped += TS_PACKET as u64;
            }
        }
        while i < chunk.len() {
            let rest = &chunk[i..];
            if rest[0] != TS_SYNC {
                let skip = rest.iter().position(|&b| b == TS_SYNC).unwrap_or(rest.len());
                self.skipped += skip as u64;
                i += skip;
            } else if rest.len() <= TS_PACKET {
                let n = rest.len().min(TS_HEADER);
                self.head[..n].copy_from_slice(&rest[..n]);
                self.have = rest.len();
                break;
            } else if rest[TS_PACKET] != TS_SYNC {
                self.skipped += 1;
                i += 1;
            } else {
                if let Some(pcr) = self.pcr(&rest[..TS_HEADER]) {
                    on_pcr(pcr);
                }
                i += TS_PACKET;
            }
        }
    }

    fn pcr(&mut self, h: &[u8]) -> Option<u64> {
        if mpegts::transport_error(h) {
            return None;
        }
        let pcr = mpegts::pcr(h)?;
        let pid = mpegts::pid(h);
        (*self.pid.get_or_insert(pid) == pid).then_some(pcr)
    }
}

/// Media time from PCR samples taken at wall offsets. A step that goes back, or runs further
/// ahead of the wall time than [`PCR_JUMP_SLACK`], is a discontinuity and adds no media time;
/// the 33-bit wrap is not one.
#[derive(Debug, Default)]
pub(crate) struct PcrClock {
    last: Option<(Duration, u64)>,
    media: Duration,
}

impl PcrClock {
    /// Takes a PCR seen at wall offset `at`; returns the media time received so far.
    pub(crate) fn sample(&mut self, at: Duration, pcr: u64) -> Duration {
        if let Some((last_at, last_pcr)) = self.last {
            let ticks = (pcr % PCR_WRAP + PCR_WRAP - last_pcr % PCR_WRAP) % PCR_WRAP;
            let step = Duration::from_nanos(ticks * 1000 / 27);
            if step <= at.saturating_sub(last_at) + PCR_JUMP_SLACK {
                self.media += step;
            }
        }
        self.last = Some((at, pcr));
        self.media
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(pid: u16, pcr: Option<u64>) -> [u8; TS_PACKET] {
        let mut p = [0xFF; TS_PACKET];
        p[0] = TS_SYNC;
        p[1] = (pid >> 8) as u8 & 0x1F;
        p[2] = pid as u8;
        // A sync byte in the payload, to tempt a scanner that lost sync.
        p[100] = TS_SYNC;
        match pcr {
            Some(pcr) => {
                let (base, extension) = (pcr / 300, pcr % 300);
                p[3] = 0x30;
                p[4] = 7;
                p[5] = 0x10;
                p[6] = (base >> 25) as u8;
                p[7] = (base >> 17) as u8;
                p[8] = (base >> 9) as u8;
                p[9] = (base >> 1) as u8;
                p[10] = (((base & 1) << 7) as u8) | 0x7E | ((extension >> 8) as u8);
                p[11] = extension as u8;
            }
            None => p[3] = 0x10,
        }
        p
    }

    /// A stream of 40 packets: a PCR on PID 0x100 every fourth packet, other PIDs between.
    fn stream() -> (Vec<u8>, Vec<u64>) {
        let mut bytes = Vec::new();
        let mut pcrs = Vec::new();
        for i in 0..40u64 {
            if i % 4 == 0 {
                // Crosses the 33-bit base and uses the extension.
                let pcr = (1 << 33) * 300 - 5_000_000 + i * 1_000_299;
                pcrs.push(pcr % PCR_WRAP);
                bytes.extend_from_slice(&packet(0x100, Some(pcr % PCR_WRAP)));
            } else {
                bytes.extend_from_slice(&packet(0x101 + (i % 3) as u16, None));
            }
        }
        (bytes, pcrs)
    }

    fn scan_in_chunks(scanner: &mut PcrScanner, bytes: &[u8], size: usize) -> Vec<u64> {
        let mut seen = Vec::new();
        for chunk in bytes.chunks(size) {
            scanner.scan_each(chunk, |pcr| seen.push(pcr));
        }
        seen
    }

    #[test]
    fn pcr_scanner_reads_every_pcr_whatever_the_chunking() {
        let (bytes, pcrs) = stream();
        for size in [1, 2, 11, 12, 13, 187, 188, 189] {
            let mut scanner = PcrScanner::default();
            assert_eq!(scan_in_chunks(&mut scanner, &bytes, size), pcrs, "chunks of {size}");
            assert_eq!(scanner.skipped, 0, "chunks of {size}");
        }
        let mut scanner = PcrScanner::default();
        assert_eq!(
            scanner.scan(&bytes[..188 * 30]),
            Some(pcrs[7]),
            "the last PCR of the chunk"
        );
        assert_eq!(scanner.scan(&bytes[188 * 30..188 * 31]), None, "no new PCR");
    }

    #[test]
    fn pcr_scanner_regains_sync_after_garbage() {
        let (bytes, pcrs) = stream();
        let mut cut = vec![0x00, 0x47, 0x12, 0x47, 0x47];
        // Packets 0 to 8 and the start of 9, sync bytes, then packets 12 on.
        cut.extend_from_slice(&bytes[..188 * 9 + 50]);
        cut.extend_from_slice(&[0x47; 3]);
        cut.extend_from_slice(&bytes[188 * 12..]);
        for size in [1, 7, 188, 500, cut.len()] {
            let mut scanner = PcrScanner::default();
            let seen = scan_in_chunks(&mut scanner, &cut, size);
            let mut sent = pcrs.iter();
            assert!(
                seen.iter().all(|p| sent.any(|s| s == p)),
                "chunks of {size}: only PCRs that were sent, in order: {seen:?}"
            );
            // Byte by byte, a false sync may cost the packet after it (PCR 3 of packet 12).
            assert!(seen.ends_with(&pcrs[4..]), "chunks of {size}: in sync again: {seen:?}");
            assert!(scanner.skipped > 0);
        }
        let mut scanner = PcrScanner::default();
        assert_eq!(
            scan_in_chunks(&mut scanner, &cut, cut.len()),
            pcrs,
            "with the next packet to look ahead to, no PCR is lost"
        );
    }

    #[test]
    fn pcr_scanner_keeps_to_the_first_pcr_pid_and_skips_errored_packets() {
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&packet(0x200, Some(1_000)));
        bytes.extend_from_slice(&packet(0x300, Some(9_999_999)));
        let mut errored = packet(0x200, Some(5_555));
        errored[1] |= 0x80;
        bytes.extend_from_slice(&errored);
        bytes.extend_from_slice(&packet(0x200, Some(2_000)));
        bytes.extend_from_slice(&packet(0x300, Some(8_888_888)));
        let mut scanner = PcrScanner::default();
        assert_eq!(scan_in_chunks(&mut scanner, &bytes, 188), vec![1_000, 2_000]);
    }

    #[test]
    fn pcr_clock_crosses_the_wrap_and_ignores_jumps() {
        let s = Duration::from_secs;
        let tick = |secs: u64| secs * 27_000_000;
        let mut clock = PcrClock::default();
        assert_eq!(clock.sample(s(0), PCR_WRAP - tick(1)), Duration::ZERO);
        assert_eq!(clock.sample(s(2), tick(1)), s(2), "the wrap is continuous");
        assert_eq!(clock.sample(s(3), tick(500)), s(2), "a jump ahead adds nothing");
        assert_eq!(clock.sample(s(4), tick(501)), s(3));
        assert_eq!(clock.sample(s(5), tick(100)), s(3), "a jump back adds nothing");
        assert_eq!(clock.sample(s(6), tick(104)), s(7), "a burst within the slack counts");
    }
}
