//! Secrets at rest: tenants' bring-your-own API keys, sealed with AES-256-GCM-SIV.
//!
//! A [`KeyRing`] holds the current master key and older ones by id. Each master key is derived
//! once, at start-up, from a secret string (`ENCRYPTION_KEY`, and the `id:secret` pairs of
//! `ENCRYPTION_PREVIOUS_KEYS`) with scrypt at the OWASP cost (`log_n = 17, r = 8, p = 1`: about
//! 128 MiB and a noticeable fraction of a second, so it runs on a blocking thread).
//!
//! The salt is fixed and documented: [`SALT_PREFIX`] followed by the key id as a big-endian
//! `u16`. Every server must derive the same key from the same secret without storing anything,
//! so the salt cannot be random; it still makes the derivation specific to this application and
//! to one key id (the same secret under two ids gives two unrelated keys). The secret itself is
//! expected to be long and random; scrypt only makes a weak one slower to guess.
//!
//! A sealed value is `version (1 byte, = 1) ‖ key id (u16, big-endian) ‖ nonce (12 bytes) ‖
//! ciphertext and tag`, with the tenant's id (its 16 bytes) as associated data: a value copied
//! into another tenant's row fails authentication. The nonce is random; AES-GCM-SIV keeps a
//! repeated nonce from revealing more than that the same plaintext was sealed twice.
//!
//! Rotation: values are sealed under the current key id; a value under an older id opens as long
//! as that id is configured as a previous key. `research-graph keys rotate` re-seals every stored
//! value under the current id, after which the previous keys can be dropped.
//!
//! No type here prints key material: [`SecretString`], [`KeySpec`] and [`KeyRing`] show
//! `[redacted]` in their `Debug` output, and no error message carries a secret.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use aes_gcm_siv::aead::{Aead, Generate, KeyInit, Payload};
use aes_gcm_siv::{Aes256GcmSiv, Key, Nonce};
use zeroize::Zeroizing;

use crate::ids::TenantId;

/// The format version this build writes and reads.
pub const FORMAT_VERSION: u8 = 1;

/// The scrypt salt is this prefix followed by the key id (`u16`, big-endian).
pub const SALT_PREFIX: &[u8] = b"research-graph/tenant-api-keys/";

/// The shortest master secret accepted, in bytes.
pub const MIN_SECRET_BYTES: usize = 16;

const NONCE_LEN: usize = 12;
const HEADER_LEN: usize = 1 + 2 + NONCE_LEN;
const TAG_LEN: usize = 16;

/// The shortest sealed value: a header and a tag (an empty plaintext).
pub const MIN_SEALED_LEN: usize = HEADER_LEN + TAG_LEN;

/// A string that must not be printed: `Debug` and `Display` show `[redacted]`, and the memory is
/// cleared when it is dropped.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct SecretString(Zeroizing<String>);

impl SecretString {
    /// Wraps `secret`.
    pub fn new(secret: String) -> SecretString {
        SecretString(Zeroizing::new(secret))
    }

    /// The secret itself, for the one place that needs it (an HTTP header, a cipher).
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether the secret is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl From<String> for SecretString {
    fn from(secret: String) -> SecretString {
        SecretString::new(secret)
    }
}

impl From<&str> for SecretString {
    fn from(secret: &str) -> SecretString {
        SecretString::new(secret.to_owned())
    }
}

impl FromStr for SecretString {
    type Err = std::convert::Infallible;

    fn from_str(secret: &str) -> Result<SecretString, Self::Err> {
        Ok(SecretString::from(secret))
    }
}

/// How expensive the scrypt derivation is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScryptCost {
    /// OWASP's recommendation: `log_n = 17, r = 8, p = 1`. What servers use.
    Owasp,
    /// Cheap parameters (`log_n = 4`) for tests only; never for real keys.
    Test,
}

impl ScryptCost {
    fn params(self) -> Result<scrypt::Params, KeyRingError> {
        let log_n = match self {
            ScryptCost::Owasp => 17,
            ScryptCost::Test => 4,
        };
        scrypt::Params::new(log_n, 8, 1).map_err(|_| KeyRingError::Kdf)
    }
}

/// A master secret and its key id, before derivation.
#[derive(Clone)]
pub struct KeySpec {
    /// The key id written into every value sealed with this key.
    pub id: u16,
    /// The secret the key is derived from.
    pub secret: SecretString,
}

impl fmt::Debug for KeySpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeySpec")
            .field("id", &self.id)
            .field("secret", &self.secret)
            .finish()
    }
}

impl KeySpec {
    /// Parses `ENCRYPTION_PREVIOUS_KEYS`: comma-separated `id:secret` pairs (a secret cannot
    /// contain a comma; spaces around entries are ignored). Errors name the entry by position,
    /// never by content.
    pub fn parse_list(text: &SecretString) -> Result<Vec<KeySpec>, KeyRingError> {
        text.expose()
            .split(',')
            .map(str::trim)
            .filter(|entry| !entry.is_empty())
            .enumerate()
            .map(|(i, entry)| {
                let bad = || KeyRingError::PreviousKeys { entry: i + 1 };
                let (id, secret) = entry.split_once(':').ok_or_else(bad)?;
                Ok(KeySpec {
                    id: id.trim().parse().map_err(|_| bad())?,
                    secret: SecretString::from(secret),
                })
            })
            .collect()
    }
}

