//! The HTTP surface: where a request enters, is authenticated, gets its tenant and its tenant
//! session, and leaves.
//!
//! `POST /graphql` (or `/t/{slug}/graphql`) runs one GraphQL request in one [`TenantSession`]
//! (one transaction): committed when the response has no errors, rolled back otherwise, so
//! mutations are atomic.

use std::sync::Arc;

use async_graphql::http::GraphiQLSource;
use async_graphql_poem::{GraphQLRequest, GraphQLResponse};
use poem::http::{HeaderMap, StatusCode};
use poem::middleware::Tracing;
use poem::web::{Data, Html, Path};
use poem::{get, handler, Endpoint, EndpointExt, IntoResponse, Response, Route};

use crate::auth::Authenticator;
use crate::db::{Database, TenantSession};
use crate::features::Features;
use crate::graphql::{db_error, error, AppSchema, ErrorCode};
use crate::ids::{Role, DEFAULT_TENANT};
use crate::tenants::settings::SettingsCache;
use crate::tenants::{self, ResolveError};

/// What every handler shares.
pub struct AppState {
    /// The application role's database.
    pub db: Database,
    /// The executable GraphQL schema.
    pub schema: AppSchema,
    /// Serve GraphiQL at `GET /graphql`.
    pub graphiql: bool,
    /// How callers are authenticated.
    pub auth: Authenticator,
    /// What this deployment offers.
    pub features: Features,
    /// Single-tenant deployments: the role an authenticated non-member gets on first request
    /// (`None`: they must be added by an owner).
    pub join_role: Option<Role>,
    /// Per-process cache of tenant settings, keyed by tenant.
    pub settings_cache: Arc<SettingsCache>,
}

/// All routes.
pub fn router(state: Arc<AppState>) -> impl Endpoint {
    Route::new()
        .at("/graphql", get(graphiql).post(graphql))
        .at("/t/:slug/graphql", get(graphiql).post(graphql_for_slug))
        .at("/healthz", get(healthz))
        .at("/readyz", get(readyz))
        .data(state)
        .with(Tracing)
}

#[handler]
async fn graphql(
    state: Data<&Arc<AppState>>,
    headers: &HeaderMap,
    request: GraphQLRequest,
) -> Response {
    execute(&state, headers, None, request).await
}

#[handler]
async fn graphql_for_slug(
    state: Data<&Arc<AppState>>,
    Path(slug): Path<String>,
    headers: &HeaderMap,
    request: GraphQLRequest,
) -> Response {
    execute(&state, headers, Some(&slug), request).await
}

async fn execute(
    state: &AppState,
    headers: &HeaderMap,
    slug: Option<&str>,
    request: GraphQLRequest,
) -> Response {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let caller = match state.auth.authenticate(header("authorization")).await {
        Ok(caller) => caller,
        Err(e) => return error_response(error(ErrorCode::Unauthenticated, e.to_string())),
    };
    let resolved = match tenants::resolve(
        &state.db,
        &state.features,
        &caller,
        header("x-tenant-id"),
        slug,
    )
    .await
    {
        Ok(resolved) => resolved,
        Err(ResolveError::BadHeader) => {
            return error_response(error(
                ErrorCode::BadUserInput,
                ResolveError::BadHeader.to_string(),
            ))
        }
        Err(ResolveError::NotMember) => return forbidden(),
        Err(ResolveError::Db(e)) => return error_response(db_error(e)),
    };
    let mut session = match state.db.session(resolved.tenant, caller.user).await {
        Ok(session) => session,
        Err(e) => return error_response(db_error(e)),
    };
    if session.role().is_none() {
        match join_default_tenant(state, session, caller.user).await {
            Ok(Joined::Yes(joined)) => session = joined,
            // A tenant the request named: refused before anything runs.
            Ok(Joined::No(_)) if resolved.explicit => return forbidden(),
            // A user with no tenant yet: fields that need membership refuse one by one
            // (MemberGuard), while myTenants, createTenant and features work.
            Ok(Joined::No(unjoined)) => session = unjoined,
            Err(e) => return error_response(e),
        }
    }
    let session = Arc::new(session);
    let request = crate::graphql::with_request_data(
        request.0,
        &session,
        state.features,
        Arc::clone(&state.settings_cache),
    );
    let response = state.schema.execute(request).await;
    // The request's data (holding the other reference) is dropped once execution ends.
    let Ok(session) = Arc::try_unwrap(session) else {
        tracing::error!("tenant session still referenced after execution; rolling back");
        return error_response(error(ErrorCode::Internal, "internal error"));
    };
    if response.is_ok() {
        if let Err(e) = session.commit().await {
            return error_response(db_error(e));
        }
    } else if let Err(e) = session.rollback().await {
        tracing::warn!(error = %e, "rollback failed; the connection was discarded");
    }
    GraphQLResponse(with_codes(response)).into_response()
}

