//! JWT verification: HS256 with a shared secret (Supabase-style), ES256/RS256 through a JWKS.
//!
//! The accepted algorithms come from configuration, never from the token: a token's `alg` must
//! be one of them, HMAC tokens are checked only against the configured secret and asymmetric
//! ones only against JWKS keys (so a public key can never be abused as an HMAC secret). `exp`,
//! `sub` and `aud` are required, `iss` too when configured; `sub` must be a user id (UUID).

use std::collections::HashSet;
use std::time::Duration;

use jsonwebtoken::{decode, decode_header, Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use uuid::Uuid;

use super::jwks::Jwks;
use crate::ids::UserId;

/// How tokens are verified.
#[derive(Clone)]
pub struct JwtSettings {
    /// HS256 secret (at least 32 bytes).
    pub hmac_secret: Option<String>,
    /// JWKS URL for ES256/RS256 keys.
    pub jwks_url: Option<String>,
    /// The algorithms accepted.
    pub algorithms: Vec<Algorithm>,
    /// Accepted audiences (`aud`); Supabase issues `authenticated`.
    pub audiences: Vec<String>,
    /// Required issuer (`iss`), if any.
    pub issuer: Option<String>,
    /// Clock skew allowed on `exp` and `nbf`.
    pub leeway: Duration,
    /// At most one JWKS refresh per this interval on unknown key ids.
    pub jwks_min_refresh_interval: Duration,
}

impl std::fmt::Debug for JwtSettings {
    /// Everything but the secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtSettings")
            .field(
                "hmac_secret",
                &self.hmac_secret.as_ref().map(|_| "[redacted]"),
            )
            .field("jwks_url", &self.jwks_url)
            .field("algorithms", &self.algorithms)
            .field("audiences", &self.audiences)
            .field("issuer", &self.issuer)
            .field("leeway", &self.leeway)
            .finish()
    }
}

/// Why a token was refused. The text is safe to show the client.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The token names an algorithm this server does not accept.
    #[error("token algorithm not accepted")]
    Algorithm,
    /// The signature, a claim or the token's form is wrong.
    #[error("invalid token: {0}")]
    Invalid(String),
    /// No key for the token's `kid`.
    #[error("unknown signing key")]
    UnknownKey,
}

#[derive(Deserialize)]
struct Claims {
    sub: String,
    #[serde(flatten)]
    rest: serde_json::Map<String, serde_json::Value>,
}

/// Verifies bearer tokens.
pub struct JwtVerifier {
    hmac: Option<DecodingKey>,
    jwks: Option<Jwks>,
    settings: JwtSettings,
}

impl JwtVerifier {
    /// Builds a verifier; fails on settings that could not verify anything safely.
    pub fn new(settings: JwtSettings) -> Result<JwtVerifier, String> {
        if settings.algorithms.is_empty() {
            return Err("no JWT algorithm configured".into());
        }
        for alg in &settings.algorithms {
            match alg {
                Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => {
                    let secret = settings
                        .hmac_secret
                        .as_deref()
                        .ok_or(format!("{alg:?} needs JWT_SECRET"))?;
                    if secret.len() < 32 {
                        return Err("JWT_SECRET must be at least 32 bytes".into());
                    }
                }
                // Every other algorithm is asymmetric: its keys come from the JWKS.
                _ => {
                    if settings.jwks_url.is_none() {
                        return Err(format!("{alg:?} needs JWT_JWKS_URL"));
                    }
                }
            }
        }
        if settings.audiences.is_empty() {
            return Err("JWT_AUDIENCE must name at least one audience".into());
        }
        Ok(JwtVerifier {
            hmac: settings
                .hmac_secret
                .as_deref()
                .map(|s| DecodingKey::from_secret(s.as_bytes()))
                .transpose()
                .map_err(|e| format!("unusable JWT_SECRET: {e}"))?,
            jwks: settings
                .jwks_url
                .clone()
                .map(|url| Jwks::new(url, settings.jwks_min_refresh_interval)),
            settings,
        })
    }

    /// Fetches the JWKS, when one is configured.
    pub async fn prime(&self) {
        if let Some(jwks) = &self.jwks {
            jwks.refresh().await;
        }
    }

    /// Verifies `token` and returns its user.
    pub async fn verify(&self, token: &str) -> Result<UserId, TokenError> {
        Ok(self.verify_claims(token).await?.0)
    }

    /// Verifies `token` and returns its user and its other claims (for extensions that
    /// authorise on a claim, such as the hosted part's platform operators).
    pub async fn verify_claims(
        &self,
        token: &str,
    ) -> Result<(UserId, serde_json::Map<String, serde_json::Value>), TokenError> {
        let header = decode_header(token).map_err(|_| TokenError::Invalid("malformed".into()))?;
        let alg = header.alg;
        if !self.settings.algorithms.contains(&alg) {
            return Err(TokenError::Algorithm);
        }
        let key = match alg {
            Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => {
                self.hmac.clone().ok_or(TokenError::Algorithm)?
            }
            _ => {
                let jwks = self.jwks.as_ref().ok_or(TokenError::Algorithm)?;
                let kid = header
                    .kid
                    .as_deref()
                    .ok_or(TokenError::Invalid("no key id".into()))?;
                jwks.key(kid, alg)
                    .await
                    .map_err(|_| TokenError::UnknownKey)?
            }
        };
        let mut validation = Validation::new(alg);
        validation.algorithms = vec![alg];
        validation.leeway = self.settings.leeway.as_secs();
        validation.validate_nbf = true;
        validation.set_audience(&self.settings.audiences);
        let mut required: HashSet<&str> = ["exp", "sub", "aud"].into();
        if let Some(issuer) = &self.settings.issuer {
            validation.set_issuer(&[issuer]);
            required.insert("iss");
        }
        validation.set_required_spec_claims(&required.into_iter().collect::<Vec<_>>());
        let data = decode::<Claims>(token, &key, &validation)
            .map_err(|e| TokenError::Invalid(describe(e.kind())))?;
        let user = Uuid::parse_str(&data.claims.sub)
            .map_err(|_| TokenError::Invalid("sub is not a user id".into()))?;
        Ok((UserId(user), data.claims.rest))
    }
}

/// A short reason for the client, without echoing the token.
fn describe(kind: &jsonwebtoken::errors::ErrorKind) -> String {
    use jsonwebtoken::errors::ErrorKind as K;
    match kind {
        K::ExpiredSignature => "expired",
        K::ImmatureSignature => "not yet valid",
        K::InvalidAudience => "wrong audience",
        K::InvalidIssuer => "wrong issuer",
        K::MissingRequiredClaim(_) => "a required claim is missing",
        K::InvalidSignature => "bad signature",
        K::InvalidAlgorithm | K::InvalidAlgorithmName => "algorithm mismatch",
        _ => "malformed",
    }
    .to_owned()
}
