//! What leaves the bakery: emails (kept in the local outbox or sent
//! over SMTP) and signed webhooks to partners.
//!
//! Every adapter here implements one of the domain's ports
//! ([`domain::ports::Mailer`], [`domain::ports::PartnerNotifier`]) and maps
//! its vendor's failures onto the port's two outcomes: *unavailable* (try
//! again later) or *rejected* (this message can never go out). Nothing in
//! this crate panics on input from the network, the filesystem or callers.
//!
//! # Layout
//!
//! - `mail.rs`: builds the RFC 5322 message both mailers send, from one
//!   function, so header-injection defences live in one place.
//! - `outbox.rs`: [`OutboxMailer`], the emails kept in the local outbox
//!   (the `embedded` crate's SQLite file), one per key, stored in groups by
//!   one thread. Used when running locally without SMTP.
//! - `smtp.rs`: [`SmtpMailer`], lettre over SMTP, with a Message-ID derived
//!   from the key so receivers can drop duplicates.
//! - `webhook.rs`: [`WebhookNotifier`] (Standard Webhooks, retried with
//!   backoff) and [`verify_webhook`] for the receiving side.
//! - `email_partner.rs`: [`EmailPartner`], a partner reached by email
//!   instead of a webhook.

mod email_partner;
mod mail;
mod outbox;
mod smtp;
mod webhook;

pub use email_partner::EmailPartner;
pub use mail::MESSAGE_ID_DOMAIN;
pub use outbox::OutboxMailer;
pub use smtp::SmtpMailer;
pub use webhook::{RetryPolicy, WebhookNotifier, verify_webhook};
