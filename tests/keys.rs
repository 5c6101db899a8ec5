//! Bring-your-own API keys, encrypted at rest: SECURITY_TESTS.md cases 15 (the sealed format,
//! tenant binding, rotation and `keys rotate`) and 16 (neither an API key nor the master secret
//! ever reaches a log line or a response).
//!
//! Reads and writes go through the application (GraphQL, or a tenant session as `rg_app`); the
//! superuser connection only copies a ciphertext between tenants and confirms what is stored.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::http::{app, app_with_keys, code, gql, token, AppOptions, Client, SECRET};
use common::TestDb;
use research_graph::crypto::{
    CryptoError, KeyRing, KeyRingError, KeySpec, ScryptCost, SecretString, MIN_SEALED_LEN,
};
use research_graph::ids::{Role, TenantId, UserId};
use research_graph::tenants::keys::ApiKeyError;
use research_graph::tenants::tenant_api_key;
use serde_json::{json, Value};
use uuid::Uuid;

const SET: &str = "mutation($p: ApiKeyProvider!, $k: String!) { setApiKey(provider: $p, key: $k) \
                   { hasApiKey apiKeyProvider apiKeyLast4 } }";
const CLEAR: &str = "mutation { clearApiKey { hasApiKey apiKeyProvider apiKeyLast4 } }";
const READ: &str = "{ tenant { settings { hasApiKey apiKeyProvider apiKeyLast4 } } }";

fn tenant_header(tenant: TenantId) -> Vec<(&'static str, String)> {
    vec![("x-tenant-id", tenant.to_string())]
}

/// A distinctive API key: nothing else in a log or response can contain it by chance.
fn fresh_key(prefix: &str) -> String {
    format!("{prefix}{}", Uuid::new_v4().simple())
}

fn tenant(n: u128) -> TenantId {
    TenantId(Uuid::from_u128(n))
}

/// Runs `query` as `user` in `tenant`; returns the body.
async fn as_user(cli: &Client, user: UserId, tenant: TenantId, query: &str, vars: Value) -> Value {
    let (status, body) = gql(
        cli,
        "/graphql",
        Some(&token(user)),
        &tenant_header(tenant),
        query,
        vars,
    )
    .await;
    assert_eq!(status, 200, "{query}: {body}");
    body
}

/// The stored ciphertext of `tenant`, as the superuser sees it.
async fn stored(t: &TestDb, tenant: TenantId) -> Option<Vec<u8>> {
    t.superuser()
        .await
        .query_one(
            "SELECT api_key_ciphertext FROM app.tenant_settings WHERE tenant_id = $1",
            &[&tenant.0],
        )
        .await
        .unwrap()
        .get(0)
}

/// The tenant's decrypted key, read through a tenant session as `user`.
async fn read_key(
    t: &TestDb,
    tenant: TenantId,
    user: UserId,
    ring: &KeyRing,
) -> Result<Option<(String, String)>, ApiKeyError> {
    let session = t.session(tenant, user).await;
    let key = tenant_api_key(&session, ring)
        .await
        .map(|k| k.map(|(provider, key)| (provider, key.expose().to_owned())));
    session.rollback().await.unwrap();
    key
}

#[test]
fn sealed_values_round_trip_and_name_their_key() {
    let ring = KeyRing::for_tests((7, "the-first-master-secret"), &[]);
    let a = tenant(1);
    let plaintext = b"sk-test-0123456789";
    let sealed = ring.encrypt(a, plaintext).unwrap();
    assert_eq!(sealed[0], 1, "format version");
    assert_eq!(&sealed[1..3], &7u16.to_be_bytes(), "key id, big-endian");
    assert_eq!(sealed.len(), 1 + 2 + 12 + plaintext.len() + 16);
    assert_eq!(KeyRing::key_id(&sealed), Ok(7));
    assert_eq!(ring.decrypt(a, &sealed).unwrap().as_slice(), plaintext);
    assert!(
        !sealed.windows(plaintext.len()).any(|w| w == plaintext),
        "the plaintext is not in the sealed bytes"
    );
    let again = ring.encrypt(a, plaintext).unwrap();
    assert_ne!(
        sealed[3..15],
        again[3..15],
        "a fresh random nonce each time"
    );
    assert_ne!(sealed, again);

    let secret = SecretString::from("sk-string-secret");
    let opened = ring.open(a, &ring.seal(a, &secret).unwrap()).unwrap();
    assert_eq!(opened.expose(), "sk-string-secret");
    assert_eq!(format!("{opened:?} {opened}"), "[redacted] [redacted]");
    let debug = format!("{ring:?}");
    assert!(debug.contains("[redacted]"), "{debug}");
    assert!(!debug.contains("the-first-master-secret"), "{debug}");
    let spec = KeySpec {
        id: 1,
        secret: "the-first-master-secret".into(),
    };
    assert!(!format!("{spec:?}").contains("the-first-master-secret"));
}

