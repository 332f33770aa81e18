//! The `delivered` Lambda function (API Gateway HTTP API):
//! `POST /order/delivered` for the customer, over the DynamoDB order table
//! and the SQS feedback queue (it announces nothing on the stream). The
//! handler lives in the library.

use std::sync::Arc;

use aws_adapters::{Clients, DynamoStore, SqsQueue, env};
use domain::ports::AdvanceThenSend;
use lambda_http::Error;

#[tokio::main]
async fn main() -> Result<(), Error> {
    aws_adapters::logging::init();
    let table = env::required("ORDERS_TABLE")?;
    let feedback_queue = env::required("FEEDBACK_QUEUE_URL")?;

    let clients = Clients::from_env().await;
    let store = Arc::new(DynamoStore::new(&clients, table));
    let deps = delivered::Deps {
        store: store.clone(),
        to_feedback: Arc::new(AdvanceThenSend {
            store,
            queue: Arc::new(SqsQueue::new(&clients, feedback_queue)),
        }),
    };
    lambda_kit::api_gateway::run(delivered::router(deps)).await
}
