//! The load driver: closed-loop GraphQL load over persistent HTTP/1.1 connections, with exact
//! latency percentiles per query and the peak memory of the server processes (see the
//! "Load driver" section of bench/README.md).

pub mod driver;
pub mod mix;
pub mod query;
pub mod rss;
pub mod stats;
pub mod token;
pub mod vars;

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use clap::Parser;
use hyper::header::HeaderValue;
use serde_json::json;

use crate::ids;
use driver::{Endpoint, Plan, TenantHeaders};
use mix::Mix;
use rss::{RssReport, Sampler};
use stats::Latencies;
use token::{Claims, Signer};
use vars::{last_30_days, Prepared, Target, Universe};

/// The RSS sampling interval.
const RSS_INTERVAL: Duration = Duration::from_millis(100);

/// The command line of `bench-load`.
#[derive(Clone, Debug, Parser)]
#[command(
    name = "bench-load",
    about = "Closed-loop GraphQL load against research-graph or PostGraphile"
)]
pub struct Args {
    /// The GraphQL endpoint, http://HOST:PORT/PATH.
    #[arg(long)]
    pub url: String,
    /// Which server: selects the query files (QUERIES/<target>/<q>.graphql) and the id form.
    #[arg(long, value_enum)]
    pub target: Target,
    /// Queries and weights: `q1=1,q3=2`; a single name runs only that query.
    #[arg(long)]
    pub mix: Mix,
    /// Concurrent workers, each with one keep-alive connection.
    #[arg(long, default_value_t = 32)]
    pub connections: usize,
    /// Seconds of load before the measured window (discarded).
    #[arg(long, default_value_t = 5.0)]
    pub warmup_secs: f64,
    /// Seconds of the measured window.
    #[arg(long, default_value_t = 20.0)]
    pub secs: f64,
    /// Tenants in the data (0..T-1); each request picks one uniformly.
    #[arg(long)]
    pub tenants: u64,
    /// Graph nodes per tenant in the data.
    #[arg(long)]
    pub nodes_per_tenant: u64,
    /// The servers' HS256 secret.
    #[arg(long, env = "JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: String,
    /// The `aud` claim of the tokens.
    #[arg(long, default_value = "authenticated")]
    pub audience: String,
    /// Server processes whose summed RSS to sample (PID[,PID…]; repeatable).
    #[arg(long = "pid", value_delimiter = ',')]
    pub pids: Vec<u32>,
    /// Tokio worker threads of the driver.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Seed of the random choices (worker i uses stream i of it).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Appends one JSON object per query (a line each) to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// A label copied into the JSON objects.
    #[arg(long, default_value = "")]
    pub label: String,
    /// Exit 0 even when requests failed in the measured window.
    #[arg(long)]
    pub allow_errors: bool,
    /// Seconds a request (or a connection attempt) may take before it counts as failed.
    #[arg(long, default_value_t = 30.0)]
    pub timeout_secs: f64,
    /// The directory of query files (default: the queries/ directory of the bench crate).
    #[arg(long)]
    pub queries: Option<PathBuf>,
}

impl Args {
    fn queries_dir(&self) -> PathBuf {
        self.queries
            .clone()
            .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/queries")))
    }

    fn check(&self) -> Result<()> {
        ensure!(self.connections >= 1, "--connections must be at least 1");
        ensure!(self.threads >= 1, "--threads must be at least 1");
        ensure!(self.tenants >= 1, "--tenants must be at least 1");
        ensure!(
            self.nodes_per_tenant >= 1,
            "--nodes-per-tenant must be at least 1"
        );
        ensure!(
            self.secs.is_finite() && self.secs > 0.0,
            "--secs must be positive"
        );
        ensure!(
            self.warmup_secs.is_finite() && self.warmup_secs >= 0.0,
            "--warmup-secs must not be negative"
        );
        ensure!(
            self.timeout_secs.is_finite() && self.timeout_secs > 0.0,
            "--timeout-secs must be positive"
        );
        Ok(())
    }
}

