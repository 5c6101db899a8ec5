//! The data generator (see bench/README.md): deterministic multi-tenant data, streamed into
//! Postgres with `COPY … FROM STDIN` in one transaction.

mod copy;
pub mod rows;
pub mod text;
pub mod time;

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::Bytes;
use chrono::NaiveDate;
use clap::Parser;
use futures_util::SinkExt;
use tokio::sync::mpsc;
use tokio_postgres::{Client, NoTls};

use crate::ids;
use copy::{Closed, Rows};
use rows::{Degrees, InsightRows, Plan, Sizes};
use text::Zipf;
use time::Window;

/// Command line of `bench-generate`.
#[derive(Parser, Debug)]
#[command(
    name = "bench-generate",
    about = "Generates deterministic multi-tenant benchmark data into a research-graph database"
)]
pub struct Cli {
    /// A superuser connection URL of the migrated database.
    #[arg(long, env = "ADMIN_URL")]
    pub database_url: String,
    #[command(flatten)]
    pub options: Options,
}

/// What to generate.
#[derive(clap::Args, Clone, Debug)]
pub struct Options {
    /// Number of tenants.
    #[arg(long, default_value_t = 100)]
    pub tenants: u64,
    /// Number of the first tenant: tenants K..K+N are generated.
    #[arg(long, default_value_t = 0)]
    pub first_tenant: u64,
    /// Papers per tenant.
    #[arg(long, default_value_t = 200)]
    pub papers: u64,
    /// Sections per paper.
    #[arg(long, default_value_t = 4)]
    pub sections: u64,
    /// Nodes per tenant.
    #[arg(long, default_value_t = 2000)]
    pub nodes: u64,
    /// Edges per tenant.
    #[arg(long, default_value_t = 20000)]
    pub edges: u64,
    /// Entity mentions per paper.
    #[arg(long, default_value_t = 10)]
    pub mentions: u64,
    /// Inferred insights per tenant.
    #[arg(long, default_value_t = 20)]
    pub insights: u64,
    /// Usage events per tenant.
    #[arg(long, default_value_t = 10000)]
    pub events: u64,
    /// Days the generated timestamps are spread over.
    #[arg(long, default_value_t = 90)]
    pub days: u32,
    /// Last day of the window (UTC, YYYY-MM-DD); today when not given.
    #[arg(long)]
    pub end_date: Option<NaiveDate>,
    /// Seed of every random choice.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Keep the secondary indexes while loading (by default they are dropped and built again
    /// once the rows are in, which is faster).
    #[arg(long)]
    pub keep_indexes: bool,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            tenants: 100,
            first_tenant: 0,
            papers: 200,
            sections: 4,
            nodes: 2000,
            edges: 20000,
            mentions: 10,
            insights: 20,
            events: 10000,
            days: 90,
            end_date: None,
            seed: 1,
            keep_indexes: false,
        }
    }
}

/// What a run loaded.
#[derive(Clone, Debug, Default)]
pub struct Summary {
    /// Rows per table, in load order.
    pub rows: Vec<(&'static str, u64)>,
    /// Out-degrees of the first generated tenant's nodes.
    pub degrees: Degrees,
    /// Time spent, all included.
    pub elapsed: Duration,
}

impl Summary {
    /// Rows loaded into `table`.
    pub fn rows_of(&self, table: &str) -> u64 {
        self.rows
            .iter()
            .find(|(t, _)| *t == table)
            .map_or(0, |(_, n)| *n)
    }
}

/// The tables a run writes; the secondary indexes of these are dropped during the load.
pub const TABLES: &[&str] = &[
    "tenants",
    "tenant_users",
    "tenant_settings",
    "papers",
    "paper_sections",
    "entity_mentions",
    "nodes",
    "edges",
    "inferred_insights",
    "insight_nodes",
    "insight_edges",
    "usage_events",
    "usage_daily",
];

/// The `bench-generate` command.
pub fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let config: tokio_postgres::Config = cli
        .database_url
        .parse()
        .context("--database-url is not a valid connection string")?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let summary = runtime.block_on(run(&config, &cli.options))?;
    let total: u64 = summary.rows.iter().map(|(_, n)| n).sum();
    let d = &summary.degrees;
    eprintln!(
        "out-degrees of tenant {}: node 0 {}, node M/10 {}, median {}, {:.0}% of [0, M/10) at 10 or more",
        cli.options.first_tenant,
        d.top,
        d.at_tenth,
        d.median,
        d.hubs_with_10 * 100.0
    );
    eprintln!(
        "done: {total} rows in {:.1} s",
        summary.elapsed.as_secs_f64()
    );
    Ok(())
}

