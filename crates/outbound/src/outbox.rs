//! [`OutboxMailer`]: emails as `.eml` files in a directory.
//!
//! Locally there is no mail server; the outbox is where a developer (or a
//! test) reads what the bakery sent. One file per email key makes sending
//! idempotent: a file that exists was sent. Files appear atomically: on
//! Linux each is written unnamed (`O_TMPFILE`) and then linked under its
//! name, one directory entry per email; elsewhere a hidden temp file is
//! renamed into place. A reader never sees half of a mail.
//!
//! One thread writes every file, in groups: it takes all the emails
//! waiting, writes each to its temp file and renames it into place, then
//! makes the whole group durable at once (on Linux one `syncfs` of the
//! outbox's filesystem, which writes back the files, their inodes and the
//! directory; elsewhere an fsync of each file and of the directory).
//! Nobody hears back before that, so a returned `send` is as durable as
//! with an fsync per file, while a busy bakery pays one flush per group
//! instead of two per email.

use std::collections::HashMap;
use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, mpsc};

use async_trait::async_trait;
use domain::events::Email;
use domain::ports::{MailError, Mailer};
use lettre::message::Mailbox;
use tokio::sync::oneshot;

use crate::mail::{build_message, parse_mailbox};

/// The most emails one group writes before it fsyncs the directory.
const MAX_GROUP: usize = 256;

/// Writes each email as an RFC 5322 `<key>.eml` file in a directory.
#[derive(Debug, Clone)]
pub struct OutboxMailer {
    dir: PathBuf,
    from: Mailbox,
    writer: Arc<GroupWriter>,
}

impl OutboxMailer {
    /// An outbox in `dir` (created if missing), sending as `from`.
    ///
    /// `from` that is not a mailbox → [`MailError::Rejected`]; a directory
    /// that cannot be created, or a writer thread that cannot start →
    /// [`MailError::Unavailable`].
    pub fn new(dir: PathBuf, from: String) -> Result<OutboxMailer, MailError> {
        let from = parse_mailbox("from", &from)?;
        // Fail at startup rather than on the first email.
        fs::create_dir_all(&dir).map_err(|e| unavailable("cannot create outbox", &dir, &e))?;
        let writer = Arc::new(GroupWriter::start(dir.clone())?);
        Ok(OutboxMailer { dir, from, writer })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

#[async_trait]
impl Mailer for OutboxMailer {
    async fn send(&self, email: &Email) -> Result<(), MailError> {
        let bytes = build_message(&self.from, email)?.formatted();
        let written = self.writer.write(email.key.clone(), bytes).await?;
        if written {
            tracing::debug!(key = %email.key, dir = %self.dir.display(), "mail written to outbox");
        } else {
            tracing::debug!(key = %email.key, "mail already in outbox");
        }
        Ok(())
    }
}

/// One email for the writer thread, and where to say how it went:
/// `Ok(true)` written, `Ok(false)` was there already.
struct Job {
    key: String,
    bytes: Vec<u8>,
    reply: oneshot::Sender<Result<bool, MailError>>,
}

/// The handle to the thread that writes the files. The thread ends when
/// the last handle is dropped (its channel closes).
#[derive(Debug)]
struct GroupWriter {
    jobs: mpsc::Sender<Job>,
}

impl GroupWriter {
    fn start(dir: PathBuf) -> Result<GroupWriter, MailError> {
        let (jobs, receiver) = mpsc::channel();
        std::thread::Builder::new()
            .name("outbox-writer".into())
            .spawn(move || run(&dir, &receiver))
            .map_err(|e| MailError::Unavailable(format!("cannot start the outbox writer: {e}")))?;
        Ok(GroupWriter { jobs })
    }

    async fn write(&self, key: String, bytes: Vec<u8>) -> Result<bool, MailError> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Job { key, bytes, reply })
            .map_err(|_| MailError::Unavailable("the outbox writer has stopped".into()))?;
        answer
            .await
            .map_err(|_| MailError::Unavailable("the outbox writer dropped the email".into()))?
    }
}

