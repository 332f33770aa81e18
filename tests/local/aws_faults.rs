//! The faults of `faults.rs` on the AWS backend: the runner on DynamoDB,
//! Kinesis, SQS and SES (an AWS API emulator, moto, started by each test),
//! with a fault-injecting proxy between the two ([`FaultProxy`]) that makes
//! chosen AWS operations answer 500 or 503, a delivery partner that fails
//! or goes away, SIGKILLs under load, and conflicting requests racing on
//! one order. Every outcome is read back
//! through the AWS APIs themselves (the table, the stream, the queues, the
//! mail SES accepted) or through the bakery's API; dead letters are listed
//! and redriven with `bakery dlq --backend aws`. Nothing sleeps to wait:
//! every wait polls with a deadline.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use std::time::{Duration, Instant};

use aws_adapters::clients::MAX_ATTEMPTS;
use aws_adapters::emulator::{Moto, clients_for};
use aws_adapters::{Clients, KinesisReader};
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_sqs::types::QueueAttributeName;
use futures::StreamExt;
use lambda_kit::stream_record::Decoded;
use serde_json::{Value, json};

use crate::fault_proxy::{FaultProxy, KINESIS_PUT_RECORD, KINESIS_PUT_RECORDS, SES_SEND_EMAIL};
use crate::flaky_partner::{FlakyPartner, PartnerMode};
use crate::support::*;

const CREDENTIALS: [(&str, &str); 4] = [
    ("AWS_ACCESS_KEY_ID", "testing"),
    ("AWS_SECRET_ACCESS_KEY", "testing"),
    ("AWS_REGION", "us-east-1"),
    ("AWS_EC2_METADATA_DISABLED", "true"),
];

/// One emulator, a proxy in front of it, and a prefix of our own.
struct Rig {
    moto: Moto,
    proxy: FaultProxy,
    prefix: String,
    /// Straight to the emulator, past the proxy: what the test reads with.
    clients: Clients,
}

impl Rig {
    /// An emulator behind a fault proxy (which also makes the emulator's
    /// conditional writes atomic, see `fault_proxy.rs`).
    async fn start() -> Rig {
        let moto = Moto::start().await;
        let proxy = FaultProxy::start(&moto.endpoint).await;
        let clients = clients_for(&moto.endpoint, None).await;
        Rig {
            moto,
            proxy,
            prefix: format!("bakery-{}", uuid::Uuid::new_v4().simple()),
            clients,
        }
    }

    /// The flags that put a bakery (or `bakery dlq`) on this rig.
    fn backend_flags(&self) -> Vec<String> {
        [
            "--backend",
            "aws",
            "--aws-endpoint-url",
            &self.proxy.url,
            "--aws-prefix",
            &self.prefix,
        ]
        .map(String::from)
        .to_vec()
    }

