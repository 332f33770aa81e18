//! The HTTP contract at its edges, against the real binary: the seed's own
//! request as written, answers that tell a stranger nothing, headers read
//! before bodies, repeated headers, caching, heads too large, and request
//! logs that never carry what a client put in the path or query.

use reqwest::header::{CACHE_CONTROL, CONTENT_TYPE};
use serde_json::{Value, json};

use crate::support::*;

/// The body of the example request the product was specified with, byte
/// for byte (`tests/fixtures/seed-order-body.json`).
fn seed_body() -> Vec<u8> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/fixtures/seed-order-body.json"
    );
    std::fs::read(path).unwrap()
}

/// Status, content type and JSON body of an answer.
async fn answer(response: reqwest::Response) -> (u16, String, Value) {
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get(CONTENT_TYPE)
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let body = response.json().await.unwrap_or(Value::Null);
    (status, content_type, body)
}

#[tokio::test]
async fn the_seeds_order_as_written_reaches_customer_service() {
    let bakery = Bakery::start(&[]).await;
    let response = reqwest::Client::new()
        .post(format!("{}/order", bakery.url))
        .header(CONTENT_TYPE, "application/json")
        .body(seed_body())
        .send()
        .await
        .unwrap();
    let (status, _, placed) = answer(response).await;
    assert_eq!(status, 201, "{placed}");
    assert_eq!(placed["productId"], 1);
    assert_eq!(placed["productName"], "Chocolate cake");
    assert_eq!(placed["quantity"], 3);
    assert_eq!(placed["name"], "Yana Bahdanovich");
    assert!(placed.get("email").is_none());
    let order_id = id_of(&placed);
    let customer_token = token_of(&placed);

    wait_for(&bakery, &order_id, "baker_notified", LIMIT).await;
    let baker_mail = bakery.emails_to("baker@bakery.local", &order_id);
    assert_eq!(baker_mail.len(), 1);
    for needle in ["Chocolate cake", "Quantity:  3", "Inasaridze 2 deadlock 35"] {
        assert!(
            baker_mail[0].contains(needle),
            "{needle}:\n{}",
            baker_mail[0]
        );
    }

    let (status, fulfilled) = bakery.fulfil(&order_id).await;
    assert_eq!(status, 200, "{fulfilled}");
    wait_for(&bakery, &order_id, "delivery_notified", LIMIT).await;
    assert_eq!(
        bakery.emails_to("dispatch@delivery.local", &order_id).len(),
        1
    );
    let review = json!({"orderId": order_id, "orderReview": "The cake was wonderful"});
    let (status, delivered) = bakery
        .post("/order/delivered", Some(&customer_token), &review)
        .await;
    assert_eq!(status, 200, "{delivered}");
    let order = wait_for(&bakery, &order_id, "customer_service_notified", LIMIT).await;
    assert_eq!(steps_of(&order), EVERY_STEP);
    let care_mail = bakery.emails_to("care@bakery.local", &order_id);
    assert_eq!(care_mail.len(), 1);
    assert!(care_mail[0].contains("The cake was wonderful"));
}

#[tokio::test]
async fn numeric_ids_are_numbers_and_unknown_ids_of_either_kind_are_named() {
    let bakery = Bakery::start(&[]).await;
    let (_, catalog) = bakery.get("/products", None).await;
    let ids: Vec<Value> = catalog["products"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].clone())
        .collect();
    assert_eq!(ids, [1, 2, 3, 4, 5].map(|n| json!(n)));

    let mut as_string = order_body("Ada");
    as_string["productId"] = json!("2");
    let (status, placed) = bakery.post("/order", None, &as_string).await;
    assert_eq!(status, 201, "{placed}");
    assert_eq!(placed["productId"], 2, "written back as a number");

    for (id, named) in [
        (json!(9), "no product 9;"),
        (json!("wedding-cake"), r#"no product "wedding-cake";"#),
    ] {
        let mut body = order_body("Ada");
        body["productId"] = id;
        let (status, problem) = bakery.post("/order", None, &body).await;
        assert_eq!(status, 422, "{problem}");
        assert_eq!(problem["errors"][0]["field"], "productId");
        assert_eq!(problem["errors"][0]["code"], "unknown_product");
        assert!(
            problem["errors"][0]["message"]
                .as_str()
                .unwrap()
                .starts_with(named),
            "{problem}"
        );
    }
}

