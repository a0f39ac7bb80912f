//! The encoder queue's waiting list, pure: one FIFO lane per priority, served strictly from the
//! highest non-empty lane. No clock and no channels: times and items are passed in.

use std::collections::VecDeque;

use tokio::time::Instant;

use super::Priority;

/// A waiter: its ticket number, when it started waiting, and what the owner keeps for it.
#[derive(Debug)]
pub(crate) struct Entry<T> {
    pub id: u64,
    pub since: Instant,
    pub item: T,
}

/// Waiters by priority. Lane `i` holds priority `Priority::ALL[i]`; FIFO within a lane.
#[derive(Debug)]
pub(crate) struct Waiting<T> {
    lanes: [VecDeque<Entry<T>>; 3],
}

impl<T> Default for Waiting<T> {
    fn default() -> Self {
        Self {
            lanes: [VecDeque::new(), VecDeque::new(), VecDeque::new()],
        }
    }
}

impl<T> Waiting<T> {
    pub(crate) fn push(&mut self, priority: Priority, id: u64, since: Instant, item: T) {
        self.lanes[priority.lane()].push_back(Entry { id, since, item });
    }

    /// The next waiter to serve: the oldest of the highest priority.
    pub(crate) fn pop(&mut self) -> Option<(Priority, Entry<T>)> {
        Priority::ALL
            .into_iter()
            .rev()
            .find_map(|p| self.lanes[p.lane()].pop_front().map(|e| (p, e)))
    }

    /// The next waiter to serve, left in place.
    pub(crate) fn front(&self) -> Option<(Priority, &Entry<T>)> {
        Priority::ALL
            .into_iter()
            .rev()
            .find_map(|p| self.lanes[p.lane()].front().map(|e| (p, e)))
    }

    /// Takes waiter `id` out wherever it stands (it gave up).
    pub(crate) fn remove(&mut self, id: u64) -> Option<(Priority, Entry<T>)> {
        Priority::ALL.into_iter().find_map(|p| {
            let lane = &mut self.lanes[p.lane()];
            let at = lane.iter().position(|e| e.id == id)?;
            lane.remove(at).map(|e| (p, e))
        })
    }

    pub(crate) fn len(&self) -> usize {
        self.lanes.iter().map(VecDeque::len).sum()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.lanes.iter().all(VecDeque::is_empty)
    }

    pub(crate) fn len_of(&self, priority: Priority) -> usize {
        self.lanes[priority.lane()].len()
    }

    /// When the longest waiter started waiting (each lane's front is its oldest).
    pub(crate) fn oldest(&self) -> Option<Instant> {
        self.lanes.iter().filter_map(|l| l.front().map(|e| e.since)).min()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn order(w: &mut Waiting<()>) -> Vec<u64> {
        std::iter::from_fn(|| w.pop().map(|(_, e)| e.id)).collect()
    }

    #[test]
    fn strict_priority_then_first_come_first_served() {
        let t = Instant::now();
        let mut w = Waiting::default();
        w.push(Priority::Preview, 1, t, ());
        w.push(Priority::Normal, 2, t, ());
        w.push(Priority::Active, 3, t, ());
        w.push(Priority::Normal, 4, t, ());
        w.push(Priority::Preview, 5, t, ());
        w.push(Priority::Active, 6, t, ());
        assert_eq!(w.len(), 6);
        assert_eq!(w.len_of(Priority::Normal), 2);
        assert_eq!(w.front().map(|(p, e)| (p, e.id)), Some((Priority::Active, 3)));
        assert_eq!(w.len(), 6, "front leaves it in place");
        assert_eq!(order(&mut w), [3, 6, 2, 4, 1, 5]);
        assert!(w.front().is_none());
        assert!(w.is_empty());
    }

    #[test]
    fn removal_keeps_the_others_in_order() {
        let t = Instant::now();
        let mut w = Waiting::default();
        for id in 1..=4 {
            w.push(Priority::Normal, id, t + Duration::from_secs(id), ());
        }
        assert_eq!(w.oldest(), Some(t + Duration::from_secs(1)));
        let (p, e) = w.remove(1).unwrap();
        assert_eq!((p, e.id), (Priority::Normal, 1));
        assert!(w.remove(1).is_none(), "gone once");
        assert!(w.remove(99).is_none());
        assert_eq!(w.oldest(), Some(t + Duration::from_secs(2)));
        w.remove(3);
        assert_eq!(order(&mut w), [2, 4]);
        assert_eq!(w.oldest(), None);
    }

    #[test]
    fn the_oldest_waiter_may_be_in_a_lower_lane() {
        let t = Instant::now();
        let mut w = Waiting::default();
        w.push(Priority::Preview, 1, t, ());
        w.push(Priority::Active, 2, t + Duration::from_secs(5), ());
        assert_eq!(w.oldest(), Some(t));
    }
}
