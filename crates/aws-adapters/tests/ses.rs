//! `SesMailer` against moto's SESv2; sent mail is read back from moto's
//! model data (`GET /moto-api/data.json`, `ses.Message`).

mod support;

use aws_adapters::SesMailer;
use aws_config::retry::RetryConfig;
use domain::events::Email;
use domain::ports::{MailError, Mailer};
use support::{Moto, clients_for, free_port};

const FROM: &str = "orders@bakery.example";

fn email(to: &str) -> Email {
    Email {
        key: "baker-notified/1".into(),
        to: to.into(),
        subject: "Please bake: 2 × Crème brûlée cake".into(),
        text: "Deliver to 12 Rue de la Pâtisserie.\nThank you!".into(),
    }
}

#[tokio::test]
async fn an_email_from_a_verified_address_is_sent() {
    let moto = Moto::start().await;
    let clients = moto.clients().await;
    clients
        .sesv2()
        .create_email_identity()
        .email_identity(FROM)
        .send()
        .await
        .unwrap();

    SesMailer::new(&clients, FROM)
        .send(&email("baker@bakery.example"))
        .await
        .unwrap();

    let sent = moto.sent_emails().await;
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0]["source"], FROM);
    assert_eq!(
        sent[0]["destinations"]["ToAddresses"][0],
        "baker@bakery.example"
    );
    assert_eq!(sent[0]["subject"], email("").subject);
    assert_eq!(sent[0]["body"], email("").text);
}

#[tokio::test]
async fn an_unverified_sender_or_a_bad_address_is_rejected() {
    let moto = Moto::start().await;
    let clients = moto.clients().await;
    let error = SesMailer::new(&clients, FROM)
        .send(&email("baker@bakery.example"))
        .await
        .unwrap_err();
    assert!(
        matches!(error, MailError::Rejected(ref m) if m.contains("MessageRejected")),
        "{error:?}"
    );

    clients
        .sesv2()
        .create_email_identity()
        .email_identity(FROM)
        .send()
        .await
        .unwrap();
    let error = SesMailer::new(&clients, FROM)
        .send(&email("not an address"))
        .await
        .unwrap_err();
    assert!(matches!(error, MailError::Rejected(_)), "{error:?}");
    assert!(moto.sent_emails().await.is_empty());
}

#[tokio::test]
async fn an_unreachable_mail_service_is_unavailable() {
    let fast = RetryConfig::standard()
        .with_max_attempts(2)
        .with_initial_backoff(std::time::Duration::from_millis(10));
    let nowhere = clients_for(&format!("http://127.0.0.1:{}", free_port()), Some(fast)).await;
    let error = SesMailer::new(&nowhere, FROM)
        .send(&email("baker@bakery.example"))
        .await
        .unwrap_err();
    assert!(matches!(error, MailError::Unavailable(_)), "{error:?}");
}
