//! The whole lifecycle with the runner on the AWS adapters, against an AWS
//! API emulator (moto) started by the test: the runner's pollers read
//! Kinesis and SQS as the event source mappings would, and the outcome is
//! checked afterwards through the AWS APIs themselves.

use std::collections::HashMap;
use std::time::Duration;

use aws_adapters::KinesisReader;
use aws_adapters::emulator::{Moto, clients_for};
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_sqs::types::QueueAttributeName;
use lambda_kit::stream_record::Decoded;
use serde_json::{Value, json};

use crate::support::*;

const CREDENTIALS: [(&str, &str); 4] = [
    ("AWS_ACCESS_KEY_ID", "testing"),
    ("AWS_SECRET_ACCESS_KEY", "testing"),
    ("AWS_REGION", "us-east-1"),
    ("AWS_EC2_METADATA_DISABLED", "true"),
];

#[tokio::test]
async fn the_whole_flow_runs_on_the_aws_apis() {
    let moto = Moto::start().await;
    let delivery = Partner::start().await;
    let care = Partner::start().await;
    let prefix = format!("bakery-{}", uuid::Uuid::new_v4().simple());
    let bakery = Bakery::start_with_env(
        &[
            "--backend",
            "aws",
            "--aws-endpoint-url",
            &moto.endpoint,
            "--aws-provision",
            "--aws-prefix",
            &prefix,
            "--aws-poll-ms",
            "50",
            "--max-tries",
            "3",
            "--delivery-webhook-url",
            &delivery.url,
            "--customer-service-webhook-url",
            &care.url,
        ],
        &CREDENTIALS,
    )
    .await;

    let mut orders = Vec::new();
    for name in ["Ada", "Grace", "Edsger"] {
        let placed = bakery.order(name).await;
        let id = placed["orderId"].as_str().unwrap().to_string();
        let token = placed["customerToken"].as_str().unwrap().to_string();
        orders.push((id, token));
    }
    for (id, _) in &orders {
        wait_for(&bakery, id, "baker_notified").await;
        let (status, body) = bakery.fulfil(id).await;
        assert_eq!(status, 200, "{body}");
    }
    for (id, token) in &orders {
        wait_for(&bakery, id, "delivery_notified").await;
        let review = json!({"orderId": id, "orderReview": "Crumbly perfection"});
        let (status, body) = bakery.post("/order/delivered", Some(token), &review).await;
        assert_eq!(status, 200, "{body}");
    }
    for (id, _) in &orders {
        wait_for(&bakery, id, "customer_service_notified").await;
    }
    assert_eq!(delivery.accepted_ids().len(), 3);
    assert_eq!(care.accepted_ids().len(), 3);

    // Checked through the AWS APIs, not through the bakery.
    let clients = clients_for(&moto.endpoint, None).await;
    for (id, _) in &orders {
        let item = clients
            .dynamodb()
            .get_item()
            .table_name(format!("{prefix}-orders"))
            .key("pk", AttributeValue::S(format!("order#{id}")))
            .consistent_read(true)
            .send()
            .await
            .unwrap()
            .item
            .expect("the order is in the table");
        assert_eq!(item["status"].as_s().unwrap(), "delivered");
        let order: Value = serde_json::from_str(item["order"].as_s().unwrap()).unwrap();
        assert_eq!(order["orderReview"], "Crumbly perfection");
        assert_eq!(order["timeline"].as_array().unwrap().len(), 7);
    }

    let reader = KinesisReader::open(&clients, &format!("{prefix}-orders"))
        .await
        .unwrap();
    // The table feeds the stream: every record is a change record of the
    // table, and the new event items among them are the events.
    let mut events: HashMap<String, Vec<String>> = HashMap::new();
    for shard in reader.shards().await.unwrap() {
        for record in reader.read(&shard, None, 1000).await.unwrap() {
            let change: Value = serde_json::from_slice(&record.kinesis.data).unwrap();
            assert_eq!(change["eventSource"], "aws:dynamodb");
            assert_eq!(
                record.kinesis.partition_key,
                change["dynamodb"]["Keys"]["pk"]["S"].as_str().unwrap()
            );
            match lambda_kit::stream_record::decode(&record.kinesis.data).unwrap() {
                Decoded::Event(event) => events
                    .entry(event.order_id.to_string())
                    .or_default()
                    .push(event.event_type.as_str().to_string()),
                Decoded::NotAnEvent => {}
            }
        }
    }
    for (id, _) in &orders {
        assert_eq!(
            events[id],
            ["order_placed", "order_fulfilled"],
            "order {id}"
        );
    }

    let kept = clients
        .s3()
        .list_objects_v2()
        .bucket(format!("{prefix}-stream-failures"))
        .send()
        .await
        .unwrap();
    assert_eq!(kept.key_count(), Some(0), "no stream failures");
    for queue in ["delivery", "delivery-dlq", "feedback", "feedback-dlq"] {
        let url = clients
            .sqs()
            .get_queue_url()
            .queue_name(format!("{prefix}-{queue}"))
            .send()
            .await
            .unwrap()
            .queue_url
            .unwrap();
        let attributes = clients
            .sqs()
            .get_queue_attributes()
            .queue_url(&url)
            .attribute_names(QueueAttributeName::All)
            .send()
            .await
            .unwrap();
        let attributes = attributes.attributes().unwrap();
        for count in [
            QueueAttributeName::ApproximateNumberOfMessages,
            QueueAttributeName::ApproximateNumberOfMessagesNotVisible,
        ] {
            assert_eq!(attributes[&count], "0", "{queue} {count:?}");
        }
    }

    // The operator's page reads the same queues.
    let (status, operations) = bakery.get("/operator/status", Some(BAKER_TOKEN)).await;
    assert_eq!(status, 200, "{operations}");
    let queues: Vec<&str> = operations["queues"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| q["name"].as_str().unwrap())
        .collect();
    assert_eq!(queues, ["delivery", "feedback"]);
    assert!(operations["deadLetters"].as_array().unwrap().is_empty());
    let (status, waiting) = bakery.get("/baker/orders", Some(BAKER_TOKEN)).await;
    assert_eq!(status, 200, "{waiting}");

    // One email to the cake maker and one confirmation to the customer
    // per order, through SES; the confirmation's link opens the order.
    let emails = moto.sent_emails().await;
    for (id, _) in &orders {
        let about: Vec<&Value> = emails
            .iter()
            .filter(|m| m["body"].as_str().unwrap_or("").contains(id.as_str()))
            .collect();
        let to = |address: &str| -> Vec<&Value> {
            about
                .iter()
                .copied()
                .filter(|m| m["destinations"]["ToAddresses"][0] == address)
                .collect()
        };
        assert_eq!(
            to("baker@bakery.local").len(),
            1,
            "one baker email for {id}: {emails:?}"
        );
        let confirmations = to("ada@example.com");
        assert_eq!(
            confirmations.len(),
            1,
            "one confirmation for {id}: {emails:?}"
        );
        assert_eq!(about.len(), 2, "{about:?}");
        let body = confirmations[0]["body"].as_str().unwrap_or_default();
        let link = body
            .split_whitespace()
            .find(|word| word.contains("/track/"))
            .unwrap_or_else(|| panic!("no tracking link in {body}"));
        let (path, token) = link
            .split_once("#token=")
            .unwrap_or_else(|| panic!("no token in {link}"));
        let order_path = path
            .split_once("/track/")
            .map(|(_, id)| format!("/order/{id}"))
            .unwrap_or_default();
        let (status, order) = bakery.get(&order_path, Some(token)).await;
        assert_eq!(status, 200, "the emailed link opens the order: {order}");
        assert_eq!(order["orderId"], id.as_str());
    }
}

