//! The product catalog: what can be ordered and what it costs.
//!
//! Prices are integer cents so that totals never suffer from floating point.
//! The default catalog is a small bakery's; a bakery replaces it with a JSON
//! file of the same shape (see [`Catalog::from_json`]).

use serde::{Deserialize, Serialize};

/// One cake the bakery sells.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Product {
    /// Stable identifier used in orders (`productId`), e.g. `chocolate-cake`.
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
    #[error("product id {0:?} must be 1-64 characters of a-z, 0-9 and '-'")]
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
            let id_ok = (1..=64).contains(&product.id.len())
                && product
                    .id
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
            if !id_ok {
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

impl Default for Catalog {
    /// A small neighbourhood bakery's cakes.
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
                    "chocolate-cake",
                    "Chocolate cake",
                    "Dark chocolate sponge with ganache, serves 8",
                    3200,
                ),
                product(
                    "carrot-cake",
                    "Carrot cake",
                    "Spiced carrot and walnut with cream cheese frosting, serves 8",
                    2800,
                ),
                product(
                    "lemon-tart",
                    "Lemon tart",
                    "Sharp lemon curd in butter pastry, serves 6",
                    2400,
                ),
                product(
                    "cheesecake",
                    "Baked cheesecake",
                    "Vanilla cheesecake on a biscuit base, serves 10",
                    3600,
                ),
                product(
                    "birthday-cake",
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
