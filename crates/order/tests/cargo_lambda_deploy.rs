//! `cargo lambda deploy`, the way docs/deploy.md ("Update one function")
//! tells operators to ship one function, against the AWS API emulator's
//! Lambda API: it creates the function with the settings this crate's
//! `[package.metadata.lambda.deploy]` gives (which must equal
//! template.yaml's), and a second deploy of new code keeps what the stack
//! set (here, its environment). No flag but where the binary is and the
//! emulator's address.

use std::path::{Path, PathBuf};
use std::process::Command;

use aws_adapters::emulator::Moto;
use serde_json::{Value, json};

const FUNCTION: &str = "bakery-order";

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `cargo lambda deploy` from this crate's directory, so it reads this
/// crate's metadata, with the binary found in `lambda_dir/order/bootstrap`.
fn cargo_lambda_deploy(moto: &Moto, lambda_dir: &Path) -> String {
    let cargo_lambda = workspace().join(".venv/bin/cargo-lambda");
    assert!(
        cargo_lambda.exists(),
        "{} is missing: run scripts/test.sh, which installs it",
        cargo_lambda.display()
    );
    let output = Command::new(cargo_lambda)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["lambda", "deploy", "--endpoint-url", &moto.endpoint])
        .arg("--lambda-dir")
        .arg(lambda_dir)
        .args(["--binary-name", "order", FUNCTION])
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", "us-east-1")
        .env("CARGO_LAMBDA_COLOR", "never")
        .env_remove("AWS_PROFILE")
        .output()
        .expect("cargo lambda runs");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "cargo lambda deploy failed:\n{said}"
    );
    said
}

/// Lambda's REST API, as the SDKs call it. moto checks no signature, only
/// that the request names the service it is for.
async fn lambda_api(
    moto: &Moto,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> Value {
    let mut request = reqwest::Client::new()
        .request(
            method,
            format!("{}/2015-03-31/functions/{path}", moto.endpoint),
        )
        .header(
            "authorization",
            "AWS4-HMAC-SHA256 Credential=testing/20261204/us-east-1/lambda/aws4_request, \
             SignedHeaders=host, Signature=0",
        );
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let text = response.text().await.unwrap();
    assert!(status.is_success(), "{status}: {text}");
    serde_json::from_str(&text).unwrap()
}

/// What template.yaml gives every function (its `Globals`).
fn template_globals() -> Value {
    let text = std::fs::read_to_string(workspace().join("template.yaml")).unwrap();
    // The template's short-form intrinsics (!Sub, !Ref) are YAML tags,
    // which only YAML's own value type holds; Globals has none.
    let template: serde_norway::Value = serde_norway::from_str(&text).unwrap();
    serde_json::to_value(&template["Globals"]["Function"]).unwrap()
}

#[tokio::test]
async fn cargo_lambda_deploy_creates_the_function_from_the_crates_metadata_and_updates_only_its_code()
 {
    let moto = Moto::start_with_env(&[("MOTO_IAM_LOAD_MANAGED_POLICIES", "true")]).await;
    let lambda_dir = tempfile::tempdir().unwrap();
    let bootstrap = lambda_dir.path().join("order/bootstrap");
    std::fs::create_dir_all(bootstrap.parent().unwrap()).unwrap();
    std::fs::copy(env!("CARGO_BIN_EXE_order"), &bootstrap).unwrap();

    // Created: the settings are the crate's metadata, equal to the
    // template's, on the runtime the templates use.
    let said = cargo_lambda_deploy(&moto, lambda_dir.path());
    let created = lambda_api(&moto, reqwest::Method::GET, FUNCTION, None).await;
    let config = &created["Configuration"];
    let globals = template_globals();
    assert_eq!(config["FunctionName"], FUNCTION, "{said}");
    assert_eq!(config["MemorySize"], globals["MemorySize"], "{config:#}");
    assert_eq!(config["Timeout"], globals["Timeout"], "{config:#}");
    assert_eq!(
        config["TracingConfig"]["Mode"], globals["Tracing"],
        "{config:#}"
    );
    assert_eq!(config["Runtime"], globals["Runtime"], "{config:#}");
    assert_eq!(config["Handler"], globals["Handler"], "{config:#}");
    let first_code = config["CodeSha256"].as_str().unwrap().to_owned();

    // The stack sets the function's environment; a later deploy of new
    // code must leave it, and the settings, as they are.
    lambda_api(
        &moto,
        reqwest::Method::PUT,
        &format!("{FUNCTION}/configuration"),
        Some(json!({"Environment": {"Variables": {"ORDERS_TABLE": "bakery-orders"}}})),
    )
    .await;
    let mut code = std::fs::read(&bootstrap).unwrap();
    code.extend_from_slice(b"a new build");
    std::fs::write(&bootstrap, code).unwrap();
    let said = cargo_lambda_deploy(&moto, lambda_dir.path());

    let updated = lambda_api(&moto, reqwest::Method::GET, FUNCTION, None).await;
    let config = &updated["Configuration"];
    assert_ne!(
        config["CodeSha256"],
        first_code.as_str(),
        "new code: {said}"
    );
    assert_eq!(
        config["Environment"]["Variables"]["ORDERS_TABLE"], "bakery-orders",
        "{config:#}"
    );
    assert_eq!(config["MemorySize"], globals["MemorySize"], "{config:#}");
    assert_eq!(config["Timeout"], globals["Timeout"], "{config:#}");
}
