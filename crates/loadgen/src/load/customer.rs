//! What one customer does over HTTP: place an order; in a lifecycle, wait
//! for each step (a long-poll, or polling where the server cannot wait),
//! have the cake maker fulfil it and confirm its delivery. Every request is
//! timed and every failure counted in [`Shared`]'s recorder.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use serde::Deserialize;

use super::{Endpoint, PROPAGATION, Shared};

impl Shared {
    /// Sends a request, timing it. `Ok` with the body for a 2xx answer;
    /// otherwise the error is counted by endpoint and status and `Err`
    /// says whether trying again may help (5xx, no answer).
    async fn send(
        &self,
        endpoint: Endpoint,
        request: reqwest::RequestBuilder,
    ) -> Result<Vec<u8>, Retry> {
        self.send_for_answer(endpoint, request)
            .await
            .map(|answer| answer.body)
    }

    /// [`Shared::send`], keeping the answer's headers.
    async fn send_for_answer(
        &self,
        endpoint: Endpoint,
        request: reqwest::RequestBuilder,
    ) -> Result<Answer, Retry> {
        let sent = Instant::now();
        self.requests.fetch_add(1, Ordering::Relaxed);
        let response = match request.send().await {
            Ok(response) => response,
            Err(error) => {
                self.error(format!("{}: {}", endpoint.name(), transport_error(&error)));
                return Err(Retry(true));
            }
        };
        let status = response.status();
        let headers = response.headers().clone();
        let body = match response.bytes().await {
            Ok(body) => body.to_vec(),
            Err(error) => {
                self.error(format!("{}: {}", endpoint.name(), transport_error(&error)));
                return Err(Retry(true));
            }
        };
        if status.is_success() {
            self.latency(endpoint, sent.elapsed());
            Ok(Answer { headers, body })
        } else {
            self.error(format!("{}: {}", endpoint.name(), status.as_u16()));
            Err(Retry(status.is_server_error()))
        }
    }

    /// A POST, tried again on 5xx or no answer, up to `post_tries` times.
    async fn post(
        &self,
        endpoint: Endpoint,
        build: impl Fn() -> reqwest::RequestBuilder,
    ) -> Option<Vec<u8>> {
        for attempt in 1..=self.config.post_tries.max(1) {
            match self.send(endpoint, build()).await {
                Ok(body) => return Some(body),
                Err(Retry(false)) => return None,
                Err(Retry(true)) => {
                    tokio::time::sleep(Duration::from_millis(5 * u64::from(attempt))).await;
                }
            }
        }
        None
    }
}

/// Whether a failed request is worth sending again.
struct Retry(bool);

/// A 2xx answer.
struct Answer {
    headers: reqwest::header::HeaderMap,
    body: Vec<u8>,
}

fn transport_error(error: &reqwest::Error) -> &'static str {
    if error.is_timeout() {
        "timeout"
    } else if error.is_connect() {
        "cannot connect"
    } else if error.is_body() || error.is_decode() {
        "broken body"
    } else {
        "transport error"
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct PlacedView {
    order_id: String,
    customer_token: String,
}

#[derive(Debug, Deserialize)]
pub struct StepView {
    pub step: String,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Deserialize)]
pub struct OrderView {
    pub timeline: Vec<StepView>,
}

impl OrderView {
    pub fn at(&self, step: &str) -> Option<DateTime<Utc>> {
        self.timeline.iter().find(|s| s.step == step).map(|s| s.at)
    }

    /// Microseconds from `from` to `to` by the timeline, if both happened
    /// (0 if the clock went backwards).
    pub fn micros_between(&self, from: &str, to: &str) -> Option<u64> {
        let micros = (self.at(to)? - self.at(from)?).num_microseconds()?;
        Some(u64::try_from(micros).unwrap_or(0))
    }
}

/// The order every customer places (valid against the default catalog).
pub(super) fn order_body() -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "name": "Bench Customer",
        "address": "1 Benchmark Street, 1000 Loadtown",
        "productId": 1,
        "quantity": 1,
        "email": "bench@example.com",
    }))
    .unwrap_or_default()
}

pub(super) fn bearer(token: &str) -> Result<HeaderValue> {
    HeaderValue::from_str(&format!("Bearer {token}")).context("the token is not a valid header")
}

