//! Graph explorers: a nested traversal costs a fixed handful of statements whatever its fan-out
//! (no N+1), and each level's page is served from the tenant-prefixed index without a sort.

mod common;

use std::sync::Arc;
use std::time::Instant;

use common::{seed_tenant, Seeded, TestDb};
use research_graph::features::Features;
use research_graph::graph::{EdgeListing, EdgeOrder, EdgeVia};
use research_graph::graphql::loaders::child_page_sql;
use research_graph::graphql::pagination::Window;
use research_graph::graphql::{build_schema, with_request_data, Limits};
use research_graph::tenants::settings::{SettingsCache, SETTINGS_TTL};
use serde_json::{json, Value};
use uuid::Uuid;

/// A star of stars: a root with `fan` outgoing relations, each target with `fan` of its own,
/// and a mention for every node; returns the root's id.
async fn star(t: &TestDb, a: &Seeded, fan: i32) -> Uuid {
    let su = t.superuser().await;
    let root: Uuid = su
        .query_one(
            "INSERT INTO app.nodes (tenant_id, node_type, name, key) VALUES ($1, 'Method', 'root', 'root') RETURNING id",
            &[&a.tenant.0],
        )
        .await
        .unwrap()
        .get(0);
    su.execute(
        "WITH lvl1 AS (
             INSERT INTO app.nodes (tenant_id, node_type, name, key)
             SELECT $1, 'Task', 'child ' || i, 'child ' || i FROM generate_series(1, $3::int) i RETURNING id, name),
         e1 AS (INSERT INTO app.edges (tenant_id, source_id, target_id, relation_type)
             SELECT $1, $2, id, 'USED-FOR' FROM lvl1),
         lvl2 AS (
             INSERT INTO app.nodes (tenant_id, node_type, name, key)
             SELECT $1, 'Dataset', 'grandchild ' || i || '.' || j, 'grandchild ' || i || '.' || j
             FROM generate_series(1, $3::int) i, generate_series(1, $3::int) j RETURNING id, name)
         INSERT INTO app.edges (tenant_id, source_id, target_id, relation_type)
         SELECT $1, c.id, g.id, 'EVALUATE-FOR' FROM lvl1 c
         JOIN lvl2 g ON g.name LIKE 'grandchild ' || substr(c.name, 7) || '.%'",
        &[&a.tenant.0, &root, &fan],
    )
    .await
    .unwrap();
    su.execute(
        "INSERT INTO app.entity_mentions (tenant_id, node_id, section_id, quote, start_offset, end_offset, agent, model, prompt_version)
         SELECT n.tenant_id, n.id, $2, 'GraphNet', 11, 19, 'extractor', 'offline', 'v1' FROM app.nodes n WHERE n.tenant_id = $1
         ON CONFLICT DO NOTHING",
        &[&a.tenant.0, &a.section],
    )
    .await
    .unwrap();
    su.batch_execute("ANALYZE").await.unwrap();
    root
}

const EXPLORE: &str = "query($id: ID!) { graphNode(id: $id) { name
    outgoing(first: 10) { totalCount nodes { relationType target { name
        outgoing(first: 10) { totalCount nodes { target { name mentions(first: 3) { totalCount nodes { quote } } } } }
    } } } } }";

/// Executes `query` as `a`'s owner straight on the schema; returns the data and the number of
/// statements the request's tenant session ran.
async fn execute(t: &TestDb, a: &Seeded, query: &str, vars: Value) -> (Value, usize) {
    let schema = build_schema(true, &Limits::default());
    let session = Arc::new(t.session(a.tenant, a.owner).await);
    let request =
        async_graphql::Request::new(query).variables(async_graphql::Variables::from_json(vars));
    let request = with_request_data(
        request,
        &session,
        Features::default(),
        Arc::new(SettingsCache::new(SETTINGS_TTL, 10)),
        None,
    );
    let response = schema.execute(request).await;
    assert!(response.errors.is_empty(), "{:?}", response.errors);
    let count = session.statement_count();
    Arc::try_unwrap(session)
        .ok()
        .unwrap()
        .commit()
        .await
        .unwrap();
    (response.data.into_json().unwrap(), count)
}

