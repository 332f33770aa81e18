//! Why a use case did not do what was asked, and the one mapping to an
//! HTTP answer.

use domain::Status;
use domain::ports::StoreError;
use lambda_kit::http::ApiError;

/// Why a use case did not do what was asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// No such order, or not one this token may see: the two are told
    /// apart to nobody.
    #[error("no such order")]
    NotFound,
    /// The idempotency key was already used for a different order.
    #[error("the idempotency key was used for a different order")]
    IdempotencyKeyReused,
    /// The order is not at the step before `wanted`; nothing changed.
    #[error("the order is {current}, it cannot become {wanted}")]
    OutOfOrder { current: Status, wanted: Status },
    /// Storage or a queue is busy or unreachable; retrying the same
    /// request is safe.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// A bug or corrupt data.
    #[error("failed: {0}")]
    Failed(String),
}

impl From<StoreError> for Error {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Unavailable(why) => Error::Unavailable(why),
            StoreError::Failed(why) => Error::Failed(why),
        }
    }
}

/// How the HTTP functions and the pages answer a use case's error.
impl From<Error> for ApiError {
    fn from(error: Error) -> Self {
        match error {
            Error::NotFound => ApiError::NotFound,
            Error::IdempotencyKeyReused => ApiError::IdempotencyKeyReused,
            Error::OutOfOrder { current, wanted } => ApiError::OutOfOrder { current, wanted },
            Error::Unavailable(why) => ApiError::Unavailable(why),
            Error::Failed(why) => ApiError::Internal(why),
        }
    }
}
