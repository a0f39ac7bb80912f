//! The picon cache: images and misses per channel in a [`BoundedCache`] (expiry, entry and
//! byte bounds, least recently used first). Pure; time is passed in.

use std::time::Instant;

use bytes::Bytes;

use crate::cache::{BoundedCache, Weigh};
use crate::model::ServiceRef;

/// What a cache entry remembers: the image, or that the receiver has none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Cached {
    Found(Bytes),
    Missing,
}

/// Bytes an entry is charged beyond its image: key, bookkeeping, and a miss's own cost.
const ENTRY_OVERHEAD: usize = 128;

impl Weigh for Cached {
    fn weight(&self) -> usize {
        ENTRY_OVERHEAD
            + match self {
                Cached::Found(bytes) => bytes.len(),
                Cached::Missing => 0,
            }
    }
}

/// Picons and misses by channel.
#[derive(Debug)]
pub(crate) struct PiconCache(BoundedCache<ServiceRef, Cached, Instant>);

impl PiconCache {
    pub(crate) fn new(max_entries: usize, max_bytes: usize) -> Self {
        Self(BoundedCache::new(max_entries, max_bytes))
    }

    /// The entry for `key` unless it has expired at `now` (an expired entry is dropped).
    pub(crate) fn get(&mut self, key: &ServiceRef, now: Instant) -> Option<Cached> {
        self.0.get(key, now).map(|(value, _)| value)
    }

    /// Stores `value` until `expires`, evicting what it must. An image larger than the whole
    /// byte budget is not stored.
    pub(crate) fn insert(&mut self, key: ServiceRef, value: Cached, expires: Instant, now: Instant) {
        self.0.insert(key, value, expires, now);
    }

    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }

    pub(crate) fn bytes(&self) -> usize {
        self.0.bytes()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn key(sid: u32) -> ServiceRef {
        format!("1:0:19:{sid:X}:3FB:1:C00000:0:0:0:").parse().unwrap()
    }

    fn png(len: usize) -> Cached {
        Cached::Found(Bytes::from(vec![0u8; len]))
    }

    #[test]
    fn entries_expire() {
        let t0 = Instant::now();
        let mut cache = PiconCache::new(10, 1 << 20);
        cache.insert(key(1), png(10), t0 + Duration::from_secs(60), t0);
        cache.insert(key(2), Cached::Missing, t0 + Duration::from_secs(5), t0);
        assert_eq!(cache.get(&key(1), t0 + Duration::from_secs(59)), Some(png(10)));
        assert_eq!(cache.get(&key(2), t0 + Duration::from_secs(4)), Some(Cached::Missing));
        assert_eq!(cache.get(&key(2), t0 + Duration::from_secs(5)), None);
        assert_eq!(cache.get(&key(1), t0 + Duration::from_secs(60)), None);
        assert_eq!(cache.len(), 0);
        assert_eq!(cache.bytes(), 0);
    }

    #[test]
    fn entry_bound_evicts_the_least_recently_used() {
        let t0 = Instant::now();
        let later = t0 + Duration::from_secs(3600);
        let mut cache = PiconCache::new(3, 1 << 20);
        for sid in 1..=3 {
            cache.insert(key(sid), png(10), later, t0);
        }
        // Touch 1, so 2 is now the least recently used.
        assert!(cache.get(&key(1), t0).is_some());
        cache.insert(key(4), png(10), later, t0);
        assert_eq!(cache.len(), 3);
        assert!(cache.get(&key(2), t0).is_none());
        for sid in [1, 3, 4] {
            assert!(cache.get(&key(sid), t0).is_some(), "{sid}");
        }
    }

    #[test]
    fn byte_bound_holds_and_expired_entries_go_first() {
        let t0 = Instant::now();
        let budget = 3 * (1000 + ENTRY_OVERHEAD);
        let mut cache = PiconCache::new(100, budget);
        cache.insert(key(1), png(1000), t0 + Duration::from_secs(1), t0);
        cache.insert(key(2), png(1000), t0 + Duration::from_secs(100), t0);
        cache.insert(key(3), png(1000), t0 + Duration::from_secs(100), t0);
        assert_eq!(cache.bytes(), budget);
        // At t0+2 s entry 1 has expired: it goes, the recently used ones stay.
        let t2 = t0 + Duration::from_secs(2);
        cache.insert(key(4), png(1000), t0 + Duration::from_secs(100), t2);
        assert!(cache.bytes() <= budget);
        for sid in [2, 3, 4] {
            assert!(cache.get(&key(sid), t2).is_some(), "{sid}");
        }
        // A bigger image pushes out as many as needed.
        cache.insert(key(5), png(2000), t0 + Duration::from_secs(100), t2);
        assert!(cache.bytes() <= budget, "{} > {budget}", cache.bytes());
        assert!(cache.get(&key(5), t2).is_some());
    }

    #[test]
    fn oversized_images_are_not_kept_and_replacing_keeps_the_count_right() {
        let t0 = Instant::now();
        let later = t0 + Duration::from_secs(60);
        let mut cache = PiconCache::new(10, 1000);
        cache.insert(key(1), png(5000), later, t0);
        assert_eq!(cache.len(), 0);
        assert_eq!(cache.bytes(), 0);
        cache.insert(key(1), png(100), later, t0);
        cache.insert(key(1), Cached::Missing, later, t0);
        assert_eq!(cache.len(), 1);
        assert_eq!(cache.bytes(), ENTRY_OVERHEAD);
    }
}
