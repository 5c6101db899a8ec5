//! Database isolation: SECURITY_TESTS.md cases 1, 2, 3, 5, 6, 7 and 8, as the application role.

mod common;

use std::time::Duration;

use common::{seed_tenant, sqlstate, tenant_column, tenant_tables, Seeded, TestDb};
use research_graph::db::{DbError, PoolSettings};
use research_graph::ids::{Role, TenantId, UserId};
use uuid::Uuid;

/// Case 1: two tenants interleave 1,000 requests each through one pool; a request only ever
/// sees its own tenant's rows, and every checkout starts with no tenant set (the session
/// refuses a connection that arrives with one, which would fail the request).
async fn interleaved_requests_never_cross(pool_size: usize) {
    let t = TestDb::with_pool_size(pool_size).await;
    let a = seed_tenant(&t, "alpha", "10.1/a", "graphnet").await;
    let b = seed_tenant(&t, "beta", "10.1/b", "graphnet").await;
    let run = |me: Seeded, other: Seeded| {
        let db = t.db.clone();
        tokio::spawn(async move {
            for i in 0..1000 {
                let s = db.session(me.tenant, me.owner).await.expect("begin");
                let rows = s
                    .query("SELECT tenant_id, id FROM app.papers", &[])
                    .await
                    .expect("papers");
                assert_eq!(rows.len(), 1, "exactly the tenant's own paper");
                assert_eq!(rows[0].get::<_, Uuid>(0), me.tenant.0);
                let other_rows = s
                    .query(
                        "SELECT count(*) FROM app.nodes WHERE tenant_id = $1",
                        &[&other.tenant.0],
                    )
                    .await
                    .expect("nodes");
                assert_eq!(other_rows[0].get::<_, i64>(0), 0, "other tenant invisible");
                // Vary how requests end: commit, roll back, or abandon (drop).
                match i % 3 {
                    0 => s.commit().await.expect("commit"),
                    1 => s.rollback().await.expect("rollback"),
                    _ => drop(s),
                }
                tokio::task::yield_now().await;
            }
        })
    };
    let (ra, rb) = tokio::join!(run(a, b), run(b, a));
    ra.expect("tenant A's requests");
    rb.expect("tenant B's requests");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interleaved_requests_pool_of_one() {
    interleaved_requests_never_cross(1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interleaved_requests_pool_of_two() {
    interleaved_requests_never_cross(2).await;
}

/// The guard behind case 1's "starts with no tenant set" is real: a session-level setting
/// (the bug DESIGN.md forbids) makes the next checkout of that connection fail, not leak.
#[tokio::test]
async fn session_level_setting_is_refused_on_next_checkout() {
    let t = TestDb::with_pool_size(1).await;
    let a = seed_tenant(&t, "alpha", "10.1/a", "k").await;
    let b = seed_tenant(&t, "beta", "10.1/b", "k").await;
    let s = t.session(a.tenant, a.owner).await;
    s.query(
        "SELECT set_config('app.tenant_id', $1, false)",
        &[&a.tenant.to_string()],
    )
    .await
    .expect("session-level set_config");
    s.commit().await.expect("commit");
    let refused = t.db.session(b.tenant, b.owner).await;
    assert!(
        matches!(refused, Err(DbError::LeakedContext)),
        "a leaked tenant must be refused"
    );
    // The poisoned connection was discarded; the next checkout is clean.
    let s = t.session(b.tenant, b.owner).await;
    let rows = s
        .query("SELECT tenant_id FROM app.papers", &[])
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].get::<_, Uuid>(0), b.tenant.0);
}

/// Waits until no application-role backend of this database sits idle inside a transaction.
async fn assert_no_idle_transaction(t: &TestDb) {
    let su = t.superuser().await;
    for _ in 0..100 {
        let n: i64 = su
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE usename = 'rg_app' AND datname = $1 \
                 AND state LIKE 'idle in transaction%'",
                &[&t.name],
            )
            .await
            .unwrap()
            .get(0);
        if n == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("a connection was left inside a transaction");
}

/// Case 2: a request timed out in the middle of a statement, with a pool of one. The statement
/// is cancelled and the connection closed, so the next request (another tenant) gets a clean
/// connection at once instead of waiting behind the old statement.
#[tokio::test]
async fn request_cancelled_mid_statement_leaves_nothing_behind() {
    let t = TestDb::with_settings(PoolSettings {
        max_size: 1,
        wait_timeout: Duration::from_secs(10),
        ..PoolSettings::default()
    })
    .await;
    let a = seed_tenant(&t, "alpha", "10.1/a", "k").await;
    let b = seed_tenant(&t, "beta", "10.1/b", "k").await;

    let request_a = async {
        let s = t.session(a.tenant, a.owner).await;
        s.execute(
            "INSERT INTO app.papers (tenant_id, title) VALUES ($1, 'uncommitted')",
            &[&a.tenant.0],
        )
        .await
        .unwrap();
        // Longer than the pool's wait timeout: if it were not cancelled, B could not start.
        s.query("SELECT pg_sleep(60)", &[]).await.unwrap();
        s.commit().await.unwrap();
    };
    let timed_out = tokio::time::timeout(Duration::from_millis(300), request_a).await;
    assert!(timed_out.is_err(), "the request must have been cut off");

    let s =
        t.db.session(b.tenant, b.owner)
            .await
            .expect("next request gets a connection");
    let rows = s
        .query("SELECT tenant_id, title FROM app.papers", &[])
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].get::<_, Uuid>(0), b.tenant.0);
    s.commit().await.unwrap();

    assert_no_idle_transaction(&t).await;
    let su = t.superuser().await;
    let uncommitted: i64 = su
        .query_one(
            "SELECT count(*) FROM app.papers WHERE title = 'uncommitted'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        uncommitted, 0,
        "the cancelled request's write was rolled back"
    );
    let sleeping: i64 = su
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(60)' AND state = 'active'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(sleeping, 0, "the abandoned statement was cancelled");
}

