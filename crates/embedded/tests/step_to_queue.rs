//! A status move and the queue message it leads to, committed together.

mod common;

use std::time::Duration;

use common::*;
use domain::ports::{AdvanceAndSend, Advanced, OrderStore, QueueMessage, StoreError};
use domain::{Order, Status};

const HOUR: Duration = Duration::from_secs(3600);

fn request(order: &Order) -> Result<QueueMessage, String> {
    Ok(QueueMessage {
        id: format!("delivery-{}", order.order_id),
        body: format!("{{\"status\":\"{}\"}}", order.status),
    })
}

fn unencodable(_order: &Order) -> Result<QueueMessage, String> {
    Err("cannot encode".into())
}

/// An order moved on to `fulfilled`, ready for dispatch.
async fn fulfilled_order(db: &embedded::Database) -> Order {
    let store = db.store();
    let new = new_order();
    store.place(&new).await.unwrap();
    match store
        .advance(&to(&new.order, Status::Fulfilled), None)
        .await
        .unwrap()
    {
        Advanced::Moved(order) => order,
        other => panic!("not moved: {other:?}"),
    }
}

#[tokio::test]
async fn the_move_and_its_message_are_one_commit() {
    let (_dir, db) = fresh();
    let order = fulfilled_order(&db).await;
    let step = db.step_to_queue("delivery");
    let mut changes = db.queue_changes();
    changes.borrow_and_update();
    let commits = db.commits();

    let moved = step
        .advance_and_send(&to(&order, Status::OutForDelivery), request)
        .await
        .unwrap();

    let Advanced::Moved(moved) = moved else {
        panic!("not moved: {moved:?}")
    };
    assert_eq!(moved.status, Status::OutForDelivery);
    assert_eq!(db.commits(), commits + 1, "one commit for both");
    assert!(changes.has_changed().unwrap(), "the queue's pollers wake");
    let received = db.receive("delivery", 10, HOUR).await.unwrap();
    assert_eq!(received.len(), 1);
    assert_eq!(
        received[0].message_id,
        format!("delivery-{}", order.order_id)
    );
    assert_eq!(received[0].body, "{\"status\":\"out_for_delivery\"}");
}

#[tokio::test]
async fn a_repeat_sends_again_but_a_queued_copy_is_not_doubled() {
    let (_dir, db) = fresh();
    let order = fulfilled_order(&db).await;
    let step = db.step_to_queue("delivery");
    let transition = to(&order, Status::OutForDelivery);
    step.advance_and_send(&transition, request).await.unwrap();

    let again = step.advance_and_send(&transition, request).await.unwrap();
    assert!(matches!(again, Advanced::AlreadyDone(_)), "{again:?}");
    assert_eq!(depth(&db, "delivery").await, (1, 0));

    // Once the first copy is handled and gone, a repeat (the retry of a
    // step whose effects downstream are deduplicated) sends it again.
    let received = db.receive("delivery", 10, HOUR).await.unwrap();
    db.delete_message("delivery", received[0].receipt)
        .await
        .unwrap();
    step.advance_and_send(&transition, request).await.unwrap();
    assert_eq!(depth(&db, "delivery").await, (1, 0));
}

#[tokio::test]
async fn no_message_for_an_order_out_of_order_or_missing() {
    let (_dir, db) = fresh();
    let store = db.store();
    let new = new_order();
    store.place(&new).await.unwrap();
    let step = db.step_to_queue("delivery");

    let early = step
        .advance_and_send(&to(&new.order, Status::OutForDelivery), request)
        .await
        .unwrap();
    assert!(matches!(early, Advanced::OutOfOrder(_)), "{early:?}");
    let mut ghost = new_order().order;
    ghost.status = Status::Fulfilled;
    let missing = step
        .advance_and_send(&to(&ghost, Status::OutForDelivery), request)
        .await
        .unwrap();
    assert_eq!(missing, Advanced::NotFound);
    assert_eq!(depth(&db, "delivery").await, (0, 0));
}

#[tokio::test]
async fn a_message_that_cannot_be_built_undoes_the_move() {
    let (_dir, db) = fresh();
    let order = fulfilled_order(&db).await;
    let step = db.step_to_queue("delivery");

    let failed = step
        .advance_and_send(&to(&order, Status::OutForDelivery), unencodable)
        .await;

    assert!(matches!(failed, Err(StoreError::Failed(_))), "{failed:?}");
    let stored = db.store().get(order.order_id).await.unwrap().unwrap();
    assert_eq!(stored.status, Status::Fulfilled, "nothing half done");
    assert_eq!(depth(&db, "delivery").await, (0, 0));
}
