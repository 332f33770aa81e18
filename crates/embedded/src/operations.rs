//! The web pages' ports over the database: orders by status for the cake
//! maker, and the pipeline's health and dead-letter redrive for the
//! operator ([`OrderQueries`] and [`Operations`]).
//!
//! Everything here reads what the stream, queue and dead-letter code
//! already keeps; the one thing kept for the operator alone is the failure
//! of each redriven dead letter (`redriven_letters`, written by a redrive),
//! so the recent errors do not empty when the dead letters do.

use async_trait::async_trait;
use domain::Order;
use domain::Status;
use domain::ports::{
    ConsumerLag, DeadLetterView, OperationsStatus, OrderQueries, QueueDepth, RecentError,
    StoreError,
};
use rusqlite::Connection;

use crate::Database;
use crate::error::OrStore;
use crate::time;

/// The bakery's stream consumers and queues, always listed (with zero lag
/// or depth before their first use). Others found in the database are
/// listed after them.
const CONSUMERS: [&str; 2] = ["notify-baker", "dispatch"];
const QUEUES: [&str; 2] = ["delivery", "feedback"];

#[async_trait]
impl OrderQueries for Database {
    async fn orders_with_status(
        &self,
        status: Status,
        limit: usize,
    ) -> Result<Vec<Order>, StoreError> {
        // The inherent method of the same name does the work.
        Database::orders_with_status(self, status, limit).await
    }
}

#[async_trait]
impl domain::ports::Operations for Database {
    async fn status(&self) -> Result<OperationsStatus, StoreError> {
        let (consumer_names, queue_names, mut recent_errors) =
            self.read(names_and_failures).await?;
        let mut consumers = Vec::with_capacity(consumer_names.len());
        for name in consumer_names {
            let lag = self.stream_lag(&name).await?;
            consumers.push(ConsumerLag {
                name,
                lag: Some(lag),
            });
        }
        let mut queues = Vec::with_capacity(queue_names.len());
        for name in queue_names {
            let depth = self.queue_depth(&name).await?;
            queues.push(QueueDepth {
                name,
                visible: depth.visible,
                in_flight: depth.in_flight,
            });
        }
        let dead_letters: Vec<DeadLetterView> = self
            .dead_letters()
            .await?
            .into_iter()
            .map(|letter| DeadLetterView {
                order_id: order_id_of(&letter.body),
                id: letter.id.to_string(),
                source: letter.source,
                reason: letter.reason,
                attempts: letter.attempts,
                failed_at: letter.failed_at,
                message_id: letter.message_id,
            })
            .collect();
        recent_errors.extend(dead_letters.iter().map(|letter| RecentError {
            source: letter.source.clone(),
            reason: letter.reason.clone(),
            at: Some(letter.failed_at),
            dead: true,
            redriven_at: None,
        }));
        // Newest first; failures without a time (retrying queue messages)
        // are happening now, so they go first.
        recent_errors.sort_by(|a, b| match (a.at, b.at) {
            (None, None) => std::cmp::Ordering::Equal,
            (None, Some(_)) => std::cmp::Ordering::Less,
            (Some(_), None) => std::cmp::Ordering::Greater,
            (Some(a), Some(b)) => b.cmp(&a),
        });
        recent_errors.truncate(OperationsStatus::RECENT_ERRORS);
        Ok(OperationsStatus {
            consumers,
            queues,
            dead_letters,
            recent_errors,
        })
    }

    async fn redrive(&self, id: String) -> Result<bool, StoreError> {
        match id.parse::<i64>() {
            Ok(id) => Database::redrive(self, id).await,
            Err(_) => Ok(false),
        }
    }
}

/// The `orderId` inside an event or a queue message, if there is one.
fn order_id_of(body: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(body).ok()?;
    value.get("orderId")?.as_str().map(str::to_owned)
}

type NamesAndFailures = (Vec<String>, Vec<String>, Vec<RecentError>);

