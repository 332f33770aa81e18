//! The `feedback` Lambda function: on messages from the SQS feedback queue,
//! passes the customer's review to customer service by signed webhook
//! (`CUSTOMER_SERVICE_WEBHOOK_URL`, with the secret from SSM Parameter
//! Store named by `WEBHOOK_SECRET_PARAMETER`) or else by email through SES
//! (`CUSTOMER_SERVICE_EMAIL`). The handler lives in the library.

use std::sync::Arc;

use aws_adapters::give_up::QueueGiveUp;
use aws_adapters::partner::PartnerConfig;
use aws_adapters::secrets::SecretsConfig;
use aws_adapters::{Clients, DynamoStore, env};
use aws_lambda_events::event::sqs::SqsEvent;
use lambda_runtime::{Error, LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    aws_adapters::logging::init();
    let table = env::required("ORDERS_TABLE")?;
    let partner =
        PartnerConfig::from_env("CUSTOMER_SERVICE_WEBHOOK_URL", "CUSTOMER_SERVICE_EMAIL")?;
    let secret_parameters = SecretsConfig::from_env(partner.secret_parameters())?;

    let clients = Clients::from_env().await;
    let give_up = QueueGiveUp::from_env(&clients)?;
    let store = Arc::new(DynamoStore::new(&clients, table));
    let partner = partner.build(&clients);
    let deps = secret_parameters
        .load_and_build(&clients.ssm(), move |values| {
            Ok(feedback::Deps {
                store: store.clone(),
                customer_service: partner.notifier(values)?,
            })
        })
        .await?;
    let (deps, give_up) = (&deps, &give_up);
    lambda_runtime::run(service_fn(|event: LambdaEvent<SqsEvent>| async move {
        // Before the batch, not on a timer: see `lambda_kit::refresh`.
        let deps = deps.current().await;
        let report = feedback::handle(&deps, event.payload.clone()).await;
        let response = give_up.settle(&event.payload, report).await;
        // This invocation's business metrics, as one Embedded Metric Format line.
        lambda_kit::metrics::flush();
        Ok::<_, Error>(response)
    }))
    .await
}
