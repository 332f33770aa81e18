//! Attacks on the bakery and what keeps them out, against the real binary:
//! tokens kept hashed and out of the logs, customers confined to their own
//! orders, email header injection, webhook signatures and where webhook
//! URLs come from, and the limits on bodies, fields, time and slow clients.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::*;

/// Every file under `dir`, with its bytes.
fn files_under(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else if let Ok(bytes) = std::fs::read(&path) {
                files.push((path, bytes));
            }
        }
    }
    files
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle.as_bytes())
}

/// The personal data and secrets one order carries through the flow.
struct Secrets {
    baker_token: String,
    customer_token: String,
    name: &'static str,
    address: &'static str,
    email: &'static str,
    review: &'static str,
}

/// Places, fulfils and delivers one order with recognisable personal data,
/// plus a few refused requests, and returns what must stay secret.
async fn full_flow(bakery: &Bakery, baker_token: &str) -> Secrets {
    let name = "Zebulon Quixote-Private";
    let address = "77 Hiddenway Lane\nSecretville";
    let email = "zebulon.private@example.org";
    let review = "Marvellous-review-text";
    let response = bakery
        .client
        .post(format!("{}/order", bakery.url))
        .header("idempotency-key", "log-test-key-1")
        .json(&json!({
            "name": name, "address": address, "email": email,
            "productId": 3, "quantity": 3
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let placed: Value = response.json().await.unwrap();
    let id = id_of(&placed);
    let customer_token = token_of(&placed);
    // Refused attempts log too: a wrong token, the customer's token where
    // the baker's is needed, bad fields.
    let body = json!({"orderId": id});
    let (status, _) = bakery
        .post("/order/fulfilled", Some("wrong-token-0123456789"), &body)
        .await;
    assert_eq!(status, 403);
    let (status, _) = bakery
        .post("/order/fulfilled", Some(&customer_token), &body)
        .await;
    assert_eq!(status, 403);
    let (status, _) = bakery
        .post(
            "/order",
            None,
            &json!({"name": name, "address": address, "email": "not an email", "productId": "x", "quantity": 0}),
        )
        .await;
    assert_eq!(status, 422);
    let (status, order) = bakery
        .post("/order/fulfilled", Some(baker_token), &body)
        .await;
    assert_eq!(status, 200, "{order}");
    eventually("out for delivery", LIMIT, || async {
        let (_, order) = bakery
            .get(&format!("/order/{id}"), Some(&customer_token))
            .await;
        (order["status"] == "out_for_delivery").then_some(())
    })
    .await;
    let (status, _) = bakery
        .post(
            "/order/delivered",
            Some(&customer_token),
            &json!({"orderId": id, "orderReview": review, "deliveryCompanyId": "van-9"}),
        )
        .await;
    assert_eq!(status, 200);
    eventually("customer service notified", LIMIT, || async {
        let (_, order) = bakery.get(&format!("/order/{id}"), Some(baker_token)).await;
        steps_of(&order)
            .contains(&"customer_service_notified".to_string())
            .then_some(())
    })
    .await;
    Secrets {
        baker_token: baker_token.to_string(),
        customer_token,
        name,
        address,
        email,
        review,
    }
}

/// What a full flow left behind.
struct Traces {
    secrets: Secrets,
    /// Every file of the data directory, with its bytes.
    files: Vec<(PathBuf, Vec<u8>)>,
    /// The outbox's emails: (key, message).
    emails: Vec<(String, String)>,
    log: String,
    token_file: PathBuf,
}

/// Runs the full flow on a bakery logging at `log` (unset: the default,
/// info) with a generated baker token; returns what it left behind.
async fn logged_flow(log: Option<&str>) -> Traces {
    let delivery = Partner::start().await;
    let care = Partner::start().await;
    let logs = tempfile::tempdir().unwrap();
    let log_file = logs.path().join("stderr.log");
    let mut bakery = Bakery::start_custom(Custom {
        // No --baker-token: the bakery makes one and keeps it in a file.
        args: [
            "--webhook-secret",
            WEBHOOK_SECRET,
            "--delivery-webhook-url",
            &delivery.url,
            "--customer-service-webhook-url",
            &care.url,
            "--retry-delay-ms",
            "20",
        ]
        .map(String::from)
        .to_vec(),
        log: log.map(String::from),
        stderr: Some(log_file.clone()),
        ..Custom::default()
    })
    .await;
    let token_file = bakery.data.path().join("baker-token");
    let baker_token = std::fs::read_to_string(&token_file)
        .unwrap()
        .trim()
        .to_string();
    let secrets = full_flow(&bakery, &baker_token).await;
    assert_eq!(delivery.accepted_ids().len(), 1);
    assert_eq!(care.accepted_ids().len(), 1);
    let status = bakery.interrupt().await;
    assert!(status.success());
    Traces {
        secrets,
        files: files_under(bakery.data.path()),
        emails: bakery.emails(),
        log: std::fs::read_to_string(&log_file).unwrap(),
        token_file,
    }
}

#[tokio::test]
async fn tokens_are_stored_hashed_and_never_logged() {
    let Traces {
        secrets,
        files,
        emails,
        log,
        token_file,
    } = logged_flow(None).await;

    // Stored hashed: neither token is anywhere in the data directory (the
    // database, its WAL, the outbox, the other secrets), except the baker
    // token's own file and the customer's own confirmation email, whose
    // link carries their token (quoted-printable: `=` is `=3D` there).
    assert!(files.iter().any(|(p, _)| p.ends_with("bakery.sqlite3")));
    assert!(files.iter().any(|(p, _)| p.ends_with("outbox.sqlite3")));
    let unfolded = |mail: &str| mail.replace("=\r\n", "").replace("=\n", "");
    let confirmations: Vec<_> = emails
        .iter()
        .filter(|(key, _)| key.ends_with(".confirmation"))
        .collect();
    assert_eq!(confirmations.len(), 1, "the customer's confirmation");
    let mail = unfolded(&confirmations[0].1);
    assert_eq!(header_line(&mail, "To"), secrets.email);
    assert!(mail.contains(&secrets.customer_token), "{mail}");
    assert_eq!(emails.len(), 2, "the cake maker's and the confirmation");
    for (key, mail) in &emails {
        assert!(
            key.ends_with(".confirmation") || !unfolded(mail).contains(&secrets.customer_token),
            "customer token in email {key}"
        );
        assert!(
            !unfolded(mail).contains(&secrets.baker_token),
            "baker token in email {key}"
        );
    }
    // The outbox file holds the confirmation; every other file, nothing.
    let outbox = |path: &std::path::Path| {
        path.file_name()
            .is_some_and(|name| name.to_string_lossy().starts_with("outbox.sqlite3"))
    };
    for (path, bytes) in &files {
        assert!(
            outbox(path) || !contains(bytes, &secrets.customer_token),
            "customer token in {}",
            path.display()
        );
        if *path != token_file {
            assert!(
                !contains(bytes, &secrets.baker_token),
                "baker token in {}",
                path.display()
            );
        }
    }

    // Never logged at the default level, nor personal data.
    assert!(!log.is_empty(), "the bakery logs at info");
    for (what, needle) in [
        ("baker token", secrets.baker_token.as_str()),
        ("customer token", secrets.customer_token.as_str()),
        ("name", secrets.name),
        ("address", "Hiddenway"),
        ("email", secrets.email),
        ("review", secrets.review),
    ] {
        assert!(!log.contains(needle), "{what} in the info log:\n{log}");
    }
    let _ = secrets.address;

    // At debug: tokens still never; what else shows is reported.
    let Traces {
        secrets,
        log: debug_log,
        ..
    } = logged_flow(Some("debug")).await;
    for needle in [&secrets.baker_token, &secrets.customer_token] {
        assert!(
            !debug_log.contains(needle.as_str()),
            "a token in the debug log"
        );
    }
    let personal: Vec<&str> = [
        ("name", secrets.name),
        ("address", "Hiddenway"),
        ("email", secrets.email),
        ("review", secrets.review),
    ]
    .into_iter()
    .filter(|(_, needle)| debug_log.contains(needle))
    .map(|(what, _)| what)
    .collect();
    let mut targets: Vec<String> = debug_log
        .lines()
        .filter_map(|line| {
            let rest = line.split_once(" DEBUG ")?.1;
            Some(rest.split([':', ' ']).next()?.to_string())
        })
        .collect();
    targets.sort();
    targets.dedup();
    println!(
        "logs: info {} lines with no token and no personal data; debug {} lines, \
         tokens 0, personal data {personal:?}, debug targets {targets:?}",
        log.lines().count(),
        debug_log.lines().count()
    );
    for target in &targets {
        if let Some(line) = debug_log
            .lines()
            .find(|l| l.contains(" DEBUG ") && l.contains(target.as_str()))
        {
            println!(
                "  debug sample: {}",
                line.chars().take(220).collect::<String>()
            );
        }
    }
    assert!(personal.is_empty(), "personal data in the debug log");
}

#[tokio::test]
async fn customers_reach_only_their_own_orders() {
    let bakery = Bakery::start(&[]).await;
    let a = bakery.order("Alice").await;
    let b = bakery.order("Bob").await;
    let (a_id, a_token) = (id_of(&a), token_of(&a));
    let (b_id, b_token) = (id_of(&b), token_of(&b));
    assert_ne!(a_token, b_token);

    // What a token is told of an order that is not its own is what it is
    // told of one that does not exist: nothing tells which ids are taken.
    let (_, no_such_order) = bakery
        .get(&format!("/order/{}", uuid::Uuid::now_v7()), Some(&a_token))
        .await;
    assert_eq!(no_such_order["status"], 404);
    let check = |token: String, id: String, expected: u16| {
        let bakery = &bakery;
        let no_such_order = no_such_order.clone();
        async move {
            let (status, body) = bakery.get(&format!("/order/{id}"), Some(&token)).await;
            assert_eq!(status, expected, "GET {id}: {body}");
            if expected == 404 {
                assert_eq!(body, no_such_order, "nothing of the order leaks");
            }
        }
    };
    check(a_token.clone(), a_id.clone(), 200).await;
    check(b_token.clone(), b_id.clone(), 200).await;
    check(a_token.clone(), b_id.clone(), 404).await;
    check(b_token.clone(), a_id.clone(), 404).await;
    // Near misses are no better.
    let mut altered = a_token.clone().into_bytes();
    altered[0] = if altered[0] == b'A' { b'B' } else { b'A' };
    check(String::from_utf8(altered).unwrap(), a_id.clone(), 404).await;
    check(format!("{a_token}x"), a_id.clone(), 404).await;
    check(a_token[..42].to_string(), a_id.clone(), 404).await;

    // Confirming delivery of someone else's order: refused, before and
    // after it is on its way, and it changes nothing.
    let steal = |id: String| {
        let bakery = &bakery;
        let a_token = a_token.clone();
        async move {
            let (status, _) = bakery
                .post(
                    "/order/delivered",
                    Some(&a_token),
                    &json!({"orderId": id, "orderReview": "mine now"}),
                )
                .await;
            status
        }
    };
    assert_eq!(steal(b_id.clone()).await, 404);
    let (status, _) = bakery.fulfil(&b_id).await;
    assert_eq!(status, 200);
    wait_for(&bakery, &b_id, "out_for_delivery", LIMIT).await;
    assert_eq!(steal(b_id.clone()).await, 404);
    let order = bakery.order_status(&b_id).await;
    assert_eq!(order["status"], "out_for_delivery");
    assert!(order.get("orderReview").is_none());
    // Customers cannot fulfil, not even their own order.
    let (status, _) = bakery
        .post(
            "/order/fulfilled",
            Some(&a_token),
            &json!({"orderId": a_id}),
        )
        .await;
    assert_eq!(status, 403);
    // The owner can.
    let (status, body) = bakery
        .post(
            "/order/delivered",
            Some(&b_token),
            &json!({"orderId": b_id}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn email_header_injection_is_impossible_and_mail_is_plain_text() {
    let bakery = Bakery::start(&[]).await;
    let mut body = order_body("Eve\r\nBcc: x@evil.example");
    let (status, problem) = bakery.post("/order", None, &body).await;
    assert_eq!(status, 422, "{problem}");
    assert_eq!(problem["errors"][0]["field"], "name");
    body = order_body("Eve");
    body["email"] = json!("eve@example.com\r\nBcc: x@evil.example");
    let (status, problem) = bakery.post("/order", None, &body).await;
    assert_eq!(status, 422, "{problem}");
    assert_eq!(problem["errors"][0]["field"], "email");
    body = order_body("Eve\nBcc: x@evil.example");
    assert_eq!(bakery.post("/order", None, &body).await.0, 422);

    // What passes validation cannot reach the headers either: line breaks
    // in the address (allowed there), Unicode line separators in the name,
    // HTML anywhere.
    let mut accepted = Vec::new();
    for (name, address) in [
        (
            "Eve\u{2028}Bcc: x@evil.example",
            "1 Row\r\nBcc: x@evil.example\r\n\r\n<b>bold</b>",
        ),
        (
            "<script>alert('x')</script> & Co",
            "Subject: hijacked\nContent-Type: text/html\n<img src=x>",
        ),
    ] {
        let mut body = order_body(name);
        body["address"] = json!(address);
        let (status, placed) = bakery.post("/order", None, &body).await;
        assert_eq!(status, 201, "{placed}");
        accepted.push(placed);
    }
    for placed in &accepted {
        let id = id_of(placed);
        let (status, _) = bakery.fulfil(&id).await;
        assert_eq!(status, 200);
        wait_for(&bakery, &id, "delivery_notified", LIMIT).await;
        let (status, _) = bakery
            .post(
                "/order/delivered",
                Some(&token_of(placed)),
                &json!({"orderId": id, "orderReview": "ok\r\nBcc: x@evil.example\r\n<i>hi</i>"}),
            )
            .await;
        assert_eq!(status, 200);
        wait_for(&bakery, &id, "customer_service_notified", LIMIT).await;
    }
    let emails = bakery.emails();
    assert_eq!(
        emails.len(),
        8,
        "baker, customer, delivery and care, for two orders"
    );
    for (file, message) in &emails {
        let headers: Vec<&str> = message.lines().take_while(|l| !l.is_empty()).collect();
        let named = |name: &str| {
            headers
                .iter()
                .filter(|l| {
                    l.split_once(':')
                        .is_some_and(|(k, _)| k.eq_ignore_ascii_case(name))
                })
                .count()
        };
        assert_eq!(named("Bcc"), 0, "{file}:\n{message}");
        assert_eq!(named("Cc"), 0, "{file}");
        assert_eq!(named("To"), 1, "{file}");
        assert_eq!(named("Subject"), 1, "{file}");
        assert_eq!(named("Content-Type"), 1, "{file}");
        let content_type = header_line(message, "Content-Type");
        assert!(
            content_type.starts_with("text/plain"),
            "{file}: {content_type}"
        );
        // No second part, no HTML: injected header-like lines stay body text.
        let head = headers.join("\n").to_lowercase();
        assert!(
            !head.contains("multipart") && !head.contains("text/html"),
            "{file}"
        );
        assert!(
            !head.contains("hijacked") && !head.contains("evil"),
            "{file}"
        );
        let to = header_line(message, "To");
        assert!(
            [
                "baker@bakery.local",
                CUSTOMER_EMAIL,
                "dispatch@delivery.local",
                "care@bakery.local"
            ]
            .iter()
            .any(|r| to.contains(r)),
            "{file}: To {to}"
        );
        assert!(!to.contains("evil"), "{file}");
    }
}

#[tokio::test]
async fn webhooks_signed_with_the_wrong_secret_are_refused() {
    let partner = Partner::start().await;
    let mut args: Vec<String> = [
        "--baker-token",
        BAKER_TOKEN,
        // Not the secret the partner knows.
        "--webhook-secret",
        "whsec_bm90LXRoZS1zZWNyZXQtdGhlLXBhcnRuZXIta25vd3M=",
        "--delivery-webhook-url",
        &partner.url,
        // Tries to spare: a refusal must not use them.
        "--max-tries",
        "5",
        "--partner-attempts",
        "1",
        "--retry-delay-ms",
        "20",
    ]
    .map(String::from)
    .to_vec();
    args.extend(["--max-retry-delay-ms", "200"].map(String::from));
    let bakery = Bakery::start_custom(Custom {
        args,
        log: Some("error".into()),
        ..Custom::default()
    })
    .await;
    let id = id_of(&bakery.order("Ada").await);
    let (status, _) = bakery.fulfil(&id).await;
    assert_eq!(status, 200);
    let letter = eventually("the refused notification", LIMIT, || async {
        dead_letters(&bakery).await.into_iter().next()
    })
    .await;
    let reason = letter["reason"].as_str().unwrap();
    assert!(reason.contains("401"), "{letter}");
    // A refusal is permanent: dead-lettered on its first try, not retried.
    assert!(reason.starts_with("permanent: "), "{letter}");
    assert_eq!(letter["attempts"], 1, "{letter}");
    assert_eq!(partner.bad_signatures(), 1, "called once");
    assert!(partner.accepted_ids().is_empty());
    let order = bakery.order_status(&id).await;
    assert!(!steps_of(&order).contains(&"delivery_notified".to_string()));
}

#[tokio::test]
async fn webhook_urls_come_only_from_configuration() {
    let attacker = Partner::start().await;
    // Partners by email: no webhook is configured at all.
    let bakery = Bakery::start(&[]).await;
    let mut body = order_body("Mallory");
    for field in [
        "webhookUrl",
        "callbackUrl",
        "deliveryWebhookUrl",
        "customerServiceWebhookUrl",
        "notifyUrl",
    ] {
        body[field] = json!(attacker.url);
    }
    let (status, placed) = bakery.post("/order", None, &body).await;
    assert_eq!(status, 201, "unknown fields are ignored: {placed}");
    assert!(!placed.to_string().contains(&attacker.url));
    let id = id_of(&placed);
    let (status, _) = bakery
        .post(
            "/order/fulfilled",
            Some(BAKER_TOKEN),
            &json!({"orderId": id, "webhookUrl": attacker.url}),
        )
        .await;
    assert_eq!(status, 200);
    wait_for(&bakery, &id, "delivery_notified", LIMIT).await;
    let (status, _) = bakery
        .post(
            "/order/delivered",
            Some(&token_of(&placed)),
            &json!({"orderId": id, "webhookUrl": attacker.url, "callbackUrl": attacker.url}),
        )
        .await;
    assert_eq!(status, 200);
    wait_for(&bakery, &id, "customer_service_notified", LIMIT).await;
    assert!(attacker.received().is_empty(), "no call to a client's URL");
    assert_eq!(
        bakery.count("SELECT count(*) FROM orders WHERE body LIKE '%/hooks%'"),
        0,
        "the URL is not even stored"
    );
    assert_eq!(
        bakery.emails().len(),
        4,
        "the cake maker, the customer and the partners got their emails"
    );
}

/// Sends `body` to `/order` with a `field` of `len` copies of `unit`.
async fn with_field(bakery: &Bakery, field: &str, value: Value) -> (u16, Value) {
    let mut body = order_body("Ada");
    body[field] = value;
    bakery.post("/order", None, &body).await
}

#[tokio::test]
async fn limits_on_bodies_fields_and_quantities_hold_at_their_edges() {
    let bakery = Bakery::start(&[]).await;
    // Field lengths count characters, not bytes; the limit is inclusive.
    for (field, max, unit) in [
        ("name", 100, "é"),
        ("name", 100, "x"),
        ("address", 500, "ü"),
    ] {
        let (status, body) = with_field(&bakery, field, json!(unit.repeat(max))).await;
        assert_eq!(status, 201, "{field} of {max}: {body}");
        let (status, body) = with_field(&bakery, field, json!(unit.repeat(max + 1))).await;
        assert_eq!(status, 422, "{field} of {}", max + 1);
        assert_eq!(body["errors"][0]["code"], "too_long");
    }
    let local = "a".repeat(64);
    // DNS labels are at most 63 characters: three of them and the top one.
    let label = "d".repeat(63);
    let email = format!("{local}@{label}.{label}.{}.example", "d".repeat(53));
    assert_eq!(email.len(), 254);
    assert_eq!(with_field(&bakery, "email", json!(email)).await.0, 201);
    let email = format!("a{email}");
    assert_eq!(with_field(&bakery, "email", json!(email)).await.0, 422);
    for (quantity, status) in [(1, 201), (50, 201), (51, 422), (0, 422)] {
        assert_eq!(
            with_field(&bakery, "quantity", json!(quantity)).await.0,
            status,
            "quantity {quantity}"
        );
    }

    let placed = bakery.order("Ada").await;
    let id = id_of(&placed);
    for (len, status) in [(101, 422), (100, 200)] {
        let (got, body) = bakery
            .post(
                "/order/fulfilled",
                Some(BAKER_TOKEN),
                &json!({"orderId": id, "fulfillmentId": "f".repeat(len)}),
            )
            .await;
        assert_eq!(got, status, "fulfillmentId of {len}: {body}");
    }
    wait_for(&bakery, &id, "out_for_delivery", LIMIT).await;
    for (len, status) in [(2001, 422), (2000, 200)] {
        let (got, _) = bakery
            .post(
                "/order/delivered",
                Some(&token_of(&placed)),
                &json!({"orderId": id, "orderReview": "r".repeat(len)}),
            )
            .await;
        assert_eq!(got, status, "orderReview of {len}");
    }

    // Idempotency keys: 255 visible ASCII characters at most.
    for (key, status) in [("k".repeat(255), 201), ("k".repeat(256), 422)] {
        let response = bakery
            .client
            .post(format!("{}/order", bakery.url))
            .header("idempotency-key", &key)
            .json(&order_body("Ada"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), status, "key of {}", key.len());
    }

    // Bodies: 16 KiB, however they are sent.
    let big = json!({"name": "Ada", "address": "a".repeat(17 * 1024)}).to_string();
    let mut chunked = String::from(
        "POST /order HTTP/1.1\r\nHost: bakery\r\nContent-Type: application/json\r\n\
         Transfer-Encoding: chunked\r\n\r\n",
    );
    for chunk in big.as_bytes().chunks(1000) {
        chunked.push_str(&format!(
            "{:x}\r\n{}\r\n",
            chunk.len(),
            std::str::from_utf8(chunk).unwrap()
        ));
    }
    chunked.push_str("0\r\n\r\n");
    let answer = raw_exchange(&bakery, &chunked).await;
    assert!(
        answer.starts_with("HTTP/1.1 413"),
        "chunked, no Content-Length: {answer}"
    );
    assert!(answer.contains("application/problem+json"), "{answer}");
    // A huge announced body is refused before it is sent.
    let answer = raw_exchange(
        &bakery,
        "POST /order HTTP/1.1\r\nHost: bakery\r\nContent-Type: application/json\r\n\
         Content-Length: 1000000000\r\n\r\n{",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    // Deeply nested JSON just under the size limit: refused, no stack
    // overflow. (Bigger bodies are refused by size before they are read,
    // which the raw exchange above shows.)
    let nested = "[".repeat(16_000);
    let response = bakery
        .client
        .post(format!("{}/order", bakery.url))
        .body(nested)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let nested = "[".repeat(10_000);
    let response = bakery
        .client
        .post(format!("{}/order", bakery.url))
        .body(nested)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    // Still serving.
    assert_eq!(bakery.get("/products", None).await.0, 200);
}

/// Writes `request` on a fresh connection and reads what comes back within
/// five seconds (the server may keep the connection open after answering).
async fn raw_exchange(bakery: &Bakery, request: &str) -> String {
    let address = bakery.url.trim_start_matches("http://");
    let mut stream = TcpStream::connect(address).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let mut buffer = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(5);
    while let Ok(Ok(n)) = tokio::time::timeout_at(deadline.into(), stream.read(&mut buffer)).await {
        if n == 0 {
            break;
        }
        answer.extend_from_slice(&buffer[..n]);
        if answer.windows(4).any(|w| w == b"\r\n\r\n") {
            break;
        }
    }
    String::from_utf8_lossy(&answer).into_owned()
}

/// Trickles `head` then one byte of `trickle` every `every`, until the
/// server answers or closes; returns what it said and when.
async fn trickle(
    bakery: &Bakery,
    head: &str,
    trickle: &str,
    every: Duration,
) -> (String, Duration, bool) {
    let address = bakery.url.trim_start_matches("http://");
    let mut stream = TcpStream::connect(address).await.unwrap();
    let started = Instant::now();
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let mut buffer = [0u8; 4096];
    let mut bytes = trickle.bytes().cycle();
    let mut closed = false;
    while started.elapsed() < Duration::from_secs(20) {
        match tokio::time::timeout(every, stream.read(&mut buffer)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                closed = true;
                break;
            }
            Ok(Ok(n)) => answer.extend_from_slice(&buffer[..n]),
            Err(_) => {
                let byte = [bytes.next().unwrap()];
                if stream.write_all(&byte).await.is_err() {
                    closed = true;
                    break;
                }
            }
        }
    }
    (
        String::from_utf8_lossy(&answer).into_owned(),
        started.elapsed(),
        closed,
    )
}

#[tokio::test]
async fn a_request_body_that_never_finishes_is_cut_off_by_the_request_timeout() {
    let bakery = Bakery::start(&["--request-timeout-ms", "1000"]).await;
    let (answer, took, closed) = trickle(
        &bakery,
        "POST /order HTTP/1.1\r\nHost: bakery\r\nContent-Type: application/json\r\n\
         Content-Length: 200\r\n\r\n{\"name\": \"",
        "a",
        Duration::from_millis(200),
    )
    .await;
    println!(
        "slow body: answered {:?} after {took:?}, closed {closed}",
        answer.lines().next()
    );
    assert!(
        answer.starts_with("HTTP/1.1 503") || answer.starts_with("HTTP/1.1 408"),
        "{answer}"
    );
    assert!(closed, "the connection is closed after the answer");
    assert!(took < Duration::from_secs(5), "{took:?}");
    assert_eq!(bakery.count("SELECT count(*) FROM orders"), 0);
}

#[tokio::test]
async fn a_request_stuck_on_a_locked_database_times_out_as_a_problem() {
    let bakery = Bakery::start(&["--request-timeout-ms", "500"]).await;
    let lock = rusqlite::Connection::open(bakery.data.path().join("bakery.sqlite3")).unwrap();
    lock.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let started = Instant::now();
    let response = bakery
        .client
        .post(format!("{}/order", bakery.url))
        .json(&order_body("Ada"))
        .send()
        .await
        .unwrap();
    let took = started.elapsed();
    lock.execute_batch("ROLLBACK").unwrap();
    assert_eq!(response.status(), 503);
    assert!(took < Duration::from_secs(3), "{took:?}");
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string());
    let retry_after = response.headers().get("retry-after").cloned();
    println!(
        "request timeout: 503 after {took:?}, content-type {content_type:?}, retry-after {retry_after:?}"
    );
    assert_eq!(content_type.as_deref(), Some("application/problem+json"));
    assert!(retry_after.is_some());
}

#[tokio::test]
async fn a_client_trickling_its_headers_is_cut_off() {
    let bakery = Bakery::start(&["--request-timeout-ms", "1000"]).await;
    let (answer, took, closed) = trickle(
        &bakery,
        "GET /products HTTP/1.1\r\nHost: bakery\r\n",
        "X-Slow-Loris: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n",
        Duration::from_millis(250),
    )
    .await;
    println!(
        "slow headers: closed {closed} after {took:?}, answered {:?}",
        answer.lines().next()
    );
    assert!(closed, "still open after {took:?}");
    assert!(took < Duration::from_secs(10), "{took:?}");
    assert!(!answer.starts_with("HTTP/1.1 200"), "{answer}");
}
