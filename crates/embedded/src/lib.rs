//! Embedded adapters for one machine: the orders, the order stream, the
//! delivery and feedback queues, the dead letters and the sent-mail record,
//! all in one SQLite file (`bakery.sqlite3`, WAL mode); and the mail
//! outbox, in a second one.
//!
//! One file means one transaction can cover what the cloud spreads over
//! several services: an order and the event that announces it are written
//! together, so the local bakery never has an order nobody heard of, and
//! a status move and the queue message it leads to are written together
//! ([`StepToQueue`]).
//!
//! The stream behaves like a one-shard Kinesis stream read by several
//! consumers, each with its own checkpoint; the queues behave like SQS
//! (visibility timeout, receive count, redrive to a dead-letter table).
//! Consumers do not poll: [`Database::stream_changes`] and
//! [`Database::queue_changes`] move after every commit that gave them
//! something to do.
//!
//! # Layout
//!
//! - `lib.rs`: [`Database`] (opening, the handles, reads on the pool) and
//!   [`Options`].
//! - `schema.rs`: the tables and the connection settings (WAL,
//!   `synchronous=FULL`, foreign keys), `PRAGMA user_version`.
//! - `writer.rs`: the one writer thread and its group commit; every write
//!   in this crate is a job run there.
//! - `readers.rs`: the pool of read-only connections reads run on.
//! - `recent.rs`: the orders committed lately, so that lookups by id skip
//!   SQLite.
//! - `checkpointer.rs`: the thread that copies the WAL back into the
//!   database file, so the writer never does.
//! - `owner.rs`: which process owns the data directory (and may hand back
//!   a crashed predecessor's in-flight messages).
//! - `store.rs`: [`SqliteStore`], the [`domain::ports::OrderStore`];
//!   [`StepToQueue`], the [`domain::ports::AdvanceAndSend`]; and the order
//!   reads for pages and tests.
//! - `stream.rs`: the order stream: reading, checkpoints, retry counts,
//!   dead-lettering a record.
//! - `queues.rs`: [`SqliteQueue`], the [`domain::ports::Queue`], and
//!   receiving, deleting and failing messages.
//! - `dead_letters.rs`: the dead letters of both sources.
//! - `redrive.rs`: putting a dead letter back on its queue or the stream.
//! - `mail.rs`: which emails were sent over SMTP, by key.
//! - `outbox.rs`: the mail outbox, the emails themselves when there is no
//!   SMTP server, in a SQLite file of its own (`outbox.sqlite3`).
//! - `error.rs`: SQLite and filesystem errors as [`StoreError`]s.
//! - `time.rs`: times as stored (microseconds since the epoch).
//! - `watchers.rs`: reads waiting for an order to change (long-polling).
//!
//! The writer's batching is tested in `writer.rs`; everything else is
//! tested through the public API against real files in `tests/`.
//! `examples/place_throughput.rs` measures durable orders per second.

mod checkpointer;
mod dead_letters;
mod error;
mod mail;
mod operations;
mod outbox;
mod owner;
mod queues;
mod readers;
mod recent;
mod redrive;
mod schema;
mod store;
mod stream;
mod time;
mod watchers;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use domain::Order;
use domain::ports::StoreError;
use rusqlite::Connection;
use tokio::sync::watch;

pub use dead_letters::{DeadLetter, DeadLetterKind, list_read_only as dead_letters_read_only};
pub use outbox::{MailOutbox, NewMail, OUTBOX_FILE, OutboxReader, SentMail};
pub use queues::{QueueDepth, ReceivedMessage, SqliteQueue};
pub use store::{SqliteStore, StepToQueue};
pub use stream::StreamRecord;

use crate::checkpointer::Checkpointer;
use crate::error::io_error;
use crate::readers::Readers;
use crate::recent::RecentOrders;
use crate::watchers::Watchers;
use crate::writer::{Signals, Then, WriteTx, Writer};

/// The database file inside the data directory.
pub const DATABASE_FILE: &str = "bakery.sqlite3";

