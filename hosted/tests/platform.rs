//! The hosted part: the platform role reads usage of every tenant and nothing else; invoice
//! lines per tenant with the markup; the operators' endpoint for operator tokens only.

#[path = "../../tests/common/mod.rs"]
mod common;

use std::time::Duration;

use chrono::Utc;
use common::http::{claims, sign_hs256, SECRET};
use common::{cluster, connect, seed_tenant, Seeded, TestDb};
use poem::test::TestClient;
use research_graph::auth::JwtVerifier;
use research_graph::money::Usd;
use research_graph::tenants::settings::ExecutionMode;
use research_graph::usage::meter::{Meter, Outcome, UsageEvent};
use research_graph::usage::pricing::{Cost, Tokens};
use research_graph_hosted::api::{router, OperatorAuth};
use research_graph_hosted::billing::{invoice_lines, write_csv, Month};
use research_graph_hosted::platform::PlatformDb;
use serde_json::json;

fn platform_config(t: &TestDb) -> tokio_postgres::Config {
    cluster().config("rg_platform", &t.name)
}

/// Usage for A (hosted, marked up 20%) and B (bring-your-own key: billed nothing).
async fn usage(t: &TestDb) -> (Seeded, Seeded) {
    let a = seed_tenant(t, "alpha", "10.1/a", "k").await;
    let b = seed_tenant(t, "beta", "10.1/b", "k").await;
    let meter = Meter::start(t.db.clone(), 64);
    for (who, mode, n, base, billed) in [
        (&a, ExecutionMode::Hosted, 3, 10_000, 12_000),
        (&b, ExecutionMode::ByoKey, 2, 50_000, 0),
    ] {
        for i in 0..n {
            meter
                .record(UsageEvent {
                    tenant: who.tenant,
                    user: who.owner,
                    job_id: None,
                    stage: "extract".into(),
                    agent: "extractor".into(),
                    provider: "gemini".into(),
                    model: "gemini-2.5-flash".into(),
                    tokens: Tokens {
                        input: 1_000,
                        cached: 100,
                        output: 200,
                        thinking: 0,
                    },
                    cost: Cost {
                        base: Usd(base),
                        billed: Usd(billed),
                    },
                    execution_mode: mode,
                    latency_ms: 10,
                    outcome: Outcome::Ok,
                    error_kind: None,
                    idempotency_key: format!("bill-{i}"),
                    occurred_at: Utc::now(),
                    reservation: None,
                })
                .await;
        }
    }
    assert_eq!(meter.shutdown(Duration::from_secs(10)).await, 0);
    (a, b)
}

