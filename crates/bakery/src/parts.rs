//! The adapters the seven functions run on, for one backend: the embedded
//! ones (one SQLite [`Database`], and a mail outbox or SMTP) or AWS
//! (DynamoDB, Kinesis, SQS, SES).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use async_trait::async_trait;
use aws_adapters::{DynamoStore, SesMailer, SqsQueue};
use domain::events::Email;
use domain::ports::{
    AdvanceAndSend, AdvanceThenSend, MailError, Mailer, Operations, OrderQueries, OrderStore,
};
use embedded::Database;
use outbound::{OutboxMailer, SmtpMailer};

use crate::aws::Resources;
use crate::config::ServeConfig;
use crate::names;
use crate::sources::Sources;

/// Sends each email once over SMTP: the database remembers every key sent,
/// so a redelivered event does not mail the cake maker twice.
struct RecordedMailer {
    transport: Arc<dyn Mailer>,
    db: Database,
}

#[async_trait]
impl Mailer for RecordedMailer {
    async fn send(&self, email: &Email) -> Result<(), MailError> {
        let unavailable = |e: domain::ports::StoreError| MailError::Unavailable(e.to_string());
        if self.db.mail_sent(&email.key).await.map_err(unavailable)? {
            return Ok(());
        }
        self.transport.send(email).await?;
        self.db
            .record_mail(&email.key, &email.to, &email.subject)
            .await
            .map_err(unavailable)
    }
}

/// The adapters the functions run on, for one backend.
pub(crate) struct Parts {
    pub(crate) store: Arc<dyn OrderStore>,
    /// What the cake maker's and the operator's pages read.
    pub(crate) queries: Arc<dyn OrderQueries>,
    pub(crate) operations: Arc<dyn Operations>,
    /// Status moves that send to the delivery queue (`dispatch`) and to
    /// the feedback queue (`delivered`).
    pub(crate) to_delivery: Arc<dyn AdvanceAndSend>,
    pub(crate) to_feedback: Arc<dyn AdvanceAndSend>,
    pub(crate) mailer: Arc<dyn Mailer>,
    pub(crate) sources: Sources,
    pub(crate) outbox: Option<PathBuf>,
}

impl Parts {
    pub(crate) fn embedded(config: &ServeConfig, timeout: Duration) -> Result<Parts> {
        let db =
            Database::open(&config.data_dir, embedded::Options::default()).with_context(|| {
                format!("cannot open the database in {}", config.data_dir.display())
            })?;
        // Two bakeries on one directory would both run every step on the
        // same stream and queues, and neither would see the other's orders
        // change (each keeps its recent orders in memory).
        if !db.owns_directory() {
            anyhow::bail!(
                "another bakery is running on the data directory {}: stop it first, or give this one its own --data-dir",
                config.data_dir.display()
            );
        }
        // SMTP cannot tell a repeat from a new email, so the database
        // remembers every key sent over it; the outbox is idempotent by
        // itself (one row per key) and needs no second record.
        let (mailer, outbox): (Arc<dyn Mailer>, Option<PathBuf>) = match &config.smtp_url {
            Some(url) => (
                Arc::new(RecordedMailer {
                    transport: Arc::new(SmtpMailer::from_url(
                        url,
                        config.mail_from.clone(),
                        timeout,
                    )?),
                    db: db.clone(),
                }),
                None,
            ),
            None => {
                let path = config.data_dir.join(embedded::OUTBOX_FILE);
                (
                    Arc::new(OutboxMailer::new(path.clone(), config.mail_from.clone())?),
                    Some(path),
                )
            }
        };
        Ok(Parts {
            store: Arc::new(db.store()),
            queries: Arc::new(db.clone()),
            operations: Arc::new(db.clone()),
            to_delivery: Arc::new(db.step_to_queue(names::DELIVERY_QUEUE)),
            to_feedback: Arc::new(db.step_to_queue(names::FEEDBACK_QUEUE)),
            mailer,
            sources: Sources::Embedded(db),
            outbox,
        })
    }

    pub(crate) async fn aws(config: &ServeConfig) -> Result<Parts> {
        let resources = Resources::connect(&config.aws, &config.tuning, &config.mail_from).await?;
        let clients = &resources.clients;
        let store = Arc::new(DynamoStore::new(clients, &resources.table));
        let operations = resources.operations();
        let to_delivery = AdvanceThenSend {
            store: store.clone(),
            queue: Arc::new(SqsQueue::new(clients, &resources.delivery_queue_url)),
        };
        let to_feedback = AdvanceThenSend {
            store: store.clone(),
            queue: Arc::new(SqsQueue::new(clients, &resources.feedback_queue_url)),
        };
        Ok(Parts {
            store: store.clone(),
            queries: store,
            operations: Arc::new(operations),
            to_delivery: Arc::new(to_delivery),
            to_feedback: Arc::new(to_feedback),
            mailer: Arc::new(SesMailer::with_max_send_rate(
                clients,
                config.mail_from.clone(),
                config.aws.aws_ses_max_send_rate,
            )),
            sources: Sources::Aws {
                resources: Box::new(resources),
                poll: Duration::from_millis(config.aws.aws_poll_ms),
                data_dir: config.data_dir.clone(),
            },
            outbox: None,
        })
    }
}
