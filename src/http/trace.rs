//! Session-start traces at the HTTP edge: a middleware that continues the request's W3C
//! `traceparent` into a `session.start` span around the handler, and the `channel.lookup` step.
//!
//! The handler's own steps (`port.detect`, `admission`, `first_byte`) are spans made with
//! [`crate::telemetry::step!`], children of `session.start`; `pipeline.build` is made by the
//! session task, which the registry hands the span that joined it.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::middleware::Next;
use tracing::Instrument as _;

use super::AppState;
use super::error::HttpError;
use crate::model::ServiceRef;
use crate::pipeline::Output;

/// Wraps `GET /stream/{ref}`: every TS client that asks for a stream is a session start
/// (joining a running session is one too: its trace is short). HEAD is not traced: it never
/// tunes the receiver.
pub(crate) async fn ts_start(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    traced(req, next, Output::Ts).await
}

/// Wraps the HLS master playlist, which players fetch once when they start. Media playlist
/// refreshes (every few seconds per viewer) are not session starts and are not traced.
pub(crate) async fn hls_start(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    traced(req, next, Output::Hls).await
}

async fn traced<B: MessageBody>(
    req: ServiceRequest,
    next: Next<B>,
    output: Output,
) -> Result<ServiceResponse<B>, actix_web::Error> {
    if req.method() == Method::HEAD {
        return next.call(req).await;
    }
    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok());
    let parent = crate::telemetry::remote_parent(header("traceparent"), header("tracestate"));
    let span = crate::telemetry::session_start(parent, output.as_str());
    let result = next.call(req).instrument(span.clone()).await;
    let failed = match &result {
        Ok(response) => response
            .response()
            .error()
            .map(|e| e.as_error::<HttpError>().map_or("internal", HttpError::code)),
        Err(e) => Some(e.as_error::<HttpError>().map_or("internal", HttpError::code)),
    };
    if let Some(code) = failed {
        span.record("error.code", code);
        span.record("otel.status_code", "error");
    }
    result
}

/// `channel.lookup`: the channel must be in the loaded list. Its number (never its service
/// reference) goes on the session span.
pub(crate) fn channel_lookup(state: &AppState, service_ref: &ServiceRef) -> Result<(), HttpError> {
    let number = {
        let _lookup = crate::telemetry::step!("channel.lookup").entered();
        let catalog = state.catalog.snapshot().catalog.ok_or(HttpError::CatalogNotReady)?;
        catalog
            .channel(service_ref)
            .map(|channel| channel.number)
            .ok_or(HttpError::ChannelNotFound)?
    };
    tracing::Span::current().record("channel.number", number);
    Ok(())
}
