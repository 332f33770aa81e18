//! Wiring the seven functions to their parts and serving them.
//!
//! The three HTTP functions' routers are merged into one server, as API
//! Gateway would route to them; the four consumers run as tasks fed by
//! [`crate::mappings`]. The parts are the embedded ones (one [`Database`]
//! and a mail outbox or SMTP) or, with `--backend aws`, DynamoDB, Kinesis,
//! SQS and SES.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use async_trait::async_trait;
use aws_adapters::{DynamoStore, SesMailer, SqsQueue};
use aws_lambda_events::event::kinesis::KinesisEvent;
use aws_lambda_events::event::sqs::SqsEvent;
use axum::Router;
use domain::Catalog;
use domain::auth::{CustomerTokens, TokenHash};
use domain::events::Email;
use domain::ports::{
    AdvanceAndSend, AdvanceThenSend, MailError, Mailer, Operations, OrderQueries, OrderStore,
    PartnerNotifier,
};
use embedded::Database;
use futures::FutureExt;
use outbound::{EmailPartner, OutboxMailer, RetryPolicy, SmtpMailer, WebhookNotifier};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::aws::Resources;
use crate::config::{Backend as BackendKind, ServeConfig, Tuning};
use crate::mappings::aws::{KinesisStream, SqsQueueSource, TableFeeder};
use crate::mappings::embedded::{EmbeddedQueue, EmbeddedStream};
use crate::mappings::{Handler, run_queue_consumer, run_stream_consumer};
use crate::names;
use crate::secrets::Secrets;
use crate::server;

/// A bakery ready to serve: its parts built, its port bound.
pub struct Bakery {
    sources: Sources,
    listener: TcpListener,
    router: Router,
    consumers: Consumers,
    config: ServeConfig,
    outbox: Option<PathBuf>,
    baker_token_file: Option<PathBuf>,
}

struct Consumers {
    notify_baker: notify_baker::Deps,
    dispatch: dispatch::Deps,
    notify_delivery: notify_delivery::Deps,
    feedback: feedback::Deps,
}

