//! The command line: flags, each with a `BAKERY_`-prefixed environment
//! variable, and the subcommands. Running `bakery` with no arguments serves.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "bakery",
    version,
    about = "The cake bakery's order system on one machine: API, the seven steps, mail outbox."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// How log lines on standard error look: `text` for people, `json` for
    /// a log store (one object per line, with the fields the functions log
    /// on AWS: `orderId` and `correlationId` under `span`).
    #[arg(
        long,
        value_enum,
        env = "BAKERY_LOG_FORMAT",
        default_value = "text",
        global = true
    )]
    pub log_format: LogFormat,
    #[command(flatten)]
    pub serve: ServeConfig,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the API and run every step (the default).
    Serve,
    /// Inspect and redrive the dead-letter queue.
    Dlq {
        #[command(subcommand)]
        action: DlqAction,
    },
    /// Read the emails in the local mail outbox (when there is no SMTP).
    Outbox {
        #[command(subcommand)]
        action: OutboxAction,
    },
}

#[derive(Debug, Subcommand)]
pub enum OutboxAction {
    /// Lists the emails, oldest first, as JSON lines: key, when, subject.
    /// Writes nothing: it works beside a running bakery and on a read-only
    /// data directory.
    List {
        /// Also print each email's recipient (personal data).
        #[arg(long)]
        with_recipient: bool,
    },
    /// Prints one email as sent (RFC 5322), ready for a mail program.
    Show {
        /// The email's key, from `bakery outbox list`.
        key: String,
    },
    /// Writes every email into a directory as `<key>.eml`, the files mail
    /// programs open; emails already there are written again.
    Export {
        /// Where the files go (created if missing).
        dir: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum DlqAction {
    /// Lists dead letters as JSON lines: id, source, reason, attempts,
    /// when, the message id and the order id. Writes nothing: it works
    /// beside a running bakery and on a read-only data directory.
    List {
        /// Also print each letter's body (the event or message itself:
        /// customer names and addresses). Embedded backend only.
        #[arg(long)]
        with_body: bool,
    },
    /// Puts dead letters back where they came from, to be tried again.
    Redrive {
        /// The dead letter's id (from `bakery dlq list`): a number on the
        /// embedded backend; `delivery:<message id>`,
        /// `feedback:<message id>` or `stream-failures:<object key>` with
        /// `--backend aws`.
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        id: Option<String>,
        /// Redrive every dead letter.
        #[arg(long)]
        all: bool,
    },
}

/// Everything `serve` needs; `dlq` uses only `--data-dir`, or with
/// `--backend aws` the `--aws-*` flags (it never provisions).
#[derive(Debug, Clone, Args)]
pub struct ServeConfig {
    /// Address the API listens on (port 0 picks a free port).
    #[arg(
        long,
        env = "BAKERY_LISTEN",
        default_value = "127.0.0.1:3000",
        global = true
    )]
    pub listen: SocketAddr,

