//! What the end-to-end tests share: a real `bakery` process on a free port
//! with its own data directory, a partner that receives signed webhooks on
//! a real HTTP listener, and waiting with a deadline instead of sleeping.

use std::collections::HashSet;
use std::future::Future;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// The longest any test waits for something to happen.
pub const LIMIT: Duration = Duration::from_secs(60);

pub const BAKER_TOKEN: &str = "test-baker-token-0123456789";
pub const WEBHOOK_SECRET: &str = "whsec_dGVzdC13ZWJob29rLXNlY3JldC0wMTIzNDU2Nzg5";

/// A running `bakery` process.
pub struct Bakery {
    pub data: tempfile::TempDir,
    pub url: String,
    pub client: reqwest::Client,
    args: Vec<String>,
    /// Environment variables for the process beyond the test's own.
    env: Vec<(String, String)>,
    child: Option<Child>,
}

impl Bakery {
    /// Starts a bakery with quick retries; `args` adds flags.
    pub async fn start(args: &[&str]) -> Bakery {
        Bakery::start_with_env(args, &[]).await
    }

    /// Starts a bakery with extra environment variables.
    pub async fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> Bakery {
        let data = tempfile::tempdir().unwrap();
        let mut bakery = Bakery {
            data,
            url: String::new(),
            client: reqwest::Client::builder()
                .pool_max_idle_per_host(64)
                .build()
                .unwrap(),
            args: args.iter().map(|a| a.to_string()).collect(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            child: None,
        };
        bakery.launch().await;
        bakery
    }

    async fn launch(&mut self) {
        let mut command = Command::new(env!("CARGO_BIN_EXE_bakery"));
        command
            .args(["--listen", "127.0.0.1:0", "--data-dir"])
            .arg(self.data.path())
            .args([
                "--baker-token",
                BAKER_TOKEN,
                "--webhook-secret",
                WEBHOOK_SECRET,
            ])
            .args(["--retry-delay-ms", "20", "--max-retry-delay-ms", "200"])
            .args(["--partner-timeout-ms", "2000"])
            .args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .env(
                "BAKERY_LOG",
                std::env::var("TEST_BAKERY_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        let mut child = command.spawn().expect("the bakery binary starts");
        let url = listening_url(&mut child).await;
        self.url = url;
        self.child = Some(child);
    }

    /// SIGKILL: no chance to finish anything.
    pub async fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().await.unwrap();
        }
    }

    pub async fn restart(&mut self) {
        self.kill9().await;
        self.launch().await;
    }

    /// Ctrl-C, then the exit status and everything it printed after it.
    pub async fn interrupt(&mut self) -> std::process::ExitStatus {
        let child = self.child.as_mut().unwrap();
        let pid = Pid::from_raw(child.id().unwrap() as i32);
        kill(pid, Signal::SIGINT).unwrap();
        let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
            .await
            .expect("the bakery stops within 30 s of Ctrl-C")
            .unwrap();
        self.child = None;
        status
    }

    pub fn outbox(&self) -> PathBuf {
        self.data.path().join(embedded::OUTBOX_FILE)
    }

    /// Every email in the outbox, oldest first: (key, message), read the
    /// way `bakery outbox` reads them, beside the running bakery.
    pub fn emails(&self) -> Vec<(String, String)> {
        let reader = embedded::OutboxReader::open(&self.outbox()).unwrap();
        reader
            .list()
            .unwrap()
            .into_iter()
            .map(|mail| {
                let message = reader.message(&mail.key).unwrap().unwrap_or_default();
                (mail.key, String::from_utf8_lossy(&message).into_owned())
            })
            .collect()
    }

    /// Emails to the cake maker: one per order. (Customers who give an
    /// address, as [`order_body`] does, get a confirmation besides.)
    pub fn baker_emails(&self) -> Vec<(String, String)> {
        self.emails()
            .into_iter()
            .filter(|(_, text)| header_line(text, "To").contains(BAKER_EMAIL))
            .collect()
    }

    /// Emails to `to` that mention `needle`.
    pub fn emails_to(&self, to: &str, needle: &str) -> Vec<String> {
        self.emails()
            .into_iter()
            .map(|(_, text)| text)
            .filter(|text| header_line(text, "To").contains(to) && text.contains(needle))
            .collect()
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: &Value) -> (u16, Value) {
        let mut request = self.client.post(format!("{}{path}", self.url)).json(body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        answer(request.send().await.unwrap()).await
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> (u16, Value) {
        let mut request = self.client.get(format!("{}{path}", self.url));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        answer(request.send().await.unwrap()).await
    }

    /// The cake maker marks an order fulfilled.
    pub async fn fulfil(&self, order_id: &str) -> (u16, Value) {
        self.post(
            "/order/fulfilled",
            Some(BAKER_TOKEN),
            &json!({ "orderId": order_id }),
        )
        .await
    }

    /// Places an order and returns the 201 body (with `customerToken`).
    pub async fn order(&self, name: &str) -> Value {
        let (status, body) = self.post("/order", None, &order_body(name)).await;
        assert_eq!(status, 201, "{body}");
        body
    }

    pub async fn order_status(&self, order_id: &str) -> Value {
        let (status, body) = self
            .get(&format!("/order/{order_id}"), Some(BAKER_TOKEN))
            .await;
        assert_eq!(status, 200, "{body}");
        body
    }

    /// Rows of a table in the bakery's database, read-only.
    pub fn count(&self, sql: &str) -> i64 {
        let db = rusqlite::Connection::open_with_flags(
            self.data.path().join("bakery.sqlite3"),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .unwrap();
        db.query_row(sql, [], |row| row.get(0)).unwrap()
    }

    /// `bakery dlq ...` against this bakery's data directory.
    pub async fn dlq(&self, args: &[&str]) -> (bool, String) {
        run_dlq(args, &self.data_dir_flag(), &[]).await
    }

    /// `bakery outbox <args>` on this bakery's data directory: whether it
    /// succeeded, its standard output, and its standard error.
    pub async fn outbox_command(&self, args: &[&str]) -> (bool, String, String) {
        let output =
            bakery_command(&[&["outbox"], args].concat(), &self.data_dir_flag(), &[]).await;
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    }

    fn data_dir_flag(&self) -> [String; 2] {
        [
            "--data-dir".to_string(),
            self.data.path().display().to_string(),
        ]
    }
}

async fn answer(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let bytes = response.bytes().await.unwrap();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (status, body)
}

/// The runner's default cake maker's address.
pub const BAKER_EMAIL: &str = "baker@bakery.local";
/// The customer's address in [`order_body`].
pub const CUSTOMER_EMAIL: &str = "ada@example.com";

pub fn order_body(name: &str) -> Value {
    json!({
        "name": name,
        "address": "12 Analytical Row\nLondon",
        "productId": 1,
        "quantity": 2,
        "email": CUSTOMER_EMAIL
    })
}

/// The value of a header line in an RFC 5322 message.
pub fn header_line<'a>(message: &'a str, name: &str) -> &'a str {
    message
        .lines()
        .take_while(|line| !line.is_empty())
        .find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.eq_ignore_ascii_case(name).then_some(value.trim())
        })
        .unwrap_or("")
}

