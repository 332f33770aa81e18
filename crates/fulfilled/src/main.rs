//! The `fulfilled` Lambda function (API Gateway HTTP API):
//! `POST /order/fulfilled` for the cake maker, over the DynamoDB order table
//! (which feeds the order stream itself), with the cake maker's token from
//! SSM Parameter Store (`BAKER_TOKEN_PARAMETER`, refreshed as
//! `aws_adapters::secrets` says). The handler lives in the library.

use std::sync::Arc;

use aws_adapters::secrets::{self, SecretsConfig};
use aws_adapters::{Clients, DynamoStore, env};
use lambda_http::Error;

#[tokio::main]
async fn main() -> Result<(), Error> {
    aws_adapters::logging::init();
    let table = env::required("ORDERS_TABLE")?;
    let secret_parameters = SecretsConfig::from_env(&[secrets::BAKER_TOKEN])?;

    let clients = Clients::from_env().await;
    let store = Arc::new(DynamoStore::new(&clients, table));
    let routers = secret_parameters
        .load_and_build(&clients.ssm(), move |values| {
            Ok(fulfilled::router(fulfilled::Deps {
                store: store.clone(),
                baker_token: secrets::baker_token(values)?,
            }))
        })
        .await?;
    lambda_kit::api_gateway::run_refreshing(routers).await
}
