//! This step's Lambda function; the library beside it holds the handler.
//!
//! The AWS adapters are wired here; until they exist this binary refuses to
//! start rather than run half-configured.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    Err(
        "the AWS wiring of this function is not built yet; run it locally with the bakery runner"
            .into(),
    )
}