/// Places one order; its id and customer token when accepted.
pub(super) async fn place(shared: &Shared) -> Option<PlacedView> {
    let key = uuid::Uuid::new_v4().to_string();
    let url = shared.url("/order", None);
    let body = shared
        .post(Endpoint::PostOrder, || {
            shared
                .http
                .post(url.clone())
                .header(CONTENT_TYPE, "application/json")
                .header("idempotency-key", &key)
                .body(shared.order_body.clone())
        })
        .await?;
    match serde_json::from_slice::<PlacedView>(&body) {
        Ok(placed) => {
            shared.accepted.fetch_add(1, Ordering::Relaxed);
            Some(placed)
        }
        Err(_) => {
            shared.error("POST /order: 201 without orderId/customerToken".into());
            None
        }
    }
}

/// Waits until the order's timeline has the end of propagation step
/// `step` (an index into [`PROPAGATION`]); the order as last read.
async fn wait_for(
    shared: &Shared,
    order_id: &str,
    auth: &HeaderValue,
    step: usize,
) -> Option<OrderView> {
    let deadline = Instant::now() + shared.config.step_timeout;
    if !shared.config.poll && !shared.server_cannot_wait.load(Ordering::Relaxed) {
        match long_poll(shared, order_id, auth, step, deadline).await {
            Waited::Reached(order) => return Some(order),
            Waited::Failed => return None,
            Waited::ServerCannotWait => shared.server_cannot_wait.store(true, Ordering::Relaxed),
        }
    }
    poll(shared, order_id, auth, step, deadline).await
}

enum Waited {
    Reached(OrderView),
    Failed,
    ServerCannotWait,
}

/// Asks `GET /order/{id}?waitFor=<step>` until the step is there or the
/// deadline passes.
async fn long_poll(
    shared: &Shared,
    order_id: &str,
    auth: &HeaderValue,
    step: usize,
    deadline: Instant,
) -> Waited {
    let (_, to) = PROPAGATION[step];
    let url = shared.url(
        &format!("/order/{order_id}"),
        Some(&format!("waitFor={to}")),
    );
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let request = shared
            .http
            .get(url.clone())
            .header(AUTHORIZATION, auth.clone())
            .header("prefer", format!("wait={}", left.as_secs().max(1)));
        if let Ok(answer) = shared.send_for_answer(Endpoint::WaitOrder, request).await {
            match reached(shared, &answer.body, step) {
                Some(Some(order)) => return Waited::Reached(order),
                Some(None) if !server_waited(&answer.headers) => {
                    return Waited::ServerCannotWait;
                }
                Some(None) => {}
                None => return Waited::Failed,
            }
        }
        if Instant::now() >= deadline {
            shared.error(format!("wait for {to}: no step within the step timeout"));
            return Waited::Failed;
        }
    }
}

/// Whether the server says it waited (`Preference-Applied: wait=<s>`, more
/// than 0 s): if not, asking again at once would be a busy loop.
fn server_waited(headers: &reqwest::header::HeaderMap) -> bool {
    headers
        .get("preference-applied")
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.trim() != "wait=0")
}

/// Polls `GET /order/{id}` until the step is there or the deadline passes.
///
/// The first look waits for the step's usual time (at least `poll_min`),
/// as someone who knows the shop would, then the intervals double from
/// `poll_min` up to `poll_max`. Looking sooner mostly finds nothing and
/// costs both sides a request.
async fn poll(
    shared: &Shared,
    order_id: &str,
    auth: &HeaderValue,
    step: usize,
    deadline: Instant,
) -> Option<OrderView> {
    let (_, to) = PROPAGATION[step];
    let url = shared.url(&format!("/order/{order_id}"), None);
    let usual = Duration::from_micros(shared.usual_step_micros[step].load(Ordering::Relaxed));
    let mut wait = usual.max(shared.config.poll_min);
    let mut interval = shared.config.poll_min;
    loop {
        tokio::time::sleep(wait).await;
        let request = shared
            .http
            .get(url.clone())
            .header(AUTHORIZATION, auth.clone());
        if let Ok(body) = shared.send(Endpoint::GetOrder, request).await {
            match reached(shared, &body, step) {
                Some(Some(order)) => return Some(order),
                Some(None) => {}
                None => return None,
            }
        }
        if Instant::now() >= deadline {
            shared.error(format!("wait for {to}: no step within the step timeout"));
            return None;
        }
        wait = interval;
        interval = (interval * 2).min(shared.config.poll_max);
    }
}

