//! Step 1 of the flow: a customer orders a cake.
//!
//! `POST /order` validates the order against the catalog and stores it
//! with status `placed` together with its `order_placed` event, in one
//! write, before it answers `201`: the event is then certain to reach the
//! stream (`OrderStore::place`). The answer carries the customer's token, which the
//! customer needs to follow the order and to confirm delivery. A retry with
//! the same `Idempotency-Key` answers with the same order and token.
//!
//! This function also serves the reads: `GET /order/{orderId}` (the
//! customer's token or the cake maker's) and `GET /products` (public),
//! and the API's description, `GET /openapi.yaml` ([`OPENAPI_YAML`]).
//!
//! `GET /order/{orderId}?waitFor=<step>` is a long-poll: it answers once
//! the order's timeline has that step, or after `Prefer: wait=<seconds>`
//! (at most [`Deps::max_wait`], which is also the default), whichever is
//! first. A customer's page or a client following an order then asks once
//! per step instead of polling. It only waits on stores that can say when
//! an order changes ([`OrderStore::watch`]); the others answer at once,
//! without `Preference-Applied`, and the client polls.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::Utc;
use domain::auth::{CustomerTokens, TokenHash};
use domain::correlation;
use domain::events::{Event, EventType};
use domain::ports::{IdempotencyKey, NewOrder, OrderStore, Placed};
use domain::validation::{self, FieldError, OrderRequest, limits};
use domain::{Catalog, Order, OrderId, Status, Step, StepTime};
use lambda_kit::http::{
    ApiError, Bearer, CorrelationId, IdempotencyKeyHeader, JsonBody, PathSegment, no_store,
};
use lambda_kit::logs;
use serde::{Deserialize, Serialize};
use tracing::Instrument;

/// What the order function needs.
#[derive(Clone)]
pub struct Deps {
    pub store: Arc<dyn OrderStore>,
    pub catalog: Arc<Catalog>,
    pub customer_tokens: CustomerTokens,
    /// Hash of the cake maker's token, who may read every order.
    pub baker_token: TokenHash,
    /// The longest a `GET /order/{orderId}?waitFor=…` waits; keep it
    /// below the request timeout in front of it.
    pub max_wait: Duration,
}

/// The OpenAPI document of the whole API (this function's routes and those
/// of `fulfilled` and `delivered`), `docs/openapi.yaml` in the repository.
pub const OPENAPI_YAML: &str = include_str!("../../../docs/openapi.yaml");

/// The routes this function serves.
pub fn router(deps: Deps) -> Router {
    // Orders carry names, addresses and tokens: no cache may keep them.
    let orders = Router::new()
        .route("/order", post(place_order))
        .route("/order/{order_id}", get(get_order))
        .layer(axum::middleware::map_response(no_store));
    Router::new()
        .merge(orders)
        .route("/products", get(list_products))
        .route("/openapi.yaml", get(openapi))
        .layer(DefaultBodyLimit::max(limits::BODY_BYTES))
        .with_state(deps)
}

/// An order as answered to the customer who placed it.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PlacedOrder<'a> {
    #[serde(flatten)]
    order: &'a Order,
    /// Secret; needed for `GET /order/{orderId}` and `POST /order/delivered`.
    customer_token: String,
}

