//! Redrive: a dead letter goes back where it came from, a queue message
//! onto its queue with a fresh receive count, a stream record onto the
//! stream again, addressed to the one consumer that failed it (the others
//! already handled it). Apart from `dead_letters.rs` because it needs the
//! queues and the stream, which themselves write dead letters.

use domain::ports::StoreError;
use rusqlite::{OptionalExtension, params};

use crate::Database;
use crate::dead_letters::DeadLetterKind;
use crate::error::{OrStore, corrupt};
use crate::writer::WriteTx;
use crate::{queues, stream, time};

/// How many redriven letters the operator's history keeps, as many as it
/// shows ([`domain::ports::OperationsStatus::RECENT_ERRORS`]).
const REDRIVEN_KEPT: i64 = domain::ports::OperationsStatus::RECENT_ERRORS as i64;

/// Puts one letter back and removes it; `false` if there is no such id.
fn redrive_one(tx: &mut WriteTx<'_>, id: i64) -> Result<bool, StoreError> {
    type Row = (String, String, String, Option<String>, Vec<u8>);
    let letter: Option<Row> = tx
        .prepare_cached(
            "SELECT source, kind, message_id, partition_key, data FROM dead_letters WHERE id = ?1",
        )
        .or_store()?
        .query_row([id], |row| {
            Ok((
                row.get(0)?,
                row.get(1)?,
                row.get(2)?,
                row.get(3)?,
                row.get(4)?,
            ))
        })
        .optional()
        .or_store()?;
    let Some((source, kind, message_id, partition_key, data)) = letter else {
        return Ok(false);
    };
    match DeadLetterKind::parse(&kind)? {
        DeadLetterKind::Stream => {
            let partition_key = partition_key
                .ok_or_else(|| corrupt("a stream dead letter without partition key"))?;
            stream::append(tx, &partition_key, &message_id, &data, Some(&source))?;
        }
        DeadLetterKind::Queue => {
            let body = String::from_utf8(data).map_err(corrupt)?;
            // A message with this id still on the queue already carries it.
            queues::enqueue(tx, &source, &message_id, &body)?;
        }
    }
    // The failure stays in the operator's history (without the data),
    // tagged redriven; the newest REDRIVEN_KEPT are kept.
    tx.prepare_cached(
        "INSERT OR REPLACE INTO redriven_letters
             (id, source, message_id, reason, attempts, failed_at, redriven_at)
         SELECT id, source, message_id, reason, attempts, failed_at, ?2
         FROM dead_letters WHERE id = ?1",
    )
    .or_store()?
    .execute(params![id, time::now()])
    .or_store()?;
    tx.prepare_cached(
        "DELETE FROM redriven_letters WHERE id NOT IN
             (SELECT id FROM redriven_letters ORDER BY redriven_at DESC, id DESC LIMIT ?1)",
    )
    .or_store()?
    .execute([REDRIVEN_KEPT])
    .or_store()?;
    tx.prepare_cached("DELETE FROM dead_letters WHERE id = ?1")
        .or_store()?
        .execute([id])
        .or_store()?;
    tx.wake_all();
    Ok(true)
}

impl Database {
    /// Redrives one dead letter: a queue's goes back onto its queue
    /// (receive count 0), a stream consumer's is appended to the stream
    /// again for that consumer only. `Ok(false)` if there is no such id.
    pub async fn redrive(&self, dead_letter_id: i64) -> Result<bool, StoreError> {
        self.write(move |tx| redrive_one(tx, dead_letter_id)).await
    }

    /// Redrives every dead letter, in one transaction; returns how many.
    pub async fn redrive_all(&self) -> Result<usize, StoreError> {
        self.write(|tx| {
            let ids = tx
                .prepare_cached("SELECT id FROM dead_letters ORDER BY id")
                .or_store()?
                .query_map([], |row| row.get::<_, i64>(0))
                .or_store()?
                .collect::<Result<Vec<i64>, _>>()
                .or_store()?;
            let mut count = 0;
            for id in ids {
                if redrive_one(tx, id)? {
                    count += 1;
                }
            }
            Ok(count)
        })
        .await
    }
}
