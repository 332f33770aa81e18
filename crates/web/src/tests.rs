//! The pages and endpoints over the in-memory ports.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode, header};
use chrono::{Duration, Utc};
use domain::auth::{CustomerTokens, TokenHash};
use domain::memory::{MemoryOperations, MemoryStore, placed_order};
use domain::ports::{DeadLetterView, OperationsStatus, QueueDepth};
use domain::{Catalog, Status, Step, StepTime};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

use super::*;

const BAKER: &str = "baker-token-for-tests";

struct Setup {
    store: Arc<MemoryStore>,
    operations: Arc<MemoryOperations>,
    app: Router,
}

fn setup() -> Setup {
    setup_serving_operators(true)
}

/// [`setup`], with or without the operator's pages (the deployed `order`
/// function serves none).
fn setup_serving_operators(with_operator: bool) -> Setup {
    let store = Arc::new(MemoryStore::default());
    let operations = Arc::new(MemoryOperations::default());
    let catalog = Arc::new(Catalog::default());
    let app = router(WebDeps {
        store: store.clone(),
        customer_tokens: CustomerTokens::new("customer-secret"),
        queries: store.clone(),
        operations: with_operator.then(|| operations.clone() as Arc<dyn Operations>),
        catalog,
        baker_token: TokenHash::of(BAKER),
    });
    Setup {
        store,
        operations,
        app,
    }
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    text: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("{e}: {}", self.text))
    }
}

async fn send(app: &Router, request: Request<Body>) -> Answer {
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    Answer {
        status,
        headers,
        text: String::from_utf8(bytes.to_vec()).unwrap(),
    }
}

