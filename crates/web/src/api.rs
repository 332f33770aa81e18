//! The JSON endpoints only the cake maker's and the operator's pages use.
//! All take the baker token as a bearer token; errors are problem+json
//! like the rest of the API.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use std::sync::Arc;

use domain::ports::{Operations, OperationsStatus};
use domain::{OrderId, Status, Step};
use lambda_kit::http::{ApiError, PathSegment, bearer_token};
use serde::Serialize;

use crate::AppState;

/// The most waiting orders one answer lists.
pub(crate) const WAITING_LIMIT: usize = 500;

/// Lets the cake maker in: `401` without a bearer token, `403` with a
/// wrong one (compared in constant time).
fn require_baker(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    let token = bearer_token(headers)?;
    if state.deps.baker_token.matches(token) {
        Ok(())
    } else {
        Err(ApiError::Forbidden)
    }
}

/// An order waiting to be baked: what the cake maker needs, no more (no
/// address, no email).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct WaitingOrder {
    pub order_id: OrderId,
    #[serde(with = "domain::catalog::product_id_json")]
    pub product_id: String,
    pub product_name: String,
    pub quantity: u32,
    /// The customer's name, for the label on the box.
    pub name: String,
    pub placed_at: Option<DateTime<Utc>>,
}

/// How many of one cake to bake.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ProductTotal {
    #[serde(with = "domain::catalog::product_id_json")]
    pub product_id: String,
    pub product_name: String,
    pub quantity: u64,
    pub orders: u64,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct BakerOrders {
    /// Oldest first.
    pub waiting: Vec<WaitingOrder>,
    /// Per product over `waiting`, in catalog order.
    pub totals: Vec<ProductTotal>,
    /// More orders wait than `waiting` lists.
    pub more: bool,
}

/// `GET /baker/orders`: the orders waiting to be baked (status `placed`),
/// oldest first, and the totals per product over all of them (whatever
/// day they were placed; the page says "Cakes to bake" over "all N
/// waiting orders"). The page keeps its rows in place between answers and
/// compares ids, so this stays a plain snapshot.
pub(crate) async fn baker_orders(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<BakerOrders>, ApiError> {
    require_baker(&state, &headers)?;
    let mut orders = state
        .deps
        .queries
        .orders_with_status(Status::Placed, WAITING_LIMIT + 1)
        .await?;
    let more = orders.len() > WAITING_LIMIT;
    orders.truncate(WAITING_LIMIT);

    let mut totals: Vec<ProductTotal> = Vec::new();
    for order in &orders {
        match totals.iter_mut().find(|t| t.product_id == order.product_id) {
            Some(total) => {
                total.quantity += u64::from(order.quantity);
                total.orders += 1;
            }
            None => totals.push(ProductTotal {
                product_id: order.product_id.clone(),
                product_name: order.product_name.clone(),
                quantity: u64::from(order.quantity),
                orders: 1,
            }),
        }
    }
    let catalog = &state.deps.catalog;
    let rank = |id: &str| {
        catalog
            .products
            .iter()
            .position(|p| p.id == id)
            .unwrap_or(usize::MAX)
    };
    totals.sort_by_key(|t| rank(&t.product_id));

    let waiting = orders
        .into_iter()
        .map(|order| WaitingOrder {
            placed_at: order.at(Step::Placed),
            order_id: order.order_id,
            product_id: order.product_id,
            product_name: order.product_name,
            quantity: order.quantity,
            name: order.name,
        })
        .collect();
    Ok(Json(BakerOrders {
        waiting,
        totals,
        more,
    }))
}

/// `GET /operator/status`: stream lag per consumer, queue depths, dead
/// letters and the latest failures.
pub(crate) async fn operator_status(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<OperationsStatus>, ApiError> {
    require_baker(&state, &headers)?;
    Ok(Json(operations(&state)?.status().await?))
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Redriven {
    redriven: String,
}

/// `POST /operator/dead-letters/{id}/redrive`: puts one dead letter back
/// where it came from; `404` if there is no such dead letter.
pub(crate) async fn redrive_dead_letter(
    State(state): State<AppState>,
    headers: HeaderMap,
    PathSegment(id): PathSegment,
) -> Result<Response, ApiError> {
    require_baker(&state, &headers)?;
    if operations(&state)?.redrive(id.clone()).await? {
        tracing::info!(dead_letter = %id, "dead letter redriven from the operator's page");
        Ok(Json(Redriven { redriven: id }).into_response())
    } else {
        Ok(dead_letter_not_found())
    }
}

/// The operator's port; the routes are only there when it is.
fn operations(state: &AppState) -> Result<&Arc<dyn Operations>, ApiError> {
    state.deps.operations.as_ref().ok_or(ApiError::NotFound)
}

/// [`ApiError::NotFound`] speaks of orders; this is the same problem about
/// a dead letter.
fn dead_letter_not_found() -> Response {
    let body = serde_json::json!({
        "type": "https://bakery.example/problems/not-found",
        "title": "Dead letter not found",
        "status": 404,
        "detail": "no such dead letter; it may have been redriven already",
    });
    let mut response = (StatusCode::NOT_FOUND, body.to_string()).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    response
}
