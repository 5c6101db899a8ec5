//! The operators' GraphQL endpoint: `platformUsage`, for tokens that carry the operator claim.
//!
//! Tokens are verified by the core's verifier (same settings as the public server); the claim
//! that makes a user an operator is configured (`PLATFORM_OPERATOR_CLAIM`, a dot path into the
//! token's claims, and `PLATFORM_OPERATOR_VALUE`). No token: 401. A valid token without the
//! claim: 403. This endpoint is meant for an internal port, not the public one.

use std::sync::Arc;

use async_graphql::{
    Context, EmptyMutation, EmptySubscription, ErrorExtensions, Object, Result, Schema,
};
use async_graphql_poem::{GraphQLRequest, GraphQLResponse};
use chrono::NaiveDate;
use poem::http::StatusCode;
use poem::web::Data;
use poem::{handler, post, Endpoint, EndpointExt, IntoResponse, Response, Route};
use research_graph::auth::JwtVerifier;
use research_graph::ids::UserId;

use crate::platform::{DayModelUsage, PlatformDb, TenantUsage};

/// Who may use the endpoint.
pub struct OperatorAuth {
    /// Verifies tokens.
    pub verifier: JwtVerifier,
    /// Dot path of the claim, e.g. `app_metadata.platform_role`.
    pub claim: String,
    /// The value that makes an operator.
    pub value: String,
}

/// Why a request was refused.
#[derive(Debug, thiserror::Error)]
pub enum OperatorError {
    /// No or invalid token.
    #[error("{0}")]
    Unauthenticated(String),
    /// A valid token without the operator claim.
    #[error("platform operators only")]
    Forbidden,
}

impl OperatorAuth {
    /// Checks the `Authorization` header.
    pub async fn check(&self, authorization: Option<&str>) -> Result<UserId, OperatorError> {
        let header = authorization.ok_or(OperatorError::Unauthenticated(
            "missing bearer token".into(),
        ))?;
        let token = header
            .strip_prefix("Bearer ")
            .ok_or(OperatorError::Unauthenticated(
                "malformed Authorization header".into(),
            ))?;
        let (user, claims) = self
            .verifier
            .verify_claims(token.trim())
            .await
            .map_err(|e| OperatorError::Unauthenticated(e.to_string()))?;
        let mut value = claims.get(self.claim.split('.').next().unwrap_or_default());
        for part in self.claim.split('.').skip(1) {
            value = value.and_then(|v| v.get(part));
        }
        match value.and_then(|v| v.as_str()) {
            Some(v) if v == self.value => Ok(user),
            _ => Err(OperatorError::Forbidden),
        }
    }
}

/// Usage over a range of days.
pub struct PlatformUsage {
    from: NaiveDate,
    to: NaiveDate,
}

#[Object]
impl PlatformUsage {
    /// Tenants by billed cost, highest first.
    async fn top_tenants(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 10)] limit: i64,
    ) -> Result<Vec<TenantUsage>> {
        let db = ctx.data::<PlatformDb>()?;
        db.top_tenants(self.from, self.to, limit.clamp(1, 1000))
            .await
            .map_err(internal)
    }

    /// Totals by day and model, over all tenants.
    async fn by_day_and_model(&self, ctx: &Context<'_>) -> Result<Vec<DayModelUsage>> {
        ctx.data::<PlatformDb>()?
            .by_day_and_model(self.from, self.to)
            .await
            .map_err(internal)
    }
}

fn internal(e: crate::platform::PlatformError) -> async_graphql::Error {
    tracing::error!(error = %e, "platform query failed");
    async_graphql::Error::new("internal error").extend_with(|_, x| x.set("code", "INTERNAL"))
}

/// The operators' root query.
pub struct PlatformQuery;

#[Object]
impl PlatformQuery {
    /// Usage across every tenant over the UTC days `from..=to` (at most 366 days).
    async fn platform_usage(&self, from: NaiveDate, to: NaiveDate) -> Result<PlatformUsage> {
        if to < from || (to - from).num_days() > 366 {
            return Err(
                async_graphql::Error::new("from..to must span 1 to 366 days")
                    .extend_with(|_, x| x.set("code", "BAD_USER_INPUT")),
            );
        }
        Ok(PlatformUsage { from, to })
    }
}

/// The operators' schema.
pub type PlatformSchema = Schema<PlatformQuery, EmptyMutation, EmptySubscription>;

struct State {
    schema: PlatformSchema,
    auth: OperatorAuth,
}

/// The operators' routes: `POST /graphql`.
pub fn router(db: PlatformDb, auth: OperatorAuth) -> impl Endpoint {
    let schema = Schema::build(PlatformQuery, EmptyMutation, EmptySubscription)
        .data(db)
        .limit_depth(8)
        .finish();
    Route::new()
        .at("/graphql", post(graphql))
        .data(Arc::new(State { schema, auth }))
}

#[handler]
async fn graphql(
    state: Data<&Arc<State>>,
    headers: &poem::http::HeaderMap,
    request: GraphQLRequest,
) -> Response {
    let authorization = headers.get("authorization").and_then(|v| v.to_str().ok());
    let (status, code, message) = match state.auth.check(authorization).await {
        Ok(_) => return GraphQLResponse(state.schema.execute(request.0).await).into_response(),
        Err(e @ OperatorError::Unauthenticated(_)) => {
            (StatusCode::UNAUTHORIZED, "UNAUTHENTICATED", e.to_string())
        }
        Err(e @ OperatorError::Forbidden) => (StatusCode::FORBIDDEN, "FORBIDDEN", e.to_string()),
    };
    let body =
        serde_json::json!({ "errors": [{ "message": message, "extensions": { "code": code } }] });
    (status, poem::web::Json(body)).into_response()
}
