//! WebhookNotifier against a real axum server (and raw sockets for the
//! failure cases).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use base64::Engine;
use domain::events::PartnerMessage;
use domain::ports::{NotifyError, PartnerNotifier};
use hmac::{Hmac, Mac};
use outbound::{RetryPolicy, WebhookNotifier, verify_webhook};
use reqwest::Url;
use sha2::Sha256;
use tokio::net::TcpListener;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const OTHER_SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";

/// A partner endpoint answering with scripted statuses (the last one
/// repeats) and recording every request before answering.
#[derive(Default)]
struct Partner {
    script: Mutex<VecDeque<u16>>,
    requests: Mutex<Vec<(HeaderMap, Bytes)>>,
}

impl Partner {
    fn requests(&self) -> Vec<(HeaderMap, Bytes)> {
        self.requests.lock().unwrap().clone()
    }
}

async fn receive(
    State(partner): State<Arc<Partner>>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    partner.requests.lock().unwrap().push((headers, body));
    let mut script = partner.script.lock().unwrap();
    let code = if script.len() > 1 {
        script.pop_front().unwrap()
    } else {
        *script.front().unwrap()
    };
    StatusCode::from_u16(code).unwrap()
}

async fn partner(statuses: &[u16]) -> (Url, Arc<Partner>) {
    let partner = Arc::new(Partner {
        script: Mutex::new(statuses.iter().copied().collect()),
        ..Partner::default()
    });
    let app = Router::new()
        .route("/hooks/bakery", post(receive))
        .with_state(partner.clone());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let url = Url::parse(&format!("http://{addr}/hooks/bakery?token=t0ps3cret")).unwrap();
    (url, partner)
}

/// Small delays so the retry tests stay fast.
fn quick(attempts: usize) -> RetryPolicy {
    RetryPolicy {
        attempts,
        first_delay: Duration::from_millis(5),
        max_delay: Duration::from_millis(20),
        timeout: Duration::from_secs(5),
    }
}

fn message() -> PartnerMessage {
    PartnerMessage {
        id: "0b8f2c1e-6d3a-5e2f-9c41-7a2b3c4d5e6f".into(),
        event_type: "delivery.requested".into(),
        payload: serde_json::json!({"orderId": "o-1", "address": "1 Cake Street", "quantity": 2}),
        subject: "Delivery requested".into(),
        text: "Please deliver order o-1.".into(),
    }
}

/// The Standard Webhooks signature, computed independently of the crate
/// under test.
fn expected_signature(id: &str, timestamp: &str, body: &[u8]) -> String {
    let key = base64::engine::general_purpose::STANDARD
        .decode(SECRET.strip_prefix("whsec_").unwrap())
        .unwrap();
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&key).unwrap();
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(digest)
    )
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers.get(name).unwrap().to_str().unwrap()
}

#[tokio::test]
async fn posts_a_signed_standard_webhook() {
    let (url, partner) = partner(&[200]).await;
    let notifier = WebhookNotifier::new(url, SECRET, quick(4)).unwrap();
    let message = message();
    notifier.notify(&message).await.unwrap();

    let requests = partner.requests();
    assert_eq!(requests.len(), 1);
    let (headers, body) = &requests[0];

    assert!(verify_webhook(SECRET, headers, body));
    assert!(!verify_webhook(OTHER_SECRET, headers, body));
    assert!(!verify_webhook(SECRET, headers, b"{\"type\":\"forged\"}"));
    assert!(!verify_webhook("not base64 !!", headers, body));

    let id = header(headers, "webhook-id");
    let timestamp = header(headers, "webhook-timestamp");
    assert_eq!(id, message.id);
    let sent_at: i64 = timestamp.parse().unwrap();
    assert!((chrono::Utc::now().timestamp() - sent_at).abs() <= 5);
    assert_eq!(
        header(headers, "webhook-signature"),
        expected_signature(id, timestamp, body)
    );
    assert_eq!(header(headers, "content-type"), "application/json");

    let json: serde_json::Value = serde_json::from_slice(body).unwrap();
    assert_eq!(json["type"], "delivery.requested");
    assert_eq!(json["data"], message.payload);
    assert!(chrono::DateTime::parse_from_rfc3339(json["timestamp"].as_str().unwrap()).is_ok());
    assert_eq!(json.as_object().unwrap().len(), 3, "{json}");
}

#[tokio::test]
async fn the_three_header_values_alone_verify() {
    let (url, partner) = partner(&[204]).await;
    WebhookNotifier::new(url, SECRET, quick(1))
        .unwrap()
        .notify(&message())
        .await
        .unwrap();
    let (headers, body) = partner.requests().remove(0);
    let mut only = HeaderMap::new();
    for name in ["webhook-id", "webhook-timestamp", "webhook-signature"] {
        only.insert(name, headers.get(name).unwrap().clone());
    }
    assert!(verify_webhook(SECRET, &only, &body));
    only.remove("webhook-timestamp");
    assert!(!verify_webhook(SECRET, &only, &body));
}

#[tokio::test]
async fn server_errors_are_retried_with_the_same_id() {
    let (url, partner) = partner(&[500, 503, 200]).await;
    let notifier = WebhookNotifier::new(url, SECRET, quick(4)).unwrap();
    notifier.notify(&message()).await.unwrap();

    let requests = partner.requests();
    assert_eq!(requests.len(), 3);
    for (headers, body) in &requests {
        assert_eq!(header(headers, "webhook-id"), message().id);
        assert!(verify_webhook(SECRET, headers, body), "each try is signed");
    }
}

