//! Template reload, the same for SIGHUP and the admin API: a good reload swaps the profile table
//! whole; a bad one keeps the old templates and says why. Running sessions keep the
//! `Arc<Template>` they started with either way.

use std::path::PathBuf;
use std::sync::{Arc, PoisonError, RwLock};

use serde::Serialize;

use super::{Profiles, TemplateErrors};

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
pub(crate) async fn reload_templates(
    reloader: &Reloader,
    table: &RwLock<Arc<Profiles>>,
    trigger: Trigger,
) -> Result<Reloaded, ReloadError> {
    let _one_at_a_time = reloader.running.lock().await;
    let dir = reloader.dir.clone();
    let loaded = tokio::task::spawn_blocking(move || super::load(Some(&dir)))
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
        &mut *table.write().unwrap_or_else(PoisonError::into_inner),
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