    /// A bakery on this rig, creating the resources on first start.
    async fn bakery(&self, extra: &[&str]) -> Bakery {
        let mut args = self.backend_flags();
        args.extend(["--aws-provision", "--aws-poll-ms", "50"].map(String::from));
        args.extend(extra.iter().map(|a| a.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        Bakery::start_with_env(&args, &CREDENTIALS).await
    }

    /// A bakery on this rig calling the two partners' webhooks, one call
    /// per try, `max_tries` tries per message.
    async fn bakery_with_partners(&self, max_tries: usize, delivery: &str, care: &str) -> Bakery {
        self.bakery(&[
            "--max-tries",
            &max_tries.to_string(),
            "--partner-attempts",
            "1",
            "--delivery-webhook-url",
            delivery,
            "--customer-service-webhook-url",
            care,
        ])
        .await
    }

    /// `bakery dlq ...` with `--backend aws` on this rig.
    async fn dlq(&self, args: &[&str]) -> (bool, String) {
        run_dlq(args, &self.backend_flags(), &CREDENTIALS).await
    }

    async fn dead_letters(&self) -> Vec<Value> {
        let (ok, listed) = self.dlq(&["list"]).await;
        assert!(ok, "{listed}");
        listed
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect()
    }

    /// Waits until `bakery dlq list` shows `count` dead letters.
    async fn wait_for_dead_letters(&self, count: usize) -> Vec<Value> {
        eventually(&format!("{count} dead letter(s)"), LIMIT, || async {
            let letters = self.dead_letters().await;
            (letters.len() >= count).then_some(letters)
        })
        .await
    }

    /// Every order item in the table (`pk` = `order#<id>`), read consistently.
    async fn order_items(&self) -> Vec<HashMap<String, AttributeValue>> {
        let mut items = Vec::new();
        let mut start = None;
        loop {
            let page = self
                .clients
                .dynamodb()
                .scan()
                .table_name(format!("{}-orders", self.prefix))
                .consistent_read(true)
                .set_exclusive_start_key(start)
                .send()
                .await
                .unwrap();
            items.extend(
                page.items()
                    .iter()
                    .filter(|item| {
                        item.get("pk")
                            .and_then(|pk| pk.as_s().ok())
                            .is_some_and(|pk| pk.starts_with("order#"))
                    })
                    .cloned(),
            );
            start = page.last_evaluated_key;
            if start.is_none() {
                return items;
            }
        }
    }

    /// Every record on the order stream: (sequence number, order id, event type).
    async fn stream_records(&self) -> Vec<(String, String, String)> {
        self.stream_events()
            .await
            .into_iter()
            .map(|(sequence, order, event)| {
                let kind = event["eventType"].as_str().unwrap().to_string();
                (sequence, order, kind)
            })
            .collect()
    }

    /// Every event on the order stream, oldest first per shard: (sequence
    /// number, order id, the event as JSON). The table feeds the stream, so
    /// its records are the table's change records; the new event items
    /// among them are the events.
    async fn stream_events(&self) -> Vec<(String, String, Value)> {
        let reader = KinesisReader::open(&self.clients, &format!("{}-orders", self.prefix))
            .await
            .unwrap();
        let mut records = Vec::new();
        for shard in reader.shards().await.unwrap() {
            let mut after = None;
            loop {
                let page = reader.read(&shard, after.clone(), 1000).await.unwrap();
                if page.is_empty() {
                    break;
                }
                for record in &page {
                    let decoded = lambda_kit::stream_record::decode(&record.kinesis.data);
                    if let Decoded::Event(event) = decoded.unwrap() {
                        records.push((
                            record.kinesis.sequence_number.clone(),
                            event.order_id.to_string(),
                            serde_json::to_value(&*event).unwrap(),
                        ));
                    }
                }
                after = page.last().map(|r| r.kinesis.sequence_number.clone());
            }
        }
        records
    }

    /// `order_placed` records per order id.
    async fn placed_records(&self) -> HashMap<String, Vec<String>> {
        let mut placed: HashMap<String, Vec<String>> = HashMap::new();
        for (sequence, order, event) in self.stream_records().await {
            if event == "order_placed" {
                placed.entry(order).or_default().push(sequence);
            }
        }
        placed
    }

    /// Emails SES accepted for the cake maker, per order id (from the
    /// text, "Order: B-... (id <id>)"; the subject has the short number).
    /// The customers' confirmations are the only other mails.
    async fn baker_emails(&self) -> HashMap<String, usize> {
        let mut emails = HashMap::new();
        for mail in self.moto.sent_emails().await {
            let to = &mail["destinations"]["ToAddresses"][0];
            if to != "baker@bakery.local" {
                assert_eq!(to, "ada@example.com", "{mail}");
                continue;
            }
            let text = mail["body"].as_str().unwrap_or_default();
            let id = text
                .split_once("(id ")
                .and_then(|(_, rest)| rest.split_once(')'))
                .map(|(id, _)| id)
                .unwrap_or_else(|| panic!("a baker email's text: {text}"));
            *emails.entry(id.to_string()).or_default() += 1;
        }
        emails
    }

    /// The failed stream batches kept in `<prefix>-stream-failures`, asked
    /// of S3.
    async fn kept_stream_failures(&self) -> Vec<String> {
        let listed = self
            .clients
            .s3()
            .list_objects_v2()
            .bucket(format!("{}-stream-failures", self.prefix))
            .send()
            .await
            .unwrap();
        listed
            .contents()
            .iter()
            .filter_map(|o| o.key().map(str::to_owned))
            .collect()
    }

    /// `ApproximateNumberOfMessages` of `<prefix>-<queue>`, asked of SQS.
    async fn visible_messages(&self, queue: &str) -> u64 {
        self.queue_counts(queue, &[QueueAttributeName::ApproximateNumberOfMessages])
            .await
    }

    /// Messages in `<prefix>-<queue>`, visible or received and in flight.
    async fn queued_messages(&self, queue: &str) -> u64 {
        self.queue_counts(
            queue,
            &[
                QueueAttributeName::ApproximateNumberOfMessages,
                QueueAttributeName::ApproximateNumberOfMessagesNotVisible,
            ],
        )
        .await
    }

    /// The sum of these count attributes of `<prefix>-<queue>`.
    async fn queue_counts(&self, queue: &str, counts: &[QueueAttributeName]) -> u64 {
        let url = self
            .clients
            .sqs()
            .get_queue_url()
            .queue_name(format!("{}-{queue}", self.prefix))
            .send()
            .await
            .unwrap()
            .queue_url
            .unwrap();
        let attributes = self
            .clients
            .sqs()
            .get_queue_attributes()
            .queue_url(url)
            .set_attribute_names(Some(counts.to_vec()))
            .send()
            .await
            .unwrap();
        let attributes = attributes.attributes().unwrap();
        counts
            .iter()
            .map(|name| attributes[name].parse::<u64>().unwrap())
            .sum()
    }
}

async fn fulfil(bakery: &Bakery, id: &str) {
    let (status, body) = bakery.fulfil(id).await;
    assert_eq!(status, 200, "{body}");
}

async fn deliver(bakery: &Bakery, placed: &Value) {
    let (status, body) = bakery
        .post(
            "/order/delivered",
            Some(&token_of(placed)),
            &json!({"orderId": id_of(placed), "orderReview": "fine"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
}

fn has_step(order: &Value, step: &str) -> bool {
    steps_of(order).iter().any(|s| s == step)
}

// ---------------------------------------------------------------------------
// One write per step: the table feeds the stream.

/// Waits until the table's feed has tried to put a change on the stream
/// and been refused, `more_than` refusals counted before.
async fn wait_for_refused_feed(rig: &Rig, more_than: usize) -> usize {
    eventually("the feed's put to be refused", LIMIT, || async {
        let refused = rig.proxy.counts(KINESIS_PUT_RECORDS).failed;
        (refused > more_than).then_some(refused)
    })
    .await
}

#[tokio::test]
async fn aws_a_stored_order_and_fulfilment_reach_the_stream_with_no_retry_though_the_bakery_dies_at_once()
 {
    let started = Instant::now();
    let rig = Rig::start().await;
    let delivery = Partner::start().await;
    let care = Partner::start().await;
    let mut bakery = rig.bakery_with_partners(3, &delivery.url, &care.url).await;

    // The stream takes nothing. The order is placed without an
    // Idempotency-Key, by a client that never retries.
    rig.proxy.fail(KINESIS_PUT_RECORD, 503);
    rig.proxy.fail(KINESIS_PUT_RECORDS, 503);
    let placed = bakery.order("No Retry").await;
    let id = id_of(&placed);
    // The answer needed one write, to the table: the step never calls the
    // stream, so there is no second write that could have failed.
    assert_eq!(
        rig.proxy.counts(KINESIS_PUT_RECORD),
        Default::default(),
        "no PutRecord by the order step"
    );
    let refused = wait_for_refused_feed(&rig, 0).await;
    // The bakery dies right after the table write, its change not yet on
    // the stream.
    bakery.kill9().await;
    rig.proxy.heal(KINESIS_PUT_RECORDS);
    rig.proxy.heal(KINESIS_PUT_RECORD);
    bakery.restart().await;
    wait_for(&bakery, &id, "baker_notified", LIMIT).await;

    // The same for the cake maker's fulfilment.
    rig.proxy.fail(KINESIS_PUT_RECORDS, 503);
    fulfil(&bakery, &id).await;
    assert_eq!(rig.proxy.counts(KINESIS_PUT_RECORD), Default::default());
    let refused = wait_for_refused_feed(&rig, refused).await;
    bakery.kill9().await;
    rig.proxy.heal(KINESIS_PUT_RECORDS);
    bakery.restart().await;
    wait_for(&bakery, &id, "delivery_notified", LIMIT).await;

    // The proxy saw the one write and the feed, by the names it matches on.
    let seen = rig.proxy.operations();
    for operation in [
        "DynamoDB_20120810.TransactWriteItems",
        "DynamoDBStreams_20120810.GetRecords",
        KINESIS_PUT_RECORDS,
        SES_SEND_EMAIL,
    ] {
        assert!(seen.contains(operation), "{operation} in {seen:?}");
    }
    // Everything once: one order, one email, one delivery notice.
    assert_eq!(rig.order_items().await.len(), 1);
    let emails = rig.baker_emails().await;
    assert_eq!(emails.get(&id), Some(&1), "{emails:?}");
    assert_eq!(emails.len(), 1);
    assert_eq!(delivery.accepted_ids().len(), 1);
    let events = rig.stream_events().await;
    let kinds: HashSet<&str> = events
        .iter()
        .filter(|(_, order, _)| order == &id)
        .filter_map(|(_, _, event)| event["eventType"].as_str())
        .collect();
    assert_eq!(kinds, HashSet::from(["order_placed", "order_fulfilled"]));
    eprintln!(
        "aws no dual write: the stream refused {refused} puts of the table's feed while the          order and the fulfilment were acknowledged (201, 200) with no write to the stream by          either step; the bakery was killed after each, and after each restart the event          reached its consumer: baker emails 1, delivery notices 1, no client retry ({:.1} s)",
        started.elapsed().as_secs_f64(),
    );
}

/// A batch that keeps failing is kept whole: after the stream has lost it
/// (here the stream is deleted and made again, as its retention would
/// drop it after 24 hours), `bakery dlq list` still shows it and a
/// redrive puts it back once.
#[tokio::test]
async fn aws_a_failed_stream_batch_is_kept_whole_past_the_streams_retention_and_redriven_once() {
    let rig = Rig::start().await;
    let mut bakery = rig.bakery(&["--max-tries", "2"]).await;
    rig.proxy.fail(SES_SEND_EMAIL, 500);
    let id = id_of(&bakery.order("Kept").await);
    let letters = rig.wait_for_dead_letters(1).await;
    assert_eq!(letters[0]["orderId"], id.as_str(), "{letters:?}");
    assert_eq!(letters[0]["source"], "notify-baker");
    bakery.kill9().await;
    rig.proxy.heal(SES_SEND_EMAIL);

    // The object holds the record itself: the change record with the
    // order's event in it.
    let keys = rig.kept_stream_failures().await;
    assert_eq!(keys.len(), 1, "{keys:?}");
    let failures = aws_adapters::stream_failures::StreamFailures::new(
        &rig.clients,
        format!("{}-stream-failures", rig.prefix),
    );
    let kept = failures.get(&keys[0]).await.unwrap().unwrap();
    let records = kept.records().unwrap();
    assert_eq!(records.len(), 1);
    match lambda_kit::stream_record::decode(&records[0].kinesis.data).unwrap() {
        Decoded::Event(event) => assert_eq!(event.order_id.to_string(), id),
        Decoded::NotAnEvent => panic!("the kept record is the order's event"),
    }

    // The stream loses every record, as retention would.
    let stream = format!("{}-orders", rig.prefix);
    rig.clients
        .kinesis()
        .delete_stream()
        .stream_name(&stream)
        .send()
        .await
        .unwrap();
    eventually("the stream to be gone", LIMIT, || async {
        rig.clients
            .kinesis()
            .describe_stream_summary()
            .stream_name(&stream)
            .send()
            .await
            .is_err()
            .then_some(())
    })
    .await;
    aws_adapters::provision::create_order_stream(&rig.clients, &stream, 1)
        .await
        .unwrap();
    assert!(rig.stream_events().await.is_empty(), "the stream is empty");

    // Still listed, with its order; redriven once, from the object.
    let letters = rig.dead_letters().await;
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0]["orderId"], id.as_str());
    let (ok, said) = rig.dlq(&["redrive", "--all"]).await;
    assert!(ok && said.contains("redrove 1 dead letter"), "{said}");
    assert!(rig.kept_stream_failures().await.is_empty());
    let events = rig.stream_events().await;
    assert_eq!(
        events.len(),
        1,
        "the record is back on the stream: {events:?}"
    );
    assert_eq!(events[0].1, id);

    // A bakery that does not feed the stream from the table (as deployed,
    // where the table feeds it itself) reads the redriven record: one
    // email.
    let mut args = rig.backend_flags();
    args.extend(["--aws-poll-ms", "50"].map(String::from));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let bakery = Bakery::start_with_env(&args, &CREDENTIALS).await;
    wait_for(&bakery, &id, "baker_notified", LIMIT).await;
    assert_eq!(rig.baker_emails().await.get(&id), Some(&1));
    assert!(rig.dead_letters().await.is_empty());
    eprintln!(
        "aws stream failure kept: 1 batch in the bucket with its record; the stream deleted and          made again (0 records); bakery dlq list showed it with its order; redrive put 1 record          back; baker emails 1"
    );
}

// ---------------------------------------------------------------------------
// SES failing.

#[tokio::test]
async fn aws_ses_failing_dead_letters_baker_emails_and_redrive_sends_each_once() {
    const MAX_TRIES: usize = 2;
    let started = Instant::now();
    let rig = Rig::start().await;
    let delivery = Partner::start().await;
    let care = Partner::start().await;
    let bakery = rig
        .bakery(&[
            "--max-tries",
            &MAX_TRIES.to_string(),
            "--delivery-webhook-url",
            &delivery.url,
            "--customer-service-webhook-url",
            &care.url,
        ])
        .await;

    let ann = bakery.order("Ann").await;
    let ann_id = id_of(&ann);
    wait_for(&bakery, &ann_id, "baker_notified", LIMIT).await;

    // SES fails: every SendEmail answers 500.
    rig.proxy.fail(SES_SEND_EMAIL, 500);
    let bob = id_of(&bakery.order("Bob").await);

    // Meanwhile the rest of the flow goes on: Ann's cake is fulfilled,
    // dispatched, announced to the delivery company, delivered, and
    // customer service hears of it.
    fulfil(&bakery, &ann_id).await;
    wait_for(&bakery, &ann_id, "delivery_notified", LIMIT).await;
    deliver(&bakery, &ann).await;
    wait_for(&bakery, &ann_id, "customer_service_notified", LIMIT).await;

    // Bob's record is tried max-tries times, then it is kept in the
    // stream-failures bucket and the consumer moves on; then Cat's.
    rig.wait_for_dead_letters(1).await;
    let cat = id_of(&bakery.order("Cat").await);
    let letters = rig.wait_for_dead_letters(2).await;
    assert_eq!(letters.len(), 2, "{letters:?}");
    let placed = rig.placed_records().await;
    for id in [&bob, &cat] {
        // The kept batch is the record: the order's order_placed.
        let sequence = &placed[id][0];
        let letter = letters
            .iter()
            .find(|l| {
                l["messageId"]
                    .as_str()
                    .unwrap()
                    .ends_with(sequence.as_str())
            })
            .unwrap_or_else(|| panic!("a note naming {id}'s record {sequence}: {letters:?}"));
        assert!(
            letter["id"]
                .as_str()
                .unwrap()
                .starts_with("stream-failures:"),
            "{letter}"
        );
        assert_eq!(letter["source"], "notify-baker", "{letter}");
        assert_eq!(letter["attempts"], MAX_TRIES, "{letter}");
        let reason = letter["reason"].as_str().unwrap();
        assert!(
            reason.contains("RetryAttemptsExhausted") && reason.contains("SendEmail"),
            "{reason}"
        );
        let short: String = reason.chars().take(100).collect();
        eprintln!("aws ses fault: {id} dead-lettered: {short}...");
    }
    assert_eq!(rig.kept_stream_failures().await.len(), 2);
    let refused = rig.proxy.counts(SES_SEND_EMAIL).failed;
    assert_eq!(
        refused,
        2 * 2 * MAX_TRIES * MAX_ATTEMPTS as usize,
        "2 orders x 2 emails (the cake maker's and the confirmation, sent together) x \
         max-tries x the SDK's attempts"
    );
    for id in [&bob, &cat] {
        let order = bakery.order_status(id).await;
        assert!(!has_step(&order, "baker_notified"), "{order}");
    }

    // SES is back: new orders flow at once; the notes wait for the operator.
    rig.proxy.heal(SES_SEND_EMAIL);
    let dan = id_of(&bakery.order("Dan").await);
    wait_for(&bakery, &dan, "baker_notified", LIMIT).await;
    let (ok, said) = rig.dlq(&["redrive", "--all"]).await;
    assert!(ok && said.contains("redrove 2 dead letter"), "{said}");
    for id in [&bob, &cat] {
        wait_for(&bakery, id, "baker_notified", LIMIT).await;
    }
    assert!(rig.dead_letters().await.is_empty());
    assert!(rig.kept_stream_failures().await.is_empty());

    let emails = rig.baker_emails().await;
    for id in [&ann_id, &bob, &cat, &dan] {
        assert_eq!(
            emails.get(id),
            Some(&1),
            "one baker email for {id}: {emails:?}"
        );
    }
    assert_eq!(emails.len(), 4);
    assert_eq!(delivery.accepted_ids().len(), 1);
    assert_eq!(care.accepted_ids().len(), 1);
    eprintln!(
        "aws ses fault: 4 orders; SendEmail answered 500 {refused} times ({MAX_TRIES} tries x \
         {MAX_ATTEMPTS} SDK attempts for each of 2 emails of 2 orders); 2 batches kept in the bucket, \
         redriven with `bakery dlq redrive --all --backend aws`; baker emails 4, one per order; \
         duplicates 0; meanwhile one order went fulfilled, delivered, customer service told \
         ({:.1} s)",
        started.elapsed().as_secs_f64()
    );
}

// ---------------------------------------------------------------------------
// The delivery partner down.

#[tokio::test]
async fn aws_ses_refusing_an_email_dead_letters_it_at_once_and_redrive_sends_it() {
    let rig = Rig::start().await;
    let bakery = rig.bakery(&["--max-tries", "5"]).await;
    // SES refuses the message (400 MessageRejected): sending it again
    // would be refused again.
    rig.proxy.fail(SES_SEND_EMAIL, 400);
    let id = id_of(&bakery.order("Ada").await);
    let letters = rig.wait_for_dead_letters(1).await;
    let letter = &letters[0];
    // The note has the on-failure destination's shape; its reason says
    // the failure was permanent.
    let reason = letter["reason"].as_str().unwrap();
    assert!(reason.contains("permanent: mail rejected"), "{letter}");
    assert!(reason.contains("MessageRejected"), "{letter}");
    assert_eq!(
        letter["attempts"], 1,
        "dead-lettered on its first try: {letter}"
    );
    assert_eq!(
        rig.proxy.counts(SES_SEND_EMAIL).failed,
        2,
        "one SendEmail for the cake maker and one for the confirmation, sent together: \
         neither the SDK nor the consumer tried again"
    );
    // Once the cause is fixed, the operator redrives it: one email.
    rig.proxy.heal(SES_SEND_EMAIL);
    let (ok, said) = rig.dlq(&["redrive", "--all"]).await;
    assert!(ok && said.contains("redrove 1 dead letter"), "{said}");
    wait_for(&bakery, &id, "baker_notified", LIMIT).await;
    assert_eq!(rig.baker_emails().await.get(&id), Some(&1));
}

#[tokio::test]
async fn aws_ses_send_rate_paces_a_backlog_and_spends_no_tries() {
    const ORDERS: usize = 300;
    const RATE: u32 = 20;
    let rig = Rig::start().await;
    // One try per record: a send that failed on throttling would be
    // dead-lettered at once, so none may. The bakery is told the account's
    // send rate, RATE a second.
    let mut bakery = rig
        .bakery(&[
            "--max-tries",
            "1",
            "--aws-ses-max-send-rate",
            &RATE.to_string(),
        ])
        .await;
    // A backlog, as after an outage: the bakery is down while orders reach
    // the table (written straight to the emulator), which feeds the stream.
    bakery.kill9().await;
    let name = format!("{}-orders", rig.prefix);
    let store = aws_adapters::DynamoStore::new(&rig.clients, &name);
    let mut placed = Vec::new();
    for _ in 0..ORDERS {
        let mut order = domain::memory::placed_order();
        // No customer address: one email per order, the cake maker's.
        order.email = None;
        let at = order.timeline[0].at;
        let new = domain::ports::NewOrder {
            event: domain::events::Event::new(domain::events::EventType::OrderPlaced, &order, at),
            idempotency: None,
            order,
        };
        domain::ports::OrderStore::place(&store, &new)
            .await
            .unwrap();
        placed.push(new.order.order_id.to_string());
    }
    // SES takes RATE emails a second and answers the rest 429
    // TooManyRequestsException. Unpaced, the consumer's 32 concurrent sends
    // would be throttled far past the SDK's own three attempts.
    rig.proxy.throttle(SES_SEND_EMAIL, RATE as usize);
    let started = Instant::now();
    bakery.restart().await;
    // Counted at the proxy while it drains: dumping the emulator's whole
    // state to read its mail, again and again, would slow it down for
    // everyone. The mail itself is read once, at the end.
    eventually("an email to SES for every order", LIMIT * 2, || async {
        (rig.proxy.counts(SES_SEND_EMAIL).forwarded >= ORDERS).then_some(())
    })
    .await;
    let drained = started.elapsed();
    let emails = rig.baker_emails().await;
    for id in &placed {
        assert_eq!(emails.get(id), Some(&1), "one email for {id}");
    }
    assert_eq!(emails.len(), ORDERS, "no email for anything else");
    let ses = rig.proxy.counts(SES_SEND_EMAIL);
    assert_eq!(
        ses.forwarded, ORDERS,
        "each email reached SES once: {ses:?}"
    );
    assert!(
        rig.dead_letters().await.is_empty(),
        "throttling dead-letters nothing"
    );
    assert!(rig.kept_stream_failures().await.is_empty());
    eprintln!(
        "aws ses send rate: a backlog of {ORDERS} orders drained in {drained:.1?} at SES's {RATE}/s; \
         SendEmail forwarded {}, throttled {}; 0 dead letters",
        ses.forwarded, ses.failed
    );
}

#[tokio::test]
async fn aws_a_partner_refusing_the_call_sends_it_to_the_dlq_at_once_with_the_reason() {
    let rig = Rig::start().await;
    let delivery = FlakyPartner::start().await;
    let care = Partner::start().await;
    let bakery = rig.bakery_with_partners(5, &delivery.url, &care.url).await;
    // The delivery company refuses the call (400): trying again cannot help.
    delivery.set_mode(PartnerMode::Refusing).await;
    let id = id_of(&bakery.order("Ann").await);
    fulfil(&bakery, &id).await;
    let letters = rig.wait_for_dead_letters(1).await;
    let letter = &letters[0];
    assert_eq!(letter["source"], "delivery", "{letter}");
    let reason = letter["reason"].as_str().unwrap();
    assert!(reason.starts_with("permanent: "), "{letter}");
    assert!(reason.contains("400"), "{letter}");
    assert_eq!(letter["attempts"], 1, "{letter}");
    assert_eq!(delivery.calls_for(&id).len(), 1, "called once, not 5 times");
    assert_eq!(rig.visible_messages("delivery").await, 0);

    // Fixed on their side: redriven, delivered once.
    delivery.set_mode(PartnerMode::Up).await;
    let (ok, said) = rig.dlq(&["redrive", "--all"]).await;
    assert!(ok && said.contains("redrove 1 dead letter"), "{said}");
    wait_for(&bakery, &id, "delivery_notified", LIMIT).await;
    let calls = delivery.calls_for(&id);
    let accepted: Vec<_> = calls.iter().filter(|c| c.answered == 204).collect();
    assert_eq!(accepted.len(), 1, "{calls:?}");
    assert_eq!(
        accepted[0].webhook_id, calls[0].webhook_id,
        "the same webhook id as the refused call"
    );
}

#[tokio::test]
async fn aws_partner_down_dead_letters_to_the_delivery_dlq_and_redrive_delivers_once() {
    const MAX_TRIES: usize = 3;
    let started = Instant::now();
    let rig = Rig::start().await;
    let delivery = FlakyPartner::start().await;
    let care = Partner::start().await;
    let bakery = rig
        .bakery_with_partners(MAX_TRIES, &delivery.url, &care.url)
        .await;

    let ann = bakery.order("Ann").await;
    let ann_id = id_of(&ann);
    fulfil(&bakery, &ann_id).await;
    wait_for(&bakery, &ann_id, "delivery_notified", LIMIT).await;

    // The delivery company answers 500, then is gone altogether: after
    // max-tries receives SQS moves each message to the dead-letter queue.
    let mut failing = Vec::new();
    for (name, mode) in [("Bob", PartnerMode::Failing), ("Cat", PartnerMode::Down)] {
        delivery.set_mode(mode).await;
        let id = id_of(&bakery.order(name).await);
        fulfil(&bakery, &id).await;
        let letter = eventually(&format!("the dead letter of {id}"), LIMIT, || async {
            rig.dead_letters()
                .await
                .into_iter()
                .find(|l| l["orderId"] == id.as_str())
        })
        .await;
        eprintln!("aws partner {mode:?}: {id} dead-lettered: {letter}");
        assert!(
            letter["id"].as_str().unwrap().starts_with("delivery:"),
            "{letter}"
        );
        assert_eq!(letter["source"], "delivery", "{letter}");
        assert_eq!(letter["attempts"], MAX_TRIES, "{letter}");
        let reason = letter["reason"].as_str().unwrap();
        assert!(
            reason.contains(&format!("after {MAX_TRIES} receives")),
            "{reason}"
        );
        let calls = delivery.calls_for(&id);
        if mode == PartnerMode::Failing {
            assert_eq!(calls.len(), MAX_TRIES, "one call per try: {calls:?}");
            assert!(calls.iter().all(|c| c.answered == 500));
            let ids: HashSet<_> = calls.iter().map(|c| c.webhook_id.clone()).collect();
            assert_eq!(ids.len(), 1, "one webhook id across tries: {calls:?}");
        } else {
            assert!(calls.is_empty(), "{calls:?}");
        }
        let order = bakery.order_status(&id).await;
        assert!(!has_step(&order, "delivery_notified"), "{order}");
        failing.push((id, letter["id"].as_str().unwrap().to_string()));
    }
    assert_eq!(rig.visible_messages("delivery-dlq").await, 2);

    // While the delivery company is unreachable, the other steps go on:
    // Ann confirms delivery and customer service hears of it; a new order
    // reaches the cake maker.
    deliver(&bakery, &ann).await;
    wait_for(&bakery, &ann_id, "customer_service_notified", LIMIT).await;
    let dan = id_of(&bakery.order("Dan").await);
    wait_for(&bakery, &dan, "baker_notified", LIMIT).await;

    // Back: new work flows at once; the operator redrives the rest.
    delivery.set_mode(PartnerMode::Up).await;
    let eve = id_of(&bakery.order("Eve").await);
    fulfil(&bakery, &eve).await;
    wait_for(&bakery, &eve, "delivery_notified", LIMIT).await;
    // One by its id, then whatever is left.
    let (bob, bob_letter) = &failing[0];
    let (ok, said) = rig.dlq(&["redrive", bob_letter]).await;
    assert!(
        ok && said.contains(&format!("redrove dead letter {bob_letter}")),
        "{said}"
    );
    wait_for(&bakery, bob, "delivery_notified", LIMIT).await;
    let (ok, said) = rig.dlq(&["redrive", "--all"]).await;
    assert!(ok && said.contains("redrove 1 dead letter"), "{said}");
    let failing: Vec<String> = failing.into_iter().map(|(id, _)| id).collect();
    for id in &failing {
        wait_for(&bakery, id, "delivery_notified", LIMIT).await;
    }
    assert!(rig.dead_letters().await.is_empty());
    assert_eq!(rig.visible_messages("delivery-dlq").await, 0);
    let (ok, said) = rig.dlq(&["redrive", "delivery:no-such-message"]).await;
    assert!(
        !ok && said.contains("no dead letter delivery:no-such-message"),
        "{said}"
    );

    let accepted = delivery.accepted();
    assert_eq!(accepted.len(), 4, "{accepted:?}");
    assert!(
        accepted.values().all(|n| *n == 1),
        "each webhook id accepted once: {accepted:?}"
    );
    for id in failing.iter().chain([&ann_id, &eve]) {
        let accepted_for_order = delivery
            .calls_for(id)
            .iter()
            .filter(|c| c.answered == 204)
            .count();
        assert_eq!(accepted_for_order, 1, "{id}");
    }
    assert_eq!(care.accepted_ids().len(), 1);
    let calls = delivery.call_count();
    eprintln!(
        "aws partner fault: 5 orders; {calls} calls reached the delivery company ({MAX_TRIES} \
         answered 500, the rest accepted) and {MAX_TRIES} receives met a closed port; 2 messages \
         in the delivery dead-letter queue after {MAX_TRIES} receives each, redriven with \
         `bakery dlq redrive --backend aws` (one by its id, one with --all); 4 webhook ids \
         accepted once each; duplicates 0 ({:.1} s)",
        started.elapsed().as_secs_f64()
    );
}

// ---------------------------------------------------------------------------
// SIGKILL under load, on the AWS backend.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_sigkill_15_times_under_load_loses_nothing_acknowledged() {
    const KILLS: usize = 15;
    const WORKERS: usize = 4;
    let started = Instant::now();
    let rig = Rig::start().await;
    let delivery = Partner::start().await;
    let care = Partner::start().await;
    // A message received by a killed runner comes back after 2 s. SQS
    // counts the receives a kill cut short, so the tries are not what is
    // tested here: plenty of them.
    let mut bakery = rig
        .bakery(&[
            "--visibility-timeout-secs",
            "2",
            "--max-tries",
            "50",
            "--delivery-webhook-url",
            &delivery.url,
            "--customer-service-webhook-url",
            &care.url,
        ])
        .await;
    // Each kill after 3-10 acknowledged answers since the last start. The
    // runner restarts on the same resources (its state is in DynamoDB,
    // Kinesis and SQS).
    let KillRun {
        load,
        done,
        killed_at,
        restarts,
        ..
    } = kill_under_load(
        &mut bakery,
        KILLS,
        WORKERS,
        (3, 8),
        Duration::from_secs(20),
        "aws-kill",
    )
    .await;
    let orders = done.len();

    // Everything settles: every acknowledged order is delivered and
    // customer service heard of it.
    eventually("every order's last step", LIMIT, || async {
        let finished = futures::stream::iter(done.iter().map(|(id, _)| {
            let bakery = &bakery;
            async move { has_step(&bakery.order_status(id).await, "customer_service_notified") }
        }))
        .buffer_unordered(8)
        .collect::<Vec<bool>>()
        .await;
        finished.iter().all(|f| *f).then_some(())
    })
    .await;
    eventually("every partner call and baker email", LIMIT, || async {
        (delivery.accepted_ids().len() >= orders
            && care.accepted_ids().len() >= orders
            && rig.baker_emails().await.len() >= orders)
            .then_some(())
    })
    .await;
    let settled = started.elapsed();

    // Read back through the AWS APIs: one stored order per Idempotency-Key,
    // none lost.
    let items = rig.order_items().await;
    let stored: HashSet<String> = items
        .iter()
        .map(|item| item["orderId"].as_s().unwrap().to_string())
        .collect();
    assert_eq!(items.len(), orders, "one stored order per key, none lost");
    let keys: HashSet<_> = done.iter().map(|(_, key)| key.clone()).collect();
    assert_eq!(keys.len(), orders);
    for (id, _) in &done {
        assert!(stored.contains(id), "{id} is in the table");
    }
    for item in &items {
        assert_eq!(item["status"].as_s().unwrap(), "delivered");
    }
    let complete = futures::stream::iter(done.iter().map(|(id, _)| {
        let bakery = &bakery;
        async move {
            let order = bakery.order_status(id).await;
            order["status"] == "delivered"
                && has_step(&order, "delivery_notified")
                && has_step(&order, "customer_service_notified")
        }
    }))
    .buffer_unordered(8)
    .collect::<Vec<bool>>()
    .await;
    assert!(complete.iter().all(|c| *c), "every order delivered");
    assert!(rig.dead_letters().await.is_empty(), "nothing dead-lettered");

    // The at-least-once window, measured.
    let placed = rig.placed_records().await;
    assert_eq!(placed.len(), orders, "an order_placed for every order");
    let placed_records: usize = placed.values().map(Vec::len).sum();
    let emails = rig.baker_emails().await;
    assert_eq!(emails.len(), orders, "a baker email for every order");
    for (id, _) in &done {
        let strangers: Vec<&String> = emails
            .keys()
            .filter(|e| !done.iter().any(|(d, _)| d == *e))
            .collect();
        assert!(
            emails.contains_key(id),
            "a baker email for {id}; emails for orders never acknowledged: {strangers:?}"
        );
    }
    let baker_emails: usize = emails.values().sum();
    let most_emails = emails.values().copied().max().unwrap_or(0);
    assert_eq!(delivery.accepted_ids().len(), orders, "delivery notices");
    assert_eq!(care.accepted_ids().len(), orders, "feedback calls");
    assert_eq!(delivery.bad_signatures() + care.bad_signatures(), 0);
    // A repeated call is the same notification: one webhook id per order.
    for partner in [&delivery, &care] {
        let mut ids: HashMap<String, HashSet<String>> = HashMap::new();
        for call in partner.received() {
            let order = call.body["data"]["orderId"].as_str().unwrap().to_string();
            ids.entry(order).or_default().insert(call.webhook_id);
        }
        assert_eq!(ids.len(), orders);
        assert!(ids.values().all(|ids| ids.len() == 1), "{ids:?}");
    }
    let sent = rig.proxy.counts("AmazonSQS.SendMessage").forwarded;
    let mailed = rig.proxy.counts(SES_SEND_EMAIL).forwarded;
    let most_calls = |partner: &Partner| {
        let mut calls: HashMap<String, usize> = HashMap::new();
        for call in partner.received() {
            *calls.entry(call.webhook_id).or_default() += 1;
        }
        calls.into_values().max().unwrap_or(0)
    };
    eprintln!(
        "aws sigkill: {KILLS} kills in {:.1} s (restarts took {:.1} s in all), {orders} orders \
         ({} acknowledged first try, {} only after a retry), {} acknowledged answers, {} \
         requests failed by kills and retried; stored orders {} (lost 0, duplicate orders 0); \
         order_placed records {placed_records} ({} repeated); baker emails {baker_emails} ({} \
         repeated, at most {most_emails} for one order); delivery notices {} ({} calls, {} \
         repeated); feedback calls {} ({} calls, {} repeated); at most {} calls with one \
         webhook id; SQS messages sent {sent} for {} queue steps, SES sends {mailed}; all \
         settled at {:.1} s, total {:.1} s",
        killed_at.as_secs_f64(),
        restarts.as_secs_f64(),
        load.first_try.load(Ordering::Relaxed),
        load.after_retry.load(Ordering::Relaxed),
        load.acknowledged.load(Ordering::Relaxed),
        load.failed.load(Ordering::Relaxed),
        items.len(),
        placed_records - orders,
        baker_emails - orders,
        delivery.accepted_ids().len(),
        delivery.accepted_calls(),
        delivery.accepted_calls() - delivery.accepted_ids().len(),
        care.accepted_ids().len(),
        care.accepted_calls(),
        care.accepted_calls() - care.accepted_ids().len(),
        most_calls(&delivery).max(most_calls(&care)),
        2 * orders,
        settled.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
}

// ---------------------------------------------------------------------------
// Conflicting transitions on one order, on the AWS backend.

/// Webhook ids a partner accepted (2xx) for one order, and how many calls
/// carried them.
fn accepted_for(partner: &Partner, order_id: &str) -> (HashSet<String>, usize) {
    let calls: Vec<Delivery> = partner
        .received()
        .into_iter()
        .filter(|c| c.answered < 300 && c.body["data"]["orderId"] == order_id)
        .collect();
    let ids = calls.iter().map(|c| c.webhook_id.clone()).collect();
    (ids, calls.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_twenty_concurrent_fulfils_answer_the_same_and_announce_once() {
    const FULFILS: usize = 20;
    let started = Instant::now();
    let rig = Rig::start().await;
    let delivery = Partner::start().await;
    let bakery = rig.bakery(&["--delivery-webhook-url", &delivery.url]).await;
    let id = id_of(&bakery.order("Ada").await);
    wait_for(&bakery, &id, "baker_notified", LIMIT).await;

    let racing = Instant::now();
    let answers = futures::future::join_all((0..FULFILS).map(|i| {
        let bakery = &bakery;
        let id = id.clone();
        async move {
            bakery
                .post(
                    "/order/fulfilled",
                    Some(BAKER_TOKEN),
                    &json!({"orderId": id, "fulfillmentId": format!("oven-{i}")}),
                )
                .await
        }
    }))
    .await;
    let raced = racing.elapsed();
    let mut fulfilled_at = HashSet::new();
    let mut fulfillment_ids = HashSet::new();
    for (status, order) in &answers {
        assert_eq!(*status, 200, "{order}");
        let step = order["timeline"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["step"] == "fulfilled")
            .unwrap();
        fulfilled_at.insert(step["at"].to_string());
        fulfillment_ids.insert(order["fulfillmentId"].to_string());
    }
    assert_eq!(fulfilled_at.len(), 1, "{fulfilled_at:?}");
    assert_eq!(fulfillment_ids.len(), 1, "the winner's details only");
    let winner = fulfillment_ids.iter().next().unwrap().clone();

    // The winning move and its event item were one transaction, and the
    // table feeds the stream: exactly one order_fulfilled record, with the
    // winner's time and details, however many requests raced. (Only the
    // winner writes an event item; a loser finds the step done and writes
    // nothing.)
    wait_for(&bakery, &id, "delivery_notified", LIMIT).await;
    let events: Vec<Value> = rig
        .stream_events()
        .await
        .into_iter()
        .filter(|(_, key, event)| key == &id && event["eventType"] == "order_fulfilled")
        .map(|(_, _, event)| event)
        .collect();
    let records = events.len();
    assert_eq!(records, 1, "one order_fulfilled record: {events:?}");
    let event_ids: HashSet<String> = events.iter().map(|e| e["eventId"].to_string()).collect();
    assert_eq!(
        event_ids.len(),
        1,
        "one order_fulfilled event: {event_ids:?}"
    );
    for event in &events {
        assert!(
            fulfilled_at.contains(&event["occurredAt"].to_string()),
            "the winner's time: {event}"
        );
        assert_eq!(
            event["order"]["fulfillmentId"].to_string(),
            winner,
            "{event}"
        );
    }

    // Dispatch took it out for delivery once, and the delivery company
    // heard of it under one webhook id, also after every repeated record
    // was handled (each sends the delivery request again, with the same
    // message id) and the delivery queue is empty.
    wait_for(&bakery, &id, "delivery_notified", LIMIT).await;
    eventually("a delivery request per record", LIMIT, || async {
        (rig.proxy.counts("AmazonSQS.SendMessage").forwarded >= records).then_some(())
    })
    .await;
    eventually("the delivery queue to drain", LIMIT, || async {
        (rig.queued_messages("delivery").await == 0).then_some(())
    })
    .await;
    let order = bakery.order_status(&id).await;
    assert_eq!(order["status"], "out_for_delivery", "{order}");
    let count = |step: &str| steps_of(&order).iter().filter(|s| *s == step).count();
    assert_eq!(count("fulfilled"), 1, "a single fulfilled time: {order}");
    assert_eq!(count("out_for_delivery"), 1, "{order}");
    let at = order["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["step"] == "fulfilled")
        .unwrap()["at"]
        .to_string();
    assert!(fulfilled_at.contains(&at), "{at} vs {fulfilled_at:?}");
    assert_eq!(order["fulfillmentId"].to_string(), winner);
    let (webhook_ids, calls) = accepted_for(&delivery, &id);
    assert_eq!(webhook_ids.len(), 1, "{webhook_ids:?}");
    let sent = rig.proxy.counts("AmazonSQS.SendMessage").forwarded;
    eprintln!(
        "aws fulfil race: {FULFILS} concurrent POST /order/fulfilled in {:.2} s: {FULFILS} x 200, \
         one fulfilled time, the winner's fulfillmentId {winner}; order_fulfilled records \
         {records}, all one event id; out_for_delivery once; {sent} delivery requests sent, \
         {calls} accepted call(s) to the delivery company, one webhook id ({:.1} s)",
        raced.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_delivering_while_dispatch_runs_is_409_then_200_and_never_backwards() {
    const ROUNDS: usize = 4;
    const RACERS: usize = 3;
    let started = Instant::now();
    let rig = Rig::start().await;
    let delivery = Partner::start().await;
    let care = Partner::start().await;
    let bakery = rig
        .bakery(&[
            "--delivery-webhook-url",
            &delivery.url,
            "--customer-service-webhook-url",
            &care.url,
        ])
        .await;
    let mut conflicts = 0;
    let mut delivered = 0;
    let mut polls = 0;
    // 409 answers by the `currentStatus` they named: placed, fulfilled.
    let conflicts_at = [AtomicUsize::new(0), AtomicUsize::new(0)];
    let mut ids = Vec::new();
    for round in 0..ROUNDS {
        let placed = bakery.order(&format!("Racer {round}")).await;
        let id = id_of(&placed);
        let token = token_of(&placed);
        let watching = AtomicBool::new(true);
        // A watcher polls the status the whole time; it must only go forward.
        let watcher = async {
            let mut seen: Vec<String> = vec![];
            let mut polled = 0;
            while watching.load(Ordering::Relaxed) {
                let (status, order) = bakery.get(&format!("/order/{id}"), Some(&token)).await;
                assert_eq!(status, 200, "{order}");
                polled += 1;
                let now = order["status"].as_str().unwrap().to_string();
                if seen.last() != Some(&now) {
                    seen.push(now);
                }
            }
            (seen, polled)
        };
        // Confirming delivery in a tight loop from several clients, starting
        // as the fulfilment is sent: 409 until dispatch has it out for
        // delivery, then 200.
        let race = async {
            let fulfil = async {
                let (status, body) = bakery.fulfil(&id).await;
                assert_eq!(status, 200, "{body}");
            };
            let racers = futures::future::join_all((0..RACERS).map(|_| async {
                let deadline = Instant::now() + LIMIT;
                let mut answers = vec![];
                let mut current = 0;
                loop {
                    let (status, body) = bakery
                        .post(
                            "/order/delivered",
                            Some(&token),
                            &json!({"orderId": id, "orderReview": "raced"}),
                        )
                        .await;
                    answers.push(status);
                    match status {
                        409 => {
                            let now = rank(body["currentStatus"].as_str().unwrap());
                            assert!(now <= 1 && now >= current, "{body}");
                            current = now;
                            conflicts_at[now].fetch_add(1, Ordering::Relaxed);
                        }
                        200 => {
                            assert_eq!(body["status"], "delivered", "{body}");
                            return answers;
                        }
                        other => panic!("delivered answered {other}: {body}"),
                    }
                    assert!(Instant::now() < deadline, "never out for delivery");
                }
            }));
            let ((), answers) = tokio::join!(fulfil, racers);
            watching.store(false, Ordering::Relaxed);
            answers
        };
        let ((seen, polled), answers) = tokio::join!(watcher, race);
        polls += polled;
        let ranks: Vec<usize> = seen.iter().map(|s| rank(s)).collect();
        assert!(ranks.windows(2).all(|w| w[0] < w[1]), "{seen:?}");
        for racer in &answers {
            let (last, before) = racer.split_last().unwrap();
            assert_eq!(*last, 200);
            assert!(before.iter().all(|s| *s == 409), "{racer:?}");
            conflicts += before.len();
            delivered += 1;
        }
        wait_for(&bakery, &id, "customer_service_notified", LIMIT).await;
        // The delivery company's queue may be behind customer service's,
        // and the cake maker's email (paced to SES's send rate) behind both.
        wait_for(&bakery, &id, "delivery_notified", LIMIT).await;
        let order = wait_for(&bakery, &id, "baker_notified", LIMIT).await;
        assert_eq!(order["status"], "delivered");
        assert_eq!(steps_of(&order).len(), 7, "{order}");
        // Every racer's 200 sent the review on; customer service hears of
        // it under one webhook id.
        let (heard, _) = accepted_for(&care, &id);
        assert_eq!(heard.len(), 1, "{heard:?}");
        if round == 0 {
            eprintln!("aws race {round}: statuses seen {seen:?}, answers {answers:?}");
        }
        ids.push(id);
    }

    // Read back through the AWS APIs: every order is delivered in the
    // table, and the racers put nothing on the stream.
    let items = rig.order_items().await;
    assert_eq!(items.len(), ROUNDS);
    for item in &items {
        assert_eq!(item["status"].as_s().unwrap(), "delivered");
    }
    let mut events: HashMap<String, Vec<String>> = HashMap::new();
    for (_, order, event) in rig.stream_records().await {
        events.entry(order).or_default().push(event);
    }
    for id in &ids {
        assert_eq!(
            events[id],
            ["order_placed", "order_fulfilled"],
            "order {id}"
        );
        assert_eq!(accepted_for(&delivery, id).0.len(), 1);
    }
    let [while_placed, while_fulfilled] = conflicts_at.map(AtomicUsize::into_inner);
    assert_eq!(while_placed + while_fulfilled, conflicts);
    eprintln!(
        "aws delivery race: {ROUNDS} orders x {RACERS} clients, {conflicts} answers 409 \
         ({while_placed} placed, {while_fulfilled} fulfilled) then {delivered} answers 200, no \
         5xx, never backwards ({polls} status polls); all {ROUNDS} delivered in the table, \
         order_placed and order_fulfilled once each on the stream, delivery company and \
         customer service heard of each under one webhook id ({:.1} s)",
        started.elapsed().as_secs_f64()
    );
}
