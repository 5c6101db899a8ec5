//! The HTTP surface: GraphQL through the tenant session, health and readiness, GraphiQL, and
//! clear errors when the database is away or the request is malformed.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::TestDb;
use poem::http::StatusCode;
use poem::test::TestClient;
use research_graph::auth::Authenticator;
use research_graph::db::{Database, PoolSettings};
use research_graph::features::Features;
use research_graph::graphql::{build_schema, sdl, Limits};
use research_graph::http::{router, AppState};
use research_graph::tenants::settings::{SettingsCache, SETTINGS_TTL};
use serde_json::{json, Value};

/// The router in development mode (`dev`: GraphiQL on) over `db`.
fn client(db: Database, dev: bool) -> TestClient<impl poem::Endpoint> {
    TestClient::new(router(Arc::new(AppState {
        db,
        schema: build_schema(dev, &Limits::default()),
        graphiql: dev,
        auth: Authenticator::Dev,
        features: Features::default(),
        join_role: None,
        settings_cache: Arc::new(SettingsCache::new(SETTINGS_TTL, 100)),
        key_ring: None,
        events: None,
    })))
}

/// A pool pointing at a socket directory where no server listens.
fn unreachable_db() -> Database {
    let mut config = tokio_postgres::Config::new();
    config
        .host_path("/nonexistent-research-graph-socket-dir")
        .user("rg_app")
        .dbname("none");
    Database::new(
        config,
        &PoolSettings {
            max_size: 1,
            wait_timeout: Duration::from_secs(1),
            ..PoolSettings::default()
        },
    )
    .unwrap()
}

async fn make_local_owner(t: &TestDb) {
    let su = t.superuser().await;
    su.execute(
        "INSERT INTO app.tenant_users (tenant_id, user_id, role) VALUES ($1, $2, 'owner')",
        &[
            &research_graph::ids::DEFAULT_TENANT.0,
            &research_graph::ids::LOCAL_USER.0,
        ],
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn viewer_runs_in_the_tenant_session() {
    let t = TestDb::new().await;
    make_local_owner(&t).await;
    let cli = client(t.db.clone(), true);
    let resp = cli
        .post("/graphql")
        .body_json(&json!({ "query": "{ viewer { tenant { id slug } user { id } role } }" }))
        .send()
        .await;
    resp.assert_status_is_ok();
    let body: Value = resp.json().await.value().deserialize();
    assert_eq!(
        body,
        json!({ "data": { "viewer": {
            "tenant": { "id": "00000000-0000-0000-0000-000000000000", "slug": "default" },
            "user": { "id": "00000000-0000-0000-0000-000000000001" },
            "role": "OWNER",
        }}})
    );
}

#[tokio::test]
async fn a_non_member_is_forbidden_before_anything_runs() {
    // Without the bootstrap membership, the database reports no role for the local user.
    let t = TestDb::new().await;
    let cli = client(t.db.clone(), true);
    let resp = cli
        .post("/graphql")
        .body_json(&json!({ "query": "{ viewer { role } }" }))
        .send()
        .await;
    resp.assert_status(StatusCode::FORBIDDEN);
    let body: Value = resp.json().await.value().deserialize();
    assert_eq!(body["errors"][0]["extensions"]["code"], "FORBIDDEN");
    assert!(body.get("data").is_none_or(|d| d.is_null()), "{body}");
}

#[tokio::test]
async fn health_and_readiness() {
    let t = TestDb::new().await;
    let cli = client(t.db.clone(), false);
    let resp = cli.get("/healthz").send().await;
    resp.assert_status_is_ok();
    resp.assert_text("ok").await;
    let resp = cli.get("/readyz").send().await;
    resp.assert_status_is_ok();
    resp.assert_text("ready").await;

    let down = client(unreachable_db(), false);
    down.get("/healthz").send().await.assert_status_is_ok();
    down.get("/readyz")
        .send()
        .await
        .assert_status(StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn database_unavailable_is_a_retryable_503() {
    let cli = client(unreachable_db(), false);
    let resp = cli
        .post("/graphql")
        .body_json(&json!({ "query": "{ viewer { role } }" }))
        .send()
        .await;
    resp.assert_status(StatusCode::SERVICE_UNAVAILABLE);
    resp.assert_header("retry-after", "1");
    let body: Value = resp.json().await.value().deserialize();
    let error = &body["errors"][0];
    assert_eq!(error["extensions"]["code"], "UNAVAILABLE");
    assert_eq!(error["extensions"]["retryable"], true);
    let text = body.to_string();
    assert!(
        !text.contains("nonexistent"),
        "no connection details leak: {text}"
    );
}

#[tokio::test]
async fn malformed_requests_are_client_errors() {
    let t = TestDb::new().await;
    make_local_owner(&t).await;
    let cli = client(t.db.clone(), false);
    let resp = cli
        .post("/graphql")
        .content_type("application/json")
        .body("{not json")
        .send()
        .await;
    resp.assert_status(StatusCode::BAD_REQUEST);
    let resp = cli
        .post("/graphql")
        .body_json(&json!({ "query": "{ viewer { nope } }" }))
        .send()
        .await;
    let body: Value = resp.json().await.value().deserialize();
    assert!(body["errors"][0]["message"]
        .as_str()
        .unwrap()
        .contains("nope"));
}

#[tokio::test]
async fn graphiql_only_in_development() {
    let t = TestDb::new().await;
    let dev = client(t.db.clone(), true);
    let resp = dev.get("/graphql").send().await;
    resp.assert_status_is_ok();
    assert!(resp
        .0
        .into_body()
        .into_string()
        .await
        .unwrap()
        .contains("graphiql"));
    let prod = client(t.db.clone(), false);
    prod.get("/graphql")
        .send()
        .await
        .assert_status(StatusCode::METHOD_NOT_ALLOWED);
}

#[test]
fn schema_graphql_matches_the_served_schema() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/schema.graphql");
    let served = sdl();
    if std::env::var_os("UPDATE_SCHEMA").is_some() {
        std::fs::write(path, &served).unwrap();
    }
    let checked_in = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        checked_in == served,
        "schema.graphql is out of date; run `UPDATE_SCHEMA=1 cargo test --test http_api` \
         and commit it.\n--- served ---\n{served}"
    );
}
