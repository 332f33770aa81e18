//! The `notify-baker` Lambda function: on `order_placed` records from the
//! Kinesis order stream, emails the cake maker through SES. The handler
//! lives in the library.

use std::sync::Arc;

use aws_adapters::give_up::StreamGiveUp;
use aws_adapters::{Clients, DynamoStore, SesMailer, env};
use aws_lambda_events::event::kinesis::KinesisEvent;
use lambda_runtime::{Error, LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    aws_adapters::logging::init();
    let table = env::required("ORDERS_TABLE")?;
    let mail_from = env::required("MAIL_FROM")?;
    let baker_email = env::required("BAKER_EMAIL")?;
    // Without PUBLIC_URL the email's curl command reads the API's address
    // from the cake maker's shell, as it does the token.
    let api_url = env::optional("PUBLIC_URL")
        .map(|url| url.trim_end_matches('/').to_owned())
        .unwrap_or_else(|| "$API_URL".to_owned());

    let clients = Clients::from_env().await;
    let give_up = StreamGiveUp::from_env(&clients)?;
    let deps = notify_baker::Deps {
        store: Arc::new(DynamoStore::new(&clients, table)),
        mailer: Arc::new(SesMailer::from_env(&clients, mail_from)?),
        baker_email,
        api_url,
    };
    let (deps, give_up) = (&deps, &give_up);
    lambda_runtime::run(service_fn(|event: LambdaEvent<KinesisEvent>| async move {
        let report = notify_baker::handle(deps, event.payload.clone()).await;
        let response = give_up.settle(&event.payload, report).await;
        // This invocation's business metrics, as one Embedded Metric Format line.
        lambda_kit::metrics::flush();
        Ok::<_, Error>(response)
    }))
    .await
}
