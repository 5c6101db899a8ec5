//! `usage`: what a tenant's model calls cost, for its owners (and members when the tenant's
//! settings allow): totals, breakdowns by day, stage, model, agent or provider, the events
//! themselves, and the state of its limits.
//!
//! Totals and breakdowns read the daily rollup (`app.usage_daily`, maintained by a trigger as
//! events arrive), so they cost a few rows per day and grouping key whatever the number of
//! events; the event list pages by keyset over `(tenant_id, occurred_at, id)`.

use async_graphql::{Context, Enum, InputObject, Object, Result, SimpleObject};
use chrono::{DateTime, Datelike, NaiveDate, Utc};
use uuid::Uuid;

use super::limits::{self, LimitStatus};
use crate::graphql::loaders::{root_connection, Listing, Row};
use crate::graphql::pagination::sorted;
use crate::graphql::pagination::{Connection, Sort, Sql, Window};
use crate::graphql::{db_error, error, max_page_size, session, ErrorCode, MemberGuard};
use crate::ids::Role;
use crate::money::Usd;
use crate::tenants::settings::ExecutionMode;

/// Longest range of days a breakdown may span.
const MAX_DAYS: i64 = 366;

/// Token and cost totals.
#[derive(Clone, Debug, Default, PartialEq, SimpleObject)]
pub struct UsageTotals {
    /// Calls.
    pub events: i64,
    /// Calls that failed or were blocked.
    pub errors: i64,
    /// Prompt tokens, cached ones included.
    pub input_tokens: i64,
    /// The cached part of the prompt tokens.
    pub cached_tokens: i64,
    /// Output tokens.
    pub output_tokens: i64,
    /// Thinking tokens.
    pub thinking_tokens: i64,
    /// All tokens.
    pub total_tokens: i64,
    /// What the providers charged.
    pub base_cost: Usd,
    /// What the tenant is billed.
    pub billed_cost: Usd,
}

/// Totals for one group of a breakdown; the grouping fields not asked for are null.
#[derive(Clone, Debug, PartialEq, SimpleObject)]
pub struct UsageStat {
    /// The day (UTC).
    pub day: Option<NaiveDate>,
    /// The pipeline stage.
    pub stage: Option<String>,
    /// The model.
    pub model: Option<String>,
    /// The agent.
    pub agent: Option<String>,
    /// The provider.
    pub provider: Option<String>,
    /// The totals.
    pub totals: UsageTotals,
}

/// What to group a breakdown by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Enum)]
pub enum UsageGroupBy {
    /// UTC day.
    Day,
    /// Pipeline stage.
    Stage,
    /// Model.
    Model,
    /// Agent.
    Agent,
    /// Provider.
    Provider,
}

/// How a call ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Enum)]
pub enum UsageOutcome {
    /// A usable answer.
    Ok,
    /// Failed.
    Error,
    /// Refused by a hard limit.
    Blocked,
}

/// One recorded model call.
#[derive(Clone, Debug, SimpleObject)]
pub struct UsageEventRecord {
    /// The event's id.
    pub row_id: Uuid,
    /// When the call ended.
    pub occurred_at: DateTime<Utc>,
    /// The pipeline job.
    pub job_id: Option<Uuid>,
    /// The stage.
    pub stage: String,
    /// The agent.
    pub agent: String,
    /// The provider.
    pub provider: String,
    /// The model.
    pub model: String,
    /// Prompt tokens, cached included.
    pub input_tokens: i64,
    /// Cached prompt tokens.
    pub cached_tokens: i64,
    /// Output tokens.
    pub output_tokens: i64,
    /// Thinking tokens.
    pub thinking_tokens: i64,
    /// Provider cost.
    pub base_cost: Usd,
    /// Billed cost.
    pub billed_cost: Usd,
    /// Hosted or bring-your-own key.
    pub execution_mode: ExecutionMode,
    /// Wall time, milliseconds.
    pub latency_ms: Option<i32>,
    /// How it ended.
    pub outcome: UsageOutcome,
    /// The error kind.
    pub error_kind: Option<String>,
    /// The call's idempotency key.
    pub idempotency_key: String,
}

