//! Usage across tenants, read as `rg_platform` from the daily rollup.

use std::time::Duration;

use chrono::NaiveDate;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use research_graph::money::Usd;
use tokio_postgres::NoTls;
use uuid::Uuid;

/// Errors of the platform queries.
#[derive(Debug, thiserror::Error)]
pub enum PlatformError {
    /// No connection.
    #[error("database unavailable: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    /// A statement failed.
    #[error("database error: {0}")]
    Db(#[from] tokio_postgres::Error),
    /// The pool could not be built.
    #[error("invalid database settings: {0}")]
    Config(String),
}

/// One tenant's usage over a period.
#[derive(Clone, Debug, PartialEq, serde::Serialize, async_graphql::SimpleObject)]
pub struct TenantUsage {
    /// The tenant.
    pub tenant_id: Uuid,
    /// Its slug.
    pub slug: String,
    /// Its name.
    pub name: String,
    /// Calls.
    pub events: i64,
    /// Prompt tokens (cached included).
    pub input_tokens: i64,
    /// Cached prompt tokens.
    pub cached_tokens: i64,
    /// Output tokens.
    pub output_tokens: i64,
    /// Thinking tokens.
    pub thinking_tokens: i64,
    /// Provider cost.
    #[serde(serialize_with = "usd")]
    pub base_cost: Usd,
    /// Billed cost (markup included; zero for bring-your-own-key calls).
    #[serde(serialize_with = "usd")]
    pub billed_cost: Usd,
}

/// Usage of one model on one day, over all tenants.
#[derive(Clone, Debug, PartialEq, async_graphql::SimpleObject)]
pub struct DayModelUsage {
    /// The UTC day.
    pub day: NaiveDate,
    /// The model.
    pub model: String,
    /// Calls.
    pub events: i64,
    /// All tokens.
    pub tokens: i64,
    /// Provider cost.
    pub base_cost: Usd,
    /// Billed cost.
    pub billed_cost: Usd,
}

fn usd<S: serde::Serializer>(value: &Usd, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&value.to_string())
}

/// The `rg_platform` connection pool.
#[derive(Clone)]
pub struct PlatformDb {
    pool: Pool,
}

const PER_TENANT: &str = "\
SELECT t.id, t.slug, t.name, sum(d.events)::bigint, sum(d.input_tokens)::bigint,
       sum(d.cached_tokens)::bigint, sum(d.output_tokens)::bigint, sum(d.thinking_tokens)::bigint,
       sum(d.base_cost_micros)::bigint, sum(d.billed_cost_micros)::bigint
FROM app.usage_daily d JOIN app.tenants t ON t.id = d.tenant_id
WHERE d.day >= $1 AND d.day <= $2
GROUP BY t.id, t.slug, t.name";

impl PlatformDb {
    /// A pool for `config`, which must name the `rg_platform` login.
    pub fn new(config: tokio_postgres::Config) -> Result<PlatformDb, PlatformError> {
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(4)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(Duration::from_secs(5)))
            .create_timeout(Some(Duration::from_secs(5)))
            .build()
            .map_err(|e| PlatformError::Config(e.to_string()))?;
        Ok(PlatformDb { pool })
    }

    /// Tenants by billed cost over the days `from..=to`, highest first.
    pub async fn top_tenants(
        &self,
        from: NaiveDate,
        to: NaiveDate,
        limit: i64,
    ) -> Result<Vec<TenantUsage>, PlatformError> {
        let conn = self.pool.get().await?;
        let sql = format!("{PER_TENANT} ORDER BY 10 DESC, t.id LIMIT $3");
        let rows = conn.query(&sql, &[&from, &to, &limit]).await?;
        Ok(rows.iter().map(tenant_usage).collect())
    }

    /// Every tenant with usage over `from..=to`, by slug (invoice lines).
    pub async fn per_tenant(
        &self,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<Vec<TenantUsage>, PlatformError> {
        let conn = self.pool.get().await?;
        let sql = format!("{PER_TENANT} ORDER BY t.slug");
        let rows = conn.query(&sql, &[&from, &to]).await?;
        Ok(rows.iter().map(tenant_usage).collect())
    }

    /// Totals by day and model over `from..=to`.
    pub async fn by_day_and_model(
        &self,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<Vec<DayModelUsage>, PlatformError> {
        let conn = self.pool.get().await?;
        let rows = conn
            .query(
                "SELECT day, model, sum(events)::bigint,
                        sum(input_tokens + output_tokens + thinking_tokens)::bigint,
                        sum(base_cost_micros)::bigint, sum(billed_cost_micros)::bigint
                 FROM app.usage_daily WHERE day >= $1 AND day <= $2
                 GROUP BY day, model ORDER BY day, model",
                &[&from, &to],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| DayModelUsage {
                day: r.get(0),
                model: r.get(1),
                events: r.get(2),
                tokens: r.get(3),
                base_cost: Usd(r.get(4)),
                billed_cost: Usd(r.get(5)),
            })
            .collect())
    }
}

fn tenant_usage(r: &tokio_postgres::Row) -> TenantUsage {
    TenantUsage {
        tenant_id: r.get(0),
        slug: r.get(1),
        name: r.get(2),
        events: r.get(3),
        input_tokens: r.get(4),
        cached_tokens: r.get(5),
        output_tokens: r.get(6),
        thinking_tokens: r.get(7),
        base_cost: Usd(r.get(8)),
        billed_cost: Usd(r.get(9)),
    }
}
