use super::*;
use axum::body::Body;
use axum::http::Request;
use chrono::Utc;
use domain::events::EventType;
use domain::memory::MemoryStore;
use domain::ports::{NewOrder, Placed, StoreError};
use domain::{Order, Step};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

const BAKER: &str = "baker-secret";

fn setup() -> (Arc<MemoryStore>, Router) {
    let store = Arc::new(MemoryStore::default());
    let deps = Deps {
        store: store.clone(),
        catalog: Arc::new(Catalog::default()),
        customer_tokens: CustomerTokens::new("token-secret"),
        baker_token: TokenHash::of(BAKER),
        max_wait: Duration::from_secs(5),
    };
    (store, router(deps))
}

async fn call(app: &Router, request: Request<Body>) -> (StatusCode, HeaderMap, Value) {
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (status, headers, body)
}

fn post_order(body: Value, key: Option<&str>) -> Request<Body> {
    let mut request = Request::post("/order").header("content-type", "application/json");
    if let Some(key) = key {
        request = request.header("idempotency-key", key);
    }
    request.body(Body::from(body.to_string())).unwrap()
}

fn get(path: &str, token: Option<&str>) -> Request<Body> {
    let mut request = Request::get(path);
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    request.body(Body::empty()).unwrap()
}

fn cake() -> Value {
    json!({"name": "Ada Lovelace", "address": "12 Analytical Row", "productId": 3, "quantity": 2})
}

#[tokio::test]
async fn placing_an_order_stores_it_and_announces_it() {
    let (store, app) = setup();
    let (status, headers, body) = call(&app, post_order(cake(), None)).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(body["status"], "placed");
    assert_eq!(body["totalCents"], 4800);
    assert_eq!(body["currency"], "EUR");
    assert_eq!(body["productName"], "Lemon tart");
    assert_eq!(body["timeline"][0]["step"], "placed");
    let token = body["customerToken"].as_str().unwrap();
    assert_eq!(token.len(), 43);
    let id = body["orderId"].as_str().unwrap();
    assert_eq!(headers["location"], format!("/order/{id}").as_str());

    let events = store.events();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].event_type, EventType::OrderPlaced);
    assert_eq!(events[0].order_id.to_string(), id);
}

#[tokio::test]
async fn a_retry_with_the_same_key_returns_the_same_order_and_token() {
    let (store, app) = setup();
    let (_, _, first) = call(&app, post_order(cake(), Some("key-1"))).await;
    let (status, headers, second) = call(&app, post_order(cake(), Some("key-1"))).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(headers["idempotent-replayed"], "true");
    assert_eq!(first["orderId"], second["orderId"]);
    assert_eq!(first["customerToken"], second["customerToken"]);
    assert_eq!(store.order_count(), 1);
    assert_eq!(store.events().len(), 1);
}

#[tokio::test]
async fn a_key_reused_for_another_request_is_refused() {
    let (store, app) = setup();
    call(&app, post_order(cake(), Some("key-1"))).await;
    let mut other = cake();
    other["quantity"] = json!(3);
    let (status, _, body) = call(&app, post_order(other, Some("key-1"))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        body["type"]
            .as_str()
            .unwrap()
            .ends_with("idempotency-key-reused")
    );
    assert_eq!(store.order_count(), 1);
}

#[tokio::test]
async fn bad_idempotency_keys_are_refused() {
    let (store, app) = setup();
    let (status, _, body) = call(&app, post_order(cake(), Some("has space"))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["errors"][0]["field"], "Idempotency-Key");
    assert_eq!(store.order_count(), 0);
}

