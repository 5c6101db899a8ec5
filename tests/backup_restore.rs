//! Backup and restore of one tenant: `research-graph backup` reads a tenant through row-level
//! security as an owner, and the file holds nothing of any other tenant; `research-graph
//! restore` loads it into a fresh database, where the API answers exactly as it did; restoring
//! twice, a damaged file, a reader who is no owner, an API key that does not open, and a login
//! that cannot bypass row-level security are all handled. Also: what `pg_dump
//! --enable-row-security` gives as `rg_app` with a tenant set for its session.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::http::{app, gql, token, AppOptions};
use common::workers::{drain, offline_worker};
use common::{cluster, seed_tenant, tenant_tables, Seeded, TestDb};
use research_graph::backup::{
    self, ApiKeyOutcome, BackupError, BackupFile, FileError, RestoreError, RestoreOptions,
    SchemaSource, SKIPPED, TABLES,
};
use research_graph::crypto::{KeyRing, SecretString};
use research_graph::db::admin::{latest_migration, AdminConnection};
use research_graph::db::{Database, PoolSettings};
use research_graph::ids::{Role, TenantId, UserId, DEFAULT_TENANT};
use research_graph::pipeline::demo::PAPERS;
use research_graph::pipeline::ingest::{parse, SourceFormat};
use research_graph::pipeline::jobs::{self, JobKind, DEFAULT_MAX_ATTEMPTS};
use research_graph::pipeline::{store, PaperMeta};
use serde_json::{json, Value};
use uuid::Uuid;

/// A paper only tenant beta has.
const BETA_PAPER: &str = "# Quasar Lattice Encoders\n\n## Abstract\n\
We propose Quasar Lattice Encoder (QLE) for galaxy morphology classification. \
QLE is evaluated on the ZooVerse dataset with accuracy, and QLE outperforms Hubble Net \
on ZooVerse.\n";

/// Runs every queued job with the offline extractor and reasoner, then writes the usage events
/// the meter buffered.
async fn run_jobs(t: &TestDb) {
    let (worker, meter) = offline_worker(&t.db, "backup-test-worker");
    drain(&worker).await;
    assert_eq!(meter.shutdown(Duration::from_secs(10)).await, 0);
}

/// Ingests `papers` into the tenant through `pipeline::store` and queues their processing.
async fn ingest(t: &TestDb, tenant: TenantId, owner: UserId, papers: &[&str]) {
    let session = t.session(tenant, owner).await;
    for text in papers {
        let doc = parse(text, SourceFormat::Markdown).unwrap();
        let stored = store(
            &session,
            &doc,
            SourceFormat::Markdown,
            &PaperMeta::default(),
        )
        .await
        .unwrap();
        assert!(stored.created);
        jobs::enqueue(
            &session,
            JobKind::ProcessPaper,
            Some(stored.paper),
            json!({}),
            DEFAULT_MAX_ATTEMPTS,
        )
        .await
        .unwrap();
    }
    session.commit().await.unwrap();
}

async fn enqueue_reasoning(t: &TestDb, s: &Seeded) {
    let session = t.session(s.tenant, s.owner).await;
    jobs::enqueue(
        &session,
        JobKind::Reasoning,
        None,
        json!({}),
        DEFAULT_MAX_ATTEMPTS,
    )
    .await
    .unwrap();
    session.commit().await.unwrap();
}

/// Records model calls the way the metering gateway does (the offline extractor calls no
/// model): today and yesterday, two models, one failed call, in two statements, so that the
/// rollup trigger both creates and adds to daily rows.
async fn record_usage(t: &TestDb, tenant: TenantId, owner: UserId, tag: &str) {
    let session = t.session(tenant, owner).await;
    for batch in 0..2 {
        session
            .execute(
                "INSERT INTO app.usage_events (tenant_id, occurred_at, stage, agent, provider, \
                     model, input_tokens, cached_tokens, output_tokens, thinking_tokens, \
                     base_cost_micros, billed_cost_micros, execution_mode, latency_ms, outcome, \
                     error_kind, idempotency_key)
                 SELECT app.tenant_id(), now() - make_interval(days => i % 2), \
                        CASE WHEN i % 3 = 0 THEN 'reason' ELSE 'extract' END, 'extractor', \
                        'gemini', CASE WHEN i % 2 = 0 THEN 'gemini-2.5-flash' \
                                       ELSE 'gemini-2.5-pro' END, \
                        1000 * i, 10 * i, 200 * i, 5 * i, 1234 * i, 1500 * i, 'hosted', 800, \
                        CASE WHEN i = 5 THEN 'error' ELSE 'ok' END, \
                        CASE WHEN i = 5 THEN 'unavailable' END, $1 || '-' || $2 || '-' || i
                 FROM generate_series(1, 6) i",
                &[&tag, &batch.to_string()],
            )
            .await
            .unwrap();
    }
    session.commit().await.unwrap();
}

