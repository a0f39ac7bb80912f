//! HTTP routes, request metrics and the server; the only module that speaks actix-web.

mod admin;
mod auth;
mod client_ip;
mod error;
mod guide;
mod hdhr;
mod hls;
mod pages;
mod picon;
mod preview;
mod reload;
mod signin;
mod source;
mod stream;
mod tokens;
mod trace;

pub(crate) use auth::{AuthFailures, StreamGate};
pub(crate) use client_ip::TrustedProxies;
pub(crate) use stream::{ConnSocket, HlsOptions, SourceTarget, Streaming};

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::body::MessageBody;
use actix_web::dev::{Server, ServiceRequest, ServiceResponse};
use actix_web::http::header;
use actix_web::middleware::Next;
use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::json;

use crate::catalog::{CatalogHandle, render_m3u};
use crate::metrics::{self, Metrics};
use error::HttpError;

/// What the handlers share.
pub(crate) struct AppState {
    pub catalog: CatalogHandle,
    pub metrics: Arc<Metrics>,
    /// Overrides the base URL written into playlists.
    pub public_url: Option<String>,
    /// Fallback host for playlists when a request has no usable `Host`.
    pub listen_host: String,
    /// The emulated HDHomeRun tuner; `None` when `hdhr.enabled` is off.
    pub hdhr: Option<Arc<crate::hdhr::Device>>,
    pub picons: crate::picon::PiconHandle,
    pub streaming: Streaming,
    /// Picks each channel's stream port, behind the per-port circuit breakers.
    pub resolver: crate::upstream::StreamResolver,
    /// The token the admin API requires; `None` = the admin API is closed.
    pub api_token: Option<crate::config::Secret>,
    /// The web sign-in's password (the admin token signs in too); `None` = the token only.
    pub password: Option<crate::config::Secret>,
    /// Where templates reload from (SIGHUP, `POST /api/v1/reload`).
    pub reload: crate::pipeline::Reloader,
    /// Rate limits on new sessions.
    pub admission: crate::limits::AdmissionHandle,
    /// Whose forwarding headers name the client for the per-client rate limit.
    pub trusted_proxies: TrustedProxies,
    /// Encoder slots for sessions that encode video, and for thumbnails.
    pub encoder_queue: crate::limits::queue::EncoderQueue,
    /// Channel thumbnails.
    pub previews: crate::preview::PreviewHandle,
    /// Signed stream URLs (`auth.streams = "signed"`); `None` = streams are open.
    pub stream_gate: Option<StreamGate>,
    /// Wrong signatures and admin tokens per client address.
    pub auth_failures: AuthFailures,
}

type State = web::Data<AppState>;

/// Kernel send buffer per client connection (Linux doubles it): about 4 s of an 8 Mb/s stream
/// over loopback, plenty for any LAN round trip.
const SEND_BUFFER: usize = 256 * 1024;

/// A query string the route's parameters cannot take (a parameter twice, a number that is not
/// one) is a JSON `invalid-parameter`, like every other refusal.
fn query_error(error: actix_web::error::QueryPayloadError, _req: &HttpRequest) -> actix_web::Error {
    HttpError::InvalidParameter {
        name: "query",
        detail: error.to_string(),
    }
    .into()
}

/// Builds the server on an already bound listener; the caller runs and stops it.
pub(crate) fn server(
    listener: std::net::TcpListener,
    state: Arc<AppState>,
    shutdown_timeout: Duration,
) -> std::io::Result<Server> {
    let state = web::Data::from(state);
    Ok(actix_web::HttpServer::new(move || {
        actix_web::App::new()
            .app_data(state.clone())
            .app_data(web::QueryConfig::default().error_handler(query_error))
            // Inside the metrics: a refused request still counts, under its route.
            .wrap(actix_web::middleware::from_fn(auth::gate))
            .wrap(actix_web::middleware::from_fn(record_metrics))
            .route("/", web::get().to(index))
            .route("/healthz", web::get().to(healthz))
            .route("/readyz", web::get().to(readyz))
            .route("/metrics", web::get().to(metrics_text))
            .route("/playlist.m3u", web::get().to(playlist))
            .configure(guide::routes)
            .configure(admin::routes)
            .configure(auth::routes)
            .configure(hdhr::routes)
            .configure(picon::routes)
            .configure(preview::routes)
            .configure(reload::routes)
            .configure(signin::routes)
            .configure(source::routes)
            .configure(stream::routes)
            .configure(tokens::routes)
            .configure(hls::routes)
            .configure(pages::routes)
            .default_service(web::to(not_found))
    })
    .on_connect(|connection, extensions| {
        // Keep a duplicate of each client socket for the stream watchdog (see ConnSocket).
        use std::os::fd::AsFd;
        if let Some(tcp) = connection.downcast_ref::<actix_web::rt::net::TcpStream>()
            && let Ok(fd) = tcp.as_fd().try_clone_to_owned()
        {
            let socket = socket2::Socket::from(fd);
            // A bounded send buffer bounds kernel memory per viewer and lets a viewer that stops
            // reading be noticed within seconds, not after megabytes of autotuned buffer.
            let _ = socket.set_send_buffer_size(SEND_BUFFER);
            extensions.insert(ConnSocket(Arc::new(socket.into())));
        }
    })
    // A client that closes its connection is gone: its handler is dropped at once (a request
    // waiting for an encoder slot then leaves the queue), not run to the end for nobody.
    .h1_allow_half_closed(false)
    .disable_signals()
    .shutdown_timeout(shutdown_timeout.as_secs().max(1))
    .listen(listener)?
    .run())
}

