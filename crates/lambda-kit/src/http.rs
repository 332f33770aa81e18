//! HTTP answers shared by the `order`, `fulfilled` and `delivered` functions.
//!
//! Every error leaves as `application/problem+json` with a stable `type`,
//! a `title`, the `status` and a `detail` a person can act on. Internal
//! errors are logged here and never shown to the client.

use axum::extract::{FromRequest, Request};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use domain::Status;
use domain::ports::StoreError;
use domain::validation::{FieldError, ValidationErrors, limits};
use serde::Serialize;
use serde_json::Value;

/// Everything an HTTP function can answer besides success.
#[derive(Debug)]
pub enum ApiError {
    /// The body is not JSON at all.
    MalformedJson(String),
    /// The body is JSON but some fields are wrong.
    InvalidFields(ValidationErrors),
    /// The body is larger than [`limits::BODY_BYTES`].
    TooLarge,
    /// No bearer token, or not a bearer token.
    Unauthenticated,
    /// A token that does not grant this.
    Forbidden,
    NotFound,
    /// No such route.
    NoRoute,
    /// The route exists, not with this method.
    MethodNotAllowed,
    /// The order is not at the step this request needs.
    OutOfOrder {
        current: Status,
        wanted: Status,
    },
    /// The `Idempotency-Key` was already used for a different request.
    IdempotencyKeyReused,
    /// Storage or a queue is busy; retrying is safe.
    Unavailable(String),
    /// A bug or corrupt data. Logged, not shown.
    Internal(String),
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Problem<'a> {
    #[serde(rename = "type")]
    kind: String,
    title: &'a str,
    status: u16,
    detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    errors: Option<&'a [FieldError]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    current_status: Option<Status>,
}

impl ApiError {
    pub fn status_code(&self) -> StatusCode {
        match self {
            ApiError::MalformedJson(_) => StatusCode::BAD_REQUEST,
            ApiError::InvalidFields(_) | ApiError::IdempotencyKeyReused => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            ApiError::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Unauthenticated => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden => StatusCode::FORBIDDEN,
            ApiError::NotFound | ApiError::NoRoute => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::OutOfOrder { .. } => StatusCode::CONFLICT,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// `(type slug, title, detail)`.
    fn describe(&self) -> (&'static str, &'static str, String) {
        match self {
            ApiError::MalformedJson(why) => (
                "malformed-json",
                "Malformed JSON",
                format!("the request body is not valid JSON: {why}"),
            ),
            ApiError::InvalidFields(errors) => (
                "invalid-fields",
                "Invalid fields",
                errors
                    .0
                    .iter()
                    .map(|e| {
                        if e.field.is_empty() {
                            e.message.clone()
                        } else {
                            format!("{} {}", e.field, e.message)
                        }
                    })
                    .collect::<Vec<_>>()
                    .join("; "),
            ),
            ApiError::TooLarge => (
                "too-large",
                "Request body too large",
                format!("request bodies are limited to {} bytes", limits::BODY_BYTES),
            ),
            ApiError::Unauthenticated => (
                "unauthenticated",
                "Token required",
                "send `Authorization: Bearer <token>`".into(),
            ),
            ApiError::Forbidden => (
                "forbidden",
                "Not allowed",
                "this token does not allow this request".into(),
            ),
            ApiError::NotFound => ("not-found", "Order not found", "no such order".into()),
            ApiError::NoRoute => (
                "no-route",
                "No such resource",
                "nothing is served at this path; see the API description at /openapi.yaml".into(),
            ),
            ApiError::MethodNotAllowed => (
                "method-not-allowed",
                "Method not allowed",
                "this path does not take this method; see /openapi.yaml".into(),
            ),
            ApiError::OutOfOrder { current, wanted } => (
                "out-of-order",
                "Order is not ready for this step",
                format!(
                    "the order is {current}; it must be {} before it can become {wanted}",
                    wanted.predecessor().map(|s| s.as_str()).unwrap_or("new")
                ),
            ),
            ApiError::IdempotencyKeyReused => (
                "idempotency-key-reused",
                "Idempotency-Key reused",
                "this Idempotency-Key was already used for a different request; use a new key"
                    .into(),
            ),
            ApiError::Unavailable(_) => (
                "unavailable",
                "Temporarily unavailable",
                "the bakery is busy; retry the same request (with the same Idempotency-Key)".into(),
            ),
            ApiError::Internal(_) => (
                "internal",
                "Internal error",
                "something went wrong on our side; it has been logged".into(),
            ),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Unavailable(why) => ApiError::Unavailable(why),
            StoreError::Failed(why) => ApiError::Internal(why),
        }
    }
}

impl From<ValidationErrors> for ApiError {
    fn from(errors: ValidationErrors) -> Self {
        ApiError::InvalidFields(errors)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match &self {
            ApiError::Internal(why) => tracing::error!(error = %why, "request failed"),
            ApiError::Unavailable(why) => tracing::warn!(error = %why, "request refused: busy"),
            _ => {}
        }
        let status = self.status_code();
        let (slug, title, detail) = self.describe();
        let problem = Problem {
            kind: format!("https://bakery.example/problems/{slug}"),
            title,
            status: status.as_u16(),
            detail,
            errors: match &self {
                ApiError::InvalidFields(errors) => Some(&errors.0),
                _ => None,
            },
            current_status: match &self {
                ApiError::OutOfOrder { current, .. } => Some(*current),
                _ => None,
            },
        };
        let body = serde_json::to_vec(&problem).unwrap_or_default();
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        match self {
            ApiError::Unauthenticated => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            ApiError::Unavailable(_) => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            _ => {}
        }
        response
    }
}

/// A request body parsed as JSON, size-limited, not yet validated.
///
/// Use with `axum::extract::DefaultBodyLimit::max(limits::BODY_BYTES)` on
/// the router so oversized bodies are cut off while being read.
pub struct JsonBody(pub Value);

impl<S: Send + Sync> FromRequest<S> for JsonBody {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        // A body announced too large is refused before it is read: the
        // client is not kept waiting (or left to send it) for nothing.
        let announced = request
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.trim().parse::<u64>().ok());
        if announced.is_some_and(|length| length > limits::BODY_BYTES as u64) {
            return Err(ApiError::TooLarge);
        }
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(|rejection| {
                if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::TooLarge
                } else {
                    ApiError::MalformedJson(rejection.body_text())
                }
            })?;
        if bytes.len() > limits::BODY_BYTES {
            return Err(ApiError::TooLarge);
        }
        serde_json::from_slice(&bytes)
            .map(JsonBody)
            .map_err(|e| ApiError::MalformedJson(e.to_string()))
    }
}

