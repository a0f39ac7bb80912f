//! The peers' way, for comparison: a minimal HTTP proxy that runs one FFmpeg process per client.
//!
//! `GET /ts/{profile}?src=…` runs one `ffmpeg` for that request and streams its stdout;
//! `GET /hls/{client}/{profile}/media.m3u8?src=…` runs one `ffmpeg -f hls` per client id and
//! waits for its playlist file, as Jellyfin does; `GET /hls/{client}/{profile}/{n}.ts` serves its
//! segment files; `POST /reset` stops every HLS ffmpeg; `GET /healthz`. Every child is owned by
//! one task that kills and reaps it: a TS child by its request's task (it ends when the response
//! body is dropped), the HLS children by one actor that owns their map.

use std::collections::HashMap;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError, web};
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use tokio::io::AsyncReadExt;
use tokio::process::Child;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How long a playlist request waits for ffmpeg's first playlist with a segment.
const PLAYLIST_WAIT: Duration = Duration::from_secs(30);
/// How often it looks at the file system meanwhile (the peers poll files too).
const PLAYLIST_POLL: Duration = Duration::from_millis(50);
/// Bytes read from ffmpeg's stdout at most per chunk.
const CHUNK: usize = 64 * 1024;
/// Chunks queued between ffmpeg and a slow client before ffmpeg's pipe fills and it blocks.
const QUEUED_CHUNKS: usize = 16;
const PLAYLIST: &str = "media.m3u8";

/// Deinterlaces what is interlaced (25i to 50p, one frame per field), passes progressive 50p
/// through and scales like xg2g's h264.toml: down to fit 1280x720, never up (576i 16:9 becomes
/// 1024x576), square pixels. xg2g's h264.toml uses GStreamer's `deinterlace method=linear
/// fields=all` (mode auto): the same frame rates, a cheaper filter than yadif; close enough for a
/// CPU comparison. Plain `yadif=1` (deint=all) would double the progressive HD channel to 100 fps
/// and twice the x264 work; `fps=50` keeps the declared rate at 50 (yadif declares 100 even for
/// the frames it passes through, which made x264's rate control aim at half the bitrate).
const H264_FILTER: &str = "yadif=mode=send_field:deint=interlaced,fps=50,\
     scale=w='trunc(min(720,ih)*dar/2)*2':h='min(720,ih)',setsar=1,format=yuv420p";

/// Serves on `listener` until `shutdown` is cancelled; every ffmpeg child is killed and reaped before it returns.
pub async fn serve(
    listener: std::net::TcpListener,
    work_dir: std::path::PathBuf,
    shutdown: tokio_util::sync::CancellationToken,
) -> std::io::Result<()> {
    serve_with(listener, work_dir, shutdown, Arc::new(Children::new())).await
}

