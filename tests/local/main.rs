//! End-to-end tests of the bakery on one machine: the real `bakery` binary,
//! driven over real HTTP, with partners listening on real ports and mail
//! landing in the real outbox. Nothing sleeps to wait: every wait polls
//! with a deadline.

mod support;

use futures::StreamExt;
use serde_json::{Value, json};
use support::*;

fn steps(order: &Value) -> Vec<String> {
    order["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["step"].as_str().unwrap().to_string())
        .collect()
}

async fn wait_for_step(bakery: &Bakery, order_id: &str, step: &str) -> Value {
    eventually(&format!("{step} of {order_id}"), LIMIT, || async {
        let order = bakery.order_status(order_id).await;
        steps(&order).iter().any(|s| s == step).then_some(order)
    })
    .await
}

#[tokio::test]
async fn one_order_walks_the_whole_flow() {
    let bakery = Bakery::start(&[]).await;

    let (status, products) = bakery.get("/products", None).await;
    assert_eq!(status, 200);
    assert!(
        products["products"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["id"] == 1)
    );

    let placed = bakery.order("Ada Lovelace").await;
    let order_id = id_of(&placed);
    let customer_token = placed["customerToken"].as_str().unwrap().to_string();
    assert_eq!(placed["status"], "placed");
    assert_eq!(placed["quantity"], 2);

    // The cake maker is emailed what to bake.
    wait_for_step(&bakery, &order_id, "baker_notified").await;
    let baker_mail = bakery.emails_to("baker@bakery.local", &order_id);
    assert_eq!(baker_mail.len(), 1);
    // The short number people read, in every mail (the pages show it too).
    let number = domain::OrderId::parse(&order_id).unwrap().number();
    for needle in [
        number.as_str(),
        "Chocolate",
        "Quantity:  2",
        "Ada Lovelace",
        "12 Analytical Row",
        "/order/fulfilled",
    ] {
        assert!(
            baker_mail[0].contains(needle),
            "{needle} missing in\n{}",
            baker_mail[0]
        );
    }

    // The customer, who gave an address, gets their confirmation with the
    // private link that opens the order (quoted-printable, as mail is).
    let confirmation = bakery.emails_to(CUSTOMER_EMAIL, &order_id);
    assert_eq!(confirmation.len(), 1);
    assert!(header_line(&confirmation[0], "Subject").contains(&number));
    let text = confirmation[0]
        .replace("=\r\n", "")
        .replace("=\n", "")
        .replace("=3D", "=");
    let link = format!("{}/track/{order_id}#token={customer_token}", bakery.url);
    assert!(text.contains(&link), "no {link} in\n{text}");

    // The customer may read their order; a stranger may not.
    let (status, _) = bakery
        .get(&format!("/order/{order_id}"), Some(&customer_token))
        .await;
    assert_eq!(status, 200);
    let (status, _) = bakery
        .get(&format!("/order/{order_id}"), Some("not-the-token"))
        .await;
    assert_eq!(status, 404);

    // Delivering before the cake is baked is out of order.
    let deliver =
        json!({"orderId": order_id, "orderReview": "Lovely!", "deliveryCompanyId": "van-7"});
    let (status, problem) = bakery
        .post("/order/delivered", Some(&customer_token), &deliver)
        .await;
    assert_eq!(status, 409, "{problem}");
    assert_eq!(problem["currentStatus"], "placed");

    let (status, fulfilled) = bakery
        .post(
            "/order/fulfilled",
            Some(BAKER_TOKEN),
            &json!({"orderId": order_id, "fulfillmentId": "oven-2"}),
        )
        .await;
    assert_eq!(status, 200, "{fulfilled}");
    assert_eq!(fulfilled["status"], "fulfilled");

    // Dispatch sends it out and the delivery company hears of it by email.
    let order = wait_for_step(&bakery, &order_id, "delivery_notified").await;
    assert_eq!(order["status"], "out_for_delivery");
    let delivery_mail = bakery.emails_to("dispatch@delivery.local", &order_id);
    assert_eq!(delivery_mail.len(), 1);
    assert!(delivery_mail[0].contains("12 Analytical Row"));
    assert!(delivery_mail[0].contains(&number));

    let (status, delivered) = bakery
        .post("/order/delivered", Some(&customer_token), &deliver)
        .await;
    assert_eq!(status, 200, "{delivered}");
    assert_eq!(delivered["status"], "delivered");
    assert_eq!(delivered["orderReview"], "Lovely!");

    // Customer service gets the review.
    let order = wait_for_step(&bakery, &order_id, "customer_service_notified").await;
    let care_mail = bakery.emails_to("care@bakery.local", &order_id);
    assert_eq!(care_mail.len(), 1);
    assert!(care_mail[0].contains("Lovely!"));
    assert!(care_mail[0].contains(&number));

    // Every step has its time, in flow order.
    assert_eq!(steps(&order), EVERY_STEP);
    let times: Vec<chrono::DateTime<chrono::Utc>> = order["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["at"].as_str().unwrap().parse().unwrap())
        .collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");
    assert_eq!(bakery.emails().len(), 4, "one email per person, no more");
}

/// Runs `work` on every item with `concurrency` at once.
async fn each<T, F, Fut, R>(items: Vec<T>, concurrency: usize, work: F) -> Vec<R>
where
    F: Fn(T) -> Fut,
    Fut: std::future::Future<Output = R>,
{
    futures::stream::iter(items.into_iter().map(work))
        .buffer_unordered(concurrency)
        .collect()
        .await
}

/// Fulfils and delivers `orders`, then waits for both partners.
async fn finish_orders(
    bakery: &Bakery,
    delivery: &Partner,
    care: &Partner,
    orders: &[(String, String)],
) {
    let results = each(orders.to_vec(), 64, |(id, _)| async move {
        bakery.fulfil(&id).await.0
    })
    .await;
    assert!(results.iter().all(|s| *s == 200), "{results:?}");
    eventually("every delivery notification", LIMIT, || async {
        (delivery.accepted_ids().len() >= orders.len()).then_some(())
    })
    .await;
    let results = each(orders.to_vec(), 64, |(id, token)| async move {
        bakery
            .post(
                "/order/delivered",
                Some(&token),
                &json!({"orderId": id, "orderReview": "yum"}),
            )
            .await
            .0
    })
    .await;
    assert!(results.iter().all(|s| *s == 200), "{results:?}");
    eventually("every feedback call", LIMIT, || async {
        (care.accepted_ids().len() >= orders.len()).then_some(())
    })
    .await;
    // The partner hears of it before the bakery records that it did.
    eventually("every order's last step recorded", LIMIT, || async {
        let finished = each(orders.to_vec(), 32, |(id, _)| async move {
            steps(&bakery.order_status(&id).await)
                .contains(&"customer_service_notified".to_string())
        })
        .await;
        finished.iter().all(|done| *done).then_some(())
    })
    .await;
}

async fn with_partners() -> (Partner, Partner, Vec<String>) {
    let delivery = Partner::start().await;
    let care = Partner::start().await;
    let args = vec![
        "--delivery-webhook-url".to_string(),
        delivery.url.clone(),
        "--customer-service-webhook-url".to_string(),
        care.url.clone(),
    ];
    (delivery, care, args)
}

#[tokio::test]
async fn five_hundred_concurrent_orders_each_complete_exactly_once() {
    let (delivery, care, args) = with_partners().await;
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let bakery = Bakery::start(&args).await;

    let orders: Vec<(String, String)> = each((0..500).collect(), 64, |i| {
        let bakery = &bakery;
        async move {
            let order = bakery.order(&format!("Customer {i}")).await;
            (
                id_of(&order),
                order["customerToken"].as_str().unwrap().to_string(),
            )
        }
    })
    .await;
    eventually("500 baker emails", LIMIT, || async {
        (bakery.baker_emails().len() >= 500).then_some(())
    })
    .await;
    finish_orders(&bakery, &delivery, &care, &orders).await;

    assert_eq!(
        bakery.baker_emails().len(),
        500,
        "exactly one baker email per order"
    );
    for (id, _) in &orders {
        assert_eq!(bakery.emails_to("baker@bakery.local", id).len(), 1);
    }
    assert_eq!(delivery.accepted_ids().len(), 500);
    assert_eq!(
        delivery.accepted_calls(),
        500,
        "no duplicate delivery calls"
    );
    assert_eq!(care.accepted_ids().len(), 500);
    assert_eq!(care.accepted_calls(), 500, "no duplicate feedback calls");
    assert_eq!(delivery.bad_signatures() + care.bad_signatures(), 0);
    for call in delivery.received() {
        assert_eq!(call.body["type"], "delivery.requested");
        assert!(
            call.body["data"]["address"]
                .as_str()
                .unwrap()
                .contains("Analytical Row")
        );
    }
    for call in care.received() {
        assert_eq!(call.body["type"], "feedback.received");
        assert_eq!(call.body["data"]["orderReview"], "yum");
    }
    assert_eq!(bakery.count("SELECT count(*) FROM orders"), 500);
    let (ok, listed) = bakery.dlq(&["list"]).await;
    assert!(ok && listed.trim().is_empty(), "{listed}");
}

#[tokio::test]
async fn sigkill_in_the_middle_loses_no_acknowledged_order() {
    let (delivery, care, args) = with_partners().await;
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut bakery = Bakery::start(&args).await;

    // Orders keep coming while the process is killed: whatever got a 201
    // must complete, whatever did not may be lost.
    let client = bakery.client.clone();
    let url = bakery.url.clone();
    let placing = tokio::spawn(async move {
        let results = each((0..300).collect::<Vec<u32>>(), 16, |i| {
            let client = client.clone();
            let url = url.clone();
            async move {
                let response = client
                    .post(format!("{url}/order"))
                    .json(&order_body(&format!("Customer {i}")))
                    .send()
                    .await
                    .ok()?;
                if response.status() != 201 {
                    return None;
                }
                let body: Value = response.json().await.ok()?;
                Some((id_of(&body), body["customerToken"].as_str()?.to_string()))
            }
        })
        .await;
        results.into_iter().flatten().collect::<Vec<_>>()
    });
    eventually("some baker emails before the kill", LIMIT, || async {
        (bakery.baker_emails().len() >= 50).then_some(())
    })
    .await;
    bakery.kill9().await;
    let acknowledged = placing.await.unwrap();
    assert!(
        acknowledged.len() >= 50,
        "{} acknowledged",
        acknowledged.len()
    );
    bakery.restart().await;

    // Every acknowledged order is there and its baker email is sent once.
    eventually(
        "a baker email for every acknowledged order",
        LIMIT,
        || async {
            let emails = bakery.baker_emails();
            acknowledged
                .iter()
                .all(|(id, _)| emails.iter().any(|(_, text)| text.contains(id.as_str())))
                .then_some(())
        },
    )
    .await;
    for (id, _) in &acknowledged {
        assert_eq!(
            bakery.emails_to("baker@bakery.local", id).len(),
            1,
            "order {id}"
        );
    }

    // Kill again while dispatch and the delivery company are busy.
    let results = each(acknowledged.clone(), 32, |(id, _)| {
        let bakery = &bakery;
        async move { bakery.fulfil(&id).await.0 }
    })
    .await;
    assert!(results.iter().all(|s| *s == 200));
    eventually(
        "the delivery company hears of the first cakes",
        LIMIT,
        || async { (!delivery.accepted_ids().is_empty()).then_some(()) },
    )
    .await;
    bakery.kill9().await;
    bakery.restart().await;
    finish_orders(&bakery, &delivery, &care, &acknowledged).await;

    let all_done = each(acknowledged.clone(), 32, |(id, _)| {
        let bakery = &bakery;
        async move {
            bakery.order_status(&id).await["timeline"]
                .as_array()
                .unwrap()
                .len()
        }
    })
    .await;
    assert!(all_done.iter().all(|steps| *steps == 7), "{all_done:?}");
    assert_eq!(delivery.accepted_ids().len(), acknowledged.len());
    assert_eq!(care.accepted_ids().len(), acknowledged.len());
    // At least once: a kill between a partner's answer and the record of
    // it repeats the call, with the same webhook id so the partner can tell.
    let repeats = delivery.accepted_calls() - acknowledged.len();
    println!(
        "acknowledged {}, baker emails {}, delivery calls {} ({} repeated), feedback calls {}",
        acknowledged.len(),
        bakery.baker_emails().len(),
        delivery.accepted_calls(),
        repeats,
        care.accepted_calls()
    );
}

#[tokio::test]
async fn a_partner_failing_one_order_dead_letters_it_and_the_rest_flow() {
    let (delivery, care, mut args) = with_partners().await;
    args.extend(["--max-tries", "3", "--partner-attempts", "1"].map(String::from));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let bakery = Bakery::start(&args).await;
    delivery.fail_for_name(Some("Grumpy"));

    let mut orders = Vec::new();
    for name in ["Ann", "Bob", "Grumpy", "Cat", "Dan"] {
        let order = bakery.order(name).await;
        orders.push((id_of(&order), name));
    }
    for (id, _) in &orders {
        let (status, _) = bakery.fulfil(id).await;
        assert_eq!(status, 200);
    }
    let listed = eventually("the dead letter", LIMIT, || async {
        let (_, listed) = bakery.dlq(&["list"]).await;
        (!listed.trim().is_empty()).then_some(listed)
    })
    .await;
    eventually("the other four notified", LIMIT, || async {
        (delivery.accepted_ids().len() == 4).then_some(())
    })
    .await;
    let letters: Vec<Value> = listed
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(letters.len(), 1, "{listed}");
    let grumpy = &orders[2].0;
    assert_eq!(letters[0]["orderId"], grumpy.as_str());
    assert_eq!(letters[0]["source"], "delivery");
    assert_eq!(letters[0]["attempts"], 3);
    assert!(
        letters[0]["reason"].as_str().unwrap().contains("500"),
        "{}",
        letters[0]
    );
    let tries = delivery
        .received()
        .iter()
        .filter(|d| d.answered == 500)
        .count();
    assert_eq!(tries, 3, "tried exactly max-tries times");
    let order = bakery.order_status(grumpy).await;
    assert!(!steps(&order).contains(&"delivery_notified".to_string()));

    // The partner is fixed; the operator redrives; it goes through once.
    delivery.fail_for_name(None);
    let id = letters[0]["id"].to_string();
    let (ok, said) = bakery.dlq(&["redrive", &id]).await;
    assert!(ok, "{said}");
    wait_for_step(&bakery, grumpy, "delivery_notified").await;
    assert_eq!(delivery.accepted_ids().len(), 5);
    assert_eq!(delivery.accepted_calls(), 5);
    let (_, listed) = bakery.dlq(&["list"]).await;
    assert!(listed.trim().is_empty(), "{listed}");
    let (ok, said) = bakery.dlq(&["redrive", "999"]).await;
    assert!(!ok && said.contains("no dead letter 999"), "{said}");
    drop(care);
}

/// Names, sizes and modification times of every file in `dir`.
fn files_in(dir: &std::path::Path) -> Vec<(String, u64, std::time::SystemTime)> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| {
            let entry = entry.unwrap();
            let meta = entry.metadata().unwrap();
            (
                entry.file_name().to_string_lossy().into_owned(),
                meta.len(),
                meta.modified().unwrap(),
            )
        })
        .collect();
    files.sort();
    files
}

