//! The one mapping from errors to HTTP: a status and `{"error":{"code","message"}}`.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde_json::json;

/// `Retry-After` of a `no-tuner` refusal.
const NO_TUNER_RETRY: std::time::Duration = std::time::Duration::from_secs(30);

/// Everything a route can answer with instead of success. Codes are stable; clients match them.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HttpError {
    #[error("the channel list has not been loaded from the receiver yet")]
    CatalogNotReady,
    #[error("no route for {method} {path}")]
    RouteNotFound { method: String, path: String },
    #[error("invalid service reference: {detail}")]
    InvalidServiceRef { detail: String },
    #[error("invalid parameter {name}: {detail}")]
    InvalidParameter { name: &'static str, detail: String },
    #[error(transparent)]
    Picon(#[from] crate::picon::PiconError),
    #[error("no channel with this service reference in the channel list")]
    ChannelNotFound,
    #[error("no such segment: it is not in the live window (any more)")]
    SegmentNotFound,
    #[error("no profile `{profile}` for this output")]
    ProfileNotFound { profile: String },
    #[error(transparent)]
    Session(#[from] crate::session::SessionError),
    #[error(transparent)]
    Detect(#[from] crate::upstream::DetectError),
    #[error(
        "the admin API is off until a token is set: set XG2G_API_TOKEN (api_token) and send it in X-API-Token or Authorization: Bearer"
    )]
    AdminTokenNotSet,
    #[error("this route needs the API token in X-API-Token or Authorization: Bearer")]
    Unauthorized,
    #[error("the API token is wrong")]
    Forbidden,
    #[error(transparent)]
    Signature(#[from] crate::auth::AuthError),
    #[error("too many wrong signatures from this address; try again later")]
    SignatureThrottled { retry_after: std::time::Duration },
    #[error("too many wrong admin tokens or signatures from this address; try again later")]
    AdminThrottled { retry_after: std::time::Duration },
    #[error("too many wrong passwords or signatures from this address; try again later")]
    SignInThrottled { retry_after: std::time::Duration },
    #[error("the password is wrong")]
    WrongPassword,
    #[error("this form must be sent from xg2g's own page")]
    CrossSite,
    #[error("auth.streams is \"open\": stream URLs need no signature (set it to \"signed\" with keys to sign)")]
    SigningOff,
    #[error(transparent)]
    Tokens(#[from] crate::auth::store::StoreError),
    #[error(transparent)]
    Refresh(#[from] crate::catalog::RefreshError),
    #[error(transparent)]
    Reload(#[from] crate::pipeline::ReloadError),
    #[error(transparent)]
    RateLimited(#[from] crate::limits::RateLimited),
    #[error("this client already watches {cap} channels, the most one client may tune at once")]
    TooManyChannels { cap: u32 },
    #[error(transparent)]
    Queue(#[from] crate::limits::queue::QueueError),
    #[error(transparent)]
    Preview(#[from] crate::preview::PreviewError),
}

impl From<crate::limits::Refusal> for HttpError {
    fn from(refusal: crate::limits::Refusal) -> Self {
        match refusal {
            crate::limits::Refusal::RateLimited(limited) => HttpError::RateLimited(limited),
            crate::limits::Refusal::TooManyChannels { cap } => HttpError::TooManyChannels { cap },
        }
    }
}

impl From<crate::model::ParseServiceRefError> for HttpError {
    fn from(e: crate::model::ParseServiceRefError) -> Self {
        HttpError::InvalidServiceRef { detail: e.to_string() }
    }
}

impl HttpError {
    /// The message a client sees. Errors that carry the receiver's or GStreamer's own words
    /// (receiver URLs and ports, element paths, source file names) say what happened without
    /// them; the whole error goes to the log instead. Admin routes keep theirs: only a holder
    /// of the token sees those.
    pub(crate) fn public_message(&self) -> String {
        use crate::session::SessionError;
        use crate::upstream::DetectError;
        match self {
            HttpError::Session(SessionError::Upstream(_)) => "the receiver did not deliver the stream".into(),
            HttpError::Session(SessionError::Pipeline { profile, .. }) => {
                format!("the pipeline for profile `{profile}` failed")
            }
            HttpError::Session(SessionError::EncoderFull(_)) => "the encoder has no free session".into(),
            HttpError::Detect(DetectError::NoPortAnswered { .. }) => {
                "no stream port of the receiver can stream the channel".into()
            }
            HttpError::Detect(DetectError::InvalidOverride { .. }) => {
                "a receiver.port_overrides entry is invalid (see the server log)".into()
            }
            HttpError::Picon(crate::picon::PiconError::Unavailable { service_ref, .. }) => {
                format!("picon for {service_ref} unavailable")
            }
            HttpError::Preview(crate::preview::PreviewError::Upstream(_)) => {
                "the receiver did not deliver the stream".into()
            }
            HttpError::Preview(crate::preview::PreviewError::Failed(_)) => "no thumbnail".into(),
            other => other.to_string(),
        }
    }

    pub(crate) fn code(&self) -> &'static str {
        match self {
            HttpError::CatalogNotReady => "catalog-not-ready",
            HttpError::RouteNotFound { .. } => "not-found",
            HttpError::InvalidServiceRef { .. } => "invalid-service-ref",
            HttpError::InvalidParameter { .. } => "invalid-parameter",
            HttpError::Picon(e) => e.code(),
            HttpError::ChannelNotFound => "channel-not-found",
            HttpError::SegmentNotFound => "segment-not-found",
            HttpError::ProfileNotFound { .. } => "profile-not-found",
            HttpError::Session(e) => e.code(),
            HttpError::Detect(e) => e.code(),
            HttpError::AdminTokenNotSet | HttpError::Unauthorized => "unauthorized",
            HttpError::Forbidden => "forbidden",
            HttpError::Signature(e) => e.code(),
            HttpError::SignatureThrottled { .. } => "signature-throttled",
            HttpError::AdminThrottled { .. } => "admin-token-throttled",
            HttpError::SignInThrottled { .. } => "sign-in-throttled",
            HttpError::WrongPassword => "wrong-password",
            HttpError::CrossSite => "cross-site-request",
            HttpError::SigningOff => "signing-off",
            HttpError::Tokens(e) => e.code(),
            HttpError::Refresh(e) => e.code(),
            HttpError::Reload(e) => e.code(),
            HttpError::RateLimited(_) => "rate-limited",
            HttpError::TooManyChannels { .. } => "too-many-channels",
            HttpError::Queue(e) => e.code(),
            HttpError::Preview(e) => e.code(),
        }
    }
}

impl ResponseError for HttpError {
    fn status_code(&self) -> StatusCode {
        match self {
            HttpError::CatalogNotReady => StatusCode::SERVICE_UNAVAILABLE,
            HttpError::RouteNotFound { .. } => StatusCode::NOT_FOUND,
            HttpError::InvalidServiceRef { .. } | HttpError::InvalidParameter { .. } => StatusCode::BAD_REQUEST,
            HttpError::Picon(crate::picon::PiconError::NotFound { .. }) => StatusCode::NOT_FOUND,
            HttpError::Picon(crate::picon::PiconError::Unavailable { .. }) => StatusCode::BAD_GATEWAY,
            HttpError::ChannelNotFound | HttpError::ProfileNotFound { .. } | HttpError::SegmentNotFound => {
                StatusCode::NOT_FOUND
            }
            HttpError::Session(e) => match e {
                crate::session::SessionError::Upstream(_) | crate::session::SessionError::StartTimeout(_) => {
                    StatusCode::BAD_GATEWAY
                }
                crate::session::SessionError::Pipeline { .. } => StatusCode::INTERNAL_SERVER_ERROR,
                crate::session::SessionError::ShuttingDown | crate::session::SessionError::NoTuner(_) => {
                    StatusCode::SERVICE_UNAVAILABLE
                }
                crate::session::SessionError::EncoderFull(_) => StatusCode::SERVICE_UNAVAILABLE,
                crate::session::SessionError::Unplayable { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            },
            HttpError::Detect(crate::upstream::DetectError::InvalidOverride { .. }) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
            HttpError::Detect(_) => StatusCode::BAD_GATEWAY,
            HttpError::AdminTokenNotSet | HttpError::Unauthorized => StatusCode::UNAUTHORIZED,
            HttpError::Forbidden => StatusCode::FORBIDDEN,
            // Missing: 401, the client may still get a signed URL; wrong or expired: 403.
            HttpError::Signature(crate::auth::AuthError::Missing) => StatusCode::UNAUTHORIZED,
            HttpError::Signature(_) => StatusCode::FORBIDDEN,
            HttpError::SignatureThrottled { .. }
            | HttpError::AdminThrottled { .. }
            | HttpError::SignInThrottled { .. } => StatusCode::TOO_MANY_REQUESTS,
            HttpError::WrongPassword | HttpError::CrossSite => StatusCode::FORBIDDEN,
            HttpError::SigningOff => StatusCode::CONFLICT,
            HttpError::Tokens(e) => match e {
                crate::auth::store::StoreError::Name(_) => StatusCode::BAD_REQUEST,
                crate::auth::store::StoreError::NotFound => StatusCode::NOT_FOUND,
                crate::auth::store::StoreError::Stopped => StatusCode::SERVICE_UNAVAILABLE,
                crate::auth::store::StoreError::Read { .. }
                | crate::auth::store::StoreError::Invalid { .. }
                | crate::auth::store::StoreError::Write { .. } => StatusCode::INTERNAL_SERVER_ERROR,
            },
            HttpError::Refresh(e) => match e {
                crate::catalog::RefreshError::InProgress { .. } => StatusCode::CONFLICT,
                crate::catalog::RefreshError::Upstream(_) => StatusCode::BAD_GATEWAY,
                crate::catalog::RefreshError::Stopped => StatusCode::SERVICE_UNAVAILABLE,
            },
            HttpError::Reload(crate::pipeline::ReloadError::Invalid(_)) => StatusCode::UNPROCESSABLE_ENTITY,
            HttpError::Reload(crate::pipeline::ReloadError::Interrupted { .. }) => StatusCode::INTERNAL_SERVER_ERROR,
            HttpError::RateLimited(_) | HttpError::TooManyChannels { .. } => StatusCode::TOO_MANY_REQUESTS,
            HttpError::Queue(_) | HttpError::Preview(crate::preview::PreviewError::Queue(_)) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            HttpError::Preview(e) => match e {
                crate::preview::PreviewError::NoVideo => StatusCode::NOT_FOUND,
                crate::preview::PreviewError::Upstream(_) | crate::preview::PreviewError::Failed(_) => {
                    StatusCode::BAD_GATEWAY
                }
                crate::preview::PreviewError::Queue(_) | crate::preview::PreviewError::Stopped => {
                    StatusCode::SERVICE_UNAVAILABLE
                }
            },
        }
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status_code());
        if matches!(self, HttpError::CatalogNotReady) {
            response.insert_header(("Retry-After", "5"));
        }
        if let HttpError::Detect(e) = self
            && let Some(wait) = e.retry_after()
        {
            // Whole seconds, rounded up, at least 1.
            let seconds = (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1);
            response.insert_header(("Retry-After", seconds.to_string()));
        }
        // Encoder queue full: when a place frees for sure; the encoder itself full: a short poll.
        let queue_retry = match self {
            HttpError::Queue(e) | HttpError::Preview(crate::preview::PreviewError::Queue(e)) => e.retry_after(),
            HttpError::Session(crate::session::SessionError::EncoderFull(_)) => {
                Some(crate::limits::queue::ENCODER_FULL_RETRY)
            }
            // A tuner frees when someone stops watching or a recording ends: minutes, not
            // milliseconds; a player that retries sooner only keeps the box busy.
            HttpError::Session(crate::session::SessionError::NoTuner(_)) => Some(NO_TUNER_RETRY),
            _ => None,
        };
        if let Some(wait) = queue_retry {
            response.insert_header(("Retry-After", wait.as_secs().max(1).to_string()));
        }
        if let HttpError::SignatureThrottled { retry_after }
        | HttpError::AdminThrottled { retry_after }
        | HttpError::SignInThrottled { retry_after } = self
        {
            let seconds = (retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0)).max(1);
            response.insert_header(("Retry-After", seconds.to_string()));
        }
        if let HttpError::RateLimited(e) = self {
            response.insert_header(("Retry-After", e.retry_after_secs().to_string()));
        }
        if matches!(self, HttpError::TooManyChannels { .. }) {
            // A channel left counts for a few seconds more (see limits::queue).
            response.insert_header(("Retry-After", "3"));
        }
        if matches!(self, HttpError::AdminTokenNotSet | HttpError::Unauthorized) {
            response.insert_header(("WWW-Authenticate", "Bearer realm=\"xg2g\""));
        }
        if let HttpError::Refresh(crate::catalog::RefreshError::InProgress { retry_after }) = self {
            response.insert_header(("Retry-After", retry_after.as_secs().max(1).to_string()));
        }
        let message = self.public_message();
        if message != self.to_string() {
            tracing::warn!(code = self.code(), error = %self, "answered a request with an error");
        }
        let mut body = json!({ "error": { "code": self.code(), "message": message } });
        if let HttpError::Reload(crate::pipeline::ReloadError::Invalid(errors)) = self {
            // Every problem, each with its file, line and element, for tools to show.
            body["error"]["problems"] = problems_json(errors);
        }
        response.json(body)
    }
}

/// The problems of a rejected reload as JSON, one object per problem in the order found.
fn problems_json(errors: &crate::pipeline::TemplateErrors) -> serde_json::Value {
    errors
        .0
        .iter()
        .map(|p| serde_json::json!({ "file": p.file, "line": p.line, "element": p.element, "message": p.message }))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::SessionError;

    async fn body(error: HttpError) -> serde_json::Value {
        let bytes = actix_web::body::to_bytes(error.error_response().into_body())
            .await
            .unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[tokio::test]
    async fn clients_never_see_receiver_urls_or_gstreamer_internals() {
        let internal = "http://10.0.0.5:8001/1:0:19:283D:3FB:1:C00000:0:0:0: \
                        ../ext/soup/gstsouphttpsrc.c(1459): /GstPipeline:pipeline3/GstSoupHTTPSrc:src";
        for error in [
            HttpError::Session(SessionError::Upstream(internal.into())),
            HttpError::Session(SessionError::Pipeline {
                profile: "aac".into(),
                message: internal.into(),
            }),
            HttpError::Session(SessionError::EncoderFull(internal.into())),
            HttpError::Preview(crate::preview::PreviewError::Upstream(internal.into())),
            HttpError::Preview(crate::preview::PreviewError::Failed(internal.into())),
        ] {
            let code = error.code();
            let body = body(error).await;
            assert_eq!(body["error"]["code"], code);
            let message = body["error"]["message"].as_str().unwrap();
            assert!(!message.is_empty());
            for secret in ["10.0.0.5", "8001", "gst", "Gst", ".c("] {
                assert!(!message.contains(secret), "{code}: {message}");
            }
        }
        // Errors without internals keep their words.
        let plain = body(HttpError::InvalidParameter {
            name: "profile",
            detail: "given twice".into(),
        })
        .await;
        assert_eq!(plain["error"]["message"], "invalid parameter profile: given twice");
    }

    #[tokio::test]
    async fn a_ladder_larger_than_the_encoder_queue_is_503_without_retry_after() {
        // Asking again cannot help: only a larger `gpu_queue.workers` (or a smaller ladder) does.
        let error = HttpError::Queue(crate::limits::queue::QueueError::TooLarge { slots: 3, workers: 2 });
        let response = error.error_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(response.headers().get("Retry-After").is_none());
        let body = body(error).await;
        assert_eq!(body["error"]["code"], "encoder-queue-too-small");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains("gpu_queue.workers"), "{message}");
    }
}
