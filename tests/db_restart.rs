//! A database restart under load is an outage of seconds, not corrupted state.
//!
//! A real HTTP server with a small pool serves several clients, each looping reads and writes
//! for its own tenant, while the test shuts Postgres down (fast shutdown) for two seconds and
//! starts it again. During the outage requests fail with a retryable `UNAVAILABLE` (503 before
//! execution), never a 500 and never a hang; soon after Postgres is back every request succeeds
//! again; no response ever carries another tenant's row; and usage events recorded while the
//! database was down are all written, exactly once.
//!
//! This binary restarts its cluster, so it holds this one test only.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use common::http::{serve, token, AppOptions};
use common::{seed_tenant, shut_down_cluster, start_cluster_again, Seeded, TestDb};
use research_graph::db::{Database, PoolSettings};
use research_graph::money::Usd;
use research_graph::tenants::settings::ExecutionMode;
use research_graph::usage::meter::{Meter, Outcome, UsageEvent};
use research_graph::usage::pricing::{Cost, Tokens};
use serde_json::{json, Value};

const TENANTS: [&str; 3] = ["alpha", "bravo", "charlie"];
const CLIENTS_PER_TENANT: usize = 2;
const POOL_SIZE: usize = 4;
const WAIT_TIMEOUT: Duration = Duration::from_secs(2);
const DOWNTIME: Duration = Duration::from_secs(2);
/// Every request must succeed again within this long after Postgres accepts connections.
const RECOVERY_LIMIT: Duration = Duration::from_secs(5);
/// How long requests must keep succeeding, after the last failure, before the load stops.
const QUIET: Duration = Duration::from_millis(1500);
/// No request may take longer than this (a hang would show here).
const LATENCY_LIMIT: Duration = Duration::from_secs(4);
/// Usage events recorded per tenant before, during and after the outage.
const EVENTS: [(&str, usize); 3] = [("before", 5), ("down", 10), ("after", 5)];

const READ: &str = "{ tenant { slug } papers(first: 100) { totalCount nodes { title doi } } }";
const WRITE: &str = "mutation($i: CreatePaperInput!) { createPaper(input: $i) { title doi } }";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Kind {
    Read,
    Write,
}

/// One request, timed from the test's origin.
#[derive(Clone, Debug)]
struct Record {
    tenant: &'static str,
    kind: Kind,
    start: Duration,
    end: Duration,
    /// `None`: it succeeded. Otherwise the HTTP status and the first error's message.
    failure: Option<(u16, String)>,
}

/// What a client saw: its requests, and anything that broke the rules.
#[derive(Default)]
struct Seen {
    records: Vec<Record>,
    violations: Vec<String>,
}

/// Every tenant-marked value in `data` (titles, DOIs, slugs, at any depth) must be `tenant`'s.
fn check_markers(tenant: &str, data: &Value) -> Result<(), String> {
    match data {
        Value::Object(fields) => {
            for (name, value) in fields {
                if let Value::String(text) = value {
                    let foreign = match name.as_str() {
                        "title" => !text.starts_with(&format!("Paper of {tenant}")),
                        "doi" => !text.starts_with(&format!("10.1000/{tenant}")),
                        "slug" => text != tenant,
                        _ => false,
                    };
                    if foreign {
                        return Err(format!("{tenant} received a foreign {name}: {text}"));
                    }
                }
                check_markers(tenant, value)?;
            }
            Ok(())
        }
        Value::Array(items) => items.iter().try_for_each(|v| check_markers(tenant, v)),
        _ => Ok(()),
    }
}

