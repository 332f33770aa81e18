//! A moto server: the real AWS APIs (DynamoDB, Kinesis, SQS, SESv2) on a
//! loopback port, started by a test and killed when it is dropped.
//!
//! moto comes from the workspace's Python virtualenv (`.venv`), which
//! `scripts/test.sh` installs. Each test gets its own server, so tests run
//! in parallel without sharing state. Behind the `emulator` feature: only
//! tests use it.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::Clients;
use crate::clients::config_loader;
use aws_config::Region;
use aws_config::retry::RetryConfig;
use aws_sdk_dynamodb::config::Credentials;
use tokio::process::{Child, Command};

/// How long a fresh moto server may take to answer.
const STARTUP: Duration = Duration::from_secs(60);

pub struct Moto {
    /// Killed when the test ends, passing or not.
    _child: Child,
    pub endpoint: String,
}

impl Moto {
    /// Starts a moto server on a free loopback port and waits until it
    /// answers.
    pub async fn start() -> Moto {
        let workspace = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
        let binary = workspace.join(".venv/bin/moto_server");
        assert!(
            binary.exists(),
            "{} is missing: run scripts/test.sh, which installs it",
            binary.display()
        );
        let port = free_port();
        let child = Command::new(&binary)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start moto_server");
        let endpoint = format!("http://127.0.0.1:{port}");
        wait_until_ready(&endpoint).await;
        Moto {
            _child: child,
            endpoint,
        }
    }

    /// Clients talking to this server, with the crate's retry policy.
    pub async fn clients(&self) -> Clients {
        clients_for(&self.endpoint, None).await
    }

    /// Everything moto keeps, as its dashboard sees it.
    pub async fn model_data(&self) -> serde_json::Value {
        reqwest::get(format!("{}/moto-api/data.json", self.endpoint))
            .await
            .expect("GET /moto-api/data.json")
            .json()
            .await
            .expect("moto's data is JSON")
    }

    /// The emails moto's SES accepted: objects with `source`,
    /// `destinations.ToAddresses`, `subject` and `body`.
    pub async fn sent_emails(&self) -> Vec<serde_json::Value> {
        let data = self.model_data().await;
        data["ses"]["Message"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }
}

/// Clients for any endpoint, with test credentials in us-east-1. With
/// `retry`, that retry policy instead of the crate's (to fail fast in tests
/// of unreachable endpoints).
pub async fn clients_for(endpoint: &str, retry: Option<RetryConfig>) -> Clients {
    let mut loader = config_loader()
        .endpoint_url(endpoint)
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("testing", "testing", None, None, "tests"));
    if let Some(retry) = retry {
        loader = loader.retry_config(retry);
    }
    Clients::new(&loader.load().await)
}

/// A loopback port nothing listens on (right now).
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    listener.local_addr().expect("local address").port()
}

async fn wait_until_ready(endpoint: &str) {
    let url = format!("{endpoint}/moto-api/");
    let deadline = Instant::now() + STARTUP;
    let http = reqwest::Client::new();
    loop {
        if let Ok(response) = http.get(&url).send().await {
            if response.status().is_success() {
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "moto_server did not answer at {url} within {STARTUP:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