    /// Where the database, the mail outbox and the secrets live.
    #[arg(
        long,
        env = "BAKERY_DATA_DIR",
        default_value = "./bakery-data",
        global = true
    )]
    pub data_dir: PathBuf,

    /// The cake maker's bearer token; generated once and kept in the data
    /// directory when not given.
    #[arg(
        long,
        env = "BAKERY_BAKER_TOKEN",
        hide_env_values = true,
        global = true
    )]
    pub baker_token: Option<String>,

    /// Base URL customers and the cake maker use, for links in emails.
    #[arg(long, env = "BAKERY_PUBLIC_URL", global = true)]
    pub public_url: Option<String>,

    /// A product catalog (JSON) replacing the default one.
    #[arg(long, env = "BAKERY_CATALOG", global = true)]
    pub catalog: Option<PathBuf>,

    /// Send mail over SMTP (smtp://host:port, smtps://user:pass@host)
    /// instead of writing it to the outbox.
    #[arg(long, env = "BAKERY_SMTP_URL", hide_env_values = true, global = true)]
    pub smtp_url: Option<String>,

    /// The sender of every email.
    #[arg(
        long,
        env = "BAKERY_MAIL_FROM",
        default_value = "Bakery orders <orders@bakery.local>",
        global = true
    )]
    pub mail_from: String,

    /// Where orders to bake are emailed.
    #[arg(
        long,
        env = "BAKERY_BAKER_EMAIL",
        default_value = "baker@bakery.local",
        global = true
    )]
    pub baker_email: String,

    /// The delivery company's webhook; when unset it is emailed instead.
    #[arg(long, env = "BAKERY_DELIVERY_WEBHOOK_URL", global = true)]
    pub delivery_webhook_url: Option<reqwest::Url>,

    /// The delivery company's email address, used without a webhook.
    #[arg(
        long,
        env = "BAKERY_DELIVERY_EMAIL",
        default_value = "dispatch@delivery.local",
        global = true
    )]
    pub delivery_email: String,

    /// Customer service's webhook; when unset it is emailed instead.
    #[arg(long, env = "BAKERY_CUSTOMER_SERVICE_WEBHOOK_URL", global = true)]
    pub customer_service_webhook_url: Option<reqwest::Url>,

    /// Customer service's email address, used without a webhook.
    #[arg(
        long,
        env = "BAKERY_CUSTOMER_SERVICE_EMAIL",
        default_value = "care@bakery.local",
        global = true
    )]
    pub customer_service_email: String,

    /// Secret that signs webhooks (`whsec_` + base64); generated once and
    /// kept in the data directory when not given.
    #[arg(
        long,
        env = "BAKERY_WEBHOOK_SECRET",
        hide_env_values = true,
        global = true
    )]
    pub webhook_secret: Option<String>,

    /// Which parts the functions run on.
    #[arg(
        long,
        env = "BAKERY_BACKEND",
        value_enum,
        default_value_t = Backend::Embedded,
        global = true
    )]
    pub backend: Backend,

    #[command(flatten)]
    pub aws: AwsConfig,

    #[command(flatten)]
    pub tuning: Tuning,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Backend {
    /// SQLite files in the data directory: the orders and the mail outbox.
    Embedded,
    /// DynamoDB, Kinesis, SQS and SES, at AWS or at any AWS endpoint (an
    /// emulator). Credentials and region come from the usual AWS
    /// environment variables and files.
    Aws,
}

/// Where the AWS backend finds its resources.
#[derive(Debug, Clone, Args)]
pub struct AwsConfig {
    /// Talk to this endpoint instead of AWS (e.g. an emulator on
    /// loopback); `AWS_ENDPOINT_URL` works too.
    #[arg(long, env = "BAKERY_AWS_ENDPOINT_URL", global = true)]
    pub aws_endpoint_url: Option<String>,

    /// Resource names start with this: `<prefix>-orders` (table and
    /// stream), `<prefix>-delivery`, `<prefix>-feedback` and their
    /// `-dlq`s, `<prefix>-stream-failures` (the bucket of failed stream
    /// batches).
    #[arg(
        long,
        env = "BAKERY_AWS_PREFIX",
        default_value = "bakery",
        global = true
    )]
    pub aws_prefix: String,

    /// Create missing resources (and verify the sender in SES) at start:
    /// for an emulator or a scratch account. Deployed stacks get theirs
    /// from the templates.
    #[arg(long, env = "BAKERY_AWS_PROVISION", global = true)]
    pub aws_provision: bool,

    /// Feed the order stream from the table's DynamoDB stream, as Kinesis
    /// Data Streams for DynamoDB does in AWS: for an emulator without that
    /// feature. On with `--aws-provision` (a table it creates has no other
    /// feed); a deployed stack's table feeds its stream itself.
    #[arg(long, env = "BAKERY_AWS_FEED_STREAM", global = true)]
    pub aws_feed_stream: bool,

    /// How often the stream and queue pollers look for new work, as
    /// Lambda's pollers do.
    #[arg(long, env = "BAKERY_AWS_POLL_MS", default_value_t = 200, global = true)]
    pub aws_poll_ms: u64,

    /// The most emails a second sent through SES (the account's send rate:
    /// 1 in the sandbox, about 14 on a new production account); a backlog
    /// goes out at this pace, and throttled sends wait instead of failing.
    #[arg(
        long,
        env = "BAKERY_AWS_SES_MAX_SEND_RATE",
        default_value_t = aws_adapters::ses::DEFAULT_MAX_SEND_RATE,
        global = true
    )]
    pub aws_ses_max_send_rate: std::num::NonZeroU32,

    /// A deployed stack's resources, which CloudFormation names itself:
    /// each one given here is used instead of its `<prefix>-…` name. The
    /// stack's outputs of the same names hold them (docs/deploy.md).
    #[command(flatten)]
    pub stack: StackResources,
}

