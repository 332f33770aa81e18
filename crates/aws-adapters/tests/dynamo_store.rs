//! `DynamoStore` against moto's DynamoDB, and the table feeding the
//! Kinesis stream (`TableFeed`, as the local runner plays it), read back
//! through `KinesisReader`.

mod support;

use std::collections::HashMap;
use std::sync::Arc;

use aws_adapters::provision::{create_order_stream, create_order_table};
use aws_adapters::table_feed::TableFeed;
use aws_adapters::{Clients, DynamoStore, KinesisReader};
use aws_config::retry::RetryConfig;
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_kinesis::primitives::Blob;
use chrono::Utc;
use domain::events::{Event, EventType};
use domain::memory::placed_order;
use domain::ports::{Advanced, IdempotencyKey, NewOrder, OrderStore, Placed, StoreError};
use domain::{Order, OrderId, Status, Step, StepDetails, Transition};
use lambda_kit::stream_record::{self, Decoded};
use support::{Moto, clients_for, free_port, unique};

struct Setup {
    _moto: Moto,
    clients: Clients,
    table: String,
    stream: String,
    store: DynamoStore,
    /// The table's feed of the stream.
    feed: tokio::sync::Mutex<TableFeed>,
}

async fn setup(shards: u32) -> Setup {
    let moto = Moto::start().await;
    let clients = moto.clients().await;
    let table = unique("orders");
    let stream = unique("order-stream");
    create_order_table(&clients, &table).await.unwrap();
    create_order_stream(&clients, &stream, shards)
        .await
        .unwrap();
    let store = DynamoStore::new(&clients, &table);
    let feed = TableFeed::open(&clients, &table, &stream).await.unwrap();
    Setup {
        _moto: moto,
        clients,
        table,
        stream,
        store,
        feed: tokio::sync::Mutex::new(feed),
    }
}

fn new_order(key: Option<(&str, &str)>) -> NewOrder {
    let order = placed_order();
    let placed_at = order.at(Step::Placed).unwrap();
    NewOrder {
        event: Event::new(EventType::OrderPlaced, &order, placed_at),
        idempotency: key.map(|(key, fingerprint)| IdempotencyKey {
            key: key.into(),
            fingerprint: fingerprint.into(),
        }),
        order,
    }
}

fn transition(order: &Order, to: Status) -> Transition {
    Transition {
        order_id: order.order_id,
        to,
        at: Utc::now(),
        details: StepDetails {
            fulfillment_id: (to == Status::Fulfilled).then(|| "oven-2".to_owned()),
            ..StepDetails::default()
        },
    }
}

/// What travels on the stream: the customer token's hash stays home.
fn public(mut event: Event) -> Event {
    event.order.customer_token_hash = Default::default();
    event
}

/// Every event on the stream, shard by shard, in sequence order per shard,
/// once the table has fed it every change so far.
async fn stream_events(s: &Setup) -> Vec<Event> {
    let mut feed = s.feed.lock().await;
    while feed.forward().await.unwrap() > 0 {}
    let reader = KinesisReader::open(&s.clients, &s.stream).await.unwrap();
    let mut events = Vec::new();
    for shard in reader.shards().await.unwrap() {
        for record in reader.read(&shard, None, 1000).await.unwrap() {
            if let Decoded::Event(event) = stream_record::decode(&record.kinesis.data).unwrap() {
                events.push(*event);
            }
        }
    }
    events
}

/// The items whose key starts with `prefix`, read consistently.
async fn items_with_prefix(
    clients: &Clients,
    table: &str,
    prefix: &str,
) -> Vec<HashMap<String, AttributeValue>> {
    let scan = clients
        .dynamodb()
        .scan()
        .table_name(table)
        .consistent_read(true)
        .send()
        .await
        .unwrap();
    scan.items()
        .iter()
        .filter(|item| {
            item.get("pk")
                .and_then(|pk| pk.as_s().ok())
                .is_some_and(|pk| pk.starts_with(prefix))
        })
        .cloned()
        .collect()
}

/// The event items in the table.
async fn event_items(s: &Setup) -> Vec<HashMap<String, AttributeValue>> {
    items_with_prefix(&s.clients, &s.table, "event#").await
}

