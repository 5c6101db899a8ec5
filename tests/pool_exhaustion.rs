//! More concurrent requests than connections: the ones that get a connection succeed, the
//! others wait up to the pool's wait timeout and then get a clear, retryable "busy" error
//! (503 UNAVAILABLE), `/healthz` keeps answering at once, and afterwards everything works.
//!
//! The requests are slow the way real ones get slow: they wait on a row lock that a
//! transaction of the test holds (on a connection of the same pool) until the test commits.
//! Kept in its own binary so that no other test shares the cluster while it is loaded.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::http::{serve, token, AppOptions};
use common::{seed_tenant, TestDb};
use research_graph::db::PoolSettings;
use serde_json::{json, Value};

const POOL_SIZE: usize = 3;
/// Connections the test itself holds: one transaction holding the row lock.
const HELD: usize = 1;
const REQUESTS: usize = 20;
const WAIT_TIMEOUT: Duration = Duration::from_secs(1);
/// `/healthz` must answer within this long, whatever the pool is doing.
const HEALTHZ_LIMIT: Duration = Duration::from_millis(250);

const UPDATE: &str =
    "mutation($id: ID!, $title: String!) { updatePaper(id: $id, input: { title: $title }) { title } }";
const READ: &str = "{ papers(first: 10) { nodes { title } } }";

struct Reply {
    status: u16,
    retry_after: bool,
    body: Value,
    latency: Duration,
}

