//! The bakery's ports over AWS: the order table (DynamoDB) with the order
//! stream it feeds (Kinesis), failed stream batches (S3), the delivery and
//! feedback queues (SQS), email (SESv2) and the functions' secrets (SSM
//! Parameter Store), plus readers of the stream and the queues for a local
//! runner that plays Lambda's event source mappings against AWS.
//!
//! Every SDK error is translated into the domain's errors, so handlers never
//! see a vendor type: throttling, 5xx answers, timeouts and failures to reach
//! the service become `Unavailable` (try again later); anything else becomes
//! `Failed` (for storage) or `Rejected` (for mail). Throttling is retried by
//! the SDK's own retry policy (standard mode, [`clients::MAX_ATTEMPTS`]
//! attempts), never by hand; only compare-and-set conflicts are retried here,
//! because they are ours, not the service's.
//!
//! # Layout
//!
//! - [`clients`]: [`Clients`], the SDK clients, built once per cold start
//!   from the environment (`AWS_ENDPOINT_URL` points them at an emulator).
//! - [`env`]: reading a function's configuration from environment variables,
//!   failing at cold start with the name of what is missing.
//! - [`logging`]: the functions' log format (compact text or JSON, no colours).
//! - [`dynamo`]: [`DynamoStore`], the `OrderStore` over a DynamoDB table
//!   that feeds the Kinesis stream, with the table's item layout.
//! - [`table_feed`]: the table feeding the stream, played by the local
//!   runner where the service cannot (an emulator).
//! - [`stream_failures`]: failed stream batches, kept whole in S3.
//! - [`sqs`]: [`SqsQueue`], the `Queue` over an SQS queue.
//! - [`ses`]: [`SesMailer`], the `Mailer` over SESv2.
//! - [`readers`]: [`KinesisReader`] and [`SqsReader`], which read records and
//!   messages in exactly the shape Lambda hands them to functions.
//! - [`give_up`]: a deployed consumer settling what can never succeed
//!   (kept in the stream-failures bucket, or sent to the dead-letter queue)
//!   instead of letting its event source mapping retry it.
//! - [`secrets`]: the functions' secrets as SecureString parameters in SSM
//!   Parameter Store, named by the environment, read in one call at cold
//!   start and refreshed through `lambda_kit::refresh`.
//! - [`partner`]: a partner function's webhook (whose secret is in SSM) or
//!   SES email, from the environment.
//! - [`operations`]: the operator's port on AWS,
//!   [`operations::AwsOperations`]: queue depths, dead letters and stream
//!   failures (`letters.rs`), their redrive (`redrive.rs`). The cake
//!   maker's `OrderQueries` is [`DynamoStore`]'s.
//! - [`provision`]: creating the table, stream and queues on an emulator or
//!   in tests (in AWS the SAM/serverless templates own them).
//! - `emulator` (feature `emulator`): a moto server for tests.
//! - `error` (private): which SDK errors are worth retrying.

pub mod clients;
pub mod dynamo;
#[cfg(feature = "emulator")]
pub mod emulator;
pub mod env;
mod error;
pub mod give_up;
pub mod logging;
pub mod operations;
pub mod partner;
pub mod provision;
pub mod readers;
pub mod secrets;
pub mod ses;
pub mod sqs;
pub mod stream_failures;
pub mod table_feed;

pub use clients::Clients;
pub use dynamo::DynamoStore;
pub use readers::{KinesisReader, SqsReader};
pub use ses::SesMailer;
pub use sqs::SqsQueue;
