//! EmailPartner over a real OutboxMailer.

mod common;

use std::fs;
use std::path::Path;
use std::sync::Arc;

use common::Eml;
use domain::events::PartnerMessage;
use domain::ports::{NotifyError, PartnerNotifier};
use embedded::OutboxReader;
use outbound::{EmailPartner, OutboxMailer};

fn message() -> PartnerMessage {
    PartnerMessage {
        id: "7d0e1f2a-3b4c-5d6e-8f90-a1b2c3d4e5f6".into(),
        event_type: "feedback.received".into(),
        payload: serde_json::json!({"orderId": "o-7"}),
        subject: "Feedback for order o-7".into(),
        text: "Lovely cake, thank you!".into(),
    }
}

fn partner(outbox: &Path, to: &str) -> EmailPartner {
    let mailer = OutboxMailer::new(
        outbox.to_path_buf(),
        "Bakery <orders@bakery.example>".into(),
    )
    .unwrap();
    EmailPartner::new(Arc::new(mailer), to.into())
}

#[tokio::test]
async fn sends_the_message_as_an_email_keyed_by_its_id() {
    let tmp = tempfile::tempdir().unwrap();
    let outbox = tmp.path().join("outbox.sqlite3");
    let partner = partner(&outbox, "care@partner.example");
    partner.notify(&message()).await.unwrap();
    // Idempotent like the mailer beneath.
    partner.notify(&message()).await.unwrap();

    let reader = OutboxReader::open(&outbox).unwrap();
    let keys: Vec<String> = reader.list().unwrap().into_iter().map(|m| m.key).collect();
    assert_eq!(keys, vec![message().id]);
    let raw = reader.message(&message().id).unwrap().unwrap();
    let eml = Eml::parse(&raw);
    assert_eq!(eml.header("To"), "care@partner.example");
    assert_eq!(eml.header("Subject"), "Feedback for order o-7");
    assert_eq!(
        eml.header("Message-ID"),
        format!("<{}@bakery.local>", message().id)
    );
    assert_eq!(eml.text(), "Lovely cake, thank you!");
}

#[tokio::test]
async fn a_rejected_mail_is_a_rejected_notification() {
    let tmp = tempfile::tempdir().unwrap();
    let err = partner(&tmp.path().join("outbox.sqlite3"), "not an address")
        .notify(&message())
        .await
        .unwrap_err();
    assert!(matches!(err, NotifyError::Rejected(_)), "{err:?}");
}

#[tokio::test]
async fn an_unavailable_mailer_is_an_unavailable_partner() {
    let tmp = tempfile::tempdir().unwrap();
    let outbox = tmp.path().join("outbox.sqlite3");
    let partner = partner(&outbox, "care@partner.example");
    // A directory where the outbox was: it cannot be opened again.
    fs::remove_file(&outbox).unwrap();
    fs::create_dir(&outbox).unwrap();
    let err = partner.notify(&message()).await.unwrap_err();
    assert!(matches!(err, NotifyError::Unavailable(_)), "{err:?}");
}
