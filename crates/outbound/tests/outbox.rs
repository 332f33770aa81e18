//! OutboxMailer against a real outbox file in a temporary directory, read
//! back the way `bakery outbox` reads it.

mod common;

use std::fs;
use std::path::Path;

use common::{Eml, decode_words, email};
use domain::ports::{MailError, Mailer};
use embedded::OutboxReader;
use outbound::OutboxMailer;

const FROM: &str = "Cake Bakery <orders@bakery.example>";

fn outbox() -> (tempfile::TempDir, OutboxMailer) {
    let tmp = tempfile::tempdir().unwrap();
    let mailer = OutboxMailer::new(tmp.path().join("outbox.sqlite3"), FROM.into()).unwrap();
    (tmp, mailer)
}

/// The keys in the outbox, in the order they were stored.
fn keys(path: &Path) -> Vec<String> {
    let reader = OutboxReader::open(path).unwrap();
    reader.list().unwrap().into_iter().map(|m| m.key).collect()
}

/// The message stored under `key`.
fn message(path: &Path, key: &str) -> Vec<u8> {
    let reader = OutboxReader::open(path).unwrap();
    reader
        .message(key)
        .unwrap()
        .expect("the email is in the outbox")
}

#[tokio::test]
async fn keeps_one_rfc5322_message_under_its_key() {
    let (_tmp, mailer) = outbox();
    assert!(mailer.path().is_file(), "created by new");
    mailer
        .send(&email(
            "order-1",
            "Ann <ann@example.com>",
            "Your cake is ready",
            "Hello Ann,\nyour cake is ready.\n",
        ))
        .await
        .unwrap();

    assert_eq!(keys(mailer.path()), vec!["order-1"]);
    let listed = &OutboxReader::open(mailer.path()).unwrap().list().unwrap()[0];
    assert_eq!(listed.recipient, "Ann <ann@example.com>");
    assert_eq!(listed.subject, "Your cake is ready");
    assert!((chrono::Utc::now() - listed.sent_at).num_seconds() < 60);

    let raw = message(mailer.path(), "order-1");
    let text = String::from_utf8(raw.clone()).unwrap();
    for header in ["From:", "To:", "Subject:", "Message-ID:", "Date:"] {
        assert!(text.contains(&format!("\r\n{header} ")) || text.starts_with(header));
    }

    let eml = Eml::parse(&raw);
    assert_eq!(
        eml.header("From"),
        "\"Cake Bakery\" <orders@bakery.example>"
    );
    assert_eq!(eml.header("To"), "Ann <ann@example.com>");
    assert_eq!(eml.header("Subject"), "Your cake is ready");
    assert_eq!(eml.header("Message-ID"), "<order-1@bakery.local>");
    assert!(
        chrono::DateTime::parse_from_rfc2822(eml.header("Date")).is_ok(),
        "{}",
        eml.header("Date")
    );
    assert_eq!(eml.header("Content-Type"), "text/plain; charset=utf-8");
    assert_eq!(eml.text(), "Hello Ann,\r\nyour cake is ready.\r\n");
}

#[tokio::test]
async fn sending_the_same_key_again_keeps_the_first_email() {
    let (_tmp, mailer) = outbox();
    mailer
        .send(&email("k-2", "ann@example.com", "First", "one"))
        .await
        .unwrap();
    let before = message(mailer.path(), "k-2");

    mailer
        .send(&email("k-2", "ann@example.com", "Second", "two"))
        .await
        .unwrap();

    assert_eq!(message(mailer.path(), "k-2"), before);
    assert_eq!(Eml::parse(&before).header("Subject"), "First");
    assert_eq!(keys(mailer.path()), vec!["k-2"]);
}

#[tokio::test]
async fn a_sent_email_survives_a_restart_and_is_not_sent_twice() {
    // What a consumer retried after a crash does: the same key again, from
    // a new process's mailer on the same file.
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("outbox.sqlite3");
    let first = OutboxMailer::new(path.clone(), FROM.into()).unwrap();
    first
        .send(&email("k-3", "ann@example.com", "Once", "three"))
        .await
        .unwrap();
    drop(first);

    let second = OutboxMailer::new(path.clone(), FROM.into()).unwrap();
    second
        .send(&email("k-3", "ann@example.com", "Twice", "three"))
        .await
        .unwrap();
    assert_eq!(keys(&path), vec!["k-3"]);
    assert_eq!(Eml::parse(&message(&path, "k-3")).header("Subject"), "Once");
}

#[tokio::test]
async fn a_subject_cannot_add_headers() {
    let (_tmp, mailer) = outbox();
    mailer
        .send(&email(
            "k-3",
            "ann@example.com",
            "Hi\r\nBcc: evil@x\nX-Evil: 1\rTo: evil@y",
            "body",
        ))
        .await
        .unwrap();
    let eml = Eml::parse(&message(mailer.path(), "k-3"));
    for name in ["Bcc", "X-Evil", "Cc"] {
        assert!(!eml.has_header(name), "{name} injected");
    }
    assert_eq!(eml.header("To"), "ann@example.com");
    // The text survives, on the one subject line.
    assert_eq!(
        decode_words(eml.header("Subject")),
        "Hi  Bcc: evil@x X-Evil: 1 To: evil@y"
    );
}