async fn place_order(
    State(deps): State<Deps>,
    IdempotencyKeyHeader(idempotency_key): IdempotencyKeyHeader,
    CorrelationId(correlation_id): CorrelationId,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let request = OrderRequest::parse(&body, &deps.catalog)?;
    let product = deps
        .catalog
        .find(&request.product_id)
        .ok_or_else(|| ApiError::Internal("validated product vanished".into()))?;

    let order_id = OrderId(uuid::Uuid::now_v7());
    let now = Utc::now();
    let order = Order {
        order_id,
        status: Status::Placed,
        name: request.name.clone(),
        address: request.address.clone(),
        email: request.email.clone(),
        product_id: product.id.clone(),
        product_name: product.name.clone(),
        quantity: request.quantity,
        unit_price_cents: product.price_cents,
        total_cents: u64::from(product.price_cents) * u64::from(request.quantity),
        currency: deps.catalog.currency.clone(),
        fulfillment_id: None,
        delivery_company_id: None,
        order_review: None,
        timeline: vec![StepTime {
            step: Step::Placed,
            at: now,
        }],
        correlation_id: Some(correlation_id.clone()),
        customer_token_hash: TokenHash::of(&deps.customer_tokens.token_for(order_id)),
    };
    let new = NewOrder {
        event: Event::new(EventType::OrderPlaced, &order, now),
        idempotency: idempotency_key.map(|key| IdempotencyKey {
            key,
            fingerprint: request.fingerprint(),
        }),
        order,
    };
    let span = logs::order_span(order_id, Some(&correlation_id));
    let placed = deps.store.place(&new).instrument(span.clone()).await?;
    let (order, replayed) = match placed {
        Placed::Created(order) => (order, false),
        // The order stored then, with its own id and correlation id.
        Placed::Replayed(order) => (order, true),
        Placed::KeyReused => return Err(ApiError::IdempotencyKeyReused),
    };
    if replayed {
        // The stored order's own id and correlation id.
        let span = logs::order_span(order.order_id, order.correlation_id.as_deref());
        span.in_scope(|| tracing::info!(replayed, "order placed"));
    } else {
        span.in_scope(|| tracing::info!(replayed, "order placed"));
        lambda_kit::metrics::order_placed();
    }
    let body = PlacedOrder {
        customer_token: deps.customer_tokens.token_for(order.order_id),
        order: &order,
    };
    let mut response = (StatusCode::CREATED, Json(body)).into_response();
    if let Ok(location) = HeaderValue::from_str(&format!("/order/{}", order.order_id)) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    if replayed {
        response
            .headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    if let Some(Ok(id)) = order.correlation_id.as_deref().map(HeaderValue::from_str) {
        response.headers_mut().insert(correlation::HEADER, id);
    }
    Ok(response)
}

/// The query of `GET /order/{orderId}`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GetOrderQuery {
    wait_for: Option<String>,
}

async fn get_order(
    State(deps): State<Deps>,
    Bearer(token): Bearer,
    PathSegment(order_id): PathSegment,
    query: Result<Query<GetOrderQuery>, QueryRejection>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(|rejection| {
        ApiError::InvalidFields(validation::ValidationErrors(vec![FieldError {
            field: "query".into(),
            code: "format",
            message: rejection.body_text(),
        }]))
    })?;
    let wait_for = query
        .wait_for
        .as_deref()
        .map(validation::wait_for)
        .transpose()
        .map_err(|e| ApiError::InvalidFields(validation::ValidationErrors(vec![e])))?;
    let order_id = OrderId::parse(&order_id).ok_or(ApiError::NotFound)?;
    let read = || async { deps.store.get(order_id).await?.ok_or(ApiError::NotFound) };
    // Watch before reading: a change between the read and the watch would
    // otherwise go unnoticed.
    let reached = wait_for.and_then(|step| deps.store.watch(order_id, step));
    let mut order = read().await?;
    // Either token is checked in full, so timing tells nothing about which
    // one came close. Another order's token is told "not found", exactly as
    // for an order that does not exist.
    let is_baker = deps.baker_token.matches(&token);
    let is_customer = order.customer_token_hash.matches(&token);
    if !(is_baker | is_customer) {
        return Err(ApiError::NotFound);
    }
    let mut waited = None;
    if let (Some(step), Some(reached)) = (wait_for, reached) {
        if order.at(step).is_none() {
            let wait =
                prefer_wait(&headers).map_or(deps.max_wait, |asked| asked.min(deps.max_wait));
            waited = Some(wait);
            order = match tokio::time::timeout(wait, reached).await {
                Ok(Some(order)) => order,
                // The wait is over, or the store stopped watching: the order
                // as it is now.
                Ok(None) | Err(_) => read().await?,
            };
        }
    }
    let mut response = Json(order).into_response();
    if let Some(wait) = waited {
        if let Ok(applied) = HeaderValue::from_str(&format!("wait={}", wait.as_secs())) {
            response.headers_mut().insert("preference-applied", applied);
        }
    }
    Ok(response)
}

/// The `wait` preference of RFC 7240 (`Prefer: wait=<seconds>`), if the
/// request states one that can be read.
fn prefer_wait(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get_all("prefer")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter_map(|preference| {
            // A preference may carry parameters after `;`, ignored here.
            let (name, value) = preference.split(';').next()?.split_once('=')?;
            name.trim().eq_ignore_ascii_case("wait").then_some(value)
        })
        .find_map(|value| value.trim().trim_matches('"').parse::<u64>().ok())
        .map(Duration::from_secs)
}

async fn list_products(State(deps): State<Deps>) -> Json<Arc<Catalog>> {
    Json(deps.catalog.clone())
}

/// `application/yaml` is the media type of RFC 9512.
async fn openapi() -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/yaml"),
        )],
        OPENAPI_YAML,
    )
}

#[cfg(test)]
mod openapi_tests;
#[cfg(test)]
mod tests;