/// Records every request under its route template. The guard records on drop too, so a
/// request whose client went away still counts.
async fn record_metrics(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let metrics = req.app_data::<State>().map(|s| Arc::clone(&s.metrics));
    let mut timer = RequestTimer {
        metrics,
        started: Instant::now(),
        outcome: None,
    };
    let response = next.call(req).await?;
    let route = response
        .request()
        .match_pattern()
        .unwrap_or_else(|| "unmatched".to_owned());
    timer.outcome = Some((route, response.status().as_u16()));
    Ok(response)
}

struct RequestTimer {
    metrics: Option<Arc<Metrics>>,
    started: Instant,
    outcome: Option<(String, u16)>,
}

impl Drop for RequestTimer {
    fn drop(&mut self) {
        if let Some(metrics) = &self.metrics {
            // 499: the client closed before an answer, as nginx counts it.
            let (route, status) = self.outcome.take().unwrap_or_else(|| ("unknown".to_owned(), 499));
            metrics.http_request(&route, status, self.started.elapsed());
        }
    }
}

/// `GET /`: the channel list; while signed, only for a signed-in browser (with signed stream
/// links and a sign-out button), and a sign-in form for anyone else.
async fn index(state: State, req: HttpRequest) -> HttpResponse {
    let snapshot = state.catalog.snapshot();
    let now = guide::unix_now();
    let Some(gate) = &state.stream_gate else {
        return pages::index(&snapshot, now, &|_| String::new(), "");
    };
    let Some(until) = signin::signed_in_until(&state, &req) else {
        return pages::sign_in();
    };
    let expires = auth::page_link_expiry(until);
    // The cookie opens watch pages and thumbnails; what a player fetches gets a signature.
    let query = |path: &str| {
        if auth::opened_by_cookie(path) {
            String::new()
        } else {
            format!("?{}", gate.sign(path, expires))
        }
    };
    pages::index(&snapshot, now, &query, pages::SIGN_OUT)
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

async fn readyz(state: State) -> HttpResponse {
    let snapshot = state.catalog.snapshot();
    match &snapshot.catalog {
        Some(catalog) => {
            let mut body = json!({ "status": "ready", "channels": catalog.channels.len(), "events": catalog.guide.len() });
            // A failed refresh keeps the previous catalog: still ready, but say why it is old.
            if let Some(error) = snapshot.refresh_error() {
                body["last_refresh_error"] = json!(error);
            }
            HttpResponse::Ok().json(body)
        }
        None => HttpResponse::ServiceUnavailable().json(json!({
            "status": "not-ready",
            "missing": ["channel-list"],
            "detail": snapshot.last_error.clone().unwrap_or_else(|| "the first load from the receiver is still running".to_owned()),
        })),
    }
}

async fn metrics_text(state: State) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(metrics::CONTENT_TYPE)
        .body(state.metrics.encode())
}

async fn playlist(state: State, req: HttpRequest) -> Result<HttpResponse, HttpError> {
    let catalog = state.catalog.snapshot().catalog.ok_or(HttpError::CatalogNotReady)?;
    let base = base_url(&state, &req);
    Ok(HttpResponse::Ok()
        .content_type("audio/x-mpegurl; charset=utf-8")
        .insert_header((header::CONTENT_DISPOSITION, "inline; filename=\"playlist.m3u\""))
        .body(render_m3u(&catalog.channels, &base, &|path| {
            auth::link(&state, &req, path)
        })))
}

async fn not_found(req: HttpRequest) -> Result<HttpResponse, HttpError> {
    Err(HttpError::RouteNotFound {
        method: req.method().to_string(),
        path: req.path().to_owned(),
    })
}

/// This server's URL as the client reached it, for links in playlists. The `Host` header is
/// used only when it looks like a host name and port, so it cannot inject text; while streams
/// are signed, only when it is one of `auth.allowed_hosts` (a signed playlist must not point
/// a player at a host the requester chose).
fn base_url(state: &AppState, req: &HttpRequest) -> String {
    if let Some(url) = &state.public_url {
        return url.trim_end_matches('/').to_owned();
    }
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| !h.is_empty() && h.len() <= 255)
        .filter(|h| {
            h.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'))
        });
    let host = match &state.stream_gate {
        Some(gate) => gate.trusted_host(host),
        None => host,
    };
    format!("http://{}", host.unwrap_or(&state.listen_host))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_are_stable() {
        assert_eq!(HttpError::CatalogNotReady.code(), "catalog-not-ready");
        assert_eq!(
            HttpError::RouteNotFound {
                method: "GET".into(),
                path: "/x".into()
            }
            .code(),
            "not-found"
        );
    }
}
