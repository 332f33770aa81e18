//! [`WebhookNotifier`]: partner notifications as Standard Webhooks.
//!
//! Each notification is one JSON POST signed per the Standard Webhooks
//! spec: `webhook-id` (the message id, the partner's deduplication key, so
//! the same on every retry), `webhook-timestamp` (unix seconds, fresh on
//! every try so retries are not refused as stale) and `webhook-signature`
//! (`v1,<base64 HMAC-SHA256 of "id.timestamp.body">`).
//!
//! Retries are brief and in-process (exponential backoff with jitter):
//! they ride out a partner's blip. Longer outages surface as
//! [`NotifyError::Unavailable`] and the caller's queue retries later.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use backon::{ExponentialBuilder, Retryable};
use chrono::{SecondsFormat, Utc};
use domain::events::PartnerMessage;
use domain::ports::{NotifyError, PartnerNotifier};
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderValue};
use reqwest::{StatusCode, Url};
use standardwebhooks::{
    HEADER_WEBHOOK_ID, HEADER_WEBHOOK_SIGNATURE, HEADER_WEBHOOK_TIMESTAMP, Webhook,
};

/// How hard one notification tries before giving up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Total tries, the first included (0 is taken as 1).
    pub attempts: usize,
    /// Delay before the first retry; doubles after each.
    pub first_delay: Duration,
    /// Upper bound of any delay, jitter included.
    pub max_delay: Duration,
    /// Per request, connecting and reading the answer included.
    pub timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> RetryPolicy {
        RetryPolicy {
            attempts: 4,
            first_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(5),
            timeout: Duration::from_secs(10),
        }
    }
}

/// The webhook client's TLS: rustls with aws-lc-rs, the crypto the AWS SDK
/// already links (a second library, ring, would add to every deployed
/// function that calls a partner), and the public web's root
/// certificates.
fn tls_config() -> Result<rustls::ClientConfig, rustls::Error> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// POSTs signed notifications to one partner URL.
#[derive(Clone)]
pub struct WebhookNotifier {
    client: reqwest::Client,
    url: Url,
    /// The URL's host: what errors and logs name (paths may hold tokens).
    host: String,
    signer: Arc<Webhook>,
    retry: RetryPolicy,
}

impl WebhookNotifier {
    /// The host of a usable partner URL (http or https, with a host), or
    /// why it is not one, without building anything.
    pub fn check_url(url: &Url) -> Result<String, NotifyError> {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(NotifyError::Rejected(format!(
                "webhook URL must be http or https, not {}",
                url.scheme()
            )));
        }
        url.host_str()
            .map(str::to_owned)
            .ok_or_else(|| NotifyError::Rejected("webhook URL has no host".into()))
    }

    /// The signer for `secret`, or why it is not a webhook secret. The
    /// error never contains the secret.
    pub fn signer(secret: &str) -> Result<Webhook, NotifyError> {
        let bare = secret.strip_prefix("whsec_").unwrap_or(secret);
        match Webhook::new(secret) {
            // An empty key would sign with HMAC of nothing: anyone could forge.
            Ok(signer) if !bare.trim().is_empty() => Ok(signer),
            _ => Err(NotifyError::Rejected(
                "invalid webhook secret: expected whsec_<base64>".into(),
            )),
        }
    }

    /// A notifier for `url` (http or https) signing with `secret`
    /// (`whsec_<base64>`; the bare base64 is accepted too, as the
    /// `standardwebhooks` crate does).
    ///
    /// A bad URL or secret is a configuration error that no retry fixes:
    /// [`NotifyError::Rejected`]. Errors never contain the secret.
    pub fn new(url: Url, secret: &str, retry: RetryPolicy) -> Result<WebhookNotifier, NotifyError> {
        let host = WebhookNotifier::check_url(&url)?;
        let signer = WebhookNotifier::signer(secret)?;
        let tls = tls_config()
            .map_err(|e| NotifyError::Unavailable(format!("{host}: cannot set up TLS: {e}")))?;
        let client = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .timeout(retry.timeout)
            // A redirect could carry the signed body to another host; a
            // partner that moved must be reconfigured instead.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| {
                NotifyError::Unavailable(format!("{host}: cannot build HTTP client: {e}"))
            })?;
        Ok(WebhookNotifier {
            client,
            url,
            host,
            signer: Arc::new(signer),
            retry: RetryPolicy {
                attempts: retry.attempts.max(1),
                ..retry
            },
        })
    }

    /// One signed POST.
    async fn attempt(&self, id: &HeaderValue, raw_id: &str, body: &[u8]) -> Result<(), Failure> {
        let timestamp = Utc::now().timestamp();
        let signature = self
            .signer
            .sign(raw_id, timestamp, body)
            .map_err(|e| Failure::Stop(format!("cannot sign: {e}")))?;
        let response = self
            .client
            .post(self.url.clone())
            .header(CONTENT_TYPE, "application/json")
            .header(HEADER_WEBHOOK_ID, id.clone())
            .header(HEADER_WEBHOOK_TIMESTAMP, timestamp.to_string())
            .header(HEADER_WEBHOOK_SIGNATURE, signature)
            .body(body.to_vec())
            .send()
            .await;
        let response = match response {
            Ok(response) => response,
            Err(e) => return Err(Failure::Retry(self.describe(e))),
        };
        let status = response.status();
        if status.is_success() {
            Ok(())
        } else if status.is_server_error()
            || status == StatusCode::REQUEST_TIMEOUT
            || status == StatusCode::TOO_MANY_REQUESTS
        {
            Err(Failure::Retry(format!("HTTP {status}")))
        } else if status.is_client_error() {
            let detail = response
                .text()
                .await
                .map(|t| snippet(&t))
                .unwrap_or_default();
            Err(Failure::Reject(if detail.is_empty() {
                format!("HTTP {status}")
            } else {
                format!("HTTP {status}: {detail}")
            }))
        } else {
            // 1xx/3xx: the URL is wrong (redirects are not followed). The
            // message is fine; an operator must fix the configuration.
            Err(Failure::Stop(format!("unexpected HTTP {status}")))
        }
    }

    /// Why a request failed, without the URL (reqwest puts it in its
    /// messages; query strings may hold tokens).
    fn describe(&self, e: reqwest::Error) -> String {
        if e.is_timeout() {
            return format!("timed out after {:?}", self.retry.timeout);
        }
        let kind = if e.is_connect() {
            "connection failed"
        } else {
            "request failed"
        };
        let mut why = kind.to_owned();
        let e = e.without_url();
        let mut source: Option<&dyn std::error::Error> = std::error::Error::source(&e);
        while let Some(cause) = source {
            why.push_str(": ");
            why.push_str(&cause.to_string());
            source = cause.source();
        }
        why
    }
}

