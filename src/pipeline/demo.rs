//! `serve --demo`: the default tenant gets a few papers written for this repository (synthetic
//! abstracts about made-up methods on real-sounding datasets), processed by the offline
//! extractor and reasoned over by the offline rules, before the server starts: a first graph
//! to explore in GraphiQL with no key and no network.
//!
//! The default tenant's extraction and reasoning models are set to `offline` when they are
//! unset (visible in its settings), so the demo never calls a paid model. Seeding twice adds
//! nothing: papers are stored once per content hash, and done sections are skipped.

use anyhow::Context as _;

use super::ingest::{parse, SourceFormat};
use super::jobs::{self, JobKind, DEFAULT_MAX_ATTEMPTS};
use super::worker::Worker;
use super::{store, PaperMeta};
use crate::db::Database;
use crate::ids::{DEFAULT_TENANT, LOCAL_USER};

/// The demo papers, as Markdown.
pub const PAPERS: [(&str, &str); 3] = [
    (
        "sparse-graph-transformer.md",
        include_str!("../../demo/sparse-graph-transformer.md"),
    ),
    (
        "contrastive-protein-embeddings.md",
        include_str!("../../demo/contrastive-protein-embeddings.md"),
    ),
    (
        "graph-transformer-revisited.md",
        include_str!("../../demo/graph-transformer-revisited.md"),
    ),
];

/// Seeds the default tenant (as the local owner) and runs the jobs with `worker` until the
/// queue is empty.
pub async fn seed(db: &Database, worker: &Worker) -> anyhow::Result<()> {
    let s = db.session(DEFAULT_TENANT, LOCAL_USER).await?;
    if s.role().is_none() {
        anyhow::bail!("the local user is not a member of the default tenant");
    }
    s.execute(
        "UPDATE app.tenant_settings SET extraction_model = coalesce(extraction_model, 'offline'),
             reasoning_model = coalesce(reasoning_model, 'offline'), updated_at = now()",
        &[],
    )
    .await?;
    for (name, text) in PAPERS {
        let doc =
            parse(text, SourceFormat::Markdown).with_context(|| format!("demo paper {name}"))?;
        let outcome = store(&s, &doc, SourceFormat::Markdown, &PaperMeta::default()).await?;
        jobs::enqueue(
            &s,
            JobKind::ProcessPaper,
            Some(outcome.paper),
            serde_json::json!({}),
            DEFAULT_MAX_ATTEMPTS,
        )
        .await?;
    }
    s.commit().await?;
    drain(worker).await?;
    let s = db.session(DEFAULT_TENANT, LOCAL_USER).await?;
    jobs::enqueue(
        &s,
        JobKind::Reasoning,
        None,
        serde_json::json!({}),
        DEFAULT_MAX_ATTEMPTS,
    )
    .await?;
    s.commit().await?;
    drain(worker).await?;
    tracing::info!(papers = PAPERS.len(), "demo papers seeded and processed");
    Ok(())
}

async fn drain(worker: &Worker) -> anyhow::Result<()> {
    while let Some((job, ended)) = worker.run_one().await? {
        tracing::debug!(%job, ?ended, "demo job");
    }
    Ok(())
}