/// See [`AwsConfig::stack`].
#[derive(Debug, Clone, Default, Args)]
pub struct StackResources {
    /// The table (stack output `OrdersTableName`).
    #[arg(long, env = "BAKERY_AWS_ORDERS_TABLE", global = true)]
    pub aws_orders_table: Option<String>,
    /// The stream (stack output `OrderStreamName`).
    #[arg(long, env = "BAKERY_AWS_ORDER_STREAM", global = true)]
    pub aws_order_stream: Option<String>,
    /// Stack output `DeliveryQueueUrl`.
    #[arg(long, env = "BAKERY_AWS_DELIVERY_QUEUE_URL", global = true)]
    pub aws_delivery_queue_url: Option<String>,
    /// Stack output `DeliveryDeadLetterQueueUrl`.
    #[arg(long, env = "BAKERY_AWS_DELIVERY_DLQ_URL", global = true)]
    pub aws_delivery_dlq_url: Option<String>,
    /// Stack output `FeedbackQueueUrl`.
    #[arg(long, env = "BAKERY_AWS_FEEDBACK_QUEUE_URL", global = true)]
    pub aws_feedback_queue_url: Option<String>,
    /// Stack output `FeedbackDeadLetterQueueUrl`.
    #[arg(long, env = "BAKERY_AWS_FEEDBACK_DLQ_URL", global = true)]
    pub aws_feedback_dlq_url: Option<String>,
    /// The bucket failed stream batches are kept in (stack output
    /// `StreamFailuresBucketName`).
    #[arg(long, env = "BAKERY_AWS_STREAM_FAILURES_BUCKET", global = true)]
    pub aws_stream_failures_bucket: Option<String>,
}

impl AwsConfig {
    /// Whether this bakery plays the table's feed of the stream.
    pub fn feeds_stream(&self) -> bool {
        self.aws_feed_stream || self.aws_provision
    }

    pub fn name(&self, what: &str) -> String {
        format!("{}-{what}", self.aws_prefix)
    }
}

/// How the local event source mappings and partner calls behave. The
/// defaults suit a bakery; tests shorten the waits.
#[derive(Debug, Clone, Args)]
pub struct Tuning {
    /// Tries of one stream record or queue message before it is
    /// dead-lettered.
    #[arg(long, env = "BAKERY_MAX_TRIES", default_value_t = 5, global = true)]
    pub max_tries: u32,

