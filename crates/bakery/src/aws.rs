//! The AWS backend's resources: finding them by name, and creating the
//! missing ones when asked (`--aws-provision`, for an emulator or a scratch
//! account; a deployed stack gets them from the templates).

use anyhow::{Context, Result};
use aws_adapters::Clients;
use aws_adapters::clients::config_loader;
use aws_adapters::operations::{AwsOperations, OperationsConfig, QueueUrls};
use aws_adapters::provision::{self, DeadLetter};

use crate::config::{AwsConfig, Tuning};
use crate::names;

/// The resources one bakery uses.
pub struct Resources {
    pub clients: Clients,
    pub table: String,
    pub stream: String,
    pub delivery_queue_url: String,
    pub feedback_queue_url: String,
    pub delivery_dlq_url: String,
    pub feedback_dlq_url: String,
    /// The bucket stream batches go to once their consumer gives up on
    /// them, as a Kinesis event source mapping's on-failure destination.
    pub stream_failures_bucket: String,
    /// Whether this bakery feeds the stream from the table
    /// ([`aws_adapters::table_feed`]).
    pub feeds_stream: bool,
}

impl Resources {
    /// The operator's view of these resources: depths, dead letters,
    /// redrive (for the operator's page and `bakery dlq`).
    pub fn operations(&self) -> AwsOperations {
        let queue = |name: &str, url: &str, dead_letter_url: &str| QueueUrls {
            name: name.into(),
            url: url.into(),
            dead_letter_url: dead_letter_url.into(),
        };
        AwsOperations::new(
            &self.clients,
            OperationsConfig {
                stream: self.stream.clone(),
                consumers: vec![names::NOTIFY_BAKER.into(), names::DISPATCH.into()],
                queues: vec![
                    queue(
                        names::DELIVERY_QUEUE,
                        &self.delivery_queue_url,
                        &self.delivery_dlq_url,
                    ),
                    queue(
                        names::FEEDBACK_QUEUE,
                        &self.feedback_queue_url,
                        &self.feedback_dlq_url,
                    ),
                ],
                stream_failures_bucket: self.stream_failures_bucket.clone(),
            },
        )
    }

    pub async fn connect(
        config: &AwsConfig,
        tuning: &Tuning,
        mail_from: &str,
    ) -> Result<Resources> {
        let mut loader = config_loader();
        if let Some(endpoint) = &config.aws_endpoint_url {
            loader = loader.endpoint_url(endpoint);
        }
        let clients = Clients::new(&loader.load().await);
        let stack = &config.stack;
        let table = stack
            .aws_orders_table
            .clone()
            .unwrap_or_else(|| config.name("orders"));
        let stream = stack
            .aws_order_stream
            .clone()
            .unwrap_or_else(|| config.name("orders"));
        let stream_failures_bucket = stack
            .aws_stream_failures_bucket
            .clone()
            .unwrap_or_else(|| config.name("stream-failures"));
        if config.aws_provision {
            provision_missing(&clients, &table, &stream, mail_from).await?;
            provision::create_bucket(&clients, &stream_failures_bucket)
                .await
                .with_context(|| format!("bucket {stream_failures_bucket}"))?;
        }
        // A queue given by URL (a deployed stack's) is used as it is;
        // otherwise it is found, or created, by its name.
        let queue = |name: &str, given: &Option<String>, dead_letter: Option<String>| {
            let clients = &clients;
            let name = config.name(name);
            let given = given.clone();
            async move {
                if let Some(url) = given {
                    Ok(url)
                } else if config.aws_provision {
                    let dead_letter = dead_letter.as_deref().map(|queue_url| DeadLetter {
                        queue_url,
                        max_receive_count: tuning.max_tries,
                    });
                    // CreateQueue answers the existing queue's URL when the
                    // attributes match.
                    provision::create_queue(clients, &name, dead_letter).await
                } else {
                    queue_url(clients, &name).await
                }
                .with_context(|| format!("queue {name}"))
            }
        };
        let delivery_dlq = queue("delivery-dlq", &stack.aws_delivery_dlq_url, None).await?;
        let feedback_dlq = queue("feedback-dlq", &stack.aws_feedback_dlq_url, None).await?;
        Ok(Resources {
            delivery_queue_url: queue(
                "delivery",
                &stack.aws_delivery_queue_url,
                Some(delivery_dlq.clone()),
            )
            .await?,
            feedback_queue_url: queue(
                "feedback",
                &stack.aws_feedback_queue_url,
                Some(feedback_dlq.clone()),
            )
            .await?,
            delivery_dlq_url: delivery_dlq,
            feedback_dlq_url: feedback_dlq,
            stream_failures_bucket,
            feeds_stream: config.feeds_stream(),
            clients,
            table,
            stream,
        })
    }
}

async fn queue_url(clients: &Clients, name: &str) -> Result<String, domain::ports::StoreError> {
    let output = clients
        .sqs()
        .get_queue_url()
        .queue_name(name)
        .send()
        .await
        .map_err(|e| domain::ports::StoreError::Failed(format!("GetQueueUrl {name}: {e}")))?;
    output
        .queue_url
        .ok_or_else(|| domain::ports::StoreError::Failed(format!("queue {name}: no URL")))
}

async fn provision_missing(
    clients: &Clients,
    table: &str,
    stream: &str,
    mail_from: &str,
) -> Result<()> {
    let table_exists = match clients
        .dynamodb()
        .describe_table()
        .table_name(table)
        .send()
        .await
    {
        Ok(_) => true,
        Err(e)
            if e.as_service_error()
                .is_some_and(|e| e.is_resource_not_found_exception()) =>
        {
            false
        }
        Err(e) => return Err(e).with_context(|| format!("DescribeTable {table}")),
    };
    if !table_exists {
        provision::create_order_table(clients, table)
            .await
            .with_context(|| format!("table {table}"))?;
    }
    let stream_exists = match clients
        .kinesis()
        .describe_stream_summary()
        .stream_name(stream)
        .send()
        .await
    {
        Ok(_) => true,
        Err(e)
            if e.as_service_error()
                .is_some_and(|e| e.is_resource_not_found_exception()) =>
        {
            false
        }
        Err(e) => return Err(e).with_context(|| format!("DescribeStreamSummary {stream}")),
    };
    if !stream_exists {
        provision::create_order_stream(clients, stream, 1)
            .await
            .with_context(|| format!("stream {stream}"))?;
    }
    // SES sends only from verified identities.
    let sender = sender_address(mail_from);
    let created = clients
        .sesv2()
        .create_email_identity()
        .email_identity(sender)
        .send()
        .await;
    if let Err(e) = created {
        if !e
            .as_service_error()
            .is_some_and(|e| e.is_already_exists_exception())
        {
            return Err(e).with_context(|| format!("CreateEmailIdentity {sender}"));
        }
    }
    Ok(())
}

/// `orders@x` of `Bakery orders <orders@x>`.
fn sender_address(mailbox: &str) -> &str {
    match (mailbox.rfind('<'), mailbox.rfind('>')) {
        (Some(start), Some(end)) if start < end => &mailbox[start + 1..end],
        _ => mailbox.trim(),
    }
}

#[cfg(test)]
mod tests {
    use super::sender_address;

    #[test]
    fn the_sender_is_the_address_of_the_mailbox() {
        assert_eq!(sender_address("Bakery <orders@x.test>"), "orders@x.test");
        assert_eq!(sender_address(" orders@x.test "), "orders@x.test");
    }
}
