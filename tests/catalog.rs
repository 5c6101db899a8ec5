//! Catalog audit: SECURITY_TESTS.md case 4, run as the application role.
//!
//! The audit is a list of violations, so the same checks are shown to catch a deliberately
//! broken schema (a table without forced RLS, a write policy without WITH CHECK, a view without
//! security_invoker, a definer function without a pinned search_path and executable by PUBLIC).

mod common;

use common::{connect, TestDb};
use tokio_postgres::Client;

/// The SECURITY DEFINER functions the project knows; any other is a failure.
const KNOWN_DEFINER_FUNCTIONS: &[&str] = &[
    "app.claim_job",
    "app.create_tenant",
    "app.default_tenant",
    "app.fail_orphaned_job",
    "app.join_default_tenant",
    "app.keep_an_owner",
    "app.member_role",
    "app.my_tenants",
    "app.roll_up_usage",
    "app.set_default_tenant",
    "app.tenant_for_slug",
];

async fn strings(client: &Client, sql: &str) -> Vec<String> {
    client
        .query(sql, &[])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// Every violation of the isolation rules visible in the catalog of `client`'s database.
async fn audit(client: &Client) -> Vec<String> {
    let mut violations = Vec::new();
    let role = client
        .query_one(
            "SELECT rolsuper, rolbypassrls, rolcreaterole, rolcreatedb FROM pg_roles WHERE rolname = 'rg_app'",
            &[],
        )
        .await
        .expect("rg_app exists");
    let flags: [bool; 4] = [role.get(0), role.get(1), role.get(2), role.get(3)];
    if flags.iter().any(|f| *f) {
        violations.push(format!(
            "rg_app has superuser/bypassrls/createrole/createdb: {flags:?}"
        ));
    }
    violations.extend(
        strings(
            client,
            "SELECT 'rg_app owns ' || kind || ' ' || name FROM ( \
                SELECT 'relation' AS kind, c.oid::regclass::text AS name, c.relowner AS owner FROM pg_class c \
                UNION ALL SELECT 'function', p.oid::regprocedure::text, p.proowner FROM pg_proc p \
                UNION ALL SELECT 'schema', n.nspname::text, n.nspowner FROM pg_namespace n \
                UNION ALL SELECT 'type', t.oid::regtype::text, t.typowner FROM pg_type t \
                UNION ALL SELECT 'database', d.datname::text, d.datdba FROM pg_database d \
             ) o WHERE o.owner = 'rg_app'::regrole",
        )
        .await,
    );
    violations.extend(
        strings(
            client,
            "SELECT 'rg_app is a member of ' || r.rolname FROM pg_roles r \
             WHERE r.rolname <> 'rg_app' AND pg_has_role('rg_app', r.oid, 'MEMBER')",
        )
        .await,
    );
    violations.extend(
        strings(
            client,
            "SELECT 'table ' || c.oid::regclass::text || ' lacks ' || \
                    concat_ws(', ', CASE WHEN NOT c.relrowsecurity THEN 'ENABLE RLS' END, \
                                    CASE WHEN NOT c.relforcerowsecurity THEN 'FORCE RLS' END, \
                                    CASE WHEN NOT EXISTS (SELECT 1 FROM pg_policy p WHERE p.polrelid = c.oid) \
                                         THEN 'a policy' END) \
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = 'app' AND c.relkind IN ('r', 'p') \
               AND (NOT c.relrowsecurity OR NOT c.relforcerowsecurity \
                    OR NOT EXISTS (SELECT 1 FROM pg_policy p WHERE p.polrelid = c.oid))",
        )
        .await,
    );
    violations.extend(
        strings(
            client,
            "SELECT 'write policy ' || p.polname || ' on ' || p.polrelid::regclass::text || ' has no WITH CHECK' \
             FROM pg_policy p WHERE p.polcmd IN ('a', 'w', '*') AND p.polwithcheck IS NULL",
        )
        .await,
    );
    violations.extend(
        strings(
            client,
            "SELECT 'policy ' || p.polname || ' on ' || p.polrelid::regclass::text || ' applies to PUBLIC' \
             FROM pg_policy p WHERE 0::oid = ANY (p.polroles)",
        )
        .await,
    );
    violations.extend(
        strings(
            client,
            "SELECT 'view ' || c.oid::regclass::text || ' is not security_invoker' \
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = 'app' AND c.relkind IN ('v', 'm') \
               AND NOT coalesce('security_invoker=true' = ANY (c.reloptions), false)",
        )
        .await,
    );
    violations.extend(
        strings(
            client,
            "SELECT 'definer function ' || p.oid::regprocedure::text || ' does not pin search_path' \
             FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace \
             WHERE p.prosecdef AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
               AND NOT EXISTS (SELECT 1 FROM unnest(p.proconfig) c WHERE c LIKE 'search_path=%')",
        )
        .await,
    );
    violations.extend(
        strings(
            client,
            "SELECT 'definer function ' || p.oid::regprocedure::text || ' is executable by PUBLIC' \
             FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace \
             WHERE p.prosecdef AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
               AND EXISTS (SELECT 1 FROM aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) a \
                           WHERE a.grantee = 0 AND a.privilege_type = 'EXECUTE')",
        )
        .await,
    );
    let definers = strings(
        client,
        "SELECT n.nspname || '.' || p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace \
         WHERE p.prosecdef AND n.nspname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1",
    )
    .await;
    for f in definers {
        if !KNOWN_DEFINER_FUNCTIONS.contains(&f.as_str()) {
            violations.push(format!("unknown SECURITY DEFINER function {f}"));
        }
    }
    violations.extend(
        strings(
            client,
            "SELECT 'definer function ' || p.oid::regprocedure::text || ' is owned by ' || r.rolname \
             FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace JOIN pg_roles r ON r.oid = p.proowner \
             WHERE p.prosecdef AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
               AND (r.rolsuper OR r.rolcanlogin)",
        )
        .await,
    );
    violations
}

