//! Faults the bakery must survive, each against the real binary: a mail
//! server that refuses or is gone, a partner that fails, hangs or is gone,
//! SIGKILL over and over under load, a full disk, a locked database, and
//! conflicting requests racing on one order.
//!
//! The fakes here (an SMTP server, a partner that can misbehave) listen on
//! real ports; nothing sleeps to wait for the bakery: every wait polls with
//! a deadline.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::flaky_partner::{FlakyPartner, PartnerMode};
use crate::support::*;

/// Waits for the dead letter of order `order_id`.
async fn dead_letter_for(bakery: &Bakery, order_id: &str) -> Value {
    eventually(&format!("the dead letter of {order_id}"), LIMIT, || async {
        dead_letters(bakery)
            .await
            .into_iter()
            .find(|l| l["orderId"] == order_id)
    })
    .await
}

// ---------------------------------------------------------------------------
// A tiny SMTP server.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SmtpMode {
    /// Takes every message.
    Up,
    /// Answers `MAIL FROM` with this transient code (421 also hangs up).
    Tempfail(u16),
    /// The port is closed: connections are refused.
    Down,
}

/// An SMTP server on a real port: 220, EHLO 250, MAIL/RCPT 250, DATA 354,
/// "." 250, QUIT 221. It keeps every message it accepted.
#[derive(Clone)]
struct SmtpServer {
    port: u16,
    state: Arc<Mutex<SmtpState>>,
    accept: Arc<tokio::sync::Mutex<Option<JoinHandle<()>>>>,
}

struct SmtpState {
    mode: SmtpMode,
    messages: Vec<String>,
    refused: usize,
}

impl SmtpServer {
    async fn start() -> SmtpServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let server = SmtpServer {
            port: listener.local_addr().unwrap().port(),
            state: Arc::new(Mutex::new(SmtpState {
                mode: SmtpMode::Up,
                messages: Vec::new(),
                refused: 0,
            })),
            accept: Arc::default(),
        };
        *server.accept.lock().await = Some(server.serve(listener));
        server
    }

    fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    fn serve(&self, listener: TcpListener) -> JoinHandle<()> {
        let state = self.state.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(smtp_session(stream, state.clone()));
            }
        })
    }

    async fn set_mode(&self, mode: SmtpMode) {
        self.state.lock().unwrap().mode = mode;
        let mut accept = self.accept.lock().await;
        match (mode, accept.take()) {
            (SmtpMode::Down, Some(task)) => {
                // Dropping the listener closes the port.
                task.abort();
                let _ = task.await;
            }
            (SmtpMode::Down, None) => {}
            (_, Some(task)) => *accept = Some(task),
            (_, None) => {
                let listener = TcpListener::bind(("127.0.0.1", self.port)).await.unwrap();
                *accept = Some(self.serve(listener));
            }
        }
    }

    /// Messages accepted (DATA answered 250) to `to` that mention `needle`.
    fn messages_about(&self, to: &str, needle: &str) -> usize {
        let state = self.state.lock().unwrap();
        state
            .messages
            .iter()
            .filter(|m| header_line(m, "To").contains(to) && m.contains(needle))
            .count()
    }

    fn messages(&self) -> usize {
        self.state.lock().unwrap().messages.len()
    }

    /// `MAIL FROM` commands answered with a transient failure.
    fn refused(&self) -> usize {
        self.state.lock().unwrap().refused
    }
}

/// One line without its CRLF; `None` at the end of the connection.
async fn smtp_line(read: &mut BufReader<tokio::net::tcp::OwnedReadHalf>) -> Option<String> {
    let mut line = Vec::new();
    match read.read_until(b'\n', &mut line).await {
        Ok(0) | Err(_) => None,
        Ok(_) => Some(
            String::from_utf8_lossy(&line)
                .trim_end_matches(['\r', '\n'])
                .to_string(),
        ),
    }
}