/// Case 2, the other way a request dies: its future is dropped between statements. The
/// transaction is rolled back and the same connection serves the next tenant, outside any
/// transaction and with no tenant set.
#[tokio::test]
async fn request_dropped_between_statements_is_rolled_back() {
    let t = TestDb::with_pool_size(1).await;
    let a = seed_tenant(&t, "alpha", "10.1/a", "k").await;
    let b = seed_tenant(&t, "beta", "10.1/b", "k").await;

    let (started_tx, started_rx) = tokio::sync::oneshot::channel();
    let db = t.db.clone();
    let request_a = tokio::spawn(async move {
        let s = db.session(a.tenant, a.owner).await.unwrap();
        s.execute(
            "INSERT INTO app.papers (tenant_id, title) VALUES ($1, 'abandoned')",
            &[&a.tenant.0],
        )
        .await
        .unwrap();
        let pid: i32 = s
            .query_one("SELECT pg_backend_pid()", &[])
            .await
            .unwrap()
            .get(0);
        started_tx.send(pid).unwrap();
        std::future::pending::<()>().await;
    });
    let pid_a = started_rx.await.unwrap();
    request_a.abort();
    let _ = request_a.await;

    let s = t.session(b.tenant, b.owner).await;
    let pid_b: i32 = s
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        pid_a, pid_b,
        "the connection went back to the pool after rollback"
    );
    let rows = s
        .query("SELECT tenant_id, title FROM app.papers", &[])
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].get::<_, Uuid>(0), b.tenant.0);
    s.commit().await.unwrap();

    assert_no_idle_transaction(&t).await;
    let su = t.superuser().await;
    let abandoned: i64 = su
        .query_one(
            "SELECT count(*) FROM app.papers WHERE title = 'abandoned'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(abandoned, 0);
}

