//! Wiring the seven functions to the embedded parts and serving them.
//!
//! The three HTTP functions' routers are merged into one server, as API
//! Gateway would route to them; the four consumers run as tasks fed by
//! [`crate::mappings`]. Everything shares one [`Database`].

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use async_trait::async_trait;
use axum::Router;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use domain::Catalog;
use domain::auth::{CustomerTokens, TokenHash};
use domain::events::Email;
use domain::ports::{MailError, Mailer, OrderStore, PartnerNotifier};
use embedded::Database;
use futures::FutureExt;
use lambda_kit::http::ApiError;
use outbound::{EmailPartner, OutboxMailer, RetryPolicy, SmtpMailer, WebhookNotifier};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::config::ServeConfig;
use crate::mappings::embedded::{EmbeddedQueue, EmbeddedStream};
use crate::mappings::{Handler, run_queue_consumer, run_stream_consumer};
use crate::secrets::Secrets;

/// Names of the stream consumers and queues, as the operator sees them.
pub mod names {
    pub const NOTIFY_BAKER: &str = "notify-baker";
    pub const DISPATCH: &str = "dispatch";
    pub const DELIVERY_QUEUE: &str = "delivery";
    pub const FEEDBACK_QUEUE: &str = "feedback";
}

/// A bakery ready to serve: its parts built, its port bound.
pub struct Bakery {
    db: Database,
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
        std::fs::create_dir_all(&config.data_dir)
            .with_context(|| format!("cannot create {}", config.data_dir.display()))?;
        let secrets = Secrets::load(
            &config.data_dir,
            config.baker_token.clone(),
            config.webhook_secret.clone(),
        )?;
        let catalog = Arc::new(load_catalog(config.catalog.as_deref())?);
        let db =
            Database::open(&config.data_dir, embedded::Options::default()).with_context(|| {
                format!("cannot open the database in {}", config.data_dir.display())
            })?;
        let listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.listen))?;
        let address = listener.local_addr()?;
        let public_url = config
            .public_url
            .clone()
            .unwrap_or_else(|| format!("http://{address}"));

        let store: Arc<dyn OrderStore> = Arc::new(db.store());
        let tuning = &config.tuning;
        let timeout = Duration::from_millis(tuning.partner_timeout_ms);
        let (mail_transport, outbox): (Arc<dyn Mailer>, Option<PathBuf>) = match &config.smtp_url {
            Some(url) => (
                Arc::new(SmtpMailer::from_url(
                    url,
                    config.mail_from.clone(),
                    timeout,
                )?),
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
        let mailer: Arc<dyn Mailer> = Arc::new(RecordedMailer {
            transport: mail_transport,
            db: db.clone(),
        });
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

        let baker_token = TokenHash::of(&secrets.baker_token);
        let delivery_queue = Arc::new(db.queue(names::DELIVERY_QUEUE));
        let feedback_queue = Arc::new(db.queue(names::FEEDBACK_QUEUE));
        let router = api_router(
            order::Deps {
                store: store.clone(),
                catalog,
                customer_tokens: CustomerTokens::new(secrets.customer_token_secret.clone()),
                baker_token,
            },
            fulfilled::Deps {
                store: store.clone(),
                baker_token,
            },
            delivered::Deps {
                store: store.clone(),
                feedback_queue,
            },
            Duration::from_millis(tuning.request_timeout_ms),
        );
        let consumers = Consumers {
            notify_baker: notify_baker::Deps {
                store: store.clone(),
                mailer: mailer.clone(),
                baker_email: config.baker_email.clone(),
                api_url: public_url,
            },
            dispatch: dispatch::Deps {
                store: store.clone(),
                delivery_queue,
            },
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
            db,
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
        match &self.outbox {
            Some(dir) => lines.push(format!("mail outbox:    {}", dir.display())),
            None => lines.push("mail:           over SMTP".into()),
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
        let Consumers {
            notify_baker,
            dispatch,
            notify_delivery,
            feedback,
        } = self.consumers;
        let notify_baker: Handler<_> = Arc::new(move |batch| {
            let deps = notify_baker.clone();
            async move { notify_baker::handle(&deps, batch).await }.boxed()
        });
        let dispatch: Handler<_> = Arc::new(move |batch| {
            let deps = dispatch.clone();
            async move { dispatch::handle(&deps, batch).await }.boxed()
        });
        let notify_delivery: Handler<_> = Arc::new(move |batch| {
            let deps = notify_delivery.clone();
            async move { notify_delivery::handle(&deps, batch).await }.boxed()
        });
        let feedback: Handler<_> = Arc::new(move |batch| {
            let deps = feedback.clone();
            async move { feedback::handle(&deps, batch).await }.boxed()
        });
        let db = &self.db;
        let visibility = tuning.visibility_timeout();
        let workers = vec![
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
            tokio::spawn(run_queue_consumer(
                EmbeddedQueue::new(db.clone(), names::DELIVERY_QUEUE, visibility),
                names::DELIVERY_QUEUE,
                notify_delivery,
                tuning.clone(),
                stop.clone(),
            )),
            tokio::spawn(run_queue_consumer(
                EmbeddedQueue::new(db.clone(), names::FEEDBACK_QUEUE, visibility),
                names::FEEDBACK_QUEUE,
                feedback,
                tuning,
                stop.clone(),
            )),
        ];
        let shutdown = stop.clone();
        axum::serve(self.listener, self.router)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await
            .context("the API server failed")?;
        for worker in workers {
            if let Err(error) = worker.await {
                tracing::error!(%error, "a consumer ended abnormally");
            }
        }
        Ok(())
    }
}

/// The API as API Gateway would present it: the three HTTP functions behind
/// one address, unknown routes answered in problem+json.
fn api_router(
    order: order::Deps,
    fulfilled: fulfilled::Deps,
    delivered: delivered::Deps,
    request_timeout: Duration,
) -> Router {
    Router::new()
        .merge(order::router(order))
        .merge(fulfilled::router(fulfilled))
        .merge(delivered::router(delivered))
        .fallback(|| async { not_found() })
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            request_timeout,
        ))
        .layer(TraceLayer::new_for_http())
}

fn not_found() -> axum::response::Response {
    let mut response = ApiError::NotFound.into_response();
    // Same problem shape, but about the route rather than an order.
    *response.status_mut() = StatusCode::NOT_FOUND;
    response
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

/// Sends each email once: the database remembers every key sent, so a
/// redelivered event does not mail the cake maker twice even over SMTP.
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