#[tokio::test]
async fn a_catalog_file_of_slugs_still_works() {
    let dir = tempfile::tempdir().unwrap();
    let catalog = dir.path().join("catalog.json");
    std::fs::write(
        &catalog,
        r#"{"currency": "GBP", "products": [
            {"id": "wedding-cake", "name": "Wedding cake", "priceCents": 25000},
            {"id": 7, "name": "Scones", "priceCents": 900}]}"#,
    )
    .unwrap();
    let bakery = Bakery::start(&["--catalog", catalog.to_str().unwrap()]).await;
    let (_, products) = bakery.get("/products", None).await;
    assert_eq!(products["products"][0]["id"], "wedding-cake");
    assert_eq!(products["products"][1]["id"], 7);
    for id in [json!("wedding-cake"), json!(7), json!("7")] {
        let mut body = order_body("Ada");
        body["productId"] = id.clone();
        let (status, placed) = bakery.post("/order", None, &body).await;
        assert_eq!(status, 201, "{id}: {placed}");
    }
    let mut body = order_body("Ada");
    body["productId"] = json!(1);
    let (status, problem) = bakery.post("/order", None, &body).await;
    assert_eq!(status, 422, "{problem}");
    assert_eq!(problem["errors"][0]["code"], "unknown_product");
}

#[tokio::test]
async fn tokens_are_checked_before_the_body_is_read_or_measured() {
    let bakery = Bakery::start(&[]).await;
    // A connection whose request body was left unread is closed after the
    // answer, so each request gets its own.
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    // Just over the 16 KiB limit: read and measured it would be 413.
    let oversized = "x".repeat(17 * 1024);
    for path in ["/order/fulfilled", "/order/delivered"] {
        for body in ["{not json", oversized.as_str()] {
            let response = client
                .post(format!("{}{path}", bakery.url))
                .header(CONTENT_TYPE, "application/json")
                .body(body.to_string())
                .send()
                .await
                .unwrap();
            let (status, content_type, _) = answer(response).await;
            assert_eq!(status, 401, "{path} with {} bytes", body.len());
            assert_eq!(content_type, "application/problem+json");
        }
    }
    // The cake maker's route also refuses a wrong token before the body.
    let response = client
        .post(format!("{}/order/fulfilled", bakery.url))
        .bearer_auth("not-the-baker")
        .body(oversized)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
}

#[tokio::test]
async fn paths_that_are_not_text_are_unknown_not_bad_requests() {
    let bakery = Bakery::start(&[]).await;
    let client = reqwest::Client::new();
    for path in ["/order/%FF", "/track/%FF", "/static/%FF", "/order/%C3%28"] {
        let response = client
            .get(format!("{}{path}", bakery.url))
            .bearer_auth(BAKER_TOKEN)
            .send()
            .await
            .unwrap();
        let (status, content_type, body) = answer(response).await;
        assert_eq!(status, 404, "{path}");
        assert_eq!(content_type, "application/problem+json", "{path}");
        assert_eq!(body["status"], 404, "{path}");
    }
}

#[tokio::test]
async fn header_bytes_that_are_not_text_are_answered_in_problem_json() {
    let bakery = Bakery::start(&[]).await;
    let client = reqwest::Client::new();
    let not_text = reqwest::header::HeaderValue::from_bytes(b"key-\xff").unwrap();
    let response = client
        .post(format!("{}/order", bakery.url))
        .header("idempotency-key", not_text.clone())
        .json(&order_body("Ada"))
        .send()
        .await
        .unwrap();
    let (status, content_type, problem) = answer(response).await;
    assert_eq!(status, 422, "{problem}");
    assert_eq!(content_type, "application/problem+json");
    assert_eq!(problem["errors"][0]["field"], "Idempotency-Key");
    let response = client
        .get(format!("{}/order/{}", bakery.url, uuid::Uuid::now_v7()))
        .header("authorization", not_text)
        .send()
        .await
        .unwrap();
    let (status, content_type, _) = answer(response).await;
    assert_eq!(status, 401);
    assert_eq!(content_type, "application/problem+json");
}

#[tokio::test]
async fn repeated_token_and_key_headers_are_refused() {
    let bakery = Bakery::start(&[]).await;
    let placed = bakery.order("Ada").await;
    let client = reqwest::Client::new();

    let response = client
        .get(format!("{}/order/{}", bakery.url, id_of(&placed)))
        .header("authorization", format!("Bearer {BAKER_TOKEN}"))
        .header("authorization", format!("Bearer {}", token_of(&placed)))
        .send()
        .await
        .unwrap();
    let (status, content_type, problem) = answer(response).await;
    assert_eq!(status, 400, "{problem}");
    assert_eq!(content_type, "application/problem+json");
    assert!(
        problem["type"]
            .as_str()
            .unwrap()
            .ends_with("/repeated-header")
    );

    let response = client
        .post(format!("{}/order", bakery.url))
        .header("idempotency-key", "first-key")
        .header("idempotency-key", "second-key")
        .json(&order_body("Bob"))
        .send()
        .await
        .unwrap();
    let (status, _, problem) = answer(response).await;
    assert_eq!(status, 400, "{problem}");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("Idempotency-Key")
    );
    assert_eq!(
        bakery.count("SELECT count(*) FROM orders"),
        1,
        "no second order"
    );
}

