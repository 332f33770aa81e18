//! SmtpMailer against a minimal SMTP server started in the test.

mod common;

use std::time::Duration;

use common::{Eml, email};
use domain::ports::{MailError, Mailer};
use outbound::SmtpMailer;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

const FROM: &str = "Cake Bakery <orders@bakery.example>";
const TIMEOUT: Duration = Duration::from_secs(5);

/// What one SMTP session delivered.
#[derive(Debug)]
struct Delivery {
    commands: Vec<String>,
    data: String,
}

/// The replies that vary between the tests' servers.
#[derive(Clone, Copy)]
struct Replies {
    mail: &'static str,
    rcpt: &'static str,
}

const ACCEPT_ALL: Replies = Replies {
    mail: "250 2.1.0 Ok",
    rcpt: "250 2.1.5 Ok",
};

/// Starts a server on 127.0.0.1:0 speaking just enough SMTP. Each message
/// accepted after DATA is sent on the channel *before* the final 250, so
/// once the client's send returns, the delivery is there to receive.
async fn smtp_server(replies: Replies) -> (u16, mpsc::UnboundedReceiver<Delivery>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(session(stream, replies, tx.clone()));
        }
    });
    (port, rx)
}

async fn session(stream: TcpStream, replies: Replies, deliveries: mpsc::UnboundedSender<Delivery>) {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read);
    let mut commands = Vec::new();
    let reply = |text: &str| format!("{text}\r\n");
    if write
        .write_all(reply("220 test.local ESMTP ready").as_bytes())
        .await
        .is_err()
    {
        return;
    }
    loop {
        let mut line = String::new();
        match lines.read_line(&mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let command = line.trim_end().to_owned();
        let verb = command
            .split([' ', ':'])
            .next()
            .unwrap_or("")
            .to_ascii_uppercase();
        commands.push(command);
        let answer = match verb.as_str() {
            "EHLO" | "HELO" => "250 test.local".to_owned(),
            "MAIL" => replies.mail.to_owned(),
            "RCPT" => replies.rcpt.to_owned(),
            "RSET" | "NOOP" => "250 Ok".to_owned(),
            "QUIT" => {
                let _ = write.write_all(reply("221 Bye").as_bytes()).await;
                return;
            }
            "DATA" => {
                if write
                    .write_all(reply("354 End data with <CR><LF>.<CR><LF>").as_bytes())
                    .await
                    .is_err()
                {
                    return;
                }
                let mut data = String::new();
                loop {
                    let mut line = String::new();
                    match lines.read_line(&mut line).await {
                        Ok(0) | Err(_) => return,
                        Ok(_) => {}
                    }
                    if line == ".\r\n" {
                        // The CRLF before the dot belongs to the terminator.
                        if data.ends_with("\r\n\r\n") {
                            data.truncate(data.len() - 2);
                        }
                        break;
                    }
                    // Undo dot-stuffing.
                    data.push_str(line.strip_prefix('.').unwrap_or(&line));
                }
                let _ = deliveries.send(Delivery {
                    commands: std::mem::take(&mut commands),
                    data,
                });
                "250 2.0.0 Ok: queued".to_owned()
            }
            _ => "502 5.5.2 Command not recognized".to_owned(),
        };
        if write.write_all(reply(&answer).as_bytes()).await.is_err() {
            return;
        }
    }
}

fn mailer(port: u16) -> SmtpMailer {
    SmtpMailer::from_url(&format!("smtp://127.0.0.1:{port}"), FROM.into(), TIMEOUT).unwrap()
}