#[tokio::test]
async fn dlq_list_shows_no_customer_data_unless_asked_and_writes_nothing() {
    let (delivery, _care, mut args) = with_partners().await;
    args.extend(["--max-tries", "1", "--partner-attempts", "1"].map(String::from));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut bakery = Bakery::start(&args).await;
    delivery.fail_for_name(Some("Grumpy"));
    let id = id_of(&bakery.order("Grumpy").await);
    assert_eq!(bakery.fulfil(&id).await.0, 200);
    eventually("the dead letter", LIMIT, || async {
        (!dead_letters(&bakery).await.is_empty()).then_some(())
    })
    .await;
    // Stopped, so nothing else writes: listing must leave every file as
    // it was (no lock, no migration, no journal), as on a read-only copy.
    assert!(bakery.interrupt().await.success());
    let before = files_in(bakery.data.path());

    let (ok, listed) = bakery.dlq(&["list"]).await;
    assert!(ok, "{listed}");
    let letter: Value = serde_json::from_str(listed.trim()).unwrap();
    assert_eq!(letter["orderId"], id.as_str(), "{letter}");
    assert_eq!(letter["source"], "delivery", "{letter}");
    assert!(letter["id"].is_number(), "{letter}");
    assert!(letter.get("body").is_none(), "{letter}");
    assert!(
        !listed.contains("Grumpy") && !listed.contains("Analytical Row"),
        "{listed}"
    );

    let (ok, with_body) = bakery.dlq(&["list", "--with-body"]).await;
    assert!(ok, "{with_body}");
    let letter: Value = serde_json::from_str(with_body.trim()).unwrap();
    let body = letter["body"].as_str().unwrap();
    assert!(
        body.contains("Grumpy") && body.contains("Analytical Row"),
        "{body}"
    );

    assert_eq!(
        files_in(bakery.data.path()),
        before,
        "dlq list wrote to the data directory"
    );
}

