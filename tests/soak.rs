//! Soak: the server binary under a mixed load for a fixed time (reads, writes, and pipeline jobs
//! against a local server speaking Gemini's wire format with 50 ms latency), with the server's
//! RSS, open file descriptors and database connections sampled: no error, no growth trend.
//!
//! Ignored by default (it runs for minutes); `bench/soak` runs it, `SOAK_SECS` sets the
//! duration (600 by default), `SOAK_CLIENTS` the concurrent clients (8).

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::mock_gemini::{json_answer, prompt_of, MockGemini, Usage};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::{json, Value};

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn post(addr: &str, query: &str, variables: Value) -> Result<Value, String> {
    let body = json!({ "query": query, "variables": variables }).to_string();
    let mut stream = TcpStream::connect(addr).map_err(|e| e.to_string())?;
    write!(
        stream,
        "POST /graphql HTTP/1.0\r\nHost: localhost\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .map_err(|e| e.to_string())?;
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .map_err(|e| e.to_string())?;
    let status = response.get(9..12).unwrap_or("");
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b)
        .unwrap_or("");
    let value: Value = serde_json::from_str(body).map_err(|_| format!("{status}: {body}"))?;
    if status != "200" || value.get("errors").is_some() {
        return Err(format!("{status}: {value}"));
    }
    Ok(value)
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Seconds since the start, RSS in KiB, open fds, rg_app connections, requests so far.
type Sample = (u64, u64, usize, i64, u64);

const READS: [&str; 4] = [
    "{ papers(first: 20) { totalCount nodes { title sections(first: 3) { nodes { kind } } } } }",
    "{ graphNodes(first: 10) { nodes { name outgoing(first: 10) { nodes { relationType target { name } } } mentions(first: 2) { nodes { quote } } } } }",
    "{ search(query: \"link prediction\", first: 10) { nodes { __typename } } }",
    "{ usage { summary { billedCost events } } pipelineJobs(first: 5) { nodes { status progress { sectionsDone } } } }",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "soak: minutes long; run through bench/soak"]
async fn mixed_load_shows_no_error_and_no_growth() {
    let secs = env_u64("SOAK_SECS", 600);
    let clients = env_u64("SOAK_CLIENTS", 8) as usize;
    let mock = MockGemini::start(Duration::from_millis(50), |body, _| {
        let reasoning = body["generationConfig"]["responseSchema"]["properties"]
            .get("insights")
            .is_some();
        let usage = Usage {
            prompt: 800,
            output: 120,
            thoughts: 0,
        };
        if reasoning {
            return json_answer(&json!({ "insights": [] }), usage);
        }
        let prompt = prompt_of(body);
        let name: String = prompt
            .find("We propose ")
            .map(|i| {
                prompt[i + 11..]
                    .chars()
                    .take_while(|c| c.is_alphanumeric())
                    .collect()
            })
            .unwrap_or_default();
        if name.is_empty() {
            return json_answer(
                &json!({ "entities": [], "relations": [], "mentions": [] }),
                usage,
            );
        }
        json_answer(
            &json!({
                "entities": [
                    { "name": name, "type": "Method" },
                    { "name": "link prediction", "type": "Task" },
                ],
                "relations": [{ "source": name, "target": "link prediction", "type": "USED-FOR",
                    "confidence": 0.9, "evidence": format!("{name} for link prediction") }],
                "mentions": [{ "entity": name, "evidence": format!("We propose {name}") }],
            }),
            usage,
        )
    })
    .await;

    let dir = tempfile::Builder::new()
        .prefix("rg-soak-")
        .tempdir_in("/tmp")
        .unwrap();
    let mut server: Child = Command::new(env!("CARGO_BIN_EXE_research-graph"))
        .args(["serve", "--dev", "--port", "0", "--data-dir"])
        .arg(dir.path())
        .env("LOG_FORMAT", "json")
        .env("RUST_LOG", "warn,research_graph=info")
        .env("GEMINI_API_KEY", "AIzaSyTestKey-0123456789abcdefghij")
        .env("GEMINI_BASE_URL", &mock.base)
        .env("DATABASE_POOL_SIZE", "16")
        .env_remove("DATABASE_URL")
        .env_remove("ADMIN_DATABASE_URL")
        .env_remove("PORT")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = server.id();
    let stderr = server.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let addr = loop {
        let line = rx
            .recv_timeout(Duration::from_secs(120))
            .expect("the server starts");
        if line.contains("research-graph listening") {
            let v: Value = serde_json::from_str(&line).unwrap();
            break v["fields"]["address"]
                .as_str()
                .unwrap()
                .trim_start_matches("socket://")
                .to_owned();
        }
    };
    let mut pg = tokio_postgres::Config::new();
    pg.host_path(dir.path().join("pg"))
        .port(5432)
        .user("postgres")
        .dbname("research_graph");
    let observer = common::connect(pg).await;

    let stop = Arc::new(AtomicBool::new(false));
    let requests = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let mut threads = Vec::new();
    for c in 0..clients {
        let (addr, stop, requests, errors) = (
            addr.clone(),
            Arc::clone(&stop),
            Arc::clone(&requests),
            Arc::clone(&errors),
        );
        threads.push(std::thread::spawn(move || {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                // Client 0 writes: a new paper every 20th request, queued for extraction, and
                // a reasoning batch now and then; the others read.
                let result = if c == 0 && i.is_multiple_of(20) {
                    let text = format!(
                        "# Soak Paper {i}\n\n## Abstract\nWe propose Soak{i} for link prediction.\n\n\
                         ## Results\nWe propose Soak{i}b for link prediction on the Cora dataset.\n"
                    );
                    post(
                        &addr,
                        "mutation($i: IngestPaperInput!) { ingestPaper(input: $i) { paper { id } } }",
                        json!({ "i": { "content": text, "format": "MARKDOWN" } }),
                    )
                    .and_then(|v| {
                        let id = v["data"]["ingestPaper"]["paper"]["id"].clone();
                        post(&addr, "mutation($p: ID!) { processPaper(paperId: $p) { id } }", json!({ "p": id }))
                    })
                } else if c == 0 && i.is_multiple_of(400) {
                    post(&addr, "mutation { runReasoning { id } }", json!({}))
                } else {
                    post(&addr, READS[(i as usize + c) % READS.len()], json!({}))
                };
                requests.fetch_add(1, Ordering::Relaxed);
                if let Err(e) = result {
                    errors.lock().unwrap().push(e);
                }
            }
        }));
    }

    let started = Instant::now();
    let mut samples: Vec<Sample> = Vec::new();
    while started.elapsed() < Duration::from_secs(secs) {
        tokio::time::sleep(Duration::from_secs(5)).await;
        let connections: i64 = observer
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE usename = 'rg_app'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        samples.push((
            started.elapsed().as_secs(),
            rss_kib(pid),
            open_fds(pid),
            connections,
            requests.load(Ordering::Relaxed),
        ));
    }
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    let jobs: Vec<(String, i64)> = observer
        .query(
            "SELECT status, count(*) FROM app.jobs GROUP BY 1 ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let events: i64 = observer
        .query_one("SELECT count(*) FROM app.usage_events", &[])
        .await
        .unwrap()
        .get(0);
    kill(Pid::from_raw(pid as i32), Signal::SIGTERM).unwrap();
    assert!(server.wait().unwrap().success());

    println!("  time   RSS (MiB)   fds   db conns   requests");
    for (t, rss, fds, conns, reqs) in &samples {
        println!(
            "{t:>6}   {:>9.1}   {fds:>3}   {conns:>8}   {reqs:>8}",
            *rss as f64 / 1024.0
        );
    }
    let total = requests.load(Ordering::Relaxed);
    println!(
        "{total} requests in {secs} s ({:.0}/s), jobs {jobs:?}, {events} usage events, {} mock calls",
        total as f64 / secs as f64,
        mock.calls()
    );
    let errors = errors.lock().unwrap();
    assert!(
        errors.is_empty(),
        "{} errors, first: {:?}",
        errors.len(),
        errors.first()
    );
    assert!(
        jobs.iter()
            .all(|(s, _)| s == "succeeded" || s == "queued" || s == "running"),
        "{jobs:?}"
    );
    // No growth trend: the last third's mean RSS and fds within 15% of the middle third's.
    let third = samples.len() / 3;
    assert!(third >= 1, "too short to judge a trend");
    let mean =
        |xs: &[Sample], f: &dyn Fn(&Sample) -> f64| xs.iter().map(f).sum::<f64>() / xs.len() as f64;
    let (middle, last) = (&samples[third..2 * third], &samples[2 * third..]);
    let rss = (mean(middle, &|s| s.1 as f64), mean(last, &|s| s.1 as f64));
    let fds = (mean(middle, &|s| s.2 as f64), mean(last, &|s| s.2 as f64));
    println!(
        "RSS middle third {:.1} MiB, last third {:.1} MiB; fds {:.0} → {:.0}",
        rss.0 / 1024.0,
        rss.1 / 1024.0,
        fds.0,
        fds.1
    );
    assert!(rss.1 <= rss.0 * 1.15, "RSS grew: {rss:?}");
    assert!(
        fds.1 <= fds.0 * 1.15 + 5.0,
        "file descriptors grew: {fds:?}"
    );
    assert!(
        samples.iter().all(|s| s.3 <= 16 + 2),
        "more database connections than the pool (16) plus the listener and the meter"
    );
}
