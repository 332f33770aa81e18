//! Properties of request validation, over arbitrary input.
//!
//! Whatever JSON arrives, `OrderRequest::parse`, `FulfilRequest::parse` and
//! `DeliverRequest::parse` never panic; every request they accept keeps
//! every limit; every refusal names a real field with a known code; and
//! `idempotency_key` accepts exactly 1-255 visible ASCII characters.
//!
//! Bodies come in two kinds: arbitrary JSON (mostly refused as a whole),
//! and objects with the real field names holding arbitrary, near-valid or
//! hostile values (control characters, CR/LF, long text, odd numbers), so
//! that both the accepting and the refusing paths are exercised.

use std::collections::HashSet;

use domain::Catalog;
use domain::validation::{
    DeliverRequest, FulfilRequest, OrderRequest, ValidationErrors, idempotency_key, limits,
};
use proptest::prelude::*;
use serde_json::{Map, Value, json};

const CASES: u32 = 2_000;

const ORDER_FIELDS: [&str; 5] = ["name", "address", "email", "productId", "quantity"];
const FULFIL_FIELDS: [&str; 2] = ["orderId", "fulfillmentId"];
const DELIVER_FIELDS: [&str; 3] = ["orderId", "deliveryCompanyId", "orderReview"];
const CODES: [&str; 8] = [
    "required",
    "type",
    "too_long",
    "range",
    "format",
    "characters",
    "unknown_product",
    "invalid",
];

/// Any JSON value, nested a few levels.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_filter("JSON has no NaN or infinity", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        any::<String>().prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(any::<String>(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Text that is sometimes valid and sometimes not: plain words, padding,
/// line breaks, control characters, Unicode, lengths around the limits.
fn tricky_text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-zA-Z0-9 .,'-]{1,40}",
        "\\PC{0,60}",
        any::<String>(),
        "[ \t\r\n]{0,4}[a-z]{1,10}([\r\n]{1,2}[a-z]{1,10}){0,3}[ \t\r\n]{0,4}",
        "[a-z]{0,5}[\u{0}-\u{1f}\u{7f}-\u{9f}\u{2028}][a-z]{0,5}",
        (
            0usize..2_100,
            prop::sample::select(vec!['x', 'é', '🎂', ' '])
        )
            .prop_map(|(n, c)| std::iter::repeat_n(c, n).collect()),
    ]
}

fn tricky_email() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9._%+-]{1,20}@[a-z0-9-]{1,20}\\.[a-z]{2,6}",
        "[a-z]{0,5}@?[a-z]{0,5}\\.?[a-z]{0,3}",
        "[a-z<>()\\[\\],;:\" @.]{1,20}",
        (0usize..300).prop_map(|n| format!("{}@example.com", "a".repeat(n))),
        tricky_text(),
    ]
}

fn tricky_number() -> impl Strategy<Value = Value> {
    prop_oneof![
        (-5i64..60).prop_map(|n| json!(n)),
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        (-5.0f64..60.0).prop_map(|f| json!(f)),
        (0u32..60).prop_map(|n| json!(f64::from(n))),
        Just(json!(1e300)),
        Just(json!("2")),
    ]
}

fn order_id() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<u128>().prop_map(|n| json!(uuid::Uuid::from_u128(n).to_string())),
        any::<u128>().prop_map(|n| json!(uuid::Uuid::from_u128(n).simple().to_string())),
        "[0-9a-f-]{0,40}".prop_map(Value::String),
        any_json(),
    ]
}

/// A value for a field: usually of the right kind, sometimes anything,
/// sometimes missing (`None`).
fn field<S>(right: S) -> impl Strategy<Value = Option<Value>>
where
    S: Strategy<Value = Value> + 'static,
{
    prop_oneof![
        6 => right.prop_map(Some),
        1 => any_json().prop_map(Some),
        1 => Just(Some(Value::Null)),
        1 => Just(None),
    ]
}

