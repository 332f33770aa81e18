//! The HTML pages, and the shop's order form posted without script.

use std::sync::Arc;

use askama::Template;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use bytes::Bytes;
use domain::correlation;
use domain::validation::{FieldError, OrderRequest};
use domain::{OrderId, Step};
use lambda_kit::http::{ApiError, PathSegment};
use serde::Deserialize;
use serde_json::{Map, Value};
use use_cases::{PlaceOrder, PlacedOrder};

use crate::AppState;
use domain::money::format_money;

/// Sent with every page: nothing but this origin may supply scripts,
/// styles, images or be fetched, and no other site may frame the pages.
/// `no-store`, because the confirmation carries the customer's token.
fn page_headers() -> [(header::HeaderName, HeaderValue); 4] {
    [
        (
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(
                "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                 connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
            ),
        ),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
        (
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ),
        (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
    ]
}

fn render(status: StatusCode, page: &impl Template) -> Response {
    match page.render() {
        Ok(body) => (status, page_headers(), Html(body)).into_response(),
        Err(error) => {
            ApiError::Internal(format!("rendering a page failed: {error}")).into_response()
        }
    }
}

/// The steps a customer follows, in their words, each reached when the
/// order's timeline has that step. "On its way" waits for the delivery
/// company to have been told, not for the order's status: a delivery
/// request that failed must not look like a cake on the road. The other
/// steps (the order fulfilled, the review passed on) are the bakery's.
pub(crate) const CUSTOMER_STEPS: [(Step, &str); 4] = [
    (Step::Placed, "Order placed"),
    (Step::BakerNotified, "Baking"),
    (Step::DeliveryNotified, "On its way"),
    (Step::Delivered, "Delivered"),
];

// ---------------------------------------------------------------- shop

pub(crate) struct ProductView {
    pub id: String,
    pub name: String,
    pub description: String,
    pub price: String,
    /// For the running total the script shows.
    pub price_cents: u32,
}

/// What the customer typed, to fill the form again after an error.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct ShopForm {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub address: String,
    #[serde(default, rename = "productId")]
    pub product_id: String,
    #[serde(default)]
    pub quantity: String,
    #[serde(default)]
    pub email: String,
    #[serde(default, rename = "idempotencyKey")]
    pub idempotency_key: String,
}

/// A placed order, for the confirmation shown without script.
pub(crate) struct PlacedView {
    /// [`OrderId::number`], what people read.
    pub order_number: String,
    pub product_name: String,
    pub quantity: u64,
    pub total: String,
    pub tracking_link: String,
    /// Where the confirmation email goes, if the customer gave an address.
    pub email: Option<String>,
}

#[derive(Template)]
#[template(path = "shop.html")]
pub(crate) struct ShopPage {
    pub v: Arc<str>,
    pub currency: String,
    pub products: Vec<ProductView>,
    pub form: ShopForm,
    pub errors: Vec<FieldError>,
    /// A problem not about one field (busy, a reused key, ...).
    pub problem: Option<String>,
    pub placed: Option<PlacedView>,
}

impl ShopPage {
    fn new(state: &AppState, form: ShopForm) -> ShopPage {
        let catalog = &state.deps.catalog;
        ShopPage {
            v: state.asset_version.clone(),
            currency: catalog.currency.clone(),
            products: catalog
                .products
                .iter()
                .map(|p| ProductView {
                    id: p.id.clone(),
                    name: p.name.clone(),
                    description: p.description.clone(),
                    price: format_money(u64::from(p.price_cents), &catalog.currency),
                    price_cents: p.price_cents,
                })
                .collect(),
            form,
            errors: Vec::new(),
            problem: None,
            placed: None,
        }
    }

    /// The message for `field`, if it has one.
    pub fn error(&self, field: &str) -> Option<&str> {
        self.errors
            .iter()
            .find(|e| e.field == field)
            .map(|e| e.message.as_str())
    }

    /// Problems not about one of the form's fields.
    pub fn other_errors(&self) -> Vec<&str> {
        const FIELDS: [&str; 5] = ["name", "address", "productId", "quantity", "email"];
        self.errors
            .iter()
            .filter(|e| !FIELDS.contains(&e.field.as_str()))
            .map(|e| e.message.as_str())
            .collect()
    }
}

/// A fresh key per form load: posting the same form twice (a double click,
/// a reload of the confirmation) places one order.
fn new_idempotency_key() -> String {
    format!("shop-{}", uuid::Uuid::new_v4())
}

/// `GET /?product=<id>`: the cake a product card's "Choose" picked, so
/// choosing works without script too.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct ShopQuery {
    product: Option<String>,
}

pub(crate) async fn shop(
    State(state): State<AppState>,
    Query(query): Query<ShopQuery>,
) -> Response {
    let products = &state.deps.catalog.products;
    let chosen = query
        .product
        .and_then(|id| products.iter().find(|p| p.id == id))
        .or(products.first());
    let form = ShopForm {
        quantity: "1".into(),
        product_id: chosen.map(|p| p.id.clone()).unwrap_or_default(),
        idempotency_key: new_idempotency_key(),
        ..ShopForm::default()
    };
    render(StatusCode::OK, &ShopPage::new(&state, form))
}

