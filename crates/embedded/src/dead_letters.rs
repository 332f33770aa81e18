//! The dead letters of both sources, in one table: stream records a
//! consumer gave up on and queue messages received too often.
//!
//! The queues and the stream put letters here (`insert`); putting them
//! back is in `redrive.rs`, which needs both.

use chrono::{DateTime, Utc};
use domain::ports::StoreError;
use rusqlite::{Connection, params};
use serde::Serialize;

use std::path::Path;

use crate::Database;
use crate::error::{OrStore, corrupt};
use crate::{schema, time};

/// Where a dead letter came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeadLetterKind {
    /// A stream record; the source is the consumer that failed it.
    Stream,
    /// A queue message; the source is the queue.
    Queue,
}

impl DeadLetterKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DeadLetterKind::Stream => "stream",
            DeadLetterKind::Queue => "queue",
        }
    }

    pub(crate) fn parse(text: &str) -> Result<DeadLetterKind, StoreError> {
        match text {
            "stream" => Ok(DeadLetterKind::Stream),
            "queue" => Ok(DeadLetterKind::Queue),
            other => Err(corrupt(format!("dead letter kind {other:?}"))),
        }
    }
}

/// Work that failed for good, for the operator to look at and redrive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetter {
    pub id: i64,
    /// The consumer (stream) or the queue (queue).
    pub source: String,
    pub kind: DeadLetterKind,
    /// The event id (stream) or the message id (queue).
    pub message_id: String,
    pub body: String,
    pub reason: String,
    pub attempts: u32,
    pub failed_at: DateTime<Utc>,
}

pub(crate) struct NewDeadLetter<'a> {
    pub source: &'a str,
    pub kind: DeadLetterKind,
    pub message_id: &'a str,
    pub partition_key: Option<&'a str>,
    pub data: &'a [u8],
    pub reason: &'a str,
    pub attempts: u32,
}

/// Runs inside a writer job, beside whatever removes the letter from its
/// source.
pub(crate) fn insert(conn: &Connection, letter: &NewDeadLetter<'_>) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO dead_letters
             (source, kind, message_id, partition_key, data, reason, attempts, failed_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )
    .or_store()?
    .execute(params![
        letter.source,
        letter.kind.as_str(),
        letter.message_id,
        letter.partition_key,
        letter.data,
        letter.reason,
        letter.attempts,
        time::now(),
    ])
    .or_store()?;
    Ok(())
}

impl Database {
    /// Every dead letter, oldest first.
    pub async fn dead_letters(&self) -> Result<Vec<DeadLetter>, StoreError> {
        self.read(all).await
    }
}

/// Every dead letter in the data directory `dir`, oldest first, read
/// without writing anything there (see [`schema::open_read_only`]): it
/// works beside a running bakery and on a read-only copy.
pub fn list_read_only(dir: &Path) -> Result<Vec<DeadLetter>, StoreError> {
    all(&schema::open_read_only(&dir.join(crate::DATABASE_FILE))?)
}

fn all(conn: &Connection) -> Result<Vec<DeadLetter>, StoreError> {
    let mut statement = conn
        .prepare_cached(
            "SELECT id, source, kind, message_id, data, reason, attempts, failed_at
             FROM dead_letters ORDER BY id",
        )
        .or_store()?;
    let rows = statement
        .query_map([], |row| {
            Ok((
                row.get::<_, i64>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, String>(2)?,
                row.get::<_, String>(3)?,
                row.get::<_, Vec<u8>>(4)?,
                row.get::<_, String>(5)?,
                row.get::<_, i64>(6)?,
                row.get::<_, i64>(7)?,
            ))
        })
        .or_store()?;
    let mut letters = Vec::new();
    for row in rows {
        let (id, source, kind, message_id, data, reason, attempts, failed_at) = row.or_store()?;
        letters.push(DeadLetter {
            id,
            source,
            kind: DeadLetterKind::parse(&kind)?,
            message_id,
            // Events and queue bodies are JSON, so this is lossless
            // in practice; redrive uses the stored bytes anyway.
            body: String::from_utf8_lossy(&data).into_owned(),
            reason,
            attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
            failed_at: time::from_micros(failed_at)?,
        });
    }
    Ok(letters)
}
