//! The secrets a bakery keeps in its data directory: the cake maker's token,
//! the secret customer tokens are derived from, and the webhook signing
//! secret. Each is generated on first start, written owner-only, and read
//! back on every later start, so tokens handed out stay valid across
//! restarts.

use std::fs::OpenOptions;
use std::io::{ErrorKind, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};

/// 32 random bytes from the operating system's random source.
fn random_bytes() -> Result<[u8; 32]> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)
        .map_err(|e| anyhow::anyhow!("no random bytes for a new secret: {e}"))?;
    Ok(bytes)
}

/// The shortest customer-token key accepted, as on AWS.
const CUSTOMER_TOKEN_SECRET_MIN_CHARS: usize = 32;

pub struct Secrets {
    pub baker_token: String,
    /// Where the baker token is kept (printed at start instead of the token).
    pub baker_token_file: Option<PathBuf>,
    pub customer_token_secret: Vec<u8>,
    pub webhook_secret: String,
}

impl Secrets {
    /// Reads the secrets from `dir`, creating missing ones. A value given on
    /// the command line wins and is not written down.
    /// Checks the secrets given on the command line, before anything is
    /// written: the baker token's length, and that the webhook secret is
    /// one. (Files the bakery makes itself are right by construction.)
    pub fn check_given(baker_token: Option<&str>, webhook_secret: Option<&str>) -> Result<()> {
        if let Some(token) = baker_token {
            check_baker_token(token)?;
        }
        if let Some(secret) = webhook_secret {
            outbound::WebhookNotifier::signer(secret).context("--webhook-secret")?;
        }
        Ok(())
    }

    pub fn load(
        dir: &Path,
        baker_token: Option<String>,
        webhook_secret: Option<String>,
    ) -> Result<Secrets> {
        // The files that may already be there, and wrong, are read before
        // any missing one is made: a refusal leaves no new file behind.
        let customer_token_file = dir.join("customer-token-secret");
        let customer_token_secret = kept(&customer_token_file, || {
            Ok(URL_SAFE_NO_PAD.encode(random_bytes()?))
        })?;
        // A key anyone could guess makes every customer's token guessable.
        if customer_token_secret.chars().count() < CUSTOMER_TOKEN_SECRET_MIN_CHARS {
            bail!(
                "{} holds {} characters; a customer-token key needs at least {CUSTOMER_TOKEN_SECRET_MIN_CHARS} \
                 (delete the file to make a new one: customers' tokens then change)",
                customer_token_file.display(),
                customer_token_secret.chars().count()
            );
        }
        let customer_token_secret = customer_token_secret.into_bytes();
        let (baker_token, baker_token_file) = match baker_token {
            Some(token) => (token, None),
            None => {
                let file = dir.join("baker-token");
                let token = kept(&file, || Ok(URL_SAFE_NO_PAD.encode(random_bytes()?)))?;
                (token, Some(file))
            }
        };
        check_baker_token(&baker_token)?;
        let webhook_secret = match webhook_secret {
            Some(secret) => secret,
            None => kept(&dir.join("webhook-secret"), || {
                Ok(format!("whsec_{}", STANDARD.encode(random_bytes()?)))
            })?,
        };
        Ok(Secrets {
            baker_token,
            baker_token_file,
            customer_token_secret,
            webhook_secret,
        })
    }
}

fn check_baker_token(token: &str) -> Result<()> {
    // Characters, not bytes: nine `é` are not a 16-character token.
    if token.chars().count() < 16 {
        bail!("the baker token must be at least 16 characters");
    }
    Ok(())
}

/// The contents of `file`, written with `make()` first if it is missing.
fn kept(file: &Path, make: impl FnOnce() -> Result<String>) -> Result<String> {
    match std::fs::read_to_string(file) {
        Ok(text) if !text.trim().is_empty() => return Ok(text.trim().to_string()),
        Ok(_) => bail!("{} is empty; delete it to make a new one", file.display()),
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", file.display())),
    }
    let value = make()?;
    let mut out = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(file)
        .with_context(|| format!("cannot create {}", file.display()))?;
    out.write_all(value.as_bytes())
        .and_then(|()| out.sync_all())
        .with_context(|| format!("cannot write {}", file.display()))?;
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_customer_token_key_file_too_short_to_be_a_secret_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("customer-token-secret"), "short").unwrap();
        let error = Secrets::load(dir.path(), Some("t".repeat(16)), None)
            .err()
            .expect("a 5-character key is refused");
        let said = error.to_string();
        assert!(said.contains("customer-token-secret"), "{said}");
        assert!(said.contains("at least 32"), "{said}");
    }

    #[test]
    fn a_baker_token_is_counted_in_characters() {
        let dir = tempfile::tempdir().unwrap();
        let nine = "é".repeat(9); // 18 bytes, 9 characters
        assert!(Secrets::load(dir.path(), Some(nine), None).is_err());
        let sixteen = "é".repeat(16);
        assert!(Secrets::load(dir.path(), Some(sixteen), None).is_ok());
    }

    #[test]
    fn secrets_are_made_once_and_kept_owner_only() {
        let dir = tempfile::tempdir().unwrap();
        let first = Secrets::load(dir.path(), None, None).unwrap();
        let again = Secrets::load(dir.path(), None, None).unwrap();
        assert_eq!(first.baker_token, again.baker_token);
        assert_eq!(first.customer_token_secret, again.customer_token_secret);
        assert_eq!(first.webhook_secret, again.webhook_secret);
        assert!(first.webhook_secret.starts_with("whsec_"));
        let mode = std::fs::metadata(dir.path().join("baker-token"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn given_values_win_and_are_not_written() {
        let dir = tempfile::tempdir().unwrap();
        let secrets = Secrets::load(
            dir.path(),
            Some("a-long-enough-baker-token".into()),
            Some("whsec_c2VjcmV0".into()),
        )
        .unwrap();
        assert_eq!(secrets.baker_token, "a-long-enough-baker-token");
        assert!(secrets.baker_token_file.is_none());
        assert!(!dir.path().join("baker-token").exists());
        assert!(!dir.path().join("webhook-secret").exists());
    }

    #[test]
    fn short_baker_tokens_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        assert!(Secrets::load(dir.path(), Some("short".into()), None).is_err());
    }
}
