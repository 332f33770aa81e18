//! One order followed through the logs: with `--log-format json` every
//! line the seven functions write about an order carries its `orderId` and
//! `correlationId` (the shape the deployed functions write, which the Logs
//! Insights query of docs/deploy.md reads), and the correlation id is the
//! one the client chose when it placed the order.

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::{Value, json};

use crate::support::*;

/// The seven functions, by the name their log lines carry.
const FUNCTIONS: [&str; 7] = [
    "order",
    "notify-baker",
    "fulfilled",
    "dispatch",
    "notify-delivery",
    "delivered",
    "feedback",
];

/// Every line of the log file, each of which must be one JSON object.
fn json_lines(file: &Path) -> Vec<Value> {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}")))
        .collect()
}

/// The lines about `order_id`.
fn lines_about<'a>(lines: &'a [Value], order_id: &str) -> Vec<&'a Value> {
    lines
        .iter()
        .filter(|line| line["span"]["orderId"] == order_id)
        .collect()
}

/// The function a line came from: the `function` field of one of its spans.
fn function_of(line: &Value) -> Option<&str> {
    line["spans"]
        .as_array()?
        .iter()
        .find_map(|span| span["function"].as_str())
}

async fn place_with_correlation_id(bakery: &Bakery, correlation_id: &str) -> (Value, String) {
    let response = bakery
        .client
        .post(format!("{}/order", bakery.url))
        .header("X-Correlation-Id", correlation_id)
        .json(&order_body("Ada Lovelace"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let echoed = response
        .headers()
        .get("x-correlation-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    (response.json().await.unwrap(), echoed)
}

#[tokio::test]
async fn every_line_about_an_order_in_all_seven_functions_carries_its_id_and_correlation_id() {
    let logs = tempfile::tempdir().unwrap();
    let log_file = logs.path().join("bakery.log");
    let mut args = test_flags();
    args.extend(["--log-format", "json"].map(String::from));
    let bakery = Bakery::start_custom(Custom {
        args,
        stderr: Some(log_file.clone()),
        ..Custom::default()
    })
    .await;

    let (placed, echoed) = place_with_correlation_id(&bakery, "shop-req-42").await;
    assert_eq!(echoed, "shop-req-42", "the answer names the correlation id");
    assert_eq!(placed["correlationId"], "shop-req-42");
    let order_id = id_of(&placed);
    let token = token_of(&placed);
    wait_for(&bakery, &order_id, "baker_notified", LIMIT).await;
    let (status, _) = bakery.fulfil(&order_id).await;
    assert_eq!(status, 200);
    wait_for(&bakery, &order_id, "delivery_notified", LIMIT).await;
    let deliver = json!({"orderId": order_id, "orderReview": "Lovely!"});
    let (status, _) = bakery
        .post("/order/delivered", Some(&token), &deliver)
        .await;
    assert_eq!(status, 200);
    wait_for(&bakery, &order_id, "customer_service_notified", LIMIT).await;

    // The logger writes from its own thread: wait until all seven have
    // written their line about the order.
    let lines = eventually("a line about the order from each function", LIMIT, || {
        let lines = json_lines(&log_file);
        let order_id = order_id.clone();
        async move {
            let seen: BTreeSet<&str> = lines_about(&lines, &order_id)
                .into_iter()
                .filter_map(function_of)
                .collect();
            (seen.len() == FUNCTIONS.len()).then_some(lines.clone())
        }
    })
    .await;
    let about = lines_about(&lines, &order_id);
    let seen: BTreeSet<&str> = about.iter().copied().filter_map(function_of).collect();
    assert_eq!(seen, FUNCTIONS.into_iter().collect(), "{about:#?}");
    for line in &about {
        assert_eq!(line["span"]["correlationId"], "shop-req-42", "{line}");
        assert!(
            line["message"].is_string() && line["level"].is_string(),
            "{line}"
        );
    }
    let messages: BTreeSet<&str> = about.iter().filter_map(|l| l["message"].as_str()).collect();
    for message in [
        "order placed",
        "baker notified",
        "order fulfilled",
        "out for delivery",
        "partner notified",
        "order delivered",
    ] {
        assert!(
            messages.contains(message),
            "{message} missing: {messages:?}"
        );
    }

    // A correlation id that could forge a log line is not taken: the order
    // is still placed, under a new id that the answer names.
    let (placed, echoed) = place_with_correlation_id(&bakery, "bad id\" injected").await;
    assert_eq!(placed["correlationId"], echoed.as_str());
    assert!(uuid::Uuid::parse_str(&echoed).is_ok(), "{echoed}");
}
