//! The queues: SQS-like, one table for all of them.
//!
//! A message is visible when its `visible_at` has come. Receiving makes it
//! invisible for the visibility timeout and counts the receive; deleting
//! finishes it; failing it either makes it visible again after a delay or,
//! once it has been received `max_receives` times, moves it to the dead
//! letters. A message id is unique per queue among the messages still in
//! it, so a repeated send is dropped.
//!
//! Receipts name one receive of one message (the row id and the receive
//! count), like SQS receipt handles: a consumer that took too long and lost
//! the message to a later receive cannot delete or fail it any more.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, MutexGuard};

use chrono::{DateTime, Utc};
use domain::ports::{Queue, QueueError, QueueMessage, StoreError};
use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

use crate::Database;
use crate::dead_letters::{self, DeadLetterKind, NewDeadLetter};
use crate::error::OrStore;
use crate::time;

/// Bits of a receipt that hold the receive count; the row id is above.
const COUNT_BITS: u32 = 20;
const COUNT_MASK: i64 = (1 << COUNT_BITS) - 1;

fn receipt(id: i64, receive_count: i64) -> i64 {
    // Row ids stay far below 2^43, so the shift cannot overflow.
    (id << COUNT_BITS) | (receive_count & COUNT_MASK)
}

fn split_receipt(receipt: i64) -> (i64, i64) {
    (receipt >> COUNT_BITS, receipt & COUNT_MASK)
}

fn lock(claims: &Mutex<HashSet<i64>>) -> MutexGuard<'_, HashSet<i64>> {
    // A set of ids cannot be left inconsistent by a panic elsewhere.
    claims
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A message handed to a consumer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedMessage {
    /// Names this receive; pass it to delete or fail the message.
    pub receipt: i64,
    pub message_id: String,
    pub body: String,
    /// Receives so far, this one included.
    pub receive_count: u32,
    pub sent_at: DateTime<Utc>,
}

/// How many messages a queue holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct QueueDepth {
    /// Ready to be received.
    pub visible: u64,
    /// Received and not finished, or waiting out a retry delay.
    pub in_flight: u64,
}

/// [`Queue`] over the embedded database: sends to one named queue.
#[derive(Debug, Clone)]
pub struct SqliteQueue {
    db: Database,
    queue: String,
}

impl SqliteQueue {
    pub(crate) fn new(db: Database, queue: &str) -> SqliteQueue {
        SqliteQueue {
            db,
            queue: queue.to_owned(),
        }
    }

    /// The queue's name.
    pub fn name(&self) -> &str {
        &self.queue
    }
}

/// Puts a message on `queue` unless one with its id is still there;
/// returns whether it was added. Runs inside a writer job.
pub(crate) fn enqueue(
    conn: &Connection,
    queue: &str,
    message_id: &str,
    body: &str,
) -> Result<bool, StoreError> {
    let now = time::now();
    let added = conn
        .prepare_cached(
            "INSERT OR IGNORE INTO queue_messages (queue, message_id, body, sent_at, visible_at)
             VALUES (?1, ?2, ?3, ?4, ?4)",
        )
        .or_store()?
        .execute(params![queue, message_id, body, now])
        .or_store()?;
    Ok(added > 0)
}

/// Makes every message a previous process received but did not finish
/// visible now; returns how many. Runs on the write connection at open.
pub(crate) fn release_held(conn: &Connection) -> Result<usize, StoreError> {
    conn.execute(
        "UPDATE queue_messages SET visible_at = min(visible_at, ?1), held = 0 WHERE held = 1",
        [time::now()],
    )
    .or_store()
}

#[async_trait::async_trait]
impl Queue for SqliteQueue {
    async fn send(&self, message: &QueueMessage) -> Result<(), QueueError> {
        let queue = self.queue.clone();
        let message = message.clone();
        self.db
            .write(move |tx| {
                if enqueue(tx, &queue, &message.id, &message.body)? {
                    tx.wake_queues();
                }
                Ok(())
            })
            .await
            // The port has one error: whatever it was, try again later.
            .map_err(|error| QueueError::Unavailable(error.to_string()))
    }
}

