//! The `notify-delivery` Lambda function: on messages from the SQS delivery
//! queue, notifies the delivery company by signed webhook
//! (`DELIVERY_WEBHOOK_URL`) or else by email through SES
//! (`DELIVERY_EMAIL`). The handler lives in the library.

use std::sync::Arc;

use aws_adapters::{Clients, DynamoStore, SesMailer, env};
use aws_lambda_events::event::sqs::SqsEvent;
use domain::ports::PartnerNotifier;
use lambda_runtime::{Error, LambdaEvent, service_fn};
use outbound::{EmailPartner, RetryPolicy, WebhookNotifier};

/// How the partner is reached, decided from the environment before any
/// client is built.
enum Partner {
    Webhook(WebhookNotifier),
    Email { to: String, from: String },
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    aws_adapters::logging::init();
    let table = env::required("ORDERS_TABLE")?;
    let partner = match env::optional("DELIVERY_WEBHOOK_URL") {
        Some(url) => {
            let url = url
                .parse()
                .map_err(|e| format!("DELIVERY_WEBHOOK_URL: {e}"))?;
            let secret = env::required("WEBHOOK_SECRET")?;
            Partner::Webhook(WebhookNotifier::new(url, &secret, within_function_timeout())?)
        }
        None => Partner::Email {
            to: env::required("DELIVERY_EMAIL")
                .map_err(|_| "set DELIVERY_WEBHOOK_URL or DELIVERY_EMAIL")?,
            from: env::required("MAIL_FROM")?,
        },
    };

    let clients = Clients::from_env().await;
    let delivery_company: Arc<dyn PartnerNotifier> = match partner {
        Partner::Webhook(webhook) => Arc::new(webhook),
        Partner::Email { to, from } => Arc::new(EmailPartner::new(
            Arc::new(SesMailer::new(&clients, from)),
            to,
        )),
    };
    let deps = notify_delivery::Deps {
        store: Arc::new(DynamoStore::without_stream(&clients, table)),
        delivery_company,
    };
    let deps = &deps;
    lambda_runtime::run(service_fn(|event: LambdaEvent<SqsEvent>| async move {
        Ok::<_, Error>(
            notify_delivery::handle(deps, event.payload)
                .await
                .sqs_response(),
        )
    }))
    .await
}

/// Partner retries that fit the function's 30 s timeout: at most three
/// tries of 5 s plus backoff. Longer outages are the queue's to retry.
fn within_function_timeout() -> RetryPolicy {
    RetryPolicy {
        attempts: 3,
        timeout: std::time::Duration::from_secs(5),
        ..RetryPolicy::default()
    }
}