/// Consumers and queues (the bakery's own first, then any others in use),
/// the failures still being retried (stream records a consumer failed and
/// queue messages waiting to be received again) and the dead letters
/// since redriven.
fn names_and_failures(conn: &Connection) -> Result<NamesAndFailures, StoreError> {
    let strings = |sql: &str| -> Result<Vec<String>, StoreError> {
        conn.prepare_cached(sql)
            .or_store()?
            .query_map([], |row| row.get::<_, String>(0))
            .or_store()?
            .collect::<Result<Vec<_>, _>>()
            .or_store()
    };
    let with_known = |known: &[&str], found: Vec<String>| {
        let mut names: Vec<String> = known.iter().map(|s| s.to_string()).collect();
        for name in found {
            if !names.contains(&name) {
                names.push(name);
            }
        }
        names
    };
    let consumers = with_known(
        &CONSUMERS,
        strings("SELECT consumer FROM stream_checkpoints ORDER BY consumer")?,
    );
    let queues = with_known(
        &QUEUES,
        strings("SELECT DISTINCT queue FROM queue_messages ORDER BY queue")?,
    );

    let limit = i64::try_from(OperationsStatus::RECENT_ERRORS).unwrap_or(50);
    let mut failures = Vec::new();
    let mut statement = conn
        .prepare_cached(
            "SELECT consumer, attempts, last_error, failed_at FROM stream_failures
             ORDER BY failed_at DESC LIMIT ?1",
        )
        .or_store()?;
    let rows = statement
        .query_map([limit], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, i64>(1)?,
                row.get::<_, String>(2)?,
                row.get::<_, i64>(3)?,
            ))
        })
        .or_store()?;
    for row in rows {
        let (consumer, attempts, reason, failed_at) = row.or_store()?;
        failures.push(RecentError {
            source: consumer,
            reason: format!("{reason} (attempt {attempts}, retrying)"),
            at: Some(time::from_micros(failed_at)?),
            dead: false,
            redriven_at: None,
        });
    }
    let mut statement = conn
        .prepare_cached(
            "SELECT queue, receive_count, last_error FROM queue_messages
             WHERE last_error IS NOT NULL ORDER BY id DESC LIMIT ?1",
        )
        .or_store()?;
    let rows = statement
        .query_map([limit], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, i64>(1)?,
                row.get::<_, String>(2)?,
            ))
        })
        .or_store()?;
    for row in rows {
        let (queue, receives, reason) = row.or_store()?;
        failures.push(RecentError {
            source: queue,
            reason: format!("{reason} (received {receives} times, retrying)"),
            at: None,
            dead: false,
            redriven_at: None,
        });
    }
    // Dead letters since redriven: their failure is history, not gone.
    let mut statement = conn
        .prepare_cached(
            "SELECT source, reason, failed_at, redriven_at FROM redriven_letters
             ORDER BY failed_at DESC LIMIT ?1",
        )
        .or_store()?;
    let rows = statement
        .query_map([limit], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, i64>(2)?,
                row.get::<_, i64>(3)?,
            ))
        })
        .or_store()?;
    for row in rows {
        let (source, reason, failed_at, redriven_at) = row.or_store()?;
        failures.push(RecentError {
            source,
            reason,
            at: Some(time::from_micros(failed_at)?),
            dead: false,
            redriven_at: Some(time::from_micros(redriven_at)?),
        });
    }
    Ok((consumers, queues, failures))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_ids_are_read_from_events_and_messages() {
        assert_eq!(
            order_id_of(r#"{"orderId":"0190-abc","x":1}"#).as_deref(),
            Some("0190-abc")
        );
        assert_eq!(order_id_of("not json"), None);
        assert_eq!(order_id_of(r#"{"orderId":5}"#), None);
    }

    #[tokio::test]
    async fn status_shows_lag_depth_and_dead_letters_and_redrive_clears_them() {
        use domain::ports::{Operations, Queue, QueueMessage};
        use std::time::Duration;

        let dir = tempfile::tempdir().unwrap();
        let db = Database::open(dir.path(), crate::Options::default()).unwrap();
        let empty = Operations::status(&db).await.unwrap();
        let names: Vec<&str> = empty.consumers.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["notify-baker", "dispatch"]);
        let names: Vec<&str> = empty.queues.iter().map(|q| q.name.as_str()).collect();
        assert_eq!(names, ["delivery", "feedback"]);
        assert!(empty.dead_letters.is_empty() && empty.recent_errors.is_empty());

        let queue = db.queue("delivery");
        for id in ["m-1", "m-2"] {
            queue
                .send(&QueueMessage {
                    id: id.into(),
                    body: format!(r#"{{"orderId":"order-{id}"}}"#),
                })
                .await
                .unwrap();
        }
        let got = db
            .receive("delivery", 1, Duration::from_secs(3600))
            .await
            .unwrap();
        assert!(
            db.fail_message(
                "delivery",
                got[0].receipt,
                "partner unavailable: 500",
                1,
                Duration::ZERO
            )
            .await
            .unwrap()
        );
        let got = db
            .receive("delivery", 1, Duration::from_secs(3600))
            .await
            .unwrap();
        db.fail_message(
            "delivery",
            got[0].receipt,
            "timed out",
            5,
            Duration::from_secs(3600),
        )
        .await
        .unwrap();

        let status = Operations::status(&db).await.unwrap();
        let delivery = &status.queues[0];
        assert_eq!((delivery.visible, delivery.in_flight), (0, 1));
        assert_eq!(status.dead_letters.len(), 1);
        let letter = &status.dead_letters[0];
        assert_eq!(letter.source, "delivery");
        assert_eq!(letter.message_id, "m-1");
        assert_eq!(letter.order_id.as_deref(), Some("order-m-1"));
        assert!(letter.reason.contains("500"), "{letter:?}");
        assert_eq!(status.recent_errors.len(), 2);
        assert!(!status.recent_errors[0].dead, "retrying work comes first");
        assert!(status.recent_errors[0].reason.contains("timed out"));
        assert!(status.recent_errors[1].dead);

        assert!(!Operations::redrive(&db, "nope".into()).await.unwrap());
        assert!(!Operations::redrive(&db, "999".into()).await.unwrap());
        assert!(Operations::redrive(&db, letter.id.clone()).await.unwrap());
        let after = Operations::status(&db).await.unwrap();
        assert!(after.dead_letters.is_empty());
        assert_eq!(after.queues[0].visible, 1, "the redriven message is back");
        // Its failure stays in the history, tagged redriven.
        let redriven: Vec<&RecentError> = after
            .recent_errors
            .iter()
            .filter(|e| e.redriven_at.is_some())
            .collect();
        assert_eq!(redriven.len(), 1, "{:?}", after.recent_errors);
        assert_eq!(redriven[0].source, "delivery");
        assert!(redriven[0].reason.contains("500"));
        assert_eq!(redriven[0].at, Some(letter.failed_at));
        assert!(!redriven[0].dead);
    }

    #[tokio::test]
    async fn orders_with_status_goes_through_the_port() {
        use domain::ports::{NewOrder, OrderStore};
        let dir = tempfile::tempdir().unwrap();
        let db = Database::open(dir.path(), crate::Options::default()).unwrap();
        let order = domain::memory::placed_order();
        let event = domain::events::Event::new(
            domain::events::EventType::OrderPlaced,
            &order,
            chrono::Utc::now(),
        );
        db.store()
            .place(&NewOrder {
                order: order.clone(),
                idempotency: None,
                event,
            })
            .await
            .unwrap();
        let queries: &dyn OrderQueries = &db;
        let placed = queries
            .orders_with_status(Status::Placed, 10)
            .await
            .unwrap();
        assert_eq!(placed.len(), 1);
        assert_eq!(placed[0].order_id, order.order_id);
        assert!(
            queries
                .orders_with_status(Status::Fulfilled, 10)
                .await
                .unwrap()
                .is_empty()
        );
    }
}