/// Polls `check` until it yields `Some`, failing the test after `limit`.
pub async fn eventually<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// One webhook call a partner received.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub webhook_id: String,
    pub body: Value,
    pub answered: u16,
}

/// A partner (delivery company or customer service) listening for signed
/// webhooks on a real port. It refuses bad signatures with 401 and answers
/// 500 while told to fail (for everything, or for orders of one name).
#[derive(Clone, Default)]
pub struct Partner {
    pub url: String,
    received: Arc<Mutex<Vec<Delivery>>>,
    fail_name: Arc<Mutex<Option<String>>>,
    bad_signatures: Arc<Mutex<u32>>,
}

impl Partner {
    pub async fn start() -> Partner {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let partner = Partner {
            url: format!("http://{}/hooks", listener.local_addr().unwrap()),
            ..Partner::default()
        };
        let app = axum::Router::new()
            .route("/hooks", axum::routing::post(receive))
            .with_state(partner.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        partner
    }

    pub fn fail_for_name(&self, name: Option<&str>) {
        *self.fail_name.lock().unwrap() = name.map(str::to_string);
    }

    pub fn received(&self) -> Vec<Delivery> {
        self.received.lock().unwrap().clone()
    }

    /// Webhook ids answered 2xx, once each.
    pub fn accepted_ids(&self) -> HashSet<String> {
        self.received()
            .into_iter()
            .filter(|d| d.answered < 300)
            .map(|d| d.webhook_id)
            .collect()
    }

    /// Calls answered 2xx, counting repeats.
    pub fn accepted_calls(&self) -> usize {
        self.received().iter().filter(|d| d.answered < 300).count()
    }

    pub fn bad_signatures(&self) -> u32 {
        *self.bad_signatures.lock().unwrap()
    }
}

async fn receive(State(partner): State<Partner>, headers: HeaderMap, body: Bytes) -> StatusCode {
    if !outbound::verify_webhook(WEBHOOK_SECRET, &headers, &body) {
        *partner.bad_signatures.lock().unwrap() += 1;
        return StatusCode::UNAUTHORIZED;
    }
    let json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let name = json["data"]["name"].as_str().unwrap_or("").to_string();
    let failing = partner.fail_name.lock().unwrap().as_deref() == Some(name.as_str());
    let answered = if failing {
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::NO_CONTENT
    };
    partner.received.lock().unwrap().push(Delivery {
        webhook_id: headers
            .get("webhook-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string(),
        body: json,
        answered: answered.as_u16(),
    });
    answered
}

/// The flags [`Bakery::start`] always passes, for bakeries started with
/// [`Bakery::start_custom`] that want them (or most of them).
pub fn test_flags() -> Vec<String> {
    [
        "--baker-token",
        BAKER_TOKEN,
        "--webhook-secret",
        WEBHOOK_SECRET,
        "--retry-delay-ms",
        "20",
        "--max-retry-delay-ms",
        "200",
    ]
    .map(String::from)
    .to_vec()
}

/// How to start a bakery when [`Bakery::start`] is not enough: the whole
/// command line, the log filter, where standard error goes, the data
/// directory. Such a bakery is stopped with `kill9` or `interrupt`;
/// `restart` would relaunch it with the standard flags instead.
#[derive(Default)]
pub struct Custom {
    /// Every flag after `--listen` and `--data-dir`; nothing is added.
    pub args: Vec<String>,
    /// `BAKERY_LOG`; `None` leaves it unset, so the binary's default (info).
    pub log: Option<String>,
    /// Standard error goes to this file instead of the test's.
    pub stderr: Option<PathBuf>,
    /// The data directory; a fresh temporary one when `None`.
    pub data: Option<tempfile::TempDir>,
}

impl Bakery {
    /// Starts a bakery exactly as `custom` says.
    pub async fn start_custom(custom: Custom) -> Bakery {
        let data = match custom.data {
            Some(data) => data,
            None => tempfile::tempdir().unwrap(),
        };
        let mut command = Command::new(env!("CARGO_BIN_EXE_bakery"));
        command
            .args(["--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data.path())
            .args(&custom.args)
            .env_remove("BAKERY_LOG")
            .stdout(Stdio::piped())
            .kill_on_drop(true);
        if let Some(filter) = &custom.log {
            command.env("BAKERY_LOG", filter);
        }
        match &custom.stderr {
            Some(file) => command.stderr(std::fs::File::create(file).unwrap()),
            None => command.stderr(Stdio::inherit()),
        };
        let mut child = command.spawn().expect("the bakery binary starts");
        let url = listening_url(&mut child).await;
        Bakery {
            data,
            url,
            client: reqwest::Client::builder()
                .pool_max_idle_per_host(64)
                .build()
                .unwrap(),
            args: Vec::new(),
            env: Vec::new(),
            child: Some(child),
        }
    }
}

/// Reads the child's standard output up to `listening on <url>`, then keeps
/// draining it in the background.
async fn listening_url(child: &mut Child) -> String {
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let url = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(url) = line.strip_prefix("listening on ") {
                return url.to_string();
            }
        }
        panic!("the bakery exited before listening");
    })
    .await
    .expect("the bakery listens within 30 s");
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    url
}

/// Every dead letter `bakery dlq list` shows, as JSON.
pub async fn dead_letters(bakery: &Bakery) -> Vec<Value> {
    let (ok, listed) = bakery.dlq(&["list"]).await;
    assert!(ok, "{listed}");
    listed
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// Every step of a finished order's timeline, in flow order.
pub const EVERY_STEP: [&str; 7] = [
    "placed",
    "baker_notified",
    "fulfilled",
    "out_for_delivery",
    "delivery_notified",
    "delivered",
    "customer_service_notified",
];

/// The steps an order's timeline has reached.
pub fn steps_of(order: &Value) -> Vec<String> {
    order["timeline"]
        .as_array()
        .map(|steps| {
            steps
                .iter()
                .filter_map(|s| s["step"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Waits until the order's timeline has `step`, and returns the order.
pub async fn wait_for(bakery: &Bakery, order_id: &str, step: &str, limit: Duration) -> Value {
    eventually(&format!("{step} of {order_id}"), limit, || async {
        let order = bakery.order_status(order_id).await;
        steps_of(&order).iter().any(|s| s == step).then_some(order)
    })
    .await
}

pub fn id_of(order: &Value) -> String {
    order["orderId"].as_str().unwrap().to_string()
}

pub fn token_of(order: &Value) -> String {
    order["customerToken"].as_str().unwrap().to_string()
}

/// `bakery dlq <args> <place>` (`place`: the flags that say which bakery's
/// dead letters): whether it succeeded, and what it printed.
pub async fn run_dlq(args: &[&str], place: &[String], envs: &[(&str, &str)]) -> (bool, String) {
    let output = bakery_command(&[&["dlq"], args].concat(), place, envs).await;
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned()
            + &String::from_utf8_lossy(&output.stderr),
    )
}

/// Runs `bakery <args> <place>` to its end.
pub async fn bakery_command(
    args: &[&str],
    place: &[String],
    envs: &[(&str, &str)],
) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_bakery"))
        .args(args)
        .args(place)
        .envs(envs.iter().copied())
        .env("BAKERY_LOG", "warn")
        .output()
        .await
        .unwrap()
}

/// Where a status stands in the flow, to check it only moves forward.
pub fn rank(status: &str) -> usize {
    ["placed", "fulfilled", "out_for_delivery", "delivered"]
        .iter()
        .position(|s| *s == status)
        .unwrap_or_else(|| panic!("unknown status {status}"))
}

// ---------------------------------------------------------------------------
// A customer load that survives kills (the SIGKILL tests of both backends).

/// What the load saw, shared by its workers.
#[derive(Default)]
pub struct Load {
    /// Answers the bakery gave that the load waited for (2xx).
    pub acknowledged: AtomicUsize,
    /// Requests that got no answer or a 5xx (and were retried).
    pub failed: AtomicUsize,
    /// Orders acknowledged on the first try / only after a retry.
    pub first_try: AtomicUsize,
    pub after_retry: AtomicUsize,
    /// (order id, Idempotency-Key) of every order that completed.
    pub done: Mutex<Vec<(String, String)>>,
}

/// A pseudo-random number in `0..n` (the test crate has no `rand`).
pub fn random_below(n: u64) -> u64 {
    (uuid::Uuid::new_v4().as_u128() % u128::from(n)) as u64
}

/// One customer's whole order, retried through kills: place (with one
/// Idempotency-Key), have it fulfilled, confirm delivery.
pub async fn one_order(
    client: reqwest::Client,
    url: Arc<RwLock<String>>,
    load: Arc<Load>,
    n: usize,
    key_prefix: &str,
) {
    let key = format!("{key_prefix}-{n}-{}", uuid::Uuid::new_v4());
    let deadline = Instant::now() + LIMIT;
    let base = || url.read().unwrap().clone();
    let retry = |what: &str| {
        assert!(Instant::now() < deadline, "gave up on {what} of {key}");
        load.failed.fetch_add(1, Ordering::Relaxed);
    };
    // Place until acknowledged; a retry uses the same key.
    let mut tries = 0;
    let placed: Value = loop {
        tries += 1;
        let sent = client
            .post(format!("{}/order", base()))
            .header("idempotency-key", &key)
            .json(&order_body(&format!("Customer {n}")))
            .send()
            .await;
        if let Ok(response) = sent {
            let status = response.status().as_u16();
            assert!(status == 201 || status >= 500, "place answered {status}");
            if status == 201 {
                if let Ok(body) = response.json().await {
                    break body;
                }
            }
        }
        retry("placing");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    load.acknowledged.fetch_add(1, Ordering::Relaxed);
    if tries == 1 {
        load.first_try.fetch_add(1, Ordering::Relaxed);
    } else {
        load.after_retry.fetch_add(1, Ordering::Relaxed);
    }
    let id = id_of(&placed);
    let token = token_of(&placed);
    let steps = [
        (
            "/order/fulfilled",
            BAKER_TOKEN.to_string(),
            json!({"orderId": id}),
        ),
        (
            "/order/delivered",
            token,
            json!({"orderId": id, "orderReview": "survived"}),
        ),
    ];
    for (path, token, body) in steps {
        loop {
            let sent = client
                .post(format!("{}{path}", base()))
                .bearer_auth(&token)
                .json(&body)
                .send()
                .await;
            match sent.map(|r| r.status().as_u16()) {
                Ok(200) => break,
                // Not out for delivery yet: dispatch is behind (or was killed).
                Ok(409) if path == "/order/delivered" => {}
                Ok(status) if status < 500 => panic!("{path} answered {status}"),
                _ => {
                    retry(path);
                }
            }
            assert!(Instant::now() < deadline, "gave up on {path} of {id}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        load.acknowledged.fetch_add(1, Ordering::Relaxed);
    }
    load.done.lock().unwrap().push((id, key));
}

/// What [`kill_under_load`] saw.
pub struct KillRun {
    pub load: Arc<Load>,
    /// (order id, Idempotency-Key) of every order that completed.
    pub done: Vec<(String, String)>,
    /// From the start to the last kill's restart.
    pub killed_at: Duration,
    /// From the start until every worker finished its order in hand.
    pub workers_done: Duration,
    /// Time spent restarting the bakery, all kills together.
    pub restarts: Duration,
}

/// `workers` customers each placing whole orders ([`one_order`]) back to
/// back while the bakery is killed with SIGKILL `kills` times and started
/// again on the same data (its clients follow it to its new port). Each
/// kill comes after `answers_after.0` plus a random `0..answers_after.1`
/// acknowledged answers since the last start and a random 0-30 ms more, so
/// every kill lands under load, with requests, batches, emails and partner
/// calls in flight. The workers stop after the last restart, finishing the
/// order each has in hand.
pub async fn kill_under_load(
    bakery: &mut Bakery,
    kills: usize,
    workers: usize,
    answers_after: (usize, u64),
    request_timeout: Duration,
    key_prefix: &str,
) -> KillRun {
    let started = Instant::now();
    let url = Arc::new(RwLock::new(bakery.url.clone()));
    let load = Arc::new(Load::default());
    let stop = Arc::new(AtomicBool::new(false));
    let client = reqwest::Client::builder()
        .timeout(request_timeout)
        .build()
        .unwrap();
    let next = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = (0..workers)
        .map(|_| {
            let (client, url, load, stop, next) = (
                client.clone(),
                url.clone(),
                load.clone(),
                stop.clone(),
                next.clone(),
            );
            let key_prefix = key_prefix.to_string();
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    one_order(client.clone(), url.clone(), load.clone(), n, &key_prefix).await;
                }
            })
        })
        .collect();

    let mut restarts = Duration::ZERO;
    for _ in 0..kills {
        let before = load.acknowledged.load(Ordering::Relaxed);
        let wait_for = before + answers_after.0 + random_below(answers_after.1) as usize;
        eventually("acknowledged answers between kills", LIMIT, || async {
            (load.acknowledged.load(Ordering::Relaxed) >= wait_for).then_some(())
        })
        .await;
        tokio::time::sleep(Duration::from_millis(random_below(31))).await;
        let restarting = Instant::now();
        bakery.kill9().await;
        bakery.restart().await;
        restarts += restarting.elapsed();
        *url.write().unwrap() = bakery.url.clone();
    }
    let killed_at = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        worker.await.unwrap();
    }
    let done = load.done.lock().unwrap().clone();
    KillRun {
        load,
        done,
        killed_at,
        workers_done: started.elapsed(),
        restarts,
    }
}
