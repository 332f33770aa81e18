//! A function's configuration, read from environment variables only.
//!
//! The templates set the variables; a function reads the ones it needs at
//! cold start, before anything else, so a missing one stops it right away
//! with a message naming the variable instead of failing on the first
//! order.

/// A required environment variable is missing, empty or not Unicode.
#[derive(Clone, PartialEq, Eq)]
pub struct MissingVar(pub String);

/// The message itself: `main` returning an error prints its `Debug`, and
/// that line is what an operator reads in the function's log.
impl std::fmt::Debug for MissingVar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

impl std::fmt::Display for MissingVar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "environment variable {} is not set; this function needs it",
            self.0
        )
    }
}

impl std::error::Error for MissingVar {}

/// The value of `name`, or an error naming it.
pub fn required(name: &str) -> Result<String, MissingVar> {
    optional(name).ok_or_else(|| MissingVar(name.to_owned()))
}

/// The value of `name`, if it is set. An empty value counts as unset:
/// templates often write `VAR: ""` for "not configured".
pub fn optional(name: &str) -> Option<String> {
    std::env::var(name)
        .ok()
        .map(|value| value.trim().to_owned())
        .filter(|value| !value.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_variable_is_named_in_the_error() {
        let error = required("AWS_ADAPTERS_TEST_SURELY_UNSET").unwrap_err();
        assert_eq!(error, MissingVar("AWS_ADAPTERS_TEST_SURELY_UNSET".into()));
        assert!(
            error.to_string().contains("AWS_ADAPTERS_TEST_SURELY_UNSET"),
            "{error}"
        );
        assert_eq!(optional("AWS_ADAPTERS_TEST_SURELY_UNSET"), None);
    }

    #[test]
    fn a_set_variable_is_read() {
        // PATH is set in every environment tests run in.
        assert!(required("PATH").is_ok());
    }
}
