//! A fault-injecting reverse proxy in front of an AWS API endpoint: the
//! bakery is pointed at it (`--aws-endpoint-url`), it forwards every request
//! to the real endpoint untouched, and the test can make chosen operations
//! fail with an AWS-style 500 or 503 until told to stop.
//!
//! An operation is named by its `X-Amz-Target` header for the JSON
//! protocols (DynamoDB `DynamoDB_20120810.PutItem`, Kinesis
//! `Kinesis_20131202.PutRecord`, SQS `AmazonSQS.SendMessage`: the SQS SDK
//! speaks JSON with a target header), and by method and path for the REST
//! protocols (SESv2 `SendEmail` is `POST /v2/email/outbound-emails`).
//! The proxy counts, per operation, the requests it forwarded and the ones
//! it failed. It can also play a rate limit: past a number of requests a
//! second, an operation answers `429 TooManyRequestsException`, as SES does
//! above an account's send rate.
//!
//! It also lets one DynamoDB request through at a time. DynamoDB applies a
//! conditional write to an item atomically; the emulator checks the
//! condition and then applies the update as separate steps with no lock
//! between them, so when its request threads switch in between (the
//! busier the machine, the likelier) two compare-and-sets on the same
//! version can both succeed and one update is lost. One at a time, a lost
//! race in the tests is the bakery's doing, never the emulator's.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::Response;
use tokio::net::TcpListener;

pub const KINESIS_PUT_RECORD: &str = "Kinesis_20131202.PutRecord";
pub const KINESIS_PUT_RECORDS: &str = "Kinesis_20131202.PutRecords";
pub const SES_SEND_EMAIL: &str = "POST /v2/email/outbound-emails";

/// Headers that belong to one hop, not to the request or answer.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "content-length",
];

#[derive(Clone)]
pub struct FaultProxy {
    /// What to pass as `--aws-endpoint-url`.
    pub url: String,
    state: Arc<ProxyState>,
}

struct ProxyState {
    upstream: String,
    client: reqwest::Client,
    /// Failing operations, with the status they answer.
    failing: Mutex<HashMap<String, u16>>,
    counts: Mutex<HashMap<String, Counts>>,
    /// Held by the DynamoDB request being answered.
    dynamodb_turn: tokio::sync::Mutex<()>,
    /// Rate-limited operations: requests allowed a second, and the current
    /// one-second window (its start and how many it let through).
    throttled: Mutex<HashMap<String, (usize, std::time::Instant, usize)>>,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub forwarded: usize,
    pub failed: usize,
}

impl FaultProxy {
    /// Listens on a free loopback port and forwards to `upstream`.
    pub async fn start(upstream: &str) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(ProxyState {
            upstream: upstream.trim_end_matches('/').to_string(),
            client: reqwest::Client::builder()
                .pool_max_idle_per_host(32)
                .build()
                .unwrap(),
            failing: Mutex::default(),
            counts: Mutex::default(),
            dynamodb_turn: tokio::sync::Mutex::new(()),
            throttled: Mutex::default(),
        });
        let app = axum::Router::new()
            .fallback(forward)
            .with_state(state.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        FaultProxy { url, state }
    }

    /// From now on `operation` answers `status` without reaching the
    /// endpoint: 500 or 503 (a failing service), or 400 (a refusal, as SES's
    /// `MessageRejected`).
    pub fn fail(&self, operation: &str, status: u16) {
        assert!(
            matches!(status, 400 | 500 | 503),
            "AWS-style server errors and refusals only"
        );
        self.state
            .failing
            .lock()
            .unwrap()
            .insert(operation.to_string(), status);
    }

    /// From now on `operation` lets `per_second` requests through in each
    /// second and answers the rest `429 TooManyRequestsException`.
    pub fn throttle(&self, operation: &str, per_second: usize) {
        self.state.throttled.lock().unwrap().insert(
            operation.to_string(),
            (per_second, std::time::Instant::now(), 0),
        );
    }

    /// `operation` reaches the endpoint again.
    pub fn heal(&self, operation: &str) {
        self.state.failing.lock().unwrap().remove(operation);
    }

