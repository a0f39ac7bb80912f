//! A bounded cache, pure: entries expire at a given instant, and the cache stays within a
//! number of entries and of bytes, evicting expired entries first, then the least recently
//! used. Time is passed in (any ordered instant type), so tests need no runtime or clock.

use std::collections::HashMap;
use std::hash::Hash;

/// What an entry costs against the byte budget.
pub(crate) trait Weigh {
    fn weight(&self) -> usize;
}

impl Weigh for bytes::Bytes {
    fn weight(&self) -> usize {
        self.len()
    }
}

#[derive(Debug)]
struct Entry<V, T> {
    value: V,
    expires: T,
    last_used: u64,
}

#[derive(Debug)]
pub(crate) struct BoundedCache<K, V, T> {
    entries: HashMap<K, Entry<V, T>>,
    bytes: usize,
    max_entries: usize,
    max_bytes: usize,
    /// A logical clock for recency; bumps on every use.
    tick: u64,
}

impl<K: Eq + Hash + Clone, V: Clone + Weigh, T: Ord + Copy> BoundedCache<K, V, T> {
    pub(crate) fn new(max_entries: usize, max_bytes: usize) -> Self {
        Self {
            entries: HashMap::new(),
            bytes: 0,
            max_entries: max_entries.max(1),
            max_bytes,
            tick: 0,
        }
    }

    /// The value for `key` and when it expires, unless it has expired at `now` (an expired
    /// entry is dropped).
    pub(crate) fn get(&mut self, key: &K, now: T) -> Option<(V, T)> {
        if self.entries.get(key)?.expires <= now {
            self.remove(key);
            return None;
        }
        self.tick += 1;
        let entry = self.entries.get_mut(key)?;
        entry.last_used = self.tick;
        Some((entry.value.clone(), entry.expires))
    }

    /// Keeps `value` until `expires`, evicting what it must; a value larger than the whole
    /// byte budget is not kept.
    pub(crate) fn insert(&mut self, key: K, value: V, expires: T, now: T) {
        self.remove(&key);
        let cost = value.weight();
        if cost > self.max_bytes {
            return;
        }
        self.entries.retain(|_, e| e.expires > now);
        self.bytes = self.entries.values().map(|e| e.value.weight()).sum();
        while self.entries.len() >= self.max_entries || self.bytes + cost > self.max_bytes {
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
        self.bytes += cost;
        self.entries.insert(
            key,
            Entry {
                value,
                expires,
                last_used: self.tick,
            },
        );
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    fn remove(&mut self, key: &K) {
        if let Some(entry) = self.entries.remove(key) {
            self.bytes -= entry.value.weight();
        }
    }
}
