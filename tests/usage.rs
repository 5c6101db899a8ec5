//! Usage metering: events written in the background (idempotent, rolled up per day), limits at
//! 80% and 100% in soft mode, hard limits that hold under 50 concurrent admissions, the `usage`
//! API and who may see it, and no event lost while the database is down.

mod common;

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use common::http::{app, code, gql, token, AppOptions};
use common::{seed_tenant, Seeded, TestDb};
use research_graph::db::admin::AdminConnection;
use research_graph::db::local::{LocalOptions, LocalPostgres, SUPERUSER};
use research_graph::db::{Database, PoolSettings};
use research_graph::ids::Role;
use research_graph::money::Usd;
use research_graph::tenants::settings::ExecutionMode;
use research_graph::usage::limits::{admit, AdmitError, Estimate, LimitState};
use research_graph::usage::meter::{Meter, Outcome, UsageEvent};
use research_graph::usage::pricing::{Cost, Tokens};
use serde_json::json;

fn event(
    a: &Seeded,
    key: &str,
    stage: &str,
    model: &str,
    tokens: Tokens,
    base: i64,
    billed: i64,
) -> UsageEvent {
    UsageEvent {
        tenant: a.tenant,
        user: a.owner,
        job_id: None,
        stage: stage.into(),
        agent: "extractor".into(),
        provider: "gemini".into(),
        model: model.into(),
        tokens,
        cost: Cost {
            base: Usd(base),
            billed: Usd(billed),
        },
        execution_mode: ExecutionMode::Hosted,
        latency_ms: 120,
        outcome: Outcome::Ok,
        error_kind: None,
        idempotency_key: key.into(),
        occurred_at: Utc::now(),
        reservation: None,
    }
}

async fn count_events(t: &TestDb, a: &Seeded) -> i64 {
    t.superuser()
        .await
        .query_one(
            "SELECT count(*) FROM app.usage_events WHERE tenant_id = $1",
            &[&a.tenant.0],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn events_are_written_once_and_rolled_up() {
    let t = TestDb::new().await;
    let a = seed_tenant(&t, "alpha", "10.1/a", "k").await;
    let before = count_events(&t, &a).await;
    let meter = Meter::start(t.db.clone(), 16);
    let tokens = Tokens {
        input: 1000,
        cached: 200,
        output: 300,
        thinking: 50,
    };
    for i in 0..40 {
        let stage = if i % 2 == 0 { "extract" } else { "reason" };
        meter
            .record(event(
                &a,
                &format!("call-{i}"),
                stage,
                "gemini-2.5-flash",
                tokens,
                1_000,
                1_200,
            ))
            .await;
    }
    // A retried write of the same call is ignored.
    meter
        .record(event(
            &a,
            "call-0",
            "extract",
            "gemini-2.5-flash",
            tokens,
            1_000,
            1_200,
        ))
        .await;
    assert_eq!(meter.shutdown(Duration::from_secs(10)).await, 0);
    let counts = meter.counts();
    assert_eq!(
        (counts.recorded, counts.written, counts.rejected),
        (41, 41, 0)
    );
    assert_eq!(
        count_events(&t, &a).await - before,
        40,
        "idempotency key kept the duplicate out"
    );

    let cli = app(&t.db, AppOptions::multi_tenant());
    let h = [("x-tenant-id", a.tenant.to_string())];
    let today = Utc::now().date_naive().to_string();
    let (_, body) = gql(&cli, "/graphql", Some(&token(a.owner)), &h,
        "query($d: NaiveDate!) { usage { summary { events inputTokens cachedTokens outputTokens thinkingTokens totalTokens baseCost billedCost }
           stats(from: $d, to: $d, groupBy: [STAGE]) { stage model totals { events billedCost } } } }",
        json!({ "d": today })).await;
    let usage = &body["data"]["usage"];
    // The seed's own event (100 input, 20 output) is there too.
    assert_eq!(
        usage["summary"],
        json!({ "events": 41, "inputTokens": 40_100, "cachedTokens": 8_000,
        "outputTokens": 12_020, "thinkingTokens": 2_000, "totalTokens": 54_120, "baseCost": "0.04", "billedCost": "0.048" }),
        "{body}"
    );
    assert_eq!(
        usage["stats"],
        json!([
            { "stage": "extract", "model": null, "totals": { "events": 21, "billedCost": "0.024" } },
            { "stage": "reason", "model": null, "totals": { "events": 20, "billedCost": "0.024" } },
        ])
    );
    let (_, body) = gql(&cli, "/graphql", Some(&token(a.owner)), &h,
        "{ usage { events(first: 5, filter: { stage: \"reason\" }) { totalCount nodes { stage model inputTokens billedCost outcome } } } }",
        json!({})).await;
    assert_eq!(body["data"]["usage"]["events"]["totalCount"], 20);
    assert_eq!(
        body["data"]["usage"]["events"]["nodes"][0],
        json!({ "stage": "reason", "model": "gemini-2.5-flash",
        "inputTokens": 1000, "billedCost": "0.0012", "outcome": "OK" })
    );
}