#[tokio::test]
async fn outbox_commands_read_the_mail_beside_the_bakery_and_write_nothing() {
    let mut bakery = Bakery::start(&[]).await;
    let id = id_of(&bakery.order("Ada Lovelace").await);
    wait_for_step(&bakery, &id, "baker_notified").await;
    let emails = bakery.emails();
    assert_eq!(emails.len(), 2, "the cake maker's and the confirmation");

    // While the bakery runs: one JSON line per email, no addresses.
    let (ok, listed, said) = bakery.outbox_command(&["list"]).await;
    assert!(ok, "{said}");
    let lines: Vec<Value> = listed
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let keys: Vec<&str> = lines.iter().map(|l| l["key"].as_str().unwrap()).collect();
    let stored: Vec<&str> = emails.iter().map(|(key, _)| key.as_str()).collect();
    assert_eq!(keys, stored);
    for line in &lines {
        assert!(
            line["sentAt"]
                .as_str()
                .unwrap()
                .parse::<chrono::DateTime<chrono::Utc>>()
                .is_ok()
        );
        assert!(line["subject"].is_string(), "{line}");
        assert!(line.get("recipient").is_none(), "{line}");
    }
    assert!(!listed.contains("@"), "no address unless asked: {listed}");
    let (ok, with_recipient, _) = bakery.outbox_command(&["list", "--with-recipient"]).await;
    assert!(ok);
    assert!(
        with_recipient.contains("baker@bakery.local"),
        "{with_recipient}"
    );

    // Each email as sent, and a key that is not there named as such.
    for (key, message) in &emails {
        let (ok, shown, said) = bakery.outbox_command(&["show", key]).await;
        assert!(ok, "{said}");
        assert_eq!(&shown, message);
    }
    let (ok, _, said) = bakery.outbox_command(&["show", "no-such-key"]).await;
    assert!(!ok);
    assert!(
        said.contains("no email no-such-key") && said.contains("bakery outbox list"),
        "{said}"
    );

    // Exported as files a mail program opens.
    let export = tempfile::tempdir().unwrap();
    let target = export.path().join("mail");
    let (ok, out, said) = bakery
        .outbox_command(&["export", target.to_str().unwrap()])
        .await;
    assert!(ok, "{said}");
    assert!(out.contains("wrote 2 email(s)"), "{out}");
    for (key, message) in &emails {
        let file = std::fs::read_to_string(target.join(format!("{key}.eml"))).unwrap();
        assert_eq!(&file, message);
        assert!(file.contains("Ada Lovelace") || file.contains(&id));
    }

    // Stopped: reading leaves every file as it was, as on a read-only copy.
    assert!(bakery.interrupt().await.success());
    let before = files_in(bakery.data.path());
    let (ok, again, _) = bakery.outbox_command(&["list"]).await;
    assert!(ok);
    assert_eq!(again, listed);
    assert_eq!(files_in(bakery.data.path()), before, "outbox list wrote");

    // A data directory without an outbox says so.
    let empty = tempfile::tempdir().unwrap();
    let output = bakery_command(
        &[
            "outbox",
            "list",
            "--data-dir",
            empty.path().to_str().unwrap(),
        ],
        &[],
        &[],
    )
    .await;
    assert!(!output.status.success());
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(said.contains("no mail outbox in"), "{said}");
    assert_eq!(std::fs::read_dir(empty.path()).unwrap().count(), 0);
}

