//! HLS routes: `/hls/{ref}/{profile}/index.m3u8` (master), `media.m3u8`, and `{n}.ts` segments
//! (fMP4 sessions: `{n}.m4s` and their `init-{v}.mp4`) from memory. Playlist requests start a session when none runs; segment requests never do.
//! A first playlist is answered [`FIRST_ANSWER_HOLD`] after it holds [`PLAYABLE_SEGMENTS`]
//! (strict players need them); `media.m3u8?_HLS_msn=N` waits for segment N (blocking reload).
//! Profile `auto` picks `aac` for H.264 channels and `h264` for MPEG-2 ones, learned from the
//! channel's PMT at its first tune (after the rate limits, one probe however many ask at once)
//! and remembered. Every answer carries the configured CORS origin; preflights are answered
//! here.

use std::time::Duration;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::{Method, header};
use actix_web::middleware::{Compress, Next, from_fn};
use actix_web::{HttpRequest, HttpResponse, web};
use futures_util::future::BoxFuture;

use super::AppState;
use super::error::HttpError;
use crate::model::ServiceRef;
use crate::pipeline::Output;
use crate::session::{
    FIRST_ANSWER_HOLD, HlsState, HlsView, LearnError, PLAYABLE_SEGMENTS, SegmentFormat, SessionError, SessionKey,
    VideoCodec, media_playlist_name,
};
use crate::telemetry::step;
use crate::upstream::ProbeError;
use tracing::Instrument as _;

const PLAYLIST: &str = "application/vnd.apple.mpegurl";

/// How long a ladder's master playlist waits for variants behind the first one.
const VARIANTS_WAIT: Duration = Duration::from_secs(2);

pub(crate) fn routes(cfg: &mut web::ServiceConfig) {
    // The last `wrap` is the outermost: CORS answers preflights before anything else runs.
    cfg.service(
        web::resource("/hls/{ref}/{profile}/index.m3u8")
            .wrap(from_fn(super::trace::hls_start))
            .wrap(Compress::default())
            .wrap(from_fn(cors))
            .route(web::get().to(master)),
    )
    .service(
        // `media.m3u8` is the first variant's; a ladder's others are `media-1.m3u8`, …
        web::resource("/hls/{ref}/{profile}/{playlist:media(-[0-9]{1,2})?\\.m3u8}")
            .wrap(Compress::default())
            .wrap(from_fn(cors))
            .route(web::get().to(media)),
    )
    .service(
        web::resource("/hls/{ref}/{profile}/{segment}")
            .wrap(from_fn(cors))
            .route(web::get().to(segment)),
    );
}

/// Cross-origin access for players on other sites (hls.js fetches with CORS): the configured
/// origin on every answer, errors included, and preflight answers without touching a session.
async fn cors<B: MessageBody>(
    req: ServiceRequest,
    next: Next<B>,
) -> Result<ServiceResponse<EitherBody<B>>, actix_web::Error> {
    let origin = req
        .app_data::<web::Data<AppState>>()
        .and_then(|s| s.streaming.hls.cors_origin.clone());
    let Some(origin) = origin else {
        return Ok(next.call(req).await?.map_into_left_body());
    };
    let vary = origin != "*";
    if req.method() == Method::OPTIONS {
        let mut response = HttpResponse::NoContent();
        response
            .insert_header((header::ACCESS_CONTROL_ALLOW_ORIGIN, origin))
            .insert_header((header::ACCESS_CONTROL_ALLOW_METHODS, "GET, HEAD, OPTIONS"))
            .insert_header((
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                "Range, If-None-Match, If-Modified-Since",
            ))
            .insert_header((header::ACCESS_CONTROL_MAX_AGE, "86400"));
        if vary {
            response.insert_header((header::VARY, "Origin"));
        }
        return Ok(req.into_response(response.finish()).map_into_right_body());
    }
    let mut response = next.call(req).await?;
    if let Ok(value) = header::HeaderValue::from_str(&origin) {
        let headers = response.headers_mut();
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, value);
        if vary {
            headers.append(header::VARY, header::HeaderValue::from_static("Origin"));
        }
    }
    Ok(response.map_into_left_body())
}

