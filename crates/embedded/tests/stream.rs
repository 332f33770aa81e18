//! The order stream: per-consumer checkpoints, retry counts, dead letters
//! and redrive addressed to one consumer.

mod common;

use common::*;
use domain::events::Event;
use domain::ports::OrderStore;
use embedded::DeadLetterKind;

async fn place_three(db: &embedded::Database) -> Vec<Event> {
    let store = db.store();
    let mut placed = Vec::new();
    for _ in 0..3 {
        let new = new_order();
        store.place(&new).await.unwrap();
        placed.push(new.event);
    }
    placed
}

#[tokio::test]
async fn each_consumer_reads_from_its_own_checkpoint() {
    let (_dir, db) = fresh();
    let placed = place_three(&db).await;
    let baker = db.read_stream("baker", 10).await.unwrap();
    assert_eq!(baker.len(), 3);
    assert!(baker.windows(2).all(|w| w[0].sequence < w[1].sequence));
    for (record, event) in baker.iter().zip(&placed) {
        assert_eq!(
            Event::from_json(&record.data).unwrap().event_id,
            event.event_id
        );
    }
    assert_eq!(db.read_stream("baker", 2).await.unwrap().len(), 2);

    db.checkpoint("baker", baker[1].sequence).await.unwrap();
    let rest = db.read_stream("baker", 10).await.unwrap();
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0].sequence, baker[2].sequence);
    assert_eq!(db.stream_lag("baker").await.unwrap(), 1);
    // Another consumer is not affected.
    assert_eq!(db.read_stream("fulfilled", 10).await.unwrap().len(), 3);
    assert_eq!(db.stream_lag("fulfilled").await.unwrap(), 3);

    // Never backwards.
    db.checkpoint("baker", baker[0].sequence).await.unwrap();
    assert_eq!(db.stream_lag("baker").await.unwrap(), 1);
    db.checkpoint("baker", baker[2].sequence).await.unwrap();
    assert!(db.read_stream("baker", 10).await.unwrap().is_empty());
    assert_eq!(db.stream_lag("baker").await.unwrap(), 0);
}

#[tokio::test]
async fn failure_counts_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let sequence = {
        let db = open(dir.path());
        place_three(&db).await;
        let sequence = db.read_stream("baker", 1).await.unwrap()[0].sequence;
        assert_eq!(
            db.record_stream_failure("baker", sequence, "smtp down")
                .await
                .unwrap(),
            1
        );
        assert_eq!(
            db.record_stream_failure("baker", sequence, "smtp down")
                .await
                .unwrap(),
            2
        );
        // Counted per consumer.
        assert_eq!(
            db.record_stream_failure("fulfilled", sequence, "x")
                .await
                .unwrap(),
            1
        );
        sequence
    };
    let db = open(dir.path());
    assert_eq!(
        db.record_stream_failure("baker", sequence, "again")
            .await
            .unwrap(),
        3
    );
    // Once past it, the count starts over (it was for a record now done).
    db.checkpoint("baker", sequence).await.unwrap();
    assert_eq!(
        db.record_stream_failure("baker", sequence, "odd")
            .await
            .unwrap(),
        1
    );
}

#[tokio::test]
async fn dead_lettering_a_record_moves_the_checkpoint_past_it() {
    let (_dir, db) = fresh();
    let placed = place_three(&db).await;
    let records = db.read_stream("baker", 10).await.unwrap();
    db.checkpoint("baker", records[0].sequence).await.unwrap();
    db.dead_letter_stream_record("baker", &records[1], "bad address", 3)
        .await
        .unwrap();
    let rest = db.read_stream("baker", 10).await.unwrap();
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0].sequence, records[2].sequence);

    let letters = db.dead_letters().await.unwrap();
    assert_eq!(letters.len(), 1);
    let letter = &letters[0];
    assert_eq!(letter.source, "baker");
    assert_eq!(letter.kind, DeadLetterKind::Stream);
    assert_eq!(letter.message_id, placed[1].event_id.to_string());
    assert_eq!(letter.reason, "bad address");
    assert_eq!(letter.attempts, 3);
    assert_eq!(letter.body.as_bytes(), records[1].data.as_slice());
}

#[tokio::test]
async fn a_redriven_record_goes_to_its_consumer_only() {
    let (_dir, db) = fresh();
    place_three(&db).await;
    let records = db.read_stream("baker", 10).await.unwrap();
    let last = records[2].sequence;
    db.dead_letter_stream_record("baker", &records[0], "oops", 5)
        .await
        .unwrap();
    db.checkpoint("baker", last).await.unwrap();
    db.checkpoint("fulfilled", last).await.unwrap();

    let mut changes = db.stream_changes();
    let id = db.dead_letters().await.unwrap()[0].id;
    assert!(db.redrive(id).await.unwrap());
    assert!(changes.has_changed().unwrap());
    changes.borrow_and_update();
    assert!(db.dead_letters().await.unwrap().is_empty());
    assert!(!db.redrive(id).await.unwrap(), "already redriven");

    let again = db.read_stream("baker", 10).await.unwrap();
    assert_eq!(again.len(), 1);
    assert!(again[0].sequence > last);
    assert_eq!(again[0].data, records[0].data);
    assert_eq!(again[0].partition_key, records[0].partition_key);
    assert_eq!(db.stream_lag("baker").await.unwrap(), 1);
    assert!(db.read_stream("fulfilled", 10).await.unwrap().is_empty());
    assert_eq!(db.stream_lag("fulfilled").await.unwrap(), 0);
    // A consumer that never read anything skips it too.
    assert_eq!(db.read_stream("newcomer", 10).await.unwrap().len(), 3);
}