async fn serve_with(
    listener: std::net::TcpListener,
    work_dir: PathBuf,
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

/// What the proxy answers instead of success: a status and `{"error":{"code","message"}}`. The
/// proxy is its own HTTP edge (not xg2g's), so its errors map here.
#[derive(Debug, thiserror::Error)]
enum PeerError {
    #[error(transparent)]
    Profile(#[from] UnknownProfile),
    #[error("invalid src: {detail}")]
    InvalidSource { detail: String },
    #[error("invalid client id: use 1 to 32 of A-Z a-z 0-9 _ -")]
    InvalidClient,
    #[error("invalid segment name: use [0-9A-Za-z_]+.ts")]
    InvalidSegment,
    #[error("no such segment")]
    SegmentNotFound,
    #[error("could not start ffmpeg: {0}")]
    Spawn(#[source] io::Error),
    #[error("ffmpeg ended before it wrote a byte")]
    NoOutput,
    #[error("this client's ffmpeg has ended ({status}); POST /reset to start over")]
    Exited { status: String },
    #[error("ffmpeg wrote no playlist with a segment within {}s", PLAYLIST_WAIT.as_secs())]
    PlaylistTimeout,
    #[error("the proxy is shutting down")]
    ShuttingDown,
    #[error("file system: {0}")]
    Io(#[from] io::Error),
}

impl PeerError {
    fn code(&self) -> &'static str {
        match self {
            PeerError::Profile(_) => "invalid-profile",
            PeerError::InvalidSource { .. } => "invalid-source",
            PeerError::InvalidClient => "invalid-client",
            PeerError::InvalidSegment => "invalid-segment",
            PeerError::SegmentNotFound => "segment-not-found",
            PeerError::Spawn(_) => "ffmpeg-unavailable",
            PeerError::NoOutput => "ffmpeg-no-output",
            PeerError::Exited { .. } => "ffmpeg-exited",
            PeerError::PlaylistTimeout => "playlist-timeout",
            PeerError::ShuttingDown => "shutting-down",
            PeerError::Io(_) => "io",
        }
    }
}

impl ResponseError for PeerError {
    fn status_code(&self) -> StatusCode {
        match self {
            PeerError::Profile(_)
            | PeerError::InvalidSource { .. }
            | PeerError::InvalidClient
            | PeerError::InvalidSegment => StatusCode::BAD_REQUEST,
            PeerError::SegmentNotFound => StatusCode::NOT_FOUND,
            PeerError::NoOutput | PeerError::Exited { .. } => StatusCode::BAD_GATEWAY,
            PeerError::PlaylistTimeout => StatusCode::GATEWAY_TIMEOUT,
            PeerError::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
            PeerError::Spawn(_) | PeerError::Io(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        HttpResponse::build(self.status_code())
            .json(serde_json::json!({"error": {"code": self.code(), "message": self.to_string()}}))
    }
}

/// The three ways the peers run FFmpeg for a live channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Profile {
    /// The original product's audio proxy: video copied, audio to stereo AAC.
    Aac,
    /// Remux only.
    Copy,
    /// Deinterlace, scale to 720p, x264 and AAC.
    H264,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("unknown profile `{0}`: use aac, copy or h264")]
struct UnknownProfile(String);

impl std::str::FromStr for Profile {
    type Err = UnknownProfile;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "aac" => Ok(Profile::Aac),
            "copy" => Ok(Profile::Copy),
            "h264" => Ok(Profile::H264),
            other => Err(UnknownProfile(other.chars().take(32).collect())),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Output {
    /// MPEG-TS on stdout.
    Ts,
    /// `media.m3u8` and `%d.ts` in `hls_dir`.
    Hls,
}

/// The ffmpeg command line (without `ffmpeg`) for one profile and output. For HLS, `hls_dir` is
/// where the playlist and segments go (`None`: ffmpeg's working directory).
fn ffmpeg_args(profile: Profile, output: Output, src: &str, hls_dir: Option<&Path>) -> Vec<String> {
    let words = |s: &str| s.split_whitespace().map(str::to_owned).collect::<Vec<_>>();
    let mut args = words("-hide_banner -loglevel error -nostdin -fflags +genpts+igndts -i");
    args.push(src.to_owned());
    // `-map 0:v?`: with the original's plain `-map 0:v` ffmpeg 5.1 refuses the radio channel
    // ("Stream map '0:v' matches no streams") after probing, and writes nothing.
    args.extend(words(match profile {
        Profile::Aac => {
            "-map 0:v? -c:v copy -map 0:a -c:a aac -b:a 192k -ac 2 -async 1 -start_at_zero \
             -avoid_negative_ts make_zero -muxdelay 0 -muxpreload 0"
        }
        Profile::Copy => "-map 0:v? -map 0:a? -c copy",
        Profile::H264 => "-map 0:v:0? -vf",
    }));
    if profile == Profile::H264 {
        args.push(H264_FILTER.to_owned());
        args.extend(words(
            "-c:v libx264 -preset veryfast -tune zerolatency -b:v 3000k -maxrate 3000k -bufsize 1000k -bf 0 -g 100 \
             -map 0:a:0 -c:a aac -b:a 160k -ac 2",
        ));
    }
    match output {
        Output::Ts => {
            if profile == Profile::Aac {
                args.extend(words(
                    "-mpegts_copyts 1 -mpegts_flags resend_headers+initial_discontinuity",
                ));
            }
            args.extend(words("-f mpegts pipe:1"));
        }
        Output::Hls => {
            let dir = hls_dir.unwrap_or(Path::new(""));
            args.extend(words(
                "-f hls -hls_time 2 -hls_list_size 6 \
                 -hls_flags delete_segments+independent_segments+program_date_time -hls_segment_filename",
            ));
            args.push(dir.join("%d.ts").to_string_lossy().into_owned());
            args.push(dir.join(PLAYLIST).to_string_lossy().into_owned());
        }
    }
    args
}

/// `src` as ffmpeg gets it: an absolute http URL on loopback (127.0.0.1, ::1 or localhost).
fn loopback_source(src: &str) -> Result<String, PeerError> {
    let invalid = |detail: String| PeerError::InvalidSource { detail };
    let url = url::Url::parse(src).map_err(|e| invalid(format!("not an absolute URL: {e}")))?;
    if url.scheme() != "http" {
        return Err(invalid(format!("scheme `{}`: only http is proxied", url.scheme())));
    }
    let loopback = match url.host() {
        Some(url::Host::Ipv4(ip)) => ip == Ipv4Addr::LOCALHOST,
        Some(url::Host::Ipv6(ip)) => ip == Ipv6Addr::LOCALHOST,
        Some(url::Host::Domain(name)) => name == "localhost",
        None => false,
    };
    if !loopback {
        return Err(invalid("the host must be 127.0.0.1, ::1 or localhost".to_owned()));
    }
    Ok(url.into())
}

fn valid_client(client: &str) -> Result<&str, PeerError> {
    let ok = (1..=32).contains(&client.len())
        && client
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    ok.then_some(client).ok_or(PeerError::InvalidClient)
}

fn valid_segment(name: &str) -> Result<&str, PeerError> {
    let stem = name.strip_suffix(".ts").ok_or(PeerError::InvalidSegment)?;
    let ok = !stem.is_empty() && stem.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    ok.then_some(name).ok_or(PeerError::InvalidSegment)
}

/// Whether a playlist lists at least one `.ts` segment.
fn lists_segment(playlist: &[u8]) -> bool {
    playlist.split(|&b| b == b'\n').any(|line| {
        let line = line.trim_ascii();
        !line.starts_with(b"#") && line.ends_with(b".ts")
    })
}

#[derive(serde::Deserialize)]
struct SrcQuery {
    src: Option<String>,
}

impl SrcQuery {
    fn source(&self) -> Result<String, PeerError> {
        let src = self.src.as_deref().ok_or_else(|| PeerError::InvalidSource {
            detail: "missing: add ?src=<percent-encoded stream URL>".to_owned(),
        })?;
        loopback_source(src)
    }
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().body("ok")
}

/// One ffmpeg for this request; its stdout is the body. The child lives in a task on `serve`'s
/// runtime that ends (killing and reaping it) when the body's receiver is dropped.
async fn ts(
    peer: web::Data<Peer>,
    profile: web::Path<String>,
    query: web::Query<SrcQuery>,
) -> Result<HttpResponse, PeerError> {
    let profile: Profile = profile.parse()?;
    let src = query.source()?;
    if peer.shutdown.is_cancelled() {
        return Err(PeerError::ShuttingDown);
    }
    let args = ffmpeg_args(profile, Output::Ts, &src, None);
    let (tx, mut rx) = mpsc::channel(QUEUED_CHUNKS);
    peer.tasks.spawn_on(
        run_ts(args, tx, peer.shutdown.clone(), Arc::clone(&peer.children)),
        &peer.runtime,
    );
    let first = match rx.recv().await {
        Some(Ok(first)) => first,
        Some(Err(error)) => return Err(PeerError::Spawn(error)),
        None => return Err(PeerError::NoOutput),
    };
    let rest = futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) });
    let body = futures_util::stream::once(async move { Ok::<_, io::Error>(first) }).chain(rest);
    Ok(HttpResponse::Ok()
        .content_type("video/mp2t")
        .insert_header(("Cache-Control", "no-store"))
        .streaming(body))
}

/// Copies one ffmpeg's stdout into `tx` until ffmpeg ends, the receiver is dropped (the client
/// left) or shutdown; then kills and reaps it. A spawn failure is the one error sent.
async fn run_ts(
    args: Vec<String>,
    tx: mpsc::Sender<io::Result<Bytes>>,
    shutdown: CancellationToken,
    children: Arc<Children>,
) {
    if shutdown.is_cancelled() {
        return;
    }
    let mut child = match children.spawn(&args, Stdio::piped()) {
        Ok(child) => child,
        Err(error) => {
            tracing::warn!(%error, "Could not start ffmpeg.");
            let _ = tx.send(Err(error)).await;
            return;
        }
    };
    if let Some(mut stdout) = child.stdout.take() {
        let mut buf = BytesMut::new();
        loop {
            buf.reserve(CHUNK);
            let read = tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                () = tx.closed() => break,
                read = stdout.read_buf(&mut buf) => read,
            };
            match read {
                Ok(0) => break,
                Ok(_) => {
                    let chunk = buf.split().freeze();
                    tokio::select! {
                        biased;
                        () = shutdown.cancelled() => break,
                        sent = tx.send(Ok(chunk)) => if sent.is_err() { break },
                    }
                }
                Err(error) => {
                    let _ = tx.try_send(Err(error));
                    break;
                }
            }
        }
    }
    children.reap(child).await;
}

/// A playlist (starting this client's ffmpeg on its first request) or one of its segments.
async fn hls(
    peer: web::Data<Peer>,
    path: web::Path<(String, String, String)>,
    query: web::Query<SrcQuery>,
) -> Result<HttpResponse, PeerError> {
    let (client, profile, name) = path.into_inner();
    let client = valid_client(&client)?;
    let profile: Profile = profile.parse()?;
    if name != PLAYLIST {
        let name = valid_segment(&name)?;
        let file = peer.work_dir.join(client).join(name);
        return match tokio::fs::read(&file).await {
            Ok(bytes) => Ok(HttpResponse::Ok().content_type("video/mp2t").body(bytes)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(PeerError::SegmentNotFound),
            Err(e) => Err(PeerError::Io(e)),
        };
    }
    let src = query.source()?;
    let (reply, started) = oneshot::channel();
    let command = HlsCommand::Start {
        client: client.to_owned(),
        profile,
        src,
        reply,
    };
    peer.hls.send(command).await.map_err(|_| PeerError::ShuttingDown)?;
    let dir = started.await.map_err(|_| PeerError::ShuttingDown)??;
    let playlist = dir.join(PLAYLIST);
    let wait = async {
        let mut poll = tokio::time::interval(PLAYLIST_POLL);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            poll.tick().await;
            match tokio::fs::read(&playlist).await {
                Ok(bytes) if lists_segment(&bytes) => return Ok(bytes),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(PeerError::Io(e)),
            }
        }
    };
    let bytes = tokio::select! {
        () = peer.shutdown.cancelled() => return Err(PeerError::ShuttingDown),
        waited = tokio::time::timeout(PLAYLIST_WAIT, wait) => waited.map_err(|_| PeerError::PlaylistTimeout)??,
    };
    Ok(HttpResponse::Ok()
        .content_type("application/vnd.apple.mpegurl")
        .insert_header(("Cache-Control", "no-cache"))
        .body(bytes))
}

async fn reset(peer: web::Data<Peer>) -> Result<HttpResponse, PeerError> {
    let (reply, done) = oneshot::channel();
    peer.hls
        .send(HlsCommand::Reset { reply })
        .await
        .map_err(|_| PeerError::ShuttingDown)?;
    done.await.map_err(|_| PeerError::ShuttingDown)?;
    Ok(HttpResponse::NoContent().finish())
}

enum HlsCommand {
    /// Starts the client's ffmpeg unless it runs; answers its directory.
    Start {
        client: String,
        profile: Profile,
        src: String,
        reply: oneshot::Sender<Result<PathBuf, PeerError>>,
    },
    /// Kills and reaps every HLS ffmpeg and removes their directories.
    Reset { reply: oneshot::Sender<()> },
}

struct HlsChild {
    child: Child,
    dir: PathBuf,
}

/// Owns every HLS child (by client id) until shutdown, then kills and reaps them all.
async fn hls_actor(
    work_dir: PathBuf,
    mut commands: mpsc::Receiver<HlsCommand>,
    shutdown: CancellationToken,
    children: Arc<Children>,
) {
    let mut running: HashMap<String, HlsChild> = HashMap::new();
    loop {
        let command = tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            command = commands.recv() => match command {
                Some(command) => command,
                None => break,
            },
        };
        match command {
            HlsCommand::Start {
                client,
                profile,
                src,
                reply,
            } => {
                let started = start_hls(&mut running, &work_dir, client, profile, &src, &children).await;
                let _ = reply.send(started);
            }
            HlsCommand::Reset { reply } => {
                stop_all(&mut running, &children).await;
                let _ = reply.send(());
            }
        }
    }
    stop_all(&mut running, &children).await;
}

