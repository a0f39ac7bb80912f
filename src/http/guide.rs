//! `GET /xmltv.xml`: the programme guide as XMLTV, gzip-compressed when the client accepts it;
//! `GET /api/v1/guide/now`: what runs now and next on every channel, for the page's script.

use actix_web::http::header;
use actix_web::middleware::Compress;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;

use super::error::HttpError;
use super::{State, base_url};
use crate::catalog::{ChannelIds, now_next, render_xmltv};

/// Only this resource is wrapped in compression; streams never are.
pub(crate) fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/xmltv.xml")
            .wrap(Compress::default())
            .route(web::get().to(xmltv)),
    );
    cfg.route("/api/v1/guide/now", web::get().to(guide_now));
}

/// Small and changing by the minute: never cached.
async fn guide_now(state: State) -> Result<HttpResponse, HttpError> {
    let catalog = state.catalog.snapshot().catalog.ok_or(HttpError::CatalogNotReady)?;
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(now_next(&catalog, unix_now())))
}

#[derive(Debug, Deserialize)]
struct XmltvQuery {
    /// `number` keys channels by `<number>.xg2g` (Plex's HDHomeRun guide); default the `tvg-id`.
    ids: Option<String>,
}

/// The system clock in Unix seconds, for the guide's "now".
pub(crate) fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

async fn xmltv(state: State, req: HttpRequest, query: web::Query<XmltvQuery>) -> Result<HttpResponse, HttpError> {
    let ids = match query.ids.as_deref() {
        None | Some("tvg-id") => ChannelIds::TvgId,
        Some("number") => ChannelIds::Number,
        Some(other) => {
            return Err(HttpError::InvalidParameter {
                name: "ids",
                detail: format!("`{other}`: expected `tvg-id` or `number`"),
            });
        }
    };
    let catalog = state.catalog.snapshot().catalog.ok_or(HttpError::CatalogNotReady)?;
    let base = base_url(&state, &req);
    Ok(HttpResponse::Ok()
        .content_type("application/xml; charset=utf-8")
        .insert_header((header::CONTENT_DISPOSITION, "inline; filename=\"xmltv.xml\""))
        .body(render_xmltv(&catalog.channels, &catalog.guide, &base, ids, unix_now())))
}