    pub fn counts(&self, operation: &str) -> Counts {
        self.state
            .counts
            .lock()
            .unwrap()
            .get(operation)
            .copied()
            .unwrap_or_default()
    }

    /// Every operation the proxy has seen.
    pub fn operations(&self) -> HashSet<String> {
        self.state.counts.lock().unwrap().keys().cloned().collect()
    }
}

/// `X-Amz-Target` for the JSON protocols, else `METHOD /path`.
fn operation_of(request: &Request) -> String {
    match request
        .headers()
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
    {
        Some(target) => target.to_string(),
        None => format!("{} {}", request.method(), request.uri().path()),
    }
}

/// The error an AWS service answers when it is failing or throttling:
/// JSON protocols name the error in `__type`, REST JSON in
/// `x-amzn-ErrorType`.
fn aws_error(request_headers: &HeaderMap, status: u16) -> Response {
    let code = match status {
        503 => "ServiceUnavailable",
        429 => "TooManyRequestsException",
        400 => "MessageRejected",
        _ => "InternalFailure",
    };
    let message = "fault injected by the test";
    let json_protocol = request_headers.get("x-amz-target").is_some();
    let content_type = request_headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .filter(|ct| json_protocol && ct.starts_with("application/x-amz-json"))
        .unwrap_or("application/json")
        .to_string();
    let body = if json_protocol {
        serde_json::json!({ "__type": code, "message": message })
    } else {
        serde_json::json!({ "message": message })
    };
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .header("x-amzn-errortype", code)
        .header("x-amzn-requestid", uuid::Uuid::new_v4().to_string())
        .body(Body::from(body.to_string()))
        .unwrap()
}

async fn forward(State(state): State<Arc<ProxyState>>, request: Request) -> Response {
    let operation = operation_of(&request);
    let over_the_rate = state
        .throttled
        .lock()
        .unwrap()
        .get_mut(&operation)
        .is_some_and(|(per_second, window, let_through)| {
            if window.elapsed() >= std::time::Duration::from_secs(1) {
                *window = std::time::Instant::now();
                *let_through = 0;
            }
            *let_through += 1;
            *let_through > *per_second
        });
    let failing = match over_the_rate {
        true => Some(429),
        false => state.failing.lock().unwrap().get(&operation).copied(),
    };
    {
        let mut counts = state.counts.lock().unwrap();
        let counts = counts.entry(operation.clone()).or_default();
        match failing {
            Some(_) => counts.failed += 1,
            None => counts.forwarded += 1,
        }
    }
    if let Some(status) = failing {
        // Read the request first, as a server would.
        let headers = request.headers().clone();
        let _ = axum::body::to_bytes(request.into_body(), usize::MAX).await;
        return aws_error(&headers, status);
    }

    let (parts, body) = request.into_parts();
    let Ok(body) = axum::body::to_bytes(body, usize::MAX).await else {
        return status_only(StatusCode::BAD_REQUEST);
    };
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let mut outgoing = state
        .client
        .request(parts.method, format!("{}{path}", state.upstream))
        .body(body);
    for (name, value) in &parts.headers {
        if !HOP_BY_HOP.contains(&name.as_str()) {
            outgoing = outgoing.header(name, value);
        }
    }
    // Held until the whole answer is read: the write is done by then.
    let _turn = if operation.starts_with("DynamoDB_") {
        Some(state.dynamodb_turn.lock().await)
    } else {
        None
    };
    let answer = match outgoing.send().await {
        Ok(answer) => answer,
        Err(_) => return status_only(StatusCode::BAD_GATEWAY),
    };
    let status = answer.status();
    let headers: Vec<(HeaderName, HeaderValue)> = answer
        .headers()
        .iter()
        .filter(|(name, _)| !HOP_BY_HOP.contains(&name.as_str()))
        .map(|(name, value)| (name.clone(), value.clone()))
        .collect();
    let Ok(bytes) = answer.bytes().await else {
        return status_only(StatusCode::BAD_GATEWAY);
    };
    let mut response = Response::new(Body::from(bytes));
    *response.status_mut() = status;
    response.headers_mut().extend(headers);
    response
}

fn status_only(status: StatusCode) -> Response {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = status;
    response
}