#[tokio::test]
async fn invalid_orders_list_every_field_and_store_nothing() {
    let (store, app) = setup();
    let body = json!({"name": "", "productId": "pavlova", "quantity": 0});
    let (status, headers, problem) = call(&app, post_order(body, None)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(headers["content-type"], "application/problem+json");
    let fields: Vec<&str> = problem["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, vec!["name", "address", "productId", "quantity"]);
    assert_eq!(store.order_count(), 0);
    assert!(store.events().is_empty());
}

#[tokio::test]
async fn busy_storage_answers_503_and_stores_nothing() {
    let (store, app) = setup();
    *store.failure.lock().unwrap() = Some(StoreError::Unavailable("database is locked".into()));
    let (status, headers, body) = call(&app, post_order(cake(), Some("k"))).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(headers["retry-after"], "1");
    assert!(
        !body.to_string().contains("locked"),
        "internal detail leaked"
    );
}

#[tokio::test]
async fn orders_are_readable_by_their_customer_and_the_baker_only() {
    let (_, app) = setup();
    let (_, _, placed) = call(&app, post_order(cake(), None)).await;
    let id = placed["orderId"].as_str().unwrap();
    let token = placed["customerToken"].as_str().unwrap();
    let path = format!("/order/{id}");

    let (status, _, body) = call(&app, get(&path, Some(token))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["orderId"], id);
    assert!(
        body.get("customerToken").is_none(),
        "token is returned once"
    );
    assert_eq!(call(&app, get(&path, Some(BAKER))).await.0, StatusCode::OK);
    assert_eq!(
        call(&app, get(&path, Some("guess"))).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        call(&app, get(&path, None)).await.0,
        StatusCode::UNAUTHORIZED
    );

    // Another customer's token does not open this order, and is told
    // exactly what it is told of an order that does not exist.
    let (_, _, other) = call(&app, post_order(cake(), None)).await;
    let other_token = other["customerToken"].as_str().unwrap();
    let (status, not_yours_headers, not_yours) = call(&app, get(&path, Some(other_token))).await;
    let unknown = format!("/order/{}", uuid::Uuid::now_v7());
    let (_, no_such_headers, no_such) = call(&app, get(&unknown, Some(other_token))).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(not_yours, no_such);
    assert_eq!(
        not_yours_headers[header::CONTENT_TYPE],
        no_such_headers[header::CONTENT_TYPE]
    );
}

#[tokio::test]
async fn a_path_segment_that_is_not_text_is_an_unknown_order() {
    let (_, app) = setup();
    let (status, headers, body) = call(&app, get("/order/%FF", Some(BAKER))).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(headers[header::CONTENT_TYPE], "application/problem+json");
    assert_eq!(body["status"], 404);
}

#[tokio::test]
async fn answers_with_personal_data_are_not_kept_by_caches() {
    let (_, app) = setup();
    let (status, headers, placed) = call(&app, post_order(cake(), None)).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(headers[header::CACHE_CONTROL], "no-store");
    let path = format!("/order/{}", placed["orderId"].as_str().unwrap());
    let (status, headers, _) = call(&app, get(&path, Some(BAKER))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[header::CACHE_CONTROL], "no-store");
    // The catalog is public and may be cached as the client likes.
    let (_, headers, _) = call(&app, get("/products", None)).await;
    assert!(headers.get(header::CACHE_CONTROL).is_none());
}

#[tokio::test]
async fn a_repeated_token_or_key_header_is_refused_not_guessed() {
    let (store, app) = setup();
    let (_, _, placed) = call(&app, post_order(cake(), None)).await;
    let path = format!("/order/{}", placed["orderId"].as_str().unwrap());
    let two_tokens = Request::get(&path)
        .header("authorization", format!("Bearer {BAKER}"))
        .header("authorization", "Bearer guess")
        .body(Body::empty())
        .unwrap();
    let (status, headers, body) = call(&app, two_tokens).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["type"].as_str().unwrap().ends_with("/repeated-header"));
    assert!(body["detail"].as_str().unwrap().contains("Authorization"));
    assert_eq!(
        headers[header::WWW_AUTHENTICATE],
        r#"Bearer error="invalid_request""#
    );

    let orders_before = store.events().len();
    let two_keys = Request::post("/order")
        .header("content-type", "application/json")
        .header("idempotency-key", "key-1")
        .header("idempotency-key", "key-2")
        .body(Body::from(cake().to_string()))
        .unwrap();
    let (status, _, body) = call(&app, two_keys).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["detail"].as_str().unwrap().contains("Idempotency-Key"));
    assert_eq!(store.events().len(), orders_before, "no order placed");
}

