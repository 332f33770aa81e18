//! Bad input gets a clear problem+json answer and changes nothing.

use serde_json::{Value, json};

use crate::support::*;

/// Sends a raw body to `path` and checks the problem answer.
async fn refused(
    bakery: &Bakery,
    path: &str,
    token: Option<&str>,
    body: &str,
    status: u16,
) -> Value {
    let mut request = bakery
        .client
        .post(format!("{}{path}", bakery.url))
        .header("content-type", "application/json")
        .body(body.to_string());
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status().as_u16(), status, "{path} {body:.200}");
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_string();
    assert_eq!(content_type, "application/problem+json", "{body:.200}");
    let problem: Value = response.json().await.unwrap();
    assert_eq!(problem["status"], status);
    assert!(!problem["detail"].as_str().unwrap().is_empty());
    assert!(problem["type"].as_str().unwrap().starts_with("https://"));
    problem
}

fn fields(problem: &Value) -> Vec<(String, String)> {
    problem["errors"]
        .as_array()
        .map(|errors| {
            errors
                .iter()
                .map(|e| {
                    (
                        e["field"].as_str().unwrap().to_string(),
                        e["code"].as_str().unwrap().to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn with(field: &str, value: Value) -> String {
    let mut body = order_body("Ada");
    body[field] = value;
    body.to_string()
}

#[tokio::test]
async fn bad_orders_are_refused_field_by_field_and_store_nothing() {
    let bakery = Bakery::start(&[]).await;
    let placed = bakery.order("Ada").await;
    let orders_before = bakery.count("SELECT count(*) FROM orders");
    let events_before = bakery.count("SELECT count(*) FROM stream");

    let problem = refused(&bakery, "/order", None, "{\"name\": ", 400).await;
    assert!(
        problem["type"]
            .as_str()
            .unwrap()
            .ends_with("malformed-json")
    );
    refused(&bakery, "/order", None, "", 400).await;

    let problem = refused(&bakery, "/order", None, "{}", 422).await;
    let missing: Vec<String> = fields(&problem).into_iter().map(|(f, _)| f).collect();
    for field in ["name", "address", "productId", "quantity"] {
        assert!(missing.contains(&field.to_string()), "{field} in {problem}");
    }
    refused(&bakery, "/order", None, "[1, 2]", 422).await;
    refused(&bakery, "/order", None, "\"cake\"", 422).await;

    let cases: Vec<(String, &str, &str)> = vec![
        (with("quantity", json!("two")), "quantity", "type"),
        (with("quantity", json!(0)), "quantity", "range"),
        (with("quantity", json!(-3)), "quantity", "range"),
        (
            with("quantity", json!(1_000_000_000_000u64)),
            "quantity",
            "range",
        ),
        (with("quantity", json!(1.5)), "quantity", "type"),
        (with("name", json!(42)), "name", "type"),
        (with("name", json!("")), "name", "required"),
        (with("name", json!("x".repeat(101))), "name", "too_long"),
        (
            with("address", json!("y".repeat(501))),
            "address",
            "too_long",
        ),
        (
            with("productId", json!("wedding-tower-9000")),
            "productId",
            "unknown_product",
        ),
        (with("email", json!("not-an-email")), "email", "format"),
    ];
    for (body, field, code) in cases {
        let problem = refused(&bakery, "/order", None, &body, 422).await;
        let errors = fields(&problem);
        assert!(
            errors.iter().any(|(f, c)| f == field && c == code),
            "expected {field}/{code} for {body:.120}, got {errors:?}"
        );
    }
    let huge = with("address", json!("z".repeat(20_000)));
    let problem = refused(&bakery, "/order", None, &huge, 413).await;
    assert!(problem["detail"].as_str().unwrap().contains("bytes"));

    // Fulfilment: the cake maker only, known orders only.
    let order_id = placed["orderId"].as_str().unwrap();
    let body = json!({"orderId": order_id}).to_string();
    refused(&bakery, "/order/fulfilled", None, &body, 401).await;
    refused(&bakery, "/order/fulfilled", Some("guess"), &body, 403).await;
    let customer = placed["customerToken"].as_str().unwrap();
    refused(&bakery, "/order/fulfilled", Some(customer), &body, 403).await;
    let unknown = json!({"orderId": "0190b8a0-0000-7000-8000-000000000000"}).to_string();
    refused(
        &bakery,
        "/order/fulfilled",
        Some(BAKER_TOKEN),
        &unknown,
        404,
    )
    .await;
    let problem = refused(
        &bakery,
        "/order/fulfilled",
        Some(BAKER_TOKEN),
        r#"{"orderId": "abc"}"#,
        422,
    )
    .await;
    assert_eq!(fields(&problem)[0].0, "orderId");

    // Delivery: the customer's own token, and only once it is on its way.
    refused(&bakery, "/order/delivered", None, &body, 401).await;
    refused(&bakery, "/order/delivered", Some(BAKER_TOKEN), &body, 404).await;
    let problem = refused(&bakery, "/order/delivered", Some(customer), &body, 409).await;
    assert_eq!(problem["currentStatus"], "placed");
    let long_review = json!({"orderId": order_id, "orderReview": "r".repeat(2001)}).to_string();
    refused(
        &bakery,
        "/order/delivered",
        Some(customer),
        &long_review,
        422,
    )
    .await;

    // Reads.
    let (status, _) = bakery.get(&format!("/order/{order_id}"), None).await;
    assert_eq!(status, 401);
    let (status, _) = bakery
        .get(
            "/order/0190b8a0-0000-7000-8000-000000000000",
            Some(BAKER_TOKEN),
        )
        .await;
    assert_eq!(status, 404);
    let (status, problem) = bakery.get("/no/such/route", None).await;
    assert_eq!(status, 404);
    assert_eq!(problem["status"], 404);

    assert_eq!(bakery.count("SELECT count(*) FROM orders"), orders_before);
    assert_eq!(bakery.count("SELECT count(*) FROM stream"), events_before);
    let order = bakery.order_status(order_id).await;
    assert_eq!(order["status"], "placed");
}

#[tokio::test]
async fn repeats_are_idempotent_and_announce_nothing_twice() {
    let bakery = Bakery::start(&[]).await;
    let key = "order-attempt-42";
    let send = |body: Value| {
        let bakery = &bakery;
        async move {
            let response = bakery
                .client
                .post(format!("{}/order", bakery.url))
                .header("idempotency-key", key)
                .json(&body)
                .send()
                .await
                .unwrap();
            (
                response.status().as_u16(),
                response.json::<Value>().await.unwrap(),
            )
        }
    };
    let (status, first) = send(order_body("Ada")).await;
    assert_eq!(status, 201);
    let (status, again) = send(order_body("Ada")).await;
    assert_eq!(status, 201);
    assert_eq!(first["orderId"], again["orderId"]);
    assert_eq!(first["customerToken"], again["customerToken"]);
    let (status, problem) = send(order_body("Someone Else")).await;
    assert_eq!(status, 422, "{problem}");
    assert!(
        problem["type"]
            .as_str()
            .unwrap()
            .ends_with("idempotency-key-reused")
    );
    assert_eq!(bakery.count("SELECT count(*) FROM orders"), 1);

    let order_id = first["orderId"].as_str().unwrap();
    let body = json!({"orderId": order_id});
    let mut fulfilled_at = Vec::new();
    for _ in 0..3 {
        let (status, order) = bakery
            .post("/order/fulfilled", Some(BAKER_TOKEN), &body)
            .await;
        assert_eq!(status, 200, "{order}");
        // Dispatch may already have sent it on; it never goes back.
        assert!(["fulfilled", "out_for_delivery"].contains(&order["status"].as_str().unwrap()));
        let step = order["timeline"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["step"] == "fulfilled");
        fulfilled_at.push(step.unwrap()["at"].clone());
    }
    assert!(
        fulfilled_at.windows(2).all(|w| w[0] == w[1]),
        "{fulfilled_at:?}"
    );
    assert_eq!(
        bakery.count("SELECT count(*) FROM stream"),
        2,
        "one order_placed and one order_fulfilled, however often fulfilled is repeated"
    );
    let bad_key = bakery
        .client
        .post(format!("{}/order", bakery.url))
        .header("idempotency-key", "k".repeat(300))
        .json(&order_body("Ada"))
        .send()
        .await
        .unwrap();
    assert_eq!(bad_key.status().as_u16(), 422);
}
