//! The functions' secrets, in SSM Parameter Store.
//!
//! The cake maker's token, the customer-token key and the webhook signing
//! secret are SecureString parameters, never environment variables: the
//! environment only names them (`BAKER_TOKEN_PARAMETER=/bakery/prod/baker-token`),
//! so nothing secret is in the templates, in the function's configuration or
//! in its log. A function reads its parameters at cold start, all in one
//! `GetParameters` call with decryption, and stops there with the
//! parameter's name if one is missing or unreadable.
//!
//! Values are kept in memory and loaded again before an invocation once they
//! are older than `SECRETS_REFRESH_SECONDS` (default 300), so a value put
//! with `--overwrite` reaches every running function within that time; the
//! refresh logic and the rebuilding of the handler are `lambda_kit::refresh`
//! (vendor-neutral), this module is only the store.
//!
//! The parameters are encrypted with the AWS managed key `alias/aws/ssm`, so
//! `ssm:GetParameters` on the parameter is all a role needs; a customer
//! managed key would also need `kms:Decrypt` on that key.

use std::time::Duration;

use aws_sdk_ssm::error::{ProvideErrorMetadata, SdkError};
use domain::auth::{CustomerTokens, TokenHash};
use lambda_kit::refresh::{Load, Refreshing, StartError};

use crate::env::{self, MissingVar};
use crate::error::{describe, is_transient};

/// Names the parameter holding the cake maker's bearer token.
pub const BAKER_TOKEN: &str = "BAKER_TOKEN_PARAMETER";
/// Names the parameter holding the key customer tokens are derived with.
pub const CUSTOMER_TOKEN_SECRET: &str = "CUSTOMER_TOKEN_SECRET_PARAMETER";
/// Names the parameter holding the Standard Webhooks secret (`whsec_…`).
pub const WEBHOOK_SECRET: &str = "WEBHOOK_SECRET_PARAMETER";

/// The shortest cake maker's token taken (the local runner asks the same).
pub const BAKER_TOKEN_MIN_CHARS: usize = 16;
/// The shortest customer-token key taken.
pub const CUSTOMER_TOKEN_SECRET_MIN_CHARS: usize = 32;

/// How old loaded values may get, in seconds, before an invocation loads
/// them again.
pub const REFRESH_SECONDS: &str = "SECRETS_REFRESH_SECONDS";
pub const DEFAULT_REFRESH: Duration = Duration::from_secs(300);

/// `GetParameters` takes at most this many names per call.
const MAX_NAMES_PER_CALL: usize = 10;

/// Which parameters a function reads, and how often it refreshes them: read
/// from the environment before anything else, so a missing variable stops
/// the cold start with its name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretsConfig {
    /// (variable, parameter name)
    parameters: Vec<(&'static str, String)>,
    refresh: Duration,
}

impl SecretsConfig {
    /// The parameters named by `vars` (e.g. [`BAKER_TOKEN`]), and
    /// `SECRETS_REFRESH_SECONDS`.
    pub fn from_env(vars: &[&'static str]) -> Result<SecretsConfig, ConfigError> {
        let mut parameters = Vec::with_capacity(vars.len());
        for &var in vars {
            parameters.push((var, env::required(var)?));
        }
        let refresh = match env::optional(REFRESH_SECONDS) {
            None => DEFAULT_REFRESH,
            Some(text) => match text.parse::<u64>() {
                Ok(seconds) if seconds > 0 => Duration::from_secs(seconds),
                _ => {
                    return Err(ConfigError::Invalid(format!(
                        "{REFRESH_SECONDS}={text}: expected a whole number of seconds, at least 1"
                    )));
                }
            },
        };
        SecretsConfig::new(parameters, refresh)
    }

    /// The parameters as given (tests, and functions that need none).
    pub fn new(
        parameters: Vec<(&'static str, String)>,
        refresh: Duration,
    ) -> Result<SecretsConfig, ConfigError> {
        if parameters.len() > MAX_NAMES_PER_CALL {
            return Err(ConfigError::Invalid(format!(
                "at most {MAX_NAMES_PER_CALL} secret parameters"
            )));
        }
        Ok(SecretsConfig {
            parameters,
            refresh,
        })
    }

    pub fn refresh(&self) -> Duration {
        self.refresh
    }

    /// Loads the secrets (once, failing with the missing parameter's name)
    /// and builds from them what the function serves with; that is rebuilt
    /// whenever a refresh finds a value changed.
    pub async fn load_and_build<T: Send + Sync + 'static>(
        self,
        client: &aws_sdk_ssm::Client,
        build: impl Fn(&Secrets) -> Result<T, String> + Send + Sync + 'static,
    ) -> Result<Refreshing<SsmSecrets, T>, StartError> {
        let refresh = self.refresh;
        let source = SsmSecrets {
            client: client.clone(),
            parameters: self.parameters,
        };
        Refreshing::start(source, refresh, build).await
    }
}

/// The function's configuration names no usable parameter.
#[derive(Clone, PartialEq, Eq)]
pub enum ConfigError {
    Missing(MissingVar),
    Invalid(String),
}

impl From<MissingVar> for ConfigError {
    fn from(missing: MissingVar) -> ConfigError {
        ConfigError::Missing(missing)
    }
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConfigError::Missing(missing) => missing.fmt(f),
            ConfigError::Invalid(why) => f.write_str(why),
        }
    }
}