async fn order_items(clients: &Clients, table: &str) -> usize {
    items_with_prefix(clients, table, "order#").await.len()
}

#[tokio::test]
async fn a_placed_order_is_stored_with_its_token_hash_and_announced() {
    let s = setup(1).await;
    let new = new_order(None);
    let placed = s.store.place(&new).await.unwrap();
    assert_eq!(placed, Placed::Created(new.order.clone()));

    let stored = s.store.get(new.order.order_id).await.unwrap().unwrap();
    assert_eq!(stored, new.order);
    assert!(
        stored
            .customer_token_hash
            .matches(&domain::memory::token_of(&new.order))
    );
    assert_eq!(s.store.get(placed_order().order_id).await.unwrap(), None);

    assert_eq!(stream_events(&s).await, vec![public(new.event.clone())]);
    let listed = s
        .store
        .orders_with_status(Status::Placed, 10)
        .await
        .unwrap();
    assert_eq!(listed, vec![new.order]);
}

#[tokio::test]
async fn the_same_key_replays_and_announces_nothing_again_a_different_request_is_refused() {
    let s = setup(1).await;
    let first = new_order(Some(("key-1", "fingerprint-a")));
    assert!(matches!(
        s.store.place(&first).await.unwrap(),
        Placed::Created(_)
    ));

    // The retry carries a fresh order id, as the handler makes one per request.
    let retry = new_order(Some(("key-1", "fingerprint-a")));
    assert_eq!(
        s.store.place(&retry).await.unwrap(),
        Placed::Replayed(first.order.clone())
    );
    let other = new_order(Some(("key-1", "fingerprint-b")));
    assert_eq!(s.store.place(&other).await.unwrap(), Placed::KeyReused);

    assert_eq!(order_items(&s.clients, &s.table).await, 1);
    let events = stream_events(&s).await;
    assert_eq!(events.len(), 1, "one event: the replay wrote nothing");
    assert!(events.iter().all(|e| e.event_id == first.event.event_id));
    assert!(events.iter().all(|e| e.order_id == first.order.order_id));
}

/// [`new_order`] with a key, requested `later` after now.
fn new_order_at(key: &str, fingerprint: &str, later: chrono::Duration) -> NewOrder {
    let mut new = new_order(Some((key, fingerprint)));
    new.event.occurred_at += later;
    new
}

#[tokio::test]
async fn a_key_expires_with_the_tables_ttl_after_the_window() {
    let s = setup(1).await;
    let ttl = s
        .clients
        .dynamodb()
        .describe_time_to_live()
        .table_name(&s.table)
        .send()
        .await
        .unwrap();
    let ttl = ttl.time_to_live_description().unwrap();
    assert_eq!(ttl.attribute_name(), Some("expiresAt"));

    let first = new_order(Some(("key-ttl", "fingerprint-a")));
    s.store.place(&first).await.unwrap();
    let item = s
        .clients
        .dynamodb()
        .get_item()
        .table_name(&s.table)
        .key("pk", AttributeValue::S("idem#key-ttl".into()))
        .send()
        .await
        .unwrap()
        .item
        .unwrap();
    let AttributeValue::N(expires_at) = &item["expiresAt"] else {
        panic!("expiresAt is a number: {item:?}");
    };
    let window = IdempotencyKey::WINDOW.as_secs() as i64;
    assert_eq!(
        expires_at.parse::<i64>().unwrap(),
        first.event.occurred_at.timestamp() + window
    );

    let window = chrono::Duration::from_std(IdempotencyKey::WINDOW).unwrap();
    let late_retry = new_order_at(
        "key-ttl",
        "fingerprint-a",
        window - chrono::Duration::minutes(1),
    );
    assert_eq!(
        s.store.place(&late_retry).await.unwrap(),
        Placed::Replayed(first.order.clone())
    );
    // Past the window the key is new, even before DynamoDB deletes it.
    let after = new_order_at(
        "key-ttl",
        "fingerprint-b",
        window + chrono::Duration::minutes(1),
    );
    assert_eq!(
        s.store.place(&after).await.unwrap(),
        Placed::Created(after.order.clone())
    );
    let retry_of_after = new_order_at(
        "key-ttl",
        "fingerprint-b",
        window + chrono::Duration::minutes(2),
    );
    assert_eq!(
        s.store.place(&retry_of_after).await.unwrap(),
        Placed::Replayed(after.order.clone())
    );
    assert_eq!(order_items(&s.clients, &s.table).await, 2);
}

