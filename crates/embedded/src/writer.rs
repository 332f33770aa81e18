//! The one writer: a thread that owns the write connection and commits
//! jobs in groups.
//!
//! SQLite allows one writer at a time and, with `synchronous=FULL`, every
//! commit costs an fsync. Sending every write to one thread removes the
//! contention (no `SQLITE_BUSY` between our own writers) and lets that
//! thread pay one fsync for many jobs: it takes everything pending (up to
//! `max_batch`), runs each job in its own savepoint inside one
//! `BEGIN IMMEDIATE` transaction and commits once. A job that fails rolls
//! back only its savepoint; a failed commit fails every job of the batch.
//! Nobody hears back before the commit is durable.
//!
//! After a commit it wakes the consumers that have something new: the
//! stream's when a job appended to the stream, the queues' when a job sent
//! to a queue ([`Signals`]), so a new order does not wake every queue
//! poller. When idle, the thread also watches `PRAGMA data_version`, which
//! moves when another process (the operator's `bakery dlq redrive`)
//! commits, and wakes everybody then.

use std::collections::{HashSet, VecDeque};
use std::ops::Deref;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use domain::ports::StoreError;
use domain::{Order, OrderId};
use rusqlite::Connection;
use tokio::sync::{oneshot, watch};

use crate::error::{OrStore, io_error};
use crate::recent::RecentOrders;

/// How often an idle writer looks for commits of other processes.
const POLL_OTHERS: Duration = Duration::from_millis(500);

/// The counters consumers wait on; each moves after a commit that gave
/// its consumers something new.
#[derive(Debug)]
pub(crate) struct Signals {
    /// Something was appended to the stream.
    pub(crate) stream: watch::Sender<u64>,
    /// Something was sent to a queue or became visible on one.
    pub(crate) queues: watch::Sender<u64>,
}

impl Signals {
    pub(crate) fn new() -> Signals {
        Signals {
            stream: watch::channel(0).0,
            queues: watch::channel(0).0,
        }
    }

    fn bump(&self, wake: Wake) {
        let bump = |count: &mut u64| *count = count.wrapping_add(1);
        if wake.stream {
            self.stream.send_modify(bump);
        }
        if wake.queues {
            self.queues.send_modify(bump);
        }
    }
}

/// Which consumers a job (or a batch) must wake once committed.
#[derive(Debug, Default, Clone, Copy)]
struct Wake {
    stream: bool,
    queues: bool,
}

impl Wake {
    const ALL: Wake = Wake {
        stream: true,
        queues: true,
    };

    fn any(self) -> bool {
        self.stream || self.queues
    }

    fn and(self, other: Wake) -> Wake {
        Wake {
            stream: self.stream || other.stream,
            queues: self.queues || other.queues,
        }
    }
}

/// What a job sees: the write connection, inside the batch's transaction
/// and the job's savepoint.
pub(crate) struct WriteTx<'c> {
    conn: &'c Connection,
    wake: Wake,
    recent: &'c RecentOrders,
    /// Orders written by this transaction's jobs so far.
    written: &'c mut HashSet<OrderId>,
}

impl WriteTx<'_> {
    /// The order as this transaction sees it, without reading the table,
    /// when that is sure: it is among the recent orders (which hold every
    /// committed change, this thread being the only one that writes
    /// orders) and no job of this transaction wrote it. `None`: read the
    /// table.
    pub(crate) fn recent_order(&self, order_id: OrderId) -> Option<Order> {
        if self.written.contains(&order_id) {
            return None;
        }
        self.recent.get(order_id)
    }

    /// This job writes `order_id`: later jobs of the transaction read it
    /// from the table, which has the change, or not if this job rolls back.
    pub(crate) fn writes_order(&mut self, order_id: OrderId) {
        self.written.insert(order_id);
    }

    /// The stream's consumers must hear of this job once it is committed:
    /// it appended to the stream.
    pub(crate) fn wake_stream(&mut self) {
        self.wake.stream = true;
    }

    /// The queues' consumers must hear of this job once it is committed: it
    /// sent to a queue or moved when a message becomes visible.
    pub(crate) fn wake_queues(&mut self) {
        self.wake.queues = true;
    }

    /// Every consumer must hear of it (a redrive may feed any of them).
    pub(crate) fn wake_all(&mut self) {
        self.wake = Wake::ALL;
    }
}

