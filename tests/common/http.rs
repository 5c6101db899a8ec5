//! HTTP helpers: the app's router over a test database, and tokens.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use poem::test::{TestClient, TestResponse};
use research_graph::auth::{Authenticator, JwtSettings, JwtVerifier};
use research_graph::crypto::KeyRing;
use research_graph::db::Database;
use research_graph::features::Features;
use research_graph::graphql::{build_schema, Limits};
use research_graph::http::{router, AppState};
use research_graph::ids::{Role, UserId};
use research_graph::tenants::settings::{SettingsCache, SETTINGS_TTL};
use serde_json::{json, Value};

/// The shared HS256 secret of the tests.
pub const SECRET: &str = "a-test-secret-that-is-long-enough-for-hs256";

/// A client of the whole router.
pub type Client = TestClient<poem::endpoint::BoxEndpoint<'static, poem::Response>>;

/// Options of a test app.
pub struct AppOptions {
    pub auth: Authenticator,
    pub features: Features,
    pub join_role: Option<Role>,
}

impl AppOptions {
    /// Multi-tenant, HS256 tokens with [`SECRET`], audience `authenticated`.
    pub fn multi_tenant() -> AppOptions {
        AppOptions {
            auth: Authenticator::Jwt(Box::new(JwtVerifier::new(hs256_settings()).unwrap())),
            features: Features {
                multi_tenant: true,
                ..Features::default()
            },
            join_role: None,
        }
    }
}

/// HS256 verification settings with [`SECRET`].
pub fn hs256_settings() -> JwtSettings {
    JwtSettings {
        hmac_secret: Some(SECRET.into()),
        jwks_url: None,
        algorithms: vec![Algorithm::HS256],
        audiences: vec!["authenticated".into()],
        issuer: None,
        leeway: Duration::from_secs(30),
        jwks_min_refresh_interval: Duration::from_secs(30),
    }
}

/// The router over `db`, without a key ring (API keys cannot be stored).
pub fn app(db: &Database, options: AppOptions) -> Client {
    app_with_keys(db, options, None)
}

/// The router over `db` with `key_ring` for API keys.
pub fn app_with_keys(db: &Database, options: AppOptions, key_ring: Option<Arc<KeyRing>>) -> Client {
    let endpoint = router(Arc::new(AppState {
        db: db.clone(),
        schema: build_schema(true, &Limits::default()),
        graphiql: false,
        auth: options.auth,
        features: options.features,
        join_role: options.join_role,
        settings_cache: Arc::new(SettingsCache::new(SETTINGS_TTL, 100)),
        key_ring,
        events: None,
    }));
    TestClient::new(poem::EndpointExt::boxed(
        poem::EndpointExt::map_to_response(endpoint),
    ))
}

/// Serves the router over `db` on a real socket (127.0.0.1, a free port) until the test's
/// runtime ends; returns the base URL (`http://127.0.0.1:PORT`).
pub async fn serve(db: &Database, options: AppOptions) -> String {
    use poem::listener::{Acceptor, Listener, TcpListener};
    let endpoint = router(Arc::new(AppState {
        db: db.clone(),
        schema: build_schema(true, &Limits::default()),
        graphiql: false,
        auth: options.auth,
        features: options.features,
        join_role: options.join_role,
        settings_cache: Arc::new(SettingsCache::new(SETTINGS_TTL, 100)),
        key_ring: None,
        events: None,
    }));
    let acceptor = TcpListener::bind("127.0.0.1:0")
        .into_acceptor()
        .await
        .expect("bind a local port");
    let addr = acceptor.local_addr()[0]
        .as_socket_addr()
        .copied()
        .expect("a TCP address");
    tokio::spawn(poem::Server::new_with_acceptor(acceptor).run(endpoint));
    format!("http://{addr}")
}

/// Seconds since the epoch.
pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Supabase-shaped claims for `user`, valid for an hour.
pub fn claims(user: UserId) -> Value {
    json!({
        "sub": user.0.to_string(),
        "aud": "authenticated",
        "role": "authenticated",
        "iat": now(),
        "exp": now() + 3600,
    })
}

/// An HS256 token with [`SECRET`].
pub fn token(user: UserId) -> String {
    sign_hs256(&claims(user), SECRET.as_bytes())
}

/// Signs `claims` with HS256 and `secret`.
pub fn sign_hs256(claims: &Value, secret: &[u8]) -> String {
    encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret).unwrap(),
    )
    .unwrap()
}

/// A GraphQL request as `token` (if any) with extra headers; returns (status, body).
pub async fn gql(
    cli: &Client,
    path: &str,
    token: Option<&str>,
    headers: &[(&str, String)],
    query: &str,
    variables: Value,
) -> (u16, Value) {
    let mut request = cli
        .post(path)
        .body_json(&json!({ "query": query, "variables": variables }));
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    for (name, value) in headers {
        request = request.header(*name, value.clone());
    }
    let response: TestResponse = request.send().await;
    let status = response.0.status().as_u16();
    let body: Value = response.json().await.value().deserialize();
    (status, body)
}

/// The `extensions.code` of the first error, if any.
pub fn code(body: &Value) -> Option<&str> {
    body["errors"][0]["extensions"]["code"].as_str()
}
