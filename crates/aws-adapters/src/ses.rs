//! [`SesMailer`]: email through SESv2 as a [`Mailer`].
//!
//! Plain text, UTF-8 subject and body, from one verified address
//! (`MAIL_FROM`). SES has no idempotency key, so sending is at least once:
//! the callers record a step on the order after sending and skip the email
//! when the step is already there, which keeps repeats rare.
//!
//! # Send rate
//!
//! SES allows an account a number of emails per second (1 in the sandbox,
//! about 14 on a new production account) and answers `TooManyRequests`
//! above it. A mailer paces its sends to [`SesMailer::with_max_send_rate`]
//! (default [`DEFAULT_MAX_SEND_RATE`]), shared by its clones, so a backlog
//! after an outage goes out at that rate instead of in a burst. A send SES
//! still throttles waits and tries again, with jittered backoff, for up to
//! [`THROTTLE_PATIENCE`]: throttling slows the consumer down and does not
//! spend the record's own tries, which are for real failures.
//!
//! Errors: a refused message or sender (`MessageRejected`,
//! `MailFromDomainNotVerifiedException`, `BadRequestException`, or an
//! invalid parameter) is [`MailError::Rejected`], since sending it again
//! would be refused again; throttling past the patience, a paused or
//! suspended account, quota limits and every network failure are
//! [`MailError::Unavailable`].

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_sesv2::error::ProvideErrorMetadata;
use aws_sdk_sesv2::operation::send_email::SendEmailError;
use aws_sdk_sesv2::types::{Body, Content, Destination, EmailContent, Message};
use backon::{ExponentialBuilder, Retryable};
use domain::events::Email;
use domain::ports::{MailError, Mailer};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

use crate::Clients;
use crate::error::describe;

/// The emails per second a mailer sends at most unless told otherwise: a
/// new production account's rate.
pub const DEFAULT_MAX_SEND_RATE: NonZeroU32 = NonZeroU32::new(14).unwrap();

/// How long one send waits out throttling before it gives up as
/// [`MailError::Unavailable`]: well inside a function's 30 s timeout.
pub const THROTTLE_PATIENCE: Duration = Duration::from_secs(20);

/// Sends email from one address, at most at its send rate.
#[derive(Clone)]
pub struct SesMailer {
    client: aws_sdk_sesv2::Client,
    from: String,
    /// Shared by clones: one pace for everything one process sends.
    pace: Arc<DefaultDirectRateLimiter>,
}

impl std::fmt::Debug for SesMailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SesMailer")
            .field("from", &self.from)
            .finish()
    }
}

impl SesMailer {
    /// A mailer sending from `from`, an SES-verified address (or an address
    /// on a verified domain), at [`DEFAULT_MAX_SEND_RATE`].
    pub fn new(clients: &Clients, from: impl Into<String>) -> Self {
        Self::with_max_send_rate(clients, from, DEFAULT_MAX_SEND_RATE)
    }

    /// A mailer sending at most `per_second` emails a second. Each process
    /// (each running function instance) paces itself: give each its share
    /// of the account's rate.
    pub fn with_max_send_rate(
        clients: &Clients,
        from: impl Into<String>,
        per_second: NonZeroU32,
    ) -> Self {
        SesMailer {
            client: clients.sesv2(),
            from: from.into(),
            pace: Arc::new(RateLimiter::direct(Quota::per_second(per_second))),
        }
    }

    /// A function's mailer, from `from` (the function's `MAIL_FROM`), at
    /// [`max_send_rate_from_env`].
    pub fn from_env(clients: &Clients, from: impl Into<String>) -> Result<Self, String> {
        Ok(Self::with_max_send_rate(
            clients,
            from,
            max_send_rate_from_env()?,
        ))
    }

    /// One paced `SendEmail`.
    async fn send_once(&self, email: &Email, message: Message) -> Result<(), Refusal> {
        self.pace.until_ready().await;
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
        let service_error = error.as_service_error();
        let throttled = match service_error {
            Some(SendEmailError::TooManyRequestsException(_)) => true,
            Some(other) => matches!(
                other.code(),
                Some("Throttling" | "ThrottlingException" | "TooManyRequestsException")
            ),
            None => false,
        };
        if throttled {
            return Err(Refusal::Throttled(message));
        }
        let rejected = match service_error {
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
        Err(if rejected {
            Refusal::Mail(MailError::Rejected(message))
        } else {
            Refusal::Mail(MailError::Unavailable(message))
        })
    }
}

/// A function instance's send rate: `SES_MAX_SEND_RATE` (emails a second),
/// default [`DEFAULT_MAX_SEND_RATE`].
pub fn max_send_rate_from_env() -> Result<NonZeroU32, String> {
    match crate::env::optional("SES_MAX_SEND_RATE") {
        None => Ok(DEFAULT_MAX_SEND_RATE),
        Some(text) => text
            .trim()
            .parse::<NonZeroU32>()
            .map_err(|_| format!("SES_MAX_SEND_RATE must be a whole number from 1, not {text:?}")),
    }
}

/// Why one `SendEmail` did not send.
enum Refusal {
    /// Above the account's send rate: wait and send again.
    Throttled(String),
    Mail(MailError),
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
        let waits = ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(250))
            .with_max_delay(Duration::from_secs(4))
            .with_jitter()
            .without_max_times()
            .with_total_delay(Some(THROTTLE_PATIENCE));
        let result = (|| self.send_once(email, message.clone()))
            .retry(waits)
            .when(|refusal| matches!(refusal, Refusal::Throttled(_)))
            .notify(|_, wait| {
                tracing::info!(key = %email.key, ?wait, "SES throttled the email; waiting");
            })
            .await;
        match result {
            Ok(()) => Ok(()),
            Err(Refusal::Throttled(message)) => {
                tracing::warn!(key = %email.key, error = %message, "still throttled; mail unavailable");
                Err(MailError::Unavailable(message))
            }
            Err(Refusal::Mail(MailError::Rejected(message))) => {
                tracing::error!(key = %email.key, error = %message, "email rejected");
                Err(MailError::Rejected(message))
            }
            Err(Refusal::Mail(error)) => {
                tracing::warn!(key = %email.key, %error, "mail unavailable");
                Err(error)
            }
        }
    }
}
