//! Typed identifiers, so that a tenant id can never be passed where a user id is expected.

use std::fmt;

use uuid::Uuid;

/// The tenant that exists in every database, for single-tenant deployments.
pub const DEFAULT_TENANT: TenantId = TenantId(Uuid::nil());

/// The fixed local user of development mode, owner of the default tenant.
pub const LOCAL_USER: UserId = UserId(Uuid::from_u128(1));

/// A tenant: the unit of isolation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TenantId(pub Uuid);

/// An authenticated user (a JWT `sub`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UserId(pub Uuid);

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A member's role in a tenant, as the database stores it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, async_graphql::Enum)]
pub enum Role {
    /// Manages settings, keys and membership, and writes content.
    Owner,
    /// Writes content.
    Member,
    /// Reads only.
    Viewer,
}

impl Role {
    /// The spelling used in `tenant_users.role`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Member => "member",
            Role::Viewer => "viewer",
        }
    }

    /// Parses the spelling used in `tenant_users.role`.
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "owner" => Some(Role::Owner),
            "member" => Some(Role::Member),
            "viewer" => Some(Role::Viewer),
            _ => None,
        }
    }
}
