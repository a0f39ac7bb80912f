//! `POST /api/v1/reload`: the admin API's door to the template reload (`pipeline::reload`).

use actix_web::{HttpRequest, HttpResponse, web};

use super::error::HttpError;
use super::{State, admin};
use crate::pipeline::{Trigger, reload_templates};

pub(crate) fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/api/v1/reload", web::post().to(reload));
}

/// `POST /api/v1/reload`: 200 with what is in place now, or 422 `invalid-templates` with every
/// problem (the previous templates stay).
async fn reload(state: State, req: HttpRequest) -> Result<HttpResponse, HttpError> {
    admin::authorize(&state, &req)?;
    let summary = reload_templates(&state.reload, &state.streaming.profiles, Trigger::Api).await?;
    Ok(HttpResponse::Ok().json(summary))
}

#[cfg(test)]
mod tests {
    use actix_web::ResponseError as _;
    use actix_web::body::MessageBody as _;

    use super::*;
    use crate::pipeline::{ReloadError, TemplateErrors, TemplateProblem};

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
