//! A webhook partner for the fault tests that can answer, fail, hang or
//! be gone (its port closed), and remembers every call it saw.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde_json::Value;
use tokio::net::TcpListener;

use crate::support::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartnerMode {
    /// 204 to every well-signed call.
    Up,
    /// 500 to everything.
    Failing,
    /// 400 to everything: refused for good.
    Refusing,
    /// Accepts the connection and the request, never answers.
    Hanging,
    /// The port is closed.
    Down,
}

/// One call the flaky partner saw; `answered` is 0 for calls left hanging.
#[derive(Debug, Clone)]
pub struct Call {
    pub webhook_id: String,
    pub order_id: String,
    pub answered: u16,
}

#[derive(Clone)]
pub struct FlakyPartner {
    port: u16,
    pub url: String,
    mode: Arc<Mutex<PartnerMode>>,
    calls: Arc<Mutex<Vec<Call>>>,
    /// Stops the server that is up: no new connections, idle ones closed.
    shutdown: Arc<Mutex<Option<tokio::sync::oneshot::Sender<()>>>>,
}

impl FlakyPartner {
    pub async fn start() -> FlakyPartner {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let partner = FlakyPartner {
            port,
            url: format!("http://127.0.0.1:{port}/hooks"),
            mode: Arc::new(Mutex::new(PartnerMode::Up)),
            calls: Arc::default(),
            shutdown: Arc::default(),
        };
        partner.serve(listener);
        partner
    }

    fn serve(&self, listener: TcpListener) {
        let app = axum::Router::new()
            .route("/hooks", axum::routing::post(flaky_receive))
            .with_state(self.clone());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        *self.shutdown.lock().unwrap() = Some(stop);
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stopped.await;
                })
                .await;
        });
    }

    pub async fn set_mode(&self, mode: PartnerMode) {
        *self.mode.lock().unwrap() = mode;
        let running = self.shutdown.lock().unwrap().is_some();
        if mode == PartnerMode::Down && running {
            if let Some(stop) = self.shutdown.lock().unwrap().take() {
                let _ = stop.send(());
            }
            let port = self.port;
            eventually("the partner's port to close", LIMIT, || async move {
                tokio::net::TcpStream::connect(("127.0.0.1", port))
                    .await
                    .is_err()
                    .then_some(())
            })
            .await;
        } else if mode != PartnerMode::Down && !running {
            let listener = TcpListener::bind(("127.0.0.1", self.port)).await.unwrap();
            self.serve(listener);
        }
    }

    pub fn calls_for(&self, order_id: &str) -> Vec<Call> {
        let calls = self.calls.lock().unwrap();
        calls
            .iter()
            .filter(|c| c.order_id == order_id)
            .cloned()
            .collect()
    }

    /// How many calls it saw.
    pub fn call_count(&self) -> usize {
        self.calls.lock().unwrap().len()
    }

    /// Calls answered 2xx, per webhook id.
    pub fn accepted(&self) -> HashMap<String, usize> {
        let mut accepted = HashMap::new();
        for call in self.calls.lock().unwrap().iter() {
            if (200..300).contains(&call.answered) {
                *accepted.entry(call.webhook_id.clone()).or_default() += 1;
            }
        }
        accepted
    }
}

async fn flaky_receive(
    State(partner): State<FlakyPartner>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    assert!(
        outbound::verify_webhook(WEBHOOK_SECRET, &headers, &body),
        "every call is signed"
    );
    let json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let mode = *partner.mode.lock().unwrap();
    let answered = match mode {
        PartnerMode::Up | PartnerMode::Down => StatusCode::NO_CONTENT,
        PartnerMode::Failing => StatusCode::INTERNAL_SERVER_ERROR,
        PartnerMode::Refusing => StatusCode::BAD_REQUEST,
        PartnerMode::Hanging => StatusCode::OK,
    };
    partner.calls.lock().unwrap().push(Call {
        webhook_id: headers
            .get("webhook-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string(),
        order_id: json["data"]["orderId"].as_str().unwrap_or("").to_string(),
        answered: if mode == PartnerMode::Hanging {
            0
        } else {
            answered.as_u16()
        },
    });
    if mode == PartnerMode::Hanging {
        std::future::pending::<()>().await;
    }
    answered
}