impl Bakery {
    /// Opens the data directory and builds every part, failing early with
    /// a clear message on bad configuration.
    pub async fn build(config: ServeConfig) -> Result<Bakery> {
        // Everything that can be checked without writing is checked first:
        // a configuration that cannot work leaves the data directory as it
        // was (or absent), instead of half made.
        let catalog = Arc::new(load_catalog(config.catalog.as_deref())?);
        Secrets::check_given(
            config.baker_token.as_deref(),
            config.webhook_secret.as_deref(),
        )?;
        for (flag, url) in [
            ("--delivery-webhook-url", &config.delivery_webhook_url),
            (
                "--customer-service-webhook-url",
                &config.customer_service_webhook_url,
            ),
        ] {
            if let Some(url) = url {
                WebhookNotifier::check_url(url).with_context(|| flag.to_string())?;
            }
        }
        let listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.listen))?;

        std::fs::create_dir_all(&config.data_dir)
            .with_context(|| format!("cannot create {}", config.data_dir.display()))?;
        let secrets = Secrets::load(
            &config.data_dir,
            config.baker_token.clone(),
            config.webhook_secret.clone(),
        )?;
        let address = listener.local_addr()?;
        let public_url = config
            .public_url
            .clone()
            .unwrap_or_else(|| format!("http://{address}"));
        let tuning = &config.tuning;
        let timeout = Duration::from_millis(tuning.partner_timeout_ms);

        let parts = match config.backend {
            BackendKind::Embedded => Parts::embedded(&config, timeout)?,
            BackendKind::Aws => Parts::aws(&config).await?,
        };
        let Parts {
            store,
            queries,
            operations,
            to_delivery,
            to_feedback,
            mailer,
            sources,
            outbox,
        } = parts;
        let retry = || RetryPolicy {
            attempts: tuning.partner_attempts.max(1),
            first_delay: Duration::from_millis(tuning.retry_delay_ms.min(1000)),
            max_delay: Duration::from_millis(tuning.max_retry_delay_ms.min(5000)),
            timeout,
        };
        let partner =
            |url: &Option<reqwest::Url>, email: &str| -> Result<Arc<dyn PartnerNotifier>> {
                Ok(match url {
                    Some(url) => Arc::new(WebhookNotifier::new(
                        url.clone(),
                        &secrets.webhook_secret,
                        retry(),
                    )?),
                    None => Arc::new(EmailPartner::new(mailer.clone(), email.to_string())),
                })
            };
        let delivery_company = partner(&config.delivery_webhook_url, &config.delivery_email)?;
        let customer_service = partner(
            &config.customer_service_webhook_url,
            &config.customer_service_email,
        )?;

        // Each part is built once; the functions and the pages share it.
        let baker_token = TokenHash::of(&secrets.baker_token);
        let customer_tokens = CustomerTokens::new(secrets.customer_token_secret.clone());
        let pages = web::router(web::WebDeps {
            store: store.clone(),
            customer_tokens: customer_tokens.clone(),
            queries,
            // The runner is the operator's own process, on either backend.
            operations: Some(operations),
            catalog: catalog.clone(),
            baker_token,
        });
        let router = server::api_router(
            order::Deps {
                store: store.clone(),
                catalog,
                customer_tokens: customer_tokens.clone(),
                baker_token,
                max_wait: tuning.max_wait(),
            },
            fulfilled::Deps {
                store: store.clone(),
                baker_token,
            },
            delivered::Deps {
                store: store.clone(),
                to_feedback,
            },
            pages,
            Duration::from_millis(tuning.request_timeout_ms),
        );
        let consumers = Consumers {
            notify_baker: notify_baker::Deps {
                store: store.clone(),
                mailer: mailer.clone(),
                baker_email: config.baker_email.clone(),
                public_url: Some(public_url),
                customer_tokens,
            },
            dispatch: dispatch::Deps { to_delivery },
            notify_delivery: notify_delivery::Deps {
                store: store.clone(),
                delivery_company,
            },
            feedback: feedback::Deps {
                store,
                customer_service,
            },
        };
        Ok(Bakery {
            sources,
            listener,
            router,
            consumers,
            config,
            outbox,
            baker_token_file: secrets.baker_token_file,
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Where things are, for the start-up banner.
    pub fn describe(&self) -> Vec<String> {
        let mut lines = vec![format!(
            "data directory: {}",
            self.config.data_dir.display()
        )];
        match (&self.sources, &self.outbox) {
            (Sources::Aws { resources, .. }, _) => lines.push(format!(
                "backend:        AWS (table and stream {}, mail through SES)",
                resources.table
            )),
            (Sources::Embedded(_), Some(dir)) => {
                lines.push(format!("mail outbox:    {}", dir.display()))
            }
            (Sources::Embedded(_), None) => lines.push("mail:           over SMTP".into()),
        }
        match &self.baker_token_file {
            Some(file) => lines.push(format!("baker token:    {}", file.display())),
            None => lines.push("baker token:    as given in the configuration".into()),
        }
        lines
    }

    /// Serves until `stop` is cancelled, then lets in-flight requests and
    /// batches finish.
    pub async fn serve(self, stop: CancellationToken) -> Result<()> {
        let tuning = self.config.tuning.clone();
        let tuning_for_trim = tuning.clone();
        // Reading a request's head is part of the request's time.
        let header_timeout = Duration::from_millis(tuning.request_timeout_ms);
        let Consumers {
            notify_baker,
            dispatch,
            notify_delivery,
            feedback,
        } = self.consumers;
        let notify_baker: Handler<_> = Arc::new(move |batch| {
            let deps = notify_baker.clone();
            async move { notify_baker::handle(&deps, batch).await }
                .instrument(function_span("notify-baker"))
                .boxed()
        });
        let dispatch: Handler<_> = Arc::new(move |batch| {
            let deps = dispatch.clone();
            async move { dispatch::handle(&deps, batch).await }
                .instrument(function_span("dispatch"))
                .boxed()
        });
        let notify_delivery: Handler<_> = Arc::new(move |batch| {
            let deps = notify_delivery.clone();
            async move { notify_delivery::handle(&deps, batch).await }
                .instrument(function_span("notify-delivery"))
                .boxed()
        });
        let feedback: Handler<_> = Arc::new(move |batch| {
            let deps = feedback.clone();
            async move { feedback::handle(&deps, batch).await }
                .instrument(function_span("feedback"))
                .boxed()
        });
        let workers = self
            .sources
            .spawn(
                [notify_baker, dispatch],
                [notify_delivery, feedback],
                tuning,
                &stop,
            )
            .await?;
        // Long-polling reads answer as soon as the bakery stops, so they do
        // not hold up the shutdown.
        if let Sources::Embedded(db) = &self.sources {
            tokio::spawn(trim_stream(db.clone(), tuning_for_trim, stop.clone()));
            let db = db.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                stop.cancelled().await;
                db.stop_watching();
            });
        }
        server::serve_http(self.listener, self.router, header_timeout, stop.clone()).await;
        for worker in workers {
            if let Err(error) = worker.await {
                tracing::error!(%error, "a consumer ended abnormally");
            }
        }
        Ok(())
    }
}

