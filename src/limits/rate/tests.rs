//! Tests of the rate limits on paused tokio time: bursts, refill, `Retry-After`, independence
//! of scopes, and the bound on tracked addresses.

use super::*;
use std::net::{Ipv4Addr, Ipv6Addr};

fn config() -> RateLimitConfig {
    RateLimitConfig {
        enabled: true,
        global_rate: 1000,
        global_burst: 1000,
        per_ip_rate: 1,
        per_ip_burst: 2,
        mode_standard: 1000,
        mode_audio_proxy: 1000,
        mode_gpu: 1000,
        trusted_proxies: Vec::new(),
        max_tracked_ips: 100,
        max_channels_per_client: 0,
    }
}

fn ip(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(192, 0, 2, last))
}

async fn advance(ms: u64) {
    tokio::time::advance(Duration::from_millis(ms)).await;
}

/// How many of `n` requests pass at once.
fn admitted(admission: &mut Admission, n: usize, ip: IpAddr, mode: &'static str) -> usize {
    (0..n).filter(|_| admission.admit(ip, mode).is_ok()).count()
}

#[test]
fn refill_grid_is_exact_on_whole_milliseconds() {
    assert_eq!(refill_grid(1), (1, Duration::from_millis(1000)));
    assert_eq!(refill_grid(2), (1, Duration::from_millis(500)));
    assert_eq!(refill_grid(3), (3, Duration::from_millis(1000)));
    assert_eq!(refill_grid(10), (1, Duration::from_millis(100)));
    assert_eq!(refill_grid(30), (3, Duration::from_millis(100)));
    assert_eq!(refill_grid(100), (1, Duration::from_millis(10)));
    assert_eq!(refill_grid(2000), (2, Duration::from_millis(1)));
}

#[test]
fn retry_after_rounds_up_to_whole_seconds_at_least_one() {
    let secs = |ms| {
        RateLimited {
            scope: Scope::Ip,
            mode: "standard",
            retry_after: Duration::from_millis(ms),
        }
        .retry_after_secs()
    };
    assert_eq!(secs(0), 1);
    assert_eq!(secs(1), 1);
    assert_eq!(secs(1000), 1);
    assert_eq!(secs(1001), 2);
    assert_eq!(secs(2999), 3);
}

#[test]
fn every_pipeline_mode_has_a_bucket() {
    use crate::pipeline::Mode;
    // A new mode must be added here (the match is exhaustive) and to MODES.
    let all = |m: Mode| match m {
        Mode::Standard | Mode::AudioProxy | Mode::Gpu => m.as_str(),
    };
    for mode in [Mode::Standard, Mode::AudioProxy, Mode::Gpu] {
        assert!(MODES.contains(&all(mode)), "{}", mode.as_str());
    }
}

#[tokio::test(start_paused = true)]
async fn a_burst_then_the_refill_rate() {
    let mut a = Admission::new(&RateLimitConfig {
        per_ip_rate: 10,
        per_ip_burst: 20,
        ..config()
    });
    assert_eq!(admitted(&mut a, 25, ip(1), "standard"), 20, "the burst");
    // 10/s is one token per 100 ms, not before.
    advance(99).await;
    assert_eq!(admitted(&mut a, 5, ip(1), "standard"), 0);
    advance(1).await;
    assert_eq!(admitted(&mut a, 5, ip(1), "standard"), 1);
    advance(1000).await;
    assert_eq!(admitted(&mut a, 15, ip(1), "standard"), 10, "one second, ten tokens");
    // A long pause refills up to the burst, no further.
    advance(60_000).await;
    assert_eq!(admitted(&mut a, 25, ip(1), "standard"), 20);
}

