//! The order store against real SQLite files: placing, idempotency keys,
//! compare-and-set, events written with their orders, group commit.

mod common;

use std::collections::HashSet;

use common::*;
use domain::auth::TokenHash;
use domain::events::EventType;
use domain::ports::{Advanced, IdempotencyKey, OrderStore, Placed, StoreError};
use domain::{Status, Step};
use embedded::{Database, Options};

#[tokio::test]
async fn place_stores_the_order_and_its_event_together() {
    let (_dir, db) = fresh();
    let store = db.store();
    let new = new_order();
    assert_eq!(
        store.place(&new).await.unwrap(),
        Placed::Created(new.order.clone())
    );
    assert_eq!(
        store.get(new.order.order_id).await.unwrap(),
        Some(new.order.clone())
    );
    // Readable right after `place` answered: same commit.
    let records = db.read_stream("baker", 10).await.unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].partition_key, new.order.order_id.to_string());
    assert_eq!(records[0].data, new.event.to_json());
}

#[tokio::test]
async fn a_replayed_key_returns_the_stored_order_and_puts_nothing_new() {
    let (_dir, db) = fresh();
    let store = db.store();
    let first = new_order_with_key("key-1", "fp-a");
    assert!(matches!(
        store.place(&first).await.unwrap(),
        Placed::Created(_)
    ));
    // A retry builds a new order (new id), same key and request.
    let retry = new_order_with_key("key-1", "fp-a");
    assert_eq!(
        store.place(&retry).await.unwrap(),
        Placed::Replayed(first.order.clone())
    );
    assert_eq!(store.get(retry.order.order_id).await.unwrap(), None);
    let other = new_order_with_key("key-1", "fp-b");
    assert_eq!(store.place(&other).await.unwrap(), Placed::KeyReused);
    assert_eq!(db.count_orders().await.unwrap(), 1);
    assert_eq!(events(&db).await.len(), 1);
}

#[tokio::test]
async fn a_key_is_remembered_for_the_window_and_forgotten_after_it() {
    let (_dir, db) = fresh();
    let store = db.store();
    let window = chrono::Duration::from_std(IdempotencyKey::WINDOW).unwrap();
    let first = new_order_with_key("key-1", "fp-a");
    store.place(&first).await.unwrap();
    // A minute before the window ends: the same order, exactly.
    let late_retry = new_order_with_key_at("key-1", "fp-a", window - chrono::Duration::minutes(1));
    assert_eq!(
        store.place(&late_retry).await.unwrap(),
        Placed::Replayed(first.order.clone())
    );
    // After the window the key names a new order, even with another body.
    let after = new_order_with_key_at("key-1", "fp-b", window + chrono::Duration::minutes(1));
    assert_eq!(
        store.place(&after).await.unwrap(),
        Placed::Created(after.order.clone())
    );
    assert_eq!(db.count_orders().await.unwrap(), 2);
    // And that new order is what the key answers from then on.
    let retry_of_after =
        new_order_with_key_at("key-1", "fp-b", window + chrono::Duration::minutes(2));
    assert_eq!(
        store.place(&retry_of_after).await.unwrap(),
        Placed::Replayed(after.order.clone())
    );
}

#[tokio::test]
async fn expired_keys_are_deleted_as_new_keys_arrive() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    let store = db.store();
    for n in 0..40 {
        store
            .place(&new_order_with_key(&format!("old-{n}"), "fp"))
            .await
            .unwrap();
    }
    let window = chrono::Duration::from_std(IdempotencyKey::WINDOW).unwrap();
    let next_day = window + chrono::Duration::hours(1);
    for n in 0..3 {
        store
            .place(&new_order_with_key_at(&format!("new-{n}"), "fp", next_day))
            .await
            .unwrap();
    }
    db.settled().await.unwrap();
    let keys: i64 = rusqlite::Connection::open(dir.path().join("bakery.sqlite3"))
        .unwrap()
        .query_row("SELECT count(*) FROM idempotency_keys", [], |row| {
            row.get(0)
        })
        .unwrap();
    // 16 expired keys go with each new one: all 40 gone after three.
    assert_eq!(keys, 3);
    assert_eq!(db.count_orders().await.unwrap(), 43, "orders are kept");
}

#[tokio::test]
async fn the_customer_token_hash_survives_a_round_trip() {
    let (_dir, db) = fresh();
    let store = db.store();
    let new = new_order();
    store.place(&new).await.unwrap();
    let stored = store.get(new.order.order_id).await.unwrap().unwrap();
    assert_ne!(stored.customer_token_hash, TokenHash::default());
    assert_eq!(stored.customer_token_hash, new.order.customer_token_hash);
    assert!(
        stored
            .customer_token_hash
            .matches(&domain::memory::token_of(&new.order))
    );
    // Also through a replay and the status listing.
    let keyed = new_order_with_key("k", "f");
    store.place(&keyed).await.unwrap();
    let Placed::Replayed(replayed) = store.place(&keyed).await.unwrap() else {
        panic!("not replayed");
    };
    assert_eq!(
        replayed.customer_token_hash,
        keyed.order.customer_token_hash
    );
    let listed = db.orders_with_status(Status::Placed, 10).await.unwrap();
    assert!(
        listed
            .iter()
            .all(|o| o.customer_token_hash == TokenHash::of(&domain::memory::token_of(o)))
    );
}

