//! The order stream: a Kinesis-like log with one shard, read by several
//! consumers, each with its own checkpoint.
//!
//! Sequence numbers are never handed out twice, so a sequence number means
//! the same record forever. Records every consumer has finished are
//! trimmed once they are older than the retention ([`Database::trim_stream`],
//! like a Kinesis stream's retention period): dead letters keep their own
//! copy, so nothing a redrive needs goes with them. A consumer reads after its checkpoint and moves the checkpoint
//! past what it finished; a record that keeps failing is retried (the count
//! is kept here, so it survives restarts) and finally dead-lettered, which
//! moves the checkpoint past it in the same transaction. A redriven record
//! is appended again with `only_for` set, so only the consumer that failed
//! it sees it a second time.

use chrono::{DateTime, Utc};
use domain::events::Event;
use domain::ports::StoreError;
use rusqlite::{Connection, OptionalExtension, params};

use crate::Database;
use crate::dead_letters::{self, DeadLetterKind, NewDeadLetter};
use crate::error::OrStore;
use crate::time;

/// One record of the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamRecord {
    pub sequence: i64,
    pub partition_key: String,
    /// The event's JSON ([`Event::to_json`]).
    pub data: Vec<u8>,
    pub appended_at: DateTime<Utc>,
}

/// Appends a record; returns its sequence number. Runs inside a writer job.
pub(crate) fn append(
    conn: &Connection,
    partition_key: &str,
    event_id: &str,
    data: &[u8],
    only_for: Option<&str>,
) -> Result<i64, StoreError> {
    conn.prepare_cached(
        "INSERT INTO stream (partition_key, event_id, data, only_for, appended_at)
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )
    .or_store()?
    .execute(params![
        partition_key,
        event_id,
        data,
        only_for,
        time::now()
    ])
    .or_store()?;
    Ok(conn.last_insert_rowid())
}

pub(crate) fn append_event(conn: &Connection, event: &Event) -> Result<i64, StoreError> {
    append(
        conn,
        &event.partition_key(),
        &event.event_id.to_string(),
        &event.to_json(),
        None,
    )
}

/// Moves `consumer`'s checkpoint to `sequence` unless it is already past
/// it, and forgets the retry counts it no longer needs.
fn move_checkpoint(conn: &Connection, consumer: &str, sequence: i64) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO stream_checkpoints (consumer, sequence) VALUES (?1, ?2)
         ON CONFLICT (consumer) DO UPDATE SET sequence = max(sequence, excluded.sequence)",
    )
    .or_store()?
    .execute(params![consumer, sequence])
    .or_store()?;
    conn.prepare_cached("DELETE FROM stream_failures WHERE consumer = ?1 AND sequence <= ?2")
        .or_store()?
        .execute(params![consumer, sequence])
        .or_store()?;
    Ok(())
}

/// At most this many records go per writer job, so a trim never holds
/// the writer, and the requests waiting for it, for long.
const TRIM_BATCH: i64 = 1_000;

/// Pages given back to the file system per writer job after a trim.
const VACUUM_PAGES: i64 = 2_048;

/// Deletes up to [`TRIM_BATCH`] records that every one of `consumers` has
/// finished and that were appended before `cutoff`. A consumer without a
/// checkpoint has finished nothing.
fn trim_batch(conn: &Connection, consumers: &[String], cutoff: i64) -> Result<i64, StoreError> {
    let mut finished_by_all = i64::MAX;
    for consumer in consumers {
        let checkpoint: Option<i64> = conn
            .prepare_cached("SELECT sequence FROM stream_checkpoints WHERE consumer = ?1")
            .or_store()?
            .query_row([consumer], |row| row.get(0))
            .optional()
            .or_store()?;
        finished_by_all = finished_by_all.min(checkpoint.unwrap_or(0));
    }
    if consumers.is_empty() {
        return Ok(0);
    }
    let deleted = conn
        .prepare_cached(
            "DELETE FROM stream WHERE sequence IN (
                 SELECT sequence FROM stream
                  WHERE sequence <= ?1 AND appended_at < ?2
                  ORDER BY sequence LIMIT ?3)",
        )
        .or_store()?
        .execute(params![finished_by_all, cutoff, TRIM_BATCH])
        .or_store()?;
    Ok(i64::try_from(deleted).unwrap_or(i64::MAX))
}

/// The records `consumer` has yet to finish: after its checkpoint, and
/// either for everybody or redriven for it.
const PENDING: &str = "FROM stream
     WHERE sequence > coalesce((SELECT sequence FROM stream_checkpoints WHERE consumer = ?1), 0)
       AND (only_for IS NULL OR only_for = ?1)";

impl Database {
    /// Records after this consumer's checkpoint, oldest first, at most
    /// `limit`. Records redriven for another consumer are skipped.
    pub async fn read_stream(
        &self,
        consumer: &str,
        limit: usize,
    ) -> Result<Vec<StreamRecord>, StoreError> {
        self.read_stream_after(consumer, 0, limit).await
    }

