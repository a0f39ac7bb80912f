//! The device token API, behind the admin token: `POST /api/v1/tokens` makes one (the answer
//! is the only place the token appears), `GET /api/v1/tokens` lists them without their tokens,
//! `DELETE /api/v1/tokens/{id}` revokes one at once. While streams are open: 409 `signing-off`.

use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use serde_json::json;

use super::error::HttpError;
use super::{State, base_url};
use crate::auth::store::TokenStore;

pub(crate) fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/api/v1/tokens", web::post().to(create))
        .route("/api/v1/tokens", web::get().to(list))
        .route("/api/v1/tokens/{id}", web::delete().to(revoke));
}

/// The admin token checked, the store while signed.
fn store<'a>(state: &'a State, req: &HttpRequest) -> Result<&'a TokenStore, HttpError> {
    super::admin::authorize(state, req)?;
    Ok(&state.stream_gate.as_ref().ok_or(HttpError::SigningOff)?.tokens)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateRequest {
    /// What the device is, e.g. "Plex in the living room".
    name: String,
}

/// `POST /api/v1/tokens {"name": "Plex"}` → 201 with the token and the URLs that carry it.
async fn create(state: State, req: HttpRequest, body: web::Json<CreateRequest>) -> Result<HttpResponse, HttpError> {
    let (token, record) = store(&state, &req)?.create(body.into_inner().name).await?;
    let base = base_url(&state, &req);
    Ok(HttpResponse::Created().json(json!({
        "id": record.id,
        "name": record.name,
        "created": record.created,
        "token": token,
        "playlist_url": format!("{base}/playlist.m3u?token={token}"),
        "xmltv_url": format!("{base}/xmltv.xml?token={token}"),
        "discover_url": format!("{base}/discover.json?token={token}"),
    })))
}

/// `GET /api/v1/tokens` → `[{"id", "name", "created", "last_used"}]`, never a token or a hash.
async fn list(state: State, req: HttpRequest) -> Result<HttpResponse, HttpError> {
    let records = store(&state, &req)?.list().await?;
    let listed: Vec<_> = records
        .into_iter()
        .map(|r| json!({ "id": r.id, "name": r.name, "created": r.created, "last_used": r.last_used }))
        .collect();
    Ok(HttpResponse::Ok().json(listed))
}

/// `DELETE /api/v1/tokens/{id}` → 204; the token is refused from then on and the device's open
/// streams end. Unknown id: 404 `token-not-found`.
async fn revoke(state: State, req: HttpRequest, id: web::Path<String>) -> Result<HttpResponse, HttpError> {
    store(&state, &req)?.revoke(id.into_inner()).await?;
    Ok(HttpResponse::NoContent().finish())
}
