//! The GraphQL API over HTTP: papers, sections, the graph, mentions and insights; Relay
//! connections with keyset cursors, filters and orders; traversal; the Node interface;
//! mutations and their errors; what a viewer may not do.

mod common;

use common::http::{app, code, gql, token, AppOptions, Client};
use common::{seed_tenant, Seeded, TestDb};
use research_graph::ids::{Role, UserId};
use serde_json::{json, Value};

/// Runs `query` as `user` in `tenant`; returns the whole body (status must be 200).
async fn run(cli: &Client, user: UserId, tenant: &Seeded, query: &str, vars: Value) -> Value {
    let (status, body) = gql(
        cli,
        "/graphql",
        Some(&token(user)),
        &[("x-tenant-id", tenant.tenant.to_string())],
        query,
        vars,
    )
    .await;
    assert_eq!(status, 200, "{query}: {body}");
    body
}

/// Runs `query` and returns its data, failing on any error.
async fn data(cli: &Client, user: UserId, tenant: &Seeded, query: &str, vars: Value) -> Value {
    let body = run(cli, user, tenant, query, vars).await;
    assert!(body.get("errors").is_none(), "{query}: {body}");
    body["data"].clone()
}

const CREATE_PAPER: &str = "mutation($i: CreatePaperInput!) { createPaper(input: $i) { id rowId title authors abstract doi year sourceKind } }";
const CREATE_NODE: &str =
    "mutation($i: CreateNodeInput!) { createNode(input: $i) { id name key nodeType } }";
const CREATE_EDGE: &str = "mutation($i: CreateEdgeInput!) { createEdge(input: $i) { id relationType reviewStatus confidence weight source { name } target { name } } }";

async fn node(cli: &Client, t: &Seeded, name: &str, kind: &str) -> String {
    let d = data(
        cli,
        t.owner,
        t,
        CREATE_NODE,
        json!({ "i": { "name": name, "nodeType": kind.to_uppercase() } }),
    )
    .await;
    d["createNode"]["id"].as_str().unwrap().to_owned()
}

async fn edge(
    cli: &Client,
    t: &Seeded,
    source: &str,
    target: &str,
    kind: &str,
    confidence: f64,
) -> String {
    let d = data(cli, t.owner, t, CREATE_EDGE, json!({ "i": {
        "source": source, "target": target, "relationType": kind, "confidence": confidence, "reviewStatus": "PROPOSED"
    } }))
    .await;
    d["createEdge"]["id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn papers_with_sections_are_created_read_updated_and_deleted() {
    let t = TestDb::new().await;
    let a = seed_tenant(&t, "alpha", "10.1/a", "k").await;
    let cli = app(&t.db, AppOptions::multi_tenant());
    let created = data(&cli, a.owner, &a, CREATE_PAPER, json!({ "i": {
        "title": "  Graph Networks for Link Prediction ", "authors": ["Ada", "Grace"],
        "abstract": "We propose GraphNet.", "doi": "10.5555/gn", "year": 2024,
        "sections": [
            { "heading": "Abstract", "kind": "ABSTRACT", "content": "We propose GraphNet for link prediction." },
            { "heading": "Methods", "kind": "METHODS", "content": "GraphNet stacks message passing layers." },
            { "heading": "Results", "kind": "RESULTS", "content": "GraphNet reaches 0.91 AUC on Cora." }
        ]
    } })).await["createPaper"].clone();
    assert_eq!(created["title"], "Graph Networks for Link Prediction");
    assert_eq!(created["sourceKind"], "MANUAL");
    let id = created["id"].as_str().unwrap().to_owned();

    let q = "query($id: ID!, $after: String) { paper(id: $id) { title sections(first: 2, after: $after) {
        totalCount pageInfo { hasNextPage hasPreviousPage endCursor } edges { node { ordinal kind heading paper { title } } } } } }";
    let d = data(&cli, a.owner, &a, q, json!({ "id": id })).await;
    let sections = &d["paper"]["sections"];
    assert_eq!(sections["totalCount"], 3);
    assert_eq!(sections["pageInfo"]["hasNextPage"], true);
    assert_eq!(sections["edges"][0]["node"]["kind"], "ABSTRACT");
    assert_eq!(sections["edges"][1]["node"]["ordinal"], 1);
    assert_eq!(
        sections["edges"][0]["node"]["paper"]["title"],
        "Graph Networks for Link Prediction"
    );
    let d = data(
        &cli,
        a.owner,
        &a,
        q,
        json!({ "id": id, "after": sections["pageInfo"]["endCursor"] }),
    )
    .await;
    assert_eq!(d["paper"]["sections"]["edges"].as_array().unwrap().len(), 1);
    assert_eq!(
        d["paper"]["sections"]["pageInfo"],
        json!({ "hasNextPage": false, "hasPreviousPage": true, "endCursor": d["paper"]["sections"]["pageInfo"]["endCursor"] })
    );

    // The raw UUID works as well as the global ID.
    let d = data(
        &cli,
        a.owner,
        &a,
        "query($id: ID!) { paper(id: $id) { id } }",
        json!({ "id": created["rowId"] }),
    )
    .await;
    assert_eq!(d["paper"]["id"], id);

    let upd = "mutation($id: ID!, $i: UpdatePaperInput!) { updatePaper(id: $id, input: $i) { title abstract year sections { totalCount } } }";
    let d = data(
        &cli,
        a.owner,
        &a,
        upd,
        json!({ "id": id, "i": { "title": "GraphNet", "abstract": null,
        "sections": [{ "content": "Only one section now." }] } }),
    )
    .await;
    assert_eq!(
        d["updatePaper"],
        json!({ "title": "GraphNet", "abstract": null, "year": 2024, "sections": { "totalCount": 1 } })
    );

    for (input, why) in [
        (json!({ "title": "" }), "empty title"),
        (json!({ "title": "x", "year": 99 }), "year"),
        (
            json!({ "title": "x", "doi": "10.5555/gn" }),
            "duplicate DOI",
        ),
        (
            json!({ "title": "x", "sections": [{ "content": "  " }] }),
            "empty section",
        ),
    ] {
        let body = run(&cli, a.owner, &a, CREATE_PAPER, json!({ "i": input })).await;
        assert_eq!(code(&body), Some("BAD_USER_INPUT"), "{why}: {body}");
    }

    let d = data(
        &cli,
        a.owner,
        &a,
        "mutation($id: ID!) { deletePaper(id: $id) }",
        json!({ "id": id }),
    )
    .await;
    assert_eq!(d["deletePaper"], id);
    let d = data(
        &cli,
        a.owner,
        &a,
        "query($id: ID!) { paper(id: $id) { id } }",
        json!({ "id": id }),
    )
    .await;
    assert_eq!(d["paper"], Value::Null);
    let body = run(
        &cli,
        a.owner,
        &a,
        "mutation($id: ID!) { deletePaper(id: $id) }",
        json!({ "id": id }),
    )
    .await;
    assert_eq!(code(&body), Some("NOT_FOUND"));
}