/// A derived 256-bit master key, cleared when dropped.
struct MasterKey(Zeroizing<[u8; 32]>);

impl MasterKey {
    fn derive(spec: &KeySpec, params: &scrypt::Params) -> Result<MasterKey, KeyRingError> {
        let mut salt = SALT_PREFIX.to_vec();
        salt.extend_from_slice(&spec.id.to_be_bytes());
        let mut key = Zeroizing::new([0u8; 32]);
        scrypt::scrypt(
            spec.secret.expose().as_bytes(),
            &salt,
            params,
            key.as_mut_slice(),
        )
        .map_err(|_| KeyRingError::Kdf)?;
        Ok(MasterKey(key))
    }

    fn cipher(&self) -> Aes256GcmSiv {
        let key: &Key<Aes256GcmSiv> = (&*self.0).into();
        Aes256GcmSiv::new(key)
    }
}

/// The master keys: the current one (new values are sealed with it) and previous ones (values
/// sealed with them still open), by key id.
pub struct KeyRing {
    current: u16,
    keys: BTreeMap<u16, MasterKey>,
}

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyRing")
            .field("current_id", &self.current)
            .field("key_ids", &self.key_ids())
            .field("keys", &format_args!("[redacted]"))
            .finish()
    }
}

impl KeyRing {
    /// Derives the current key and the previous ones. Slow at [`ScryptCost::Owasp`] (by design):
    /// call it once, on a blocking thread.
    pub fn derive(
        current: &KeySpec,
        previous: &[KeySpec],
        cost: ScryptCost,
    ) -> Result<KeyRing, KeyRingError> {
        let params = cost.params()?;
        let specs: Vec<&KeySpec> = std::iter::once(current).chain(previous).collect();
        // Every check before the first (slow) derivation.
        for (i, spec) in specs.iter().enumerate() {
            if spec.secret.expose().len() < MIN_SECRET_BYTES {
                return Err(KeyRingError::WeakSecret { id: spec.id });
            }
            if specs[..i].iter().any(|earlier| earlier.id == spec.id) {
                return Err(KeyRingError::DuplicateKeyId(spec.id));
            }
        }
        let mut keys = BTreeMap::new();
        for spec in specs {
            keys.insert(spec.id, MasterKey::derive(spec, &params)?);
        }
        Ok(KeyRing {
            current: current.id,
            keys,
        })
    }

    /// A ring derived at [`ScryptCost::Test`] from `(id, secret)` pairs; panics on an invalid
    /// configuration. For tests only.
    pub fn for_tests(current: (u16, &str), previous: &[(u16, &str)]) -> KeyRing {
        let spec = |(id, secret): (u16, &str)| KeySpec {
            id,
            secret: SecretString::from(secret),
        };
        let previous: Vec<KeySpec> = previous.iter().copied().map(spec).collect();
        KeyRing::derive(&spec(current), &previous, ScryptCost::Test).expect("a test key ring")
    }

    /// The id of the key new values are sealed with.
    pub fn current_id(&self) -> u16 {
        self.current
    }

    /// Every configured key id, ascending.
    pub fn key_ids(&self) -> Vec<u16> {
        self.keys.keys().copied().collect()
    }

