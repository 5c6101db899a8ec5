//! The test harness: one ephemeral PostgreSQL cluster per test binary, started from the
//! machine's server binaries by the same launcher `serve` uses; a template database migrated
//! once; a fresh `CREATE DATABASE … TEMPLATE` per test.
//!
//! The cluster lives in a static and is never dropped; the launcher's watchdog stops it and
//! removes its directory when the test binary exits, panicking tests included.
//!
//! Connections:
//! - [`TestDb::db`]: the application role's pool, the way the server uses it;
//! - [`TestDb::app_client`]: a raw `rg_app` connection with no context set;
//! - [`TestDb::superuser`]: a raw superuser connection, to set up data that no tenant may write
//!   and to confirm what the database really holds. Never used to prove isolation.
//!
//! Set `TEST_LOG=1` to see the server's logs.
#![allow(dead_code)]

pub mod http;
pub mod mock_gemini;
pub mod workers;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

use research_graph::db::admin::AdminConnection;
use research_graph::db::local::{LocalOptions, LocalPostgres, SUPERUSER};
use research_graph::db::{Database, PoolSettings, TenantSession};
use research_graph::ids::{Role, TenantId, UserId};
use tokio_postgres::{Client, NoTls};
use uuid::Uuid;

const TEMPLATE: &str = "rg_template";

static CLUSTER: OnceLock<LocalPostgres> = OnceLock::new();
static NEXT_DB: AtomicUsize = AtomicUsize::new(0);

/// The binary's cluster, started (and its template migrated) on first use.
pub fn cluster() -> &'static LocalPostgres {
    CLUSTER.get_or_init(|| {
        if std::env::var_os("TEST_LOG").is_some() {
            research_graph::telemetry::init();
        }
        let dir = tempfile::Builder::new()
            .prefix("rg-test-")
            .tempdir_in("/tmp")
            .expect("create a directory for the test cluster")
            .keep();
        let pg = LocalPostgres::start(LocalOptions {
            dir,
            ephemeral: true,
        })
        .expect("start the test PostgreSQL cluster");
        let maintenance = pg.config(SUPERUSER, "postgres");
        let template = pg.config(SUPERUSER, TEMPLATE);
        // A runtime of its own: the caller may be inside a test's runtime.
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async {
                let admin = AdminConnection::connect(&maintenance)
                    .await
                    .expect("connect");
                admin
                    .ensure_database(TEMPLATE)
                    .await
                    .expect("create template");
                admin.close().await;
                let mut admin = AdminConnection::connect(&template).await.expect("connect");
                admin.migrate().await.expect("migrate the template");
                admin.close().await;
            });
        })
        .join()
        .expect("template set-up");
        pg
    })
}

/// Shuts the binary's cluster down (fast shutdown: sessions are cut, open transactions roll
/// back) and keeps its data. Every test of the binary shares the cluster, so a test that does
/// this must be the only test of its binary.
pub async fn shut_down_cluster() {
    tokio::task::spawn_blocking(|| cluster().shut_down())
        .await
        .expect("shut-down thread")
        .expect("shut the test cluster down");
}

/// Starts the cluster again after [`shut_down_cluster`], on the same socket, and waits until it
/// accepts connections.
pub async fn start_cluster_again() {
    tokio::task::spawn_blocking(|| cluster().start_again())
        .await
        .expect("start thread")
        .expect("start the test cluster again");
}

/// A fresh database of its own for one test.
pub struct TestDb {
    /// The database's name.
    pub name: String,
    /// The application role's pool.
    pub db: Database,
}

impl TestDb {
    /// A fresh database with a pool of 4 connections.
    pub async fn new() -> TestDb {
        TestDb::with_pool_size(4).await
    }

    /// A fresh database with a pool of `size` connections.
    pub async fn with_pool_size(size: usize) -> TestDb {
        TestDb::with_settings(PoolSettings {
            max_size: size,
            ..PoolSettings::default()
        })
        .await
    }

    /// A fresh database with the given pool settings.
    pub async fn with_settings(settings: PoolSettings) -> TestDb {
        let name = create_database("t", Some(TEMPLATE)).await;
        let db = Database::new(cluster().config("rg_app", &name), &settings).expect("pool");
        TestDb { name, db }
    }

    /// A fresh, empty database with no migrations applied.
    pub async fn unmigrated() -> (String, tokio_postgres::Config) {
        let name = create_database("u", None).await;
        let config = cluster().config(SUPERUSER, &name);
        (name, config)
    }

    /// A raw superuser connection (bypasses RLS): for set-up and confirmation only.
    pub async fn superuser(&self) -> Client {
        connect(cluster().config(SUPERUSER, &self.name)).await
    }

    /// A raw application-role connection with no tenant context.
    pub async fn app_client(&self) -> Client {
        connect(cluster().config("rg_app", &self.name)).await
    }

    /// Privileged connection settings for this database.
    pub fn admin_config(&self) -> tokio_postgres::Config {
        cluster().config(SUPERUSER, &self.name)
    }

