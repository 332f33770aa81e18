//! The `order` Lambda function (API Gateway HTTP API): `POST /order`,
//! `GET /order/{orderId}` and `GET /products`, over the DynamoDB order
//! table and the Kinesis order stream. The handlers live in the library.

use std::sync::Arc;

use aws_adapters::{Clients, DynamoStore, env};
use domain::Catalog;
use domain::auth::{CustomerTokens, TokenHash};
use lambda_http::Error;

#[tokio::main]
async fn main() -> Result<(), Error> {
    aws_adapters::logging::init();
    let table = env::required("ORDERS_TABLE")?;
    let stream = env::required("ORDER_STREAM")?;
    let customer_tokens = CustomerTokens::new(env::required("CUSTOMER_TOKEN_SECRET")?);
    let baker_token = TokenHash::of(&env::required("BAKER_TOKEN")?);
    let catalog = match env::optional("CATALOG_JSON") {
        Some(json) => Catalog::from_json(&json).map_err(|e| format!("CATALOG_JSON: {e}"))?,
        None => Catalog::default(),
    };

    let clients = Clients::from_env().await;
    let deps = order::Deps {
        store: Arc::new(DynamoStore::new(&clients, table, stream)),
        catalog: Arc::new(catalog),
        customer_tokens,
        baker_token,
    };
    lambda_http::run(order::router(deps)).await
}
