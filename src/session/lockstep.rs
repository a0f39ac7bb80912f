//! Publishes an fMP4 ladder's fragments in step: fragment i of a rendition is published once
//! every rendition in use has made its fragment i (the muxers cut at the same moments, but the
//! encoded rungs come a little after the copy and the sound). So when the receiver drops, every
//! rendition has published as many segments as the others, and after the reconnect they number
//! on together, as players that switch by media sequence number need; what the faster ones made
//! beyond the last complete fragment is dropped with the connection. A rendition that falls
//! more than [`MOST_AHEAD`] fragments behind (or never starts: an AC-3 track the PMT announces
//! and nobody sends) holds the others back no longer, and its own go out as they come. Pure.

use std::collections::VecDeque;

/// Fragments a rendition may be ahead of the slowest before it is published anyway.
pub(crate) const MOST_AHEAD: usize = 4;

/// The fragments of one connection, per rendition, until they are published (`F`: a fragment
/// and what goes with it).
#[derive(Debug)]
pub(crate) struct Lockstep<F> {
    /// Per track: how many fragments it has published this connection, and those it holds.
    tracks: Vec<(usize, VecDeque<F>)>,
}

impl<F> Default for Lockstep<F> {
    fn default() -> Self {
        Self { tracks: Vec::new() }
    }
}

impl<F> Lockstep<F> {
    /// Adds `track`'s next fragment; returns those now due, in order per track. `in_use` says
    /// which tracks make fragments (a track that does not is waited for by nobody).
    pub(crate) fn push(&mut self, track: usize, piece: F, in_use: &[bool]) -> Vec<(usize, F)> {
        if self.tracks.len() <= track {
            self.tracks.resize_with(track + 1, Default::default);
        }
        self.tracks[track].1.push_back(piece);
        let made: Vec<usize> = (0..in_use.len().max(self.tracks.len()))
            .map(|i| self.tracks.get(i).map_or(0, |t| t.0 + t.1.len()))
            .collect();
        let most = made.iter().copied().max().unwrap_or(0);
        let lagging = |i: usize| most - made[i] > MOST_AHEAD;
        // Waited for: every track in use that keeps up (one whose sound never comes, an AC-3
        // track announced but silent, is waited for no longer once it is that far behind).
        let everyone = (0..made.len())
            .filter(|&i| in_use.get(i).copied().unwrap_or(true) && !lagging(i))
            .map(|i| made[i])
            .min()
            .unwrap_or(most);
        let mut due = Vec::new();
        for (i, (published, held)) in self.tracks.iter_mut().enumerate() {
            let until = if lagging(i) { made[i] } else { everyone };
            while *published < until
                && let Some(piece) = held.pop_front()
            {
                due.push((i, piece));
                *published += 1;
            }
        }
        due
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::segmenter::Piece;
    use bytes::Bytes;
    use std::time::Duration;

    fn piece(n: u8) -> Piece {
        Piece {
            bytes: Bytes::from(vec![n]),
            duration: Duration::from_millis(500),
        }
    }

    fn names(due: &[(usize, Piece)]) -> Vec<(usize, u8)> {
        due.iter().map(|(t, p)| (*t, p.bytes[0])).collect()
    }

    #[test]
    fn a_fragment_is_published_once_every_rendition_in_use_has_it() {
        let in_use = [true, true, false, true];
        let mut step = Lockstep::default();
        assert!(
            step.push(0, piece(0), &in_use).is_empty(),
            "the copy waits for the others"
        );
        assert!(step.push(3, piece(0), &in_use).is_empty());
        assert!(step.push(0, piece(1), &in_use).is_empty());
        // The encoded rung's first: fragment 0 of every track goes out, fragment 1 still waits.
        assert_eq!(names(&step.push(1, piece(0), &in_use)), [(0, 0), (1, 0), (3, 0)]);
        assert!(step.push(3, piece(1), &in_use).is_empty());
        assert_eq!(names(&step.push(1, piece(1), &in_use)), [(0, 1), (1, 1), (3, 1)]);
    }

    #[test]
    fn a_rendition_far_behind_holds_the_others_back_no_longer() {
        let in_use = [true, true];
        let mut step = Lockstep::default();
        let mut out = Vec::new();
        for n in 0..=MOST_AHEAD as u8 {
            out.extend(names(&step.push(0, piece(n), &in_use)));
        }
        assert_eq!(
            out,
            (0..=MOST_AHEAD as u8).map(|n| (0, n)).collect::<Vec<_>>(),
            "{MOST_AHEAD} ahead is the most held: then the silent one is waited for no longer"
        );
        assert_eq!(names(&step.push(0, piece(5), &in_use)), [(0, 5)], "nor later");
        // The slow one's fragments go out as they come.
        assert_eq!(names(&step.push(1, piece(0), &in_use)), [(1, 0)]);
    }
}
