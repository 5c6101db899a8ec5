//! `research-graph serve` with no DATABASE_URL: starts its own PostgreSQL in the data directory,
//! migrates, serves; a second start reuses the cluster; stopping the server stops Postgres, and
//! even a killed server does not leave Postgres running.

mod common;
#[path = "common/server.rs"]
mod server;

use server::{data_dir, http, Server};

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

fn postmaster_pid(dir: &Path) -> i32 {
    let text = std::fs::read_to_string(dir.join("pg/postmaster.pid")).expect("postmaster.pid");
    text.lines().next().unwrap().trim().parse().unwrap()
}

fn wait_gone(pid: i32, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if kill(Pid::from_raw(pid), None).is_err() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

#[test]
fn serve_starts_its_own_postgres_and_reuses_it() {
    let dir = data_dir();
    let mut server = Server::start(dir.path());
    assert!(server.log_contains("initialised a local PostgreSQL cluster"));
    assert_eq!(
        http(&server.addr, "GET", "/healthz", ""),
        (200, "ok".into())
    );
    assert_eq!(
        http(&server.addr, "GET", "/readyz", ""),
        (200, "ready".into())
    );
    let (status, body) = http(
        &server.addr,
        "POST",
        "/graphql",
        r#"{"query":"{ viewer { role } }"}"#,
    );
    assert_eq!(status, 200);
    assert!(body.contains(r#""role":"OWNER""#), "{body}");
    let pg = postmaster_pid(dir.path());

    server.signal(Signal::SIGTERM);
    assert!(
        server.wait_exit().success(),
        "clean exit: {:#?}",
        server.log
    );
    assert!(
        wait_gone(pg, Duration::from_secs(5)),
        "Postgres stopped with the server"
    );
    assert!(server.log_contains("local PostgreSQL stopped"));
    assert!(
        !dir.path().join("pg/postmaster.pid").exists(),
        "clean shutdown"
    );

    let mut again = Server::start(dir.path());
    assert!(
        again.log_contains("reusing the local PostgreSQL cluster"),
        "{:#?}",
        again.log
    );
    assert!(again.log_contains("database schema is up to date"));
    assert_eq!(http(&again.addr, "GET", "/healthz", ""), (200, "ok".into()));
    again.signal(Signal::SIGINT);
    assert!(again.wait_exit().success());
}

#[test]
fn a_killed_server_does_not_leave_postgres_running() {
    let dir = data_dir();
    let mut server = Server::start(dir.path());
    let pg = postmaster_pid(dir.path());
    server.signal(Signal::SIGKILL);
    server.wait_exit();
    assert!(
        wait_gone(pg, Duration::from_secs(15)),
        "the watchdog stops Postgres when its server dies"
    );
}

#[test]
fn migrate_and_serve_against_an_existing_database() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (_, admin) = runtime.block_on(common::TestDb::unmigrated());
    let mut app = admin.clone();
    app.user("rg_app");
    let unused = data_dir();

    let output = Command::new(env!("CARGO_BIN_EXE_research-graph"))
        .arg("migrate")
        .env("ADMIN_DATABASE_URL", common::database_url(&admin))
        .env_remove("DATABASE_URL")
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{log}");
    let mut files: Vec<String> = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/sql"))
        .unwrap()
        .map(|e| {
            e.unwrap()
                .file_name()
                .to_string_lossy()
                .trim_end_matches(".sql")
                .to_owned()
        })
        .collect();
    files.sort_by_key(|f| f[1..].split("__").next().unwrap().parse::<u32>().unwrap());
    let last = files.last().unwrap();
    assert!(
        log.contains(last.as_str()),
        "the last migration {last} was applied: {log}"
    );

    let output = Command::new(env!("CARGO_BIN_EXE_research-graph"))
        .arg("migrate")
        .env("DATABASE_URL", common::database_url(&app))
        .env_remove("ADMIN_DATABASE_URL")
        .output()
        .unwrap();
    assert!(
        !output.status.success(),
        "migrate without a privileged URL must fail"
    );
    assert!(String::from_utf8_lossy(&output.stderr).contains("ADMIN_DATABASE_URL"));

    let mut server = Server::start_with(
        unused.path(),
        &[
            ("DATABASE_URL", common::database_url(&app)),
            ("ADMIN_DATABASE_URL", common::database_url(&admin)),
        ],
    );
    assert!(
        server.log_contains("database schema is up to date"),
        "{:#?}",
        server.log
    );
    assert!(
        !server.log_contains("local PostgreSQL"),
        "no local cluster with DATABASE_URL"
    );
    let (status, body) = http(
        &server.addr,
        "POST",
        "/graphql",
        r#"{"query":"{ viewer { role } }"}"#,
    );
    assert_eq!(
        (status, body.as_str()),
        (200, r#"{"data":{"viewer":{"role":"OWNER"}}}"#)
    );
    server.signal(Signal::SIGTERM);
    assert!(server.wait_exit().success());
    assert!(!unused.path().join("pg").exists());
}

/// Misconfigurations stop `serve` at once with one clear line, before any database starts.
#[test]
fn serve_refuses_unsafe_configurations() {
    let dir = data_dir();
    for (args, env, expected) in [
        (
            vec!["--dev", "--production"],
            vec![],
            "refused when --production",
        ),
        (
            vec![],
            vec![],
            "authentication needs JWT_SECRET or JWT_JWKS_URL",
        ),
        (vec![], vec![("JWT_SECRET", "short")], "at least 32 bytes"),
        (
            vec![],
            vec![
                ("JWT_JWKS_URL", "http://127.0.0.1:9/jwks"),
                ("JWT_ALGORITHMS", "HS256"),
            ],
            "HS256 needs JWT_SECRET",
        ),
        (
            vec!["--dev"],
            vec![("SINGLE_TENANT_JOIN_ROLE", "owner")],
            "SINGLE_TENANT_JOIN_ROLE",
        ),
        (
            vec!["--dev"],
            vec![("PRICING_FILE", "/nonexistent/pricing.toml")],
            "PRICING_FILE",
        ),
    ] {
        let mut command = Command::new(env!("CARGO_BIN_EXE_research-graph"));
        command
            .arg("serve")
            .args(&args)
            .arg("--data-dir")
            .arg(dir.path());
        for var in [
            "DATABASE_URL",
            "ADMIN_DATABASE_URL",
            "JWT_SECRET",
            "JWT_JWKS_URL",
            "RG_DEV",
            "RG_PRODUCTION",
        ] {
            command.env_remove(var);
        }
        for (k, v) in env {
            command.env(k, v);
        }
        let output = command.output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{args:?}: must refuse");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
        assert!(!dir.path().join("pg").exists(), "no database was started");
    }
}

fn graphql(addr: &str, query: &str, variables: serde_json::Value) -> serde_json::Value {
    let body = serde_json::json!({ "query": query, "variables": variables }).to_string();
    let (status, body) = http(addr, "POST", "/graphql", &body);
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

/// `serve --demo` (RG_DEMO): a graph to look at with no key, and the embedded worker runs what
/// is queued through the API.
#[test]
fn serve_demo_shows_a_graph_and_its_embedded_worker_runs_new_jobs() {
    let dir = data_dir();
    let mut server = Server::start_with(dir.path(), &[("RG_DEMO", "1".into())]);
    assert!(
        server.log_contains("demo papers seeded and processed"),
        "{:#?}",
        server.log
    );
    let body = graphql(
        &server.addr,
        "{ papers(first: 10) { totalCount } graphNodes(first: 1) { totalCount }
           graphEdges(first: 1) { totalCount } insights(first: 10) { totalCount nodes { insightType } } }",
        serde_json::json!({}),
    );
    let data = &body["data"];
    assert_eq!(data["papers"]["totalCount"], 3, "{body}");
    assert!(
        data["graphNodes"]["totalCount"].as_i64().unwrap() >= 10,
        "{body}"
    );
    assert!(
        data["graphEdges"]["totalCount"].as_i64().unwrap() >= 10,
        "{body}"
    );
    assert!(
        data["insights"]["totalCount"].as_i64().unwrap() >= 1,
        "{body}"
    );

    let body = graphql(
        &server.addr,
        "mutation($i: IngestPaperInput!) { ingestPaper(input: $i) { paper { id } } }",
        serde_json::json!({ "i": { "content": "# Tiny\n\n## Abstract\nWe propose TinyNet for image classification on the CIFAR-10 dataset.\n", "format": "MARKDOWN" } }),
    );
    let paper = body["data"]["ingestPaper"]["paper"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let body = graphql(
        &server.addr,
        "mutation($p: ID!) { processPaper(paperId: $p) { id } }",
        serde_json::json!({ "p": paper }),
    );
    let job = body["data"]["processPaper"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let body = graphql(
            &server.addr,
            "query($id: UUID!) { pipelineJob(id: $id) { status progress { entities } } }",
            serde_json::json!({ "id": job }),
        );
        let status = body["data"]["pipelineJob"]["status"]
            .as_str()
            .unwrap()
            .to_owned();
        if status == "SUCCEEDED" {
            assert!(
                body["data"]["pipelineJob"]["progress"]["entities"]
                    .as_i64()
                    .unwrap()
                    > 0
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the embedded worker did not run the job: {body}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    server.signal(Signal::SIGTERM);
    assert!(server.wait_exit().success(), "{:#?}", server.log);
    assert!(server.log_contains("worker stopped"));
}

/// `research-graph worker` against an existing database: runs what is queued, stops on SIGTERM.
#[test]
fn the_worker_command_runs_queued_jobs_and_stops_cleanly() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let t = runtime.block_on(common::TestDb::new());
    let (tenant, owner) = runtime.block_on(t.create_tenant("lab"));
    let jobs: Vec<uuid::Uuid> = runtime.block_on(async {
        let s = t.session(tenant, owner).await;
        let mut jobs = Vec::new();
        for i in 0..3 {
            let text = format!("# Paper {i}\n\n## Abstract\nWe propose Net{i} for link prediction on the Cora dataset.\n");
            let doc = research_graph::pipeline::ingest::parse(
                &text,
                research_graph::pipeline::ingest::SourceFormat::Markdown,
            )
            .unwrap();
            let paper = research_graph::pipeline::store(
                &s,
                &doc,
                research_graph::pipeline::ingest::SourceFormat::Markdown,
                &Default::default(),
            )
            .await
            .unwrap()
            .paper;
            let (job, _) = research_graph::pipeline::jobs::enqueue(
                &s,
                research_graph::pipeline::jobs::JobKind::ProcessPaper,
                Some(paper),
                serde_json::json!({}),
                5,
            )
            .await
            .unwrap();
            jobs.push(job.id);
        }
        s.commit().await.unwrap();
        jobs
    });
    let child = Command::new(env!("CARGO_BIN_EXE_research-graph"))
        .arg("worker")
        .env("DATABASE_URL", common::database_url(&t.app_config()))
        .env_remove("ADMIN_DATABASE_URL")
        .env_remove("GEMINI_API_KEY")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let done: i64 = runtime.block_on(async {
            let s = t.session(tenant, owner).await;
            let n = s
                .query_one(
                    "SELECT count(*) FROM app.jobs WHERE id = ANY($1) AND status = 'succeeded'",
                    &[&jobs],
                )
                .await
                .unwrap()
                .get(0);
            s.rollback().await.unwrap();
            n
        });
        if done == 3 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the worker did not finish the jobs"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).unwrap();
    let output = child.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{log}");
    assert!(log.contains("worker stopped"), "{log}");
}
