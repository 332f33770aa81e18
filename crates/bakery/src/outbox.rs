//! `bakery outbox`: the emails the local bakery sent while it had no SMTP
//! server, read from the outbox file in the data directory
//! ([`embedded::OUTBOX_FILE`]).
//!
//! Reading writes nothing there, so these commands work beside a running
//! bakery and on a read-only copy. `export` turns the emails into `.eml`
//! files, which any mail program opens.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result, bail};
use embedded::{OutboxReader, SentMail};

use crate::config::{OutboxAction, ServeConfig};

pub fn run(config: &ServeConfig, action: &OutboxAction) -> Result<()> {
    let path = config.data_dir.join(embedded::OUTBOX_FILE);
    if !path.exists() {
        bail!(
            "no mail outbox in {} (no email was sent there yet, or mail goes over SMTP or, with --backend aws, through SES); pass --data-dir",
            config.data_dir.display()
        );
    }
    let outbox = OutboxReader::open(&path).context("cannot open the mail outbox")?;
    let mut out = std::io::stdout().lock();
    match action {
        OutboxAction::List { with_recipient } => {
            for mail in outbox.list().context("cannot read the mail outbox")? {
                writeln!(
                    out,
                    "{}",
                    serde_json::to_string(&listed(&mail, *with_recipient))?
                )?;
            }
        }
        OutboxAction::Show { key } => {
            let Some(message) = outbox.message(key).context("cannot read the mail outbox")? else {
                bail!("no email {key} in the outbox; `bakery outbox list` shows the keys");
            };
            out.write_all(&message)?;
        }
        OutboxAction::Export { dir } => {
            let count = export(&outbox, dir)?;
            writeln!(out, "wrote {count} email(s) to {}", dir.display())?;
        }
    }
    out.flush()?;
    Ok(())
}

fn listed(mail: &SentMail, with_recipient: bool) -> serde_json::Value {
    let mut json = serde_json::json!({
        "key": mail.key,
        "sentAt": mail.sent_at,
        "subject": mail.subject,
    });
    if with_recipient {
        json["recipient"] = mail.recipient.clone().into();
    }
    json
}

/// Writes each email to `dir/<key>.eml`; returns how many.
fn export(outbox: &OutboxReader, dir: &Path) -> Result<usize> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mails = outbox.list().context("cannot read the mail outbox")?;
    for mail in &mails {
        // The bakery only stores keys without separators or a leading dot;
        // a hand-edited outbox must not write outside `dir`.
        if mail.key.is_empty() || mail.key.starts_with('.') || mail.key.contains(['/', '\\', '\0'])
        {
            bail!(
                "the outbox holds an email key that is not a file name: {:?}",
                mail.key
            );
        }
        let message = outbox
            .message(&mail.key)
            .context("cannot read the mail outbox")?
            .with_context(|| format!("email {} vanished from the outbox", mail.key))?;
        let file = dir.join(format!("{}.eml", mail.key));
        std::fs::write(&file, message)
            .with_context(|| format!("cannot write {}", file.display()))?;
    }
    Ok(mails.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use embedded::{MailOutbox, NewMail};

    fn outbox_with(dir: &Path, keys: &[&str]) -> std::path::PathBuf {
        let path = dir.join(embedded::OUTBOX_FILE);
        let mut outbox = MailOutbox::open(&path).unwrap();
        let mails: Vec<NewMail<'_>> = keys
            .iter()
            .map(|key| NewMail {
                key,
                recipient: "ann@example.com",
                subject: "Hi",
                message: b"Subject: Hi\r\n\r\nHello\r\n",
            })
            .collect();
        assert!(outbox.store(&mails).unwrap().iter().all(|stored| *stored));
        path
    }

    #[test]
    fn export_writes_each_email_under_its_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = outbox_with(dir.path(), &["k-1", "k-2.confirmation"]);
        let target = dir.path().join("exported");
        let count = export(&OutboxReader::open(&path).unwrap(), &target).unwrap();
        assert_eq!(count, 2);
        for key in ["k-1", "k-2.confirmation"] {
            let file = std::fs::read(target.join(format!("{key}.eml"))).unwrap();
            assert_eq!(file, b"Subject: Hi\r\n\r\nHello\r\n");
        }
    }

    #[test]
    fn export_into_a_place_that_cannot_hold_files_names_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = outbox_with(dir.path(), &["k-1"]);
        let file = dir.path().join("a-file");
        std::fs::write(&file, b"not a directory").unwrap();
        let target = file.join("exported");
        let error = export(&OutboxReader::open(&path).unwrap(), &target).unwrap_err();
        assert!(error.to_string().contains("cannot create"), "{error}");
        assert!(error.to_string().contains("a-file"), "{error}");
        // The outbox is untouched.
        assert_eq!(OutboxReader::open(&path).unwrap().list().unwrap().len(), 1);
    }

    #[test]
    fn export_refuses_a_key_that_is_not_a_file_name() {
        // The bakery never stores such keys; a hand-edited outbox might.
        for key in ["../escape", ".hidden", "a/b", ""] {
            let dir = tempfile::tempdir().unwrap();
            let path = outbox_with(dir.path(), &[key]);
            let target = dir.path().join("exported");
            let error = export(&OutboxReader::open(&path).unwrap(), &target).unwrap_err();
            assert!(
                error.to_string().contains("not a file name"),
                "{key}: {error}"
            );
            assert_eq!(std::fs::read_dir(&target).unwrap().count(), 0, "{key}");
            assert!(!dir.path().join("escape.eml").exists());
        }
    }
}