impl fmt::Debug for WebhookNotifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookNotifier")
            .field("host", &self.host)
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

/// What one try came to.
#[derive(Debug)]
enum Failure {
    /// Worth another try (5xx, 408, 429, timeout, connection).
    Retry(String),
    /// Refused for good (other 4xx).
    Reject(String),
    /// Not the partner's answer to this message, but no retry helps now.
    Stop(String),
}

#[async_trait]
impl PartnerNotifier for WebhookNotifier {
    async fn notify(&self, message: &PartnerMessage) -> Result<(), NotifyError> {
        let host = &self.host;
        // An id that is not a valid header value can never be sent.
        let id = HeaderValue::from_str(&message.id).map_err(|_| {
            NotifyError::Rejected(format!("{host}: webhook id is not a header value"))
        })?;
        let body = serde_json::to_vec(&serde_json::json!({
            "type": message.event_type,
            "timestamp": Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true),
            "data": message.payload,
        }))
        .map_err(|e| NotifyError::Rejected(format!("{host}: cannot encode payload: {e}")))?;

        let tries = AtomicUsize::new(0);
        let max_delay = self.retry.max_delay;
        let backoff = ExponentialBuilder::default()
            .with_min_delay(self.retry.first_delay)
            .with_max_delay(max_delay)
            .with_max_times(self.retry.attempts - 1)
            .with_jitter();
        let result = (|| {
            tries.fetch_add(1, Ordering::Relaxed);
            self.attempt(&id, &message.id, &body)
        })
        .retry(backoff)
        .sleep(tokio::time::sleep)
        .when(|failure| matches!(failure, Failure::Retry(_)))
        // backon adds jitter on top of the capped delay; keep the cap a cap.
        .adjust(move |_, delay| delay.map(|d| d.min(max_delay)))
        .notify(|failure, delay| {
            tracing::warn!(host = %host, id = %message.id, ?failure, ?delay, "webhook failed, retrying");
        })
        .await;

        let tries = tries.load(Ordering::Relaxed);
        match result {
            Ok(()) => {
                tracing::debug!(host = %host, id = %message.id, tries, "webhook delivered");
                Ok(())
            }
            // "calls", not "tries": the bakery's own tries of the step are
            // counted apart (a dead letter's `attempts`, the operator page's
            // "Tries by the bakery"), and each of them may make several calls.
            Err(Failure::Retry(why)) => Err(NotifyError::Unavailable(format!(
                "{host}: {why} ({tries} {})",
                if tries == 1 { "call" } else { "calls" }
            ))),
            Err(Failure::Stop(why)) => Err(NotifyError::Unavailable(format!("{host}: {why}"))),
            Err(Failure::Reject(why)) => Err(NotifyError::Rejected(format!("{host}: {why}"))),
        }
    }
}

/// At most 200 characters of a partner's error body, on one line.
fn snippet(text: &str) -> String {
    text.chars()
        .take(200)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .trim()
        .to_owned()
}

/// Checks a received webhook: the `webhook-id`, `webhook-timestamp` (within
/// five minutes of now) and `webhook-signature` headers against `body` and
/// `secret`. For partners' receivers and tests.
pub fn verify_webhook(secret: &str, headers: &HeaderMap, body: &[u8]) -> bool {
    Webhook::new(secret).is_ok_and(|webhook| webhook.verify(body, headers).is_ok())
}
