//! [`SesMailer`]: email through SESv2 as a [`Mailer`].
//!
//! Plain text, UTF-8 subject and body, from one verified address
//! (`MAIL_FROM`). SES has no idempotency key, so sending is at least once:
//! the callers record a step on the order after sending and skip the email
//! when the step is already there, which keeps repeats rare.
//!
//! Errors: a refused message or sender (`MessageRejected`,
//! `MailFromDomainNotVerifiedException`, `BadRequestException`, or an
//! invalid parameter) is [`MailError::Rejected`], since sending it again
//! would be refused again; throttling, a paused or suspended account, quota
//! limits and every network failure are [`MailError::Unavailable`].

use async_trait::async_trait;
use aws_sdk_sesv2::error::ProvideErrorMetadata;
use aws_sdk_sesv2::operation::send_email::SendEmailError;
use aws_sdk_sesv2::types::{Body, Content, Destination, EmailContent, Message};
use domain::events::Email;
use domain::ports::{MailError, Mailer};

use crate::Clients;
use crate::error::describe;

/// Sends email from one address.
#[derive(Clone, Debug)]
pub struct SesMailer {
    client: aws_sdk_sesv2::Client,
    from: String,
}

impl SesMailer {
    /// A mailer sending from `from`, an SES-verified address (or an address
    /// on a verified domain).
    pub fn new(clients: &Clients, from: impl Into<String>) -> Self {
        SesMailer {
            client: clients.sesv2.clone(),
            from: from.into(),
        }
    }
}

fn utf8(text: &str) -> Result<Content, MailError> {
    Content::builder()
        .data(text)
        .charset("UTF-8")
        .build()
        .map_err(|e| MailError::Rejected(format!("building the email: {e}")))
}

#[async_trait]
impl Mailer for SesMailer {
    async fn send(&self, email: &Email) -> Result<(), MailError> {
        let message = Message::builder()
            .subject(utf8(&email.subject)?)
            .body(Body::builder().text(utf8(&email.text)?).build())
            .build();
        let result = self
            .client
            .send_email()
            .from_email_address(&self.from)
            .destination(Destination::builder().to_addresses(&email.to).build())
            .content(EmailContent::builder().simple(message).build())
            .send()
            .await;
        let error = match result {
            Ok(output) => {
                tracing::info!(
                    key = %email.key,
                    ses_message_id = output.message_id().unwrap_or_default(),
                    "email sent"
                );
                return Ok(());
            }
            Err(error) => error,
        };
        let message = describe("SendEmail", &error);
        let rejected = match error.as_service_error() {
            Some(
                SendEmailError::MessageRejected(_)
                | SendEmailError::MailFromDomainNotVerifiedException(_)
                | SendEmailError::BadRequestException(_),
            ) => true,
            // Not in SESv2's model, but what SES (and emulators) answer for
            // a malformed address.
            Some(other) => other.code() == Some("InvalidParameterValue"),
            None => false,
        };
        if rejected {
            tracing::error!(key = %email.key, error = %message, "email rejected");
            Err(MailError::Rejected(message))
        } else {
            tracing::warn!(key = %email.key, error = %message, "mail unavailable");
            Err(MailError::Unavailable(message))
        }
    }
}
