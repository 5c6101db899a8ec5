//! The research-graph query files (bench/queries/rg) against a real in-process server over a
//! small data set with the generator's ids: each one validates against the schema, finds the
//! rows the driver addresses, and the driver runs them all without an error.

#[path = "../../tests/common/mod.rs"]
mod common;

use clap::Parser;
use common::http::{app, gql, serve, token, AppOptions, SECRET};
use common::TestDb;
use research_graph::ids::UserId;
use research_graph_bench::ids;
use research_graph_bench::load::vars::global_id;
use research_graph_bench::load::{finish, run, Args};
use research_graph_bench::vocabulary::SEARCH_TERMS;
use serde_json::{json, Value};

const TENANTS: u64 = 2;
const NODES: u64 = 12;

/// Tenants 0 and 1 with the generator's ids: owners, `NODES` nodes (node 0 a hub with an edge
/// to every other node, the others in a ring), a paper per search term, usage events.
async fn seed(t: &TestDb) {
    let su = t.superuser().await;
    for tenant in 0..TENANTS {
        let tid = ids::tenant(tenant);
        su.execute(
            "INSERT INTO app.tenants (id, slug, name) VALUES ($1, $2, $3)",
            &[&tid, &ids::slug(tenant), &format!("Bench tenant {tenant}")],
        )
        .await
        .unwrap();
        su.execute(
            "INSERT INTO app.tenant_users (tenant_id, user_id, role) VALUES ($1, $2, 'owner')",
            &[&tid, &ids::user(tenant)],
        )
        .await
        .unwrap();
        su.execute(
            "INSERT INTO app.tenant_settings (tenant_id) VALUES ($1)",
            &[&tid],
        )
        .await
        .unwrap();
        for i in 0..NODES {
            let term = SEARCH_TERMS[i as usize % SEARCH_TERMS.len()];
            su.execute(
                "INSERT INTO app.nodes (tenant_id, id, node_type, name, key) \
                 VALUES ($1, $2, 'Method', $3, $4)",
                &[
                    &tid,
                    &ids::row("node", tenant, i),
                    &format!("{term} method {i}"),
                    &format!("{term}-method-{i}"),
                ],
            )
            .await
            .unwrap();
        }
        let mut edge = 0;
        for i in 1..NODES {
            for (source, target) in [(0, i), (i, i % (NODES - 1) + 1)] {
                su.execute(
                    "INSERT INTO app.edges (tenant_id, id, source_id, target_id, relation_type) \
                     VALUES ($1, $2, $3, $4, 'USED-FOR')",
                    &[
                        &tid,
                        &ids::row("edge", tenant, edge),
                        &ids::row("node", tenant, source),
                        &ids::row("node", tenant, target),
                    ],
                )
                .await
                .unwrap();
                edge += 1;
            }
        }
        for (i, term) in SEARCH_TERMS.iter().enumerate() {
            su.execute(
                "INSERT INTO app.papers (tenant_id, id, title, abstract, authors, year, venue) \
                 VALUES ($1, $2, $3, $4, ARRAY['A. Author', 'B. Author'], 2025, 'NeurIPS')",
                &[
                    &tid,
                    &ids::row("paper", tenant, i as u64),
                    &format!("Scalable {term} for graphs"),
                    &format!("We study {term} at scale."),
                ],
            )
            .await
            .unwrap();
        }
        // Two models within the last 30 days, one event older than that.
        for (i, (days_ago, model)) in [(1, "gemini-2.5-flash"), (5, "gemini-2.5-pro"), (40, "old")]
            .into_iter()
            .enumerate()
        {
            su.execute(
                "INSERT INTO app.usage_events (tenant_id, id, occurred_at, stage, agent, provider, \
                 model, input_tokens, output_tokens, billed_cost_micros, execution_mode, \
                 idempotency_key) \
                 VALUES ($1, $2, now() - make_interval(days => $3), 'extract', 'extractor', \
                 'gemini', $4, 1000, 200, 5000, 'hosted', $5)",
                &[
                    &tid,
                    &ids::row("event", tenant, i as u64),
                    &days_ago,
                    &model,
                    &format!("event-{i}"),
                ],
            )
            .await
            .unwrap();
        }
    }
}