async fn post(http: &reqwest::Client, url: &str, token: &str, tenant: &str, body: Value) -> Reply {
    let started = Instant::now();
    let response = http
        .post(url)
        .bearer_auth(token)
        .header("x-tenant-id", tenant)
        .json(&body)
        .send()
        .await
        .expect("the server answers");
    let status = response.status().as_u16();
    let retry_after = response.headers().contains_key("retry-after");
    let body = response.json().await.expect("a JSON body");
    Reply {
        status,
        retry_after,
        body,
        latency: started.elapsed(),
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exhausted_pool_answers_busy_after_the_wait_timeout() {
    let t = TestDb::with_settings(PoolSettings {
        max_size: POOL_SIZE,
        wait_timeout: WAIT_TIMEOUT,
        statement_timeout: Duration::from_secs(20),
        ..PoolSettings::default()
    })
    .await;
    let a = seed_tenant(&t, "alpha", "10.1000/alpha", "alpha-key").await;
    let base = serve(&t.db, AppOptions::multi_tenant()).await;
    let url = format!("{base}/graphql");
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let token = token(a.owner);
    let tenant = a.tenant.0.to_string();

    // A transaction of the test locks the paper and holds one connection.
    let holder = t.session(a.tenant, a.owner).await;
    holder
        .execute(
            "UPDATE app.papers SET title = title WHERE id = $1",
            &[&a.paper],
        )
        .await
        .unwrap();

    // /healthz, probed throughout.
    let probing = Arc::new(AtomicBool::new(true));
    let probe = {
        let (http, base, probing) = (http.clone(), base.clone(), Arc::clone(&probing));
        tokio::spawn(async move {
            let mut latencies = Vec::new();
            while probing.load(Ordering::Relaxed) {
                let started = Instant::now();
                let response = http.get(format!("{base}/healthz")).send().await.unwrap();
                assert_eq!(response.status().as_u16(), 200);
                assert_eq!(response.text().await.unwrap(), "ok");
                latencies.push(started.elapsed());
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            latencies
        })
    };

    // Twenty concurrent updates of the locked paper: the ones that get a connection wait on the
    // lock while holding it, the others wait for a connection.
    let started = Instant::now();
    let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel();
    let mut requests = Vec::new();
    for n in 0..REQUESTS {
        let (http, url, token, tenant, done) = (
            http.clone(),
            url.clone(),
            token.clone(),
            tenant.clone(),
            done_tx.clone(),
        );
        let id = a.paper;
        requests.push(tokio::spawn(async move {
            let body = json!({ "query": UPDATE, "variables": {
                "id": id, "title": format!("Paper of alpha, edit {n}") } });
            let reply = post(&http, &url, &token, &tenant, body).await;
            let _ = done.send(());
            reply
        }));
    }
    // Every request that found no free connection gives up after the wait timeout…
    let waiting = REQUESTS - (POOL_SIZE - HELD);
    for _ in 0..waiting {
        tokio::time::timeout(WAIT_TIMEOUT * 5, done_rx.recv())
            .await
            .expect("requests waiting for a connection give up in time");
    }
    let refused_after = started.elapsed();
    // …while those that got one are still waiting on the lock.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let pending = requests.iter().filter(|r| !r.is_finished()).count();
    assert_eq!(
        pending,
        POOL_SIZE - HELD,
        "the requests holding a connection finish only when the lock is released"
    );
    let readyz_started = Instant::now();
    let readyz = http.get(format!("{base}/readyz")).send().await.unwrap();
    let readyz = (readyz.status().as_u16(), readyz_started.elapsed());
    holder.commit().await.unwrap();

    let mut replies = Vec::new();
    for r in requests {
        replies.push(r.await.unwrap());
    }
    probing.store(false, Ordering::Relaxed);
    let mut healthz = probe.await.unwrap();
    healthz.sort();

    let (ok, busy): (Vec<&Reply>, Vec<&Reply>) = replies.iter().partition(|r| r.status == 200);
    let mut busy_latency: Vec<Duration> = busy.iter().map(|r| r.latency).collect();
    busy_latency.sort();
    println!(
        "pool of {POOL_SIZE} ({HELD} held by the test), wait timeout {} s, {REQUESTS} concurrent \
         requests: {} succeeded, {} refused as busy (all refused {} after the start)",
        WAIT_TIMEOUT.as_secs(),
        ok.len(),
        busy.len(),
        ms(refused_after)
    );
    println!(
        "refused requests answered after {} to {}",
        ms(busy_latency[0]),
        ms(busy_latency[busy_latency.len() - 1])
    );
    println!(
        "/healthz under exhaustion: {} probes, all 200; median {}, p99 {}, max {}",
        healthz.len(),
        ms(percentile(&healthz, 0.5)),
        ms(percentile(&healthz, 0.99)),
        ms(healthz[healthz.len() - 1])
    );
    println!(
        "/readyz under exhaustion: HTTP {} after {}",
        readyz.0,
        ms(readyz.1)
    );
    if let Some(first) = busy.first() {
        println!("the refusal: {}", first.body["errors"][0]);
    }

    // Those that got a connection succeeded.
    assert_eq!(ok.len(), POOL_SIZE - HELD);
    for r in &ok {
        assert!(r.body.get("errors").is_none(), "{}", r.body);
        let title = r.body["data"]["updatePaper"]["title"].as_str().unwrap();
        assert!(title.starts_with("Paper of alpha, edit "), "{title}");
    }
    // The others: a clear, retryable refusal once the wait timeout had passed, not before, and
    // not much later.
    assert_eq!(busy.len(), waiting);
    for r in &busy {
        assert_eq!(r.status, 503, "{}", r.body);
        assert!(r.retry_after, "a 503 says when to retry");
        let error = &r.body["errors"][0];
        assert_eq!(error["extensions"]["code"], "UNAVAILABLE", "{}", r.body);
        assert_eq!(error["extensions"]["retryable"], true, "{}", r.body);
        assert!(
            error["message"].as_str().unwrap().contains("busy"),
            "the message says the database is busy: {}",
            r.body
        );
        assert!(r.body.get("data").is_none_or(Value::is_null));
        assert!(
            r.latency >= WAIT_TIMEOUT && r.latency < WAIT_TIMEOUT * 2,
            "refused after {:?}",
            r.latency
        );
    }
    // Liveness never depended on the pool.
    assert!(
        healthz.len() >= 10,
        "only {} /healthz probes ran",
        healthz.len()
    );
    let slowest = healthz[healthz.len() - 1];
    assert!(slowest < HEALTHZ_LIMIT, "/healthz took {slowest:?}");

    // Afterwards, everything works: a burst as large as the pool, reads and writes.
    let mut burst = Vec::new();
    for n in 0..POOL_SIZE * 2 {
        let (http, url, token, tenant) = (http.clone(), url.clone(), token.clone(), tenant.clone());
        let id = a.paper;
        burst.push(tokio::spawn(async move {
            let body = if n.is_multiple_of(2) {
                json!({ "query": READ })
            } else {
                json!({ "query": UPDATE, "variables": {
                    "id": id, "title": format!("Paper of alpha, after {n}") } })
            };
            post(&http, &url, &token, &tenant, body).await
        }));
    }
    for r in burst {
        let r = r.await.unwrap();
        assert_eq!(r.status, 200, "{}", r.body);
        assert!(r.body.get("errors").is_none(), "{}", r.body);
    }
}
