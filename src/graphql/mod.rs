//! The GraphQL schema: assembly, the request context, and error codes.
//!
//! Resolvers reach the database only through the request's [`TenantSession`], taken from the
//! context with [`session`]. There is no pool in the context, on purpose.

pub mod loaders;
pub mod pagination;
pub mod relay;

use std::sync::Arc;

use async_graphql::{Context, ErrorExtensions, MergedObject, SDLExportOptions, Schema};
use tokio_postgres::error::SqlState;

use crate::db::{DbError, TenantSession};
use crate::graph::{GraphMutation, GraphQuery, NeighborhoodQuery};
use crate::ids::Role;
use crate::insights::{InsightMutation, InsightQuery};
use crate::papers::{PaperMutation, PaperQuery};
use crate::search::SearchQuery;
use crate::tenants::{KeyMutation, TenantMutation, TenantQuery};

pub mod limits;

pub use limits::Limits;

/// The root query type, merged from the domain modules.
#[derive(MergedObject, Default)]
pub struct Query(
    TenantQuery,
    relay::NodeQuery,
    PaperQuery,
    GraphQuery,
    NeighborhoodQuery,
    InsightQuery,
    SearchQuery,
    crate::usage::UsageQuery,
    crate::pipeline::JobQuery,
    crate::pipeline::CandidateQuery,
);

/// The root mutation type, merged from the domain modules.
#[derive(MergedObject, Default)]
pub struct Mutation(
    TenantMutation,
    KeyMutation,
    PaperMutation,
    GraphMutation,
    InsightMutation,
    crate::pipeline::IngestMutation,
    crate::pipeline::JobMutation,
    crate::pipeline::CandidateMutation,
);

/// The executable schema.
pub type AppSchema = Schema<Query, Mutation, crate::pipeline::progress::Subscription>;

/// Builds the schema with `limits`: depth, complexity, recursion depth and directives per
/// field are enforced by async-graphql, and the limits are schema data, so resolvers read
/// them with `ctx.data_unchecked::<Limits>()` (connections: `max_page_size`). `introspection`
/// (and field suggestions with it) is on in development and off by default in production.
pub fn build_schema(introspection: bool, limits: &Limits) -> AppSchema {
    let mut builder = Schema::build(
        Query::default(),
        Mutation::default(),
        crate::pipeline::progress::Subscription,
    )
    .limit_depth(limits.max_depth)
    .limit_complexity(limits.max_complexity)
    .limit_recursive_depth(limits.max_recursive_depth)
    .limit_directives(limits.max_directives)
    .extension(limits::StopAfterValidation)
    .data(*limits)
    .data(limits::DocumentCache::default());
    if !introspection {
        builder = builder
            .disable_introspection()
            .disable_suggestions()
            .data(limits::IntrospectionOff);
    }
    builder.finish()
}

/// The schema as sorted SDL: what `schema.graphql` holds.
pub fn sdl() -> String {
    build_schema(true, &Limits::default()).sdl_with_options(
        SDLExportOptions::new()
            .sorted_fields()
            .sorted_arguments()
            .sorted_enum_items(),
    )
}

/// Attaches what resolvers of one request need: its tenant session, the feature flags, the
/// per-process tenant-keyed caches, and the key ring when one is configured (resolvers take it
/// as `Arc<KeyRing>`). Per-request DataLoaders are created here too, so they can never batch
/// or cache across requests or tenants.
pub fn with_request_data(
    request: async_graphql::Request,
    session: &Arc<TenantSession>,
    features: crate::features::Features,
    settings_cache: Arc<crate::tenants::settings::SettingsCache>,
    key_ring: Option<Arc<crate::crypto::KeyRing>>,
) -> async_graphql::Request {
    let request = request
        .data(Arc::clone(session))
        .data(loaders::request_loader(session))
        .data(features)
        .data(settings_cache);
    match key_ring {
        Some(ring) => request.data(ring),
        None => request,
    }
}

/// The page-size clamp for connections (`GRAPHQL_MAX_PAGE_SIZE`, from the schema's limits).
pub fn max_page_size(ctx: &Context<'_>) -> usize {
    ctx.data_opt::<Limits>()
        .map(|l| l.max_page_size)
        .unwrap_or_else(|| Limits::default().max_page_size)
}

/// The outcome of a write that returns its row: the row, or why there is none. Row-level
/// security hides rows a viewer may not change, so "no row" means FORBIDDEN for a viewer and
/// NOT_FOUND for a writer.
pub fn written<T>(session: &TenantSession, row: Option<T>, what: &str) -> async_graphql::Result<T> {
    match (row, session.role()) {
        (Some(row), _) => Ok(row),
        (None, Some(Role::Owner | Role::Member)) => Err(error(
            ErrorCode::NotFound,
            format!("no such {what} in this tenant"),
        )),
        (None, _) => Err(error(
            ErrorCode::Forbidden,
            "viewers cannot change anything",
        )),
    }
}

/// The request's tenant session.
pub fn session<'a>(ctx: &Context<'a>) -> async_graphql::Result<&'a TenantSession> {
    ctx.data::<Arc<TenantSession>>()
        .map(|s| s.as_ref())
        .map_err(|_| internal("no tenant session in the request context"))
}

