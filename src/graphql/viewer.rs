//! `viewer`: the caller's identity as the tenant session sees it.

use async_graphql::{Context, Object, ID};

use super::{db_error, session};
use crate::ids::Role;

/// The caller: user, tenant and role in that tenant.
pub struct Viewer;

#[Object]
impl Viewer {
    /// The tenant this request runs in.
    async fn tenant_id(&self, ctx: &Context<'_>) -> async_graphql::Result<ID> {
        Ok(ID(session(ctx)?.tenant().to_string()))
    }

    /// The authenticated user.
    async fn user_id(&self, ctx: &Context<'_>) -> async_graphql::Result<ID> {
        Ok(ID(session(ctx)?.user().to_string()))
    }

    /// The user's role in the tenant, as the database's `app.member_role()` reports it; null
    /// when the user is not a member (row-level security then shows them no rows at all).
    async fn role(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Role>> {
        let row = session(ctx)?
            .query_one("SELECT app.member_role()", &[])
            .await
            .map_err(db_error)?;
        Ok(row
            .get::<_, Option<String>>(0)
            .as_deref()
            .and_then(Role::parse))
    }
}