/// The form's fields as the JSON body `POST /order` takes: a quantity
/// that is a whole number goes as a number, anything else as typed (so
/// validation names the problem); an empty email is left out.
fn order_body(form: &ShopForm) -> Value {
    let mut body = Map::new();
    body.insert("name".into(), Value::String(form.name.clone()));
    body.insert("address".into(), Value::String(form.address.clone()));
    body.insert("productId".into(), Value::String(form.product_id.clone()));
    let quantity = form.quantity.trim();
    body.insert(
        "quantity".into(),
        match quantity.parse::<u64>() {
            Ok(number) => Value::from(number),
            Err(_) if quantity.is_empty() => Value::Null,
            Err(_) => Value::String(quantity.to_string()),
        },
    );
    if !form.email.trim().is_empty() {
        body.insert("email".into(), Value::String(form.email.clone()));
    }
    Value::Object(body)
}

/// The shop's form posted without script: the order is placed by
/// [`use_cases::place_order`], as one sent to `POST /order` is, and the
/// result becomes a page (the confirmation, or the form again with every
/// error beside its field). No redirect: the confirmation holds the
/// customer's token, which must not end up in a URL; a reload posts again
/// with the same key and shows the same order.
pub(crate) async fn shop_order(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match body {
        Ok(body) => body,
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return ApiError::TooLarge.into_response();
        }
        Err(rejection) => return ApiError::MalformedJson(rejection.body_text()).into_response(),
    };
    let mut form: ShopForm = match serde_urlencoded::from_bytes(&body) {
        Ok(form) => form,
        Err(error) => return ApiError::MalformedJson(format!("bad form: {error}")).into_response(),
    };
    if domain::validation::idempotency_key(&form.idempotency_key).is_err() {
        form.idempotency_key = new_idempotency_key();
    }
    let deps = &state.deps;
    let request = OrderRequest::parse(&order_body(&form), &deps.catalog);
    let mut page = ShopPage::new(&state, form);
    let request = match request {
        Ok(request) => request,
        Err(errors) => {
            page.errors = errors.0;
            return render(StatusCode::UNPROCESSABLE_ENTITY, &page);
        }
    };
    let place = PlaceOrder {
        request,
        idempotency_key: Some(page.form.idempotency_key.clone()),
        correlation_id: correlation::new_id(),
    };
    let placed =
        use_cases::place_order(&*deps.store, &deps.catalog, &deps.customer_tokens, place).await;
    match placed {
        Ok(PlacedOrder {
            order,
            customer_token,
            ..
        }) => {
            page.placed = Some(PlacedView {
                order_number: order.order_id.number(),
                tracking_link: format!("/track/{}#token={customer_token}", order.order_id),
                product_name: order.product_name,
                quantity: u64::from(order.quantity),
                total: format_money(order.total_cents, &order.currency),
                email: order.email,
            });
            render(StatusCode::OK, &page)
        }
        Err(error) => {
            if error == use_cases::Error::IdempotencyKeyReused {
                // A reused key means this form was already used for another
                // order: a new key lets the customer send this one.
                page.form.idempotency_key = new_idempotency_key();
            }
            let error = ApiError::from(error);
            error.log();
            page.problem = Some(error.detail());
            render(error.status_code(), &page)
        }
    }
}

// ---------------------------------------------------------------- tracking

pub(crate) struct StepView {
    pub key: &'static str,
    pub label: &'static str,
}

#[derive(Template)]
#[template(path = "track.html")]
pub(crate) struct TrackPage {
    pub v: Arc<str>,
    pub order_id: String,
    pub order_number: String,
    pub steps: Vec<StepView>,
    /// Opened by the shop right after the order was placed
    /// (`?placed=1`): the page is also the order's confirmation, at an
    /// address that survives a reload and can be bookmarked.
    pub placed: bool,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct TrackQuery {
    placed: Option<String>,
}

#[derive(Template)]
#[template(path = "message.html")]
pub(crate) struct MessagePage {
    pub v: Arc<str>,
    pub title: &'static str,
    pub message: &'static str,
}

/// The tracking page. It shows nothing about the order by itself: the
/// script reads the token from the link's fragment and asks the API, so
/// this answer is the same for any well-formed id and tells a stranger
/// nothing.
pub(crate) async fn track(
    State(state): State<AppState>,
    PathSegment(order_id): PathSegment,
    Query(query): Query<TrackQuery>,
) -> Response {
    let Some(order_id) = OrderId::parse(&order_id) else {
        let page = MessagePage {
            v: state.asset_version.clone(),
            title: "Order not found",
            message: "This tracking link is not complete. Please use the whole link you got when you ordered.",
        };
        return render(StatusCode::NOT_FOUND, &page);
    };
    let page = TrackPage {
        v: state.asset_version.clone(),
        order_id: order_id.to_string(),
        order_number: order_id.number(),
        steps: CUSTOMER_STEPS
            .iter()
            .map(|(step, label)| StepView {
                key: step.as_str(),
                label,
            })
            .collect(),
        placed: query.placed.is_some(),
    };
    render(StatusCode::OK, &page)
}

// ---------------------------------------------------------------- staff

#[derive(Template)]
#[template(path = "baker.html")]
pub(crate) struct BakerPage {
    pub v: Arc<str>,
}

#[derive(Template)]
#[template(path = "operator.html")]
pub(crate) struct OperatorPage {
    pub v: Arc<str>,
}

pub(crate) async fn baker(State(state): State<AppState>) -> Response {
    render(
        StatusCode::OK,
        &BakerPage {
            v: state.asset_version.clone(),
        },
    )
}

pub(crate) async fn operator(State(state): State<AppState>) -> Response {
    render(
        StatusCode::OK,
        &OperatorPage {
            v: state.asset_version.clone(),
        },
    )
}
