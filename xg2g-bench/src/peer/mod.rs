//! The peers' way, for comparison: a minimal HTTP proxy that runs one FFmpeg process per client.
//!
//! `GET /ts/{profile}?src=…` runs one `ffmpeg` for that request and streams its stdout;
//! `GET /hls/{client}/{profile}/media.m3u8?src=…` runs one `ffmpeg -f hls` per client id and
//! waits for its playlist file, as Jellyfin does; `GET /hls/{client}/{profile}/{n}.ts` serves its
//! segment files; `GET /hls/{client}/ladder[-copy]/index.m3u8?src=…` runs one ffmpeg that makes
//! a whole ladder (`ladder.rs`), its variants `media_N.m3u8` beside it; `POST /reset` stops every
//! HLS ffmpeg; `GET /healthz`. Every child is owned by
//! one task that kills and reaps it: a TS child by its request's task (it ends when the response
//! body is dropped), the HLS children by one actor that owns their map.

mod children;
mod error;
mod ffmpeg;
mod hls;
mod ladder;
mod request;
mod ts;

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use actix_web::{HttpResponse, web};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::ladder::LadderSpec;
use children::Children;
use hls::{HlsCommand, hls, hls_actor, reset};
use ts::ts;

/// Serves on `listener` until `shutdown` is cancelled; every ffmpeg child is killed and reaped
/// before it returns. `ladder` is what a `ladder` client gets.
pub async fn serve(
    listener: std::net::TcpListener,
    work_dir: std::path::PathBuf,
    ladder: LadderSpec,
    shutdown: tokio_util::sync::CancellationToken,
) -> std::io::Result<()> {
    serve_with(listener, work_dir, ladder, shutdown, Arc::new(Children::new())).await
}

async fn serve_with(
    listener: std::net::TcpListener,
    work_dir: PathBuf,
    ladder: LadderSpec,
    shutdown: CancellationToken,
    children: Arc<Children>,
) -> io::Result<()> {
    listener.set_nonblocking(true)?;
    // Our own token, so that dropping this future also stops the children it started.
    let shutdown = shutdown.child_token();
    let _stop_on_drop = shutdown.clone().drop_guard();
    let (hls_tx, hls_rx) = mpsc::channel(64);
    // The task "peer-hls": owns the HLS children; ends on shutdown after reaping them.
    let hls_actor = tokio::spawn(hls_actor(
        work_dir.clone(),
        ladder,
        hls_rx,
        shutdown.clone(),
        Arc::clone(&children),
    ));
    let peer = web::Data::new(Peer {
        work_dir,
        hls: hls_tx,
        tasks: TaskTracker::new(),
        runtime: tokio::runtime::Handle::current(),
        shutdown: shutdown.clone(),
        children,
    });
    let app_peer = peer.clone();
    let server = actix_web::HttpServer::new(move || {
        actix_web::App::new()
            .app_data(app_peer.clone())
            .route("/healthz", web::get().to(healthz))
            .route("/ts/{profile}", web::get().to(ts))
            .route("/hls/{client}/{profile}/{name}", web::get().to(hls))
            .route("/reset", web::post().to(reset))
    })
    .disable_signals()
    .shutdown_timeout(5)
    .listen(listener)?
    .run();
    let handle = server.handle();
    let mut server = tokio::spawn(server);
    let result = tokio::select! {
        joined = &mut server => joined.unwrap_or_else(|e| Err(io::Error::other(e))),
        () = shutdown.cancelled() => {
            // The children stop with the token; their responses end, so a graceful stop is quick.
            handle.stop(true).await;
            server.await.unwrap_or_else(|e| Err(io::Error::other(e)))
        }
    };
    shutdown.cancel();
    peer.tasks.close();
    peer.tasks.wait().await;
    if let Err(error) = hls_actor.await {
        tracing::error!(%error, "The HLS child owner failed.");
    }
    result
}

/// What the handlers share.
struct Peer {
    work_dir: PathBuf,
    hls: mpsc::Sender<HlsCommand>,
    /// The TS children's tasks, so that `serve` can wait until each has reaped its child.
    tasks: TaskTracker,
    /// The runtime `serve` runs on: children live there, not on an HTTP worker's runtime, which
    /// stops before they are reaped.
    runtime: tokio::runtime::Handle,
    shutdown: CancellationToken,
    children: Arc<Children>,
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().body("ok")
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::process::Stdio;
    use std::time::Duration;