#[tokio::test]
async fn a_partner_that_keeps_failing_is_unavailable_after_all_attempts() {
    let (url, partner) = partner(&[500]).await;
    let notifier = WebhookNotifier::new(url, SECRET, quick(3)).unwrap();
    let err = notifier.notify(&message()).await.unwrap_err();

    assert_eq!(partner.requests().len(), 3);
    let NotifyError::Unavailable(why) = &err else {
        panic!("{err:?}");
    };
    assert!(why.starts_with("127.0.0.1: "), "{why}");
    assert!(why.contains("500"), "{why}");
    for secret_part in ["MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "t0ps3cret"] {
        assert!(!why.contains(secret_part), "{why}");
    }
}

#[tokio::test]
async fn client_errors_are_rejected_without_retry() {
    for status in [400, 401, 404, 422] {
        let (url, partner) = partner(&[status, 200]).await;
        let err = WebhookNotifier::new(url, SECRET, quick(4))
            .unwrap()
            .notify(&message())
            .await
            .unwrap_err();
        assert!(
            matches!(&err, NotifyError::Rejected(why) if why.contains(&status.to_string())),
            "{status}: {err:?}"
        );
        assert_eq!(partner.requests().len(), 1, "{status}");
    }
}

#[tokio::test]
async fn too_many_requests_and_request_timeout_are_retried() {
    for status in [429, 408] {
        let (url, partner) = partner(&[status, status, 200]).await;
        WebhookNotifier::new(url, SECRET, quick(4))
            .unwrap()
            .notify(&message())
            .await
            .unwrap();
        assert_eq!(partner.requests().len(), 3, "{status}");
    }
}

#[tokio::test]
async fn redirects_are_not_followed() {
    let (url, partner) = partner(&[307]).await;
    let err = WebhookNotifier::new(url, SECRET, quick(4))
        .unwrap()
        .notify(&message())
        .await
        .unwrap_err();
    assert!(matches!(err, NotifyError::Unavailable(_)), "{err:?}");
    assert_eq!(partner.requests().len(), 1);
}

#[tokio::test]
async fn a_partner_that_never_answers_times_out() {
    // Accepts connections and holds them without a word.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (accepted_tx, mut accepted) = tokio::sync::mpsc::unbounded_channel();
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
            let _ = accepted_tx.send(());
        }
    });
    let retry = RetryPolicy {
        timeout: Duration::from_millis(200),
        ..quick(2)
    };
    let url = Url::parse(&format!("http://{addr}/hooks")).unwrap();
    let err = WebhookNotifier::new(url, SECRET, retry)
        .unwrap()
        .notify(&message())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, NotifyError::Unavailable(why) if why.contains("timed out") && why.contains("2 calls")),
        "{err:?}"
    );
    // Each try used a fresh connection (the timed-out one is dropped).
    for _ in 0..2 {
        tokio::time::timeout(Duration::from_secs(5), accepted.recv())
            .await
            .unwrap()
            .unwrap();
    }
    holder.abort();
}

#[tokio::test]
async fn an_unreachable_partner_is_unavailable() {
    let addr = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let url = Url::parse(&format!("http://{addr}/hooks")).unwrap();
    let err = WebhookNotifier::new(url, SECRET, quick(2))
        .unwrap()
        .notify(&message())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, NotifyError::Unavailable(why) if why.contains("connection failed")),
        "{err:?}"
    );
}

#[tokio::test]
async fn an_id_that_cannot_be_a_header_is_rejected_without_a_request() {
    let (url, partner) = partner(&[200]).await;
    let mut message = message();
    message.id = "id\r\nX-Evil: 1".into();
    let err = WebhookNotifier::new(url, SECRET, quick(4))
        .unwrap()
        .notify(&message)
        .await
        .unwrap_err();
    assert!(matches!(err, NotifyError::Rejected(_)), "{err:?}");
    assert!(partner.requests().is_empty());
}

#[test]
fn configuration_is_checked_and_the_secret_stays_private() {
    let url = Url::parse("https://partner.example/hooks").unwrap();
    let notifier = WebhookNotifier::new(url.clone(), SECRET, RetryPolicy::default()).unwrap();
    assert!(!format!("{notifier:?}").contains("MfKQ9r8"));

    for secret in ["whsec_", "", "whsec_not*base64!"] {
        let err = WebhookNotifier::new(url.clone(), secret, RetryPolicy::default()).unwrap_err();
        assert!(
            matches!(err, NotifyError::Rejected(_)),
            "{secret:?}: {err:?}"
        );
    }
    let ftp = Url::parse("ftp://partner.example/hooks").unwrap();
    assert!(WebhookNotifier::new(ftp, SECRET, RetryPolicy::default()).is_err());

    let defaults = RetryPolicy::default();
    assert_eq!(defaults.attempts, 4);
    assert_eq!(defaults.first_delay, Duration::from_millis(200));
    assert_eq!(defaults.max_delay, Duration::from_secs(5));
    assert_eq!(defaults.timeout, Duration::from_secs(10));
}
