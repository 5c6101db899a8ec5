//! Bearer tokens: one HS256 JWT per tenant, signed once before the run, for the tenant's owner.

use anyhow::{bail, Context, Result};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde::{Deserialize, Serialize};

use crate::ids;

/// The claims of a driver token: the tenant's owner as `sub`, the audience, and an expiry.
/// No `role` claim: PostGraphile would `SET ROLE` to it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The owner of the tenant, [`ids::user`].
    pub sub: String,
    /// The audience the servers expect.
    pub aud: String,
    /// Issued at (seconds since the epoch).
    pub iat: i64,
    /// Expires at (seconds since the epoch).
    pub exp: i64,
}

impl Claims {
    /// The claims for tenant `t`'s owner, issued at `now`, valid for `valid_secs`.
    pub fn for_tenant(t: u64, audience: &str, now: i64, valid_secs: i64) -> Claims {
        Claims {
            sub: ids::user(t).to_string(),
            aud: audience.to_owned(),
            iat: now,
            exp: now + valid_secs,
        }
    }
}

/// Signs tokens with one HS256 secret.
pub struct Signer {
    key: EncodingKey,
    header: Header,
}

impl Signer {
    /// A signer with `secret`, which must not be empty.
    pub fn new(secret: &str) -> Result<Signer> {
        if secret.is_empty() {
            bail!("the JWT secret is empty (--jwt-secret or JWT_SECRET)");
        }
        Ok(Signer {
            key: EncodingKey::from_secret(secret.as_bytes()).context("the JWT secret")?,
            header: Header::new(Algorithm::HS256),
        })
    }

    /// The signed token.
    pub fn sign(&self, claims: &Claims) -> Result<String> {
        encode(&self.header, claims, &self.key).context("sign a token")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{decode, DecodingKey, Validation};

    #[test]
    fn tokens_name_the_owner_and_verify_with_the_secret_and_audience() {
        let claims = Claims::for_tenant(3, "authenticated", 1_700_000_000, 7_200);
        assert_eq!(claims.sub, ids::user(3).to_string());
        assert_eq!(claims.exp - claims.iat, 7_200);
        let token = Signer::new("s3cret-s3cret-s3cret-s3cret-s3cret")
            .unwrap()
            .sign(&claims)
            .unwrap();

        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_audience(&["authenticated"]);
        validation.validate_exp = false;
        let key = DecodingKey::from_secret(b"s3cret-s3cret-s3cret-s3cret-s3cret").unwrap();
        let decoded = decode::<Claims>(&token, &key, &validation).unwrap();
        assert_eq!(decoded.header.alg, Algorithm::HS256);
        assert_eq!(decoded.claims, claims);

        // Any other audience or secret is refused.
        validation.set_audience(&["other"]);
        assert!(decode::<Claims>(&token, &key, &validation).is_err());
        validation.set_audience(&["authenticated"]);
        let wrong = DecodingKey::from_secret(b"another-secret").unwrap();
        assert!(decode::<Claims>(&token, &wrong, &validation).is_err());
    }

    #[test]
    fn an_empty_secret_is_refused() {
        assert!(Signer::new("").is_err());
    }
}
