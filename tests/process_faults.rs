//! Processes that die or are told to stop: a worker killed with SIGKILL in the middle of a job
//! (its lease expires, another worker finishes the job, nothing is duplicated, usage is
//! complete), and a server stopped with SIGTERM (in-flight requests finish, the embedded worker
//! gives its job back, the local Postgres stops cleanly).

mod common;
#[path = "common/server.rs"]
mod server;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::mock_gemini::{json_answer, prompt_of, Answer, MockGemini, Usage};
use common::TestDb;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use research_graph::ids::{TenantId, UserId};
use research_graph::pipeline::ingest::{parse, SourceFormat};
use research_graph::pipeline::jobs::{self, JobKind};
use serde_json::{json, Value};
use server::Server;
use uuid::Uuid;

const GEMINI_KEY: &str = "AIzaSyTestKey-0123456789abcdefghij";

/// Answers a section "We propose NAME for TASK." with that method, task and relation.
fn answer(body: &Value) -> Answer {
    let prompt = prompt_of(body);
    let Some(start) = prompt.find("We propose ") else {
        return json_answer(
            &json!({ "entities": [], "relations": [], "mentions": [] }),
            Usage {
                prompt: 100,
                output: 10,
                thoughts: 0,
            },
        );
    };
    let name: String = prompt[start + 11..]
        .chars()
        .take_while(|c| c.is_alphanumeric())
        .collect();
    json_answer(
        &json!({
            "entities": [
                { "name": name, "type": "Method" },
                { "name": "link prediction", "type": "Task" },
            ],
            "relations": [
                { "source": name, "target": "link prediction", "type": "USED-FOR",
                  "confidence": 0.9, "evidence": format!("{name} for link prediction") },
            ],
            "mentions": [
                { "entity": name, "evidence": format!("We propose {name}") },
                { "entity": "link prediction", "evidence": "link prediction" },
            ],
        }),
        Usage {
            prompt: 1000,
            output: 200,
            thoughts: 0,
        },
    )
}

fn paper(p: usize) -> String {
    let mut text = format!("# Crash Paper {p}\n\n");
    for k in 0..4 {
        text.push_str(&format!(
            "## Part {k}\nWe propose Net{p}x{k} for link prediction.\n\n"
        ));
    }
    text
}

async fn queue(t: &TestDb, tenant: TenantId, user: UserId, papers: usize) -> Vec<Uuid> {
    let s = t.session(tenant, user).await;
    let mut ids = Vec::new();
    for p in 0..papers {
        let doc = parse(&paper(p), SourceFormat::Markdown).unwrap();
        let stored =
            research_graph::pipeline::store(&s, &doc, SourceFormat::Markdown, &Default::default())
                .await
                .unwrap();
        let (job, _) = jobs::enqueue(&s, JobKind::ProcessPaper, Some(stored.paper), json!({}), 5)
            .await
            .unwrap();
        ids.push(job.id);
    }
    s.commit().await.unwrap();
    ids
}

