//! `GET /api/v1/channels/{ref}/preview.jpg`: a channel's thumbnail, from the thumbnail task
//! (`crate::preview`). Radio channels have none (404 `no-video`). One that must be made is
//! charged to the rate limits first (`limits::admit`, 429 `rate-limited`).

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};

use super::State;
use super::error::HttpError;
use crate::model::ServiceRef;
use crate::preview::PreviewError;

pub(crate) fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/api/v1/channels/{ref}/preview.jpg", web::get().to(preview));
}

async fn preview(state: State, req: HttpRequest, path: web::Path<String>) -> Result<HttpResponse, HttpError> {
    let service_ref: ServiceRef = path.parse()?;
    let catalog = state.catalog.snapshot().catalog.ok_or(HttpError::CatalogNotReady)?;
    let channel = catalog.channel(&service_ref).ok_or(HttpError::ChannelNotFound)?;
    if channel.is_radio() {
        return Err(PreviewError::NoVideo.into());
    }
    // A cached thumbnail, or one being made, is free; a new one tunes the receiver and is
    // charged like a session start.
    let preview = match state.previews.free(service_ref.clone()).await? {
        Some(preview) => preview,
        None => {
            super::client_ip::admit_preview(&state, &req, &service_ref).await?;
            let locator = super::stream::locator(&state, &service_ref);
            state.previews.get(service_ref, locator).await?
        }
    };
    Ok(HttpResponse::Ok()
        .content_type("image/jpeg")
        .insert_header((
            header::CACHE_CONTROL,
            format!("public, max-age={}", preview.max_age.as_secs()),
        ))
        .body(preview.jpeg))
}