    /// Like [`Database::read_stream`], but only records after `after` as
    /// well: a consumer that moved its checkpoint without waiting for the
    /// commit reads on from where it really is.
    pub async fn read_stream_after(
        &self,
        consumer: &str,
        after: i64,
        limit: usize,
    ) -> Result<Vec<StreamRecord>, StoreError> {
        let consumer = consumer.to_owned();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read_now(move |conn| {
            let mut statement = conn
                .prepare_cached(&format!(
                    "SELECT sequence, partition_key, data, appended_at {PENDING}
                       AND sequence > ?3
                     ORDER BY sequence LIMIT ?2"
                ))
                .or_store()?;
            let rows = statement
                .query_map(params![consumer, limit, after], |row| {
                    Ok((
                        row.get::<_, i64>(0)?,
                        row.get::<_, String>(1)?,
                        row.get::<_, Vec<u8>>(2)?,
                        row.get::<_, i64>(3)?,
                    ))
                })
                .or_store()?;
            let mut records = Vec::new();
            for row in rows {
                let (sequence, partition_key, data, appended_at) = row.or_store()?;
                records.push(StreamRecord {
                    sequence,
                    partition_key,
                    data,
                    appended_at: time::from_micros(appended_at)?,
                });
            }
            Ok(records)
        })
        .await
    }

    /// Moves the consumer's checkpoint to `sequence`: records up to and
    /// including it are done. Never moves backwards.
    pub async fn checkpoint(&self, consumer: &str, sequence: i64) -> Result<(), StoreError> {
        let consumer = consumer.to_owned();
        self.write(move |tx| move_checkpoint(tx, &consumer, sequence))
            .await
    }

    /// Counts a failed attempt at (consumer, sequence) and returns the
    /// attempts so far. Persisted, so a restart does not reset the count.
    pub async fn record_stream_failure(
        &self,
        consumer: &str,
        sequence: i64,
        reason: &str,
    ) -> Result<u32, StoreError> {
        let consumer = consumer.to_owned();
        let reason = reason.to_owned();
        self.write(move |tx| {
            let attempts: i64 = tx
                .prepare_cached(
                    "INSERT INTO stream_failures (consumer, sequence, attempts, last_error, failed_at)
                     VALUES (?1, ?2, 1, ?3, ?4)
                     ON CONFLICT (consumer, sequence) DO UPDATE
                     SET attempts = attempts + 1, last_error = excluded.last_error,
                         failed_at = excluded.failed_at
                     RETURNING attempts",
                )
                .or_store()?
                .query_row(params![consumer, sequence, reason, time::now()], |row| {
                    row.get(0)
                })
                .or_store()?;
            Ok(u32::try_from(attempts).unwrap_or(u32::MAX))
        })
        .await
    }

    /// Dead-letters `record` for `consumer` and moves the consumer's
    /// checkpoint past it, in one transaction: the record is either still
    /// pending or in the dead letters, never lost and never both.
    pub async fn dead_letter_stream_record(
        &self,
        consumer: &str,
        record: &StreamRecord,
        reason: &str,
        attempts: u32,
    ) -> Result<(), StoreError> {
        let consumer = consumer.to_owned();
        let record = record.clone();
        let reason = reason.to_owned();
        self.write(move |tx| {
            // The event id names the record across redrives (which give it
            // a new sequence number).
            let event_id: Option<String> = tx
                .prepare_cached("SELECT event_id FROM stream WHERE sequence = ?1")
                .or_store()?
                .query_row([record.sequence], |row| row.get(0))
                .optional()
                .or_store()?;
            dead_letters::insert(
                tx,
                &NewDeadLetter {
                    source: &consumer,
                    kind: DeadLetterKind::Stream,
                    message_id: &event_id.unwrap_or_else(|| record.sequence.to_string()),
                    partition_key: Some(&record.partition_key),
                    data: &record.data,
                    reason: &reason,
                    attempts,
                },
            )?;
            move_checkpoint(tx, &consumer, record.sequence)
        })
        .await
    }

    /// Deletes the stream records that every one of `consumers` has
    /// finished and that are older than `retention`, a batch per writer
    /// job, then gives the freed pages back to the file system a few at a
    /// time (on databases made with incremental vacuum; older ones reuse
    /// the pages for new records instead). Returns how many went.
    pub async fn trim_stream(
        &self,
        consumers: &[&str],
        retention: std::time::Duration,
    ) -> Result<u64, StoreError> {
        let consumers: Vec<String> = consumers.iter().map(|c| (*c).to_owned()).collect();
        let cutoff = time::now().saturating_sub(time::duration(retention));
        let mut trimmed = 0u64;
        loop {
            let consumers = consumers.clone();
            let deleted = self
                .write(move |tx| trim_batch(tx, &consumers, cutoff))
                .await?;
            trimmed += u64::try_from(deleted).unwrap_or(0);
            if deleted < TRIM_BATCH {
                break;
            }
        }
        if trimmed > 0 {
            loop {
                let freed = self
                    .write(|tx| {
                        let free = |tx: &Connection| -> Result<i64, StoreError> {
                            tx.query_row("PRAGMA freelist_count", [], |row| row.get(0))
                                .or_store()
                        };
                        let before = free(tx)?;
                        // One page per step: the statement is stepped to its end.
                        let mut vacuum = tx
                            .prepare(&format!("PRAGMA incremental_vacuum({VACUUM_PAGES})"))
                            .or_store()?;
                        let mut steps = vacuum.raw_query();
                        while steps.next().or_store()?.is_some() {}
                        Ok(before - free(tx)?)
                    })
                    .await?;
                if freed < VACUUM_PAGES {
                    break;
                }
            }
        }
        Ok(trimmed)
    }

    /// How many records the consumer has yet to finish (its lag).
    pub async fn stream_lag(&self, consumer: &str) -> Result<u64, StoreError> {
        let consumer = consumer.to_owned();
        self.read(move |conn| {
            let lag: i64 = conn
                .prepare_cached(&format!("SELECT count(*) {PENDING}"))
                .or_store()?
                .query_row([consumer], |row| row.get(0))
                .or_store()?;
            Ok(u64::try_from(lag).unwrap_or(0))
        })
        .await
    }
}