#[tokio::test]
async fn invalid_addresses_are_rejected_and_nothing_is_written() {
    let (_tmp, mailer) = outbox();
    for to in [
        "not-an-address",
        "ann@example.com\r\nBcc: evil@x",
        "ann@example.com, bob@example.com",
        "",
    ] {
        let err = mailer
            .send(&email("k-4", to, "Hi", "body"))
            .await
            .unwrap_err();
        assert!(matches!(err, MailError::Rejected(_)), "{to:?}: {err:?}");
    }
    // A key that would escape the outbox is refused too.
    let err = mailer
        .send(&email("../escape", "ann@example.com", "Hi", "body"))
        .await
        .unwrap_err();
    assert!(matches!(err, MailError::Rejected(_)), "{err:?}");
    assert!(keys(mailer.path()).is_empty());

    let tmp = tempfile::tempdir().unwrap();
    let err = OutboxMailer::new(
        tmp.path().join("outbox.sqlite3"),
        "bakery\r\nBcc: x@y".into(),
    )
    .unwrap_err();
    assert!(matches!(err, MailError::Rejected(_)), "{err:?}");
}

#[tokio::test]
async fn an_unwritable_outbox_is_unavailable() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("plain-file");
    fs::write(&file, b"not a directory").unwrap();

    let err = OutboxMailer::new(file.join("outbox.sqlite3"), FROM.into()).unwrap_err();
    assert!(matches!(err, MailError::Unavailable(_)), "{err:?}");

    // A file that is not an outbox.
    let err = OutboxMailer::new(file.clone(), FROM.into()).unwrap_err();
    assert!(matches!(err, MailError::Unavailable(_)), "{err:?}");

    // An outbox that worked at startup and was replaced by something that
    // is not one since: the email is not lost in the old file, it waits.
    let path = tmp.path().join("outbox.sqlite3");
    let mailer = OutboxMailer::new(path.clone(), FROM.into()).unwrap();
    fs::remove_file(&path).unwrap();
    fs::create_dir(&path).unwrap();
    let err = mailer
        .send(&email("k-5", "ann@example.com", "Hi", "body"))
        .await
        .unwrap_err();
    assert!(matches!(err, MailError::Unavailable(_)), "{err:?}");
}

#[tokio::test]
async fn an_outbox_removed_after_startup_is_made_again() {
    let (_tmp, mailer) = outbox();
    mailer
        .send(&email("k-6", "ann@example.com", "Before", "body"))
        .await
        .unwrap();
    for suffix in ["", "-wal", "-shm"] {
        let mut file = mailer.path().as_os_str().to_owned();
        file.push(suffix);
        let _ = fs::remove_file(&file);
    }
    mailer
        .send(&email("k-6b", "ann@example.com", "After", "body"))
        .await
        .unwrap();
    assert_eq!(keys(mailer.path()), vec!["k-6b"]);
}

#[tokio::test]
async fn non_ascii_names_subjects_and_text_are_encoded() {
    let tmp = tempfile::tempdir().unwrap();
    let mailer = OutboxMailer::new(
        tmp.path().join("outbox.sqlite3"),
        "Bäckerei Zoë <zoe@bakery.example>".into(),
    )
    .unwrap();
    let subject = "Dein Kuchen für Jürgen ist fertig 🎂 – danke";
    mailer
        .send(&email(
            "k-7",
            "Jürgen Größ <juergen@example.com>",
            subject,
            "Grüße aus der Backstube!\n",
        ))
        .await
        .unwrap();

    let raw = message(mailer.path(), "k-7");
    assert!(raw.is_ascii(), "headers and body are 7-bit encoded");
    let eml = Eml::parse(&raw);
    assert_eq!(decode_words(eml.header("Subject")), subject);
    assert_eq!(
        decode_words(eml.header("From")),
        "Bäckerei Zoë <zoe@bakery.example>"
    );
    assert_eq!(
        decode_words(eml.header("To")),
        "Jürgen Größ <juergen@example.com>"
    );
    assert_eq!(eml.text(), "Grüße aus der Backstube!\r\n");
}

#[tokio::test]
async fn many_concurrent_sends_land_once_each() {
    let (_tmp, mailer) = outbox();
    // 300 sends of 100 keys at once: the writer groups them, and a key that
    // comes twice in a group or in later groups is written once.
    let sends = (0..300).map(|n| {
        let mailer = mailer.clone();
        async move {
            let key = format!("k-{}", n % 100);
            mailer
                .send(&email(&key, "ann@example.com", "Hi", &format!("body {n}")))
                .await
        }
    });
    let results = futures::future::join_all(sends).await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");

    let mut stored = keys(mailer.path());
    stored.sort();
    let mut expected: Vec<String> = (0..100).map(|n| format!("k-{n}")).collect();
    expected.sort();
    assert_eq!(stored, expected);
    for key in &expected {
        let eml = Eml::parse(&message(mailer.path(), key));
        assert_eq!(eml.header("To"), "ann@example.com");
    }
}
