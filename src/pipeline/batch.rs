//! Gathers the muxer's small output buffers into batches before they cross to the session task,
//! so that a 10 Mbit/s stream wakes the async runtime some 50 times a second, not 950. Pure.

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

/// The longest a byte waits in a batch, counted from the batch's first byte, checked when the
/// next buffer comes: a stream slower than a buffer per `MAX_WAIT` is not batched at all.
/// Clients get TS output at the session tick (100 ms) anyway, so this adds no delay they see.
pub(crate) const MAX_WAIT: Duration = Duration::from_millis(20);

/// A batch is sent once it holds this much, however young (64 KiB: 52 ms at 10 Mbit/s).
pub(crate) const MAX_BYTES: usize = 64 * 1024;

/// The bytes gathered since the last batch went out.
#[derive(Debug, Default)]
pub(crate) struct Batcher {
    pending: BytesMut,
    since: Option<Instant>,
}

impl Batcher {
    /// Adds a buffer that came at `now`; returns a batch when one is due.
    pub(crate) fn push(&mut self, data: &[u8], now: Instant) -> Option<Bytes> {
        let since = *self.since.get_or_insert(now);
        self.pending.extend_from_slice(data);
        if self.pending.len() >= MAX_BYTES || now.duration_since(since) >= MAX_WAIT {
            return self.take();
        }
        None
    }

    /// What is gathered, if anything (at the end of the stream).
    pub(crate) fn take(&mut self) -> Option<Bytes> {
        self.since = None;
        (!self.pending.is_empty()).then(|| self.pending.split().freeze())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PIECE: [u8; 1316] = [0x47; 1316];

    #[test]
    fn a_fast_stream_is_sent_once_its_first_byte_has_waited_long_enough() {
        let t0 = Instant::now();
        let mut b = Batcher::default();
        for i in 0..19u64 {
            assert_eq!(b.push(&PIECE, t0 + Duration::from_millis(i)), None, "buffer {i}");
        }
        let batch = b.push(&PIECE, t0 + MAX_WAIT).expect("due");
        assert_eq!(batch.len(), 20 * PIECE.len(), "every buffer, in one batch");
        assert_eq!(b.take(), None, "nothing left");
        // The next batch starts its own clock.
        assert_eq!(b.push(&PIECE, t0 + MAX_WAIT + Duration::from_millis(1)), None);
    }

    #[test]
    fn a_slow_stream_goes_out_buffer_by_buffer() {
        let t0 = Instant::now();
        let mut b = Batcher::default();
        assert_eq!(b.push(&PIECE, t0), None, "a first buffer waits for a second");
        let batch = b
            .push(&PIECE, t0 + Duration::from_millis(55))
            .expect("the first waited long enough");
        assert_eq!(batch.len(), 2 * PIECE.len());
    }

    #[test]
    fn a_full_batch_goes_out_at_once_and_the_rest_at_the_end() {
        let t0 = Instant::now();
        let mut b = Batcher::default();
        let sent: Vec<Bytes> = (0..60).filter_map(|_| b.push(&PIECE, t0)).collect();
        assert_eq!(sent.len(), 1);
        assert!(sent[0].len() >= MAX_BYTES && sent[0].len() < MAX_BYTES + PIECE.len());
        let rest = b.take().expect("the tail");
        assert_eq!(sent[0].len() + rest.len(), 60 * PIECE.len(), "no byte lost or doubled");
    }
}
