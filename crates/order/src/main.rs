//! The `order` Lambda function (API Gateway HTTP API): `POST /order`,
//! `GET /order/{orderId}` and `GET /products`, over the DynamoDB order
//! table and the Kinesis order stream, and the web pages (`web::router`):
//! the shop, order tracking, the cake maker's list and the operator's view
//! over the queues, dead-letter queues and stream failures. The handlers
//! live in the libraries.
//!
//! The cake maker's token and the customer-token key come from SSM
//! Parameter Store (`BAKER_TOKEN_PARAMETER`,
//! `CUSTOMER_TOKEN_SECRET_PARAMETER`); the routers are rebuilt when a
//! refresh finds them changed (`aws_adapters::secrets`).

use std::sync::Arc;
use std::time::Duration;

use aws_adapters::operations::{AwsOperations, OperationsConfig, QueueUrls};
use aws_adapters::secrets::{self, SecretsConfig};
use aws_adapters::{Clients, DynamoStore, env};
use domain::Catalog;
use lambda_http::Error;

/// The stream consumers, as the operator's page names them (and as their
/// function names end: `bakery-notify-baker`, `bakery-prod-dispatch`).
const STREAM_CONSUMERS: [&str; 2] = ["notify-baker", "dispatch"];

#[tokio::main]
async fn main() -> Result<(), Error> {
    aws_adapters::logging::init();
    let table = env::required("ORDERS_TABLE")?;
    let stream = env::required("ORDER_STREAM")?;
    let secret_parameters =
        SecretsConfig::from_env(&[secrets::BAKER_TOKEN, secrets::CUSTOMER_TOKEN_SECRET])?;
    let catalog = match env::optional("CATALOG_JSON") {
        Some(json) => Catalog::from_json(&json).map_err(|e| format!("CATALOG_JSON: {e}"))?,
        None => Catalog::default(),
    };
    // What the operator's page looks at.
    let operations = OperationsConfig {
        stream: stream.clone(),
        consumers: STREAM_CONSUMERS.map(String::from).to_vec(),
        queues: vec![
            QueueUrls {
                name: "delivery".into(),
                url: env::required("DELIVERY_QUEUE_URL")?,
                dead_letter_url: env::required("DELIVERY_DLQ_URL")?,
            },
            QueueUrls {
                name: "feedback".into(),
                url: env::required("FEEDBACK_QUEUE_URL")?,
                dead_letter_url: env::required("FEEDBACK_DLQ_URL")?,
            },
        ],
        stream_failures_bucket: env::required("STREAM_FAILURES_BUCKET")?,
    };

    let clients = Clients::from_env().await;
    let store = Arc::new(DynamoStore::new(&clients, table));
    let catalog = Arc::new(catalog);
    let operations = Arc::new(AwsOperations::new(&clients, operations));
    let routers = secret_parameters
        .load_and_build(&clients.ssm, move |values| {
            let baker_token = secrets::baker_token(values)?;
            let deps = order::Deps {
                store: store.clone(),
                catalog: catalog.clone(),
                customer_tokens: secrets::customer_tokens(values)?,
                baker_token,
                // DynamoDB cannot say when an order changes, so reads with
                // `waitFor` answer at once and clients poll.
                max_wait: Duration::ZERO,
            };
            let pages = web::router(web::WebDeps {
                order_api: order::router(deps.clone()),
                queries: store.clone(),
                operations: operations.clone(),
                catalog: catalog.clone(),
                baker_token,
            });
            Ok(order::router(deps).merge(pages))
        })
        .await?;
    lambda_kit::api_gateway::run_refreshing(routers).await
}