async fn smtp_session(stream: tokio::net::TcpStream, state: Arc<Mutex<SmtpState>>) {
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    if write.write_all(b"220 fake-smtp ESMTP\r\n").await.is_err() {
        return;
    }
    while let Some(command) = smtp_line(&mut read).await {
        let verb = command
            .split([' ', ':'])
            .next()
            .unwrap_or("")
            .to_ascii_uppercase();
        let reply: String = match verb.as_str() {
            "EHLO" => "250-fake-smtp\r\n250-8BITMIME\r\n250 SIZE 10485760\r\n".into(),
            "HELO" | "RCPT" | "RSET" | "NOOP" => "250 OK\r\n".into(),
            "MAIL" => {
                let mode = state.lock().unwrap().mode;
                match mode {
                    SmtpMode::Tempfail(code) => {
                        state.lock().unwrap().refused += 1;
                        let reply = format!("{code} 4.3.2 try again later\r\n");
                        let _ = write.write_all(reply.as_bytes()).await;
                        if code == 421 {
                            return;
                        }
                        continue;
                    }
                    _ => "250 OK\r\n".into(),
                }
            }
            "DATA" => {
                if write
                    .write_all(b"354 end with <CRLF>.<CRLF>\r\n")
                    .await
                    .is_err()
                {
                    return;
                }
                let mut message = String::new();
                loop {
                    let Some(text) = smtp_line(&mut read).await else {
                        return;
                    };
                    if text == "." {
                        break;
                    }
                    message.push_str(text.strip_prefix('.').unwrap_or(&text));
                    message.push('\n');
                }
                state.lock().unwrap().messages.push(message);
                "250 2.0.0 queued\r\n".into()
            }
            "QUIT" => {
                let _ = write.write_all(b"221 bye\r\n").await;
                return;
            }
            _ => "502 not implemented\r\n".into(),
        };
        if write.write_all(reply.as_bytes()).await.is_err() {
            return;
        }
    }
}

#[tokio::test]
async fn smtp_refusing_or_down_dead_letters_baker_emails_and_redrive_sends_each_once() {
    let started = Instant::now();
    let smtp = SmtpServer::start().await;
    let url = smtp.url();
    let bakery = Bakery::start(&["--smtp-url", &url, "--max-tries", "3"]).await;

    let ann = id_of(&bakery.order("Ann").await);
    wait_for(&bakery, &ann, "baker_notified", LIMIT).await;
    assert_eq!(smtp.messages_about(BAKER_EMAIL, &ann), 1);

    // The server refuses for a while: the record is retried with backoff
    // (the stream shard waits meanwhile), then dead-lettered with the reason.
    let mut failing = Vec::new();
    for (name, mode) in [
        ("Bob", SmtpMode::Tempfail(451)),
        ("Cat", SmtpMode::Tempfail(421)),
        ("Dan", SmtpMode::Down),
    ] {
        smtp.set_mode(mode).await;
        let id = id_of(&bakery.order(name).await);
        let letter = dead_letter_for(&bakery, &id).await;
        println!(
            "smtp {mode:?}: dead-lettered after {} tries: {}",
            letter["attempts"], letter["reason"]
        );
        assert_eq!(letter["source"], "notify-baker", "{letter}");
        assert_eq!(letter["attempts"], 3, "{letter}");
        let reason = letter["reason"].as_str().unwrap().to_lowercase();
        let expected = match mode {
            SmtpMode::Tempfail(code) => code.to_string(),
            _ => "refused".to_string(),
        };
        assert!(reason.contains(&expected), "{expected} in {reason}");
        assert_eq!(smtp.messages_about(BAKER_EMAIL, &id), 0);
        failing.push(id);
    }
    assert_eq!(
        smtp.refused(),
        12,
        "451 and 421: max-tries each, for the cake maker's email and the confirmation"
    );

    // Back up: new orders flow at once, the dead letters wait for the
    // operator.
    smtp.set_mode(SmtpMode::Up).await;
    let eve = id_of(&bakery.order("Eve").await);
    wait_for(&bakery, &eve, "baker_notified", LIMIT).await;
    assert_eq!(smtp.messages_about(BAKER_EMAIL, &eve), 1);
    for id in &failing {
        let order = bakery.order_status(id).await;
        assert!(!steps_of(&order).contains(&"baker_notified".to_string()));
    }

    let (ok, said) = bakery.dlq(&["redrive", "--all"]).await;
    assert!(ok && said.contains("redrove 3"), "{said}");
    for id in &failing {
        wait_for(&bakery, id, "baker_notified", LIMIT).await;
    }
    assert!(dead_letters(&bakery).await.is_empty());
    // Each order's confirmation waited with its baker email, and went once.
    for id in failing.iter().chain([&ann, &eve]) {
        assert_eq!(
            smtp.messages_about(BAKER_EMAIL, id),
            1,
            "exactly one email for {id}"
        );
        assert_eq!(
            smtp.messages_about(CUSTOMER_EMAIL, id),
            1,
            "one confirmation for {id}"
        );
    }
    assert_eq!(smtp.messages(), 10);
    println!(
        "smtp faults: 5 orders, 12 refused MAILs, 1 closed port, 3 dead letters redriven, \
         5 baker emails and 5 confirmations delivered, 0 duplicates ({:.1} s)",
        started.elapsed().as_secs_f64()
    );
}

