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
//!
//! The handlers only speak HTTP: what placing and reading an order do is
//! in the `use-cases` crate ([`use_cases::place_order`],
//! [`use_cases::read_order`]), which the shop's form without script calls
//! too.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use domain::auth::{CustomerTokens, TokenHash};
use domain::correlation;
use domain::ports::OrderStore;
use domain::validation::{self, FieldError, OrderRequest, limits};
use domain::{Catalog, Order, OrderId};
use lambda_kit::http::{
    ApiError, Bearer, CorrelationId, IdempotencyKeyHeader, JsonBody, PathSegment, no_store,
};
use serde::{Deserialize, Serialize};
use use_cases::{OrderRead, PlaceOrder, PlacedOrder, WaitFor};

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
struct PlacedOrderBody<'a> {
    #[serde(flatten)]
    order: &'a Order,
    /// Secret; needed for `GET /order/{orderId}` and `POST /order/delivered`.
    customer_token: &'a str,
}

/// `POST /order`: [`use_cases::place_order`].
async fn place_order(
    State(deps): State<Deps>,
    IdempotencyKeyHeader(idempotency_key): IdempotencyKeyHeader,
    CorrelationId(correlation_id): CorrelationId,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let request = OrderRequest::parse(&body, &deps.catalog)?;
    let place = PlaceOrder {
        request,
        idempotency_key,
        correlation_id,
    };
    let placed =
        use_cases::place_order(&*deps.store, &deps.catalog, &deps.customer_tokens, place).await?;
    let PlacedOrder {
        order,
        customer_token,
        replayed,
    } = placed;
    let body = PlacedOrderBody {
        order: &order,
        customer_token: &customer_token,
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

/// `GET /order/{orderId}`: [`use_cases::read_order`], waiting as the
/// query and the `Prefer` header ask, within [`Deps::max_wait`].
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
    let wait = wait_for.map(|step| WaitFor {
        step,
        at_most: prefer_wait(&headers).map_or(deps.max_wait, |asked| asked.min(deps.max_wait)),
    });
    let OrderRead { order, waited } =
        use_cases::read_order(&*deps.store, &deps.baker_token, order_id, &token, wait).await?;
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