async fn master(
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    req: HttpRequest,
) -> Result<HttpResponse, HttpError> {
    let view = join(&state, &req, &path.0, &path.1, 0).await?;
    // A player reads the master playlist once: a ladder's variants that the picture made but
    // whose encoders are a moment behind the first variant are waited for (briefly), so that
    // the answer lists them.
    let behind = {
        let current = view.state.borrow();
        current.tracks() > 1 && !current.variants_known()
    };
    if behind {
        wait_until(&view, VARIANTS_WAIT, HlsState::variants_known).await;
    }
    // While signed, the media playlists' URIs carry this request's signature for the session
    // folder: a player that got one master URL plays until it expires, and no further.
    let signature = super::auth::signature_for(&state, &req, req.path());
    let media_uri = |track: usize| match &signature {
        Some(query) => format!("{}?{query}", media_playlist_name(track)),
        None => media_playlist_name(track),
    };
    let body = view.state.borrow().master_playlist(media_uri);
    Ok(playlist(body))
}

/// `_HLS_msn`: the media sequence number a blocking playlist request waits for.
fn wanted_sequence(req: &HttpRequest) -> Result<Option<u64>, HttpError> {
    let Some((_, value)) = url::form_urlencoded::parse(req.query_string().as_bytes()).find(|(k, _)| k == "_HLS_msn")
    else {
        return Ok(None);
    };
    value.parse().map(Some).map_err(|_| HttpError::InvalidParameter {
        name: "_HLS_msn",
        detail: format!("`{value}` is not a media sequence number"),
    })
}

/// The track a media playlist's name asks for: `media.m3u8` is 0, `media-N.m3u8` is N.
fn playlist_track(name: &str) -> usize {
    name.strip_prefix("media-")
        .and_then(|n| n.strip_suffix(".m3u8"))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

async fn media(
    state: web::Data<AppState>,
    path: web::Path<(String, String, String)>,
    req: HttpRequest,
) -> Result<HttpResponse, HttpError> {
    let wanted = wanted_sequence(&req)?;
    let track = playlist_track(&path.2);
    let view = join(&state, &req, &path.0, &path.1, track).await?;
    if track >= view.state.borrow().tracks() {
        return Err(HttpError::SegmentNotFound);
    }
    if let Some(wanted) = wanted {
        let (last, target) = {
            let current = view.state.borrow();
            (current.last_sequence(track).unwrap_or(0), current.target_duration())
        };
        // RFC 8216bis 6.2.5.2: more than two segments ahead is a client error.
        if wanted > last + 2 {
            return Err(HttpError::InvalidParameter {
                name: "_HLS_msn",
                detail: format!("segment {wanted} is more than two past the newest, {last}"),
            });
        }
        // At most three target durations; then the playlist as it is.
        let within = Duration::from_secs(3 * target.max(1));
        wait_until(&view, within, |s| s.last_sequence(track).is_some_and(|n| n >= wanted)).await;
    }
    let signature = super::auth::signature_for(&state, &req, req.path());
    let body = {
        let current = view.state.borrow();
        tracing::debug!(track, wanted, newest = current.last_sequence(track), "Media playlist.");
        current.media_playlist(track, signature.as_deref(), state.streaming.hls.program_date_time)
    };
    Ok(playlist(body))
}

/// Waits until the session's state satisfies `enough`, has ended, or `within` has passed; the
/// session lives on meanwhile. Says whether `enough` held.
async fn wait_until(view: &HlsView, within: Duration, enough: impl Fn(&HlsState) -> bool) -> bool {
    let _hold = view.lease.hold();
    let mut state = view.state.clone();
    let _ = tokio::time::timeout(within, state.wait_for(|s| s.is_ended() || enough(s))).await;
    enough(&state.borrow())
}

fn playlist(body: String) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(PLAYLIST)
        // A live playlist changes every segment: revalidate, but let a CDN hold it a moment.
        .insert_header((header::CACHE_CONTROL, "max-age=1, must-revalidate"))
        .body(body)
}