#[tokio::test]
async fn connections_page_by_keyset_both_ways() {
    let t = TestDb::new().await;
    let a = seed_tenant(&t, "alpha", "10.1/a", "k").await;
    let cli = app(&t.db, AppOptions::multi_tenant());
    for i in 0..25 {
        node(&cli, &a, &format!("Method {i:02}"), "Method").await;
    }
    let q = "query($first: Int, $after: String, $last: Int, $before: String, $order: NodeOrder) {
        graphNodes(first: $first, after: $after, last: $last, before: $before, orderBy: $order,
                   filter: { nodeTypes: [METHOD], text: \"method\" }) {
          totalCount pageInfo { hasNextPage hasPreviousPage startCursor endCursor } nodes { name } } }";
    let names = |d: &Value| -> Vec<String> {
        d["graphNodes"]["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["name"].as_str().unwrap().to_owned())
            .collect()
    };
    let p1 = data(&cli, a.owner, &a, q, json!({ "first": 10 })).await;
    assert_eq!(p1["graphNodes"]["totalCount"], 25);
    assert_eq!(
        names(&p1),
        (0..10)
            .map(|i| format!("Method {i:02}"))
            .collect::<Vec<_>>()
    );
    assert_eq!(p1["graphNodes"]["pageInfo"]["hasNextPage"], true);
    assert_eq!(p1["graphNodes"]["pageInfo"]["hasPreviousPage"], false);
    let p2 = data(
        &cli,
        a.owner,
        &a,
        q,
        json!({ "first": 10, "after": p1["graphNodes"]["pageInfo"]["endCursor"] }),
    )
    .await;
    assert_eq!(names(&p2)[0], "Method 10");
    let p3 = data(
        &cli,
        a.owner,
        &a,
        q,
        json!({ "first": 10, "after": p2["graphNodes"]["pageInfo"]["endCursor"] }),
    )
    .await;
    assert_eq!(names(&p3).len(), 5);
    assert_eq!(p3["graphNodes"]["pageInfo"]["hasNextPage"], false);

    // Backwards: the last ten, in order, then the ten before them.
    let l1 = data(&cli, a.owner, &a, q, json!({ "last": 10 })).await;
    assert_eq!(
        names(&l1),
        (15..25)
            .map(|i| format!("Method {i:02}"))
            .collect::<Vec<_>>()
    );
    assert_eq!(l1["graphNodes"]["pageInfo"]["hasPreviousPage"], true);
    let l2 = data(
        &cli,
        a.owner,
        &a,
        q,
        json!({ "last": 10, "before": l1["graphNodes"]["pageInfo"]["startCursor"] }),
    )
    .await;
    assert_eq!(
        names(&l2),
        (5..15)
            .map(|i| format!("Method {i:02}"))
            .collect::<Vec<_>>()
    );
    assert_eq!(l2["graphNodes"]["pageInfo"]["hasNextPage"], true);

    // Another order.
    let d = data(
        &cli,
        a.owner,
        &a,
        q,
        json!({ "first": 3, "order": "NAME_DESC" }),
    )
    .await;
    assert_eq!(names(&d), ["Method 24", "Method 23", "Method 22"]);

    // first is clamped to the maximum page size (100 by default)…
    let d = data(
        &cli,
        a.owner,
        &a,
        "{ graphNodes(first: 1000) { totalCount nodes { name } } }",
        json!({}),
    )
    .await;
    assert_eq!(d["graphNodes"]["totalCount"], 27, "the seed's two and 25");
    assert_eq!(d["graphNodes"]["nodes"].as_array().unwrap().len(), 27);
    for i in 0..80 {
        node(&cli, &a, &format!("Task {i:02}"), "Task").await;
    }
    let d = data(
        &cli,
        a.owner,
        &a,
        "{ graphNodes(first: 1000) { nodes { name } } }",
        json!({}),
    )
    .await;
    assert_eq!(d["graphNodes"]["nodes"].as_array().unwrap().len(), 100);
    // …and the complexity limit counts the page asked for, so an absurd one is refused.
    let body = run(
        &cli,
        a.owner,
        &a,
        "{ graphNodes(first: 100000) { nodes { name } } }",
        json!({}),
    )
    .await;
    assert_eq!(code(&body), Some("LIMIT_EXCEEDED"));

    for (vars, why) in [
        (
            json!({ "first": 2, "after": "not-a-cursor" }),
            "garbage cursor",
        ),
        (
            json!({ "first": 2, "after": p1["graphNodes"]["pageInfo"]["endCursor"], "order": "NAME_DESC" }),
            "cursor of another order",
        ),
        (json!({ "first": 2, "last": 2 }), "first and last"),
        (json!({ "first": -1 }), "negative first"),
    ] {
        let body = run(&cli, a.owner, &a, q, vars).await;
        assert_eq!(code(&body), Some("BAD_USER_INPUT"), "{why}: {body}");
    }
}

/// A small graph: GraphNet USED-FOR link prediction, evaluated on Cora with AUC, compared with
/// GCN; mentions in a paper; an insight.
struct Fixture {
    graphnet: String,
    link_prediction: String,
    cora: String,
    gcn: String,
    auc: String,
    used_for: String,
    /// The paper's row id (UUID).
    paper: String,
    /// The paper's global ID.
    paper_gid: String,
}

async fn fixture(cli: &Client, t: &TestDb, a: &Seeded) -> Fixture {
    let graphnet = node(cli, a, "GraphNet", "Method").await;
    let link_prediction = node(cli, a, "link prediction", "Task").await;
    let cora = node(cli, a, "Cora", "Dataset").await;
    let gcn = node(cli, a, "GCN", "Method").await;
    let auc = node(cli, a, "AUC", "Metric").await;
    let used_for = edge(cli, a, &graphnet, &link_prediction, "USED_FOR", 0.9).await;
    edge(cli, a, &cora, &graphnet, "EVALUATE_FOR", 0.8).await;
    edge(cli, a, &graphnet, &gcn, "COMPARE", 0.4).await;
    edge(cli, a, &auc, &graphnet, "EVALUATE_FOR", 0.7).await;
    let created = data(cli, a.owner, a, CREATE_PAPER, json!({ "i": { "title": "GraphNet", "year": 2023,
        "abstract": "GraphNet improves link prediction on Cora.",
        "sections": [{ "kind": "ABSTRACT", "content": "GraphNet improves link prediction on Cora." }] } }))
        .await["createPaper"].clone();
    let paper = created["rowId"].as_str().unwrap().to_owned();
    let paper_gid = created["id"].as_str().unwrap().to_owned();
    // Mentions and an insight, as the pipeline would write them (through RLS, as the owner).
    let s = t.session(a.tenant, a.owner).await;
    let uuid = |global: &str| {
        research_graph::graphql::relay::decode(&async_graphql::ID(global.into()))
            .unwrap()
            .1
    };
    let paper_id = uuid::Uuid::parse_str(&paper).unwrap();
    let section: uuid::Uuid = s
        .query_one(
            "SELECT id FROM app.paper_sections WHERE paper_id = $1",
            &[&paper_id],
        )
        .await
        .unwrap()
        .get(0);
    for (node, quote, start) in [
        (&graphnet, "GraphNet", 0),
        (&link_prediction, "link prediction", 18),
        (&cora, "Cora", 37),
    ] {
        s.execute(
            "INSERT INTO app.entity_mentions (tenant_id, node_id, section_id, quote, start_offset, end_offset, agent, model, prompt_version) \
             VALUES (app.tenant_id(), $1, $2, $3, $4, $4 + length($3), 'extractor', 'offline', 'v1')",
            &[&uuid(node), &section, &quote, &start],
        )
        .await
        .unwrap();
    }
    let insight: uuid::Uuid = s
        .query_one(
            "INSERT INTO app.inferred_insights (tenant_id, insight_type, statement, confidence) \
             VALUES (app.tenant_id(), 'gap', 'No other method is evaluated on Cora.', 0.6) RETURNING id",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    s.execute(
        "INSERT INTO app.insight_nodes VALUES (app.tenant_id(), $1, $2)",
        &[&insight, &uuid(&cora)],
    )
    .await
    .unwrap();
    s.execute(
        "INSERT INTO app.insight_edges VALUES (app.tenant_id(), $1, $2)",
        &[&insight, &uuid(&used_for)],
    )
    .await
    .unwrap();
    s.commit().await.unwrap();
    Fixture {
        graphnet,
        link_prediction,
        cora,
        gcn,
        auc,
        used_for,
        paper,
        paper_gid,
    }
}

#[tokio::test]
async fn explorers_traverse_the_graph() {
    let t = TestDb::new().await;
    let a = seed_tenant(&t, "alpha", "10.1/a", "k").await;
    let cli = app(&t.db, AppOptions::multi_tenant());
    let f = fixture(&cli, &t, &a).await;
    let q = "query($id: ID!) { graphNode(id: $id) { name
        outgoing { totalCount nodes { relationType target { name } } }
        incoming(relationTypes: [EVALUATE_FOR]) { totalCount nodes { source { name } } }
        relations(direction: BOTH, orderBy: WEIGHT_DESC) { totalCount }
        strong: outgoing(reviewStatus: [PROPOSED], relationTypes: [USED_FOR, COMPARE]) { nodes { target { name } } }
        mentions { totalCount nodes { quote startOffset endOffset section { kind paper { title } } } }
        papers { nodes { title } }
    } }";
    let d = data(&cli, a.owner, &a, q, json!({ "id": f.graphnet })).await;
    let n = &d["graphNode"];
    assert_eq!(n["outgoing"]["totalCount"], 2);
    assert_eq!(
        n["outgoing"]["nodes"],
        json!([
            { "relationType": "USED_FOR", "target": { "name": "link prediction" } },
            { "relationType": "COMPARE", "target": { "name": "GCN" } },
        ])
    );
    assert_eq!(n["incoming"]["totalCount"], 2);
    assert_eq!(
        n["incoming"]["nodes"],
        json!([{ "source": { "name": "Cora" } }, { "source": { "name": "AUC" } }])
    );
    assert_eq!(n["relations"]["totalCount"], 4);
    assert_eq!(n["strong"]["nodes"].as_array().unwrap().len(), 2);
    assert_eq!(n["mentions"]["totalCount"], 1);
    assert_eq!(n["mentions"]["nodes"][0]["quote"], "GraphNet");
    assert_eq!(
        n["mentions"]["nodes"][0]["section"]["paper"]["title"],
        "GraphNet"
    );
    assert_eq!(n["papers"]["nodes"], json!([{ "title": "GraphNet" }]));

    let q = "query($p: ID!) { paper(id: $p) { nodes { totalCount nodes { name } }
        insights { nodes { statement supportingNodes { nodes { name } } supportingEdges { nodes { relationType } } } }
        sections { nodes { mentions { totalCount } } } } }";
    let d = data(&cli, a.owner, &a, q, json!({ "p": f.paper })).await;
    assert_eq!(d["paper"]["nodes"]["totalCount"], 3);
    assert_eq!(
        d["paper"]["nodes"]["nodes"],
        json!([{ "name": "Cora" }, { "name": "GraphNet" }, { "name": "link prediction" }])
    );
    assert_eq!(
        d["paper"]["insights"]["nodes"],
        json!([{ "statement": "No other method is evaluated on Cora.",
        "supportingNodes": { "nodes": [{ "name": "Cora" }] }, "supportingEdges": { "nodes": [{ "relationType": "USED_FOR" }] } }])
    );
    assert_eq!(
        d["paper"]["sections"]["nodes"][0]["mentions"]["totalCount"],
        3
    );

    // Root listings with filters.
    let d = data(&cli, a.owner, &a, "{ m: graphNodes(filter: { nodeTypes: [METHOD] }) { totalCount }
        e: graphEdges(filter: { minConfidence: 0.75 }, orderBy: CONFIDENCE_DESC) { nodes { confidence } }
        p: papers(filter: { text: \"link prediction\", yearFrom: 2020 }) { totalCount }
        none: papers(filter: { yearTo: 2000 }) { totalCount }
        i: insights(filter: { status: [PROPOSED], insightTypes: [GAP] }) { totalCount } }", json!({})).await;
    assert_eq!(
        d["m"]["totalCount"], 3,
        "GraphNet, GCN and the seed's Method"
    );
    assert_eq!(
        d["e"]["nodes"],
        json!([{ "confidence": 0.9 }, { "confidence": 0.9 }, { "confidence": 0.8 }])
    );
    assert_eq!(d["p"]["totalCount"], 1);
    assert_eq!(d["none"]["totalCount"], 0);
    assert_eq!(
        d["i"]["totalCount"], 2,
        "the seed's insight and the fixture's"
    );
    let _ = (&f.link_prediction, &f.cora, &f.gcn, &f.auc, &f.used_for);
}

#[tokio::test]
async fn the_node_interface_resolves_every_type() {
    let t = TestDb::new().await;
    let a = seed_tenant(&t, "alpha", "10.1/a", "k").await;
    let b = seed_tenant(&t, "beta", "10.1/b", "k").await;
    let cli = app(&t.db, AppOptions::multi_tenant());
    let f = fixture(&cli, &t, &a).await;
    let d = data(&cli, a.owner, &a, "query($ids: [ID!]!) { nodes(ids: $ids) { __typename id } }",
        json!({ "ids": [f.graphnet, f.used_for, f.paper_gid, research_graph::graphql::relay::global_id(
            research_graph::graphql::relay::Kind::Paper, uuid::Uuid::new_v4()).0] })).await;
    assert_eq!(
        d["nodes"],
        json!([
            { "__typename": "GraphNode", "id": f.graphnet },
            { "__typename": "GraphEdge", "id": f.used_for },
            { "__typename": "Paper", "id": f.paper_gid },
            null,
        ])
    );
    // Another tenant's id is simply not there.
    let d = data(
        &cli,
        b.owner,
        &b,
        "query($id: ID!) { node(id: $id) { id } }",
        json!({ "id": f.graphnet }),
    )
    .await;
    assert_eq!(d["node"], Value::Null);
    // An id of the wrong type, or no id at all, is a client error.
    let body = run(
        &cli,
        a.owner,
        &a,
        "query($id: ID!) { paper(id: $id) { id } }",
        json!({ "id": f.graphnet }),
    )
    .await;
    assert_eq!(code(&body), Some("BAD_USER_INPUT"));
    let body = run(
        &cli,
        a.owner,
        &a,
        "{ node(id: \"garbage\") { id } }",
        json!({}),
    )
    .await;
    assert_eq!(code(&body), Some("BAD_USER_INPUT"));
}

#[tokio::test]
async fn graph_mutations_and_review() {
    let t = TestDb::new().await;
    let a = seed_tenant(&t, "alpha", "10.1/a", "k").await;
    let member = t.add_member(a.tenant, a.owner, Role::Member).await;
    let cli = app(&t.db, AppOptions::multi_tenant());
    let f = fixture(&cli, &t, &a).await;

    let body = run(
        &cli,
        member,
        &a,
        CREATE_NODE,
        json!({ "i": { "name": "graphnet!", "nodeType": "METHOD" } }),
    )
    .await;
    assert_eq!(
        code(&body),
        Some("BAD_USER_INPUT"),
        "same key and type: {body}"
    );
    let d = data(
        &cli,
        member,
        &a,
        CREATE_NODE,
        json!({ "i": { "name": "GraphNet", "nodeType": "TASK" } }),
    )
    .await;
    assert_eq!(
        d["createNode"]["key"], "graphnet",
        "another type may share the key"
    );
    let body = run(
        &cli,
        member,
        &a,
        CREATE_EDGE,
        json!({ "i": { "source": f.cora, "target": f.cora, "relationType": "COMPARE" } }),
    )
    .await;
    assert_eq!(code(&body), Some("BAD_USER_INPUT"));
    let body = run(&cli, member, &a, CREATE_EDGE, json!({ "i": { "source": f.cora, "target": uuid::Uuid::new_v4().to_string(), "relationType": "COMPARE" } })).await;
    assert_eq!(code(&body), Some("NOT_FOUND"));
    let body = run(&cli, member, &a, CREATE_EDGE, json!({ "i": { "source": f.graphnet, "target": f.link_prediction, "relationType": "USED_FOR" } })).await;
    assert_eq!(code(&body), Some("BAD_USER_INPUT"), "duplicate relation");

    let d = data(&cli, member, &a, "mutation($id: ID!) { updateNode(id: $id, input: { name: \"GraphNet v2\", aliases: [\"GN\"], description: \"A model\" }) { name key aliases description } }",
        json!({ "id": f.graphnet })).await;
    assert_eq!(
        d["updateNode"],
        json!({ "name": "GraphNet v2", "key": "graphnet v2", "aliases": ["GN"], "description": "A model" })
    );
    let d = data(&cli, member, &a, "mutation($id: ID!) { updateEdge(id: $id, input: { confidence: 0.5, weight: 2, description: \"main use\" }) { confidence weight description } }",
        json!({ "id": f.used_for })).await;
    assert_eq!(
        d["updateEdge"],
        json!({ "confidence": 0.5, "weight": 2.0, "description": "main use" })
    );

    let d = data(&cli, member, &a, "mutation($id: ID!) { reviewEdge(id: $id, status: APPROVED, note: \"checked\") { reviewStatus reviewNote reviewedBy reviewedAt } }",
        json!({ "id": f.used_for })).await;
    assert_eq!(d["reviewEdge"]["reviewStatus"], "APPROVED");
    assert_eq!(d["reviewEdge"]["reviewNote"], "checked");
    assert_eq!(d["reviewEdge"]["reviewedBy"], member.0.to_string());
    assert!(d["reviewEdge"]["reviewedAt"].is_string());
    let all = data(
        &cli,
        member,
        &a,
        "{ graphEdges { nodes { id } } }",
        json!({}),
    )
    .await;
    let ids: Vec<Value> = all["graphEdges"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["id"].clone())
        .collect();
    let d = data(
        &cli,
        member,
        &a,
        "mutation($ids: [ID!]!) { reviewEdges(ids: $ids, status: REJECTED) { reviewStatus } }",
        json!({ "ids": ids }),
    )
    .await;
    assert_eq!(d["reviewEdges"].as_array().unwrap().len(), ids.len());
    assert!(d["reviewEdges"]
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["reviewStatus"] == "REJECTED"));

    let d = data(&cli, member, &a, "{ insights { nodes { id } } }", json!({})).await;
    let insight = d["insights"]["nodes"][0]["id"].clone();
    let d = data(
        &cli,
        member,
        &a,
        "mutation($id: ID!) { updateInsightStatus(id: $id, status: ACCEPTED) { status } }",
        json!({ "id": insight }),
    )
    .await;
    assert_eq!(d["updateInsightStatus"]["status"], "ACCEPTED");
}

