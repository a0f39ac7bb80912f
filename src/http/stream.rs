//! `GET|HEAD /stream/{ref}`: MPEG-TS from a shared session. A stream opened with a device token
//! ends as soon as that token is revoked.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use bytes::Bytes;
use serde::Deserialize;
use tokio::sync::broadcast::error::RecvError;

use super::error::HttpError;
use crate::model::ServiceRef;
use crate::pipeline::{Output, Profiles};
use crate::session::{Registry, SessionClock, SessionKey, StartSpec, Subscription};
use crate::telemetry::step;
use crate::upstream::PortLocator;
use crate::upstream::SourceLocator;
use futures_util::future::BoxFuture;
use tracing::Instrument as _;

/// What the stream routes need besides the catalog.
pub(crate) struct Streaming {
    pub registry: Registry,
    /// Swapped whole on reload; sessions keep the template they started with.
    pub profiles: RwLock<Arc<Profiles>>,
    pub default_profile: String,
    pub source: SourceTarget,
    /// A TS client further behind than this is cut off.
    pub max_client_lag: Duration,
    /// Reads a channel's PMT for the `auto` profile.
    pub probe_client: reqwest::Client,
    pub hls: HlsOptions,
}

/// What the HLS routes need from the config.
pub(crate) struct HlsOptions {
    /// `Access-Control-Allow-Origin` of playlists and segments; `None` sends none.
    pub cors_origin: Option<String>,
    /// Date segments with `#EXT-X-PROGRAM-DATE-TIME` (`hls.program_date_time`).
    pub program_date_time: bool,
    /// How long a first playlist request waits for a playable playlist.
    pub start_timeout: Duration,
}

/// Credentials for the receiver's stream ports, sent up front.
pub(crate) struct SourceTarget {
    pub authorization: Option<String>,
}

pub(crate) fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/stream/{ref}")
            .wrap(actix_web::middleware::from_fn(super::trace::ts_start))
            .route(web::get().to(stream))
            .route(web::head().to(stream)),
    );
}

#[derive(Deserialize)]
struct StreamQuery {
    profile: Option<String>,
}

async fn stream(
    state: web::Data<super::AppState>,
    path: web::Path<String>,
    query: web::Query<StreamQuery>,
    req: HttpRequest,
) -> Result<HttpResponse, HttpError> {
    let service_ref: ServiceRef = path.parse()?;
    let streaming = &state.streaming;
    let profile = query
        .profile
        .clone()
        .unwrap_or_else(|| streaming.default_profile.clone());
    let template = template_for(streaming, &profile, Output::Ts)?;
    super::trace::channel_lookup(&state, &service_ref)?;
    if req.method() == actix_web::http::Method::HEAD {
        // Answered here: a HEAD must never tune the receiver (Threadfin, Jellyfin probe with it).
        return Ok(HttpResponse::Ok().content_type("video/mp2t").finish());
    }
    let (subscription, watching) =
        start_session(&state, &req, service_ref, profile, template, Output::Ts, false).await?;
    let body = body(
        subscription,
        req.conn_data::<ConnSocket>().cloned(),
        streaming.max_client_lag,
    );
    let device = match actix_web::HttpMessage::extensions(&req).get::<super::auth::Access>() {
        Some(super::auth::Access::Device { id, .. }) => Some(id.clone()),
        _ => None,
    };
    let revoked: BoxFuture<'static, ()> = match (&state.stream_gate, device) {
        (Some(gate), Some(id)) => Box::pin(gate.tokens.revoked(id)),
        _ => Box::pin(std::future::pending()),
    };
    let body = futures_util::StreamExt::take_until(body, revoked);
    Ok(HttpResponse::Ok()
        .content_type("video/mp2t")
        .insert_header((header::CACHE_CONTROL, "no-cache, no-store"))
        // The client counts as watching the channel (Active priority) until its body ends.
        .streaming(futures_util::StreamExt::map(body, move |chunk| {
            let _ = &watching;
            chunk
        })))
}

/// The profile's template for an output, from the templates loaded now (reloads swap them).
pub(crate) fn template_for(
    streaming: &Streaming,
    profile: &str,
    output: Output,
) -> Result<(Arc<crate::pipeline::Template>, Option<crate::pipeline::EncoderChoice>), HttpError> {
    let profiles = Arc::clone(&streaming.profiles.read().expect("profiles lock poisoned"));
    let template = profiles
        .get(profile)
        .filter(|t| t.supports(output))
        .ok_or_else(|| HttpError::ProfileNotFound {
            profile: profile.to_owned(),
        })?;
    tracing::Span::current()
        .record("profile", profile)
        .record("mode", template.mode.as_str());
    Ok((template, profiles.encoder.clone()))
}

