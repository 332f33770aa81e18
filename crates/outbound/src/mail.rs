//! Building the email message, shared by the outbox and the SMTP mailer.
//!
//! One function decides what a bakery email looks like, so both mailers
//! produce the same bytes and the defences against header injection are
//! written once: addresses must parse as a single mailbox (lettre's parser
//! refuses CR/LF and trailing text), subjects have their control characters
//! replaced before lettre encodes them, and the key, which ends up in a
//! file name and in the Message-ID, is limited to a safe alphabet.

use domain::events::Email;
use domain::ports::MailError;
use lettre::Message;
use lettre::message::Mailbox;
use lettre::message::header::ContentType;

/// The domain part of every Message-ID: `<key@bakery.local>`.
pub const MESSAGE_ID_DOMAIN: &str = "bakery.local";

/// Keys are UUIDs in practice; the limit keeps `.<key>.<pid>.<n>.tmp`
/// under the usual 255-byte file name limit.
const MAX_KEY_LEN: usize = 200;

/// Parses `value` as exactly one mailbox (`name <user@host>` or
/// `user@host`). `what` names the field in the error ("to", "from"); the
/// address itself is left out of the error because errors end up in logs.
pub(crate) fn parse_mailbox(what: &str, value: &str) -> Result<Mailbox, MailError> {
    // lettre's parser already refuses these, but an address is the classic
    // header-injection vector, so refuse them explicitly too.
    if value.chars().any(breaks_header) {
        return Err(MailError::Rejected(format!(
            "`{what}` address contains control characters"
        )));
    }
    value
        .trim()
        .parse::<Mailbox>()
        .map_err(|_| MailError::Rejected(format!("`{what}` is not a single valid mailbox")))
}

/// Checks that the key is safe as a file name and inside a Message-ID:
/// ASCII letters, digits, `-`, `_` and inner single dots.
pub(crate) fn check_key(key: &str) -> Result<(), MailError> {
    let alphabet_ok = key
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    let dots_ok = !key.starts_with('.') && !key.ends_with('.') && !key.contains("..");
    if key.is_empty() || key.len() > MAX_KEY_LEN || !alphabet_ok || !dots_ok {
        return Err(MailError::Rejected(format!(
            "email key must be 1-{MAX_KEY_LEN} characters of [A-Za-z0-9._-]"
        )));
    }
    Ok(())
}

/// The Message-ID for a key: stable, so a resent email can be recognised.
pub(crate) fn message_id(key: &str) -> String {
    format!("<{key}@{MESSAGE_ID_DOMAIN}>")
}

/// Replaces control characters (CR, LF, TAB, NUL, ...) and Unicode line
/// separators with spaces: a subject is one line, whatever the caller put
/// in it.
pub(crate) fn clean_subject(subject: &str) -> String {
    subject
        .chars()
        .map(|c| if breaks_header(c) { ' ' } else { c })
        .collect::<String>()
        .trim()
        .to_owned()
}

fn breaks_header(c: char) -> bool {
    c.is_control() || matches!(c, '\u{2028}' | '\u{2029}')
}

/// Builds the message for `email` from `from`: From, To, Subject,
/// Message-ID, Date and a UTF-8 plain-text body (lettre picks the transfer
/// encoding and RFC 2047-encodes non-ASCII header text).
pub(crate) fn build_message(from: &Mailbox, email: &Email) -> Result<Message, MailError> {
    check_key(&email.key)?;
    let to = parse_mailbox("to", &email.to)?;
    Message::builder()
        .from(from.clone())
        .to(to)
        .subject(clean_subject(&email.subject))
        .message_id(Some(message_id(&email.key)))
        .date_now()
        .header(ContentType::TEXT_PLAIN)
        .body(email.text.clone())
        .map_err(|e| MailError::Rejected(format!("cannot build email: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn email(key: &str, to: &str, subject: &str) -> Email {
        Email {
            key: key.into(),
            to: to.into(),
            subject: subject.into(),
            text: "Hello".into(),
        }
    }

    fn from() -> Mailbox {
        "Bakery <bakery@example.com>".parse().unwrap()
    }

    #[test]
    fn keys_are_limited_to_a_safe_alphabet() {
        for ok in ["6f1c2a3e-0000-4000-8000-000000000001", "a", "a.b_c-D9"] {
            assert!(check_key(ok).is_ok(), "{ok}");
        }
        let long = "a".repeat(MAX_KEY_LEN + 1);
        for bad in [
            "", "../x", "a/b", ".hidden", "a.", "a..b", "a b", "a\nb", "ü", &long,
        ] {
            assert!(
                matches!(check_key(bad), Err(MailError::Rejected(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn subjects_lose_control_characters() {
        assert_eq!(
            clean_subject("Hi\r\nBcc: evil@x\t\u{0}\u{2028}!"),
            "Hi  Bcc: evil@x   !"
        );
        assert_eq!(clean_subject("Kuchen für Zoë 🎂"), "Kuchen für Zoë 🎂");
    }

    #[test]
    fn mailboxes_must_be_exactly_one_address() {
        assert!(parse_mailbox("to", "Zoë <zoe@example.com>").is_ok());
        assert!(parse_mailbox("to", " zoe@example.com ").is_ok());
        for bad in [
            "",
            "not an address",
            "a@example.com, b@example.com",
            "a@example.com\r\nBcc: evil@x",
            "\"Evil\r\nBcc: x@y\" <a@example.com>",
            "a@example.com>",
        ] {
            assert!(
                matches!(parse_mailbox("to", bad), Err(MailError::Rejected(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn message_has_the_headers_and_a_key_derived_id() {
        let message = build_message(&from(), &email("k-1", "a@example.com", "Hi")).unwrap();
        let text = String::from_utf8(message.formatted()).unwrap();
        assert!(
            text.contains("Message-ID: <k-1@bakery.local>\r\n"),
            "{text}"
        );
        assert!(text.contains("Content-Type: text/plain; charset=utf-8\r\n"));
        assert!(text.contains("\r\nDate: "));
        assert_eq!(message.envelope().to().len(), 1);
    }

    #[test]
    fn invalid_input_is_rejected() {
        assert!(matches!(
            build_message(&from(), &email("k", "nope", "Hi")),
            Err(MailError::Rejected(_))
        ));
        assert!(matches!(
            build_message(&from(), &email("../k", "a@example.com", "Hi")),
            Err(MailError::Rejected(_))
        ));
    }
}
