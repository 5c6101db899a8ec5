//! The HTTP surface: where a request enters, gets its tenant session, and leaves.
//!
//! `POST /graphql` runs one GraphQL request in one [`TenantSession`] (one transaction): committed
//! when the response has no errors, rolled back otherwise, so mutations are atomic.

use std::sync::Arc;

use async_graphql::http::GraphiQLSource;
use async_graphql_poem::{GraphQLRequest, GraphQLResponse};
use poem::http::StatusCode;
use poem::middleware::Tracing;
use poem::web::{Data, Html};
use poem::{get, handler, Endpoint, EndpointExt, IntoResponse, Response, Route};

use crate::auth::Identity;
use crate::db::Database;
use crate::graphql::{db_error, AppSchema, ErrorCode};

/// What every handler shares.
pub struct AppState {
    /// The application role's database.
    pub db: Database,
    /// The executable GraphQL schema.
    pub schema: AppSchema,
    /// Serve GraphiQL at `GET /graphql`.
    pub graphiql: bool,
}

/// All routes.
pub fn router(state: Arc<AppState>) -> impl Endpoint {
    Route::new()
        .at("/graphql", get(graphiql).post(graphql))
        .at("/healthz", get(healthz))
        .at("/readyz", get(readyz))
        .data(state)
        .with(Tracing)
}

#[handler]
async fn graphql(state: Data<&Arc<AppState>>, request: GraphQLRequest) -> Response {
    let identity = Identity::local_owner();
    let session = match state.db.session(identity.tenant, identity.user).await {
        Ok(session) => Arc::new(session),
        Err(e) => return error_response(db_error(e)),
    };
    let response = state
        .schema
        .execute(request.0.data(Arc::clone(&session)))
        .await;
    // The request's data (holding the other reference) is dropped once execution ends.
    let Ok(session) = Arc::try_unwrap(session) else {
        tracing::error!("tenant session still referenced after execution; rolling back");
        return error_response(crate::graphql::error(ErrorCode::Internal, "internal error"));
    };
    if response.is_ok() {
        if let Err(e) = session.commit().await {
            return error_response(db_error(e));
        }
    } else if let Err(e) = session.rollback().await {
        tracing::warn!(error = %e, "rollback failed; the connection was discarded");
    }
    GraphQLResponse(response).into_response()
}

/// A response carrying one error, with 503 when retrying later can help.
fn error_response(error: async_graphql::Error) -> Response {
    let unavailable = error
        .extensions
        .as_ref()
        .and_then(|e| e.get("code"))
        .is_some_and(|c| *c == async_graphql::Value::from(ErrorCode::Unavailable.as_str()));
    let body = async_graphql::Response::from_errors(vec![
        error.into_server_error(async_graphql::Pos::default())
    ]);
    let mut response = GraphQLResponse(body).into_response();
    if unavailable {
        response.set_status(StatusCode::SERVICE_UNAVAILABLE);
    }
    response
}

#[handler]
fn graphiql(state: Data<&Arc<AppState>>) -> Response {
    if !state.graphiql {
        return StatusCode::METHOD_NOT_ALLOWED
            .with_header("allow", "POST")
            .into_response();
    }
    Html(GraphiQLSource::build().endpoint("/graphql").finish()).into_response()
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