#[tokio::test]
async fn advance_moves_forward_once_and_announces_it() {
    let (_dir, db) = fresh();
    let store = db.store();
    let new = new_order();
    store.place(&new).await.unwrap();
    let mut transition = to(&new.order, Status::Fulfilled);
    transition.details.fulfillment_id = Some("oven-3".into());

    let Advanced::Moved(moved) = store
        .advance(&transition, Some(EventType::OrderFulfilled))
        .await
        .unwrap()
    else {
        panic!("not moved");
    };
    assert_eq!(moved.status, Status::Fulfilled);
    assert_eq!(moved.fulfillment_id.as_deref(), Some("oven-3"));
    assert_eq!(moved.at(Step::Fulfilled), Some(transition.at));
    assert_eq!(
        store.get(new.order.order_id).await.unwrap(),
        Some(moved.clone())
    );

    let events = events(&db).await;
    assert_eq!(events.len(), 2);
    assert_eq!(events[1].event_type, EventType::OrderFulfilled);
    // Events carry the order's JSON form, which leaves the hash out.
    let announced = domain::Order {
        correlation_id: None,
        customer_token_hash: TokenHash::default(),
        ..moved.clone()
    };
    assert_eq!(events[1].order, announced);
    assert_eq!(events[1].occurred_at, transition.at);

    // A repeat changes nothing and puts no second event.
    let repeat = store
        .advance(
            &to(&new.order, Status::Fulfilled),
            Some(EventType::OrderFulfilled),
        )
        .await
        .unwrap();
    assert_eq!(repeat, Advanced::AlreadyDone(moved.clone()));
    assert_eq!(common::events(&db).await.len(), 2);
}

#[tokio::test]
async fn advance_refuses_skipping_and_unknown_orders() {
    let (_dir, db) = fresh();
    let store = db.store();
    let new = new_order();
    store.place(&new).await.unwrap();
    let skip = store
        .advance(&to(&new.order, Status::Delivered), None)
        .await
        .unwrap();
    assert_eq!(skip, Advanced::OutOfOrder(new.order.clone()));
    assert_eq!(
        store.get(new.order.order_id).await.unwrap(),
        Some(new.order.clone())
    );

    let unknown = domain::memory::placed_order();
    assert_eq!(
        store
            .advance(
                &to(&unknown, Status::Fulfilled),
                Some(EventType::OrderFulfilled)
            )
            .await
            .unwrap(),
        Advanced::NotFound
    );
    assert_eq!(events(&db).await.len(), 1);
}

#[tokio::test]
async fn advance_without_announce_puts_no_event() {
    let (_dir, db) = fresh();
    let store = db.store();
    let new = new_order();
    store.place(&new).await.unwrap();
    for status in [Status::Fulfilled, Status::OutForDelivery, Status::Delivered] {
        let moved = store.advance(&to(&new.order, status), None).await.unwrap();
        assert!(matches!(moved, Advanced::Moved(o) if o.status == status));
    }
    assert_eq!(events(&db).await.len(), 1);
}

