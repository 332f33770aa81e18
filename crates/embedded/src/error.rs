//! Translating SQLite's and the filesystem's errors into the ports' errors.
//!
//! The handlers only know [`StoreError`]: `Unavailable` means "the same call
//! may succeed later" (HTTP 503, consumers retry), `Failed` means a bug or
//! corrupt data (HTTP 500). Deciding which is which happens here and nowhere
//! else, so every adapter function maps errors the same way.

use domain::ports::StoreError;
use rusqlite::ErrorCode;

/// Maps a SQLite error: contention, a full disk, IO trouble, a file that
/// cannot be opened or written are passing conditions; the rest is not.
pub(crate) fn store_error(error: rusqlite::Error) -> StoreError {
    let passing = match &error {
        rusqlite::Error::SqliteFailure(failure, _) => matches!(
            failure.code,
            ErrorCode::DatabaseBusy
                | ErrorCode::DatabaseLocked
                | ErrorCode::DiskFull
                | ErrorCode::SystemIoFailure
                | ErrorCode::CannotOpen
                | ErrorCode::ReadOnly
        ),
        _ => false,
    };
    if passing {
        StoreError::Unavailable(error.to_string())
    } else {
        StoreError::Failed(error.to_string())
    }
}

/// Filesystem errors while opening (a directory that cannot be created, a
/// thread that cannot be started) depend on the machine, not on the data:
/// fixing the machine and trying again helps.
pub(crate) fn io_error(what: &str, error: std::io::Error) -> StoreError {
    StoreError::Unavailable(format!("{what}: {error}"))
}

/// Stored data that does not read back (bad JSON, a bad time): a bug or a
/// hand-edited database, never a passing condition.
pub(crate) fn corrupt(what: impl std::fmt::Display) -> StoreError {
    StoreError::Failed(format!("stored data is not valid: {what}"))
}

/// Lets `?` turn SQLite errors into [`StoreError`] inside jobs and reads.
pub(crate) trait OrStore<T> {
    fn or_store(self) -> Result<T, StoreError>;
}

impl<T> OrStore<T> for Result<T, rusqlite::Error> {
    fn or_store(self) -> Result<T, StoreError> {
        self.map_err(store_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sqlite(code: i32) -> rusqlite::Error {
        rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(code), None)
    }

    #[test]
    fn passing_conditions_are_unavailable() {
        for code in [
            rusqlite::ffi::SQLITE_BUSY,
            rusqlite::ffi::SQLITE_LOCKED,
            rusqlite::ffi::SQLITE_FULL,
            rusqlite::ffi::SQLITE_IOERR,
            rusqlite::ffi::SQLITE_IOERR_FSYNC,
            rusqlite::ffi::SQLITE_CANTOPEN,
            rusqlite::ffi::SQLITE_READONLY,
            rusqlite::ffi::SQLITE_BUSY_SNAPSHOT,
        ] {
            assert!(
                matches!(store_error(sqlite(code)), StoreError::Unavailable(_)),
                "code {code}"
            );
        }
    }

    #[test]
    fn everything_else_failed() {
        for error in [
            sqlite(rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY),
            sqlite(rusqlite::ffi::SQLITE_CORRUPT),
            sqlite(rusqlite::ffi::SQLITE_MISMATCH),
            rusqlite::Error::QueryReturnedNoRows,
            rusqlite::Error::InvalidColumnIndex(3),
        ] {
            assert!(matches!(store_error(error), StoreError::Failed(_)));
        }
    }
}
