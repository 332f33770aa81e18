//! HTTP answers shared by the `order`, `fulfilled` and `delivered` functions.
//!
//! Every error leaves as `application/problem+json` with a stable `type`,
//! a `title`, the `status` and a `detail` a person can act on. Internal
//! errors are logged here and never shown to the client.
//!
//! The extractors read a request in the order that tells a stranger the
//! least: the headers ([`Bearer`], [`IdempotencyKeyHeader`]) before the
//! body ([`JsonBody`]), so a request without a token is `401` whatever its
//! body, and a path segment that cannot be an id ([`PathSegment`]) is the
//! same `404` as an unknown one.

use axum::extract::rejection::PathRejection;
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use domain::ports::StoreError;
use domain::validation::{self, FieldError, ValidationErrors, limits};
use domain::{Status, correlation};
use lambda_http::request::RequestContext;
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
    /// A token that does not grant this (the cake maker's routes). A
    /// customer's token for another order is [`ApiError::NotFound`], so a
    /// token tells nothing about which other orders exist.
    Forbidden,
    NotFound,
    /// No such route.
    NoRoute,
    /// The request target (path and query) is longer than the API reads.
    UriTooLong,
    /// More header fields, or larger ones, than the API reads.
    HeadersTooLarge,
    /// The route exists, not with this method.
    MethodNotAllowed,
    /// The order is not at the step this request needs.
    OutOfOrder {
        current: Status,
        wanted: Status,
    },
    /// The `Idempotency-Key` was already used for a different request.
    IdempotencyKeyReused,
    /// A header that must come once came several times (`Authorization`,
    /// `Idempotency-Key`): which one counts would be a guess.
    RepeatedHeader(&'static str),
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
            ApiError::MalformedJson(_) | ApiError::RepeatedHeader(_) => StatusCode::BAD_REQUEST,
            ApiError::InvalidFields(_) | ApiError::IdempotencyKeyReused => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            ApiError::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Unauthenticated => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden => StatusCode::FORBIDDEN,
            ApiError::NotFound | ApiError::NoRoute => StatusCode::NOT_FOUND,
            ApiError::UriTooLong => StatusCode::URI_TOO_LONG,
            ApiError::HeadersTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::OutOfOrder { .. } => StatusCode::CONFLICT,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// What a person can do about it, as the problem's `detail` says: for
    /// pages that show the problem in their own words around it.
    pub fn detail(&self) -> String {
        self.describe().2
    }

    /// Logs what the answer does not show: internal errors, and requests
    /// refused because the bakery is busy. Answering with
    /// [`IntoResponse::into_response`] does it; a page that shows the
    /// error in its own answer calls it.
    pub fn log(&self) {
        match self {
            ApiError::Internal(why) => tracing::error!(error = %why, "request failed"),
            ApiError::Unavailable(why) => tracing::warn!(error = %why, "request refused: busy"),
            _ => {}
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
            ApiError::NotFound => (
                "not-found",
                "Order not found",
                "no such order, or not one this token can see".into(),
            ),
            ApiError::NoRoute => (
                "no-route",
                "No such resource",
                "nothing is served at this path; see the API description at /openapi.yaml".into(),
            ),
            ApiError::UriTooLong => (
                "uri-too-long",
                "Request target too long",
                "the path and query of a request are limited to 8 KiB".into(),
            ),
            ApiError::HeadersTooLarge => (
                "headers-too-large",
                "Request headers too large",
                "a request may send at most 64 header fields of 16 KiB in all".into(),
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
            ApiError::RepeatedHeader(name) => (
                "repeated-header",
                "Header repeated",
                format!("send one `{name}` header, not several"),
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
        self.log();
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
            // RFC 6750 section 3.1: a repeated parameter is an invalid request.
            ApiError::RepeatedHeader("Authorization") => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static(r#"Bearer error="invalid_request""#),
                );
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

/// The token of the one `Authorization: Bearer <token>` header.
pub fn bearer_token(headers: &HeaderMap) -> Result<&str, ApiError> {
    let value = single_header(headers, header::AUTHORIZATION, "Authorization")?;
    value
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

/// A header that may come at most once.
fn single_header<'a>(
    headers: &'a HeaderMap,
    name: header::HeaderName,
    shown: &'static str,
) -> Result<Option<&'a HeaderValue>, ApiError> {
    let mut values = headers.get_all(name).iter();
    let first = values.next();
    if values.next().is_some() {
        return Err(ApiError::RepeatedHeader(shown));
    }
    Ok(first)
}

/// The bearer token, read from the headers before the body is looked at.
pub struct Bearer(pub String);

impl<S: Send + Sync> FromRequestParts<S> for Bearer {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        bearer_token(&parts.headers).map(|token| Bearer(token.to_owned()))
    }
}

/// The optional `Idempotency-Key` header, checked (one, 1-255 visible
/// ASCII characters) before the body is read.
pub struct IdempotencyKeyHeader(pub Option<String>);

/// The request's correlation id ([`domain::correlation`]): the client's
/// `X-Correlation-Id` if it is a plain one, else API Gateway's request id
/// (on AWS), else a new one. Never a rejection: an odd header is ignored.
pub struct CorrelationId(pub String);

impl<S: Send + Sync> FromRequestParts<S> for CorrelationId {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let from_client = parts
            .headers
            .get(correlation::HEADER)
            .and_then(|value| value.to_str().ok())
            .and_then(correlation::accept);
        let from_api_gateway = || {
            let id = match parts.extensions.get::<RequestContext>()? {
                RequestContext::ApiGatewayV2(context) => context.request_id.as_deref(),
                RequestContext::ApiGatewayV1(context) => context.request_id.as_deref(),
                _ => None,
            }?;
            correlation::accept(id).map(str::to_owned)
        };
        Ok(CorrelationId(
            from_client
                .map(str::to_owned)
                .or_else(from_api_gateway)
                .unwrap_or_else(correlation::new_id),
        ))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for IdempotencyKeyHeader {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let name = header::HeaderName::from_static("idempotency-key");
        let Some(value) = single_header(&parts.headers, name, "Idempotency-Key")? else {
            return Ok(IdempotencyKeyHeader(None));
        };
        // Bytes that are not visible ASCII fail the check like any other.
        let text = value.to_str().unwrap_or("\u{0}");
        let key = validation::idempotency_key(text)
            .map_err(|e| ApiError::InvalidFields(ValidationErrors(vec![e])))?;
        Ok(IdempotencyKeyHeader(Some(key.to_owned())))
    }
}

/// A path parameter; one that is not text (`/order/%FF`) names nothing
/// here and is answered `404` like any unknown id.
pub struct PathSegment(pub String);

impl<S: Send + Sync> FromRequestParts<S> for PathSegment {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let segment: Result<Path<String>, PathRejection> =
            Path::from_request_parts(parts, state).await;
        segment
            .map(|Path(segment)| PathSegment(segment))
            .map_err(|_| ApiError::NotFound)
    }
}

/// Marks a response as not to be kept by any cache (`Cache-Control:
/// no-store`): for answers that carry personal data or a token. Use with
/// `axum::middleware::map_response`.
pub async fn no_store(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
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