fn load_catalog(path: Option<&Path>) -> Result<Catalog> {
    match path {
        None => Ok(Catalog::default()),
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the catalog {}", path.display()))?;
            Catalog::from_json(&text)
                .with_context(|| format!("the catalog {} is not valid", path.display()))
        }
    }
}

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
struct Parts {
    store: Arc<dyn OrderStore>,
    /// What the cake maker's and the operator's pages read.
    queries: Arc<dyn OrderQueries>,
    operations: Arc<dyn Operations>,
    /// Status moves that send to the delivery queue (`dispatch`) and to
    /// the feedback queue (`delivered`).
    to_delivery: Arc<dyn AdvanceAndSend>,
    to_feedback: Arc<dyn AdvanceAndSend>,
    mailer: Arc<dyn Mailer>,
    sources: Sources,
    outbox: Option<PathBuf>,
}

impl Parts {
    fn embedded(config: &ServeConfig, timeout: Duration) -> Result<Parts> {
        let db =
            Database::open(&config.data_dir, embedded::Options::default()).with_context(|| {
                format!("cannot open the database in {}", config.data_dir.display())
            })?;
        // SMTP cannot tell a repeat from a new email, so the database
        // remembers every key sent over it; the outbox is idempotent by
        // itself (one file per key) and needs no second record.
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
                let dir = config.data_dir.join("outbox");
                (
                    Arc::new(OutboxMailer::new(dir.clone(), config.mail_from.clone())?),
                    Some(dir),
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

    async fn aws(config: &ServeConfig) -> Result<Parts> {
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

/// Where the consumers' batches come from.
enum Sources {
    Embedded(Database),
    Aws {
        resources: Box<Resources>,
        poll: Duration,
        /// Where the table feed keeps its position.
        data_dir: PathBuf,
    },
}

impl Sources {
    /// Starts the stream consumers (notify-baker, dispatch) and the queue
    /// consumers (delivery, feedback).
    async fn spawn(
        &self,
        [notify_baker, dispatch]: [Handler<KinesisEvent>; 2],
        [notify_delivery, feedback]: [Handler<SqsEvent>; 2],
        tuning: Tuning,
        stop: &CancellationToken,
    ) -> Result<Vec<JoinHandle<()>>> {
        let visibility = tuning.visibility_timeout();
        Ok(match self {
            Sources::Embedded(db) => {
                let mut workers = vec![
                    tokio::spawn(run_stream_consumer(
                        EmbeddedStream::new(db.clone(), names::NOTIFY_BAKER),
                        names::NOTIFY_BAKER,
                        notify_baker,
                        tuning.clone(),
                        stop.clone(),
                    )),
                    tokio::spawn(run_stream_consumer(
                        EmbeddedStream::new(db.clone(), names::DISPATCH),
                        names::DISPATCH,
                        dispatch,
                        tuning.clone(),
                        stop.clone(),
                    )),
                ];
                for (queue, handler) in [
                    (names::DELIVERY_QUEUE, notify_delivery),
                    (names::FEEDBACK_QUEUE, feedback),
                ] {
                    for _ in 0..tuning.queue_pollers {
                        workers.push(tokio::spawn(run_queue_consumer(
                            EmbeddedQueue::new(db.clone(), queue, visibility),
                            queue,
                            handler.clone(),
                            tuning.clone(),
                            stop.clone(),
                        )));
                    }
                }
                workers
            }
            Sources::Aws {
                resources,
                poll,
                data_dir,
            } => {
                let kinesis = |name| {
                    KinesisStream::open(
                        &resources.clients,
                        &resources.stream,
                        name,
                        &resources.stream_failures_bucket,
                        *poll,
                    )
                };
                let sqs = |url: &String, dead_letter_url: &String| {
                    SqsQueueSource::new(
                        &resources.clients,
                        url.clone(),
                        dead_letter_url.clone(),
                        visibility,
                        *poll,
                    )
                };
                let mut workers = Vec::new();
                if resources.feeds_stream {
                    let feeder = TableFeeder::open(
                        &resources.clients,
                        &resources.table,
                        &resources.stream,
                        *poll,
                        data_dir.join(names::TABLE_FEED_POSITION),
                    )
                    .await?;
                    workers.push(tokio::spawn(feeder.run(stop.clone())));
                }
                workers.extend([
                    tokio::spawn(run_stream_consumer(
                        kinesis(names::NOTIFY_BAKER).await?,
                        names::NOTIFY_BAKER,
                        notify_baker,
                        tuning.clone(),
                        stop.clone(),
                    )),
                    tokio::spawn(run_stream_consumer(
                        kinesis(names::DISPATCH).await?,
                        names::DISPATCH,
                        dispatch,
                        tuning.clone(),
                        stop.clone(),
                    )),
                    tokio::spawn(run_queue_consumer(
                        sqs(&resources.delivery_queue_url, &resources.delivery_dlq_url),
                        names::DELIVERY_QUEUE,
                        notify_delivery,
                        tuning.clone(),
                        stop.clone(),
                    )),
                    tokio::spawn(run_queue_consumer(
                        sqs(&resources.feedback_queue_url, &resources.feedback_dlq_url),
                        names::FEEDBACK_QUEUE,
                        feedback,
                        tuning.clone(),
                        stop.clone(),
                    )),
                ]);
                workers
            }
        })
    }
}

/// The span a consumer's batch runs in: which of the seven functions it
/// is, as the log group says on AWS (the HTTP functions' requests get
/// theirs in `server`).
fn function_span(function: &'static str) -> tracing::Span {
    tracing::info_span!("function", function)
}

/// Keeps the embedded stream from growing forever: every
/// [`Tuning::stream_trim_interval`], records both consumers have finished
/// and that are older than the retention go. A failed trim is tried again
/// at the next turn; nothing depends on it.
async fn trim_stream(db: Database, tuning: Tuning, stop: CancellationToken) {
    let mut every = tokio::time::interval(tuning.stream_trim_interval());
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = every.tick() => {}
        }
        match db
            .trim_stream(
                &[names::NOTIFY_BAKER, names::DISPATCH],
                tuning.stream_retention(),
            )
            .await
        {
            Ok(0) => {}
            Ok(trimmed) => tracing::debug!(trimmed, "stream trimmed"),
            Err(error) => tracing::warn!(%error, "stream not trimmed; trying again later"),
        }
    }
}
