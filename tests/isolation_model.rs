//! SECURITY_TESTS.md case 9: random operations across three tenants, through pools of one and
//! two connections, match an in-memory model split by tenant.
//!
//! Each operation runs in its own tenant session as that tenant's owner. Operations may name
//! any paper of any tenant (the model knows them all), so cross-tenant updates and deletes are
//! exercised constantly; the model says they must touch nothing.

mod common;

use std::collections::BTreeMap;

use common::{sqlstate, TestDb};
use proptest::prelude::*;
use research_graph::ids::{TenantId, UserId};
use uuid::Uuid;

const TENANTS: usize = 3;

#[derive(Clone, Debug)]
enum Op {
    /// Insert a paper with a DOI drawn from a small set (so duplicates happen).
    Insert { tenant: usize, doi: u8 },
    /// Retitle the n-th paper known anywhere (any tenant's).
    Retitle {
        tenant: usize,
        pick: usize,
        title: u8,
    },
    /// Delete the n-th paper known anywhere.
    Delete { tenant: usize, pick: usize },
    /// Insert, then drop the session without committing.
    Abandon { tenant: usize },
    /// Compare the tenant's visible papers with the model.
    List { tenant: usize },
}

fn op() -> impl Strategy<Value = Op> {
    let tenant = 0..TENANTS;
    prop_oneof![
        3 => (tenant.clone(), 0u8..6).prop_map(|(tenant, doi)| Op::Insert { tenant, doi }),
        2 => (tenant.clone(), any::<usize>(), any::<u8>())
            .prop_map(|(tenant, pick, title)| Op::Retitle { tenant, pick, title }),
        2 => (tenant.clone(), any::<usize>()).prop_map(|(tenant, pick)| Op::Delete { tenant, pick }),
        1 => tenant.clone().prop_map(|tenant| Op::Abandon { tenant }),
        2 => tenant.prop_map(|tenant| Op::List { tenant }),
    ]
}

/// A paper as the model holds it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Paper {
    title: String,
    doi: String,
}

/// Papers per tenant, by id.
type Model = Vec<BTreeMap<Uuid, Paper>>;

async fn run_case(t: &TestDb, ops: &[Op]) -> Result<(), TestCaseError> {
    let mut tenants: Vec<(TenantId, UserId)> = Vec::new();
    for _ in 0..TENANTS {
        tenants.push(
            t.create_tenant(&format!("p{}", Uuid::new_v4().simple()))
                .await,
        );
    }
    let mut model: Model = vec![BTreeMap::new(); TENANTS];
    // Every id ever created, in order, with its tenant: operations pick from these.
    let mut known: Vec<(usize, Uuid)> = Vec::new();

    for op in ops {
        match *op {
            Op::Insert { tenant, doi } => {
                let (tid, user) = tenants[tenant];
                let doi = format!("10.1/{doi}");
                let s = t.session(tid, user).await;
                let result = s
                    .query_opt(
                        "INSERT INTO app.papers (tenant_id, title, doi) VALUES ($1, 'new', $2) RETURNING id",
                        &[&tid.0, &doi],
                    )
                    .await;
                let duplicate = model[tenant].values().any(|p| p.doi == doi);
                match result {
                    Ok(row) => {
                        prop_assert!(!duplicate, "a duplicate DOI in one tenant was accepted");
                        let id: Uuid = row.expect("RETURNING").get(0);
                        s.commit().await.unwrap();
                        model[tenant].insert(
                            id,
                            Paper {
                                title: "new".into(),
                                doi,
                            },
                        );
                        known.push((tenant, id));
                    }
                    Err(e) => {
                        prop_assert!(duplicate, "insert failed: {e}");
                        prop_assert_eq!(sqlstate(&e), "23505");
                    }
                }
            }
            Op::Retitle {
                tenant,
                pick,
                title,
            } => {
                let Some(&(owner, id)) = known.get(pick % known.len().max(1)) else {
                    continue;
                };
                let (tid, user) = tenants[tenant];
                let title = format!("title {title}");
                let s = t.session(tid, user).await;
                let n = s
                    .execute(
                        "UPDATE app.papers SET title = $1 WHERE id = $2",
                        &[&title, &id],
                    )
                    .await
                    .unwrap();
                s.commit().await.unwrap();
                let expected = match model[tenant].get_mut(&id) {
                    Some(p) if owner == tenant => {
                        p.title = title;
                        1
                    }
                    _ => 0,
                };
                prop_assert_eq!(
                    n,
                    expected,
                    "retitle by tenant {} of tenant {}'s paper",
                    tenant,
                    owner
                );
            }
            Op::Delete { tenant, pick } => {
                let Some(&(owner, id)) = known.get(pick % known.len().max(1)) else {
                    continue;
                };
                let (tid, user) = tenants[tenant];
                let s = t.session(tid, user).await;
                let n = s
                    .execute("DELETE FROM app.papers WHERE id = $1", &[&id])
                    .await
                    .unwrap();
                s.commit().await.unwrap();
                let expected = u64::from(owner == tenant && model[tenant].remove(&id).is_some());
                prop_assert_eq!(
                    n,
                    expected,
                    "delete by tenant {} of tenant {}'s paper",
                    tenant,
                    owner
                );
            }
            Op::Abandon { tenant } => {
                let (tid, user) = tenants[tenant];
                let s = t.session(tid, user).await;
                s.execute(
                    "INSERT INTO app.papers (tenant_id, title) VALUES ($1, 'abandoned')",
                    &[&tid.0],
                )
                .await
                .unwrap();
                drop(s);
            }
            Op::List { tenant } => {
                let (tid, user) = tenants[tenant];
                let s = t.session(tid, user).await;
                let rows = s
                    .query("SELECT id, title, doi FROM app.papers", &[])
                    .await
                    .unwrap();
                s.commit().await.unwrap();
                let seen: BTreeMap<Uuid, Paper> = rows
                    .iter()
                    .map(|r| {
                        (
                            r.get(0),
                            Paper {
                                title: r.get(1),
                                doi: r.get::<_, Option<String>>(2).unwrap_or_default(),
                            },
                        )
                    })
                    .collect();
                prop_assert_eq!(&seen, &model[tenant], "tenant {}'s papers", tenant);
            }
        }
    }
    // Finally, every tenant's view equals its part of the model.
    for (i, (tid, user)) in tenants.iter().enumerate() {
        let s = t.session(*tid, *user).await;
        let ids: Vec<Uuid> = s
            .query("SELECT id FROM app.papers ORDER BY id", &[])
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        let expected: Vec<Uuid> = model[i].keys().copied().collect();
        prop_assert_eq!(ids, expected);
    }
    Ok(())
}

#[test]
fn random_operations_match_a_model_split_by_tenant() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dbs = runtime.block_on(async {
        vec![
            TestDb::with_pool_size(1).await,
            TestDb::with_pool_size(2).await,
        ]
    });
    let config = ProptestConfig {
        cases: 24,
        ..ProptestConfig::default()
    };
    proptest!(config, |(pool in 0usize..2, ops in proptest::collection::vec(op(), 1..60))| {
        // Each case gets three fresh tenants in the chosen database, so cases stay independent.
        runtime.block_on(run_case(&dbs[pool], &ops))?;
    });
}
