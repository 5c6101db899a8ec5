//! The GraphQL schema: assembly, the request context, and error codes.
//!
//! Resolvers reach the database only through the request's [`TenantSession`], taken from the
//! context with [`session`]. There is no pool in the context, on purpose.

mod viewer;

use std::sync::Arc;

use async_graphql::{
    Context, EmptyMutation, EmptySubscription, ErrorExtensions, SDLExportOptions, Schema,
};

use crate::db::{DbError, TenantSession};

pub use viewer::Viewer;

/// The root query type.
pub struct Query;

#[async_graphql::Object]
impl Query {
    /// Who is asking, in which tenant, with which role.
    async fn viewer(&self) -> Viewer {
        Viewer
    }
}

/// The executable schema.
pub type AppSchema = Schema<Query, EmptyMutation, EmptySubscription>;

/// Builds the schema. `introspection` is on in development and off by default in production.
pub fn build_schema(introspection: bool) -> AppSchema {
    let mut builder = Schema::build(Query, EmptyMutation, EmptySubscription);
    if !introspection {
        builder = builder.disable_introspection().disable_suggestions();
    }
    builder.finish()
}

/// The schema as sorted SDL: what `schema.graphql` holds.
pub fn sdl() -> String {
    build_schema(true).sdl_with_options(
        SDLExportOptions::new()
            .sorted_fields()
            .sorted_arguments()
            .sorted_enum_items(),
    )
}

/// The request's tenant session.
pub fn session<'a>(ctx: &Context<'a>) -> async_graphql::Result<&'a TenantSession> {
    ctx.data::<Arc<TenantSession>>()
        .map(|s| s.as_ref())
        .map_err(|_| internal("no tenant session in the request context"))
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
    tracing::error!(error = %err, "database error");
    error(ErrorCode::Internal, "internal error")
}
