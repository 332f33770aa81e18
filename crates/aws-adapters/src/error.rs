//! Which SDK errors are worth trying again.
//!
//! The SDK has already retried a call [`crate::clients::MAX_ATTEMPTS`] times
//! by the time an error reaches us; this only decides what the error means
//! to the caller: "later" (throttled, the service or the network failing)
//! or "never as it is" (a missing table, a bad request, a bug).

use std::error::Error;

use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use domain::ports::StoreError;

/// Error codes that mean "busy or failing inside AWS, try later", across
/// DynamoDB, Kinesis, SQS and SES. Most come with a 400 status, so the
/// status alone does not tell.
const TRANSIENT_CODES: &[&str] = &[
    "ThrottlingException",
    "Throttling",
    "ThrottledException",
    "RequestThrottled",
    "RequestThrottledException",
    "TooManyRequestsException",
    "ProvisionedThroughputExceededException",
    "RequestLimitExceeded",
    "LimitExceededException",
    "TransactionConflictException",
    "TransactionInProgressException",
    "KMSThrottlingException",
    "InternalServerError",
    "InternalServerErrorException",
    "InternalFailure",
    "InternalError",
    "ServiceUnavailable",
    "ServiceUnavailableException",
    "RequestTimeout",
    "RequestTimeoutException",
];

/// Whether trying the same call again later may succeed.
pub(crate) fn is_transient<E: ProvideErrorMetadata>(error: &SdkError<E, HttpResponse>) -> bool {
    match error {
        // Never sent: a bug in how we built the request.
        SdkError::ConstructionFailure(_) => false,
        // The network or the service did not answer (properly).
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            true
        }
        SdkError::ServiceError(context) => {
            let status = context.raw().status();
            status.is_server_error()
                || status.as_u16() == 429
                || error
                    .code()
                    .is_some_and(|code| TRANSIENT_CODES.contains(&code))
        }
        // `SdkError` is non-exhaustive; an unknown kind is not ours to fix.
        _ => true,
    }
}

/// The error's whole chain, for logs and error messages.
pub(crate) fn describe<E>(operation: &str, error: &SdkError<E, HttpResponse>) -> String
where
    E: Error + 'static,
{
    format!("{operation}: {}", DisplayErrorContext(error))
}

/// A storage call's failure in the domain's terms.
pub(crate) fn store_error<E>(operation: &str, error: &SdkError<E, HttpResponse>) -> StoreError
where
    E: ProvideErrorMetadata + Error + 'static,
{
    let message = describe(operation, error);
    if is_transient(error) {
        tracing::warn!(error = %message, "AWS call failed; retryable");
        StoreError::Unavailable(message)
    } else {
        tracing::error!(error = %message, "AWS call failed");
        StoreError::Failed(message)
    }
}