/// Two tenants with papers, sections, a graph with mentions and evidence, insights, merge
/// candidates, jobs and usage; beta shares one paper's text with alpha.
async fn two_rich_tenants(t: &TestDb) -> (Seeded, Seeded) {
    let a = seed_tenant(t, "alpha", "10.1000/alpha-seed", "graphnet").await;
    let b = seed_tenant(t, "beta", "10.1000/beta-only-doi", "graphnet").await;
    let demo: Vec<&str> = PAPERS.iter().map(|(_, text)| *text).collect();
    ingest(t, a.tenant, a.owner, &demo).await;
    ingest(t, b.tenant, b.owner, &[demo[0], BETA_PAPER]).await;
    run_jobs(t).await;
    enqueue_reasoning(t, &a).await;
    enqueue_reasoning(t, &b).await;
    run_jobs(t).await;
    record_usage(t, a.tenant, a.owner, "alpha").await;
    record_usage(t, b.tenant, b.owner, "beta").await;
    (a, b)
}

/// The binary with `args`, connected to a test database; (success, stdout, stderr).
fn binary(args: &[&str], app: Option<String>, admin: Option<String>) -> (bool, String, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_research-graph"));
    command
        .args(args)
        .env_remove("DATABASE_URL")
        .env_remove("ADMIN_DATABASE_URL")
        .env_remove("ENCRYPTION_KEY")
        .env_remove("ENCRYPTION_PREVIOUS_KEYS");
    if let Some(app) = app {
        command.env("DATABASE_URL", app);
    }
    if let Some(admin) = admin {
        command.env("ADMIN_DATABASE_URL", admin);
    }
    let output = command.output().expect("run research-graph");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// A fresh database migrated by this build, and the application role's pool on it.
async fn fresh_migrated() -> TestDb {
    let (name, config) = TestDb::unmigrated().await;
    let mut admin = AdminConnection::connect(&config).await.unwrap();
    admin.migrate().await.unwrap();
    admin.close().await;
    let db = Database::new(cluster().config("rg_app", &name), &PoolSettings::default()).unwrap();
    TestDb { name, db }
}

async fn restore_into(
    t: &TestDb,
    file: &Path,
    options: &RestoreOptions<'_>,
) -> Result<backup::RestoreReport, RestoreError> {
    let mut admin = AdminConnection::connect(&t.admin_config()).await.unwrap();
    let result = backup::restore(&mut admin, file, options).await;
    admin.close().await;
    result
}

async fn backup_of(t: &TestDb, tenant: TenantId, user: UserId, out: &Path) -> backup::BackupReport {
    backup::backup(
        &t.db,
        tenant,
        user,
        (latest_migration(), SchemaSource::Build),
        out,
    )
    .await
    .expect("backup")
}

/// Whether the database holds the tenant, asked as the superuser (confirmation only).
async fn tenant_exists(t: &TestDb, tenant: Uuid) -> bool {
    t.superuser()
        .await
        .query_opt("SELECT 1 FROM app.tenants WHERE id = $1", &[&tenant])
        .await
        .unwrap()
        .is_some()
}

/// Every id of the tenant's rows and its members, read through its owner's tenant session.
async fn ids_of(t: &TestDb, s: &Seeded) -> Vec<String> {
    let session = t.session(s.tenant, s.owner).await;
    let mut ids = vec![s.tenant.to_string()];
    for table in TABLES {
        let column = match table {
            "tenants" | "tenant_settings" | "usage_daily" => continue,
            "tenant_users" => "user_id",
            "insight_nodes" | "insight_edges" => "insight_id",
            _ => "id",
        };
        let rows = session
            .query(&format!("SELECT {column}::text FROM app.{table}"), &[])
            .await
            .unwrap();
        assert!(!rows.is_empty(), "{table} of {} is empty", s.tenant);
        ids.extend(rows.iter().map(|r| r.get::<_, String>(0)));
    }
    session.commit().await.unwrap();
    ids
}

/// The same questions, asked of the API as the tenant's owner.
async fn answers(db: &Database, s: &Seeded) -> Vec<Value> {
    let cli = app(db, AppOptions::multi_tenant());
    let owner = token(s.owner);
    let headers = [("x-tenant-id", s.tenant.to_string())];
    let today = chrono::Utc::now().date_naive();
    let days = json!({
        "from": (today - chrono::Days::new(2)).to_string(),
        "to": (today + chrono::Days::new(1)).to_string(),
    });
    let queries = [
        "{ tenant { id slug name createdAt members { role since user { id } }
            settings { extractionModel reasoningModel executionMode hasApiKey
                       confidenceThreshold similarityThreshold limitMode updatedAt } } }",
        "{ papers(first: 20) { totalCount pageInfo { hasNextPage endCursor }
            nodes { id rowId title authors abstract doi arxivId year venue sourceKind createdAt
                    updatedAt
                    sections(first: 30) { totalCount pageInfo { hasNextPage }
                        nodes { id ordinal kind heading content createdAt } } } } }",
        "{ graphNodes(first: 100) { totalCount pageInfo { hasNextPage endCursor }
            nodes { id name nodeType key aliases description createdAt updatedAt
                    mentions(first: 5) { totalCount
                        nodes { id quote startOffset endOffset agent model promptVersion jobId
                                section { id } } } } } }",
        "{ graphEdges(first: 100) { totalCount pageInfo { hasNextPage endCursor }
            nodes { id relationType confidence weight reviewStatus description createdAt
                    source { id name } target { id name } } } }",
        "{ insights(first: 30) { totalCount pageInfo { hasNextPage }
            nodes { id insightType statement rationale confidence status model promptVersion
                    jobId createdAt
                    supportingNodes(first: 10) { totalCount nodes { id name } }
                    supportingEdges(first: 10) { totalCount nodes { id relationType } } } } }",
        "query($from: NaiveDate!, $to: NaiveDate!) { usage {
            summary(from: $from, to: $to) { events errors inputTokens cachedTokens outputTokens
                                            thinkingTokens totalTokens baseCost billedCost }
            stats(from: $from, to: $to, groupBy: [DAY, STAGE, MODEL, AGENT, PROVIDER]) {
                day stage model agent provider totals { events inputTokens outputTokens billedCost } }
            events(first: 100) { totalCount
                nodes { rowId occurredAt stage agent model provider inputTokens outputTokens
                        outcome idempotencyKey jobId } } } }",
        "{ pipelineJobs(first: 100) { totalCount
            nodes { id kind status stage attempts maxAttempts lastError createdAt finishedAt
                    createdBy scopePaperId paper { id }
                    progress { sectionsTotal sectionsDone sectionsFailed entities relations
                               mentions dropped cost errors } } } }",
        "{ search(query: \"graph transformer\", first: 50) { totalCount
            nodes { kind score snippet paper { id } section { id } node { id } } } }",
        "{ mergeCandidates(first: 50, status: [OPEN, MERGED, DISMISSED]) { totalCount
            nodes { id score reason status nodeA { id } nodeB { id } } } }",
    ];
    let mut out = Vec::new();
    for query in queries {
        let variables = if query.starts_with("query(") {
            days.clone()
        } else {
            json!({})
        };
        let (status, body) = gql(&cli, "/graphql", Some(&owner), &headers, query, variables).await;
        assert_eq!(status, 200, "{body}");
        assert!(body.get("errors").is_none(), "{query}: {body}");
        out.push(body["data"].clone());
    }
    out
}

