//! The data generator against a real, migrated database: what it writes is what was asked,
//! holds together although foreign keys and triggers were skipped during the load, is the same
//! for the same seed, stays inside its tenant under row-level security, and is skewed.

#[path = "../../tests/common/mod.rs"]
mod common;

use chrono::NaiveDate;
use common::{tenant_column, tenant_tables, TestDb};
use research_graph_bench::generate::{run, Options, Summary};
use research_graph_bench::ids;
use research_graph_bench::vocabulary::SEARCH_TERMS;
use tokio_postgres::Client;
use uuid::Uuid;

fn small(seed: u64) -> Options {
    Options {
        tenants: 3,
        first_tenant: 1,
        papers: 6,
        sections: 3,
        nodes: 60,
        edges: 300,
        mentions: 5,
        insights: 4,
        events: 200,
        days: 10,
        end_date: NaiveDate::from_ymd_opt(2025, 6, 30),
        seed,
        keep_indexes: false,
    }
}

async fn count(client: &Client, sql: &str) -> i64 {
    client
        .query_one(sql, &[])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .get(0)
}

#[tokio::test]
async fn a_small_run_writes_what_was_asked_and_holds_together() {
    let t = TestDb::new().await;
    let options = small(7);
    let summary = run(&t.admin_config(), &options).await.expect("generate");
    let db = t.superuser().await;

    // Row counts: per tenant times tenants, as asked.
    let expected = [
        ("tenants", 3),
        ("tenant_users", 3),
        ("tenant_settings", 3),
        ("papers", 3 * 6),
        ("paper_sections", 3 * 6 * 3),
        ("entity_mentions", 3 * 6 * 5),
        ("nodes", 3 * 60),
        ("edges", 3 * 300),
        ("inferred_insights", 3 * 4),
        ("usage_events", 3 * 200),
    ];
    let generated = "(SELECT id FROM app.tenants WHERE slug LIKE 'bench-%')";
    for (table, n) in expected {
        let column = tenant_column(table);
        let rows = count(
            &db,
            &format!("SELECT count(*) FROM app.{table} WHERE {column} IN {generated}"),
        )
        .await;
        assert_eq!(rows, n, "{table}");
        assert_eq!(summary.rows_of(table), n as u64, "{table} in the summary");
    }
    for table in ["insight_nodes", "insight_edges", "usage_daily"] {
        let rows = count(&db, &format!("SELECT count(*) FROM app.{table}")).await;
        assert!(rows > 0, "{table} is empty");
        assert_eq!(
            summary.rows_of(table),
            rows as u64,
            "{table} in the summary"
        );
    }

    // Every foreign key holds, although none was checked during the load.
    let fks = db
        .query(
            "SELECT c.conname, cl.relname, pl.relname, \
                    array(SELECT a.attname::text FROM unnest(c.conkey) WITH ORDINALITY k(n, i) \
                          JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.n ORDER BY k.i), \
                    array(SELECT a.attname::text FROM unnest(c.confkey) WITH ORDINALITY k(n, i) \
                          JOIN pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = k.n ORDER BY k.i) \
             FROM pg_constraint c \
             JOIN pg_class cl ON cl.oid = c.conrelid \
             JOIN pg_class pl ON pl.oid = c.confrelid \
             JOIN pg_namespace n ON n.oid = cl.relnamespace \
             WHERE c.contype = 'f' AND n.nspname = 'app'",
            &[],
        )
        .await
        .expect("foreign keys");
    assert!(fks.len() > 20, "found only {} foreign keys", fks.len());
    for fk in &fks {
        let (name, child, parent): (String, String, String) = (fk.get(0), fk.get(1), fk.get(2));
        let (cols, refs): (Vec<String>, Vec<String>) = (fk.get(3), fk.get(4));
        let not_null: Vec<String> = cols.iter().map(|c| format!("c.{c} IS NOT NULL")).collect();
        let joined: Vec<String> = cols
            .iter()
            .zip(&refs)
            .map(|(c, r)| format!("p.{r} = c.{c}"))
            .collect();
        let dangling = count(
            &db,
            &format!(
                "SELECT count(*) FROM app.{child} c WHERE {} AND NOT EXISTS \
                 (SELECT 1 FROM app.{parent} p WHERE {})",
                not_null.join(" AND "),
                joined.join(" AND ")
            ),
        )
        .await;
        assert_eq!(
            dangling, 0,
            "{name}: rows of {child} point to no row of {parent}"
        );
    }

    // The graph: no self edges, no repeated (source, target, relation type).
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM app.edges WHERE source_id = target_id"
        )
        .await,
        0
    );
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM (SELECT 1 FROM app.edges \
             GROUP BY tenant_id, source_id, target_id, relation_type HAVING count(*) > 1) d"
        )
        .await,
        0
    );

    // Every mention quotes its section at its offsets (in characters), and some sections hold
    // characters outside ASCII, so that characters and bytes differ.
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM app.entity_mentions m JOIN app.paper_sections s \
               ON s.tenant_id = m.tenant_id AND s.id = m.section_id \
             WHERE substr(s.content, m.start_offset + 1, m.end_offset - m.start_offset) \
                   IS DISTINCT FROM m.quote \
                OR m.quote <> (SELECT n.name FROM app.nodes n \
                               WHERE n.tenant_id = m.tenant_id AND n.id = m.node_id)"
        )
        .await,
        0
    );
    assert!(
        count(
            &db,
            "SELECT count(*) FROM app.paper_sections WHERE octet_length(content) > length(content)"
        )
        .await
            > 0
    );

    // usage_daily is exactly what the roll-up trigger would have made of the events.
    let aggregate = "SELECT tenant_id, (occurred_at AT TIME ZONE 'UTC')::date AS day, stage, \
                            model, agent, provider, execution_mode, count(*)::bigint, \
                            count(*) FILTER (WHERE outcome <> 'ok')::bigint, \
                            sum(input_tokens)::bigint, sum(cached_tokens)::bigint, \
                            sum(output_tokens)::bigint, sum(thinking_tokens)::bigint, \
                            sum(base_cost_micros)::bigint, sum(billed_cost_micros)::bigint \
                     FROM app.usage_events GROUP BY 1, 2, 3, 4, 5, 6, 7";
    let daily = "SELECT tenant_id, day, stage, model, agent, provider, execution_mode, events, \
                        errors, input_tokens, cached_tokens, output_tokens, thinking_tokens, \
                        base_cost_micros, billed_cost_micros FROM app.usage_daily";
    for (a, b) in [(aggregate, daily), (daily, aggregate)] {
        assert_eq!(
            count(&db, &format!("SELECT count(*) FROM (({a}) EXCEPT ({b})) d")).await,
            0
        );
    }
    // Costs: billed is base with the 20 % markup, rounded half up.
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM app.usage_events \
             WHERE billed_cost_micros <> (base_cost_micros * 12000 + 5000) / 10000 \
                OR execution_mode <> 'hosted'"
        )
        .await,
        0
    );
    assert!(
        count(
            &db,
            "SELECT count(*) FROM app.usage_events WHERE occurred_at < '2025-06-21' \
             OR occurred_at >= '2025-07-01'"
        )
        .await
            == 0
    );

    // Ids are those of ids.rs, which Postgres computes as md5(text)::uuid.
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM app.nodes \
             WHERE tenant_id = md5('tenant:1')::uuid AND id = md5('node:1:5')::uuid"
        )
        .await,
        1
    );
    for (table, kind, i) in [
        ("papers", "paper", 5u64),
        ("paper_sections", "section", 17),
        ("edges", "edge", 299),
        ("entity_mentions", "mention", 29),
        ("inferred_insights", "insight", 3),
        ("usage_events", "event", 199),
    ] {
        let found = db
            .query(
                &format!("SELECT 1 FROM app.{table} WHERE tenant_id = $1 AND id = $2"),
                &[&ids::tenant(3), &ids::row(kind, 3, i)],
            )
            .await
            .expect("lookup");
        assert_eq!(found.len(), 1, "{kind} {i} of tenant 3");
    }
    let owner: Uuid = db
        .query_one(
            "SELECT user_id FROM app.tenant_users WHERE tenant_id = $1 AND role = 'owner'",
            &[&ids::tenant(2)],
        )
        .await
        .expect("owner")
        .get(0);
    assert_eq!(owner, ids::user(2));
    let slug: String = db
        .query_one(
            "SELECT slug FROM app.tenants WHERE id = $1",
            &[&ids::tenant(2)],
        )
        .await
        .expect("slug")
        .get(0);
    assert_eq!(slug, ids::slug(2));

    // Every search term finds generated text.
    for term in SEARCH_TERMS {
        let hits = db
            .query_one(
                "SELECT (SELECT count(*) FROM app.papers \
                         WHERE search @@ plainto_tsquery('english', $1)) \
                      + (SELECT count(*) FROM app.paper_sections \
                         WHERE search @@ plainto_tsquery('english', $1))",
                &[term],
            )
            .await
            .expect("search")
            .get::<_, i64>(0);
        assert!(hits > 0, "{term} finds nothing");
    }

    // The dropped indexes are back.
    for index in [
        "edges_source_idx",
        "papers_search_idx",
        "usage_events_time_idx",
    ] {
        assert_eq!(
            count(
                &db,
                &format!("SELECT count(*) FROM pg_indexes WHERE schemaname = 'app' AND indexname = '{index}'")
            )
            .await,
            1,
            "{index}"
        );
    }

    // The same tenants cannot be generated twice; other tenants can join them.
    let again = run(&t.admin_config(), &options).await;
    let message = format!("{:#}", again.expect_err("the tenants exist"));
    assert!(message.contains("exist already"), "{message}");
    let more = Options {
        first_tenant: 10,
        tenants: 1,
        ..small(7)
    };
    run(&t.admin_config(), &more).await.expect("more tenants");
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM app.tenants WHERE slug LIKE 'bench-%'"
        )
        .await,
        4
    );
}

