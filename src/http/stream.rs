//! `GET|HEAD /stream/{ref}`: MPEG-TS from a shared session.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use bytes::Bytes;
use serde::Deserialize;
use tokio::sync::broadcast::error::RecvError;

use super::error::HttpError;
use crate::model::ServiceRef;
use crate::pipeline::{Output, Profiles};
use crate::session::{Registry, SessionClock, SessionKey, SourceLocator, StartSpec, Subscription};
use crate::upstream::{ConnectFailure, StreamResolver};
use futures_util::future::BoxFuture;

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
}

/// Credentials for the receiver's stream ports, sent up front.
pub(crate) struct SourceTarget {
    pub authorization: Option<String>,
}

/// Sessions find their source through port detection, before every connect.
struct Located {
    resolver: StreamResolver,
    service_ref: ServiceRef,
    port: Mutex<Option<u16>>,
}

impl SourceLocator for Located {
    fn locate(&self) -> BoxFuture<'_, Result<String, String>> {
        Box::pin(async move {
            let source = self
                .resolver
                .resolve(&self.service_ref)
                .await
                .map_err(|e| e.to_string())?;
            *self.port.lock().expect("port lock poisoned") = Some(source.port);
            Ok(source.url.to_string())
        })
    }

    fn connected(&self, ok: bool) {
        if let Some(port) = *self.port.lock().expect("port lock poisoned") {
            let outcome = if ok { Ok(()) } else { Err(ConnectFailure::Reset) };
            self.resolver.report_connect(port, outcome);
        }
    }
}

pub(crate) fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/stream/{ref}", web::get().to(stream))
        .route("/stream/{ref}", web::head().to(stream));
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
    let service_ref: ServiceRef = path
        .parse()
        .map_err(|e: crate::model::ParseServiceRefError| HttpError::InvalidServiceRef { detail: e.to_string() })?;
    let streaming = &state.streaming;
    let profile = query
        .profile
        .clone()
        .unwrap_or_else(|| streaming.default_profile.clone());
    let profiles = Arc::clone(&streaming.profiles.read().expect("profiles lock poisoned"));
    let template = profiles
        .get(&profile)
        .filter(|t| t.supports(Output::Ts))
        .ok_or_else(|| HttpError::ProfileNotFound {
            profile: profile.clone(),
        })?;
    let catalog = state.catalog.snapshot().catalog.ok_or(HttpError::CatalogNotReady)?;
    if catalog.channel(&service_ref).is_none() {
        return Err(HttpError::ChannelNotFound);
    }
    if req.method() == actix_web::http::Method::HEAD {
        // Answered here: a HEAD must never tune the receiver (Threadfin, Jellyfin probe with it).
        return Ok(HttpResponse::Ok().content_type("video/mp2t").finish());
    }
    // Fails fast (502 with Retry-After) while both ports' circuit breakers are open.
    state.resolver.resolve(&service_ref).await?;
    let start = StartSpec {
        template,
        encoder: profiles.encoder.clone(),
        locator: locator(&state, &service_ref),
        authorization: streaming.source.authorization.clone(),
    };
    let key = SessionKey {
        service_ref,
        profile,
        output: Output::Ts,
    };
    let subscription = streaming.registry.join(key, start).await?;
    Ok(HttpResponse::Ok()
        .content_type("video/mp2t")
        .insert_header((header::CACHE_CONTROL, "no-cache, no-store"))
        .streaming(body(
            subscription,
            req.conn_data::<ConnSocket>().cloned(),
            streaming.max_client_lag,
        )))
}

/// A duplicate of a client connection's socket, taken when the connection opens, so that a
/// watchdog can cut off a client whose socket is full (then actix stops polling its body and
/// nothing else would notice that it fell behind).
#[derive(Clone)]
pub(crate) struct ConnSocket(pub Arc<std::net::TcpStream>);

/// A session's way to its source: port detection, asked before every connect.
pub(crate) fn locator(state: &super::AppState, service_ref: &ServiceRef) -> Arc<dyn SourceLocator> {
    Arc::new(Located {
        resolver: state.resolver.clone(),
        service_ref: service_ref.clone(),
        port: Mutex::new(None),
    })
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
