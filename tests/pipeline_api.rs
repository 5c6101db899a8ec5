//! The pipeline through GraphQL: queueing, listing, cancelling and re-running jobs, reasoning,
//! merge candidates, and `jobProgress` over graphql-ws (LISTEN/NOTIFY), all under tenant
//! isolation. Extraction runs offline here (the rule-based extractor), so no model is called.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::http::{app, code, gql, hs256_settings, token, AppOptions};
use common::workers::drain;
use common::TestDb;
use futures_util::{SinkExt, StreamExt};
use poem::listener::{Acceptor, Listener, TcpListener};
use research_graph::auth::{Authenticator, JwtVerifier};
use research_graph::features::Features;
use research_graph::graphql::{build_schema, Limits};
use research_graph::http::{router, AppState};
use research_graph::ids::{Role, TenantId, UserId};
use research_graph::pipeline::demo::PAPERS;
use research_graph::pipeline::events::JobEvents;
use research_graph::pipeline::worker::Worker;
use research_graph::tenants::settings::{SettingsCache, SETTINGS_TTL};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

fn offline_worker(t: &TestDb) -> Worker {
    common::workers::offline_worker(&t.db, "api-worker").0
}

const INGEST: &str =
    "mutation($i: IngestPaperInput!) { ingestPaper(input: $i) { paper { id rowId } } }";
const PROCESS: &str = "mutation($p: ID!) { processPaper(paperId: $p) { id kind status attempts maxAttempts paper { title } } }";
const JOB: &str = "query($id: UUID!) { pipelineJob(id: $id) { id status stage attempts lastError
    progress { sectionsTotal sectionsDone sectionsFailed entities relations mentions dropped cost errors } } }";