#[tokio::test]
async fn migrated_schema_passes_the_audit_as_rg_app() {
    let t = TestDb::new().await;
    let app = t.app_client().await;
    let who: String = app
        .query_one("SELECT current_user::text", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(who, "rg_app", "the audit runs as the application role");
    let violations = audit(&app).await;
    assert!(violations.is_empty(), "violations: {violations:#?}");

    let tables = common::tenant_tables(&app).await;
    for expected in [
        "tenants",
        "tenant_users",
        "tenant_settings",
        "papers",
        "paper_sections",
        "nodes",
        "edges",
        "entity_mentions",
        "inferred_insights",
        "usage_events",
        "jobs",
    ] {
        assert!(
            tables.iter().any(|t| t == expected),
            "missing table {expected}"
        );
    }
}

/// Tables that belong to no tenant are out of the application role's reach entirely; only
/// the definer functions use them.
#[tokio::test]
async fn user_scoped_tables_are_closed_to_rg_app() {
    let t = TestDb::new().await;
    let app = t.app_client().await;
    let tables = strings(
        &app,
        "SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = 'app' AND c.relkind = 'r' AND c.relname <> 'tenants' \
           AND NOT EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid \
                           AND a.attname = 'tenant_id' AND NOT a.attisdropped)",
    )
    .await;
    assert_eq!(tables, ["user_settings"]);
    for table in tables {
        let err = app
            .query(&format!("SELECT * FROM app.{table}"), &[])
            .await
            .unwrap_err();
        assert_eq!(
            err.code().map(|c| c.code()),
            Some("42501"),
            "{table}: {err}"
        );
    }
}

/// Functions the project's roles create are not executable by PUBLIC by default.
#[tokio::test]
async fn new_functions_are_not_executable_by_public() {
    let t = TestDb::new().await;
    let su = t.superuser().await;
    su.batch_execute(
        "SET ROLE rg_owner;
         CREATE FUNCTION app.fresh() RETURNS int LANGUAGE sql AS 'SELECT 1';
         RESET ROLE;",
    )
    .await
    .unwrap();
    let app = t.app_client().await;
    let err = app.query("SELECT app.fresh()", &[]).await.unwrap_err();
    assert_eq!(err.code().map(|c| c.code()), Some("42501"), "{err}");
}

#[tokio::test]
async fn audit_catches_a_broken_schema() {
    let t = TestDb::new().await;
    let su = t.superuser().await;
    su.batch_execute(
        "SET ROLE rg_owner;
         CREATE TABLE app.leaky (tenant_id uuid, secret text);
         ALTER TABLE app.leaky ENABLE ROW LEVEL SECURITY;
         CREATE TABLE app.unforced (tenant_id uuid);
         ALTER TABLE app.unforced ENABLE ROW LEVEL SECURITY;
         CREATE POLICY p ON app.unforced FOR SELECT TO rg_app USING (true);
         CREATE POLICY sloppy ON app.papers FOR UPDATE TO rg_app USING (true);
         CREATE VIEW app.papers_view AS SELECT id FROM app.papers;
         CREATE FUNCTION app.backdoor() RETURNS bigint LANGUAGE sql SECURITY DEFINER
             AS 'SELECT count(*) FROM app.papers';
         GRANT EXECUTE ON FUNCTION app.backdoor() TO PUBLIC;
         RESET ROLE;
         CREATE TABLE app.owned_by_app (id int);
         ALTER TABLE app.owned_by_app OWNER TO rg_app;",
    )
    .await
    .expect("break the schema");
    let app = connect(t.app_config()).await;
    let violations = audit(&app).await.join("\n");
    for expected in [
        "table app.leaky lacks FORCE RLS, a policy",
        "table app.unforced lacks FORCE RLS",
        "write policy sloppy on app.papers has no WITH CHECK",
        "view app.papers_view is not security_invoker",
        "definer function app.backdoor() does not pin search_path",
        "definer function app.backdoor() is executable by PUBLIC",
        "unknown SECURITY DEFINER function app.backdoor",
        "rg_app owns relation app.owned_by_app",
    ] {
        assert!(
            violations.contains(expected),
            "expected «{expected}» in:\n{violations}"
        );
    }
}

/// The policies really are in the wrapped sub-select form, so the membership check runs once
/// per query (an InitPlan) and not once per row.
#[tokio::test]
async fn policies_wrap_function_calls_in_sub_selects() {
    let t = TestDb::new().await;
    let app = t.app_client().await;
    let unwrapped = strings(
        &app,
        "SELECT p.polname || ' on ' || p.polrelid::regclass::text || ': ' || expr FROM pg_policy p, \
         LATERAL (SELECT pg_get_expr(p.polqual, p.polrelid) UNION ALL \
                  SELECT pg_get_expr(p.polwithcheck, p.polrelid)) e(expr) \
         WHERE expr ~ 'app\\.(tenant_id|user_id|member_role)\\(\\)' \
           AND expr !~ '\\(\\s*SELECT app\\.(tenant_id|user_id|member_role)\\(\\)'",
    )
    .await;
    assert!(unwrapped.is_empty(), "unwrapped calls: {unwrapped:#?}");
    let s =
        t.db.session(
            research_graph::ids::DEFAULT_TENANT,
            research_graph::ids::LOCAL_USER,
        )
        .await
        .unwrap();
    let plan: Vec<String> = s
        .query("EXPLAIN SELECT * FROM app.papers", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let plan = plan.join("\n");
    assert!(
        plan.contains("InitPlan"),
        "policy calls become InitPlans:\n{plan}"
    );
}

/// The hosted part's role may read usage (and tenant names) of every tenant, and nothing else.
#[tokio::test]
async fn the_platform_role_reads_usage_only() {
    let t = TestDb::new().await;
    let app = t.app_client().await;
    let tables = strings(
        &app,
        "SELECT c.relname || ':' || p.privilege_type FROM pg_class c \
         JOIN pg_namespace n ON n.oid = c.relnamespace, \
         LATERAL (SELECT unnest(ARRAY['SELECT','INSERT','UPDATE','DELETE','TRUNCATE']) AS privilege_type) p \
         WHERE n.nspname = 'app' AND c.relkind = 'r' \
           AND has_table_privilege('rg_platform', c.oid, p.privilege_type) ORDER BY 1",
    )
    .await;
    assert_eq!(tables, ["usage_daily:SELECT", "usage_events:SELECT"]);
    let columns = strings(
        &app,
        "SELECT attname::text FROM pg_attribute WHERE attrelid = 'app.tenants'::regclass AND attnum > 0 \
         AND NOT attisdropped AND has_column_privilege('rg_platform', attrelid, attnum, 'SELECT') ORDER BY 1",
    )
    .await;
    assert_eq!(columns, ["id", "name", "slug"]);
    let role = app
        .query_one(
            "SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = 'rg_platform'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        (role.get::<_, bool>(0), role.get::<_, bool>(1)),
        (false, false)
    );
}
