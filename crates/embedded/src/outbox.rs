//! The mail outbox: every email the local bakery sent while it has no SMTP
//! server, in a SQLite file of its own ([`OUTBOX_FILE`]).
//!
//! Each email is one row: its idempotency key (unique, so sending is
//! idempotent: a key that is there was sent), whom it went to, its subject
//! and the RFC 5322 message exactly as a mail server would have received
//! it. [`MailOutbox`] writes groups of emails, one commit each, durable
//! before it returns; [`OutboxReader`] reads them beside a running bakery
//! (`bakery outbox list`, `show`, `export`).
//!
//! Why a database rather than a file per email: creating a file costs an
//! inode, a directory entry and a data block, and at full load the four
//! emails of each order were the largest part of the disk's work
//! (`docs/benchmark.md`). Appending rows to a write-ahead log is one
//! sequential write and one fsync per group. Why a file of its own rather
//! than a table in `bakery.sqlite3`: the outbox has its own writer thread
//! (in the `outbound` crate), and its commits neither wait for the
//! orders' nor delay them.

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use domain::ports::StoreError;
use rusqlite::{Connection, OptionalExtension, params};

use crate::checkpointer::Checkpointer;
use crate::error::OrStore;
use crate::schema;
use crate::time;

/// The outbox file inside the data directory.
pub const OUTBOX_FILE: &str = "outbox.sqlite3";

const OUTBOX_SCHEMA_VERSION: i64 = 1;

/// How often the outbox's WAL is copied back. Nobody reads the outbox on
/// a request's path, so it can wait longer than the database's: at full
/// load every 100 ms made 2,322 / 2,431 lifecycles/s, every second
/// 2,758 / 2,732 (alternating 10 s runs), since an email's index page,
/// changed many times a second, is copied once.
const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(1);

const OUTBOX_SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS mail (
    -- The order the emails were written in.
    id        INTEGER PRIMARY KEY,
    key       TEXT NOT NULL UNIQUE,
    recipient TEXT NOT NULL,
    subject   TEXT NOT NULL,
    sent_at   INTEGER NOT NULL,
    -- RFC 5322, as a mail server would have received it.
    message   BLOB NOT NULL
);
"#;

/// One email to store.
#[derive(Debug, Clone, Copy)]
pub struct NewMail<'a> {
    pub key: &'a str,
    pub recipient: &'a str,
    pub subject: &'a str,
    pub message: &'a [u8],
}

/// The outbox, open for writing by one thread.
pub struct MailOutbox {
    // Dropped first, so that the writer's connection, closing last,
    // checkpoints what is left.
    _checkpointer: Checkpointer,
    conn: Connection,
    path: PathBuf,
    opened: Option<FileIdentity>,
}

impl MailOutbox {
    /// Opens (or creates) the outbox at `path`, and starts the thread that
    /// copies its write-ahead log back.
    pub fn open(path: &Path) -> Result<MailOutbox, StoreError> {
        let busy_timeout = Duration::from_secs(5);
        let conn = schema::open_durable(path, busy_timeout)?;
        schema::migrate(&conn, OUTBOX_SCHEMA, OUTBOX_SCHEMA_VERSION)?;
        let checkpointer =
            Checkpointer::start(path.to_path_buf(), busy_timeout, CHECKPOINT_INTERVAL)?;
        Ok(MailOutbox {
            _checkpointer: checkpointer,
            conn,
            path: path.to_path_buf(),
            opened: FileIdentity::of(path),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the file at [`MailOutbox::path`] is still the one open. A
    /// file removed or replaced since would swallow every email written
    /// to it: the caller opens the outbox again instead.
    pub fn is_current(&self) -> bool {
        self.opened.is_some() && FileIdentity::of(&self.path) == self.opened
    }

    /// Stores `mails` in one transaction, on disk when this returns. For
    /// each: `true` if it was stored now, `false` if its key was there
    /// already (sent before, or earlier in the same group). On an error
    /// none of them is stored.
    pub fn store(&mut self, mails: &[NewMail<'_>]) -> Result<Vec<bool>, StoreError> {
        let sent_at = time::now();
        let transaction = self.conn.transaction().or_store()?;
        let mut stored = Vec::with_capacity(mails.len());
        {
            let mut insert = transaction
                .prepare_cached(
                    "INSERT INTO mail (key, recipient, subject, sent_at, message)
                     VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (key) DO NOTHING",
                )
                .or_store()?;
            for mail in mails {
                let inserted = insert
                    .execute(params![
                        mail.key,
                        mail.recipient,
                        mail.subject,
                        sent_at,
                        mail.message
                    ])
                    .or_store()?;
                stored.push(inserted == 1);
            }
        }
        // Dropping an uncommitted transaction rolls it back.
        transaction.commit().or_store()?;
        Ok(stored)
    }
}

/// Which file a path names (device and inode), to notice it was replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileIdentity(u64, u64);

impl FileIdentity {
    #[cfg(unix)]
    fn of(path: &Path) -> Option<FileIdentity> {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(path).ok()?;
        Some(FileIdentity(meta.dev(), meta.ino()))
    }

    #[cfg(not(unix))]
    fn of(path: &Path) -> Option<FileIdentity> {
        path.exists().then_some(FileIdentity(0, 0))
    }
}

/// An email as stored, without its message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentMail {
    pub key: String,
    pub recipient: String,
    pub subject: String,
    pub sent_at: DateTime<Utc>,
}

/// Reads the outbox without writing anything there (see
/// `schema::open_read_only`): beside a running bakery, or on a read-only
/// copy. An outbox that does not exist yet reads as empty.
pub struct OutboxReader {
    conn: Option<Connection>,
}

impl OutboxReader {
    pub fn open(path: &Path) -> Result<OutboxReader, StoreError> {
        if !path.exists() {
            return Ok(OutboxReader { conn: None });
        }
        Ok(OutboxReader {
            conn: Some(schema::open_read_only(path)?),
        })
    }

    /// Every email, oldest first.
    pub fn list(&self) -> Result<Vec<SentMail>, StoreError> {
        let Some(conn) = &self.conn else {
            return Ok(Vec::new());
        };
        let mut statement = conn
            .prepare("SELECT key, recipient, subject, sent_at FROM mail ORDER BY id")
            .or_store()?;
        let rows = statement
            .query_map([], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, String>(2)?,
                    row.get::<_, i64>(3)?,
                ))
            })
            .or_store()?;
        rows.map(|row| {
            let (key, recipient, subject, sent_at) = row.or_store()?;
            Ok(SentMail {
                key,
                recipient,
                subject,
                sent_at: time::from_micros(sent_at)?,
            })
        })
        .collect()
    }

    /// The RFC 5322 message sent under `key`, if there is one.
    pub fn message(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let Some(conn) = &self.conn else {
            return Ok(None);
        };
        conn.query_row("SELECT message FROM mail WHERE key = ?1", [key], |row| {
            row.get(0)
        })
        .optional()
        .or_store()
    }
}
