//! [`OutboxMailer`]: emails kept in the local mail outbox.
//!
//! Locally there is no mail server; the outbox (a SQLite file, see
//! [`embedded::MailOutbox`]) is where a developer, a test or `bakery
//! outbox` reads what the bakery sent. One row per email key makes sending
//! idempotent: a key that is there was sent.
//!
//! One thread writes every email, in groups: it takes all the emails
//! waiting and stores them in one transaction, durable before anybody
//! hears back. So a returned `send` is on disk, while a busy bakery pays
//! one commit per group instead of one per email.

use std::path::{Path, PathBuf};
use std::sync::{Arc, mpsc};

use async_trait::async_trait;
use domain::events::Email;
use domain::ports::{MailError, Mailer, StoreError};
use embedded::{MailOutbox, NewMail};
use lettre::message::Mailbox;
use tokio::sync::oneshot;

use crate::mail::{build_message, parse_mailbox};

/// The most emails one group stores in one commit.
const MAX_GROUP: usize = 256;

/// Keeps each email, as RFC 5322, in the outbox at a path.
#[derive(Debug, Clone)]
pub struct OutboxMailer {
    path: PathBuf,
    from: Mailbox,
    writer: Arc<GroupWriter>,
}

impl OutboxMailer {
    /// The outbox at `path` (created if missing), sending as `from`.
    ///
    /// `from` that is not a mailbox → [`MailError::Rejected`]; an outbox
    /// that cannot be opened, or a writer thread that cannot start →
    /// [`MailError::Unavailable`].
    pub fn new(path: PathBuf, from: String) -> Result<OutboxMailer, MailError> {
        let from = parse_mailbox("from", &from)?;
        // Fail at startup rather than on the first email.
        let outbox = MailOutbox::open(&path).map_err(|e| unavailable(&path, e))?;
        let writer = Arc::new(GroupWriter::start(outbox)?);
        Ok(OutboxMailer { path, from, writer })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[async_trait]
impl Mailer for OutboxMailer {
    async fn send(&self, email: &Email) -> Result<(), MailError> {
        let message = build_message(&self.from, email)?.formatted();
        let stored = self
            .writer
            .write(Mail {
                key: email.key.clone(),
                recipient: email.to.clone(),
                subject: email.subject.clone(),
                message,
            })
            .await?;
        if stored {
            tracing::debug!(key = %email.key, "mail stored in the outbox");
        } else {
            tracing::debug!(key = %email.key, "mail already in the outbox");
        }
        Ok(())
    }
}

/// One email as the outbox keeps it.
struct Mail {
    key: String,
    recipient: String,
    subject: String,
    message: Vec<u8>,
}

/// One email for the writer thread, and where to say how it went:
/// `Ok(true)` stored, `Ok(false)` was there already.
struct Job {
    mail: Mail,
    reply: oneshot::Sender<Result<bool, MailError>>,
}

/// The handle to the thread that writes the outbox. The thread ends when
/// the last handle is dropped (its channel closes).
#[derive(Debug)]
struct GroupWriter {
    jobs: mpsc::Sender<Job>,
}

impl GroupWriter {
    fn start(outbox: MailOutbox) -> Result<GroupWriter, MailError> {
        let (jobs, receiver) = mpsc::channel();
        std::thread::Builder::new()
            .name("outbox-writer".into())
            .spawn(move || run(outbox, &receiver))
            .map_err(|e| MailError::Unavailable(format!("cannot start the outbox writer: {e}")))?;
        Ok(GroupWriter { jobs })
    }

    async fn write(&self, mail: Mail) -> Result<bool, MailError> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Job { mail, reply })
            .map_err(|_| MailError::Unavailable("the outbox writer has stopped".into()))?;
        answer
            .await
            .map_err(|_| MailError::Unavailable("the outbox writer dropped the email".into()))?
    }
}

fn run(mut outbox: MailOutbox, jobs: &mpsc::Receiver<Job>) {
    while let Ok(first) = jobs.recv() {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match jobs.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        let answers = write_group(&mut outbox, &group);
        for (job, answer) in group.into_iter().zip(answers) {
            // The sender may have stopped waiting; nothing to do then.
            let _ = job.reply.send(answer);
        }
    }
}

/// Stores a group of emails in one commit; one answer per email.
fn write_group(outbox: &mut MailOutbox, group: &[Job]) -> Vec<Result<bool, MailError>> {
    // A file removed or replaced since it was opened would swallow the
    // emails: open the outbox again (which creates it anew).
    if !outbox.is_current() {
        match MailOutbox::open(outbox.path()) {
            Ok(reopened) => *outbox = reopened,
            Err(e) => {
                let error = unavailable(outbox.path(), e);
                return group.iter().map(|_| Err(error.clone())).collect();
            }
        }
    }
    let mails: Vec<NewMail<'_>> = group
        .iter()
        .map(|Job { mail, .. }| NewMail {
            key: &mail.key,
            recipient: &mail.recipient,
            subject: &mail.subject,
            message: &mail.message,
        })
        .collect();
    match outbox.store(&mails) {
        Ok(stored) => stored.into_iter().map(Ok).collect(),
        Err(e) => {
            tracing::warn!(outbox = %outbox.path().display(), error = %e, "cannot store emails in the outbox");
            let error = unavailable(outbox.path(), e);
            group.iter().map(|_| Err(error.clone())).collect()
        }
    }
}

/// Whatever the outbox's trouble (a full disk, a file that is not an
/// outbox), the email may go out once it is fixed: never a rejection.
fn unavailable(path: &Path, error: StoreError) -> MailError {
    let reason = match error {
        StoreError::Unavailable(reason) | StoreError::Failed(reason) => reason,
    };
    MailError::Unavailable(format!("outbox {}: {reason}", path.display()))
}
