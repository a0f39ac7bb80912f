//! Live replay of a muxed loop: one producer per channel feed, paced by the wall clock.
//!
//! A channel "broadcasts" whether or not anyone watches: at any instant its position is the
//! wall clock modulo the loop length, so a new tune lands mid-GOP like a real one. A producer
//! runs only while someone is subscribed; every subscriber shares its chunks, which is what
//! keeps many connections cheap.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use tokio::sync::broadcast;

use super::ts::{TS_WRAP, TsLoop, encode_pcr};
use crate::mpegts::{PACKET, decode_timestamp, encode_timestamp};

const TICK: Duration = Duration::from_millis(40);
/// Chunks a subscriber may fall behind before it is cut off (about 5 s).
const BACKLOG: usize = 128;
/// A producer that fell further behind than this (a suspended process) skips ahead.
const MAX_CATCH_UP: u64 = 90_000;

/// A replayable loop shared by every connection to one channel (and one scrambling state).
pub(crate) struct Feed {
    ts: Arc<TsLoop>,
    slot: Mutex<Option<broadcast::Sender<Bytes>>>,
}

impl Feed {
    pub(crate) fn new(ts: Arc<TsLoop>) -> Arc<Self> {
        Arc::new(Self {
            ts,
            slot: Mutex::new(None),
        })
    }

    /// Joins the running broadcast, starting the producer when this is the first viewer.
    pub(crate) fn subscribe(self: &Arc<Self>) -> broadcast::Receiver<Bytes> {
        let mut slot = self.slot.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(tx) = slot.as_ref() {
            return tx.subscribe();
        }
        let (tx, rx) = broadcast::channel(BACKLOG);
        *slot = Some(tx.clone());
        drop(slot);
        tokio::spawn(Arc::clone(self).produce(tx));
        rx
    }

    async fn produce(self: Arc<Self>, tx: broadcast::Sender<Bytes>) {
        let mut cursor = Cursor::new(&self.ts, now_90k());
        let mut ticker = tokio::time::interval(TICK);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            let chunk = cursor.advance_to(&self.ts, now_90k());
            if !chunk.is_empty() {
                let _ = tx.send(chunk);
            }
            if tx.receiver_count() == 0 {
                // Re-check under the lock so that a subscriber arriving now is not orphaned.
                let mut slot = self.slot.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                if tx.receiver_count() == 0 {
                    *slot = None;
                    return;
                }
            }
        }
    }
}

/// The broadcast clock in 90 kHz: wall-clock based, so timestamps look like a live channel.
pub(crate) fn now_90k() -> u64 {
    static ANCHOR: OnceLock<(Instant, u64)> = OnceLock::new();
    let (instant, wall) = *ANCHOR.get_or_init(|| {
        let wall = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        (Instant::now(), (wall.as_micros() as u64 * 9 / 100) % TS_WRAP)
    });
    wall + (instant.elapsed().as_micros() as u64) * 9 / 100
}

/// Position in the endless replay: loop iteration and packet index.
pub(crate) struct Cursor {
    iteration: u64,
    index: usize,
    counters: Box<[u8; 8192]>,
}

impl Cursor {
    pub(crate) fn new(ts: &TsLoop, now: u64) -> Self {
        let (iteration, index) = Self::locate(ts, now);
        Self {
            iteration,
            index,
            counters: Box::new([0; 8192]),
        }
    }

    fn locate(ts: &TsLoop, now: u64) -> (u64, usize) {
        let iteration = now / ts.duration;
        let phase = now % ts.duration;
        let index = ts.packets.partition_point(|p| p.at < phase);
        if index == ts.packets.len() {
            (iteration + 1, 0)
        } else {
            (iteration, index)
        }
    }

    fn due(&self, ts: &TsLoop) -> u64 {
        self.iteration * ts.duration + ts.packets[self.index].at
    }

