//! The `feedback` Lambda function: on messages from the SQS feedback queue,
//! passes the customer's review to customer service by signed webhook
//! (`CUSTOMER_SERVICE_WEBHOOK_URL`) or else by email through SES
//! (`CUSTOMER_SERVICE_EMAIL`). The handler lives in the library.

use std::sync::Arc;

use aws_adapters::give_up::QueueGiveUp;
use aws_adapters::partner::PartnerConfig;
use aws_adapters::{Clients, DynamoStore, env};
use aws_lambda_events::event::sqs::SqsEvent;
use lambda_runtime::{Error, LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    aws_adapters::logging::init();
    let table = env::required("ORDERS_TABLE")?;
    let partner =
        PartnerConfig::from_env("CUSTOMER_SERVICE_WEBHOOK_URL", "CUSTOMER_SERVICE_EMAIL")?;

    let clients = Clients::from_env().await;
    let customer_service = partner.build(&clients);
    let give_up = QueueGiveUp::from_env(&clients)?;
    let deps = feedback::Deps {
        store: Arc::new(DynamoStore::new(&clients, table)),
        customer_service,
    };
    let (deps, give_up) = (&deps, &give_up);
    lambda_runtime::run(service_fn(|event: LambdaEvent<SqsEvent>| async move {
        let report = feedback::handle(deps, event.payload.clone()).await;
        Ok::<_, Error>(give_up.settle(&event.payload, report).await)
    }))
    .await
}
