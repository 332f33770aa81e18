//! The functions' secrets against moto's SSM Parameter Store: one call for
//! all of a function's parameters, decrypted; a missing one named; an
//! unreachable SSM told apart; a rotated value taken at the next refresh.

mod support;

use std::time::{Duration, Instant};

use aws_adapters::Clients;
use aws_adapters::secrets::{
    BAKER_TOKEN, CUSTOMER_TOKEN_SECRET, Secrets, SecretsConfig, SecretsError, SsmSecrets,
};
use aws_config::retry::RetryConfig;
use aws_sdk_ssm::types::ParameterType;
use support::{Moto, clients_for, free_port, unique};

async fn put(clients: &Clients, name: &str, value: &str) {
    clients
        .ssm()
        .put_parameter()
        .name(name)
        .value(value)
        .r#type(ParameterType::SecureString)
        .overwrite(true)
        .send()
        .await
        .unwrap();
}

fn config(path: &str, refresh: Duration) -> SecretsConfig {
    SecretsConfig::new(
        vec![
            (BAKER_TOKEN, format!("{path}/baker-token")),
            (
                CUSTOMER_TOKEN_SECRET,
                format!("{path}/customer-token-secret"),
            ),
        ],
        refresh,
    )
    .unwrap()
}

#[tokio::test]
async fn a_functions_secrets_are_read_decrypted_in_one_call() {
    let moto = Moto::start().await;
    let clients = moto.clients().await;
    let path = format!("/{}", unique("bakery"));
    put(
        &clients,
        &format!("{path}/baker-token"),
        "baker-token-0123456789",
    )
    .await;
    put(
        &clients,
        &format!("{path}/customer-token-secret"),
        "key-0123456789",
    )
    .await;

    let secrets = SsmSecrets::new(&clients.ssm(), &config(&path, Duration::from_secs(300)))
        .fetch()
        .await
        .unwrap();
    assert_eq!(
        secrets,
        Secrets::from_values(vec![
            (BAKER_TOKEN, "baker-token-0123456789".into()),
            (CUSTOMER_TOKEN_SECRET, "key-0123456789".into()),
        ])
    );
}

#[tokio::test]
async fn a_missing_parameter_is_named_with_its_variable() {
    let moto = Moto::start().await;
    let clients = moto.clients().await;
    let path = format!("/{}", unique("bakery"));
    put(
        &clients,
        &format!("{path}/baker-token"),
        "baker-token-0123456789",
    )
    .await;

    let error = SsmSecrets::new(&clients.ssm(), &config(&path, Duration::from_secs(300)))
        .fetch()
        .await
        .unwrap_err();
    assert_eq!(
        error,
        SecretsError::Missing(vec![format!(
            "{path}/customer-token-secret (CUSTOMER_TOKEN_SECRET_PARAMETER)"
        )])
    );
}

#[tokio::test]
async fn an_unreachable_ssm_is_unavailable() {
    let fast = RetryConfig::standard()
        .with_max_attempts(2)
        .with_initial_backoff(Duration::from_millis(10));
    let nowhere = clients_for(&format!("http://127.0.0.1:{}", free_port()), Some(fast)).await;
    let error = SsmSecrets::new(&nowhere.ssm(), &config("/bakery/x", Duration::from_secs(1)))
        .fetch()
        .await
        .unwrap_err();
    assert!(matches!(error, SecretsError::Unavailable(_)), "{error:?}");
}

#[tokio::test]
async fn a_function_without_secrets_asks_ssm_nothing() {
    let fast = RetryConfig::standard().with_max_attempts(1);
    let nowhere = clients_for(&format!("http://127.0.0.1:{}", free_port()), Some(fast)).await;
    let none = SecretsConfig::new(vec![], Duration::from_secs(1)).unwrap();
    let secrets = SsmSecrets::new(&nowhere.ssm(), &none)
        .fetch()
        .await
        .unwrap();
    assert_eq!(secrets, Secrets::default());
}

#[tokio::test]
async fn a_value_put_with_overwrite_is_built_from_at_the_first_invocation_after_the_period() {
    let moto = Moto::start().await;
    let clients = moto.clients().await;
    let path = format!("/{}", unique("bakery"));
    put(
        &clients,
        &format!("{path}/baker-token"),
        "old-baker-token-0123",
    )
    .await;
    put(
        &clients,
        &format!("{path}/customer-token-secret"),
        "key-0123456789",
    )
    .await;

    let period = Duration::from_secs(1);
    let refreshing = config(&path, period)
        .load_and_build(&clients.ssm(), |secrets| {
            Ok(secrets.get(BAKER_TOKEN)?.to_owned())
        })
        .await
        .unwrap();
    let loaded_at = Instant::now();
    assert_eq!(*refreshing.current().await, "old-baker-token-0123");

    put(
        &clients,
        &format!("{path}/baker-token"),
        "new-baker-token-0123",
    )
    .await;
    // Within the period the cached value is served, without a call.
    if loaded_at.elapsed() < period / 2 {
        assert_eq!(*refreshing.current().await, "old-baker-token-0123");
    }
    // At the first invocation after it, the new one.
    let due = loaded_at + period;
    let now = Instant::now().max(due);
    assert_eq!(*refreshing.current_at(now).await, "new-baker-token-0123");
}
