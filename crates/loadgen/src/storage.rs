//! Orders written without HTTP.
//!
//! - [`seed`] fills a data directory with many finished orders through the
//!   `embedded` crate (as the bakery would have stored them), to measure
//!   start-up time and memory with a big database.
//! - [`embedded`] places new orders through the `embedded` crate in this
//!   process: the bakery's storage path without HTTP.
//! - [`raw`] writes the same rows straight to SQLite (order, idempotency
//!   key, stream event; WAL, `synchronous=FULL`, foreign keys on), with one
//!   transaction per group of orders or per order: the storage limit.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use chrono::{DateTime, Utc};
use domain::auth::TokenHash;
use domain::events::{Event, EventType};
use domain::ports::{IdempotencyKey, NewOrder, OrderStore};
use domain::{Order, OrderId, Status, Step, StepTime};
use embedded::{Database, Options};
use indicatif::{ProgressBar, ProgressStyle};
use rusqlite::{Connection, params};

use crate::machine::MachineInfo;
use crate::report::StorageRun;
use crate::stats::per_second;

/// The stream consumers of the bakery (`bakery::names`); a seeded
/// directory has them checkpointed past the seeded events, as if the
/// bakery had processed them.
pub const STREAM_CONSUMERS: [&str; 2] = ["notify-baker", "dispatch"];

/// An order as `POST /order` makes it; `finished` gives it the whole
/// timeline of a delivered order, with a review.
pub fn order(index: u64, at: DateTime<Utc>, finished: bool) -> Order {
    let order_id = OrderId(uuid::Uuid::now_v7());
    let mut order = Order {
        order_id,
        status: Status::Placed,
        name: format!("Customer {index}"),
        address: format!("{index} Benchmark Street, 1000 Loadtown"),
        email: Some(format!("customer{index}@example.com")),
        product_id: "1".into(),
        product_name: "Chocolate cake".into(),
        quantity: 1,
        unit_price_cents: 2800,
        total_cents: 2800,
        currency: "EUR".into(),
        fulfillment_id: None,
        delivery_company_id: None,
        order_review: None,
        timeline: vec![StepTime {
            step: Step::Placed,
            at,
        }],
        correlation_id: None,
        customer_token_hash: TokenHash::of(&format!("seeded-token-{order_id}")),
    };
    if finished {
        order.status = Status::Delivered;
        order.fulfillment_id = Some("oven-1".into());
        order.delivery_company_id = Some("van-1".into());
        order.order_review = Some("Lovely cake, arrived on time.".into());
        // Every step after `placed`, 5 ms apart.
        for (i, step) in (1i64..).zip(&Step::ALL[1..]) {
            order.record(*step, at + chrono::Duration::milliseconds(i * 5));
        }
    }
    order
}

fn new_order(index: u64, finished: bool) -> NewOrder {
    let now = Utc::now();
    let order = order(index, now, finished);
    NewOrder {
        event: Event::new(EventType::OrderPlaced, &order, now),
        idempotency: Some(IdempotencyKey {
            key: uuid::Uuid::new_v4().to_string(),
            fingerprint: format!("{:064x}", index),
        }),
        order,
    }
}

fn bar(length: u64, progress: bool) -> ProgressBar {
    if !progress {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(length);
    if let Ok(style) = ProgressStyle::with_template(
        "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} orders ({per_sec}, {eta})",
    ) {
        bar.set_style(style);
    }
    bar
}

/// Places `orders` orders with `concurrency` placers through the embedded
/// store; returns the elapsed time and the commits it took.
async fn place_many(
    db: &Database,
    orders: u64,
    concurrency: usize,
    finished: bool,
    bar: &ProgressBar,
) -> Result<Duration> {
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut placers = tokio::task::JoinSet::new();
    for _ in 0..concurrency.max(1) {
        let store = db.store();
        let next = Arc::clone(&next);
        let bar = bar.clone();
        placers.spawn(async move {
            loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                if index >= orders {
                    return Ok::<_, anyhow::Error>(());
                }
                let new = new_order(index, finished);
                store
                    .place(&new)
                    .await
                    .map_err(|e| anyhow::anyhow!("placing order {index}: {e}"))?;
                bar.inc(1);
            }
        });
    }
    while let Some(placer) = placers.join_next().await {
        placer.context("a placer panicked")??;
    }
    Ok(started.elapsed())
}

/// What [`seed`] did.
#[derive(Debug, Clone, Copy)]
pub struct Seeded {
    pub orders: u64,
    pub elapsed: Duration,
    pub commits: u64,
    /// The data directory's size with every event still in the stream, as
    /// the bakery keeps them for the retention period.
    pub bytes_before_trim: u64,
    /// Its size once the stream is trimmed (`Database::trim_stream`), as
    /// after the retention period.
    pub bytes_after_trim: u64,
}

