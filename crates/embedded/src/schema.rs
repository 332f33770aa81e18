//! The tables, and how connections to them are set up.
//!
//! Every table lives in one file so that an order, its event and a queue
//! message can be written in one transaction. Times are stored as
//! microseconds since the Unix epoch (UTC): compact, exact and ordered.
//! `PRAGMA user_version` records the schema version; a later version adds
//! its migrations after the `CREATE TABLE IF NOT EXISTS` below.

use std::path::Path;
use std::time::Duration;

use domain::ports::StoreError;
use rusqlite::{Connection, OpenFlags};

use crate::error::OrStore;

/// The version this code writes; a database of a later version is refused
/// rather than misread.
pub(crate) const SCHEMA_VERSION: i64 = 1;

/// The page size of a new database file, in bytes.
const PAGE_SIZE: i64 = 2048;

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS orders (
    order_id            TEXT PRIMARY KEY,
    status              TEXT NOT NULL,
    -- The hash is left out of the order's JSON on purpose, so it lives here.
    customer_token_hash TEXT NOT NULL,
    created_at          INTEGER NOT NULL,
    body                TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS orders_by_status ON orders (status, created_at);

CREATE TABLE IF NOT EXISTS idempotency_keys (
    key         TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    order_id    TEXT NOT NULL REFERENCES orders (order_id),
    created_at  INTEGER NOT NULL
);
-- Keys older than the idempotency window are deleted a few at a time as
-- new keys arrive; this index finds them.
CREATE INDEX IF NOT EXISTS idempotency_keys_by_age ON idempotency_keys (created_at);

-- AUTOINCREMENT: a sequence number is never handed out twice, so
-- checkpoints stay meaningful.
CREATE TABLE IF NOT EXISTS stream (
    sequence      INTEGER PRIMARY KEY AUTOINCREMENT,
    partition_key TEXT NOT NULL,
    event_id      TEXT NOT NULL,
    data          BLOB NOT NULL,
    -- Set on redriven records: only this consumer reads them again.
    only_for      TEXT,
    appended_at   INTEGER NOT NULL
);

CREATE TABLE IF NOT EXISTS stream_checkpoints (
    consumer TEXT PRIMARY KEY,
    sequence INTEGER NOT NULL
);

CREATE TABLE IF NOT EXISTS stream_failures (
    consumer   TEXT NOT NULL,
    sequence   INTEGER NOT NULL,
    attempts   INTEGER NOT NULL,
    last_error TEXT NOT NULL,
    failed_at  INTEGER NOT NULL,
    PRIMARY KEY (consumer, sequence)
);

CREATE TABLE IF NOT EXISTS queue_messages (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    queue         TEXT NOT NULL,
    message_id    TEXT NOT NULL,
    body          TEXT NOT NULL,
    receive_count INTEGER NOT NULL DEFAULT 0,
    sent_at       INTEGER NOT NULL,
    visible_at    INTEGER NOT NULL,
    -- 1 from a receive until the message is deleted or failed: what a
    -- restart hands back at once.
    held          INTEGER NOT NULL DEFAULT 0,
    last_error    TEXT,
    UNIQUE (queue, message_id)
);
-- Receiving walks one queue oldest first (the index ends in the rowid).
CREATE INDEX IF NOT EXISTS queue_messages_by_queue ON queue_messages (queue);
CREATE INDEX IF NOT EXISTS queue_messages_by_visibility ON queue_messages (visible_at);

CREATE TABLE IF NOT EXISTS dead_letters (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    source        TEXT NOT NULL,
    kind          TEXT NOT NULL CHECK (kind IN ('stream', 'queue')),
    message_id    TEXT NOT NULL,
    -- Stream letters only: what a redrive appends again.
    partition_key TEXT,
    data          BLOB NOT NULL,
    reason        TEXT NOT NULL,
    attempts      INTEGER NOT NULL,
    failed_at     INTEGER NOT NULL
);

-- Dead letters a redrive put back, for the operator's recent errors: what
-- failed, why and when, not the data. Only the newest few are kept
-- (`redrive.rs`). Added without a new schema version: older code ignores it.
CREATE TABLE IF NOT EXISTS redriven_letters (
    id          INTEGER PRIMARY KEY,
    source      TEXT NOT NULL,
    message_id  TEXT NOT NULL,
    reason      TEXT NOT NULL,
    attempts    INTEGER NOT NULL,
    failed_at   INTEGER NOT NULL,
    redriven_at INTEGER NOT NULL
);

CREATE TABLE IF NOT EXISTS sent_mail (
    key       TEXT PRIMARY KEY,
    recipient TEXT NOT NULL,
    subject   TEXT NOT NULL,
    sent_at   INTEGER NOT NULL
);
"#;

/// Opens the connection the writer thread owns and brings the schema up to
/// date. The first connection decides WAL mode for the file, so this runs
/// before any reader opens it.
pub(crate) fn open_writer(path: &Path, busy_timeout: Duration) -> Result<Connection, StoreError> {
    let conn = open_durable(path, busy_timeout)?;
    migrate(&conn, SCHEMA, SCHEMA_VERSION)?;
    Ok(conn)
}

/// A connection for the one thread that writes a file (the database or the
/// mail outbox): WAL mode, every commit on disk before it returns, and no
/// checkpoints of its own (a [`crate::checkpointer::Checkpointer`] does
/// them).
pub(crate) fn open_durable(path: &Path, busy_timeout: Duration) -> Result<Connection, StoreError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .or_store()?;
    conn.busy_timeout(busy_timeout).or_store()?;
    // Only takes effect on a new file. Each commit writes every page it
    // changed to the WAL, and most change one order (under 1 KiB) on a page
    // of its own: 2 KiB pages write half the bytes of the default 4 KiB and
    // still hold a finished order without overflow.
    conn.pragma_update(None, "page_size", PAGE_SIZE)
        .or_store()?;
    // Also only on a new file: pages freed by trimming the stream can be
    // given back to the file system a few at a time
    // (`Database::trim_stream`), instead of only being reused.
    conn.pragma_update(None, "auto_vacuum", "INCREMENTAL")
        .or_store()?;
    let mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))
        .or_store()?;
    if !mode.eq_ignore_ascii_case("wal") {
        // Without WAL, readers would block the writer and the other way round.
        return Err(StoreError::Unavailable(format!(
            "{} cannot use write-ahead logging (journal mode {mode})",
            path.display()
        )));
    }
    // FULL: a commit is on disk before the writer answers, so `Ok` from
    // `place` means the order survives a power cut.
    conn.pragma_update(None, "synchronous", "FULL").or_store()?;
    conn.pragma_update(None, "foreign_keys", "ON").or_store()?;
    conn.pragma_update(None, "temp_store", "MEMORY")
        .or_store()?;
    // The checkpoint thread copies the WAL back (see `checkpointer.rs`).
    conn.pragma_update(None, "wal_autocheckpoint", 0)
        .or_store()?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

