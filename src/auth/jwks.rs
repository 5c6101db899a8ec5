//! A JSON Web Key Set fetched over HTTP and cached by key id.
//!
//! A token whose `kid` is not cached triggers one refresh, throttled to one per
//! `min_refresh_interval` however many requests arrive (so a flood of forged kids cannot turn
//! into a flood of fetches). A failed fetch keeps the cached set: tokens signed by known keys go
//! on working while the identity provider's endpoint is down.

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey};

/// One usable key: the key and the algorithm it is published for, if the set says.
#[derive(Clone)]
struct CachedKey {
    key: DecodingKey,
    algorithm: Option<Algorithm>,
}

/// The cached key set of one JWKS URL.
pub struct Jwks {
    url: String,
    client: reqwest::Client,
    keys: RwLock<HashMap<String, CachedKey>>,
    /// When the last fetch was attempted (successful or not); guards the throttle.
    last_fetch: tokio::sync::Mutex<Option<Instant>>,
    min_refresh_interval: Duration,
}

/// Why no key could be had for a token.
#[derive(Debug, thiserror::Error)]
pub enum JwksError {
    /// The kid is not in the set, even after a refresh (or the refresh was throttled).
    #[error("unknown signing key")]
    UnknownKey,
    /// The key is published for another algorithm than the token claims.
    #[error("signing key does not match the token's algorithm")]
    AlgorithmMismatch,
}

impl Jwks {
    /// A cache for `url`; nothing is fetched until [`Jwks::refresh`] or the first lookup.
    pub fn new(url: String, min_refresh_interval: Duration) -> Jwks {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .expect("a TLS-capable HTTP client");
        Jwks {
            url,
            client,
            keys: RwLock::new(HashMap::new()),
            last_fetch: tokio::sync::Mutex::new(None),
            min_refresh_interval,
        }
    }

    /// The key for `kid`, usable with `algorithm`.
    pub async fn key(&self, kid: &str, algorithm: Algorithm) -> Result<DecodingKey, JwksError> {
        let cached = self.lookup(kid);
        let found = match cached {
            Some(found) => found,
            None => {
                self.refresh_throttled().await;
                self.lookup(kid).ok_or(JwksError::UnknownKey)?
            }
        };
        match found.algorithm {
            Some(published) if published != algorithm => Err(JwksError::AlgorithmMismatch),
            _ => Ok(found.key),
        }
    }

    /// Fetches the set now (at start-up), regardless of the throttle. Errors are logged: the
    /// server starts anyway and retries on the first unknown kid.
    pub async fn refresh(&self) {
        let mut last = self.last_fetch.lock().await;
        *last = Some(Instant::now());
        self.fetch_and_store().await;
    }

    fn lookup(&self, kid: &str) -> Option<CachedKey> {
        self.keys
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(kid)
            .cloned()
    }

    async fn refresh_throttled(&self) {
        let mut last = self.last_fetch.lock().await;
        if last.is_some_and(|t| t.elapsed() < self.min_refresh_interval) {
            return;
        }
        *last = Some(Instant::now());
        self.fetch_and_store().await;
    }

    async fn fetch_and_store(&self) {
        match self.fetch().await {
            Ok(keys) => {
                tracing::info!(url = %self.url, keys = keys.len(), "fetched JWKS");
                *self.keys.write().unwrap_or_else(|e| e.into_inner()) = keys;
            }
            Err(error) => {
                tracing::warn!(url = %self.url, %error, "cannot fetch JWKS; keeping the cached keys");
            }
        }
    }

    async fn fetch(&self) -> Result<HashMap<String, CachedKey>, String> {
        let response = self
            .client
            .get(&self.url)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if !response.status().is_success() {
            return Err(format!("HTTP {}", response.status()));
        }
        let set: JwkSet = response.json().await.map_err(|e| e.to_string())?;
        let mut keys = HashMap::new();
        for jwk in &set.keys {
            let Some(kid) = jwk.common.key_id.clone() else {
                continue;
            };
            let algorithm = jwk
                .common
                .key_algorithm
                .and_then(|a| Algorithm::try_from(a).ok());
            match DecodingKey::from_jwk(jwk) {
                Ok(key) => {
                    keys.insert(kid, CachedKey { key, algorithm });
                }
                Err(error) => tracing::warn!(%kid, %error, "skipping unusable JWK"),
            }
        }
        Ok(keys)
    }
}