/// One query's results.
#[derive(Clone, Debug, PartialEq)]
pub struct QueryReport {
    /// The query's name in the mix.
    pub name: String,
    /// Requests completed in the measured window, failed ones included.
    pub requests: u64,
    /// Of which failed.
    pub errors: u64,
    /// Of the errors, answers with a null root field (not found).
    pub null_roots: u64,
    /// Successful requests per second of the window.
    pub rps: f64,
    /// Latencies of the successful requests; `None` when there were none.
    pub latencies: Option<Latencies>,
}

impl QueryReport {
    /// Successful requests.
    pub fn ok(&self) -> u64 {
        self.requests - self.errors
    }
}

/// The results of a run.
#[derive(Clone, Debug)]
pub struct Report {
    /// When the run started (RFC 3339, UTC).
    pub started_at: String,
    /// Per query, in mix order.
    pub queries: Vec<QueryReport>,
    /// Requests completed during the warm-up, and of those failed.
    pub warmup_requests: u64,
    pub warmup_errors: u64,
    /// The server processes' memory, when `--pid` was given.
    pub rss: Option<RssReport>,
    /// The first few failures, described.
    pub error_samples: Vec<String>,
}

impl Report {
    /// Failed requests in the measured window.
    pub fn errors(&self) -> u64 {
        self.queries.iter().map(|q| q.errors).sum()
    }
}

fn load_queries(args: &Args) -> Result<Vec<Prepared>> {
    let dir = args.queries_dir().join(args.target.name());
    args.mix
        .entries()
        .iter()
        .map(|(name, _)| {
            let path = dir.join(format!("{name}.graphql"));
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("read query {name} ({})", path.display()))?;
            let operation = query::operation(&text)
                .with_context(|| format!("query {name} ({})", path.display()))?;
            Prepared::new(name, &text, &operation)
        })
        .collect()
}

fn tenant_headers(args: &Args) -> Result<Vec<TenantHeaders>> {
    let signer = Signer::new(&args.jwt_secret)?;
    let now = chrono::Utc::now().timestamp();
    // Valid through the run with an hour to spare.
    let valid = (args.warmup_secs + args.secs).ceil() as i64 + 3600;
    (0..args.tenants)
        .map(|t| {
            let token = signer.sign(&Claims::for_tenant(t, &args.audience, now, valid))?;
            Ok(TenantHeaders {
                authorization: HeaderValue::from_str(&format!("Bearer {token}"))?,
                tenant_id: HeaderValue::from_str(&ids::tenant(t).to_string())?,
            })
        })
        .collect()
}

/// Runs the load that `args` describe, on the current Tokio runtime.
pub async fn run(args: &Args) -> Result<Report> {
    args.check()?;
    let endpoint = Endpoint::parse(&args.url)?;
    let queries = load_queries(args)?;
    rss::check_pids(&args.pids)?;
    let tenants = tenant_headers(args)?;
    let started = chrono::Utc::now();
    let (from, to) = last_30_days(started.date_naive());
    let plan = Plan {
        endpoint,
        tenants,
        universe: Universe {
            target: args.target,
            tenants: args.tenants,
            nodes_per_tenant: args.nodes_per_tenant,
            from,
            to,
        },
        queries,
        mix: args.mix.clone(),
        connections: args.connections,
        warmup: Duration::from_secs_f64(args.warmup_secs),
        measure: Duration::from_secs_f64(args.secs),
        timeout: Duration::from_secs_f64(args.timeout_secs),
        seed: args.seed,
    };
    let mut sampler = None;
    let mut sampler_error = None;
    let outcome = driver::run(plan, || {
        if !args.pids.is_empty() {
            match Sampler::start(args.pids.clone(), RSS_INTERVAL) {
                Ok(s) => sampler = Some(s),
                Err(e) => sampler_error = Some(e),
            }
        }
    })
    .await;
    let rss = sampler.map(Sampler::stop);
    if let Some(e) = sampler_error {
        return Err(e);
    }
    let outcome = outcome?;
    let queries = args
        .mix
        .entries()
        .iter()
        .zip(outcome.measured)
        .map(|((name, _), mut counts)| QueryReport {
            name: name.clone(),
            requests: counts.requests,
            errors: counts.errors,
            null_roots: counts.null_roots,
            rps: (counts.requests - counts.errors) as f64 / args.secs,
            latencies: Latencies::of(&mut counts.latencies_us),
        })
        .collect();
    Ok(Report {
        started_at: started.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        queries,
        warmup_requests: outcome.warmup_requests,
        warmup_errors: outcome.warmup_errors,
        rss,
        error_samples: outcome.samples,
    })
}

