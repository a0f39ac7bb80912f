//! The one mapping from errors to HTTP: a status and `{"error":{"code","message"}}`.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde_json::json;

/// Everything a route can answer with instead of success. Codes are stable; clients match them.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HttpError {
    #[error("the channel list has not been loaded from the receiver yet")]
    CatalogNotReady,
    #[error("no route for {method} {path}")]
    RouteNotFound { method: String, path: String },
}

impl HttpError {
    pub(crate) fn code(&self) -> &'static str {
        match self {
            HttpError::CatalogNotReady => "catalog-not-ready",
            HttpError::RouteNotFound { .. } => "not-found",
        }
    }
}

impl ResponseError for HttpError {
    fn status_code(&self) -> StatusCode {
        match self {
            HttpError::CatalogNotReady => StatusCode::SERVICE_UNAVAILABLE,
            HttpError::RouteNotFound { .. } => StatusCode::NOT_FOUND,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status_code());
        if matches!(self, HttpError::CatalogNotReady) {
            response.insert_header(("Retry-After", "5"));
        }
        response.json(json!({ "error": { "code": self.code(), "message": self.to_string() } }))
    }
}
