//! Values a function loads at cold start and keeps fresh, with what it
//! builds from them: its secrets and the handler that uses them.
//!
//! A function reads its secrets from a store once at cold start and keeps
//! them in memory. So that a secret can be rotated without a redeploy, the
//! values are loaded again once they are older than a refresh period. Lambda
//! freezes a function's process between invocations, so a background timer
//! would not fire when due; instead every invocation first asks
//! [`Refreshing::current`] for the handler, which reloads the values if they
//! are due and rebuilds the handler only when they changed. The handlers'
//! own code and types stay as they are: they are rebuilt, not told.
//!
//! A failed refresh (the store unreachable, access revoked, a new value the
//! handler cannot be built from) keeps what the function has and logs a
//! warning, and is tried again one period later rather than on every
//! invocation. Only the first load at cold start is fatal: a function never
//! starts without its secrets.
//!
//! Where the values come from is a [`Load`] implementation's business
//! (`aws_adapters::secrets` over SSM Parameter Store); nothing here knows
//! the store, and nothing here logs a value.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Mutex;

/// Where the values come from.
pub trait Load: Send + Sync + 'static {
    /// Compared with the previous load to decide whether to rebuild.
    type Value: PartialEq + Send + Sync + 'static;
    /// Said in the cold start's error and in refresh warnings, so it must
    /// name what failed and never hold a value.
    type Error: std::fmt::Display + Send;

    fn load(&self) -> impl Future<Output = Result<Self::Value, Self::Error>> + Send;
}

/// Builds what a function serves with (a router, a handler's deps) from
/// the values; an error is a value the function cannot use.
pub type Build<V, T> = Box<dyn Fn(&V) -> Result<T, String> + Send + Sync>;

/// What [`Refreshing::current`] hands out, with the values it was built from.
pub struct Refreshing<L: Load, T> {
    source: L,
    period: Duration,
    build: Build<L::Value, T>,
    state: Mutex<State<L::Value, T>>,
}

struct State<V, T> {
    value: V,
    built: Arc<T>,
    /// When to load again.
    due: Instant,
}

/// The first load or build failed: the function cannot start.
#[derive(Clone, PartialEq, Eq)]
pub struct StartError(pub String);

/// The message itself: `main` returning an error prints its `Debug`, and
/// that line is what an operator reads in the function's log.
impl std::fmt::Debug for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for StartError {}

