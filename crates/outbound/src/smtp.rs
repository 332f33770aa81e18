//! [`SmtpMailer`]: emails over SMTP with lettre.
//!
//! SMTP cannot be made idempotent from the client side (a connection lost
//! after the final `.` may or may not have delivered), so sending is at
//! least once; the Message-ID derived from the key lets receivers and
//! their mail stores drop the duplicates.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use domain::events::Email;
use domain::ports::{MailError, Mailer};
use lettre::message::Mailbox;
use lettre::transport::smtp::Error as SmtpError;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

use crate::mail::{build_message, parse_mailbox};

/// Sends emails through one SMTP server.
#[derive(Clone)]
pub struct SmtpMailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    timeout: Duration,
    /// `host:port` for errors and logs; never the credentials.
    server: String,
}

impl SmtpMailer {
    /// A mailer for the server in `url`, in lettre's connection URL format:
    /// `smtp://host:2525` (plain, no TLS), `smtp://user:pass@host:587?tls=required`
    /// (STARTTLS), `smtp://host?tls=opportunistic`, `smtps://host` (TLS from
    /// the start). `timeout` bounds each send as a whole, from connecting
    /// to the server's answer after the message: lettre's async transport
    /// only bounds connecting, and a server that stalls afterwards must not
    /// hold a Lambda until it is killed.
    ///
    /// An invalid URL or `from` → [`MailError::Rejected`]. Nothing is
    /// connected yet: each send opens its own connection.
    pub fn from_url(url: &str, from: String, timeout: Duration) -> Result<SmtpMailer, MailError> {
        let from = parse_mailbox("from", &from)?;
        // lettre's errors here name the problem, not the URL, so the
        // password in it cannot leak into logs.
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
            .map_err(|e| MailError::Rejected(format!("invalid SMTP URL: {e}")))?
            .timeout(Some(timeout))
            .build();
        let server = reqwest::Url::parse(url)
            .ok()
            .and_then(|u| {
                let host = u.host_str()?.to_owned();
                Some(match u.port() {
                    Some(port) => format!("{host}:{port}"),
                    None => host,
                })
            })
            .unwrap_or_else(|| "smtp server".to_owned());
        Ok(SmtpMailer {
            transport,
            from,
            timeout,
            server,
        })
    }
}

impl fmt::Debug for SmtpMailer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmtpMailer")
            .field("server", &self.server)
            .field("from", &self.from.to_string())
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl Mailer for SmtpMailer {
    async fn send(&self, email: &Email) -> Result<(), MailError> {
        let message = build_message(&self.from, email)?;
        // A timeout may strike after the server took the message; the
        // retry that follows is why delivery is "at least once".
        match tokio::time::timeout(self.timeout, self.transport.send(message)).await {
            Ok(Ok(_)) => {
                tracing::debug!(key = %email.key, server = %self.server, "mail sent");
                Ok(())
            }
            Ok(Err(e)) => Err(classify(&self.server, &e)),
            Err(_) => Err(MailError::Unavailable(format!(
                "{}: no answer within {:?}",
                self.server, self.timeout
            ))),
        }
    }
}

/// 5xx replies and client-side refusals (e.g. a non-ASCII address the
/// server cannot take) are final for this email; everything else (4xx,
/// connection, timeout, TLS, garbled replies) may pass later.
///
/// Authentication failures are 5xx but say nothing about the email: they
/// are a configuration problem, fixed by an operator, after which the same
/// email should go out. So they count as unavailable, not rejected.
fn classify(server: &str, e: &SmtpError) -> MailError {
    let why = format!("{server}: {e}");
    let auth_failure = e
        .status()
        .is_some_and(|code| matches!(u16::from(code), 530 | 534 | 535 | 538));
    if e.is_client() || (e.is_permanent() && !auth_failure) {
        MailError::Rejected(why)
    } else {
        MailError::Unavailable(why)
    }
}