impl Row for UsageEventRecord {
    const COLUMNS: &'static str = "u.id, u.occurred_at, u.job_id, u.stage, u.agent, u.provider, \
        u.model, u.input_tokens, u.cached_tokens, u.output_tokens, u.thinking_tokens, \
        u.base_cost_micros, u.billed_cost_micros, u.execution_mode, u.latency_ms, u.outcome, \
        u.error_kind, u.idempotency_key";
    const FROM: &'static str = "FROM app.usage_events u";
    const ID: &'static str = "u.id";

    fn from_row(r: &tokio_postgres::Row, o: usize) -> Self {
        UsageEventRecord {
            row_id: r.get(o),
            occurred_at: r.get(o + 1),
            job_id: r.get(o + 2),
            stage: r.get(o + 3),
            agent: r.get(o + 4),
            provider: r.get(o + 5),
            model: r.get(o + 6),
            input_tokens: r.get(o + 7),
            cached_tokens: r.get(o + 8),
            output_tokens: r.get(o + 9),
            thinking_tokens: r.get(o + 10),
            base_cost: Usd(r.get(o + 11)),
            billed_cost: Usd(r.get(o + 12)),
            execution_mode: if r.get::<_, &str>(o + 13) == "byo_key" {
                ExecutionMode::ByoKey
            } else {
                ExecutionMode::Hosted
            },
            latency_ms: r.get(o + 14),
            outcome: match r.get::<_, &str>(o + 15) {
                "ok" => UsageOutcome::Ok,
                "blocked" => UsageOutcome::Blocked,
                _ => UsageOutcome::Error,
            },
            error_kind: r.get(o + 16),
            idempotency_key: r.get(o + 17),
        }
    }

    fn row_id(&self) -> Uuid {
        self.row_id
    }
}

/// Which events to list.
#[derive(Clone, Debug, Default, InputObject)]
pub struct UsageEventFilter {
    /// At or after this instant.
    pub from: Option<DateTime<Utc>>,
    /// Before this instant.
    pub to: Option<DateTime<Utc>>,
    /// Only this stage.
    pub stage: Option<String>,
    /// Only this model.
    pub model: Option<String>,
    /// Only this agent.
    pub agent: Option<String>,
    /// Only this job.
    pub job_id: Option<Uuid>,
    /// Only these outcomes.
    pub outcomes: Option<Vec<UsageOutcome>>,
}

/// The events listing, newest first.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct EventListing {
    window: Window,
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
    stage: Option<String>,
    model: Option<String>,
    agent: Option<String>,
    job_id: Option<Uuid>,
    outcomes: Option<Vec<UsageOutcome>>,
}

impl Listing for EventListing {
    type Item = UsageEventRecord;

    fn root_from(&self) -> &'static str {
        "FROM app.usage_events u WHERE true"
    }

    fn child_from(&self) -> &'static str {
        "FROM app.usage_events u WHERE u.job_id = k.parent"
    }

    fn filters(&self, sql: &mut Sql) {
        if let Some(t) = self.from {
            sql.push(" AND u.occurred_at >= ").bind(t);
        }
        if let Some(t) = self.to {
            sql.push(" AND u.occurred_at < ").bind(t);
        }
        if let Some(v) = &self.stage {
            sql.push(" AND u.stage = ").bind(v.clone());
        }
        if let Some(v) = &self.model {
            sql.push(" AND u.model = ").bind(v.clone());
        }
        if let Some(v) = &self.agent {
            sql.push(" AND u.agent = ").bind(v.clone());
        }
        if let Some(v) = self.job_id {
            sql.push(" AND u.job_id = ").bind(v);
        }
        if let Some(outcomes) = &self.outcomes {
            let o: Vec<&'static str> = outcomes
                .iter()
                .map(|o| match o {
                    UsageOutcome::Ok => "ok",
                    UsageOutcome::Error => "error",
                    UsageOutcome::Blocked => "blocked",
                })
                .collect();
            sql.push(" AND u.outcome = ANY(").bind(o).push(")");
        }
    }

    fn sort(&self) -> Sort {
        Sort {
            name: "occurred_at_desc",
            column: "u.occurred_at",
            sql_type: "timestamptz",
            id_column: "u.id",
            desc: true,
        }
    }

    fn window(&self) -> &Window {
        &self.window
    }
}