fn mib(kib: u64) -> f64 {
    (kib as f64 / 1024.0 * 10.0).round() / 10.0
}

/// The readable table of a run.
pub fn table(args: &Args, report: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} {}  connections {}  warm-up {} s  measured {} s  tenants {}  nodes/tenant {}  mix {}",
        args.target.name(),
        args.url,
        args.connections,
        args.warmup_secs,
        args.secs,
        args.tenants,
        args.nodes_per_tenant,
        args.mix
    );
    let _ = writeln!(
        out,
        "{:<8} {:>9} {:>7} {:>10} {:>9} {:>9} {:>9} {:>9}",
        "query", "requests", "errors", "req/s", "p50 ms", "p95 ms", "p99 ms", "max ms"
    );
    let ms = |l: &Option<Latencies>, f: fn(&Latencies) -> f64| match l {
        Some(l) => format!("{:.2}", f(l)),
        None => "-".into(),
    };
    for q in &report.queries {
        let _ = writeln!(
            out,
            "{:<8} {:>9} {:>7} {:>10.1} {:>9} {:>9} {:>9} {:>9}",
            q.name,
            q.requests,
            q.errors,
            q.rps,
            ms(&q.latencies, |l| l.p50_ms),
            ms(&q.latencies, |l| l.p95_ms),
            ms(&q.latencies, |l| l.p99_ms),
            ms(&q.latencies, |l| l.max_ms),
        );
    }
    if report.queries.len() > 1 {
        let requests: u64 = report.queries.iter().map(|q| q.requests).sum();
        let rps: f64 = report.queries.iter().map(|q| q.rps).sum();
        let _ = writeln!(
            out,
            "{:<8} {:>9} {:>7} {:>10.1}",
            "all",
            requests,
            report.errors(),
            rps
        );
    }
    if let Some(rss) = &report.rss {
        let _ = writeln!(
            out,
            "server memory (pids {:?}): peak summed RSS {:.1} MiB over {} samples; summed VmHWM {:.1} MiB",
            args.pids,
            mib(rss.peak_sum_kib),
            rss.samples,
            mib(rss.hwm_sum_kib)
        );
        if !rss.gone.is_empty() {
            let _ = writeln!(out, "processes gone by the end: {:?}", rss.gone);
        }
    }
    let _ = writeln!(
        out,
        "warm-up: {} requests, {} errors",
        report.warmup_requests, report.warmup_errors
    );
    out
}

/// The JSON objects of a run, one per query.
pub fn json_lines(args: &Args, report: &Report) -> Vec<serde_json::Value> {
    report
        .queries
        .iter()
        .map(|q| {
            let l = q.latencies.as_ref();
            json!({
                "label": args.label,
                "target": args.target.name(),
                "query": q.name,
                "mix": args.mix.to_string(),
                "connections": args.connections,
                "threads": args.threads,
                "warmup_secs": args.warmup_secs,
                "secs": args.secs,
                "tenants": args.tenants,
                "nodes_per_tenant": args.nodes_per_tenant,
                "seed": args.seed,
                "started_at": report.started_at,
                "requests": q.requests,
                "errors": q.errors,
                "null_roots": q.null_roots,
                "rps": (q.rps * 10.0).round() / 10.0,
                "p50_ms": l.map(|l| l.p50_ms),
                "p95_ms": l.map(|l| l.p95_ms),
                "p99_ms": l.map(|l| l.p99_ms),
                "max_ms": l.map(|l| l.max_ms),
                "peak_rss_mib": report.rss.as_ref().map(|r| mib(r.peak_sum_kib)),
                "vmhwm_mib": report.rss.as_ref().map(|r| mib(r.hwm_sum_kib)),
                "warmup_requests": report.warmup_requests,
                "warmup_errors": report.warmup_errors,
            })
        })
        .collect()
}

