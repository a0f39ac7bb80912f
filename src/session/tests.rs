//! Unit tests of the session registry: joins, codec learning, error codes.

use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;

fn registry(shutdown: &CancellationToken) -> Registry {
    let settings = Settings {
        audio_languages: Vec::new(),
        idle_grace: Duration::from_secs(1),
        max_client_lag: Duration::from_secs(1),
        stall_timeout: Duration::from_secs(2),
        reconnect_attempts: 0,
        start_timeout: Duration::from_secs(1),
        hls_target_duration: 2,
        hls_window: 6,
        hls_idle_timeout: Duration::from_secs(30),
    };
    Registry::spawn(settings, Arc::new(Metrics::new()), shutdown.clone())
}

fn channel(sid: u16) -> ServiceRef {
    format!("1:0:19:{sid:X}:3FB:1:C00000:0:0:0:").parse().unwrap()
}

/// A probe that counts its runs and answers once `gate` is released.
fn probe(
    runs: &Arc<AtomicUsize>,
    gate: oneshot::Receiver<Result<VideoCodec, LearnError>>,
) -> futures_util::future::BoxFuture<'static, Result<VideoCodec, LearnError>> {
    let runs = runs.clone();
    Box::pin(async move {
        runs.fetch_add(1, Ordering::SeqCst);
        gate.await.unwrap_or(Err(LearnError::ShuttingDown))
    })
}

/// A receiver that never answers where its stream is: a session stays in its start, and
/// each start is counted.
struct Unanswered {
    starts: Arc<AtomicUsize>,
}

impl SourceLocator for Unanswered {
    fn locate(&self) -> futures_util::future::BoxFuture<'_, Result<String, String>> {
        self.starts.fetch_add(1, Ordering::SeqCst);
        Box::pin(futures_util::future::pending())
    }
    fn connected(&self, _: SourceOutcome) {}
}

/// More joins than a session's join queue holds, all while it starts: one session, one
/// start. (A full queue was once taken for an ending session, and a second pipeline ran.)
#[tokio::test(start_paused = true)]
async fn joins_beyond_the_queue_during_a_start_share_one_session() {
    let shutdown = CancellationToken::new();
    let registry = registry(&shutdown);
    let template = Arc::new(
        crate::pipeline::parse_template(
            std::path::Path::new("pipelines/copy.toml"),
            include_str!("../../pipelines/copy.toml"),
        )
        .expect("copy.toml parses"),
    );
    let starts = Arc::new(AtomicUsize::new(0));
    let locator: Arc<dyn SourceLocator> = Arc::new(Unanswered {
        starts: Arc::clone(&starts),
    });
    let key = SessionKey {
        service_ref: channel(1),
        profile: "copy".into(),
        output: Output::Ts,
    };
    let mut replies = Vec::new();
    for _ in 0..100 {
        let (reply, rx) = oneshot::channel();
        let start = StartSpec {
            template: Arc::clone(&template),
            encoder: None,
            locator: Arc::clone(&locator),
            authorization: None,
            encoder_slot: None,
        };
        let join = Command::Join {
            key: key.clone(),
            start,
            reply,
            trace: tracing::Span::none(),
        };
        registry.tx.send(join).await.unwrap();
        replies.push(rx);
    }
    // The registry answers in order: every join above has been handled.
    assert_eq!(registry.count().await, 1);
    // With the clock paused, this returns once every task is idle: each session started
    // has asked for its source by then.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(starts.load(Ordering::SeqCst), 1, "one session for 100 joins");
    assert!(
        replies
            .iter_mut()
            .all(|r| r.try_recv().is_err_and(|e| e == oneshot::error::TryRecvError::Empty)),
        "every join still waits for the one session's first bytes"
    );
    shutdown.cancel();
}

#[test]
fn the_first_video_stream_names_the_codec() {
    for (types, codec) in [
        (&[0x03, 0x1B][..], VideoCodec::H264),
        (&[0x24, 0x0F], VideoCodec::Hevc),
        (&[0x02], VideoCodec::Mpeg2),
        (&[0x01], VideoCodec::Mpeg2),
        (&[0x10], VideoCodec::Other),
        (&[0x03, 0x0F, 0x06], VideoCodec::None),
        (&[], VideoCodec::None),
        (&[0x03, 0x02, 0x1B], VideoCodec::Mpeg2),
    ] {
        assert_eq!(VideoCodec::from_stream_types(types), codec, "{types:x?}");
    }
}

#[test]
fn errors_map_to_stable_codes() {
    let second = Duration::from_secs(1);
    for (error, code) in [
        (SessionError::Upstream("x".into()), "upstream-unavailable"),
        (SessionError::StartTimeout(second), "upstream-unavailable"),
        (SessionError::NoTuner(second), "no-tuner"),
        (SessionError::ShuttingDown, "shutting-down"),
        (SessionError::EncoderFull("nvenc".into()), "encoder-queue-full"),
        (
            SessionError::Unplayable { profile: "copy".into() },
            "profile-unplayable",
        ),
    ] {
        assert_eq!(error.code(), code, "{error}");
    }
}

/// Concurrent requests for one channel's codec share one probe; its answer is remembered,
/// a failure is not.
#[tokio::test]
async fn one_probe_per_channel_and_its_answer_is_remembered() {
    let shutdown = CancellationToken::new();
    let registry = registry(&shutdown);
    let runs = Arc::new(AtomicUsize::new(0));
    assert_eq!(registry.codec(channel(1)).await, None);

    let (release, gate) = oneshot::channel();
    let (_unused, never) = oneshot::channel();
    let first = registry.learn_codec(channel(1), probe(&runs, gate));
    let second = registry.learn_codec(channel(1), probe(&runs, never));
    let answer = async {
        while runs.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        release.send(Ok(VideoCodec::H264)).unwrap();
    };
    let (first, second, ()) = tokio::join!(first, second, answer);
    assert_eq!(first.unwrap(), VideoCodec::H264);
    assert_eq!(second.unwrap(), VideoCodec::H264);
    assert_eq!(
        runs.load(Ordering::SeqCst),
        1,
        "the second request waited for the first probe"
    );
    assert_eq!(registry.codec(channel(1)).await, Some(VideoCodec::H264));
    let (_unused, never) = oneshot::channel();
    let known = registry.learn_codec(channel(1), probe(&runs, never)).await;
    assert_eq!(known.unwrap(), VideoCodec::H264);
    assert_eq!(runs.load(Ordering::SeqCst), 1, "a known codec is not probed again");

    let (release, gate) = oneshot::channel();
    release.send(Err(LearnError::Upstream("no PMT".into()))).unwrap();
    let failed = registry.learn_codec(channel(2), probe(&runs, gate)).await;
    assert!(matches!(failed, Err(LearnError::Upstream(_))), "{failed:?}");
    assert_eq!(registry.codec(channel(2)).await, None, "a failure is not remembered");
    assert_eq!(registry.count().await, 0);

    shutdown.cancel();
    let (_unused, never) = oneshot::channel();
    let late = registry.learn_codec(channel(3), probe(&runs, never)).await;
    assert!(matches!(late, Err(LearnError::ShuttingDown)), "{late:?}");
    assert_eq!(registry.count().await, 0);
}