/// Tuning for [`Database::open`].
#[derive(Debug, Clone)]
pub struct Options {
    /// How long a connection waits for a lock held by another process (the
    /// operator's CLI) before the call answers `Unavailable`.
    pub busy_timeout: Duration,
    /// Group commit: at most this many jobs share one transaction (and one
    /// fsync).
    pub max_batch: usize,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            busy_timeout: Duration::from_secs(5),
            max_batch: 512,
        }
    }
}

/// The bakery's data directory, open. Cheap to clone; the last clone to go
/// stops the writer thread and closes the file.
#[derive(Clone)]
pub struct Database {
    inner: Arc<Inner>,
}

struct Inner {
    // Fields drop in order: readers and the checkpoint thread close first
    // so that the writer, closing last, can checkpoint the WAL; the
    // ownership lock goes after both.
    readers: Readers,
    // Held for its thread, which stops when this drops.
    _checkpointer: Checkpointer,
    writer: Writer,
    signals: Arc<Signals>,
    /// Queue messages this process has received and whose receive is not
    /// committed yet (see `queues.rs`): no second poller may take them.
    claims: Arc<std::sync::Mutex<std::collections::HashSet<i64>>>,
    /// Reads waiting for an order to change.
    watchers: Watchers,
    /// The orders committed lately; the writer thread keeps it.
    recent: Arc<RecentOrders>,
    path: PathBuf,
    /// The ownership lock, if this process got it; it lasts as long as
    /// the connection. (A Mutex only because a Connection is not Sync.)
    owner: std::sync::Mutex<Option<Connection>>,
}

impl Database {
    /// Creates `dir` if needed and opens `dir/bakery.sqlite3` (WAL,
    /// `synchronous=FULL`, foreign keys on), creating the schema.
    ///
    /// If this process is the first to open the directory, queue messages
    /// a previous process had received but not finished become visible at
    /// once. A second process opening it meanwhile (the operator's CLI)
    /// leaves them alone.
    pub fn open(dir: &Path, options: Options) -> Result<Database, StoreError> {
        std::fs::create_dir_all(dir)
            .map_err(|error| io_error(&format!("cannot create {}", dir.display()), error))?;
        let path = dir.join(DATABASE_FILE);
        let conn = schema::open_writer(&path, options.busy_timeout)?;
        let owner = owner::claim(dir)?;
        if owner.is_some() {
            let released = queues::release_held(&conn)?;
            if released > 0 {
                tracing::info!(
                    released,
                    "messages received before a restart are visible again"
                );
            }
        } else {
            tracing::info!(
                dir = %dir.display(),
                "another process owns the data directory; leaving its in-flight messages alone"
            );
        }
        let recent = Arc::new(RecentOrders::new(owner.is_some()));
        let signals = Arc::new(Signals::new());
        let writer = Writer::start(
            conn,
            options.max_batch,
            Arc::clone(&signals),
            Arc::clone(&recent),
        )?;
        let checkpointer =
            Checkpointer::start(path.clone(), options.busy_timeout, checkpointer::INTERVAL)?;
        Ok(Database {
            inner: Arc::new(Inner {
                readers: Readers::new(path.clone(), options.busy_timeout),
                _checkpointer: checkpointer,
                writer,
                signals,
                claims: Arc::default(),
                watchers: Watchers::new(),
                recent,
                path,
                owner: std::sync::Mutex::new(owner),
            }),
        })
    }

    /// Whether this process owns the data directory: the first to open it
    /// (see `owner.rs`). Only the owner may run the bakery's steps on it.
    pub fn owns_directory(&self) -> bool {
        self.inner
            .owner
            .lock()
            .map(|owner| owner.is_some())
            .unwrap_or_else(|poisoned| poisoned.into_inner().is_some())
    }

    /// The order store over this database.
    pub fn store(&self) -> SqliteStore {
        SqliteStore::new(self.clone())
    }

