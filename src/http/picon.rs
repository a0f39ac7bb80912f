//! `GET /picon/{ref}.png`: a channel's logo, from the picon cache; only for channels in the
//! channel list, so that nobody can make xg2g ask the receiver (with its credentials) for
//! arbitrary files.

use actix_web::http::header;
use actix_web::{HttpResponse, web};

use super::State;
use super::error::HttpError;
use crate::model::ServiceRef;

pub(crate) fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/picon/{file}", web::get().to(picon));
}

async fn picon(state: State, file: web::Path<String>) -> Result<HttpResponse, HttpError> {
    let service_ref = parse_file(&file)?;
    let catalog = state.catalog.snapshot().catalog.ok_or(HttpError::CatalogNotReady)?;
    catalog.channel(&service_ref).ok_or(HttpError::ChannelNotFound)?;
    let png = state.picons.get(service_ref).await?;
    Ok(HttpResponse::Ok()
        .content_type("image/png")
        .insert_header((
            header::CACHE_CONTROL,
            format!("public, max-age={}", state.picons.ttl().as_secs()),
        ))
        .body(png))
}

/// `{ref}.png`, the reference as M3U links write it (`1:0:19:283D:3FB:1:C00000:0:0:0:.png`) or
/// as picon files are named (`1_0_19_283D_3FB_1_C00000_0_0_0.png`).
fn parse_file(file: &str) -> Result<ServiceRef, HttpError> {
    let invalid = |detail: String| HttpError::InvalidServiceRef { detail };
    let Some(reference) = file.strip_suffix(".png") else {
        return Err(invalid(format!("{file:?} does not end in .png")));
    };
    let reference = if reference.contains(':') {
        reference.to_owned()
    } else {
        format!("{}:", reference.replace('_', ":"))
    };
    reference.parse().map_err(|e| invalid(format!("{reference:?}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_spellings_parse_to_the_same_reference() {
        let colon = parse_file("1:0:19:283D:3FB:1:C00000:0:0:0:.png").unwrap();
        let underscore = parse_file("1_0_19_283D_3FB_1_C00000_0_0_0.png").unwrap();
        assert_eq!(colon, underscore);
        assert_eq!(colon.to_string(), "1:0:19:283D:3FB:1:C00000:0:0:0:");
    }

    #[test]
    fn malformed_references_are_refused() {
        for file in [
            "1:0:19:283D:3FB:1:C00000:0:0:0:",
            "1:0:19:283D:3FB:1:C00000:0:0:0:.jpg",
            "1:0:19:283D.png",
            "..png",
            ".png",
            "1:7:1:0:0:0:0:0:0:0:.png",
            "1_0_19_283D_3FB_1_C00000_0_0_0_.png",
            "1:0:19:XYZ:3FB:1:C00000:0:0:0:.png",
        ] {
            let err = parse_file(file).unwrap_err();
            assert_eq!(err.code(), "invalid-service-ref", "{file}");
        }
    }
}
