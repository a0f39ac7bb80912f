//! The admin API: the token check every admin route shares (wrong tokens throttled per client
//! address), and `POST /api/v1/refresh`.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use subtle::ConstantTimeEq as _;

use super::error::HttpError;
use super::{AppState, State};
use crate::config::Secret;

pub(crate) fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/api/v1/refresh", web::post().to(refresh));
}

/// Lets a request through when it carries the configured API token (see [`check_token`]). A
/// wrong token counts against the client address's budget of wrong credentials, shared with
/// wrong stream signatures; once it is spent, every admin request from there is 429
/// `admin-token-throttled`, the right token too, until the budget refills.
pub(crate) fn authorize(state: &AppState, req: &HttpRequest) -> Result<(), HttpError> {
    let ip = state.trusted_proxies.client_of(req);
    state
        .auth_failures
        .check(ip)
        .map_err(|retry_after| HttpError::AdminThrottled { retry_after })?;
    check_token(state.api_token.as_ref(), req).inspect_err(|error| {
        if matches!(error, HttpError::Forbidden) {
            state.auth_failures.record(ip);
            tracing::info!(client = %ip, "Refused a wrong admin token.");
        }
    })
}

/// Whether `req` carries `expected`, in `X-API-Token` or as `Authorization: Bearer`. Without a
/// configured token the admin API is closed (401, saying how to open it); without a token in
/// the request 401; with a wrong one 403. The comparison takes the same time wherever the
/// tokens differ.
pub(crate) fn check_token(expected: Option<&Secret>, req: &HttpRequest) -> Result<(), HttpError> {
    let Some(expected) = expected else {
        return Err(HttpError::AdminTokenNotSet);
    };
    let given = presented_token(req).ok_or(HttpError::Unauthorized)?;
    if bool::from(given.as_bytes().ct_eq(expected.expose().as_bytes())) {
        Ok(())
    } else {
        Err(HttpError::Forbidden)
    }
}

/// The token a request carries: a non-empty `X-API-Token` first, else `Authorization: Bearer …`
/// (a proxy or client that sends an empty `X-API-Token` must not hide a good bearer token).
fn presented_token(req: &HttpRequest) -> Option<&str> {
    let headers = req.headers();
    if let Some(token) = headers
        .get("x-api-token")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|t| !t.is_empty())
    {
        return Some(token);
    }
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// Reloads channels and guide now; answers when done with what it did.
async fn refresh(state: State, req: HttpRequest) -> Result<HttpResponse, HttpError> {
    authorize(&state, &req)?;
    let summary = state.catalog.refresh().await?;
    Ok(HttpResponse::Ok().json(summary))
}

#[cfg(test)]
mod tests {
    use actix_web::test::TestRequest;

    use super::*;

    fn check(expected: Option<&str>, headers: &[(&str, &str)]) -> Result<(), &'static str> {
        let mut req = TestRequest::default();
        for (name, value) in headers {
            req = req.insert_header((*name, *value));
        }
        let secret = expected.map(Secret::new);
        check_token(secret.as_ref(), &req.to_http_request()).map_err(|e| e.code())
    }

    #[test]
    fn token_in_either_header() {
        let token = Some("s3cr3t-t0ken");
        assert_eq!(check(token, &[("X-API-Token", "s3cr3t-t0ken")]), Ok(()));
        assert_eq!(check(token, &[("Authorization", "Bearer s3cr3t-t0ken")]), Ok(()));
        assert_eq!(check(token, &[("Authorization", "bearer  s3cr3t-t0ken ")]), Ok(()));
        assert_eq!(
            check(token, &[("X-API-Token", " "), ("Authorization", "Bearer s3cr3t-t0ken")]),
            Ok(()),
            "an empty X-API-Token does not hide the bearer token"
        );
    }

    #[test]
    fn missing_wrong_or_unset_tokens() {
        let token = Some("s3cr3t-t0ken");
        assert_eq!(check(token, &[]), Err("unauthorized"));
        assert_eq!(check(token, &[("X-API-Token", "")]), Err("unauthorized"));
        assert_eq!(
            check(token, &[("Authorization", "Basic czNjcjN0")]),
            Err("unauthorized")
        );
        assert_eq!(check(token, &[("Authorization", "Bearer")]), Err("unauthorized"));
        assert_eq!(check(token, &[("X-API-Token", "s3cr3t-t0ke")]), Err("forbidden"));
        assert_eq!(check(token, &[("X-API-Token", "s3cr3t-t0ken2")]), Err("forbidden"));
        assert_eq!(
            check(token, &[("Authorization", "Bearer S3CR3T-T0KEN")]),
            Err("forbidden")
        );
        assert_eq!(check(None, &[("X-API-Token", "anything")]), Err("unauthorized"));
        let message = check_token(None, &TestRequest::default().to_http_request())
            .unwrap_err()
            .to_string();
        assert!(message.contains("XG2G_API_TOKEN"), "{message}");
    }
}
