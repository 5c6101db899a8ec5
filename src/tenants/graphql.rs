//! GraphQL surface of tenancy: `viewer`, `tenant`, `myTenants`, `features`, and the tenant
//! management mutations. Every statement runs in the request's tenant session; row-level
//! security decides what an owner, member or viewer may do, and the resolvers only turn the
//! database's answer into a clear error code.

use async_graphql::{ComplexObject, Context, Object, Result, SimpleObject, ID};
use chrono::{DateTime, Utc};
use tokio_postgres::error::SqlState;
use uuid::Uuid;

use super::settings::{self, SettingsCache, TenantSettings, TenantSettingsInput};
use super::Slug;
use crate::db::{DbError, TenantSession};
use crate::features::Features;
use crate::graphql::{db_error, error, session, ErrorCode, MemberGuard};
use crate::ids::{Role, DEFAULT_TENANT};

/// A user, known by id (the `sub` of their tokens).
#[derive(Clone, Debug, SimpleObject)]
pub struct User {
    /// The user's id.
    pub id: ID,
}

impl User {
    fn new(id: Uuid) -> User {
        User {
            id: ID(id.to_string()),
        }
    }
}

/// The caller: user, tenant and role in that tenant.
pub struct Viewer;

#[Object]
impl Viewer {
    /// The authenticated user.
    async fn user(&self, ctx: &Context<'_>) -> Result<User> {
        Ok(User::new(session(ctx)?.user().0))
    }

    /// The tenant this request runs in.
    async fn tenant(&self, ctx: &Context<'_>) -> Result<Tenant> {
        Tenant::current(session(ctx)?).await
    }

    /// The user's role in the tenant, as the database's `app.member_role()` reports it.
    async fn role(&self, ctx: &Context<'_>) -> Result<Role> {
        role(session(ctx)?)
    }
}

/// A tenant: the unit of isolation.
#[derive(Clone, Debug, SimpleObject)]
#[graphql(complex)]
pub struct Tenant {
    /// The tenant's id (send it as `x-tenant-id`).
    pub id: ID,
    /// The tenant's slug (for `/t/{slug}/graphql`).
    pub slug: String,
    /// The tenant's display name.
    pub name: String,
    /// When the tenant was created.
    pub created_at: DateTime<Utc>,
}

impl Tenant {
    /// The session's tenant, as row-level security shows it.
    async fn current(s: &TenantSession) -> Result<Tenant> {
        let row = s
            .query_opt(
                "SELECT id, slug, name, created_at FROM app.tenants WHERE id = app.tenant_id()",
                &[],
            )
            .await
            .map_err(db_error)?
            .ok_or_else(|| error(ErrorCode::Forbidden, "not a member of this tenant"))?;
        Ok(Tenant {
            id: ID(row.get::<_, Uuid>(0).to_string()),
            slug: row.get(1),
            name: row.get(2),
            created_at: row.get(3),
        })
    }
}

#[ComplexObject]
impl Tenant {
    /// The tenant's settings (read by every member; changed by owners).
    async fn settings(&self, ctx: &Context<'_>) -> Result<TenantSettings> {
        let cache = ctx.data::<std::sync::Arc<SettingsCache>>()?;
        settings::load(session(ctx)?, cache)
            .await
            .map_err(db_error)?
            .ok_or_else(|| error(ErrorCode::Forbidden, "not a member of this tenant"))
    }

    /// The tenant's members, oldest first.
    async fn members(&self, ctx: &Context<'_>) -> Result<Vec<Member>> {
        let rows = session(ctx)?
            .query(
                "SELECT user_id, role, created_at FROM app.tenant_users ORDER BY created_at, user_id",
                &[],
            )
            .await
            .map_err(db_error)?;
        Ok(rows.iter().map(Member::from_row).collect())
    }
}

/// A user's membership of the current tenant.
#[derive(Clone, Debug, SimpleObject)]
pub struct Member {
    /// The member.
    pub user: User,
    /// Their role.
    pub role: Role,
    /// When they joined.
    pub since: DateTime<Utc>,
}

impl Member {
    fn from_row(row: &tokio_postgres::Row) -> Member {
        Member {
            user: User::new(row.get(0)),
            role: Role::parse(row.get(1)).unwrap_or(Role::Viewer),
            since: row.get(2),
        }
    }
}