/// Counts every tenant table as `client` sees it: (table, rows).
async fn visible_counts(client: &tokio_postgres::Client, tables: &[String]) -> Vec<(String, i64)> {
    let mut out = Vec::new();
    for table in tables {
        let n: i64 = client
            .query_one(&format!("SELECT count(*) FROM app.{table}"), &[])
            .await
            .unwrap_or_else(|e| panic!("count {table}: {e}"))
            .get(0);
        out.push((table.clone(), n));
    }
    out
}

/// Case 3: with no context set, the application role sees zero rows in every table, also on a
/// connection that served a committed request before (the setting then reads back as '').
#[tokio::test]
async fn no_context_means_no_rows() {
    let t = TestDb::new().await;
    let a = seed_tenant(&t, "alpha", "10.1/a", "k").await;
    seed_tenant(&t, "beta", "10.1/b", "k").await;
    let su = t.superuser().await;
    let tables = tenant_tables(&su).await;
    assert!(tables.len() >= 13, "tables found: {tables:?}");
    for (table, n) in visible_counts(&su, &tables).await {
        assert!(n > 0, "the fixture must fill {table}");
    }

    let app = t.app_client().await;
    for (table, n) in visible_counts(&app, &tables).await {
        assert_eq!(n, 0, "{table} without context");
    }

    // Serve a committed request on this very connection, then look again.
    app.batch_execute("BEGIN").await.unwrap();
    app.query(
        "SELECT set_config('app.tenant_id', $1, true), set_config('app.user_id', $2, true)",
        &[&a.tenant.to_string(), &a.owner.to_string()],
    )
    .await
    .unwrap();
    let seen: i64 = app
        .query_one("SELECT count(*) FROM app.papers", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(seen, 1, "the request itself sees its tenant");
    app.batch_execute("COMMIT").await.unwrap();
    let setting: Option<String> = app
        .query_one("SELECT current_setting('app.tenant_id', true)", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        setting.as_deref(),
        Some(""),
        "a used setting reads back as ''"
    );
    for (table, n) in visible_counts(&app, &tables).await {
        assert_eq!(n, 0, "{table} after a committed request");
    }
}

/// A tenant's session as an arbitrary user: a non-member sees nothing either.
#[tokio::test]
async fn non_member_sees_nothing() {
    let t = TestDb::new().await;
    let a = seed_tenant(&t, "alpha", "10.1/a", "k").await;
    let su = t.superuser().await;
    let tables = tenant_tables(&su).await;
    let stranger = UserId(Uuid::new_v4());
    let s = t.session(a.tenant, stranger).await;
    for table in &tables {
        let n: i64 = s
            .query_one(&format!("SELECT count(*) FROM app.{table}"), &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(n, 0, "{table} for a non-member");
    }
    let err = s
        .execute(
            "INSERT INTO app.papers (tenant_id, title) VALUES ($1, 'x')",
            &[&a.tenant.0],
        )
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&err), "42501");
}

/// Snapshot of every tenant table's rows for one tenant, as the superuser sees them.
async fn snapshot(su: &tokio_postgres::Client, tables: &[String], tenant: TenantId) -> Vec<String> {
    let mut out = Vec::new();
    for table in tables {
        let col = tenant_column(table);
        let rows = su
            .query(
                &format!("SELECT t::text FROM app.{table} t WHERE {col} = $1 ORDER BY 1"),
                &[&tenant.0],
            )
            .await
            .unwrap();
        out.extend(
            rows.iter()
                .map(|r| format!("{table}: {}", r.get::<_, String>(0))),
        );
    }
    out
}

