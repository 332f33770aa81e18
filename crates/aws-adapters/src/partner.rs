//! How a partner function (notify-delivery, feedback) reaches its partner
//! on AWS: a signed webhook when its URL is set, else email through SES.
//! Decided from the environment before any client is built, so a missing
//! variable stops the cold start with its name.

use std::sync::Arc;
use std::time::Duration;

use domain::ports::PartnerNotifier;
use outbound::{EmailPartner, RetryPolicy, WebhookNotifier};

use crate::{Clients, SesMailer, env};

pub enum PartnerConfig {
    Webhook(WebhookNotifier),
    /// Email through SES from `from`, at most `max_send_rate` a second.
    Email {
        to: String,
        from: String,
        max_send_rate: std::num::NonZeroU32,
    },
}

impl PartnerConfig {
    /// Reads `webhook_var` (with `WEBHOOK_SECRET`), or else `email_var`
    /// (with `MAIL_FROM` and the optional `SES_MAX_SEND_RATE`).
    pub fn from_env(webhook_var: &str, email_var: &str) -> Result<PartnerConfig, String> {
        match env::optional(webhook_var) {
            Some(url) => {
                let url = url.parse().map_err(|e| format!("{webhook_var}: {e}"))?;
                let secret = env::required("WEBHOOK_SECRET").map_err(|e| e.to_string())?;
                let webhook = WebhookNotifier::new(url, &secret, within_function_timeout())
                    .map_err(|e| format!("{webhook_var}: {e}"))?;
                Ok(PartnerConfig::Webhook(webhook))
            }
            None => Ok(PartnerConfig::Email {
                to: env::required(email_var)
                    .map_err(|_| format!("set {webhook_var} or {email_var}"))?,
                from: env::required("MAIL_FROM").map_err(|e| e.to_string())?,
                max_send_rate: crate::ses::max_send_rate_from_env()?,
            }),
        }
    }

    pub fn build(self, clients: &Clients) -> Arc<dyn PartnerNotifier> {
        match self {
            PartnerConfig::Webhook(webhook) => Arc::new(webhook),
            PartnerConfig::Email {
                to,
                from,
                max_send_rate,
            } => Arc::new(EmailPartner::new(
                Arc::new(SesMailer::with_max_send_rate(clients, from, max_send_rate)),
                to,
            )),
        }
    }
}

/// Partner retries that fit the functions' 30 s timeout: at most three
/// tries of 5 s plus backoff. Longer outages are the queue's to retry.
fn within_function_timeout() -> RetryPolicy {
    RetryPolicy {
        attempts: 3,
        timeout: Duration::from_secs(5),
        ..RetryPolicy::default()
    }
}