fn run(dir: &Path, jobs: &mpsc::Receiver<Job>) {
    while let Ok(first) = jobs.recv() {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match jobs.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        write_group(dir, group);
    }
}

/// Writes a group of emails: each file is written and renamed into place,
/// then the group is made durable; only then does anyone hear back.
fn write_group(dir: &Path, group: Vec<Job>) {
    // The directory may have been removed since `new`.
    if let Err(e) = fs::create_dir_all(dir) {
        let error = unavailable("cannot create outbox", dir, &e);
        for job in group {
            let _ = job.reply.send(Err(error.clone()));
        }
        return;
    }
    // A key twice in one group is written once; the repeat shares the
    // first one's fate.
    let mut first_of_key: HashMap<String, usize> = HashMap::new();
    let mut outcomes = Vec::with_capacity(group.len());
    let mut placed = Vec::new();
    for (index, job) in group.iter().enumerate() {
        let outcome = match first_of_key.get(&job.key) {
            Some(&first) => Outcome::RepeatOf(first),
            None => {
                first_of_key.insert(job.key.clone(), index);
                match place(dir, &job.key, &job.bytes) {
                    Ok(Some(path)) => {
                        placed.push(path.clone());
                        Outcome::Placed(path)
                    }
                    Ok(None) => Outcome::AlreadyThere,
                    Err(error) => Outcome::Failed(error),
                }
            }
        };
        outcomes.push(outcome);
    }
    let synced = if placed.is_empty() {
        Ok(())
    } else {
        sync_group(dir, &placed)
    };
    if let Err(e) = &synced {
        // The renames may not survive a crash: take them back (best effort)
        // so that a retry writes the mail again rather than trusting it.
        for path in &placed {
            let _ = fs::remove_file(path);
        }
        tracing::warn!(dir = %dir.display(), error = %e, "cannot sync the outbox");
    }
    let answer = |outcome: &Outcome| match (outcome, &synced) {
        (Outcome::Failed(error), _) => Err(error.clone()),
        (Outcome::Placed(path), Err(e)) => Err(unavailable("cannot write outbox mail", path, e)),
        (Outcome::Placed(_), Ok(())) => Ok(true),
        (Outcome::AlreadyThere | Outcome::RepeatOf(_), _) => Ok(false),
    };
    let answers: Vec<Result<bool, MailError>> = outcomes
        .iter()
        .map(|outcome| match outcome {
            Outcome::RepeatOf(first) => answer(&outcomes[*first]).map(|_| false),
            other => answer(other),
        })
        .collect();
    for (job, answer) in group.into_iter().zip(answers) {
        // The sender may have stopped waiting; nothing to do then.
        let _ = job.reply.send(answer);
    }
}

/// What became of one email of a group, before the directory fsync.
enum Outcome {
    Placed(PathBuf),
    AlreadyThere,
    /// The same key as the email at this index of the group.
    RepeatOf(usize),
    Failed(MailError),
}

/// Writes `bytes` to `dir/<key>.eml` unless that file exists, not yet
/// durably ([`sync_group`] does that). Returns the file's path if it wrote
/// it. `key` was checked by `build_message` (no separators, no leading
/// dot), so the path stays inside `dir`.
///
/// The file is written unnamed and then given its name in one step, so a
/// reader never sees half of it. A file already there counts as sent,
/// unless it is empty: what a crash between naming and syncing can leave,
/// which is written again.
fn place(dir: &Path, key: &str, bytes: &[u8]) -> Result<Option<PathBuf>, MailError> {
    let path = dir.join(format!("{key}.eml"));
    let outcome = match unnamed_file(dir, bytes) {
        Ok(Some(file)) => name_unnamed(&file, &path),
        Ok(None) => write_and_rename(dir, key, bytes, &path, false),
        Err(e) => Err(e),
    };
    match outcome {
        Ok(()) => Ok(Some(path)),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => match fs::symlink_metadata(&path) {
            Ok(meta) if meta.len() > 0 => Ok(None),
            // A torn leftover: replace it.
            Ok(_) => write_and_rename(dir, key, bytes, &path, true)
                .map(|()| Some(path.clone()))
                .map_err(|e| unavailable("cannot write outbox mail", &path, &e)),
            Err(e) => Err(unavailable("cannot check outbox", &path, &e)),
        },
        Err(e) => Err(unavailable("cannot write outbox mail", &path, &e)),
    }
}