impl Deref for WriteTx<'_> {
    type Target = Connection;

    fn deref(&self) -> &Connection {
        self.conn
    }
}

/// Replies to a job once the fate of its batch is known: `None` if the
/// batch committed, else why it did not.
type Settle = Box<dyn FnOnce(Option<StoreError>) + Send>;

struct Ran {
    ok: bool,
    settle: Settle,
}

/// A job with its reply channel, its result type erased.
trait Work: Send {
    fn run(self: Box<Self>, tx: &mut WriteTx<'_>) -> Ran;
    /// Answers without running (the batch's transaction could not start).
    fn reject(self: Box<Self>, error: StoreError);
}

/// Runs on the writer thread once a job's fate is known, before its reply.
pub(crate) type Then<T> = Box<dyn FnOnce(&Result<T, StoreError>) + Send>;

struct Task<T, F> {
    job: F,
    then: Option<Then<T>>,
    reply: oneshot::Sender<Result<T, StoreError>>,
}

impl<T, F> Work for Task<T, F>
where
    T: Send + 'static,
    F: FnOnce(&mut WriteTx<'_>) -> Result<T, StoreError> + Send,
{
    fn run(self: Box<Self>, tx: &mut WriteTx<'_>) -> Ran {
        let Task { job, then, reply } = *self;
        let result = job(tx);
        Ran {
            ok: result.is_ok(),
            settle: Box::new(move |batch: Option<StoreError>| {
                // A job's own error says more than the batch's.
                let answer = match (result, batch) {
                    (Err(error), _) | (Ok(_), Some(error)) => Err(error),
                    (Ok(value), None) => Ok(value),
                };
                if let Some(then) = then {
                    then(&answer);
                }
                // The caller may have stopped waiting; nothing to do then.
                let _ = reply.send(answer);
            }),
        }
    }

    fn reject(self: Box<Self>, error: StoreError) {
        let answer = Err(error);
        if let Some(then) = self.then {
            then(&answer);
        }
        let _ = self.reply.send(answer);
    }
}

/// The answer to a submitted job, once its batch is committed.
pub(crate) struct Reply<T>(Result<oneshot::Receiver<Result<T, StoreError>>, StoreError>);

impl<T> Reply<T> {
    pub(crate) async fn wait(self) -> Result<T, StoreError> {
        match self.0 {
            Err(error) => Err(error),
            Ok(receiver) => receiver.await.unwrap_or_else(|_| {
                Err(StoreError::Failed(
                    "the writer dropped the job (it panicked)".into(),
                ))
            }),
        }
    }
}

/// The handle callers hold; dropping it stops the thread after the jobs
/// already sent.
pub(crate) struct Writer {
    jobs: Option<mpsc::Sender<Box<dyn Work>>>,
    thread: Option<JoinHandle<()>>,
    commits: Arc<AtomicU64>,
}

impl Writer {
    pub(crate) fn start(
        conn: Connection,
        max_batch: usize,
        signals: Arc<Signals>,
        recent: Arc<RecentOrders>,
    ) -> Result<Writer, StoreError> {
        let (jobs, receiver) = mpsc::channel();
        let commits = Arc::new(AtomicU64::new(0));
        let version = data_version(&conn).unwrap_or(0);
        let thread = WriterThread {
            conn,
            jobs: receiver,
            max_batch: max_batch.max(1),
            signals,
            commits: Arc::clone(&commits),
            version,
            polled: Instant::now(),
            recent,
            written: HashSet::new(),
        };
        let handle = std::thread::Builder::new()
            .name("embedded-writer".into())
            .spawn(move || thread.run())
            .map_err(|error| io_error("cannot start the writer thread", error))?;
        Ok(Writer {
            jobs: Some(jobs),
            thread: Some(handle),
            commits,
        })
    }

    /// Queues `job` for the next batch right away (before the first poll of
    /// the returned reply), so jobs submitted together commit together.
    pub(crate) fn submit<T, F>(&self, job: F) -> Reply<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut WriteTx<'_>) -> Result<T, StoreError> + Send + 'static,
    {
        self.submit_then(job, None)
    }

    /// Like [`Writer::submit`]; `then` runs on the writer thread once the
    /// job's fate is known, before any later job's caller hears back (for
    /// bookkeeping that must be done by then, whoever waits or not).
    pub(crate) fn submit_then<T, F>(&self, job: F, then: Option<Then<T>>) -> Reply<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut WriteTx<'_>) -> Result<T, StoreError> + Send + 'static,
    {
        let (reply, receiver) = oneshot::channel();
        let task: Box<dyn Work> = Box::new(Task { job, then, reply });
        let sent = match &self.jobs {
            Some(jobs) => jobs.send(task).is_ok(),
            None => false,
        };
        if sent {
            Reply(Ok(receiver))
        } else {
            Reply(Err(StoreError::Failed(
                "the writer thread has stopped".into(),
            )))
        }
    }

    pub(crate) async fn write<T, F>(&self, job: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut WriteTx<'_>) -> Result<T, StoreError> + Send + 'static,
    {
        self.submit(job).wait().await
    }

    /// Transactions committed so far.
    pub(crate) fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        // Closing the channel ends the thread's loop; joining makes sure the
        // write connection is closed before, say, the directory is reopened.
        self.jobs = None;
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                tracing::error!("the embedded writer thread panicked");
            }
        }
    }
}

