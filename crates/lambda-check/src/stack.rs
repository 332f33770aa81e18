//! moto provisioned as `template.yaml` declares the bakery, and each
//! function's environment as the template sets it.
//!
//! One table, one stream, the delivery and feedback queues with their
//! dead-letter queues, the stream consumers' failure queue, the
//! sender's SES identity, and the three secrets as SecureString
//! parameters in SSM (which the deployer creates; the template only names
//! them); the three orders the
//! fixtures name are seeded in the states the fixtures expect (see
//! [`crate::fixtures`]). The functions then reach moto through
//! `AWS_ENDPOINT_URL`, exactly as they reach AWS through the default
//! endpoints.

use aws_adapters::emulator::Moto;
use aws_adapters::provision::{
    DeadLetter, create_bucket, create_order_stream, create_order_table, create_queue,
};
use aws_adapters::{Clients, DynamoStore};
use chrono::Utc;
use domain::events::{Event, EventType};
use domain::ports::{Advanced, NewOrder, OrderStore, Placed};
use domain::{Order, Status, StepDetails, Transition};

use crate::fixtures;

/// The stack's parameter values (`template.yaml` `Parameters`).
pub const MAIL_FROM: &str = "orders@bakery.example";
pub const BAKER_EMAIL: &str = "baker@bakery.example";
pub const DELIVERY_EMAIL: &str = "dispatch@courier.example";
pub const CUSTOMER_SERVICE_EMAIL: &str = "care@bakery.example";
pub const CUSTOMER_TOKEN_SECRET: &str = "customer-token-secret-for-the-lambda-check-0123456789";
pub const WEBHOOK_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// Where the secrets are in SSM: `SecretsPrefix` and the names
/// `template.yaml` puts after it. The cake maker's token is
/// [`fixtures::BAKER_TOKEN`].
pub const SECRETS_PREFIX: &str = "/bakery/lambda-check";
pub const BAKER_TOKEN_PARAMETER: &str = "/bakery/lambda-check/baker-token";
pub const CUSTOMER_TOKEN_SECRET_PARAMETER: &str = "/bakery/lambda-check/customer-token-secret";
pub const WEBHOOK_SECRET_PARAMETER: &str = "/bakery/lambda-check/webhook-secret";
pub const PUBLIC_URL: &str = "https://a1b2c3d4e5.execute-api.eu-west-1.amazonaws.com";

/// The seven functions, in flow order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Function {
    Order,
    NotifyBaker,
    Fulfilled,
    Dispatch,
    NotifyDelivery,
    Delivered,
    Feedback,
}

impl Function {
    pub const ALL: [Function; 7] = [
        Function::Order,
        Function::NotifyBaker,
        Function::Fulfilled,
        Function::Dispatch,
        Function::NotifyDelivery,
        Function::Delivered,
        Function::Feedback,
    ];

    /// The crate, binary and `target/lambda/<name>/` folder.
    pub fn name(self) -> &'static str {
        match self {
            Function::Order => "order",
            Function::NotifyBaker => "notify-baker",
            Function::Fulfilled => "fulfilled",
            Function::Dispatch => "dispatch",
            Function::NotifyDelivery => "notify-delivery",
            Function::Delivered => "delivered",
            Function::Feedback => "feedback",
        }
    }

    pub fn from_name(name: &str) -> Option<Function> {
        Function::ALL.into_iter().find(|f| f.name() == name)
    }

    /// The fixture a cold start is measured with: the function's everyday
    /// event, which succeeds against a fresh [`Stack`] and again on every
    /// repeat.
    pub fn fixture(self) -> &'static str {
        match self {
            Function::Order => "apigw-v2-post-order.json",
            Function::NotifyBaker => "kinesis-order-placed.json",
            Function::Fulfilled => "apigw-v2-post-fulfilled.json",
            Function::Dispatch => "kinesis-order-fulfilled.json",
            Function::NotifyDelivery => "sqs-delivery-request.json",
            Function::Delivered => "apigw-v2-post-delivered.json",
            Function::Feedback => "sqs-feedback.json",
        }
    }

    /// Whether `answer` (the response posted to the Runtime API) is a
    /// success for this function: a 2xx for the HTTP functions, no failed
    /// item for the consumers.
    pub fn succeeded(self, answer: &str) -> Result<(), String> {
        let json: serde_json::Value = serde_json::from_str(answer)
            .map_err(|e| format!("{}: answer is not JSON ({e}): {answer}", self.name()))?;
        let ok = match self {
            Function::Order | Function::Fulfilled | Function::Delivered => json["statusCode"]
                .as_i64()
                .is_some_and(|code| (200..300).contains(&code)),
            _ => json == serde_json::json!({"batchItemFailures": []}),
        };
        if ok {
            Ok(())
        } else {
            Err(format!("{}: unexpected answer {answer}", self.name()))
        }
    }
}