#[tokio::test]
async fn usage_is_for_owners_unless_members_are_allowed() {
    let t = TestDb::new().await;
    let a = seed_tenant(&t, "alpha", "10.1/a", "k").await;
    let member = t.add_member(a.tenant, a.owner, Role::Member).await;
    let cli = app(&t.db, AppOptions::multi_tenant());
    let h = [("x-tenant-id", a.tenant.to_string())];
    let q = "{ usage { summary { events } } }";
    let (_, body) = gql(&cli, "/graphql", Some(&token(member)), &h, q, json!({})).await;
    assert_eq!(code(&body), Some("FORBIDDEN"));
    let (_, body) = gql(&cli, "/graphql", Some(&token(a.owner)), &h,
        "mutation { updateTenantSettings(input: { usageVisibleToMembers: true }) { usageVisibleToMembers } }", json!({})).await;
    assert_eq!(
        body["data"]["updateTenantSettings"]["usageVisibleToMembers"],
        true
    );
    let (_, body) = gql(&cli, "/graphql", Some(&token(member)), &h, q, json!({})).await;
    assert_eq!(body["data"]["usage"]["summary"]["events"], 1, "{body}");
}

async fn set_limits(t: &TestDb, a: &Seeded, mode: &str, daily_cost: i64) {
    t.superuser()
        .await
        .execute(
            "UPDATE app.tenant_settings SET limit_mode = $2, daily_cost_limit_micros = $3, monthly_token_limit = 1000000000 WHERE tenant_id = $1",
            &[&a.tenant.0, &mode, &daily_cost],
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn soft_limits_report_warning_at_80_and_exceeded_at_100_percent() {
    let t = TestDb::new().await;
    let a = seed_tenant(&t, "alpha", "10.1/a", "k").await;
    set_limits(&t, &a, "soft", 10_000).await;
    let meter = Meter::start(t.db.clone(), 16);
    let mut states = Vec::new();
    for i in 0..12 {
        let admission = admit(
            &t.db,
            a.tenant,
            a.owner,
            Estimate {
                cost: Usd(1_000),
                tokens: 100,
            },
        )
        .await
        .expect("soft mode never blocks");
        assert!(admission.reservation.is_none());
        states.push(admission.state());
        meter
            .record(event(
                &a,
                &format!("soft-{i}"),
                "extract",
                "m",
                Tokens::default(),
                1_000,
                1_000,
            ))
            .await;
        // Let the meter write before the next admission reads the rollup.
        while meter.counts().written < i + 1 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    // Before call n, n × $0.001 of a $0.01 daily limit is used.
    assert_eq!(&states[..8], &[LimitState::Ok; 8]);
    assert_eq!(&states[8..10], &[LimitState::Warning; 2]);
    assert_eq!(&states[10..], &[LimitState::Exceeded; 2], "{states:?}");
    let cli = app(&t.db, AppOptions::multi_tenant());
    let (_, body) = gql(
        &cli,
        "/graphql",
        Some(&token(a.owner)),
        &[("x-tenant-id", a.tenant.to_string())],
        "{ usage { limits { period kind limit used reserved state } } }",
        json!({}),
    )
    .await;
    assert_eq!(
        body["data"]["usage"]["limits"],
        json!([
            { "period": "DAY", "kind": "COST", "limit": 10000, "used": 12000, "reserved": 0, "state": "EXCEEDED" },
            { "period": "MONTH", "kind": "TOKENS", "limit": 1000000000, "used": 120, "reserved": 0, "state": "OK" },
        ])
    );
    meter.shutdown(Duration::from_secs(5)).await;
}

/// 50 calls arrive at once against a hard daily limit that allows 10 of them: exactly 10 are
/// admitted, and the reservations keep the 11th out even before any usage is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hard_limit_holds_under_50_concurrent_calls() {
    let t = TestDb::with_pool_size(8).await;
    let a = seed_tenant(&t, "alpha", "10.1/a", "k").await;
    set_limits(&t, &a, "hard", 10_000).await;
    let calls = (0..50).map(|_| {
        let db = t.db.clone();
        let (tenant, user) = (a.tenant, a.owner);
        tokio::spawn(async move {
            admit(
                &db,
                tenant,
                user,
                Estimate {
                    cost: Usd(1_000),
                    tokens: 10,
                },
            )
            .await
        })
    });
    let mut admitted = Vec::new();
    let mut refused = 0;
    for call in calls {
        match call.await.unwrap() {
            Ok(admission) => admitted.push(admission.reservation.expect("hard mode reserves")),
            Err(AdmitError::Exceeded(_)) => refused += 1,
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!((admitted.len(), refused), (10, 40));
    // The calls report back; their events replace the reservations, and the limit still holds.
    let meter = Meter::start(t.db.clone(), 64);
    for (i, reservation) in admitted.iter().enumerate() {
        let mut e = event(
            &a,
            &format!("hard-{i}"),
            "extract",
            "m",
            Tokens::default(),
            900,
            900,
        );
        e.reservation = Some(*reservation);
        meter.record(e).await;
    }
    meter.shutdown(Duration::from_secs(5)).await;
    let su = t.superuser().await;
    let open: i64 = su
        .query_one("SELECT count(*) FROM app.usage_reservations WHERE tenant_id = $1 AND expires_at > now()", &[&a.tenant.0])
        .await
        .unwrap()
        .get(0);
    assert_eq!(open, 0, "every reservation was settled");
    // 9,000 µ$ used: one more call of at most 1,000 fits, a second does not.
    assert!(admit(
        &t.db,
        a.tenant,
        a.owner,
        Estimate {
            cost: Usd(1_000),
            tokens: 10
        }
    )
    .await
    .is_ok());
    assert!(matches!(
        admit(
            &t.db,
            a.tenant,
            a.owner,
            Estimate {
                cost: Usd(1_000),
                tokens: 10
            }
        )
        .await,
        Err(AdmitError::Exceeded(_))
    ));
}

/// The database goes away for a few seconds while calls keep being metered: the buffer holds
/// the events, the writer retries, and every event lands once the database is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_usage_event_is_lost_while_the_database_is_down() {
    // A cluster of this test's own, to stop and start.
    let dir = tempfile::Builder::new()
        .prefix("rg-outage-")
        .tempdir_in("/tmp")
        .unwrap();
    let options = LocalOptions {
        dir: dir.path().to_path_buf(),
        ephemeral: false,
    };
    let pg = LocalPostgres::start(options.clone()).unwrap();
    let admin = AdminConnection::connect(&pg.config(SUPERUSER, "postgres"))
        .await
        .unwrap();
    admin.ensure_database("rg").await.unwrap();
    admin.close().await;
    let mut admin = AdminConnection::connect(&pg.config(SUPERUSER, "rg"))
        .await
        .unwrap();
    admin.migrate().await.unwrap();
    admin.close().await;
    let db = Database::new(
        pg.config("rg_app", "rg"),
        &PoolSettings {
            max_size: 2,
            wait_timeout: Duration::from_secs(1),
            ..PoolSettings::default()
        },
    )
    .unwrap();
    let owner = research_graph::ids::UserId(uuid::Uuid::new_v4());
    let tenant = db.create_tenant(owner, "Outage", "outage").await.unwrap();
    let a = Seeded {
        tenant,
        owner,
        paper: uuid::Uuid::nil(),
        section: uuid::Uuid::nil(),
        source_node: uuid::Uuid::nil(),
        target_node: uuid::Uuid::nil(),
        edge: uuid::Uuid::nil(),
        mention: uuid::Uuid::nil(),
        insight: uuid::Uuid::nil(),
        job: uuid::Uuid::nil(),
        usage_event: uuid::Uuid::nil(),
    };
    let meter = Arc::new(Meter::start(db.clone(), 1000));
    let producer = {
        let meter = Arc::clone(&meter);
        tokio::spawn(async move {
            for i in 0..300 {
                meter
                    .record(event(
                        &a,
                        &format!("outage-{i}"),
                        "extract",
                        "m",
                        Tokens {
                            input: 10,
                            ..Tokens::default()
                        },
                        1,
                        1,
                    ))
                    .await;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut pg = pg;
    let stopper = tokio::task::spawn_blocking(move || {
        pg.stop();
        std::thread::sleep(Duration::from_secs(3));
        LocalPostgres::start(options).unwrap()
    });
    let pg = stopper.await.unwrap();
    producer.await.unwrap();
    let unwritten = meter.shutdown(Duration::from_secs(30)).await;
    let counts = meter.counts();
    assert_eq!(unwritten, 0, "{counts:?}");
    assert_eq!(
        (counts.recorded, counts.written, counts.rejected),
        (300, 300, 0)
    );
    assert!(counts.retries > 0, "the outage was felt: {counts:?}");
    let su = common::connect(pg.config(SUPERUSER, "rg")).await;
    let stored: i64 = su
        .query_one(
            "SELECT count(*) FROM app.usage_events WHERE tenant_id = $1",
            &[&tenant.0],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(stored, 300, "every event, once");
    drop(su);
    drop(db);
    tokio::task::spawn_blocking(move || drop(pg)).await.unwrap();
}

/// A rough timing of the `usage` API over one million events of one tenant (the figures are in
/// docs/BENCHMARKS.md): `cargo test --test usage -- --ignored --nocapture`.
#[tokio::test]
#[ignore]
async fn timing_on_a_million_events() {
    let t = TestDb::new().await;
    let a = seed_tenant(&t, "alpha", "10.1/a", "k").await;
    let su = t.superuser().await;
    let started = std::time::Instant::now();
    su.execute(
        "INSERT INTO app.usage_events (tenant_id, occurred_at, stage, agent, provider, model, input_tokens,
             cached_tokens, output_tokens, thinking_tokens, base_cost_micros, billed_cost_micros, execution_mode, idempotency_key)
         SELECT $1, now() - (g % 60) * interval '1 day' - (g % 86400) * interval '1 second',
                (ARRAY['extract','resolve','reason'])[1 + g % 3], 'agent', 'gemini',
                (ARRAY['gemini-2.5-flash','gemini-2.5-pro'])[1 + g % 2],
                1000 + g % 500, g % 200, 300, g % 50, 900 + g % 100, 1100 + g % 100, 'hosted', 'bench-' || g
         FROM generate_series(1, 1000000) g",
        &[&a.tenant.0],
    )
    .await
    .unwrap();
    for table in ["app.usage_events", "app.usage_daily"] {
        su.batch_execute(&format!("VACUUM ANALYZE {table}"))
            .await
            .unwrap();
    }
    println!(
        "inserted 1,000,000 events (rolled up by the trigger) in {:?}",
        started.elapsed()
    );
    let cli = app(&t.db, AppOptions::multi_tenant());
    let h = [("x-tenant-id", a.tenant.to_string())];
    let from = (Utc::now() - chrono::Duration::days(30))
        .date_naive()
        .to_string();
    let to = Utc::now().date_naive().to_string();
    for (name, query) in [
        ("summary of the month", "{ usage { summary { events totalTokens billedCost } } }".to_owned()),
        ("stats by day and model, 30 days", format!("{{ usage {{ stats(from: \"{from}\", to: \"{to}\", groupBy: [DAY, MODEL]) {{ day model totals {{ events billedCost }} }} }} }}")),
        ("limits", "{ usage { limits { state } } }".to_owned()),
        ("newest 20 events", "{ usage { events(first: 20) { nodes { occurredAt model billedCost } } } }".to_owned()),
        ("events of one model, 20, with totalCount", "{ usage { events(first: 20, filter: { model: \"gemini-2.5-pro\" }) { totalCount nodes { occurredAt } } } }".to_owned()),
    ] {
        let mut times = Vec::new();
        for _ in 0..5 {
            let started = std::time::Instant::now();
            let (status, body) = gql(&cli, "/graphql", Some(&token(a.owner)), &h, &query, json!({})).await;
            times.push(started.elapsed());
            assert_eq!(status, 200, "{body}");
            assert!(body.get("errors").is_none(), "{body}");
        }
        times.sort();
        println!("{name}: median {:?}", times[2]);
    }
}