#[tokio::test]
async fn the_stream_keeps_records_for_its_retention_and_then_trims_them() {
    // The default retention (a day) keeps what the consumers finished.
    let kept = Bakery::start(&[]).await;
    let id = id_of(&kept.order("Ada").await);
    wait_for_step(&kept, &id, "baker_notified").await;
    assert_eq!(kept.count("SELECT count(*) FROM stream"), 1);

    // With no retention, a record goes once both consumers are past it.
    let bakery = Bakery::start(&["--stream-retention-secs", "0"]).await;
    let mut ids = Vec::new();
    for name in ["Ann", "Bob", "Cat"] {
        ids.push(id_of(&bakery.order(name).await));
    }
    for id in &ids {
        wait_for_step(&bakery, id, "baker_notified").await;
        assert_eq!(bakery.fulfil(id).await.0, 200);
    }
    for id in &ids {
        wait_for_step(&bakery, id, "delivery_notified").await;
    }
    eventually("the finished records trimmed", LIMIT, || async {
        (bakery.count("SELECT count(*) FROM stream") == 0).then_some(())
    })
    .await;
    // The orders themselves stay, and new ones flow as before.
    assert_eq!(bakery.count("SELECT count(*) FROM orders"), 3);
    let id = id_of(&bakery.order("Dan").await);
    wait_for_step(&bakery, &id, "baker_notified").await;
}

#[tokio::test]
async fn ctrl_c_stops_cleanly_and_a_restart_keeps_everything() {
    let mut bakery = Bakery::start(&[]).await;
    let placed = bakery.order("Ada").await;
    let order_id = id_of(&placed);
    let status = bakery.interrupt().await;
    assert!(status.success(), "{status:?}");
    bakery.restart().await;
    let order = bakery.order_status(&order_id).await;
    assert_eq!(order["name"], "Ada");
    // The token handed out before the restart still works.
    let token = placed["customerToken"].as_str().unwrap();
    let (status, _) = bakery.get(&format!("/order/{order_id}"), Some(token)).await;
    assert_eq!(status, 200);
    wait_for_step(&bakery, &order_id, "baker_notified").await;
    assert_eq!(bakery.baker_emails().len(), 1);
}

mod aws;
mod aws_faults;
mod bad_input;
mod contract;
mod fault_proxy;
mod faults;
mod flaky_partner;
mod logs;
mod long_poll;
mod security;
mod startup;
