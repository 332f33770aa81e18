//! Turning untrusted request bodies into valid requests.
//!
//! Every field has a limit. Validation looks at the whole body and reports
//! every problem at once, each with the field it belongs to, so a client (or
//! the shop page) can show the errors next to the fields.

use serde::Serialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::catalog::Catalog;
use crate::order::{OrderId, Step};

/// Limits on every field a client sends.
pub mod limits {
    pub const NAME_CHARS: usize = 100;
    pub const ADDRESS_CHARS: usize = 500;
    pub const EMAIL_CHARS: usize = 254;
    pub const MAX_QUANTITY: u64 = 50;
    pub const REFERENCE_CHARS: usize = 100;
    pub const REVIEW_CHARS: usize = 2000;
    pub const IDEMPOTENCY_KEY_CHARS: usize = 255;
    /// Largest request body the API reads, in bytes.
    pub const BODY_BYTES: usize = 16 * 1024;
}

/// One problem with one field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    /// The field's JSON name, e.g. `quantity`; empty for the body as a whole.
    pub field: String,
    /// A machine-readable code: `required`, `type`, `too_long`, `range`, ...
    pub code: &'static str,
    /// A sentence a person can read.
    pub message: String,
}

/// Everything wrong with a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{} invalid field(s)", .0.len())]
pub struct ValidationErrors(pub Vec<FieldError>);

/// A valid `POST /order` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderRequest {
    pub name: String,
    pub address: String,
    pub email: Option<String>,
    pub product_id: String,
    pub quantity: u32,
}

/// A valid `POST /order/fulfilled` body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FulfilRequest {
    pub order_id: OrderId,
    pub fulfillment_id: Option<String>,
}

/// A valid `POST /order/delivered` body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliverRequest {
    pub order_id: OrderId,
    pub delivery_company_id: Option<String>,
    pub order_review: Option<String>,
}

impl OrderRequest {
    pub fn parse(body: &Value, catalog: &Catalog) -> Result<OrderRequest, ValidationErrors> {
        let mut fields = Fields::of(body)?;
        let name = fields.text("name", Text::required(limits::NAME_CHARS));
        let address = fields.text(
            "address",
            Text::required(limits::ADDRESS_CHARS).multi_line(),
        );
        let email = fields.text("email", Text::optional(limits::EMAIL_CHARS));
        if let Some(Some(email)) = &email {
            if !looks_like_email(email) {
                fields.fail(
                    "email",
                    "format",
                    "must be an email address like name@example.com",
                );
            }
        }
        let product_id = fields.product_id(catalog);
        let quantity = fields.whole_number("quantity", 1, limits::MAX_QUANTITY);
        fields.finish()?;
        match (name, address, email, product_id, quantity) {
            (
                Some(Some(name)),
                Some(Some(address)),
                Some(email),
                Some(Some(product_id)),
                Some(q),
            ) => Ok(OrderRequest {
                name,
                address,
                email,
                product_id,
                quantity: u32::try_from(q).unwrap_or(u32::MAX),
            }),
            _ => Err(ValidationErrors(vec![FieldError {
                field: String::new(),
                code: "invalid",
                message: "request is invalid".into(),
            }])),
        }
    }

