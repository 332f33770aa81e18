//! Start-up time and memory of the bakery on a given data directory.
//!
//! Each sample spawns the `bakery` binary on a free loopback port, times
//! it from spawn to its `listening on http://...` line (from then on it
//! serves), sends a few requests (the catalog, new orders, reads of them),
//! reads VmRSS and VmHWM from `/proc/<pid>/status`, and stops it with
//! SIGTERM (a clean stop, so the next sample starts from a checkpointed
//! database, as after a normal restart).

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::machine::{self, MachineInfo};
use crate::report::{StartupRun, StartupSample};

/// How long the bakery may take to print `listening on`.
const START_LIMIT: Duration = Duration::from_secs(60);

/// The address in a `listening on http://ADDR` line.
pub fn listening_url(line: &str) -> Option<&str> {
    line.trim()
        .strip_prefix("listening on ")
        .filter(|url| url.starts_with("http://"))
}

async fn stop(child: &mut Child) {
    if let Some(pid) = child.id() {
        let _ = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .await;
    }
    if tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .is_err()
    {
        let _ = child.kill().await;
    }
}

async fn sample(bakery: &Path, data_dir: &Path, requests: u64) -> Result<StartupSample> {
    let started = Instant::now();
    let mut child = Command::new(bakery)
        .arg("--data-dir")
        .arg(data_dir)
        .args(["--listen", "127.0.0.1:0"])
        .env("BAKERY_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("cannot start {}", bakery.display()))?;
    let pid = child.id().context("the bakery exited at once")?;
    let stdout = child.stdout.take().context("no stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let url = tokio::time::timeout(START_LIMIT, async {
        while let Some(line) = lines.next_line().await? {
            if let Some(url) = listening_url(&line) {
                return Ok(url.to_owned());
            }
        }
        bail!("the bakery exited before listening")
    })
    .await
    .context("the bakery did not listen within a minute")??;
    let startup_ms = started.elapsed().as_secs_f64() * 1000.0;
    // Keep reading stdout so the bakery never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });

    let http = reqwest::Client::new();
    let mut sent = 0;
    http.get(format!("{url}/products"))
        .send()
        .await?
        .error_for_status()?;
    sent += 1;
    for i in 0..requests {
        let placed: serde_json::Value = http
            .post(format!("{url}/order"))
            .header("idempotency-key", uuid::Uuid::new_v4().to_string())
            .json(&serde_json::json!({
                "name": format!("Start-up probe {i}"),
                "address": "1 Benchmark Street, 1000 Loadtown",
                "productId": 2,
                "quantity": 2,
            }))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let id = placed["orderId"].as_str().context("no orderId")?;
        let token = placed["customerToken"]
            .as_str()
            .context("no customerToken")?;
        http.get(format!("{url}/order/{id}"))
            .bearer_auth(token)
            .send()
            .await?
            .error_for_status()?;
        sent += 2;
    }
    let memory = machine::memory_of(pid).context("cannot read the bakery's /proc status")?;
    stop(&mut child).await;
    Ok(StartupSample {
        startup_ms,
        memory,
        requests: sent,
    })
}

fn database_mb(dir: &Path) -> f64 {
    ["bakery.sqlite3", "bakery.sqlite3-wal"]
        .iter()
        .filter_map(|name| std::fs::metadata(dir.join(name)).ok())
        .map(|m| m.len() as f64 / (1024.0 * 1024.0))
        .sum()
}

/// `repeat` start-up samples of `bakery` on `data_dir`.
pub async fn run(
    bakery: &Path,
    data_dir: &Path,
    repeat: usize,
    requests: u64,
) -> Result<StartupRun> {
    let orders_stored = {
        let path = data_dir.join(embedded::DATABASE_FILE);
        let conn = rusqlite::Connection::open_with_flags(
            &path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .with_context(|| format!("cannot open {}", path.display()))?;
        let count: i64 = conn.query_row("SELECT count(*) FROM orders", [], |row| row.get(0))?;
        u64::try_from(count).unwrap_or(0)
    };
    let mut samples = Vec::new();
    for _ in 0..repeat.max(1) {
        samples.push(sample(bakery, data_dir, requests).await?);
    }
    Ok(StartupRun {
        kind: "startup".into(),
        label: None,
        orders_stored,
        database_mb: database_mb(data_dir),
        samples,
        machine: MachineInfo::read(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_listening_line() {
        assert_eq!(
            listening_url("listening on http://127.0.0.1:41234\n"),
            Some("http://127.0.0.1:41234")
        );
        assert_eq!(listening_url("data directory: ./bakery-data"), None);
        assert_eq!(listening_url("listening on ftp://x"), None);
    }
}
