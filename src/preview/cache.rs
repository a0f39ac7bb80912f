//! The thumbnail cache, pure: each JPEG is kept until its expiry, within a number of entries and
//! of bytes; expired entries go first, then the least recently used. Time is passed in.

use std::collections::HashMap;

use bytes::Bytes;
use tokio::time::Instant;

use crate::model::ServiceRef;

#[derive(Debug)]
struct Entry {
    jpeg: Bytes,
    expires: Instant,
    last_used: u64,
}

#[derive(Debug)]
pub(crate) struct PreviewCache {
    entries: HashMap<ServiceRef, Entry>,
    bytes: usize,
    max_entries: usize,
    max_bytes: usize,
    /// A logical clock for recency; bumps on every use.
    tick: u64,
}

impl PreviewCache {
    pub(crate) fn new(max_entries: usize, max_bytes: usize) -> Self {
        Self {
            entries: HashMap::new(),
            bytes: 0,
            max_entries: max_entries.max(1),
            max_bytes,
            tick: 0,
        }
    }

    /// The JPEG for `key` and when it expires, unless it has expired at `now`.
    pub(crate) fn get(&mut self, key: &ServiceRef, now: Instant) -> Option<(Bytes, Instant)> {
        if self.entries.get(key)?.expires <= now {
            self.remove(key);
            return None;
        }
        self.tick += 1;
        let entry = self.entries.get_mut(key)?;
        entry.last_used = self.tick;
        Some((entry.jpeg.clone(), entry.expires))
    }

    /// Keeps `jpeg` until `expires`, evicting what it must; one larger than the whole budget is
    /// not kept.
    pub(crate) fn insert(&mut self, key: ServiceRef, jpeg: Bytes, expires: Instant, now: Instant) {
        self.remove(&key);
        if jpeg.len() > self.max_bytes {
            return;
        }
        self.entries.retain(|_, e| e.expires > now);
        self.bytes = self.entries.values().map(|e| e.jpeg.len()).sum();
        while self.entries.len() >= self.max_entries || self.bytes + jpeg.len() > self.max_bytes {
            let Some(oldest) = self
                .entries
                .iter()
                .min_by_key(|(_, e)| e.last_used)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            self.remove(&oldest);
        }
        self.tick += 1;
        self.bytes += jpeg.len();
        self.entries.insert(
            key,
            Entry {
                jpeg,
                expires,
                last_used: self.tick,
            },
        );
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    fn remove(&mut self, key: &ServiceRef) {
        if let Some(entry) = self.entries.remove(key) {
            self.bytes -= entry.jpeg.len();
        }
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
        assert!(cache.bytes <= 3000);
    }
}
