//! A function's `bootstrap` running under the local Runtime API.
//!
//! The process gets the environment Lambda gives a function (and nothing
//! of the caller's: no `HOME`, no profile, no proxy), plus the variables the
//! caller passes: the template's, and the AWS endpoint and credentials.
//! Its standard output and error are kept, to show when something fails.

use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::{Child, Command};

use crate::runtime_api::{Outcome, RuntimeApi};

/// How long a function may take from start to its first answer.
pub const FIRST_ANSWER_WITHIN: Duration = Duration::from_secs(60);

/// A running `bootstrap` and its Runtime API. Killed when dropped.
pub struct Bootstrap {
    api: RuntimeApi,
    child: Child,
    spawned_at: Instant,
    output: Arc<Mutex<String>>,
}

/// What one cold start took.
#[derive(Debug, Clone)]
pub struct ColdStart {
    /// From spawning the process to its first `GET .../invocation/next`:
    /// the init phase (reading the environment, building the AWS clients).
    pub to_first_next: Duration,
    /// From spawning the process to its first answer being posted: init
    /// plus the first invocation, against the emulated AWS services.
    pub to_first_response: Duration,
    /// The process's peak resident memory (`VmHWM`) after that answer, KiB.
    pub peak_rss_kib: u64,
    /// What the function answered.
    pub outcome: Outcome,
}

impl Bootstrap {
    /// Starts `binary` as function `function_name` with `env` on top of the
    /// variables Lambda itself sets.
    pub async fn start(
        binary: &Path,
        function_name: &str,
        env: &[(String, String)],
    ) -> Result<Bootstrap, String> {
        // Absolute, since the process starts in the binary's folder (as
        // Lambda starts it in /var/task).
        let binary =
            &std::fs::canonicalize(binary).map_err(|e| format!("{}: {e}", binary.display()))?;
        let api = RuntimeApi::start(function_name)
            .await
            .map_err(|e| format!("starting the Runtime API: {e}"))?;
        let mut command = Command::new(binary);
        command
            .env_clear()
            .envs(lambda_env(function_name, &api.address()))
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .current_dir(binary.parent().unwrap_or(Path::new(".")))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let spawned_at = Instant::now();
        let mut child = command
            .spawn()
            .map_err(|e| format!("starting {}: {e}", binary.display()))?;
        let output = Arc::new(Mutex::new(String::new()));
        if let Some(stdout) = child.stdout.take() {
            keep(stdout, output.clone());
        }
        if let Some(stderr) = child.stderr.take() {
            keep(stderr, output.clone());
        }
        Ok(Bootstrap {
            api,
            child,
            spawned_at,
            output,
        })
    }

    /// Invokes the function with `payload` and waits for its answer.
    pub async fn invoke(&mut self, payload: &str) -> Result<(Outcome, Instant), String> {
        let request_id = self.api.invoke(payload);
        tokio::select! {
            outcome = self.api.outcome(&request_id, FIRST_ANSWER_WITHIN) => {
                outcome.ok_or_else(|| format!(
                    "no answer within {FIRST_ANSWER_WITHIN:?}; the function printed:\n{}",
                    self.output()
                ))
            }
            status = self.child.wait() => {
                // Give the readers a moment to collect the last lines.
                tokio::time::sleep(Duration::from_millis(100)).await;
                Err(format!(
                    "the function exited ({}) before answering; it printed:\n{}",
                    status.map(|s| s.to_string()).unwrap_or_else(|e| e.to_string()),
                    self.output()
                ))
            }
        }
    }

    /// Invokes once and measures the cold start (the first invocation of a
    /// fresh process).
    pub async fn cold_start(&mut self, payload: &str) -> Result<ColdStart, String> {
        let (outcome, answered_at) = self.invoke(payload).await?;
        let first_next = self
            .api
            .first_next_at()
            .ok_or("answered without asking for an event")?;
        let peak_rss_kib = self.peak_rss_kib()?;
        Ok(ColdStart {
            to_first_next: first_next.saturating_duration_since(self.spawned_at),
            to_first_response: answered_at.saturating_duration_since(self.spawned_at),
            peak_rss_kib,
            outcome,
        })
    }

    /// Whether the function has asked for an event yet (its first
    /// `GET .../invocation/next`): a function that stops at cold start
    /// must not have.
    pub fn asked_for_an_event(&self) -> bool {
        self.api.first_next_at().is_some()
    }

    /// The process's peak resident set size so far (`VmHWM` in
    /// `/proc/<pid>/status`), KiB.
    pub fn peak_rss_kib(&self) -> Result<u64, String> {
        let pid = self.child.id().ok_or("the function has exited")?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .map_err(|e| format!("reading /proc/{pid}/status: {e}"))?;
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmHWM:"))
            .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
            .ok_or_else(|| "no VmHWM in /proc/<pid>/status".to_string())
    }

    /// Everything the function printed so far.
    pub fn output(&self) -> String {
        self.output
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Stops the process (Lambda would freeze it, then shut it down).
    pub async fn stop(mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }
}

/// The variables Lambda sets for every function, for a function with
/// 128 MB (the template's `MemorySize`).
fn lambda_env(function_name: &str, runtime_api: &str) -> Vec<(String, String)> {
    [
        ("AWS_LAMBDA_RUNTIME_API", runtime_api),
        ("AWS_LAMBDA_FUNCTION_NAME", function_name),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128"),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST"),
        ("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand"),
        (
            "AWS_LAMBDA_LOG_GROUP_NAME",
            &format!("/aws/lambda/{function_name}"),
        ),
        (
            "AWS_LAMBDA_LOG_STREAM_NAME",
            "2026/11/24/[$LATEST]0123456789abcdef0123456789abcdef",
        ),
        ("AWS_EXECUTION_ENV", "AWS_Lambda_provided.al2023"),
        ("LAMBDA_TASK_ROOT", "/var/task"),
        ("LAMBDA_RUNTIME_DIR", "/var/runtime"),
        ("_HANDLER", "bootstrap"),
        ("TZ", ":UTC"),
        ("LANG", "en_US.UTF-8"),
        ("PATH", "/usr/local/bin:/usr/bin:/bin"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

fn keep(mut stream: impl AsyncRead + Unpin + Send + 'static, into: Arc<Mutex<String>>) {
    tokio::spawn(async move {
        let mut buffer = [0u8; 4096];
        while let Ok(n) = stream.read(&mut buffer).await {
            if n == 0 {
                break;
            }
            into.lock()
                .unwrap_or_else(|p| p.into_inner())
                .push_str(&String::from_utf8_lossy(&buffer[..n]));
        }
    });
}