/// A file in `dir` with `bytes` in it and no name yet (Linux `O_TMPFILE`),
/// or `None` where the filesystem cannot make one.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn unnamed_file(dir: &Path, bytes: &[u8]) -> io::Result<Option<fs::File>> {
    use std::os::unix::fs::OpenOptionsExt;
    let opened = OpenOptions::new()
        .write(true)
        .custom_flags(nix::libc::O_TMPFILE)
        .mode(0o666)
        .open(dir);
    let mut file = match opened {
        Ok(file) => file,
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(nix::libc::EOPNOTSUPP | nix::libc::EISDIR)
            ) =>
        {
            return Ok(None);
        }
        Err(e) => return Err(e),
    };
    file.write_all(bytes)?;
    Ok(Some(file))
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn unnamed_file(_dir: &Path, _bytes: &[u8]) -> io::Result<Option<fs::File>> {
    Ok(None)
}

/// Gives an unnamed file its name; `AlreadyExists` if the name is taken.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn name_unnamed(file: &fs::File, path: &Path) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let source = format!("/proc/self/fd/{}", file.as_raw_fd());
    nix::unistd::linkat(
        None,
        Path::new(&source),
        None,
        path,
        nix::fcntl::AtFlags::AT_SYMLINK_FOLLOW,
    )
    .map_err(io::Error::from)
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn name_unnamed(_file: &fs::File, _path: &Path) -> io::Result<()> {
    Err(io::Error::from(io::ErrorKind::Unsupported))
}

/// Distinguishes temp files of concurrent writers (several processes, or
/// several outboxes over one directory).
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// The portable way: a hidden temp file renamed into place. Without
/// `replace`, an existing file is left alone (`AlreadyExists`).
fn write_and_rename(
    dir: &Path,
    key: &str,
    bytes: &[u8],
    path: &Path,
    replace: bool,
) -> io::Result<()> {
    if !replace && fs::symlink_metadata(path).is_ok() {
        return Err(io::Error::from(io::ErrorKind::AlreadyExists));
    }
    // Hidden and not `.eml`, so readers of the outbox never pick it up.
    let temp = dir.join(format!(
        ".{key}.{}.{}.tmp",
        std::process::id(),
        TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let result = write_new(&temp, bytes).and_then(|()| fs::rename(&temp, path));
    if result.is_err() {
        // Best effort: after a failed rename the temp file is still there.
        let _ = fs::remove_file(&temp);
    }
    result
}

fn write_new(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut file = OpenOptions::new().write(true).create_new(true).open(path)?;
    file.write_all(bytes)
}

/// Makes the files just placed in `dir` durable: their contents, inodes
/// and directory entries.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn sync_group(dir: &Path, _placed: &[PathBuf]) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let handle = fs::File::open(dir)?;
    nix::unistd::syncfs(handle.as_raw_fd()).map_err(io::Error::from)
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn sync_group(dir: &Path, placed: &[PathBuf]) -> io::Result<()> {
    for path in placed {
        fs::File::open(path)?.sync_all()?;
    }
    fs::File::open(dir)?.sync_all()
}

fn unavailable(what: &str, path: &Path, e: &io::Error) -> MailError {
    MailError::Unavailable(format!("{what} {}: {e}", path.display()))
}
