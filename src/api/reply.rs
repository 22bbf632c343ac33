//! How the API answers: JSON bodies safe to print, and errors in the
//! `{"error": {"code", "message"}}` shape.

use crate::core::error::Error;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

pub struct ApiError(pub Error);

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        ApiError(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = match &self.0 {
            Error::NotFound(_) | Error::NoInstance(_) => (StatusCode::NOT_FOUND, "not_found"),
            Error::Usage(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            Error::Invalid(_) => (StatusCode::CONFLICT, "invalid"),
            Error::Engine(_) => (StatusCode::SERVICE_UNAVAILABLE, "engine_unavailable"),
            Error::EngineTimeout(_) => (StatusCode::SERVICE_UNAVAILABLE, "engine_timeout"),
            Error::Corrupt { .. } => (StatusCode::INTERNAL_SERVER_ERROR, "corrupt_state"),
            Error::Io { .. } | Error::Other(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        };
        error_response(status, code, &self.0.to_string())
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

/// A JSON response, which terminals print too (`curl`): what a box or a
/// repository wrote (a branch, a reason) may hold C1, DEL or bidi
/// characters that serde_json writes raw; they are `\u` escapes here
/// (see [`crate::core::untrusted::json`]).
pub struct Json<T>(pub T);

impl<T: serde::Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        match crate::core::untrusted::json::line(&self.0) {
            Ok(text) => (
                [(
                    axum::http::header::CONTENT_TYPE,
                    axum::http::HeaderValue::from_static("application/json"),
                )],
                text,
            )
                .into_response(),
            Err(e) => ApiError(e).into_response(),
        }
    }
}

pub fn error_response(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        // An error may quote what a box or a repository wrote.
        Json(serde_json::json!({"error": {"code": code, "message": message}})),
    )
        .into_response()
}
