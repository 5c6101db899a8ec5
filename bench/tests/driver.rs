//! The driver loop against a tiny HTTP/1.1 server of the test's own: what it sends, what it
//! counts, and the exit status of `bench-load`.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use clap::Parser;
use research_graph_bench::ids;
use research_graph_bench::load::{finish, run, Args};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// How the test server answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// 200 with data.
    Ok,
    /// 500.
    ServerError,
    /// 200 with errors and null data.
    GraphqlErrors,
    /// 200 with a null root field.
    NullRoot,
    /// 200 with data, then closes the connection.
    CloseEach,
}

#[derive(Default)]
struct Seen {
    connections: usize,
    requests: usize,
    tenants: HashSet<String>,
    /// Problems with what the driver sent.
    bad: Vec<String>,
    /// Variable names per operation name ("" for an anonymous operation).
    variables: HashSet<(String, Vec<String>)>,
}

struct TestServer {
    url: String,
    seen: Arc<Mutex<Seen>>,
}

async fn serve(mode: Mode) -> TestServer {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/graphql", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Seen::default()));
    let state = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            state.lock().unwrap().connections += 1;
            tokio::spawn(connection(stream, mode, state.clone()));
        }
    });
    TestServer { url, seen }
}

/// Answers requests on one connection until the client closes it.
async fn connection(mut stream: TcpStream, mode: Mode, seen: Arc<Mutex<Seen>>) {
    let mut buf = Vec::new();
    loop {
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let mut chunk = [0u8; 4096];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
        let header = |name: &str| {
            head.lines().find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
            })
        };
        let length: usize = header("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        while buf.len() < head_end + length {
            let mut chunk = [0u8; 4096];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let body: Value =
            serde_json::from_slice(&buf[head_end..head_end + length]).unwrap_or(Value::Null);
        buf.drain(..head_end + length);
        {
            let mut seen = seen.lock().unwrap();
            seen.requests += 1;
            if !head.starts_with("POST /graphql HTTP/1.1\r\n") {
                seen.bad.push(format!("request line: {head}"));
            }
            for (name, want) in [("host", None), ("content-type", Some("application/json"))] {
                match (header(name), want) {
                    (None, _) => seen.bad.push(format!("no {name}")),
                    (Some(v), Some(want)) if v != want => seen.bad.push(format!("{name}: {v}")),
                    _ => {}
                }
            }
            match header("authorization") {
                Some(v) if v.starts_with("Bearer ") => {}
                other => seen.bad.push(format!("authorization: {other:?}")),
            }
            match header("x-tenant-id") {
                Some(t) => {
                    seen.tenants.insert(t);
                }
                None => seen.bad.push("no x-tenant-id".into()),
            }
            let op = body["operationName"].as_str().unwrap_or("").to_owned();
            let mut vars: Vec<String> = body["variables"]
                .as_object()
                .map(|o| o.keys().cloned().collect())
                .unwrap_or_default();
            vars.sort();
            seen.variables.insert((op, vars));
        }
        let (status, answer) = match mode {
            Mode::Ok | Mode::CloseEach => ("200 OK", r#"{"data":{"x":{"y":1}}}"#),
            Mode::ServerError => ("500 Internal Server Error", r#"{"message":"boom"}"#),
            Mode::GraphqlErrors => ("200 OK", r#"{"data":null,"errors":[{"message":"nope"}]}"#),
            Mode::NullRoot => ("200 OK", r#"{"data":{"graphNode":null}}"#),
        };
        let close = mode == Mode::CloseEach;
        let response = format!(
            "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n{}\r\n{answer}",
            answer.len(),
            if close { "connection: close\r\n" } else { "" }
        );
        if stream.write_all(response.as_bytes()).await.is_err() || close {
            return;
        }
    }
}

static NEXT_DIR: AtomicUsize = AtomicUsize::new(0);

/// A query directory with `rg/a.graphql` (declaring `$nodeId` and `$tenantId`) and
/// `rg/b.graphql` (anonymous, no variables).
fn queries() -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "bench-load-test-{}-{}",
        std::process::id(),
        NEXT_DIR.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(dir.join("rg")).unwrap();
    std::fs::write(
        dir.join("rg/a.graphql"),
        "query A($nodeId: ID!, $tenantId: UUID!) { x(id: $nodeId, tenant: $tenantId) { y } }",
    )
    .unwrap();
    std::fs::write(dir.join("rg/b.graphql"), "# no variables\n{ x { y } }\n").unwrap();
    dir
}

fn argv(url: &str, queries: &Path, extra: &[&str]) -> Vec<String> {
    let mut argv: Vec<String> = [
        "bench-load",
        "--url",
        url,
        "--target",
        "rg",
        "--queries",
        queries.to_str().unwrap(),
        "--mix",
        "a=1,b=1",
        "--connections",
        "3",
        "--warmup-secs",
        "0.2",
        "--secs",
        "0.6",
        "--tenants",
        "4",
        "--nodes-per-tenant",
        "20",
        "--jwt-secret",
        "a-secret",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    argv.extend(extra.iter().map(|s| s.to_string()));
    argv
}

fn args(url: &str, queries: &Path) -> Args {
    Args::try_parse_from(argv(url, queries, &[])).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counts_requests_over_keep_alive_connections_with_the_right_headers_and_variables() {
    let server = serve(Mode::Ok).await;
    let dir = queries();
    let args = args(&server.url, &dir);
    let report = run(&args).await.unwrap();

    assert_eq!(report.errors(), 0, "{:?}", report.error_samples);
    assert_eq!(report.queries.len(), 2);
    for q in &report.queries {
        assert!(q.requests > 10, "{q:?}");
        assert_eq!(q.ok(), q.requests);
        assert!((q.rps - q.requests as f64 / 0.6).abs() < 1e-6);
        let l = q.latencies.unwrap();
        assert!(0.0 < l.p50_ms && l.p50_ms <= l.p95_ms && l.p95_ms <= l.p99_ms);
        assert!(l.p99_ms <= l.max_ms);
    }
    assert!(report.warmup_requests > 0);
    assert!(finish(&args, &report).is_ok());

    let seen = server.seen.lock().unwrap();
    assert!(
        seen.bad.is_empty(),
        "{:?}",
        &seen.bad[..seen.bad.len().min(5)]
    );
    // One connection per worker, kept alive throughout.
    assert_eq!(seen.connections, 3);
    let counted: u64 = report.queries.iter().map(|q| q.requests).sum();
    assert!(counted + report.warmup_requests <= seen.requests as u64);
    // Every tenant, and only those.
    let tenants: HashSet<String> = (0..4).map(|t| ids::tenant(t).to_string()).collect();
    assert_eq!(seen.tenants, tenants);
    // Each query gets exactly the variables it declares.
    let expected: HashSet<(String, Vec<String>)> = [
        (
            "A".to_owned(),
            vec!["nodeId".to_owned(), "tenantId".to_owned()],
        ),
        (String::new(), vec![]),
    ]
    .into_iter()
    .collect();
    assert_eq!(seen.variables, expected);
    drop(seen);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_answers_are_errors_and_fail_the_run() {
    for mode in [Mode::ServerError, Mode::GraphqlErrors, Mode::NullRoot] {
        let server = serve(mode).await;
        let dir = queries();
        let args = args(&server.url, &dir);
        let report = run(&args).await.unwrap();
        for q in &report.queries {
            assert!(q.requests > 0, "{mode:?}: {q:?}");
            assert_eq!(q.errors, q.requests, "{mode:?}");
            assert_eq!(q.rps, 0.0);
            assert_eq!(q.latencies, None);
            let null_roots = if mode == Mode::NullRoot { q.errors } else { 0 };
            assert_eq!(q.null_roots, null_roots, "{mode:?}");
        }
        assert_eq!(report.warmup_errors, report.warmup_requests);
        assert!(!report.error_samples.is_empty());
        let sample = &report.error_samples[0];
        let expected = match mode {
            Mode::ServerError => "HTTP 500",
            Mode::GraphqlErrors => "nope",
            _ => "null root field(s) graphNode",
        };
        assert!(sample.contains(expected), "{mode:?}: {sample}");
        let err = finish(&args, &report).unwrap_err();
        assert!(err.to_string().contains("failed"), "{err}");
        // Errors answered on the same connections: no reconnects.
        assert_eq!(server.seen.lock().unwrap().connections, 3);
        let _ = std::fs::remove_dir_all(dir);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_connection_is_an_error_and_is_replaced() {
    let server = serve(Mode::CloseEach).await;
    let dir = queries();
    let args = args(&server.url, &dir);
    let report = run(&args).await.unwrap();
    let requests: u64 = report.queries.iter().map(|q| q.requests).sum();
    let ok: u64 = report.queries.iter().map(|q| q.ok()).sum();
    assert!(ok > 10, "{:?}", report.queries);
    assert!(report.errors() > 10, "{:?}", report.queries);
    assert_eq!(ok + report.errors(), requests);
    let sample = &report.error_samples[0];
    assert!(sample.contains("connection lost"), "{sample}");
    // Every answer closes its connection: about one connection per answer.
    let seen = server.seen.lock().unwrap();
    assert!(
        seen.connections as u64 > ok,
        "{} connections",
        seen.connections
    );
    drop(seen);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn no_server_no_run() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/graphql", listener.local_addr().unwrap());
    drop(listener);
    let dir = queries();
    let err = run(&args(&url, &dir)).await.unwrap_err();
    assert!(format!("{err:#}").contains("cannot connect"), "{err:#}");
    // A query file that is missing, or declares a variable the driver cannot fill.
    let mut missing = args(&url, &dir);
    missing.mix = "a,zzz".parse().unwrap();
    assert!(format!("{:#}", run(&missing).await.unwrap_err()).contains("zzz"));
    std::fs::write(dir.join("rg/c.graphql"), "query C($first: Int) { x }").unwrap();
    missing.mix = "c".parse().unwrap();
    assert!(format!("{:#}", run(&missing).await.unwrap_err()).contains("$first"));
    // A process to sample that does not exist.
    let mut no_such_pid = args(&url, &dir);
    no_such_pid.pids = vec![u32::MAX];
    assert!(format!("{:#}", run(&no_such_pid).await.unwrap_err()).contains("VmRSS"));
    let _ = std::fs::remove_dir_all(dir);
}

async fn bench_load(argv: &[String]) -> std::process::Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_bench-load"))
        .args(&argv[1..])
        .env_remove("JWT_SECRET")
        .output()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_exit_status_tells_whether_requests_failed() {
    let dir = queries();
    let json = dir.join("results.jsonl");
    let json_arg = json.to_str().unwrap().to_owned();
    let me = std::process::id().to_string();

    let ok = serve(Mode::Ok).await;
    let out = bench_load(&argv(
        &ok.url,
        &dir,
        &["--json", &json_arg, "--label", "ok run", "--pid", &me],
    ))
    .await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("p99 ms") && stdout.contains("peak summed RSS"));

    let failing = serve(Mode::ServerError).await;
    let out = bench_load(&argv(&failing.url, &dir, &["--json", &json_arg])).await;
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("HTTP 500") && stderr.contains("--allow-errors"),
        "{stderr}"
    );

    let out = bench_load(&argv(&failing.url, &dir, &["--allow-errors"])).await;
    assert!(out.status.success());

    // Two queries per run, one line each; the failed run is recorded as such.
    let lines: Vec<Value> = std::fs::read_to_string(&json)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 4);
    let first = &lines[0];
    assert_eq!(first["label"], "ok run");
    assert_eq!(first["target"], "rg");
    assert_eq!(first["query"], "a");
    assert_eq!(first["connections"], 3);
    assert_eq!(first["secs"], 0.6);
    assert_eq!(first["errors"], 0);
    for field in [
        "requests",
        "rps",
        "p50_ms",
        "p95_ms",
        "p99_ms",
        "max_ms",
        "peak_rss_mib",
    ] {
        assert!(first[field].as_f64().unwrap() > 0.0, "{field}: {first}");
    }
    assert_eq!(lines[1]["query"], "b");
    assert!(lines[2]["errors"].as_u64().unwrap() > 0);
    assert_eq!(lines[2]["p50_ms"], Value::Null);
    assert_eq!(lines[2]["peak_rss_mib"], Value::Null);
    let _ = std::fs::remove_dir_all(dir);
}