#[tokio::test]
async fn merging_nodes_moves_relations_mentions_and_names() {
    let t = TestDb::new().await;
    let a = seed_tenant(&t, "alpha", "10.1/a", "k").await;
    let cli = app(&t.db, AppOptions::multi_tenant());
    let f = fixture(&cli, &t, &a).await;
    // A duplicate of GraphNet with its own relations: one duplicates GraphNet's, one is new, one
    // joins the two (and disappears), and a mention.
    let dup = node(&cli, &a, "Graph Net (GN)", "Method").await;
    edge(&cli, &a, &dup, &f.link_prediction, "USED_FOR", 0.95).await;
    edge(&cli, &a, &dup, &f.auc, "FEATURE_OF", 0.5).await;
    edge(&cli, &a, &dup, &f.graphnet, "CONJUNCTION", 0.5).await;
    let d = data(
        &cli,
        a.owner,
        &a,
        "mutation($k: ID!, $m: ID!) { mergeNodes(keep: $k, merge: $m) { name aliases
        outgoing { nodes { relationType weight confidence target { name } } } } }",
        json!({ "k": f.graphnet, "m": dup }),
    )
    .await;
    let kept = &d["mergeNodes"];
    assert_eq!(kept["aliases"], json!(["Graph Net (GN)"]));
    assert_eq!(
        kept["outgoing"]["nodes"],
        json!([
            { "relationType": "USED_FOR", "weight": 2.0, "confidence": 0.95, "target": { "name": "link prediction" } },
            { "relationType": "COMPARE", "weight": 1.0, "confidence": 0.4, "target": { "name": "GCN" } },
            { "relationType": "FEATURE_OF", "weight": 1.0, "confidence": 0.5, "target": { "name": "AUC" } },
        ])
    );
    let d = data(&cli, a.owner, &a, "query($m: ID!) { node(id: $m) { id } graphEdges(filter: { relationTypes: [CONJUNCTION] }) { totalCount } }", json!({ "m": dup })).await;
    assert_eq!(
        d,
        json!({ "node": null, "graphEdges": { "totalCount": 0 } })
    );
    // The insight that rested on the folded relation still rests on the kept one.
    let d = data(
        &cli,
        a.owner,
        &a,
        "{ insights { nodes { supportingEdges { totalCount } } } }",
        json!({}),
    )
    .await;
    assert_eq!(
        d["insights"]["nodes"][0]["supportingEdges"]["totalCount"],
        1
    );
    let body = run(
        &cli,
        a.owner,
        &a,
        "mutation($k: ID!) { mergeNodes(keep: $k, merge: $k) { name } }",
        json!({ "k": f.graphnet }),
    )
    .await;
    assert_eq!(code(&body), Some("BAD_USER_INPUT"));
}