fn query(name: &str) -> String {
    let path = format!("{}/queries/rg/{name}.graphql", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(path).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rg_queries_find_the_generated_rows_and_run_without_errors() {
    let t = TestDb::new().await;
    seed(&t).await;

    // What each query answers for tenant 1, with the variables the driver would send.
    let cli = app(&t.db, AppOptions::multi_tenant());
    let owner = token(UserId(ids::user(1)));
    let headers = [("x-tenant-id", ids::tenant(1).to_string())];
    let ask = |name: &'static str, variables: Value| {
        let cli = &cli;
        let owner = &owner;
        let headers = &headers;
        async move {
            let (status, body) = gql(
                cli,
                "/graphql",
                Some(owner.as_str()),
                headers,
                &query(name),
                variables,
            )
            .await;
            assert_eq!(status, 200, "{name}: {body}");
            assert!(body.get("errors").is_none(), "{name}: {body}");
            body["data"].clone()
        }
    };
    let node = |i| global_id("GraphNode", ids::row("node", 1, i));

    let q1 = ask("q1", json!({})).await;
    assert_eq!(q1["papers"]["totalCount"], SEARCH_TERMS.len());
    assert_eq!(q1["papers"]["nodes"].as_array().unwrap().len(), 20);
    assert_eq!(q1["papers"]["nodes"][0]["authors"][1], "B. Author");

    let q2 = ask("q2", json!({ "hubId": node(0) })).await;
    assert_eq!(q2["graphNode"]["id"], node(0));
    let first_hop = q2["graphNode"]["outgoing"]["nodes"].as_array().unwrap();
    assert_eq!(first_hop.len(), 10);
    for edge in first_hop {
        let second_hop = edge["target"]["outgoing"]["nodes"].as_array().unwrap();
        assert_eq!(second_hop.len(), 1, "{edge}");
        assert!(second_hop[0]["target"]["name"].is_string());
    }

    let q3 = ask("q3", json!({ "nodeId": node(7) })).await;
    assert_eq!(q3["graphNode"]["id"], node(7));
    assert!(q3["graphNode"]["name"]
        .as_str()
        .unwrap()
        .ends_with("method 7"));

    let today = chrono::Utc::now().date_naive();
    let (from, to) = research_graph_bench::load::vars::last_30_days(today);
    let q4 = ask(
        "q4",
        json!({ "from": from.to_string(), "to": to.to_string() }),
    )
    .await;
    let models: Vec<&str> = q4["usage"]["stats"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["model"].as_str().unwrap())
        .collect();
    assert_eq!(models, ["gemini-2.5-flash", "gemini-2.5-pro"]);
    assert_eq!(q4["usage"]["stats"][0]["totals"]["events"], 1);

    let q5 = ask("q5", json!({ "nodeId": node(3) })).await;
    assert_eq!(q5["neighborhood"]["truncated"], false);
    assert_eq!(
        q5["neighborhood"]["nodes"].as_array().unwrap().len(),
        NODES as usize
    );
    assert!(!q5["neighborhood"]["edges"].as_array().unwrap().is_empty());

    for term in ["graph", SEARCH_TERMS[SEARCH_TERMS.len() - 1]] {
        let q6 = ask("q6", json!({ "term": term })).await;
        let hits = q6["search"]["nodes"].as_array().unwrap();
        assert!(!hits.is_empty(), "{term}: {q6}");
        assert!(
            hits.iter().any(|h| h["paper"]["title"].is_string()),
            "{term}: {q6}"
        );
    }

    // The driver itself, every query, over a real socket.
    let url = format!("{}/graphql", serve(&t.db, AppOptions::multi_tenant()).await);
    let args = Args::try_parse_from([
        "bench-load",
        "--url",
        &url,
        "--target",
        "rg",
        "--mix",
        "q1,q2,q3,q4,q5,q6",
        "--connections",
        "2",
        "--warmup-secs",
        "0.3",
        "--secs",
        "1.5",
        "--tenants",
        &TENANTS.to_string(),
        "--nodes-per-tenant",
        &NODES.to_string(),
        "--jwt-secret",
        SECRET,
    ])
    .unwrap();
    let report = run(&args).await.unwrap();
    assert_eq!(report.errors(), 0, "{:#?}", report.error_samples);
    assert_eq!(report.warmup_errors, 0, "{:#?}", report.error_samples);
    for q in &report.queries {
        assert!(q.requests > 0, "{q:?}");
    }
    finish(&args, &report).unwrap();
}
