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

/// The loaded configuration every SDK client of the bakery is made from.
///
/// A client is made only where an adapter asks for it, so a function links
/// only the SDKs it uses (the linker drops the others): `dispatch` has no
/// SES in its binary, `notify-baker` no SQS. Clients made from one
/// `Clients` share its HTTP connection pool and credentials cache.
#[derive(Clone, Debug)]
pub struct Clients {
    config: SdkConfig,
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
            config: config.clone(),
        }
    }

    pub fn dynamodb(&self) -> aws_sdk_dynamodb::Client {
        aws_sdk_dynamodb::Client::new(&self.config)
    }

    pub fn kinesis(&self) -> aws_sdk_kinesis::Client {
        aws_sdk_kinesis::Client::new(&self.config)
    }

    pub fn sqs(&self) -> aws_sdk_sqs::Client {
        aws_sdk_sqs::Client::new(&self.config)
    }

    pub fn sesv2(&self) -> aws_sdk_sesv2::Client {
        aws_sdk_sesv2::Client::new(&self.config)
    }

    /// Where failed stream batches are kept, whole.
    pub fn s3(&self) -> aws_sdk_s3::Client {
        aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::config::Builder::from(&self.config)
                // An emulator on one host and port cannot serve buckets as
                // subdomains.
                .force_path_style(self.config.endpoint_url().is_some())
                .build(),
        )
    }

    /// The order table's change records, read only where the table cannot
    /// feed the stream itself (see [`crate::table_feed`]).
    pub fn dynamodb_streams(&self) -> aws_sdk_dynamodbstreams::Client {
        aws_sdk_dynamodbstreams::Client::new(&self.config)
    }

    /// The functions' secrets (`crate::secrets`).
    pub fn ssm(&self) -> aws_sdk_ssm::Client {
        aws_sdk_ssm::Client::new(&self.config)
    }

    /// The region the clients talk to, as Lambda names it in event records.
    pub fn region(&self) -> Option<String> {
        self.config.region().map(|r| r.to_string())
    }
}
