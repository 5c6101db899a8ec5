//! Tenant settings: read by every member, changed by owners (row-level security decides).
//!
//! Reads go through a short-lived per-process [`TenantCache`] (a write in this process
//! invalidates it; other processes see a change within the cache's TTL). The API key itself is
//! never part of these types: only whether there is one, its provider and its last four
//! characters.

use std::sync::LazyLock;
use std::time::Duration;

use async_graphql::{Enum, InputObject, MaybeUndefined, SimpleObject};
use chrono::{DateTime, Utc};
use tokio_postgres::Row;

use crate::cache::TenantCache;
use crate::db::{DbError, TenantSession};
use crate::money::Usd;

/// How long a cached read of settings may be served.
pub const SETTINGS_TTL: Duration = Duration::from_secs(5);

/// The per-process settings cache, keyed by tenant.
pub type SettingsCache = TenantCache<(), TenantSettings>;

/// Who pays for model calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Enum)]
pub enum ExecutionMode {
    /// The platform's keys; usage is billed with the hosted markup.
    Hosted,
    /// The tenant's own API key; usage is recorded but costs the platform nothing.
    ByoKey,
}

impl ExecutionMode {
    fn as_str(self) -> &'static str {
        match self {
            ExecutionMode::Hosted => "hosted",
            ExecutionMode::ByoKey => "byo_key",
        }
    }
}

/// What happens at 100% of a usage limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Enum)]
pub enum LimitMode {
    /// Report the breach (warnings at 80%, errors at 100%) but let calls run.
    Soft,
    /// Block new calls, reserving each call's estimated cost before it starts.
    Hard,
}

impl LimitMode {
    fn as_str(self) -> &'static str {
        match self {
            LimitMode::Soft => "soft",
            LimitMode::Hard => "hard",
        }
    }
}

