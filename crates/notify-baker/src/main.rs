//! The `notify-baker` Lambda function: on `order_placed` records from the
//! Kinesis order stream, emails the cake maker, and the customer their
//! confirmation, through SES. The handler lives in the library.
//!
//! The customer-token key comes from SSM Parameter Store
//! (`CUSTOMER_TOKEN_SECRET_PARAMETER`), the same parameter the `order`
//! function derives tokens from, so the emailed link opens the order.

use std::sync::Arc;

use aws_adapters::give_up::StreamGiveUp;
use aws_adapters::secrets::{self, SecretsConfig};
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
    // from the cake maker's shell, as it does the token, and customers get
    // no confirmation (there is no link to give them).
    let public_url = env::optional("PUBLIC_URL").map(|url| url.trim_end_matches('/').to_owned());
    let secret_parameters = SecretsConfig::from_env(&[secrets::CUSTOMER_TOKEN_SECRET])?;

    let clients = Clients::from_env().await;
    let give_up = StreamGiveUp::from_env(&clients)?;
    let store = Arc::new(DynamoStore::new(&clients, table));
    let mailer = Arc::new(SesMailer::from_env(&clients, mail_from)?);
    let deps = secret_parameters
        .load_and_build(&clients.ssm(), move |values| {
            Ok(notify_baker::Deps {
                store: store.clone(),
                mailer: mailer.clone(),
                baker_email: baker_email.clone(),
                public_url: public_url.clone(),
                customer_tokens: secrets::customer_tokens(values)?,
            })
        })
        .await?;
    let (deps, give_up) = (&deps, &give_up);
    lambda_runtime::run(service_fn(|event: LambdaEvent<KinesisEvent>| async move {
        // Before the batch, not on a timer: see `lambda_kit::refresh`.
        let deps = deps.current().await;
        let report = notify_baker::handle(&deps, event.payload.clone()).await;
        let response = give_up.settle(&event.payload, report).await;
        // This invocation's business metrics, as one Embedded Metric Format line.
        lambda_kit::metrics::flush();
        Ok::<_, Error>(response)
    }))
    .await
}
