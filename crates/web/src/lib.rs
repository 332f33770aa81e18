//! The bakery's web pages, for the three people who use it:
//!
//! - the customer: the shop (`/`) with the catalog and the order form, and
//!   the tracking page (`/track/{orderId}`) that follows the order live and
//!   confirms delivery with a review;
//! - the cake maker: `/baker`, the orders waiting to be baked, one click
//!   each to mark them fulfilled;
//! - the operator: `/operator`, stream lag, queue depths, dead letters with
//!   a redrive button each, and the latest failures.
//!
//! Pages are rendered on the server (askama templates in `templates/`)
//! with one small stylesheet and one small script (`static/`), both served
//! by this router: the pages load nothing from elsewhere, and a
//! Content-Security-Policy says so. The script talks to the JSON API (the
//! `order`, `fulfilled` and `delivered` functions) and to the few JSON
//! endpoints here that only the pages need. The shop's form posted without
//! script places its order through the same use case as `POST /order`
//! ([`use_cases::place_order`]).
//!
//! [`router`] is a plain axum [`Router`]: the local runner merges it beside
//! the API, and on AWS the `order` function can merge it into its own.
//!
//! # Tokens
//!
//! The customer's token travels in the tracking link's fragment
//! (`/track/{orderId}#token=...`): browsers never send fragments to the
//! server, so the token stays out of access logs, proxies and `Referer`
//! headers; the page's script reads it and sends it as a bearer token. The
//! cake maker types the baker token once; it is kept in `sessionStorage`
//! (gone when the tab closes) and sent as a bearer token. The JSON
//! endpoints compare it in constant time ([`TokenHash::matches`]).
//!
//! # Layout
//!
//! - `lib.rs`: [`WebDeps`], [`router`], static files and page headers.
//! - `pages.rs`: the HTML pages and the shop's form post without script.
//! - `api.rs`: the JSON endpoints of the cake maker's and operator's pages.

mod api;
mod pages;

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use domain::Catalog;
use domain::auth::{CustomerTokens, TokenHash};
use domain::ports::{Operations, OrderQueries, OrderStore};
use domain::validation::limits;
use lambda_kit::http::{ApiError, PathSegment, no_store};

/// What the pages need.
#[derive(Clone)]
pub struct WebDeps {
    /// The order table with its stream: the shop's form posted without
    /// script places its order there through [`use_cases::place_order`],
    /// exactly as `POST /order` does.
    pub store: Arc<dyn OrderStore>,
    /// The key of the customers' tokens: the shop's confirmation carries
    /// the order's token in its tracking link.
    pub customer_tokens: CustomerTokens,
    /// Orders by status, for the cake maker.
    pub queries: Arc<dyn OrderQueries>,
    /// Lag, depths and dead letters, for the operator. `None`: no operator
    /// pages here (the deployed `order` function faces the internet and
    /// holds no operator powers; operators run `bakery` with their own
    /// credentials).
    pub operations: Option<Arc<dyn Operations>>,
    pub catalog: Arc<Catalog>,
    /// Hash of the cake maker's token, which the cake maker's and the
    /// operator's pages need.
    pub baker_token: TokenHash,
}

#[derive(Clone)]
pub(crate) struct AppState {
    pub deps: WebDeps,
    /// Changes whenever a static file does, so browsers never run a stale
    /// script against a new page.
    pub asset_version: Arc<str>,
}

/// Every page and every page-only JSON endpoint:
///
/// | route | what |
/// |-------|------|
/// | `GET /` | the shop |
/// | `POST /shop/order` | the shop's form without script |
/// | `GET /track/{orderId}` | following an order (token in the fragment) |
/// | `GET /baker` | the cake maker's page |
/// | `GET /baker/orders` | JSON, baker token: orders to bake, oldest first, and totals |
/// | `GET /operator` | the operator's page (with [`WebDeps::operations`]) |
/// | `GET /operator/status` | JSON, baker token: lag, depths, dead letters, failures (likewise) |
/// | `POST /operator/dead-letters/{id}/redrive` | JSON, baker token (likewise) |
/// | `GET /static/{file}` | `style.css`, `bakery.js` |
pub fn router(deps: WebDeps) -> Router {
    let state = AppState {
        deps,
        asset_version: asset_version().into(),
    };
    let with_operator = state.deps.operations.is_some();
    // Orders to bake and dead letters name customers: no cache may keep
    // them.
    let mut personal_data = Router::new().route("/baker/orders", get(api::baker_orders));
    let mut pages = Router::new()
        .route("/", get(pages::shop))
        .route("/shop/order", post(pages::shop_order))
        .route("/track/{order_id}", get(pages::track))
        .route("/baker", get(pages::baker));
    if with_operator {
        personal_data = personal_data
            .route("/operator/status", get(api::operator_status))
            .route(
                "/operator/dead-letters/{id}/redrive",
                post(api::redrive_dead_letter),
            );
        pages = pages.route("/operator", get(pages::operator));
    }
    let personal_data = personal_data.layer(axum::middleware::map_response(no_store));
    pages
        .merge(personal_data)
        .route("/static/{file}", get(static_file))
        .layer(DefaultBodyLimit::max(limits::BODY_BYTES))
        .with_state(state)
}

const STYLE: &str = include_str!("../static/style.css");
const SCRIPT: &str = include_str!("../static/bakery.js");

fn asset_version() -> String {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    STYLE.hash(&mut hasher);
    SCRIPT.hash(&mut hasher);
    format!("{:x}", hasher.finish() & 0xffff_ffff)
}

async fn static_file(PathSegment(file): PathSegment) -> Response {
    let (body, content_type) = match file.as_str() {
        "style.css" => (STYLE, "text/css; charset=utf-8"),
        "bakery.js" => (SCRIPT, "text/javascript; charset=utf-8"),
        _ => return ApiError::NotFound.into_response(),
    };
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            // Pages ask for `?v=<asset version>`, so a long cache is safe.
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=86400"),
            ),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
        ],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests;
