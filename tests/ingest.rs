//! Ingestion: text and Markdown become a paper with sections, once per content hash, through
//! GraphQL (`ingestPaper`) and the command line (`research-graph ingest`).

mod common;

use std::process::Command;

use common::http::{app, code, gql, token, AppOptions};
use common::{seed_tenant, TestDb};
use research_graph::ids::{Role, DEFAULT_TENANT, LOCAL_USER};
use serde_json::json;

const PAPER: &str = "# GraphNet: Message Passing for Link Prediction\n\n## Abstract\nWe propose GraphNet.\n\n\
    ## 1 Introduction\nLinks matter.\n\n## 2 Methods\nWe stack layers.\n\n## 3 Results\nGraphNet reaches 0.91 AUC on Cora.\n";

const INGEST: &str = "mutation($i: IngestPaperInput!) { ingestPaper(input: $i) { created sections
    paper { rowId title abstract sourceKind sections { totalCount nodes { ordinal kind heading } } } } }";

#[tokio::test]
async fn ingesting_the_same_text_twice_stores_it_once() {
    let t = TestDb::new().await;
    let a = seed_tenant(&t, "alpha", "10.1/a", "k").await;
    let viewer = t.add_member(a.tenant, a.owner, Role::Viewer).await;
    let cli = app(&t.db, AppOptions::multi_tenant());
    let h = [("x-tenant-id", a.tenant.to_string())];
    let (_, body) = gql(
        &cli,
        "/graphql",
        Some(&token(a.owner)),
        &h,
        INGEST,
        json!({ "i": { "content": PAPER, "format": "MARKDOWN", "year": 2024 } }),
    )
    .await;
    let first = &body["data"]["ingestPaper"];
    assert_eq!(first["created"], true, "{body}");
    assert_eq!(first["sections"], 4);
    assert_eq!(
        first["paper"]["title"],
        "GraphNet: Message Passing for Link Prediction"
    );
    assert_eq!(first["paper"]["abstract"], "We propose GraphNet.");
    assert_eq!(first["paper"]["sourceKind"], "MARKDOWN");
    assert_eq!(
        first["paper"]["sections"]["nodes"][1],
        json!({ "ordinal": 1, "kind": "INTRODUCTION", "heading": "1 Introduction" })
    );

    // The same text with other line endings: nothing new.
    let again = PAPER.replace('\n', "\r\n");
    let (_, body) = gql(
        &cli,
        "/graphql",
        Some(&token(a.owner)),
        &h,
        INGEST,
        json!({ "i": { "content": again, "format": "MARKDOWN" } }),
    )
    .await;
    let second = &body["data"]["ingestPaper"];
    assert_eq!(
        (second["created"].clone(), second["sections"].clone()),
        (json!(false), json!(0))
    );
    assert_eq!(second["paper"]["rowId"], first["paper"]["rowId"]);
    let su = t.superuser().await;
    let (papers, sections): (i64, i64) = {
        let r = su
            .query_one(
                "SELECT (SELECT count(*) FROM app.papers WHERE tenant_id = $1), \
                        (SELECT count(*) FROM app.paper_sections WHERE tenant_id = $1)",
                &[&a.tenant.0],
            )
            .await
            .unwrap();
        (r.get(0), r.get(1))
    };
    assert_eq!(
        (papers, sections),
        (2, 5),
        "the seed's paper and section, and this one with four"
    );

    for (input, expected) in [
        (json!({ "content": "  \n " }), "BAD_USER_INPUT"),
        (
            json!({ "content": "Another paper\n\nAbstract\nText.", "doi": "10.1/a" }),
            "BAD_USER_INPUT",
        ),
    ] {
        let (_, body) = gql(
            &cli,
            "/graphql",
            Some(&token(a.owner)),
            &h,
            INGEST,
            json!({ "i": input }),
        )
        .await;
        assert_eq!(code(&body), Some(expected), "{body}");
    }
    let (_, body) = gql(
        &cli,
        "/graphql",
        Some(&token(viewer)),
        &h,
        INGEST,
        json!({ "i": { "content": "A viewer's paper\n\nText." } }),
    )
    .await;
    assert_eq!(code(&body), Some("FORBIDDEN"), "{body}");
}

#[tokio::test]
async fn the_command_line_ingests_files_with_a_summary() {
    let t = TestDb::new().await;
    t.superuser()
        .await
        .execute(
            "INSERT INTO app.tenant_users (tenant_id, user_id, role) VALUES ($1, $2, 'owner')",
            &[&DEFAULT_TENANT.0, &LOCAL_USER.0],
        )
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let md = dir.path().join("graphnet.md");
    let txt = dir.path().join("study.txt");
    let pdf = dir.path().join("scan.pdf");
    std::fs::write(&md, PAPER).unwrap();
    std::fs::write(&txt, "A Study of Graphs\n\nABSTRACT\nGraphs are everywhere.\n\nI. INTRODUCTION\nWe look at graphs.\n").unwrap();
    std::fs::write(&pdf, b"%PDF-1.4").unwrap();
    let config = t.app_config();
    let host = match &config.get_hosts()[0] {
        tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
        tokio_postgres::config::Host::Tcp(h) => h.clone(),
    };
    let url = format!("host={host} port=5432 user=rg_app dbname={}", t.name);
    let run = |files: &[&std::path::Path]| {
        Command::new(env!("CARGO_BIN_EXE_research-graph"))
            .arg("ingest")
            .args(files)
            .args(["--tenant", "default"])
            .env("DATABASE_URL", &url)
            .env_remove("ADMIN_DATABASE_URL")
            .output()
            .unwrap()
    };
    let out = run(&[&md, &txt, &pdf]);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(!out.status.success(), "a failed file fails the command");
    assert!(
        stdout.contains("2 ingested, 0 unchanged, 1 failed"),
        "{stdout}"
    );
    assert!(stderr.contains("the PDF cannot be read"), "{stderr}");
    assert!(
        stderr.contains("ingested") && stderr.contains("(4 sections)"),
        "{stderr}"
    );
    let out = run(&[&md, &txt]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("0 ingested, 2 unchanged, 0 failed"));
    let kinds: Vec<String> = t
        .superuser()
        .await
        .query(
            "SELECT s.kind FROM app.paper_sections s JOIN app.papers p ON p.id = s.paper_id \
             WHERE p.tenant_id = $1 AND p.source_kind = 'text' ORDER BY s.ordinal",
            &[&DEFAULT_TENANT.0],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(kinds, ["abstract", "introduction"]);
}
