//! The one HTTP error type of the service. Every refusal becomes the contract's JSON body
//! `{"error", "error_description"}` with its status; server faults are logged here and
//! answered with a generic body that carries no internals.

use axum::extract::rejection::{FormRejection, JsonRejection};
use axum::http::header::{CACHE_CONTROL, PRAGMA, RETRY_AFTER};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::store::StoreError;

/// An error answered to an HTTP client.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 401: the access token is missing, invalid or expired (RFC 6750 §3.1).
    #[error("invalid token")]
    InvalidToken,
    /// 400 `invalid_grant` (RFC 6749 §5.2).
    #[error("invalid grant: {0}")]
    InvalidGrant(&'static str),
    /// 400 `invalid_request`.
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// 400 `unsupported_grant_type`.
    #[error("unsupported grant type")]
    UnsupportedGrantType,
    /// 409: the username is taken.
    #[error("username taken")]
    UsernameTaken,
    /// 403: a cookie-authenticated unsafe request without the anti-CSRF token or from
    /// another origin.
    #[error("csrf refused")]
    CsrfRefused,
    /// 404.
    #[error("not found")]
    NotFound,
    /// 405.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// 408: the request did not arrive within the request timeout.
    #[error("request timeout")]
    RequestTimeout,
    /// 413.
    #[error("payload too large")]
    PayloadTooLarge,
    /// 415.
    #[error("unsupported media type: {0}")]
    UnsupportedMediaType(&'static str),
    /// 422: well-formed input that breaks a rule (a short password, an empty title).
    #[error("validation failed: {0}")]
    Validation(String),
    /// 429 with `Retry-After`: too many attempts.
    #[error("throttled")]
    Throttled(std::time::Duration),
    /// 503 with `Retry-After`: a dependency (the database) is busy or away.
    #[error("service unavailable")]
    Unavailable,
    /// 500: a fault of the server. Logged; never shown.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl ApiError {
    /// The error for a bare status produced outside Tessera's handlers.
    pub fn from_status(status: StatusCode) -> Self {
        match status {
            StatusCode::UNAUTHORIZED => Self::InvalidToken,
            StatusCode::FORBIDDEN => Self::CsrfRefused,
            StatusCode::NOT_FOUND => Self::NotFound,
            StatusCode::METHOD_NOT_ALLOWED => Self::MethodNotAllowed,
            StatusCode::REQUEST_TIMEOUT => Self::RequestTimeout,
            StatusCode::PAYLOAD_TOO_LARGE => Self::PayloadTooLarge,
            StatusCode::UNSUPPORTED_MEDIA_TYPE => Self::UnsupportedMediaType("another type"),
            StatusCode::UNPROCESSABLE_ENTITY => {
                Self::Validation("the request could not be processed".to_owned())
            }
            StatusCode::SERVICE_UNAVAILABLE => Self::Unavailable,
            StatusCode::TOO_MANY_REQUESTS => Self::Throttled(std::time::Duration::from_secs(1)),
            status if status.is_client_error() => {
                Self::InvalidRequest("the request is malformed".to_owned())
            }
            _ => Self::Internal(anyhow::anyhow!("unexpected {status} answer")),
        }
    }

    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            Self::InvalidToken => (StatusCode::UNAUTHORIZED, "invalid_token"),
            Self::InvalidGrant(_) => (StatusCode::BAD_REQUEST, "invalid_grant"),
            Self::InvalidRequest(_) => (StatusCode::BAD_REQUEST, "invalid_request"),
            Self::UnsupportedGrantType => (StatusCode::BAD_REQUEST, "unsupported_grant_type"),
            Self::UsernameTaken => (StatusCode::CONFLICT, "username_taken"),
            Self::CsrfRefused => (StatusCode::FORBIDDEN, "csrf_refused"),
            Self::NotFound => (StatusCode::NOT_FOUND, "not_found"),
            Self::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            Self::RequestTimeout => (StatusCode::REQUEST_TIMEOUT, "request_timeout"),
            Self::PayloadTooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            Self::UnsupportedMediaType(_) => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
            }
            Self::Validation(_) => (StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"),
            Self::Throttled(_) => (StatusCode::TOO_MANY_REQUESTS, "slow_down"),
            Self::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable"),
            Self::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "server_error"),
        }
    }

    fn description(&self) -> String {
        match self {
            Self::InvalidToken => tessera_guard::invalid_token_response_description().to_owned(),
            Self::InvalidGrant(text) => (*text).to_owned(),
            Self::InvalidRequest(text) | Self::Validation(text) => text.clone(),
            Self::UnsupportedGrantType => "grant_type must be password or refresh_token".to_owned(),
            Self::UsernameTaken => "that username is already taken".to_owned(),
            Self::CsrfRefused => "send the X-CSRF-Token header from this site's page".to_owned(),
            Self::NotFound => "no such resource".to_owned(),
            Self::MethodNotAllowed => "this method is not allowed on this path".to_owned(),
            Self::RequestTimeout => "the request took too long to arrive".to_owned(),
            Self::PayloadTooLarge => "the request body is too large".to_owned(),
            Self::UnsupportedMediaType(expected) => format!("send {expected}"),
            Self::Throttled(_) => "too many attempts; wait before trying again".to_owned(),
            Self::Unavailable => "the service is busy; retry shortly".to_owned(),
            Self::Internal(_) => "internal error".to_owned(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let Self::InvalidToken = self {
            return tessera_guard::invalid_token_response();
        }
        if let Self::Internal(error) = &self {
            tracing::error!(error = format!("{error:#}"), "request failed");
        }
        let (status, code) = self.status_and_code();
        let body = json!({"error": code, "error_description": self.description()});
        let mut response = (status, axum::Json(body)).into_response();
        let headers = response.headers_mut();
        match self {
            Self::Unavailable => {
                headers.insert(RETRY_AFTER, HeaderValue::from_static("1"));
            }
            Self::Throttled(wait) => {
                let seconds = wait.as_secs().max(1).to_string();
                if let Ok(value) = HeaderValue::from_str(&seconds) {
                    headers.insert(RETRY_AFTER, value);
                }
            }
            _ => {}
        }
        // RFC 6749 §5.2 errors come from the token endpoint, whose answers must not
        // be cached (§5.1); the same holds for every other answer about credentials.
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        headers.insert(PRAGMA, HeaderValue::from_static("no-cache"));
        response
    }
}

/// Hashing failures: a full queue is a busy service (503), anything else a fault.
pub(crate) fn from_password_error(error: anyhow::Error) -> ApiError {
    if error
        .downcast_ref::<crate::passwords::PasswordError>()
        .is_some_and(crate::passwords::PasswordError::is_busy)
    {
        ApiError::Unavailable
    } else {
        ApiError::Internal(error)
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Busy => Self::Unavailable,
            StoreError::DiskFull => {
                // Every refused write says so, at error level: an operator must act.
                tracing::error!(
                    "the database cannot write: its disk is full; free space where it \
                     lives (the data dir, or PostgreSQL's data folder)"
                );
                Self::Unavailable
            }
            StoreError::Conflict => Self::Internal(anyhow::anyhow!("unexpected conflict")),
            StoreError::Database(source) => Self::Internal(source.into()),
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        match rejection {
            JsonRejection::MissingJsonContentType(_) => {
                Self::UnsupportedMediaType("Content-Type: application/json")
            }
            JsonRejection::JsonDataError(error) => Self::Validation(error.body_text()),
            JsonRejection::JsonSyntaxError(_) => {
                Self::InvalidRequest("the body is not valid JSON".to_owned())
            }
            JsonRejection::BytesRejection(error)
                if error.status() == StatusCode::PAYLOAD_TOO_LARGE =>
            {
                Self::PayloadTooLarge
            }
            _ => Self::InvalidRequest("the body could not be read".to_owned()),
        }
    }
}

impl From<FormRejection> for ApiError {
    fn from(rejection: FormRejection) -> Self {
        match rejection {
            FormRejection::InvalidFormContentType(_) => {
                Self::UnsupportedMediaType("Content-Type: application/x-www-form-urlencoded")
            }
            FormRejection::BytesRejection(error)
                if error.status() == StatusCode::PAYLOAD_TOO_LARGE =>
            {
                Self::PayloadTooLarge
            }
            _ => Self::InvalidRequest("the form could not be read".to_owned()),
        }
    }
}