/// Judges one response: `Ok(None)` for a success, `Ok(Some(message))` for an allowed failure
/// (a retryable UNAVAILABLE), `Err` for anything else.
fn judge(
    tenant: &str,
    kind: Kind,
    status: u16,
    retry_after: bool,
    body: &Value,
) -> Result<Option<String>, String> {
    check_markers(tenant, &body["data"])?;
    let errors = body["errors"].as_array().map(Vec::as_slice).unwrap_or(&[]);
    if errors.is_empty() {
        if status != 200 {
            return Err(format!("HTTP {status} without errors: {body}"));
        }
        let complete = match kind {
            Kind::Read => {
                body["data"]["tenant"]["slug"] == tenant
                    && body["data"]["papers"]["nodes"]
                        .as_array()
                        .is_some_and(|n| !n.is_empty())
            }
            Kind::Write => body["data"]["createPaper"]["title"].is_string(),
        };
        if !complete {
            return Err(format!("a success without its data: {body}"));
        }
        return Ok(None);
    }
    for error in errors {
        if error["extensions"]["code"] != "UNAVAILABLE" || error["extensions"]["retryable"] != true
        {
            return Err(format!(
                "HTTP {status}, not a retryable UNAVAILABLE: {body}"
            ));
        }
    }
    match status {
        // Refused before execution.
        503 if retry_after => {}
        503 => return Err(format!("a 503 without Retry-After: {body}")),
        // Failed during execution: GraphQL errors in a 200.
        200 => {}
        _ => return Err(format!("HTTP {status} for UNAVAILABLE: {body}")),
    }
    Ok(Some(
        errors[0]["message"].as_str().unwrap_or_default().to_owned(),
    ))
}

