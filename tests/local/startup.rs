//! A configuration that cannot work is refused at start, naming what is
//! wrong, before anything is written: the data directory is not even made.

use std::time::Duration;

use tokio::process::Command;

use crate::support::*;

/// Starts the bakery with `args` on a data directory that does not exist
/// yet; it must exit with an error. Returns what it said, and checks the
/// directory is still absent.
async fn refused_at_start(args: &[&str]) -> String {
    let parent = tempfile::tempdir().unwrap();
    let data = parent.path().join("data");
    let mut command = Command::new(env!("CARGO_BIN_EXE_bakery"));
    if !args.contains(&"--listen") {
        command.args(["--listen", "127.0.0.1:0"]);
    }
    let run = command
        .arg("--data-dir")
        .arg(&data)
        .args(args)
        .kill_on_drop(true)
        .output();
    // A bakery that starts would serve forever: a deadline, not a sleep.
    let output = tokio::time::timeout(Duration::from_secs(30), run)
        .await
        .unwrap_or_else(|_| panic!("the bakery started with {args:?}"))
        .unwrap();
    let said = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(!output.status.success(), "{args:?} was accepted: {said}");
    assert!(
        !data.exists(),
        "{args:?}: the data directory was made: {said}"
    );
    said
}

#[tokio::test]
async fn a_configuration_that_cannot_work_writes_nothing_and_says_why() {
    let parent = tempfile::tempdir().unwrap();
    let catalog = parent.path().join("catalog.json");
    std::fs::write(&catalog, "{not json").unwrap();
    let said = refused_at_start(&["--catalog", catalog.to_str().unwrap()]).await;
    assert!(said.contains("catalog"), "{said}");

    let said = refused_at_start(&["--baker-token", "éééééééé"]).await;
    assert!(said.contains("at least 16 characters"), "{said}");

    let said = refused_at_start(&["--baker-token", BAKER_TOKEN, "--webhook-secret", ""]).await;
    assert!(
        said.contains("--webhook-secret") && said.contains("whsec_"),
        "{said}"
    );

    let said = refused_at_start(&[
        "--baker-token",
        BAKER_TOKEN,
        "--delivery-webhook-url",
        "ftp://partner.example/hook",
    ])
    .await;
    assert!(
        said.contains("--delivery-webhook-url") && said.contains("http or https"),
        "{said}"
    );

    // The address is taken: nothing can be served, so nothing is made.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap().to_string();
    let said = refused_at_start(&["--baker-token", BAKER_TOKEN, "--listen", &address]).await;
    assert!(said.contains("cannot listen"), "{said}");
}

#[tokio::test]
async fn a_second_bakery_on_a_running_ones_directory_is_refused() {
    let first = Bakery::start(&[]).await;
    let run = Command::new(env!("CARGO_BIN_EXE_bakery"))
        .args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(first.data.path())
        .args(["--baker-token", BAKER_TOKEN])
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(30), run)
        .await
        .expect("the second bakery started and served")
        .unwrap();
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{said}");
    assert!(
        said.contains("another bakery is running on the data directory"),
        "{said}"
    );
    // The first one still takes orders.
    let (status, order) = first.post("/order", None, &order_body("Ada")).await;
    assert_eq!(status, 201, "{order}");
}
