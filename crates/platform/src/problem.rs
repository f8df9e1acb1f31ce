//! `application/problem+json` (RFC 9457): the one error body every Bazaar API returns.
//!
//! A problem says what went wrong in terms the client can act on. Its `type` is a stable
//! identifier that clients may match on; `detail` is for humans; `errors` lists the
//! offending fields of a validation failure. Internal causes are logged, never sent.

use axum::Json;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use serde::Serialize;

/// The media type of a problem body.
pub const CONTENT_TYPE: &str = "application/problem+json";

/// An error response as the client sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[schema(example = json!({"type": "/problems/validation", "title": "Bad Request", "status": 400, "detail": "limit: must be a whole number from 1 to 100", "errors": [{"field": "limit", "message": "must be a whole number from 1 to 100"}]}))]
pub struct Problem {
    /// A stable URI reference identifying the kind of problem, e.g. `/problems/validation`.
    #[serde(rename = "type")]
    pub kind: String,
    /// A short summary of the kind of problem; the same for every occurrence.
    pub title: String,
    /// The HTTP status code, repeated for clients that only see the body.
    pub status: u16,
    /// What went wrong this time, in a sentence.
    pub detail: String,
    /// For validation problems: each offending field and what is wrong with it.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
    /// Headers sent with the problem, e.g. `Retry-After` or `WWW-Authenticate`; boxed
    /// so that `Result<_, Problem>` stays small.
    #[serde(skip)]
    #[schema(ignore)]
    pub headers: Option<Box<http::HeaderMap>>,
}

/// One invalid field of a request: what every service's parsing reports, and what a
/// problem lists in `errors`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct FieldError {
    /// The field's name: a query parameter, a path segment, or a JSON pointer into the body.
    pub field: String,
    /// What is wrong with it and what is expected instead.
    pub message: String,
}

impl FieldError {
    /// A field error.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl Problem {
    /// A problem of the given status and stable kind (the last segment of its `type`).
    pub fn new(status: StatusCode, kind: &str, detail: impl Into<String>) -> Self {
        Self {
            kind: format!("/problems/{kind}"),
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            status: status.as_u16(),
            detail: detail.into(),
            errors: Vec::new(),
            headers: None,
        }
    }

    /// 400: the request is malformed in a way no field explains (bad JSON, bad encoding).
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad-request", detail)
    }

    /// 400: one or more fields are invalid; the detail names them all.
    pub fn validation(errors: Vec<FieldError>) -> Self {
        Self::with_fields(StatusCode::BAD_REQUEST, "validation", errors)
    }

    /// A problem of `status` and `kind` that names each invalid field; its detail is the
    /// one field's message, or the list of fields.
    pub fn with_fields(status: StatusCode, kind: &str, errors: Vec<FieldError>) -> Self {
        let fields: Vec<&str> = errors.iter().map(|error| error.field.as_str()).collect();
        let detail = match errors.as_slice() {
            [only] => format!("{}: {}", only.field, only.message),
            _ => format!("invalid fields: {}", fields.join(", ")),
        };
        Self {
            errors,
            ..Self::new(status, kind, detail)
        }
    }

    /// 400 for a single invalid field.
    pub fn invalid_field(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::validation(vec![FieldError::new(field, message)])
    }

    /// 422: the request is well formed but cannot be carried out as it stands (an empty
    /// cart, an unknown payment method); the detail says what to change.
    pub fn unprocessable(kind: &str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, kind, detail)
    }

    /// 404: the resource does not exist, or the caller may not know that it does.
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not-found", detail)
    }

    /// 500: something failed inside. The cause must be logged by the caller, not sent.
    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the server failed to handle the request; it has been logged",
        )
    }

    /// 503 with `Retry-After`: the service cannot take the request now.
    pub fn unavailable(detail: impl Into<String>, retry_after_seconds: u64) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", detail)
            .with_header(header::RETRY_AFTER, HeaderValue::from(retry_after_seconds))
    }

    /// 429 with `Retry-After`: the caller sent too many requests.
    pub fn too_many_requests(detail: impl Into<String>, retry_after_seconds: u64) -> Self {
        Self::new(StatusCode::TOO_MANY_REQUESTS, "too-many-requests", detail).with_header(
            header::RETRY_AFTER,
            HeaderValue::from(retry_after_seconds.max(1)),
        )
    }

    /// 409: the request conflicts with the current state of the resource.
    pub fn conflict(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", detail)
    }

    /// 403: the caller is known but may not do this.
    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", detail)
    }

    /// Adds a header to the response.
    pub fn with_header(mut self, name: header::HeaderName, value: HeaderValue) -> Self {
        self.headers.get_or_insert_default().insert(name, value);
        self
    }

    /// The status as a `StatusCode`.
    pub fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

impl IntoResponse for Problem {
    fn into_response(mut self) -> Response {
        let status = self.status_code();
        let extra = self.headers.take();
        let mut response = (status, Json(self)).into_response();
        let headers = response.headers_mut();
        if let Some(mut extra) = extra {
            headers.extend(extra.drain());
        }
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
        response
    }
}

/// Unexpected failures become a 500 whose body says nothing of the cause; the cause, with
/// its whole context chain, is logged here, once, inside the request's span.
impl From<anyhow::Error> for Problem {
    /// 503 with `Retry-After` when the cause is a dependency that is not answering (a
    /// database, Redis): the request may succeed in a moment, and nothing was done.
    /// Anything else is a 500. Either way the cause is logged, not sent.
    fn from(error: anyhow::Error) -> Self {
        if is_unavailable(&error) {
            tracing::warn!(error = format!("{error:#}"), "a dependency is unavailable");
            return Self::unavailable(
                "the service cannot reach its storage just now; try again shortly",
                1,
            );
        }
        tracing::error!(error = format!("{error:#}"), "request failed");
        Self::internal()
    }
}

/// Whether `error` was caused by a dependency that is down or unreachable, rather than
/// by a bug or bad data: a pool that timed out or closed, a connection that failed.
pub fn is_unavailable(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        if let Some(error) = cause.downcast_ref::<sqlx::Error>() {
            return matches!(
                error,
                sqlx::Error::PoolTimedOut
                    | sqlx::Error::PoolClosed
                    | sqlx::Error::Io(_)
                    | sqlx::Error::Tls(_)
                    | sqlx::Error::WorkerCrashed
            );
        }
        if let Some(error) = cause.downcast_ref::<redis::RedisError>() {
            return error.is_io_error()
                || error.is_connection_dropped()
                || error.is_connection_refusal()
                || error.is_timeout();
        }
        cause.downcast_ref::<std::io::Error>().is_some()
    })
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.status, self.kind, self.detail)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_detail_names_the_field() {
        let problem = Problem::invalid_field("limit", "must be between 1 and 100");
        assert_eq!(problem.status, 400);
        assert_eq!(problem.kind, "/problems/validation");
        assert_eq!(problem.detail, "limit: must be between 1 and 100");
    }

    #[test]
    fn the_response_is_problem_json_with_retry_after() {
        let response = Problem::unavailable("shedding load", 2).into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::CONTENT_TYPE], CONTENT_TYPE);
        assert_eq!(response.headers()[header::RETRY_AFTER], "2");
    }
}
