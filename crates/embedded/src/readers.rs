//! A small pool of read-only connections.
//!
//! In WAL mode readers never wait for the writer nor hold it up, but a
//! connection serves one caller at a time. Reads check a connection out
//! inside `spawn_blocking` (SQLite calls block) and keep it, with its
//! prepared statements, for the next read.
//!
//! At most [`MAX_READERS`] reads run at once; more wait for a permit
//! (asynchronously, before `spawn_blocking`). Without the bound every burst
//! of concurrent reads (say 64 customers polling their orders) opened a
//! connection per read beyond the idle ones and closed it after: opening
//! costs a file open, the WAL index mapping and a schema parse, and a fresh
//! connection prepares every statement again. A profile of the bakery
//! under lifecycle load showed `open_reader` and statement preparation at
//! about 11 % of its CPU, and a blocking thread per concurrent read.

use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use domain::ports::StoreError;
use rusqlite::Connection;

use crate::schema::open_reader;

/// Reads running at once, and so connections kept. Reads are short and
/// CPU-bound once the pages are cached; more than a few per core only adds
/// threads and connections.
pub(crate) const MAX_READERS: usize = 8;

pub(crate) struct Readers {
    path: PathBuf,
    busy_timeout: Duration,
    idle: Mutex<Vec<Connection>>,
    permits: tokio::sync::Semaphore,
}

impl Readers {
    pub(crate) fn new(path: PathBuf, busy_timeout: Duration) -> Readers {
        Readers {
            path,
            busy_timeout,
            idle: Mutex::new(Vec::new()),
            permits: tokio::sync::Semaphore::new(MAX_READERS),
        }
    }

    /// Waits for a turn to read; hold it across [`Readers::with`].
    pub(crate) async fn permit(&self) -> Option<tokio::sync::SemaphorePermit<'_>> {
        // The semaphore is never closed; `None` would only mean "go ahead".
        self.permits.acquire().await.ok()
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
        if idle.len() < MAX_READERS {
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