#[tokio::test]
async fn a_three_level_explorer_query_costs_a_fixed_number_of_statements() {
    let t = TestDb::new().await;
    let a = seed_tenant(&t, "alpha", "10.1/a", "k").await;
    let root = star(&t, &a, 10).await;
    let (data, statements) = execute(&t, &a, EXPLORE, json!({ "id": root.to_string() })).await;
    let level1 = data["graphNode"]["outgoing"]["nodes"].as_array().unwrap();
    assert_eq!(level1.len(), 10);
    assert_eq!(data["graphNode"]["outgoing"]["totalCount"], 10);
    let level2 = level1[3]["target"]["outgoing"]["nodes"].as_array().unwrap();
    assert_eq!(level2.len(), 10);
    assert_eq!(level2[0]["target"]["mentions"]["totalCount"], 1);
    // 10 + 100 nodes, 110 relations, 100 mention lists; one statement per level and type:
    // root, level-1 edges, their count, targets, level-2 edges, their count, targets,
    // mentions, mention counts.
    println!("explorer query over 111 nodes: {statements} statements");
    assert!(statements <= 9, "{statements} statements for 111 nodes");

    // The same query over a wider star costs exactly as many statements.
    let b = seed_tenant(&t, "beta", "10.1/b", "k").await;
    let wide = star(&t, &b, 20).await;
    let (_, wider) = execute(&t, &b, EXPLORE, json!({ "id": wide.to_string() })).await;
    assert_eq!(wider, statements, "independent of fan-out");
}

/// The page of a hub's relations is read from the (tenant_id, source_id, created_at, id) index:
/// `first + 1` entries, no sort of the hub's relations.
#[tokio::test]
async fn a_hubs_first_page_reads_the_index_not_all_its_relations() {
    let t = TestDb::new().await;
    let a = seed_tenant(&t, "alpha", "10.1/a", "k").await;
    let su = t.superuser().await;
    // The hub's 5,000 relations among 25,000 of the tenant, interleaved in time.
    su.execute(
        "WITH others AS (INSERT INTO app.nodes (tenant_id, node_type, name, key)
             SELECT $1, 'Task', 'n' || i, 'n' || i FROM generate_series(1, 5000) i RETURNING id)
         INSERT INTO app.edges (tenant_id, source_id, target_id, relation_type, weight, created_at)
         SELECT $1, $2, id, 'USED-FOR', random(), now() - random() * interval '30 days' FROM others",
        &[&a.tenant.0, &a.source_node],
    )
    .await
    .unwrap();
    su.execute(
        "WITH ranked AS (SELECT id, row_number() OVER (ORDER BY id) AS r FROM app.nodes WHERE tenant_id = $1 AND id <> $2)
         INSERT INTO app.edges (tenant_id, source_id, target_id, relation_type, weight, created_at)
         SELECT $1, s.id, d.id, 'COMPARE', random(), now() - random() * interval '30 days'
         FROM generate_series(1, 20000) g
         JOIN ranked s ON s.r = 1 + (g % 4000)
         JOIN ranked d ON d.r = 1 + ((g * 7919) % 5000)
         WHERE s.id <> d.id ON CONFLICT DO NOTHING",
        &[&a.tenant.0, &a.source_node],
    )
    .await
    .unwrap();
    su.batch_execute("ANALYZE").await.unwrap();
    let s = t.session(a.tenant, a.owner).await;
    for order in [
        EdgeOrder::CreatedAtAsc,
        EdgeOrder::CreatedAtDesc,
        EdgeOrder::WeightDesc,
    ] {
        let window = Window::new(Some(10), None, None, None, 100).unwrap();
        let listing = EdgeListing::new(EdgeVia::Outgoing, None, Some(order), window).unwrap();
        let sql = child_page_sql(&listing, vec![a.source_node]);
        let rows = s
            .query(
                &format!("EXPLAIN (ANALYZE, FORMAT JSON) {}", sql.text),
                &sql.params(),
            )
            .await
            .unwrap();
        let plan: Value = rows[0].get(0);
        let text = plan.to_string();
        assert!(!text.contains("\"Sort\""), "{order:?} sorts: {text}");
        assert!(
            text.contains("edges_source"),
            "{order:?} uses the source index: {text}"
        );
        // Rows read from the index: the page and one more, not 5,000.
        fn max_rows(node: &Value) -> i64 {
            let here = if node.get("Index Name").is_some() {
                node["Actual Rows"].as_i64().unwrap_or(0)
            } else {
                0
            };
            node.get("Plans")
                .and_then(|p| p.as_array())
                .map_or(here, |ps| {
                    ps.iter().map(max_rows).max().unwrap_or(0).max(here)
                })
        }
        assert!(max_rows(&plan[0]["Plan"]) <= 11, "{order:?}: {text}");
    }
}