    /// Wait before the first retry of a failed record or message; doubles
    /// with every further try.
    #[arg(
        long,
        env = "BAKERY_RETRY_DELAY_MS",
        default_value_t = 1000,
        global = true
    )]
    pub retry_delay_ms: u64,

    /// Longest wait between retries.
    #[arg(
        long,
        env = "BAKERY_MAX_RETRY_DELAY_MS",
        default_value_t = 60_000,
        global = true
    )]
    pub max_retry_delay_ms: u64,

    /// Records a stream consumer takes at once (Kinesis `BatchSize`).
    #[arg(
        long,
        env = "BAKERY_STREAM_BATCH",
        default_value_t = 100,
        value_parser = at_least_one,
        global = true
    )]
    pub stream_batch: usize,

    /// Batches a stream consumer has in hand at once (like Lambda's
    /// Kinesis `ParallelizationFactor`): above 1, a new record starts
    /// without waiting for the batch before it, while records of one order
    /// are still handled one after another and checkpoints stay in order.
    /// Measured (docs/benchmark.md): 2 shortens both email steps under
    /// load and costs about a tenth of the burst of orders per second, as
    /// the batches get smaller; more costs more.
    #[arg(
        long,
        env = "BAKERY_STREAM_IN_FLIGHT",
        default_value_t = 2,
        value_parser = clap::value_parser!(u16).range(1..),
        global = true
    )]
    pub stream_in_flight: u16,

    /// Messages a queue consumer takes at once (SQS `BatchSize`).
    #[arg(
        long,
        env = "BAKERY_QUEUE_BATCH",
        default_value_t = 10,
        value_parser = at_least_one,
        global = true
    )]
    pub queue_batch: usize,

    /// Independent pollers per local queue, each receiving and handling its
    /// own batches (like Lambda's SQS `MaximumConcurrency`). Receives are
    /// atomic, so no message goes to two pollers at once.
    #[arg(
        long,
        env = "BAKERY_QUEUE_POLLERS",
        default_value_t = 4,
        value_parser = clap::value_parser!(u16).range(1..),
        global = true
    )]
    pub queue_pollers: u16,

    /// How long a received message stays hidden from other receives.
    #[arg(
        long,
        env = "BAKERY_VISIBILITY_TIMEOUT_SECS",
        default_value_t = 60,
        value_parser = clap::value_parser!(u64).range(1..),
        global = true
    )]
    pub visibility_timeout_secs: u64,

    /// Embedded backend: how long a stream record is kept once every
    /// consumer has finished it, like a Kinesis stream's retention period;
    /// then it is deleted and its space given back. Dead letters keep their
    /// own copy. 0 trims as soon as both consumers are past a record.
    #[arg(
        long,
        env = "BAKERY_STREAM_RETENTION_SECS",
        default_value_t = 86_400,
        global = true
    )]
    pub stream_retention_secs: u64,

    /// Tries of one partner call within one attempt of its message.
    #[arg(
        long,
        env = "BAKERY_PARTNER_ATTEMPTS",
        default_value_t = 3,
        value_parser = at_least_one,
        global = true
    )]
    pub partner_attempts: usize,

    /// Timeout of one partner call or SMTP exchange.
    #[arg(
        long,
        env = "BAKERY_PARTNER_TIMEOUT_MS",
        default_value_t = 10_000,
        value_parser = clap::value_parser!(u64).range(1..),
        global = true
    )]
    pub partner_timeout_ms: u64,

    /// Longest time one API request may take before it answers 503/408.
    #[arg(
        long,
        env = "BAKERY_REQUEST_TIMEOUT_MS",
        default_value_t = 10_000,
        value_parser = clap::value_parser!(u64).range(1..),
        global = true
    )]
    pub request_timeout_ms: u64,

    /// Longest wait of a `GET /order/{orderId}?waitFor=…` (long-poll);
    /// kept below the request timeout.
    #[arg(
        long,
        env = "BAKERY_MAX_WAIT_MS",
        default_value_t = 5_000,
        global = true
    )]
    pub max_wait_ms: u64,
}

impl Tuning {
    /// The longest long-poll: `max_wait_ms`, but always a second (or half)
    /// short of the request timeout, which would otherwise answer 503.
    pub fn max_wait(&self) -> Duration {
        let below_timeout = self
            .request_timeout_ms
            .saturating_sub(1_000)
            .max(self.request_timeout_ms / 2);
        Duration::from_millis(self.max_wait_ms.min(below_timeout))
    }

    /// Wait before retry number `attempt` (1 = the first retry).
    pub fn retry_delay(&self, attempt: u32) -> Duration {
        let factor = 1u64 << attempt.saturating_sub(1).min(20);
        Duration::from_millis(
            self.retry_delay_ms
                .saturating_mul(factor)
                .min(self.max_retry_delay_ms),
        )
    }

    pub fn stream_retention(&self) -> Duration {
        Duration::from_secs(self.stream_retention_secs)
    }

    /// How often the embedded stream is trimmed: a tenth of the retention,
    /// between a second and a minute.
    pub fn stream_trim_interval(&self) -> Duration {
        (self.stream_retention() / 10).clamp(Duration::from_secs(1), Duration::from_secs(60))
    }

    pub fn visibility_timeout(&self) -> Duration {
        Duration::from_secs(self.visibility_timeout_secs)
    }
}