struct WriterThread {
    conn: Connection,
    jobs: mpsc::Receiver<Box<dyn Work>>,
    max_batch: usize,
    signals: Arc<Signals>,
    commits: Arc<AtomicU64>,
    version: i64,
    polled: Instant,
    recent: Arc<RecentOrders>,
    /// The orders the current transaction's jobs wrote ([`WriteTx`]).
    written: HashSet<OrderId>,
}

enum JobEnd {
    /// Its savepoint was released: it commits with the batch.
    Kept(Option<Settle>, Wake),
    /// It failed and its savepoint was rolled back; the batch goes on.
    RolledBack(Option<Settle>),
    /// The batch's transaction is gone (SQLite rolled it back, or savepoint
    /// bookkeeping failed): the jobs before it lost their work too.
    Aborted(Option<Settle>, StoreError),
}

impl WriterThread {
    fn run(mut self) {
        loop {
            let first = match self.jobs.recv_timeout(POLL_OTHERS) {
                Ok(job) => job,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    self.poll_others();
                    continue;
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            };
            let mut batch = VecDeque::with_capacity(16);
            batch.push_back(first);
            while batch.len() < self.max_batch {
                match self.jobs.try_recv() {
                    Ok(job) => batch.push_back(job),
                    Err(_) => break,
                }
            }
            self.run_batch(batch);
            if self.polled.elapsed() >= POLL_OTHERS {
                self.poll_others();
            }
        }
    }

