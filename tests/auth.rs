//! Authentication: SECURITY_TESTS.md cases 11 and 12, ES256 through a local JWKS endpoint with
//! key rotation, and a JWKS endpoint that goes down.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use common::http::{app, claims, code, gql, now, sign_hs256, token, AppOptions, SECRET};
use common::{seed_tenant, Seeded, TestDb};
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use poem::listener::{Acceptor, Listener, TcpListener};
use poem::web::{Data, Json};
use poem::{handler, http::StatusCode, EndpointExt, IntoResponse, Response, Route, Server};
use research_graph::auth::{Authenticator, JwtSettings, JwtVerifier};
use research_graph::features::Features;
use serde_json::{json, Value};
use uuid::Uuid;

const EC1: &str = include_str!("fixtures/jwt/ec1.pem");
const EC2: &str = include_str!("fixtures/jwt/ec2.pem");
const RSA: &str = include_str!("fixtures/jwt/rsa.pem");
const RSA_PUBLIC: &str = include_str!("fixtures/jwt/rsa_pub.pem");

/// A mutation that would change tenant A's settings if it ran.
const WRITE: &str = "mutation { updateTenantSettings(input: { confidenceThreshold: 0.11 }) { confidenceThreshold } }";

fn jwk(pem: &str, alg: Algorithm, kid: &str) -> Jwk {
    let key = match alg {
        Algorithm::ES256 => EncodingKey::from_ec_pem(pem.as_bytes()).unwrap(),
        _ => EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap(),
    };
    let mut jwk = Jwk::from_encoding_key(&key, alg).unwrap();
    jwk.common.key_id = Some(kid.into());
    jwk
}

fn sign(pem: &str, alg: Algorithm, kid: &str, claims: &Value) -> String {
    let key = match alg {
        Algorithm::ES256 => EncodingKey::from_ec_pem(pem.as_bytes()).unwrap(),
        _ => EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap(),
    };
    let mut header = Header::new(alg);
    header.kid = Some(kid.into());
    encode(&header, claims, &key).unwrap()
}

/// What the local JWKS endpoint serves, and how often it was asked.
struct JwksState {
    keys: Vec<Jwk>,
    up: bool,
    fetches: usize,
}

