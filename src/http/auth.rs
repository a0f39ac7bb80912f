//! The stream gate (`auth.streams = "signed"`): a middleware that lets a request for a stream
//! route through only with a valid signed URL or device token (see [`crate::auth`]), throttles
//! wrong credentials per client address ([`AuthFailures`]), and leaves what it checked
//! ([`Access`]) in the request, so that playlists give the links they list the same credential:
//! a signature for the same expiry, or the same device token. Also `POST /api/v1/sign`, which
//! mints signed URLs behind the admin token.

use std::sync::Mutex;
use std::time::Duration;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::{Method, header};
use actix_web::middleware::Next;
use actix_web::{HttpMessage as _, HttpRequest, HttpResponse, web};
use serde::Deserialize;
use serde_json::json;

use super::error::HttpError;
use super::{AppState, State};
use crate::auth::store::TokenStore;
use crate::auth::unix_now;
use crate::auth::{AuthError, KeySet, Scope};
use crate::limits::rate::FailureThrottle;

/// Wrong signatures one client address may send in a burst, and how many per second after.
const FAILURE_BURST: u32 = 10;
const FAILURE_RATE: u32 = 1;
/// The default and longest lifetime `POST /api/v1/sign` gives a URL.
const DEFAULT_TTL: Duration = Duration::from_secs(3600);
const MAX_TTL: Duration = Duration::from_secs(366 * 24 * 3600);

/// Wrong credentials per client address: stream signatures and admin tokens spend one budget,
/// so that a client guessing one kind cannot go on guessing the other.
pub(crate) struct AuthFailures {
    /// Held only for a check or a count, never across an `.await`.
    throttle: Mutex<FailureThrottle>,
}

impl AuthFailures {
    /// Needs a tokio runtime (the throttle reads tokio's clock).
    pub(crate) fn new(max_tracked_ips: u32) -> Self {
        Self {
            throttle: Mutex::new(FailureThrottle::new(FAILURE_RATE, FAILURE_BURST, max_tracked_ips)),
        }
    }

    /// `Err(retry_after)` while `ip` has spent its budget.
    pub(crate) fn check(&self, ip: std::net::IpAddr) -> Result<(), Duration> {
        self.lock().check(ip, tokio::time::Instant::now())
    }

