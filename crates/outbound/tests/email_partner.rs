//! EmailPartner over a real OutboxMailer.

mod common;

use std::fs;
use std::sync::Arc;

use common::Eml;
use domain::events::PartnerMessage;
use domain::ports::{NotifyError, PartnerNotifier};
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

fn partner(dir: &std::path::Path, to: &str) -> EmailPartner {
    let mailer =
        OutboxMailer::new(dir.to_path_buf(), "Bakery <orders@bakery.example>".into()).unwrap();
    EmailPartner::new(Arc::new(mailer), to.into())
}

#[tokio::test]
async fn sends_the_message_as_an_email_keyed_by_its_id() {
    let tmp = tempfile::tempdir().unwrap();
    let partner = partner(tmp.path(), "care@partner.example");
    partner.notify(&message()).await.unwrap();
    // Idempotent like the mailer beneath.
    partner.notify(&message()).await.unwrap();

    let raw = fs::read(tmp.path().join(format!("{}.eml", message().id))).unwrap();
    let eml = Eml::parse(&raw);
    assert_eq!(eml.header("To"), "care@partner.example");
    assert_eq!(eml.header("Subject"), "Feedback for order o-7");
    assert_eq!(
        eml.header("Message-ID"),
        format!("<{}@bakery.local>", message().id)
    );
    assert_eq!(eml.text(), "Lovely cake, thank you!");
    assert_eq!(fs::read_dir(tmp.path()).unwrap().count(), 1);
}

#[tokio::test]
async fn a_rejected_mail_is_a_rejected_notification() {
    let tmp = tempfile::tempdir().unwrap();
    let err = partner(tmp.path(), "not an address")
        .notify(&message())
        .await
        .unwrap_err();
    assert!(matches!(err, NotifyError::Rejected(_)), "{err:?}");
}

#[tokio::test]
async fn an_unavailable_mailer_is_an_unavailable_partner() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("outbox");
    let partner = partner(&dir, "care@partner.example");
    fs::remove_dir(&dir).unwrap();
    fs::write(&dir, b"a file where the outbox was").unwrap();
    let err = partner.notify(&message()).await.unwrap_err();
    assert!(matches!(err, NotifyError::Unavailable(_)), "{err:?}");
}
