//! [`SqsQueue`]: one SQS queue (the delivery queue or the feedback queue)
//! as a [`Queue`].
//!
//! The message id travels as the message attribute `messageId`, beside the
//! body, so consumers and operators can see it without parsing the body. On
//! a FIFO queue (URL ending in `.fifo`) the id is also the deduplication id,
//! so SQS itself drops a repeat sent within five minutes; standard queues
//! deliver repeats and the consumers deduplicate.

use async_trait::async_trait;
use aws_sdk_sqs::types::MessageAttributeValue;
use domain::ports::{Queue, QueueError, QueueMessage};

use crate::Clients;
use crate::error::{describe, is_transient};

/// The message attribute that carries [`QueueMessage::id`].
pub const MESSAGE_ID_ATTRIBUTE: &str = "messageId";

/// One queue, by URL.
#[derive(Clone, Debug)]
pub struct SqsQueue {
    client: aws_sdk_sqs::Client,
    url: String,
    fifo: bool,
}

impl SqsQueue {
    pub fn new(clients: &Clients, queue_url: impl Into<String>) -> Self {
        let url = queue_url.into();
        SqsQueue {
            client: clients.sqs(),
            fifo: url.ends_with(".fifo"),
            url,
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }
}

#[async_trait]
impl Queue for SqsQueue {
    async fn send(&self, message: &QueueMessage) -> Result<(), QueueError> {
        let id = MessageAttributeValue::builder()
            .data_type("String")
            .string_value(&message.id)
            .build()
            .map_err(|e| {
                QueueError::Unavailable(format!("building the messageId attribute: {e}"))
            })?;
        let mut request = self
            .client
            .send_message()
            .queue_url(&self.url)
            .message_body(&message.body)
            .message_attributes(MESSAGE_ID_ATTRIBUTE, id);
        if self.fifo {
            // One group per message: the bakery needs no ordering across
            // messages, only SQS's five-minute deduplication.
            request = request
                .message_group_id(&message.id)
                .message_deduplication_id(&message.id);
        }
        match request.send().await {
            Ok(_) => Ok(()),
            Err(error) => {
                // The port knows only "try again later": the sender's batch
                // item fails and goes round again until its dead-letter
                // queue. A misconfigured queue is logged loudly so it is
                // noticed before that.
                let message = describe("SendMessage", &error);
                if is_transient(&error) {
                    tracing::warn!(queue = %self.url, error = %message, "queue unavailable");
                } else {
                    tracing::error!(queue = %self.url, error = %message, "queue refused the message");
                }
                Err(QueueError::Unavailable(message))
            }
        }
    }
}
