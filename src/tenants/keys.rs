//! Bring-your-own API keys: owners store one model provider key per tenant, encrypted at rest
//! with the server's [`KeyRing`] (the tenant id as associated data, see [`crate::crypto`]).
//!
//! The API never returns a key: `TenantSettings` shows only `hasApiKey`, `apiKeyProvider` and
//! `apiKeyLast4`. Row-level security decides who may change it (owners: the policies on
//! `tenant_settings`); a member's or viewer's UPDATE touches no row and is answered FORBIDDEN.
//! Code that calls the provider gets the plaintext with [`tenant_api_key`], as a
//! [`SecretString`] that does not print.

use std::sync::Arc;

use async_graphql::{Context, Enum, Object, Result};
use std::sync::LazyLock;

use super::settings::{self, SettingsCache, TenantSettings};
use crate::crypto::{CryptoError, KeyRing, SecretString};
use crate::db::{DbError, TenantSession};
use crate::graphql::{db_error, error, session, ErrorCode, MemberGuard};

/// The shortest API key accepted.
pub const MIN_KEY_LEN: usize = 8;

/// The longest API key accepted.
pub const MAX_KEY_LEN: usize = 512;

/// Whose API a stored key is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Enum)]
pub enum ApiKeyProvider {
    /// Google's Gemini API.
    Gemini,
    /// OpenAI or any OpenAI-compatible API.
    #[graphql(name = "OPENAI")]
    OpenAi,
}

impl ApiKeyProvider {
    /// The stored spelling (`gemini`, `openai`), which `apiKeyProvider` shows.
    pub fn as_str(self) -> &'static str {
        match self {
            ApiKeyProvider::Gemini => "gemini",
            ApiKeyProvider::OpenAi => "openai",
        }
    }

    /// The provider of a stored spelling.
    pub fn parse(text: &str) -> Option<ApiKeyProvider> {
        match text {
            "gemini" => Some(ApiKeyProvider::Gemini),
            "openai" => Some(ApiKeyProvider::OpenAi),
            _ => None,
        }
    }
}

/// Checks the shape of an API key: [`MIN_KEY_LEN`] to [`MAX_KEY_LEN`] printable ASCII
/// characters (it travels in an HTTP header), no whitespace. The message never quotes the key.
pub fn validate_api_key(key: &str) -> Result<(), &'static str> {
    if key.chars().any(char::is_whitespace) {
        return Err("an API key has no spaces or other whitespace");
    }
    if !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("an API key has printable ASCII characters only");
    }
    if !(MIN_KEY_LEN..=MAX_KEY_LEN).contains(&key.len()) {
        return Err("an API key has 8 to 512 characters");
    }
    Ok(())
}

/// Why a tenant's API key could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ApiKeyError {
    /// The database could not be asked.
    #[error(transparent)]
    Db(#[from] DbError),
    /// The stored key does not open with the configured keys (or belongs to another tenant).
    #[error("the tenant's stored API key cannot be decrypted: {0}")]
    Crypto(#[from] CryptoError),
    /// A provider this build does not know.
    #[error("the tenant's stored API key has an unknown provider")]
    UnknownProvider,
}

/// The session's tenant's API key, decrypted: its provider's stored spelling (`gemini`,
/// `openai`) and the key. `None` when the tenant has none (or the session sees no settings).
/// Any member's session may read it; only owners may change it.
pub async fn tenant_api_key(
    session: &TenantSession,
    ring: &KeyRing,
) -> Result<Option<(String, SecretString)>, ApiKeyError> {
    let Some(row) = session
        .query_opt(
            "SELECT api_key_provider, api_key_ciphertext FROM app.tenant_settings \
             WHERE api_key_ciphertext IS NOT NULL",
            &[],
        )
        .await?
    else {
        return Ok(None);
    };
    let provider: String = row.get(0);
    if ApiKeyProvider::parse(&provider).is_none() {
        return Err(ApiKeyError::UnknownProvider);
    }
    let key = ring.open(session.tenant(), row.get::<_, &[u8]>(1))?;
    Ok(Some((provider, key)))
}

/// Sets or clears the stored key, returning the settings row (`None`: RLS let nothing be
/// updated, the caller is not an owner).
async fn store(
    s: &TenantSession,
    cache: &SettingsCache,
    provider: Option<&str>,
    ciphertext: Option<&[u8]>,
    last4: Option<&str>,
) -> Result<Option<TenantSettings>, DbError> {
    static UPDATE: LazyLock<String> = LazyLock::new(|| {
        format!(
            "WITH updated AS (
                 UPDATE app.tenant_settings SET
                     api_key_provider = $1, api_key_ciphertext = $2, api_key_last4 = $3,
                     updated_at = now(), updated_by = app.user_id()
                 RETURNING *)
             {}",
            settings::SELECT.replace("FROM app.tenant_settings", "FROM updated")
        )
    });
    let row = s
        .query_opt(&UPDATE, &[&provider, &ciphertext, &last4])
        .await?;
    cache.invalidate(s.tenant(), &());
    Ok(row.as_ref().map(settings::from_row))
}

