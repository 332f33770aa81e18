//! A local Lambda Runtime API.
//!
//! On AWS a function's process finds the Lambda service at
//! `AWS_LAMBDA_RUNTIME_API` and loops: `GET /2018-06-01/runtime/invocation/next`
//! (held open until there is an event; the answer carries the event as its
//! body and the request id, deadline and function ARN as headers), then
//! `POST .../invocation/{id}/response` with the handler's answer, or
//! `.../invocation/{id}/error`; a process that fails before its first
//! `next` may post `/2018-06-01/runtime/init/error`. This is that interface
//! on a loopback port, with the time of each step recorded, so a test can
//! run the real `bootstrap` binary and see what it answers, and the cold
//! start check can time it.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;

/// The deadline handed out with each invocation: the functions' timeout in
/// `template.yaml` is 10 or 30 s.
pub const INVOCATION_TIMEOUT: Duration = Duration::from_secs(30);

/// What the function reported for one invocation, or for its start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// `POST .../invocation/{id}/response`: the handler's answer.
    Response(String),
    /// `POST .../invocation/{id}/error`: the error document.
    Error(String),
    /// `POST /init/error`: the process could not start its handler.
    InitError(String),
}

impl Outcome {
    /// The answer of a successful invocation, or a message saying what
    /// happened instead.
    pub fn response(&self) -> Result<&str, String> {
        match self {
            Outcome::Response(body) => Ok(body),
            Outcome::Error(body) => Err(format!("the invocation failed: {body}")),
            Outcome::InitError(body) => Err(format!("the function failed to start: {body}")),
        }
    }
}

#[derive(Debug, Clone)]
struct Report {
    /// `None` for an init error.
    request_id: Option<String>,
    outcome: Outcome,
    at: Instant,
}

struct Shared {
    function_arn: String,
    events: tokio::sync::Mutex<mpsc::UnboundedReceiver<(String, String)>>,
    first_next: Mutex<Option<Instant>>,
    reports: Mutex<Vec<Report>>,
    reported: Notify,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// The Runtime API of one function, on `127.0.0.1` and a free port. The
/// server stops when this is dropped.
pub struct RuntimeApi {
    address: SocketAddr,
    shared: Arc<Shared>,
    queue: mpsc::UnboundedSender<(String, String)>,
    server: JoinHandle<()>,
    invocations: u64,
}

impl RuntimeApi {
    /// Starts serving for the function named `function_name`.
    pub async fn start(function_name: &str) -> std::io::Result<RuntimeApi> {
        let (queue, events) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            function_arn: format!("arn:aws:lambda:us-east-1:123456789012:function:{function_name}"),
            events: tokio::sync::Mutex::new(events),
            first_next: Mutex::new(None),
            reports: Mutex::new(Vec::new()),
            reported: Notify::new(),
        });
        let app = Router::new()
            .route("/2018-06-01/runtime/invocation/next", get(next))
            .route(
                "/2018-06-01/runtime/invocation/{request_id}/response",
                post(response),
            )
            .route(
                "/2018-06-01/runtime/invocation/{request_id}/error",
                post(error),
            )
            .route("/2018-06-01/runtime/init/error", post(init_error))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        let server = tokio::spawn(async move {
            // Ends only when the task is aborted (on drop).
            let _ = axum::serve(listener, app).await;
        });
        Ok(RuntimeApi {
            address,
            shared,
            queue,
            server,
            invocations: 0,
        })
    }

    /// The value for `AWS_LAMBDA_RUNTIME_API`: `127.0.0.1:PORT`.
    pub fn address(&self) -> String {
        self.address.to_string()
    }

    /// Queues one invocation with `payload` as the event and answers its
    /// request id. The function receives it on its next `next` call.
    pub fn invoke(&mut self, payload: impl Into<String>) -> String {
        self.invocations += 1;
        let request_id = format!(
            "8476a536-e9f4-11e8-9739-{:012x}",
            u64::from(self.address.port()) << 24 | self.invocations
        );
        // The receiver lives in `shared`, as long as `self`.
        let _ = self.queue.send((request_id.clone(), payload.into()));
        request_id
    }

    /// When the function first asked for an event, if it has.
    pub fn first_next_at(&self) -> Option<Instant> {
        *lock(&self.shared.first_next)
    }

    /// Waits until the function reports on `request_id` (or fails to start)
    /// and answers what it reported and when; `None` after `within`.
    pub async fn outcome(&self, request_id: &str, within: Duration) -> Option<(Outcome, Instant)> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let notified = self.shared.reported.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let found = lock(&self.shared.reports)
                .iter()
                .find(|r| r.request_id.is_none() || r.request_id.as_deref() == Some(request_id))
                .map(|r| (r.outcome.clone(), r.at));
            if found.is_some() {
                return found;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return None;
            }
        }
    }
}

impl Drop for RuntimeApi {
    fn drop(&mut self) {
        self.server.abort();
    }
}

fn header_value(text: &str) -> HeaderValue {
    HeaderValue::from_str(text).unwrap_or_else(|_| HeaderValue::from_static("invalid"))
}

async fn next(State(shared): State<Arc<Shared>>) -> Response {
    lock(&shared.first_next).get_or_insert_with(Instant::now);
    // Held open until an event is queued, as Lambda does between
    // invocations (the process is frozen there on AWS).
    let event = shared.events.lock().await.recv().await;
    let Some((request_id, payload)) = event else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    let deadline_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .saturating_add(INVOCATION_TIMEOUT)
        .as_millis();
    let headers = [
        (
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        ),
        (
            HeaderName::from_static("lambda-runtime-aws-request-id"),
            header_value(&request_id),
        ),
        (
            HeaderName::from_static("lambda-runtime-deadline-ms"),
            header_value(&deadline_ms.to_string()),
        ),
        (
            HeaderName::from_static("lambda-runtime-invoked-function-arn"),
            header_value(&shared.function_arn),
        ),
        (
            HeaderName::from_static("lambda-runtime-trace-id"),
            HeaderValue::from_static(
                "Root=1-6742f8a0-5d1c0a7e3b9f4c2d1e0a9b8c;Parent=53995c3f42cd8ad8;Sampled=0",
            ),
        ),
    ];
    (StatusCode::OK, headers, payload).into_response()
}

fn record(shared: &Shared, request_id: Option<String>, outcome: Outcome) -> Response {
    lock(&shared.reports).push(Report {
        request_id,
        outcome,
        at: Instant::now(),
    });
    shared.reported.notify_waiters();
    (
        StatusCode::ACCEPTED,
        [(header::CONTENT_TYPE, "application/json")],
        r#"{"status":"OK"}"#,
    )
        .into_response()
}

fn text(body: &Bytes) -> String {
    String::from_utf8_lossy(body).into_owned()
}

async fn response(
    State(shared): State<Arc<Shared>>,
    Path(request_id): Path<String>,
    body: Bytes,
) -> Response {
    record(&shared, Some(request_id), Outcome::Response(text(&body)))
}

async fn error(
    State(shared): State<Arc<Shared>>,
    Path(request_id): Path<String>,
    body: Bytes,
) -> Response {
    record(&shared, Some(request_id), Outcome::Error(text(&body)))
}

async fn init_error(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    record(&shared, None, Outcome::InitError(text(&body)))
}
