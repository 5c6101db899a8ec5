//! Who is calling. JWT verification and tenant resolution are not implemented yet: every
//! request acts as the fixed local user, owner of the default tenant (development mode).

use crate::ids::{TenantId, UserId, DEFAULT_TENANT, LOCAL_USER};

/// The caller of one request and the tenant it acts in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Identity {
    /// The authenticated user.
    pub user: UserId,
    /// The tenant the request runs in; the database decides whether `user` may.
    pub tenant: TenantId,
}

impl Identity {
    /// The local owner of the default tenant, used by development mode.
    pub fn local_owner() -> Identity {
        Identity {
            user: LOCAL_USER,
            tenant: DEFAULT_TENANT,
        }
    }
}
