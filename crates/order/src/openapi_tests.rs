//! `docs/openapi.yaml` against the code: it parses, it names exactly the
//! routes the three HTTP functions serve (as the runner and API Gateway
//! put them behind one address), each route answers with a status the
//! document lists, and its schemas have exactly the fields and limits of
//! the JSON the code reads and writes.

use std::collections::BTreeSet;

use super::*;
use axum::body::Body;
use axum::http::Request;
use domain::memory::{MemoryQueue, MemoryStore, placed_order};
use domain::ports::AdvanceThenSend;
use domain::validation::{FieldError, ValidationErrors};
use domain::{Status, Step};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

/// Every route of the `order`, `fulfilled` and `delivered` routers.
const ROUTES: &[(&str, &str)] = &[
    ("post", "/order"),
    ("get", "/order/{orderId}"),
    ("get", "/products"),
    ("get", "/openapi.yaml"),
    ("post", "/order/fulfilled"),
    ("post", "/order/delivered"),
];

fn doc() -> Value {
    serde_norway::from_str(OPENAPI_YAML).expect("docs/openapi.yaml is YAML")
}

fn schema<'a>(doc: &'a Value, name: &str) -> &'a Value {
    let schema = &doc["components"]["schemas"][name];
    assert!(schema.is_object(), "no schema {name}");
    schema
}

fn property_names(schema: &Value) -> BTreeSet<String> {
    schema["properties"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect()
}

fn required(schema: &Value) -> BTreeSet<String> {
    schema["required"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect()
}

fn keys(json: &Value) -> BTreeSet<String> {
    json.as_object().unwrap().keys().cloned().collect()
}

/// The API as the runner serves it: the three routers merged.
fn api() -> Router {
    let store = Arc::new(MemoryStore::default());
    let baker_token = TokenHash::of("baker-secret");
    Router::new()
        .merge(router(Deps {
            store: store.clone(),
            catalog: Arc::new(Catalog::default()),
            customer_tokens: CustomerTokens::new("token-secret"),
            baker_token,
            max_wait: std::time::Duration::ZERO,
        }))
        .merge(fulfilled::router(fulfilled::Deps {
            store: store.clone(),
            baker_token,
        }))
        .merge(delivered::router(delivered::Deps {
            store: store.clone(),
            to_feedback: Arc::new(AdvanceThenSend {
                store,
                queue: Arc::new(MemoryQueue::default()),
            }),
        }))
}

async fn send(method: &str, path: &str, body: &str) -> (u16, Option<String>, Vec<u8>) {
    let request = Request::builder()
        .method(method.to_uppercase().as_str())
        .uri(path)
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    let response = api().oneshot(request).await.unwrap();
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap().to_string());
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, content_type, bytes.to_vec())
}

#[tokio::test]
async fn the_document_lists_exactly_the_routes_and_their_answers() {
    let doc = doc();
    assert_eq!(doc["openapi"], "3.0.3");
    let documented: BTreeSet<(String, String)> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .unwrap()
                .keys()
                .map(move |method| (method.clone(), path.clone()))
        })
        .collect();
    let routed: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    assert_eq!(documented, routed);

    let id = "0195f1c2-7a44-7c3e-9d6b-2b1f4a5c6d7e";
    for (method, path) in ROUTES {
        // An empty object and no token: each route answers as itself (a
        // problem or a success), never the router's bare 404 or 405.
        let (status, content_type, _) = send(method, &path.replace("{orderId}", id), "{}").await;
        assert!(
            status != 405 && (status != 404 || content_type.is_some()),
            "{method} {path} is not routed: {status}"
        );
        let operation = &doc["paths"][path][method];
        assert!(
            operation["responses"][status.to_string()].is_object(),
            "{method} {path} answered {status}, which the document does not list"
        );
        assert!(operation["operationId"].is_string());
    }
    // Other methods on the same paths are not routed.
    for (method, path) in [
        ("get", "/order"),
        ("delete", "/order/{orderId}"),
        ("get", "/order/fulfilled"),
        ("put", "/order/delivered"),
        ("post", "/products"),
    ] {
        let (status, _, _) = send(method, &path.replace("{orderId}", id), "{}").await;
        assert_eq!(status, 405, "{method} {path}");
    }
}

#[tokio::test]
async fn the_document_is_served_as_yaml() {
    let (status, content_type, body) = send("get", "/openapi.yaml", "").await;
    assert_eq!(status, 200);
    assert_eq!(content_type.as_deref(), Some("application/yaml"));
    assert_eq!(body, OPENAPI_YAML.as_bytes());
}

