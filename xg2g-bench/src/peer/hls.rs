//! The HLS role: one ffmpeg per client id, owned by one actor, its playlist and segments served
//! from files.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use actix_web::{HttpResponse, web};
use tokio::process::Child;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::Peer;
use super::children::Children;
use super::error::PeerError;
use super::ffmpeg::{HlsJob, Output, PLAYLIST, ffmpeg_args};
use super::ladder::{MASTER, is_variant_playlist, ladder_args};
use super::request::{SrcQuery, valid_client, valid_segment};
use crate::ladder::LadderSpec;

/// How long a playlist request waits for ffmpeg's first playlist with a segment.
pub(super) const PLAYLIST_WAIT: Duration = Duration::from_secs(30);
/// How often it looks at the file system meanwhile (the peers poll files too).
const PLAYLIST_POLL: Duration = Duration::from_millis(50);

/// Whether a playlist lists at least one `.ts` segment.
fn lists_segment(playlist: &[u8]) -> bool {
    playlist.split(|&b| b == b'\n').any(|line| {
        let line = line.trim_ascii();
        !line.starts_with(b"#") && line.ends_with(b".ts")
    })
}

/// Which file a request names.
enum Name<'a> {
    /// The playlist that starts the client's ffmpeg: `media.m3u8`, or a ladder's master.
    Entry,
    /// A ladder's variant playlist, served once it lists a segment.
    Variant(&'a str),
    Segment(&'a str),
}

fn classify(job: HlsJob, name: &str) -> Result<Name<'_>, PeerError> {
    match job {
        HlsJob::Single(_) if name == PLAYLIST => Ok(Name::Entry),
        HlsJob::Ladder { .. } if name == MASTER => Ok(Name::Entry),
        HlsJob::Ladder { .. } if is_variant_playlist(name) => Ok(Name::Variant(name)),
        _ if name.ends_with(".m3u8") => Err(PeerError::InvalidPlaylist),
        _ => valid_segment(name).map(Name::Segment),
    }
}

/// Whether a playlist is ready to answer: a media playlist once it lists a segment, a master
/// once it lists a variant.
fn ready(name: &Name<'_>, job: HlsJob, playlist: &[u8]) -> bool {
    match (name, job) {
        (Name::Entry, HlsJob::Ladder { .. }) => playlist.windows(18).any(|w| w == b"#EXT-X-STREAM-INF:"),
        _ => lists_segment(playlist),
    }
}

