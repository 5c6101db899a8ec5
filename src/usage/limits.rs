//! Per-tenant usage limits: daily and monthly cost and tokens, checked before every model call.
//!
//! At 80% of a limit its state is WARNING, at 100% EXCEEDED. In soft mode (the default) calls go
//! on and the state is reported. In hard mode a call is admitted only if what was used, plus what
//! calls in flight have reserved, plus this call's estimated maximum stays within every limit;
//! the estimate is then reserved (in `app.usage_reservations`) until the call's usage event
//! replaces it. In hard mode admission is serialised per tenant with a transaction-level
//! advisory lock, so N concurrent calls cannot overshoot; soft mode takes no lock. Cost limits
//! count what the tenant pays: the billed cost in hosted mode, the provider cost in
//! bring-your-own-key mode. Days and months are UTC.

use async_graphql::{Enum, SimpleObject};
use uuid::Uuid;

use crate::db::{Database, DbError, TenantSession};
use crate::ids::{TenantId, UserId};
use crate::money::Usd;
use crate::tenants::settings::{ExecutionMode, LimitMode};

/// How long a reservation counts if its call never reports back (a crashed process).
const RESERVATION_TTL_SECS: i64 = 600;

/// The period of a limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Enum)]
pub enum LimitPeriod {
    /// The current UTC day.
    Day,
    /// The current UTC month.
    Month,
}

/// What a limit counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Enum)]
pub enum LimitKind {
    /// Cost, in micro-dollars.
    Cost,
    /// Tokens (input, output and thinking).
    Tokens,
}

/// Where usage stands against a limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Enum)]
pub enum LimitState {
    /// Below 80%.
    Ok,
    /// At 80% or more.
    Warning,
    /// At 100% or more.
    Exceeded,
}

/// One configured limit and the usage against it.
#[derive(Clone, Debug, PartialEq, SimpleObject)]
pub struct LimitStatus {
    /// Day or month.
    pub period: LimitPeriod,
    /// Cost or tokens.
    pub kind: LimitKind,
    /// The limit (micro-dollars for cost).
    pub limit: i64,
    /// Used so far in the period.
    pub used: i64,
    /// Reserved by calls in flight (hard mode).
    pub reserved: i64,
    /// Where it stands.
    pub state: LimitState,
}

/// The estimated maximum of a call, reserved under a hard limit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Estimate {
    /// Cost the tenant would pay at most.
    pub cost: Usd,
    /// Tokens at most.
    pub tokens: i64,
}

/// The outcome of admission.
#[derive(Clone, Debug, PartialEq)]
pub struct Admission {
    /// Every configured limit, with this call's estimate not yet counted.
    pub statuses: Vec<LimitStatus>,
    /// The reservation held (hard mode), released by the call's usage event.
    pub reservation: Option<Uuid>,
    /// The tenant's execution mode.
    pub execution_mode: ExecutionMode,
}

impl Admission {
    /// The worst state among the limits.
    pub fn state(&self) -> LimitState {
        self.statuses
            .iter()
            .map(|s| s.state)
            .max()
            .unwrap_or(LimitState::Ok)
    }
}

