//! [`EmailPartner`]: a partner that takes notifications by email.
//!
//! Some partners have no webhook endpoint; they get the message's subject
//! and text as an email instead. The message id is the email key, so the
//! outbox stays idempotent and SMTP receivers can deduplicate by
//! Message-ID, just as webhook receivers do by webhook-id.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use domain::events::{Email, PartnerMessage};
use domain::ports::{MailError, Mailer, NotifyError, PartnerNotifier};

/// Notifies a partner by sending an email to one address.
#[derive(Clone)]
pub struct EmailPartner {
    mailer: Arc<dyn Mailer>,
    to: String,
}

impl EmailPartner {
    /// `to` is checked when sending: an invalid address is a rejected
    /// notification, like a partner refusing it.
    pub fn new(mailer: Arc<dyn Mailer>, to: String) -> EmailPartner {
        EmailPartner { mailer, to }
    }
}

impl fmt::Debug for EmailPartner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmailPartner")
            .field("to", &self.to)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl PartnerNotifier for EmailPartner {
    async fn notify(&self, message: &PartnerMessage) -> Result<(), NotifyError> {
        let email = Email {
            key: message.id.clone(),
            to: self.to.clone(),
            subject: message.subject.clone(),
            text: message.text.clone(),
        };
        self.mailer.send(&email).await.map_err(|e| match e {
            MailError::Unavailable(why) => NotifyError::Unavailable(why),
            MailError::Rejected(why) => NotifyError::Rejected(why),
        })
    }
}
