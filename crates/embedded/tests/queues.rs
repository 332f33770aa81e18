//! The queues: visibility, receive counts, retries, dead letters, redrive,
//! restarts; and the sent-mail record.

mod common;

use std::time::Duration;

use chrono::Utc;
use common::*;
use domain::ports::{OrderStore, Queue, QueueMessage};
use embedded::DeadLetterKind;

const HOUR: Duration = Duration::from_secs(3600);

fn message(id: &str) -> QueueMessage {
    QueueMessage {
        id: id.into(),
        body: format!("{{\"messageId\":\"{id}\"}}"),
    }
}

#[tokio::test]
async fn received_messages_are_invisible_until_their_timeout() {
    let (_dir, db) = fresh();
    let queue = db.queue("delivery");
    let mut changes = db.queue_changes();
    let stream = db.stream_changes();
    for id in ["a", "b", "c"] {
        queue.send(&message(id)).await.unwrap();
    }
    assert!(changes.has_changed().unwrap());
    changes.borrow_and_update();
    // The stream's consumers have nothing new: they sleep on.
    assert!(!stream.has_changed().unwrap());
    db.queue("feedback").send(&message("other")).await.unwrap();

    let first = db.receive("delivery", 2, HOUR).await.unwrap();
    let ids: Vec<_> = first.iter().map(|m| m.message_id.as_str()).collect();
    assert_eq!(ids, ["a", "b"], "oldest first, limited");
    assert!(first.iter().all(|m| m.receive_count == 1));
    assert_eq!(first[0].body, message("a").body);
    assert!(first[0].sent_at <= Utc::now());
    db.settled().await.unwrap();
    assert_eq!(depth(&db, "delivery").await, (1, 2));

    let second = db.receive("delivery", 10, HOUR).await.unwrap();
    assert_eq!(second.len(), 1);
    assert_eq!(second[0].message_id, "c");
    assert!(db.receive("delivery", 10, HOUR).await.unwrap().is_empty());
    let next = db.next_visible_at().await.unwrap().unwrap();
    assert!(next > Utc::now() + chrono::Duration::minutes(59));

    // A zero timeout hands it out again at once, counting the receive.
    let feedback = db.receive("feedback", 10, Duration::ZERO).await.unwrap();
    assert_eq!(feedback[0].receive_count, 1);
    db.settled().await.unwrap();
    let again = db.receive("feedback", 10, Duration::ZERO).await.unwrap();
    assert_eq!(again[0].receive_count, 2);
    assert_ne!(again[0].receipt, feedback[0].receipt);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pollers_receiving_at_once_never_get_the_same_message() {
    let (_dir, db) = fresh();
    let queue = db.queue("delivery");
    for n in 0..40 {
        queue.send(&message(&format!("m{n}"))).await.unwrap();
    }
    // Eight pollers on four threads, receiving while the writer commits
    // the others' receives: the in-memory claims keep them apart.
    let pollers = (0..8).map(|_| {
        let db = db.clone();
        tokio::spawn(async move {
            let mut got = Vec::new();
            for _ in 0..4 {
                got.extend(db.receive("delivery", 3, HOUR).await.unwrap());
            }
            got
        })
    });
    let received = futures::future::join_all(pollers).await;
    let mut ids: Vec<String> = received
        .into_iter()
        .flat_map(|got| got.unwrap())
        .map(|m| m.message_id)
        .collect();
    assert_eq!(ids.len(), 40, "every message once");
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 40, "no message twice");
    db.settled().await.unwrap();
    assert!(db.receive("delivery", 10, HOUR).await.unwrap().is_empty());
    assert_eq!(depth(&db, "delivery").await, (0, 40));
}

#[tokio::test]
async fn a_deleted_message_is_gone_and_a_stale_receipt_deletes_nothing() {
    let (_dir, db) = fresh();
    let queue = db.queue("delivery");
    queue.send(&message("a")).await.unwrap();
    queue.send(&message("b")).await.unwrap();
    let got = db.receive("delivery", 10, HOUR).await.unwrap();
    db.delete_message("delivery", got[0].receipt).await.unwrap();
    assert_eq!(depth(&db, "delivery").await, (0, 1));
    // b: received twice; the first receipt no longer names it.
    db.fail_message("delivery", got[1].receipt, "slow", 10, Duration::ZERO)
        .await
        .unwrap();
    let b = db.receive("delivery", 10, HOUR).await.unwrap();
    db.delete_message("delivery", got[1].receipt).await.unwrap();
    assert!(
        !db.fail_message("delivery", got[1].receipt, "late", 1, Duration::ZERO)
            .await
            .unwrap()
    );
    assert_eq!(db.queue_depth("delivery").await.unwrap().in_flight, 1);
    // Deleting from the wrong queue does nothing either.
    db.delete_message("feedback", b[0].receipt).await.unwrap();
    assert_eq!(db.queue_depth("delivery").await.unwrap().in_flight, 1);
    db.delete_message("delivery", b[0].receipt).await.unwrap();
    assert_eq!(depth(&db, "delivery").await, (0, 0));
}