impl<L: Load, T: Send + Sync + 'static> Refreshing<L, T> {
    /// Loads the values and builds from them, failing if either fails.
    /// They are loaded again `period` after this.
    pub async fn start(
        source: L,
        period: Duration,
        build: impl Fn(&L::Value) -> Result<T, String> + Send + Sync + 'static,
    ) -> Result<Refreshing<L, T>, StartError> {
        Refreshing::start_at(source, period, Box::new(build), Instant::now()).await
    }

    /// [`Refreshing::start`] at a given time (tests use a fake clock).
    pub async fn start_at(
        source: L,
        period: Duration,
        build: Build<L::Value, T>,
        now: Instant,
    ) -> Result<Refreshing<L, T>, StartError> {
        let value = source.load().await.map_err(|e| StartError(e.to_string()))?;
        let built = build(&value).map_err(StartError)?;
        Ok(Refreshing {
            source,
            period,
            build,
            state: Mutex::new(State {
                value,
                built: Arc::new(built),
                due: now + period,
            }),
        })
    }

    /// How long values are kept before they are loaded again.
    pub fn period(&self) -> Duration {
        self.period
    }

    /// What to serve this invocation with: built from values at most one
    /// period old, unless refreshing them failed.
    pub async fn current(&self) -> Arc<T> {
        self.current_at(Instant::now()).await
    }

    /// [`Refreshing::current`] at a given time (tests use a fake clock).
    pub async fn current_at(&self, now: Instant) -> Arc<T> {
        // Held across the load: invocations that arrive during a refresh
        // wait for it rather than start another one.
        let mut state = self.state.lock().await;
        if now < state.due {
            return state.built.clone();
        }
        // Whatever happens next, the store is not asked again before a
        // period has passed: a failing store must not slow every
        // invocation by a call (and its retries).
        state.due = now + self.period;
        match self.source.load().await {
            Ok(value) if value == state.value => {}
            Ok(value) => match (self.build)(&value) {
                Ok(built) => {
                    state.built = Arc::new(built);
                    state.value = value;
                    tracing::info!("secrets changed: rebuilt the handler with the new values");
                }
                Err(error) => tracing::warn!(
                    %error,
                    "refreshed secrets cannot be used; keeping the previous values"
                ),
            },
            Err(error) => tracing::warn!(
                %error,
                retry_in_s = self.period.as_secs(),
                "refreshing secrets failed; keeping the previous values"
            ),
        }
        state.built.clone()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// A store whose value and availability the test sets.
    #[derive(Clone)]
    struct Fake {
        value: Arc<std::sync::Mutex<Result<String, String>>>,
        loads: Arc<AtomicUsize>,
    }

    impl Fake {
        fn holding(value: &str) -> Fake {
            Fake {
                value: Arc::new(std::sync::Mutex::new(Ok(value.to_owned()))),
                loads: Arc::default(),
            }
        }

        fn set(&self, value: Result<&str, &str>) {
            *self.value.lock().unwrap() = value.map(str::to_owned).map_err(str::to_owned);
        }

        fn loads(&self) -> usize {
            self.loads.load(Ordering::SeqCst)
        }
    }

    impl Load for Fake {
        type Value = String;
        type Error = String;

        async fn load(&self) -> Result<String, String> {
            self.loads.fetch_add(1, Ordering::SeqCst);
            self.value.lock().unwrap().clone()
        }
    }

    const PERIOD: Duration = Duration::from_secs(300);

    /// Builds "built from <value>", refusing values starting with "bad",
    /// and counts builds.
    fn builder(builds: Arc<AtomicUsize>) -> Build<String, String> {
        Box::new(move |value: &String| {
            builds.fetch_add(1, Ordering::SeqCst);
            if value.starts_with("bad") {
                Err("unusable value".into())
            } else {
                Ok(format!("built from {value}"))
            }
        })
    }

    async fn started(
        fake: &Fake,
        builds: &Arc<AtomicUsize>,
        t0: Instant,
    ) -> Refreshing<Fake, String> {
        Refreshing::start_at(fake.clone(), PERIOD, builder(builds.clone()), t0)
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn values_are_kept_for_a_period_then_loaded_again_and_rebuilt_when_changed() {
        let fake = Fake::holding("one");
        let builds = Arc::new(AtomicUsize::new(0));
        let t0 = Instant::now();
        let refreshing = started(&fake, &builds, t0).await;
        assert_eq!(*refreshing.current_at(t0).await, "built from one");

        fake.set(Ok("two"));
        let almost = t0 + PERIOD - Duration::from_millis(1);
        assert_eq!(*refreshing.current_at(almost).await, "built from one");
        assert_eq!(fake.loads(), 1, "not due yet: no load");

        assert_eq!(*refreshing.current_at(t0 + PERIOD).await, "built from two");
        assert_eq!((fake.loads(), builds.load(Ordering::SeqCst)), (2, 2));
    }

    #[tokio::test]
    async fn unchanged_values_are_not_rebuilt() {
        let fake = Fake::holding("one");
        let builds = Arc::new(AtomicUsize::new(0));
        let t0 = Instant::now();
        let refreshing = started(&fake, &builds, t0).await;
        let first = refreshing.current_at(t0).await;
        let later = refreshing.current_at(t0 + PERIOD * 3).await;
        assert!(Arc::ptr_eq(&first, &later), "the same handler is kept");
        assert_eq!((fake.loads(), builds.load(Ordering::SeqCst)), (2, 1));
    }

    #[tokio::test]
    async fn a_failed_refresh_keeps_the_old_values_and_is_tried_again_a_period_later() {
        let fake = Fake::holding("one");
        let builds = Arc::new(AtomicUsize::new(0));
        let t0 = Instant::now();
        let refreshing = started(&fake, &builds, t0).await;

        fake.set(Err("store unreachable"));
        let t1 = t0 + PERIOD;
        assert_eq!(*refreshing.current_at(t1).await, "built from one");
        assert_eq!(fake.loads(), 2);
        // Not on every invocation while the store fails.
        assert_eq!(
            *refreshing.current_at(t1 + PERIOD / 2).await,
            "built from one"
        );
        assert_eq!(fake.loads(), 2);

        fake.set(Ok("two"));
        assert_eq!(*refreshing.current_at(t1 + PERIOD).await, "built from two");
        assert_eq!(fake.loads(), 3);
    }

    #[tokio::test]
    async fn a_new_value_that_cannot_be_built_from_keeps_the_old_one() {
        let fake = Fake::holding("one");
        let builds = Arc::new(AtomicUsize::new(0));
        let t0 = Instant::now();
        let refreshing = started(&fake, &builds, t0).await;

        fake.set(Ok("bad value"));
        assert_eq!(*refreshing.current_at(t0 + PERIOD).await, "built from one");
        // Corrected in the store: taken at the next refresh.
        fake.set(Ok("three"));
        assert_eq!(
            *refreshing.current_at(t0 + PERIOD * 2).await,
            "built from three"
        );
    }

    #[tokio::test]
    async fn the_first_load_or_build_failing_stops_the_start_with_its_reason() {
        let fake = Fake::holding("");
        fake.set(Err("parameter /bakery/dev/baker-token is missing"));
        let builds = Arc::new(AtomicUsize::new(0));
        let error = Refreshing::start(fake.clone(), PERIOD, builder(builds.clone()))
            .await
            .err()
            .unwrap();
        assert_eq!(
            format!("{error:?}"),
            "parameter /bakery/dev/baker-token is missing"
        );

        fake.set(Ok("bad"));
        let error = Refreshing::start(fake, PERIOD, builder(builds))
            .await
            .err()
            .unwrap();
        assert_eq!(error.to_string(), "unusable value");
    }
}