#[tokio::test]
async fn answers_with_personal_data_are_not_cached() {
    let bakery = Bakery::start(&[]).await;
    let client = reqwest::Client::new();
    let response = client
        .post(format!("{}/order", bakery.url))
        .json(&order_body("Ada"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()[CACHE_CONTROL], "no-store");
    let placed: Value = response.json().await.unwrap();
    let order_id = id_of(&placed);
    let (status, _) = bakery.fulfil(&order_id).await;
    assert_eq!(status, 200);
    for (path, token) in [
        (format!("/order/{order_id}"), token_of(&placed)),
        (format!("/order/{order_id}"), BAKER_TOKEN.to_string()),
        ("/baker/orders".to_string(), BAKER_TOKEN.to_string()),
        ("/operator/status".to_string(), BAKER_TOKEN.to_string()),
    ] {
        let response = client
            .get(format!("{}{path}", bakery.url))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{path}");
        assert_eq!(response.headers()[CACHE_CONTROL], "no-store", "{path}");
    }
    let response = client
        .post(format!("{}/order/fulfilled", bakery.url))
        .bearer_auth(BAKER_TOKEN)
        .json(&json!({"orderId": order_id}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()[CACHE_CONTROL], "no-store");
}

#[tokio::test]
async fn heads_larger_than_the_api_reads_are_answered_in_problem_json() {
    let bakery = Bakery::start(&[]).await;
    let client = reqwest::Client::new();
    let long_query = "a".repeat(9 * 1024);
    let response = client
        .get(format!("{}/products?{long_query}", bakery.url))
        .send()
        .await
        .unwrap();
    let (status, content_type, _) = answer(response).await;
    assert_eq!(status, 414);
    assert_eq!(content_type, "application/problem+json");

    let mut many = client.get(format!("{}/products", bakery.url));
    for n in 0..80 {
        many = many.header(format!("x-extra-{n}"), "1");
    }
    let (status, content_type, _) = answer(many.send().await.unwrap()).await;
    assert_eq!(status, 431);
    assert_eq!(content_type, "application/problem+json");

    let big = "b".repeat(17 * 1024);
    let response = client
        .get(format!("{}/products", bakery.url))
        .header("x-big", big)
        .send()
        .await
        .unwrap();
    let (status, content_type, _) = answer(response).await;
    assert_eq!(status, 431);
    assert_eq!(content_type, "application/problem+json");
    // Still serving.
    assert_eq!(bakery.get("/products", None).await.0, 200);
}

#[tokio::test]
async fn debug_logs_never_carry_a_query_string_or_a_token() {
    let logs = tempfile::tempdir().unwrap();
    let log_file = logs.path().join("stderr.log");
    let mut bakery = Bakery::start_custom(Custom {
        args: test_flags(),
        log: Some("debug".into()),
        stderr: Some(log_file.clone()),
        ..Custom::default()
    })
    .await;
    let placed = bakery.order("Ada").await;
    let (order_id, customer_token) = (id_of(&placed), token_of(&placed));
    let client = reqwest::Client::new();
    let secret = "query-secret-7f3a";
    for (method, path) in [
        (
            "GET",
            format!("/order/{order_id}?waitFor=placed&token={secret}"),
        ),
        ("GET", format!("/order/{order_id}?{secret}")),
        ("GET", format!("/track/{order_id}?token={customer_token}")),
        ("GET", format!("/{secret}/{customer_token}")),
        ("GET", format!("/products?access_token={customer_token}")),
        ("POST", format!("/order?{secret}={customer_token}")),
        ("POST", format!("/order/delivered?{secret}")),
    ] {
        let request = match method {
            "GET" => client.get(format!("{}{path}", bakery.url)),
            _ => client
                .post(format!("{}{path}", bakery.url))
                .json(&json!({"orderId": order_id})),
        };
        let response = request.bearer_auth(&customer_token).send().await.unwrap();
        assert!(response.status().as_u16() < 500, "{path}");
    }
    assert!(bakery.interrupt().await.success());
    let log = std::fs::read_to_string(&log_file).unwrap();
    assert!(
        log.contains(r#"route="/order/{order_id}""#),
        "requests are logged at debug, by route:\n{log}"
    );
    for (what, needle) in [
        ("query string", secret),
        ("customer token", customer_token.as_str()),
        ("baker token", BAKER_TOKEN),
        ("query marker", "?"),
    ] {
        let found: Vec<&str> = log.lines().filter(|l| l.contains(needle)).collect();
        assert!(found.is_empty(), "{what} in the debug log: {found:#?}");
    }
}
