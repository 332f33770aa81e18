//! The operator's view of the dead letters: what failed, why, how often,
//! and putting it back to be tried again once the cause is fixed.
//!
//! On the embedded backend redrive works on the data directory directly, so
//! it can run while the bakery serves (the running consumers wake and take
//! the redriven work) or while it is stopped (the work is taken at the next
//! start).
//!
//! With `--backend aws` the dead letters are the messages in the delivery
//! and feedback dead-letter queues and the failed stream batches kept in the
//! stream-failures bucket, found by the same `--aws-*` flags the bakery
//! serves with and handled by [`AwsOperations`], as the operator's page
//! does: a queue's dead letter is sent back to its queue, a kept batch's
//! records are put on the stream again from the bucket. Ids are strings
//! there (`delivery:<message id>`, `stream-failures:<object key>`). This
//! command never creates resources.

use anyhow::{Context, Result, bail};
use aws_adapters::operations::AwsOperations;
use domain::ports::{DeadLetterView, Operations};
use embedded::{Database, DeadLetter};

use crate::aws::Resources;
use crate::config::{Backend, DlqAction, ServeConfig};

pub async fn run(config: &ServeConfig, action: &DlqAction) -> Result<()> {
    match config.backend {
        Backend::Embedded => run_embedded(config, action).await,
        Backend::Aws => run_aws(config, action).await,
    }
}

async fn run_embedded(config: &ServeConfig, action: &DlqAction) -> Result<()> {
    if !config.data_dir.join(embedded::DATABASE_FILE).exists() {
        bail!(
            "no bakery database in {}; pass --data-dir",
            config.data_dir.display()
        );
    }
    if let DlqAction::List { with_body } = action {
        let letters = embedded::dead_letters_read_only(&config.data_dir)
            .context("cannot read the dead letters")?;
        for letter in &letters {
            println!("{}", serde_json::to_string(&listed(letter, *with_body))?);
        }
        return Ok(());
    }
    let db = Database::open(&config.data_dir, embedded::Options::default())
        .context("cannot open the database")?;
    match action {
        DlqAction::List { .. } => unreachable!("listed above, without opening for writing"),
        DlqAction::Redrive { all: true, .. } => {
            let count = db.redrive_all().await?;
            println!("redrove {count} dead letter(s)");
        }
        DlqAction::Redrive { id: Some(id), .. } => {
            let Ok(number) = id.trim().parse::<i64>() else {
                bail!("no dead letter {id}: ids are numbers here; `bakery dlq list` shows them");
            };
            if !db.redrive(number).await? {
                bail!("no dead letter {number}; `bakery dlq list` shows them");
            }
            println!("redrove dead letter {number}");
        }
        DlqAction::Redrive { id: None, .. } => bail!("name a dead letter id or pass --all"),
    }
    Ok(())
}

/// A dead letter as `bakery dlq list` prints it: what the AWS backend
/// prints too (`DeadLetterView`), and the body only when asked, since it
/// holds customers' names and addresses.
fn listed(letter: &DeadLetter, with_body: bool) -> serde_json::Value {
    let body: Option<serde_json::Value> = serde_json::from_str(&letter.body).ok();
    let order_id = body
        .as_ref()
        .and_then(|body| body.get("orderId"))
        .and_then(serde_json::Value::as_str)
        .map(str::to_owned);
    let view = DeadLetterView {
        id: letter.id.to_string(),
        source: letter.source.clone(),
        reason: letter.reason.clone(),
        attempts: letter.attempts,
        failed_at: letter.failed_at,
        message_id: letter.message_id.clone(),
        order_id,
    };
    let mut json = serde_json::to_value(view).unwrap_or_default();
    // A number, as `bakery dlq redrive` takes it here.
    json["id"] = letter.id.into();
    if with_body {
        json["body"] = serde_json::Value::String(letter.body.clone());
    }
    json
}

/// The AWS resources' dead letters, as the operator's page sees them.
async fn aws_operations(config: &ServeConfig) -> Result<AwsOperations> {
    let mut aws = config.aws.clone();
    // Looking at dead letters must not create an empty set of resources
    // under a mistyped prefix.
    aws.aws_provision = false;
    let resources = Resources::connect(&aws, &config.tuning, &config.mail_from)
        .await
        .with_context(|| {
            format!(
                "cannot find the bakery's queues with prefix {:?}; check --aws-prefix, \
                 --aws-endpoint-url and the AWS credentials and region",
                aws.aws_prefix
            )
        })?;
    Ok(resources.operations())
}

async fn run_aws(config: &ServeConfig, action: &DlqAction) -> Result<()> {
    let operations = aws_operations(config).await?;
    match action {
        DlqAction::List { with_body: true } => bail!(
            "--with-body is for the embedded backend; on AWS the bodies are in the \
             dead-letter queues and the stream-failures bucket (docs/deploy.md)"
        ),
        DlqAction::List { with_body: false } => {
            let status = operations
                .status()
                .await
                .context("cannot list the dead letters")?;
            for letter in status.dead_letters {
                println!("{}", serde_json::to_string(&letter)?);
            }
        }
        DlqAction::Redrive { all: true, .. } => {
            // The dead letters there are now; one that fails again after
            // its redrive comes back under a new id, for the next look.
            let letters = operations
                .status()
                .await
                .context("cannot list the dead letters")?
                .dead_letters;
            let mut redriven = 0usize;
            let mut gone = 0usize;
            let mut failed = Vec::new();
            for letter in letters {
                match operations.redrive(letter.id.clone()).await {
                    Ok(true) => redriven += 1,
                    // Redriven by someone else meanwhile.
                    Ok(false) => gone += 1,
                    Err(error) => failed.push(format!("{}: {error}", letter.id)),
                }
            }
            let mut said = format!("redrove {redriven} dead letter(s)");
            if gone > 0 {
                said.push_str(&format!("; {gone} already gone"));
            }
            println!("{said}");
            if !failed.is_empty() {
                bail!(
                    "{} dead letter(s) could not be redriven and stay where they are:\n{}",
                    failed.len(),
                    failed.join("\n")
                );
            }
        }
        DlqAction::Redrive { id: Some(id), .. } => {
            let redriven = operations
                .redrive(id.clone())
                .await
                .with_context(|| format!("cannot redrive {id}"))?;
            if !redriven {
                bail!("no dead letter {id}; `bakery dlq list --backend aws` shows them");
            }
            println!("redrove dead letter {id}");
        }
        DlqAction::Redrive { id: None, .. } => bail!("name a dead letter id or pass --all"),
    }
    Ok(())
}
