//! Who is calling.
//!
//! - [`Authenticator::Jwt`]: a bearer token verified by [`jwt::JwtVerifier`] (HS256 secret or
//!   a JWKS), whose `sub` is the user.
//! - [`Authenticator::Dev`]: development mode only; every request is the fixed local user, owner
//!   of the default tenant. Refused at start-up when the production flag is set.
//!
//! Which tenant a request runs in is decided in [`crate::tenants::resolve`]; whether the user
//! may act in it is decided by the database.

pub mod jwks;
pub mod jwt;

use crate::ids::{UserId, LOCAL_USER};

pub use jwt::{JwtSettings, JwtVerifier, TokenError};

/// The authenticated caller of one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Caller {
    /// The user (a JWT `sub`, or the local user in development mode).
    pub user: UserId,
}

/// Why a request is not authenticated. Shown to the client as UNAUTHENTICATED.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// No `Authorization: Bearer` header.
    #[error("missing bearer token")]
    Missing,
    /// The header is not `Bearer <token>`.
    #[error("malformed Authorization header")]
    Malformed,
    /// The token was refused.
    #[error(transparent)]
    Token(#[from] TokenError),
}

/// How requests are authenticated.
pub enum Authenticator {
    /// Development mode: everyone is the local owner of the default tenant.
    Dev,
    /// Bearer tokens.
    Jwt(Box<JwtVerifier>),
}

impl Authenticator {
    /// Authenticates a request from its `Authorization` header value.
    pub async fn authenticate(&self, authorization: Option<&str>) -> Result<Caller, AuthError> {
        match self {
            Authenticator::Dev => Ok(Caller { user: LOCAL_USER }),
            Authenticator::Jwt(verifier) => {
                let header = authorization.ok_or(AuthError::Missing)?;
                let (scheme, token) = header.split_once(' ').ok_or(AuthError::Malformed)?;
                if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
                    return Err(AuthError::Malformed);
                }
                let user = verifier.verify(token.trim()).await?;
                Ok(Caller { user })
            }
        }
    }

    /// True in development mode.
    pub fn is_dev(&self) -> bool {
        matches!(self, Authenticator::Dev)
    }
}
