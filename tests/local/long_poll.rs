//! `GET /order/{orderId}?waitFor=<step>`: a customer following an order
//! asks once per step and hears of it when it happens.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::*;

/// The longest wait the tests allow the bakery, far above any step's time:
/// an answer without the step would mean the wake-up was missed.
const MAX_WAIT: &str = "20000";

/// One waiting read: status, `Preference-Applied`, the order, and how long
/// it took.
async fn read_waiting(
    bakery: &Bakery,
    order_id: &str,
    token: &str,
    step: &str,
) -> (u16, Option<String>, Value, Duration) {
    let started = Instant::now();
    let response = bakery
        .client
        .get(format!("{}/order/{order_id}?waitFor={step}", bakery.url))
        .bearer_auth(token)
        .header("prefer", "wait=20")
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let applied = response
        .headers()
        .get("preference-applied")
        .map(|value| value.to_str().unwrap().to_string());
    let order = response.json().await.unwrap_or(Value::Null);
    (status, applied, order, started.elapsed())
}

#[tokio::test]
async fn a_customer_hears_of_every_step_with_one_read_each() {
    let bakery = Bakery::start(&["--max-wait-ms", MAX_WAIT, "--request-timeout-ms", "30000"]).await;
    let placed = bakery.order("Ada").await;
    let (order_id, token) = (id_of(&placed), token_of(&placed));

    // Asked before the cake maker acts, so it must wait for the change.
    let delivered_read = tokio::spawn({
        let (url, client, order_id, token) = (
            bakery.url.clone(),
            bakery.client.clone(),
            order_id.clone(),
            token.clone(),
        );
        async move {
            let started = Instant::now();
            let response = client
                .get(format!("{url}/order/{order_id}?waitFor=delivered"))
                .bearer_auth(token)
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            let order: Value = response.json().await.unwrap();
            (status, order, started.elapsed())
        }
    });

    let (status, applied, order, _) =
        read_waiting(&bakery, &order_id, &token, "baker_notified").await;
    assert_eq!(status, 200, "{order}");
    assert!(
        steps_of(&order).contains(&"baker_notified".to_string()),
        "{order}"
    );
    // Unless the step was already there when the read came, it waited.
    if let Some(applied) = applied {
        assert_eq!(applied, "wait=20");
    }

    let (status, _) = bakery.fulfil(&order_id).await;
    assert_eq!(status, 200);
    let (status, _, order, took) =
        read_waiting(&bakery, &order_id, &token, "delivery_notified").await;
    assert_eq!(status, 200, "{order}");
    assert!(
        steps_of(&order).contains(&"delivery_notified".to_string()),
        "{order}"
    );
    assert!(took < Duration::from_secs(15), "took {took:?}");

    let (status, _) = bakery
        .post(
            "/order/delivered",
            Some(&token),
            &json!({"orderId": order_id, "orderReview": "Lovely"}),
        )
        .await;
    assert_eq!(status, 200);
    let (status, order, took) = delivered_read.await.unwrap();
    assert_eq!(status, 200, "{order}");
    assert!(
        steps_of(&order).contains(&"delivered".to_string()),
        "{order}"
    );
    assert!(took < Duration::from_secs(15), "took {took:?}");

    let (status, _, order, _) =
        read_waiting(&bakery, &order_id, &token, "customer_service_notified").await;
    assert_eq!(status, 200, "{order}");
    assert_eq!(steps_of(&order), EVERY_STEP);
}

#[tokio::test]
async fn a_step_that_does_not_come_is_answered_after_the_wait() {
    let bakery = Bakery::start(&["--max-wait-ms", "1000"]).await;
    let placed = bakery.order("Ada").await;
    // Nobody fulfils it: the wait ends at the bakery's limit, not the
    // client's 20 s.
    let (status, applied, order, _) =
        read_waiting(&bakery, &id_of(&placed), &token_of(&placed), "fulfilled").await;
    assert_eq!(status, 200);
    assert_eq!(applied.as_deref(), Some("wait=1"));
    assert!(
        !steps_of(&order).contains(&"fulfilled".to_string()),
        "{order}"
    );
}

#[tokio::test]
async fn bad_waits_are_refused_before_waiting() {
    let bakery = Bakery::start(&["--max-wait-ms", MAX_WAIT, "--request-timeout-ms", "30000"]).await;
    let placed = bakery.order("Ada").await;
    let order_id = id_of(&placed);
    let (status, problem) = bakery
        .get(
            &format!("/order/{order_id}?waitFor=eaten"),
            Some(&token_of(&placed)),
        )
        .await;
    assert_eq!(status, 422, "{problem}");
    assert_eq!(problem["errors"][0]["field"], "waitFor");
    let started = Instant::now();
    let (status, _) = bakery
        .get(
            &format!("/order/{order_id}?waitFor=delivered"),
            Some("a-stranger"),
        )
        .await;
    assert_eq!(status, 404);
    assert!(started.elapsed() < Duration::from_secs(15));
}

#[tokio::test]
async fn stopping_the_bakery_ends_the_waits_at_once() {
    let mut bakery =
        Bakery::start(&["--max-wait-ms", MAX_WAIT, "--request-timeout-ms", "30000"]).await;
    let placed = bakery.order("Ada").await;
    let waiting = tokio::spawn({
        let (url, client, order_id, token) = (
            bakery.url.clone(),
            bakery.client.clone(),
            id_of(&placed),
            token_of(&placed),
        );
        async move {
            client
                .get(format!("{url}/order/{order_id}?waitFor=delivered"))
                .bearer_auth(token)
                .send()
                .await
                .map(|response| response.status().as_u16())
        }
    });
    // A request on a later connection answered means the waiting one's
    // connection was accepted before it (connections are accepted in
    // order).
    let fresh = reqwest::Client::new();
    let products = fresh
        .get(format!("{}/products", bakery.url))
        .send()
        .await
        .unwrap();
    assert_eq!(products.status().as_u16(), 200);

    let stopping = Instant::now();
    let status = bakery.interrupt().await;
    assert!(status.success(), "{status:?}");
    assert!(
        stopping.elapsed() < Duration::from_secs(10),
        "stopping took {:?} with a read waiting",
        stopping.elapsed()
    );
    assert_eq!(waiting.await.unwrap().ok(), Some(200));
}