    /// A digest of the request, so a reused `Idempotency-Key` with a
    /// different request can be told apart from a genuine retry.
    pub fn fingerprint(&self) -> String {
        let canonical = serde_json::to_vec(self).unwrap_or_default();
        let digest = Sha256::digest(&canonical);
        digest.iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl FulfilRequest {
    pub fn parse(body: &Value) -> Result<FulfilRequest, ValidationErrors> {
        let mut fields = Fields::of(body)?;
        let order_id = fields.order_id();
        let fulfillment_id = fields.text("fulfillmentId", Text::optional(limits::REFERENCE_CHARS));
        fields.finish()?;
        match (order_id, fulfillment_id) {
            (Some(order_id), Some(fulfillment_id)) => Ok(FulfilRequest {
                order_id,
                fulfillment_id,
            }),
            _ => Err(ValidationErrors(Vec::new())),
        }
    }
}

impl DeliverRequest {
    pub fn parse(body: &Value) -> Result<DeliverRequest, ValidationErrors> {
        let mut fields = Fields::of(body)?;
        let order_id = fields.order_id();
        let delivery_company_id =
            fields.text("deliveryCompanyId", Text::optional(limits::REFERENCE_CHARS));
        let order_review = fields.text(
            "orderReview",
            Text::optional(limits::REVIEW_CHARS).multi_line(),
        );
        fields.finish()?;
        match (order_id, delivery_company_id, order_review) {
            (Some(order_id), Some(delivery_company_id), Some(order_review)) => Ok(DeliverRequest {
                order_id,
                delivery_company_id,
                order_review,
            }),
            _ => Err(ValidationErrors(Vec::new())),
        }
    }
}

/// Checks an `Idempotency-Key` header value: 1-255 visible ASCII characters.
/// The `waitFor` parameter of `GET /order/{orderId}`: a step of the
/// timeline.
pub fn wait_for(value: &str) -> Result<Step, FieldError> {
    Step::parse(value).ok_or_else(|| FieldError {
        field: "waitFor".into(),
        code: "enum",
        message: format!(
            "must be one of the timeline's steps: {}",
            Step::ALL.map(Step::as_str).join(", ")
        ),
    })
}

pub fn idempotency_key(value: &str) -> Result<&str, FieldError> {
    let ok = !value.is_empty()
        && value.len() <= limits::IDEMPOTENCY_KEY_CHARS
        && value.bytes().all(|b| b.is_ascii_graphic());
    if ok {
        Ok(value)
    } else {
        Err(FieldError {
            field: "Idempotency-Key".into(),
            code: "format",
            message: format!(
                "must be 1-{} visible ASCII characters",
                limits::IDEMPOTENCY_KEY_CHARS
            ),
        })
    }
}

/// An address the mailers will take: parsed by lettre, the library that
/// sends the mail (so an accepted address never fails at sending time),
/// with a dotted domain, as every address on the internet has.
fn looks_like_email(text: &str) -> bool {
    text.parse::<lettre::Address>().is_ok_and(|address| {
        let domain = address.domain();
        domain.contains('.') && !domain.starts_with('.') && !domain.ends_with('.')
    })
}

/// How a text field is checked.
struct Text {
    required: bool,
    max_chars: usize,
    multi_line: bool,
    /// What a value of another JSON type is told.
    type_message: &'static str,
}

impl Text {
    fn required(max_chars: usize) -> Text {
        Text {
            required: true,
            max_chars,
            multi_line: false,
            type_message: "must be a string",
        }
    }
    fn optional(max_chars: usize) -> Text {
        Text {
            required: false,
            ..Text::required(max_chars)
        }
    }
    fn multi_line(self) -> Text {
        Text {
            multi_line: true,
            ..self
        }
    }
    /// For fields whose JSON number form is read before this rule is.
    fn or_number(self) -> Text {
        Text {
            type_message: "must be a product id: a whole number or a string",
            ..self
        }
    }
}

/// Collects field errors while reading a JSON object.
struct Fields<'a> {
    body: &'a Map<String, Value>,
    errors: Vec<FieldError>,
}

impl<'a> Fields<'a> {
    fn of(body: &'a Value) -> Result<Fields<'a>, ValidationErrors> {
        match body {
            Value::Object(body) => Ok(Fields {
                body,
                errors: Vec::new(),
            }),
            _ => Err(ValidationErrors(vec![FieldError {
                field: String::new(),
                code: "type",
                message: "the body must be a JSON object".into(),
            }])),
        }
    }

    fn fail(&mut self, field: &str, code: &'static str, message: impl Into<String>) {
        self.errors.push(FieldError {
            field: field.into(),
            code,
            message: message.into(),
        });
    }

    fn finish(self) -> Result<(), ValidationErrors> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(ValidationErrors(self.errors))
        }
    }