async fn wait_for(bakery: &Bakery, id: &str, step: &str) {
    eventually(
        &format!("{step} of {id}"),
        Duration::from_secs(60),
        || async {
            let order = bakery.order_status(id).await;
            order["timeline"]
                .as_array()?
                .iter()
                .any(|s| s["step"] == step)
                .then_some(())
        },
    )
    .await;
}

/// A deployed stack's queues have names CloudFormation chose; the operator
/// points `bakery dlq` at them with the stack's outputs.
#[tokio::test]
async fn bakery_dlq_finds_a_deployed_stacks_queues_by_their_urls() {
    let moto = Moto::start().await;
    let clients = aws_adapters::emulator::clients_for(&moto.endpoint, None).await;
    let stack = format!("shop-{}", uuid::Uuid::new_v4().simple());
    let mut urls = HashMap::new();
    for queue in [
        "DeliveryQueue",
        "DeliveryDeadLetterQueue",
        "FeedbackQueue",
        "FeedbackDeadLetterQueue",
    ] {
        let url = clients
            .sqs()
            .create_queue()
            .queue_name(format!("{stack}-{queue}-1A2B3C4D"))
            .send()
            .await
            .unwrap()
            .queue_url
            .unwrap();
        urls.insert(queue, url);
    }
    // CloudFormation names buckets in lower case, within 63 characters.
    let bucket = format!("shop-streamfailuresbucket-{}", &stack[5..17]);
    aws_adapters::provision::create_bucket(&clients, &bucket)
        .await
        .unwrap();
    let order_id = uuid::Uuid::now_v7().to_string();
    clients
        .sqs()
        .send_message()
        .queue_url(&urls["DeliveryDeadLetterQueue"])
        .message_body(json!({"orderId": order_id, "messageId": "m-1"}).to_string())
        .send()
        .await
        .unwrap();

    let place = ["--backend", "aws", "--aws-endpoint-url", &moto.endpoint].map(String::from);
    // By the bakery's own names there is nothing to find.
    let (ok, said) = run_dlq(&["list"], &place, &CREDENTIALS).await;
    assert!(!ok, "{said}");
    assert!(said.contains("cannot find the bakery's queues"), "{said}");

    let stack_outputs = [
        (
            "BAKERY_AWS_ORDER_STREAM",
            format!("{stack}-OrderStream-1A2B3C4D"),
        ),
        (
            "BAKERY_AWS_DELIVERY_QUEUE_URL",
            urls["DeliveryQueue"].clone(),
        ),
        (
            "BAKERY_AWS_DELIVERY_DLQ_URL",
            urls["DeliveryDeadLetterQueue"].clone(),
        ),
        (
            "BAKERY_AWS_FEEDBACK_QUEUE_URL",
            urls["FeedbackQueue"].clone(),
        ),
        (
            "BAKERY_AWS_FEEDBACK_DLQ_URL",
            urls["FeedbackDeadLetterQueue"].clone(),
        ),
        ("BAKERY_AWS_STREAM_FAILURES_BUCKET", bucket.clone()),
    ];
    let mut envs: Vec<(&str, &str)> = CREDENTIALS.to_vec();
    envs.extend(stack_outputs.iter().map(|(k, v)| (*k, v.as_str())));

    let (ok, listed) = run_dlq(&["list"], &place, &envs).await;
    assert!(ok, "{listed}");
    let letters: Vec<Value> = listed
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect();
    assert_eq!(letters.len(), 1, "{listed}");
    assert_eq!(letters[0]["source"], "delivery");
    assert_eq!(letters[0]["orderId"], order_id.as_str());

    // A URL that names no queue is an error that says what it could not do.
    let wrong = format!("{}/000000000000/{stack}-NoSuchQueue", moto.endpoint);
    let mut wrong_envs = envs.clone();
    wrong_envs.push(("BAKERY_AWS_DELIVERY_DLQ_URL", wrong.as_str()));
    let (ok, said) = run_dlq(&["list"], &place, &wrong_envs).await;
    assert!(!ok, "{said}");
    assert!(said.contains("cannot list the dead letters"), "{said}");

    let (ok, said) = run_dlq(&["redrive", "--all"], &place, &envs).await;
    assert!(ok, "{said}");
    // Back on the stack's delivery queue, gone from its dead-letter queue.
    let received = clients
        .sqs()
        .receive_message()
        .queue_url(&urls["DeliveryQueue"])
        .wait_time_seconds(5)
        .send()
        .await
        .unwrap();
    let messages = received.messages();
    assert_eq!(messages.len(), 1);
    assert!(messages[0].body().unwrap_or("").contains(&order_id));
    let (ok, listed) = run_dlq(&["list"], &place, &envs).await;
    assert!(ok, "{listed}");
    assert!(listed.trim().is_empty(), "{listed}");
}