/// The size of every file in `dir` (the database, its log, the secrets).
fn bytes_in(dir: &Path) -> Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir)? {
        let meta = entry?.metadata()?;
        if meta.is_file() {
            total += meta.len();
        }
    }
    Ok(total)
}

/// Fills `dir` with `orders` finished orders, their idempotency keys and
/// their `order_placed` events, and checkpoints the bakery's stream
/// consumers past those events.
pub async fn seed(dir: &Path, orders: u64, concurrency: usize, progress: bool) -> Result<Seeded> {
    let db = Database::open(dir, Options::default())
        .map_err(|e| anyhow::anyhow!("cannot open {}: {e}", dir.display()))?;
    let bar = bar(orders, progress);
    let elapsed = place_many(&db, orders, concurrency, true, &bar).await?;
    bar.finish_and_clear();
    let commits = db.commits();
    let last: i64 = {
        let conn =
            Connection::open_with_flags(db.path(), rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
        conn.query_row("SELECT coalesce(max(sequence), 0) FROM stream", [], |row| {
            row.get(0)
        })?
    };
    for consumer in STREAM_CONSUMERS {
        db.checkpoint(consumer, last)
            .await
            .map_err(|e| anyhow::anyhow!("cannot checkpoint {consumer}: {e}"))?;
    }
    // Closed, so the write-ahead log is copied back and gone: the sizes
    // are of the data as it rests.
    drop(db);
    let bytes_before_trim = bytes_in(dir)?;
    let db = Database::open(dir, Options::default())
        .map_err(|e| anyhow::anyhow!("cannot open {}: {e}", dir.display()))?;
    db.trim_stream(&STREAM_CONSUMERS, Duration::ZERO)
        .await
        .map_err(|e| anyhow::anyhow!("cannot trim the stream: {e}"))?;
    drop(db);
    let bytes_after_trim = bytes_in(dir)?;
    Ok(Seeded {
        orders,
        elapsed,
        commits,
        bytes_before_trim,
        bytes_after_trim,
    })
}

/// Places `orders` new orders through the embedded crate in this process,
/// `concurrency` at a time, into a fresh directory.
pub async fn embedded(
    dir: &Path,
    orders: u64,
    concurrency: usize,
    progress: bool,
) -> Result<StorageRun> {
    let db = Database::open(dir, Options::default())
        .map_err(|e| anyhow::anyhow!("cannot open {}: {e}", dir.display()))?;
    let bar = bar(orders, progress);
    let elapsed = place_many(&db, orders, concurrency, false, &bar).await?;
    bar.finish_and_clear();
    Ok(StorageRun {
        kind: "storage".into(),
        label: None,
        method: "embedded".into(),
        orders,
        group: concurrency,
        commits: db.commits(),
        elapsed_s: elapsed.as_secs_f64(),
        orders_per_s: per_second(orders, elapsed),
        machine: MachineInfo::read(),
    })
}

/// The tables the order path writes, as the embedded crate declares them.
const RAW_SCHEMA: &str = "
CREATE TABLE orders (
    order_id            TEXT PRIMARY KEY,
    status              TEXT NOT NULL,
    customer_token_hash TEXT NOT NULL,
    created_at          INTEGER NOT NULL,
    body                TEXT NOT NULL
);
CREATE INDEX orders_by_status ON orders (status, created_at);
CREATE TABLE idempotency_keys (
    key         TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    order_id    TEXT NOT NULL REFERENCES orders (order_id),
    created_at  INTEGER NOT NULL
);
CREATE TABLE stream (
    sequence      INTEGER PRIMARY KEY AUTOINCREMENT,
    partition_key TEXT NOT NULL,
    event_id      TEXT NOT NULL,
    data          BLOB NOT NULL,
    only_for      TEXT,
    appended_at   INTEGER NOT NULL
);
";

/// One order's rows, serialised before the clock starts.
struct Rows {
    order_id: String,
    token_hash: String,
    created_at: i64,
    body: String,
    key: String,
    fingerprint: String,
    event_id: String,
    event: Vec<u8>,
}

impl Rows {
    fn of(new: &NewOrder) -> Result<Rows> {
        Ok(Rows {
            order_id: new.order.order_id.to_string(),
            token_hash: new.order.customer_token_hash.to_string(),
            created_at: Utc::now().timestamp_micros(),
            body: serde_json::to_string(&new.order)?,
            key: new
                .idempotency
                .as_ref()
                .map(|k| k.key.clone())
                .unwrap_or_default(),
            fingerprint: new
                .idempotency
                .as_ref()
                .map(|k| k.fingerprint.clone())
                .unwrap_or_default(),
            event_id: new.event.event_id.to_string(),
            event: new.event.to_json(),
        })
    }

    fn insert(&self, conn: &Connection) -> rusqlite::Result<()> {
        conn.prepare_cached(
            "INSERT INTO orders (order_id, status, customer_token_hash, created_at, body)
             VALUES (?1, 'placed', ?2, ?3, ?4)",
        )?
        .execute(params![
            self.order_id,
            self.token_hash,
            self.created_at,
            self.body
        ])?;
        conn.prepare_cached(
            "INSERT INTO idempotency_keys (key, fingerprint, order_id, created_at)
             VALUES (?1, ?2, ?3, ?4)",
        )?
        .execute(params![
            self.key,
            self.fingerprint,
            self.order_id,
            self.created_at
        ])?;
        conn.prepare_cached(
            "INSERT INTO stream (partition_key, event_id, data, only_for, appended_at)
             VALUES (?1, ?2, ?3, NULL, ?4)",
        )?
        .execute(params![
            self.order_id,
            self.event_id,
            self.event,
            self.created_at
        ])?;
        Ok(())
    }
}

/// Writes `orders` orders straight to a new SQLite file in `dir`, `group`
/// orders per transaction (1: one transaction, one fsync, per order).
pub fn raw(dir: &Path, orders: u64, group: usize) -> Result<StorageRun> {
    let group = group.max(1);
    let path = dir.join("raw.sqlite3");
    if path.exists() {
        bail!("{} exists: give an empty directory", path.display());
    }
    std::fs::create_dir_all(dir)?;
    let conn = Connection::open(&path)?;
    // The same file format as the bakery's (see the embedded crate's schema).
    conn.pragma_update(None, "page_size", 2048)?;
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        bail!("no WAL on {}", path.display());
    }
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.execute_batch(RAW_SCHEMA)?;
    let rows = (0..orders)
        .map(|i| Rows::of(&new_order(i, false)))
        .collect::<Result<Vec<Rows>>>()?;
    let mut commits = 0;
    let started = Instant::now();
    for chunk in rows.chunks(group) {
        conn.execute_batch("BEGIN IMMEDIATE")?;
        for row in chunk {
            row.insert(&conn)?;
        }
        conn.execute_batch("COMMIT")?;
        commits += 1;
    }
    let elapsed = started.elapsed();
    drop(conn);
    Ok(StorageRun {
        kind: "storage".into(),
        label: None,
        method: if group == 1 {
            "raw-per-order"
        } else {
            "raw-grouped"
        }
        .into(),
        orders,
        group,
        commits,
        elapsed_s: elapsed.as_secs_f64(),
        orders_per_s: per_second(orders, elapsed),
        machine: MachineInfo::read(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_finished_order_has_the_whole_timeline() {
        let finished = order(7, Utc::now(), true);
        assert_eq!(finished.status, Status::Delivered);
        assert_eq!(finished.timeline.len(), 7);
        assert!(finished.reached(Step::CustomerServiceNotified));
        let placed = order(8, Utc::now(), false);
        assert_eq!(placed.timeline.len(), 1);
    }

    #[test]
    fn raw_writes_every_row_once_per_group() {
        let dir = tempfile::tempdir().unwrap();
        let run = raw(dir.path(), 10, 4).unwrap();
        assert_eq!(run.commits, 3);
        assert_eq!(run.method, "raw-grouped");
        let conn = Connection::open(dir.path().join("raw.sqlite3")).unwrap();
        for table in ["orders", "idempotency_keys", "stream"] {
            let n: i64 = conn
                .query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
                .unwrap();
            assert_eq!(n, 10, "{table}");
        }
    }

    #[tokio::test]
    async fn seeding_checkpoints_the_consumers_past_the_seeded_events() {
        let dir = tempfile::tempdir().unwrap();
        let seeded = seed(dir.path(), 50, 8, false).await.unwrap();
        assert_eq!(seeded.orders, 50);
        assert!(
            seeded.bytes_after_trim < seeded.bytes_before_trim,
            "{} bytes before trimming, {} after",
            seeded.bytes_before_trim,
            seeded.bytes_after_trim
        );
        let db = Database::open(dir.path(), Options::default()).unwrap();
        assert_eq!(db.count_orders().await.unwrap(), 50);
        for consumer in STREAM_CONSUMERS {
            assert_eq!(db.stream_lag(consumer).await.unwrap(), 0, "{consumer}");
        }
    }
}