fn check(options: &Options) -> anyhow::Result<()> {
    if options.days == 0 {
        bail!("--days must be at least 1");
    }
    if options.tenants == 0 {
        bail!("--tenants must be at least 1");
    }
    if options.edges > rows::max_edges(options.nodes) {
        bail!(
            "{} nodes carry at most {} distinct edges here; ask for fewer edges or more nodes",
            options.nodes,
            rows::max_edges(options.nodes)
        );
    }
    if options.nodes > u64::from(u32::MAX) {
        bail!("--nodes must be below 2^32");
    }
    Ok(())
}

/// Generates the tenants `options` asks for into the database `config` points to (as a
/// superuser), in one transaction: either every row is there afterwards, or none.
pub async fn run(config: &tokio_postgres::Config, options: &Options) -> anyhow::Result<Summary> {
    check(options)?;
    let started = Instant::now();
    let end_date = options
        .end_date
        .unwrap_or_else(|| chrono::Utc::now().date_naive());
    let plan = Arc::new(Plan {
        seed: options.seed,
        sizes: Sizes {
            papers: options.papers,
            sections: options.sections,
            nodes: options.nodes,
            edges: options.edges,
            mentions: options.mentions,
            insights: options.insights,
            events: options.events,
        },
        window: Window::ending(end_date, options.days),
        zipf: (options.nodes > 0).then(|| Zipf::new(options.nodes, 1.0)),
    });
    // In the order of their ids: rows then arrive in primary-key order of tenants, and each
    // tenant's index entries are inserted together.
    let mut tenants: Vec<u64> =
        (options.first_tenant..options.first_tenant + options.tenants).collect();
    tenants.sort_by_key(|&t| ids::tenant(t));
    let first = options.first_tenant;

    let (client, connection) = config
        .connect(NoTls)
        .await
        .context("connecting to the database")?;
    let connection = tokio::spawn(connection);
    let superuser: String = client
        .query_one("SELECT current_setting('is_superuser')", &[])
        .await?
        .get(0);
    if superuser != "on" {
        bail!("the generator needs a superuser connection (it skips triggers and foreign-key checks while loading)");
    }
    client
        .batch_execute(
            "BEGIN; \
             SET LOCAL session_replication_role = replica; \
             SET LOCAL work_mem = '256MB'; \
             LOCK TABLE app.tenants IN SHARE ROW EXCLUSIVE MODE",
        )
        .await?;
    refuse_existing(&client, &tenants).await?;
    eprintln!(
        "generating tenants {}..{} (seed {}, {} days ending {end_date})",
        options.first_tenant,
        options.first_tenant + options.tenants,
        options.seed,
        options.days
    );

    let dropped = if options.keep_indexes {
        Vec::new()
    } else {
        drop_secondary_indexes(&client).await?
    };

    let mut summary = Summary::default();
    let each = |f: fn(&Plan, u64, &mut Rows) -> Result<(), Closed>| {
        let plan = plan.clone();
        let tenants = tenants.clone();
        move |rows: &mut Rows| {
            for &t in &tenants {
                f(&plan, t, rows)?;
            }
            Ok(())
        }
    };
    let n = load(&client, "tenants", rows::TENANT_COLUMNS, each(rows::tenant)).await?;
    summary.rows.push(("tenants", n.0));
    let n = load(
        &client,
        "tenant_users",
        rows::TENANT_USER_COLUMNS,
        each(rows::tenant_user),
    )
    .await?;
    summary.rows.push(("tenant_users", n.0));
    let n = load(
        &client,
        "tenant_settings",
        rows::TENANT_SETTINGS_COLUMNS,
        each(rows::tenant_settings),
    )
    .await?;
    summary.rows.push(("tenant_settings", n.0));
    let n = load(&client, "papers", rows::PAPER_COLUMNS, each(rows::papers)).await?;
    summary.rows.push(("papers", n.0));

    let (sections, mentions) = {
        let plan = plan.clone();
        let tenants = tenants.clone();
        load(
            &client,
            "paper_sections",
            rows::SECTION_COLUMNS,
            move |rows| {
                let mut mentions = Rows::memory();
                for &t in &tenants {
                    rows::sections(&plan, t, rows, &mut mentions)?;
                }
                Ok(mentions)
            },
        )
        .await?
    };
    summary.rows.push(("paper_sections", sections));
    let n = load_memory(&client, "entity_mentions", rows::MENTION_COLUMNS, mentions).await?;
    summary.rows.push(("entity_mentions", n));

    let n = load(&client, "nodes", rows::NODE_COLUMNS, each(rows::nodes)).await?;
    summary.rows.push(("nodes", n.0));

    let (edges, (insights, degrees)) = {
        let plan = plan.clone();
        let tenants = tenants.clone();
        load(&client, "edges", rows::EDGE_COLUMNS, move |rows| {
            let mut insights = InsightRows {
                insights: Rows::memory(),
                nodes: Rows::memory(),
                edges: Rows::memory(),
            };
            let mut degrees = None;
            for &t in &tenants {
                let d = rows::edges(&plan, t, rows, &mut insights, t == first)?;
                degrees = degrees.or(d);
            }
            Ok((insights, degrees.unwrap_or_default()))
        })
        .await?
    };
    summary.rows.push(("edges", edges));
    summary.degrees = degrees;
    for (table, columns, rows) in [
        (
            "inferred_insights",
            rows::INSIGHT_COLUMNS,
            insights.insights,
        ),
        ("insight_nodes", rows::INSIGHT_NODE_COLUMNS, insights.nodes),
        ("insight_edges", rows::INSIGHT_EDGE_COLUMNS, insights.edges),
    ] {
        let n = load_memory(&client, table, columns, rows).await?;
        summary.rows.push((table, n));
    }

    let n = load(
        &client,
        "usage_events",
        rows::EVENT_COLUMNS,
        each(rows::events),
    )
    .await?;
    summary.rows.push(("usage_events", n.0));
    let n = roll_up_usage(&client, &tenants).await?;
    summary.rows.push(("usage_daily", n));

    recreate_indexes(&client, &dropped).await?;
    let step = Instant::now();
    client.batch_execute("COMMIT").await?;
    eprintln!("commit: {:.1} s", step.elapsed().as_secs_f64());
    let step = Instant::now();
    let analyze = TABLES
        .iter()
        .map(|t| format!("app.{t}"))
        .collect::<Vec<_>>()
        .join(", ");
    client.batch_execute(&format!("ANALYZE {analyze}")).await?;
    eprintln!("analyze: {:.1} s", step.elapsed().as_secs_f64());
    drop(client);
    let _ = connection.await;
    summary.elapsed = started.elapsed();
    Ok(summary)
}