#[tokio::test]
async fn the_platform_role_reads_usage_and_nothing_else() {
    let t = TestDb::new().await;
    let (a, b) = usage(&t).await;
    let platform = connect(platform_config(&t)).await;
    let tenants: i64 = platform
        .query_one(
            "SELECT count(DISTINCT tenant_id) FROM app.usage_daily WHERE tenant_id = ANY($1)",
            &[&vec![a.tenant.0, b.tenant.0]],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(tenants, 2, "usage of every tenant");
    platform
        .query("SELECT id, slug, name FROM app.tenants", &[])
        .await
        .expect("tenant names");
    for sql in [
        "SELECT * FROM app.papers",
        "SELECT * FROM app.nodes",
        "SELECT * FROM app.tenant_settings",
        "SELECT created_at FROM app.tenants",
        "SELECT * FROM app.tenant_users",
        "INSERT INTO app.usage_events (tenant_id, stage, agent, provider, model, execution_mode, idempotency_key) \
         VALUES ('00000000-0000-0000-0000-000000000000', 's', 'a', 'p', 'm', 'hosted', 'x')",
        "DELETE FROM app.usage_events",
    ] {
        let err = platform.query(sql, &[]).await.unwrap_err();
        assert_eq!(err.code().map(|c| c.code()), Some("42501"), "{sql}: {err}");
    }
}

#[tokio::test]
async fn invoice_lines_per_tenant_with_markup() {
    let t = TestDb::new().await;
    let (a, b) = usage(&t).await;
    let db = PlatformDb::new(platform_config(&t)).unwrap();
    let month = Month::parse(&Utc::now().format("%Y-%m").to_string()).unwrap();
    let lines = invoice_lines(&db, month).await.unwrap();
    let line = |s: &Seeded| {
        lines
            .iter()
            .find(|l| l.tenant_id == s.tenant.0)
            .unwrap()
            .clone()
    };
    // A: the seed's event (zero cost) and 3 × $0.01 provider cost, billed with 20%: $0.036.
    assert_eq!(
        (line(&a).events, line(&a).base_cost, line(&a).billed_cost),
        (4, Usd(30_000), Usd(36_000))
    );
    // B: 2 × $0.05 on its own key: recorded, billed nothing.
    assert_eq!(
        (line(&b).events, line(&b).base_cost, line(&b).billed_cost),
        (3, Usd(100_000), Usd(0))
    );
    let mut csv = Vec::new();
    write_csv(month, &lines, &mut csv).unwrap();
    let csv = String::from_utf8(csv).unwrap();
    assert!(
        csv.starts_with("month,tenant_id,slug,name,events,"),
        "{csv}"
    );
    assert!(
        csv.contains(&format!(
            "{},{},alpha,Tenant alpha,4,",
            month.label(),
            a.tenant
        )),
        "{csv}"
    );
    assert!(csv.contains(",0.03,0.036\n"), "{csv}");

    // The command line does the same, for operators.
    let url = format!(
        "host={} port=5432 user=rg_platform dbname={}",
        cluster().socket_dir().display(),
        t.name
    );
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_research-graph-hosted"))
        .args([
            "billing",
            "export",
            "--month",
            &month.label(),
            "--format",
            "json",
        ])
        .env("PLATFORM_DATABASE_URL", &url)
        .env("ENABLE_BILLING", "true")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(json["month"], month.label());
    assert!(json["lines"]
        .as_array()
        .unwrap()
        .iter()
        .any(|l| l["slug"] == "beta" && l["billed_cost"] == "0.00"));
    let refused = std::process::Command::new(env!("CARGO_BIN_EXE_research-graph-hosted"))
        .args(["billing", "export", "--month", &month.label()])
        .env("PLATFORM_DATABASE_URL", &url)
        .env_remove("ENABLE_BILLING")
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("ENABLE_BILLING"));
}

#[tokio::test]
async fn platform_usage_is_for_operators_only() {
    let t = TestDb::new().await;
    let (a, _b) = usage(&t).await;
    let verifier = JwtVerifier::new(common::http::hs256_settings()).unwrap();
    let cli = TestClient::new(router(
        PlatformDb::new(platform_config(&t)).unwrap(),
        OperatorAuth {
            verifier,
            claim: "app_metadata.platform_role".into(),
            value: "operator".into(),
        },
    ));
    let today = Utc::now().date_naive().to_string();
    let query = json!({ "query": "query($d: NaiveDate!) { platformUsage(from: $d, to: $d) { topTenants(limit: 1) { slug billedCost } byDayAndModel { model events } } }", "variables": { "d": today } });

    let resp = cli.post("/graphql").body_json(&query).send().await;
    resp.assert_status(poem::http::StatusCode::UNAUTHORIZED);
    let member = sign_hs256(&claims(a.owner), SECRET.as_bytes());
    let resp = cli
        .post("/graphql")
        .header("authorization", format!("Bearer {member}"))
        .body_json(&query)
        .send()
        .await;
    resp.assert_status(poem::http::StatusCode::FORBIDDEN);

    let mut operator_claims = claims(a.owner);
    operator_claims["app_metadata"] = json!({ "platform_role": "operator" });
    let operator = sign_hs256(&operator_claims, SECRET.as_bytes());
    let resp = cli
        .post("/graphql")
        .header("authorization", format!("Bearer {operator}"))
        .body_json(&query)
        .send()
        .await;
    resp.assert_status_is_ok();
    let body: serde_json::Value = resp.json().await.value().deserialize();
    assert_eq!(
        body["data"]["platformUsage"]["topTenants"],
        json!([{ "slug": "alpha", "billedCost": "0.036" }]),
        "{body}"
    );
    let models = body["data"]["platformUsage"]["byDayAndModel"]
        .as_array()
        .unwrap();
    assert!(models
        .iter()
        .any(|m| m["model"] == "gemini-2.5-flash" && m["events"] == 5));
}
