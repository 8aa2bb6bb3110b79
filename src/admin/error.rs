//! The admin API's error type and its one JSON shape (admin/API.md):
//! `{"error": {"type": "<type>", "message": "<human text>"}}` with the matching HTTP status.

use poem::http::StatusCode;
use poem::{IntoResponse, Response};

/// An admin API failure. Messages are for humans and never hold a secret.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// 400 `bad_request`.
    #[error("{0}")]
    BadRequest(String),
    /// 401 `unauthorized`: no live session, or a wrong password at login.
    #[error("{0}")]
    Unauthorized(String),
    /// 403 `forbidden`: CSRF token missing or wrong, wrong current password.
    #[error("{0}")]
    Forbidden(String),
    /// 404 `not_found`.
    #[error("{0}")]
    NotFound(String),
    /// 413 `payload_too_large`.
    #[error("{0}")]
    PayloadTooLarge(String),
    /// 429 `rate_limited`, with `Retry-After` seconds.
    #[error("too many failed logins; try again in {retry_after_s} s")]
    RateLimited {
        /// Seconds until a login is accepted again.
        retry_after_s: u64,
    },
    /// 500 `internal` (a storage failure).
    #[error("{0}")]
    Internal(String),
}

impl AdminError {
    /// HTTP status and error type name.
    pub fn status(&self) -> (StatusCode, &'static str) {
        match self {
            AdminError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            AdminError::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
            AdminError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            AdminError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            AdminError::PayloadTooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            AdminError::RateLimited { .. } => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
            AdminError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

impl From<crate::store::StoreError> for AdminError {
    fn from(e: crate::store::StoreError) -> Self {
        tracing::error!(error = %e, "admin: storage failure");
        AdminError::Internal(e.to_string())
    }
}

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        let (status, kind) = self.status();
        let body = serde_json::json!({"error": {"type": kind, "message": self.to_string()}});
        let mut resp = Response::builder()
            .status(status)
            .content_type("application/json")
            .body(body.to_string());
        if let AdminError::RateLimited { retry_after_s } = self
            && let Ok(v) = retry_after_s.to_string().parse()
        {
            resp.headers_mut().insert("retry-after", v);
        }
        resp
    }
}

impl poem::error::ResponseError for AdminError {
    fn status(&self) -> StatusCode {
        AdminError::status(self).0
    }
    fn as_response(&self) -> Response {
        // Rebuilt from the parts: AdminError is not Clone (it does not need to be).
        let clone = match self {
            AdminError::BadRequest(m) => AdminError::BadRequest(m.clone()),
            AdminError::Unauthorized(m) => AdminError::Unauthorized(m.clone()),
            AdminError::Forbidden(m) => AdminError::Forbidden(m.clone()),
            AdminError::NotFound(m) => AdminError::NotFound(m.clone()),
            AdminError::PayloadTooLarge(m) => AdminError::PayloadTooLarge(m.clone()),
            AdminError::RateLimited { retry_after_s } => AdminError::RateLimited {
                retry_after_s: *retry_after_s,
            },
            AdminError::Internal(m) => AdminError::Internal(m.clone()),
        };
        clone.into_response()
    }
}

/// Turn any poem error (a body that is not JSON, a bad query string) into the admin error
/// format, keeping its status; a response that already is JSON (an admin error, an error of a
/// nested handler) is kept as it is.
pub fn from_poem(e: poem::Error) -> Response {
    let message = e.to_string();
    let resp = e.into_response();
    let is_json = resp
        .content_type()
        .is_some_and(|c| c.starts_with("application/json"));
    if is_json {
        return resp;
    }
    let err = match resp.status() {
        StatusCode::UNAUTHORIZED => AdminError::Unauthorized(message),
        StatusCode::FORBIDDEN => AdminError::Forbidden(message),
        StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED => AdminError::NotFound(message),
        StatusCode::PAYLOAD_TOO_LARGE => AdminError::PayloadTooLarge(message),
        s if s.is_client_error() => AdminError::BadRequest(message),
        _ => AdminError::Internal(message),
    };
    err.into_response()
}