/// What every session-creating request does, TS or HLS: port detection (fails fast while both
/// breakers are open), admission (rate limits, then an encoder slot), then joining or starting
/// the session and waiting for its first media. The client counts as watching the channel
/// (Active queue priority) while it holds the returned guard.
pub(crate) async fn start_session(
    state: &super::AppState,
    req: &HttpRequest,
    service_ref: ServiceRef,
    profile: String,
    (template, encoder): (Arc<crate::pipeline::Template>, Option<crate::pipeline::EncoderChoice>),
    output: Output,
    // The rate limits were charged for this request already (an `auto` probe).
    admitted: bool,
) -> Result<(Subscription, crate::limits::queue::Watching), HttpError> {
    state
        .resolver
        .resolve(&service_ref)
        .instrument(step!("port.detect"))
        .await?;
    let mut start = StartSpec {
        template,
        encoder,
        locator: locator(state, &service_ref),
        authorization: state.streaming.source.authorization.clone(),
        encoder_slot: None,
    };
    let key = SessionKey {
        service_ref,
        profile,
        output,
    };
    // Admission: the rate limits, then an encoder slot (its wait a child span).
    let admission = step!("admission");
    if !admitted {
        super::client_ip::admit_new_session(state, req, &key, start.template.mode)
            .instrument(admission.clone())
            .await?;
    }
    start.encoder_slot = encoder_slot(state, req, &key, &start.template)
        .instrument(step!(parent: &admission, "encoder.queue"))
        .instrument(admission.clone())
        .await?;
    drop(admission);
    let watching = watching(state, req, &key.service_ref);
    // Ends when the session has sent its first media (TS) or has its first segment (HLS).
    let _first_byte = step!("first_byte");
    let subscription = state.streaming.registry.join(key, start).await?;
    Ok((subscription, watching))
}

/// A duplicate of a client connection's socket, taken when the connection opens, so that a
/// watchdog can cut off a client whose socket is full (then actix stops polling its body and
/// nothing else would notice that it fell behind).
#[derive(Clone)]
pub(crate) struct ConnSocket(pub Arc<std::net::TcpStream>);

/// A session's way to its source: port detection, asked before every connect.
pub(crate) fn locator(state: &super::AppState, service_ref: &ServiceRef) -> Arc<dyn SourceLocator> {
    Arc::new(PortLocator::new(state.resolver.clone(), service_ref.clone()))
}

/// The preamble, then live chunks until the session ends or this client falls too far behind.
fn body(
    subscription: Subscription,
    socket: Option<ConnSocket>,
    max_lag: Duration,
) -> impl futures_util::Stream<Item = Result<Bytes, actix_web::Error>> {
    let Subscription {
        preamble,
        live,
        clock,
        guard,
        ..
    } = subscription;
    let consumed = Arc::new(AtomicU64::new(clock.latest_ms()));
    if let Some(socket) = socket {
        tokio::spawn(watchdog(Arc::downgrade(&consumed), clock, socket, max_lag));
    }
    let state = (preamble.into_iter(), live, consumed, guard);
    futures_util::stream::unfold(state, |(mut preamble, mut live, consumed, guard)| async move {
        if let Some(chunk) = preamble.next() {
            return Some((Ok(chunk), (preamble, live, consumed, guard)));
        }
        match live.recv().await {
            Ok(chunk) => {
                consumed.store(chunk.at_ms, Ordering::Relaxed);
                Some((Ok(chunk.bytes), (preamble, live, consumed, guard)))
            }
            Err(RecvError::Lagged(missed)) => {
                tracing::info!(missed_chunks = missed, "Client too slow for live; dropping it.");
                None
            }
            Err(RecvError::Closed) => None,
        }
    })
}

/// Cuts the client's connection once it is more than `max_lag` behind the session. Ends by
/// itself when the client's body is dropped.
async fn watchdog(consumed: Weak<AtomicU64>, clock: Arc<SessionClock>, socket: ConnSocket, max_lag: Duration) {
    let mut tick = tokio::time::interval((max_lag / 4).clamp(Duration::from_millis(50), Duration::from_secs(1)));
    loop {
        tick.tick().await;
        let Some(consumed) = consumed.upgrade() else { return };
        let behind = clock.latest_ms().saturating_sub(consumed.load(Ordering::Relaxed));
        if behind > max_lag.as_millis() as u64 {
            tracing::info!(behind_ms = behind, "Client fell behind the live stream; dropping it.");
            let _ = socket.0.shutdown(std::net::Shutdown::Both);
            return;
        }
    }
}

/// The encoder slots for the session this request would start, when that session encodes video
/// (`limits::queue`): one, or one per encoded rung of a ladder; `None` when the profile encodes
/// nothing, the channel is radio (nothing to encode) or the session runs already (joining it
/// costs no slot). Waits in the queue at the client's priority; the session owns the slots for
/// its whole life.
pub(crate) async fn encoder_slot(
    state: &super::AppState,
    req: &HttpRequest,
    key: &SessionKey,
    template: &crate::pipeline::Template,
) -> Result<Option<crate::limits::queue::EncoderPermit>, HttpError> {
    if !template.uses_encoder()
        || key.service_ref.kind() == crate::model::ServiceKind::Radio
        || state.streaming.registry.exists(key).await
    {
        return Ok(None);
    }
    let request = crate::limits::queue::Request::Session {
        client: state.trusted_proxies.client_of(req),
        channel: key.service_ref.to_string(),
    };
    // A ladder runs one encoder per encoded rung, and each counts against `gpu_queue.workers`.
    let slots = u32::try_from(template.encoded_rungs()).unwrap_or(1).max(1);
    Ok(Some(state.encoder_queue.acquire_many(request, slots).await?))
}

/// The request's client watches `service_ref` while the guard lives: a request of the same
/// client for the channel (a profile switch, a reconnect) waits at Active priority until
/// `gpu_queue.active_window` after the guard drops.
pub(crate) fn watching(
    state: &super::AppState,
    req: &HttpRequest,
    service_ref: &ServiceRef,
) -> crate::limits::queue::Watching {
    let client = state.trusted_proxies.client_of(req);
    state.encoder_queue.watching(client, &service_ref.to_string())
}
