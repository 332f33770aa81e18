//! Bearer tokens: the cake maker's token and each customer's token.
//!
//! Tokens are never stored or compared as plain text: the bakery keeps the
//! SHA-256 of a token and compares hashes in constant time. A customer token
//! is an HMAC of the order id under the bakery's token secret, so a retried
//! order request (same `Idempotency-Key`) can hand the same token out again
//! without the token itself ever being stored.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::order_id::OrderId;

/// SHA-256 of a token; `Display` gives its base64url form for storage.
#[derive(Clone, Copy, Default, PartialEq, Eq)]
pub struct TokenHash([u8; 32]);

impl TokenHash {
    pub fn of(token: &str) -> TokenHash {
        TokenHash(Sha256::digest(token.as_bytes()).into())
    }

    /// Reads the stored base64url form back.
    pub fn parse(stored: &str) -> Option<TokenHash> {
        let bytes = URL_SAFE_NO_PAD.decode(stored).ok()?;
        Some(TokenHash(bytes.try_into().ok()?))
    }

    /// Whether `presented` hashes to this, in constant time.
    pub fn matches(&self, presented: &str) -> bool {
        let presented = TokenHash::of(presented);
        self.0.ct_eq(&presented.0).into()
    }
}

impl std::fmt::Display for TokenHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&URL_SAFE_NO_PAD.encode(self.0))
    }
}

/// Never prints the hash itself, so it cannot leak through logs.
impl std::fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenHash(..)")
    }
}

/// Hands out customer tokens derived from a secret.
#[derive(Clone)]
pub struct CustomerTokens {
    secret: Vec<u8>,
}

impl CustomerTokens {
    pub fn new(secret: impl Into<Vec<u8>>) -> CustomerTokens {
        CustomerTokens {
            secret: secret.into(),
        }
    }

    /// The customer token of an order: 43 url-safe characters.
    pub fn token_for(&self, order_id: OrderId) -> String {
        // HMAC takes keys of any length, so this cannot fail.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.secret)
            .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
        mac.update(b"customer-token:");
        mac.update(order_id.to_string().as_bytes());
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    }
}

impl std::fmt::Debug for CustomerTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CustomerTokens(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    #[test]
    fn hash_matches_only_its_token() {
        let hash = TokenHash::of("secret-token");
        assert!(hash.matches("secret-token"));
        assert!(!hash.matches("secret-tokeN"));
        assert!(!hash.matches(""));
    }

    #[test]
    fn stored_form_round_trips() {
        let hash = TokenHash::of("abc");
        assert_eq!(TokenHash::parse(&hash.to_string()), Some(hash));
        assert_eq!(TokenHash::parse("not base64!"), None);
        assert_eq!(TokenHash::parse("YWJj"), None, "wrong length");
    }

    #[test]
    fn customer_tokens_are_stable_per_order_and_secret() {
        let tokens = CustomerTokens::new("s3cret");
        let a = OrderId(Uuid::from_u128(1));
        let b = OrderId(Uuid::from_u128(2));
        assert_eq!(tokens.token_for(a), tokens.token_for(a));
        assert_ne!(tokens.token_for(a), tokens.token_for(b));
        assert_ne!(
            tokens.token_for(a),
            CustomerTokens::new("other").token_for(a)
        );
        assert_eq!(tokens.token_for(a).len(), 43);
    }

    #[test]
    fn debug_output_hides_secrets() {
        assert_eq!(format!("{:?}", TokenHash::of("x")), "TokenHash(..)");
        assert_eq!(
            format!("{:?}", CustomerTokens::new("x")),
            "CustomerTokens(..)"
        );
    }
}
