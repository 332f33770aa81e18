//! Driving a bakery over HTTP: order placement alone, or whole lifecycles.
//!
//! Closed loop (the default): `customers` tasks each start the next order
//! (or lifecycle) as soon as the last one finished: this finds the maximum
//! rate. Open loop (`rate`): arrivals at a fixed rate whatever the answers
//! do, each arrival its own task, at most `customers` at once: this gives
//! the latency at a chosen load without the coordinated-omission bias of a
//! closed loop.
//!
//! A lifecycle is what the customer and the cake maker do: place the order,
//! wait until the timeline shows `baker_notified`, mark it fulfilled (baker
//! token), wait for `delivery_notified`, confirm delivery with a review
//! (customer token), wait for `customer_service_notified`. Waiting asks
//! `GET /order/{id}?waitFor=<step>` (a long-poll: the bakery answers when
//! the step is recorded), once per step, as the tracking page does.
//! Against a server that does not wait (no `Preference-Applied`, e.g. the
//! deployment on AWS), or with `--poll`, it polls `GET /order/{id}` with a
//! short, doubling interval instead. Either way bounded by a deadline. The propagation latencies come from
//! the timeline of the last GET, i.e. from the bakery's own clock, so
//! waiting adds nothing to them.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use chrono::Utc;
use indicatif::{ProgressBar, ProgressStyle};
use reqwest::header::HeaderValue;

use crate::machine::{self, MachineInfo};
use crate::report::{DURABLE_ACK, RunReport, ServerUsage};
use crate::stats::{Latency, per_second};

mod customer;

pub use crate::workload::{Endpoint, Mode, PROPAGATION, propagation_name};
use customer::{bearer, lifecycle, order_body, place};

#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// Base URL, without a trailing slash.
    pub url: String,
    pub baker_token: Option<String>,
    pub mode: Mode,
    pub customers: usize,
    pub duration: Option<Duration>,
    pub count: Option<u64>,
    /// Arrivals per second (open loop); `None` for a closed loop.
    pub rate: Option<f64>,
    /// Poll `GET /order/{id}` even where the server can wait (`waitFor`).
    pub poll: bool,
    pub poll_min: Duration,
    pub poll_max: Duration,
    /// Longest wait for one propagation step before the lifecycle counts
    /// as failed.
    pub step_timeout: Duration,
    pub request_timeout: Duration,
    /// Tries of one POST answered 5xx or not answered (same
    /// Idempotency-Key each time).
    pub post_tries: u32,
    pub progress: bool,
    /// The bakery's process id, to read its CPU time and memory.
    pub server_pid: Option<u32>,
    pub label: Option<String>,
}

/// Everything measured, shared by the tasks (short critical sections,
/// never held across an await).
#[derive(Default)]
struct Recorder {
    endpoints: BTreeMap<Endpoint, Latency>,
    propagation: Vec<Latency>,
    lifecycle: Latency,
    errors: BTreeMap<String, u64>,
}

struct Shared {
    config: LoadConfig,
    http: reqwest::Client,
    /// `config.url` parsed once: every request's address is built from it
    /// ([`Shared::url`]) rather than parsed again, which was a tenth of
    /// the load generator's CPU, taken from the bakery it shares the
    /// machine with.
    base: reqwest::Url,
    order_body: Vec<u8>,
    baker_auth: Option<HeaderValue>,
    started: Instant,
    deadline: Option<Instant>,
    tickets: AtomicU64,
    stop: AtomicBool,
    requests: AtomicU64,
    accepted: AtomicU64,
    lifecycles: AtomicU64,
    failures: AtomicU64,
    recorder: Mutex<Recorder>,
    /// Set once the server answered a `waitFor` without waiting: poll from
    /// then on.
    server_cannot_wait: AtomicBool,
    /// How long each propagation step usually takes, in microseconds (a
    /// running average from the orders' timelines), by [`PROPAGATION`]
    /// index: a customer's first look waits about that long.
    usual_step_micros: [AtomicU64; PROPAGATION.len()],
}

impl Shared {
    /// The address of `path` (starting with `/`) under the bakery's URL,
    /// with `query` if given.
    fn url(&self, path: &str, query: Option<&str>) -> reqwest::Url {
        let mut url = self.base.clone();
        let prefix = self.base.path().trim_end_matches('/');
        url.set_path(&format!("{prefix}{path}"));
        url.set_query(query);
        url
    }

