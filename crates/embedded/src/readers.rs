//! A small pool of read-only connections.
//!
//! In WAL mode readers never wait for the writer nor hold it up, but a
//! connection serves one caller at a time. Reads check a connection out
//! inside `spawn_blocking` (SQLite calls block), open another if all are
//! busy, and keep a few idle ones with their prepared statements cached.

use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use domain::ports::StoreError;
use rusqlite::Connection;

use crate::schema::open_reader;

/// Idle connections kept; more may be open for a moment under load.
const KEEP_IDLE: usize = 4;

pub(crate) struct Readers {
    path: PathBuf,
    busy_timeout: Duration,
    idle: Mutex<Vec<Connection>>,
}

impl Readers {
    pub(crate) fn new(path: PathBuf, busy_timeout: Duration) -> Readers {
        Readers {
            path,
            busy_timeout,
            idle: Mutex::new(Vec::new()),
        }
    }

    /// Runs `read` on an idle connection (or a new one). Blocks: call it
    /// from a blocking thread.
    pub(crate) fn with<T>(
        &self,
        read: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let idle = self.lock().pop();
        let conn = match idle {
            Some(conn) => conn,
            None => open_reader(&self.path, self.busy_timeout)?,
        };
        let result = read(&conn);
        let mut idle = self.lock();
        if idle.len() < KEEP_IDLE {
            idle.push(conn);
        }
        result
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Connection>> {
        // A panic elsewhere cannot leave a Vec of connections inconsistent.
        self.idle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
