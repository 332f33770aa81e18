//! The order's identifier, on its own so that what only names an order
//! (tokens, events) needs nothing else of the order model.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// An order's identifier, a UUID (version 7, so ids sort by creation time).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct OrderId(pub Uuid);

/// Crockford's base32: no I, L, O or U, so a number read out over the
/// phone is not misheard.
const NUMBER_ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

impl OrderId {
    /// The order's number for people: `B-` and eight characters from the
    /// id's last 40 bits (random in a version 7 id), as `B-7K2M-9QXD`. The
    /// same everywhere: shop, tracking, the cake maker's and operator's
    /// pages (bakery.js `orderNumber` computes it the same way) and every
    /// email. The API keeps the full id: among 100,000 orders the chance
    /// that some two share a number is about 1 in 200, so nothing is
    /// looked up by it.
    pub fn number(&self) -> String {
        let bytes = self.0.as_bytes();
        let bits = bytes[11..]
            .iter()
            .fold(0u64, |acc, byte| (acc << 8) | u64::from(*byte));
        let chars: String = (0..8)
            .rev()
            .map(|i| char::from(NUMBER_ALPHABET[((bits >> (5 * i)) & 31) as usize]))
            .collect();
        format!("B-{}-{}", &chars[..4], &chars[4..])
    }

    /// Parses the textual form clients send; `None` if it is not a UUID.
    pub fn parse(text: &str) -> Option<OrderId> {
        Uuid::try_parse(text).ok().map(OrderId)
    }
}

impl std::fmt::Display for OrderId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_number_is_the_ids_last_forty_bits_in_crockford_base32() {
        let id = OrderId::parse("0192f3a0-7c1e-7d00-8a00-00000000000a").unwrap();
        assert_eq!(id.number(), "B-0000-000A");
        // bakery.js's orderNumber is checked against this vector too.
        let id = OrderId::parse("01938f3c-5a2e-7b41-9c3d-e8f27a91b4c6").unwrap();
        assert_eq!(id.number(), "B-Y9X9-3D66");
        let all_ones = OrderId::parse("00000000-0000-7000-8000-00ffffffffff").unwrap();
        assert_eq!(all_ones.number(), "B-ZZZZ-ZZZZ");
    }
}
