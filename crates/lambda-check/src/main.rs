//! `lambda-check`: sizes, cold starts and peak memory of the seven
//! functions' `bootstrap` binaries, run by `scripts/lambda-check.sh` after
//! `cargo lambda build`.
//!
//! ```text
//! lambda-check --lambda-dir DIR [--zip LABEL=DIR]... [--runs N] [--json FILE]
//!              [--function NAME]... [--meta KEY=VALUE]...
//! ```
//!
//! - `--lambda-dir`: `<name>/bootstrap` binaries this machine can run.
//! - `--zip`: `<name>/bootstrap.zip` packages whose sizes are reported, one
//!   column per label (e.g. `arm64=target/lambda-check/arm64`; default: the
//!   lambda dir, labelled with this machine's architecture).
//! - `--runs`: cold starts per function (default 5); medians are reported.
//! - `--json`: where to write the results (default: none).
//! - `--meta`: facts about the build to keep in the JSON (`build` object).
//!
//! Each run starts moto once with the template's resources, then starts
//! every function's binary afresh under a local Lambda Runtime API with the
//! template's environment, hands it its everyday fixture event, and records
//! spawn → first `next`, spawn → first response, and `VmHWM` after it.
//! Functions take turns run by run, so a slow moment of the machine spreads
//! over all of them. The markdown table goes to standard output.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use lambda_check::{Bootstrap, ColdStart, Function, Stack, fixtures};

struct Args {
    lambda_dir: PathBuf,
    zips: Vec<(String, PathBuf)>,
    runs: usize,
    json: Option<PathBuf>,
    functions: Vec<Function>,
    meta: BTreeMap<String, String>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = std::env::args().skip(1);
    let mut lambda_dir = None;
    let mut zips = Vec::new();
    let mut runs = 5;
    let mut json = None;
    let mut functions = Vec::new();
    let mut meta = BTreeMap::new();
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--lambda-dir" => lambda_dir = Some(PathBuf::from(value()?)),
            "--zip" => {
                let pair = value()?;
                let (label, dir) = pair
                    .split_once('=')
                    .ok_or(format!("--zip {pair}: expected LABEL=DIR"))?;
                zips.push((label.to_owned(), PathBuf::from(dir)));
            }
            "--runs" => {
                runs = value()?
                    .parse()
                    .map_err(|e| format!("--runs: {e}"))
                    .and_then(|n: usize| {
                        if n == 0 {
                            Err("--runs: at least 1".into())
                        } else {
                            Ok(n)
                        }
                    })?
            }
            "--json" => json = Some(PathBuf::from(value()?)),
            "--function" => {
                let name = value()?;
                functions.push(Function::from_name(&name).ok_or(format!("no function {name}"))?);
            }
            "--meta" => {
                let pair = value()?;
                let (key, value) = pair
                    .split_once('=')
                    .ok_or(format!("--meta {pair}: expected KEY=VALUE"))?;
                meta.insert(key.to_owned(), value.to_owned());
            }
            "-h" | "--help" => {
                return Err(
                    "usage: lambda-check --lambda-dir DIR [--zip LABEL=DIR]... [--runs N] \
                            [--json FILE] [--function NAME]... [--meta KEY=VALUE]..."
                        .into(),
                );
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if functions.is_empty() {
        functions = Function::ALL.to_vec();
    }
    let lambda_dir: PathBuf = lambda_dir.ok_or("--lambda-dir is required")?;
    if zips.is_empty() {
        zips.push((std::env::consts::ARCH.to_owned(), lambda_dir.clone()));
    }
    Ok(Args {
        lambda_dir,
        zips,
        runs,
        json,
        functions,
        meta,
    })
}

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(why) => {
            eprintln!("lambda-check: {why}");
            ExitCode::FAILURE
        }
    }
}

/// The median of `values` (the mean of the middle two for an even count).
fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    }
}

/// Milliseconds, to the microsecond.
fn ms(duration: Duration) -> f64 {
    (duration.as_secs_f64() * 1e6).round() / 1e3
}

fn size(path: &std::path::Path) -> Option<u64> {
    std::fs::metadata(path).ok().map(|m| m.len())
}

fn mb(bytes: Option<u64>) -> String {
    bytes.map_or("–".into(), |b| format!("{:.2} MB", b as f64 / 1e6))
}

