//! The product catalog: what can be ordered and what it costs.
//!
//! Prices are integer cents so that totals never suffer from floating point.
//! The default catalog is a small bakery's; a bakery replaces it with a JSON
//! file of the same shape (see [`Catalog::from_json`]).
//!
//! # Product ids
//!
//! Each product has one id. The built-in cakes are numbered `1` to `5`, so
//! an order for `"productId": 1` works as it is written in the simplest
//! client; a catalog file may number its products too or name them with a
//! slug such as `wedding-cake`. In JSON a numeric id is always written as a
//! number (`"productId": 1`) and a slug as a string, and a request may send
//! a numeric id either way (`1` or `"1"`): see [`product_id_json`].

use serde::{Deserialize, Serialize};

/// One cake the bakery sells.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Product {
    /// Stable identifier used in orders (`productId`): a whole number such
    /// as `1` or a slug such as `chocolate-cake`.
    #[serde(with = "product_id_json")]
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// Price of one unit in the smallest currency unit.
    pub price_cents: u32,
}

/// The products on sale, in display order, and their currency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Catalog {
    /// ISO 4217 code, e.g. `EUR`.
    pub currency: String,
    pub products: Vec<Product>,
}

/// Why a catalog file was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CatalogError {
    #[error("catalog is not valid JSON of the expected shape: {0}")]
    Malformed(String),
    #[error("catalog has no products")]
    Empty,
    #[error("product id {0:?} appears more than once")]
    DuplicateId(String),
    #[error(
        "product id {0:?} must be a whole number from 1 (no leading zeros) or 1-64 characters of a-z, 0-9 and '-'"
    )]
    BadId(String),
    #[error("product {0:?} must have a name of 1-100 characters")]
    BadName(String),
    #[error("product {0:?} must have a price between 1 and 10000000 cents")]
    BadPrice(String),
    #[error("currency must be a three-letter ISO 4217 code, got {0:?}")]
    BadCurrency(String),
}

impl Catalog {
    /// Parses and checks a catalog file's contents.
    pub fn from_json(text: &str) -> Result<Catalog, CatalogError> {
        let catalog: Catalog =
            serde_json::from_str(text).map_err(|e| CatalogError::Malformed(e.to_string()))?;
        catalog.check()?;
        Ok(catalog)
    }

    fn check(&self) -> Result<(), CatalogError> {
        if self.currency.len() != 3 || !self.currency.chars().all(|c| c.is_ascii_uppercase()) {
            return Err(CatalogError::BadCurrency(self.currency.clone()));
        }
        if self.products.is_empty() {
            return Err(CatalogError::Empty);
        }
        let mut seen = std::collections::HashSet::new();
        for product in &self.products {
            if !is_valid_id(&product.id) {
                return Err(CatalogError::BadId(product.id.clone()));
            }
            if !seen.insert(product.id.as_str()) {
                return Err(CatalogError::DuplicateId(product.id.clone()));
            }
            if product.name.trim().is_empty() || product.name.chars().count() > 100 {
                return Err(CatalogError::BadName(product.id.clone()));
            }
            if !(1..=10_000_000).contains(&product.price_cents) {
                return Err(CatalogError::BadPrice(product.id.clone()));
            }
        }
        Ok(())
    }

    pub fn find(&self, product_id: &str) -> Option<&Product> {
        self.products.iter().find(|p| p.id == product_id)
    }
}

/// A slug of a-z, 0-9 and '-', or a whole number written the one way a
/// JSON number is (`7`, not `07`), so that `7` and `"7"` name the same
/// product.
fn is_valid_id(id: &str) -> bool {
    let slug = (1..=64).contains(&id.len())
        && id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    let digits_only = id.chars().all(|c| c.is_ascii_digit());
    slug && (!digits_only || numeric_id(id).is_some())
}

/// The number a numeric product id stands for: digits without a leading
/// zero, from 1 up to the largest JSON integer every client reads exactly.
pub fn numeric_id(id: &str) -> Option<u64> {
    const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;
    let all_digits = !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit());
    if !all_digits || id.starts_with('0') {
        return None;
    }
    id.parse::<u64>().ok().filter(|n| *n <= MAX_SAFE_INTEGER)
}

/// Serde for a product id field: a numeric id as a JSON number, a slug as
/// a JSON string; reads either (stored orders from before numbered products
/// read as they were written).
pub mod product_id_json {
    use serde::de::{self, Deserializer, Visitor};
    use serde::ser::Serializer;

    pub fn serialize<S: Serializer>(id: &str, serializer: S) -> Result<S::Ok, S::Error> {
        match super::numeric_id(id) {
            Some(number) => serializer.serialize_u64(number),
            None => serializer.serialize_str(id),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
        struct IdVisitor;
        impl Visitor<'_> for IdVisitor {
            type Value = String;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a product id: a whole number or a string")
            }
            fn visit_u64<E: de::Error>(self, number: u64) -> Result<String, E> {
                Ok(number.to_string())
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<String, E> {
                Ok(text.to_owned())
            }
        }
        deserializer.deserialize_any(IdVisitor)
    }
}