/// A tenant's settings.
#[derive(Clone, Debug, PartialEq, SimpleObject)]
pub struct TenantSettings {
    /// Model for extraction; null means the operator's default.
    pub extraction_model: Option<String>,
    /// Model for entity resolution; null means the operator's default.
    pub resolution_model: Option<String>,
    /// Model for reasoning; null means the operator's default.
    pub reasoning_model: Option<String>,
    /// Run one extra "gleaning" pass for missed entities.
    pub gleaning_enabled: bool,
    /// Who pays for model calls.
    pub execution_mode: ExecutionMode,
    /// Edges at or above this confidence are proposed, below it pending.
    pub confidence_threshold: f64,
    /// Entity pairs at least this similar become merge candidates.
    pub similarity_threshold: f64,
    /// Maximum depth the reasoning agent explores.
    pub reasoning_max_depth: i32,
    /// Daily cost limit (null: none).
    pub daily_cost_limit: Option<Usd>,
    /// Monthly cost limit (null: none).
    pub monthly_cost_limit: Option<Usd>,
    /// Daily token limit (null: none).
    pub daily_token_limit: Option<i64>,
    /// Monthly token limit (null: none).
    pub monthly_token_limit: Option<i64>,
    /// Soft (report) or hard (block) limits.
    pub limit_mode: LimitMode,
    /// Members (not only owners) may see the tenant's usage.
    pub usage_visible_to_members: bool,
    /// Whether a bring-your-own API key is stored.
    pub has_api_key: bool,
    /// The provider of the stored key.
    pub api_key_provider: Option<String>,
    /// The stored key's last four characters.
    pub api_key_last4: Option<String>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

/// The settings row, read by [`from_row`].
pub(super) const SELECT: &str = "\
SELECT extraction_model, resolution_model, reasoning_model, gleaning_enabled, execution_mode,
       confidence_threshold, similarity_threshold, reasoning_max_depth,
       daily_cost_limit_micros, monthly_cost_limit_micros, daily_token_limit, monthly_token_limit,
       limit_mode, api_key_ciphertext IS NOT NULL, api_key_provider, api_key_last4, updated_at,
       usage_visible_to_members
FROM app.tenant_settings";

/// A row in the shape of [`SELECT`].
pub(super) fn from_row(row: &Row) -> TenantSettings {
    TenantSettings {
        extraction_model: row.get(0),
        resolution_model: row.get(1),
        reasoning_model: row.get(2),
        gleaning_enabled: row.get(3),
        execution_mode: if row.get::<_, &str>(4) == "byo_key" {
            ExecutionMode::ByoKey
        } else {
            ExecutionMode::Hosted
        },
        confidence_threshold: row.get(5),
        similarity_threshold: row.get(6),
        reasoning_max_depth: row.get(7),
        daily_cost_limit: row.get::<_, Option<i64>>(8).map(Usd),
        monthly_cost_limit: row.get::<_, Option<i64>>(9).map(Usd),
        daily_token_limit: row.get(10),
        monthly_token_limit: row.get(11),
        limit_mode: if row.get::<_, &str>(12) == "hard" {
            LimitMode::Hard
        } else {
            LimitMode::Soft
        },
        has_api_key: row.get(13),
        api_key_provider: row.get(14),
        api_key_last4: row.get(15),
        updated_at: row.get(16),
        usage_visible_to_members: row.get(17),
    }
}

/// The session's tenant's settings, from the cache when fresh.
pub async fn load(
    session: &TenantSession,
    cache: &SettingsCache,
) -> Result<Option<TenantSettings>, DbError> {
    if let Some(hit) = cache.get(session.tenant(), &()) {
        return Ok(Some(hit));
    }
    let row = session.query_opt(SELECT, &[]).await?;
    let settings = row.as_ref().map(from_row);
    if let Some(settings) = &settings {
        cache.insert(session.tenant(), (), settings.clone());
    }
    Ok(settings)
}

/// The session's tenant's settings, read fresh and locked for an update. `None` when the caller
/// may not update them (row-level security applies the UPDATE policies to `FOR UPDATE`).
pub async fn load_for_update(session: &TenantSession) -> Result<Option<TenantSettings>, DbError> {
    static FOR_UPDATE: LazyLock<String> = LazyLock::new(|| format!("{SELECT} FOR UPDATE"));
    let row = session.query_opt(&FOR_UPDATE, &[]).await?;
    Ok(row.as_ref().map(from_row))
}

/// Changes to settings: absent fields stay as they are; an explicit null clears the optional
/// ones (models fall back to the operator's default, limits are removed).
#[derive(Clone, Debug, Default, InputObject)]
pub struct TenantSettingsInput {
    /// Model for extraction.
    pub extraction_model: MaybeUndefined<String>,
    /// Model for entity resolution.
    pub resolution_model: MaybeUndefined<String>,
    /// Model for reasoning.
    pub reasoning_model: MaybeUndefined<String>,
    /// Gleaning pass on or off.
    pub gleaning_enabled: Option<bool>,
    /// Who pays for model calls.
    pub execution_mode: Option<ExecutionMode>,
    /// Between 0 and 1.
    pub confidence_threshold: Option<f64>,
    /// Between 0 and 1.
    pub similarity_threshold: Option<f64>,
    /// Between 1 and 6.
    pub reasoning_max_depth: Option<i32>,
    /// Zero or more.
    pub daily_cost_limit: MaybeUndefined<Usd>,
    /// Zero or more.
    pub monthly_cost_limit: MaybeUndefined<Usd>,
    /// Zero or more.
    pub daily_token_limit: MaybeUndefined<i64>,
    /// Zero or more.
    pub monthly_token_limit: MaybeUndefined<i64>,
    /// Soft or hard limits.
    pub limit_mode: Option<LimitMode>,
    /// Members may see usage.
    pub usage_visible_to_members: Option<bool>,
}

/// An input that breaks a rule, with a message for the client.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct InvalidSettings(pub String);

fn merge<T: Clone>(current: &Option<T>, change: &MaybeUndefined<T>) -> Option<T> {
    match change {
        MaybeUndefined::Undefined => current.clone(),
        MaybeUndefined::Null => None,
        MaybeUndefined::Value(v) => Some(v.clone()),
    }
}

/// Applies `input` to `current`, validating every rule; the result is what gets written.
pub fn apply(
    current: &TenantSettings,
    input: &TenantSettingsInput,
) -> Result<TenantSettings, InvalidSettings> {
    let bad = |m: &str| Err(InvalidSettings(m.to_owned()));
    let mut next = current.clone();
    for (field, model) in [
        (&mut next.extraction_model, &input.extraction_model),
        (&mut next.resolution_model, &input.resolution_model),
        (&mut next.reasoning_model, &input.reasoning_model),
    ] {
        *field = merge(field, model);
        if field
            .as_deref()
            .is_some_and(|m| m.trim().is_empty() || m.len() > 200)
        {
            return bad("a model name has 1 to 200 characters");
        }
    }
    if let Some(v) = input.gleaning_enabled {
        next.gleaning_enabled = v;
    }
    if let Some(v) = input.execution_mode {
        next.execution_mode = v;
    }
    for (field, value, name) in [
        (
            &mut next.confidence_threshold,
            input.confidence_threshold,
            "confidenceThreshold",
        ),
        (
            &mut next.similarity_threshold,
            input.similarity_threshold,
            "similarityThreshold",
        ),
    ] {
        if let Some(v) = value {
            if !(0.0..=1.0).contains(&v) {
                return Err(InvalidSettings(format!("{name} must be between 0 and 1")));
            }
            *field = v;
        }
    }
    if let Some(depth) = input.reasoning_max_depth {
        if !(1..=6).contains(&depth) {
            return bad("reasoningMaxDepth must be between 1 and 6");
        }
        next.reasoning_max_depth = depth;
    }
    next.daily_cost_limit = merge(&next.daily_cost_limit, &input.daily_cost_limit);
    next.monthly_cost_limit = merge(&next.monthly_cost_limit, &input.monthly_cost_limit);
    next.daily_token_limit = merge(&next.daily_token_limit, &input.daily_token_limit);
    next.monthly_token_limit = merge(&next.monthly_token_limit, &input.monthly_token_limit);
    if [next.daily_cost_limit, next.monthly_cost_limit]
        .iter()
        .flatten()
        .any(|u| u.0 < 0)
        || [next.daily_token_limit, next.monthly_token_limit]
            .iter()
            .flatten()
            .any(|t| *t < 0)
    {
        return bad("limits are zero or more");
    }
    if let Some(mode) = input.limit_mode {
        next.limit_mode = mode;
    }
    if let Some(visible) = input.usage_visible_to_members {
        next.usage_visible_to_members = visible;
    }
    Ok(next)
}

/// The update, returning the new row in the shape of [`SELECT`].
static UPDATE: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH updated AS (
             UPDATE app.tenant_settings SET
                 extraction_model = $1, resolution_model = $2, reasoning_model = $3,
                 gleaning_enabled = $4, execution_mode = $5, confidence_threshold = $6,
                 similarity_threshold = $7, reasoning_max_depth = $8,
                 daily_cost_limit_micros = $9, monthly_cost_limit_micros = $10,
                 daily_token_limit = $11, monthly_token_limit = $12, limit_mode = $13,
                 usage_visible_to_members = $14, updated_at = now(), updated_by = app.user_id()
             RETURNING *)
         {}",
        SELECT.replace("FROM app.tenant_settings", "FROM updated")
    )
});

/// Writes `next` as the session's tenant's settings. Returns the stored row, or `None` when
/// row-level security let nothing be updated (the caller is not an owner).
pub async fn store(
    session: &TenantSession,
    cache: &SettingsCache,
    next: &TenantSettings,
) -> Result<Option<TenantSettings>, DbError> {
    let row = session
        .query_opt(
            &UPDATE,
            &[
                &next.extraction_model,
                &next.resolution_model,
                &next.reasoning_model,
                &next.gleaning_enabled,
                &next.execution_mode.as_str(),
                &next.confidence_threshold,
                &next.similarity_threshold,
                &next.reasoning_max_depth,
                &next.daily_cost_limit.map(|u| u.0),
                &next.monthly_cost_limit.map(|u| u.0),
                &next.daily_token_limit,
                &next.monthly_token_limit,
                &next.limit_mode.as_str(),
                &next.usage_visible_to_members,
            ],
        )
        .await?;
    cache.invalidate(session.tenant(), &());
    Ok(row.as_ref().map(from_row))
}