    /// Emits every packet due up to `now`, patched for the current loop iteration.
    pub(crate) fn advance_to(&mut self, ts: &TsLoop, now: u64) -> Bytes {
        if now.saturating_sub(self.due(ts)) > MAX_CATCH_UP {
            let (iteration, index) = Self::locate(ts, now);
            self.iteration = iteration;
            self.index = index;
        }
        let mut out = BytesMut::new();
        while self.due(ts) <= now {
            self.emit(ts, &mut out);
            self.index += 1;
            if self.index == ts.packets.len() {
                self.index = 0;
                self.iteration += 1;
            }
        }
        out.freeze()
    }

    fn emit(&mut self, ts: &TsLoop, out: &mut BytesMut) {
        let info = ts.packets[self.index];
        let start = out.len();
        out.extend_from_slice(ts.packet(self.index));
        let p = &mut out[start..start + PACKET];
        if p[3] & 0x10 != 0 {
            let cc = &mut self.counters[info.pid as usize];
            p[3] = (p[3] & 0xF0) | *cc;
            *cc = (*cc + 1) & 0x0F;
        }
        let offset = self.iteration * ts.duration;
        if info.pcr {
            p[6..12].copy_from_slice(&encode_pcr(offset + info.at));
        }
        for at in [info.pts_at, info.dts_at] {
            if at != 0 {
                let at = at as usize;
                let prefix = p[at] >> 4;
                let value = (decode_timestamp(&p[at..]) + offset) % TS_WRAP;
                p[at..at + 5].copy_from_slice(&encode_timestamp(prefix, value));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::ts::{EsKind, EsStream, Frame, Program, Track, mux_loop};
    use super::*;

    fn looped() -> TsLoop {
        let stream = EsStream {
            kind: EsKind::Mp2,
            frame_duration: 2_160,
            frames: (0..200)
                .map(|i| Frame {
                    data: vec![0x11; 500],
                    pts: i * 2_160,
                    dts: i * 2_160,
                    key: true,
                })
                .collect(),
        };
        let program = Program {
            transport_stream_id: 1,
            program_number: 1,
            pmt_pid: 0x64,
            pcr_pid: 0x66,
            tracks: vec![Track {
                pid: 0x66,
                language: None,
                stream: &stream,
            }],
        };
        mux_loop(&program, 432_000)
    }

    #[test]
    fn replay_is_continuous_across_loop_boundaries() {
        let ts = looped();
        let start = 432_000 * 1_000 + 400_000;
        let mut cursor = Cursor::new(&ts, start);
        let mut last_cc = [None::<u8>; 8192];
        let mut last_pcr = None;
        let mut last_pts = None;
        for step in 1..=300u64 {
            let chunk = cursor.advance_to(&ts, start + step * 3_600);
            for p in chunk.chunks(PACKET) {
                let pid = (((p[1] & 0x1F) as usize) << 8) | p[2] as usize;
                let cc = p[3] & 0x0F;
                if let Some(prev) = last_cc[pid] {
                    assert_eq!(cc, (prev + 1) & 0x0F, "continuity on pid {pid}");
                }
                last_cc[pid] = Some(cc);
                if let Some(pcr) = crate::mpegts::pcr_base(p) {
                    if let Some(prev) = last_pcr {
                        assert!(pcr > prev && pcr - prev <= 2_160, "pcr step {prev} -> {pcr}");
                    }
                    last_pcr = Some(pcr);
                }
                if pid == 0x66 && p[1] & 0x40 != 0 {
                    let at = 4 + if p[3] & 0x20 != 0 { 1 + p[4] as usize } else { 0 } + 9;
                    let pts = decode_timestamp(&p[at..]);
                    if let Some(prev) = last_pts {
                        assert_eq!(pts, prev + 2_160, "pts continuous");
                    }
                    last_pts = Some(pts);
                }
            }
        }
        assert!(last_pts.is_some() && last_pcr.is_some());
    }
}