/// The tenant's usage.
pub struct Usage;

/// The totals columns of `app.usage_daily`, summed.
const TOTALS: &str = "coalesce(sum(events), 0)::bigint, coalesce(sum(errors), 0)::bigint, \
    coalesce(sum(input_tokens), 0)::bigint, coalesce(sum(cached_tokens), 0)::bigint, \
    coalesce(sum(output_tokens), 0)::bigint, coalesce(sum(thinking_tokens), 0)::bigint, \
    coalesce(sum(base_cost_micros), 0)::bigint, coalesce(sum(billed_cost_micros), 0)::bigint";

fn totals(row: &tokio_postgres::Row, o: usize) -> UsageTotals {
    let (input, output, thinking): (i64, i64, i64) =
        (row.get(o + 2), row.get(o + 4), row.get(o + 5));
    UsageTotals {
        events: row.get(o),
        errors: row.get(o + 1),
        input_tokens: input,
        cached_tokens: row.get(o + 3),
        output_tokens: output,
        thinking_tokens: thinking,
        total_tokens: input + output + thinking,
        base_cost: Usd(row.get(o + 6)),
        billed_cost: Usd(row.get(o + 7)),
    }
}

/// The first day of this UTC month, and today.
fn this_month() -> (NaiveDate, NaiveDate) {
    let today = Utc::now().date_naive();
    (today.with_day(1).unwrap_or(today), today)
}

fn check_range(from: NaiveDate, to: NaiveDate) -> Result<()> {
    if to < from {
        return Err(error(ErrorCode::BadUserInput, "to is before from"));
    }
    if (to - from).num_days() >= MAX_DAYS {
        return Err(error(
            ErrorCode::BadUserInput,
            format!("a range spans at most {MAX_DAYS} days"),
        ));
    }
    Ok(())
}

#[Object]
impl Usage {
    /// Totals over a range of UTC days (inclusive; this month by default).
    async fn summary(
        &self,
        ctx: &Context<'_>,
        from: Option<NaiveDate>,
        to: Option<NaiveDate>,
    ) -> Result<UsageTotals> {
        let (first, today) = this_month();
        let (from, to) = (from.unwrap_or(first), to.unwrap_or(today));
        check_range(from, to)?;
        let mut sql = Sql::new("SELECT ");
        sql.push(TOTALS)
            .push(" FROM app.usage_daily WHERE day >= ")
            .bind(from)
            .push(" AND day <= ")
            .bind(to);
        let row = session(ctx)?
            .query_one(&sql.text, &sql.params())
            .await
            .map_err(db_error)?;
        Ok(totals(&row, 0))
    }

