//! `GET /api/v1/channels/{ref}/preview.jpg`: a channel's thumbnail, from the thumbnail task
//! (`crate::preview`). Radio channels have none (404 `no-video`).

use actix_web::http::header;
use actix_web::{HttpResponse, web};

use super::State;
use super::error::HttpError;
use crate::model::ServiceRef;
use crate::preview::PreviewError;

pub(crate) fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/api/v1/channels/{ref}/preview.jpg", web::get().to(preview));
}

async fn preview(state: State, path: web::Path<String>) -> Result<HttpResponse, HttpError> {
    let service_ref: ServiceRef = path.parse()?;
    let catalog = state.catalog.snapshot().catalog.ok_or(HttpError::CatalogNotReady)?;
    let channel = catalog.channel(&service_ref).ok_or(HttpError::ChannelNotFound)?;
    if channel.is_radio() {
        return Err(PreviewError::NoVideo.into());
    }
    let locator = super::stream::locator(&state, &service_ref);
    let preview = state.previews.get(service_ref, locator).await?;
    Ok(HttpResponse::Ok()
        .content_type("image/jpeg")
        .insert_header((
            header::CACHE_CONTROL,
            format!("public, max-age={}", preview.max_age.as_secs()),
        ))
        .body(preview.jpeg))
}