#[test]
fn every_altered_byte_and_the_wrong_tenant_fail() {
    let ring = KeyRing::for_tests((1, "the-first-master-secret"), &[]);
    let (a, b) = (tenant(1), tenant(2));
    let sealed = ring.encrypt(a, b"sk-test-0123456789").unwrap();
    for i in 0..sealed.len() {
        let mut altered = sealed.clone();
        altered[i] ^= 0x01;
        let err = ring.decrypt(a, &altered).unwrap_err();
        let expected = match i {
            0 => CryptoError::UnsupportedVersion(0),
            2 => CryptoError::UnknownKeyId(0),
            1 => CryptoError::UnknownKeyId(257),
            _ => CryptoError::Authentication,
        };
        assert_eq!(err, expected, "byte {i}");
    }
    assert_eq!(
        ring.decrypt(b, &sealed).unwrap_err(),
        CryptoError::Authentication,
        "sealed for another tenant"
    );
    let other = KeyRing::for_tests((1, "another-master-secret"), &[]);
    assert_eq!(
        other.decrypt(a, &sealed).unwrap_err(),
        CryptoError::Authentication,
        "same key id, another secret"
    );
}

#[test]
fn malformed_values_are_refused_with_clear_errors() {
    let ring = KeyRing::for_tests((1, "the-first-master-secret"), &[]);
    let a = tenant(1);
    let sealed = ring.encrypt(a, b"sk-test-0123456789").unwrap();
    let mut version_2 = sealed.clone();
    version_2[0] = 2;
    let cases: Vec<(Vec<u8>, CryptoError, &str)> = vec![
        (
            version_2,
            CryptoError::UnsupportedVersion(2),
            "unsupported ciphertext version 2",
        ),
        (Vec::new(), CryptoError::Truncated { len: 0 }, "truncated"),
        (
            sealed[..MIN_SEALED_LEN - 1].to_vec(),
            CryptoError::Truncated {
                len: MIN_SEALED_LEN - 1,
            },
            "truncated: 30 bytes",
        ),
        (
            sealed[..sealed.len() - 1].to_vec(),
            CryptoError::Authentication,
            "failed authentication",
        ),
        (
            [&[1, 0, 9][..], &sealed[3..]].concat(),
            CryptoError::UnknownKeyId(9),
            "key id 9, which is not configured",
        ),
    ];
    for (bytes, expected, message) in cases {
        let err = ring.decrypt(a, &bytes).unwrap_err();
        assert_eq!(err, expected);
        assert!(err.to_string().contains(message), "{err}");
        assert!(!err.to_string().contains("master-secret"), "{err}");
    }
}