/// A read-only connection for the reader pool.
pub(crate) fn open_reader(path: &Path, busy_timeout: Duration) -> Result<Connection, StoreError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .or_store()?;
    conn.busy_timeout(busy_timeout).or_store()?;
    conn.set_prepared_statement_cache_capacity(32);
    Ok(conn)
}

/// A connection that reads `path` without writing anything there: no lock
/// taken, no migration run, so it works beside a running bakery and on a
/// read-only copy.
///
/// A file with no write-ahead log beside it was closed cleanly and nobody
/// has it open: it is read as an immutable file, since even a read-only
/// connection would otherwise leave a log and a shared-memory file behind.
/// With a log (a bakery is running), the connection shares the files that
/// are already there.
pub(crate) fn open_read_only(path: &Path) -> Result<Connection, StoreError> {
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    if Path::new(&wal).exists() {
        return open_reader(path, Duration::from_secs(5));
    }
    // An SQLite URI: `%`, `?` and `#` in the path are escaped.
    let escaped = path
        .to_string_lossy()
        .replace('%', "%25")
        .replace('?', "%3f")
        .replace('#', "%23");
    Connection::open_with_flags(
        format!("file:{escaped}?immutable=1"),
        OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_URI
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .or_store()
}

/// Brings a file's tables up to `version_now` (`schema` is idempotent), or
/// refuses a file of a later version rather than misread it.
pub(crate) fn migrate(conn: &Connection, schema: &str, version_now: i64) -> Result<(), StoreError> {
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .or_store()?;
    if version > version_now {
        return Err(StoreError::Failed(format!(
            "the database has schema version {version}, newer than this program's {version_now}"
        )));
    }
    // One transaction: a crash half way leaves the old schema, not half of
    // the new one.
    conn.execute_batch(&format!(
        "BEGIN IMMEDIATE; {schema} PRAGMA user_version = {version_now}; COMMIT;"
    ))
    .map_err(|error| {
        let _ = conn.execute_batch("ROLLBACK");
        crate::error::store_error(error)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_database_gets_small_pages_and_an_old_one_keeps_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let page_size = |conn: &Connection| -> i64 {
            conn.pragma_query_value(None, "page_size", |row| row.get(0))
                .unwrap()
        };
        let fresh = dir.path().join("fresh.sqlite3");
        assert_eq!(
            page_size(&open_writer(&fresh, Duration::from_secs(1)).unwrap()),
            PAGE_SIZE
        );

        // A file made with the default page size stays readable as it is.
        let old = dir.path().join("old.sqlite3");
        Connection::open(&old)
            .unwrap()
            .execute_batch("PRAGMA journal_mode = WAL; CREATE TABLE t (x);")
            .unwrap();
        let conn = open_writer(&old, Duration::from_secs(1)).unwrap();
        assert_eq!(page_size(&conn), 4096);
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |row| row.get(0))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
    }
}