#[allow(clippy::too_many_arguments)]
async fn client(
    http: reqwest::Client,
    url: String,
    tenant: &'static str,
    seeded: Seeded,
    number: usize,
    origin: Instant,
    stop: Arc<AtomicBool>,
    last_failure: Arc<Mutex<Duration>>,
) -> Seen {
    let token = token(seeded.owner);
    let mut seen = Seen::default();
    let mut n = 0u32;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let kind = if n.is_multiple_of(2) {
            Kind::Write
        } else {
            Kind::Read
        };
        let body = match kind {
            Kind::Read => json!({ "query": READ }),
            Kind::Write => json!({ "query": WRITE, "variables": { "i": {
                "title": format!("Paper of {tenant} #{number}.{n}"),
                "doi": format!("10.1000/{tenant}.{number}.{n}"),
            } } }),
        };
        let start = origin.elapsed();
        let sent = http
            .post(&url)
            .bearer_auth(&token)
            .header("x-tenant-id", seeded.tenant.0.to_string())
            .json(&body)
            .send()
            .await;
        let verdict = match sent {
            Ok(response) => {
                let status = response.status().as_u16();
                let retry_after = response.headers().contains_key("retry-after");
                match response.json::<Value>().await {
                    Ok(body) => judge(tenant, kind, status, retry_after, &body)
                        .map(|failure| failure.map(|message| (status, message))),
                    Err(e) => Err(format!("HTTP {status} with an unreadable body: {e}")),
                }
            }
            Err(e) => Err(format!("the request itself failed: {e}")),
        };
        let end = origin.elapsed();
        match verdict {
            Ok(failure) => {
                if failure.is_some() {
                    let mut last = last_failure.lock().unwrap();
                    *last = (*last).max(end);
                }
                seen.records.push(Record {
                    tenant,
                    kind,
                    start,
                    end,
                    failure,
                });
            }
            Err(violation) => seen
                .violations
                .push(format!("{tenant} {kind:?} at {start:?}: {violation}")),
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    seen
}

fn usage_event(seeded: &Seeded, key: String) -> UsageEvent {
    UsageEvent {
        tenant: seeded.tenant,
        user: seeded.owner,
        job_id: None,
        stage: "extract".into(),
        agent: "extractor".into(),
        provider: "offline".into(),
        model: "offline".into(),
        tokens: Tokens {
            input: 100,
            output: 10,
            ..Tokens::default()
        },
        cost: Cost {
            base: Usd(0),
            billed: Usd(0),
        },
        execution_mode: ExecutionMode::Hosted,
        latency_ms: 5,
        outcome: Outcome::Ok,
        error_kind: None,
        idempotency_key: key,
        occurred_at: Utc::now(),
        reservation: None,
    }
}

async fn record_events(meter: &Meter, tenants: &[(&'static str, Seeded)], phase: &str) {
    let count = EVENTS.iter().find(|(p, _)| *p == phase).unwrap().1;
    for (slug, seeded) in tenants {
        for i in 0..count {
            let key = format!("restart-{slug}-{phase}-{i}");
            meter.record(usage_event(seeded, key)).await;
        }
    }
}

/// Failed and succeeded requests among `records`.
fn tally<'a>(records: impl Iterator<Item = &'a Record>) -> (usize, usize) {
    records.fold((0, 0), |(failed, ok), r| {
        if r.failure.is_some() {
            (failed + 1, ok)
        } else {
            (failed, ok + 1)
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_under_load_is_a_short_retryable_outage() {
    let t = TestDb::with_settings(PoolSettings {
        max_size: POOL_SIZE,
        wait_timeout: WAIT_TIMEOUT,
        statement_timeout: Duration::from_secs(5),
        ..PoolSettings::default()
    })
    .await;
    let mut tenants = Vec::new();
    for slug in TENANTS {
        let seeded =
            seed_tenant(&t, slug, &format!("10.1000/{slug}"), &format!("{slug}-key")).await;
        tenants.push((slug, seeded));
    }
    let base = serve(&t.db, AppOptions::multi_tenant()).await;
    let url = format!("{base}/graphql");
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let meter = Meter::start(t.db.clone(), 1024);

    let origin = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let last_failure = Arc::new(Mutex::new(Duration::ZERO));
    let mut clients = Vec::new();
    for (slug, seeded) in &tenants {
        for number in 0..CLIENTS_PER_TENANT {
            clients.push(tokio::spawn(client(
                http.clone(),
                url.clone(),
                slug,
                *seeded,
                number,
                origin,
                Arc::clone(&stop),
                Arc::clone(&last_failure),
            )));
        }
    }

    // A pool that sits idle through the restart: its connections die with the server, and the
    // pool must notice when they are next taken, not hand them out.
    let idle = Database::new(
        t.app_config(),
        &PoolSettings {
            max_size: 2,
            ..PoolSettings::default()
        },
    )
    .unwrap();
    let (a, b) = (tenants[0].1, tenants[1].1);
    let (s1, s2) = tokio::join!(
        idle.session(a.tenant, a.owner),
        idle.session(b.tenant, b.owner)
    );
    s1.unwrap().commit().await.unwrap();
    s2.unwrap().commit().await.unwrap();

    // Warm up under load, then take the database away.
    record_events(&meter, &tenants, "before").await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let down_from = origin.elapsed();
    shut_down_cluster().await;
    let down = origin.elapsed();
    record_events(&meter, &tenants, "down").await;
    tokio::time::sleep(DOWNTIME.saturating_sub(down - down_from)).await;
    let up_from = origin.elapsed();
    start_cluster_again().await;
    let up = origin.elapsed();
    record_events(&meter, &tenants, "after").await;
    let idle_started = Instant::now();
    let (s1, s2) = tokio::join!(
        idle.session(a.tenant, a.owner),
        idle.session(b.tenant, b.owner)
    );
    let idle_reconnect = idle_started.elapsed();
    for (session, seeded) in [(s1, a), (s2, b)] {
        let session = session.expect("an idle pool's first sessions after the restart work");
        assert_eq!(session.tenant(), seeded.tenant);
        session.commit().await.unwrap();
    }

    // Keep the load on until requests have succeeded for a while (or recovery took too long).
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = origin.elapsed();
        let last = *last_failure.lock().unwrap();
        let quiet = now.saturating_sub(last.max(up));
        if quiet >= QUIET || now - up >= RECOVERY_LIMIT + QUIET {
            break;
        }
    }
    stop.store(true, Ordering::Relaxed);
    let mut records = Vec::new();
    let mut violations = Vec::new();
    for c in clients {
        let seen = c.await.unwrap();
        records.extend(seen.records);
        violations.extend(seen.violations);
    }
    let unwritten = meter.shutdown(Duration::from_secs(15)).await;
    let counts = meter.counts();

    // What happened, in figures.
    let last = *last_failure.lock().unwrap();
    let recovery = last.saturating_sub(up);
    let secs = |d: Duration| format!("{:.3} s", d.as_secs_f64());
    println!(
        "timeline: shutdown requested at {}, down at {}, start requested at {}, accepting at {}",
        secs(down_from),
        secs(down),
        secs(up_from),
        secs(up)
    );
    let (failed_outage, ok_outage) = tally(
        records
            .iter()
            .filter(|r| r.end >= down_from && r.start <= up),
    );
    let (failed_after, ok_after) = tally(records.iter().filter(|r| r.start > up));
    let (failed_total, ok_total) = tally(records.iter());
    println!(
        "requests: {} in all ({failed_total} failed, {ok_total} succeeded); during the outage \
         {failed_outage} failed, {ok_outage} succeeded; after Postgres was back {failed_after} \
         failed, {ok_after} succeeded",
        records.len()
    );
    let mut messages: BTreeMap<(u16, &str), usize> = BTreeMap::new();
    for (status, message) in records.iter().filter_map(|r| r.failure.as_ref()) {
        *messages.entry((*status, message.as_str())).or_default() += 1;
    }
    for ((status, message), n) in &messages {
        println!("  {n} × HTTP {status}: {message}");
    }
    let slowest = records.iter().map(|r| r.end - r.start).max().unwrap();
    println!("slowest request: {}", secs(slowest));
    println!(
        "a pool left idle through the restart: its first two sessions opened in {}",
        secs(idle_reconnect)
    );
    let first_failure = records
        .iter()
        .filter(|r| r.failure.is_some())
        .map(|r| r.end)
        .min()
        .unwrap_or_default();
    let first_success_back = records
        .iter()
        .filter(|r| r.failure.is_none() && r.start >= up_from)
        .map(|r| r.end)
        .min()
        .unwrap_or_default();
    println!(
        "requests failed from {} to {} ({} in all); the first success after the start was \
         requested came {} later",
        secs(first_failure),
        secs(last),
        secs(last.saturating_sub(first_failure)),
        secs(first_success_back.saturating_sub(up_from))
    );
    println!(
        "recovery: every request succeeded from {} after Postgres accepted connections",
        secs(recovery)
    );
    println!(
        "usage meter: recorded {}, written {}, retried writes {}, rejected {}, unwritten {unwritten}",
        counts.recorded, counts.written, counts.retries, counts.rejected
    );

    // Nothing but successes and retryable UNAVAILABLE errors, and never another tenant's row.
    assert!(
        violations.is_empty(),
        "{} responses broke the rules, first ones: {:#?}",
        violations.len(),
        &violations[..violations.len().min(5)]
    );
    // Before the shutdown, everything worked.
    assert!(
        records
            .iter()
            .all(|r| r.failure.is_none() || r.end >= down_from),
        "requests failed before the outage"
    );
    // While Postgres was down, nothing could succeed, and requests did fail.
    let while_down: Vec<&Record> = records
        .iter()
        .filter(|r| r.start >= down && r.end <= up_from)
        .collect();
    assert!(
        !while_down.is_empty(),
        "no request ran while Postgres was down"
    );
    assert!(
        while_down.iter().all(|r| r.failure.is_some()),
        "a request succeeded while Postgres was down"
    );
    // No hang beyond the configured timeouts.
    assert!(slowest < LATENCY_LIMIT, "a request took {slowest:?}");
    // Recovery within seconds, for every tenant, reads and writes alike.
    assert!(
        recovery < RECOVERY_LIMIT,
        "requests still failed {recovery:?} after Postgres was back"
    );
    let mut recovered: HashMap<(&str, Kind), usize> = HashMap::new();
    for r in records.iter().filter(|r| r.start > last.max(up)) {
        *recovered.entry((r.tenant, r.kind)).or_default() += 1;
    }
    for slug in TENANTS {
        for kind in [Kind::Read, Kind::Write] {
            assert!(
                recovered.get(&(slug, kind)).is_some_and(|n| *n > 0),
                "{slug} had no successful {kind:?} after recovery"
            );
        }
    }

    // No usage event lost, none counted twice: read back as rg_app, through each tenant.
    let per_tenant: usize = EVENTS.iter().map(|(_, n)| n).sum();
    assert_eq!(unwritten, 0);
    assert_eq!(counts.rejected, 0);
    assert_eq!(counts.written, counts.recorded);
    assert!(
        counts.retries > 0,
        "the meter never met the outage: nothing was proven"
    );
    for (slug, seeded) in &tenants {
        let session = t.session(seeded.tenant, seeded.owner).await;
        let rows = session
            .query(
                "SELECT idempotency_key, count(*) FROM app.usage_events \
                 WHERE idempotency_key LIKE 'restart-%' GROUP BY idempotency_key",
                &[],
            )
            .await
            .unwrap();
        session.rollback().await.unwrap();
        let stored: BTreeMap<String, i64> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
        let expected: BTreeMap<String, i64> = EVENTS
            .iter()
            .flat_map(|(phase, n)| (0..*n).map(move |i| (format!("restart-{slug}-{phase}-{i}"), 1)))
            .collect();
        assert_eq!(stored.len(), per_tenant);
        assert_eq!(stored, expected, "{slug}'s usage events");
    }
}