async fn segment(
    state: web::Data<AppState>,
    path: web::Path<(String, String, String)>,
) -> Result<HttpResponse, HttpError> {
    let (reference, profile, name) = path.into_inner();
    let service_ref = parse_ref(&reference)?;
    let (track, file) = segment_name(&name).ok_or(HttpError::SegmentNotFound)?;
    let profile = match profile.as_str() {
        "auto" => {
            let codec = state.streaming.registry.codec(service_ref.clone()).await;
            auto_profile(codec.ok_or(HttpError::SegmentNotFound)?).to_owned()
        }
        _ => profile,
    };
    let key = SessionKey {
        service_ref,
        profile,
        output: Output::Hls,
    };
    let view = state
        .streaming
        .registry
        .lookup(key)
        .await
        .ok_or(HttpError::SegmentNotFound)?;
    view.lease.touch();
    let (bytes, content_type) = {
        let current = view.state.borrow();
        match file {
            // A segment of the other format is as missing as one never written.
            SegmentFile::Media(format, sequence) if format == current.format() => {
                let segment = current.segment(track, sequence).ok_or(HttpError::SegmentNotFound)?;
                let content_type = match format {
                    SegmentFormat::Ts => "video/mp2t",
                    SegmentFormat::Fmp4 => "video/mp4",
                };
                (segment.bytes.clone(), content_type)
            }
            SegmentFile::Media(..) => return Err(HttpError::SegmentNotFound),
            SegmentFile::Init(version) => (
                current.init_segment(track, version).ok_or(HttpError::SegmentNotFound)?,
                "video/mp4",
            ),
        }
    };
    tracing::debug!(track, ?file, "Segment.");
    Ok(HttpResponse::Ok()
        .content_type(content_type)
        // A segment (and an init segment's version) never changes once written.
        .insert_header((header::CACHE_CONTROL, "public, max-age=60"))
        .body(bytes))
}

/// A file of a session's folder other than its playlists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SegmentFile {
    /// A media segment of this format, by sequence number.
    Media(SegmentFormat, u64),
    /// An fMP4 init segment, by version.
    Init(u32),
}

/// A segment's track and what it is: `N.ts` and `N.m4s` are track 0's segment N, `T-N.ts` and
/// `T-N.m4s` track T's; `init-V.mp4` is track 0's init segment V, `T-init-V.mp4` track T's.
fn segment_name(name: &str) -> Option<(usize, SegmentFile)> {
    if let Some(stem) = name.strip_suffix(".mp4") {
        let (track, version) = match stem.strip_prefix("init-") {
            Some(version) => (0, version),
            None => {
                let (track, rest) = stem.split_once('-')?;
                (track.parse().ok()?, rest.strip_prefix("init-")?)
            }
        };
        return Some((track, SegmentFile::Init(version.parse().ok()?)));
    }
    let (stem, format) = match name.strip_suffix(".ts") {
        Some(stem) => (stem, SegmentFormat::Ts),
        None => (name.strip_suffix(".m4s")?, SegmentFormat::Fmp4),
    };
    let (track, sequence) = match stem.split_once('-') {
        Some((track, sequence)) => (track.parse().ok()?, sequence),
        None => (0, stem),
    };
    Some((track, SegmentFile::Media(format, sequence.parse().ok()?)))
}

fn parse_ref(reference: &str) -> Result<ServiceRef, HttpError> {
    Ok(reference.parse()?)
}

fn auto_profile(codec: VideoCodec) -> &'static str {
    match codec {
        // Safari plays H.264 as it comes; audio needs AAC.
        VideoCodec::H264 | VideoCodec::None => "aac",
        VideoCodec::Mpeg2 | VideoCodec::Hevc | VideoCodec::Other => "h264",
    }
}

