//! Times as the tables store them: microseconds since the Unix epoch, UTC.

use chrono::{DateTime, Utc};
use domain::ports::StoreError;

use crate::error::corrupt;

pub(crate) fn micros(at: DateTime<Utc>) -> i64 {
    at.timestamp_micros()
}

pub(crate) fn now() -> i64 {
    micros(Utc::now())
}

pub(crate) fn from_micros(value: i64) -> Result<DateTime<Utc>, StoreError> {
    DateTime::from_timestamp_micros(value).ok_or_else(|| corrupt(format!("time {value}")))
}

/// A duration in microseconds, saturating: a visibility of "forever" must
/// not wrap around into the past.
pub(crate) fn duration(value: std::time::Duration) -> i64 {
    i64::try_from(value.as_micros()).unwrap_or(i64::MAX)
}

/// `at` plus `delay`, saturating.
pub(crate) fn after(at: i64, delay: std::time::Duration) -> i64 {
    at.saturating_add(duration(delay))
}