fn object(fields: Vec<(&'static str, Option<Value>)>, extra: Map<String, Value>) -> Value {
    let mut body = extra;
    for (name, value) in fields {
        if let Some(value) = value {
            body.insert(name.to_string(), value);
        }
    }
    Value::Object(body)
}

fn extra_fields() -> impl Strategy<Value = Map<String, Value>> {
    prop::collection::btree_map("[a-zA-Z]{1,12}", any_json(), 0..3)
        .prop_map(|m| m.into_iter().collect())
}

/// A product of the catalog, by its id as a string or, for a numeric id,
/// as a JSON number (`"1"` and `1` name the same cake).
fn products() -> impl Strategy<Value = Value> {
    let ids: Vec<String> = Catalog::default()
        .products
        .iter()
        .map(|p| p.id.clone())
        .collect();
    prop::sample::select(ids).prop_flat_map(|id| {
        let as_number = id.parse::<u64>().map_or(json!(id.clone()), |n| json!(n));
        prop_oneof![Just(json!(id)), Just(as_number)]
    })
}

/// Every field arbitrary or hostile: mostly refused.
fn random_order_body() -> impl Strategy<Value = Value> {
    let products = prop_oneof![
        products(),
        "[a-z0-9-]{1,70}".prop_map(Value::String),
        (0u64..12).prop_map(|n| json!(n)),
    ];
    (
        field(tricky_text().prop_map(Value::String)),
        field(tricky_text().prop_map(Value::String)),
        field(tricky_email().prop_map(Value::String)),
        field(products),
        field(tricky_number()),
        extra_fields(),
    )
        .prop_map(|(name, address, email, product, quantity, extra)| {
            object(
                vec![
                    ("name", name),
                    ("address", address),
                    ("email", email),
                    ("productId", product),
                    ("quantity", quantity),
                ],
                extra,
            )
        })
}

/// A valid order with (usually) one field swapped for a tricky value: each
/// limit is probed on its own, and many bodies are accepted.
fn near_valid_order_body() -> impl Strategy<Value = Value> {
    let valid = (
        "[ ]{0,2}[A-Za-z][A-Za-z .'-]{0,40}",
        "[A-Za-z0-9][A-Za-z0-9 ,]{0,30}(\r?\n[A-Za-z0-9 ,]{1,30}){0,3}",
        prop::option::of("[a-z0-9._-]{1,20}@[a-z0-9-]{1,20}\\.[a-z]{2,6}"),
        products(),
        1u64..=limits::MAX_QUANTITY,
        extra_fields(),
    )
        .prop_map(|(name, address, email, product, quantity, extra)| {
            let mut body = json!({
                "name": name, "address": address, "productId": product, "quantity": quantity
            });
            if let Some(email) = email {
                body["email"] = json!(email);
            }
            for (key, value) in extra {
                body[key] = value;
            }
            body
        });
    let swap = prop_oneof![
        3 => Just(None),
        1 => tricky_text().prop_map(|t| Some(("name", json!(t)))),
        1 => tricky_text().prop_map(|t| Some(("address", json!(t)))),
        1 => tricky_email().prop_map(|t| Some(("email", json!(t)))),
        1 => "[a-z-]{0,70}".prop_map(|t| Some(("productId", json!(t)))),
        1 => tricky_number().prop_map(|n| Some(("quantity", n))),
        1 => prop::sample::select(ORDER_FIELDS.to_vec()).prop_map(|f| Some((f, Value::Null))),
    ];
    (valid, swap).prop_map(|(mut body, swap)| {
        if let Some((field, value)) = swap {
            body[field] = value;
        }
        body
    })
}

fn order_body() -> impl Strategy<Value = Value> {
    prop_oneof![near_valid_order_body(), random_order_body()]
}

fn fulfil_body() -> impl Strategy<Value = Value> {
    (
        field(order_id()),
        field(tricky_text().prop_map(Value::String)),
        extra_fields(),
    )
        .prop_map(|(id, reference, extra)| {
            object(vec![("orderId", id), ("fulfillmentId", reference)], extra)
        })
}

fn deliver_body() -> impl Strategy<Value = Value> {
    (
        field(order_id()),
        field(tricky_text().prop_map(Value::String)),
        field(tricky_text().prop_map(Value::String)),
        extra_fields(),
    )
        .prop_map(|(id, company, review, extra)| {
            object(
                vec![
                    ("orderId", id),
                    ("deliveryCompanyId", company),
                    ("orderReview", review),
                ],
                extra,
            )
        })
}

/// Checks one accepted text value against its rule.
fn check_text(field: &str, text: &str, max_chars: usize, multi_line: bool) {
    assert!(!text.is_empty(), "{field} accepted empty");
    assert_eq!(text, text.trim(), "{field} not trimmed: {text:?}");
    assert!(
        text.chars().count() <= max_chars,
        "{field} of {} chars accepted (max {max_chars})",
        text.chars().count()
    );
    for c in text.chars() {
        let allowed = !c.is_control() || (multi_line && c == '\n');
        assert!(allowed, "{field} accepted control character {c:?}");
    }
}

/// Checks a refusal: at least one error, each naming a field of `fields`
/// (or the body as a whole when it is not an object) with a known code.
fn check_refusal(body: &Value, errors: &ValidationErrors, fields: &[&str]) {
    assert!(!errors.0.is_empty(), "refused without a reason: {body}");
    let known: HashSet<&str> = fields.iter().copied().collect();
    for error in &errors.0 {
        assert!(CODES.contains(&error.code), "unknown code {}", error.code);
        assert!(!error.message.is_empty());
        if body.is_object() {
            assert!(
                known.contains(error.field.as_str()),
                "refusal names {:?}, not a field of the request: {body}",
                error.field
            );
        } else {
            assert_eq!(error.field, "", "a non-object body is refused whole");
        }
    }
}

fn check_order(body: &Value) {
    match OrderRequest::parse(body, &Catalog::default()) {
        Ok(order) => {
            check_text("name", &order.name, limits::NAME_CHARS, false);
            check_text("address", &order.address, limits::ADDRESS_CHARS, true);
            if let Some(email) = &order.email {
                check_text("email", email, limits::EMAIL_CHARS, false);
                let (local, domain) = email.rsplit_once('@').expect("an @");
                assert!(!local.is_empty() && domain.contains('.'), "{email}");
                assert!(!email.chars().any(char::is_whitespace), "{email}");
            }
            assert!(Catalog::default().find(&order.product_id).is_some());
            assert!((1..=limits::MAX_QUANTITY).contains(&u64::from(order.quantity)));
        }
        Err(errors) => check_refusal(body, &errors, &ORDER_FIELDS),
    }
}

fn check_fulfil(body: &Value) {
    match FulfilRequest::parse(body) {
        Ok(request) => {
            let sent = body["orderId"].as_str().unwrap().trim();
            assert_eq!(request.order_id.0, uuid::Uuid::parse_str(sent).unwrap());
            if let Some(reference) = &request.fulfillment_id {
                check_text("fulfillmentId", reference, limits::REFERENCE_CHARS, false);
            }
        }
        Err(errors) => check_refusal(body, &errors, &FULFIL_FIELDS),
    }
}

fn check_deliver(body: &Value) {
    match DeliverRequest::parse(body) {
        Ok(request) => {
            let sent = body["orderId"].as_str().unwrap().trim();
            assert_eq!(request.order_id.0, uuid::Uuid::parse_str(sent).unwrap());
            if let Some(company) = &request.delivery_company_id {
                check_text("deliveryCompanyId", company, limits::REFERENCE_CHARS, false);
            }
            if let Some(review) = &request.order_review {
                check_text("orderReview", review, limits::REVIEW_CHARS, true);
            }
        }
        Err(errors) => check_refusal(body, &errors, &DELIVER_FIELDS),
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: CASES,
        // Failures are reported with their minimal input; nothing is kept.
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn any_json_is_parsed_or_refused_field_by_field(body in any_json()) {
        check_order(&body);
        check_fulfil(&body);
        check_deliver(&body);
    }

    #[test]
    fn orders_are_accepted_only_within_every_limit(body in order_body()) {
        check_order(&body);
    }

    #[test]
    fn fulfilments_are_accepted_only_within_every_limit(body in fulfil_body()) {
        check_fulfil(&body);
    }

    #[test]
    fn deliveries_are_accepted_only_within_every_limit(body in deliver_body()) {
        check_deliver(&body);
    }

    #[test]
    fn idempotency_keys_are_exactly_1_to_255_visible_ascii(
        key in prop_oneof![
            "[!-~]{0,300}",
            any::<String>(),
            "[!-~]{250,260}",
            "[!-~]{0,10}[ \t\r\n\u{7f}\u{80}é][!-~]{0,10}",
        ]
    ) {
        let visible = key.bytes().all(|b| (b'!'..=b'~').contains(&b));
        let expected = (1..=255).contains(&key.len()) && visible;
        let result = idempotency_key(&key);
        prop_assert_eq!(result.is_ok(), expected, "{:?}", key);
        match result {
            Ok(accepted) => prop_assert_eq!(accepted, key.as_str()),
            Err(error) => prop_assert_eq!(error.field, "Idempotency-Key"),
        }
    }
}

/// Enough of the near-valid bodies are accepted for the limits to be
/// tested at all (a generator that only made refusals would prove little).
#[test]
fn the_generators_reach_both_outcomes() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let mut count =
        |body: &dyn Fn(&mut TestRunner) -> Value, parse: &dyn Fn(&Value) -> bool, what: &str| {
            let accepted = (0..CASES).filter(|_| parse(&body(&mut runner))).count() as u32;
            println!(
                "{what}: {accepted} accepted, {} refused of {CASES}",
                CASES - accepted
            );
            assert!(accepted >= CASES / 20, "{what}: only {accepted} accepted");
            assert!(
                CASES - accepted >= CASES / 4,
                "{what}: only {} refused",
                CASES - accepted
            );
        };
    count(
        &|r| order_body().new_tree(r).unwrap().current(),
        &|b| OrderRequest::parse(b, &Catalog::default()).is_ok(),
        "orders",
    );
    count(
        &|r| fulfil_body().new_tree(r).unwrap().current(),
        &|b| FulfilRequest::parse(b).is_ok(),
        "fulfilments",
    );
    count(
        &|r| deliver_body().new_tree(r).unwrap().current(),
        &|b| DeliverRequest::parse(b).is_ok(),
        "deliveries",
    );
}