/// Joins (or starts) the HLS session and waits for `track`'s first segments (for track 0, those of
/// the first track in use: the master playlist's, which for a radio channel's fMP4 ladder is not 0).
async fn join(
    state: &AppState,
    req: &HttpRequest,
    reference: &str,
    profile: &str,
    track: usize,
) -> Result<HlsView, HttpError> {
    let service_ref = parse_ref(reference)?;
    super::trace::channel_lookup(state, &service_ref)?;
    let mut admitted = false;
    let profile = match profile {
        "auto" => {
            let registry = &state.streaming.registry;
            let codec = match registry.codec(service_ref.clone()).await {
                Some(codec) => codec,
                None => {
                    // Probing opens a receiver connection: it is a session start as far as the
                    // rate limits go, charged once, before the probe.
                    super::client_ip::admit_probe(state, req, &service_ref).await?;
                    admitted = true;
                    registry
                        .learn_codec(service_ref.clone(), probe_codec(state, &service_ref))
                        .instrument(step!("codec.probe"))
                        .await
                        .map_err(learn_error)?
                }
            };
            auto_profile(codec).to_owned()
        }
        other => other.to_owned(),
    };
    let template = super::stream::template_for(&state.streaming, &profile, Output::Hls)?;
    // Every playlist request is a sign that the client watches (Active priority): the guard
    // is dropped with this request.
    let (subscription, _watching) =
        super::stream::start_session(state, req, service_ref, profile, template, Output::Hls, admitted).await?;
    let view = subscription.hls.ok_or(HttpError::SegmentNotFound)?;
    view.lease.touch();
    // A strict player (Chromium's own, Safari) fails on a live playlist of one or two segments
    // and may rebuffer on three: a new session's first answers wait for four short ones, and
    // then half a segment more, so that the player's reloads fall between publications.
    let playable = |s: &HlsState| s.len(if track == 0 { s.first_in_use() } else { track }) >= PLAYABLE_SEGMENTS;
    if !playable(&view.state.borrow()) && wait_until(&view, state.streaming.hls.start_timeout, playable).await {
        let _hold = view.lease.hold();
        tokio::time::sleep(FIRST_ANSWER_HOLD).await;
    }
    Ok(view)
}

fn learn_error(error: LearnError) -> HttpError {
    match error {
        LearnError::Detect(e) => HttpError::Detect(e),
        LearnError::Upstream(message) => HttpError::Session(SessionError::Upstream(message)),
        LearnError::ShuttingDown => HttpError::Session(SessionError::ShuttingDown),
    }
}

/// The channel's video codec from its PMT ([`crate::upstream::probe_video_codec`]), as the
/// registry's shared probe.
fn probe_codec(state: &AppState, service_ref: &ServiceRef) -> BoxFuture<'static, Result<VideoCodec, LearnError>> {
    let resolver = state.resolver.clone();
    let client = state.streaming.probe_client.clone();
    let authorization = state.streaming.source.authorization.clone();
    let service_ref = service_ref.clone();
    Box::pin(async move {
        crate::upstream::probe_video_codec(&resolver, &client, authorization.as_deref(), &service_ref)
            .await
            .map_err(|error| match error {
                ProbeError::Detect(e) => LearnError::Detect(e),
                ProbeError::Receiver(message) => LearnError::Upstream(message),
            })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_names() {
        use SegmentFile::{Init, Media};
        use SegmentFormat::{Fmp4, Ts};
        for (name, expected) in [
            ("12.ts", (0, Media(Ts, 12))),
            ("3-12.ts", (3, Media(Ts, 12))),
            ("12.m4s", (0, Media(Fmp4, 12))),
            ("3-12.m4s", (3, Media(Fmp4, 12))),
            ("init-0.mp4", (0, Init(0))),
            ("2-init-1.mp4", (2, Init(1))),
        ] {
            assert_eq!(segment_name(name), Some(expected), "{name}");
        }
        for name in [
            "init-x.mp4",
            "-1.m4s",
            "1-.m4s",
            "x-1.m4s",
            "12.mp4",
            "2-12.mp4",
            "init-1.m4s",
            "2-init-.mp4",
            "init--1.mp4",
            "12.m4",
            "12",
            "index.m3u8",
        ] {
            assert_eq!(segment_name(name), None, "{name}");
        }
    }
}
