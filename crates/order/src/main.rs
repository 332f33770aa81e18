//! The `order` Lambda function. See `order` (lib) for what it does.
//!
//! The AWS adapters (DynamoDB table, Kinesis stream) are wired here; until
//! they exist this binary refuses to start rather than run half-configured.

use lambda_runtime::Error;

#[tokio::main]
async fn main() -> Result<(), Error> {
    Err(
        "the AWS wiring of this function is not built yet; run it locally with the bakery runner"
            .into(),
    )
}