#[tokio::test(start_paused = true)]
async fn retry_after_is_the_time_until_the_next_token() {
    let mut a = Admission::new(&RateLimitConfig {
        per_ip_rate: 2,
        per_ip_burst: 1,
        ..config()
    });
    a.admit(ip(1), "standard").unwrap();
    let refused = a.admit(ip(1), "standard").unwrap_err();
    assert_eq!(refused.scope, Scope::Ip);
    assert_eq!(refused.mode, "standard");
    assert_eq!(refused.retry_after, Duration::from_millis(500));
    advance(180).await;
    let refused = a.admit(ip(1), "standard").unwrap_err();
    assert_eq!(refused.retry_after, Duration::from_millis(320));
    assert_eq!(refused.retry_after_secs(), 1);
    // Exactly then, and not a millisecond earlier, the token is back.
    advance(319).await;
    assert!(a.admit(ip(1), "standard").is_err());
    advance(1).await;
    assert!(a.admit(ip(1), "standard").is_ok());
    // The next one is a full interval away again, on the same grid.
    advance(123).await;
    assert_eq!(
        a.admit(ip(1), "standard").unwrap_err().retry_after,
        Duration::from_millis(377)
    );
}

#[tokio::test(start_paused = true)]
async fn retry_after_stays_on_the_grid_after_long_idle_times() {
    let mut a = Admission::new(&RateLimitConfig {
        global_rate: 3,
        global_burst: 1,
        per_ip_burst: 1000,
        ..config()
    });
    // 3/s refills three tokens per second, capped at the burst of 1.
    a.admit(ip(1), "gpu").unwrap();
    advance(2_700).await;
    a.admit(ip(1), "gpu").unwrap();
    let refused = a.admit(ip(1), "gpu").unwrap_err();
    assert_eq!(refused.scope, Scope::Global);
    assert_eq!(refused.retry_after, Duration::from_millis(300));
    advance(299).await;
    assert!(a.admit(ip(1), "gpu").is_err());
    advance(1).await;
    assert!(a.admit(ip(1), "gpu").is_ok());
}

#[tokio::test(start_paused = true)]
async fn addresses_are_independent() {
    let mut a = Admission::new(&config());
    assert_eq!(admitted(&mut a, 5, ip(1), "standard"), 2);
    assert_eq!(
        admitted(&mut a, 5, ip(2), "standard"),
        2,
        "another address has its own bucket"
    );
    let v6 = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1));
    let v6_other_net = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 1, 0, 0, 0, 1));
    assert_eq!(admitted(&mut a, 5, v6, "standard"), 2);
    assert_eq!(admitted(&mut a, 5, v6_other_net, "standard"), 2, "another /64");
    assert_eq!(a.admit(ip(1), "standard").unwrap_err().scope, Scope::Ip);
}

#[tokio::test(start_paused = true)]
async fn an_ipv6_client_cannot_rotate_through_its_64() {
    let mut a = Admission::new(&config());
    let host = |i: u16| IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 7, i, 0, 0, 1));
    let passed = (0..10).filter(|&i| a.admit(host(i), "standard").is_ok()).count();
    assert_eq!(passed, 2, "ten addresses of one /64 share its burst");
    // An IPv4-mapped address is the IPv4 client it maps.
    let mapped = IpAddr::V6(Ipv4Addr::new(192, 0, 2, 9).to_ipv6_mapped());
    assert_eq!(admitted(&mut a, 5, mapped, "standard"), 2);
    assert_eq!(a.admit(ip(9), "standard").unwrap_err().scope, Scope::Ip);
}

#[tokio::test(start_paused = true)]
async fn modes_are_independent() {
    let mut a = Admission::new(&RateLimitConfig {
        per_ip_burst: 1000,
        mode_gpu: 2,
        mode_audio_proxy: 3,
        ..config()
    });
    // Burst = 2 × rate for the mode buckets.
    assert_eq!(admitted(&mut a, 10, ip(1), "gpu"), 4);
    let refused = a.admit(ip(2), "gpu").unwrap_err();
    assert_eq!((refused.scope, refused.mode), (Scope::Mode, "gpu"));
    assert_eq!(refused.retry_after, Duration::from_millis(500));
    assert_eq!(admitted(&mut a, 10, ip(1), "audio_proxy"), 6);
    assert_eq!(admitted(&mut a, 10, ip(1), "standard"), 10);
    // A mode without a bucket of its own: global and per-address limits only.
    assert_eq!(admitted(&mut a, 10, ip(1), "other"), 10);
}

