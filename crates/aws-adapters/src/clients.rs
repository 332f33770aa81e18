//! The SDK clients every adapter is built from.
//!
//! Building a client loads credentials and region and sets up a connection
//! pool, so a Lambda function builds [`Clients`] once per cold start and
//! shares it across invocations.

use aws_config::retry::RetryConfig;
use aws_config::{BehaviorVersion, ConfigLoader, SdkConfig};

/// How many times the SDK tries a call before giving up (the first try
/// included). Standard mode backs off exponentially with jitter and retries
/// throttling, 5xx answers, timeouts and connection failures.
pub const MAX_ATTEMPTS: u32 = 4;

/// One client per service the bakery uses.
#[derive(Clone, Debug)]
pub struct Clients {
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub kinesis: aws_sdk_kinesis::Client,
    pub sqs: aws_sdk_sqs::Client,
    pub sesv2: aws_sdk_sesv2::Client,
    /// Where failed stream batches are kept, whole.
    pub s3: aws_sdk_s3::Client,
    /// The order table's change records, read only where the table cannot
    /// feed the stream itself (see [`crate::table_feed`]).
    pub dynamodb_streams: aws_sdk_dynamodbstreams::Client,
    /// The functions' secrets (`crate::secrets`).
    pub ssm: aws_sdk_ssm::Client,
}

/// The configuration loader with the bakery's retry policy, reading region,
/// credentials and endpoint from the usual places (environment variables
/// such as `AWS_REGION` and `AWS_ENDPOINT_URL`, profiles, the Lambda role).
///
/// Tests and the local runner override parts of it (`endpoint_url`,
/// `region`, `credentials_provider`) before `load()`.
pub fn config_loader() -> ConfigLoader {
    aws_config::defaults(BehaviorVersion::latest())
        .retry_config(RetryConfig::standard().with_max_attempts(MAX_ATTEMPTS))
}

impl Clients {
    /// Clients configured from the environment. Honours `AWS_ENDPOINT_URL`
    /// (and the per-service `AWS_ENDPOINT_URL_<SERVICE>`), so the same
    /// binary works against an emulator.
    pub async fn from_env() -> Clients {
        Clients::new(&config_loader().load().await)
    }

    /// Clients sharing one loaded configuration.
    pub fn new(config: &SdkConfig) -> Clients {
        Clients {
            dynamodb: aws_sdk_dynamodb::Client::new(config),
            kinesis: aws_sdk_kinesis::Client::new(config),
            sqs: aws_sdk_sqs::Client::new(config),
            sesv2: aws_sdk_sesv2::Client::new(config),
            s3: aws_sdk_s3::Client::from_conf(
                aws_sdk_s3::config::Builder::from(config)
                    // An emulator on one host and port cannot serve buckets
                    // as subdomains.
                    .force_path_style(config.endpoint_url().is_some())
                    .build(),
            ),
            dynamodb_streams: aws_sdk_dynamodbstreams::Client::new(config),
            ssm: aws_sdk_ssm::Client::new(config),
        }
    }

    /// The region the clients talk to, as Lambda names it in event records.
    pub fn region(&self) -> Option<String> {
        self.kinesis.config().region().map(|r| r.to_string())
    }
}