#[tokio::test]
async fn a_tenant_backed_up_by_the_binary_restores_into_a_fresh_database_and_answers_the_same() {
    let t = TestDb::new().await;
    let (a, b) = two_rich_tenants(&t).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("alpha.rgbackup");

    let started = std::time::Instant::now();
    let (ok, stdout, stderr) = binary(
        &[
            "backup",
            "--tenant",
            "alpha",
            "--user",
            &a.owner.to_string(),
            "--out",
            file.to_str().unwrap(),
        ],
        Some(common::database_url(&t.app_config())),
        Some(common::database_url(&t.admin_config())),
    );
    let backup_time = started.elapsed();
    assert!(ok, "{stdout}{stderr}");
    assert!(stdout.contains("backed up tenant alpha"), "{stdout}");

    // The header: this tenant, every table, the database's migration version, digests that
    // check out.
    let backup = BackupFile::open(&file).unwrap();
    backup.verify().unwrap();
    let header = backup.header().clone();
    assert_eq!(header.tenant.id, a.tenant.0);
    assert_eq!(header.tenant.slug, "alpha");
    assert_eq!(header.schema_version, latest_migration());
    assert_eq!(header.schema_version_source, SchemaSource::Database);
    let names: Vec<&str> = header.tables.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, TABLES);
    for table in &header.tables {
        assert!(table.rows > 0, "{} is empty in the backup", table.name);
        assert!(
            !table.columns.contains(&"search".to_owned()),
            "generated columns are not copied"
        );
    }
    let size = std::fs::metadata(&file).unwrap().len();
    let text = String::from_utf8(std::fs::read(&file).unwrap()).unwrap();

    // Nothing of beta: no id of any of its rows or members, not its DOI, name or paper, even
    // though it has a paper with the same text as one of alpha's.
    let beta_ids = ids_of(&t, &b).await;
    assert!(beta_ids.len() > 50, "beta has a graph: {}", beta_ids.len());
    for id in &beta_ids {
        assert!(
            !text.contains(id.as_str()),
            "beta's {id} is in alpha's backup"
        );
    }
    for beta_only in [
        "10.1000/beta-only-doi",
        "Tenant beta",
        "Quasar Lattice",
        "ZooVerse",
    ] {
        assert!(
            !text.contains(beta_only),
            "{beta_only:?} is in alpha's backup"
        );
    }
    // …and alpha's own rows are there.
    for id in ids_of(&t, &a).await {
        assert!(text.contains(id.as_str()), "alpha's {id} is missing");
    }

    // Restore into a database migrated from scratch.
    let restored = fresh_migrated().await;
    let started = std::time::Instant::now();
    let (ok, stdout, stderr) = binary(
        &["restore", "--in", file.to_str().unwrap()],
        None,
        Some(common::database_url(&restored.admin_config())),
    );
    let restore_time = started.elapsed();
    assert!(ok, "{stdout}{stderr}");
    assert!(stdout.contains("restored tenant alpha"), "{stdout}");
    eprintln!(
        "backup of alpha: {size} bytes, {} rows, backup {backup_time:.2?}, restore \
         {restore_time:.2?} (each including the binary's start)",
        header.tables.iter().map(|t| t.rows).sum::<u64>()
    );

    // The API answers the same, field for field, in both databases.
    let before = answers(&t.db, &a).await;
    let after = answers(&restored.db, &a).await;
    for (b, r) in before.iter().zip(&after) {
        assert_eq!(b, r);
    }
    let count = |i: usize, path: &str| before[i][path]["totalCount"].as_i64().unwrap();
    assert!(
        count(1, "papers") >= 4 && count(2, "graphNodes") >= 8,
        "{before:?}"
    );
    assert!(
        count(3, "graphEdges") > 0 && count(4, "insights") > 0,
        "{before:?}"
    );
    assert!(
        count(6, "pipelineJobs") >= 5 && count(7, "search") > 0,
        "{before:?}"
    );
    assert_eq!(before[5]["usage"]["summary"]["events"], 13, "{}", before[5]);

    // Every row too (evidence, extractions and rollups included, which the API shows only in
    // part): a backup of the restored tenant has the same data, digest for digest.
    let again = dir.path().join("again.rgbackup");
    let second = backup_of(&restored, a.tenant, a.owner, &again).await;
    assert_eq!(second.header.tables, header.tables);

    // A second restore is refused, and changes nothing.
    let (ok, stdout, stderr) = binary(
        &["restore", "--in", file.to_str().unwrap()],
        None,
        Some(common::database_url(&restored.admin_config())),
    );
    assert!(!ok, "{stdout}");
    assert!(
        stderr.contains(&format!("tenant {} already exists", a.tenant)),
        "{stderr}"
    );
    assert_eq!(answers(&restored.db, &a).await, after);
}

