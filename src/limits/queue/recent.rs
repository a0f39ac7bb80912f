//! Who watched which channel lately, pure and bounded: the memory behind Active priority.
//!
//! A client (address) is *active* on a channel while it has a stream of that channel open, and
//! for `window` after it last had one (a reconnect, a profile switch). At most `capacity` pairs
//! are remembered: pairs idle past the window go first, then the least recently seen, so a flood
//! of addresses costs a bounded amount of memory (an evicted client merely waits as Normal).

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::time::Duration;

use tokio::time::Instant;

type Key = (IpAddr, String);

#[derive(Debug)]
struct Seen {
    /// Last sign of use; the key of this entry in the `order` index.
    at: (Instant, u64),
    /// Streams of the channel this client has open now.
    open: u32,
}

#[derive(Debug)]
pub(crate) struct RecentUse {
    window: Duration,
    capacity: usize,
    seen: HashMap<Key, Seen>,
    /// The same entries by last use, oldest first (the counter breaks ties).
    order: BTreeMap<(Instant, u64), Key>,
    counter: u64,
}

/// What happened to a (client, channel) pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Use {
    /// A sign of life: a playlist fetched, a session joined.
    Touch,
    /// A stream opened; active until the matching `Close`, and `window` after it.
    Open,
    Close,
}

impl RecentUse {
    pub(crate) fn new(window: Duration, capacity: usize) -> Self {
        Self {
            window,
            capacity: capacity.max(1),
            seen: HashMap::new(),
            order: BTreeMap::new(),
            counter: 0,
        }
    }

    pub(crate) fn record(&mut self, client: IpAddr, channel: &str, what: Use, now: Instant) {
        self.counter += 1;
        let stamp = (now, self.counter);
        let key = (client, channel.to_owned());
        let entry = match self.seen.get_mut(&key) {
            Some(entry) => {
                self.order.remove(&entry.at);
                entry
            }
            None => {
                if what == Use::Close {
                    // Forgotten while open (evicted): nothing to close.
                    return;
                }
                self.seen.entry(key.clone()).or_insert(Seen { at: stamp, open: 0 })
            }
        };
        entry.at = stamp;
        match what {
            Use::Touch => {}
            Use::Open => entry.open += 1,
            Use::Close => entry.open = entry.open.saturating_sub(1),
        }
        self.order.insert(stamp, key);
        self.evict(now);
    }

    /// Whether `client` watches `channel` now or did within the window.
    pub(crate) fn is_active(&self, client: IpAddr, channel: &str, now: Instant) -> bool {
        self.seen
            .get(&(client, channel.to_owned()))
            .is_some_and(|s| s.open > 0 || now.saturating_duration_since(s.at.0) <= self.window)
    }

    /// Channels other than `except` that `client` watches now: a stream open, or a sign of use
    /// (an HLS playlist request) within `recent`. An IPv6 client counts with its whole /64, as
    /// in the rate limits, so one host cannot rotate addresses around the cap.
    pub(crate) fn channels_of(&self, client: IpAddr, except: &str, recent: Duration, now: Instant) -> usize {
        let client = crate::limits::rate::bucket_key(client);
        self.seen
            .iter()
            .filter(|((ip, channel), s)| {
                crate::limits::rate::bucket_key(*ip) == client
                    && channel != except
                    && (s.open > 0 || now.saturating_duration_since(s.at.0) <= recent)
            })
            .map(|((_, channel), _)| channel.as_str())
            .collect::<std::collections::HashSet<_>>()
            .len()
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.seen.len()
    }

