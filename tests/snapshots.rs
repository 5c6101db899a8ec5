//! Response shapes of the main queries, pinned as snapshots (`tests/snapshots/`). Ids, cursors
//! and timestamps are replaced by placeholders; everything else must match exactly.
//! After an intended change: `INSTA_UPDATE=always cargo test --test snapshots`, then review.

mod common;

use common::http::{app, gql, token, AppOptions, Client};
use common::{seed_tenant, Seeded, TestDb};
use serde_json::{json, Value};

/// Replaces values that differ between runs.
fn stable(value: Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| {
                    let v = match k.as_str() {
                        "id" | "rowId" | "tenantId" | "reviewedBy" => Value::String("[id]".into()),
                        "cursor" | "startCursor" | "endCursor" if !v.is_null() => {
                            Value::String("[cursor]".into())
                        }
                        "createdAt" | "updatedAt" | "reviewedAt" | "since" if !v.is_null() => {
                            Value::String("[time]".into())
                        }
                        _ => stable(v),
                    };
                    (k, v)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(stable).collect()),
        other => other,
    }
}

async fn snapshot(cli: &Client, a: &Seeded, query: &str, vars: Value) -> Value {
    let (status, body) = gql(
        cli,
        "/graphql",
        Some(&token(a.owner)),
        &[("x-tenant-id", a.tenant.to_string())],
        query,
        vars,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    stable(body)
}

#[tokio::test]
async fn main_query_shapes() {
    let t = TestDb::new().await;
    let a = seed_tenant(&t, "alpha", "10.1/a", "graphnet").await;
    let cli = app(&t.db, AppOptions::multi_tenant());
    let paper = snapshot(&cli, &a, "mutation { createPaper(input: { title: \"Message Passing for Link Prediction\",
        authors: [\"A. Author\", \"B. Author\"], abstract: \"We study message passing networks for link prediction.\",
        year: 2024, venue: \"Workshop on Graphs\", doi: \"10.9999/mp\",
        sections: [{ kind: ABSTRACT, heading: \"Abstract\", content: \"We study message passing networks for link prediction.\" },
                   { kind: RESULTS, heading: \"Results\", content: \"Message passing improves AUC on Cora.\" }] }) { title } }", json!({})).await;
    insta::assert_json_snapshot!("create_paper", paper);

    let papers = snapshot(&cli, &a, "{ papers(first: 5, orderBy: TITLE_ASC) { totalCount pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
        edges { cursor node { id rowId title authors abstract doi arxivId year venue sourceKind createdAt
          sections(first: 5) { totalCount nodes { ordinal kind heading content } } } } } }", json!({})).await;
    insta::assert_json_snapshot!("papers", papers);

    let graph = snapshot(&cli, &a, "{ graphNodes(orderBy: NAME_ASC) { nodes { name key nodeType aliases
        outgoing { totalCount nodes { relationType confidence weight reviewStatus target { name } } }
        mentions { nodes { quote startOffset endOffset agent model promptVersion section { kind } } } } } }", json!({})).await;
    insta::assert_json_snapshot!("graph", graph);

    let node_id = {
        let (_, body) = gql(
            &cli,
            "/graphql",
            Some(&token(a.owner)),
            &[("x-tenant-id", a.tenant.to_string())],
            "{ graphNodes(filter: { nodeTypes: [METHOD] }) { nodes { id } } }",
            json!({}),
        )
        .await;
        body["data"]["graphNodes"]["nodes"][0]["id"].clone()
    };
    let neighborhood = snapshot(
        &cli,
        &a,
        "query($id: ID!) { neighborhood(nodeId: $id, depth: 2) { truncated
        nodes { depth node { name } } edges { relationType source { name } target { name } } } }",
        json!({ "id": node_id }),
    )
    .await;
    insta::assert_json_snapshot!("neighborhood", neighborhood);

    let mut search = snapshot(
        &cli,
        &a,
        "{ search(query: \"link prediction\", first: 5) { totalCount
        nodes { kind score snippet paper { title } section { heading } node { name } } } }",
        json!({}),
    )
    .await;
    // Equal scores are ordered by (random) id; pin them in a stable order.
    if let Some(hits) = search["data"]["search"]["nodes"].as_array_mut() {
        hits.sort_by_key(|h| {
            (
                h["score"].as_f64().map(|s| -(s * 1e9) as i64),
                h.to_string(),
            )
        });
    }
    insta::assert_json_snapshot!("search", search);

    let tenancy = snapshot(&cli, &a, "{ viewer { role user { id } tenant { slug name
        settings { executionMode confidenceThreshold similarityThreshold reasoningMaxDepth limitMode hasApiKey dailyCostLimit }
        members { role } } } myTenants { slug role isDefault } features { multiTenant usageTracking hostedQueue billing }
        insights { nodes { insightType statement confidence status supportingNodes { nodes { name } } supportingEdges { nodes { relationType } } } } }", json!({})).await;
    insta::assert_json_snapshot!("tenancy_and_insights", tenancy);
}