/// Prints the table and the error samples, appends the JSON lines, and fails when requests
/// failed in the measured window (unless `--allow-errors`).
pub fn finish(args: &Args, report: &Report) -> Result<()> {
    print!("{}", table(args, report));
    if !report.error_samples.is_empty() {
        eprintln!("first errors:");
        for sample in &report.error_samples {
            eprintln!("  {sample}");
        }
    }
    if let Some(path) = &args.json {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("open {}", path.display()))?;
        let mut text = String::new();
        for line in json_lines(args, report) {
            text.push_str(&line.to_string());
            text.push('\n');
        }
        file.write_all(text.as_bytes())
            .with_context(|| format!("append to {}", path.display()))?;
    }
    let errors = report.errors();
    if errors > 0 && !args.allow_errors {
        bail!("{errors} requests failed in the measured window (--allow-errors to accept)");
    }
    Ok(())
}

/// `bench-load`.
pub fn main() -> Result<()> {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .enable_all()
        .build()?;
    let report = runtime.block_on(run(&args))?;
    finish(&args, &report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line() {
        let args = Args::try_parse_from([
            "bench-load",
            "--url",
            "http://127.0.0.1:1/graphql",
            "--target",
            "postgraphile",
            "--mix",
            "q1=1,q3=2",
            "--tenants",
            "10000",
            "--nodes-per-tenant",
            "500",
            "--jwt-secret",
            "s",
            "--pid",
            "10,11",
            "--pid",
            "12",
        ])
        .unwrap();
        assert_eq!(args.target, Target::Postgraphile);
        assert_eq!(args.pids, [10, 11, 12]);
        assert_eq!(args.connections, 32);
        assert_eq!((args.warmup_secs, args.secs), (5.0, 20.0));
        assert_eq!(args.threads, 1);
        assert_eq!(args.mix.entries().len(), 2);
        assert!(args.check().is_ok());
        assert!(Args::try_parse_from(["bench-load", "--url", "x", "--target", "pg"]).is_err());
    }

    #[test]
    fn the_shipped_rg_queries_are_well_formed() {
        let mix: Mix = "q1,q2,q3,q4,q5,q6".parse().unwrap();
        let args = Args::try_parse_from([
            "bench-load",
            "--url",
            "http://127.0.0.1:1/graphql",
            "--target",
            "rg",
            "--mix",
            &mix.to_string(),
            "--tenants",
            "1",
            "--nodes-per-tenant",
            "1",
            "--jwt-secret",
            "s",
        ])
        .unwrap();
        let queries = load_queries(&args).unwrap();
        let declared: Vec<Vec<&str>> = queries
            .iter()
            .map(|q| q.variables.iter().map(|(n, _)| n.as_str()).collect())
            .collect();
        assert_eq!(
            declared,
            [
                vec![],
                vec!["hubId"],
                vec!["nodeId"],
                vec!["from", "to"],
                vec!["nodeId"],
                vec!["term"],
            ]
        );
    }

    #[test]
    fn ten_thousand_tenants_get_tokens() {
        let args = Args::try_parse_from([
            "bench-load",
            "--url",
            "http://127.0.0.1:1/graphql",
            "--target",
            "rg",
            "--mix",
            "q1",
            "--tenants",
            "10000",
            "--nodes-per-tenant",
            "1",
            "--jwt-secret",
            "s",
        ])
        .unwrap();
        let headers = tenant_headers(&args).unwrap();
        assert_eq!(headers.len(), 10_000);
        assert_eq!(headers[9_999].tenant_id, ids::tenant(9_999).to_string());
        assert!(headers[0]
            .authorization
            .to_str()
            .unwrap()
            .starts_with("Bearer ey"));
    }
}