/// Reads an answer to `GET /order/{id}`: `Some(Some(order))` once it has
/// the end of step `step` (learning the step's time), `Some(None)` if not
/// yet, `None` if it is not an order (counted as an error).
fn reached(shared: &Shared, body: &[u8], step: usize) -> Option<Option<OrderView>> {
    let (from, to) = PROPAGATION[step];
    match serde_json::from_slice::<OrderView>(body) {
        Ok(order) if order.at(to).is_some() => {
            if let Some(took) = order.micros_between(from, to) {
                shared.learn_step_time(step, took);
            }
            Some(Some(order))
        }
        Ok(_) => Some(None),
        Err(_) => {
            shared.error("GET /order/{id}: 200 without a timeline".into());
            None
        }
    }
}

/// One whole lifecycle; `None` if any part of it failed (already counted).
pub(super) async fn lifecycle(shared: &Shared) -> Option<()> {
    let started = Instant::now();
    let placed = place(shared).await?;
    let customer = bearer(&placed.customer_token).ok()?;
    let baker = shared.baker_auth.clone()?;
    let id = placed.order_id;

    wait_for(shared, &id, &customer, 0).await?;
    let url = shared.url("/order/fulfilled", None);
    let body =
        serde_json::to_vec(&serde_json::json!({"orderId": id, "fulfillmentId": "oven-1"})).ok()?;
    shared
        .post(Endpoint::PostFulfilled, || {
            shared
                .http
                .post(url.clone())
                .header(CONTENT_TYPE, "application/json")
                .header(AUTHORIZATION, baker.clone())
                .body(body.clone())
        })
        .await?;

    wait_for(shared, &id, &customer, 1).await?;
    let url = shared.url("/order/delivered", None);
    let body = serde_json::to_vec(&serde_json::json!({
        "orderId": id,
        "deliveryCompanyId": "van-1",
        "orderReview": "Lovely cake, arrived on time.",
    }))
    .ok()?;
    shared
        .post(Endpoint::PostDelivered, || {
            shared
                .http
                .post(url.clone())
                .header(CONTENT_TYPE, "application/json")
                .header(AUTHORIZATION, customer.clone())
                .body(body.clone())
        })
        .await?;

    let last = wait_for(shared, &id, &customer, 2).await?;
    let mut recorder = shared.recorder();
    for (index, (from, to)) in PROPAGATION.iter().enumerate() {
        if let Some(micros) = last.micros_between(from, to) {
            recorder.propagation[index].record_micros(micros);
        }
    }
    recorder.lifecycle.record(started.elapsed());
    drop(recorder);
    shared.lifecycles.fetch_add(1, Ordering::Relaxed);
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn propagation_is_read_from_the_timeline() {
        let order: OrderView = serde_json::from_str(
            r#"{"orderId": "x", "status": "delivered", "timeline": [
                {"step": "placed", "at": "2026-01-01T10:00:00.000000Z"},
                {"step": "baker_notified", "at": "2026-01-01T10:00:00.003250Z"},
                {"step": "fulfilled", "at": "2026-01-01T10:00:00.010000Z"},
                {"step": "out_for_delivery", "at": "2026-01-01T10:00:00.012000Z"},
                {"step": "delivery_notified", "at": "2026-01-01T10:00:00.017000Z"},
                {"step": "delivered", "at": "2026-01-01T10:00:00.020000Z"},
                {"step": "customer_service_notified", "at": "2026-01-01T10:00:00.019000Z"}
            ]}"#,
        )
        .unwrap();
        let [(a, b), (c, d), (e, f)] = PROPAGATION;
        assert_eq!(order.micros_between(a, b), Some(3250));
        assert_eq!(order.micros_between(c, d), Some(7000));
        // A clock that went backwards counts as no time, not as a panic.
        assert_eq!(order.micros_between(e, f), Some(0));
        assert_eq!(order.micros_between("placed", "nope"), None);
    }

    #[test]
    fn the_order_body_is_valid_json_for_the_default_catalog() {
        let body: serde_json::Value = serde_json::from_slice(&order_body()).unwrap();
        assert_eq!(body["productId"], 1);
        assert_eq!(body["quantity"], 1);
    }
}