/// Case 5: writing another tenant's tenant_id fails with 42501; updating or deleting another
/// tenant's rows affects nothing, as the superuser confirms.
#[tokio::test]
async fn cross_tenant_writes_fail_or_touch_nothing() {
    let t = TestDb::new().await;
    let a = seed_tenant(&t, "alpha", "10.1/a", "k").await;
    let b = seed_tenant(&t, "beta", "10.1/b", "k").await;
    let su = t.superuser().await;
    let tables = tenant_tables(&su).await;
    let before = snapshot(&su, &tables, b.tenant).await;

    let inserts: [(&str, &str); 5] = [
        ("papers", "INSERT INTO app.papers (tenant_id, title) VALUES ($1, 'x')"),
        ("nodes", "INSERT INTO app.nodes (tenant_id, node_type, name, key) VALUES ($1, 'Task', 'x', 'x')"),
        ("tenant_users", "INSERT INTO app.tenant_users (tenant_id, user_id, role) VALUES ($1, gen_random_uuid(), 'owner')"),
        ("jobs", "INSERT INTO app.jobs (tenant_id, kind) VALUES ($1, 'reasoning')"),
        ("usage_events", "INSERT INTO app.usage_events (tenant_id, stage, agent, provider, model, execution_mode, idempotency_key) \
                          VALUES ($1, 's', 'a', 'p', 'm', 'hosted', 'k')"),
    ];
    for (table, sql) in inserts {
        let s = t.session(a.tenant, a.owner).await;
        let err = s.execute(sql, &[&b.tenant.0]).await.unwrap_err();
        assert_eq!(
            sqlstate(&err),
            "42501",
            "insert into {table} with B's tenant_id"
        );
    }

    // Moving one's own row into another tenant.
    for (table, id) in [
        ("papers", a.paper),
        ("nodes", a.source_node),
        ("edges", a.edge),
    ] {
        let s = t.session(a.tenant, a.owner).await;
        let err = s
            .execute(
                &format!("UPDATE app.{table} SET tenant_id = $1 WHERE id = $2"),
                &[&b.tenant.0, &id],
            )
            .await
            .unwrap_err();
        // 42501 from the policy, or 23503 if a foreign key notices first; both refuse.
        assert!(
            ["42501", "23503"].contains(&sqlstate(&err).as_str()),
            "moving a row of {table} into B: {err}"
        );
    }

    // Updating and deleting B's rows by id (and by tenant) as A's owner.
    for table in &tables {
        let col = tenant_column(table);
        let s = t.session(a.tenant, a.owner).await;
        match s
            .execute(
                &format!("UPDATE app.{table} SET {col} = {col} WHERE {col} = $1"),
                &[&b.tenant.0],
            )
            .await
        {
            Ok(n) => assert_eq!(n, 0, "update of B's {table}"),
            Err(e) => assert_eq!(sqlstate(&e), "42501", "update of B's {table}"),
        }
        s.commit().await.unwrap();
        let s = t.session(a.tenant, a.owner).await;
        match s
            .execute(
                &format!("DELETE FROM app.{table} WHERE {col} = $1"),
                &[&b.tenant.0],
            )
            .await
        {
            Ok(n) => assert_eq!(n, 0, "delete of B's {table}"),
            Err(e) => assert_eq!(sqlstate(&e), "42501", "delete of B's {table}"),
        }
        s.commit().await.unwrap();
    }
    for (sql, id) in [
        (
            "UPDATE app.papers SET title = 'stolen' WHERE id = $1",
            b.paper,
        ),
        (
            "UPDATE app.edges SET review_status = 'rejected' WHERE id = $1",
            b.edge,
        ),
        ("DELETE FROM app.nodes WHERE id = $1", b.source_node),
        ("DELETE FROM app.inferred_insights WHERE id = $1", b.insight),
    ] {
        let s = t.session(a.tenant, a.owner).await;
        assert_eq!(s.execute(sql, &[&id]).await.unwrap(), 0, "{sql}");
        s.commit().await.unwrap();
    }
    assert_eq!(
        snapshot(&su, &tables, b.tenant).await,
        before,
        "B's rows unchanged"
    );
}