    /// Application-role connection settings for this database.
    pub fn app_config(&self) -> tokio_postgres::Config {
        cluster().config("rg_app", &self.name)
    }

    /// Creates a tenant through `app.create_tenant` as a new user, who becomes its owner.
    pub async fn create_tenant(&self, slug: &str) -> (TenantId, UserId) {
        let owner = UserId(Uuid::new_v4());
        let tenant = self
            .db
            .create_tenant(owner, &format!("Tenant {slug}"), slug)
            .await
            .expect("create tenant");
        (tenant, owner)
    }

    /// Adds a new user with `role` to `tenant`, acting as its `owner` (through RLS).
    pub async fn add_member(&self, tenant: TenantId, owner: UserId, role: Role) -> UserId {
        let user = UserId(Uuid::new_v4());
        let session = self.session(tenant, owner).await;
        let added = session
            .execute(
                "INSERT INTO app.tenant_users (tenant_id, user_id, role) VALUES ($1, $2, $3)",
                &[&tenant.0, &user.0, &role.as_str()],
            )
            .await
            .expect("add member");
        assert_eq!(added, 1);
        session.commit().await.expect("commit");
        user
    }

    /// A tenant session, the way requests get one.
    pub async fn session(&self, tenant: TenantId, user: UserId) -> TenantSession {
        self.db.session(tenant, user).await.expect("begin session")
    }
}

/// Creates a uniquely named database on the cluster, from `template` when given.
async fn create_database(prefix: &str, template: Option<&str>) -> String {
    let name = format!(
        "{prefix}_{}_{}",
        std::process::id(),
        NEXT_DB.fetch_add(1, Ordering::Relaxed)
    );
    let admin = AdminConnection::connect(&cluster().config(SUPERUSER, "postgres"))
        .await
        .expect("connect as superuser");
    let sql = match template {
        Some(template) => format!("CREATE DATABASE {name} TEMPLATE {template}"),
        None => format!("CREATE DATABASE {name}"),
    };
    admin
        .client()
        .batch_execute(&sql)
        .await
        .expect("create the database");
    admin.close().await;
    name
}

/// Connects and drives the connection on the current runtime.
pub async fn connect(config: tokio_postgres::Config) -> Client {
    let (client, connection) = config.connect(NoTls).await.expect("connect");
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}

/// Ids of one row in every table of a tenant, written through the tenant session.
#[derive(Clone, Copy, Debug)]
pub struct Seeded {
    pub tenant: TenantId,
    pub owner: UserId,
    pub paper: Uuid,
    pub section: Uuid,
    pub source_node: Uuid,
    pub target_node: Uuid,
    pub edge: Uuid,
    pub mention: Uuid,
    pub insight: Uuid,
    pub job: Uuid,
    pub usage_event: Uuid,
}