/// Fields that need the caller to be a member of the request's tenant. A request reaches the
/// schema without membership only when the tenant was not named explicitly (a user with no
/// tenant yet); such a request may still list its tenants and create one.
pub struct MemberGuard;

impl async_graphql::Guard for MemberGuard {
    async fn check(&self, ctx: &Context<'_>) -> async_graphql::Result<()> {
        match session(ctx)?.role() {
            Some(_) => Ok(()),
            None => Err(error(ErrorCode::Forbidden, "not a member of this tenant")),
        }
    }
}

/// The `extensions.code` values clients can rely on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorCode {
    /// No or invalid credentials.
    Unauthenticated,
    /// Authenticated, but the database refused (not a member, or the role may not do this).
    Forbidden,
    /// The input was invalid.
    BadUserInput,
    /// No such object (in this tenant).
    NotFound,
    /// A depth, complexity, size or usage limit was exceeded.
    LimitExceeded,
    /// The database is unavailable; retrying later can succeed.
    Unavailable,
    /// Anything else; details are logged, never sent.
    Internal,
}

impl ErrorCode {
    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::Unauthenticated => "UNAUTHENTICATED",
            ErrorCode::Forbidden => "FORBIDDEN",
            ErrorCode::BadUserInput => "BAD_USER_INPUT",
            ErrorCode::NotFound => "NOT_FOUND",
            ErrorCode::LimitExceeded => "LIMIT_EXCEEDED",
            ErrorCode::Unavailable => "UNAVAILABLE",
            ErrorCode::Internal => "INTERNAL",
        }
    }
}

/// A client-facing error with a code (and `retryable` when retrying can help).
pub fn error(code: ErrorCode, message: impl Into<String>) -> async_graphql::Error {
    async_graphql::Error::new(message).extend_with(|_, e| {
        e.set("code", code.as_str());
        if code == ErrorCode::Unavailable {
            e.set("retryable", true);
        }
    })
}

fn internal(detail: &str) -> async_graphql::Error {
    tracing::error!(detail, "internal error");
    error(ErrorCode::Internal, "internal error")
}

/// Maps a database error to a client-facing one. SQL text and server messages are logged, never
/// returned: they could name constraints, columns or values.
pub fn db_error(err: DbError) -> async_graphql::Error {
    if err.is_pool_exhausted() {
        tracing::warn!(error = %err, "no database connection became free in time");
        return error(
            ErrorCode::Unavailable,
            "the database is busy: no connection became free in time; retry shortly",
        );
    }
    if err.is_unavailable() {
        tracing::warn!(error = %err, "database unavailable");
        return error(
            ErrorCode::Unavailable,
            "the database is unavailable; retry shortly",
        );
    }
    if err.is_forbidden() {
        return error(ErrorCode::Forbidden, "not allowed in this tenant");
    }
    if let Some(state) = err.sql_state() {
        let message = match state.code() {
            "RG001" => Some("a tenant must keep at least one owner"),
            "23505" => Some("conflicts with existing data"),
            "23503" => Some("refers to something that does not exist in this tenant"),
            "23514" | "22001" | "22003" | "22P02" => Some("invalid input"),
            // A NUL character, which PostgreSQL text cannot hold: 22021 in text, 22P05 in
            // JSON (`\u0000`). A Rust string is valid UTF-8, so nothing else gets these.
            "22021" | "22P05" => Some("text cannot contain NUL characters"),
            _ => None,
        };
        if let Some(message) = message {
            return error(ErrorCode::BadUserInput, message);
        }
        if *state == SqlState::QUERY_CANCELED {
            return error(ErrorCode::LimitExceeded, "the query took too long");
        }
        // A statement after one that failed in the same request (a mutation's second field
        // after its first was refused, say): the transaction is already lost, and the failure
        // that lost it is reported with its own code.
        if *state == SqlState::IN_FAILED_SQL_TRANSACTION {
            return error(
                ErrorCode::BadUserInput,
                "not run: an earlier error in this request ended its transaction",
            );
        }
    }
    tracing::error!(error = %err, "database error");
    error(ErrorCode::Internal, "internal error")
}

#[cfg(test)]
mod tests {
    use super::*;
    use deadpool_postgres::{PoolError, TimeoutType};

    fn extension(e: &async_graphql::Error, name: &str) -> Option<async_graphql::Value> {
        e.extensions.as_ref().and_then(|x| x.get(name)).cloned()
    }

    #[test]
    fn an_exhausted_pool_is_a_retryable_busy_error() {
        let e = db_error(DbError::Pool(PoolError::Timeout(TimeoutType::Wait)));
        assert_eq!(extension(&e, "code"), Some("UNAVAILABLE".into()));
        assert_eq!(extension(&e, "retryable"), Some(true.into()));
        assert!(e.message.contains("busy"), "{}", e.message);
    }

    #[test]
    fn a_pool_that_cannot_connect_is_a_retryable_unavailable_error() {
        for err in [
            DbError::Pool(PoolError::Closed),
            DbError::Pool(PoolError::Timeout(TimeoutType::Create)),
        ] {
            assert!(!err.is_pool_exhausted());
            let e = db_error(err);
            assert_eq!(extension(&e, "code"), Some("UNAVAILABLE".into()));
            assert_eq!(extension(&e, "retryable"), Some(true.into()));
            assert!(e.message.contains("unavailable"), "{}", e.message);
        }
    }
}