    fn run_batch(&mut self, mut pending: VecDeque<Box<dyn Work>>) {
        while !pending.is_empty() {
            if let Err(error) = self.execute("BEGIN IMMEDIATE") {
                // Typically another process held the write lock for longer
                // than busy_timeout: Unavailable, so callers retry.
                tracing::warn!(%error, "cannot begin a write transaction");
                for job in pending.drain(..) {
                    job.reject(error.clone());
                }
                return;
            }
            self.written.clear();
            let mut done: Vec<Settle> = Vec::with_capacity(pending.len());
            let mut wake = Wake::default();
            let mut aborted = false;
            while let Some(job) = pending.pop_front() {
                match self.run_job(job) {
                    JobEnd::Kept(settle, woke) => {
                        wake = wake.and(woke);
                        done.extend(settle);
                    }
                    JobEnd::RolledBack(settle) => done.extend(settle),
                    JobEnd::Aborted(settle, error) => {
                        tracing::warn!(%error, "a write batch was rolled back");
                        self.rollback();
                        for settle in done.drain(..).chain(settle) {
                            settle(Some(error.clone()));
                        }
                        aborted = true;
                        break;
                    }
                }
            }
            if aborted {
                // The jobs not run yet get a fresh transaction.
                continue;
            }
            match self.execute("COMMIT") {
                Ok(()) => {
                    self.commits.fetch_add(1, Ordering::Relaxed);
                    // Before the replies: whoever hears back and then looks
                    // at the counter sees the bump.
                    if wake.any() {
                        self.signals.bump(wake);
                    }
                    for settle in done {
                        settle(None);
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "a write batch failed to commit");
                    self.rollback();
                    for settle in done {
                        settle(Some(error.clone()));
                    }
                }
            }
        }
    }

    fn run_job(&mut self, job: Box<dyn Work>) -> JobEnd {
        if let Err(error) = self.execute("SAVEPOINT job") {
            job.reject(error.clone());
            return JobEnd::Aborted(None, error);
        }
        let mut tx = WriteTx {
            conn: &self.conn,
            wake: Wake::default(),
            recent: &self.recent,
            written: &mut self.written,
        };
        // A panicking job must not take the writer (and every later write)
        // down with it; its caller hears that it was dropped.
        let (ok, settle) = match catch_unwind(AssertUnwindSafe(|| job.run(&mut tx))) {
            Ok(ran) => (ran.ok, Some(ran.settle)),
            Err(_) => {
                tracing::error!("a write job panicked; rolling it back");
                (false, None)
            }
        };
        let woke = tx.wake;
        if self.conn.is_autocommit() {
            // Some errors (a full disk, IO errors) make SQLite roll back the
            // whole transaction, not just the statement.
            return JobEnd::Aborted(
                settle,
                StoreError::Unavailable(
                    "the write batch was rolled back after another write failed; try again".into(),
                ),
            );
        }
        if ok {
            match self.execute("RELEASE job") {
                Ok(()) => JobEnd::Kept(settle, woke),
                Err(error) => JobEnd::Aborted(settle, error),
            }
        } else {
            match self
                .execute("ROLLBACK TO job")
                .and_then(|()| self.execute("RELEASE job"))
            {
                Ok(()) => JobEnd::RolledBack(settle),
                Err(error) => JobEnd::Aborted(settle, error),
            }
        }
    }

    fn execute(&self, sql: &str) -> Result<(), StoreError> {
        let mut statement = self.conn.prepare_cached(sql).or_store()?;
        statement.execute([]).or_store()?;
        Ok(())
    }

    fn rollback(&self) {
        if !self.conn.is_autocommit() {
            if let Err(error) = self.execute("ROLLBACK") {
                tracing::error!(%error, "cannot roll back a write batch");
            }
        }
    }

    fn poll_others(&mut self) {
        self.polled = Instant::now();
        match data_version(&self.conn) {
            Ok(version) if version != self.version => {
                self.version = version;
                self.signals.bump(Wake::ALL);
            }
            Ok(_) => {}
            Err(error) => tracing::debug!(%error, "cannot read data_version"),
        }
    }
}