    /// Status moves that send to `queue` in the same commit.
    pub fn step_to_queue(&self, queue: &str) -> StepToQueue {
        StepToQueue::new(self.clone(), queue)
    }

    /// A handle to send to `queue` (e.g. `"delivery"`, `"feedback"`).
    pub fn queue(&self, queue: &str) -> SqliteQueue {
        SqliteQueue::new(self.clone(), queue)
    }

    /// A counter bumped after every commit that appended to the stream
    /// (also when another process did, noticed within about half a
    /// second). Stream consumers `changed().await` on it instead of polling.
    pub fn stream_changes(&self) -> watch::Receiver<u64> {
        self.inner.signals.stream.subscribe()
    }

    /// A counter bumped after every commit that sent to a queue or made a
    /// message visible again (also when another process did). Queue
    /// consumers `changed().await` on it instead of polling.
    pub fn queue_changes(&self) -> watch::Receiver<u64> {
        self.inner.signals.queues.subscribe()
    }

    /// Ends every wait for an order to change (they answer with the order
    /// as it is) and lets no new one start: for a stopping server, whose
    /// long-polling reads should not hold up its shutdown.
    pub fn stop_watching(&self) {
        self.inner.watchers.close();
    }

    pub(crate) fn watchers(&self) -> &Watchers {
        &self.inner.watchers
    }

    pub(crate) fn recent(&self) -> &RecentOrders {
        &self.inner.recent
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Runs a job on the writer thread; it answers once committed.
    pub(crate) async fn write<T, F>(&self, job: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut WriteTx<'_>) -> Result<T, StoreError> + Send + 'static,
    {
        self.inner.writer.write(job).await
    }

    /// Like [`Database::write`], for a job that may change an order:
    /// `changed` picks the changed order out of the job's result, and the
    /// writer thread keeps it among the recent orders once committed,
    /// before the caller hears back.
    pub(crate) async fn write_order<T, F>(
        &self,
        job: F,
        changed: fn(&T) -> Option<&Order>,
    ) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut WriteTx<'_>) -> Result<T, StoreError> + Send + 'static,
    {
        let recent = Arc::clone(&self.inner.recent);
        let then: Then<T> = Box::new(move |answer| {
            if let Some(order) = answer.as_ref().ok().and_then(changed) {
                recent.committed(order);
            }
        });
        self.inner.writer.submit_then(job, Some(then)).wait().await
    }

    /// Runs a read on a pooled read-only connection, off the async threads.
    pub(crate) async fn read<T, F>(&self, read: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let _turn = self.inner.readers.permit().await;
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || inner.readers.with(read))
            .await
            .map_err(|error| StoreError::Failed(format!("a read did not finish: {error}")))?
    }

    /// Runs a short read (a lookup by key, a bounded range) on a pooled
    /// read-only connection right here, on the calling async thread.
    ///
    /// Handing a read to the blocking pool costs two thread wake-ups, more
    /// than the lookup itself once its pages are cached: a profile of the
    /// bakery under lifecycle load had a sixth of its CPU in the blocking
    /// pool's hand-offs. In WAL mode a reader does not wait for the writer,
    /// so these reads take microseconds. Anything that scans (the pages'
    /// listings, counts) goes through [`Database::read`] instead.
    pub(crate) async fn read_now<T, F>(&self, read: F) -> Result<T, StoreError>
    where
        F: FnOnce(&Connection) -> Result<T, StoreError>,
    {
        let _turn = self.inner.readers.permit().await;
        self.inner.readers.with(read)
    }

    /// Returns once every write submitted before this call (receives
    /// included, whose commits nobody waits for) is committed or failed.
    pub async fn settled(&self) -> Result<(), StoreError> {
        self.write(|_| Ok(())).await
    }

    /// Write transactions committed since open. With group commit this
    /// grows slower than the number of writes; benchmarks compare the two.
    pub fn commits(&self) -> u64 {
        self.inner.writer.commits()
    }
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Database")
            .field("path", &self.inner.path)
            .finish_non_exhaustive()
    }
}