/// Viewers read everything and change nothing: every mutation is FORBIDDEN, decided by the
/// database, and the data is unchanged.
#[tokio::test]
async fn a_viewer_can_read_but_not_write() {
    let t = TestDb::new().await;
    let a = seed_tenant(&t, "alpha", "10.1/a", "k").await;
    let viewer = t.add_member(a.tenant, a.owner, Role::Viewer).await;
    let cli = app(&t.db, AppOptions::multi_tenant());
    let f = fixture(&cli, &t, &a).await;
    let d = data(
        &cli,
        viewer,
        &a,
        "{ graphNodes { totalCount } papers { totalCount } }",
        json!({}),
    )
    .await;
    assert_eq!(
        d["graphNodes"]["totalCount"], 7,
        "the seed's two and the fixture's five"
    );
    let before = data(&cli, a.owner, &a, "{ graphNodes { nodes { name } } graphEdges { nodes { reviewStatus weight } } papers { nodes { title } } insights { nodes { status } } }", json!({})).await;
    let d = data(&cli, viewer, &a, "{ insights { nodes { id } } }", json!({})).await;
    let insight = d["insights"]["nodes"][0]["id"].clone();
    for (query, vars) in [
        (CREATE_PAPER, json!({ "i": { "title": "x" } })),
        (
            "mutation($id: ID!) { updatePaper(id: $id, input: { title: \"x\" }) { title } }",
            json!({ "id": f.paper }),
        ),
        (
            "mutation($id: ID!) { deletePaper(id: $id) }",
            json!({ "id": f.paper }),
        ),
        (
            CREATE_NODE,
            json!({ "i": { "name": "x", "nodeType": "TASK" } }),
        ),
        (
            "mutation($id: ID!) { updateNode(id: $id, input: { name: \"x\" }) { name } }",
            json!({ "id": f.cora }),
        ),
        (
            CREATE_EDGE,
            json!({ "i": { "source": f.cora, "target": f.gcn, "relationType": "COMPARE" } }),
        ),
        (
            "mutation($id: ID!) { updateEdge(id: $id, input: { weight: 9 }) { weight } }",
            json!({ "id": f.used_for }),
        ),
        (
            "mutation($id: ID!) { reviewEdge(id: $id, status: REJECTED) { reviewStatus } }",
            json!({ "id": f.used_for }),
        ),
        (
            "mutation($id: ID!) { reviewEdges(ids: [$id], status: REJECTED) { reviewStatus } }",
            json!({ "id": f.used_for }),
        ),
        (
            "mutation($k: ID!, $m: ID!) { mergeNodes(keep: $k, merge: $m) { name } }",
            json!({ "k": f.graphnet, "m": f.gcn }),
        ),
        (
            "mutation($id: ID!) { updateInsightStatus(id: $id, status: REJECTED) { status } }",
            json!({ "id": insight }),
        ),
    ] {
        let body = run(&cli, viewer, &a, query, vars).await;
        assert_eq!(code(&body), Some("FORBIDDEN"), "{query}: {body}");
    }
    let after = data(&cli, a.owner, &a, "{ graphNodes { nodes { name } } graphEdges { nodes { reviewStatus weight } } papers { nodes { title } } insights { nodes { status } } }", json!({})).await;
    assert_eq!(before, after);
}

