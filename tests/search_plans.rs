//! SECURITY_TESTS.md case 10: full-text and trigram searches, run as the application role under
//! RLS, use their indexes, on tables large enough for the planner to prefer them.
//!
//! Under RLS a query's own condition may only be checked inside an index scan when its operator
//! is LEAKPROOF; migration V5 marks `@@` and `%` so. The last test removes that mark in its own
//! database and shows the indexes are then lost, which is what the first test would catch.

mod common;

use common::{seed_tenant, Seeded, TestDb};
use research_graph::db::TenantSession;

/// Two tenants with 20,000 and 10,000 papers, sections (of a realistic length) and nodes;
/// vacuumed and analysed.
async fn large_tenants(t: &TestDb) -> (Seeded, Seeded) {
    let a = seed_tenant(t, "alpha", "10.1/a", "k").await;
    let b = seed_tenant(t, "beta", "10.1/b", "k").await;
    let su = t.superuser().await;
    for (seeded, n) in [(a, 20_000), (b, 10_000)] {
        su.execute(
            "INSERT INTO app.papers (tenant_id, title, abstract) \
             SELECT $1, 'A study of topic' || (g % 2000) || ' ' || md5(g::text), \
                    'We examine topic' || (g % 2000) || ' in depth.' \
             FROM generate_series(1, $2::int) g",
            &[&seeded.tenant.0, &n],
        )
        .await
        .unwrap();
        su.execute(
            "INSERT INTO app.paper_sections (tenant_id, paper_id, ordinal, content, content_hash) \
             SELECT $1, $2, g, 'Results for benchmark' || (g % 3000) || ' are reported.' || \
                    repeat(' The model is trained with stochastic gradient descent and compared with baselines.', 6), \
                    md5(g::text) \
             FROM generate_series(1, $3::int) g",
            &[&seeded.tenant.0, &seeded.paper, &n],
        )
        .await
        .unwrap();
        su.execute(
            "INSERT INTO app.nodes (tenant_id, node_type, name, key) \
             SELECT $1, 'Method', 'method ' || md5(g::text), 'm' || g FROM generate_series(1, $2::int) g",
            &[&seeded.tenant.0, &n],
        )
        .await
        .unwrap();
    }
    // VACUUM also moves new entries out of the GIN pending lists, as autovacuum would.
    su.batch_execute("VACUUM ANALYZE app.papers, app.paper_sections, app.nodes")
        .await
        .unwrap();
    (a, b)
}

/// The searches explorers and the API run, with their index and a parameter.
const SEARCHES: [(&str, &str, &str); 3] = [
    (
        "papers_search_idx",
        "SELECT id, tenant_id FROM app.papers WHERE search @@ websearch_to_tsquery('english', $1)",
        "topic1234",
    ),
    (
        "paper_sections_search_idx",
        "SELECT id, tenant_id FROM app.paper_sections WHERE search @@ websearch_to_tsquery('english', $1)",
        "benchmark2345",
    ),
    (
        "nodes_name_trgm_idx",
        "SELECT id, tenant_id FROM app.nodes WHERE name % $1",
        // md5('4242') = 'f8e59f4b2fe7c5705bf878bbd494ccdf'
        "method f8e59f4b2fe7c5705bf878bbd494ccdf",
    ),
];

/// The JSON plan of `sql` with `param`, and whether the named index serves the search condition
/// (not just the tenant condition) as an index condition.
async fn index_serves_search(
    s: &TenantSession,
    index: &str,
    sql: &str,
    param: &str,
) -> (bool, String) {
    let row = s
        .query_one(&format!("EXPLAIN (FORMAT JSON) {sql}"), &[&param])
        .await
        .unwrap();
    let plan: serde_json::Value = row.get(0);
    let text = plan.to_string();
    fn walk(node: &serde_json::Value, index: &str) -> bool {
        let here = node.get("Index Name").and_then(|v| v.as_str()) == Some(index)
            && node
                .get("Index Cond")
                .and_then(|v| v.as_str())
                .is_some_and(|c| c.contains("@@") || c.contains(" % "));
        here || node
            .get("Plans")
            .and_then(|p| p.as_array())
            .is_some_and(|plans| plans.iter().any(|p| walk(p, index)))
    }
    (walk(&plan[0]["Plan"], index), text)
}

#[tokio::test]
async fn searches_use_their_indexes_under_rls() {
    let t = TestDb::new().await;
    let (a, _b) = large_tenants(&t).await;
    let s = t.session(a.tenant, a.owner).await;
    let role: String = s
        .query_one("SELECT current_user::text", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(role, "rg_app");
    for (index, sql, param) in SEARCHES {
        let (used, plan) = index_serves_search(&s, index, sql, param).await;
        assert!(used, "{index} must serve «{sql}»; plan: {plan}");
        let rows = s.query(sql, &[&param]).await.unwrap();
        assert!(!rows.is_empty(), "«{sql}» finds something");
        assert!(
            rows.iter().all(|r| r.get::<_, uuid::Uuid>(1) == a.tenant.0),
            "only the tenant's own rows"
        );
    }
}

#[tokio::test]
async fn without_leakproof_operators_the_indexes_are_lost() {
    let t = TestDb::new().await;
    let (a, _b) = large_tenants(&t).await;
    let su = t.superuser().await;
    su.batch_execute(
        "ALTER FUNCTION pg_catalog.ts_match_vq(tsvector, tsquery) NOT LEAKPROOF;
         ALTER FUNCTION public.similarity_op(text, text) NOT LEAKPROOF;",
    )
    .await
    .unwrap();
    let s = t.session(a.tenant, a.owner).await;
    for (index, sql, param) in SEARCHES {
        let (used, plan) = index_serves_search(&s, index, sql, param).await;
        assert!(
            !used,
            "expected {index} to be unusable without LEAKPROOF; plan: {plan}"
        );
    }
}
