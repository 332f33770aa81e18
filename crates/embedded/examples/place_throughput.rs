//! How many orders per second `place` makes durable.
//!
//! `cargo run --release -p embedded --example place_throughput -- [orders] [concurrency] [dir]`
//!
//! Every order is placed with an idempotency key and its event, as the
//! order function does; each `place` answers only after its batch's fsync.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use chrono::Utc;
use domain::events::{Event, EventType};
use domain::ports::{IdempotencyKey, NewOrder, OrderStore};
use embedded::{Database, Options};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let orders: usize = args
        .next()
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(100_000);
    let concurrency: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(1_000);
    let temp = tempfile::tempdir()?;
    let dir = args
        .next()
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| temp.path().to_owned());

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let db = Database::open(&dir, Options::default())?;
        let next = Arc::new(AtomicUsize::new(0));
        let started = Instant::now();
        let workers: Vec<_> = (0..concurrency)
            .map(|_| {
                let store = db.store();
                let next = Arc::clone(&next);
                tokio::spawn(async move {
                    while next.fetch_add(1, Ordering::Relaxed) < orders {
                        let order = domain::memory::placed_order();
                        let new = NewOrder {
                            idempotency: Some(IdempotencyKey {
                                key: order.order_id.to_string(),
                                fingerprint: "fp".into(),
                            }),
                            event: Event::new(EventType::OrderPlaced, &order, Utc::now()),
                            order,
                        };
                        store.place(&new).await?;
                    }
                    Ok::<_, domain::ports::StoreError>(())
                })
            })
            .collect();
        for worker in workers {
            worker.await??;
        }
        let elapsed = started.elapsed();
        println!(
            "{orders} orders in {:.2?}: {:.0} orders/s, {} commits ({:.1} orders per fsync)",
            elapsed,
            orders as f64 / elapsed.as_secs_f64(),
            db.commits(),
            orders as f64 / db.commits().max(1) as f64,
        );
        Ok::<_, Box<dyn std::error::Error>>(())
    })
}