#[tokio::test]
async fn neighborhoods_in_one_call() {
    let t = TestDb::new().await;
    let a = seed_tenant(&t, "alpha", "10.1/a", "k").await;
    let cli = app(&t.db, AppOptions::multi_tenant());
    let f = fixture(&cli, &t, &a).await;
    let extra = node(&cli, &a, "Citeseer", "Dataset").await;
    edge(&cli, &a, &extra, &f.gcn, "EVALUATE_FOR", 0.9).await;
    let q = "query($id: ID!, $depth: Int!, $limit: Int, $types: [RelationType!]) {
        neighborhood(nodeId: $id, depth: $depth, limit: $limit, relationTypes: $types) {
          truncated nodes { depth node { name } } edges { relationType } } }";
    let names = |d: &Value| -> Vec<(String, i64)> {
        let mut v: Vec<(String, i64)> = d["neighborhood"]["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| {
                (
                    n["node"]["name"].as_str().unwrap().to_owned(),
                    n["depth"].as_i64().unwrap(),
                )
            })
            .collect();
        v.sort_by(|x, y| (x.1, &x.0).cmp(&(y.1, &y.0)));
        v
    };
    let d = data(
        &cli,
        a.owner,
        &a,
        q,
        json!({ "id": f.graphnet, "depth": 1 }),
    )
    .await;
    assert_eq!(
        names(&d),
        [
            ("GraphNet".into(), 0),
            ("AUC".into(), 1),
            ("Cora".into(), 1),
            ("GCN".into(), 1),
            ("link prediction".into(), 1)
        ]
    );
    assert_eq!(d["neighborhood"]["edges"].as_array().unwrap().len(), 4);
    assert_eq!(d["neighborhood"]["truncated"], false);
    let d = data(
        &cli,
        a.owner,
        &a,
        q,
        json!({ "id": f.graphnet, "depth": 2 }),
    )
    .await;
    assert!(names(&d).contains(&("Citeseer".into(), 2)));
    assert_eq!(d["neighborhood"]["edges"].as_array().unwrap().len(), 5);
    let d = data(
        &cli,
        a.owner,
        &a,
        q,
        json!({ "id": f.graphnet, "depth": 2, "types": ["USED_FOR"] }),
    )
    .await;
    assert_eq!(
        names(&d),
        [("GraphNet".into(), 0), ("link prediction".into(), 1)]
    );
    let d = data(
        &cli,
        a.owner,
        &a,
        q,
        json!({ "id": f.graphnet, "depth": 3, "limit": 3 }),
    )
    .await;
    assert_eq!(d["neighborhood"]["nodes"].as_array().unwrap().len(), 3);
    assert_eq!(d["neighborhood"]["truncated"], true);
    let d = data(
        &cli,
        a.owner,
        &a,
        q,
        json!({ "id": uuid::Uuid::new_v4().to_string(), "depth": 1 }),
    )
    .await;
    assert_eq!(d["neighborhood"], Value::Null);
    for vars in [
        json!({ "id": f.graphnet, "depth": 9 }),
        json!({ "id": f.graphnet, "depth": 1, "limit": 0 }),
    ] {
        let body = run(&cli, a.owner, &a, q, vars).await;
        assert_eq!(code(&body), Some("BAD_USER_INPUT"));
    }
}

