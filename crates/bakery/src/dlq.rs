//! The operator's view of the dead letters: what failed, why, how often,
//! and putting it back to be tried again once the cause is fixed.
//!
//! Redrive works on the data directory directly, so it can run while the
//! bakery serves (the running consumers wake and take the redriven work) or
//! while it is stopped (the work is taken at the next start).

use anyhow::{Context, Result, bail};
use embedded::Database;

use crate::config::{DlqAction, ServeConfig};

pub async fn run(config: &ServeConfig, action: &DlqAction) -> Result<()> {
    if !config.data_dir.join("bakery.sqlite3").exists() {
        bail!(
            "no bakery database in {}; pass --data-dir",
            config.data_dir.display()
        );
    }
    let db = Database::open(&config.data_dir, embedded::Options::default())
        .context("cannot open the database")?;
    match action {
        DlqAction::List => {
            for letter in db.dead_letters().await? {
                println!("{}", serde_json::to_string(&letter)?);
            }
        }
        DlqAction::Redrive { all: true, .. } => {
            let count = db.redrive_all().await?;
            println!("redrove {count} dead letter(s)");
        }
        DlqAction::Redrive { id: Some(id), .. } => {
            if !db.redrive(*id).await? {
                bail!("no dead letter {id}; `bakery dlq list` shows them");
            }
            println!("redrove dead letter {id}");
        }
        DlqAction::Redrive { id: None, .. } => bail!("name a dead letter id or pass --all"),
    }
    Ok(())
}