/// A playlist (starting this client's ffmpeg on its first entry request) or one of its segments.
pub(super) async fn hls(
    peer: web::Data<Peer>,
    path: web::Path<(String, String, String)>,
    query: web::Query<SrcQuery>,
) -> Result<HttpResponse, PeerError> {
    let (client, profile, name) = path.into_inner();
    let client = valid_client(&client)?;
    let job: HlsJob = profile.parse()?;
    let name = classify(job, &name)?;
    let file = match name {
        Name::Segment(segment) => {
            let file = peer.work_dir.join(client).join(segment);
            return match tokio::fs::read(&file).await {
                Ok(bytes) => Ok(HttpResponse::Ok().content_type("video/mp2t").body(bytes)),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Err(PeerError::SegmentNotFound),
                Err(e) => Err(PeerError::Io(e)),
            };
        }
        // Players ask for variants by relative URI, without `src`: the master's request
        // started the ffmpeg that writes them.
        Name::Variant(variant) => {
            let dir = peer.work_dir.join(client);
            if !tokio::fs::try_exists(&dir).await? {
                return Err(PeerError::SegmentNotFound);
            }
            dir.join(variant)
        }
        Name::Entry => {
            let src = query.source()?;
            let (reply, started) = oneshot::channel();
            let command = HlsCommand::Start {
                client: client.to_owned(),
                job,
                src,
                reply,
            };
            peer.hls.send(command).await.map_err(|_| PeerError::ShuttingDown)?;
            let dir = started.await.map_err(|_| PeerError::ShuttingDown)??;
            dir.join(match job {
                HlsJob::Single(_) => PLAYLIST,
                HlsJob::Ladder { .. } => MASTER,
            })
        }
    };
    let wait = async {
        let mut poll = tokio::time::interval(PLAYLIST_POLL);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            poll.tick().await;
            match tokio::fs::read(&file).await {
                Ok(bytes) if ready(&name, job, &bytes) => return Ok(bytes),
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

pub(super) async fn reset(peer: web::Data<Peer>) -> Result<HttpResponse, PeerError> {
    let (reply, done) = oneshot::channel();
    peer.hls
        .send(HlsCommand::Reset { reply })
        .await
        .map_err(|_| PeerError::ShuttingDown)?;
    done.await.map_err(|_| PeerError::ShuttingDown)?;
    Ok(HttpResponse::NoContent().finish())
}

pub(super) enum HlsCommand {
    /// Starts the client's ffmpeg unless it runs; answers its directory.
    Start {
        client: String,
        job: HlsJob,
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
pub(super) async fn hls_actor(
    work_dir: PathBuf,
    ladder: LadderSpec,
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
                job,
                src,
                reply,
            } => {
                let started = start_hls(&mut running, &work_dir, &ladder, client, job, &src, &children).await;
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
    ladder: &LadderSpec,
    client: String,
    job: HlsJob,
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
    let args = match job {
        HlsJob::Single(profile) => ffmpeg_args(profile, Output::Hls, src, Some(&dir)),
        HlsJob::Ladder { copy_top } => ladder_args(ladder, copy_top, src, &dir),
    };
    let child = children.spawn(&args, Stdio::null()).map_err(PeerError::Spawn)?;
    tracing::debug!(client, ?job, pid = child.id(), "Started an HLS ffmpeg.");
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_playlist_counts_once_it_lists_a_segment() {
        assert!(!lists_segment(b""));
        assert!(!lists_segment(b"#EXTM3U\n#EXT-X-VERSION:6\n#EXT-X-TARGETDURATION:2\n"));
        assert!(lists_segment(b"#EXTM3U\n#EXTINF:1.920000,\n0.ts\n"));
        assert!(lists_segment(b"#EXTM3U\r\n#EXTINF:2,\r\n17.ts\r\n"));
        assert!(!lists_segment(b"#EXTM3U\n#EXT-X-MAP:URI=\"x.ts\"\n"));
    }

    #[test]
    fn names_are_read_by_the_job() {
        let single = HlsJob::Single(super::super::ffmpeg::Profile::Aac);
        let ladder = HlsJob::Ladder { copy_top: true };
        assert!(matches!(classify(single, "media.m3u8"), Ok(Name::Entry)));
        assert!(matches!(classify(ladder, "index.m3u8"), Ok(Name::Entry)));
        assert!(matches!(
            classify(ladder, "media_2.m3u8"),
            Ok(Name::Variant("media_2.m3u8"))
        ));
        assert!(matches!(classify(ladder, "2_17.ts"), Ok(Name::Segment("2_17.ts"))));
        assert!(matches!(classify(single, "17.ts"), Ok(Name::Segment("17.ts"))));
        for (job, bad) in [
            (single, "index.m3u8"),
            (single, "media_0.m3u8"),
            (ladder, "media.m3u8"),
            (ladder, "../x.m3u8"),
        ] {
            assert!(matches!(classify(job, bad), Err(PeerError::InvalidPlaylist)), "{bad}");
        }
        assert!(matches!(classify(ladder, "2-17.ts"), Err(PeerError::InvalidSegment)));
        // A master is ready once it lists a variant; a media playlist once it lists a segment.
        let master = b"#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1460800\nmedia_0.m3u8\n";
        assert!(ready(&Name::Entry, ladder, master));
        assert!(!ready(&Name::Entry, ladder, b"#EXTM3U\n"));
        assert!(!ready(&Name::Entry, single, master));
        assert!(ready(&Name::Variant("media_0.m3u8"), ladder, b"#EXTINF:2,\n0_1.ts\n"));
    }
}