#[tokio::test(start_paused = true)]
async fn a_refusal_takes_no_token_from_the_other_buckets() {
    let mut a = Admission::new(&RateLimitConfig {
        global_rate: 1,
        global_burst: 3,
        per_ip_burst: 1,
        mode_gpu: 1,
        ..config()
    });
    a.admit(ip(1), "gpu").unwrap();
    // Refused by the address's bucket: the global (2 left) and gpu (1 left) keep theirs.
    for _ in 0..10 {
        assert_eq!(a.admit(ip(1), "gpu").unwrap_err().scope, Scope::Ip);
    }
    assert!(a.admit(ip(2), "gpu").is_ok(), "gpu's second token");
    // Refused by gpu's bucket: the global bucket (1 left) and ip(3)'s keep theirs.
    for _ in 0..10 {
        assert_eq!(a.admit(ip(3), "gpu").unwrap_err().scope, Scope::Mode);
    }
    assert!(
        a.admit(ip(3), "standard").is_ok(),
        "the last global token, ip(3)'s first"
    );
    assert_eq!(a.admit(ip(4), "standard").unwrap_err().scope, Scope::Global);
}

#[tokio::test(start_paused = true)]
async fn the_longest_wait_is_reported() {
    let mut a = Admission::new(&RateLimitConfig {
        global_rate: 10,
        global_burst: 1,
        per_ip_rate: 1,
        per_ip_burst: 1,
        ..config()
    });
    a.admit(ip(1), "standard").unwrap();
    let refused = a.admit(ip(1), "standard").unwrap_err();
    assert_eq!(
        refused.scope,
        Scope::Ip,
        "the address waits 1 s, the global bucket 100 ms"
    );
    assert_eq!(refused.retry_after, Duration::from_millis(1000));
    assert_eq!(a.admit(ip(2), "standard").unwrap_err().scope, Scope::Global);
}

#[tokio::test(start_paused = true)]
async fn disabled_admits_everything() {
    let mut a = Admission::new(&RateLimitConfig {
        enabled: false,
        global_burst: 1,
        per_ip_burst: 1,
        ..config()
    });
    assert_eq!(admitted(&mut a, 1000, ip(1), "gpu"), 1000);
    assert_eq!(a.tracked_ips(), 0);
    let handle = AdmissionHandle::spawn(
        &RateLimitConfig {
            enabled: false,
            ..config()
        },
        Arc::new(Metrics::new()),
        CancellationToken::new(),
    );
    assert!(!handle.is_enabled(), "no task when the limits are off");
    assert!(handle.admit(ip(1), "gpu").await.is_ok());
}