    /// Over capacity: drops the least recently seen. Past the window: drops idle pairs, and
    /// moves pairs with an open stream to the back (an open stream is use going on now). Each
    /// pair moves at most once per call, so this ends.
    fn evict(&mut self, now: Instant) {
        while let Some((&at, key)) = self.order.first_key_value() {
            let over = self.seen.len() > self.capacity;
            let idle = now.saturating_duration_since(at.0) > self.window;
            if !(over || idle) {
                break;
            }
            let key = key.clone();
            self.order.remove(&at);
            match self.seen.get_mut(&key) {
                Some(entry) if !over && entry.open > 0 => {
                    self.counter += 1;
                    entry.at = (now, self.counter);
                    self.order.insert(entry.at, key);
                }
                _ => {
                    self.seen.remove(&key);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_clients_channels_are_its_open_streams_and_recent_playlists() {
        let mut r = RecentUse::new(Duration::from_secs(10), 100);
        let t = Instant::now();
        let recent = Duration::from_secs(3);
        r.record(ip(1), SD, Use::Open, t);
        r.record(ip(1), HD, Use::Touch, t);
        r.record(ip(2), "1:0:1:1:1:1:C00000:0:0:0:", Use::Open, t);
        assert_eq!(r.channels_of(ip(1), "other", recent, t), 2);
        assert_eq!(
            r.channels_of(ip(1), SD, recent, t),
            1,
            "the channel asked for does not count"
        );
        let later = t + Duration::from_secs(4);
        assert_eq!(r.channels_of(ip(1), "other", recent, later), 1, "the open stream only");
        r.record(ip(1), SD, Use::Close, later);
        assert_eq!(
            r.channels_of(ip(1), "other", recent, later + recent),
            1,
            "closed, still recent"
        );
        assert_eq!(r.channels_of(ip(1), "other", recent, later + recent * 2), 0);
    }

    #[test]
    fn an_ipv6_client_counts_its_channels_across_its_64() {
        let mut r = RecentUse::new(Duration::from_secs(10), 100);
        let t = Instant::now();
        let recent = Duration::from_secs(3);
        let host = |last: u16| IpAddr::V6(std::net::Ipv6Addr::new(0x2001, 0xdb8, 0, 1, 0, 0, 0, last));
        r.record(host(1), SD, Use::Open, t);
        r.record(host(2), HD, Use::Open, t);
        r.record(host(3), HD, Use::Open, t);
        assert_eq!(
            r.channels_of(host(9), "other", recent, t),
            2,
            "two channels, however many addresses"
        );
        let neighbour = IpAddr::V6(std::net::Ipv6Addr::new(0x2001, 0xdb8, 0, 2, 0, 0, 0, 1));
        assert_eq!(
            r.channels_of(neighbour, "other", recent, t),
            0,
            "another /64 is another client"
        );
    }

    const SD: &str = "1:0:1:6F0B:44D:1:C00000:0:0:0:";
    const HD: &str = "1:0:19:283D:3FB:1:C00000:0:0:0:";

    fn ip(last: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, last))
    }

    #[test]
    fn active_within_the_window_for_that_channel_and_address_only() {
        let t = Instant::now();
        let mut r = RecentUse::new(Duration::from_secs(10), 100);
        r.record(ip(1), SD, Use::Touch, t);
        assert!(r.is_active(ip(1), SD, t + Duration::from_secs(10)));
        assert!(!r.is_active(ip(1), SD, t + Duration::from_secs(11)));
        assert!(!r.is_active(ip(1), HD, t), "another channel");
        assert!(!r.is_active(ip(2), SD, t), "another address");
    }

    #[test]
    fn an_open_stream_stays_active_and_its_close_starts_the_window() {
        let t = Instant::now();
        let mut r = RecentUse::new(Duration::from_secs(10), 100);
        r.record(ip(1), SD, Use::Open, t);
        let later = t + Duration::from_secs(3600);
        assert!(r.is_active(ip(1), SD, later), "watching for an hour");
        // Another pair's record evicts idle entries, but never one with an open stream.
        r.record(ip(2), HD, Use::Touch, later);
        assert!(r.is_active(ip(1), SD, later));
        assert_eq!(r.len(), 2);
        r.record(ip(1), SD, Use::Close, later);
        assert!(r.is_active(ip(1), SD, later + Duration::from_secs(10)));
        assert!(!r.is_active(ip(1), SD, later + Duration::from_secs(11)));
    }

    #[test]
    fn memory_stays_bounded_under_a_flood_of_addresses() {
        let t = Instant::now();
        let mut r = RecentUse::new(Duration::from_secs(10), 64);
        for i in 0..10_000u32 {
            let client = IpAddr::V4(Ipv4Addr::from(0x0A00_0000 + i));
            r.record(client, SD, Use::Open, t);
            assert!(r.len() <= 64);
        }
        assert_eq!(r.order.len(), r.len());
        // The newest are kept; the oldest went.
        assert!(r.is_active(IpAddr::V4(Ipv4Addr::from(0x0A00_0000 + 9_999)), SD, t));
        assert!(!r.is_active(IpAddr::V4(Ipv4Addr::from(0x0A00_0000)), SD, t));
        // A close for a forgotten pair is a no-op, not a new entry.
        r.record(IpAddr::V4(Ipv4Addr::from(0x0A00_0000)), SD, Use::Close, t);
        assert!(r.len() <= 64);
    }

    #[test]
    fn idle_entries_are_dropped_once_past_the_window() {
        let t = Instant::now();
        let mut r = RecentUse::new(Duration::from_secs(10), 1000);
        for last in 0..100 {
            r.record(ip(last), SD, Use::Touch, t);
        }
        assert_eq!(r.len(), 100);
        r.record(ip(200), SD, Use::Touch, t + Duration::from_secs(11));
        assert_eq!(r.len(), 1);
    }
}
