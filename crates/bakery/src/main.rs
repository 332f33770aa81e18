//! `bakery`: the cake bakery's order system on one machine.
//!
//! With no arguments it serves the API and runs every step; `bakery dlq`
//! inspects and redrives dead letters; `bakery outbox` reads the emails
//! the local bakery sent. `bakery --help` lists every flag.

// The bakery allocates many short-lived buffers per request and per step;
// under the lifecycle benchmark mimalloc gave about 5 % more lifecycles/s
// than the system allocator (docs/benchmark.md), for ~10 MiB more memory.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::io::{IsTerminal, Write};

use anyhow::Result;
use bakery::app::Bakery;
use bakery::config::{Cli, Command, LogFormat};
use clap::Parser;
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // Handlers log a line per order: a background thread writes them to
    // stderr so no request or batch waits on the terminal or pipe. Not
    // lossy (a full buffer makes the logger wait rather than drop a dead
    // letter's line); `_flush` writes out what is left when main returns.
    // Buffered: the thread writes all the lines waiting at once (one
    // syscall) and flushes whenever it has caught up.
    let (stderr, _flush) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .finish(std::io::BufWriter::new(std::io::stderr()));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env("BAKERY_LOG").unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(stderr);
    match cli.log_format {
        LogFormat::Text => logs.with_ansi(std::io::stderr().is_terminal()).init(),
        // The shape of the deployed functions' JSON lines
        // (aws_adapters::logging), with a timestamp.
        LogFormat::Json => logs
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(true)
            .init(),
    }
    match run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("bakery: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<()> {
    match &cli.command {
        None | Some(Command::Serve) => serve(cli).await,
        Some(Command::Dlq { action }) => bakery::dlq::run(&cli.serve, action).await,
        Some(Command::Outbox { action }) => bakery::outbox::run(&cli.serve, action),
    }
}

async fn serve(cli: Cli) -> Result<()> {
    let bakery = Bakery::build(cli.serve).await?;
    let address = bakery.local_addr()?;
    let mut out = std::io::stdout().lock();
    for line in bakery.describe() {
        writeln!(out, "{line}")?;
    }
    // Scripts and tests wait for this line: from here on requests are served.
    writeln!(out, "listening on http://{address}")?;
    out.flush()?;
    drop(out);

    let stop = CancellationToken::new();
    tokio::spawn(cancel_on_signal(stop.clone()));
    bakery.serve(stop).await?;
    println!("stopped cleanly");
    Ok(())
}

/// Ctrl-C or SIGTERM: stop taking new work and finish what is in hand.
async fn cancel_on_signal(stop: CancellationToken) {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::warn!(%error, "cannot watch for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
    tracing::info!("stopping: finishing work in hand");
    stop.cancel();
}