async fn run() -> Result<(), String> {
    let args = parse_args()?;
    for function in &args.functions {
        let binary = args.lambda_dir.join(function.name()).join("bootstrap");
        if !binary.is_file() {
            return Err(format!("{} is missing", binary.display()));
        }
    }

    eprintln!("starting moto with the template's resources");
    let stack = Stack::start().await?;
    let mut samples: BTreeMap<&str, Vec<ColdStart>> = BTreeMap::new();
    for run in 1..=args.runs {
        for function in &args.functions {
            let binary = args.lambda_dir.join(function.name()).join("bootstrap");
            let env = stack.env(*function);
            let mut bootstrap = Bootstrap::start(&binary, function.name(), &env).await?;
            let result = bootstrap
                .cold_start(&fixtures::text(function.fixture()))
                .await;
            let output = bootstrap.output();
            bootstrap.stop().await;
            let cold = result?;
            let answer = cold.outcome.response()?;
            function
                .succeeded(answer)
                .map_err(|why| format!("{why}\nthe function printed:\n{output}"))?;
            eprintln!(
                "run {run}/{}: {:<16} next {:>7.1} ms  response {:>7.1} ms  VmHWM {:>6} KiB",
                args.runs,
                function.name(),
                ms(cold.to_first_next),
                ms(cold.to_first_response),
                cold.peak_rss_kib
            );
            samples.entry(function.name()).or_default().push(cold);
        }
    }

    let mut rows = Vec::new();
    let mut table = String::from("| function |");
    for (label, _) in &args.zips {
        table.push_str(&format!(" bootstrap.zip ({label}) |"));
    }
    table.push_str(&format!(
        " bootstrap ({arch}, unzipped) | cold start: spawn → first `next` | spawn → first response | peak RSS (VmHWM) |\n|---|",
        arch = std::env::consts::ARCH
    ));
    table.push_str(&"---:|".repeat(args.zips.len() + 4));
    table.push('\n');
    for function in &args.functions {
        let cold = &samples[function.name()];
        let to_next: Vec<f64> = cold.iter().map(|c| ms(c.to_first_next)).collect();
        let to_response: Vec<f64> = cold.iter().map(|c| ms(c.to_first_response)).collect();
        let rss: Vec<f64> = cold.iter().map(|c| c.peak_rss_kib as f64).collect();
        let zips: BTreeMap<&str, Option<u64>> = args
            .zips
            .iter()
            .map(|(label, dir)| {
                let zip = size(&dir.join(function.name()).join("bootstrap.zip"));
                (label.as_str(), zip)
            })
            .collect();
        let binary = size(&args.lambda_dir.join(function.name()).join("bootstrap"));
        table.push_str(&format!("| `{}` |", function.name()));
        for (label, _) in &args.zips {
            table.push_str(&format!(" {} |", mb(zips[label.as_str()])));
        }
        table.push_str(&format!(
            " {} | {:.1} ms | {:.1} ms | {:.1} MiB |\n",
            mb(binary),
            median(&to_next),
            median(&to_response),
            median(&rss) / 1024.0
        ));
        rows.push(serde_json::json!({
            "function": function.name(),
            "zipBytes": zips,
            "bootstrapBytes": binary,
            "coldStartToFirstNextMs": median(&to_next),
            "coldStartToFirstResponseMs": median(&to_response),
            "peakRssKib": median(&rss),
            "samples": {
                "toFirstNextMs": to_next,
                "toFirstResponseMs": to_response,
                "peakRssKib": rss,
            },
        }));
    }
    print!("{table}");

    if let Some(path) = &args.json {
        let document = serde_json::json!({
            "generatedAt": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "runsPerFunction": args.runs,
            "statistic": "median",
            "host": {
                "arch": std::env::consts::ARCH,
                "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            },
            "zipDirs": args.zips.iter().map(|(l, d)| (l.clone(), d.clone())).collect::<BTreeMap<_, _>>(),
            "lambdaDir": args.lambda_dir,
            "build": args.meta,
            "functions": rows,
        });
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
        }
        let text = serde_json::to_string_pretty(&document).map_err(|e| e.to_string())?;
        std::fs::write(path, text + "\n").map_err(|e| format!("{}: {e}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}