/// The message itself, as for [`MissingVar`].
impl std::fmt::Debug for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

impl std::error::Error for ConfigError {}

/// The values of a function's secrets, by the variable that names each
/// parameter. `Debug` shows the variables only.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secrets {
    values: Vec<(&'static str, String)>,
}

impl Secrets {
    /// Values given directly (tests).
    pub fn from_values(values: Vec<(&'static str, String)>) -> Secrets {
        Secrets { values }
    }

    /// The value of the parameter `var` names, e.g. [`BAKER_TOKEN`].
    pub fn get(&self, var: &str) -> Result<&str, String> {
        self.values
            .iter()
            .find(|(name, _)| *name == var)
            .map(|(_, value)| value.as_str())
            .ok_or_else(|| format!("no secret was loaded for {var}"))
    }
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.values.iter().map(|(var, _)| var))
            .finish()
    }
}

/// The cake maker's token as the handlers hold it (its hash). A value too
/// short to be a secret is refused: at cold start the function stops, on a
/// refresh it keeps the previous token.
pub fn baker_token(secrets: &Secrets) -> Result<TokenHash, String> {
    let token = secrets.get(BAKER_TOKEN)?;
    if token.chars().count() < BAKER_TOKEN_MIN_CHARS {
        return Err(format!(
            "the parameter {BAKER_TOKEN} names holds a cake maker's token shorter than \
             {BAKER_TOKEN_MIN_CHARS} characters"
        ));
    }
    Ok(TokenHash::of(token))
}

/// The customer tokens, derived with the key in SSM (at least 32
/// characters, refused as [`baker_token`] refuses a short token).
pub fn customer_tokens(secrets: &Secrets) -> Result<CustomerTokens, String> {
    let key = secrets.get(CUSTOMER_TOKEN_SECRET)?;
    if key.chars().count() < CUSTOMER_TOKEN_SECRET_MIN_CHARS {
        return Err(format!(
            "the parameter {CUSTOMER_TOKEN_SECRET} names holds a customer-token key shorter \
             than {CUSTOMER_TOKEN_SECRET_MIN_CHARS} characters"
        ));
    }
    Ok(CustomerTokens::new(key))
}

/// Reading the parameters failed. Names parameters, never holds a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretsError {
    /// SSM does not have these parameters (or not under these names), as
    /// `NAME (VARIABLE)`.
    Missing(Vec<String>),
    /// The role may not read them (`ssm:GetParameters`, or `kms:Decrypt`
    /// with a customer managed key).
    AccessDenied { parameters: String, message: String },
    /// SSM did not answer or is throttling: a later try may work.
    Unavailable(String),
    /// Anything else.
    Failed(String),
}

impl std::fmt::Display for SecretsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SecretsError::Missing(parameters) => write!(
                f,
                "SSM parameter {} does not exist; create it as a SecureString (docs/deploy.md)",
                parameters.join(", ")
            ),
            SecretsError::AccessDenied {
                parameters,
                message,
            } => write!(
                f,
                "this function may not read SSM parameter {parameters} (its role needs \
                 ssm:GetParameters on it, and kms:Decrypt if a customer managed key \
                 encrypts it): {message}"
            ),
            SecretsError::Unavailable(why) => write!(f, "SSM is unavailable: {why}"),
            SecretsError::Failed(why) => write!(f, "cannot read the secrets from SSM: {why}"),
        }
    }
}

impl std::error::Error for SecretsError {}

/// The function's parameters in SSM Parameter Store.
pub struct SsmSecrets {
    client: aws_sdk_ssm::Client,
    parameters: Vec<(&'static str, String)>,
}

impl SsmSecrets {
    pub fn new(client: &aws_sdk_ssm::Client, config: &SecretsConfig) -> SsmSecrets {
        SsmSecrets {
            client: client.clone(),
            parameters: config.parameters.clone(),
        }
    }