/// A moto server holding the bakery's resources. The server stops when
/// this is dropped.
pub struct Stack {
    pub moto: Moto,
    pub clients: Clients,
    pub table: String,
    pub stream: String,
    pub delivery_queue_url: String,
    pub delivery_dlq_url: String,
    pub feedback_queue_url: String,
    pub feedback_dlq_url: String,
    /// The stream consumers' on-failure destination, a bucket.
    pub stream_failures_bucket: String,
}

impl Stack {
    /// Starts moto, creates the resources and seeds the fixtures' orders.
    pub async fn start() -> Result<Stack, String> {
        let moto = Moto::start().await;
        let clients = moto.clients().await;
        let table = "bakery-OrdersTable-1A2B3C4D5E6F".to_string();
        let stream = "bakery-OrderStream-Q1W2E3R4T5Y6".to_string();
        let failed = |what: &str| {
            let what = what.to_owned();
            move |e: domain::ports::StoreError| format!("creating {what}: {e}")
        };
        create_order_table(&clients, &table)
            .await
            .map_err(failed("the table"))?;
        create_order_stream(&clients, &stream, 1)
            .await
            .map_err(failed("the stream"))?;
        let mut queues = Vec::new();
        for name in ["bakery-DeliveryQueue", "bakery-FeedbackQueue"] {
            let dead_letters = create_queue(&clients, &format!("{name}-dlq"), None)
                .await
                .map_err(failed("a dead-letter queue"))?;
            queues.push(dead_letters.clone());
            let queue = create_queue(
                &clients,
                name,
                Some(DeadLetter {
                    queue_url: &dead_letters,
                    max_receive_count: 5,
                }),
            )
            .await
            .map_err(failed("a queue"))?;
            queues.push(queue);
        }
        let stream_failures_bucket = "bakery-streamfailuresbucket-1a2b3c4d5e6f".to_string();
        create_bucket(&clients, &stream_failures_bucket)
            .await
            .map_err(failed("the stream failures bucket"))?;
        clients
            .sesv2()
            .create_email_identity()
            .email_identity(MAIL_FROM)
            .send()
            .await
            .map_err(|e| format!("creating the SES identity: {e}"))?;
        for (name, value) in [
            (BAKER_TOKEN_PARAMETER, fixtures::BAKER_TOKEN),
            (CUSTOMER_TOKEN_SECRET_PARAMETER, CUSTOMER_TOKEN_SECRET),
            (WEBHOOK_SECRET_PARAMETER, WEBHOOK_SECRET),
        ] {
            put_secret(&clients, name, value).await?;
        }
        let [
            delivery_dlq_url,
            delivery_queue_url,
            feedback_dlq_url,
            feedback_queue_url,
        ] = <[String; 4]>::try_from(queues).map_err(|_| "expected four queues".to_string())?;
        let stack = Stack {
            moto,
            clients,
            table,
            stream,
            delivery_queue_url,
            delivery_dlq_url,
            feedback_queue_url,
            feedback_dlq_url,
            stream_failures_bucket,
        };
        for order in fixtures::orders() {
            stack.seed(order).await?;
        }
        Ok(stack)
    }

    /// Puts `value` as SecureString parameter `name`, overwriting it: what
    /// `aws ssm put-parameter --type SecureString --overwrite` does when a
    /// secret is rotated.
    pub async fn put_secret(&self, name: &str, value: &str) -> Result<(), String> {
        put_secret(&self.clients, name, value).await
    }