/// Moves whenever another connection commits to the file; our own commits
/// leave it alone.
fn data_version(conn: &Connection) -> Result<i64, StoreError> {
    conn.prepare_cached("PRAGMA data_version")
        .and_then(|mut statement| statement.query_row([], |row| row.get(0)))
        .or_store()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn writer(dir: &std::path::Path, max_batch: usize) -> (Writer, Arc<Signals>) {
        writer_keeping(dir, max_batch, Arc::new(RecentOrders::new(true)))
    }

    fn writer_keeping(
        dir: &std::path::Path,
        max_batch: usize,
        recent: Arc<RecentOrders>,
    ) -> (Writer, Arc<Signals>) {
        let conn =
            crate::schema::open_writer(&dir.join("w.sqlite3"), Duration::from_secs(5)).unwrap();
        conn.execute_batch(
            "CREATE TABLE parent (id INTEGER PRIMARY KEY);
             CREATE TABLE t (v INTEGER NOT NULL UNIQUE);
             CREATE TABLE child (parent INTEGER REFERENCES parent (id) DEFERRABLE INITIALLY DEFERRED);",
        )
        .unwrap();
        let signals = Arc::new(Signals::new());
        (
            Writer::start(conn, max_batch, Arc::clone(&signals), recent).unwrap(),
            signals,
        )
    }

    fn insert(value: i64) -> impl FnOnce(&mut WriteTx<'_>) -> Result<i64, StoreError> + Send {
        move |tx| {
            tx.execute("INSERT INTO t (v) VALUES (?1)", [value])
                .or_store()?;
            tx.wake_stream();
            Ok(value)
        }
    }

    fn values(writer: &Writer) -> Reply<Vec<i64>> {
        writer.submit(|tx| {
            let mut statement = tx.prepare("SELECT v FROM t ORDER BY v").or_store()?;
            let rows = statement
                .query_map([], |row| row.get(0))
                .or_store()?
                .collect::<Result<Vec<i64>, _>>()
                .or_store()?;
            Ok(rows)
        })
    }

    /// Holds the writer inside a job until released, so that the jobs
    /// submitted meanwhile pile up and run as one batch.
    fn hold(writer: &Writer) -> (Reply<()>, std::sync::mpsc::Sender<()>) {
        let (release, held) = std::sync::mpsc::channel::<()>();
        let (started, running) = std::sync::mpsc::channel::<()>();
        let reply = writer.submit(move |_tx| {
            let _ = started.send(());
            let _ = held.recv();
            Ok(())
        });
        // Only once the writer runs it alone are later jobs sure to queue up.
        running.recv().unwrap();
        (reply, release)
    }

    #[tokio::test]
    async fn a_failing_job_rolls_back_only_itself() {
        let dir = tempfile::tempdir().unwrap();
        let (writer, changes) = writer(dir.path(), 512);
        let mut seen = changes.stream.subscribe();
        let (held, release) = hold(&writer);
        let one = writer.submit(insert(1));
        // Inserts 2, then fails on the duplicate: its 2 must go too.
        let bad = writer.submit(|tx| {
            tx.execute("INSERT INTO t (v) VALUES (2)", []).or_store()?;
            tx.execute("INSERT INTO t (v) VALUES (1)", []).or_store()?;
            Ok(0)
        });
        let three = writer.submit(insert(3));
        let before = writer.commits();
        release.send(()).unwrap();
        held.wait().await.unwrap();
        assert_eq!(one.wait().await.unwrap(), 1);
        assert!(matches!(bad.wait().await, Err(StoreError::Failed(_))));
        assert_eq!(three.wait().await.unwrap(), 3);
        // held's batch, then one, bad and three together.
        assert_eq!(writer.commits() - before, 2);
        assert_eq!(values(&writer).wait().await.unwrap(), vec![1, 3]);
        assert!(seen.has_changed().unwrap());
        seen.borrow_and_update();
    }

    #[tokio::test]
    async fn a_job_trusts_the_recent_order_until_its_transaction_writes_it() {
        let dir = tempfile::tempdir().unwrap();
        let recent = Arc::new(RecentOrders::new(true));
        let order = domain::memory::placed_order();
        let id = order.order_id;
        recent.committed(&order);
        let (writer, _) = writer_keeping(dir.path(), 512, recent);
        let sees_recent = move |tx: &mut WriteTx<'_>| Ok(tx.recent_order(id).is_some());

        // One transaction: a job that wrote the order and then failed still
        // sends the jobs after it to the table (its savepoint is undone,
        // but nothing is gained by tracking that).
        let (held, release) = hold(&writer);
        let first = writer.submit(sees_recent);
        let failed = writer.submit(move |tx| -> Result<(), StoreError> {
            tx.writes_order(id);
            Err(StoreError::Failed("refused".into()))
        });
        let after_failed = writer.submit(sees_recent);
        release.send(()).unwrap();
        held.wait().await.unwrap();
        assert!(first.wait().await.unwrap());
        assert!(failed.wait().await.is_err());
        assert!(!after_failed.wait().await.unwrap());

        // Another: one that wrote it and kept the change.
        let (held, release) = hold(&writer);
        let first = writer.submit(sees_recent);
        let wrote = writer.submit(move |tx| {
            tx.writes_order(id);
            Ok(())
        });
        let after_write = writer.submit(sees_recent);
        release.send(()).unwrap();
        held.wait().await.unwrap();
        assert!(first.wait().await.unwrap());
        wrote.wait().await.unwrap();
        assert!(!after_write.wait().await.unwrap());

        // A new transaction starts afresh: the recent orders have every
        // committed change again.
        assert!(writer.write(sees_recent).await.unwrap());
    }

    #[tokio::test]
    async fn batches_respect_max_batch() {
        let dir = tempfile::tempdir().unwrap();
        let (writer, _changes) = writer(dir.path(), 2);
        let (held, release) = hold(&writer);
        let replies: Vec<_> = (0..5).map(|v| writer.submit(insert(v))).collect();
        let before = writer.commits();
        release.send(()).unwrap();
        held.wait().await.unwrap();
        for (value, reply) in replies.into_iter().enumerate() {
            assert_eq!(reply.wait().await.unwrap(), value as i64);
        }
        // 1 for the held job, then 2 + 2 + 1.
        assert_eq!(writer.commits() - before, 1 + 3);
    }

    #[tokio::test]
    async fn a_failed_commit_fails_every_job_of_the_batch() {
        let dir = tempfile::tempdir().unwrap();
        let (writer, changes) = writer(dir.path(), 512);
        let seen = changes.stream.subscribe();
        let (held, release) = hold(&writer);
        let one = writer.submit(insert(1));
        // A deferred foreign key is only checked at COMMIT.
        let orphan = writer.submit(|tx| {
            tx.execute("INSERT INTO child (parent) VALUES (42)", [])
                .or_store()?;
            Ok(())
        });
        release.send(()).unwrap();
        held.wait().await.unwrap();
        assert!(matches!(one.wait().await, Err(StoreError::Failed(_))));
        assert!(matches!(orphan.wait().await, Err(StoreError::Failed(_))));
        assert!(!seen.has_changed().unwrap(), "nothing committed, no wake");
        // The writer goes on with a clean slate.
        assert_eq!(writer.write(insert(5)).await.unwrap(), 5);
        assert_eq!(values(&writer).wait().await.unwrap(), vec![5]);
    }

    #[tokio::test]
    async fn a_panicking_job_does_not_stop_the_writer() {
        let dir = tempfile::tempdir().unwrap();
        let (writer, _changes) = writer(dir.path(), 512);
        let (held, release) = hold(&writer);
        let one = writer.submit(insert(1));
        let boom = writer.submit(|tx| -> Result<(), StoreError> {
            tx.execute("INSERT INTO t (v) VALUES (2)", []).or_store()?;
            panic!("a bug in a job");
        });
        let three = writer.submit(insert(3));
        release.send(()).unwrap();
        held.wait().await.unwrap();
        assert_eq!(one.wait().await.unwrap(), 1);
        assert!(matches!(boom.wait().await, Err(StoreError::Failed(_))));
        assert_eq!(three.wait().await.unwrap(), 3);
        assert_eq!(values(&writer).wait().await.unwrap(), vec![1, 3]);
    }

    #[tokio::test]
    async fn jobs_without_wake_do_not_bump_the_counter() {
        let dir = tempfile::tempdir().unwrap();
        let (writer, changes) = writer(dir.path(), 512);
        let seen = changes.stream.subscribe();
        writer
            .write(|tx| {
                tx.execute("INSERT INTO t (v) VALUES (9)", []).or_store()?;
                Ok(())
            })
            .await
            .unwrap();
        assert!(!seen.has_changed().unwrap());
    }
}