/// A count that must be at least one: a batch of 0 records, or 0 tries,
/// would accept work and never move it.
fn at_least_one(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_that_cannot_work_are_refused_naming_the_flag() {
        for (flag, value) in [
            ("--stream-batch", "0"),
            ("--queue-batch", "0"),
            ("--partner-attempts", "0"),
            ("--request-timeout-ms", "0"),
            ("--partner-timeout-ms", "0"),
            ("--visibility-timeout-secs", "0"),
            ("--stream-batch", "many"),
        ] {
            let error = Cli::try_parse_from(["bakery", flag, value])
                .err()
                .unwrap_or_else(|| panic!("{flag} {value} was accepted"));
            assert!(error.to_string().contains(flag), "{flag}: {error}");
        }
        let cli = Cli::try_parse_from(["bakery", "--stream-batch", "1", "--queue-batch", "1"]);
        assert!(cli.is_ok());
    }

    #[test]
    fn no_arguments_means_serve_with_defaults() {
        let cli = Cli::try_parse_from(["bakery"]).unwrap();
        assert!(cli.command.is_none());
        assert_eq!(cli.serve.listen.to_string(), "127.0.0.1:3000");
        assert_eq!(cli.serve.data_dir, PathBuf::from("./bakery-data"));
    }

    #[test]
    fn flags_work_after_a_subcommand_too() {
        let cli = Cli::try_parse_from(["bakery", "dlq", "list", "--data-dir", "/x"]).unwrap();
        assert!(matches!(
            cli.command,
            Some(Command::Dlq {
                action: DlqAction::List { with_body: false }
            })
        ));
        assert_eq!(cli.serve.data_dir, PathBuf::from("/x"));
    }

    #[test]
    fn redrive_wants_an_id_or_all() {
        assert!(Cli::try_parse_from(["bakery", "dlq", "redrive"]).is_err());
        assert!(Cli::try_parse_from(["bakery", "dlq", "redrive", "3", "--all"]).is_err());
        assert!(Cli::try_parse_from(["bakery", "dlq", "redrive", "--all"]).is_ok());
    }

    #[test]
    fn redrive_takes_numbers_and_aws_ids_with_the_backend_flags() {
        let cli = Cli::try_parse_from(["bakery", "dlq", "redrive", "3"]).unwrap();
        assert!(matches!(
            cli.command,
            Some(Command::Dlq {
                action: DlqAction::Redrive { id: Some(ref id), all: false }
            }) if id == "3"
        ));
        assert_eq!(cli.serve.backend, Backend::Embedded);

        let cli = Cli::try_parse_from([
            "bakery",
            "dlq",
            "redrive",
            "delivery:6c1a0e1e-2f4b-4f4e-9d1b-3c7a1b2c3d4e",
            "--backend",
            "aws",
            "--aws-endpoint-url",
            "http://127.0.0.1:5000",
            "--aws-prefix",
            "shop",
        ])
        .unwrap();
        assert!(matches!(
            cli.command,
            Some(Command::Dlq {
                action: DlqAction::Redrive { id: Some(ref id), all: false }
            }) if id == "delivery:6c1a0e1e-2f4b-4f4e-9d1b-3c7a1b2c3d4e"
        ));
        assert_eq!(cli.serve.backend, Backend::Aws);
        assert_eq!(
            cli.serve.aws.aws_endpoint_url.as_deref(),
            Some("http://127.0.0.1:5000")
        );
        assert_eq!(
            cli.serve.aws.name("stream-failures"),
            "shop-stream-failures"
        );

        let cli =
            Cli::try_parse_from(["bakery", "--backend", "aws", "dlq", "redrive", "--all"]).unwrap();
        assert!(matches!(
            cli.command,
            Some(Command::Dlq {
                action: DlqAction::Redrive {
                    id: None,
                    all: true
                }
            })
        ));
        assert_eq!(cli.serve.backend, Backend::Aws);
        assert!(
            Cli::try_parse_from(["bakery", "dlq", "list", "--backend", "aws"])
                .is_ok_and(|cli| cli.serve.backend == Backend::Aws)
        );
    }

    #[test]
    fn retry_delays_double_up_to_the_cap() {
        let tuning = Cli::try_parse_from([
            "bakery",
            "--retry-delay-ms",
            "100",
            "--max-retry-delay-ms",
            "350",
        ])
        .unwrap()
        .serve
        .tuning;
        assert_eq!(tuning.retry_delay(1), Duration::from_millis(100));
        assert_eq!(tuning.retry_delay(2), Duration::from_millis(200));
        assert_eq!(tuning.retry_delay(3), Duration::from_millis(350));
        assert_eq!(tuning.retry_delay(99), Duration::from_millis(350));
    }
}