    /// Seals `plaintext` for `tenant` under the current key.
    pub fn encrypt(&self, tenant: TenantId, plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let key = &self.keys[&self.current];
        let nonce = Nonce::try_generate().map_err(|_| CryptoError::Random)?;
        let sealed = key
            .cipher()
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext,
                    aad: tenant.0.as_bytes(),
                },
            )
            .map_err(|_| CryptoError::TooLong)?;
        let mut out = Vec::with_capacity(HEADER_LEN + sealed.len());
        out.push(FORMAT_VERSION);
        out.extend_from_slice(&self.current.to_be_bytes());
        out.extend_from_slice(nonce.as_slice());
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    /// Opens a value sealed for `tenant`, under whichever configured key it names.
    pub fn decrypt(
        &self,
        tenant: TenantId,
        sealed: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        let id = KeyRing::key_id(sealed)?;
        let key = self.keys.get(&id).ok_or(CryptoError::UnknownKeyId(id))?;
        let nonce = <&Nonce>::try_from(&sealed[3..HEADER_LEN])
            .map_err(|_| CryptoError::Truncated { len: sealed.len() })?;
        key.cipher()
            .decrypt(
                nonce,
                Payload {
                    msg: &sealed[HEADER_LEN..],
                    aad: tenant.0.as_bytes(),
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| CryptoError::Authentication)
    }

    /// Seals a secret string for `tenant` (see [`KeyRing::encrypt`]).
    pub fn seal(&self, tenant: TenantId, secret: &SecretString) -> Result<Vec<u8>, CryptoError> {
        self.encrypt(tenant, secret.expose().as_bytes())
    }

    /// Opens a secret string sealed for `tenant` (see [`KeyRing::decrypt`]).
    pub fn open(&self, tenant: TenantId, sealed: &[u8]) -> Result<SecretString, CryptoError> {
        let mut plaintext = self.decrypt(tenant, sealed)?;
        let bytes = std::mem::take(&mut *plaintext);
        match String::from_utf8(bytes) {
            Ok(text) => Ok(SecretString::new(text)),
            Err(e) => {
                drop(Zeroizing::new(e.into_bytes()));
                Err(CryptoError::NotUtf8)
            }
        }
    }

    /// The key id a sealed value names, after checking its version and length.
    pub fn key_id(sealed: &[u8]) -> Result<u16, CryptoError> {
        let Some(&version) = sealed.first() else {
            return Err(CryptoError::Truncated { len: 0 });
        };
        if version != FORMAT_VERSION {
            return Err(CryptoError::UnsupportedVersion(version));
        }
        if sealed.len() < MIN_SEALED_LEN {
            return Err(CryptoError::Truncated { len: sealed.len() });
        }
        Ok(u16::from_be_bytes([sealed[1], sealed[2]]))
    }
}

/// Why a value could not be sealed or opened. Messages never contain key material.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    /// The first byte is not a format version this build knows.
    #[error("unsupported ciphertext version {0} (this build reads version {FORMAT_VERSION})")]
    UnsupportedVersion(u8),
    /// The value was sealed with a key id that is not configured.
    #[error(
        "ciphertext was sealed with key id {0}, which is not configured \
         (ENCRYPTION_KEY_ID or ENCRYPTION_PREVIOUS_KEYS)"
    )]
    UnknownKeyId(u16),
    /// Shorter than a header and a tag.
    #[error("ciphertext is truncated: {len} bytes, at least {MIN_SEALED_LEN} expected")]
    Truncated {
        /// The length found.
        len: usize,
    },
    /// Wrong key, wrong tenant, or altered bytes.
    #[error("ciphertext failed authentication (wrong key, wrong tenant or altered data)")]
    Authentication,
    /// An authentic value that is not UTF-8 where a string was expected.
    #[error("the decrypted secret is not UTF-8")]
    NotUtf8,
    /// The operating system's random number generator failed.
    #[error("the system random number generator failed")]
    Random,
    /// Larger than AES-GCM-SIV can seal.
    #[error("the plaintext is too long to encrypt")]
    TooLong,
}

/// Why a key ring could not be built. Messages name key ids and positions, never secrets.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum KeyRingError {
    /// A secret shorter than [`MIN_SECRET_BYTES`].
    #[error(
        "the encryption secret of key id {id} is too short (at least {MIN_SECRET_BYTES} bytes)"
    )]
    WeakSecret {
        /// The key id.
        id: u16,
    },
    /// The same key id twice (current and previous, or two previous keys).
    #[error("key id {0} is configured twice (ENCRYPTION_KEY_ID and ENCRYPTION_PREVIOUS_KEYS)")]
    DuplicateKeyId(u16),
    /// An entry of `ENCRYPTION_PREVIOUS_KEYS` is not `id:secret` with a numeric id.
    #[error(
        "ENCRYPTION_PREVIOUS_KEYS entry {entry} is not `id:secret` with an id from 0 to 65535"
    )]
    PreviousKeys {
        /// The entry's position, from 1.
        entry: usize,
    },
    /// scrypt refused its parameters (cannot happen with the fixed costs).
    #[error("invalid scrypt parameters")]
    Kdf,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_strings_do_not_print() {
        let secret = SecretString::from("hunter2-hunter2-hunter2");
        assert_eq!(format!("{secret:?}"), "[redacted]");
        assert_eq!(format!("{secret}"), "[redacted]");
        assert_eq!(secret.expose(), "hunter2-hunter2-hunter2");
    }

    #[test]
    fn previous_keys_parse_and_errors_name_positions_only() {
        let list = KeySpec::parse_list(&" 1:first-secret , 2:second:with-colon ,".into()).unwrap();
        assert_eq!(list.len(), 2);
        assert_eq!((list[0].id, list[0].secret.expose()), (1, "first-secret"));
        assert_eq!(
            (list[1].id, list[1].secret.expose()),
            (2, "second:with-colon")
        );
        for bad in ["1:ok,nocolon-s3cr3t", "1:ok,x:s3cr3t", "1:ok,70000:s3cr3t"] {
            let err = KeySpec::parse_list(&bad.into()).unwrap_err();
            assert_eq!(err, KeyRingError::PreviousKeys { entry: 2 });
            assert!(!err.to_string().contains("s3cr3t"), "{err}");
        }
    }
}