#[tokio::test]
async fn the_rollups_are_not_doubled_and_queued_jobs_do_not_run_after_a_restore() {
    let t = TestDb::new().await;
    let a = seed_tenant(&t, "alpha", "10.1000/a", "graphnet").await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a.rgbackup");
    backup_of(&t, a.tenant, a.owner, &file).await;

    let restored = TestDb::new().await;
    let report = restore_into(&restored, &file, &RestoreOptions::default())
        .await
        .unwrap();
    assert_eq!(report.jobs_cancelled, 1);
    assert_eq!(report.rollups_matched, Some(true));
    assert!(!report.as_table_owner);
    assert_eq!(report.api_key, ApiKeyOutcome::None);
    assert_eq!(report.tables.len(), TABLES.len());

    let s = restored.session(a.tenant, a.owner).await;
    let rollups = s
        .query("SELECT events, input_tokens FROM app.usage_daily", &[])
        .await
        .unwrap();
    assert_eq!(rollups.len(), 1);
    assert_eq!(
        (rollups[0].get::<_, i64>(0), rollups[0].get::<_, i64>(1)),
        (1, 100),
        "one event of 100 input tokens, counted once"
    );
    let job = s
        .query_one(
            "SELECT status, last_error, lease_owner FROM app.jobs WHERE id = $1",
            &[&a.job],
        )
        .await
        .unwrap();
    assert_eq!(job.get::<_, &str>(0), "cancelled");
    assert!(job
        .get::<_, &str>(1)
        .contains("restored from a backup while queued"));
    assert!(job.get::<_, Option<&str>>(2).is_none());
    s.commit().await.unwrap();
    assert!(
        restored
            .db
            .claim_job("restored-worker", Duration::from_secs(30))
            .await
            .unwrap()
            .is_none(),
        "nothing runs by itself after a restore"
    );
}