fn owners_only() -> async_graphql::Error {
    error(ErrorCode::Forbidden, "only owners may change the API key")
}

/// Mutations of the tenant's API key.
#[derive(Default)]
pub struct KeyMutation;

#[Object]
impl KeyMutation {
    /// Stores the tenant's API key for `provider`, encrypted, replacing any previous one
    /// (owners only). The key is never returned: only `hasApiKey`, `apiKeyProvider` and
    /// `apiKeyLast4`.
    #[graphql(guard = "MemberGuard")]
    async fn set_api_key(
        &self,
        ctx: &Context<'_>,
        provider: ApiKeyProvider,
        key: String,
    ) -> Result<TenantSettings> {
        let key = SecretString::new(key);
        let s = session(ctx)?;
        let cache = ctx.data::<Arc<SettingsCache>>()?;
        let ring = ctx.data_opt::<Arc<KeyRing>>().ok_or_else(|| {
            error(
                ErrorCode::BadUserInput,
                "this server cannot store API keys: ENCRYPTION_KEY is not configured",
            )
        })?;
        validate_api_key(key.expose()).map_err(|m| error(ErrorCode::BadUserInput, m))?;
        let ciphertext = ring.seal(s.tenant(), &key).map_err(|e| {
            tracing::error!(error = %e, "cannot encrypt an API key");
            error(ErrorCode::Internal, "internal error")
        })?;
        let last4 = &key.expose()[key.expose().len() - 4..];
        store(
            s,
            cache,
            Some(provider.as_str()),
            Some(&ciphertext),
            Some(last4),
        )
        .await
        .map_err(db_error)?
        .ok_or_else(owners_only)
    }

    /// Removes the tenant's API key (owners only).
    #[graphql(guard = "MemberGuard")]
    async fn clear_api_key(&self, ctx: &Context<'_>) -> Result<TenantSettings> {
        let s = session(ctx)?;
        let cache = ctx.data::<Arc<SettingsCache>>()?;
        store(s, cache, None, None, None)
            .await
            .map_err(db_error)?
            .ok_or_else(owners_only)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_shapes() {
        for good in [
            "sk-abcdefgh",
            "AIzaSyA-1234567890_abcdefghijklmnopqrs",
            &"k".repeat(512),
        ] {
            assert_eq!(validate_api_key(good), Ok(()), "{good}");
        }
        for bad in [
            "",
            "short",
            "sk-abc defgh",
            "sk-abcdefgh\n",
            "\tsk-abcdefgh",
            "sk-ünïcödé-key",
            "sk-\u{7f}abcdefgh",
            &"k".repeat(513),
        ] {
            let message = validate_api_key(bad).unwrap_err();
            assert!(bad.is_empty() || !message.contains(bad), "{message}");
        }
    }

    #[test]
    fn providers_round_trip() {
        for p in [ApiKeyProvider::Gemini, ApiKeyProvider::OpenAi] {
            assert_eq!(ApiKeyProvider::parse(p.as_str()), Some(p));
        }
        assert_eq!(ApiKeyProvider::parse("GEMINI"), None);
    }
}