async fn get(app: &Router, uri: &str, token: Option<&str>) -> Answer {
    let mut request = Request::get(uri);
    if let Some(token) = token {
        request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    send(app, request.body(Body::empty()).unwrap()).await
}

async fn post(app: &Router, uri: &str, token: Option<&str>) -> Answer {
    let mut request = Request::post(uri);
    if let Some(token) = token {
        request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    send(app, request.body(Body::empty()).unwrap()).await
}

async fn post_form(app: &Router, form: &[(&str, &str)]) -> Answer {
    let body = serde_urlencoded::to_string(form).unwrap();
    let request = Request::post("/shop/order")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(body))
        .unwrap();
    send(app, request).await
}

fn assert_labelled(page: &str, ids: &[&str]) {
    for id in ids {
        assert!(
            page.contains(&format!(r#"<label for="{id}""#)),
            "no label for {id}"
        );
        assert!(page.contains(&format!(r#"id="{id}""#)), "no input {id}");
    }
}

#[tokio::test]
async fn the_shop_lists_the_cakes_with_prices_and_a_labelled_form() {
    let Setup { app, .. } = setup();
    let page = get(&app, "/", None).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let csp = page.headers[header::CONTENT_SECURITY_POLICY]
        .to_str()
        .unwrap();
    assert!(csp.contains("script-src 'self'"), "{csp}");
    assert_eq!(page.headers[header::CACHE_CONTROL], "no-store");
    let html = &page.text;
    assert!(html.contains("Chocolate cake") && html.contains("€32.00"));
    assert!(html.contains("Birthday cake") && html.contains("€45.00"));
    assert_labelled(html, &["name", "address", "productId", "quantity", "email"]);
    assert!(html.contains(r#"name="idempotencyKey" value="shop-"#));
    assert!(html.contains(r#"action="/shop/order""#));
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "no external assets"
    );
}

#[tokio::test]
async fn a_cards_choose_link_picks_its_cake_in_the_form_without_script() {
    let Setup { app, .. } = setup();
    let html = get(&app, "/", None).await.text;
    assert!(
        html.contains(r#"href="/?product=3#order-heading""#),
        "every card links to the form with its cake: {html}"
    );
    assert!(html.contains(r#"<option value="1" data-price-cents="3200" selected>"#));

    let chosen = get(&app, "/?product=3", None).await.text;
    assert!(chosen.contains(r#"<option value="3" data-price-cents="2400" selected>"#));
    assert!(!chosen.contains(r#"<option value="1" data-price-cents="3200" selected>"#));

    // A product that is not sold, or a strange query, falls back to the first.
    for uri in ["/?product=99", "/?product=%3Cscript%3E", "/?other=1"] {
        let page = get(&app, uri, None).await;
        assert_eq!(page.status, StatusCode::OK, "{uri}");
        assert!(
            page.text
                .contains(r#"<option value="1" data-price-cents="3200" selected>"#),
            "{uri}"
        );
    }
}

#[tokio::test]
async fn every_form_load_gets_its_own_idempotency_key() {
    let Setup { app, .. } = setup();
    let key = |html: String| {
        let start = html.find(r#"name="idempotencyKey" value=""#).unwrap() + 29;
        html[start..start + 41].to_string()
    };
    let first = key(get(&app, "/", None).await.text);
    let second = key(get(&app, "/", None).await.text);
    assert!(first.starts_with("shop-"), "{first}");
    assert_ne!(first, second);
}

#[tokio::test]
async fn the_form_without_script_places_the_order_once_and_confirms_it() {
    let Setup { app, store, .. } = setup();
    let form = [
        ("idempotencyKey", "shop-test-key-1"),
        ("name", "Ada Lovelace"),
        ("address", "12 Analytical Row\nLondon"),
        ("productId", "3"),
        ("quantity", "2"),
        ("email", ""),
    ];
    let page = post_form(&app, &form).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    assert_eq!(store.order_count(), 1);
    let order = store.events()[0].order.clone();
    assert_eq!(order.quantity, 2);
    assert_eq!(order.email, None, "an empty email is left out");
    let token = CustomerTokens::new("customer-secret").token_for(order.order_id);
    assert!(page.text.contains(&order.order_id.to_string()));
    assert!(
        page.text
            .contains(&format!("/track/{}#token={token}", order.order_id)),
        "the tracking link carries the token in its fragment"
    );
    assert!(page.text.contains("€48.00"), "2 × €24.00");
    assert!(!page.text.contains("We are emailing"), "no address given");

    // Posting the same form again (a reload) shows the same order.
    let again = post_form(&app, &form).await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(store.order_count(), 1);
    assert!(again.text.contains(&order.order_id.to_string()));
}

#[tokio::test]
async fn the_form_without_script_shows_each_error_beside_its_field() {
    let Setup { app, store, .. } = setup();
    let page = post_form(
        &app,
        &[
            ("idempotencyKey", "shop-test-key-2"),
            ("name", "<b>Ada</b>"),
            ("address", ""),
            ("productId", "1"),
            ("quantity", "0"),
            ("email", "not-an-email"),
        ],
    )
    .await;
    assert_eq!(page.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(store.order_count(), 0);
    let html = &page.text;
    assert!(
        html.contains("Quantity must be between 1 and 50."),
        "{html}"
    );
    assert!(html.contains("Address must not be blank."));
    assert!(html.contains("Email must be an email address"));
    assert!(html.contains(r#"id="quantity" name="quantity""#));
    assert!(html.contains(r#"aria-describedby="quantity-error" aria-invalid="true""#));
    assert!(!html.contains(r#"aria-describedby="name-error" aria-invalid="true""#));
    // What was typed comes back, escaped.
    assert!(html.contains("&#60;b&#62;Ada&#60;/b&#62;") || html.contains("&lt;b&gt;Ada"));
    assert!(!html.contains("<b>Ada</b>"));
    assert!(
        html.contains(r#"value="shop-test-key-2""#),
        "the key is kept"
    );
}

#[tokio::test]
async fn the_form_without_script_says_when_the_order_could_not_be_placed() {
    let Setup { app, store, .. } = setup();
    let form = |quantity| {
        [
            ("idempotencyKey", "shop-test-key-3"),
            ("name", "Ada Lovelace"),
            ("address", "12 Analytical Row"),
            ("productId", "3"),
            ("quantity", quantity),
        ]
    };
    *store.failure.lock().unwrap() = Some(domain::ports::StoreError::Unavailable(
        "database is locked".into(),
    ));
    let busy = post_form(&app, &form("2")).await;
    assert_eq!(busy.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        busy.text.contains("the bakery is busy; retry"),
        "{}",
        busy.text
    );
    assert!(!busy.text.contains("locked"), "no internal detail");
    assert!(
        busy.text.contains(r#"value="shop-test-key-3""#),
        "a retry keeps the key"
    );
    assert_eq!(store.order_count(), 0);

    *store.failure.lock().unwrap() = None;
    assert_eq!(post_form(&app, &form("2")).await.status, StatusCode::OK);
    // The same key for another order: refused, and the form gets a new
    // key so the customer can send this one.
    let reused = post_form(&app, &form("3")).await;
    assert_eq!(reused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(reused.text.contains("already used for a different request"));
    assert!(!reused.text.contains(r#"value="shop-test-key-3""#));
    assert_eq!(store.order_count(), 1);
}

#[tokio::test]
async fn a_non_numeric_quantity_is_named_not_dropped() {
    let Setup { app, .. } = setup();
    let page = post_form(
        &app,
        &[
            ("name", "Ada"),
            ("address", "1 Cake Street"),
            ("productId", "1"),
            ("quantity", "two"),
        ],
    )
    .await;
    assert_eq!(page.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(page.text.contains("Quantity must be a whole number."));
}

#[tokio::test]
async fn the_tracking_page_renders_the_timeline_and_the_delivery_form() {
    let Setup { app, .. } = setup();
    let id = placed_order().order_id;
    let page = get(&app, &format!("/track/{id}"), None).await;
    assert_eq!(page.status, StatusCode::OK);
    let html = &page.text;
    assert!(html.contains(&format!(r#"data-order-id="{id}""#)));
    for (step, label) in pages::CUSTOMER_STEPS {
        assert!(html.contains(&format!(r#"id="step-{}""#, step.as_str())));
        assert!(html.contains(label));
    }
    assert!(html.contains(r#"aria-live="polite""#));
    assert!(html.contains("I received my cake"));
    assert_labelled(html, &["orderReview"]);

    assert!(!html.contains("Thank you, your order is placed"));

    // Opened by the shop right after ordering, the same page is the
    // order's confirmation: its address survives a reload.
    let placed = get(&app, &format!("/track/{id}?placed=1"), None).await;
    assert_eq!(placed.status, StatusCode::OK);
    assert!(placed.text.contains("Thank you, your order is placed"));
    assert!(placed.text.contains(r#"id="placed""#));

    let bad = get(&app, "/track/not-an-id", None).await;
    assert_eq!(bad.status, StatusCode::NOT_FOUND);
    assert!(bad.text.contains("not complete"));
}

#[tokio::test]
async fn the_staff_pages_render_a_labelled_sign_in() {
    let Setup { app, .. } = setup();
    for uri in ["/baker", "/operator"] {
        let page = get(&app, uri, None).await;
        assert_eq!(page.status, StatusCode::OK, "{uri}");
        assert_labelled(&page.text, &["token"]);
        assert!(page.text.contains(r#"type="password""#));
    }
    let operator = get(&app, "/operator", None).await.text;
    assert!(operator.contains("Dead letters") && operator.contains("Recent errors"));
}

#[tokio::test]
async fn staff_endpoints_refuse_missing_and_wrong_tokens() {
    let Setup { app, .. } = setup();
    for (method, uri) in [
        ("GET", "/baker/orders"),
        ("GET", "/operator/status"),
        ("POST", "/operator/dead-letters/1/redrive"),
    ] {
        let call = |token| {
            let app = app.clone();
            async move {
                if method == "GET" {
                    get(&app, uri, token).await
                } else {
                    post(&app, uri, token).await
                }
            }
        };
        let none = call(None).await;
        assert_eq!(none.status, StatusCode::UNAUTHORIZED, "{uri}");
        assert_eq!(
            none.headers[header::CONTENT_TYPE],
            "application/problem+json"
        );
        let wrong = call(Some("not-the-baker-token")).await;
        assert_eq!(wrong.status, StatusCode::FORBIDDEN, "{uri}");
        let customer = call(Some(&format!("token-{}", placed_order().order_id))).await;
        assert_eq!(customer.status, StatusCode::FORBIDDEN, "{uri}");
    }
}

#[tokio::test]
async fn the_baker_sees_waiting_orders_oldest_first_with_totals() {
    let Setup { app, store, .. } = setup();
    let now = Utc::now();
    let make = |product: &str, name: &str, quantity: u32, minutes_ago: i64| {
        let mut order = placed_order();
        order.product_id = product.into();
        order.product_name = name.into();
        order.quantity = quantity;
        order.timeline = vec![StepTime {
            step: Step::Placed,
            at: now - Duration::minutes(minutes_ago),
        }];
        store.insert(order.clone());
        order
    };
    let newer = make("2", "Carrot cake", 1, 1);
    let older = make("1", "Chocolate cake", 2, 30);
    let middle = make("2", "Carrot cake", 3, 10);
    let mut done = make("1", "Chocolate cake", 5, 60);
    done.status = Status::Fulfilled;
    store.insert(done);

    let answer = get(&app, "/baker/orders", Some(BAKER)).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    let body = answer.json();
    let ids: Vec<&str> = body["waiting"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["orderId"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [older, middle, newer].map(|o| o.order_id.to_string()),
        "oldest first, only placed orders"
    );
    assert_eq!(body["waiting"][0]["productName"], "Chocolate cake");
    assert_eq!(body["waiting"][0]["quantity"], 2);
    assert!(
        body["waiting"][0].get("address").is_none(),
        "the baker does not need the address"
    );
    // Totals in catalog order: chocolate before carrot.
    assert_eq!(body["totals"][0]["productId"], 1);
    assert_eq!(body["totals"][0]["quantity"], 2);
    assert_eq!(body["totals"][1]["productId"], 2);
    assert_eq!(body["totals"][1]["quantity"], 4);
    assert_eq!(body["totals"][1]["orders"], 2);
    assert_eq!(body["more"], false);
}

fn letter(id: &str) -> DeadLetterView {
    DeadLetterView {
        id: id.into(),
        source: "delivery".into(),
        reason: "partner unavailable: HTTP 500".into(),
        attempts: 2,
        failed_at: Utc::now(),
        message_id: format!("message-{id}"),
        order_id: Some("0190-order".into()),
    }
}

#[tokio::test]
async fn the_operator_sees_the_status_and_redrives_a_dead_letter() {
    let Setup {
        app, operations, ..
    } = setup();
    *operations.status.lock().unwrap() = OperationsStatus {
        consumers: vec![domain::ports::ConsumerLag {
            name: "notify-baker".into(),
            lag: Some(3),
        }],
        queues: vec![QueueDepth {
            name: "delivery".into(),
            visible: 1,
            in_flight: 2,
        }],
        dead_letters: vec![letter("7"), letter("8")],
        recent_errors: Vec::new(),
    };
    let status = get(&app, "/operator/status", Some(BAKER)).await.json();
    assert_eq!(status["consumers"][0]["name"], "notify-baker");
    assert_eq!(status["consumers"][0]["lag"], 3);
    assert_eq!(status["queues"][0]["inFlight"], 2);
    assert_eq!(
        status["deadLetters"][0]["reason"],
        "partner unavailable: HTTP 500"
    );
    assert_eq!(status["deadLetters"][1]["id"], "8");

    let redriven = post(&app, "/operator/dead-letters/7/redrive", Some(BAKER)).await;
    assert_eq!(redriven.status, StatusCode::OK, "{}", redriven.text);
    assert_eq!(redriven.json()["redriven"], "7");
    assert_eq!(*operations.redriven.lock().unwrap(), ["7"]);
    let status = get(&app, "/operator/status", Some(BAKER)).await.json();
    assert_eq!(status["deadLetters"].as_array().unwrap().len(), 1);

    let again = post(&app, "/operator/dead-letters/7/redrive", Some(BAKER)).await;
    assert_eq!(again.status, StatusCode::NOT_FOUND);
    assert_eq!(
        again.headers[header::CONTENT_TYPE],
        "application/problem+json"
    );
    assert_eq!(again.json()["title"], "Dead letter not found");
}

#[tokio::test]
async fn storage_failures_are_problems_without_details() {
    let Setup {
        app, operations, ..
    } = setup();
    *operations.failure.lock().unwrap() = Some(domain::ports::StoreError::Failed(
        "disk on fire at page 7".into(),
    ));
    let answer = get(&app, "/operator/status", Some(BAKER)).await;
    assert_eq!(answer.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(!answer.text.contains("page 7"));
}

#[tokio::test]
async fn the_stylesheet_and_script_are_served_from_here() {
    let Setup { app, .. } = setup();
    let css = get(&app, "/static/style.css", None).await;
    assert_eq!(css.status, StatusCode::OK);
    assert_eq!(css.headers[header::CONTENT_TYPE], "text/css; charset=utf-8");
    let js = get(&app, "/static/bakery.js", None).await;
    assert_eq!(js.status, StatusCode::OK);
    assert!(js.text.contains("\"use strict\""));
    assert_eq!(
        get(&app, "/static/../Cargo.toml", None).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        get(&app, "/static/other.js", None).await.status,
        StatusCode::NOT_FOUND
    );
    let page = get(&app, "/", None).await.text;
    assert!(page.contains(&format!("/static/style.css?v={}", asset_version())));
}

#[tokio::test]
async fn without_operations_there_are_no_operator_routes_and_the_rest_still_serves() {
    let Setup { app, .. } = setup_serving_operators(false);
    for answer in [
        get(&app, "/operator", Some(BAKER)).await,
        get(&app, "/operator/status", Some(BAKER)).await,
        post(
            &app,
            "/operator/dead-letters/delivery:m-1/redrive",
            Some(BAKER),
        )
        .await,
    ] {
        assert_eq!(answer.status, StatusCode::NOT_FOUND, "{}", answer.text);
    }
    assert_eq!(get(&app, "/", None).await.status, StatusCode::OK);
    assert_eq!(get(&app, "/baker", None).await.status, StatusCode::OK);
    assert_eq!(
        get(&app, "/baker/orders", Some(BAKER)).await.status,
        StatusCode::OK
    );
}
