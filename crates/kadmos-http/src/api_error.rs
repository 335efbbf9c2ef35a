//! The gateway's error answers: a status code and a JSON body `{"err": "..."}` (OpenDHT's
//! proxy uses the field name `err`, so its clients print our messages too).

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// Seconds a client should wait before retrying after a 503 or a 429.
pub const RETRY_AFTER_SECS: u64 = 5;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: the request cannot mean anything (bad JSON, bad key, bad field).
    #[error("{0}")]
    BadRequest(String),
    /// 401: a write without the bearer token the gateway was started with.
    #[error("this gateway requires `Authorization: Bearer <token>` for writes")]
    Unauthorized,
    /// 404: no such route, or nothing found.
    #[error("{0}")]
    NotFound(String),
    /// 405: the route exists, not with this method; `allow` lists the methods it has.
    #[error("method not allowed; allowed: {allow}")]
    MethodNotAllowed { allow: String },
    /// 409: a BEP 44 put whose seq is not above the stored one.
    #[error("{0}")]
    Conflict(String),
    /// 412: a BEP 44 compare-and-swap (`If-Match`) that does not hold.
    #[error("{0}")]
    PreconditionFailed(String),
    /// 413: the body is larger than the protocol's largest value.
    #[error("{0}")]
    TooLarge(String),
    /// 429: too many requests or streams from this address; retry after this many seconds.
    #[error("{0}")]
    TooManyRequests(String, u64),
    /// 501: a feature this gateway was not started with.
    #[error("{0}")]
    NotImplemented(String),
    /// 502: the DHT refused or could not complete the operation.
    #[error("{0}")]
    BadGateway(String),
    /// 503: the node has no good contacts (or the network is not served here).
    #[error("{0}")]
    Unavailable(String),
    /// 504: the DHT operation did not complete before the gateway's deadline.
    #[error("the DHT operation did not complete within {0} s")]
    Timeout(u64),
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::PreconditionFailed(_) => StatusCode::PRECONDITION_FAILED,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::TooManyRequests(..) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::NotImplemented(_) => StatusCode::NOT_IMPLEMENTED,
            ApiError::BadGateway(_) => StatusCode::BAD_GATEWAY,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({ "err": self.to_string() }).to_string() + "\n";
        let mut response = (self.status(), [(header::CONTENT_TYPE, "application/json")], body).into_response();
        let headers = response.headers_mut();
        match &self {
            ApiError::MethodNotAllowed { allow } => {
                if let Ok(allow) = HeaderValue::from_str(allow) {
                    headers.insert(header::ALLOW, allow);
                }
            }
            ApiError::Unavailable(_) => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
            }
            ApiError::TooManyRequests(_, secs) => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(*secs));
            }
            ApiError::Unauthorized => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            _ => {}
        }
        response
    }
}

/// A result whose error is an answer.
pub type ApiResult<T> = Result<T, ApiError>;