impl Default for Catalog {
    /// A small neighbourhood bakery's cakes, numbered from 1.
    fn default() -> Self {
        let product = |id: &str, name: &str, description: &str, price_cents| Product {
            id: id.into(),
            name: name.into(),
            description: description.into(),
            price_cents,
        };
        Catalog {
            currency: "EUR".into(),
            products: vec![
                product(
                    "1",
                    "Chocolate cake",
                    "Dark chocolate sponge with ganache, serves 8",
                    3200,
                ),
                product(
                    "2",
                    "Carrot cake",
                    "Spiced carrot and walnut with cream cheese frosting, serves 8",
                    2800,
                ),
                product(
                    "3",
                    "Lemon tart",
                    "Sharp lemon curd in butter pastry, serves 6",
                    2400,
                ),
                product(
                    "4",
                    "Baked cheesecake",
                    "Vanilla cheesecake on a biscuit base, serves 10",
                    3600,
                ),
                product(
                    "5",
                    "Birthday cake",
                    "Three-layer vanilla sponge with sprinkles, serves 12",
                    4500,
                ),
            ],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_catalog_passes_its_own_checks() {
        Catalog::default().check().unwrap();
    }

    #[test]
    fn catalog_round_trips_through_json() {
        let text = serde_json::to_string(&Catalog::default()).unwrap();
        assert_eq!(Catalog::from_json(&text).unwrap(), Catalog::default());
    }

    #[test]
    fn the_built_in_cakes_are_numbered_and_numbers_are_json_numbers() {
        let catalog = Catalog::default();
        let ids: Vec<&str> = catalog.products.iter().map(|p| p.id.as_str()).collect();
        assert_eq!(ids, ["1", "2", "3", "4", "5"]);
        let json = serde_json::to_value(&catalog).unwrap();
        assert_eq!(json["products"][0]["id"], serde_json::json!(1));
    }

    #[test]
    fn a_catalog_file_may_number_its_products_or_name_them() {
        let text = r#"{"currency":"GBP","products":[
            {"id":12,"name":"Scones","priceCents":900},
            {"id":"13","name":"Eclairs","priceCents":1200},
            {"id":"wedding-cake","name":"Wedding cake","priceCents":25000}]}"#;
        let catalog = Catalog::from_json(text).unwrap();
        assert_eq!(catalog.find("12").unwrap().name, "Scones");
        assert_eq!(catalog.find("13").unwrap().name, "Eclairs");
        assert_eq!(catalog.find("wedding-cake").unwrap().price_cents, 25000);
        let json = serde_json::to_value(&catalog).unwrap();
        assert_eq!(json["products"][1]["id"], serde_json::json!(13));
        assert_eq!(json["products"][2]["id"], "wedding-cake");
    }

    #[test]
    fn numeric_ids_are_written_one_way() {
        assert_eq!(numeric_id("1"), Some(1));
        assert_eq!(numeric_id("9007199254740991"), Some(9_007_199_254_740_991));
        for not_numeric in [
            "",
            "0",
            "01",
            "1a",
            "-1",
            "9007199254740992",
            "wedding-cake",
        ] {
            assert_eq!(numeric_id(not_numeric), None, "{not_numeric}");
        }
    }

    #[test]
    fn bad_catalogs_are_refused_with_a_reason() {
        let cases = [
            ("not json", "not valid JSON"),
            (r#"{"currency":"EUR","products":[]}"#, "no products"),
            (
                r#"{"currency":"euro","products":[{"id":"a","name":"A","priceCents":1}]}"#,
                "currency",
            ),
            (
                r#"{"currency":"EUR","products":[{"id":"A B","name":"A","priceCents":1}]}"#,
                "product id",
            ),
            (
                r#"{"currency":"EUR","products":[{"id":"a","name":"A","priceCents":1},{"id":"a","name":"B","priceCents":1}]}"#,
                "more than once",
            ),
            (
                r#"{"currency":"EUR","products":[{"id":"a","name":"A","priceCents":0}]}"#,
                "price",
            ),
            (
                r#"{"currency":"EUR","products":[{"id":"07","name":"A","priceCents":1}]}"#,
                "leading zeros",
            ),
            (
                r#"{"currency":"EUR","products":[{"id":0,"name":"A","priceCents":1}]}"#,
                "whole number from 1",
            ),
            (
                r#"{"currency":"EUR","products":[{"id":1,"name":"A","priceCents":1},{"id":"1","name":"B","priceCents":1}]}"#,
                "more than once",
            ),
            (
                r#"{"currency":"EUR","products":[{"id":1.5,"name":"A","priceCents":1}]}"#,
                "not valid JSON",
            ),
            (
                r#"{"currency":"EUR","products":[{"id":"a","name":" ","priceCents":5}]}"#,
                "name",
            ),
        ];
        for (text, expected) in cases {
            let error = Catalog::from_json(text).unwrap_err().to_string();
            assert!(error.contains(expected), "{text}: {error}");
        }
    }
}