/// A hash of each generated table's content.
async fn table_hashes(db: &Client) -> Vec<(String, String)> {
    let mut hashes = Vec::new();
    for table in research_graph_bench::generate::TABLES {
        let hash: String = db
            .query_one(
                &format!(
                    "SELECT coalesce(md5(string_agg(t::text, E'\\n' ORDER BY t::text)), '') \
                     FROM app.{table} t \
                     WHERE {} IN (SELECT id FROM app.tenants WHERE slug LIKE 'bench-%')",
                    tenant_column(table)
                ),
                &[],
            )
            .await
            .expect("hash")
            .get(0);
        hashes.push(((*table).to_owned(), hash));
    }
    hashes
}

#[tokio::test]
async fn the_same_seed_gives_the_same_data_and_another_seed_other_data() {
    let (a, b, c) = (
        TestDb::new().await,
        TestDb::new().await,
        TestDb::new().await,
    );
    run(&a.admin_config(), &small(3)).await.expect("first run");
    // Tenants are independent of each other: generating them in two runs, the later ones first,
    // gives the same rows.
    let later = Options {
        first_tenant: 3,
        tenants: 1,
        ..small(3)
    };
    let earlier = Options {
        first_tenant: 1,
        tenants: 2,
        ..small(3)
    };
    run(&b.admin_config(), &later).await.expect("later tenant");
    run(&b.admin_config(), &earlier)
        .await
        .expect("earlier tenants");
    run(&c.admin_config(), &small(4)).await.expect("other seed");
    let (ha, hb, hc) = (
        table_hashes(&a.superuser().await).await,
        table_hashes(&b.superuser().await).await,
        table_hashes(&c.superuser().await).await,
    );
    assert_eq!(ha, hb);
    for (table, hash) in &ha {
        let other = &hc.iter().find(|(t, _)| t == table).expect("same tables").1;
        if ["papers", "paper_sections", "nodes", "edges", "usage_events"].contains(&table.as_str())
        {
            assert_ne!(hash, other, "{table} does not depend on the seed");
        }
    }
}

