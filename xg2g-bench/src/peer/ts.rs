//! The TS role: one ffmpeg per request, its stdout streamed as the response body.

use std::io;
use std::process::Stdio;
use std::sync::Arc;

use actix_web::{HttpResponse, web};
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::Peer;
use super::children::Children;
use super::error::PeerError;
use super::ffmpeg::{Output, Profile, ffmpeg_args};
use super::request::SrcQuery;

/// Bytes read from ffmpeg's stdout at most per chunk.
const CHUNK: usize = 64 * 1024;
/// Chunks queued between ffmpeg and a slow client before ffmpeg's pipe fills and it blocks.
const QUEUED_CHUNKS: usize = 16;

/// One ffmpeg for this request; its stdout is the body. The child lives in a task on `serve`'s
/// runtime that ends (killing and reaping it) when the body's receiver is dropped.
pub(super) async fn ts(
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
