//! Who owns the data directory.
//!
//! The bakery process owns it: on open it hands back the queue messages a
//! crashed predecessor had received but not finished. The operator's CLI
//! may open the same directory while the bakery runs (to redrive dead
//! letters); it must not take the running bakery's in-flight messages away.
//! Ownership is an exclusive SQLite lock on a small side file, held for as
//! long as the [`crate::Database`] lives and released by the operating
//! system if the process dies, so a crash never leaves a stale claim.

use std::path::Path;

use domain::ports::StoreError;
use rusqlite::{Connection, ErrorCode};

use crate::error::{OrStore, store_error};

pub(crate) const OWNER_FILE: &str = "bakery.owner";

/// The lock, if this process got it; `None` if another one holds it.
pub(crate) fn claim(dir: &Path) -> Result<Option<Connection>, StoreError> {
    let conn = Connection::open(dir.join(OWNER_FILE)).or_store()?;
    // Someone else's claim is an answer, not something to wait out.
    conn.busy_timeout(std::time::Duration::ZERO).or_store()?;
    // In exclusive locking mode SQLite keeps the lock of the first write
    // until the connection closes.
    conn.pragma_update(None, "locking_mode", "EXCLUSIVE")
        .or_store()?;
    match conn.execute_batch(
        "BEGIN EXCLUSIVE; CREATE TABLE IF NOT EXISTS owner (claimed INTEGER); COMMIT;",
    ) {
        Ok(()) => Ok(Some(conn)),
        Err(rusqlite::Error::SqliteFailure(failure, _))
            if matches!(
                failure.code,
                ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked
            ) =>
        {
            Ok(None)
        }
        Err(error) => Err(store_error(error)),
    }
}
