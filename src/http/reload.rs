//! Template reload: `POST /api/v1/reload` and the SIGHUP task. A good reload swaps the profile
//! table whole; a bad one keeps the old templates and says why. Running sessions keep the
//! `Arc<Template>` they started with either way.

use std::path::PathBuf;
use std::sync::Arc;

use actix_web::{HttpRequest, HttpResponse, web};
use serde::Serialize;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use super::error::HttpError;
use super::{AppState, State, admin};
use crate::pipeline::{self, TemplateErrors};

pub(crate) fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/api/v1/reload", web::post().to(reload));
}

/// Where templates reload from, and the lock that runs one reload at a time, so that the table
/// swapped in last is the one loaded last.
pub(crate) struct Reloader {
    dir: PathBuf,
    running: tokio::sync::Mutex<()>,
}

impl Reloader {
    pub(crate) fn new(dir: PathBuf) -> Self {
        Self {
            dir,
            running: tokio::sync::Mutex::new(()),
        }
    }
}

/// What a good reload put in place.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Reloaded {
    /// Profile names, sorted.
    pub profiles: Vec<String>,
    /// The H.264 encoder element chosen, if any works here.
    pub encoder: Option<String>,
    /// The folder the templates came from, or "built-in templates".
    pub origin: String,
}

/// Why a reload kept the previous templates. Codes are stable.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("the templates have {} problem(s); the previous templates stay", .0.0.len())]
    Invalid(#[source] TemplateErrors),
    #[error("the template load did not finish ({detail}); the previous templates stay")]
    Interrupted { detail: String },
}

impl ReloadError {
    pub fn code(&self) -> &'static str {
        match self {
            Self::Invalid(_) => "invalid-templates",
            Self::Interrupted { .. } => "reload-failed",
        }
    }
}

/// What started a reload, for logs.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Trigger {
    Api,
    Signal,
}

impl Trigger {
    fn as_str(self) -> &'static str {
        match self {
            Trigger::Api => "api",
            Trigger::Signal => "sighup",
        }
    }
}

/// Loads and validates the templates from the configured folder (blocking work, off the async
/// threads) and, when every template is valid, swaps them in. The write lock is held for the
/// swap alone; the previous table is dropped after it.
pub(crate) async fn reload_templates(state: &AppState, trigger: Trigger) -> Result<Reloaded, ReloadError> {
    let reloader = &state.reload;
    let _one_at_a_time = reloader.running.lock().await;
    let dir = reloader.dir.clone();
    let loaded = tokio::task::spawn_blocking(move || pipeline::load(Some(&dir)))
        .await
        .map_err(|e| ReloadError::Interrupted { detail: e.to_string() });
    let profiles = match loaded {
        Ok(Ok(profiles)) => profiles,
        Ok(Err(errors)) => {
            for p in &errors.0 {
                tracing::warn!(
                    file = %p.file,
                    line = p.line,
                    element = p.element.as_deref(),
                    problem = %p.message,
                    "Template problem."
                );
            }
            tracing::warn!(
                trigger = trigger.as_str(),
                problems = errors.0.len(),
                "Template reload rejected; keeping the previous templates."
            );
            return Err(ReloadError::Invalid(errors));
        }
        Err(error) => {
            tracing::warn!(trigger = trigger.as_str(), %error, "Template reload failed.");
            return Err(error);
        }
    };
    let summary = Reloaded {
        profiles: profiles.names().map(str::to_owned).collect(),
        encoder: profiles.encoder.as_ref().map(|e| e.factory.clone()),
        origin: profiles.origin.clone(),
    };
    let previous = std::mem::replace(
        &mut *state.streaming.profiles.write().expect("profiles lock poisoned"),
        Arc::new(profiles),
    );
    drop(previous);
    tracing::info!(
        trigger = trigger.as_str(),
        origin = %summary.origin,
        profiles = ?summary.profiles,
        encoder = summary.encoder.as_deref().unwrap_or("none"),
        "Reloaded pipeline templates."
    );
    Ok(summary)
}

/// `POST /api/v1/reload`: 200 with what is in place now, or 422 `invalid-templates` with every
/// problem (the previous templates stay).
async fn reload(state: State, req: HttpRequest) -> Result<HttpResponse, HttpError> {
    admin::authorize(&state, &req)?;
    let summary = reload_templates(&state, Trigger::Api).await?;
    Ok(HttpResponse::Ok().json(summary))
}

/// The problems of a rejected reload as JSON, one object per problem in the order found.
pub(crate) fn problems_json(errors: &TemplateErrors) -> serde_json::Value {
    errors
        .0
        .iter()
        .map(|p| serde_json::json!({ "file": p.file, "line": p.line, "element": p.element, "message": p.message }))
        .collect()
}

/// Reloads the templates on every SIGHUP until `shutdown`. Unix only: elsewhere, or when the
/// handler cannot be installed (logged), `None`.
pub(crate) fn spawn_on_sighup(
    state: Arc<AppState>,
    shutdown: CancellationToken,
) -> Option<tokio::task::JoinHandle<()>> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        // Installed here, before returning, so that a SIGHUP right after start is not lost.
        let mut hangups = match signal(SignalKind::hangup()) {
            Ok(hangups) => hangups,
            Err(error) => {
                tracing::warn!(%error, "Cannot catch SIGHUP; templates reload only through the API.");
                return None;
            }
        };
        let task = async move {
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    received = hangups.recv() => {
                        if received.is_none() {
                            return;
                        }
                        tracing::info!(signal = "SIGHUP", "Signal received; reloading the templates.");
                        // Failures are logged inside; the previous templates stay.
                        let _ = reload_templates(&state, Trigger::Signal).await;
                    }
                }
            }
        };
        Some(tokio::spawn(task.instrument(tracing::info_span!("template-reload"))))
    }
    #[cfg(not(unix))]
    {
        let _ = (state, shutdown);
        None
    }
}

#[cfg(test)]
mod tests {
    use actix_web::ResponseError as _;
    use actix_web::body::MessageBody as _;

    use super::*;
    use crate::pipeline::TemplateProblem;

    #[test]
    fn a_rejected_reload_answers_422_with_every_problem() {
        let errors = TemplateErrors(vec![
            TemplateProblem {
                file: "pipelines/aac.toml".into(),
                line: Some(19),
                element: Some("avenc_aacx".into()),
                message: "no element \"avenc_aacx\"".into(),
            },
            TemplateProblem {
                file: "pipelines/x.toml".into(),
                line: None,
                element: None,
                message: "expected a table".into(),
            },
        ]);
        let error = HttpError::from(ReloadError::Invalid(errors));
        let response = error.error_response();
        assert_eq!(response.status(), 422);
        let body = response.into_body().try_into_bytes().expect("an in-memory body");
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"error": {
                "code": "invalid-templates",
                "message": "the templates have 2 problem(s); the previous templates stay",
                "problems": [
                    {"file": "pipelines/aac.toml", "line": 19, "element": "avenc_aacx", "message": "no element \"avenc_aacx\""},
                    {"file": "pipelines/x.toml", "line": null, "element": null, "message": "expected a table"},
                ],
            }})
        );
        let interrupted = HttpError::from(ReloadError::Interrupted {
            detail: "task panicked".into(),
        });
        assert_eq!(interrupted.status_code(), 500);
        assert_eq!(interrupted.code(), "reload-failed");
    }
}