    /// `Some(None)`: absent optional field; `None`: invalid (error recorded).
    fn text(&mut self, field: &str, rule: Text) -> Option<Option<String>> {
        let value = match self.body.get(field) {
            None | Some(Value::Null) if rule.required => {
                self.fail(field, "required", "is required");
                return None;
            }
            None | Some(Value::Null) => return Some(None),
            Some(Value::String(text)) => text,
            Some(_) => {
                self.fail(field, "type", rule.type_message);
                return None;
            }
        };
        // Line breaks are kept only where they mean something (addresses,
        // reviews); any other control character is refused outright, which
        // also keeps every value safe to put in an email header or a log line.
        let normalized = value.replace("\r\n", "\n");
        let bad_control = normalized
            .chars()
            .any(|c| c.is_control() && !(rule.multi_line && c == '\n'));
        if bad_control {
            let message = if rule.multi_line {
                "must not contain control characters other than line breaks"
            } else {
                "must be a single line without control characters"
            };
            self.fail(field, "characters", message);
            return None;
        }
        let trimmed = normalized.trim();
        if trimmed.is_empty() {
            if rule.required {
                self.fail(field, "required", "must not be blank");
                return None;
            }
            return Some(None);
        }
        if trimmed.chars().count() > rule.max_chars {
            self.fail(
                field,
                "too_long",
                format!("must be at most {} characters", rule.max_chars),
            );
            return None;
        }
        Some(Some(trimmed.to_string()))
    }

