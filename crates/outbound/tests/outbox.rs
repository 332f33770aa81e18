//! OutboxMailer against a real temporary directory.

mod common;

use std::fs;

use common::{Eml, decode_words, email};
use domain::ports::{MailError, Mailer};
use outbound::OutboxMailer;

const FROM: &str = "Cake Bakery <orders@bakery.example>";

fn outbox() -> (tempfile::TempDir, OutboxMailer) {
    let tmp = tempfile::tempdir().unwrap();
    let mailer = OutboxMailer::new(tmp.path().join("outbox"), FROM.into()).unwrap();
    (tmp, mailer)
}

fn entries(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn writes_one_rfc5322_file_named_by_key() {
    let (_tmp, mailer) = outbox();
    assert!(mailer.dir().is_dir(), "created by new");
    mailer
        .send(&email(
            "order-1",
            "Ann <ann@example.com>",
            "Your cake is ready",
            "Hello Ann,\nyour cake is ready.\n",
        ))
        .await
        .unwrap();

    // Only the mail: no temp file left behind.
    assert_eq!(entries(mailer.dir()), vec!["order-1.eml"]);
    let raw = fs::read(mailer.dir().join("order-1.eml")).unwrap();
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
async fn sending_the_same_key_again_leaves_the_file_alone() {
    let (_tmp, mailer) = outbox();
    let path = mailer.dir().join("k-2.eml");
    mailer
        .send(&email("k-2", "ann@example.com", "First", "one"))
        .await
        .unwrap();
    let before = fs::read(&path).unwrap();
    let modified = fs::metadata(&path).unwrap().modified().unwrap();

    mailer
        .send(&email("k-2", "ann@example.com", "Second", "two"))
        .await
        .unwrap();

    assert_eq!(fs::read(&path).unwrap(), before);
    assert_eq!(fs::metadata(&path).unwrap().modified().unwrap(), modified);
    assert_eq!(Eml::parse(&before).header("Subject"), "First");
    assert_eq!(entries(mailer.dir()), vec!["k-2.eml"]);
}

#[tokio::test]
async fn an_empty_file_left_by_a_crash_is_written_again() {
    // A crash after a mail got its name but before it was synced can leave
    // the name on an empty file; that mail was never sent.
    let (_tmp, mailer) = outbox();
    let path = mailer.dir().join("k-3.eml");
    fs::write(&path, b"").unwrap();

    mailer
        .send(&email("k-3", "ann@example.com", "Again", "three"))
        .await
        .unwrap();

    let eml = Eml::parse(&fs::read(&path).unwrap());
    assert_eq!(eml.header("Subject"), "Again");
    assert_eq!(entries(mailer.dir()), vec!["k-3.eml"], "no temp file left");
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
    let eml = Eml::parse(&fs::read(mailer.dir().join("k-3.eml")).unwrap());
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
    assert!(entries(mailer.dir()).is_empty());

    let tmp = tempfile::tempdir().unwrap();
    let err = OutboxMailer::new(tmp.path().to_path_buf(), "bakery\r\nBcc: x@y".into()).unwrap_err();
    assert!(matches!(err, MailError::Rejected(_)), "{err:?}");
}

#[tokio::test]
async fn an_unwritable_outbox_is_unavailable() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("plain-file");
    fs::write(&file, b"not a directory").unwrap();

    let err = OutboxMailer::new(file.join("outbox"), FROM.into()).unwrap_err();
    assert!(matches!(err, MailError::Unavailable(_)), "{err:?}");

    // An outbox that worked at startup and was replaced by a file since.
    let dir = tmp.path().join("outbox");
    let mailer = OutboxMailer::new(dir.clone(), FROM.into()).unwrap();
    fs::remove_dir(&dir).unwrap();
    fs::write(&dir, b"now a file").unwrap();
    let err = mailer
        .send(&email("k-5", "ann@example.com", "Hi", "body"))
        .await
        .unwrap_err();
    assert!(matches!(err, MailError::Unavailable(_)), "{err:?}");
}

#[tokio::test]
async fn an_outbox_removed_after_startup_is_recreated() {
    let (_tmp, mailer) = outbox();
    fs::remove_dir(mailer.dir()).unwrap();
    mailer
        .send(&email("k-6", "ann@example.com", "Hi", "body"))
        .await
        .unwrap();
    assert_eq!(entries(mailer.dir()), vec!["k-6.eml"]);
}

#[tokio::test]
async fn non_ascii_names_subjects_and_text_are_encoded() {
    let tmp = tempfile::tempdir().unwrap();
    let mailer = OutboxMailer::new(
        tmp.path().to_path_buf(),
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

    let raw = fs::read(tmp.path().join("k-7.eml")).unwrap();
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
async fn many_concurrent_sends_land_once_each_and_leave_no_temp_files() {
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

    let mut expected: Vec<String> = (0..100).map(|n| format!("k-{n}.eml")).collect();
    expected.sort();
    assert_eq!(entries(mailer.dir()), expected);
    for name in &expected {
        let eml = Eml::parse(&fs::read(mailer.dir().join(name)).unwrap());
        assert_eq!(eml.header("To"), "ann@example.com");
    }
}