#[tokio::test]
async fn a_damaged_file_is_refused_and_nothing_is_written() {
    let t = TestDb::new().await;
    let a = seed_tenant(&t, "alpha", "10.1000/a", "graphnet").await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a.rgbackup");
    backup_of(&t, a.tenant, a.owner, &file).await;
    let good = std::fs::read(&file).unwrap();
    let header_end = header_end(&good);
    let target = TestDb::new().await;
    let damaged = dir.path().join("damaged.rgbackup");
    let refused = |bytes: Vec<u8>| {
        let damaged = damaged.clone();
        let target = &target;
        async move {
            std::fs::write(&damaged, bytes).unwrap();
            let error = restore_into(target, &damaged, &RestoreOptions::default())
                .await
                .unwrap_err();
            assert!(!tenant_exists(target, a.tenant.0).await, "{error}");
            error
        }
    };

    // One byte of a table's data: the table is named.
    let papers = BackupFile::open(&file)
        .unwrap()
        .header()
        .tables
        .iter()
        .take_while(|t| t.name != "papers")
        .map(|t| t.bytes as usize)
        .sum::<usize>();
    let mut bytes = good.clone();
    bytes[header_end + papers + 5] ^= 0x01;
    let error = refused(bytes).await;
    assert!(
        matches!(&error, RestoreError::File(FileError::TableDamaged(t)) if t == "papers"),
        "{error:?}"
    );
    assert_eq!(
        error.to_string(),
        "the data of table app.papers in the backup is damaged: its SHA-256 does not match"
    );

    // One byte of the header (a letter of the slug).
    let mut bytes = good.clone();
    let slug = find(&bytes, b"\"slug\":\"alpha\"").unwrap() + 9;
    bytes[slug] = b'x';
    let error = refused(bytes).await;
    assert!(
        matches!(error, RestoreError::File(FileError::HeaderDamaged)),
        "{error:?}"
    );

    // Cut short, or with a byte added.
    let error = refused(good[..good.len() - 1].to_vec()).await;
    assert!(error.to_string().contains("truncated"), "{error}");
    let mut bytes = good.clone();
    bytes.push(b'\n');
    let error = refused(bytes).await;
    assert!(error.to_string().contains("bytes added"), "{error}");

    // Not a backup at all.
    let error = refused(b"COPY app.papers FROM stdin;\n".to_vec()).await;
    assert!(
        error
            .to_string()
            .contains("is not a research-graph tenant backup"),
        "{error}"
    );

    // The intact file restores.
    restore_into(&target, &file, &RestoreOptions::default())
        .await
        .unwrap();
    assert!(tenant_exists(&target, a.tenant.0).await);
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Where a backup's data starts: after the magic line, the header and its digest.
fn header_end(bytes: &[u8]) -> usize {
    bytes
        .iter()
        .enumerate()
        .filter(|(_, b)| **b == b'\n')
        .nth(2)
        .unwrap()
        .0
        + 1
}

/// The backup at `path` with the CSV of `table` edited, and every digest made to match: a
/// forgery, not damage (the digests detect accidents; they are no signature).
fn forge(path: &Path, table: &str, edit: impl Fn(&str) -> String) -> Vec<u8> {
    use sha2::{Digest, Sha256};
    let bytes = std::fs::read(path).unwrap();
    let mut header = BackupFile::open(path).unwrap().header().clone();
    let mut at = header_end(&bytes);
    let mut data = Vec::new();
    for entry in header.tables.iter_mut() {
        let original = &bytes[at..at + entry.bytes as usize];
        at += entry.bytes as usize;
        let section = if entry.name == table {
            edit(std::str::from_utf8(original).unwrap()).into_bytes()
        } else {
            original.to_vec()
        };
        entry.bytes = section.len() as u64;
        entry.sha256 = format!("{:x}", Sha256::digest(&section));
        data.extend(section);
    }
    let line = serde_json::to_vec(&header).unwrap();
    let mut out = format!("{}\n", backup::MAGIC).into_bytes();
    out.extend(&line);
    out.extend(format!("\nsha256:{:x}\n", Sha256::digest(&line)).as_bytes());
    out.extend(data);
    out
}

#[tokio::test]
async fn a_forged_file_cannot_write_into_another_tenant() {
    let t = TestDb::new().await;
    let a = seed_tenant(&t, "alpha", "10.1000/a", "graphnet").await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a.rgbackup");
    backup_of(&t, a.tenant, a.owner, &file).await;
    let target = TestDb::new().await;
    let (victim, victim_owner) = target.create_tenant("victim").await;
    let forged = dir.path().join("forged.rgbackup");
    let restore_forged = |bytes: Vec<u8>| {
        let forged = forged.clone();
        let target = &target;
        async move {
            std::fs::write(&forged, bytes).unwrap();
            restore_into(target, &forged, &RestoreOptions::default())
                .await
                .unwrap_err()
        }
    };

    // A usage event moved to the victim: it loads (its foreign keys hold), and is refused.
    let bytes = forge(&file, "usage_events", |csv| {
        csv.replacen(&a.tenant.to_string(), &victim.to_string(), 1)
    });
    let error = restore_forged(bytes).await;
    assert!(
        matches!(&error, RestoreError::ForeignRows(t) if t == "usage_events"),
        "{error:?}"
    );
    // A second tenant row.
    let bytes = forge(&file, "tenants", |csv| {
        format!("{csv}{victim},stolen,Stolen,2026-01-01 00:00:00+00,2026-01-01 00:00:00+00\n")
    });
    let error = restore_forged(bytes).await;
    assert!(matches!(error, RestoreError::TenantRow(_)), "{error:?}");

    // Nothing was written, to the victim or anywhere.
    assert!(!tenant_exists(&target, a.tenant.0).await);
    let s = target.session(victim, victim_owner).await;
    let usage: i64 = s
        .query_one(
            "SELECT (SELECT count(*) FROM app.usage_events) + (SELECT count(*) FROM app.usage_daily)",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(usage, 0);
    s.commit().await.unwrap();
}

#[tokio::test]
async fn a_restore_is_refused_when_the_tenant_or_its_slug_exists_or_the_schema_is_newer() {
    let t = TestDb::new().await;
    let a = seed_tenant(&t, "alpha", "10.1000/a", "graphnet").await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a.rgbackup");
    backup_of(&t, a.tenant, a.owner, &file).await;

    // Into its own database: the tenant exists.
    let error = restore_into(&t, &file, &RestoreOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(&error, RestoreError::TenantExists { id, slug } if *id == a.tenant.0 && slug == "alpha"),
        "{error:?}"
    );

    // Into a database with another tenant called alpha: refused, then restored under a new slug.
    let target = TestDb::new().await;
    let (other, _) = target.create_tenant("alpha").await;
    let error = restore_into(&target, &file, &RestoreOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(&error, RestoreError::SlugTaken(s) if s == "alpha"),
        "{error:?}"
    );
    assert!(error.to_string().contains("--tenant-slug"), "{error}");
    let error = restore_into(
        &target,
        &file,
        &RestoreOptions {
            tenant_slug: Some("Not A Slug"),
            ..RestoreOptions::default()
        },
    )
    .await
    .unwrap_err();
    assert!(matches!(error, RestoreError::InvalidSlug(_)), "{error:?}");
    let report = restore_into(
        &target,
        &file,
        &RestoreOptions {
            tenant_slug: Some("alpha-restored"),
            ..RestoreOptions::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(report.tenant.slug, "alpha-restored");
    assert_eq!(
        target
            .db
            .tenant_for_slug(a.owner, "alpha-restored")
            .await
            .unwrap(),
        Some(a.tenant)
    );
    assert_ne!(other, a.tenant);

    // A backup of a newer schema, into a database that is not migrated at all.
    let newer = TestDb::new().await;
    newer
        .superuser()
        .await
        .batch_execute(
            "DELETE FROM refinery_schema_history \
             WHERE version = (SELECT max(version) FROM refinery_schema_history)",
        )
        .await
        .unwrap();
    let error = restore_into(&newer, &file, &RestoreOptions::default())
        .await
        .unwrap_err();
    let latest = latest_migration();
    assert!(
        matches!(error, RestoreError::NewerSchema { backup, database } if backup == latest && database == latest - 1),
        "{error:?}"
    );
    let (name, _) = TestDb::unmigrated().await;
    let bare = TestDb {
        db: Database::new(cluster().config("rg_app", &name), &PoolSettings::default()).unwrap(),
        name,
    };
    let error = restore_into(&bare, &file, &RestoreOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(error, RestoreError::NotMigrated), "{error:?}");
}

#[tokio::test]
async fn only_an_owner_can_take_a_backup() {
    let t = TestDb::new().await;
    let a = seed_tenant(&t, "alpha", "10.1000/a", "graphnet").await;
    let b = seed_tenant(&t, "beta", "10.1000/b", "graphnet").await;
    let member = t.add_member(a.tenant, a.owner, Role::Member).await;
    let viewer = t.add_member(a.tenant, a.owner, Role::Viewer).await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("a.rgbackup");
    let attempt = |user: UserId| {
        let out = out.clone();
        let t = &t;
        async move {
            backup::backup(
                &t.db,
                a.tenant,
                user,
                (latest_migration(), SchemaSource::Build),
                &out,
            )
            .await
            .unwrap_err()
        }
    };
    for (user, role) in [(viewer, "viewer"), (member, "member")] {
        let error = attempt(user).await;
        assert!(
            matches!(error, BackupError::NotOwner { role: r, .. } if r == role),
            "{error:?}"
        );
    }
    let error = attempt(b.owner).await;
    assert!(matches!(error, BackupError::NotMember { .. }), "{error:?}");
    assert_eq!(
        error.to_string(),
        format!("user {} is not a member of tenant {}", b.owner, a.tenant)
    );
    assert!(
        std::fs::read_dir(dir.path()).unwrap().next().is_none(),
        "no file, not even a partial one"
    );

    // Through the binary: beta's owner names alpha by slug and by id.
    for tenant in ["alpha".to_owned(), a.tenant.to_string()] {
        let (ok, stdout, stderr) = binary(
            &[
                "backup",
                "--tenant",
                &tenant,
                "--user",
                &b.owner.to_string(),
                "--out",
                out.to_str().unwrap(),
            ],
            Some(common::database_url(&t.app_config())),
            None,
        );
        assert!(!ok, "{stdout}");
        assert!(
            stderr.contains("is not a member of") || stderr.contains("that user"),
            "{stderr}"
        );
        assert!(!out.exists());
    }
}

#[tokio::test]
async fn a_stored_api_key_must_open_in_the_target_deployment_or_be_dropped() {
    let source_keys = KeyRing::for_tests((1, "the source deployment's master secret"), &[]);
    let other_keys = KeyRing::for_tests((1, "another deployment's master secret"), &[]);
    let t = TestDb::new().await;
    let a = seed_tenant(&t, "alpha", "10.1000/a", "graphnet").await;
    let sealed = source_keys
        .seal(
            a.tenant,
            &SecretString::new("AIza-tenant-own-key-1234".into()),
        )
        .unwrap();
    let s = t.session(a.tenant, a.owner).await;
    s.execute(
        "UPDATE app.tenant_settings SET api_key_provider = 'gemini', api_key_ciphertext = $1, \
         api_key_last4 = '1234', execution_mode = 'byo_key'",
        &[&sealed],
    )
    .await
    .unwrap();
    s.commit().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a.rgbackup");
    backup_of(&t, a.tenant, a.owner, &file).await;

    let target = TestDb::new().await;
    let error = restore_into(&target, &file, &RestoreOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(error, RestoreError::ApiKeyUnchecked), "{error:?}");
    let error = restore_into(
        &target,
        &file,
        &RestoreOptions {
            key_ring: Some(&other_keys),
            ..RestoreOptions::default()
        },
    )
    .await
    .unwrap_err();
    assert!(
        matches!(error, RestoreError::ApiKey { key_id: 1, .. }),
        "{error:?}"
    );
    assert!(!error.to_string().contains("AIza"), "{error}");
    assert!(!tenant_exists(&target, a.tenant.0).await);

    // The source's keys (as this deployment's current or previous keys): kept, and it opens.
    let with_previous = KeyRing::for_tests(
        (2, "another deployment's master secret"),
        &[(1, "the source deployment's master secret")],
    );
    let report = restore_into(
        &target,
        &file,
        &RestoreOptions {
            key_ring: Some(&with_previous),
            ..RestoreOptions::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(report.api_key, ApiKeyOutcome::Kept);
    let s = target.session(a.tenant, a.owner).await;
    let (provider, key) = research_graph::tenants::tenant_api_key(&s, &with_previous)
        .await
        .unwrap()
        .unwrap();
    s.commit().await.unwrap();
    assert_eq!(
        (provider.as_str(), key.expose()),
        ("gemini", "AIza-tenant-own-key-1234")
    );

    // Or dropped: the settings say there is no key.
    let elsewhere = TestDb::new().await;
    let report = restore_into(
        &elsewhere,
        &file,
        &RestoreOptions {
            drop_api_key: true,
            ..RestoreOptions::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(report.api_key, ApiKeyOutcome::Dropped);
    let s = elsewhere.session(a.tenant, a.owner).await;
    let row = s
        .query_one(
            "SELECT api_key_provider, api_key_ciphertext IS NULL, api_key_last4 \
             FROM app.tenant_settings",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, Option<&str>>(0), None);
    assert!(row.get::<_, bool>(1));
    assert_eq!(row.get::<_, Option<&str>>(2), None);
    s.commit().await.unwrap();
}

#[tokio::test]
async fn the_default_tenant_replaces_a_fresh_databases_empty_one() {
    let t = TestDb::new().await;
    let owner = UserId(Uuid::new_v4());
    let admin = AdminConnection::connect(&t.admin_config()).await.unwrap();
    admin.ensure_owner(DEFAULT_TENANT, owner).await.unwrap();
    admin.close().await;
    ingest(&t, DEFAULT_TENANT, owner, &[PAPERS[1].1]).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("default.rgbackup");
    backup_of(&t, DEFAULT_TENANT, owner, &file).await;

    let target = TestDb::new().await;
    let report = restore_into(&target, &file, &RestoreOptions::default())
        .await
        .unwrap();
    assert!(report.replaced_empty_default);
    assert_eq!(report.jobs_cancelled, 1);
    let s = target.session(DEFAULT_TENANT, owner).await;
    assert_eq!(s.role(), Some(Role::Owner));
    let papers: i64 = s
        .query_one("SELECT count(*) FROM app.papers", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(papers, 1);
    s.commit().await.unwrap();

    // Now it has content: a second restore is refused.
    let error = restore_into(&target, &file, &RestoreOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(error, RestoreError::TenantExists { .. }),
        "{error:?}"
    );
}

#[tokio::test]
async fn a_migration_login_that_cannot_bypass_rls_restores_as_the_table_owner() {
    let t = TestDb::new().await;
    let a = seed_tenant(&t, "alpha", "10.1000/a", "graphnet").await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a.rgbackup");
    let before = backup_of(&t, a.tenant, a.owner, &file).await;

    let target = TestDb::new().await;
    let login = format!("rg_migrator_{}", std::process::id());
    target
        .superuser()
        .await
        .batch_execute(&format!(
            "CREATE ROLE {login} LOGIN NOSUPERUSER NOBYPASSRLS CREATEROLE; \
             GRANT rg_owner TO {login}; \
             GRANT SELECT ON public.refinery_schema_history TO {login}"
        ))
        .await
        .unwrap();
    let mut admin = AdminConnection::connect(&cluster().config(&login, &target.name))
        .await
        .unwrap();
    let report = backup::restore(&mut admin, &file, &RestoreOptions::default())
        .await
        .unwrap();
    admin.close().await;
    assert!(report.as_table_owner);
    assert_eq!(report.rollups_matched, Some(true));

    // Row-level security is forced on every table again.
    let unforced: Vec<String> = target
        .superuser()
        .await
        .query(
            "SELECT relname::text FROM pg_class \
             WHERE relnamespace = 'app'::regnamespace AND relkind = 'r' \
               AND relrowsecurity AND NOT relforcerowsecurity",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(unforced.is_empty(), "{unforced:?}");
    let after = backup_of(&target, a.tenant, a.owner, &dir.path().join("b.rgbackup")).await;
    let digests = |r: &backup::BackupReport| {
        r.header
            .tables
            .iter()
            .filter(|t| t.name != "jobs")
            .map(|t| (t.name.clone(), t.sha256.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(digests(&after), digests(&before));
}

#[tokio::test]
async fn every_tenant_table_is_backed_up_or_left_out_on_purpose() {
    let t = TestDb::new().await;
    let mut known: Vec<&str> = TABLES.iter().chain(SKIPPED.iter()).copied().collect();
    known.sort_unstable();
    assert_eq!(tenant_tables(&t.superuser().await).await, known);
}

/// Where pg_dump is: next to the server binaries the harness runs, or on PATH.
fn pg_dump() -> std::path::PathBuf {
    let mut candidates: Vec<std::path::PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|dirs| {
            dirs.filter_map(|d| d.ok())
                .map(|d| d.path().join("bin/pg_dump"))
                .filter(|p| p.exists())
                .collect()
        })
        .unwrap_or_default();
    candidates.sort();
    candidates.pop().unwrap_or_else(|| "pg_dump".into())
}

/// The alternative considered: `pg_dump --data-only --enable-row-security` as `rg_app`, with
/// the tenant and user set for the whole session through PGOPTIONS, exports the tenant's rows
/// and nobody else's (and nothing at all without them). See README.md for why `restore` does
/// not build on it.
#[tokio::test]
async fn pg_dump_with_row_security_as_rg_app_exports_only_the_sessions_tenant() {
    let t = TestDb::new().await;
    let a = seed_tenant(&t, "alpha", "10.1000/alpha-doi", "graphnet").await;
    let b = seed_tenant(&t, "beta", "10.1000/beta-doi", "graphnet").await;
    let config = t.app_config();
    let host = match &config.get_hosts()[0] {
        tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
        tokio_postgres::config::Host::Tcp(host) => host.clone(),
    };
    let dump = |options: Option<String>| {
        let mut command = Command::new(pg_dump());
        command
            .args(["--data-only", "--enable-row-security", "--schema", "app"])
            .args(["--exclude-table", "app.user_settings"])
            .args([
                "--host",
                &host,
                "--port",
                &config.get_ports()[0].to_string(),
            ])
            .args(["--username", "rg_app", "--dbname", &t.name])
            .env_remove("PGOPTIONS");
        if let Some(options) = options {
            command.env("PGOPTIONS", options);
        }
        let output = command.output().expect("run pg_dump");
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    };
    let alpha = dump(Some(format!(
        "-c app.tenant_id={} -c app.user_id={}",
        a.tenant, a.owner
    )));
    assert!(alpha.contains("10.1000/alpha-doi"));
    assert!(alpha.contains(&a.edge.to_string()));
    assert!(!alpha.contains("10.1000/beta-doi"));
    assert!(!alpha.contains(&b.tenant.to_string()));
    assert!(!alpha.contains(&b.edge.to_string()));
    let nobody = dump(None);
    assert!(!nobody.contains(&a.tenant.to_string()));
    assert!(!nobody.contains(&b.tenant.to_string()));
    // A user who is not a member of the tenant set gets nothing either.
    let stranger = dump(Some(format!(
        "-c app.tenant_id={} -c app.user_id={}",
        a.tenant, b.owner
    )));
    assert!(!stranger.contains(&a.tenant.to_string()));
}
