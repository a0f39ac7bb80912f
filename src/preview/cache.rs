//! The thumbnail cache: JPEGs per channel in a [`BoundedCache`] (expiry, entry and byte bounds,
//! least recently used first). Pure; time is passed in.

use bytes::Bytes;
use tokio::time::Instant;

use crate::cache::BoundedCache;
use crate::model::ServiceRef;

/// Thumbnails by channel.
#[derive(Debug)]
pub(crate) struct PreviewCache(BoundedCache<ServiceRef, Bytes, Instant>);

impl PreviewCache {
    pub(crate) fn new(max_entries: usize, max_bytes: usize) -> Self {
        Self(BoundedCache::new(max_entries, max_bytes))
    }

    /// The JPEG for `key` and when it expires, unless it has expired at `now`.
    pub(crate) fn get(&mut self, key: &ServiceRef, now: Instant) -> Option<(Bytes, Instant)> {
        self.0.get(key, now)
    }

    /// Keeps `jpeg` until `expires`, evicting what it must; one larger than the whole budget is
    /// not kept.
    pub(crate) fn insert(&mut self, key: ServiceRef, jpeg: Bytes, expires: Instant, now: Instant) {
        self.0.insert(key, jpeg, expires, now);
    }

    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }

    #[cfg(test)]
    fn bytes(&self) -> usize {
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

    fn jpeg(len: usize) -> Bytes {
        Bytes::from(vec![0xFF; len])
    }

    #[test]
    fn entries_expire_at_their_time() {
        let t0 = Instant::now();
        let mut cache = PreviewCache::new(10, 1 << 20);
        cache.insert(key(1), jpeg(10), t0 + Duration::from_secs(60), t0);
        let (bytes, expires) = cache.get(&key(1), t0 + Duration::from_secs(59)).unwrap();
        assert_eq!((bytes.len(), expires), (10, t0 + Duration::from_secs(60)));
        assert!(cache.get(&key(1), t0 + Duration::from_secs(60)).is_none());
        assert_eq!(cache.len(), 0);
    }

    #[test]
    fn bounds_evict_expired_then_least_recently_used() {
        let t0 = Instant::now();
        let later = t0 + Duration::from_secs(3600);
        let mut cache = PreviewCache::new(3, 3000);
        cache.insert(key(1), jpeg(1000), t0 + Duration::from_secs(1), t0);
        cache.insert(key(2), jpeg(1000), later, t0);
        cache.insert(key(3), jpeg(1000), later, t0);
        let t2 = t0 + Duration::from_secs(2);
        // 1 has expired: it goes first, although 2 is older in use than 3.
        cache.insert(key(4), jpeg(1000), later, t2);
        assert!(cache.get(&key(2), t2).is_some());
        // Now 3 is the least recently used.
        cache.insert(key(5), jpeg(1000), later, t2);
        assert!(cache.get(&key(3), t2).is_none());
        assert_eq!(cache.len(), 3);
        // A big one pushes out as many as needed; one over budget is not kept at all.
        cache.insert(key(6), jpeg(2500), later, t2);
        assert_eq!(cache.len(), 1);
        cache.insert(key(7), jpeg(5000), later, t2);
        assert!(cache.get(&key(7), t2).is_none());
        assert!(cache.bytes() <= 3000);
    }
}