#[tokio::test]
async fn unknown_and_malformed_order_ids_are_404() {
    let (_, app) = setup();
    let unknown = format!("/order/{}", uuid::Uuid::now_v7());
    assert_eq!(
        call(&app, get(&unknown, Some(BAKER))).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        call(&app, get("/order/42", Some(BAKER))).await.0,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn the_catalog_is_public() {
    let (_, app) = setup();
    let (status, _, body) = call(&app, get("/products", None)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["currency"], "EUR");
    assert_eq!(body["products"][0]["id"], 1);
    assert_eq!(body["products"][0]["priceCents"], 3200);
}

/// A memory store that can say when an order changes (as the embedded one
/// does), and counts the reads waiting on it.
struct WatchedStore {
    inner: Arc<MemoryStore>,
    changes: tokio::sync::watch::Sender<u64>,
    watches: tokio::sync::watch::Sender<usize>,
}

#[async_trait::async_trait]
impl OrderStore for WatchedStore {
    async fn place(&self, new: &NewOrder) -> Result<Placed, StoreError> {
        self.inner.place(new).await
    }

    async fn get(&self, order_id: OrderId) -> Result<Option<Order>, StoreError> {
        self.inner.get(order_id).await
    }

    async fn advance(
        &self,
        transition: &domain::Transition,
        announce: Option<EventType>,
    ) -> Result<domain::ports::Advanced, StoreError> {
        self.inner.advance(transition, announce).await
    }

    async fn record_step(
        &self,
        order_id: OrderId,
        step: Step,
        at: chrono::DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.inner.record_step(order_id, step, at).await?;
        self.changes.send_modify(|count| *count += 1);
        Ok(())
    }

    fn watch(&self, order_id: OrderId, step: Step) -> Option<domain::ports::StepReached> {
        let mut changes = self.changes.subscribe();
        self.watches.send_modify(|count| *count += 1);
        let orders = Arc::clone(&self.inner);
        Some(Box::pin(async move {
            loop {
                changes.changed().await.ok()?;
                let order = orders.order(order_id)?;
                if order.at(step).is_some() {
                    return Some(order);
                }
            }
        }))
    }
}

fn watched_setup(max_wait: Duration) -> (Arc<WatchedStore>, Router) {
    let store = Arc::new(WatchedStore {
        inner: Arc::default(),
        changes: tokio::sync::watch::channel(0).0,
        watches: tokio::sync::watch::channel(0).0,
    });
    let deps = Deps {
        store: store.clone(),
        catalog: Arc::new(Catalog::default()),
        customer_tokens: CustomerTokens::new("token-secret"),
        baker_token: TokenHash::of(BAKER),
        max_wait,
    };
    (store, router(deps))
}

fn get_waiting(path: &str, token: &str, prefer: Option<&str>) -> Request<Body> {
    let mut request = Request::get(path).header("authorization", format!("Bearer {token}"));
    if let Some(prefer) = prefer {
        request = request.header("prefer", prefer);
    }
    request.body(Body::empty()).unwrap()
}

/// A read that must answer at once (well within its 10 s here).
async fn answered_at_once(app: &Router, request: Request<Body>) -> (StatusCode, HeaderMap, Value) {
    tokio::time::timeout(Duration::from_secs(10), call(app, request))
        .await
        .expect("answered at once, not after the wait")
}

fn steps(order: &Value) -> Vec<&str> {
    order["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|step| step["step"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn a_read_waiting_for_a_step_answers_once_the_step_is_recorded() {
    let (store, app) = watched_setup(Duration::from_secs(30));
    let (_, _, placed) = call(&app, post_order(cake(), None)).await;
    let id = placed["orderId"].as_str().unwrap().to_string();
    let token = placed["customerToken"].as_str().unwrap().to_string();
    let path = format!("/order/{id}?waitFor=baker_notified");

    let mut watches = store.watches.subscribe();
    let waiting = tokio::spawn({
        let app = app.clone();
        async move { call(&app, get_waiting(&path, &token, Some("wait=20"))).await }
    });
    // The read is waiting once it has watched the order.
    tokio::time::timeout(Duration::from_secs(10), watches.wait_for(|n| *n >= 1))
        .await
        .unwrap()
        .unwrap();
    assert!(!waiting.is_finished());

    let order_id = OrderId::parse(&id).unwrap();
    store
        .record_step(order_id, Step::BakerNotified, Utc::now())
        .await
        .unwrap();
    let (status, headers, body) = tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status, StatusCode::OK);
    assert_eq!(steps(&body), ["placed", "baker_notified"]);
    assert_eq!(headers["preference-applied"], "wait=20");
}

#[tokio::test]
async fn a_read_waiting_for_a_step_answers_after_the_wait_without_it() {
    // Asked for longer than the server allows: the server's limit (here
    // none at all) wins and says so.
    let (_, app) = watched_setup(Duration::ZERO);
    let (_, _, placed) = call(&app, post_order(cake(), None)).await;
    let path = format!(
        "/order/{}?waitFor=delivered",
        placed["orderId"].as_str().unwrap()
    );
    let token = placed["customerToken"].as_str().unwrap();
    let (status, headers, body) = call(&app, get_waiting(&path, token, Some("wait=600"))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(steps(&body), ["placed"]);
    assert_eq!(headers["preference-applied"], "wait=0");
}

#[tokio::test]
async fn a_step_already_there_is_answered_at_once() {
    let (_, app) = watched_setup(Duration::from_secs(30));
    let (_, _, placed) = call(&app, post_order(cake(), None)).await;
    let path = format!(
        "/order/{}?waitFor=placed",
        placed["orderId"].as_str().unwrap()
    );
    let (status, headers, body) = answered_at_once(&app, get_waiting(&path, BAKER, None)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(steps(&body), ["placed"]);
    assert!(headers.get("preference-applied").is_none());
}

#[tokio::test]
async fn a_store_that_cannot_watch_answers_at_once_without_preference_applied() {
    let (_, app) = setup();
    let (_, _, placed) = call(&app, post_order(cake(), None)).await;
    let path = format!(
        "/order/{}?waitFor=delivered",
        placed["orderId"].as_str().unwrap()
    );
    let token = placed["customerToken"].as_str().unwrap();
    let (status, headers, body) =
        answered_at_once(&app, get_waiting(&path, token, Some("wait=5"))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(steps(&body), ["placed"]);
    assert!(headers.get("preference-applied").is_none());
}

#[tokio::test]
async fn waiting_reads_check_the_token_and_the_step_first() {
    let (_, app) = watched_setup(Duration::from_secs(30));
    let (_, _, placed) = call(&app, post_order(cake(), None)).await;
    let id = placed["orderId"].as_str().unwrap();

    // Answered at once, not after the 30 s wait.
    let path = format!("/order/{id}?waitFor=delivered");
    let (status, _, _) = answered_at_once(&app, get_waiting(&path, "guess", None)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let path = format!("/order/{id}?waitFor=baked");
    let (status, _, body) = call(&app, get_waiting(&path, BAKER, None)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["errors"][0]["field"], "waitFor");

    // No token, and an order nobody has: refused at once too.
    let path = format!("/order/{id}?waitFor=delivered");
    let (status, _, _) = answered_at_once(&app, get(&path, None)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let path = format!("/order/{}?waitFor=delivered", uuid::Uuid::now_v7());
    let (status, _, _) = answered_at_once(&app, get_waiting(&path, BAKER, None)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // An empty step is no step.
    let path = format!("/order/{id}?waitFor=");
    let (status, _, body) = call(&app, get_waiting(&path, BAKER, None)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["errors"][0]["field"], "waitFor");

    let path = format!("/order/{id}?waitFor=placed&waitFor=delivered");
    let (status, _, body) = call(&app, get_waiting(&path, BAKER, None)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["errors"][0]["field"], "query");
}

#[test]
fn the_wait_preference_is_read_as_rfc_7240_writes_it() {
    let wait = |values: &[&str]| {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append("prefer", HeaderValue::from_str(value).unwrap());
        }
        prefer_wait(&headers)
    };
    assert_eq!(wait(&["wait=7"]), Some(Duration::from_secs(7)));
    assert_eq!(
        wait(&["respond-async, WAIT = 3"]),
        Some(Duration::from_secs(3))
    );
    assert_eq!(
        wait(&["handling=lenient", "wait=\"4\""]),
        Some(Duration::from_secs(4))
    );
    assert_eq!(wait(&["wait=2; extra=1"]), Some(Duration::from_secs(2)));
    assert_eq!(wait(&["wait=soon"]), None);
    assert_eq!(wait(&["wait=-1"]), None);
    assert_eq!(wait(&["wait=99999999999999999999999"]), None);
    assert_eq!(wait(&["return=minimal"]), None);
    assert_eq!(wait(&[]), None);
}
