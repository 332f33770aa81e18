//! The load generator against a real bakery (embedded, served in this
//! test on a random port): every lifecycle completes, and waiting for a
//! step costs one long-poll per step, or polls when asked to or when the
//! bakery does not wait.

use std::time::Duration;

use bakery::app::Bakery;
use bakery::config::Cli;
use clap::Parser;
use loadgen::load::{self, LoadConfig, Mode};
use loadgen::report::RunReport;
use tokio_util::sync::CancellationToken;

const BAKER_TOKEN: &str = "bench-test-baker-token-0123456789";
const LIFECYCLES: u64 = 12;

async fn run_against_a_bakery(poll: bool, bakery_flags: &[&str]) -> RunReport {
    let data = tempfile::tempdir().unwrap();
    let mut args = vec![
        "bakery",
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        data.path().to_str().unwrap(),
        "--baker-token",
        BAKER_TOKEN,
    ];
    args.extend_from_slice(bakery_flags);
    let cli = Cli::parse_from(args);
    let bakery = Bakery::build(cli.serve).await.unwrap();
    let url = format!("http://{}", bakery.local_addr().unwrap());
    let stop = CancellationToken::new();
    let serving = tokio::spawn(bakery.serve(stop.clone()));

    let report = load::run(LoadConfig {
        url,
        baker_token: Some(BAKER_TOKEN.into()),
        mode: Mode::Lifecycle,
        customers: 4,
        duration: None,
        count: Some(LIFECYCLES),
        rate: None,
        poll,
        poll_min: Duration::from_millis(4),
        poll_max: Duration::from_millis(16),
        step_timeout: Duration::from_secs(30),
        request_timeout: Duration::from_secs(30),
        post_tries: 3,
        progress: false,
        server_pid: None,
        label: None,
    })
    .await
    .unwrap();

    stop.cancel();
    serving.await.unwrap().unwrap();
    report
}

fn count(report: &RunReport, endpoint: &str) -> u64 {
    report
        .endpoints
        .get(endpoint)
        .map_or(0, |latency| latency.count)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycles_wait_with_one_long_poll_per_step() {
    let report = run_against_a_bakery(false, &[]).await;
    assert_eq!(report.errors, Default::default());
    assert_eq!(report.lifecycles_completed, LIFECYCLES);
    assert_eq!(count(&report, "GET /order/{id}?waitFor"), 3 * LIFECYCLES);
    assert_eq!(count(&report, "GET /order/{id}"), 0);
    for step in report.propagation.values() {
        assert_eq!(step.count, LIFECYCLES);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycles_poll_when_asked_to() {
    let report = run_against_a_bakery(true, &[]).await;
    assert_eq!(report.errors, Default::default());
    assert_eq!(report.lifecycles_completed, LIFECYCLES);
    assert_eq!(count(&report, "GET /order/{id}?waitFor"), 0);
    assert!(count(&report, "GET /order/{id}") >= 3 * LIFECYCLES);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycles_poll_when_the_bakery_does_not_wait() {
    let report = run_against_a_bakery(false, &["--max-wait-ms", "0"]).await;
    assert_eq!(report.errors, Default::default());
    assert_eq!(report.lifecycles_completed, LIFECYCLES);
    // The first long-poll that came back without its step and without a
    // wait turned every customer to polling.
    let long_polls = count(&report, "GET /order/{id}?waitFor");
    assert!((1..3 * LIFECYCLES).contains(&long_polls), "{long_polls}");
    assert!(count(&report, "GET /order/{id}") >= 1);
}