#[tokio::test]
async fn a_message_still_queued_is_not_sent_twice() {
    let (_dir, db) = fresh();
    let queue = db.queue("delivery");
    queue.send(&message("a")).await.unwrap();
    let mut changes = db.queue_changes();
    queue.send(&message("a")).await.unwrap();
    assert!(!changes.has_changed().unwrap(), "nothing new, no wake");
    assert_eq!(db.queue_depth("delivery").await.unwrap().visible, 1);
    // The same id on another queue is another message.
    db.queue("feedback").send(&message("a")).await.unwrap();
    assert_eq!(db.queue_depth("feedback").await.unwrap().visible, 1);
    // Once deleted, the id may be sent again.
    let got = db.receive("delivery", 10, HOUR).await.unwrap();
    db.delete_message("delivery", got[0].receipt).await.unwrap();
    queue.send(&message("a")).await.unwrap();
    assert_eq!(db.queue_depth("delivery").await.unwrap().visible, 1);
    changes.borrow_and_update();
}

#[tokio::test]
async fn failed_messages_are_retried_then_dead_lettered() {
    let (_dir, db) = fresh();
    db.queue("feedback").send(&message("m")).await.unwrap();
    for attempt in 1..=2u32 {
        let got = db.receive("feedback", 10, HOUR).await.unwrap();
        assert_eq!(got[0].receive_count, attempt);
        let dead = db
            .fail_message(
                "feedback",
                got[0].receipt,
                &format!("down {attempt}"),
                3,
                Duration::ZERO,
            )
            .await
            .unwrap();
        assert!(!dead);
    }
    let got = db.receive("feedback", 10, HOUR).await.unwrap();
    assert_eq!(got[0].receive_count, 3);
    let dead = db
        .fail_message(
            "feedback",
            got[0].receipt,
            "partner refused",
            3,
            Duration::ZERO,
        )
        .await
        .unwrap();
    assert!(dead);
    assert_eq!(depth(&db, "feedback").await, (0, 0));
    let letters = db.dead_letters().await.unwrap();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].kind, DeadLetterKind::Queue);
    assert_eq!(letters[0].source, "feedback");
    assert_eq!(letters[0].message_id, "m");
    assert_eq!(letters[0].body, message("m").body);
    assert_eq!(letters[0].reason, "partner refused");
    assert_eq!(letters[0].attempts, 3);

    let json = serde_json::to_value(&letters[0]).unwrap();
    assert_eq!(json["kind"], "queue");
    assert_eq!(json["messageId"], "m");
    assert!(json.get("failedAt").is_some());
}

#[tokio::test]
async fn a_retry_waits_out_its_delay() {
    let (_dir, db) = fresh();
    assert_eq!(db.next_visible_at().await.unwrap(), None);
    db.queue("delivery").send(&message("m")).await.unwrap();
    let got = db.receive("delivery", 10, Duration::ZERO).await.unwrap();
    let mut changes = db.queue_changes();
    let before = Utc::now();
    db.fail_message(
        "delivery",
        got[0].receipt,
        "busy",
        5,
        Duration::from_secs(60),
    )
    .await
    .unwrap();
    assert!(changes.has_changed().unwrap());
    changes.borrow_and_update();
    assert!(db.receive("delivery", 10, HOUR).await.unwrap().is_empty());
    let next = db.next_visible_at().await.unwrap().unwrap();
    assert!(next >= before + chrono::Duration::seconds(60));
    assert!(next <= Utc::now() + chrono::Duration::seconds(60));
    assert_eq!(depth(&db, "delivery").await, (0, 1));
}

#[tokio::test]
async fn a_restart_hands_back_messages_in_flight_but_not_delayed_ones() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = open(dir.path());
        let queue = db.queue("delivery");
        queue.send(&message("held")).await.unwrap();
        queue.send(&message("delayed")).await.unwrap();
        let got = db.receive("delivery", 10, HOUR).await.unwrap();
        db.fail_message("delivery", got[1].receipt, "later", 5, HOUR)
            .await
            .unwrap();
    }
    let db = open(dir.path());
    let got = db.receive("delivery", 10, HOUR).await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].message_id, "held");
    assert_eq!(got[0].receive_count, 2);
}