#[handler]
fn serve_jwks(state: Data<&Arc<Mutex<JwksState>>>) -> Response {
    let mut state = state.lock().unwrap();
    state.fetches += 1;
    if !state.up {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    Json(JwkSet {
        keys: state.keys.clone(),
    })
    .into_response()
}

/// Starts a JWKS endpoint on loopback; returns its URL and its state.
async fn jwks_server(keys: Vec<Jwk>) -> (String, Arc<Mutex<JwksState>>) {
    let state = Arc::new(Mutex::new(JwksState {
        keys,
        up: true,
        fetches: 0,
    }));
    let acceptor = TcpListener::bind("127.0.0.1:0")
        .into_acceptor()
        .await
        .unwrap();
    let addr = acceptor.local_addr()[0].as_socket_addr().copied().unwrap();
    let route = Route::new()
        .at("/.well-known/jwks.json", serve_jwks)
        .data(Arc::clone(&state));
    tokio::spawn(Server::new_with_acceptor(acceptor).run(route));
    (format!("http://{addr}/.well-known/jwks.json"), state)
}

fn jwks_settings(url: &str, min_refresh: Duration) -> JwtSettings {
    JwtSettings {
        hmac_secret: None,
        jwks_url: Some(url.into()),
        algorithms: vec![Algorithm::ES256, Algorithm::RS256],
        audiences: vec!["authenticated".into()],
        issuer: None,
        leeway: Duration::from_secs(30),
        jwks_min_refresh_interval: min_refresh,
    }
}

async fn jwt_app(t: &TestDb, settings: JwtSettings) -> common::http::Client {
    let verifier = JwtVerifier::new(settings).unwrap();
    verifier.prime().await;
    app(
        &t.db,
        AppOptions {
            auth: Authenticator::Jwt(Box::new(verifier)),
            features: Features {
                multi_tenant: true,
                ..Features::default()
            },
            join_role: None,
        },
    )
}

/// Tenant A's settings as the superuser sees them: unchanged means nothing was written.
async fn threshold(t: &TestDb, a: &Seeded) -> f64 {
    t.superuser()
        .await
        .query_one(
            "SELECT confidence_threshold FROM app.tenant_settings WHERE tenant_id = $1",
            &[&a.tenant.0],
        )
        .await
        .unwrap()
        .get(0)
}

fn b64(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(value.to_string())
}

/// Case 11: every malformed, forged, expired or misaddressed token is UNAUTHENTICATED (401),
/// and nothing runs: the write the requests carry never reaches the database.
#[tokio::test]
async fn bad_tokens_are_unauthenticated_and_touch_nothing() {
    let t = TestDb::new().await;
    let a = seed_tenant(&t, "alpha", "10.1/a", "k").await;
    let (url, _jwks) = jwks_server(vec![
        jwk(EC1, Algorithm::ES256, "ec-1"),
        jwk(RSA, Algorithm::RS256, "rsa-1"),
    ])
    .await;
    let hs = app(&t.db, AppOptions::multi_tenant());
    let es = jwt_app(&t, jwks_settings(&url, Duration::from_secs(60))).await;
    let mut with_issuer = common::http::hs256_settings();
    with_issuer.issuer = Some("https://auth.example/".into());
    let iss = jwt_app(&t, with_issuer).await;
    let tenant = [("x-tenant-id", a.tenant.to_string())];

    let valid = claims(a.owner);
    let with = |f: &dyn Fn(&mut Value)| {
        let mut c = valid.clone();
        f(&mut c);
        c
    };
    let tampered = {
        let good = token(a.owner);
        let parts: Vec<&str> = good.split('.').collect();
        let forged = with(&|c| c["sub"] = json!(Uuid::new_v4().to_string()));
        format!("{}.{}.{}", parts[0], b64(&forged), parts[2])
    };
    let cases: Vec<(&str, &common::http::Client, String)> = vec![
        (
            "alg none",
            &hs,
            format!(
                "{}.{}.",
                b64(&json!({"alg": "none", "typ": "JWT"})),
                b64(&valid)
            ),
        ),
        (
            "HS256 where ES256 is configured",
            &es,
            sign_hs256(&valid, SECRET.as_bytes()),
        ),
        ("RSA public key as HMAC secret", &es, {
            let mut header = Header::new(Algorithm::HS256);
            header.kid = Some("rsa-1".into());
            encode(
                &header,
                &valid,
                &EncodingKey::from_secret(RSA_PUBLIC.as_bytes()).unwrap(),
            )
            .unwrap()
        }),
        (
            "expired past leeway",
            &hs,
            sign_hs256(&with(&|c| c["exp"] = json!(now() - 120)), SECRET.as_bytes()),
        ),
        (
            "not yet valid",
            &hs,
            sign_hs256(&with(&|c| c["nbf"] = json!(now() + 600)), SECRET.as_bytes()),
        ),
        (
            "wrong audience",
            &hs,
            sign_hs256(
                &with(&|c| c["aud"] = json!("someone-else")),
                SECRET.as_bytes(),
            ),
        ),
        (
            "wrong issuer",
            &iss,
            sign_hs256(
                &with(&|c| c["iss"] = json!("https://evil.example/")),
                SECRET.as_bytes(),
            ),
        ),
        ("missing issuer", &iss, token(a.owner)),
        (
            "missing sub",
            &hs,
            sign_hs256(
                &with(&|c| drop(c.as_object_mut().unwrap().remove("sub"))),
                SECRET.as_bytes(),
            ),
        ),
        (
            "sub is not a user id",
            &hs,
            sign_hs256(&with(&|c| c["sub"] = json!("admin")), SECRET.as_bytes()),
        ),
        (
            "unknown kid",
            &es,
            sign(EC2, Algorithm::ES256, "ec-unknown", &valid),
        ),
        (
            "key of another algorithm",
            &es,
            sign(EC1, Algorithm::ES256, "rsa-1", &valid),
        ),
        (
            "wrong secret",
            &hs,
            sign_hs256(&valid, b"another-secret-that-is-long-enough-too"),
        ),
        ("tampered payload", &hs, tampered),
        ("garbage", &hs, "not.a.token".into()),
        ("empty", &hs, String::new()),
    ];
    for (what, cli, bad) in &cases {
        let (status, body) = gql(cli, "/graphql", Some(bad), &tenant, WRITE, json!({})).await;
        assert_eq!(status, 401, "{what}: {body}");
        assert_eq!(code(&body), Some("UNAUTHENTICATED"), "{what}: {body}");
        assert!(
            body.get("data").is_none_or(Value::is_null),
            "{what}: {body}"
        );
    }
    // No header at all, and a header that is not a bearer token.
    let (status, body) = gql(&hs, "/graphql", None, &tenant, WRITE, json!({})).await;
    assert_eq!((status, code(&body)), (401, Some("UNAUTHENTICATED")));
    let response = hs
        .post("/graphql")
        .header("authorization", format!("Basic {}", token(a.owner)))
        .header("x-tenant-id", a.tenant.to_string())
        .body_json(&json!({ "query": WRITE }))
        .send()
        .await;
    response.assert_status(StatusCode::UNAUTHORIZED);
    response.assert_header("www-authenticate", "Bearer");
    assert_eq!(threshold(&t, &a).await, 0.6, "nothing was written");

    // The same requests with good tokens do go through, so the refusals above were the tokens'.
    let near_expiry = sign_hs256(&with(&|c| c["exp"] = json!(now() - 10)), SECRET.as_bytes());
    for (what, cli, good) in [
        ("HS256", &hs, token(a.owner)),
        ("expired within leeway", &hs, near_expiry),
        ("ES256", &es, sign(EC1, Algorithm::ES256, "ec-1", &valid)),
        ("RS256", &es, sign(RSA, Algorithm::RS256, "rsa-1", &valid)),
        (
            "right issuer",
            &iss,
            sign_hs256(
                &with(&|c| c["iss"] = json!("https://auth.example/")),
                SECRET.as_bytes(),
            ),
        ),
    ] {
        let (status, body) = gql(
            cli,
            "/graphql",
            Some(&good),
            &tenant,
            "{ viewer { role } }",
            json!({}),
        )
        .await;
        assert_eq!(
            (status, &body["data"]["viewer"]["role"]),
            (200, &json!("OWNER")),
            "{what}: {body}"
        );
    }
}

/// ES256 tokens verified with keys from a JWKS endpoint; after the provider rotates its key, a
/// token signed with the new key works at once (one refresh on the unknown kid), and the
/// refreshes are throttled.
#[tokio::test]
async fn jwks_rotation_is_picked_up_by_refreshing_on_an_unknown_kid() {
    let t = TestDb::new().await;
    let a = seed_tenant(&t, "alpha", "10.1/a", "k").await;
    let (url, jwks) = jwks_server(vec![jwk(EC1, Algorithm::ES256, "2026-01")]).await;
    let cli = jwt_app(&t, jwks_settings(&url, Duration::ZERO)).await;
    let tenant = [("x-tenant-id", a.tenant.to_string())];
    let query = "{ viewer { user { id } role } }";

    let first = sign(EC1, Algorithm::ES256, "2026-01", &claims(a.owner));
    let (status, body) = gql(&cli, "/graphql", Some(&first), &tenant, query, json!({})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["viewer"]["user"]["id"], a.owner.0.to_string());

    jwks.lock().unwrap().keys = vec![jwk(EC2, Algorithm::ES256, "2026-02")];
    let rotated = sign(EC2, Algorithm::ES256, "2026-02", &claims(a.owner));
    let before = jwks.lock().unwrap().fetches;
    let (status, body) = gql(&cli, "/graphql", Some(&rotated), &tenant, query, json!({})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        jwks.lock().unwrap().fetches,
        before + 1,
        "exactly one refresh"
    );
    // The retired key was removed from the set: its tokens are refused now.
    let (status, _) = gql(&cli, "/graphql", Some(&first), &tenant, query, json!({})).await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn unknown_kids_cannot_flood_the_jwks_endpoint() {
    let t = TestDb::new().await;
    let a = seed_tenant(&t, "alpha", "10.1/a", "k").await;
    let (url, jwks) = jwks_server(vec![jwk(EC1, Algorithm::ES256, "k1")]).await;
    let cli = jwt_app(&t, jwks_settings(&url, Duration::from_secs(3600))).await;
    let tenant = [("x-tenant-id", a.tenant.to_string())];
    let primed = jwks.lock().unwrap().fetches;
    for i in 0..20 {
        let forged = sign(
            EC2,
            Algorithm::ES256,
            &format!("forged-{i}"),
            &claims(a.owner),
        );
        let (status, _) = gql(
            &cli,
            "/graphql",
            Some(&forged),
            &tenant,
            "{ viewer { role } }",
            json!({}),
        )
        .await;
        assert_eq!(status, 401);
    }
    assert_eq!(
        jwks.lock().unwrap().fetches,
        primed,
        "the refresh after start-up is throttled"
    );
}

/// The identity provider's JWKS endpoint is down: tokens signed by cached keys keep working.
#[tokio::test]
async fn a_jwks_outage_keeps_the_cached_keys() {
    let t = TestDb::new().await;
    let a = seed_tenant(&t, "alpha", "10.1/a", "k").await;
    let (url, jwks) = jwks_server(vec![jwk(EC1, Algorithm::ES256, "k1")]).await;
    let cli = jwt_app(&t, jwks_settings(&url, Duration::ZERO)).await;
    let tenant = [("x-tenant-id", a.tenant.to_string())];
    jwks.lock().unwrap().up = false;
    // An unknown kid makes it try (and fail) to refresh…
    let unknown = sign(EC2, Algorithm::ES256, "k2", &claims(a.owner));
    let (status, _) = gql(
        &cli,
        "/graphql",
        Some(&unknown),
        &tenant,
        "{ viewer { role } }",
        json!({}),
    )
    .await;
    assert_eq!(status, 401);
    assert!(jwks.lock().unwrap().fetches >= 2, "a refresh was attempted");
    // …and the known key still verifies.
    let known = sign(EC1, Algorithm::ES256, "k1", &claims(a.owner));
    let (status, body) = gql(
        &cli,
        "/graphql",
        Some(&known),
        &tenant,
        "{ viewer { role } }",
        json!({}),
    )
    .await;
    assert_eq!(
        (status, &body["data"]["viewer"]["role"]),
        (200, &json!("OWNER")),
        "{body}"
    );
}

/// Case 12: a valid token for tenant A used with tenant B (header or path): FORBIDDEN, no data,
/// nothing written.
#[tokio::test]
async fn a_valid_token_for_another_tenant_is_forbidden() {
    let t = TestDb::new().await;
    let a = seed_tenant(&t, "alpha", "10.1/a", "k").await;
    let b = seed_tenant(&t, "beta", "10.1/b", "k").await;
    let cli = app(&t.db, AppOptions::multi_tenant());
    let a_token = token(a.owner);
    let read = "{ tenant { name settings { confidenceThreshold } members { user { id } } } }";
    let write_b = "mutation { updateTenantSettings(input: { confidenceThreshold: 0.11 }) { confidenceThreshold } }";

    for (path, headers) in [
        ("/graphql", vec![("x-tenant-id", b.tenant.to_string())]),
        ("/t/beta/graphql", vec![]),
        ("/t/no-such-tenant/graphql", vec![]),
    ] {
        for query in [read, write_b] {
            let (status, body) = gql(&cli, path, Some(&a_token), &headers, query, json!({})).await;
            assert_eq!(status, 403, "{path}: {body}");
            assert_eq!(code(&body), Some("FORBIDDEN"), "{path}: {body}");
            assert!(
                body.get("data").is_none_or(Value::is_null),
                "{path}: {body}"
            );
            let text = body.to_string();
            assert!(!text.contains("Tenant beta") && !text.contains(&b.owner.to_string()));
        }
    }
    assert_eq!(threshold(&t, &b).await, 0.6, "B's settings unchanged");

    // The header wins over the path; an invalid header is a client error.
    let (status, _) = gql(
        &cli,
        "/t/alpha/graphql",
        Some(&a_token),
        &[("x-tenant-id", b.tenant.to_string())],
        read,
        json!({}),
    )
    .await;
    assert_eq!(status, 403);
    let (status, body) = gql(
        &cli,
        "/graphql",
        Some(&a_token),
        &[("x-tenant-id", "not-a-uuid".into())],
        read,
        json!({}),
    )
    .await;
    assert_eq!((status, code(&body)), (400, Some("BAD_USER_INPUT")));

    // The same user in its own tenant, by header and by path, is served.
    for (path, headers) in [
        ("/graphql", vec![("x-tenant-id", a.tenant.to_string())]),
        ("/t/alpha/graphql", vec![]),
    ] {
        let (status, body) = gql(
            &cli,
            path,
            Some(&a_token),
            &headers,
            "{ tenant { name } }",
            json!({}),
        )
        .await;
        assert_eq!(
            (status, &body["data"]["tenant"]["name"]),
            (200, &json!("Tenant alpha")),
            "{path}"
        );
    }
}