#[tokio::test]
async fn search_ranks_papers_sections_and_nodes_within_the_tenant() {
    let t = TestDb::new().await;
    let a = seed_tenant(&t, "alpha", "10.1/a", "k").await;
    let b = seed_tenant(&t, "beta", "10.1/b", "k").await;
    let cli = app(&t.db, AppOptions::multi_tenant());
    fixture(&cli, &t, &a).await;
    fixture(&cli, &t, &b).await;
    let q = "query($q: String!, $kinds: [SearchKind!], $first: Int, $after: String) {
        search(query: $q, kinds: $kinds, first: $first, after: $after) {
          totalCount pageInfo { hasNextPage endCursor }
          nodes { kind score snippet paper { title } section { kind } node { name } } } }";
    let d = data(&cli, a.owner, &a, q, json!({ "q": "link prediction" })).await;
    let hits = d["search"]["nodes"].as_array().unwrap();
    assert!(
        hits.iter()
            .any(|h| h["kind"] == "PAPER" && h["snippet"].as_str().unwrap().contains("<mark>")),
        "{hits:?}"
    );
    assert!(hits
        .iter()
        .any(|h| h["kind"] == "SECTION" && h["section"]["kind"] == "ABSTRACT"));
    assert!(hits
        .iter()
        .any(|h| h["kind"] == "NODE" && h["node"]["name"] == "link prediction"));
    let scores: Vec<f64> = hits.iter().map(|h| h["score"].as_f64().unwrap()).collect();
    assert!(
        scores.windows(2).all(|w| w[0] >= w[1]),
        "best first: {scores:?}"
    );
    // Only tenant A's rows, though B holds the same text.
    assert_eq!(
        d["search"]["totalCount"].as_i64().unwrap() as usize,
        hits.len()
    );

    let d = data(
        &cli,
        a.owner,
        &a,
        q,
        json!({ "q": "GraphNte", "kinds": ["NODE"] }),
    )
    .await;
    assert_eq!(
        d["search"]["nodes"][0]["node"]["name"], "GraphNet",
        "fuzzy: typos match"
    );
    let p1 = data(
        &cli,
        a.owner,
        &a,
        q,
        json!({ "q": "link prediction", "first": 1 }),
    )
    .await;
    assert_eq!(p1["search"]["pageInfo"]["hasNextPage"], true);
    let p2 = data(&cli, a.owner, &a, q, json!({ "q": "link prediction", "first": 1, "after": p1["search"]["pageInfo"]["endCursor"] })).await;
    assert_ne!(
        p1["search"]["pageInfo"]["endCursor"], p2["search"]["pageInfo"]["endCursor"],
        "the next hit, not the same: {p1} {p2}"
    );
    let all = data(
        &cli,
        a.owner,
        &a,
        q,
        json!({ "q": "link prediction", "first": 50 }),
    )
    .await;
    assert_eq!(
        all["search"]["nodes"][1], p2["search"]["nodes"][0],
        "page 2 starts where page 1 ended"
    );
    let body = run(&cli, a.owner, &a, q, json!({ "q": "  " })).await;
    assert_eq!(code(&body), Some("BAD_USER_INPUT"));
}

/// SECURITY_TESTS case 13 on the graph: lists nested ten levels deep with a large `first` (and
/// a `first` at the Int maximum) exceed the complexity limit before anything runs.
#[tokio::test]
async fn deeply_nested_lists_with_large_pages_are_refused() {
    let t = TestDb::new().await;
    let a = seed_tenant(&t, "alpha", "10.1/a", "k").await;
    let cli = app(&t.db, AppOptions::multi_tenant());
    for first in [100, i32::MAX] {
        let mut query = String::from("name");
        for _ in 0..10 {
            query = format!("outgoing(first: {first}) {{ nodes {{ target {{ {query} }} }} }}");
        }
        let query = format!("{{ graphNodes(first: {first}) {{ nodes {{ {query} }} }} }}");
        let body = run(&cli, a.owner, &a, &query, json!({})).await;
        assert_eq!(code(&body), Some("LIMIT_EXCEEDED"), "first {first}: {body}");
    }
    // A realistic explorer query fits.
    data(&cli, a.owner, &a, "{ graphNodes(first: 10) { nodes { outgoing(first: 10) { nodes { target { outgoing(first: 10) { nodes { target { name } } } } } } } } }", json!({})).await;
}