#[tokio::test]
async fn a_second_process_leaves_the_owners_messages_in_flight() {
    let dir = tempfile::tempdir().unwrap();
    // Not the first open: the claim must hold on an existing lock file too.
    drop(open(dir.path()));
    let owner = open(dir.path());
    owner.queue("delivery").send(&message("m")).await.unwrap();
    let got = owner.receive("delivery", 10, HOUR).await.unwrap();
    owner.settled().await.unwrap();
    // The operator's CLI opens the same directory while the bakery runs.
    let cli = open(dir.path());
    assert!(cli.receive("delivery", 10, HOUR).await.unwrap().is_empty());
    owner
        .delete_message("delivery", got[0].receipt)
        .await
        .unwrap();
    drop(cli);
    drop(owner);
    // Nothing of the ownership is left behind.
    let again = open(dir.path());
    assert_eq!(again.queue_depth("delivery").await.unwrap().in_flight, 0);
}

#[tokio::test]
async fn another_process_redriving_wakes_the_consumers() {
    let dir = tempfile::tempdir().unwrap();
    let bakery = open(dir.path());
    bakery.queue("delivery").send(&message("m")).await.unwrap();
    let got = bakery.receive("delivery", 1, HOUR).await.unwrap();
    assert!(
        bakery
            .fail_message("delivery", got[0].receipt, "gone", 1, Duration::ZERO)
            .await
            .unwrap()
    );
    let mut changes = bakery.queue_changes();
    let cli = open(dir.path());
    assert_eq!(cli.redrive_all().await.unwrap(), 1);
    // The bakery's writer notices the other connection's commit.
    tokio::time::timeout(Duration::from_secs(10), changes.changed())
        .await
        .expect("woken")
        .unwrap();
    let got = bakery.receive("delivery", 10, HOUR).await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].receive_count, 1, "a redrive starts the count over");
}

#[tokio::test]
async fn redrive_all_puts_back_both_kinds() {
    let (_dir, db) = fresh();
    db.store().place(&new_order()).await.unwrap();
    let record = db.read_stream("baker", 1).await.unwrap().remove(0);
    db.dead_letter_stream_record("baker", &record, "x", 2)
        .await
        .unwrap();
    for id in ["q1", "q2"] {
        db.queue("feedback").send(&message(id)).await.unwrap();
    }
    for got in db.receive("feedback", 10, HOUR).await.unwrap() {
        assert!(
            db.fail_message("feedback", got.receipt, "y", 1, Duration::ZERO)
                .await
                .unwrap()
        );
    }
    // A copy of q2 sent meanwhile is still queued: the redrive adds no twin.
    db.queue("feedback").send(&message("q2")).await.unwrap();
    assert_eq!(db.dead_letters().await.unwrap().len(), 3);

    assert_eq!(db.redrive_all().await.unwrap(), 3);
    assert!(db.dead_letters().await.unwrap().is_empty());
    assert_eq!(db.redrive_all().await.unwrap(), 0);
    let got = db.receive("feedback", 10, HOUR).await.unwrap();
    let mut ids: Vec<_> = got.iter().map(|m| m.message_id.as_str()).collect();
    ids.sort_unstable();
    assert_eq!(ids, ["q1", "q2"]);
    assert_eq!(db.read_stream("baker", 10).await.unwrap().len(), 1);
}

#[tokio::test]
async fn redriving_one_queue_letter() {
    let (_dir, db) = fresh();
    db.queue("delivery").send(&message("m")).await.unwrap();
    let got = db.receive("delivery", 1, HOUR).await.unwrap();
    db.fail_message("delivery", got[0].receipt, "no", 1, Duration::ZERO)
        .await
        .unwrap();
    let letter = db.dead_letters().await.unwrap().remove(0);
    assert!(!db.redrive(letter.id + 100).await.unwrap());
    assert!(db.redrive(letter.id).await.unwrap());
    let got = db.receive("delivery", 10, HOUR).await.unwrap();
    assert_eq!(got[0].message_id, "m");
    assert_eq!(got[0].body, message("m").body);
    assert_eq!(got[0].receive_count, 1);
}

#[tokio::test]
async fn sent_mail_is_remembered_by_key() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = open(dir.path());
        assert!(!db.mail_sent("order/1/baker").await.unwrap());
        db.record_mail("order/1/baker", "baker@example.com", "New order")
            .await
            .unwrap();
        db.record_mail("order/1/baker", "baker@example.com", "New order")
            .await
            .unwrap();
        assert!(db.mail_sent("order/1/baker").await.unwrap());
        assert!(!db.mail_sent("order/2/baker").await.unwrap());
    }
    assert!(open(dir.path()).mail_sent("order/1/baker").await.unwrap());
}