    fn whole_number(&mut self, field: &str, min: u64, max: u64) -> Option<u64> {
        let number = match self.body.get(field) {
            None | Some(Value::Null) => {
                self.fail(field, "required", "is required");
                return None;
            }
            Some(Value::Number(n)) => n,
            Some(_) => {
                self.fail(field, "type", "must be a whole number");
                return None;
            }
        };
        // Accept 2 and 2.0, refuse 2.5; anything huge or negative is out of range.
        let whole = number.as_u64().or_else(|| {
            number
                .as_f64()
                .filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f <= u64::MAX as f64)
                .map(|f| f as u64)
        });
        let in_range = whole.filter(|n| (min..=max).contains(n));
        if in_range.is_none() {
            let is_fraction = number.as_f64().is_some_and(|f| f.fract() != 0.0);
            if is_fraction {
                self.fail(field, "type", "must be a whole number");
            } else {
                self.fail(field, "range", format!("must be between {min} and {max}"));
            }
        }
        in_range
    }

    /// `productId`: a product of the catalog, named by its id as a string
    /// or, for a numeric id, as a JSON number (`1` and `"1"` alike).
    fn product_id(&mut self, catalog: &Catalog) -> Option<Option<String>> {
        const FIELD: &str = "productId";
        // The id, and how the answer names it: as the client wrote it.
        let (id, shown) = match self.body.get(FIELD) {
            Some(Value::Number(number)) => match number.as_u64() {
                Some(whole) => (whole.to_string(), number.to_string()),
                None => (String::new(), number.to_string()),
            },
            _ => {
                let id = self.text(FIELD, Text::required(64).or_number())??;
                let shown = format!("{id:?}");
                (id, shown)
            }
        };
        if catalog.find(&id).is_none() {
            self.fail(
                FIELD,
                "unknown_product",
                format!("no product {shown}; GET /products lists what can be ordered"),
            );
            return None;
        }
        Some(Some(id))
    }

    fn order_id(&mut self) -> Option<OrderId> {
        let text = self.text("orderId", Text::required(36))??;
        let id = OrderId::parse(&text);
        if id.is_none() {
            self.fail("orderId", "format", "must be an order id (a UUID)");
        }
        id
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn order(body: Value) -> Result<OrderRequest, ValidationErrors> {
        OrderRequest::parse(&body, &Catalog::default())
    }

    fn codes(result: Result<OrderRequest, ValidationErrors>) -> Vec<(String, &'static str)> {
        result
            .unwrap_err()
            .0
            .into_iter()
            .map(|e| (e.field, e.code))
            .collect()
    }

    fn valid() -> Value {
        json!({"name": " Ada ", "address": "1 Cake St\r\nTown", "productId": 2, "quantity": 2})
    }

    #[test]
    fn a_good_order_is_trimmed_and_normalized() {
        let request = order(valid()).unwrap();
        assert_eq!(request.name, "Ada");
        assert_eq!(request.address, "1 Cake St\nTown");
        assert_eq!(request.quantity, 2);
        assert_eq!(request.email, None);
    }

    #[test]
    fn every_missing_field_is_listed() {
        let fields = codes(order(json!({})));
        assert_eq!(
            fields,
            vec![
                ("name".into(), "required"),
                ("address".into(), "required"),
                ("productId".into(), "required"),
                ("quantity".into(), "required"),
            ]
        );
    }

    #[test]
    fn wrong_types_are_reported_per_field() {
        let fields = codes(order(
            json!({"name": 5, "address": [], "productId": true, "quantity": "2", "email": 1}),
        ));
        assert!(fields.iter().all(|(_, code)| *code == "type"), "{fields:?}");
        assert_eq!(fields.len(), 5);
    }

    #[test]
    fn quantity_limits() {
        for (quantity, code) in [
            (json!(0), "range"),
            (json!(-1), "range"),
            (json!(51), "range"),
            (json!(1e20), "range"),
            (json!(u64::MAX), "range"),
            (json!(2.5), "type"),
        ] {
            let mut body = valid();
            body["quantity"] = quantity.clone();
            assert_eq!(
                codes(order(body)),
                vec![("quantity".into(), code)],
                "{quantity}"
            );
        }
        let mut body = valid();
        body["quantity"] = json!(3.0);
        assert_eq!(order(body).unwrap().quantity, 3);
    }

    #[test]
    fn unknown_product_and_long_fields() {
        let mut body = valid();
        body["productId"] = json!("wedding-cake");
        body["name"] = json!("x".repeat(101));
        body["address"] = json!("y".repeat(501));
        assert_eq!(
            codes(order(body)),
            vec![
                ("name".into(), "too_long"),
                ("address".into(), "too_long"),
                ("productId".into(), "unknown_product"),
            ]
        );
    }

    #[test]
    fn a_numeric_product_id_may_be_sent_as_a_number_or_a_string() {
        let seed = json!({
            "name": "Yana Bahdanovich",
            "address": "Inasaridze 2 deadlock 35",
            "productId": 1,
            "quantity": 3
        });
        let request = order(seed.clone()).unwrap();
        assert_eq!(request.product_id, "1");
        assert_eq!(request.quantity, 3);
        let mut as_string = seed;
        as_string["productId"] = json!("1");
        let same = order(as_string).unwrap();
        assert_eq!(same, request);
        assert_eq!(same.fingerprint(), request.fingerprint(), "one request");
    }

    #[test]
    fn an_unknown_product_id_of_either_kind_is_named() {
        for (id, shown) in [
            (json!(9), "no product 9;"),
            (json!("9"), "no product \"9\";"),
            (json!(0), "no product 0;"),
            (json!(-1), "no product -1;"),
            (json!(1.5), "no product 1.5;"),
            (json!("01"), "no product \"01\";"),
            (json!("wedding-cake"), "no product \"wedding-cake\";"),
        ] {
            let mut body = valid();
            body["productId"] = id.clone();
            let errors = order(body).unwrap_err().0;
            assert_eq!(errors.len(), 1, "{id}: {errors:?}");
            assert_eq!(errors[0].field, "productId");
            assert_eq!(errors[0].code, "unknown_product", "{id}");
            assert!(
                errors[0].message.starts_with(shown),
                "{id}: {}",
                errors[0].message
            );
        }
        let mut body = valid();
        body["productId"] = json!(true);
        let errors = order(body).unwrap_err().0;
        assert_eq!(errors[0].code, "type");
        assert_eq!(
            errors[0].message,
            "must be a product id: a whole number or a string"
        );
    }

    #[test]
    fn a_catalog_of_slugs_is_ordered_by_slug() {
        let catalog = Catalog::from_json(
            r#"{"currency":"EUR","products":[{"id":"wedding-cake","name":"Wedding cake","priceCents":25000}]}"#,
        )
        .unwrap();
        let mut body = valid();
        body["productId"] = json!("wedding-cake");
        assert_eq!(
            OrderRequest::parse(&body, &catalog).unwrap().product_id,
            "wedding-cake"
        );
        body["productId"] = json!(1);
        assert!(OrderRequest::parse(&body, &catalog).is_err());
    }

    #[test]
    fn header_injection_attempts_are_refused() {
        let mut body = valid();
        body["name"] = json!("Ada\r\nBcc: victim@example.com");
        body["email"] = json!("a@example.com\nBcc: b@example.com");
        assert_eq!(
            codes(order(body)),
            vec![
                ("name".into(), "characters"),
                ("email".into(), "characters")
            ]
        );
    }

    #[test]
    fn emails_are_checked() {
        for bad in [
            "nobody",
            "a@b",
            "a b@example.com",
            "<a@example.com>",
            "a@example.com.",
            "a@@example.com",
            "Ada <a@example.com>",
        ] {
            let mut body = valid();
            body["email"] = json!(bad);
            assert_eq!(
                codes(order(body)),
                vec![("email".into(), "format")],
                "{bad}"
            );
        }
        let mut body = valid();
        body["email"] = json!("ada@example.com");
        assert_eq!(
            order(body).unwrap().email.as_deref(),
            Some("ada@example.com")
        );
    }

    #[test]
    fn body_must_be_an_object() {
        assert_eq!(codes(order(json!([1, 2]))), vec![(String::new(), "type")]);
    }

    #[test]
    fn fingerprint_tells_requests_apart() {
        let a = order(valid()).unwrap();
        let mut b = a.clone();
        b.quantity = 3;
        assert_eq!(a.fingerprint(), order(valid()).unwrap().fingerprint());
        assert_ne!(a.fingerprint(), b.fingerprint());
    }

    #[test]
    fn fulfil_and_deliver_requests() {
        let id = "0195f1c2-7a44-7c3e-9d6b-2b1f4a5c6d7e";
        let fulfil =
            FulfilRequest::parse(&json!({"orderId": id, "fulfillmentId": "oven-1"})).unwrap();
        assert_eq!(fulfil.order_id.to_string(), id);
        assert_eq!(fulfil.fulfillment_id.as_deref(), Some("oven-1"));
        let errors = FulfilRequest::parse(&json!({"orderId": "123"})).unwrap_err();
        assert_eq!(errors.0[0].code, "format");
        let deliver =
            DeliverRequest::parse(&json!({"orderId": id, "orderReview": "Lovely\ncake"})).unwrap();
        assert_eq!(deliver.order_review.as_deref(), Some("Lovely\ncake"));
        let errors =
            DeliverRequest::parse(&json!({"orderId": id, "orderReview": "z".repeat(2001)}))
                .unwrap_err();
        assert_eq!(errors.0[0].field, "orderReview");
        assert!(DeliverRequest::parse(&json!({})).is_err());
    }

    #[test]
    fn idempotency_keys() {
        assert!(idempotency_key("abc-123").is_ok());
        assert!(idempotency_key("").is_err());
        assert!(idempotency_key("has space").is_err());
        assert!(idempotency_key(&"k".repeat(256)).is_err());
    }
}
