//! The correlation id: one value that follows an order from the request
//! that placed it through every function's log lines, the stream events
//! (inside the order) and the queue messages.
//!
//! A client may choose it with the `X-Correlation-Id` request header (its
//! own request id, say), so its logs and ours can be joined; on AWS the API
//! Gateway request id is used otherwise, and a new UUID where there is
//! neither. It is logged, so it is kept short and plain.

/// The request header that carries a correlation id, both ways.
pub const HEADER: &str = "x-correlation-id";

/// The longest correlation id taken from a client.
pub const MAX_LEN: usize = 64;

/// `text` as a correlation id, if it is one: 1 to [`MAX_LEN`] characters
/// of letters, digits and `-_.:=+/` (API Gateway's request ids are
/// base64, `bX9kQj0001EMA=`). Anything else (spaces,
/// quotes, control characters that could forge a log line) is ignored and
/// a new id chosen instead of refusing the order.
pub fn accept(text: &str) -> Option<&str> {
    let plain = |c: char| c.is_ascii_alphanumeric() || "-_.:=+/".contains(c);
    (!text.is_empty() && text.len() <= MAX_LEN && text.chars().all(plain)).then_some(text)
}

/// A new correlation id, for a request that brought none.
pub fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_ids_are_taken_and_anything_that_could_forge_a_log_line_is_not() {
        assert_eq!(accept("req-42"), Some("req-42"));
        assert_eq!(accept("bX9kQj0001EMA="), Some("bX9kQj0001EMA="));
        assert_eq!(
            accept("Root=1-abc:def_1.2/x+y"),
            Some("Root=1-abc:def_1.2/x+y")
        );
        assert_eq!(accept("a;b"), None);
        assert_eq!(
            accept("a9f1c3e0-0000-4000-8000-000000000000"),
            Some("a9f1c3e0-0000-4000-8000-000000000000")
        );
        assert_eq!(accept(""), None);
        assert_eq!(accept("two words"), None);
        assert_eq!(accept("line\nbreak"), None);
        assert_eq!(accept("\"quoted\""), None);
        assert_eq!(accept("é"), None);
        assert_eq!(accept(&"x".repeat(MAX_LEN)).map(str::len), Some(MAX_LEN));
        assert_eq!(accept(&"x".repeat(MAX_LEN + 1)), None);
    }

    #[test]
    fn new_ids_are_accepted_ids() {
        let id = new_id();
        assert_eq!(accept(&id), Some(id.as_str()));
        assert_ne!(new_id(), id);
    }
}
