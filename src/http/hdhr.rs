//! HDHomeRun routes for Plex, Jellyfin and Emby: discover.json, lineup.json,
//! lineup_status.json, device.xml and lineup.post. Answer 404 when `hdhr.enabled` is off.

use std::sync::Arc;

use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;

use super::error::HttpError;
use super::{State, base_url};
use crate::hdhr::{Device, render};

pub(crate) fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/discover.json", web::get().to(discover))
        .route("/lineup.json", web::get().to(lineup))
        .route("/lineup_status.json", web::get().to(lineup_status))
        .route("/device.xml", web::get().to(device_xml))
        .route("/lineup.post", web::post().to(lineup_post));
}

/// The device, or the 404 every unknown route gets while the emulation is off.
fn device(state: &State, req: &HttpRequest) -> Result<Arc<Device>, HttpError> {
    state.hdhr.clone().ok_or_else(|| HttpError::RouteNotFound {
        method: req.method().to_string(),
        path: req.path().to_owned(),
    })
}

async fn discover(state: State, req: HttpRequest) -> Result<HttpResponse, HttpError> {
    let device = device(&state, &req)?;
    let mut discover = render::discover(&device, &base_url(&state, &req));
    discover.lineup_url = super::auth::sign_url(&state, &req, &discover.lineup_url);
    Ok(HttpResponse::Ok().json(discover))
}

async fn lineup(state: State, req: HttpRequest) -> Result<HttpResponse, HttpError> {
    let device = device(&state, &req)?;
    let catalog = state.catalog.snapshot().catalog.ok_or(HttpError::CatalogNotReady)?;
    let base = base_url(&state, &req);
    let mut entries = render::lineup(&catalog.channels, &base, &device.profile);
    // While signed, each stream URL expires with the lineup URL's signature.
    for entry in &mut entries {
        entry.url = super::auth::sign_url(&state, &req, &entry.url);
    }
    Ok(HttpResponse::Ok().json(entries))
}

async fn lineup_status(state: State, req: HttpRequest) -> Result<HttpResponse, HttpError> {
    device(&state, &req)?;
    Ok(HttpResponse::Ok().json(render::lineup_status()))
}

async fn device_xml(state: State, req: HttpRequest) -> Result<HttpResponse, HttpError> {
    let device = device(&state, &req)?;
    Ok(HttpResponse::Ok()
        .content_type("application/xml; charset=utf-8")
        .body(render::device_xml(&device, &base_url(&state, &req))))
}

#[derive(Deserialize)]
struct LineupPost {
    scan: Option<String>,
}

/// A channel scan: the line-up comes from the receiver, so `start` and `abort` have nothing to
/// do; they are accepted so media servers that ask for a scan carry on.
async fn lineup_post(state: State, req: HttpRequest, query: web::Query<LineupPost>) -> Result<HttpResponse, HttpError> {
    device(&state, &req)?;
    match query.scan.as_deref() {
        None | Some("start" | "abort") => Ok(HttpResponse::Ok().finish()),
        Some(other) => Err(HttpError::InvalidParameter {
            name: "scan",
            detail: format!("expected \"start\" or \"abort\", got {other:?}"),
        }),
    }
}