    fn described(&self, which: impl Fn(&str) -> bool) -> Vec<String> {
        self.parameters
            .iter()
            .filter(|(_, name)| which(name))
            .map(|(var, name)| format!("{name} ({var})"))
            .collect()
    }

    /// Every parameter's current value, in one call.
    pub async fn fetch(&self) -> Result<Secrets, SecretsError> {
        // A function without secrets (a partner reached by email) asks
        // nothing, and needs no grant.
        if self.parameters.is_empty() {
            return Ok(Secrets::default());
        }
        let mut names: Vec<String> = self.parameters.iter().map(|(_, n)| n.clone()).collect();
        names.dedup();
        let answer = self
            .client
            .get_parameters()
            .set_names(Some(names))
            .with_decryption(true)
            .send()
            .await
            .map_err(|error| {
                let parameters = self.described(|_| true).join(", ");
                match &error {
                    SdkError::ServiceError(_)
                        if error.code().is_some_and(|c| c.contains("AccessDenied")) =>
                    {
                        SecretsError::AccessDenied {
                            parameters,
                            message: error.message().unwrap_or("access denied").to_owned(),
                        }
                    }
                    _ if is_transient(&error) => {
                        SecretsError::Unavailable(describe("GetParameters", &error))
                    }
                    _ => SecretsError::Failed(describe("GetParameters", &error)),
                }
            })?;
        let invalid = answer.invalid_parameters();
        if !invalid.is_empty() {
            return Err(SecretsError::Missing(
                self.described(|name| invalid.iter().any(|i| i == name)),
            ));
        }
        let mut values = Vec::with_capacity(self.parameters.len());
        for (var, name) in &self.parameters {
            let value = answer
                .parameters()
                .iter()
                .find(|p| p.name() == Some(name.as_str()))
                .and_then(|p| p.value())
                .filter(|v| !v.trim().is_empty());
            match value {
                Some(value) => values.push((*var, value.to_owned())),
                None => return Err(SecretsError::Missing(vec![format!("{name} ({var})")])),
            }
        }
        Ok(Secrets { values })
    }
}

impl Load for SsmSecrets {
    type Value = Secrets;
    type Error = SecretsError;

    async fn load(&self) -> Result<Secrets, SecretsError> {
        self.fetch().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_a_value() {
        let secrets = Secrets::from_values(vec![(BAKER_TOKEN, "hunter2-hunter2-hunter2".into())]);
        let shown = format!("{secrets:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains(BAKER_TOKEN), "{shown}");
        assert_eq!(secrets.get(BAKER_TOKEN), Ok("hunter2-hunter2-hunter2"));
        assert!(
            secrets
                .get(WEBHOOK_SECRET)
                .unwrap_err()
                .contains(WEBHOOK_SECRET)
        );
    }

    #[test]
    fn short_secrets_are_refused_without_being_shown() {
        let secrets = Secrets::from_values(vec![
            (BAKER_TOKEN, "short-token".into()),
            (CUSTOMER_TOKEN_SECRET, "short-key".into()),
        ]);
        let error = baker_token(&secrets).unwrap_err();
        assert!(
            error.contains(BAKER_TOKEN) && !error.contains("short-token"),
            "{error}"
        );
        let error = customer_tokens(&secrets).err().unwrap();
        assert!(
            error.contains(CUSTOMER_TOKEN_SECRET) && !error.contains("short-key"),
            "{error}"
        );

        let secrets = Secrets::from_values(vec![
            (BAKER_TOKEN, "a-long-enough-baker-token".into()),
            (
                CUSTOMER_TOKEN_SECRET,
                "k".repeat(CUSTOMER_TOKEN_SECRET_MIN_CHARS),
            ),
        ]);
        assert!(
            baker_token(&secrets)
                .unwrap()
                .matches("a-long-enough-baker-token")
        );
        assert!(customer_tokens(&secrets).is_ok());
    }

    #[test]
    fn a_missing_variable_is_named() {
        let error =
            SecretsConfig::from_env(&["AWS_ADAPTERS_TEST_SURELY_UNSET_PARAMETER"]).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("AWS_ADAPTERS_TEST_SURELY_UNSET_PARAMETER"),
            "{error}"
        );
    }

    #[test]
    fn errors_name_the_parameter() {
        let missing = SecretsError::Missing(vec![
            "/bakery/dev/baker-token (BAKER_TOKEN_PARAMETER)".into(),
        ]);
        assert!(missing.to_string().contains("/bakery/dev/baker-token"));
        assert!(missing.to_string().contains("SecureString"));
    }
}