#[tokio::test]
async fn a_partner_failing_hanging_or_down_dead_letters_and_redrive_delivers_once() {
    let started = Instant::now();
    let delivery = FlakyPartner::start().await;
    let care = Partner::start().await;
    let mut args = test_flags();
    args.extend(
        [
            "--delivery-webhook-url",
            &delivery.url,
            "--customer-service-webhook-url",
            &care.url,
            "--max-tries",
            "3",
            "--partner-attempts",
            "2",
            "--partner-timeout-ms",
            "200",
        ]
        .map(String::from),
    );
    let bakery = Bakery::start_custom(Custom {
        args,
        log: Some("error".into()),
        ..Custom::default()
    })
    .await;
    let fulfil = |id: String| {
        let bakery = &bakery;
        async move {
            let (status, body) = bakery.fulfil(&id).await;
            assert_eq!(status, 200, "{body}");
        }
    };

    let first = bakery.order("Ann").await;
    let ann = id_of(&first);
    fulfil(ann.clone()).await;
    wait_for(&bakery, &ann, "delivery_notified", LIMIT).await;

    let mut failing = Vec::new();
    for (name, mode, expected) in [
        ("Bob", PartnerMode::Failing, "500"),
        ("Cat", PartnerMode::Hanging, "timed out"),
        ("Dan", PartnerMode::Down, "connect"),
    ] {
        delivery.set_mode(mode).await;
        let id = id_of(&bakery.order(name).await);
        fulfil(id.clone()).await;
        let letter = dead_letter_for(&bakery, &id).await;
        println!(
            "partner {mode:?}: dead-lettered after {} tries: {}",
            letter["attempts"], letter["reason"]
        );
        assert_eq!(letter["source"], "delivery", "{letter}");
        assert_eq!(letter["attempts"], 3, "{letter}");
        let reason = letter["reason"].as_str().unwrap().to_lowercase();
        assert!(reason.contains(expected), "{expected} in {reason}");
        let calls = delivery.calls_for(&id);
        if mode != PartnerMode::Down {
            // max-tries deliveries of the message x partner-attempts each,
            // all with the one webhook id.
            assert_eq!(calls.len(), 6, "{calls:?}");
            let ids: HashSet<_> = calls.iter().map(|c| c.webhook_id.clone()).collect();
            assert_eq!(ids.len(), 1, "{calls:?}");
        } else {
            assert!(calls.is_empty());
        }
        failing.push(id);
    }

    // While the delivery company is unreachable, the rest of the flow goes
    // on: Ann confirms delivery and customer service hears of it.
    let (status, body) = bakery
        .post(
            "/order/delivered",
            Some(&token_of(&first)),
            &json!({"orderId": ann, "orderReview": "fine"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    wait_for(&bakery, &ann, "customer_service_notified", LIMIT).await;

    // Back: new work flows at once; the operator redrives the rest.
    delivery.set_mode(PartnerMode::Up).await;
    let eve = id_of(&bakery.order("Eve").await);
    fulfil(eve.clone()).await;
    wait_for(&bakery, &eve, "delivery_notified", LIMIT).await;
    let (ok, said) = bakery.dlq(&["redrive", "--all"]).await;
    assert!(ok && said.contains("redrove 3"), "{said}");
    for id in &failing {
        wait_for(&bakery, id, "delivery_notified", LIMIT).await;
    }
    assert!(dead_letters(&bakery).await.is_empty());
    let accepted = delivery.accepted();
    assert_eq!(accepted.len(), 5, "{accepted:?}");
    assert!(
        accepted.values().all(|n| *n == 1),
        "each webhook id accepted once: {accepted:?}"
    );
    for id in failing.iter().chain([&ann, &eve]) {
        let accepted_for_order = delivery
            .calls_for(id)
            .iter()
            .filter(|c| c.answered == 204)
            .count();
        assert_eq!(accepted_for_order, 1, "{id}");
    }
    println!(
        "partner faults: 5 orders, {} partner calls (500, hung, refused, accepted), \
         3 dead letters redriven, 5 accepted once each, 0 duplicates ({:.1} s)",
        delivery.call_count(),
        started.elapsed().as_secs_f64()
    );
}

// ---------------------------------------------------------------------------
// SIGKILL under load.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_25_times_under_load_loses_nothing_acknowledged() {
    const KILLS: usize = 25;
    const WORKERS: usize = 16;
    let started = Instant::now();
    let delivery = Partner::start().await;
    let care = Partner::start().await;
    let mut bakery = Bakery::start(&[
        "--delivery-webhook-url",
        &delivery.url,
        "--customer-service-webhook-url",
        &care.url,
    ])
    .await;
    // Each kill after 5-40 acknowledged answers since the last start.
    let KillRun {
        load,
        done,
        killed_at,
        workers_done,
        ..
    } = kill_under_load(
        &mut bakery,
        KILLS,
        WORKERS,
        (5, 36),
        Duration::from_secs(10),
        "kill-test",
    )
    .await;
    let orders = done.len();

    // Everything settles: one baker email, one delivery call and one
    // feedback call per order.
    eventually("every partner call and email", LIMIT, || async {
        (bakery.baker_emails().len() >= orders
            && delivery.accepted_ids().len() >= orders
            && care.accepted_ids().len() >= orders)
            .then_some(())
    })
    .await;
    let settled = started.elapsed();
    let stored = bakery.count("SELECT count(*) FROM orders") as usize;
    assert_eq!(
        stored, orders,
        "one stored order per Idempotency-Key, none lost"
    );
    let keys: HashSet<_> = done.iter().map(|(_, key)| key.clone()).collect();
    assert_eq!(keys.len(), orders);
    assert_eq!(bakery.baker_emails().len(), stored, "baker emails");
    let emails = bakery.baker_emails();
    for (id, _) in &done {
        let mails = emails.iter().filter(|(_, text)| text.contains(id.as_str()));
        assert_eq!(mails.count(), 1, "baker emails for {id}");
    }
    assert_eq!(delivery.accepted_ids().len(), stored, "delivery notices");
    assert_eq!(care.accepted_ids().len(), stored, "feedback calls");
    assert_eq!(delivery.bad_signatures() + care.bad_signatures(), 0);
    let complete = futures::stream::iter(done.iter().map(|(id, _)| {
        let bakery = &bakery;
        async move {
            let order = bakery.order_status(id).await;
            order["status"] == "delivered" && steps_of(&order).len() == 7
        }
    }))
    .buffer_unordered(16)
    .collect::<Vec<bool>>()
    .await;
    assert!(
        complete.iter().all(|c| *c),
        "every order delivered, 7 steps"
    );
    assert_eq!(bakery.count("SELECT count(*) FROM dead_letters"), 0);

    // The at-least-once window: calls a partner got again, with the same
    // webhook id, because a kill came between its answer and the record.
    let delivery_repeats = delivery.accepted_calls() - delivery.accepted_ids().len();
    let care_repeats = care.accepted_calls() - care.accepted_ids().len();
    let most_calls = |partner: &Partner| {
        let mut calls: HashMap<String, usize> = HashMap::new();
        for call in partner.received() {
            *calls.entry(call.webhook_id).or_default() += 1;
        }
        calls.into_values().max().unwrap_or(0)
    };
    println!(
        "sigkill: {KILLS} kills in {:.1} s, {orders} orders ({} acknowledged first try, {} only \
         after a retry), {} acknowledged answers, {} requests failed by kills and retried; \
         baker emails {}, delivery notices {} ({} calls, {delivery_repeats} repeated), \
         feedback calls {} ({} calls, {care_repeats} repeated); at most {} calls with one \
         webhook id; lost 0; load finished at {:.1} s, all settled at {:.1} s, total {:.1} s",
        killed_at.as_secs_f64(),
        load.first_try.load(Ordering::Relaxed),
        load.after_retry.load(Ordering::Relaxed),
        load.acknowledged.load(Ordering::Relaxed),
        load.failed.load(Ordering::Relaxed),
        bakery.baker_emails().len(),
        delivery.accepted_ids().len(),
        delivery.accepted_calls(),
        care.accepted_ids().len(),
        care.accepted_calls(),
        most_calls(&delivery).max(most_calls(&care)),
        workers_done.as_secs_f64(),
        settled.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
}

// ---------------------------------------------------------------------------
// A full disk and a locked database.

/// A tmpfs mounted for one test; unmounted (lazily) when dropped.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Result<Tmpfs, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let output = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output()
            .map_err(|e| e.to_string())?;
        if output.status.success() {
            Ok(Tmpfs { dir })
        } else {
            Err(String::from_utf8_lossy(&output.stderr).trim().to_string())
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// Fills the filesystem at `dir` with one file until writes fail.
fn fill(file: &Path) -> u64 {
    use std::io::Write;
    let mut out = std::fs::File::create(file).unwrap();
    let chunk = vec![0xa5u8; 16 * 1024];
    let mut written = 0;
    // Then byte by byte, so not even a page is left.
    for size in [chunk.len(), 512, 1] {
        while out.write_all(&chunk[..size]).is_ok() {
            written += size as u64;
        }
    }
    let _ = out.sync_all();
    written
}

fn integrity(database: &Path) -> String {
    let db = rusqlite::Connection::open(database).unwrap();
    db.query_row("PRAGMA integrity_check", [], |row| row.get(0))
        .unwrap()
}

#[tokio::test]
async fn a_full_disk_answers_503_and_corrupts_nothing() {
    let started = Instant::now();
    let tmpfs = match Tmpfs::mount("16m") {
        Ok(tmpfs) => tmpfs,
        Err(why) => {
            println!(
                "SKIPPED a_full_disk_answers_503_and_corrupts_nothing: cannot mount a tmpfs ({why})"
            );
            return;
        }
    };
    let data = tempfile::tempdir_in(tmpfs.path()).unwrap();
    let mut args = test_flags();
    // Nothing may be dead-lettered for good while the disk is full.
    args.extend(["--max-tries", "1000"].map(String::from));
    let mut bakery = Bakery::start_custom(Custom {
        args,
        log: Some("error".into()),
        data: Some(data),
        ..Custom::default()
    })
    .await;
    let database: PathBuf = bakery.data.path().join("bakery.sqlite3");

    let mut acknowledged = Vec::new();
    for i in 0..5 {
        acknowledged.push(bakery.order(&format!("Before {i}")).await);
    }
    let filler = tmpfs.path().join("filler");
    let filled = fill(&filler);

    // Order until the disk says no: a clear 503, never a 500.
    let mut refused = None;
    for i in 0..5000 {
        let key = format!("disk-full-{i}");
        let response = bakery
            .client
            .post(format!("{}/order", bakery.url))
            .header("idempotency-key", &key)
            .json(&order_body(&format!("While full {i}")))
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        if status == 201 {
            acknowledged.push(response.json().await.unwrap());
            continue;
        }
        assert_eq!(status, 503, "a full disk is unavailable, not an error");
        let retry_after = response.headers().get("retry-after").cloned();
        let content_type = response.headers()["content-type"].clone();
        let problem: Value = response.json().await.unwrap();
        assert_eq!(content_type, "application/problem+json");
        assert!(retry_after.is_some());
        assert_eq!(problem["status"], 503);
        assert!(
            !problem.to_string().to_lowercase().contains("sqlite"),
            "{problem}"
        );
        refused = Some((key, i));
        break;
    }
    let (key, placed_while_full) = refused.expect("the disk fills up");
    // Still full: still 503, and reads still work.
    for _ in 0..3 {
        let (status, _) = bakery.post("/order", None, &order_body("Still full")).await;
        assert_eq!(status, 503);
    }
    let first = id_of(&acknowledged[0]);
    assert_eq!(bakery.order_status(&first).await["name"], "Before 0");

    // Space comes back: the refused request, retried with its key, works.
    std::fs::remove_file(&filler).unwrap();
    let retried = eventually("an order once there is space", LIMIT, || async {
        let response = bakery
            .client
            .post(format!("{}/order", bakery.url))
            .header("idempotency-key", &key)
            .json(&order_body(&format!("While full {placed_while_full}")))
            .send()
            .await
            .unwrap();
        if response.status() == 201 {
            response.json::<Value>().await.ok()
        } else {
            None
        }
    })
    .await;
    acknowledged.push(retried);
    acknowledged.push(bakery.order("After").await);

    // Every acknowledged order is intact and reaches the cake maker.
    for placed in &acknowledged {
        let id = id_of(placed);
        let order = wait_for(&bakery, &id, "baker_notified", LIMIT).await;
        assert_eq!(order["name"], placed["name"]);
        assert_eq!(order["address"], placed["address"]);
        assert_eq!(bakery.emails_to("baker@bakery.local", &id).len(), 1);
    }
    assert_eq!(
        bakery.count("SELECT count(*) FROM orders") as usize,
        acknowledged.len()
    );
    assert_eq!(integrity(&database), "ok");
    bakery.kill9().await;
    assert_eq!(integrity(&database), "ok", "after a SIGKILL too");
    println!(
        "disk full: filler {filled} bytes, {} orders acknowledged ({placed_while_full} of them \
         after filling), 503 + Retry-After while full, integrity ok, all intact ({:.1} s)",
        acknowledged.len(),
        started.elapsed().as_secs_f64()
    );
}

#[tokio::test]
async fn a_locked_database_answers_503_with_retry_after_then_recovers() {
    // Longer than two busy timeouts: this test is about the busy answer,
    // not the request timeout (see security::a_request_stuck_on_...).
    let bakery = Bakery::start(&["--request-timeout-ms", "30000"]).await;
    let before = bakery.order("Before").await;
    // Idle first: the email sent and both stream consumers checkpointed, so
    // the locked-out write is the only one waiting.
    wait_for(&bakery, &id_of(&before), "baker_notified", LIMIT).await;
    eventually("idle consumers", LIMIT, || async {
        let sql = "SELECT count(*) FROM stream_checkpoints \
                   WHERE sequence = (SELECT max(sequence) FROM stream)";
        (bakery.count(sql) == 2).then_some(())
    })
    .await;
    let database = bakery.data.path().join("bakery.sqlite3");
    let lock = rusqlite::Connection::open(&database).unwrap();
    lock.busy_timeout(Duration::from_secs(10)).unwrap();
    lock.execute_batch("BEGIN EXCLUSIVE").unwrap();

    let started = Instant::now();
    let send = || {
        bakery
            .client
            .post(format!("{}/order", bakery.url))
            .header("idempotency-key", "while-locked")
            .json(&order_body("Locked out"))
            .send()
    };
    let response = send().await.unwrap();
    let waited = started.elapsed();
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["retry-after"], "1");
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let problem: Value = response.json().await.unwrap();
    assert!(problem["type"].as_str().unwrap().ends_with("unavailable"));
    // Readers are not blocked by a writer (WAL).
    let (status, _) = bakery
        .get(&format!("/order/{}", id_of(&before)), Some(BAKER_TOKEN))
        .await;
    assert_eq!(status, 200);

    lock.execute_batch("ROLLBACK").unwrap();
    let response = send().await.unwrap();
    assert_eq!(response.status(), 201);
    assert_eq!(bakery.count("SELECT count(*) FROM orders"), 2);
    println!(
        "database busy: 503 + Retry-After after {:.1} s (the busy timeout), 201 after release",
        waited.as_secs_f64()
    );
}

// ---------------------------------------------------------------------------
// Conflicting transitions on one order.

#[tokio::test]
async fn twenty_concurrent_fulfils_answer_the_same_and_announce_once() {
    let bakery = Bakery::start(&[]).await;
    let id = id_of(&bakery.order("Ada").await);
    let answers = futures::future::join_all((0..20).map(|i| {
        let bakery = &bakery;
        let id = id.clone();
        async move {
            bakery
                .post(
                    "/order/fulfilled",
                    Some(BAKER_TOKEN),
                    &json!({"orderId": id, "fulfillmentId": format!("oven-{i}")}),
                )
                .await
        }
    }))
    .await;
    let mut fulfilled_at = HashSet::new();
    let mut fulfillment_ids = HashSet::new();
    for (status, order) in &answers {
        assert_eq!(*status, 200, "{order}");
        let step = order["timeline"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["step"] == "fulfilled")
            .unwrap();
        fulfilled_at.insert(step["at"].to_string());
        fulfillment_ids.insert(order["fulfillmentId"].to_string());
    }
    assert_eq!(fulfilled_at.len(), 1, "{fulfilled_at:?}");
    assert_eq!(fulfillment_ids.len(), 1, "the winner's details only");
    let events = bakery.count(&format!(
        "SELECT count(*) FROM stream WHERE partition_key = '{id}' \
         AND CAST(data AS TEXT) LIKE '%\"eventType\":\"order_fulfilled\"%'"
    ));
    assert_eq!(events, 1, "exactly one order_fulfilled on the stream");
    let order = wait_for(&bakery, &id, "out_for_delivery", LIMIT).await;
    assert_eq!(
        steps_of(&order)
            .iter()
            .filter(|s| *s == "out_for_delivery")
            .count(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivering_while_dispatch_runs_is_409_then_200_and_never_backwards() {
    const ROUNDS: usize = 10;
    const RACERS: usize = 3;
    let bakery = Bakery::start(&[]).await;
    let mut conflicts = 0;
    let mut delivered = 0;
    for round in 0..ROUNDS {
        let placed = bakery.order(&format!("Racer {round}")).await;
        let id = id_of(&placed);
        let token = token_of(&placed);
        let watching = AtomicBool::new(true);
        // A watcher polls the status the whole time; it must only go forward.
        let watcher = async {
            let mut seen: Vec<String> = vec![];
            while watching.load(Ordering::Relaxed) {
                let (status, order) = bakery.get(&format!("/order/{id}"), Some(&token)).await;
                assert_eq!(status, 200);
                let now = order["status"].as_str().unwrap().to_string();
                if seen.last() != Some(&now) {
                    seen.push(now);
                }
            }
            seen
        };
        // Confirming delivery in a tight loop from several clients, starting
        // as the fulfilment is sent: 409 until dispatch has it out for
        // delivery, then 200.
        let race = async {
            let fulfil = async {
                let (status, _) = bakery.fulfil(&id).await;
                assert_eq!(status, 200);
            };
            let racers = futures::future::join_all((0..RACERS).map(|_| async {
                let deadline = Instant::now() + LIMIT;
                let mut answers = vec![];
                let mut current = 0;
                loop {
                    let (status, body) = bakery
                        .post(
                            "/order/delivered",
                            Some(&token),
                            &json!({"orderId": id, "orderReview": "raced"}),
                        )
                        .await;
                    answers.push(status);
                    match status {
                        409 => {
                            let now = rank(body["currentStatus"].as_str().unwrap());
                            assert!(now <= 1 && now >= current, "{body}");
                            current = now;
                        }
                        200 => {
                            assert_eq!(body["status"], "delivered");
                            return answers;
                        }
                        other => panic!("delivered answered {other}: {body}"),
                    }
                    assert!(Instant::now() < deadline, "never out for delivery");
                }
            }));
            let ((), answers) = tokio::join!(fulfil, racers);
            watching.store(false, Ordering::Relaxed);
            answers
        };
        let (seen, answers) = tokio::join!(watcher, race);
        let ranks: Vec<usize> = seen.iter().map(|s| rank(s)).collect();
        assert!(ranks.windows(2).all(|w| w[0] < w[1]), "{seen:?}");
        for racer in &answers {
            let (last, before) = racer.split_last().unwrap();
            assert_eq!(*last, 200);
            assert!(before.iter().all(|s| *s == 409), "{racer:?}");
            conflicts += before.len();
            delivered += 1;
        }
        wait_for(&bakery, &id, "customer_service_notified", LIMIT).await;
        // The delivery company's queue may be behind customer service's.
        let order = wait_for(&bakery, &id, "delivery_notified", LIMIT).await;
        assert_eq!(order["status"], "delivered");
        assert_eq!(steps_of(&order).len(), 7, "{order}");
        // Every racer's 200 sent the review on; customer service hears once.
        assert_eq!(bakery.emails_to("care@bakery.local", &id).len(), 1);
        if round == 0 {
            println!("race {round}: statuses seen {seen:?}, answers {answers:?}");
        }
    }
    println!(
        "delivery race: {ROUNDS} orders x {RACERS} clients, {conflicts} answers 409 then \
         {delivered} answers 200, no 5xx, never backwards"
    );
}