#[tokio::test]
async fn record_step_keeps_the_first_time_and_ignores_unknown_orders() {
    let (_dir, db) = fresh();
    let store = db.store();
    let new = new_order();
    store.place(&new).await.unwrap();
    let first = chrono::Utc::now();
    let later = first + chrono::Duration::seconds(30);
    store
        .record_step(new.order.order_id, Step::BakerNotified, first)
        .await
        .unwrap();
    store
        .record_step(new.order.order_id, Step::BakerNotified, later)
        .await
        .unwrap();
    let stored = store.get(new.order.order_id).await.unwrap().unwrap();
    assert_eq!(stored.at(Step::BakerNotified), Some(first));
    store
        .record_step(
            domain::memory::placed_order().order_id,
            Step::BakerNotified,
            first,
        )
        .await
        .unwrap();
    assert_eq!(db.count_orders().await.unwrap(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_places_are_all_stored_with_one_event_each() {
    let (_dir, db) = fresh();
    let commits_before = db.commits();
    let mut tasks = Vec::new();
    for i in 0..200 {
        let store = db.store();
        tasks.push(tokio::spawn(async move {
            let new = new_order_with_key(&format!("key-{i}"), "fp");
            let placed = store.place(&new).await.unwrap();
            assert!(matches!(placed, Placed::Created(_)));
            new.order.order_id
        }));
    }
    let mut ids = HashSet::new();
    for task in tasks {
        ids.insert(task.await.unwrap());
    }
    assert_eq!(ids.len(), 200);
    assert_eq!(db.count_orders().await.unwrap(), 200);
    let events = events(&db).await;
    assert_eq!(events.len(), 200);
    let announced: HashSet<_> = events.iter().map(|e| e.order_id).collect();
    assert_eq!(announced, ids);
    let commits = db.commits() - commits_before;
    assert!(commits <= 200, "{commits} commits for 200 orders");
}

#[tokio::test]
async fn orders_with_status_lists_oldest_first() {
    let (_dir, db) = fresh();
    let store = db.store();
    let mut placed = Vec::new();
    for _ in 0..5 {
        let new = new_order();
        store.place(&new).await.unwrap();
        placed.push(new.order);
    }
    store
        .advance(&to(&placed[1], Status::Fulfilled), None)
        .await
        .unwrap();
    let listed = db.orders_with_status(Status::Placed, 3).await.unwrap();
    let ids: Vec<_> = listed.iter().map(|o| o.order_id).collect();
    assert_eq!(
        ids,
        vec![placed[0].order_id, placed[2].order_id, placed[3].order_id]
    );
    let fulfilled = db.orders_with_status(Status::Fulfilled, 10).await.unwrap();
    assert_eq!(fulfilled.len(), 1);
    assert_eq!(fulfilled[0].order_id, placed[1].order_id);
    assert_eq!(db.count_orders().await.unwrap(), 5);
}

#[tokio::test]
async fn reopening_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let new = new_order_with_key("key", "fp");
    {
        let db = open(dir.path());
        let store = db.store();
        store.place(&new).await.unwrap();
        store
            .advance(
                &to(&new.order, Status::Fulfilled),
                Some(EventType::OrderFulfilled),
            )
            .await
            .unwrap();
        db.checkpoint("baker", 1).await.unwrap();
        db.record_mail("mail-1", "baker@example.com", "New order")
            .await
            .unwrap();
    }
    let db = open(dir.path());
    let store = db.store();
    let stored = store.get(new.order.order_id).await.unwrap().unwrap();
    assert_eq!(stored.status, Status::Fulfilled);
    assert_eq!(stored.customer_token_hash, new.order.customer_token_hash);
    assert!(matches!(
        store.place(&new).await.unwrap(),
        Placed::Replayed(o) if o.order_id == new.order.order_id
    ));
    assert_eq!(events(&db).await.len(), 2);
    assert_eq!(db.stream_lag("baker").await.unwrap(), 1);
    assert!(db.mail_sent("mail-1").await.unwrap());
}

#[test]
fn a_directory_under_a_regular_file_is_unavailable() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-directory");
    std::fs::write(&file, b"x").unwrap();
    let error = Database::open(&file.join("data"), Options::default()).unwrap_err();
    assert!(matches!(error, StoreError::Unavailable(_)), "{error:?}");
}

#[test]
fn a_database_file_that_cannot_be_opened_is_unavailable() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join(embedded::DATABASE_FILE)).unwrap();
    let error = Database::open(dir.path(), Options::default()).unwrap_err();
    assert!(matches!(error, StoreError::Unavailable(_)), "{error:?}");
}

#[test]
fn a_file_that_is_not_a_database_failed() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(embedded::DATABASE_FILE), vec![0x5a; 8192]).unwrap();
    let error = Database::open(dir.path(), Options::default()).unwrap_err();
    assert!(matches!(error, StoreError::Failed(_)), "{error:?}");
}

#[test]
fn a_newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    drop(open(dir.path()));
    let conn = rusqlite::Connection::open(dir.path().join(embedded::DATABASE_FILE)).unwrap();
    conn.pragma_update(None, "user_version", 99).unwrap();
    drop(conn);
    let error = Database::open(dir.path(), Options::default()).unwrap_err();
    assert!(matches!(error, StoreError::Failed(_)), "{error:?}");
}

#[tokio::test]
async fn the_wal_is_copied_back_in_the_background_while_the_bakery_runs() {
    let (dir, db) = fresh();
    let database = dir.path().join("bakery.sqlite3");
    let size = || std::fs::metadata(&database).map(|m| m.len()).unwrap_or(0);
    let before = size();
    // The writer never checkpoints; only the checkpoint thread writes the
    // database file while it is open, so the file growing is its work.
    let store = db.store();
    for i in 0..300 {
        store
            .place(&new_order_with_key(&format!("wal-{i}"), "fp"))
            .await
            .unwrap();
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while size() <= before {
        assert!(
            std::time::Instant::now() < deadline,
            "the database file stayed at {before} bytes: nothing was copied back"
        );
        tokio::task::yield_now().await;
        std::thread::yield_now();
    }
    assert_eq!(db.count_orders().await.unwrap(), 300);
}
