//! Copying the write-ahead log back into the database file, off the
//! writer's path.
//!
//! SQLite's default is that the connection whose commit makes the WAL
//! pass 1,000 pages copies it back right there, inside that commit: every
//! few hundred milliseconds under load the writer thread, and every job
//! waiting for it, waited for a few megabytes of copying and an fsync of
//! the database file. Here the writer never checkpoints; this thread does,
//! every [`INTERVAL`], in `PASSIVE` mode, which neither waits for nor
//! blocks the writer or the readers. Whatever one pass cannot copy (pages
//! a reader still needs) the next one does. The last connection to close
//! checkpoints whatever is left, as SQLite always does.

use std::path::PathBuf;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use domain::ports::StoreError;
use rusqlite::{Connection, OpenFlags};

use crate::error::{OrStore, io_error};

/// How often the WAL is copied back: often enough that it stays a few
/// megabytes, seldom enough to cost nothing when idle.
pub(crate) const INTERVAL: Duration = Duration::from_millis(100);

/// The handle; dropping it stops the thread (and closes its connection)
/// before the writer's connection closes.
pub(crate) struct Checkpointer {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    pub(crate) fn start(
        path: PathBuf,
        busy_timeout: Duration,
        interval: Duration,
    ) -> Result<Checkpointer, StoreError> {
        let conn = Connection::open_with_flags(
            &path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .or_store()?;
        conn.busy_timeout(busy_timeout).or_store()?;
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("embedded-checkpointer".into())
            .spawn(move || run(&conn, &stopped, interval))
            .map_err(|error| io_error("cannot start the checkpoint thread", error))?;
        Ok(Checkpointer {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

fn run(conn: &Connection, stopped: &mpsc::Receiver<()>, interval: Duration) {
    // Nothing is ever sent: the channel closing is the signal to stop.
    while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(interval) {
        let outcome = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| {
            row.get::<_, i64>(0)
        });
        if let Err(error) = outcome {
            tracing::debug!(%error, "a checkpoint pass failed; the next one tries again");
        }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.stop = None;
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                tracing::error!("the checkpoint thread panicked");
            }
        }
    }
}