#[test]
fn rotation_keeps_old_values_readable_and_writes_under_the_new_id() {
    let a = tenant(1);
    let old = KeyRing::for_tests((1, "the-first-master-secret"), &[]);
    let sealed = old.encrypt(a, b"sk-sealed-long-ago").unwrap();
    let rotating = KeyRing::for_tests(
        (2, "the-second-master-secret"),
        &[(1, "the-first-master-secret")],
    );
    assert_eq!(rotating.current_id(), 2);
    assert_eq!(rotating.key_ids(), vec![1, 2]);
    assert_eq!(
        rotating.decrypt(a, &sealed).unwrap().as_slice(),
        b"sk-sealed-long-ago"
    );
    let fresh = rotating.encrypt(a, b"sk-sealed-now").unwrap();
    assert_eq!(KeyRing::key_id(&fresh), Ok(2));
    let new_only = KeyRing::for_tests((2, "the-second-master-secret"), &[]);
    assert_eq!(
        new_only.decrypt(a, &sealed).unwrap_err(),
        CryptoError::UnknownKeyId(1)
    );
    assert_eq!(
        new_only.decrypt(a, &fresh).unwrap().as_slice(),
        b"sk-sealed-now"
    );
    // The same secret under another id is another key.
    let relabelled = KeyRing::for_tests((1, "the-second-master-secret"), &[]);
    let mut as_one = fresh.clone();
    as_one[1..3].copy_from_slice(&1u16.to_be_bytes());
    assert_eq!(
        relabelled.decrypt(a, &as_one).unwrap_err(),
        CryptoError::Authentication
    );

    let spec = |id: u16, secret: &str| KeySpec {
        id,
        secret: secret.into(),
    };
    let err = KeyRing::derive(
        &spec(1, "the-first-master-secret"),
        &[spec(1, "the-second-master-secret")],
        ScryptCost::Test,
    )
    .unwrap_err();
    assert_eq!(err, KeyRingError::DuplicateKeyId(1));
    let err = KeyRing::derive(&spec(1, "short"), &[], ScryptCost::Test).unwrap_err();
    assert_eq!(err, KeyRingError::WeakSecret { id: 1 });
}

#[tokio::test]
async fn owners_set_and_clear_the_key_and_nobody_reads_it_back() {
    let t = TestDb::new().await;
    let (a, owner) = t.create_tenant("alpha").await;
    let member = t.add_member(a, owner, Role::Member).await;
    let viewer = t.add_member(a, owner, Role::Viewer).await;
    let ring = Arc::new(KeyRing::for_tests((1, "the-first-master-secret"), &[]));
    let cli = app_with_keys(&t.db, AppOptions::multi_tenant(), Some(Arc::clone(&ring)));
    let key = fresh_key("sk-");
    let mut bodies = Vec::new();

    // Read (and cache) the settings first: the write must invalidate the cache.
    let body = as_user(&cli, owner, a, READ, json!({})).await;
    assert_eq!(body["data"]["tenant"]["settings"]["hasApiKey"], false);
    for who in [member, viewer] {
        let body = as_user(&cli, who, a, SET, json!({ "p": "OPENAI", "k": key })).await;
        assert_eq!(code(&body), Some("FORBIDDEN"), "{body}");
        bodies.push(body);
    }
    assert_eq!(stored(&t, a).await, None, "nothing was stored");

    let body = as_user(&cli, owner, a, SET, json!({ "p": "OPENAI", "k": key })).await;
    assert_eq!(
        body["data"]["setApiKey"],
        json!({ "hasApiKey": true, "apiKeyProvider": "openai", "apiKeyLast4": &key[key.len() - 4..] })
    );
    bodies.push(body);
    for who in [owner, member, viewer] {
        let body = as_user(&cli, who, a, READ, json!({})).await;
        assert_eq!(
            body["data"]["tenant"]["settings"],
            json!({ "hasApiKey": true, "apiKeyProvider": "openai", "apiKeyLast4": &key[key.len() - 4..] })
        );
        bodies.push(body);
    }
    let sealed = stored(&t, a).await.expect("a ciphertext is stored");
    assert_eq!(KeyRing::key_id(&sealed), Ok(1));
    assert!(!sealed.windows(key.len()).any(|w| w == key.as_bytes()));
    // Any member's session gets the plaintext for the model provider.
    assert_eq!(
        read_key(&t, a, member, &ring).await.unwrap(),
        Some(("openai".into(), key.clone()))
    );

    for bad in [
        String::new(),
        "short".into(),
        format!("{key} "),
        format!("sk-with space-{key}"),
        format!("{key}\n"),
        format!("{key}é"),
        "k".repeat(513),
    ] {
        let body = as_user(&cli, owner, a, SET, json!({ "p": "GEMINI", "k": bad })).await;
        assert_eq!(code(&body), Some("BAD_USER_INPUT"), "{bad:?}: {body}");
        bodies.push(body);
    }
    let body = as_user(&cli, owner, a, SET, json!({ "p": "ANTHROPIC", "k": key })).await;
    assert_eq!(code(&body), Some("BAD_USER_INPUT"), "{body}");
    bodies.push(body);
    assert_eq!(
        stored(&t, a).await,
        Some(sealed),
        "refused input changes nothing"
    );

    // Replacing the key re-seals it under a fresh nonce.
    let second = fresh_key("AIza");
    let body = as_user(&cli, owner, a, SET, json!({ "p": "GEMINI", "k": second })).await;
    assert_eq!(body["data"]["setApiKey"]["apiKeyProvider"], "gemini");
    bodies.push(body);
    assert_eq!(
        read_key(&t, a, viewer, &ring).await.unwrap(),
        Some(("gemini".into(), second.clone()))
    );

    for who in [member, viewer] {
        let body = as_user(&cli, who, a, CLEAR, json!({})).await;
        assert_eq!(code(&body), Some("FORBIDDEN"), "{body}");
    }
    let body = as_user(&cli, owner, a, CLEAR, json!({})).await;
    assert_eq!(
        body["data"]["clearApiKey"],
        json!({ "hasApiKey": false, "apiKeyProvider": null, "apiKeyLast4": null })
    );
    let body = as_user(&cli, member, a, READ, json!({})).await;
    assert_eq!(body["data"]["tenant"]["settings"]["hasApiKey"], false);
    assert_eq!(stored(&t, a).await, None);
    assert_eq!(read_key(&t, a, owner, &ring).await.unwrap(), None);

    for body in &bodies {
        let text = body.to_string();
        for secret in [
            &key,
            &second,
            &key[3..20].to_owned(),
            &second[4..20].to_owned(),
        ] {
            assert!(!text.contains(secret.as_str()), "{text}");
        }
    }
}

