//! The web sign-in (`auth.streams = "signed"`): `POST /login` with the password
//! (`auth.password`) or the admin token sets an `HttpOnly`, `SameSite=Lax` cookie signed with the
//! stream keys, so it needs no state here; `POST /logout` clears it. The cookie opens the pages
//! (`/`, `/watch/{ref}`) and thumbnails, which then hand out signed stream and HLS URLs; it
//! never opens `/stream` or `/hls` itself, so a page elsewhere cannot make a browser fetch
//! media with it. Both posts are refused when a browser says they come from another site.

use std::time::Duration;

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use sha2::Digest as _;
use subtle::ConstantTimeEq as _;

use super::error::HttpError;
use super::{AppState, State};

/// The cookie's name.
pub(crate) const COOKIE: &str = "xg2g_session";
/// How long a sign-in lasts.
pub(crate) const SESSION_TTL: Duration = Duration::from_secs(7 * 24 * 3600);
/// How long the stream links a signed-in page hands out last (at most until the sign-in ends):
/// a watch page plays this long without being reloaded.
pub(crate) const PAGE_LINK_TTL: Duration = Duration::from_secs(6 * 3600);

pub(crate) fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/login", web::post().to(login))
        .route("/logout", web::post().to(logout));
}

#[derive(Deserialize)]
struct SignIn {
    password: String,
}

/// `POST /login` (form field `password`): 303 to `/` with the cookie; a wrong password 403
/// `wrong-password` (throttled per address with every other wrong credential).
async fn login(state: State, req: HttpRequest, form: web::Form<SignIn>) -> Result<HttpResponse, HttpError> {
    same_site(&state, &req)?;
    let gate = state.stream_gate.as_ref().ok_or(HttpError::SigningOff)?;
    let ip = state.trusted_proxies.client_of(&req);
    state
        .auth_failures
        .check(ip)
        .map_err(|retry_after| HttpError::SignInThrottled { retry_after })?;
    if !password_matches(&state, &form.password) {
        state.auth_failures.record(ip);
        tracing::info!(client = %ip, "Refused a web sign-in.");
        return Err(HttpError::WrongPassword);
    }
    let expires = crate::auth::unix_now() + SESSION_TTL.as_secs();
    let value = gate.sign_session(expires);
    tracing::info!(client = %ip, "Signed in on the web page.");
    Ok(HttpResponse::SeeOther()
        .insert_header((header::LOCATION, "./"))
        .insert_header((header::SET_COOKIE, cookie(&state, &value, SESSION_TTL.as_secs())))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .finish())
}

/// `POST /logout`: 303 to `/` with the cookie cleared.
async fn logout(state: State, req: HttpRequest) -> Result<HttpResponse, HttpError> {
    same_site(&state, &req)?;
    Ok(HttpResponse::SeeOther()
        .insert_header((header::LOCATION, "./"))
        .insert_header((header::SET_COOKIE, cookie(&state, "", 0)))
        .finish())
}

/// The password, or the admin token, compared in constant time (through their hashes, so the
/// time says nothing about the length either).
fn password_matches(state: &AppState, given: &str) -> bool {
    let given = sha2::Sha256::digest(given.as_bytes());
    [state.password.as_ref(), state.api_token.as_ref()]
        .into_iter()
        .flatten()
        .any(|expected| bool::from(sha2::Sha256::digest(expected.expose().as_bytes()).ct_eq(&given)))
}

/// `Set-Cookie` for `value`, `Secure` when the public URL is https.
fn cookie(state: &AppState, value: &str, max_age: u64) -> String {
    let secure = state.public_url.as_deref().is_some_and(|u| u.starts_with("https:"));
    format!(
        "{COOKIE}={value}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Lax{}",
        if secure { "; Secure" } else { "" }
    )
}

/// The sign-in cookie's value in `req`, if any.
pub(crate) fn session_cookie(req: &HttpRequest) -> Option<String> {
    req.headers()
        .get_all(header::COOKIE)
        .filter_map(|h| h.to_str().ok())
        .flat_map(|h| h.split(';'))
        .find_map(|pair| pair.trim().strip_prefix(COOKIE)?.strip_prefix('=').map(str::to_owned))
}

/// When a valid sign-in of `req` ends; `None` without one (or while streams are open).
pub(crate) fn signed_in_until(state: &AppState, req: &HttpRequest) -> Option<u64> {
    let gate = state.stream_gate.as_ref()?;
    gate.verify_session(&session_cookie(req)?).ok()
}

/// Refuses a post a browser marks as coming from another site: `Sec-Fetch-Site` other than
/// `same-origin` or `none`, or else an `Origin` whose host is not the one the request went to.
/// A client that sends neither is no browser, and no cross-site form can make it post.
fn same_site(state: &AppState, req: &HttpRequest) -> Result<(), HttpError> {
    let headers = req.headers();
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(site) = text("sec-fetch-site") {
        return if matches!(site, "same-origin" | "none") {
            Ok(())
        } else {
            Err(HttpError::CrossSite)
        };
    }
    let Some(origin) = text("origin") else { return Ok(()) };
    let origin_host = url::Url::parse(origin).ok().and_then(|u| {
        let host = u.host_str()?.to_owned();
        Some(match u.port() {
            Some(port) => format!("{host}:{port}"),
            None => host,
        })
    });
    let own_hosts = [
        text("host").map(str::to_owned),
        state
            .public_url
            .as_deref()
            .and_then(|u| url::Url::parse(u).ok())
            .and_then(|u| {
                Some(format!(
                    "{}{}",
                    u.host_str()?,
                    u.port().map(|p| format!(":{p}")).unwrap_or_default()
                ))
            }),
    ];
    match origin_host {
        Some(host) if own_hosts.iter().flatten().any(|own| own.eq_ignore_ascii_case(&host)) => Ok(()),
        _ => Err(HttpError::CrossSite),
    }
}

#[cfg(test)]
mod tests {
    use actix_web::test::TestRequest;

    use super::*;

    #[test]
    fn the_cookie_is_found_among_others() {
        let req = TestRequest::default()
            .insert_header(("Cookie", "a=1; xg2g_session=v1.2.k.s; b=2"))
            .to_http_request();
        assert_eq!(session_cookie(&req).as_deref(), Some("v1.2.k.s"));
        let other = TestRequest::default()
            .insert_header(("Cookie", "xg2g_sessionx=1"))
            .to_http_request();
        assert_eq!(session_cookie(&other), None);
    }
}