/// Case 6: a foreign key pointing at another tenant's node, paper, section or insight is
/// rejected, because every foreign key includes tenant_id.
#[tokio::test]
async fn foreign_keys_cannot_point_into_another_tenant() {
    let t = TestDb::new().await;
    let a = seed_tenant(&t, "alpha", "10.1/a", "k").await;
    let b = seed_tenant(&t, "beta", "10.1/b", "k").await;
    let cases: [(&str, &str, Uuid, Uuid); 6] = [
        ("edge to B's node",
         "INSERT INTO app.edges (tenant_id, source_id, target_id, relation_type) VALUES ($1, $2, $3, 'COMPARE')",
         a.source_node, b.target_node),
        ("section of B's paper",
         "INSERT INTO app.paper_sections (tenant_id, paper_id, ordinal, content, content_hash) VALUES ($1, $3, 9, 'x', 'x') RETURNING $2::uuid",
         a.paper, b.paper),
        ("mention in B's section",
         "INSERT INTO app.entity_mentions (tenant_id, node_id, section_id, quote, start_offset, end_offset, agent, model, prompt_version) \
          VALUES ($1, $2, $3, 'q', 0, 1, 'a', 'm', 'v')",
         a.source_node, b.section),
        ("support of B's insight",
         "INSERT INTO app.insight_nodes (tenant_id, node_id, insight_id) VALUES ($1, $2, $3)",
         a.source_node, b.insight),
        ("insight supported by B's edge",
         "INSERT INTO app.insight_edges (tenant_id, insight_id, edge_id) VALUES ($1, $2, $3)",
         a.insight, b.edge),
        ("job for B's paper",
         "INSERT INTO app.jobs (tenant_id, kind, created_by, paper_id) VALUES ($1, 'process_paper', $2, $3)",
         a.owner.0, b.paper),
    ];
    for (what, sql, own, foreign) in cases {
        let s = t.session(a.tenant, a.owner).await;
        let err = s
            .execute(sql, &[&a.tenant.0, &own, &foreign])
            .await
            .unwrap_err();
        assert_eq!(sqlstate(&err), "23503", "{what}: {err}");
        assert_no_foreign_data(&err, &[b.tenant.to_string(), "Paper of beta".into()]);
    }
}

/// A database error's full text (message, detail, hint, table, context) contains none of
/// `secrets`: values of another tenant that the caller did not supply itself.
fn assert_no_foreign_data(err: &DbError, secrets: &[String]) {
    let DbError::Postgres(e) = err else {
        panic!("expected a database error, got {err}")
    };
    let db = e.as_db_error().expect("a server error");
    let text = format!(
        "{} {} {} {} {}",
        db.message(),
        db.detail().unwrap_or(""),
        db.hint().unwrap_or(""),
        db.table().unwrap_or(""),
        db.where_().unwrap_or("")
    );
    for secret in secrets {
        assert!(
            !text.contains(secret),
            "error text reveals {secret}: {text}"
        );
    }
}

