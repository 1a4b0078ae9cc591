//! `heph-bench`: the performance budgets of DESIGN §9, each measured against
//! a baseline taken in the same run.
//!
//! Every benchmark ends with one line
//! `bench NAME value=… baseline=… ratio=… budget=… ok|FAIL`; the process
//! exits non-zero when any budget is missed, so a script can tell.

mod apply;
mod auth;
mod issuer;
mod report;
mod rpc;
mod sync;
mod workload;

use std::process::ExitCode;

const USAGE: &str = "usage: heph-bench <apply|rpc|sync|auth|issuer|all> [--ops N] [--runs N]

benchmarks:
  apply   DESIGN §9 rows 1-2: fresh apply of 100,000 ops vs a bare SQLite insert,
          and re-applying them (all duplicates) vs the fresh apply
  rpc     node.create over hephd's unix socket vs a direct core apply of one op
          per transaction; and the latency of one create (p50, p99)
  sync    hub and spokes as real hephd processes over loopback: incremental round
          (1,000,000 vs 1,000 ops), bootstrap of 1,000,000 ops vs a local apply,
          propagation A->B (p50, p99), hub RSS with 1,000 idle long polls, idle spoke RSS
          (needs the release hephd beside heph-bench)
  auth    hub push+pull requests/s with bearer verification (RS256, JWKS from an
          in-process test provider, member lookup) vs the same routes without
  issuer  the built-in issuer's refresh latency (p50) while device authorization
          is flooded from many addresses vs with no flood
  all     every benchmark above";

/// Options shared by the benchmarks.
#[derive(Debug, Clone)]
pub struct Options {
    /// Ops in the workload.
    pub ops: usize,
    /// Repetitions per measurement; the median is reported.
    pub runs: usize,
}

/// The runtime every async benchmark runs on: two workers, like the
/// machines the budgets were set on.
fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
}

fn parse_args(args: &[String]) -> Result<(String, Options), String> {
    let mut opts = Options {
        ops: 100_000,
        runs: 3,
    };
    let mut name = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut number = |flag: &str| -> Result<usize, String> {
            it.next()
                .and_then(|v| v.parse().ok())
                .filter(|&n: &usize| n > 0)
                .ok_or_else(|| format!("{flag} needs a positive number"))
        };
        match a.as_str() {
            "--ops" => opts.ops = number("--ops")?,
            "--runs" => opts.runs = number("--runs")?,
            "-h" | "--help" => return Err(String::new()),
            other if name.is_none() && !other.starts_with('-') => name = Some(other.to_owned()),
            other => return Err(format!("unexpected argument {other:?}")),
        }
    }
    Ok((name.unwrap_or_else(|| "all".into()), opts))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (name, opts) = match parse_args(&args) {
        Ok(v) => v,
        Err(e) if e.is_empty() => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("heph-bench: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let results = match name.as_str() {
        "apply" => apply::run(&opts),
        "rpc" => rpc::run(&opts),
        "sync" => sync::run(&opts),
        "auth" => auth::run(&opts),
        "issuer" => issuer::run(&opts),
        "all" => apply::run(&opts).and_then(|mut lines| {
            lines.extend(rpc::run(&opts)?);
            lines.extend(sync::run(&opts)?);
            lines.extend(auth::run(&opts)?);
            lines.extend(issuer::run(&opts)?);
            Ok(lines)
        }),
        other => {
            eprintln!("heph-bench: unknown benchmark {other:?}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match results {
        Ok(lines) => {
            let failed = lines.iter().filter(|l| !l.ok()).count();
            for line in &lines {
                println!("{line}");
            }
            if failed == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("heph-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}
