//! Tenants: which tenant a request runs in, membership and roles, settings, bring-your-own API
//! keys ([`keys`]), and their GraphQL surface (`viewer`, `myTenants`, tenant management
//! mutations, `setApiKey`/`clearApiKey`).
//!
//! Resolution order (multi-tenant mode): the `x-tenant-id` header; the path `/t/{slug}/graphql`;
//! the user's default tenant; the default tenant. Whatever is chosen, the database has the last
//! word: the tenant session reads the user's role, and a non-member gets FORBIDDEN.

mod graphql;
pub mod keys;
pub mod settings;

use uuid::Uuid;

use crate::auth::Caller;
use crate::db::{Database, DbError};
use crate::features::Features;
use crate::ids::{TenantId, DEFAULT_TENANT};

pub use graphql::{TenantMutation, TenantQuery};
pub use keys::{tenant_api_key, KeyMutation};

/// A validated tenant slug: 3 to 63 lowercase letters, digits and dashes, starting and ending
/// with a letter or digit (the same rule as the database's CHECK constraint).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Slug(String);

impl Slug {
    /// Validates `text` as a slug.
    pub fn parse(text: &str) -> Result<Slug, String> {
        let ok_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-';
        let edge_ok = |c: Option<char>| c.is_some_and(|c| c != '-');
        if !(3..=63).contains(&text.len()) {
            return Err("a slug has 3 to 63 characters".into());
        }
        if !text.chars().all(ok_char)
            || !edge_ok(text.chars().next())
            || !edge_ok(text.chars().last())
        {
            return Err(
                "a slug has lowercase letters, digits and dashes, and starts and ends with a letter or digit"
                    .into(),
            );
        }
        Ok(Slug(text.to_owned()))
    }

    /// The slug's text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Why no tenant could be chosen for a request.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// `x-tenant-id` is not a UUID.
    #[error("x-tenant-id must be a tenant id (UUID)")]
    BadHeader,
    /// No tenant of that slug that the user is a member of (whether it exists is not told).
    #[error("not a member of this tenant")]
    NotMember,
    /// The database could not be asked.
    #[error(transparent)]
    Db(#[from] DbError),
}

/// The tenant of a request, and how it was chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Resolved {
    /// The tenant.
    pub tenant: TenantId,
    /// Named by the request (header or path). A non-member is then refused outright; a
    /// fallback tenant instead lets a user without tenants list and create them.
    pub explicit: bool,
}

/// Chooses the tenant of a request.
pub async fn resolve(
    db: &Database,
    features: &Features,
    caller: &Caller,
    tenant_header: Option<&str>,
    path_slug: Option<&str>,
) -> Result<Resolved, ResolveError> {
    let explicit = |tenant| Resolved {
        tenant,
        explicit: true,
    };
    if !features.multi_tenant {
        return Ok(explicit(DEFAULT_TENANT));
    }
    if let Some(header) = tenant_header {
        return Uuid::parse_str(header.trim())
            .map(|id| explicit(TenantId(id)))
            .map_err(|_| ResolveError::BadHeader);
    }
    if let Some(slug) = path_slug {
        if Slug::parse(slug).is_err() {
            return Err(ResolveError::NotMember);
        }
        return db
            .tenant_for_slug(caller.user, slug)
            .await?
            .map(explicit)
            .ok_or(ResolveError::NotMember);
    }
    let tenant = db.default_tenant(caller.user).await?;
    Ok(Resolved {
        tenant: tenant.unwrap_or(DEFAULT_TENANT),
        explicit: false,
    })
}

#[cfg(test)]
mod tests {
    use super::Slug;

    #[test]
    fn slugs_are_validated() {
        for good in ["acme", "a-1", "lab-42-x", &"a".repeat(63)] {
            assert!(Slug::parse(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "ab",
            "-ab",
            "ab-",
            "Acme",
            "a_b",
            "a b",
            "ünï",
            &"a".repeat(64),
        ] {
            assert!(Slug::parse(bad).is_err(), "{bad}");
        }
    }
}