/// Case 7: the same DOI, arXiv id and entity key exist in two tenants; conflicts inside one
/// tenant name only that tenant's own values.
#[tokio::test]
async fn same_keys_in_two_tenants_and_errors_reveal_nothing() {
    let t = TestDb::new().await;
    let a = seed_tenant(&t, "alpha", "10.1/shared", "graphnet").await;
    let b = seed_tenant(&t, "beta", "10.1/shared", "graphnet").await;
    for seeded in [a, b] {
        let s = t.session(seeded.tenant, seeded.owner).await;
        s.execute(
            "UPDATE app.papers SET arxiv_id = '2401.00001' WHERE id = $1",
            &[&seeded.paper],
        )
        .await
        .expect("the same arXiv id in both tenants");
        s.commit().await.unwrap();
    }
    let su = t.superuser().await;
    let shared: i64 = su
        .query_one(
            "SELECT count(*) FROM app.papers WHERE doi = '10.1/shared'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(shared, 2);
    let keys: i64 = su
        .query_one("SELECT count(*) FROM app.nodes WHERE key = 'graphnet'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(keys, 2);

    let s = t.session(b.tenant, b.owner).await;
    let err = s
        .execute(
            "INSERT INTO app.papers (tenant_id, title, doi) VALUES ($1, 'dup', '10.1/shared')",
            &[&b.tenant.0],
        )
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&err), "23505");
    // B's own duplicate names B's values, never A's.
    let a_secrets = [
        a.tenant.to_string(),
        a.paper.to_string(),
        "Paper of alpha".into(),
    ];
    assert_no_foreign_data(&err, &a_secrets);
    let s = t.session(b.tenant, b.owner).await;
    let err = s
        .execute(
            "INSERT INTO app.nodes (tenant_id, node_type, name, key) VALUES ($1, 'Method', 'GraphNet', 'graphnet')",
            &[&b.tenant.0],
        )
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&err), "23505");
    let a_secrets = [a.tenant.to_string(), a.source_node.to_string()];
    assert_no_foreign_data(&err, &a_secrets);
}

