//! How a partner function (notify-delivery, feedback) reaches its partner
//! on AWS: a signed webhook when its URL is set, else email through SES.
//! Decided from the environment before any client is built, so a missing
//! variable stops the cold start with its name.
//!
//! A webhook's signing secret is in SSM (`WEBHOOK_SECRET_PARAMETER`, see
//! [`crate::secrets`]) and may be rotated, so the configuration says which
//! secrets it needs ([`PartnerConfig::secret_parameters`]) and [`Partner`]
//! builds the notifier from the current values; the email partner needs
//! none and is built once.

use std::sync::Arc;
use std::time::Duration;

use domain::ports::PartnerNotifier;
use outbound::{EmailPartner, RetryPolicy, WebhookNotifier};
use reqwest::Url;

use crate::secrets::{self, Secrets};
use crate::{Clients, SesMailer, env};

pub enum PartnerConfig {
    /// A webhook at `url`, signed with the secret in SSM.
    Webhook { url: Url, var: String },
    /// Email through SES from `from`, at most `max_send_rate` a second.
    Email {
        to: String,
        from: String,
        max_send_rate: std::num::NonZeroU32,
    },
}

impl PartnerConfig {
    /// Reads `webhook_var` (the secret then comes from the parameter
    /// `WEBHOOK_SECRET_PARAMETER` names), or else `email_var` (with
    /// `MAIL_FROM` and the optional `SES_MAX_SEND_RATE`).
    pub fn from_env(webhook_var: &str, email_var: &str) -> Result<PartnerConfig, String> {
        match env::optional(webhook_var) {
            Some(url) => Ok(PartnerConfig::Webhook {
                url: url.parse().map_err(|e| format!("{webhook_var}: {e}"))?,
                var: webhook_var.to_owned(),
            }),
            None => Ok(PartnerConfig::Email {
                to: env::required(email_var)
                    .map_err(|_| format!("set {webhook_var} or {email_var}"))?,
                from: env::required("MAIL_FROM").map_err(|e| e.to_string())?,
                max_send_rate: crate::ses::max_send_rate_from_env()?,
            }),
        }
    }

    /// The variables naming the secret parameters this partner needs: the
    /// webhook secret for a webhook, none for email.
    pub fn secret_parameters(&self) -> &'static [&'static str] {
        match self {
            PartnerConfig::Webhook { .. } => &[secrets::WEBHOOK_SECRET],
            PartnerConfig::Email { .. } => &[],
        }
    }

    /// What does not depend on secrets, built once per cold start.
    pub fn build(self, clients: &Clients) -> Partner {
        match self {
            PartnerConfig::Webhook { url, var } => Partner::Webhook { url, var },
            PartnerConfig::Email {
                to,
                from,
                max_send_rate,
            } => Partner::Email(Arc::new(EmailPartner::new(
                Arc::new(SesMailer::with_max_send_rate(clients, from, max_send_rate)),
                to,
            ))),
        }
    }
}

/// A partner, ready to be handed the current secrets.
pub enum Partner {
    Webhook {
        url: Url,
        var: String,
    },
    /// Kept across rebuilds: its mailer's send rate limit is per process.
    Email(Arc<dyn PartnerNotifier>),
}

impl Partner {
    /// The notifier for `secrets`: a webhook signing with the current
    /// secret, or the one email partner.
    pub fn notifier(&self, secrets: &Secrets) -> Result<Arc<dyn PartnerNotifier>, String> {
        match self {
            Partner::Webhook { url, var } => {
                let secret = secrets.get(secrets::WEBHOOK_SECRET)?;
                let webhook = WebhookNotifier::new(url.clone(), secret, within_function_timeout())
                    // The error says what is wrong with the secret, never the secret.
                    .map_err(|e| format!("{var} with {}: {e}", secrets::WEBHOOK_SECRET))?;
                Ok(Arc::new(webhook))
            }
            Partner::Email(partner) => Ok(partner.clone()),
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