/// One of the caller's tenants, for a tenant switcher.
#[derive(Clone, Debug, SimpleObject)]
pub struct TenantMembership {
    /// The tenant's id.
    pub tenant_id: ID,
    /// The tenant's slug.
    pub slug: String,
    /// The tenant's name.
    pub name: String,
    /// The caller's role there.
    pub role: Role,
    /// Whether it is the caller's default tenant.
    pub is_default: bool,
}

fn role(s: &TenantSession) -> Result<Role> {
    s.role()
        .ok_or_else(|| error(ErrorCode::Forbidden, "not a member of this tenant"))
}

fn parse_id(id: &ID, what: &str) -> Result<Uuid> {
    Uuid::parse_str(id.as_str())
        .map_err(|_| error(ErrorCode::BadUserInput, format!("{what} must be a UUID")))
}

/// Maps a database error, with `conflict` as the message for a unique violation.
fn write_error(err: DbError, conflict: &str) -> async_graphql::Error {
    if err.sql_state() == Some(&SqlState::UNIQUE_VIOLATION) {
        return error(ErrorCode::BadUserInput, conflict);
    }
    db_error(err)
}

/// Nothing was changed: not allowed for a non-owner, otherwise there was nothing to change.
fn nothing_changed(s: &TenantSession, not_found: &str) -> async_graphql::Error {
    if s.role() == Some(Role::Owner) {
        error(ErrorCode::NotFound, not_found)
    } else {
        error(ErrorCode::Forbidden, "only owners may do this")
    }
}

/// Tenancy queries.
#[derive(Default)]
pub struct TenantQuery;

#[Object]
impl TenantQuery {
    /// Who is asking, in which tenant, with which role.
    async fn viewer(&self) -> Viewer {
        Viewer
    }

    /// The tenant this request runs in.
    #[graphql(guard = "MemberGuard")]
    async fn tenant(&self, ctx: &Context<'_>) -> Result<Tenant> {
        Tenant::current(session(ctx)?).await
    }

    /// The caller's tenants.
    async fn my_tenants(&self, ctx: &Context<'_>) -> Result<Vec<TenantMembership>> {
        let rows = session(ctx)?
            .query(
                "SELECT tenant_id, slug, name, role, is_default FROM app.my_tenants()",
                &[],
            )
            .await
            .map_err(db_error)?;
        Ok(rows
            .iter()
            .map(|r| TenantMembership {
                tenant_id: ID(r.get::<_, Uuid>(0).to_string()),
                slug: r.get(1),
                name: r.get(2),
                role: Role::parse(r.get(3)).unwrap_or(Role::Viewer),
                is_default: r.get(4),
            })
            .collect())
    }

    /// What this deployment offers.
    async fn features(&self, ctx: &Context<'_>) -> Result<Features> {
        Ok(*ctx.data::<Features>()?)
    }
}

/// Tenancy mutations.
#[derive(Default)]
pub struct TenantMutation;

#[Object]
impl TenantMutation {
    /// Creates a tenant with the caller as its owner (multi-tenant deployments only). It
    /// becomes the caller's default tenant if they had none.
    async fn create_tenant(
        &self,
        ctx: &Context<'_>,
        name: String,
        slug: String,
    ) -> Result<TenantMembership> {
        if !ctx.data::<Features>()?.multi_tenant {
            return Err(error(
                ErrorCode::BadUserInput,
                "this deployment is single-tenant (ENABLE_MULTI_TENANT is off)",
            ));
        }
        let slug = Slug::parse(&slug).map_err(|m| error(ErrorCode::BadUserInput, m))?;
        let name = name.trim();
        if name.is_empty() || name.chars().count() > 200 {
            return Err(error(
                ErrorCode::BadUserInput,
                "a name has 1 to 200 characters",
            ));
        }
        let s = session(ctx)?;
        let created: Uuid = s
            .query_one("SELECT app.create_tenant($1, $2)", &[&name, &slug.as_str()])
            .await
            .map_err(|e| write_error(e, "this slug is already taken"))?
            .get(0);
        let row = s
            .query_one(
                "SELECT tenant_id, slug, name, role, is_default FROM app.my_tenants() \
                 WHERE tenant_id = $1",
                &[&created],
            )
            .await
            .map_err(db_error)?;
        Ok(TenantMembership {
            tenant_id: ID(row.get::<_, Uuid>(0).to_string()),
            slug: row.get(1),
            name: row.get(2),
            role: Role::Owner,
            is_default: row.get(4),
        })
    }

