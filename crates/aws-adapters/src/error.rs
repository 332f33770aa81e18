//! Which SDK errors are worth trying again.
//!
//! The SDK has already retried a call [`crate::clients::MAX_ATTEMPTS`] times
//! by the time an error reaches us; this only decides what the error means
//! to the caller: "later" (throttled, the service or the network failing)
//! or "never as it is" (a missing table, a bad request, a bug).

use std::error::Error;

use aws_runtime::retries::classifiers::{THROTTLING_ERRORS, TRANSIENT_ERRORS};
use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use domain::ports::StoreError;

/// Codes that mean "busy, try later" which the SDK's own classifier does
/// not list ([`THROTTLING_ERRORS`], [`TRANSIENT_ERRORS`]): a DynamoDB
/// transaction that met another one, and KMS throttling behind SQS or SSM.
/// Both come with a 400 status, so the status alone does not tell.
const MORE_TRANSIENT_CODES: &[&str] = &["TransactionConflictException", "KMSThrottlingException"];

fn is_transient_code(code: &str) -> bool {
    THROTTLING_ERRORS.contains(&code)
        || TRANSIENT_ERRORS.contains(&code)
        || MORE_TRANSIENT_CODES.contains(&code)
}

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
                || error.code().is_some_and(is_transient_code)
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

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_dynamodb::error::ErrorMetadata;
    use aws_sdk_dynamodb::operation::get_item::GetItemError;
    use aws_smithy_types::body::SdkBody;

    fn answered(status: u16, code: &str) -> SdkError<GetItemError, HttpResponse> {
        let error = GetItemError::generic(ErrorMetadata::builder().code(code).build());
        let raw = HttpResponse::new(status.try_into().unwrap(), SdkBody::empty());
        SdkError::service_error(error, raw)
    }

    #[test]
    fn throttling_and_conflicts_are_transient_even_with_a_400() {
        for code in [
            "ThrottlingException",
            "ProvisionedThroughputExceededException",
            "TooManyRequestsException",
            "RequestTimeoutException",
            "TransactionConflictException",
            "KMSThrottlingException",
        ] {
            assert!(is_transient(&answered(400, code)), "{code}");
        }
    }

    #[test]
    fn server_errors_are_transient_and_bad_requests_are_not() {
        assert!(is_transient(&answered(500, "InternalServerError")));
        assert!(is_transient(&answered(503, "ServiceUnavailable")));
        assert!(is_transient(&answered(429, "SomethingNew")));
        for code in [
            "ValidationException",
            "ResourceNotFoundException",
            "AccessDeniedException",
        ] {
            assert!(!is_transient(&answered(400, code)), "{code}");
        }
    }
}
