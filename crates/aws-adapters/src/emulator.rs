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

/// Starts moto's server with its DynamoDB requests answered one at a time.
///
/// DynamoDB applies a conditional write to an item atomically; the emulator
/// checks the condition and then applies the write as separate steps, on
/// one thread per request with no lock between them, so on a busy machine
/// two compare-and-sets on the same version can both succeed. One request
/// at a time, a lost race in a test is the bakery's doing, never the
/// emulator's. (The tests' fault proxy does the same in front of it.)
///
/// The table's DynamoDB Streams requests take the same turn: the emulator
/// applies a transaction's writes one by one and undoes them all if one
/// fails, and a change record read in between would be of a write that
/// never happened. DynamoDB shows a transaction's changes only once it
/// commits.
///
/// Two costs of the emulator's undo are cut, without changing what it
/// answers: it deep-copies the table before every transaction, change
/// records included (they only grow, so every transaction got slower than
/// the one before), and every shard iterator it ever handed out stays in
/// memory, holding on to the copy of the table it was read from. The
/// change records are copied as a list of the same records (they never
/// change once written), and an iterator is forgotten once it is read
/// (the table feed takes a fresh one every time).
///
/// And one error is cut: an iterator holds the stream shard of the table
/// as it was when the iterator was made, so an iterator made before a
/// failed transaction read the undone writes from the shard the undo threw
/// away. An iterator reads the table's shard as it is now.
const ONE_DYNAMODB_REQUEST_AT_A_TIME: &str = "\
import copy
import threading
from moto.dynamodb.models.table import StreamShard
from moto.dynamodb.responses import DynamoHandler
from moto.dynamodbstreams.models import DynamoDBStreamsBackend, ShardIterator
from moto.dynamodbstreams.responses import DynamoDBStreamsHandler
from moto.server import main
_turn = threading.Lock()
def _taking_turns(handler):
    answer = handler.call_action
    def one_at_a_time(self):
        with _turn:
            return answer(self)
    handler.call_action = one_at_a_time
_taking_turns(DynamoHandler)
_taking_turns(DynamoDBStreamsHandler)
def _copy_shard(self, memo):
    twin = copy.copy(self)
    twin.table = memo.get(id(self.table), self.table)
    twin.items = list(self.items)
    return twin
StreamShard.__deepcopy__ = _copy_shard
_get_records = DynamoDBStreamsBackend.get_records
def _get_records_once(self, iterator_arn, limit):
    answer = _get_records(self, iterator_arn, limit)
    self.shard_iterators.pop(iterator_arn, None)
    self.shard_iterators.pop(answer.get('NextShardIterator'), None)
    return answer
DynamoDBStreamsBackend.get_records = _get_records_once
_read = ShardIterator.get
def _read_current_shard(self, limit=1000):
    table = self.streams_backend.dynamodb.get_table(self.stream_shard.table.name)
    self.stream_shard = table.stream_shard
    return _read(self, limit)
ShardIterator.get = _read_current_shard
main()
";

impl Moto {
    /// Starts a moto server on a free loopback port and waits until it
    /// answers.
    pub async fn start() -> Moto {
        Moto::start_with_env(&[]).await
    }

    /// [`Moto::start`] with moto settings in its environment, such as
    /// `MOTO_IAM_LOAD_MANAGED_POLICIES=true` (AWS's managed IAM policies,
    /// which a deploy tool attaches to the role it makes).
    pub async fn start_with_env(env: &[(&str, &str)]) -> Moto {
        let workspace = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
        let binary = workspace.join(".venv/bin/moto_server");
        assert!(
            binary.exists(),
            "{} is missing: run scripts/test.sh, which installs it",
            binary.display()
        );
        let python = workspace.join(".venv/bin/python");
        let port = free_port();
        let child = Command::new(&python)
            .args(["-c", ONE_DYNAMODB_REQUEST_AT_A_TIME])
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .envs(env.iter().copied())
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
///
/// Ports come from 20000-29999, below the range the kernel hands out for
/// port 0, and each is handed out once per process: a port 0 listener
/// elsewhere, or another test of this process starting its own emulator at
/// the same moment, cannot take the port between this check and the
/// emulator's bind (when it could, a test reached another test's emulator,
/// which went away with that test).
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    const FIRST: u16 = 20_000;
    const COUNT: u16 = 10_000;
    static NEXT: AtomicU16 = AtomicU16::new(0);
    // Processes start at different places in the range.
    let start = (std::process::id() % u32::from(COUNT)) as u16;
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = FIRST + (start.wrapping_add(n) % COUNT);
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
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