#[tokio::test]
async fn without_an_encryption_key_keys_cannot_be_stored() {
    let t = TestDb::new().await;
    let (a, owner) = t.create_tenant("alpha").await;
    let cli = app(&t.db, AppOptions::multi_tenant());
    let body = as_user(
        &cli,
        owner,
        a,
        SET,
        json!({ "p": "GEMINI", "k": fresh_key("AIza") }),
    )
    .await;
    assert_eq!(code(&body), Some("BAD_USER_INPUT"), "{body}");
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("ENCRYPTION_KEY is not configured"),
        "{body}"
    );
    assert_eq!(stored(&t, a).await, None);
}

/// A ciphertext copied by SQL into another tenant's row fails to decrypt as that tenant: the
/// tenant id is the associated data.
#[tokio::test]
async fn a_ciphertext_copied_to_another_tenant_does_not_decrypt() {
    let t = TestDb::new().await;
    let (a, a_owner) = t.create_tenant("alpha").await;
    let (b, b_owner) = t.create_tenant("beta").await;
    let ring = Arc::new(KeyRing::for_tests((1, "the-first-master-secret"), &[]));
    let cli = app_with_keys(&t.db, AppOptions::multi_tenant(), Some(Arc::clone(&ring)));
    let key = fresh_key("sk-");
    as_user(&cli, a_owner, a, SET, json!({ "p": "OPENAI", "k": key })).await;

    let copied = t
        .superuser()
        .await
        .execute(
            "UPDATE app.tenant_settings b SET api_key_provider = a.api_key_provider, \
             api_key_ciphertext = a.api_key_ciphertext, api_key_last4 = a.api_key_last4 \
             FROM app.tenant_settings a WHERE a.tenant_id = $1 AND b.tenant_id = $2",
            &[&a.0, &b.0],
        )
        .await
        .unwrap();
    assert_eq!(copied, 1);
    assert_eq!(stored(&t, a).await, stored(&t, b).await);

    let err = read_key(&t, b, b_owner, &ring).await.unwrap_err();
    assert!(
        matches!(err, ApiKeyError::Crypto(CryptoError::Authentication)),
        "{err:?}"
    );
    assert!(!err.to_string().contains(&key), "{err}");
    assert_eq!(
        read_key(&t, a, a_owner, &ring).await.unwrap(),
        Some(("openai".into(), key))
    );
}

