//! The `order` Lambda function (API Gateway HTTP API): `POST /order`,
//! `GET /order/{orderId}` and `GET /products`, over the DynamoDB order
//! table (which feeds the order stream), and the web pages
//! (`web::router`): the shop, order tracking and the cake maker's list. The
//! handlers live in the libraries.
//!
//! No operator pages: this function faces the internet, so it holds no
//! operator powers (no reading or redriving of dead letters). Operators run
//! `bakery` against the stack with their own credentials
//! (docs/deploy.md, "Operating the stack").
//!
//! The cake maker's token and the customer-token key come from SSM
//! Parameter Store (`BAKER_TOKEN_PARAMETER`,
//! `CUSTOMER_TOKEN_SECRET_PARAMETER`); the routers are rebuilt when a
//! refresh finds them changed (`aws_adapters::secrets`).

use std::sync::Arc;
use std::time::Duration;

use aws_adapters::secrets::{self, SecretsConfig};
use aws_adapters::{Clients, DynamoStore, env};
use domain::Catalog;
use lambda_http::Error;

#[tokio::main]
async fn main() -> Result<(), Error> {
    aws_adapters::logging::init();
    let table = env::required("ORDERS_TABLE")?;
    let secret_parameters =
        SecretsConfig::from_env(&[secrets::BAKER_TOKEN, secrets::CUSTOMER_TOKEN_SECRET])?;
    let catalog = match env::optional("CATALOG_JSON") {
        Some(json) => Catalog::from_json(&json).map_err(|e| format!("CATALOG_JSON: {e}"))?,
        None => Catalog::default(),
    };
    let clients = Clients::from_env().await;
    let store = Arc::new(DynamoStore::new(&clients, table));
    let catalog = Arc::new(catalog);
    let routers = secret_parameters
        .load_and_build(&clients.ssm(), move |values| {
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
                store: store.clone(),
                customer_tokens: deps.customer_tokens.clone(),
                queries: store.clone(),
                operations: None,
                catalog: catalog.clone(),
                baker_token,
            });
            Ok(order::router(deps).merge(pages))
        })
        .await?;
    lambda_kit::api_gateway::run_refreshing(routers).await
}