/// Fails, naming them, when any of the tenants to generate exists already (by id or slug).
async fn refuse_existing(client: &Client, tenants: &[u64]) -> anyhow::Result<()> {
    let ids: Vec<uuid::Uuid> = tenants.iter().map(|&t| ids::tenant(t)).collect();
    let slugs: Vec<String> = tenants.iter().map(|&t| ids::slug(t)).collect();
    let existing = client
        .query(
            "SELECT slug FROM app.tenants WHERE id = ANY($1) OR slug = ANY($2) ORDER BY slug",
            &[&ids, &slugs],
        )
        .await?;
    if !existing.is_empty() {
        let names: Vec<String> = existing.iter().take(5).map(|r| r.get(0)).collect();
        bail!(
            "{} of the tenants to generate exist already ({}{}); choose another --first-tenant or a fresh database",
            existing.len(),
            names.join(", "),
            if existing.len() > 5 { ", …" } else { "" }
        );
    }
    Ok(())
}

/// A dropped index: its name and the statement that builds it again.
struct SavedIndex {
    name: String,
    definition: String,
}

/// Drops the indexes of the generated tables that back no constraint and enforce no
/// uniqueness, and returns their definitions.
async fn drop_secondary_indexes(client: &Client) -> anyhow::Result<Vec<SavedIndex>> {
    let tables: Vec<String> = TABLES.iter().map(|t| (*t).to_owned()).collect();
    let saved: Vec<SavedIndex> = client
        .query(
            "SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid) \
             FROM pg_index i \
             JOIN pg_class c ON c.oid = i.indrelid \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = 'app' AND c.relname = ANY($1) \
               AND NOT i.indisprimary AND NOT i.indisunique \
               AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid) \
             ORDER BY 1",
            &[&tables],
        )
        .await?
        .iter()
        .map(|r| SavedIndex {
            name: r.get(0),
            definition: r.get(1),
        })
        .collect();
    if !saved.is_empty() {
        let names: Vec<&str> = saved.iter().map(|i| i.name.as_str()).collect();
        client
            .batch_execute(&format!("DROP INDEX {}", names.join(", ")))
            .await?;
        eprintln!("dropped {} secondary indexes for the load", saved.len());
    }
    Ok(saved)
}

