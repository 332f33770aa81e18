//! The real `notify-baker` binary under a local Lambda Runtime API, against
//! moto provisioned as template.yaml declares it, with the template's
//! environment: a Kinesis event in, the partial batch response out, and
//! the email in SES.

use aws_adapters::stream_failures::StreamFailures;
use lambda_check::stack::{BAKER_EMAIL, CUSTOMER_TOKEN_SECRET, MAIL_FROM, PUBLIC_URL};
use lambda_check::{Bootstrap, Function, Stack, fixtures};
use serde_json::{Value, json};

#[tokio::test]
async fn the_notify_baker_binary_answers_a_kinesis_event_through_the_runtime_api() {
    let stack = Stack::start().await.unwrap();
    let binary = std::path::Path::new(env!("CARGO_BIN_EXE_notify-baker"));
    let env = stack.env(Function::NotifyBaker);
    let mut bootstrap = Bootstrap::start(binary, "bakery-notify-baker", &env)
        .await
        .unwrap();
    let cold = bootstrap
        .cold_start(&fixtures::text("kinesis-order-placed.json"))
        .await
        .unwrap_or_else(|why| panic!("{why}"));
    let answer: Value = serde_json::from_str(cold.outcome.response().unwrap()).unwrap();
    assert_eq!(
        answer,
        json!({"batchItemFailures": []}),
        "{}",
        bootstrap.output()
    );

    // In JSON, as the template's `LogFormat: JSON` asks: the line names the
    // order, and the step's latency leaves as an Embedded Metric Format
    // line. (The fixture's event was written before correlation ids, so
    // its line has none.)
    let output = bootstrap.output();
    let lines = lambda_check::json_lines(&output);
    let notified = lines
        .iter()
        .find(|line| line["message"] == "baker notified")
        .unwrap_or_else(|| panic!("no 'baker notified' line in\n{output}"));
    assert_eq!(
        notified["span"]["orderId"],
        fixtures::ORDER_PLACED,
        "{notified}"
    );
    let metric = lines
        .iter()
        .find(|line| line["Step"] == "baker_notified")
        .unwrap_or_else(|| panic!("no StepLatency metric in\n{output}"));
    // Milliseconds since the fixture's order was placed, one value per
    // order notified in the invocation.
    let latencies = metric["StepLatency"].as_array().unwrap();
    assert_eq!(latencies.len(), 1, "{metric}");
    assert!(latencies[0].as_f64().unwrap() > 0.0, "{metric}");
    assert_eq!(
        metric["_aws"]["CloudWatchMetrics"][0]["Metrics"],
        json!([{"Name": "StepLatency", "Unit": "Milliseconds"}]),
        "{metric}"
    );
    assert_eq!(
        metric["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
        json!([["Step"]]),
        "{metric}"
    );

    // The same process, a second invocation: the poison record can never
    // succeed, so the function keeps it in the stream-failures bucket at
    // once, with its reason, and reports nothing for the mapping to retry;
    // the duplicate good one sends nothing again, the change of an order
    // item is skipped.
    let (outcome, _) = bootstrap
        .invoke(&fixtures::text("kinesis-order-placed-with-poison.json"))
        .await
        .unwrap_or_else(|why| panic!("{why}"));
    let output = bootstrap.output();
    bootstrap.stop().await;
    let answer: Value = serde_json::from_str(outcome.response().unwrap()).unwrap();
    assert_eq!(answer, json!({"batchItemFailures": []}), "{output}");
    let failures = StreamFailures::new(&stack.clients, &stack.stream_failures_bucket);
    let kept = failures.list().await.unwrap();
    assert_eq!(kept.len(), 1, "{output}");
    let records = kept[0].records().unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(
        records[0].kinesis.sequence_number,
        fixtures::POISON_SEQUENCE_NUMBER
    );
    let reason = kept[0].record["responseContext"]["reason"]
        .as_str()
        .unwrap();
    assert!(
        reason.starts_with("permanent: record is not an order event"),
        "{reason}"
    );
    assert_eq!(
        kept[0].record["requestContext"]["functionArn"],
        "bakery-notify-baker"
    );

    // The two mails are sent together, so they may arrive in either order.
    let sent = stack.moto.sent_emails().await;
    assert_eq!(sent.len(), 2, "{sent:?}");
    let to = |address: &str| {
        sent.iter()
            .find(|mail| mail["destinations"]["ToAddresses"][0] == address)
            .unwrap_or_else(|| panic!("no mail to {address} in {sent:?}"))
    };
    let baker_mail = to(BAKER_EMAIL);
    assert_eq!(baker_mail["source"], MAIL_FROM);
    assert!(
        baker_mail["subject"]
            .as_str()
            .unwrap()
            .contains("Carrot cake")
    );

    // The customer's confirmation, its link keyed with the customer-token
    // key from SSM: the token `POST /order` answered with.
    let confirmation = to("ada@example.com");
    assert_eq!(confirmation["source"], MAIL_FROM);
    let order_id = domain::OrderId::parse(fixtures::ORDER_PLACED).unwrap();
    let token = domain::auth::CustomerTokens::new(CUSTOMER_TOKEN_SECRET).token_for(order_id);
    let link = format!("{PUBLIC_URL}/track/{order_id}#token={token}");
    let body = confirmation["body"].as_str().unwrap_or_default();
    assert!(body.contains(&link), "no {link} in {body}");
}
