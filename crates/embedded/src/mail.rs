//! The sent-mail record: which emails went out, by their idempotency key,
//! so a redelivered event does not mail anyone twice, even over SMTP (which
//! cannot deduplicate by itself).

use domain::ports::StoreError;
use rusqlite::{OptionalExtension, params};

use crate::Database;
use crate::error::OrStore;
use crate::time;

impl Database {
    /// Whether an email with this key was recorded as sent.
    pub async fn mail_sent(&self, key: &str) -> Result<bool, StoreError> {
        let key = key.to_owned();
        self.read_now(move |conn| {
            let found: Option<i64> = conn
                .prepare_cached("SELECT 1 FROM sent_mail WHERE key = ?1")
                .or_store()?
                .query_row([key], |row| row.get(0))
                .optional()
                .or_store()?;
            Ok(found.is_some())
        })
        .await
    }

    /// Records that the email with this key was sent; the first record of
    /// a key stays.
    pub async fn record_mail(&self, key: &str, to: &str, subject: &str) -> Result<(), StoreError> {
        let (key, to, subject) = (key.to_owned(), to.to_owned(), subject.to_owned());
        self.write(move |tx| {
            tx.prepare_cached(
                "INSERT OR IGNORE INTO sent_mail (key, recipient, subject, sent_at)
                 VALUES (?1, ?2, ?3, ?4)",
            )
            .or_store()?
            .execute(params![key, to, subject, time::now()])
            .or_store()?;
            Ok(())
        })
        .await
    }
}