struct Tenant {
    tenant: TenantId,
    owner: UserId,
    headers: Vec<(&'static str, String)>,
}

async fn tenant(t: &TestDb, slug: &str) -> Tenant {
    let (tenant, owner) = t.create_tenant(slug).await;
    Tenant {
        tenant,
        owner,
        headers: vec![("x-tenant-id", tenant.to_string())],
    }
}

#[tokio::test]
async fn papers_are_queued_listed_processed_and_reasoned_over_through_graphql() {
    let t = TestDb::new().await;
    let a = tenant(&t, "alpha").await;
    let cli = app(&t.db, AppOptions::multi_tenant());
    let owner = token(a.owner);
    let mut papers = Vec::new();
    for (_, text) in PAPERS {
        let (_, body) = gql(
            &cli,
            "/graphql",
            Some(&owner),
            &a.headers,
            INGEST,
            json!({ "i": { "content": text, "format": "MARKDOWN" } }),
        )
        .await;
        papers.push(
            body["data"]["ingestPaper"]["paper"]["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    let mut jobs = Vec::new();
    for p in &papers {
        let (_, body) = gql(
            &cli,
            "/graphql",
            Some(&owner),
            &a.headers,
            PROCESS,
            json!({ "p": p }),
        )
        .await;
        let job = &body["data"]["processPaper"];
        assert_eq!(job["status"], "QUEUED", "{body}");
        assert_eq!(job["kind"], "PROCESS_PAPER");
        jobs.push(job["id"].as_str().unwrap().to_owned());
    }
    // Asking again returns the queued job rather than a second one.
    let (_, body) = gql(
        &cli,
        "/graphql",
        Some(&owner),
        &a.headers,
        PROCESS,
        json!({ "p": papers[0] }),
    )
    .await;
    assert_eq!(body["data"]["processPaper"]["id"], jobs[0].as_str());

    let (_, body) = gql(
        &cli,
        "/graphql",
        Some(&owner),
        &a.headers,
        "{ pipelineJobs(first: 10, filter: { status: [QUEUED] }) { totalCount nodes { id } } }",
        json!({}),
    )
    .await;
    assert_eq!(body["data"]["pipelineJobs"]["totalCount"], 3, "{body}");

    let ran = drain(&offline_worker(&t)).await;
    assert_eq!(ran.len(), 3);
    let (_, body) = gql(
        &cli,
        "/graphql",
        Some(&owner),
        &a.headers,
        JOB,
        json!({ "id": jobs[0] }),
    )
    .await;
    let job = &body["data"]["pipelineJob"];
    assert_eq!(job["status"], "SUCCEEDED", "{body}");
    assert_eq!(
        job["progress"]["sectionsTotal"],
        job["progress"]["sectionsDone"]
    );
    assert!(job["progress"]["entities"].as_i64().unwrap() > 0, "{body}");
    assert_eq!(
        job["progress"]["cost"], "0.00",
        "offline extraction costs nothing"
    );

    // Offline provenance on what the rules extracted.
    let (_, body) = gql(
        &cli,
        "/graphql",
        Some(&owner),
        &a.headers,
        "{ graphNodes(first: 100) { totalCount nodes { name mentions(first: 1) { nodes { agent model quote } } } } }",
        json!({}),
    )
    .await;
    let nodes = body["data"]["graphNodes"]["nodes"].as_array().unwrap();
    assert!(nodes.len() >= 8, "{body}");
    for n in nodes {
        let m = &n["mentions"]["nodes"][0];
        assert_eq!(m["agent"], "offline-rules", "{n}");
        assert_eq!(m["model"], "offline");
    }

    let (_, body) = gql(
        &cli,
        "/graphql",
        Some(&owner),
        &a.headers,
        "mutation { runReasoning { id kind status } }",
        json!({}),
    )
    .await;
    assert_eq!(body["data"]["runReasoning"]["kind"], "REASONING", "{body}");
    drain(&offline_worker(&t)).await;
    let (_, body) = gql(
        &cli,
        "/graphql",
        Some(&owner),
        &a.headers,
        "{ insights(first: 50) { nodes { insightType statement prompt: promptVersion
            supportingNodes(first: 10) { totalCount } supportingEdges(first: 10) { totalCount } } } }",
        json!({}),
    )
    .await;
    let insights = body["data"]["insights"]["nodes"].as_array().unwrap();
    // The demo papers disagree: one says SGT outperforms GIN on ZINC, another the reverse.
    assert!(
        insights.iter().any(|i| {
            let s = i["statement"].as_str().unwrap();
            i["insightType"] == "CONFLICT"
                && s.contains("Sparse Graph Transformer")
                && s.contains("Graph Isomorphism Network")
                && s.contains("ZINC")
        }),
        "{body}"
    );
    // …and two of them report different MAE values for SGT on QM9.
    assert!(
        insights.iter().any(|i| {
            let s = i["statement"].as_str().unwrap();
            i["insightType"] == "CONFLICT"
                && s.contains("QM9")
                && s.contains("0.041")
                && s.contains("0.055")
        }),
        "{body}"
    );
    for i in insights {
        assert!(
            i["supportingNodes"]["totalCount"].as_i64().unwrap() > 0,
            "every insight rests on nodes: {i}"
        );
    }
    // A second run proposes nothing new.
    gql(
        &cli,
        "/graphql",
        Some(&owner),
        &a.headers,
        "mutation { runReasoning { id } }",
        json!({}),
    )
    .await;
    drain(&offline_worker(&t)).await;
    let (_, again) = gql(
        &cli,
        "/graphql",
        Some(&owner),
        &a.headers,
        "{ insights(first: 50) { totalCount } }",
        json!({}),
    )
    .await;
    assert_eq!(
        again["data"]["insights"]["totalCount"].as_u64().unwrap() as usize,
        insights.len()
    );
}

#[tokio::test]
async fn viewers_cannot_start_jobs_and_other_tenants_cannot_see_them() {
    let t = TestDb::new().await;
    let a = tenant(&t, "alpha").await;
    let b = tenant(&t, "beta").await;
    let viewer = t.add_member(a.tenant, a.owner, Role::Viewer).await;
    let cli = app(&t.db, AppOptions::multi_tenant());
    let (_, body) = gql(
        &cli,
        "/graphql",
        Some(&token(a.owner)),
        &a.headers,
        INGEST,
        json!({ "i": { "content": PAPERS[0].1, "format": "MARKDOWN" } }),
    )
    .await;
    let paper = body["data"]["ingestPaper"]["paper"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (_, body) = gql(
        &cli,
        "/graphql",
        Some(&token(viewer)),
        &a.headers,
        PROCESS,
        json!({ "p": paper }),
    )
    .await;
    assert_eq!(code(&body), Some("FORBIDDEN"), "{body}");
    let (_, body) = gql(
        &cli,
        "/graphql",
        Some(&token(a.owner)),
        &a.headers,
        PROCESS,
        json!({ "p": paper }),
    )
    .await;
    let job = body["data"]["processPaper"]["id"]
        .as_str()
        .unwrap()
        .to_owned();

    // The viewer may watch it.
    let (_, body) = gql(
        &cli,
        "/graphql",
        Some(&token(viewer)),
        &a.headers,
        JOB,
        json!({ "id": job }),
    )
    .await;
    assert_eq!(body["data"]["pipelineJob"]["status"], "QUEUED", "{body}");

    // Beta sees no such job and cannot touch it; nor the paper.
    let (_, body) = gql(
        &cli,
        "/graphql",
        Some(&token(b.owner)),
        &b.headers,
        JOB,
        json!({ "id": job }),
    )
    .await;
    assert_eq!(body["data"]["pipelineJob"], Value::Null, "{body}");
    let (_, body) = gql(
        &cli,
        "/graphql",
        Some(&token(b.owner)),
        &b.headers,
        "mutation($id: UUID!) { cancelJob(id: $id) { id } }",
        json!({ "id": job }),
    )
    .await;
    assert_eq!(code(&body), Some("NOT_FOUND"), "{body}");
    let (_, body) = gql(
        &cli,
        "/graphql",
        Some(&token(b.owner)),
        &b.headers,
        PROCESS,
        json!({ "p": paper }),
    )
    .await;
    assert_eq!(code(&body), Some("NOT_FOUND"), "{body}");

    // The owner cancels; a cancelled job cannot be cancelled again, but can be re-run.
    let cancel = "mutation($id: UUID!) { cancelJob(id: $id) { status } }";
    let (_, body) = gql(
        &cli,
        "/graphql",
        Some(&token(a.owner)),
        &a.headers,
        cancel,
        json!({ "id": job }),
    )
    .await;
    assert_eq!(body["data"]["cancelJob"]["status"], "CANCELLED", "{body}");
    let (_, body) = gql(
        &cli,
        "/graphql",
        Some(&token(a.owner)),
        &a.headers,
        cancel,
        json!({ "id": job }),
    )
    .await;
    assert_eq!(code(&body), Some("BAD_USER_INPUT"), "{body}");
    let (_, body) = gql(
        &cli,
        "/graphql",
        Some(&token(a.owner)),
        &a.headers,
        "mutation($id: UUID!) { rerunJob(id: $id) { status attempts } }",
        json!({ "id": job }),
    )
    .await;
    assert_eq!(body["data"]["rerunJob"]["status"], "QUEUED", "{body}");
}

#[tokio::test]
async fn merge_candidates_are_proposed_for_review_and_merged_on_request() {
    let t = TestDb::new().await;
    let a = tenant(&t, "alpha").await;
    let cli = app(&t.db, AppOptions::multi_tenant());
    let owner = token(a.owner);
    for text in [
        "# Deep Residual Learning\n\n## Abstract\nWe propose ResNet50 for image classification.\n",
        "# Residual Networks Again\n\n## Abstract\nWe propose ResNet-50 for image classification.\n",
    ] {
        let (_, body) = gql(&cli, "/graphql", Some(&owner), &a.headers, INGEST,
            json!({ "i": { "content": text, "format": "MARKDOWN" } })).await;
        let paper = body["data"]["ingestPaper"]["paper"]["id"].as_str().unwrap().to_owned();
        gql(&cli, "/graphql", Some(&owner), &a.headers, PROCESS, json!({ "p": paper })).await;
    }
    drain(&offline_worker(&t)).await;
    let list = "{ mergeCandidates(first: 10) { totalCount nodes { id score reason status nodeA { name } nodeB { name } } } }";
    let (_, body) = gql(&cli, "/graphql", Some(&owner), &a.headers, list, json!({})).await;
    let candidates = body["data"]["mergeCandidates"]["nodes"]
        .as_array()
        .unwrap()
        .clone();
    let pair = candidates
        .iter()
        .find(|c| {
            let names = [
                c["nodeA"]["name"].as_str().unwrap(),
                c["nodeB"]["name"].as_str().unwrap(),
            ];
            names.contains(&"ResNet50") && names.contains(&"ResNet-50")
        })
        .unwrap_or_else(|| panic!("no ResNet candidate: {body}"));
    assert!(pair["score"].as_f64().unwrap() >= 0.85);
    // Both nodes still exist: nothing was merged automatically.
    let (_, body) = gql(
        &cli,
        "/graphql",
        Some(&owner),
        &a.headers,
        "{ graphNodes(first: 50, filter: { nodeTypes: [METHOD] }) { nodes { name } } }",
        json!({}),
    )
    .await;
    let methods: Vec<&str> = body["data"]["graphNodes"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["name"].as_str().unwrap())
        .collect();
    assert!(
        methods.contains(&"ResNet50") && methods.contains(&"ResNet-50"),
        "{body}"
    );

    let resolve = "mutation($id: UUID!, $d: CandidateDecision!) { resolveMergeCandidate(id: $id, decision: $d) { name aliases } }";
    let (_, body) = gql(
        &cli,
        "/graphql",
        Some(&owner),
        &a.headers,
        resolve,
        json!({ "id": pair["id"], "d": "MERGE" }),
    )
    .await;
    let kept = &body["data"]["resolveMergeCandidate"];
    assert!(kept["aliases"].as_array().unwrap().len() == 1, "{body}");
    let (_, body) = gql(
        &cli,
        "/graphql",
        Some(&owner),
        &a.headers,
        resolve,
        json!({ "id": pair["id"], "d": "DISMISS" }),
    )
    .await;
    assert!(
        code(&body).is_some(),
        "a resolved candidate cannot be resolved again: {body}"
    );
}

// ---------------------------------------------------------------------------------------------
// jobProgress over graphql-ws

async fn serve(t: &TestDb) -> String {
    let state = Arc::new(AppState {
        db: t.db.clone(),
        schema: build_schema(true, &Limits::default()),
        graphiql: false,
        auth: Authenticator::Jwt(Box::new(JwtVerifier::new(hs256_settings()).unwrap())),
        features: Features {
            multi_tenant: true,
            ..Features::default()
        },
        join_role: None,
        settings_cache: Arc::new(SettingsCache::new(SETTINGS_TTL, 100)),
        key_ring: None,
        events: Some(JobEvents::start(t.db.clone())),
    });
    let acceptor = TcpListener::bind("127.0.0.1:0")
        .into_acceptor()
        .await
        .unwrap();
    let addr = acceptor.local_addr()[0].as_socket_addr().copied().unwrap();
    tokio::spawn(poem::Server::new_with_acceptor(acceptor).run(router(state)));
    format!("ws://{addr}/graphql")
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(url: &str, init: Value) -> Ws {
    let mut request = url.into_client_request().unwrap();
    request.headers_mut().insert(
        "sec-websocket-protocol",
        "graphql-transport-ws".parse().unwrap(),
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    ws.send(Message::text(
        json!({ "type": "connection_init", "payload": init }).to_string(),
    ))
    .await
    .unwrap();
    ws
}

/// The next protocol message (skipping pings), or `None` when the connection closed.
async fn next(ws: &mut Ws) -> Option<Value> {
    loop {
        let m = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("a message within 10 s")?;
        match m.ok()? {
            Message::Text(text) => {
                let v: Value = serde_json::from_str(&text).unwrap();
                if v["type"] == "ping" {
                    continue;
                }
                return Some(v);
            }
            Message::Close(_) => return None,
            _ => continue,
        }
    }
}

async fn queue_paper(t: &TestDb, a: &Tenant) -> String {
    let cli = app(&t.db, AppOptions::multi_tenant());
    let owner = token(a.owner);
    let (_, body) = gql(
        &cli,
        "/graphql",
        Some(&owner),
        &a.headers,
        INGEST,
        json!({ "i": { "content": PAPERS[0].1, "format": "MARKDOWN" } }),
    )
    .await;
    let paper = body["data"]["ingestPaper"]["paper"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (_, body) = gql(
        &cli,
        "/graphql",
        Some(&owner),
        &a.headers,
        PROCESS,
        json!({ "p": paper }),
    )
    .await;
    body["data"]["processPaper"]["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Sends a `jobProgress` subscription for `job` (id "1").
async fn subscribe_to_job(ws: &mut Ws, job: &str) {
    ws.send(Message::text(
        json!({ "id": "1", "type": "subscribe",
        "payload": { "query": SUBSCRIBE, "variables": { "id": job } } })
        .to_string(),
    ))
    .await
    .unwrap();
}

const SUBSCRIBE: &str = "subscription($id: UUID!) { jobProgress(jobId: $id) { status stage progress { sectionsDone sectionsTotal } } }";

#[tokio::test]
async fn job_progress_is_pushed_over_graphql_ws_until_the_job_ends() {
    let t = TestDb::new().await;
    let a = tenant(&t, "alpha").await;
    let url = serve(&t).await;
    let job = queue_paper(&t, &a).await;
    let mut ws = connect(
        &url,
        json!({ "Authorization": format!("Bearer {}", token(a.owner)), "x-tenant-id": a.tenant.to_string() }),
    )
    .await;
    assert_eq!(next(&mut ws).await.unwrap()["type"], "connection_ack");
    subscribe_to_job(&mut ws, &job).await;
    let first = next(&mut ws).await.unwrap();
    assert_eq!(
        first["payload"]["data"]["jobProgress"]["status"], "QUEUED",
        "{first}"
    );

    // Another process's worker would do the same: the updates travel by NOTIFY.
    let worker = offline_worker(&t);
    let ran = drain(&worker).await;
    assert_eq!(ran.len(), 1);
    let mut updates = Vec::new();
    loop {
        let m = next(&mut ws).await.expect("the stream completes");
        match m["type"].as_str() {
            Some("next") => updates.push(m["payload"]["data"]["jobProgress"].clone()),
            Some("complete") => break,
            other => panic!("unexpected {other:?}: {m}"),
        }
    }
    let last = updates.last().unwrap();
    assert_eq!(last["status"], "SUCCEEDED", "{updates:?}");
    assert_eq!(
        last["progress"]["sectionsDone"],
        last["progress"]["sectionsTotal"]
    );
    assert!(
        updates.iter().any(|u| u["status"] == "RUNNING"),
        "intermediate states are pushed: {updates:?}"
    );
}

#[tokio::test]
async fn subscriptions_need_a_member_and_see_only_their_tenants_jobs() {
    let t = TestDb::new().await;
    let a = tenant(&t, "alpha").await;
    let b = tenant(&t, "beta").await;
    let url = serve(&t).await;
    let job = queue_paper(&t, &a).await;

    // No token: the connection is refused at init.
    let mut ws = connect(&url, json!({})).await;
    assert!(
        next(&mut ws)
            .await
            .is_none_or(|m| m["type"] != "connection_ack"),
        "an unauthenticated init is refused"
    );

    // Beta's owner naming alpha: refused at init.
    let mut ws = connect(
        &url,
        json!({ "Authorization": format!("Bearer {}", token(b.owner)),
        "x-tenant-id": a.tenant.to_string() }),
    )
    .await;
    assert!(next(&mut ws)
        .await
        .is_none_or(|m| m["type"] != "connection_ack"));

    // Beta in its own tenant asking for alpha's job: not found.
    let mut ws = connect(
        &url,
        json!({ "Authorization": format!("Bearer {}", token(b.owner)),
        "x-tenant-id": b.tenant.to_string() }),
    )
    .await;
    assert_eq!(next(&mut ws).await.unwrap()["type"], "connection_ack");
    subscribe_to_job(&mut ws, &job).await;
    let m = next(&mut ws).await.unwrap();
    assert_eq!(m["payload"]["data"], Value::Null, "{m}");
    assert_eq!(
        m["payload"]["errors"][0]["extensions"]["code"], "NOT_FOUND",
        "{m}"
    );
    assert_eq!(next(&mut ws).await.unwrap()["type"], "complete");
}

#[tokio::test]
async fn progress_from_a_worker_in_another_process_reaches_the_subscriber() {
    let t = TestDb::new().await;
    let a = tenant(&t, "alpha").await;
    let url_ws = serve(&t).await;
    let job = queue_paper(&t, &a).await;
    let mut ws = connect(
        &url_ws,
        json!({ "Authorization": format!("Bearer {}", token(a.owner)), "x-tenant-id": a.tenant.to_string() }),
    )
    .await;
    assert_eq!(next(&mut ws).await.unwrap()["type"], "connection_ack");
    subscribe_to_job(&mut ws, &job).await;
    assert_eq!(
        next(&mut ws).await.unwrap()["payload"]["data"]["jobProgress"]["status"],
        "QUEUED"
    );
    let mut worker = tokio::process::Command::new(env!("CARGO_BIN_EXE_research-graph"))
        .arg("worker")
        .env("DATABASE_URL", common::database_url(&t.app_config()))
        .env_remove("ADMIN_DATABASE_URL")
        .env_remove("GEMINI_API_KEY")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut statuses = Vec::new();
    loop {
        let m = next(&mut ws).await.expect("the stream completes");
        match m["type"].as_str() {
            Some("next") => statuses.push(
                m["payload"]["data"]["jobProgress"]["status"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
            ),
            Some("complete") => break,
            other => panic!("unexpected {other:?}: {m}"),
        }
    }
    assert_eq!(
        statuses.last().map(String::as_str),
        Some("SUCCEEDED"),
        "{statuses:?}"
    );
    assert!(statuses.iter().any(|s| s == "RUNNING"), "{statuses:?}");
    nix_term(&worker);
    let status = tokio::time::timeout(Duration::from_secs(20), worker.wait())
        .await
        .expect("the worker stops on SIGTERM")
        .unwrap();
    assert!(status.success());
}

fn nix_term(child: &tokio::process::Child) {
    let pid = child.id().expect("running") as i32;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
}
