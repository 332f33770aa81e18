//! Wiring the seven functions to their parts and serving them.
//!
//! The three HTTP functions' routers are merged into one server, as API
//! Gateway would route to them; the four consumers run as tasks fed by
//! [`crate::mappings`]. Each function's dependencies are built once, here,
//! from the backend's adapters ([`crate::parts`]); the batches come from
//! [`crate::sources`].

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use axum::Router;
use domain::Catalog;
use domain::auth::{CustomerTokens, TokenHash};
use domain::ports::PartnerNotifier;
use embedded::Database;
use futures::FutureExt;
use outbound::{EmailPartner, RetryPolicy, WebhookNotifier};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::config::{Backend as BackendKind, ServeConfig, Tuning};
use crate::mappings::Handler;
use crate::names;
use crate::parts::Parts;
use crate::secrets::Secrets;
use crate::server;
use crate::sources::Sources;

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
            (Sources::Embedded(_), Some(path)) => {
                lines.push(format!("mail outbox:    {}", path.display()))
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
