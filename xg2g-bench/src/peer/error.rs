//! What the proxy answers instead of success, and the one mapping to a status and a JSON body.

use std::io;

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};

use super::ffmpeg::UnknownProfile;
use super::hls::PLAYLIST_WAIT;

/// What the proxy answers instead of success: a status and `{"error":{"code","message"}}`. The
/// proxy is its own HTTP edge (not xg2g's), so its errors map here.
#[derive(Debug, thiserror::Error)]
pub(super) enum PeerError {
    #[error(transparent)]
    Profile(#[from] UnknownProfile),
    #[error("invalid src: {detail}")]
    InvalidSource { detail: String },
    #[error("invalid client id: use 1 to 32 of A-Z a-z 0-9 _ -")]
    InvalidClient,
    #[error("invalid segment name: use [0-9A-Za-z_]+.ts")]
    InvalidSegment,
    #[error("no such playlist for this profile: media.m3u8, or a ladder's index.m3u8 and media_N.m3u8")]
    InvalidPlaylist,
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
    pub(super) fn code(&self) -> &'static str {
        match self {
            PeerError::Profile(_) => "invalid-profile",
            PeerError::InvalidSource { .. } => "invalid-source",
            PeerError::InvalidClient => "invalid-client",
            PeerError::InvalidSegment => "invalid-segment",
            PeerError::InvalidPlaylist => "invalid-playlist",
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
            | PeerError::InvalidSegment
            | PeerError::InvalidPlaylist => StatusCode::BAD_REQUEST,
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