#[tokio::test]
async fn a_generated_owner_sees_exactly_its_tenant_under_row_level_security() {
    let t = TestDb::new().await;
    run(&t.admin_config(), &small(5)).await.expect("generate");
    let db = t.superuser().await;
    let mut app = t.app_client().await;
    let tables = tenant_tables(&db).await;
    for tenant in [1u64, 3] {
        let id = ids::tenant(tenant);
        let tx = app.transaction().await.expect("begin");
        tx.batch_execute(&format!(
            "SET LOCAL app.tenant_id = '{id}'; SET LOCAL app.user_id = '{}'",
            ids::user(tenant)
        ))
        .await
        .expect("tenant context");
        let mut seen_any = 0;
        for table in &tables {
            let column = tenant_column(table);
            let visible: i64 = tx
                .query_one(&format!("SELECT count(*) FROM app.{table}"), &[])
                .await
                .unwrap_or_else(|e| panic!("{table}: {e}"))
                .get(0);
            let own: i64 = tx
                .query_one(
                    &format!("SELECT count(*) FROM app.{table} WHERE {column} = $1"),
                    &[&id],
                )
                .await
                .expect("own rows")
                .get(0);
            let stored: i64 = db
                .query_one(
                    &format!("SELECT count(*) FROM app.{table} WHERE {column} = $1"),
                    &[&id],
                )
                .await
                .expect("stored rows")
                .get(0);
            assert_eq!(visible, own, "{table}: rows of other tenants are visible");
            assert_eq!(own, stored, "{table}: the owner misses rows of its tenant");
            seen_any += visible;
        }
        assert!(seen_any > 600, "the owner sees only {seen_any} rows");
        tx.rollback().await.expect("rollback");
    }
}

#[tokio::test]
async fn edges_follow_a_power_law() {
    let t = TestDb::new().await;
    let options = Options {
        tenants: 1,
        first_tenant: 0,
        papers: 1,
        sections: 1,
        nodes: 500,
        edges: 5000,
        mentions: 1,
        insights: 1,
        events: 1,
        ..small(11)
    };
    let summary: Summary = run(&t.admin_config(), &options).await.expect("generate");
    let db = t.superuser().await;
    let degrees = db
        .query(
            "SELECT n.id, count(e.id) AS out FROM app.nodes n \
             LEFT JOIN app.edges e ON e.tenant_id = n.tenant_id AND e.source_id = n.id \
             GROUP BY n.id ORDER BY out DESC, n.id",
            &[],
        )
        .await
        .expect("degrees");
    assert_eq!(degrees.len(), 500);
    let out: Vec<i64> = degrees.iter().map(|r| r.get(1)).collect();
    let top_node: Uuid = degrees[0].get(0);
    let median = out[out.len() / 2];
    assert_eq!(
        top_node,
        ids::row("node", 0, 0),
        "node 0 is the biggest hub"
    );
    assert!(
        out[0] >= 10 * median.max(1),
        "top out-degree {} vs median {median}",
        out[0]
    );
    assert_eq!(summary.degrees.top, out[0] as u64);
    assert_eq!(summary.degrees.median, median as u64);
}
