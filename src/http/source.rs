//! `GET /api/v1/channels/{ref}/source`: which receiver port streams a channel, as
//! `{"port": 17999, "relay": true}` (never the URL, never credentials).

use actix_web::{HttpResponse, web};
use serde_json::json;

use super::State;
use super::error::HttpError;
use crate::model::ServiceRef;

pub(crate) fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/api/v1/channels/{ref}/source", web::get().to(source));
}

/// Resolves like a stream start would: it may fetch the whitelist or probe the receiver once,
/// and answers `upstream-unavailable` (502, `Retry-After`) at once while both breakers are open.
async fn source(state: State, path: web::Path<String>) -> Result<HttpResponse, HttpError> {
    let service_ref: ServiceRef = path.parse()?;
    let catalog = state.catalog.snapshot().catalog.ok_or(HttpError::CatalogNotReady)?;
    if catalog.channel(&service_ref).is_none() {
        return Err(HttpError::ChannelNotFound);
    }
    let source = state.resolver.resolve(&service_ref).await?;
    Ok(HttpResponse::Ok().json(json!({ "port": source.port, "relay": source.relay })))
}
