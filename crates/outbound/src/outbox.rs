//! [`OutboxMailer`]: emails as `.eml` files in a directory.
//!
//! Locally there is no mail server; the outbox is where a developer (or a
//! test) reads what the bakery sent. One file per email key makes sending
//! idempotent: a file that exists was sent. Files appear atomically (temp
//! file in the same directory, fsync, rename, fsync of the directory), so a
//! crash leaves either no mail or a whole one, never half of one.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use domain::events::Email;
use domain::ports::{MailError, Mailer};
use lettre::message::Mailbox;

use crate::mail::{build_message, parse_mailbox};

/// Writes each email as an RFC 5322 `<key>.eml` file in a directory.
#[derive(Debug, Clone)]
pub struct OutboxMailer {
    dir: PathBuf,
    from: Mailbox,
}

impl OutboxMailer {
    /// An outbox in `dir` (created if missing), sending as `from`.
    ///
    /// `from` that is not a mailbox → [`MailError::Rejected`]; a directory
    /// that cannot be created → [`MailError::Unavailable`].
    pub fn new(dir: PathBuf, from: String) -> Result<OutboxMailer, MailError> {
        let from = parse_mailbox("from", &from)?;
        // Fail at startup rather than on the first email.
        fs::create_dir_all(&dir).map_err(|e| unavailable("cannot create outbox", &dir, &e))?;
        Ok(OutboxMailer { dir, from })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

#[async_trait]
impl Mailer for OutboxMailer {
    async fn send(&self, email: &Email) -> Result<(), MailError> {
        let bytes = build_message(&self.from, email)?.formatted();
        let dir = self.dir.clone();
        let key = email.key.clone();
        // Blocking file IO (fsync especially) stays off the async workers.
        let written = tokio::task::spawn_blocking(move || write_once(&dir, &key, &bytes))
            .await
            .map_err(|e| MailError::Unavailable(format!("outbox writer stopped: {e}")))??;
        if written {
            tracing::debug!(key = %email.key, dir = %self.dir.display(), "mail written to outbox");
        } else {
            tracing::debug!(key = %email.key, "mail already in outbox");
        }
        Ok(())
    }
}

/// Distinguishes temp files of concurrent sends within one process.
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Writes `bytes` to `dir/<key>.eml` unless that file exists. Returns
/// whether it wrote. `key` was checked by `build_message` (no separators,
/// no leading dot), so the path stays inside `dir`.
fn write_once(dir: &Path, key: &str, bytes: &[u8]) -> Result<bool, MailError> {
    let path = dir.join(format!("{key}.eml"));
    match fs::symlink_metadata(&path) {
        Ok(_) => return Ok(false),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(unavailable("cannot check outbox", &path, &e)),
    }
    // The directory may have been removed since `new`.
    fs::create_dir_all(dir).map_err(|e| unavailable("cannot create outbox", dir, &e))?;

    // Hidden and not `.eml`, so readers of the outbox never pick it up.
    let temp = dir.join(format!(
        ".{key}.{}.{}.tmp",
        std::process::id(),
        TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let result = write_durably(&temp, bytes)
        .and_then(|()| fs::rename(&temp, &path))
        .and_then(|()| sync_dir(dir));
    if let Err(e) = result {
        // Best effort: after a failed rename the temp file is still there.
        let _ = fs::remove_file(&temp);
        return Err(unavailable("cannot write outbox mail", &path, &e));
    }
    Ok(true)
}

fn write_durably(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut file = OpenOptions::new().write(true).create_new(true).open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// Makes the rename itself durable (the directory entry).
#[cfg(unix)]
fn sync_dir(dir: &Path) -> io::Result<()> {
    fs::File::open(dir)?.sync_all()
}

#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> io::Result<()> {
    Ok(())
}

fn unavailable(what: &str, path: &Path, e: &io::Error) -> MailError {
    MailError::Unavailable(format!("{what} {}: {e}", path.display()))
}