#[tokio::test]
async fn appending_wakes_the_consumers() {
    let (_dir, db) = fresh();
    let mut changes = db.stream_changes();
    let queues = db.queue_changes();
    assert!(!changes.has_changed().unwrap());
    db.store().place(&new_order()).await.unwrap();
    // No waiting: the counter moves before `place` answers.
    assert!(changes.has_changed().unwrap());
    changes.borrow_and_update();
    // The queue pollers have nothing new: they sleep on.
    assert!(!queues.has_changed().unwrap());
    // A checkpoint gives no one anything to do.
    db.checkpoint("baker", 1).await.unwrap();
    assert!(!changes.has_changed().unwrap());
}

/// The file's pages, and how many of them are free, as a read-only
/// connection sees the committed database.
fn pages(dir: &std::path::Path) -> (i64, i64) {
    let conn = rusqlite::Connection::open_with_flags(
        dir.join(embedded::DATABASE_FILE),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let count = conn
        .query_row("PRAGMA page_count", [], |r| r.get(0))
        .unwrap();
    let free = conn
        .query_row("PRAGMA freelist_count", [], |r| r.get(0))
        .unwrap();
    (count, free)
}

#[tokio::test]
async fn trimming_deletes_only_what_every_consumer_finished_past_the_retention() {
    let (_dir, db) = fresh();
    place_three(&db).await;
    let records = db.read_stream("baker", 10).await.unwrap();
    let consumers = ["baker", "dispatch"];

    // A consumer that has finished nothing holds everything.
    db.checkpoint("baker", records[2].sequence).await.unwrap();
    assert_eq!(
        db.trim_stream(&consumers, std::time::Duration::ZERO)
            .await
            .unwrap(),
        0
    );

    // The slower consumer decides; the retention keeps recent records.
    db.checkpoint("dispatch", records[1].sequence)
        .await
        .unwrap();
    let an_hour = std::time::Duration::from_secs(3600);
    assert_eq!(db.trim_stream(&consumers, an_hour).await.unwrap(), 0);
    assert_eq!(
        db.trim_stream(&consumers, std::time::Duration::ZERO)
            .await
            .unwrap(),
        2
    );

    // What the slower one has not finished is still there for it; the
    // other has nothing left; sequence numbers go on, never reused.
    let left = db.read_stream("dispatch", 10).await.unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].sequence, records[2].sequence);
    assert!(db.read_stream("baker", 10).await.unwrap().is_empty());
    place_three(&db).await;
    let next = db.read_stream("baker", 10).await.unwrap();
    assert!(next[0].sequence > records[2].sequence);
    assert_eq!(db.stream_lag("dispatch").await.unwrap(), 4);
}

#[tokio::test]
async fn a_trimmed_stream_gives_its_pages_back_without_holding_up_writes() {
    let (dir, db) = fresh();
    let store = db.store();
    // More records than one trim batch, so the trim takes several turns
    // of the writer.
    for _ in 0..2_500 {
        store.place(&new_order()).await.unwrap();
    }
    let all = db.read_stream("baker", 10_000).await.unwrap();
    let last = all.last().unwrap().sequence;
    for consumer in ["baker", "dispatch"] {
        db.checkpoint(consumer, last).await.unwrap();
    }
    db.settled().await.unwrap();
    let (before, _) = pages(dir.path());

    // Orders keep being placed while the stream is trimmed.
    let placing = {
        let store = db.store();
        tokio::spawn(async move {
            for _ in 0..200 {
                store.place(&new_order()).await.unwrap();
            }
        })
    };
    let trimmed = db
        .trim_stream(&["baker", "dispatch"], std::time::Duration::ZERO)
        .await
        .unwrap();
    placing.await.unwrap();
    assert_eq!(trimmed, 2_500);
    db.settled().await.unwrap();
    let (after, free) = pages(dir.path());
    // The 2,500 events held about half the file (the orders the rest):
    // their pages are given back, none left on the free list.
    assert!(
        after * 3 < before * 2,
        "pages before {before}, after {after}"
    );
    assert_eq!(free, 0, "pages still on the free list");
    assert_eq!(db.read_stream("baker", 10_000).await.unwrap().len(), 200);
}