    fn recorder(&self) -> MutexGuard<'_, Recorder> {
        self.recorder
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Moves step `step`'s usual time an eighth of the way to `micros`.
    fn learn_step_time(&self, step: usize, micros: u64) {
        let usual = &self.usual_step_micros[step];
        let old = usual.load(Ordering::Relaxed);
        let new = if old == 0 {
            micros
        } else {
            old - old / 8 + micros / 8
        };
        // Concurrent customers may overwrite each other's sample: harmless.
        usual.store(new, Ordering::Relaxed);
    }

    /// May another order or lifecycle start?
    fn take_ticket(&self) -> bool {
        if self.stop.load(Ordering::Relaxed) {
            return false;
        }
        if self.deadline.is_some_and(|d| Instant::now() >= d) {
            return false;
        }
        match self.config.count {
            Some(count) => self.tickets.fetch_add(1, Ordering::Relaxed) < count,
            None => true,
        }
    }

    fn error(&self, what: String) {
        self.failures.fetch_add(1, Ordering::Relaxed);
        *self.recorder().errors.entry(what).or_insert(0) += 1;
    }

    fn latency(&self, endpoint: Endpoint, latency: Duration) {
        self.recorder()
            .endpoints
            .entry(endpoint)
            .or_default()
            .record(latency);
    }
}

async fn one(shared: &Shared) {
    match shared.config.mode {
        Mode::Orders => {
            place(shared).await;
        }
        Mode::Lifecycle => {
            lifecycle(shared).await;
        }
    }
}

async fn closed_loop(shared: Arc<Shared>) {
    let mut customers = tokio::task::JoinSet::new();
    for _ in 0..shared.config.customers.max(1) {
        let shared = Arc::clone(&shared);
        customers.spawn(async move {
            while shared.take_ticket() {
                one(&shared).await;
            }
        });
    }
    while customers.join_next().await.is_some() {}
}

async fn open_loop(shared: Arc<Shared>, rate: f64) {
    let in_flight = Arc::new(AtomicUsize::new(0));
    let mut arrivals = tokio::task::JoinSet::new();
    let mut issued: u64 = 0;
    'arrivals: loop {
        // Arrival i is due at i / rate seconds; the first at once.
        let due = (shared.started.elapsed().as_secs_f64() * rate) as u64 + 1;
        while issued < due {
            if !shared.take_ticket() {
                break 'arrivals;
            }
            issued += 1;
            if in_flight.load(Ordering::Relaxed) >= shared.config.customers.max(1) {
                shared.error("arrival skipped: all customers busy".into());
                continue;
            }
            in_flight.fetch_add(1, Ordering::Relaxed);
            let shared = Arc::clone(&shared);
            let in_flight = Arc::clone(&in_flight);
            arrivals.spawn(async move {
                one(&shared).await;
                in_flight.fetch_sub(1, Ordering::Relaxed);
            });
        }
        // Reap finished arrivals so the set stays small.
        while arrivals.try_join_next().is_some() {}
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    while arrivals.join_next().await.is_some() {}
}

fn progress_bar(config: &LoadConfig) -> ProgressBar {
    if !config.progress {
        return ProgressBar::hidden();
    }
    let (length, unit) = match (config.count, config.duration) {
        (Some(count), _) => (count, "runs"),
        (None, Some(duration)) => (duration.as_secs().max(1), "s"),
        (None, None) => (0, ""),
    };
    let bar = ProgressBar::new(length);
    let template =
        format!("{{spinner}} [{{elapsed_precise}}] {{wide_bar}} {{pos}}/{{len}} {unit} {{msg}}");
    if let Ok(style) = ProgressStyle::with_template(&template) {
        bar.set_style(style);
    }
    bar
}