#[tokio::test]
async fn delivers_the_message_with_a_key_derived_message_id() {
    let (port, mut deliveries) = smtp_server(ACCEPT_ALL).await;
    mailer(port)
        .send(&email(
            "order-42",
            "Ann <ann@example.com>",
            "Your cake is ready\r\nBcc: evil@x",
            "Hello Ann,\n.\nsee you.\n",
        ))
        .await
        .unwrap();

    let delivery = deliveries.try_recv().expect("a delivered message");
    assert!(
        delivery
            .commands
            .iter()
            .any(|c| c == "MAIL FROM:<orders@bakery.example>"),
        "{:?}",
        delivery.commands
    );
    let rcpts: Vec<&String> = delivery
        .commands
        .iter()
        .filter(|c| c.starts_with("RCPT"))
        .collect();
    assert_eq!(
        rcpts,
        vec!["RCPT TO:<ann@example.com>"],
        "only the one recipient"
    );

    let eml = Eml::parse(delivery.data.as_bytes());
    assert_eq!(eml.header("Message-ID"), "<order-42@bakery.local>");
    assert_eq!(
        eml.header("From"),
        "\"Cake Bakery\" <orders@bakery.example>"
    );
    assert_eq!(eml.header("To"), "Ann <ann@example.com>");
    assert_eq!(eml.header("Subject"), "Your cake is ready  Bcc: evil@x");
    assert!(!eml.has_header("Bcc"));
    assert_eq!(eml.text(), "Hello Ann,\r\n.\r\nsee you.\r\n");
}

#[tokio::test]
async fn a_transient_reply_is_unavailable() {
    let (port, mut deliveries) = smtp_server(Replies {
        mail: "451 4.3.0 Try again later",
        ..ACCEPT_ALL
    })
    .await;
    let err = mailer(port)
        .send(&email("k-1", "ann@example.com", "Hi", "body"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, MailError::Unavailable(why) if why.contains("451")),
        "{err:?}"
    );
    assert!(deliveries.try_recv().is_err(), "nothing delivered");
}

#[tokio::test]
async fn a_permanent_reply_is_rejected() {
    let (port, mut deliveries) = smtp_server(Replies {
        rcpt: "550 5.1.1 No such user",
        ..ACCEPT_ALL
    })
    .await;
    let err = mailer(port)
        .send(&email("k-2", "nobody@example.com", "Hi", "body"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, MailError::Rejected(why) if why.contains("550")),
        "{err:?}"
    );
    assert!(deliveries.try_recv().is_err(), "nothing delivered");
}

#[tokio::test]
async fn a_closed_port_is_unavailable() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let err = mailer(port)
        .send(&email("k-3", "ann@example.com", "Hi", "body"))
        .await
        .unwrap_err();
    assert!(matches!(err, MailError::Unavailable(_)), "{err:?}");
}

#[tokio::test]
async fn a_silent_server_times_out_as_unavailable() {
    // Accepts and never greets.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    let mailer = SmtpMailer::from_url(
        &format!("smtp://127.0.0.1:{port}"),
        FROM.into(),
        Duration::from_millis(200),
    )
    .unwrap();
    let err = mailer
        .send(&email("k-4", "ann@example.com", "Hi", "body"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, MailError::Unavailable(why) if why.contains("no answer")),
        "{err:?}"
    );
    holder.abort();
}

#[tokio::test]
async fn invalid_input_is_rejected_before_connecting() {
    let (port, mut deliveries) = smtp_server(ACCEPT_ALL).await;
    let err = mailer(port)
        .send(&email(
            "k-5",
            "ann@example.com\r\nRCPT TO:<x@y>",
            "Hi",
            "body",
        ))
        .await
        .unwrap_err();
    assert!(matches!(err, MailError::Rejected(_)), "{err:?}");
    assert!(deliveries.try_recv().is_err());
}

#[test]
fn urls_are_checked_and_credentials_stay_out_of_debug() {
    for url in [
        "smtp://127.0.0.1:2525",
        "smtp://user:s3cret@mail.example.com:587?tls=required",
        "smtp://mail.example.com?tls=opportunistic",
        "smtps://mail.example.com",
    ] {
        let mailer = SmtpMailer::from_url(url, FROM.into(), TIMEOUT).unwrap();
        assert!(!format!("{mailer:?}").contains("s3cret"));
    }
    for url in [
        "ftp://mail.example.com",
        "not a url",
        "smtp://host?tls=sometimes",
    ] {
        let err = SmtpMailer::from_url(url, FROM.into(), TIMEOUT).unwrap_err();
        assert!(matches!(err, MailError::Rejected(_)), "{url}: {err:?}");
    }
    let err =
        SmtpMailer::from_url("smtp://127.0.0.1:2525", "no mailbox".into(), TIMEOUT).unwrap_err();
    assert!(matches!(err, MailError::Rejected(_)), "{err:?}");
}