/// Why a call was not admitted.
#[derive(Debug, thiserror::Error)]
pub enum AdmitError {
    /// A hard limit would be exceeded.
    #[error("usage limit reached")]
    Exceeded(Vec<LimitStatus>),
    /// The database could not be asked.
    #[error(transparent)]
    Db(#[from] DbError),
}

fn state(used: i64, limit: i64) -> LimitState {
    // Integer comparisons: used/limit ≥ 0.8 ⇔ 5·used ≥ 4·limit.
    if used as i128 >= limit as i128 {
        LimitState::Exceeded
    } else if 5 * used as i128 >= 4 * limit as i128 {
        LimitState::Warning
    } else {
        LimitState::Ok
    }
}

/// The session tenant's limits and usage against them.
pub async fn status(
    session: &TenantSession,
) -> Result<(Vec<LimitStatus>, LimitMode, ExecutionMode), DbError> {
    let row = session
        .query_one(
            "WITH s AS (
                 SELECT daily_cost_limit_micros, monthly_cost_limit_micros, daily_token_limit,
                        monthly_token_limit, limit_mode, execution_mode
                 FROM app.tenant_settings),
             u AS (
                 SELECT
                   coalesce(sum(CASE WHEN s.execution_mode = 'hosted' THEN d.billed_cost_micros
                                     ELSE d.base_cost_micros END)
                            FILTER (WHERE d.day = (now() AT TIME ZONE 'UTC')::date), 0)::bigint AS day_cost,
                   coalesce(sum(CASE WHEN s.execution_mode = 'hosted' THEN d.billed_cost_micros
                                     ELSE d.base_cost_micros END), 0)::bigint AS month_cost,
                   coalesce(sum(d.input_tokens + d.output_tokens + d.thinking_tokens)
                            FILTER (WHERE d.day = (now() AT TIME ZONE 'UTC')::date), 0)::bigint AS day_tokens,
                   coalesce(sum(d.input_tokens + d.output_tokens + d.thinking_tokens), 0)::bigint AS month_tokens
                 FROM s LEFT JOIN app.usage_daily d
                   ON d.day >= date_trunc('month', now() AT TIME ZONE 'UTC')::date),
             r AS (
                 SELECT coalesce(sum(cost_micros), 0)::bigint AS cost, coalesce(sum(tokens), 0)::bigint AS tokens
                 FROM app.usage_reservations WHERE expires_at > now())
             SELECT s.daily_cost_limit_micros, s.monthly_cost_limit_micros, s.daily_token_limit,
                    s.monthly_token_limit, s.limit_mode, s.execution_mode,
                    u.day_cost, u.month_cost, u.day_tokens, u.month_tokens, r.cost, r.tokens
             FROM s, u, r",
            &[],
        )
        .await?;
    let mode = if row.get::<_, &str>(4) == "hard" {
        LimitMode::Hard
    } else {
        LimitMode::Soft
    };
    let execution = if row.get::<_, &str>(5) == "byo_key" {
        ExecutionMode::ByoKey
    } else {
        ExecutionMode::Hosted
    };
    let (day_cost, month_cost, day_tokens, month_tokens): (i64, i64, i64, i64) =
        (row.get(6), row.get(7), row.get(8), row.get(9));
    let (reserved_cost, reserved_tokens): (i64, i64) = (row.get(10), row.get(11));
    let mut out = Vec::new();
    for (limit, period, kind, used, reserved) in [
        (
            row.get::<_, Option<i64>>(0),
            LimitPeriod::Day,
            LimitKind::Cost,
            day_cost,
            reserved_cost,
        ),
        (
            row.get(1),
            LimitPeriod::Month,
            LimitKind::Cost,
            month_cost,
            reserved_cost,
        ),
        (
            row.get(2),
            LimitPeriod::Day,
            LimitKind::Tokens,
            day_tokens,
            reserved_tokens,
        ),
        (
            row.get(3),
            LimitPeriod::Month,
            LimitKind::Tokens,
            month_tokens,
            reserved_tokens,
        ),
    ] {
        if let Some(limit) = limit {
            out.push(LimitStatus {
                period,
                kind,
                limit,
                used,
                reserved,
                state: state(used + reserved, limit),
            });
        }
    }
    Ok((out, mode, execution))
}

/// Serialises the admissions of the session's tenant until the transaction ends.
async fn lock_admissions(session: &TenantSession) -> Result<(), DbError> {
    session
        .execute(
            "SELECT pg_advisory_xact_lock(hashtextextended(app.tenant_id()::text, 4242))",
            &[],
        )
        .await?;
    Ok(())
}

/// Admits a call of at most `estimate` for `user` in `tenant`, reserving it under a hard limit.
pub async fn admit(
    db: &Database,
    tenant: TenantId,
    user: UserId,
    estimate: Estimate,
) -> Result<Admission, AdmitError> {
    let session = db.session(tenant, user).await?;
    // Hard limits serialise the admissions of a tenant; soft ones only read, so concurrent calls
    // are not queued behind each other.
    let hard: bool = session
        .query_one(
            "SELECT coalesce((SELECT limit_mode = 'hard' FROM app.tenant_settings), false)",
            &[],
        )
        .await?
        .get(0);
    if hard {
        lock_admissions(&session).await?;
    }
    let (mut statuses, mut mode, mut execution_mode) = status(&session).await?;
    if mode == LimitMode::Hard && !hard {
        // Switched to hard mode in between: read again under the lock.
        lock_admissions(&session).await?;
        (statuses, mode, execution_mode) = status(&session).await?;
    }
    let mut reservation = None;
    if mode == LimitMode::Hard && !statuses.is_empty() {
        let over = statuses.iter().any(|s| {
            let add = match s.kind {
                LimitKind::Cost => estimate.cost.0,
                LimitKind::Tokens => estimate.tokens,
            };
            s.used + s.reserved + add > s.limit
        });
        if over {
            session.rollback().await?;
            return Err(AdmitError::Exceeded(statuses));
        }
        let row = session
            .query_one(
                "INSERT INTO app.usage_reservations (tenant_id, cost_micros, tokens, expires_at)
                 VALUES (app.tenant_id(), $1, $2, now() + make_interval(secs => $3))
                 RETURNING id",
                &[
                    &estimate.cost.0,
                    &estimate.tokens,
                    &(RESERVATION_TTL_SECS as f64),
                ],
            )
            .await?;
        reservation = Some(row.get(0));
    }
    session.commit().await?;
    for s in &statuses {
        if s.state != LimitState::Ok {
            tracing::warn!(%tenant, period = ?s.period, kind = ?s.kind, state = ?s.state, used = s.used, limit = s.limit, "usage limit");
        }
    }
    Ok(Admission {
        statuses,
        reservation,
        execution_mode,
    })
}

#[cfg(test)]
mod tests {
    use super::{state, LimitState};

    #[test]
    fn warning_at_80_and_exceeded_at_100_percent() {
        assert_eq!(state(79, 100), LimitState::Ok);
        assert_eq!(state(80, 100), LimitState::Warning);
        assert_eq!(state(99, 100), LimitState::Warning);
        assert_eq!(state(100, 100), LimitState::Exceeded);
        assert_eq!(
            state(0, 0),
            LimitState::Exceeded,
            "a zero limit allows nothing"
        );
    }
}