/// The token of an `Authorization: Bearer <token>` header.
pub fn bearer_token(headers: &HeaderMap) -> Result<&str, ApiError> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| {
            let (scheme, token) = value.split_once(' ')?;
            scheme
                .eq_ignore_ascii_case("bearer")
                .then_some(token.trim())
        })
        .filter(|token| !token.is_empty())
        .ok_or(ApiError::Unauthenticated)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Router;
    use axum::body::Body;
    use axum::extract::DefaultBodyLimit;
    use axum::routing::post;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    async fn echo(JsonBody(value): JsonBody) -> axum::Json<Value> {
        axum::Json(value)
    }

    fn app() -> Router {
        Router::new()
            .route("/", post(echo))
            .layer(DefaultBodyLimit::max(limits::BODY_BYTES))
    }

    async fn send(body: impl Into<Body>) -> (StatusCode, Option<String>, Value) {
        let response = app()
            .oneshot(Request::post("/").body(body.into()).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap().to_string());
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (
            status,
            content_type,
            serde_json::from_slice(&bytes).unwrap(),
        )
    }

    #[tokio::test]
    async fn json_passes_through() {
        let (status, _, body) = send(r#"{"a":1}"#).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["a"], 1);
    }

    #[tokio::test]
    async fn malformed_json_is_a_400_problem() {
        let (status, content_type, body) = send("{not json").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(content_type.as_deref(), Some("application/problem+json"));
        assert_eq!(body["status"], 400);
        assert!(body["type"].as_str().unwrap().ends_with("malformed-json"));
        assert!(body["detail"].as_str().unwrap().contains("not valid JSON"));
    }

    #[tokio::test]
    async fn oversized_body_is_a_413_problem() {
        let (status, content_type, body) = send("x".repeat(limits::BODY_BYTES + 1)).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(content_type.as_deref(), Some("application/problem+json"));
        assert_eq!(body["status"], 413);
    }

    #[tokio::test]
    async fn a_body_announced_too_large_is_refused_before_it_is_read() {
        // The body never comes: only the announcement is looked at.
        let body = Body::from_stream(futures::stream::pending::<Result<Bytes, std::io::Error>>());
        let request = Request::post("/")
            .header(header::CONTENT_LENGTH, (limits::BODY_BYTES + 1).to_string())
            .body(body)
            .unwrap();
        let response =
            tokio::time::timeout(std::time::Duration::from_secs(5), app().oneshot(request))
                .await
                .expect("answered without waiting for the body")
                .unwrap();
        assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    }

    #[test]
    fn bearer_tokens_are_read_strictly() {
        let mut headers = HeaderMap::new();
        assert!(bearer_token(&headers).is_err());
        headers.insert(header::AUTHORIZATION, "Basic abc".parse().unwrap());
        assert!(bearer_token(&headers).is_err());
        headers.insert(header::AUTHORIZATION, "Bearer ".parse().unwrap());
        assert!(bearer_token(&headers).is_err());
        headers.insert(header::AUTHORIZATION, "bearer tok-1".parse().unwrap());
        assert_eq!(bearer_token(&headers).unwrap(), "tok-1");
    }

    #[tokio::test]
    async fn internal_errors_are_not_shown() {
        let response = ApiError::Internal("disk I/O error at page 7".into()).into_response();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let text = String::from_utf8(bytes.to_vec()).unwrap();
        assert!(!text.contains("page 7"), "{text}");
    }

    #[tokio::test]
    async fn conflicts_carry_the_current_status() {
        let response = ApiError::OutOfOrder {
            current: Status::Placed,
            wanted: Status::Delivered,
        }
        .into_response();
        assert_eq!(response.status(), StatusCode::CONFLICT);
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let body: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(body["currentStatus"], "placed");
        assert!(
            body["detail"]
                .as_str()
                .unwrap()
                .contains("out_for_delivery")
        );
    }
}