/// Creates a tenant and gives every tenant table at least one row, as its owner through RLS.
/// `doi` and `node_key` let two tenants share values on purpose.
pub async fn seed_tenant(t: &TestDb, slug: &str, doi: &str, node_key: &str) -> Seeded {
    let (tenant, owner) = t.create_tenant(slug).await;
    let s = t.session(tenant, owner).await;
    let tid = tenant.0;
    let one = |rows: Vec<tokio_postgres::Row>| -> Uuid { rows[0].get(0) };
    let paper = one(s
        .query(
            "INSERT INTO app.papers (tenant_id, title, doi, abstract) \
             VALUES ($1, $2, $3, 'An abstract about graphs.') RETURNING id",
            &[&tid, &format!("Paper of {slug}"), &doi],
        )
        .await
        .expect("paper"));
    let section = one(s
        .query(
            "INSERT INTO app.paper_sections (tenant_id, paper_id, ordinal, kind, heading, content, content_hash) \
             VALUES ($1, $2, 0, 'abstract', 'Abstract', 'We propose GraphNet for link prediction.', 'h0') RETURNING id",
            &[&tid, &paper],
        )
        .await
        .expect("section"));
    let node = |name: &'static str, key: String, kind: &'static str| {
        let s = &s;
        async move {
            let rows = s
                .query(
                    "INSERT INTO app.nodes (tenant_id, node_type, name, key) VALUES ($1, $2, $3, $4) RETURNING id",
                    &[&tid, &kind, &name, &key],
                )
                .await
                .expect("node");
            rows[0].get::<_, Uuid>(0)
        }
    };
    let source_node = node("GraphNet", node_key.to_owned(), "Method").await;
    let target_node = node("link prediction", format!("{node_key}-task"), "Task").await;
    let edge = one(s
        .query(
            "INSERT INTO app.edges (tenant_id, source_id, target_id, relation_type, confidence) \
             VALUES ($1, $2, $3, 'USED-FOR', 0.9) RETURNING id",
            &[&tid, &source_node, &target_node],
        )
        .await
        .expect("edge"));
    let job = one(s
        .query(
            "INSERT INTO app.jobs (tenant_id, kind, paper_id, created_by) VALUES ($1, 'process_paper', $2, $3) RETURNING id",
            &[&tid, &paper, &owner.0],
        )
        .await
        .expect("job"));
    let mention = one(s
        .query(
            "INSERT INTO app.entity_mentions (tenant_id, node_id, section_id, quote, start_offset, end_offset, agent, model, prompt_version, job_id) \
             VALUES ($1, $2, $3, 'GraphNet', 11, 19, 'extractor', 'offline', 'v1', $4) RETURNING id",
            &[&tid, &source_node, &section, &job],
        )
        .await
        .expect("mention"));
    let insight = one(s
        .query(
            "INSERT INTO app.inferred_insights (tenant_id, insight_type, statement, confidence) \
             VALUES ($1, 'gap', 'No method is evaluated on link prediction.', 0.7) RETURNING id",
            &[&tid],
        )
        .await
        .expect("insight"));
    s.execute(
        "INSERT INTO app.insight_nodes (tenant_id, insight_id, node_id) VALUES ($1, $2, $3)",
        &[&tid, &insight, &target_node],
    )
    .await
    .expect("insight node");
    s.execute(
        "INSERT INTO app.insight_edges (tenant_id, insight_id, edge_id) VALUES ($1, $2, $3)",
        &[&tid, &insight, &edge],
    )
    .await
    .expect("insight edge");
    let usage_event = one(s
        .query(
            "INSERT INTO app.usage_events (tenant_id, job_id, stage, agent, provider, model, input_tokens, output_tokens, \
             base_cost_micros, billed_cost_micros, execution_mode, idempotency_key) \
             VALUES ($1, $2, 'extract', 'extractor', 'offline', 'offline', 100, 20, 0, 0, 'hosted', $3) RETURNING id",
            &[&tid, &job, &format!("{slug}-call-1")],
        )
        .await
        .expect("usage event"));
    s.execute(
        "INSERT INTO app.usage_reservations (tenant_id, cost_micros, tokens, expires_at) \
         VALUES ($1, 0, 0, now() - interval '1 day')",
        &[&tid],
    )
    .await
    .expect("expired reservation");
    s.execute(
        "INSERT INTO app.section_extractions (tenant_id, section_id, content_hash, agent, model, \
         prompt_version, status, entities, relations, mentions, job_id) \
         VALUES ($1, $2, 'h0', 'extractor', 'offline', 'v1', 'done', 2, 1, 1, $3)",
        &[&tid, &section, &job],
    )
    .await
    .expect("section extraction");
    s.execute(
        "INSERT INTO app.edge_evidence (tenant_id, edge_id, section_id, quote, start_offset, \
         end_offset, confidence, agent, model, prompt_version, job_id) \
         VALUES ($1, $2, $3, 'GraphNet for link prediction', 11, 39, 0.9, 'extractor', 'offline', 'v1', $4)",
        &[&tid, &edge, &section, &job],
    )
    .await
    .expect("edge evidence");
    let (a, b) = if source_node < target_node {
        (source_node, target_node)
    } else {
        (target_node, source_node)
    };
    s.execute(
        "INSERT INTO app.merge_candidates (tenant_id, node_a, node_b, score, reason) \
         VALUES ($1, $2, $3, 0.9, 'token overlap 0.90')",
        &[&tid, &a, &b],
    )
    .await
    .expect("merge candidate");
    s.commit().await.expect("commit seed");
    Seeded {
        tenant,
        owner,
        paper,
        section,
        source_node,
        target_node,
        edge,
        mention,
        insight,
        job,
        usage_event,
    }
}

/// Every tenant table of the application schema (`tenants` and every table with a
/// `tenant_id`), from the catalog, so a new table is never missed.
pub async fn tenant_tables(client: &Client) -> Vec<String> {
    client
        .query(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = 'app' AND c.relkind IN ('r', 'p') \
               AND (c.relname = 'tenants' OR EXISTS (SELECT 1 FROM pg_attribute a \
                    WHERE a.attrelid = c.oid AND a.attname = 'tenant_id' AND NOT a.attisdropped)) \
             ORDER BY c.relname",
            &[],
        )
        .await
        .expect("list tables")
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// The column that names a row's tenant in `table`.
pub fn tenant_column(table: &str) -> &'static str {
    if table == "tenants" {
        "id"
    } else {
        "tenant_id"
    }
}

/// Connection settings in the key=value form a user would put in DATABASE_URL.
pub fn database_url(config: &tokio_postgres::Config) -> String {
    let host = match &config.get_hosts()[0] {
        tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
        tokio_postgres::config::Host::Tcp(host) => host.clone(),
    };
    format!(
        "host={host} port={} user={} dbname={}",
        config.get_ports()[0],
        config.get_user().unwrap(),
        config.get_dbname().unwrap()
    )
}

/// The SQLSTATE of a failed statement, as text.
pub fn sqlstate(err: &research_graph::db::DbError) -> String {
    err.sql_state()
        .map(|c| c.code().to_owned())
        .unwrap_or_else(|| format!("no SQLSTATE: {err}"))
}