/// Gives every error an `extensions.code`: errors raised by resolvers carry theirs; async-graphql's
/// limits get LIMIT_EXCEEDED; the rest come from parsing, validating or coercing the request
/// (BAD_USER_INPUT) or are unexpected (INTERNAL, with the message replaced so nothing internal
/// leaks).
fn with_codes(mut response: async_graphql::Response) -> async_graphql::Response {
    for e in &mut response.errors {
        if e.extensions
            .as_ref()
            .is_some_and(|x| x.get("code").is_some())
        {
            continue;
        }
        let input = e.path.is_empty()
            || e.message.starts_with("Failed to parse")
            || e.message.starts_with("Invalid value");
        let code = if crate::graphql::limits::is_limit_message(&e.message) {
            ErrorCode::LimitExceeded
        } else if input {
            ErrorCode::BadUserInput
        } else {
            tracing::error!(message = %e.message, "error without a code");
            e.message = "internal error".into();
            ErrorCode::Internal
        };
        e.extensions
            .get_or_insert_with(Default::default)
            .set("code", code.as_str());
    }
    response
}

/// The outcome of [`join_default_tenant`].
enum Joined {
    /// The user joined: a new session with their role.
    Yes(TenantSession),
    /// Joining does not apply: the original session, still without a role.
    No(TenantSession),
}

/// Single-tenant deployments let an authenticated user who is not yet a member join the
/// default tenant with the configured role.
async fn join_default_tenant(
    state: &AppState,
    session: TenantSession,
    user: crate::ids::UserId,
) -> Result<Joined, async_graphql::Error> {
    let (Some(role), false, true) = (
        state.join_role,
        state.features.multi_tenant,
        session.tenant() == DEFAULT_TENANT,
    ) else {
        return Ok(Joined::No(session));
    };
    let _ = session.rollback().await;
    state
        .db
        .join_default_tenant(user, role)
        .await
        .map_err(db_error)?;
    let session = state
        .db
        .session(DEFAULT_TENANT, user)
        .await
        .map_err(db_error)?;
    Ok(if session.role().is_some() {
        Joined::Yes(session)
    } else {
        Joined::No(session)
    })
}

fn forbidden() -> Response {
    error_response(error(ErrorCode::Forbidden, "not a member of this tenant"))
}

/// A response carrying one error, with the HTTP status its code calls for.
fn error_response(error: async_graphql::Error) -> Response {
    let code = error
        .extensions
        .as_ref()
        .and_then(|e| e.get("code"))
        .and_then(|c| match c {
            async_graphql::Value::String(s) => Some(s.clone()),
            _ => None,
        })
        .unwrap_or_default();
    let status = match code.as_str() {
        "UNAUTHENTICATED" => StatusCode::UNAUTHORIZED,
        "FORBIDDEN" => StatusCode::FORBIDDEN,
        "BAD_USER_INPUT" => StatusCode::BAD_REQUEST,
        "UNAVAILABLE" => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    let body = async_graphql::Response::from_errors(vec![
        error.into_server_error(async_graphql::Pos::default())
    ]);
    let mut response = GraphQLResponse(body).into_response();
    response.set_status(status);
    if status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            "www-authenticate",
            "Bearer".parse().expect("a valid header value"),
        );
    }
    response
}

#[handler]
fn graphiql(state: Data<&Arc<AppState>>, uri: &poem::http::Uri) -> Response {
    if !state.graphiql {
        return StatusCode::METHOD_NOT_ALLOWED
            .with_header("allow", "POST")
            .into_response();
    }
    Html(GraphiQLSource::build().endpoint(uri.path()).finish()).into_response()
}

/// Liveness: the process answers.
#[handler]
fn healthz() -> &'static str {
    "ok"
}

/// Readiness: the database answers.
#[handler]
async fn readyz(state: Data<&Arc<AppState>>) -> Response {
    match state.db.ping().await {
        Ok(()) => "ready".into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "not ready");
            (StatusCode::SERVICE_UNAVAILABLE, "database unavailable").into_response()
        }
    }
}