    /// Counts one wrong credential from `ip`.
    pub(crate) fn record(&self, ip: std::net::IpAddr) {
        self.lock().record_failure(ip, tokio::time::Instant::now());
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, FailureThrottle> {
        self.throttle.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// What `signed` mode needs at run time. Absent (`None` in [`AppState`]) = streams are open.
pub(crate) struct StreamGate {
    keys: KeySet,
    /// `Host` values trusted for links; used only without `public_url`.
    allowed_hosts: Vec<String>,
    /// The device tokens.
    pub(crate) tokens: TokenStore,
}

/// How a request through the gate proved itself; left in the request's extensions.
#[derive(Debug, Clone)]
pub(crate) enum Access {
    /// A signed URL valid until `expires`.
    Signed { expires: u64 },
    /// Device `id`'s token, passed on as it came.
    Device { id: String, token: String },
    /// The web sign-in cookie, valid until `expires`; only on [`opened_by_cookie`] routes.
    Session { expires: u64 },
}

/// The routes the sign-in cookie opens: the watch pages and thumbnails. Never `/stream` or
/// `/hls`: media needs a signature or token in its URL, so no other site can use the cookie.
pub(crate) fn opened_by_cookie(path: &str) -> bool {
    path.starts_with("/watch/") || (path.starts_with("/api/v1/channels/") && path.ends_with("/preview.jpg"))
}

impl StreamGate {
    pub(crate) fn new(keys: KeySet, allowed_hosts: Vec<String>, tokens: TokenStore) -> Self {
        Self {
            keys,
            allowed_hosts,
            tokens,
        }
    }

    /// The query that signs `path` until `expires` with the current key.
    pub(crate) fn sign(&self, path: &str, expires: u64) -> String {
        crate::auth::sign(self.keys.current(), &Scope::of_path(path), expires)
    }

    /// A sign-in cookie's value, valid until `expires`.
    pub(crate) fn sign_session(&self, expires: u64) -> String {
        crate::auth::sign_session(self.keys.current(), expires)
    }

    /// When the sign-in cookie `value` ends, if it is valid now.
    pub(crate) fn verify_session(&self, value: &str) -> Result<u64, AuthError> {
        crate::auth::verify_session(&self.keys, value, unix_now())
    }

    /// `host` when it is one of the allowed hosts, else the first of them; `None` without a list.
    pub(crate) fn trusted_host<'a>(&'a self, host: Option<&'a str>) -> Option<&'a str> {
        let allowed = |h: &&str| self.allowed_hosts.iter().any(|a| a.eq_ignore_ascii_case(h));
        host.filter(allowed)
            .or_else(|| self.allowed_hosts.first().map(String::as_str))
    }
}

/// Whether `path` is a stream route: what `signed` closes.
pub(crate) fn is_protected(path: &str) -> bool {
    const PREFIXES: [&str; 3] = ["/stream/", "/hls/", "/watch/"];
    const EXACT: [&str; 5] = [
        "/playlist.m3u",
        "/xmltv.xml",
        "/discover.json",
        "/lineup.json",
        "/lineup_status.json",
    ];
    PREFIXES.iter().any(|p| path.starts_with(p))
        || EXACT.contains(&path)
        || (path.starts_with("/api/v1/channels/") && path.ends_with("/preview.jpg"))
}

/// Wraps the whole app; does nothing while streams are open.
pub(crate) async fn gate<B: MessageBody>(
    req: ServiceRequest,
    next: Next<B>,
) -> Result<ServiceResponse<EitherBody<B>>, actix_web::Error> {
    let state = req.app_data::<State>().cloned();
    let Some(state) = state.filter(|s| s.stream_gate.is_some()) else {
        return Ok(next.call(req).await?.map_into_left_body());
    };
    // Preflights carry no credentials by design; the HLS CORS middleware answers them. The
    // route is told by the decoded path, as the router sees it (`/%73tream/…` is `/stream/…`).
    if req.method() == Method::OPTIONS || !is_protected(&crate::auth::canonical_path(req.path())) {
        return Ok(next.call(req).await?.map_into_left_body());
    }
    match check(&state, req.request()) {
        Ok(access) => {
            req.extensions_mut().insert(access);
            Ok(next.call(req).await?.map_into_left_body())
        }
        Err(error) => {
            let mut response = req.error_response(error);
            // hls.js reads the refusal only when it carries the CORS origin.
            if response.request().path().starts_with("/hls/")
                && let Some(origin) = &state.streaming.hls.cors_origin
                && let Ok(value) = header::HeaderValue::from_str(origin)
            {
                response
                    .headers_mut()
                    .insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, value);
            }
            Ok(response.map_into_right_body())
        }
    }
}

/// A signature first; without one a device token (`token=`); without either, on the pages and
/// thumbnails, the sign-in cookie; without any, 401. A stale or altered cookie counts as none.
fn check(state: &AppState, req: &HttpRequest) -> Result<Access, HttpError> {
    let gate = state.stream_gate.as_ref().expect("checked by the caller");
    let ip = state.trusted_proxies.client_of(req);
    state
        .auth_failures
        .check(ip)
        .map_err(|retry_after| HttpError::SignatureThrottled { retry_after })?;
    let query = req.query_string();
    let checked = match crate::auth::verify(&gate.keys, req.path(), query, unix_now()) {
        Ok(grant) => Ok(Access::Signed { expires: grant.expires }),
        Err(AuthError::Missing) => match crate::auth::tokens::from_query(query) {
            None => super::signin::session_cookie(req)
                .filter(|_| opened_by_cookie(&crate::auth::canonical_path(req.path())))
                .and_then(|value| gate.verify_session(&value).ok())
                .map(|expires| Access::Session { expires })
                .ok_or(AuthError::Missing),
            Some(token) => match gate.tokens.lookup(&token) {
                Some(id) => {
                    gate.tokens.used(&id, unix_now());
                    Ok(Access::Device { id, token })
                }
                None => Err(AuthError::UnknownToken),
            },
        },
        Err(error) => Err(error),
    };
    checked.map_err(|error| {
        if error.is_wrong() {
            state.auth_failures.record(ip);
            tracing::info!(client = %ip, code = error.code(), "Refused a stream URL's credential.");
        }
        HttpError::Signature(error)
    })
}

/// `path` (no query) as a link for the answer to `req`: with the request's own kind of
/// credential (see [`signature_for`]), unchanged without one.
pub(crate) fn link(state: &AppState, req: &HttpRequest, path: &str) -> String {
    match signature_for(state, req, path) {
        Some(query) => format!("{path}?{query}"),
        None => path.to_owned(),
    }
}

/// The query that lets a link to `path` through the gate: a signature expiring with the
/// request's own, the request's device token, or for a signed-in page a signature for
/// [`PAGE_LINK_TTL`](super::signin::PAGE_LINK_TTL) (at most until the sign-in ends); `None`
/// while open.
pub(crate) fn signature_for(state: &AppState, req: &HttpRequest, path: &str) -> Option<String> {
    let gate = state.stream_gate.as_ref()?;
    match req.extensions().get::<Access>()? {
        Access::Signed { expires } => Some(gate.sign(path, *expires)),
        Access::Device { token, .. } => Some(format!("token={token}")),
        Access::Session { expires } => Some(gate.sign(path, page_link_expiry(*expires))),
    }
}

/// When a stream link handed out by a page of a sign-in that ends at `signed_in_until` expires.
pub(crate) fn page_link_expiry(signed_in_until: u64) -> u64 {
    (unix_now() + super::signin::PAGE_LINK_TTL.as_secs()).min(signed_in_until)
}

/// Appends a signature for `url`'s path to `url` (which may have a query already).
pub(crate) fn sign_url(state: &AppState, req: &HttpRequest, url: &str) -> String {
    let path = url::Url::parse(url).map_or_else(|_| url.to_owned(), |u| u.path().to_owned());
    match signature_for(state, req, &path) {
        Some(query) if url.contains('?') => format!("{url}&{query}"),
        Some(query) => format!("{url}?{query}"),
        None => url.to_owned(),
    }
}

pub(crate) fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/api/v1/sign", web::post().to(mint));
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MintRequest {
    /// A stream route, e.g. `/playlist.m3u` or `/hls/{ref}/auto/index.m3u8`.
    path: String,
    /// A humantime duration such as `"12h"`; default one hour.
    ttl: Option<String>,
}

/// `POST /api/v1/sign {"path": "/playlist.m3u", "ttl": "30d"}` → the signed URL and when it
/// expires. Admin token required.
async fn mint(state: State, req: HttpRequest, body: web::Json<MintRequest>) -> Result<HttpResponse, HttpError> {
    super::admin::authorize(&state, &req)?;
    let gate = state.stream_gate.as_ref().ok_or(HttpError::SigningOff)?;
    let MintRequest { path, ttl } = body.into_inner();
    if !path.starts_with('/') || path.contains(['?', '#']) || !is_protected(&crate::auth::canonical_path(&path)) {
        return Err(HttpError::InvalidParameter {
            name: "path",
            detail: "expected a stream route such as /playlist.m3u, /stream/{ref} or /hls/{ref}/auto/index.m3u8"
                .to_owned(),
        });
    }
    let ttl = match ttl {
        None => DEFAULT_TTL,
        Some(text) => humantime::parse_duration(&text)
            .ok()
            .filter(|t| !t.is_zero() && *t <= MAX_TTL)
            .ok_or(HttpError::InvalidParameter {
                name: "ttl",
                detail: "expected a duration from 1s to 366d, such as \"12h\"".to_owned(),
            })?,
    };
    let expires = unix_now() + ttl.as_secs().max(1);
    let signed = format!("{path}?{}", gate.sign(&path, expires));
    Ok(HttpResponse::Ok().json(json!({
        "url": format!("{}{signed}", super::base_url(&state, &req)),
        "path": signed,
        "expires": expires,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_routes_are_protected_and_the_rest_is_not() {
        for path in [
            "/stream/1:0:1:2:3:4:5:0:0:0:",
            "/hls/1:0:1:2:3:4:5:0:0:0:/auto/index.m3u8",
            "/hls/x/aac/12.ts",
            "/watch/1:0:1:2:3:4:5:0:0:0:",
            "/playlist.m3u",
            "/xmltv.xml",
            "/discover.json",
            "/lineup.json",
            "/lineup_status.json",
            "/api/v1/channels/1:0:1:2:3:4:5:0:0:0:/preview.jpg",
        ] {
            assert!(is_protected(path), "{path}");
        }
        for path in [
            "/",
            "/healthz",
            "/readyz",
            "/metrics",
            "/assets/watch.js",
            "/picon/x.png",
            "/api/v1/sign",
        ] {
            assert!(!is_protected(path), "{path}");
        }
    }
}
