//! Load clients that behave like players: a TS reader and an HLS poller, with their figures.
//!
//! [`run`] is the IO edge: one request loop per client, every await bounded by the run's end.
//! What a client measures lives in small pure types beside it, tested without a runtime:
//! [`PcrScanner`] finds the PCR in received TS without copying it, [`PcrClock`] turns PCRs into
//! media time, [`SpeedMeter`] compares media time with wall time inside the window, [`Waits`]
//! counts a TS client's stalls, [`PlayerBuffer`] an HLS player's, and [`SegmentTracker`]
//! decides which HLS segments are new.
//!
//! [`PcrScanner`]: ts::PcrScanner
//! [`PcrClock`]: ts::PcrClock
//! [`SpeedMeter`]: figures::SpeedMeter
//! [`Waits`]: figures::Waits
//! [`PlayerBuffer`]: hls::PlayerBuffer
//! [`SegmentTracker`]: hls::SegmentTracker

mod figures;
mod hls;
mod ts;

use std::time::Duration;

use tokio::time::{Instant, timeout_at};

use hls::run_hls;
use ts::run_ts;

/// Errors a client keeps as text; later ones are only counted.
const MAX_ERRORS: usize = 20;
/// How far past `end` [`run`] may go at worst (every await is bounded by `end` already).
const GRACE: Duration = Duration::from_millis(900);

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub(crate) enum ClientKind {
    Ts,
    Hls,
}

#[derive(Debug, Clone)]
pub(crate) struct ClientSpec {
    pub kind: ClientKind,
    /// TS: the stream URL. HLS: the first playlist URL — a master playlist (its first variant
    /// is followed) or a media playlist; which one is told by its content.
    pub url: String,
    /// HLS: the variant of a master playlist to play (0: the first; a ladder's rung).
    pub variant: usize,
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub(crate) struct ClientOutcome {
    /// TS: request sent → first body byte.
    pub ttfb: Option<Duration>,
    /// HLS: first request sent → a media playlist listing ≥ 1 segment has been received.
    pub first_playlist: Option<Duration>,
    /// HLS: first request sent → the first segment is in hand (the earliest a player's first
    /// frame can be).
    pub first_segment: Option<Duration>,
    /// Bytes of media received (TS body, or HLS segment bytes).
    pub bytes: u64,
    /// HLS: segments received whole.
    pub segments: u32,
    /// TS: times, after the first media, that the client waited longer than a segment for new
    /// data. HLS: times a player's buffer ran dry ([`PlayerBuffer`](hls::PlayerBuffer)).
    pub stalls: u32,
    /// The longest wait for new data seen after the first media (a stall or not).
    pub longest_wait: Duration,
    /// When the first few stalls began, from the client's start.
    pub stalled_at: Vec<Duration>,
    /// HLS: the longest segment (EXTINF) and the slowest playlist answer seen.
    pub longest_segment: Duration,
    pub slowest_playlist: Duration,
    pub slowest_segment: Duration,
    /// Media time received per second of wall time inside [window_start, end] (≈ 1.0 when the
    /// server keeps real time); `None` if not measurable.
    pub speed: Option<f64>,
    /// Every error, short text; at most [`MAX_ERRORS`] entries.
    pub errors: Vec<String>,
    /// Errors in all, kept or not.
    pub error_count: u32,
}

impl ClientOutcome {
    fn error(&mut self, text: impl Into<String>) {
        self.error_count += 1;
        if self.errors.len() < MAX_ERRORS {
            self.errors.push(text.into());
        }
    }
}

/// Runs one client until `end`, then returns its figures. Never panics; never runs past `end`
/// by more than a second.
pub(crate) async fn run(
    http: &reqwest::Client,
    spec: &ClientSpec,
    window_start: Instant,
    end: Instant,
    segment: Duration,
) -> ClientOutcome {
    let start = Instant::now();
    let clock = Clock {
        start,
        window_start: window_start.saturating_duration_since(start),
        end,
    };
    let mut out = ClientOutcome::default();
    let work = async {
        match spec.kind {
            ClientKind::Ts => run_ts(http, &spec.url, &clock, segment, &mut out).await,
            ClientKind::Hls => run_hls(http, &spec.url, spec.variant, &clock, segment, &mut out).await,
        }
    };
    // Every await inside is bounded by `end`; this only guards against a slow body read.
    let _ = timeout_at(end + GRACE, work).await;
    out
}

/// Times of one client, as offsets from its start so that the pure types stay clock-free.
struct Clock {
    start: Instant,
    window_start: Duration,
    end: Instant,
}

impl Clock {
    fn now(&self) -> (Instant, Duration) {
        let now = Instant::now();
        (now, now.saturating_duration_since(self.start))
    }
}

/// A short text for a request error: its kind and the innermost cause, without the URL.
fn describe(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connect"
    } else if e.is_body() || e.is_decode() {
        "body"
    } else {
        "request"
    };
    let mut cause: &dyn std::error::Error = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    format!("{kind}: {cause}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcome_keeps_twenty_errors_and_counts_all() {
        let mut out = ClientOutcome::default();
        for i in 0..25 {
            out.error(format!("e{i}"));
        }
        assert_eq!((out.errors.len(), out.error_count), (20, 25));
        assert_eq!(out.errors.last().map(String::as_str), Some("e19"));
    }

    // Against real servers: the demo receiver, and xg2g in front of it.

    const HD: &str = "1:0:19:283D:3FB:1:C00000:0:0:0:";