async fn start_hls(
    running: &mut HashMap<String, HlsChild>,
    work_dir: &Path,
    client: String,
    profile: Profile,
    src: &str,
    children: &Children,
) -> Result<PathBuf, PeerError> {
    if let Some(hls) = running.get_mut(&client) {
        return match hls.child.try_wait() {
            Ok(None) => Ok(hls.dir.clone()),
            Ok(Some(status)) => Err(PeerError::Exited {
                status: status.to_string(),
            }),
            Err(e) => Err(PeerError::Io(e)),
        };
    }
    let dir = work_dir.join(&client);
    remove_dir(&dir).await;
    tokio::fs::create_dir(&dir).await?;
    let args = ffmpeg_args(profile, Output::Hls, src, Some(&dir));
    let child = children.spawn(&args, Stdio::null()).map_err(PeerError::Spawn)?;
    tracing::debug!(client, ?profile, pid = child.id(), "Started an HLS ffmpeg.");
    running.insert(
        client,
        HlsChild {
            child,
            dir: dir.clone(),
        },
    );
    Ok(dir)
}

async fn stop_all(running: &mut HashMap<String, HlsChild>, children: &Children) {
    // Signal them all first, then reap: they die in parallel.
    for hls in running.values_mut() {
        let _ = hls.child.start_kill();
    }
    for (_, hls) in running.drain() {
        children.reap(hls.child).await;
        remove_dir(&hls.dir).await;
    }
}