#[tokio::test]
async fn schemas_have_exactly_the_fields_of_the_json() {
    let doc = doc();

    // An order with every optional field, and one with none.
    let mut full = placed_order();
    full.fulfillment_id = Some("oven-1".into());
    full.delivery_company_id = Some("van-1".into());
    full.order_review = Some("nice".into());
    full.correlation_id = Some("req-1".into());
    let mut bare = placed_order();
    bare.email = None;
    let order = schema(&doc, "Order");
    assert_eq!(
        property_names(order),
        keys(&serde_json::to_value(&full).unwrap())
    );
    assert_eq!(required(order), keys(&serde_json::to_value(&bare).unwrap()));
    assert_eq!(order["additionalProperties"], false);

    // What POST /order answers: the order and its token.
    let body = json!({"name": "Ada", "address": "1 Row", "productId": 3, "quantity": 1});
    let (status, content_type, bytes) = send("post", "/order", &body.to_string()).await;
    assert_eq!(status, 201);
    assert_eq!(content_type.as_deref(), Some("application/json"));
    let placed: Value = serde_json::from_slice(&bytes).unwrap();
    let placed_schema = schema(&doc, "PlacedOrder");
    let mut expected = property_names(order);
    expected.insert("customerToken".into());
    assert_eq!(property_names(placed_schema), expected);
    assert_eq!(
        placed_schema["properties"]["customerToken"]["type"],
        "string"
    );
    // A new order always has its correlation id; an order stored before
    // they existed has none, so `Order` leaves it optional.
    let mut expected = required(order);
    expected.insert("customerToken".into());
    expected.insert("correlationId".into());
    assert_eq!(required(placed_schema), expected);
    assert_eq!(keys(&placed), expected, "no email given: only the required");
    for (name, property) in order["properties"].as_object().unwrap() {
        assert_eq!(
            &placed_schema["properties"][name], property,
            "PlacedOrder.{name} as Order.{name}"
        );
    }

    // Status and steps.
    let statuses: Vec<String> = [
        Status::Placed,
        Status::Fulfilled,
        Status::OutForDelivery,
        Status::Delivered,
    ]
    .iter()
    .map(|s| s.as_str().to_string())
    .collect();
    assert_eq!(
        schema(&doc, "Status")["enum"],
        serde_json::to_value(&statuses).unwrap()
    );
    let steps: Vec<&str> = Step::ALL.iter().map(|s| s.as_str()).collect();
    assert_eq!(schema(&doc, "Step")["enum"], json!(steps));
    let step_time = serde_json::to_value(&full.timeline[0]).unwrap();
    assert_eq!(property_names(schema(&doc, "StepTime")), keys(&step_time));

    // The catalog.
    let catalog = serde_json::to_value(Catalog::default()).unwrap();
    assert_eq!(property_names(schema(&doc, "Catalog")), keys(&catalog));
    assert_eq!(
        property_names(schema(&doc, "Product")),
        keys(&catalog["products"][0])
    );

    // Problems: every field any of them has is described.
    let problem = schema(&doc, "Problem");
    let invalid = ValidationErrors(vec![FieldError {
        field: "name".into(),
        code: "required",
        message: "is required".into(),
    }]);
    let mut seen = BTreeSet::new();
    for error in [
        ApiError::InvalidFields(invalid),
        ApiError::OutOfOrder {
            current: Status::Placed,
            wanted: Status::Delivered,
        },
        ApiError::Unavailable("busy".into()),
        ApiError::TooLarge,
    ] {
        let response = error.into_response();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let json: Value = serde_json::from_slice(&bytes).unwrap();
        assert!(required(problem).is_subset(&keys(&json)), "{json}");
        seen.extend(keys(&json));
        if let Some(errors) = json.get("errors") {
            assert_eq!(property_names(schema(&doc, "FieldError")), keys(&errors[0]));
        }
    }
    assert_eq!(property_names(problem), seen);
}

#[test]
fn limits_in_the_document_are_the_validators() {
    let doc = doc();
    let request = &schema(&doc, "OrderRequest")["properties"];
    let max = |schema: &Value, key: &str| schema[key].as_u64().unwrap() as usize;
    assert_eq!(max(&request["name"], "maxLength"), limits::NAME_CHARS);
    assert_eq!(max(&request["address"], "maxLength"), limits::ADDRESS_CHARS);
    assert_eq!(max(&request["email"], "maxLength"), limits::EMAIL_CHARS);
    assert_eq!(
        max(&request["quantity"], "maximum") as u64,
        limits::MAX_QUANTITY
    );
    assert_eq!(max(&request["quantity"], "minimum"), 1);
    let fulfil = &schema(&doc, "FulfilRequest")["properties"];
    assert_eq!(
        max(&fulfil["fulfillmentId"], "maxLength"),
        limits::REFERENCE_CHARS
    );
    let deliver = &schema(&doc, "DeliverRequest")["properties"];
    assert_eq!(
        max(&deliver["deliveryCompanyId"], "maxLength"),
        limits::REFERENCE_CHARS
    );
    assert_eq!(
        max(&deliver["orderReview"], "maxLength"),
        limits::REVIEW_CHARS
    );
    let key = &doc["components"]["parameters"]["IdempotencyKey"]["schema"];
    assert_eq!(max(key, "maxLength"), limits::IDEMPOTENCY_KEY_CHARS);
    assert_eq!(
        required(schema(&doc, "OrderRequest")),
        ["address", "name", "productId", "quantity"]
            .map(String::from)
            .into()
    );
}