async fn recreate_indexes(client: &Client, saved: &[SavedIndex]) -> anyhow::Result<()> {
    let all = Instant::now();
    for index in saved {
        let step = Instant::now();
        client
            .batch_execute(&index.definition)
            .await
            .with_context(|| format!("building {} again", index.name))?;
        eprintln!(
            "index {}: {:.1} s",
            index.name,
            step.elapsed().as_secs_f64()
        );
    }
    if !saved.is_empty() {
        eprintln!(
            "indexes: {} built in {:.1} s",
            saved.len(),
            all.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

/// Streams the rows `produce` writes (on a thread of its own, while earlier chunks load) into
/// `table`; returns the row count and what `produce` returned.
async fn load<T, F>(
    client: &Client,
    table: &str,
    columns: &str,
    produce: F,
) -> anyhow::Result<(u64, T)>
where
    F: FnOnce(&mut Rows) -> Result<T, Closed> + Send + 'static,
    T: Send + 'static,
{
    let step = Instant::now();
    let (tx, mut rx) = mpsc::channel::<Bytes>(4);
    let producer = std::thread::spawn(move || {
        let mut rows = Rows::stream(tx);
        let extra = produce(&mut rows)?;
        Ok::<_, Closed>((rows.finish()?, extra))
    });
    let copied = async {
        let sink = client
            .copy_in::<_, Bytes>(&format!("COPY app.{table} ({columns}) FROM STDIN"))
            .await?;
        futures_util::pin_mut!(sink);
        while let Some(chunk) = rx.recv().await {
            sink.send(chunk).await?;
        }
        sink.finish().await
    }
    .await;
    // A failed COPY drops the receiver, which stops the producer.
    let produced = tokio::task::spawn_blocking(move || producer.join())
        .await?
        .map_err(|_| anyhow::anyhow!("the generator of {table} panicked"))?;
    let copied = copied.with_context(|| format!("loading {table}"))?;
    let (n, extra) = produced.map_err(|_| anyhow::anyhow!("loading {table} stopped"))?;
    if n != copied {
        bail!("{table}: generated {n} rows but Postgres copied {copied}");
    }
    progress(table, n, step.elapsed());
    Ok((n, extra))
}

/// Loads rows generated earlier into memory.
async fn load_memory(
    client: &Client,
    table: &str,
    columns: &str,
    rows: Rows,
) -> anyhow::Result<u64> {
    let (chunks, n) = rows.into_chunks();
    let (copied, ()) = load(client, table, columns, move |out| {
        out.send_chunks(chunks, n)
    })
    .await?;
    Ok(copied)
}

/// Fills usage_daily from the generated events, the way the roll-up trigger (skipped during the
/// load) would have: one row per tenant, UTC day and breakdown key.
async fn roll_up_usage(client: &Client, tenants: &[u64]) -> anyhow::Result<u64> {
    let step = Instant::now();
    let ids: Vec<uuid::Uuid> = tenants.iter().map(|&t| ids::tenant(t)).collect();
    let n = client
        .execute(
            "INSERT INTO app.usage_daily (tenant_id, day, stage, model, agent, provider, \
                 execution_mode, events, errors, input_tokens, cached_tokens, output_tokens, \
                 thinking_tokens, base_cost_micros, billed_cost_micros) \
             SELECT n.tenant_id, (n.occurred_at AT TIME ZONE 'UTC')::date, n.stage, n.model, \
                    n.agent, n.provider, n.execution_mode, count(*), \
                    count(*) FILTER (WHERE n.outcome <> 'ok'), \
                    sum(n.input_tokens), sum(n.cached_tokens), sum(n.output_tokens), \
                    sum(n.thinking_tokens), sum(n.base_cost_micros), sum(n.billed_cost_micros) \
             FROM app.usage_events n \
             WHERE n.tenant_id = ANY($1) \
             GROUP BY 1, 2, 3, 4, 5, 6, 7",
            &[&ids],
        )
        .await?;
    progress("usage_daily", n, step.elapsed());
    Ok(n)
}

fn progress(table: &str, rows: u64, elapsed: Duration) {
    let secs = elapsed.as_secs_f64();
    eprintln!(
        "{table}: {rows} rows in {secs:.1} s ({:.0} rows/s)",
        rows as f64 / secs.max(1e-6)
    );
}