impl Database {
    /// Up to `limit` visible messages of `queue`, oldest first. Each
    /// becomes invisible for `visibility` and its receive count goes up.
    ///
    /// The messages come back as soon as they are read; the receive itself
    /// (count and visibility) is committed meanwhile, and until it is, the
    /// message is claimed in memory so no other poller of this process
    /// takes it. A receive is a hint, not a promise: should the process
    /// stop before it is committed, the message is simply visible again at
    /// the next start, as it would be anyway (received messages a stopped
    /// process did not finish are made visible when the next one opens the
    /// database). What the bakery saves is a commit, an fsync, on the path
    /// of every delivery notification and every review.
    pub async fn receive(
        &self,
        queue: &str,
        limit: usize,
        visibility: std::time::Duration,
    ) -> Result<Vec<ReceivedMessage>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let queue = queue.to_owned();
        let claims = Arc::clone(&self.inner.claims);
        // The read and the claim happen under the claims' lock, which the
        // writer also takes to release a receive once it is committed: so
        // a read either sees that commit or finds the message still
        // claimed, never a stale "visible" of a message another poller has.
        let mine = self
            .read_now(move |conn| {
                let mut claims = lock(&claims);
                // Enough to find `limit` among those other pollers hold.
                let fetch = i64::try_from(limit.saturating_add(claims.len())).unwrap_or(i64::MAX);
                let mut statement = conn
                    .prepare_cached(
                        "SELECT id, message_id, body, receive_count, sent_at FROM queue_messages
                         WHERE queue = ?1 AND visible_at <= ?2
                         ORDER BY id LIMIT ?3",
                    )
                    .or_store()?;
                let rows = statement
                    .query_map(params![queue, time::now(), fetch], |row| {
                        Ok((
                            row.get::<_, i64>(0)?,
                            row.get::<_, String>(1)?,
                            row.get::<_, String>(2)?,
                            row.get::<_, i64>(3)?,
                            row.get::<_, i64>(4)?,
                        ))
                    })
                    .or_store()?;
                let mut mine = Vec::new();
                for row in rows {
                    let row = row.or_store()?;
                    if claims.insert(row.0) {
                        mine.push(row);
                        if mine.len() == limit {
                            break;
                        }
                    }
                }
                Ok(mine)
            })
            .await?;
        if mine.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<i64> = mine.iter().map(|(id, ..)| *id).collect();
        let messages = mine
            .into_iter()
            .map(|(id, message_id, body, stored_count, sent_at)| {
                let receive_count = stored_count + 1;
                Ok(ReceivedMessage {
                    receipt: receipt(id, receive_count),
                    message_id,
                    body,
                    receive_count: u32::try_from(receive_count).unwrap_or(u32::MAX),
                    sent_at: time::from_micros(sent_at)?,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>();
        self.commit_receive(ids, visibility);
        messages
    }

    /// Commits the receive of `ids` (count up, invisible for `visibility`)
    /// and then lets go of their claims.
    fn commit_receive(&self, ids: Vec<i64>, visibility: std::time::Duration) {
        // Only the set, not the database: the writer thread must never hold
        // the last handle to the database it belongs to.
        let claims = Arc::clone(&self.inner.claims);
        let job_ids = ids.clone();
        let unclaim = move |committed: &Result<(), StoreError>| {
            if let Err(error) = committed {
                // The messages stay visible and come again: at least once.
                tracing::warn!(%error, "cannot record a receive; the messages come again");
            }
            let mut claims = lock(&claims);
            for id in &ids {
                claims.remove(id);
            }
        };
        // Nobody waits for the reply; `unclaim` does what is left to do.
        let _ = self.inner.writer.submit_then(
            move |tx| {
                let now = time::now();
                let mut statement = tx
                    .prepare_cached(
                        "UPDATE queue_messages
                         SET receive_count = receive_count + 1, visible_at = ?2, held = 1
                         WHERE id = ?1",
                    )
                    .or_store()?;
                for id in job_ids {
                    statement
                        .execute(params![id, time::after(now, visibility)])
                        .or_store()?;
                }
                Ok(())
            },
            Some(Box::new(unclaim)),
        );
    }

    /// Deletes a received message: it is done. A stale receipt (the
    /// message was received again since) deletes nothing.
    pub async fn delete_message(&self, queue: &str, receipt: i64) -> Result<(), StoreError> {
        let queue = queue.to_owned();
        let (id, count) = split_receipt(receipt);
        self.write(move |tx| {
            tx.prepare_cached(
                "DELETE FROM queue_messages
                 WHERE id = ?1 AND queue = ?2 AND (receive_count & ?3) = ?4",
            )
            .or_store()?
            .execute(params![id, queue, COUNT_MASK, count])
            .or_store()?;
            Ok(())
        })
        .await
    }

    /// A message its consumer failed. Once it has been received
    /// `max_receives` times it moves to the dead letters (with `reason`) and
    /// this returns `Ok(true)`; before that it becomes visible again after
    /// `retry_after`, keeps `reason` as its last error, and this returns
    /// `Ok(false)`. A stale receipt changes nothing and returns `Ok(false)`.
    pub async fn fail_message(
        &self,
        queue: &str,
        receipt: i64,
        reason: &str,
        max_receives: u32,
        retry_after: std::time::Duration,
    ) -> Result<bool, StoreError> {
        let queue = queue.to_owned();
        let reason = reason.to_owned();
        let (id, count) = split_receipt(receipt);
        self.write(move |tx| {
            let message: Option<(String, String, i64)> = tx
                .prepare_cached(
                    "SELECT message_id, body, receive_count FROM queue_messages
                     WHERE id = ?1 AND queue = ?2 AND (receive_count & ?3) = ?4",
                )
                .or_store()?
                .query_row(params![id, queue, COUNT_MASK, count], |row| {
                    Ok((row.get(0)?, row.get(1)?, row.get(2)?))
                })
                .optional()
                .or_store()?;
            let Some((message_id, body, receive_count)) = message else {
                return Ok(false);
            };
            if receive_count >= i64::from(max_receives) {
                dead_letters::insert(
                    tx,
                    &NewDeadLetter {
                        source: &queue,
                        kind: DeadLetterKind::Queue,
                        message_id: &message_id,
                        partition_key: None,
                        data: body.as_bytes(),
                        reason: &reason,
                        attempts: u32::try_from(receive_count).unwrap_or(u32::MAX),
                    },
                )?;
                tx.prepare_cached("DELETE FROM queue_messages WHERE id = ?1")
                    .or_store()?
                    .execute([id])
                    .or_store()?;
                return Ok(true);
            }
            tx.prepare_cached(
                "UPDATE queue_messages SET visible_at = ?2, held = 0, last_error = ?3 WHERE id = ?1",
            )
            .or_store()?
            .execute(params![id, time::after(time::now(), retry_after), reason])
            .or_store()?;
            // A sleeping consumer must learn of the new wake-up time.
            tx.wake_queues();
            Ok(false)
        })
        .await
    }

    /// When the next invisible message of any queue becomes visible, so a
    /// consumer can sleep exactly until then; `None` if none is invisible.
    pub async fn next_visible_at(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        self.read_now(|conn| {
            let next: Option<i64> = conn
                .prepare_cached("SELECT min(visible_at) FROM queue_messages WHERE visible_at > ?1")
                .or_store()?
                .query_row([time::now()], |row| row.get(0))
                .or_store()?;
            next.map(time::from_micros).transpose()
        })
        .await
    }

    /// How many messages `queue` holds, visible and in flight.
    pub async fn queue_depth(&self, queue: &str) -> Result<QueueDepth, StoreError> {
        let queue = queue.to_owned();
        self.read(move |conn| {
            let (visible, in_flight): (i64, i64) = conn
                .prepare_cached(
                    "SELECT coalesce(sum(visible_at <= ?2), 0), coalesce(sum(visible_at > ?2), 0)
                     FROM queue_messages WHERE queue = ?1",
                )
                .or_store()?
                .query_row(params![queue, time::now()], |row| {
                    Ok((row.get(0)?, row.get(1)?))
                })
                .or_store()?;
            Ok(QueueDepth {
                visible: u64::try_from(visible).unwrap_or(0),
                in_flight: u64::try_from(in_flight).unwrap_or(0),
            })
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receipts_name_one_receive_of_one_message() {
        assert_eq!(split_receipt(receipt(7, 3)), (7, 3));
        assert_ne!(receipt(7, 3), receipt(7, 4));
        assert_ne!(receipt(7, 3), receipt(8, 3));
        assert_eq!(split_receipt(receipt(1 << 40, 1)), (1 << 40, 1));
    }
}