#[tokio::test]
async fn an_order_and_its_event_are_written_together_or_not_at_all() {
    let s = setup(1).await;
    let new = new_order(Some(("key-2", "fingerprint")));
    s.store.place(&new).await.unwrap();
    // Before anything reaches the stream, the table holds the event: the
    // one write carried both.
    let items = event_items(&s).await;
    assert_eq!(items.len(), 1);
    let item = &items[0];
    assert_eq!(
        item["pk"].as_s().unwrap(),
        &format!("event#{}", new.event.event_id)
    );
    assert_eq!(item["eventType"].as_s().unwrap(), "order_placed");
    let expires: i64 = item["expiresAt"].as_n().unwrap().parse().unwrap();
    assert_eq!(
        expires,
        new.event.occurred_at.timestamp() + aws_adapters::dynamo::EVENT_KEPT.as_secs() as i64
    );
    let event = Event::from_json(item["event"].as_s().unwrap().as_bytes()).unwrap();
    assert_eq!(event, public(new.event.clone()));

    // A refused write (the key reused with another request, an order id
    // taken) writes no event either.
    let other = new_order(Some(("key-2", "another fingerprint")));
    assert_eq!(s.store.place(&other).await.unwrap(), Placed::KeyReused);
    let mut taken = new_order(None);
    taken.order.order_id = new.order.order_id;
    assert!(s.store.place(&taken).await.is_err());
    // A move without an announcement writes none.
    s.store
        .advance(&transition(&new.order, Status::Fulfilled), None)
        .await
        .unwrap();
    s.store
        .record_step(new.order.order_id, Step::BakerNotified, Utc::now())
        .await
        .unwrap();
    assert_eq!(event_items(&s).await.len(), 1);
    assert_eq!(order_items(&s.clients, &s.table).await, 1);

    // The feed carries the table's every change; the consumers see one event.
    assert_eq!(stream_events(&s).await, vec![public(new.event)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
async fn concurrent_advances_of_one_order_move_it_exactly_once() {
    let s = setup(1).await;
    let new = new_order(None);
    s.store.place(&new).await.unwrap();
    let store = Arc::new(s.store.clone());
    let attempts = (0..8).map(|_| {
        let store = store.clone();
        let t = transition(&new.order, Status::Fulfilled);
        tokio::spawn(async move { store.advance(&t, Some(EventType::OrderFulfilled)).await })
    });
    let outcomes: Vec<Advanced> = futures::future::join_all(attempts)
        .await
        .into_iter()
        .map(|joined| joined.unwrap().unwrap())
        .collect();
    let moved: Vec<&Order> = outcomes
        .iter()
        .filter_map(|o| match o {
            Advanced::Moved(order) => Some(order),
            _ => None,
        })
        .collect();
    assert_eq!(moved.len(), 1, "{outcomes:?}");
    assert!(
        outcomes
            .iter()
            .all(|o| matches!(o, Advanced::Moved(_) | Advanced::AlreadyDone(_)))
    );

    let stored = s.store.get(new.order.order_id).await.unwrap().unwrap();
    assert_eq!(&stored, moved[0]);
    assert_eq!(stored.status, Status::Fulfilled);
    assert_eq!(stored.fulfillment_id.as_deref(), Some("oven-2"));
    // Only the winner wrote an event: one record, the winner's time.
    let fulfilled: Vec<Event> = stream_events(&s)
        .await
        .into_iter()
        .filter(|e| e.event_type == EventType::OrderFulfilled)
        .collect();
    assert_eq!(fulfilled.len(), 1);
    assert!(
        fulfilled
            .iter()
            .all(|e| e.event_id == fulfilled[0].event_id)
    );
    assert!(
        fulfilled
            .iter()
            .all(|e| e.occurred_at == stored.at(Step::Fulfilled).unwrap())
    );
}

#[tokio::test]
async fn orders_move_forward_only() {
    let s = setup(1).await;
    let new = new_order(None);
    s.store.place(&new).await.unwrap();
    let order = &new.order;

    let skip = s
        .store
        .advance(&transition(order, Status::Delivered), None)
        .await;
    assert!(matches!(skip, Ok(Advanced::OutOfOrder(o)) if o.status == Status::Placed));
    let unknown = s
        .store
        .advance(&transition(&placed_order(), Status::Fulfilled), None)
        .await;
    assert_eq!(unknown, Ok(Advanced::NotFound));

    for to in [Status::Fulfilled, Status::OutForDelivery, Status::Delivered] {
        let moved = s.store.advance(&transition(order, to), None).await.unwrap();
        assert!(matches!(moved, Advanced::Moved(o) if o.status == to));
    }
    let back = s
        .store
        .advance(&transition(order, Status::Fulfilled), None)
        .await;
    assert!(matches!(back, Ok(Advanced::AlreadyDone(o)) if o.status == Status::Delivered));

    // The index follows the status.
    assert!(
        s.store
            .orders_with_status(Status::Placed, 10)
            .await
            .unwrap()
            .is_empty()
    );
    let delivered = s
        .store
        .orders_with_status(Status::Delivered, 10)
        .await
        .unwrap();
    assert_eq!(delivered.len(), 1);
}

#[tokio::test]
async fn steps_recorded_concurrently_with_a_status_change_all_land_and_first_wins() {
    let s = setup(1).await;
    let new = new_order(None);
    s.store.place(&new).await.unwrap();
    let id = new.order.order_id;
    let first = Utc::now();

    let store = &s.store;
    let fulfil = transition(&new.order, Status::Fulfilled);
    let (a, b, c) = tokio::join!(
        store.record_step(id, Step::BakerNotified, first),
        store.advance(&fulfil, None),
        store.record_step(id, Step::DeliveryNotified, first),
    );
    a.unwrap();
    assert!(matches!(b, Ok(Advanced::Moved(_))));
    c.unwrap();
    let later = first + chrono::Duration::seconds(30);
    store
        .record_step(id, Step::BakerNotified, later)
        .await
        .unwrap();
    // Unknown orders are ignored.
    store
        .record_step(placed_order().order_id, Step::BakerNotified, later)
        .await
        .unwrap();

    let stored = store.get(id).await.unwrap().unwrap();
    assert_eq!(stored.status, Status::Fulfilled);
    assert_eq!(stored.at(Step::BakerNotified), Some(first));
    assert!(stored.reached(Step::DeliveryNotified));
    assert!(stored.reached(Step::Fulfilled));
}

#[tokio::test]
async fn the_reader_gives_lambda_shaped_records_in_order_per_order() {
    let s = setup(2).await;
    // Order ids chosen so that three land on each of the two shards (the
    // MD5 of the partition key picks the shard): both shards are read
    // every time, never an empty one by chance.
    const ON_SHARD_0: [&str; 3] = [
        "0192f3a0-7c1e-7d00-8a00-000000000103",
        "0192f3a0-7c1e-7d00-8a00-000000000104",
        "0192f3a0-7c1e-7d00-8a00-000000000106",
    ];
    const ON_SHARD_1: [&str; 3] = [
        "0192f3a0-7c1e-7d00-8a00-000000000100",
        "0192f3a0-7c1e-7d00-8a00-000000000101",
        "0192f3a0-7c1e-7d00-8a00-000000000102",
    ];
    // Put straight on the stream, keyed by order, as the embedded stream
    // keys them: the reader is what is under test.
    let mut events = Vec::new();
    for id in ON_SHARD_0.iter().chain(&ON_SHARD_1) {
        let mut order = placed_order();
        order.order_id = OrderId::parse(id).unwrap();
        events.push(Event::new(EventType::OrderPlaced, &order, Utc::now()));
        order.status = Status::Fulfilled;
        events.push(Event::new(EventType::OrderFulfilled, &order, Utc::now()));
    }
    events.sort_by_key(|e| e.event_type == EventType::OrderFulfilled);
    for event in &events {
        s.clients
            .kinesis()
            .put_record()
            .stream_name(&s.stream)
            .partition_key(event.partition_key())
            .data(Blob::new(event.to_json()))
            .send()
            .await
            .unwrap();
    }

    let reader = KinesisReader::open(&s.clients, &s.stream).await.unwrap();
    let shards = reader.shards().await.unwrap();
    assert_eq!(shards.len(), 2);
    let mut per_order: HashMap<String, Vec<EventType>> = HashMap::new();
    let mut total = 0;
    for (shard, expected_orders) in shards.iter().zip([ON_SHARD_0, ON_SHARD_1]) {
        let records = reader.read(shard, None, 100).await.unwrap();
        let on_this_shard: std::collections::BTreeSet<&str> = records
            .iter()
            .map(|r| r.kinesis.partition_key.as_str())
            .collect();
        assert_eq!(
            on_this_shard,
            expected_orders.into_iter().collect(),
            "{shard}"
        );
        for record in &records {
            assert_eq!(record.event_source.as_deref(), Some("aws:kinesis"));
            assert_eq!(record.event_name.as_deref(), Some("aws:kinesis:record"));
            assert_eq!(
                record.event_source_arn.as_deref(),
                Some(reader.stream_arn())
            );
            assert_eq!(record.aws_region.as_deref(), Some("us-east-1"));
            assert_eq!(
                record.event_id.as_deref(),
                Some(format!("{shard}:{}", record.kinesis.sequence_number).as_str())
            );
            let event = Event::from_json(&record.kinesis.data).unwrap();
            assert_eq!(record.kinesis.partition_key, event.order_id.to_string());
            per_order
                .entry(record.kinesis.partition_key.clone())
                .or_default()
                .push(event.event_type);
        }
        total += records.len();

        // Reading on after a record gives exactly the records after it.
        if let Some(first) = records.first() {
            let rest = reader
                .read(shard, Some(first.kinesis.sequence_number.clone()), 100)
                .await
                .unwrap();
            assert_eq!(rest, records[1..].to_vec());
            let last = records.last().map(|r| r.kinesis.sequence_number.clone());
            assert!(reader.read(shard, last, 100).await.unwrap().is_empty());
        }
    }
    assert_eq!(total, 12);
    assert_eq!(per_order.len(), 6);
    for events in per_order.values() {
        assert_eq!(events, &[EventType::OrderPlaced, EventType::OrderFulfilled]);
    }
    // Records serialise as Lambda's payload does.
    let json = serde_json::to_value(&reader.read(&shards[0], None, 1).await.unwrap()[0]).unwrap();
    for key in ["eventID", "eventSourceARN", "awsRegion", "eventSource"] {
        assert!(json.get(key).is_some(), "{key} missing in {json}");
    }
    for key in [
        "data",
        "partitionKey",
        "sequenceNumber",
        "approximateArrivalTimestamp",
    ] {
        assert!(
            json["kinesis"].get(key).is_some(),
            "kinesis.{key} missing in {json}"
        );
    }
}

#[tokio::test]
async fn sdk_errors_become_domain_errors() {
    let s = setup(1).await;
    // A missing table is configuration, not a passing problem: Failed.
    let no_table = DynamoStore::new(&s.clients, "no-such-table");
    let error = no_table.get(placed_order().order_id).await.unwrap_err();
    assert!(
        matches!(error, StoreError::Failed(ref m) if m.contains("ResourceNotFound")),
        "{error:?}"
    );
    let error = no_table.place(&new_order(None)).await.unwrap_err();
    assert!(matches!(error, StoreError::Failed(_)), "{error:?}");
    let error = KinesisReader::open(&s.clients, "no-such-stream")
        .await
        .unwrap_err();
    assert!(matches!(error, StoreError::Failed(_)), "{error:?}");

    // Nobody listening: Unavailable, after the SDK's retries.
    let fast = RetryConfig::standard()
        .with_max_attempts(2)
        .with_initial_backoff(std::time::Duration::from_millis(10));
    let nowhere = clients_for(&format!("http://127.0.0.1:{}", free_port()), Some(fast)).await;
    let unreachable = DynamoStore::new(&nowhere, &s.table);
    let error = unreachable.get(placed_order().order_id).await.unwrap_err();
    assert!(matches!(error, StoreError::Unavailable(_)), "{error:?}");
    let error = unreachable.place(&new_order(None)).await.unwrap_err();
    assert!(matches!(error, StoreError::Unavailable(_)), "{error:?}");
}
