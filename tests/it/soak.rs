//! Soak: many session start/stop cycles must not leak threads, file descriptors or memory.
//! Ignored by default (minutes); run with
//! `cargo test --release --test it soak -- --ignored --nocapture` (XG2G_SOAK_CYCLES to change).

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures_util::StreamExt;

use crate::common::{client, config_for, demo, ready, start_app};

const HD: &str = "1:0:19:283D:3FB:1:C00000:0:0:0:";

fn status_field(name: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn open_files() -> usize {
    std::fs::read_dir("/proc/self/fd").map(|d| d.count()).unwrap_or(0)
}

#[derive(Debug, Clone, Copy)]
struct Sample {
    threads: u64,
    files: usize,
    rss_kib: u64,
}

/// Median and maximum of some durations, in milliseconds.
fn spread(times: &mut [Duration]) -> String {
    times.sort();
    match (times.get(times.len() / 2), times.last()) {
        (Some(median), Some(max)) => format!("median {} ms, max {} ms", median.as_millis(), max.as_millis()),
        _ => "none".to_owned(),
    }
}

/// The sum of `xg2g_sessions_active` over its modes, from `/metrics`.
async fn sessions_active(http: &reqwest::Client, base: &str) -> f64 {
    let text = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter(|l| l.starts_with("xg2g_sessions_active{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn sample() -> Sample {
    Sample {
        threads: status_field("Threads:"),
        files: open_files(),
        rss_kib: status_field("VmRSS:"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "minutes long: run on purpose, see the module doc"]
async fn thousand_session_cycles_leave_no_leak() {
    let cycles: usize = std::env::var("XG2G_SOAK_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000);
    let demo = demo().await;
    let (running, base) = start_app(&config_for(&demo, &[("streaming.idle_grace", "0s")])).await;
    ready(&running).await;
    let http = client();
    let url = format!("{base}/stream/{HD}?profile=aac");
    let mut warm = None;
    let started = Instant::now();
    // Per cycle: request to the first 16 KiB, and last client gone to receiver connection closed.
    let (mut first_bytes, mut teardowns) = (Vec::new(), Vec::new());
    for cycle in 0..cycles {
        let requested = Instant::now();
        let response = http.get(&url).send().await.unwrap();
        assert_eq!(response.status(), 200, "cycle {cycle}");
        let mut body = response.bytes_stream();
        let mut got = 0;
        while got < 16 * 1024 {
            got += body.next().await.expect("stream data").unwrap().len();
        }
        first_bytes.push(requested.elapsed());
        drop(body);
        let left = Instant::now();
        // The session ends once its last client is gone; wait for the receiver connection to close.
        let closed = tokio::time::timeout(Duration::from_secs(10), async {
            while demo.stats().active_streams.load(Ordering::Relaxed) > 0 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
        assert!(closed.is_ok(), "cycle {cycle}: the session did not end");
        teardowns.push(left.elapsed());
        if cycle == 49 {
            warm = Some(sample());
        }
        if cycle % 100 == 99 {
            let s = sample();
            eprintln!(
                "soak: cycle {} threads {} files {} rss {} KiB after {:?}; last 100: 16 KiB in {}, closed in {}",
                cycle + 1,
                s.threads,
                s.files,
                s.rss_kib,
                started.elapsed(),
                spread(&mut first_bytes),
                spread(&mut teardowns),
            );
            first_bytes.clear();
            teardowns.clear();
        }
    }
    // Sampled where the per-100 lines are: before the /metrics requests below open connections.
    let end = sample();
    // Every session is gone from xg2g too, not only its receiver connection.
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        while sessions_active(&http, &base).await > 0.0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(
        ended.is_ok(),
        "xg2g_sessions_active stayed above 0 after the last cycle"
    );
    let warm = warm.expect("at least 50 cycles");
    eprintln!(
        "soak: after warm-up {warm:?}; after {cycles} cycles {end:?}; {:?}",
        started.elapsed()
    );
    assert!(end.threads <= warm.threads + 4, "threads grew: {warm:?} -> {end:?}");
    assert!(end.files <= warm.files + 8, "open files grew: {warm:?} -> {end:?}");
    assert!(
        end.rss_kib <= warm.rss_kib + 64 * 1024,
        "RSS grew more than 64 MiB: {warm:?} -> {end:?}"
    );
    running.stop().await;
}