    /// Adds a user to the current tenant (owners only).
    #[graphql(guard = "MemberGuard")]
    async fn add_member(&self, ctx: &Context<'_>, user_id: ID, role: Role) -> Result<Member> {
        let user = parse_id(&user_id, "userId")?;
        let row = session(ctx)?
            .query_one(
                "INSERT INTO app.tenant_users (tenant_id, user_id, role) \
                 VALUES (app.tenant_id(), $1, $2) RETURNING user_id, role, created_at",
                &[&user, &role.as_str()],
            )
            .await
            .map_err(|e| write_error(e, "already a member of this tenant"))?;
        Ok(Member::from_row(&row))
    }

    /// Changes a member's role (owners only; the last owner cannot be demoted).
    #[graphql(guard = "MemberGuard")]
    async fn update_member_role(
        &self,
        ctx: &Context<'_>,
        user_id: ID,
        role: Role,
    ) -> Result<Member> {
        let user = parse_id(&user_id, "userId")?;
        let s = session(ctx)?;
        let row = s
            .query_opt(
                "UPDATE app.tenant_users SET role = $2 WHERE user_id = $1 \
                 RETURNING user_id, role, created_at",
                &[&user, &role.as_str()],
            )
            .await
            .map_err(db_error)?
            .ok_or_else(|| nothing_changed(s, "no such member"))?;
        Ok(Member::from_row(&row))
    }

    /// Removes a member (owners only; the last owner cannot be removed). Returns their id.
    #[graphql(guard = "MemberGuard")]
    async fn remove_member(&self, ctx: &Context<'_>, user_id: ID) -> Result<ID> {
        let user = parse_id(&user_id, "userId")?;
        let s = session(ctx)?;
        s.query_opt(
            "DELETE FROM app.tenant_users WHERE user_id = $1 RETURNING user_id",
            &[&user],
        )
        .await
        .map_err(db_error)?
        .ok_or_else(|| nothing_changed(s, "no such member"))?;
        Ok(user_id)
    }

    /// Makes a tenant the caller's default (used when a request names no tenant).
    async fn set_default_tenant(&self, ctx: &Context<'_>, tenant_id: ID) -> Result<bool> {
        let tenant = parse_id(&tenant_id, "tenantId")?;
        let row = session(ctx)?
            .query_one("SELECT app.set_default_tenant($1)", &[&tenant])
            .await
            .map_err(db_error)?;
        if !row.get::<_, bool>(0) {
            return Err(error(ErrorCode::Forbidden, "not a member of that tenant"));
        }
        Ok(true)
    }

    /// Deletes the current tenant and everything in it (owners only). `confirmSlug` must be
    /// the tenant's slug. The default tenant cannot be deleted. Returns the deleted id.
    #[graphql(guard = "MemberGuard")]
    async fn delete_tenant(&self, ctx: &Context<'_>, confirm_slug: String) -> Result<ID> {
        let s = session(ctx)?;
        if s.tenant() == DEFAULT_TENANT {
            return Err(error(
                ErrorCode::BadUserInput,
                "the default tenant cannot be deleted",
            ));
        }
        if s.role() != Some(Role::Owner) {
            return Err(error(ErrorCode::Forbidden, "only owners may do this"));
        }
        let row = s
            .query_opt(
                "DELETE FROM app.tenants WHERE id = app.tenant_id() AND slug = $1 RETURNING id",
                &[&confirm_slug],
            )
            .await
            .map_err(db_error)?
            .ok_or_else(|| error(ErrorCode::BadUserInput, "confirmSlug does not match"))?;
        Ok(ID(row.get::<_, Uuid>(0).to_string()))
    }

    /// Changes the current tenant's settings (owners only).
    #[graphql(guard = "MemberGuard")]
    async fn update_tenant_settings(
        &self,
        ctx: &Context<'_>,
        input: TenantSettingsInput,
    ) -> Result<TenantSettings> {
        let s = session(ctx)?;
        let cache = ctx.data::<std::sync::Arc<SettingsCache>>()?;
        // Locks the row (and sees it only when the caller may update it).
        let current = settings::load_for_update(s)
            .await
            .map_err(db_error)?
            .ok_or_else(|| error(ErrorCode::Forbidden, "only owners may change settings"))?;
        let next =
            settings::apply(&current, &input).map_err(|e| error(ErrorCode::BadUserInput, e.0))?;
        settings::store(s, cache, &next)
            .await
            .map_err(db_error)?
            .ok_or_else(|| error(ErrorCode::Forbidden, "only owners may change settings"))
    }
}