/// A rough timing on a generated tenant of 100,000 relations (the full benchmark is in bench/):
/// `cargo test --test explorer -- --ignored --nocapture`.
#[tokio::test]
#[ignore]
async fn timing_on_a_100k_edge_tenant() {
    let t = TestDb::new().await;
    let a = seed_tenant(&t, "alpha", "10.1/a", "k").await;
    let su = t.superuser().await;
    let started = Instant::now();
    su.execute(
        "INSERT INTO app.nodes (tenant_id, node_type, name, key)
         SELECT $1, 'Method', 'node ' || i, 'node ' || i FROM generate_series(1, 20000) i",
        &[&a.tenant.0],
    )
    .await
    .unwrap();
    // A power-law-ish graph: sources drawn towards low ranks, so a few hubs carry many edges.
    su.execute(
        "WITH ranked AS (SELECT id, row_number() OVER (ORDER BY name) AS r FROM app.nodes WHERE tenant_id = $1),
              pairs AS MATERIALIZED (
                  SELECT 1 + floor(power(random(), 3) * 20000)::int AS s,
                         1 + floor(random() * 20000)::int AS d
                  FROM generate_series(1, 101000))
         INSERT INTO app.edges (tenant_id, source_id, target_id, relation_type)
         SELECT $1, src.id, dst.id, 'USED-FOR'
         FROM pairs p JOIN ranked src ON src.r = p.s JOIN ranked dst ON dst.r = p.d
         WHERE src.id <> dst.id
         ON CONFLICT DO NOTHING",
        &[&a.tenant.0],
    )
    .await
    .unwrap();
    su.batch_execute("VACUUM ANALYZE").await.unwrap();
    let edges: i64 = su
        .query_one(
            "SELECT count(*) FROM app.edges WHERE tenant_id = $1",
            &[&a.tenant.0],
        )
        .await
        .unwrap()
        .get(0);
    let hub: Uuid = su
        .query_one(
            "SELECT source_id FROM app.edges WHERE tenant_id = $1 GROUP BY source_id ORDER BY count(*) DESC LIMIT 1",
            &[&a.tenant.0],
        )
        .await
        .unwrap()
        .get(0);
    println!("generated {edges} edges in {:?}", started.elapsed());

    // The walk alone, in SQL, for comparison with the whole GraphQL request.
    let mut times = Vec::new();
    let mut found = (0, 0);
    for _ in 0..7 {
        let s = t.session(a.tenant, a.owner).await;
        let started = Instant::now();
        let rows = s
            .query(
                "SELECT kind FROM app.neighborhood($1, 3, NULL, NULL, 2000)",
                &[&hub],
            )
            .await
            .unwrap();
        times.push(started.elapsed());
        found = (
            rows.iter()
                .filter(|r| r.get::<_, &str>(0) == "node")
                .count(),
            rows.iter()
                .filter(|r| r.get::<_, &str>(0) == "edge")
                .count(),
        );
        s.commit().await.unwrap();
    }
    times.sort();
    println!(
        "app.neighborhood(depth 3, limit 2000) alone: median {:?} for {} nodes and {} edges",
        times[3], found.0, found.1
    );

    for (name, query, vars) in [
        ("explorer, 3 levels from the biggest hub", EXPLORE, json!({ "id": hub.to_string() })),
        (
            "neighborhood(depth: 3, limit: 2000) from the biggest hub",
            "query($id: ID!) { neighborhood(nodeId: $id, depth: 3, limit: 2000) { truncated nodes { depth } edges { relationType } } }",
            json!({ "id": hub.to_string() }),
        ),
        (
            "neighborhood(depth: 3, limit: 200)",
            "query($id: ID!) { neighborhood(nodeId: $id, depth: 3, limit: 200) { truncated nodes { depth } edges { relationType } } }",
            json!({ "id": hub.to_string() }),
        ),
    ] {
        let mut times = Vec::new();
        let mut statements = 0;
        for _ in 0..7 {
            let started = Instant::now();
            let (_, n) = execute(&t, &a, query, vars.clone()).await;
            times.push(started.elapsed());
            statements = n;
        }
        times.sort();
        println!("{name}: median {:?}, min {:?}, {statements} statements", times[3], times[0]);
    }
}