    /// Totals over a range of UTC days (inclusive), grouped; groups in key order.
    async fn stats(
        &self,
        ctx: &Context<'_>,
        from: NaiveDate,
        to: NaiveDate,
        group_by: Vec<UsageGroupBy>,
    ) -> Result<Vec<UsageStat>> {
        check_range(from, to)?;
        let groups = sorted(Some(group_by)).unwrap_or_default();
        let has = |g: UsageGroupBy| groups.contains(&g);
        let mut sql = Sql::new("SELECT ");
        sql.push(if has(UsageGroupBy::Day) {
            "day, "
        } else {
            "NULL::date, "
        })
        .push(if has(UsageGroupBy::Stage) {
            "stage, "
        } else {
            "NULL::text, "
        })
        .push(if has(UsageGroupBy::Model) {
            "model, "
        } else {
            "NULL::text, "
        })
        .push(if has(UsageGroupBy::Agent) {
            "agent, "
        } else {
            "NULL::text, "
        })
        .push(if has(UsageGroupBy::Provider) {
            "provider, "
        } else {
            "NULL::text, "
        })
        .push(TOTALS)
        .push(" FROM app.usage_daily WHERE day >= ")
        .bind(from)
        .push(" AND day <= ")
        .bind(to);
        let mut first = true;
        for (g, column) in [
            (UsageGroupBy::Day, "day"),
            (UsageGroupBy::Stage, "stage"),
            (UsageGroupBy::Model, "model"),
            (UsageGroupBy::Agent, "agent"),
            (UsageGroupBy::Provider, "provider"),
        ] {
            if has(g) {
                sql.push(if first { " GROUP BY " } else { ", " })
                    .push(column);
                first = false;
            }
        }
        sql.push(" ORDER BY 1, 2, 3, 4, 5");
        let rows = session(ctx)?
            .query(&sql.text, &sql.params())
            .await
            .map_err(db_error)?;
        Ok(rows
            .iter()
            .map(|r| UsageStat {
                day: r.get(0),
                stage: r.get(1),
                model: r.get(2),
                agent: r.get(3),
                provider: r.get(4),
                totals: totals(r, 5),
            })
            .collect())
    }

    /// The recorded calls, newest first.
    #[graphql(
        complexity = "child_complexity.saturating_mul(first.or(last).unwrap_or(20).max(1) as usize).min(1 << 32)"
    )]
    #[allow(clippy::too_many_arguments)]
    async fn events(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        last: Option<i32>,
        before: Option<String>,
        filter: Option<UsageEventFilter>,
    ) -> Result<Connection<UsageEventRecord>> {
        let f = filter.unwrap_or_default();
        let listing = EventListing {
            window: Window::new(first, after, last, before, max_page_size(ctx))?,
            from: f.from,
            to: f.to,
            stage: f.stage,
            model: f.model,
            agent: f.agent,
            job_id: f.job_id,
            outcomes: sorted(f.outcomes),
        };
        root_connection(ctx, listing).await
    }

    /// The tenant's limits and where usage stands against them (today and this month).
    async fn limits(&self, ctx: &Context<'_>) -> Result<Vec<LimitStatus>> {
        let (statuses, _, _) = limits::status(session(ctx)?).await.map_err(db_error)?;
        Ok(statuses)
    }
}

/// Owners see usage; members and viewers when the tenant's settings say so.
struct UsageGuard;

impl async_graphql::Guard for UsageGuard {
    async fn check(&self, ctx: &Context<'_>) -> Result<()> {
        let s = session(ctx)?;
        match s.role() {
            Some(Role::Owner) => Ok(()),
            Some(_) => {
                let row = s
                    .query_one(
                        "SELECT coalesce((SELECT usage_visible_to_members FROM app.tenant_settings), false)",
                        &[],
                    )
                    .await
                    .map_err(db_error)?;
                if row.get(0) {
                    Ok(())
                } else {
                    Err(error(
                        ErrorCode::Forbidden,
                        "usage is visible to owners only in this tenant",
                    ))
                }
            }
            None => Err(error(ErrorCode::Forbidden, "not a member of this tenant")),
        }
    }
}

/// The `usage` root field.
#[derive(Default)]
pub struct UsageQuery;

#[Object]
impl UsageQuery {
    /// The tenant's usage: totals, breakdowns, events and limits.
    #[graphql(guard = "MemberGuard.and(UsageGuard)")]
    async fn usage(&self) -> Usage {
        Usage
    }
}