/// Runs the binary with `args` and `env` (and no other configuration from the environment);
/// returns (success, stdout, stderr).
fn run(args: &[&str], env: &[(&str, String)]) -> (bool, String, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_research-graph"));
    command.args(args);
    for var in [
        "DATABASE_URL",
        "ADMIN_DATABASE_URL",
        "ENCRYPTION_KEY",
        "ENCRYPTION_KEY_ID",
        "ENCRYPTION_PREVIOUS_KEYS",
        "ENABLE_MULTI_TENANT",
        "JWT_SECRET",
        "JWT_JWKS_URL",
        "RG_DEV",
        "RG_PRODUCTION",
    ] {
        command.env_remove(var);
    }
    for (k, v) in env {
        command.env(k, v);
    }
    let output = command.stdin(Stdio::null()).output().unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Derives a ring at the OWASP cost, as the binary does.
async fn owasp_ring(current: (u16, &str), previous: &[(u16, &str)]) -> KeyRing {
    let spec = |(id, secret): (u16, &str)| KeySpec {
        id,
        secret: secret.into(),
    };
    let current = spec(current);
    let previous: Vec<KeySpec> = previous.iter().copied().map(spec).collect();
    tokio::task::spawn_blocking(move || {
        KeyRing::derive(&current, &previous, ScryptCost::Owasp).unwrap()
    })
    .await
    .unwrap()
}

async fn force_rls(t: &TestDb) -> bool {
    t.superuser()
        .await
        .query_one(
            "SELECT relforcerowsecurity FROM pg_class WHERE oid = 'app.tenant_settings'::regclass",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn keys_rotate_re_encrypts_every_key_under_the_current_id() {
    let old_secret = format!("old-master-{}", Uuid::new_v4().simple());
    let new_secret = format!("new-master-{}", Uuid::new_v4().simple());
    let t = TestDb::new().await;
    let (a, a_owner) = t.create_tenant("alpha").await;
    let (b, b_owner) = t.create_tenant("beta").await;
    let (c, c_owner) = t.create_tenant("gamma").await;
    let (d, _) = t.create_tenant("delta").await;
    let old = Arc::new(owasp_ring((1, &old_secret), &[]).await);
    let rotating = Arc::new(owasp_ring((2, &new_secret), &[(1, &old_secret)]).await);
    let new_only = owasp_ring((2, &new_secret), &[]).await;
    let keys = [fresh_key("sk-a-"), fresh_key("sk-b-"), fresh_key("sk-c-")];

    let before = app_with_keys(&t.db, AppOptions::multi_tenant(), Some(old));
    as_user(
        &before,
        a_owner,
        a,
        SET,
        json!({ "p": "OPENAI", "k": keys[0] }),
    )
    .await;
    as_user(
        &before,
        b_owner,
        b,
        SET,
        json!({ "p": "GEMINI", "k": keys[1] }),
    )
    .await;
    // During the rotation, old values still decrypt and new writes use the new id.
    let during = app_with_keys(
        &t.db,
        AppOptions::multi_tenant(),
        Some(Arc::clone(&rotating)),
    );
    as_user(
        &during,
        c_owner,
        c,
        SET,
        json!({ "p": "OPENAI", "k": keys[2] }),
    )
    .await;
    assert_eq!(KeyRing::key_id(&stored(&t, a).await.unwrap()), Ok(1));
    assert_eq!(KeyRing::key_id(&stored(&t, c).await.unwrap()), Ok(2));
    assert_eq!(
        read_key(&t, a, a_owner, &rotating).await.unwrap(),
        Some(("openai".into(), keys[0].clone()))
    );
    assert!(matches!(
        read_key(&t, a, a_owner, &new_only).await,
        Err(ApiKeyError::Crypto(CryptoError::UnknownKeyId(1)))
    ));

    let admin = common::database_url(&t.admin_config());
    let env = |previous: Option<&str>, current: &str| {
        let mut env = vec![
            ("ADMIN_DATABASE_URL", admin.clone()),
            ("DATABASE_URL", common::database_url(&t.app_config())),
            ("ENCRYPTION_KEY", current.to_owned()),
            ("ENCRYPTION_KEY_ID", "2".to_owned()),
        ];
        if let Some(previous) = previous {
            env.push(("ENCRYPTION_PREVIOUS_KEYS", previous.to_owned()));
        }
        env
    };
    let previous = format!("1:{old_secret}");
    let check_output = |out: &str, err: &str| {
        for secret in keys.iter().chain([&old_secret, &new_secret]) {
            assert!(!out.contains(secret.as_str()) && !err.contains(secret.as_str()));
        }
    };

    // Without the old key, nothing can be rotated and nothing changes.
    let untouched = stored(&t, a).await;
    let (ok, out, err) = run(&["keys", "rotate"], &env(None, &new_secret));
    assert!(!ok, "{out}{err}");
    assert!(
        (err.contains(&format!("tenant {a}")) || err.contains(&format!("tenant {b}")))
            && err.contains("key id 1, which is not configured"),
        "{err}"
    );
    check_output(&out, &err);
    assert_eq!(stored(&t, a).await, untouched);
    assert!(force_rls(&t).await, "row-level security forced again");

    // The rotation proper, as a migration login that is not a superuser (as V1 sets one up):
    // row-level security must not hide any row from it.
    let rotator = format!("rg_rotator_{}", Uuid::new_v4().simple());
    t.superuser()
        .await
        .batch_execute(&format!(
            "CREATE ROLE {rotator} LOGIN NOSUPERUSER NOBYPASSRLS CREATEROLE; \
             GRANT rg_owner, rg_definer TO {rotator}"
        ))
        .await
        .unwrap();
    let mut rotator_config = t.admin_config();
    rotator_config.user(&rotator);
    let mut rotator_env = env(Some(&previous), &new_secret);
    rotator_env[0].1 = common::database_url(&rotator_config);
    let (ok, out, err) = run(&["keys", "rotate"], &rotator_env);
    assert!(ok, "{out}{err}");
    assert_eq!(
        out.trim(),
        "rotated 2 API keys to key id 2 (1 already used it)"
    );
    check_output(&out, &err);
    assert!(force_rls(&t).await, "row-level security forced again");
    for tenant in [a, b, c] {
        assert_eq!(KeyRing::key_id(&stored(&t, tenant).await.unwrap()), Ok(2));
    }
    assert_eq!(stored(&t, d).await, None);
    // Only the new key is needed now.
    for (tenant, owner, provider, key) in [
        (a, a_owner, "openai", &keys[0]),
        (b, b_owner, "gemini", &keys[1]),
        (c, c_owner, "openai", &keys[2]),
    ] {
        assert_eq!(
            read_key(&t, tenant, owner, &new_only).await.unwrap(),
            Some((provider.into(), key.clone()))
        );
    }

    // Idempotent: a second run rotates nothing, with or without the old key.
    let (ok, out, err) = run(&["keys", "rotate"], &env(None, &new_secret));
    assert!(ok, "{out}{err}");
    assert_eq!(
        out.trim(),
        "rotated 0 API keys to key id 2 (3 already used it)"
    );
    // A wrong secret under the current id is noticed, not silently kept.
    let (ok, out, err) = run(
        &["keys", "rotate"],
        &env(None, &format!("wrong-master-{}", Uuid::new_v4().simple())),
    );
    assert!(!ok, "{out}{err}");
    assert!(err.contains("failed authentication"), "{err}");
    check_output(&out, &err);
}

/// Misconfigured encryption stops `serve` at once with one clear line that quotes no secret,
/// before any database is started.
#[test]
fn serve_refuses_missing_or_malformed_encryption_keys() {
    let dir = tempfile::Builder::new()
        .prefix("rg-keys-")
        .tempdir_in("/tmp")
        .unwrap();
    let data_dir = dir.path().display().to_string();
    let secret = format!("s3cr3t-{}", Uuid::new_v4().simple());
    for (env, expected) in [
        (
            vec![("ENABLE_MULTI_TENANT", "true".to_owned())],
            "ENABLE_MULTI_TENANT needs ENCRYPTION_KEY",
        ),
        (
            vec![("ENCRYPTION_PREVIOUS_KEYS", format!("1:{secret}"))],
            "ENCRYPTION_PREVIOUS_KEYS needs ENCRYPTION_KEY",
        ),
        (
            vec![
                ("ENCRYPTION_KEY", format!("current-{secret}")),
                ("ENCRYPTION_PREVIOUS_KEYS", format!("1:{secret},{secret}")),
            ],
            "ENCRYPTION_PREVIOUS_KEYS entry 2 is not `id:secret`",
        ),
        (vec![("ENCRYPTION_KEY", "s3cr3t".to_owned())], "too short"),
        (
            vec![
                ("ENCRYPTION_KEY", format!("current-{secret}")),
                ("ENCRYPTION_PREVIOUS_KEYS", format!("1:{secret}")),
            ],
            "key id 1 is configured twice",
        ),
    ] {
        let mut env = env;
        env.push(("JWT_SECRET", SECRET.to_owned()));
        let (ok, out, err) = run(&["serve", "--data-dir", &data_dir], &env);
        assert!(!ok, "{env:?}: must refuse");
        assert!(err.contains(expected), "{env:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
        assert!(!err.contains("s3cr3t") && !out.contains("s3cr3t"), "{err}");
        assert!(
            !Path::new(&data_dir).join("pg").exists(),
            "no database was started"
        );
    }
}

/// The server binary, its output captured line by line from both streams.
struct Server {
    child: Child,
    lines: Receiver<String>,
    output: Arc<Mutex<Vec<String>>>,
    addr: String,
}

impl Server {
    fn start(env: &[(&str, String)]) -> Server {
        let mut command = Command::new(env!("CARGO_BIN_EXE_research-graph"));
        command.args(["serve", "--port", "0"]);
        for var in [
            "RG_DEV",
            "RG_PRODUCTION",
            "JWT_JWKS_URL",
            "ENCRYPTION_PREVIOUS_KEYS",
        ] {
            command.env_remove(var);
        }
        for (k, v) in env {
            command.env(k, v);
        }
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start research-graph serve");
        let output = Arc::new(Mutex::new(Vec::new()));
        let (tx, lines) = channel();
        let streams: [Box<dyn Read + Send>; 2] = [
            Box::new(child.stdout.take().unwrap()),
            Box::new(child.stderr.take().unwrap()),
        ];
        for stream in streams {
            let (tx, output) = (tx.clone(), Arc::clone(&output));
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    output.lock().unwrap().push(line.clone());
                    let _ = tx.send(line);
                }
            });
        }
        let mut server = Server {
            child,
            lines,
            output,
            addr: String::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(120);
        let line = loop {
            let left = deadline
                .checked_duration_since(Instant::now())
                .expect("the server starts listening");
            let line = server.lines.recv_timeout(left).unwrap_or_else(|_| {
                panic!("the server exited: {:#?}", server.output.lock().unwrap())
            });
            if line.contains("research-graph listening") {
                break line;
            }
        };
        let json: Value = serde_json::from_str(&line).unwrap();
        let address = json["fields"]["address"].as_str().unwrap();
        server.addr = address.trim_start_matches("socket://").to_owned();
        server
    }

    /// Stops the server with SIGTERM and returns everything it printed.
    fn stop(mut self) -> Vec<String> {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
        let status = self.child.wait().unwrap();
        assert!(status.success(), "clean exit");
        // The reader threads end with the streams.
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.lines.recv_timeout(Duration::from_millis(200)).is_ok() {
            assert!(Instant::now() < deadline);
        }
        let output = self.output.lock().unwrap().clone();
        output
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A GraphQL request to the running server; returns (status, body).
async fn post(
    http: &reqwest::Client,
    server: &Server,
    user: UserId,
    tenant: TenantId,
    query: &str,
    vars: Value,
) -> (u16, Value) {
    let response = http
        .post(format!("http://{}/graphql", server.addr))
        .bearer_auth(token(user))
        .header("x-tenant-id", tenant.to_string())
        .json(&json!({ "query": query, "variables": vars }))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

/// SECURITY_TESTS case 16: with debug logging on, setting a key and failing in several ways
/// never prints the API key or the master secret, and no response carries either.
#[tokio::test]
async fn secrets_never_reach_the_logs_or_the_responses() {
    let t = TestDb::new().await;
    let (a, owner) = t.create_tenant("alpha").await;
    let member = t.add_member(a, owner, Role::Member).await;
    let (b, _) = t.create_tenant("beta").await;
    let master = format!("master-{}", Uuid::new_v4().simple());
    let key = fresh_key("sk-proj-");
    let server = Server::start(&[
        ("DATABASE_URL", common::database_url(&t.app_config())),
        (
            "ADMIN_DATABASE_URL",
            common::database_url(&t.admin_config()),
        ),
        ("ENABLE_MULTI_TENANT", "true".into()),
        ("JWT_SECRET", SECRET.into()),
        ("ENCRYPTION_KEY", master.clone()),
        ("ENCRYPTION_KEY_ID", "3".into()),
        ("RUST_LOG", "debug".into()),
        ("LOG_FORMAT", "json".into()),
    ]);
    let http = reqwest::Client::new();
    let mut bodies = Vec::new();
    let mut call = |status: u16, body: Value| bodies.push((status, body));

    let (status, body) = post(
        &http,
        &server,
        owner,
        a,
        SET,
        json!({ "p": "OPENAI", "k": key }),
    )
    .await;
    assert_eq!(body["data"]["setApiKey"]["hasApiKey"], true, "{body}");
    call(status, body);
    for (user, tenant, vars, expected) in [
        (
            owner,
            a,
            json!({ "p": "OPENAI", "k": format!("{key} trailing") }),
            "BAD_USER_INPUT",
        ),
        (
            owner,
            a,
            json!({ "p": "OPENAI", "k": format!("{key}\u{e9}") }),
            "BAD_USER_INPUT",
        ),
        (
            owner,
            a,
            json!({ "p": "NOT_A_PROVIDER", "k": key }),
            "BAD_USER_INPUT",
        ),
        (
            owner,
            a,
            json!({ "p": "OPENAI", "k": [key] }),
            "BAD_USER_INPUT",
        ),
        (member, a, json!({ "p": "OPENAI", "k": key }), "FORBIDDEN"),
        (owner, b, json!({ "p": "OPENAI", "k": key }), "FORBIDDEN"),
    ] {
        let (status, body) = post(&http, &server, user, tenant, SET, vars.clone()).await;
        assert_eq!(code(&body), Some(expected), "{vars}: {body}");
        call(status, body);
    }
    for user in [owner, member] {
        let (status, body) = post(&http, &server, user, a, READ, json!({})).await;
        assert_eq!(body["data"]["tenant"]["settings"]["hasApiKey"], true);
        call(status, body);
    }
    let sealed = stored(&t, a).await.unwrap();
    assert_eq!(KeyRing::key_id(&sealed), Ok(3), "sealed by the server");
    let log = server.stop();

    assert!(
        log.iter().any(|l| l.contains(r#""level":"DEBUG""#)),
        "debug logging was on"
    );
    assert!(log.iter().any(|l| l.contains("API key encryption ready")));
    let needles = [
        key.clone(),
        key[8..24].to_owned(),
        master.clone(),
        master[7..23].to_owned(),
    ];
    for line in &log {
        for needle in &needles {
            assert!(
                !line.contains(needle.as_str()),
                "a secret was logged: {line}"
            );
        }
    }
    for (status, body) in &bodies {
        let text = body.to_string();
        for needle in &needles {
            assert!(!text.contains(needle.as_str()), "{status}: {text}");
        }
    }
}