#[tokio::test(start_paused = true)]
async fn a_flood_of_addresses_keeps_at_most_max_tracked() {
    let mut a = Admission::new(&RateLimitConfig {
        global_rate: 1_000_000,
        global_burst: 1_000_000,
        mode_standard: 1_000_000,
        per_ip_rate: 1,
        per_ip_burst: 1,
        max_tracked_ips: 1000,
        ..config()
    });
    let mut most = 0;
    for n in 0..100_000u32 {
        let addr = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + n));
        assert!(a.admit(addr, "standard").is_ok(), "a new address has a full bucket");
        most = most.max(a.tracked_ips());
    }
    assert_eq!(most, 1000);
    // The most recent addresses are still tracked and limited...
    let last = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + 99_999));
    assert_eq!(a.admit(last, "standard").unwrap_err().scope, Scope::Ip);
    // ...the oldest were evicted, so they start afresh.
    assert!(a.admit(IpAddr::V4(Ipv4Addr::from(0x0a00_0000)), "standard").is_ok());
    // Idle addresses go once their buckets are full again (1 token at 1/s: 1 s).
    advance(1000).await;
    a.admit(ip(1), "standard").unwrap();
    assert_eq!(a.tracked_ips(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_recently_refused_address_is_not_evicted_first() {
    let mut a = Admission::new(&RateLimitConfig {
        per_ip_burst: 1,
        max_tracked_ips: 2,
        ..config()
    });
    a.admit(ip(1), "standard").unwrap();
    a.admit(ip(2), "standard").unwrap();
    // ip(1) keeps asking: it is the most recently seen now, so ip(2) goes for ip(3).
    assert!(a.admit(ip(1), "standard").is_err());
    a.admit(ip(3), "standard").unwrap();
    assert!(a.admit(ip(1), "standard").is_err(), "still limited");
    assert!(a.admit(ip(2), "standard").is_ok(), "evicted, so afresh");
}

#[tokio::test(start_paused = true)]
async fn the_task_answers_and_counts_refusals() {
    let metrics = Arc::new(Metrics::new());
    let shutdown = CancellationToken::new();
    let handle = AdmissionHandle::spawn(&config(), Arc::clone(&metrics), shutdown.clone());
    assert!(handle.admit(ip(1), "aac_mode_unknown").await.is_ok());
    assert!(handle.admit(ip(1), "gpu").await.is_ok());
    let refused = handle.admit(ip(1), "gpu").await.unwrap_err();
    assert_eq!(refused.scope, Scope::Ip);
    let line = "xg2g_rate_limit_exceeded_total{scope=\"ip\",mode=\"gpu\"} 1";
    assert!(metrics.encode().lines().any(|l| l == line), "{}", metrics.encode());
    shutdown.cancel();
    // After shutdown the task is gone: admitted (the registry refuses then).
    let tx = handle.tx.clone().expect("a task runs");
    tokio::time::timeout(Duration::from_secs(5), tx.closed())
        .await
        .expect("the task ends");
    assert!(handle.admit(ip(1), "gpu").await.is_ok());
}

/// Regression: a global or mode bucket that sat full through a quiet spell must not let twice
/// its burst through (the crate's fast path used to take from a stale balance).
#[tokio::test(start_paused = true)]
async fn a_quiet_spell_refills_the_global_bucket_to_its_burst_only() {
    let mut a = Admission::new(&RateLimitConfig {
        global_rate: 1,
        global_burst: 2,
        per_ip_rate: 1000,
        per_ip_burst: 1000,
        ..config()
    });
    advance(30_000).await;
    let passed = (0..5u8).filter(|i| a.admit(ip(*i), "standard").is_ok()).count();
    assert_eq!(
        passed, 2,
        "five distinct clients after a quiet spell: the global burst of two"
    );
    advance(30_000).await;
    let passed = (10..15u8).filter(|i| a.admit(ip(*i), "gpu").is_ok()).count();
    assert_eq!(passed, 2);
}

#[tokio::test(start_paused = true)]
async fn wrong_signatures_are_throttled_per_address_and_refill() {
    let mut throttle = FailureThrottle::new(1, 3, 100);
    let now = Instant::now;
    for _ in 0..3 {
        assert_eq!(throttle.check(ip(1), now()), Ok(()));
        throttle.record_failure(ip(1), now());
    }
    assert_eq!(throttle.check(ip(1), now()), Err(Duration::from_secs(1)));
    // Another address is not affected; another address of one IPv6 /64 is the same client.
    assert_eq!(throttle.check(ip(2), now()), Ok(()));
    let v6 = |last: u16| IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 1, 0, 0, 0, last));
    for _ in 0..3 {
        throttle.record_failure(v6(1), now());
    }
    assert!(throttle.check(v6(2), now()).is_err());
    advance(999).await;
    assert_eq!(throttle.check(ip(1), now()), Err(Duration::from_millis(1)));
    advance(1).await;
    assert_eq!(throttle.check(ip(1), now()), Ok(()));
    throttle.record_failure(ip(1), now());
    assert!(throttle.check(ip(1), now()).is_err());
}