fn worker(t: &TestDb, mock: &MockGemini) -> Child {
    Command::new(env!("CARGO_BIN_EXE_research-graph"))
        .arg("worker")
        .env("DATABASE_URL", common::database_url(&t.app_config()))
        .env_remove("ADMIN_DATABASE_URL")
        .env("GEMINI_API_KEY", GEMINI_KEY)
        .env("GEMINI_BASE_URL", &mock.base)
        .env("JOB_LEASE_SECS", "3")
        .env("SECTION_CONCURRENCY", "1")
        .env("WORKER_CONCURRENCY", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

async fn scalar(t: &TestDb, tenant: TenantId, user: UserId, sql: &str) -> i64 {
    let s = t.session(tenant, user).await;
    let n = s.query_one(sql, &[]).await.unwrap().get(0);
    s.rollback().await.unwrap();
    n
}

async fn wait_until(what: &str, timeout: Duration, mut f: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f().await {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

const COUNTS: [&str; 5] = [
    "SELECT count(*) FROM app.nodes",
    "SELECT count(*) FROM app.edges",
    "SELECT count(*) FROM app.entity_mentions",
    "SELECT count(*) FROM app.edge_evidence",
    "SELECT coalesce(sum(weight), 0)::bigint FROM app.edges",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_with_sigkill_mid_job_is_taken_over_without_duplicates() {
    let t = TestDb::new().await;
    let mock = MockGemini::start(Duration::from_millis(300), |body, _| answer(body)).await;
    let (reference, ref_owner) = t.create_tenant("reference").await;
    let (tenant, owner) = t.create_tenant("lab").await;

    // The reference: the same papers by one worker that is never disturbed.
    queue(&t, reference, ref_owner, 2).await;
    let mut calm = worker(&t, &mock);
    wait_until(
        "the reference jobs succeed",
        Duration::from_secs(60),
        async || {
            scalar(
                &t,
                reference,
                ref_owner,
                "SELECT count(*) FROM app.jobs WHERE status = 'succeeded'",
            )
            .await
                == 2
        },
    )
    .await;
    kill(Pid::from_raw(calm.id() as i32), Signal::SIGTERM).unwrap();
    assert!(calm.wait().unwrap().success());

    let ids = queue(&t, tenant, owner, 2).await;
    let mut doomed = worker(&t, &mock);
    wait_until(
        "two sections of the first job are persisted",
        Duration::from_secs(30),
        async || {
            let s = t.session(tenant, owner).await;
            let j = jobs::get(&s, ids[0]).await.unwrap().unwrap();
            s.rollback().await.unwrap();
            j.progress.sections_done >= 2
        },
    )
    .await;
    kill(Pid::from_raw(doomed.id() as i32), Signal::SIGKILL).unwrap();
    doomed.wait().unwrap();
    let s = t.session(tenant, owner).await;
    let stuck = jobs::get(&s, ids[0]).await.unwrap().unwrap();
    s.rollback().await.unwrap();
    assert_eq!(
        stuck.status,
        jobs::JobStatus::Running,
        "the killed worker's lease is still held"
    );

    let started = Instant::now();
    let mut rescuer = worker(&t, &mock);
    wait_until("every job succeeds", Duration::from_secs(60), async || {
        scalar(
            &t,
            tenant,
            owner,
            "SELECT count(*) FROM app.jobs WHERE status = 'succeeded'",
        )
        .await
            == 2
    })
    .await;
    println!(
        "taken over and finished {:.1} s after the second worker started (lease 3 s)",
        started.elapsed().as_secs_f64()
    );
    kill(Pid::from_raw(rescuer.id() as i32), Signal::SIGTERM).unwrap();
    assert!(rescuer.wait().unwrap().success());

    let s = t.session(tenant, owner).await;
    assert_eq!(jobs::get(&s, ids[0]).await.unwrap().unwrap().attempts, 2);
    s.rollback().await.unwrap();
    for sql in COUNTS {
        assert_eq!(
            scalar(&t, tenant, owner, sql).await,
            scalar(&t, reference, ref_owner, sql).await,
            "{sql}"
        );
    }
    // Usage is complete: every persisted section's successful call is recorded, under the
    // attempt that made it; a call the killed worker finished but could not persist is
    // recorded too (it was made and paid for) and the section was extracted again.
    let sections = scalar(
        &t,
        tenant,
        owner,
        "SELECT count(*) FROM app.section_extractions WHERE status = 'done'",
    )
    .await;
    assert_eq!(sections, 8);
    let unrecorded = scalar(
        &t,
        tenant,
        owner,
        "SELECT count(*) FROM app.section_extractions x WHERE NOT EXISTS (
             SELECT 1 FROM app.usage_events u WHERE u.outcome = 'ok'
               AND u.idempotency_key LIKE '%' || x.section_id::text || ':extract')",
    )
    .await;
    assert_eq!(unrecorded, 0, "a persisted section without its usage event");
    let ok_events = scalar(
        &t,
        tenant,
        owner,
        "SELECT count(*) FROM app.usage_events WHERE outcome = 'ok'",
    )
    .await;
    assert!(
        (8..=9).contains(&ok_events),
        "{ok_events} events: one per section, plus at most the one the killed worker finished"
    );
    assert_eq!(
        scalar(
            &t,
            reference,
            ref_owner,
            "SELECT count(*) FROM app.usage_events WHERE outcome = 'ok'"
        )
        .await,
        8
    );
}

// ---------------------------------------------------------------------------------------------
// Graceful shutdown of `serve`

fn post(addr: &str, query: &str, variables: Value) -> std::io::Result<(u16, Value)> {
    let body = json!({ "query": query, "variables": variables }).to_string();
    let mut stream = TcpStream::connect(addr)?;
    write!(
        stream,
        "POST /graphql HTTP/1.0\r\nHost: localhost\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    if response.len() < 12 {
        return Err(std::io::Error::other(format!(
            "truncated response: {response:?}"
        )));
    }
    let status = response[9..12].parse().unwrap();
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b)
        .unwrap_or("");
    Ok((status, serde_json::from_str(body).unwrap_or(Value::Null)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_in_flight_requests_releases_the_job_and_stops_postgres_cleanly() {
    let dir = tempfile::Builder::new()
        .prefix("rg-shutdown-")
        .tempdir_in("/tmp")
        .unwrap();
    // A model that takes its time, so that the embedded worker is mid-job at SIGTERM.
    let mock = MockGemini::start(Duration::from_secs(3), |body, _| answer(body)).await;
    let env = [
        ("GEMINI_API_KEY", GEMINI_KEY.to_owned()),
        ("GEMINI_BASE_URL", mock.base.clone()),
        ("SECTION_CONCURRENCY", "1".to_owned()),
    ];
    let mut server = Server::start_with(dir.path(), &env);
    let addr = server.addr.clone();
    let (_, body) = post(
        &addr,
        "mutation($i: IngestPaperInput!) { ingestPaper(input: $i) { paper { id } } }",
        json!({ "i": { "content": paper(0), "format": "MARKDOWN" } }),
    )
    .unwrap();
    let paper_id = body["data"]["ingestPaper"]["paper"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (_, body) = post(
        &addr,
        "mutation($p: ID!) { processPaper(paperId: $p) { id } }",
        json!({ "p": paper_id }),
    )
    .unwrap();
    let job = body["data"]["processPaper"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let job_query = "query($id: UUID!) { pipelineJob(id: $id) { status attempts } }";
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, body) = post(&addr, job_query, json!({ "id": job })).unwrap();
        if body["data"]["pipelineJob"]["status"] == "RUNNING" {
            break;
        }
        assert!(Instant::now() < deadline, "the job never ran: {body}");
        std::thread::sleep(Duration::from_millis(50));
    }

    // An in-flight request: a settings update that waits for a row lock the test holds.
    let mut pg = tokio_postgres::Config::new();
    pg.host_path(dir.path().join("pg"))
        .port(5432)
        .user("postgres")
        .dbname("research_graph");
    let client = common::connect(pg).await;
    client.batch_execute("BEGIN").await.unwrap();
    client
        .batch_execute("SELECT 1 FROM app.tenant_settings FOR UPDATE")
        .await
        .unwrap();
    let in_flight = std::thread::spawn({
        let addr = addr.clone();
        move || {
            post(
                &addr,
                "mutation { updateTenantSettings(input: { confidenceThreshold: 0.7 }) { confidenceThreshold } }",
                json!({}),
            )
        }
    });
    // Let the request reach the lock, then ask the server to stop.
    std::thread::sleep(Duration::from_millis(500));
    server.signal(Signal::SIGTERM);
    std::thread::sleep(Duration::from_millis(700));
    // New connections are refused while the in-flight request is still running.
    assert!(
        post(&addr, "{ viewer { role } }", json!({})).is_err(),
        "a new request was accepted after SIGTERM"
    );
    client.batch_execute("COMMIT").await.unwrap();
    drop(client);
    let (status, body) = in_flight
        .join()
        .unwrap()
        .expect("the in-flight request got its answer, not a connection error");
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["data"]["updateTenantSettings"]["confidenceThreshold"], 0.7,
        "{body}"
    );
    let exit = server.wait_exit();
    assert!(exit.success(), "{:#?}", server.log);
    let log = server.log.join("\n");
    assert!(log.contains("worker stopped"), "{log}");
    assert!(log.contains("local PostgreSQL stopped"), "{log}");
    assert!(
        !dir.path().join("pg/postmaster.pid").exists(),
        "Postgres shut down cleanly"
    );

    // The job went back to the queue with the interrupted attempt not counted.
    let mut again = Server::start_with(dir.path(), &[("EMBEDDED_WORKER", "false".to_owned())]);
    let (_, body) = post(&again.addr, job_query, json!({ "id": job })).unwrap();
    assert_eq!(body["data"]["pipelineJob"]["status"], "QUEUED", "{body}");
    assert_eq!(body["data"]["pipelineJob"]["attempts"], 0, "{body}");
    again.signal(Signal::SIGTERM);
    assert!(again.wait_exit().success());
}