/// Case 8: a viewer reads but writes nothing; a member writes content but cannot change
/// settings, keys or membership; an owner can. Straight SQL through RLS, no GraphQL.
#[tokio::test]
async fn roles_are_enforced_by_the_database() {
    let t = TestDb::new().await;
    let a = seed_tenant(&t, "alpha", "10.1/a", "k").await;
    let viewer = t.add_member(a.tenant, a.owner, Role::Viewer).await;
    let member = t.add_member(a.tenant, a.owner, Role::Member).await;
    let su = t.superuser().await;
    let tables = tenant_tables(&su).await;
    let before = snapshot(&su, &tables, a.tenant).await;

    // The viewer reads everything…
    let s = t.session(a.tenant, viewer).await;
    for table in &tables {
        let n: i64 = s
            .query_one(&format!("SELECT count(*) FROM app.{table}"), &[])
            .await
            .unwrap()
            .get(0);
        assert!(n > 0, "viewer reads {table}");
    }
    s.commit().await.unwrap();
    // …and changes nothing: inserts are refused, updates and deletes find no row to touch.
    let viewer_inserts = [
        "INSERT INTO app.papers (tenant_id, title) VALUES ($1, 'v')",
        "INSERT INTO app.nodes (tenant_id, node_type, name, key) VALUES ($1, 'Task', 'v', 'v')",
        "INSERT INTO app.inferred_insights (tenant_id, insight_type, statement, confidence) VALUES ($1, 'gap', 'v', 0.5)",
        "INSERT INTO app.jobs (tenant_id, kind) VALUES ($1, 'reasoning')",
        "INSERT INTO app.tenant_users (tenant_id, user_id, role) VALUES ($1, gen_random_uuid(), 'viewer')",
        "INSERT INTO app.usage_events (tenant_id, stage, agent, provider, model, execution_mode, idempotency_key) \
         VALUES ($1, 's', 'a', 'p', 'm', 'hosted', 'viewer-key')",
    ];
    for sql in viewer_inserts {
        let s = t.session(a.tenant, viewer).await;
        let err = s.execute(sql, &[&a.tenant.0]).await.unwrap_err();
        assert_eq!(sqlstate(&err), "42501", "viewer: {sql}");
    }
    for table in &tables {
        let col = tenant_column(table);
        for sql in [
            format!("UPDATE app.{table} SET {col} = {col}"),
            format!("DELETE FROM app.{table}"),
        ] {
            let s = t.session(a.tenant, viewer).await;
            match s.execute(&sql, &[]).await {
                Ok(n) => assert_eq!(n, 0, "viewer: {sql}"),
                Err(e) => assert_eq!(sqlstate(&e), "42501", "viewer: {sql}"),
            }
            s.commit().await.unwrap();
        }
    }
    assert_eq!(
        snapshot(&su, &tables, a.tenant).await,
        before,
        "viewer changed nothing"
    );

    // The member writes content…
    let s = t.session(a.tenant, member).await;
    s.execute(
        "INSERT INTO app.papers (tenant_id, title) VALUES ($1, 'by member')",
        &[&a.tenant.0],
    )
    .await
    .expect("member writes papers");
    assert_eq!(
        s.execute(
            "UPDATE app.edges SET review_status = 'approved' WHERE id = $1",
            &[&a.edge]
        )
        .await
        .unwrap(),
        1
    );
    s.commit().await.unwrap();
    // …but not settings, keys, membership or the tenant itself.
    for sql in [
        "UPDATE app.tenant_settings SET confidence_threshold = 0.1",
        "UPDATE app.tenant_settings SET api_key_provider = 'gemini', api_key_ciphertext = '\\x00'",
        "UPDATE app.tenant_users SET role = 'owner'",
        "DELETE FROM app.tenant_users",
        "UPDATE app.tenants SET name = 'renamed'",
        "DELETE FROM app.tenants",
    ] {
        let s = t.session(a.tenant, member).await;
        assert_eq!(s.execute(sql, &[]).await.unwrap(), 0, "member: {sql}");
        s.commit().await.unwrap();
    }
    let s = t.session(a.tenant, member).await;
    let err = s
        .execute(
            "INSERT INTO app.tenant_users (tenant_id, user_id, role) VALUES ($1, gen_random_uuid(), 'owner')",
            &[&a.tenant.0],
        )
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&err), "42501", "member adds a member");
    let (threshold, role): (f64, String) = {
        let row = su
            .query_one(
                "SELECT s.confidence_threshold, u.role FROM app.tenant_settings s \
                 JOIN app.tenant_users u ON u.tenant_id = s.tenant_id \
                 WHERE s.tenant_id = $1 AND u.user_id = $2",
                &[&a.tenant.0, &member.0],
            )
            .await
            .unwrap();
        (row.get(0), row.get(1))
    };
    assert_eq!((threshold, role.as_str()), (0.6, "member"), "unchanged");

    // The owner can do all of it.
    let s = t.session(a.tenant, a.owner).await;
    for sql in [
        "UPDATE app.tenant_settings SET confidence_threshold = 0.1",
        "UPDATE app.tenant_settings SET api_key_provider = 'gemini', api_key_ciphertext = '\\x00'",
        "UPDATE app.tenants SET name = 'renamed'",
    ] {
        assert_eq!(s.execute(sql, &[]).await.unwrap(), 1, "owner: {sql}");
    }
    assert_eq!(
        s.execute(
            "UPDATE app.tenant_users SET role = 'viewer' WHERE user_id = $1",
            &[&member.0]
        )
        .await
        .unwrap(),
        1
    );
    assert_eq!(
        s.execute(
            "DELETE FROM app.tenant_users WHERE user_id = $1",
            &[&viewer.0]
        )
        .await
        .unwrap(),
        1
    );
    s.commit().await.unwrap();
    let role: String = su
        .query_one(
            "SELECT role FROM app.tenant_users WHERE tenant_id = $1 AND user_id = $2",
            &[&a.tenant.0, &member.0],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(role, "viewer");
}

/// Usage events are an append-only ledger: not even an owner may rewrite one.
#[tokio::test]
async fn usage_events_are_append_only() {
    let t = TestDb::new().await;
    let a = seed_tenant(&t, "alpha", "10.1/a", "k").await;
    for sql in [
        "UPDATE app.usage_events SET billed_cost_micros = 0 WHERE id = $1",
        "DELETE FROM app.usage_events WHERE id = $1",
    ] {
        let s = t.session(a.tenant, a.owner).await;
        let err = s.execute(sql, &[&a.usage_event]).await.unwrap_err();
        assert_eq!(sqlstate(&err), "42501", "{sql}");
    }
}
