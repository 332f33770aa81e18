//! The `fulfilled` Lambda function (API Gateway HTTP API):
//! `POST /order/fulfilled` for the cake maker, over the DynamoDB order table
//! (which feeds the order stream itself). The handler lives in the library.

use std::sync::Arc;

use aws_adapters::{Clients, DynamoStore, env};
use domain::auth::TokenHash;
use lambda_http::Error;

#[tokio::main]
async fn main() -> Result<(), Error> {
    aws_adapters::logging::init();
    let table = env::required("ORDERS_TABLE")?;
    let baker_token = TokenHash::of(&env::required("BAKER_TOKEN")?);

    let clients = Clients::from_env().await;
    let deps = fulfilled::Deps {
        store: Arc::new(DynamoStore::new(&clients, table)),
        baker_token,
    };
    lambda_kit::api_gateway::run(fulfilled::router(deps)).await
}