async fn remove_dir(dir: &Path) {
    match tokio::fs::remove_dir_all(dir).await {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(error) => tracing::warn!(dir = %dir.display(), %error, "Could not remove an HLS directory."),
    }
}

/// Starts and reaps ffmpeg children, counting those alive.
struct Children {
    live: watch::Sender<usize>,
    /// Every child's pid, for the test that checks none is left.
    #[cfg(test)]
    pids: std::sync::Mutex<Vec<u32>>,
}

impl Children {
    fn new() -> Self {
        Self {
            live: watch::channel(0).0,
            #[cfg(test)]
            pids: std::sync::Mutex::new(Vec::new()),
        }
    }

    #[allow(
        clippy::disallowed_methods,
        reason = "the bench's baseline is, by definition, one ffmpeg process per client"
    )]
    fn spawn(&self, args: &[String], stdout: Stdio) -> io::Result<Child> {
        let child = tokio::process::Command::new("ffmpeg")
            .args(args)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()?;
        self.live.send_modify(|n| *n += 1);
        #[cfg(test)]
        if let Some(pid) = child.id() {
            self.pids.lock().expect("pids poisoned").push(pid);
        }
        Ok(child)
    }

    /// Kills the child (if it still runs) and waits for it.
    async fn reap(&self, mut child: Child) {
        // An error here means it has already exited; waiting still collects it.
        let _ = child.start_kill();
        match child.wait().await {
            Ok(status) => tracing::debug!(%status, "An ffmpeg ended."),
            Err(error) => tracing::warn!(%error, "Could not wait for an ffmpeg."),
        }
        self.live.send_modify(|n| *n -= 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SRC: &str = "http://127.0.0.1:40001/1:0:19:283D:3FB:1:C00000:0:0:0:";

    fn words(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn aac_ts_args_are_the_original_audio_proxy() {
        let expected = format!(
            "-hide_banner -loglevel error -nostdin -fflags +genpts+igndts -i {SRC} \
             -map 0:v? -c:v copy -map 0:a -c:a aac -b:a 192k -ac 2 -async 1 -start_at_zero \
             -avoid_negative_ts make_zero -muxdelay 0 -muxpreload 0 -mpegts_copyts 1 \
             -mpegts_flags resend_headers+initial_discontinuity -f mpegts pipe:1"
        );
        assert_eq!(ffmpeg_args(Profile::Aac, Output::Ts, SRC, None), words(&expected));
    }

    #[test]
    fn copy_and_h264_ts_args() {
        let copy = format!(
            "-hide_banner -loglevel error -nostdin -fflags +genpts+igndts -i {SRC} \
             -map 0:v? -map 0:a? -c copy -f mpegts pipe:1"
        );
        assert_eq!(ffmpeg_args(Profile::Copy, Output::Ts, SRC, None), words(&copy));
        let h264 = format!(
            "-hide_banner -loglevel error -nostdin -fflags +genpts+igndts -i {SRC} \
             -map 0:v:0? -vf {H264_FILTER} -c:v libx264 -preset veryfast -tune zerolatency -b:v 3000k \
             -maxrate 3000k -bufsize 1000k -bf 0 -g 100 -map 0:a:0 -c:a aac -b:a 160k -ac 2 -f mpegts pipe:1"
        );
        assert_eq!(ffmpeg_args(Profile::H264, Output::Ts, SRC, None), words(&h264));
    }

    #[test]
    fn hls_args_replace_the_mpegts_tail_and_end_in_the_playlist() {
        let dir = Path::new("/work/c1");
        let tail = words(
            "-f hls -hls_time 2 -hls_list_size 6 -hls_flags \
             delete_segments+independent_segments+program_date_time \
             -hls_segment_filename /work/c1/%d.ts /work/c1/media.m3u8",
        );
        for profile in [Profile::Aac, Profile::Copy, Profile::H264] {
            let hls = ffmpeg_args(profile, Output::Hls, SRC, Some(dir));
            let ts = ffmpeg_args(profile, Output::Ts, SRC, None);
            assert!(hls.ends_with(&tail), "{profile:?}: {hls:?}");
            assert!(
                !hls.iter()
                    .any(|a| a.starts_with("-mpegts") || a == "pipe:1" || a == "mpegts")
            );
            // Everything before the output part is the TS command's.
            let head = &hls[..hls.len() - tail.len()];
            assert!(ts.starts_with(head), "{profile:?}");
            assert_eq!(&hls[6..8], ["-i", SRC]);
        }
        let relative = ffmpeg_args(Profile::Copy, Output::Hls, SRC, None);
        assert_eq!(relative[relative.len() - 2..], ["%d.ts", "media.m3u8"]);
    }

    #[test]
    fn profiles_parse_and_unknown_ones_are_named() {
        assert_eq!("aac".parse(), Ok(Profile::Aac));
        assert_eq!("copy".parse(), Ok(Profile::Copy));
        assert_eq!("h264".parse(), Ok(Profile::H264));
        let error = "AAC".parse::<Profile>().unwrap_err();
        assert_eq!(error.to_string(), "unknown profile `AAC`: use aac, copy or h264");
        assert!("".parse::<Profile>().is_err());
        assert!("abr".parse::<Profile>().is_err());
    }

    #[test]
    fn sources_must_be_loopback_http() {
        for ok in [
            SRC,
            "http://localhost:8001/1:0:1:6F0B:44D:1:C00000:0:0:0:",
            "http://[::1]:8001/x",
            "http://127.0.0.1/x",
        ] {
            assert!(loopback_source(ok).is_ok(), "{ok}");
        }
        assert_eq!(loopback_source(SRC).unwrap(), SRC);
        for bad in [
            "http://192.168.1.10:8001/x",
            "http://127.0.0.2:8001/x",
            "http://localhost.example.com/x",
            "http://0.0.0.0/x",
            "https://127.0.0.1/x",
            "file:///etc/passwd",
            "/1:0:19:283D:3FB:1:C00000:0:0:0:",
            "-i",
            "",
        ] {
            let error = loopback_source(bad).unwrap_err();
            assert_eq!(error.code(), "invalid-source", "{bad}");
            assert_eq!(error.status_code(), StatusCode::BAD_REQUEST);
        }
    }

    #[test]
    fn client_ids_and_segment_names_are_checked() {
        for ok in ["c1", "A-b_9", &"x".repeat(32)] {
            assert!(valid_client(ok).is_ok(), "{ok}");
        }
        for bad in ["", &"x".repeat(33), "..", "a/b", "a.b", "c 1", "ü"] {
            assert!(valid_client(bad).is_err(), "{bad}");
        }
        for ok in ["0.ts", "12.ts", "seg_A1.ts"] {
            assert!(valid_segment(ok).is_ok(), "{ok}");
        }
        for bad in [
            ".ts",
            "0.ts.tmp",
            "media.m3u8",
            "../0.ts",
            "a-1.ts",
            "0.TS",
            "0ts",
            "a/0.ts",
            "",
        ] {
            assert!(valid_segment(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_playlist_counts_once_it_lists_a_segment() {
        assert!(!lists_segment(b""));
        assert!(!lists_segment(b"#EXTM3U\n#EXT-X-VERSION:6\n#EXT-X-TARGETDURATION:2\n"));
        assert!(lists_segment(b"#EXTM3U\n#EXTINF:1.920000,\n0.ts\n"));
        assert!(lists_segment(b"#EXTM3U\r\n#EXTINF:2,\r\n17.ts\r\n"));
        assert!(!lists_segment(b"#EXTM3U\n#EXT-X-MAP:URI=\"x.ts\"\n"));
    }

    #[test]
    fn errors_map_to_statuses() {
        let cases = [
            (PeerError::SegmentNotFound, StatusCode::NOT_FOUND),
            (PeerError::NoOutput, StatusCode::BAD_GATEWAY),
            (PeerError::PlaylistTimeout, StatusCode::GATEWAY_TIMEOUT),
            (PeerError::ShuttingDown, StatusCode::SERVICE_UNAVAILABLE),
            (PeerError::InvalidClient, StatusCode::BAD_REQUEST),
        ];
        for (error, status) in cases {
            assert_eq!(error.status_code(), status, "{}", error.code());
        }
    }

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

        // Reset reaps the HLS ffmpeg and removes its directory before it answers.
        let reset = http.post(format!("{base}/reset")).send().await.expect("reset");
        assert_eq!(reset.status(), 204);
        assert_eq!(*live.borrow(), 0);
        assert!(!work.path().join("c1").exists());

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
        assert_eq!(pids.len(), 4, "two TS and two HLS ffmpegs: {pids:?}");
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