    /// Whether ffmpeg and ffprobe run here (scripts/deps.sh installs them).
    #[allow(clippy::disallowed_methods, reason = "the test checks for the tools it drives")]
    fn ffmpeg_present() -> bool {
        ["ffmpeg", "ffprobe"].iter().all(|tool| {
            std::process::Command::new(tool)
                .arg("-version")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })
    }

    /// `codec_name,profile` of each stream ffprobe finds in `bytes`.
    #[allow(
        clippy::disallowed_methods,
        reason = "ffprobe validates the output; nobody here wrote it"
    )]
    fn probe(bytes: &[u8]) -> Vec<String> {
        let file = tempfile::NamedTempFile::new().expect("temp file");
        std::fs::write(file.path(), bytes).expect("write sample");
        let out = std::process::Command::new("ffprobe")
            .args([
                "-v",
                "error",
                "-show_entries",
                "stream=codec_name,profile",
                "-of",
                "csv=p=0",
            ])
            .arg(file.path())
            .output()
            .expect("run ffprobe");
        assert!(
            out.status.success(),
            "ffprobe: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// Whether `pid` is gone: no process, or (reused pid) not our child.
    fn gone(pid: u32) -> bool {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => true,
            // Fields after the parenthesised name: state, ppid.
            Ok(stat) => stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                .is_none_or(|ppid| ppid != std::process::id().to_string()),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn proxies_ts_and_hls_through_ffmpeg_and_leaves_no_child() {
        if !ffmpeg_present() {
            eprintln!("SKIP: ffmpeg/ffprobe not installed (scripts/deps.sh installs them)");
            return;
        }
        let demo = xg2g::demo::DemoReceiver::start(xg2g::demo::DemoOptions::default())
            .await
            .expect("demo receiver");
        let src = format!("http://{}/1:0:19:283D:3FB:1:C00000:0:0:0:", demo.stream_addr());
        let src_q: String = url::form_urlencoded::byte_serialize(src.as_bytes()).collect();
        let work = tempfile::tempdir().expect("work dir");
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let shutdown = CancellationToken::new();
        let children = Arc::new(Children::new());
        let mut live = children.live.subscribe();
        let server = tokio::spawn(serve_with(
            listener,
            work.path().to_owned(),
            LadderSpec::default(),
            shutdown.clone(),
            Arc::clone(&children),
        ));
        let http = reqwest::Client::builder().no_proxy().build().expect("client");
        let get = |path: String| http.get(format!("{base}{path}")).send();
        let status = |path: String| {
            let request = get(path);
            async move { request.await.expect("request").status().as_u16() }
        };

        assert_eq!(status("/healthz".into()).await, 200);
        assert_eq!(status("/ts/aac?src=http%3A%2F%2F192.0.2.1%2Fx".into()).await, 400);
        assert_eq!(status(format!("/ts/mp3?src={src_q}")).await, 400);
        assert_eq!(status(format!("/hls/c.1/aac/media.m3u8?src={src_q}")).await, 400);
        assert_eq!(status("/hls/c1/aac/0.ts.tmp".into()).await, 400);
        assert_eq!(status("/hls/c1/aac/999999.ts".into()).await, 404);
        assert_eq!(*live.borrow(), 0, "rejected requests start no ffmpeg");

        // TS: about 3 s of the audio proxy after its first byte, then the client leaves.
        let mut response = tokio::time::timeout(Duration::from_secs(20), get(format!("/ts/aac?src={src_q}")))
            .await
            .expect("TS response within 20 s")
            .expect("TS request");
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], "video/mp2t");
        let mut ts = Vec::new();
        let read = async {
            while let Some(chunk) = response.chunk().await.expect("TS body") {
                ts.extend_from_slice(&chunk);
            }
        };
        assert!(
            tokio::time::timeout(Duration::from_secs(3), read).await.is_err(),
            "the stream is endless"
        );
        drop(response);
        let streams = probe(&ts);
        assert!(streams.iter().any(|s| s.starts_with("h264")), "{streams:?}");
        assert!(streams.iter().any(|s| s == "aac,LC"), "{streams:?}");
        tokio::time::timeout(Duration::from_secs(10), live.wait_for(|n| *n == 0))
            .await
            .expect("the TS ffmpeg is reaped once its client leaves")
            .expect("live count");

        // HLS: the first playlist request starts ffmpeg and waits for a segment.
        let playlist = tokio::time::timeout(
            Duration::from_secs(40),
            get(format!("/hls/c1/aac/media.m3u8?src={src_q}")),
        )
        .await
        .expect("playlist within 40 s")
        .expect("playlist request");
        assert_eq!(playlist.status(), 200);
        assert_eq!(playlist.headers()["content-type"], "application/vnd.apple.mpegurl");
        let playlist = playlist.text().await.expect("playlist body");
        assert!(playlist.starts_with("#EXTM3U"), "{playlist}");
        let segment = playlist
            .lines()
            .find(|l| !l.starts_with('#') && l.ends_with(".ts"))
            .expect("a segment")
            .to_owned();
        let again = get(format!("/hls/c1/aac/media.m3u8?src={src_q}")).await.expect("again");
        assert_eq!(again.status(), 200);
        assert_eq!(*live.borrow(), 1, "one ffmpeg per HLS client, however many requests");
        let response = get(format!("/hls/c1/aac/{segment}")).await.expect("segment request");
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], "video/mp2t");
        let bytes = response.bytes().await.expect("segment body");
        assert_eq!(bytes.first(), Some(&0x47), "an MPEG-TS segment");
        let streams = probe(&bytes);
        assert!(streams.iter().any(|s| s == "aac,LC"), "{streams:?}");

        // A ladder: one ffmpeg, its master listing the rungs, each variant served by name.
        assert_eq!(status("/hls/l1/ladder/media_1.m3u8".into()).await, 404, "no ladder yet");
        assert_eq!(status(format!("/hls/l1/ladder/media.m3u8?src={src_q}")).await, 400);
        let master = tokio::time::timeout(
            Duration::from_secs(40),
            get(format!("/hls/l1/ladder-copy/index.m3u8?src={src_q}")),
        )
        .await
        .expect("master within 40 s")
        .expect("master request");
        assert_eq!(master.status(), 200);
        let master = master.text().await.expect("master body");
        assert!(
            master.contains("RESOLUTION=1280x720") && master.contains("media_2.m3u8"),
            "{master}"
        );
        let variant = get("/hls/l1/ladder-copy/media_2.m3u8".into()).await.expect("variant");
        assert_eq!(variant.status(), 200);
        let variant = variant.text().await.expect("variant body");
        let segment = variant
            .lines()
            .find(|l| l.starts_with("2_") && l.ends_with(".ts"))
            .unwrap_or_else(|| panic!("a segment of rung 2: {variant}"))
            .to_owned();
        let bytes = get(format!("/hls/l1/ladder-copy/{segment}"))
            .await
            .expect("segment")
            .bytes()
            .await
            .expect("segment body");
        let streams = probe(&bytes);
        // Video only: the audio is its own rendition. (ffprobe lists a program's streams again.)
        assert!(streams.iter().any(|s| s.starts_with("h264")), "{streams:?}");
        assert!(!streams.iter().any(|s| s.starts_with("aac")), "{streams:?}");
        assert_eq!(*live.borrow(), 2, "one ffmpeg for the whole ladder");

        // Reset reaps the HLS ffmpegs and removes their directories before it answers.
        let reset = http.post(format!("{base}/reset")).send().await.expect("reset");
        assert_eq!(reset.status(), 204);
        assert_eq!(*live.borrow(), 0);
        assert!(!work.path().join("c1").exists() && !work.path().join("l1").exists());

        // Shutdown with an HLS client and a TS client still starting.
        let hls_pending = tokio::spawn(get(format!("/hls/c2/copy/media.m3u8?src={src_q}")));
        let ts_pending = tokio::spawn(get(format!("/ts/copy?src={src_q}")));
        tokio::time::timeout(Duration::from_secs(10), live.wait_for(|n| *n == 2))
            .await
            .expect("both ffmpegs start")
            .expect("live count");
        shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(20), server)
            .await
            .expect("serve returns within 20 s of shutdown")
            .expect("serve task")
            .expect("serve");
        assert_eq!(*live.borrow(), 0);
        let pids = children.pids.lock().expect("pids").clone();
        assert_eq!(pids.len(), 5, "two TS, two HLS and a ladder ffmpeg: {pids:?}");
        for pid in pids {
            assert!(gone(pid), "ffmpeg {pid} is left (a zombie or still running)");
        }
        let left: Vec<_> = std::fs::read_dir(work.path()).expect("work dir").collect();
        assert!(left.is_empty(), "HLS directories left: {left:?}");
        for pending in [hls_pending, ts_pending] {
            let answered = tokio::time::timeout(Duration::from_secs(5), pending).await;
            assert!(answered.is_ok(), "a pending request hangs after shutdown");
        }
        demo.stop().await;
    }
}