    /// Deletes parameter `name`.
    pub async fn delete_secret(&self, name: &str) -> Result<(), String> {
        self.clients
            .ssm()
            .delete_parameter()
            .name(name)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| format!("deleting {name}: {e}"))
    }

    /// The order store over this stack's table and stream.
    pub fn store(&self) -> DynamoStore {
        DynamoStore::new(&self.clients, &self.table)
    }

    /// Puts `order` in the table, walking it through the state machine to
    /// its status as the functions would.
    pub async fn seed(&self, order: Order) -> Result<(), String> {
        let store = self.store();
        let target = order.status;
        let mut placed = order.clone();
        placed.status = Status::Placed;
        placed.fulfillment_id = None;
        placed.timeline.truncate(1);
        let at = placed
            .timeline
            .first()
            .map(|s| s.at)
            .unwrap_or_else(Utc::now);
        let new = NewOrder {
            event: Event::new(EventType::OrderPlaced, &placed, at),
            idempotency: None,
            order: placed,
        };
        match store.place(&new).await.map_err(|e| e.to_string())? {
            Placed::Created(_) => {}
            other => return Err(format!("seeding {}: {other:?}", order.order_id)),
        }
        for (to, step_at) in order.timeline.iter().skip(1).map(|s| (s.step, s.at)) {
            let to = match to {
                domain::Step::Fulfilled => Status::Fulfilled,
                domain::Step::OutForDelivery => Status::OutForDelivery,
                domain::Step::Delivered => Status::Delivered,
                _ => continue,
            };
            if to > target {
                break;
            }
            let transition = Transition {
                order_id: order.order_id,
                to,
                at: step_at,
                details: StepDetails {
                    fulfillment_id: order.fulfillment_id.clone(),
                    ..StepDetails::default()
                },
            };
            match store
                .advance(&transition, None)
                .await
                .map_err(|e| e.to_string())?
            {
                Advanced::Moved(_) => {}
                other => return Err(format!("seeding {}: {other:?}", order.order_id)),
            }
        }
        Ok(())
    }

    /// `function`'s environment: the variables `template.yaml` sets for it
    /// (partners reached by email, as when no webhook URL is given, so
    /// without `WEBHOOK_SECRET_PARAMETER`), and the region, test credentials
    /// and moto's endpoint. Secrets are only named: their values are in
    /// moto's SSM.
    pub fn env(&self, function: Function) -> Vec<(String, String)> {
        let table = self.table.as_str();
        let mut vars: Vec<(&str, &str)> = match function {
            Function::Order => vec![
                ("ORDERS_TABLE", table),
                ("BAKER_TOKEN_PARAMETER", BAKER_TOKEN_PARAMETER),
                (
                    "CUSTOMER_TOKEN_SECRET_PARAMETER",
                    CUSTOMER_TOKEN_SECRET_PARAMETER,
                ),
            ],
            Function::NotifyBaker => vec![
                ("ORDERS_TABLE", table),
                ("STREAM_FAILURES_BUCKET", &self.stream_failures_bucket),
                ("MAIL_FROM", MAIL_FROM),
                ("BAKER_EMAIL", BAKER_EMAIL),
                ("PUBLIC_URL", PUBLIC_URL),
                (
                    "CUSTOMER_TOKEN_SECRET_PARAMETER",
                    CUSTOMER_TOKEN_SECRET_PARAMETER,
                ),
            ],
            Function::Fulfilled => vec![
                ("ORDERS_TABLE", table),
                ("BAKER_TOKEN_PARAMETER", BAKER_TOKEN_PARAMETER),
            ],
            Function::Dispatch => vec![
                ("ORDERS_TABLE", table),
                ("STREAM_FAILURES_BUCKET", &self.stream_failures_bucket),
                ("DELIVERY_QUEUE_URL", &self.delivery_queue_url),
            ],
            Function::NotifyDelivery => vec![
                ("ORDERS_TABLE", table),
                ("DEAD_LETTER_QUEUE_URL", &self.delivery_dlq_url),
                ("MAIL_FROM", MAIL_FROM),
                ("DELIVERY_EMAIL", DELIVERY_EMAIL),
            ],
            Function::Delivered => vec![
                ("ORDERS_TABLE", table),
                ("FEEDBACK_QUEUE_URL", &self.feedback_queue_url),
            ],
            Function::Feedback => vec![
                ("ORDERS_TABLE", table),
                ("DEAD_LETTER_QUEUE_URL", &self.feedback_dlq_url),
                ("MAIL_FROM", MAIL_FROM),
                ("CUSTOMER_SERVICE_EMAIL", CUSTOMER_SERVICE_EMAIL),
            ],
        };
        vars.extend([
            ("AWS_REGION", "us-east-1"),
            ("AWS_DEFAULT_REGION", "us-east-1"),
            ("AWS_ACCESS_KEY_ID", "testing"),
            ("AWS_SECRET_ACCESS_KEY", "testing"),
            ("AWS_SESSION_TOKEN", "testing"),
            ("AWS_ENDPOINT_URL", &self.moto.endpoint),
            // What Lambda sets for the templates' `LogFormat: JSON`.
            ("AWS_LAMBDA_LOG_FORMAT", "JSON"),
        ]);
        vars.into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }
}

async fn put_secret(clients: &Clients, name: &str, value: &str) -> Result<(), String> {
    clients
        .ssm()
        .put_parameter()
        .name(name)
        .value(value)
        .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
        .overwrite(true)
        .send()
        .await
        .map(|_| ())
        .map_err(|e| format!("putting SSM parameter {name}: {e}"))
}
