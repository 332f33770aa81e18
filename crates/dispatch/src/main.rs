//! The `dispatch` Lambda function: on `order_fulfilled` records from the
//! Kinesis order stream, moves the order out for delivery and sends it to
//! the SQS delivery queue. The handler lives in the library.

use std::sync::Arc;

use aws_adapters::give_up::StreamGiveUp;
use aws_adapters::{Clients, DynamoStore, SqsQueue, env};
use aws_lambda_events::event::kinesis::KinesisEvent;
use domain::ports::AdvanceThenSend;
use lambda_runtime::{Error, LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    aws_adapters::logging::init();
    let table = env::required("ORDERS_TABLE")?;
    let delivery_queue = env::required("DELIVERY_QUEUE_URL")?;

    let clients = Clients::from_env().await;
    let give_up = StreamGiveUp::from_env(&clients)?;
    let deps = dispatch::Deps {
        to_delivery: Arc::new(AdvanceThenSend {
            store: Arc::new(DynamoStore::new(&clients, table)),
            queue: Arc::new(SqsQueue::new(&clients, delivery_queue)),
        }),
    };
    let (deps, give_up) = (&deps, &give_up);
    lambda_runtime::run(service_fn(|event: LambdaEvent<KinesisEvent>| async move {
        let report = dispatch::handle(deps, event.payload.clone()).await;
        let response = give_up.settle(&event.payload, report).await;
        // This invocation's business metrics, as one Embedded Metric Format line.
        lambda_kit::metrics::flush();
        Ok::<_, Error>(response)
    }))
    .await
}
