//! Migrations: applied in order, recorded, re-runnable, safe to run from several servers at once,
//! and usable on a second database of a cluster whose roles already exist.

mod common;

use common::{connect, TestDb};
use research_graph::db::admin::AdminConnection;

/// The migrations in `sql/`.
fn migrations() -> usize {
    std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/sql"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".sql")
        })
        .count()
}

#[tokio::test]
async fn migrations_apply_once_and_rerun_as_no_ops() {
    let (_, config) = TestDb::unmigrated().await;
    let mut admin = AdminConnection::connect(&config).await.unwrap();
    let first = admin.migrate().await.unwrap();
    assert_eq!(first.applied.len(), migrations(), "{:?}", first.applied);
    assert!(
        first.applied[0].starts_with("V1__"),
        "in order: {:?}",
        first.applied
    );
    let second = admin.migrate().await.unwrap();
    assert!(
        second.applied.is_empty(),
        "re-run applied {:?}",
        second.applied
    );
    let recorded: i64 = admin
        .client()
        .query_one("SELECT count(*) FROM refinery_schema_history", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(recorded as usize, migrations());
    let default_tenant: String = admin
        .client()
        .query_one(
            "SELECT slug FROM app.tenants WHERE id = '00000000-0000-0000-0000-000000000000'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(default_tenant, "default");
    admin.close().await;
}

#[tokio::test]
async fn concurrent_migrators_do_not_race() {
    let (_, config) = TestDb::unmigrated().await;
    let run = || {
        let config = config.clone();
        tokio::spawn(async move {
            let mut admin = AdminConnection::connect(&config).await.unwrap();
            let report = admin.migrate().await.unwrap();
            admin.close().await;
            report.applied.len()
        })
    };
    let (a, b, c) = tokio::join!(run(), run(), run());
    let total = a.unwrap() + b.unwrap() + c.unwrap();
    assert_eq!(total, migrations(), "each migration applied exactly once");
    let client = connect(config).await;
    let tables: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'app'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(tables >= 13);
}