    fn http() -> reqwest::Client {
        reqwest::Client::builder().build().expect("client")
    }

    async fn demo() -> xg2g::demo::DemoReceiver {
        xg2g::demo::DemoReceiver::start(xg2g::demo::DemoOptions::default())
            .await
            .expect("demo receiver starts")
    }

    async fn xg2g(demo: &xg2g::demo::DemoReceiver) -> xg2g::app::Running {
        use xg2g::config::{Override, Requirements, Sources};
        let overrides = vec![
            Override::new("listen", "127.0.0.1:0", "test"),
            Override::new("receiver.base_url", demo.api_url(), "test"),
            Override::new("receiver.stream_port", demo.stream_addr().port().to_string(), "test"),
            Override::new("receiver.relay_port", demo.relay_addr().port().to_string(), "test"),
        ];
        let no_env = |_: &str| None;
        let sources = Sources {
            file: None,
            env: &no_env,
            overrides,
        };
        let config = xg2g::config::load(&sources, Requirements::Receiver)
            .expect("test config is valid")
            .config;
        let running = xg2g::app::start(&config).await.expect("xg2g starts");
        let mut catalog = running.catalog();
        tokio::time::timeout(Duration::from_secs(30), catalog.ready())
            .await
            .expect("catalog loads within 30 s");
        running
    }

    fn spec(kind: ClientKind, url: String) -> ClientSpec {
        ClientSpec { kind, url, variant: 0 }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn ts_client_reads_the_demo_stream_in_real_time() {
        tokio::time::timeout(Duration::from_secs(30), async {
            let demo = demo().await;
            let url = format!("http://{}/{HD}", demo.stream_addr());
            let now = Instant::now();
            let spec = spec(ClientKind::Ts, url);
            let out = run(
                &http(),
                &spec,
                now + Duration::from_secs(1),
                now + Duration::from_secs(4),
                Duration::from_secs(2),
            )
            .await;
            let took = now.elapsed();
            demo.stop().await;
            eprintln!("{out:?}");
            assert!(took < Duration::from_secs(5), "ran {took:?}");
            assert!(out.ttfb.is_some() && out.bytes > 0, "{out:?}");
            assert!(out.errors.is_empty() && out.error_count == 0, "{out:?}");
            assert_eq!(out.stalls, 0, "{out:?}");
            let speed = out.speed.expect("the demo stream carries a PCR");
            assert!((0.8..1.25).contains(&speed), "speed {speed}");
        })
        .await
        .expect("test within 30 s");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn hls_client_follows_the_master_playlist_of_xg2g() {
        tokio::time::timeout(Duration::from_secs(90), async {
            let demo = demo().await;
            let running = xg2g(&demo).await;
            let url = format!("http://{}/hls/{HD}/aac/index.m3u8", running.addr());
            let now = Instant::now();
            let spec = spec(ClientKind::Hls, url);
            let out = run(
                &http(),
                &spec,
                now + Duration::from_secs(4),
                now + Duration::from_secs(10),
                Duration::from_secs(2),
            )
            .await;
            let took = now.elapsed();
            running.stop().await;
            demo.stop().await;
            eprintln!("{out:?}");
            assert!(took < Duration::from_secs(11), "ran {took:?}");
            assert!(
                out.first_playlist.is_some() && out.bytes > 0 && out.segments >= 2,
                "{out:?}"
            );
            assert!(out.errors.is_empty() && out.error_count == 0, "{out:?}");
            assert_eq!(out.stalls, 0, "{out:?}");
            assert!(out.ttfb.is_none());
        })
        .await
        .expect("test within 90 s");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn ts_client_reports_a_refused_stream() {
        tokio::time::timeout(Duration::from_secs(60), async {
            let demo = demo().await;
            let running = xg2g(&demo).await;
            let now = Instant::now();
            let end = now + Duration::from_secs(3);
            let segment = Duration::from_secs(2);
            let bad_box = spec(
                ClientKind::Ts,
                format!("http://{}/1:0:1:DEAD:1:1:C00000:0:0:0:", demo.stream_addr()),
            );
            let box_out = run(&http(), &bad_box, now, end, segment).await;
            let bad_xg2g = spec(
                ClientKind::Ts,
                format!("http://{}/stream/1:0:1:DEAD:1:1:C00000:0:0:0:", running.addr()),
            );
            let xg2g_out = run(&http(), &bad_xg2g, now, end, segment).await;
            let bad_hls = spec(
                ClientKind::Hls,
                format!(
                    "http://{}/hls/1:0:1:DEAD:1:1:C00000:0:0:0:/aac/index.m3u8",
                    running.addr()
                ),
            );
            let hls_out = run(&http(), &bad_hls, now, now + Duration::from_millis(2500), segment).await;
            running.stop().await;
            demo.stop().await;
            for out in [&box_out, &xg2g_out] {
                assert_eq!(out.errors, ["HTTP 404"], "{out:?}");
                assert!(out.ttfb.is_none() && out.bytes == 0 && out.speed.is_none(), "{out:?}");
            }
            assert!(hls_out.first_playlist.is_none() && hls_out.bytes == 0, "{hls_out:?}");
            assert!(
                hls_out.errors.len() >= 2 && hls_out.errors.iter().all(|e| e == "playlist: HTTP 404"),
                "retried at each poll: {hls_out:?}"
            );
        })
        .await
        .expect("test within 60 s");
    }
}