/// Runs the load and reports what was measured.
pub async fn run(config: LoadConfig) -> Result<RunReport> {
    if config.duration.is_none() && config.count.is_none() {
        bail!("give --duration or --count: a run must end by itself");
    }
    if config.mode == Mode::Lifecycle && config.baker_token.is_none() {
        bail!("lifecycle mode needs the baker's token (--baker-token or --baker-token-file)");
    }
    if let Some(rate) = config.rate {
        if !(rate > 0.0 && rate.is_finite()) {
            bail!("--rate must be a positive number of arrivals per second");
        }
    }
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(config.customers.max(1))
        .tcp_nodelay(true)
        .timeout(config.request_timeout)
        .build()
        .context("cannot build the HTTP client")?;
    // Fail early and clearly if nothing answers there.
    http.get(format!("{}/products", config.url))
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .with_context(|| format!("GET {}/products failed: is the bakery running?", config.url))?;

    let baker_auth = config.baker_token.as_deref().map(bearer).transpose()?;
    // Before the run: the load average then says what else was running.
    let machine = MachineInfo::read();
    let server_before = config.server_pid.and_then(machine::cpu_seconds_of);
    let client_before = machine::own_cpu_seconds();
    let started_at = Utc::now();
    let started = Instant::now();
    let base = reqwest::Url::parse(&config.url)
        .with_context(|| format!("--url {} is not a URL", config.url))?;
    let shared = Arc::new(Shared {
        deadline: config.duration.map(|d| started + d),
        http,
        base,
        order_body: order_body(),
        baker_auth,
        started,
        tickets: AtomicU64::new(0),
        stop: AtomicBool::new(false),
        requests: AtomicU64::new(0),
        accepted: AtomicU64::new(0),
        lifecycles: AtomicU64::new(0),
        failures: AtomicU64::new(0),
        recorder: Mutex::new(Recorder {
            propagation: vec![Latency::new(); PROPAGATION.len()],
            ..Recorder::default()
        }),
        server_cannot_wait: AtomicBool::new(false),
        usual_step_micros: Default::default(),
        config: config.clone(),
    });

    let bar = progress_bar(&config);
    let ticker = {
        let shared = Arc::clone(&shared);
        let bar = bar.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(250)).await;
                let elapsed = shared.started.elapsed();
                let accepted = shared.accepted.load(Ordering::Relaxed);
                let lifecycles = shared.lifecycles.load(Ordering::Relaxed);
                let position = match shared.config.count {
                    Some(_) => match shared.config.mode {
                        Mode::Orders => accepted,
                        Mode::Lifecycle => lifecycles,
                    },
                    None => elapsed.as_secs(),
                };
                bar.set_position(position);
                bar.set_message(format!(
                    "{:.0} orders/s, {:.0} lifecycles/s, {} errors",
                    per_second(accepted, elapsed),
                    per_second(lifecycles, elapsed),
                    shared.failures.load(Ordering::Relaxed)
                ));
            }
        })
    };

    match config.rate {
        None => closed_loop(Arc::clone(&shared)).await,
        Some(rate) => open_loop(Arc::clone(&shared), rate).await,
    }
    let elapsed = started.elapsed();
    ticker.abort();
    bar.finish_and_clear();

    let server = config.server_pid.map(|pid| ServerUsage {
        pid,
        cpu_s: match (server_before, machine::cpu_seconds_of(pid)) {
            (Some(before), Some(after)) => Some(after - before),
            _ => None,
        },
        memory: machine::memory_of(pid),
    });
    let client_cpu_s = match (client_before, machine::own_cpu_seconds()) {
        (Some(before), Some(after)) => Some(after - before),
        _ => None,
    };
    let recorder = std::mem::take(&mut *shared.recorder());
    let accepted = shared.accepted.load(Ordering::Relaxed);
    let lifecycles = shared.lifecycles.load(Ordering::Relaxed);
    Ok(RunReport {
        kind: "load".into(),
        label: config.label.clone(),
        mode: config.mode,
        url: config.url.clone(),
        customers: config.customers,
        rate_target: config.rate,
        duration_s: config.duration.map(|d| d.as_secs_f64()),
        count: config.count,
        started_at,
        elapsed_s: elapsed.as_secs_f64(),
        requests: shared.requests.load(Ordering::Relaxed),
        orders_accepted: accepted,
        orders_per_s: per_second(accepted, elapsed),
        lifecycles_completed: lifecycles,
        lifecycles_per_s: per_second(lifecycles, elapsed),
        endpoints: recorder
            .endpoints
            .iter()
            .map(|(endpoint, latency)| (endpoint.name().to_owned(), latency.summary()))
            .collect(),
        propagation: PROPAGATION
            .iter()
            .zip(&recorder.propagation)
            .filter(|(_, latency)| latency.count() > 0)
            .map(|((from, to), latency)| (propagation_name(from, to), latency.summary()))
            .collect(),
        lifecycle: (recorder.lifecycle.count() > 0).then(|| recorder.lifecycle.summary()),
        errors: recorder.errors,
        server,
        client_cpu_s,
        machine,
        durable_ack: DURABLE_ACK.into(),
    })
}
