//! What a job does, stage by stage, in short tenant sessions (never one long transaction, never
//! a model call inside a transaction).
//!
//! `process_paper`: read the paper's sections and which are already done for the tenant's
//! extraction model and prompt version (the idempotency record, `section_extractions`); extract
//! each remaining section (the model through [`MeteredLlm`], or the offline rules), validate,
//! and persist it in one transaction together with its record and the job's progress; then
//! propose merge candidates for the paper's nodes. `reasoning`: load the scope's subgraph,
//! propose insights (the model, or the offline rules), keep those whose support exists, store
//! them once per fingerprint.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use serde_json::json;
use tokio::task::JoinSet;
use uuid::Uuid;

use super::extract::{self, ModelCall, SectionFailure};
use super::jobs::{self, JobKind};
use super::model::{Provenance, SectionExtraction};
use super::persist::{self, SectionRef};
use super::reason::{self, GraphSnapshot, SnapEdge, SnapNode, SnapQuote};
use super::{resolve, rules, validate};
use crate::crypto::KeyRing;
use crate::db::{ClaimedJob, Database, DbError, TenantSession};
use crate::ids::UserId;
use crate::llm::{ApiKey, LlmRequest, LlmResponse};
use crate::tenants::settings::{self, ExecutionMode, SettingsCache, TenantSettings};
use crate::usage::calls::{CallContext, CallError, MeteredLlm};
use crate::usage::pricing::Pricing;

/// Why an attempt failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobError {
    /// What went wrong, for `lastError`.
    pub message: String,
    /// A later attempt may succeed (the provider or the database was unavailable).
    pub retryable: bool,
    /// The job is no longer this worker's (cancelled, or taken over after a stall): nothing
    /// is to be recorded.
    pub lease_lost: bool,
}

impl JobError {
    /// An error no retry can fix.
    pub fn fatal(message: impl Into<String>) -> JobError {
        JobError {
            message: message.into(),
            retryable: false,
            lease_lost: false,
        }
    }

    /// The job was cancelled or taken over while this worker ran it.
    pub fn lease_lost() -> JobError {
        JobError {
            message: "the job was cancelled or taken over by another worker".to_owned(),
            retryable: false,
            lease_lost: true,
        }
    }

    /// An error a later attempt may not have.
    pub fn retryable(message: impl Into<String>) -> JobError {
        JobError {
            message: message.into(),
            retryable: true,
            lease_lost: false,
        }
    }
}

impl From<DbError> for JobError {
    fn from(e: DbError) -> JobError {
        JobError {
            message: e.to_string(),
            retryable: e.is_transient(),
            lease_lost: false,
        }
    }
}

/// The operator's default models, used where a tenant's settings leave them unset.
#[derive(Clone, Debug)]
pub struct ModelDefaults {
    /// Extraction model.
    pub extraction: String,
    /// Reasoning model.
    pub reasoning: String,
}

/// Everything jobs need.
pub struct Pipeline {
    db: Database,
    llm: Arc<MeteredLlm>,
    pricing: Arc<Pricing>,
    key_ring: Option<Arc<KeyRing>>,
    platform_keys: HashMap<String, ApiKey>,
    defaults: ModelDefaults,
    settings: SettingsCache,
    section_concurrency: usize,
}

/// The most nodes a reasoning snapshot holds.
const MAX_SNAPSHOT_NODES: i64 = 400;
/// The most edges a reasoning snapshot holds.
const MAX_SNAPSHOT_EDGES: i64 = 1200;
/// The most insights asked of one reasoning call.
const MAX_INSIGHTS: usize = 20;
/// The most evidence quotes per edge shown to reasoning.
const MAX_QUOTES_PER_EDGE: i32 = 8;

impl Pipeline {
    /// A pipeline calling models through `llm`, priced by `pricing`; `platform_keys` maps a
    /// provider name (`gemini`, `openai`) to the platform's key for hosted mode.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        db: Database,
        llm: Arc<MeteredLlm>,
        pricing: Arc<Pricing>,
        key_ring: Option<Arc<KeyRing>>,
        platform_keys: HashMap<String, ApiKey>,
        defaults: ModelDefaults,
        section_concurrency: usize,
    ) -> Pipeline {
        Pipeline {
            db,
            llm,
            pricing,
            key_ring,
            platform_keys,
            defaults,
            settings: SettingsCache::new(settings::SETTINGS_TTL, 10_000),
            section_concurrency: section_concurrency.max(1),
        }
    }

    /// Runs one attempt of the claimed job as `user`; `worker` is the lease holder's name.
    pub async fn run_job(
        &self,
        claim: &ClaimedJob,
        user: UserId,
        worker: &str,
    ) -> Result<(), JobError> {
        let s = self.db.session(claim.tenant, user).await?;
        if s.role().is_none_or(|r| r == crate::ids::Role::Viewer) {
            return Err(JobError::fatal(
                "the member who queued this job may no longer write to the tenant",
            ));
        }
        let job = jobs::get(&s, claim.job)
            .await?
            .ok_or_else(|| JobError::fatal("the job is not visible to its owner"))?;
        let settings = settings::load(&s, &self.settings)
            .await?
            .ok_or_else(|| JobError::fatal("the tenant has no settings"))?;
        let tenant_key = self.tenant_key(&s, &settings).await?;
        s.commit().await?;
        let run = Run {
            pipeline: self,
            claim: *claim,
            user,
            worker: worker.to_owned(),
            settings,
            tenant_key,
        };
        match job.kind {
            JobKind::ProcessPaper => {
                let paper = job
                    .paper_id
                    .ok_or_else(|| JobError::fatal("the job names no paper"))?;
                run.process_paper(paper).await
            }
            JobKind::Reasoning => {
                let paper = job
                    .payload
                    .get("paperId")
                    .and_then(|v| v.as_str())
                    .and_then(|s| s.parse::<Uuid>().ok());
                run.reason(paper).await
            }
        }
    }

    async fn tenant_key(
        &self,
        s: &TenantSession,
        settings: &TenantSettings,
    ) -> Result<Option<ApiKey>, JobError> {
        if settings.execution_mode != ExecutionMode::ByoKey || !settings.has_api_key {
            return Ok(None);
        }
        let Some(ring) = &self.key_ring else {
            return Err(JobError::fatal(
                "this tenant uses its own API key, and no encryption key is configured to read it",
            ));
        };
        match crate::tenants::keys::tenant_api_key(s, ring).await {
            Ok(Some((_, key))) => Ok(Some(ApiKey::new(key.expose()))),
            Ok(None) => Ok(None),
            Err(e) => Err(JobError::fatal(format!(
                "the tenant's API key cannot be read: {e}"
            ))),
        }
    }

    /// The provider serving `model`, or an error naming the unknown model.
    fn provider_of(&self, model: &str) -> Result<String, JobError> {
        self.pricing
            .model(model)
            .map(|p| p.provider.clone())
            .ok_or_else(|| JobError::fatal(format!("unknown model {model:?} (not in pricing)")))
    }
}

/// One attempt of one job.
struct Run<'a> {
    pipeline: &'a Pipeline,
    claim: ClaimedJob,
    user: UserId,
    worker: String,
    settings: TenantSettings,
    tenant_key: Option<ApiKey>,
}

/// The paper a section belongs to: its title (shown to the model) and its whole text (where
/// abbreviations are defined).
struct PaperText {
    title: String,
    text: String,
}

/// A section still to extract.
#[derive(Clone)]
struct Pending {
    section: SectionRef,
    heading: Option<String>,
    content: String,
}

/// A progress change, added to the job's progress in the same transaction as the work.
#[derive(Default)]
struct Delta {
    sections_done: i32,
    sections_failed: i32,
    entities: i32,
    relations: i32,
    mentions: i32,
    dropped: i32,
    merge_candidates: i32,
    insights: i32,
    cost_micros: i64,
    error: Option<String>,
}

const BUMP: &str = "\
UPDATE app.jobs SET progress = progress || jsonb_build_object(
        'sectionsDone', coalesce((progress->>'sectionsDone')::int, 0) + $3,
        'sectionsFailed', coalesce((progress->>'sectionsFailed')::int, 0) + $4,
        'entities', coalesce((progress->>'entities')::int, 0) + $5,
        'relations', coalesce((progress->>'relations')::int, 0) + $6,
        'mentions', coalesce((progress->>'mentions')::int, 0) + $7,
        'dropped', coalesce((progress->>'dropped')::int, 0) + $8,
        'mergeCandidates', coalesce((progress->>'mergeCandidates')::int, 0) + $9,
        'insights', coalesce((progress->>'insights')::int, 0) + $10,
        'costMicros', coalesce((progress->>'costMicros')::bigint, 0) + $11,
        'errors', CASE WHEN $12::text IS NULL THEN coalesce(progress->'errors', '[]')
                  ELSE (SELECT coalesce(jsonb_agg(e ORDER BY n), '[]') FROM (
                          SELECT e, n FROM jsonb_array_elements(
                              coalesce(progress->'errors', '[]') || to_jsonb($12::text))
                              WITH ORDINALITY AS x(e, n)
                          ORDER BY n DESC LIMIT 20) r) END),
    updated_at = now()
WHERE id = $1 AND status = 'running' AND lease_owner = $2";

impl Run<'_> {
    async fn session(&self) -> Result<TenantSession, JobError> {
        Ok(self
            .pipeline
            .db
            .session(self.claim.tenant, self.user)
            .await?)
    }

    /// This run's per-section database handle.
    fn section_run(&self) -> SectionRun {
        SectionRun {
            db: self.pipeline.db.clone(),
            claim: self.claim,
            user: self.user,
            worker: self.worker.clone(),
        }
    }

    /// Adds `delta` to the job's progress; fails when the job is no longer this worker's.
    async fn bump(&self, s: &TenantSession, delta: &Delta) -> Result<(), JobError> {
        self.section_run().bump(s, delta).await
    }

    async fn set_stage(&self, stage: &str, progress: serde_json::Value) -> Result<(), JobError> {
        let s = self.session().await?;
        let n = s
            .execute(
                "UPDATE app.jobs SET stage = $3, progress = progress || $4, updated_at = now()
                 WHERE id = $1 AND status = 'running' AND lease_owner = $2",
                &[&self.claim.job, &self.worker, &stage, &progress],
            )
            .await?;
        s.commit().await?;
        if n == 1 {
            Ok(())
        } else {
            Err(JobError::lease_lost())
        }
    }

    fn call_context(&self, stage: &str, key_suffix: String) -> CallContext {
        CallContext {
            tenant: self.claim.tenant,
            user: self.user,
            job_id: Some(self.claim.job),
            stage: stage.to_owned(),
            agent: String::new(),
            idempotency_key: key_suffix,
            platform_key: None,
            tenant_key: self.tenant_key.clone(),
        }
    }

    fn platform_key(&self, provider: &str) -> Option<ApiKey> {
        self.pipeline.platform_keys.get(provider).cloned()
    }

    async fn process_paper(&self, paper: Uuid) -> Result<(), JobError> {
        let model = self
            .settings
            .extraction_model
            .clone()
            .unwrap_or_else(|| self.pipeline.defaults.extraction.clone());
        let provider = self.pipeline.provider_of(&model)?;
        let offline = provider == "offline";
        let provenance = Provenance {
            agent: if offline {
                rules::RULES_AGENT
            } else {
                extract::EXTRACT_AGENT
            }
            .to_owned(),
            model: model.clone(),
            prompt_version: if offline {
                rules::RULES_VERSION
            } else {
                extract::prompt_version(self.settings.gleaning_enabled)
            }
            .to_owned(),
        };

        let s = self.session().await?;
        let title: String = s
            .query_opt("SELECT title FROM app.papers WHERE id = $1", &[&paper])
            .await?
            .map(|r| r.get(0))
            .ok_or_else(|| JobError::fatal("the paper no longer exists"))?;
        let rows = s
            .query(
                "SELECT s.id, s.heading, s.content, s.content_hash, x.status, x.entities,
                        x.relations, x.mentions, x.dropped
                 FROM app.paper_sections s
                 LEFT JOIN app.section_extractions x
                   ON x.tenant_id = s.tenant_id AND x.section_id = s.id AND x.model = $2
                  AND x.prompt_version = $3 AND x.content_hash = s.content_hash
                 WHERE s.paper_id = $1 AND s.kind <> 'references'
                 ORDER BY s.ordinal",
                &[&paper, &model, &provenance.prompt_version],
            )
            .await?;
        s.commit().await?;
        let total = rows.len() as i32;
        let mut start = json!({ "sectionsTotal": total, "sectionsDone": 0, "sectionsFailed": 0,
            "entities": 0, "relations": 0, "mentions": 0, "dropped": 0 });
        let mut pending = Vec::new();
        for r in &rows {
            match r.get::<_, Option<&str>>(4) {
                Some(status) => {
                    let field = if status == "done" {
                        "sectionsDone"
                    } else {
                        "sectionsFailed"
                    };
                    start[field] = json!(start[field].as_i64().unwrap_or(0) + 1);
                    for (i, f) in [(5, "entities"), (6, "relations"), (7, "mentions")] {
                        start[f] =
                            json!(start[f].as_i64().unwrap_or(0) + r.get::<_, i32>(i) as i64);
                    }
                    let dropped: serde_json::Value = r.get(8);
                    let sum: i64 = dropped
                        .as_object()
                        .map(|o| o.values().filter_map(|v| v.as_i64()).sum())
                        .unwrap_or(0);
                    start["dropped"] = json!(start["dropped"].as_i64().unwrap_or(0) + sum);
                }
                None => pending.push(Pending {
                    section: SectionRef {
                        id: r.get(0),
                        content_hash: r.get(3),
                    },
                    heading: r.get(1),
                    content: r.get(2),
                }),
            }
        }
        self.set_stage("extract", start).await?;

        let mut tasks = JoinSet::new();
        // Abbreviations are read from the whole paper: defined once, used in every section.
        let mut paper_text = title.clone();
        for r in &rows {
            paper_text.push_str("\n\n");
            paper_text.push_str(r.get::<_, &str>(2));
        }
        let text = Arc::new(PaperText {
            title,
            text: paper_text,
        });
        let provenance = Arc::new(provenance);
        // The context every section's calls share (its agent and key are set per call).
        let base = CallContext {
            platform_key: self.platform_key(&provider),
            ..self.call_context("extract", String::new())
        };
        let mut first_error: Option<JobError> = None;
        // Sections run concurrently (bounded), each persisted on its own; the first retryable
        // failure stops new sections from starting, and the attempt fails once the running
        // ones have finished (their work is kept).
        let mut queue = pending.into_iter();
        loop {
            while first_error.is_none() && tasks.len() < self.pipeline.section_concurrency {
                let Some(p) = queue.next() else { break };
                tasks.spawn(self.section_work(
                    p,
                    Arc::clone(&text),
                    Arc::clone(&provenance),
                    base.clone(),
                ));
            }
            match tasks.join_next().await {
                None => break,
                Some(Ok(Ok(()))) => {}
                Some(Ok(Err(e))) => {
                    if first_error.is_none() {
                        first_error = Some(e);
                    }
                }
                Some(Err(e)) => {
                    if first_error.is_none() {
                        first_error =
                            Some(JobError::retryable(format!("a section task failed: {e}")));
                    }
                }
            }
        }
        if let Some(e) = first_error {
            return Err(e);
        }
        self.propose_merges(paper).await
    }

    /// Extracts, validates and persists one section.
    fn section_work(
        &self,
        p: Pending,
        paper: Arc<PaperText>,
        provenance: Arc<Provenance>,
        base: CallContext,
    ) -> impl Future<Output = Result<(), JobError>> + Send + 'static {
        let run = self.section_run();
        let llm = Arc::clone(&self.pipeline.llm);
        let claim = self.claim;
        let gleaning = self.settings.gleaning_enabled;
        let threshold = self.settings.confidence_threshold;
        async move {
            let offline = provenance.agent == rules::RULES_AGENT;
            let cost = Arc::new(AtomicI64::new(0));
            let outcome = if offline {
                Ok(rules::extract_rules(&p.content))
            } else {
                let caller = Caller {
                    llm,
                    base,
                    key_prefix: format!("{}:{}:{}", claim.job, claim.attempt, p.section.id),
                    cost: Arc::clone(&cost),
                };
                extract::extract_section(
                    &caller,
                    &provenance.model,
                    &extract::SectionInput {
                        title: &paper.title,
                        heading: p.heading.as_deref(),
                        text: &p.content,
                    },
                    gleaning,
                )
                .await
                .map(|run| run.raw)
            };
            let cost = cost.load(Ordering::Relaxed);
            match outcome {
                Ok(raw) => {
                    let extraction =
                        validate::validate_in_context(&raw, &p.content, &paper.text, threshold);
                    run.persist(&p.section, &extraction, &provenance, cost)
                        .await
                }
                Err(failure) => run.fail(&p.section, &provenance, failure, cost).await,
            }
        }
    }

    /// Proposes merge candidates between the paper's nodes and the tenant's other nodes of the
    /// same type with similar names, or whose name is the other's alias (pg_trgm finds similar
    /// names through the name index; the resolution
    /// rules score them). Candidates are for review: nothing is merged.
    async fn propose_merges(&self, paper: Uuid) -> Result<(), JobError> {
        self.set_stage("resolve", json!({})).await?;
        let s = self.session().await?;
        let rows = s
            .query(
                "WITH mine AS (
                     SELECT DISTINCT n.id, n.name, n.node_type, n.key, n.aliases
                     FROM app.paper_sections s
                     JOIN app.entity_mentions m ON m.tenant_id = s.tenant_id AND m.section_id = s.id
                     JOIN app.nodes n ON n.tenant_id = m.tenant_id AND n.id = m.node_id
                     WHERE s.paper_id = $1)
                 SELECT DISTINCT mine.id, mine.name, mine.node_type, mine.key,
                        c.id, c.name, c.node_type, c.key
                 FROM mine CROSS JOIN LATERAL (
                     (SELECT o.id, o.name, o.node_type, o.key FROM app.nodes o
                      WHERE o.tenant_id = app.tenant_id() AND o.node_type = mine.node_type
                        AND o.id <> mine.id AND o.name % mine.name
                      ORDER BY similarity(o.name, mine.name) DESC, o.id
                      LIMIT 10)
                     UNION ALL
                     (SELECT o.id, o.name, o.node_type, o.key FROM app.nodes o
                      WHERE o.tenant_id = app.tenant_id() AND o.node_type = mine.node_type
                        AND o.id <> mine.id
                        AND (mine.name = ANY(o.aliases) OR o.name = ANY(mine.aliases))
                      ORDER BY o.id
                      LIMIT 10)) c",
                &[&paper],
            )
            .await?;
        let mut new = Vec::new();
        let mut existing = Vec::new();
        for r in &rows {
            let a = resolve::NodeRef {
                id: r.get(0),
                name: r.get(1),
                node_type: r.get(2),
                key: r.get(3),
            };
            if !new.iter().any(|n: &resolve::NodeRef| n.id == a.id) {
                new.push(a);
            }
            let b = resolve::NodeRef {
                id: r.get(4),
                name: r.get(5),
                node_type: r.get(6),
                key: r.get(7),
            };
            if !existing.iter().any(|n: &resolve::NodeRef| n.id == b.id) {
                existing.push(b);
            }
        }
        let candidates =
            resolve::duplicate_candidates(&new, &existing, self.settings.similarity_threshold);
        let a: Vec<Uuid> = candidates.iter().map(|c| c.a).collect();
        let b: Vec<Uuid> = candidates.iter().map(|c| c.b).collect();
        let scores: Vec<f64> = candidates.iter().map(|c| c.score).collect();
        let reasons: Vec<&str> = candidates.iter().map(|c| c.reason.as_str()).collect();
        let inserted = if candidates.is_empty() {
            0
        } else {
            s.execute(
                "INSERT INTO app.merge_candidates (tenant_id, node_a, node_b, score, reason, job_id)
                 SELECT app.tenant_id(), a, b, sc, r, $5
                 FROM unnest($1::uuid[], $2::uuid[], $3::float8[], $4::text[]) AS u (a, b, sc, r)
                 ON CONFLICT (tenant_id, node_a, node_b) DO NOTHING",
                &[&a, &b, &scores, &reasons, &self.claim.job],
            )
            .await?
        };
        self.bump(
            &s,
            &Delta {
                merge_candidates: inserted as i32,
                ..Delta::default()
            },
        )
        .await?;
        s.commit().await?;
        Ok(())
    }

    async fn reason(&self, paper: Option<Uuid>) -> Result<(), JobError> {
        let model = self
            .settings
            .reasoning_model
            .clone()
            .unwrap_or_else(|| self.pipeline.defaults.reasoning.clone());
        let provider = self.pipeline.provider_of(&model)?;
        let offline = provider == "offline";
        self.set_stage("reason", json!({})).await?;
        let s = self.session().await?;
        let snapshot = load_snapshot(&s, paper, self.settings.reasoning_max_depth).await?;
        s.commit().await?;
        let (insights, version, cost) = if offline {
            (
                reason::rule_insights(&snapshot),
                reason::RULES_REASON_VERSION,
                0,
            )
        } else {
            let cost = Arc::new(AtomicI64::new(0));
            let caller = Caller {
                llm: Arc::clone(&self.pipeline.llm),
                base: CallContext {
                    platform_key: self.platform_key(&provider),
                    ..self.call_context("reason", String::new())
                },
                key_prefix: format!("{}:{}", self.claim.job, self.claim.attempt),
                cost: Arc::clone(&cost),
            };
            let insights = reason_with_model(&caller, &model, &snapshot).await?;
            (
                insights,
                reason::REASON_PROMPT_VERSION,
                cost.load(Ordering::Relaxed),
            )
        };
        let s = self.session().await?;
        let mut stored = 0;
        for insight in &insights {
            let row = s
                .query_opt(
                    "INSERT INTO app.inferred_insights (tenant_id, insight_type, statement,
                         rationale, confidence, model, prompt_version, job_id, fingerprint)
                     VALUES (app.tenant_id(), $1, $2, $3, $4, $5, $6, $7, $8)
                     ON CONFLICT (tenant_id, fingerprint) DO NOTHING RETURNING id",
                    &[
                        &insight.insight_type,
                        &insight.statement,
                        &insight.rationale,
                        &insight.confidence,
                        &model,
                        &version,
                        &self.claim.job,
                        &insight.fingerprint(),
                    ],
                )
                .await?;
            let Some(row) = row else { continue };
            let id: Uuid = row.get(0);
            s.execute(
                "INSERT INTO app.insight_nodes (tenant_id, insight_id, node_id)
                 SELECT app.tenant_id(), $1, n FROM unnest($2::uuid[]) AS n
                 ON CONFLICT DO NOTHING",
                &[&id, &insight.nodes],
            )
            .await?;
            s.execute(
                "INSERT INTO app.insight_edges (tenant_id, insight_id, edge_id)
                 SELECT app.tenant_id(), $1, e FROM unnest($2::uuid[]) AS e
                 ON CONFLICT DO NOTHING",
                &[&id, &insight.edges],
            )
            .await?;
            stored += 1;
        }
        self.bump(
            &s,
            &Delta {
                insights: stored,
                cost_micros: cost,
                ..Delta::default()
            },
        )
        .await?;
        s.commit().await?;
        Ok(())
    }
}

/// Asks the model for insights; one repair when the answer does not parse.
async fn reason_with_model(
    caller: &Caller,
    model: &str,
    snapshot: &GraphSnapshot,
) -> Result<Vec<reason::ProposedInsight>, JobError> {
    let handles = reason::Handles::new(snapshot);
    let request = reason::reasoning_request(model, snapshot, MAX_INSIGHTS);
    let first = caller.call_model("reasoner", &request).await;
    let bad = match first {
        Ok(response) => match reason::parse_insights(&response.json, &handles, snapshot) {
            Ok((insights, _)) => return Ok(insights),
            Err(e) => (response.text, e.to_string()),
        },
        Err(CallError::Llm(crate::llm::LlmError::MalformedOutput { text, .. })) => {
            (text, "the output is not valid JSON".to_owned())
        }
        Err(e) => return Err(call_error(e)),
    };
    let repair = reason::repair_request(model, &request, &bad.0, &bad.1);
    match caller.call_model("reasoner-repair", &repair).await {
        Ok(response) => match reason::parse_insights(&response.json, &handles, snapshot) {
            Ok((insights, _)) => Ok(insights),
            Err(e) => Err(JobError::fatal(format!(
                "the reasoning output is still invalid after a repair: {e}"
            ))),
        },
        Err(CallError::Llm(crate::llm::LlmError::MalformedOutput { .. })) => Err(JobError::fatal(
            "the reasoning output is still not JSON after a repair",
        )),
        Err(e) => Err(call_error(e)),
    }
}

/// A model-call error as a job error: transient provider or database trouble is retryable.
fn call_error(e: CallError) -> JobError {
    JobError {
        message: e.to_string(),
        retryable: e.is_retryable(),
        lease_lost: false,
    }
}

/// Loads the reasoning scope: the whole graph (heaviest edges first, bounded), or the paper's
/// entities and what lies within `depth` hops of them. Rejected relations are left out.
async fn load_snapshot(
    s: &TenantSession,
    paper: Option<Uuid>,
    depth: i32,
) -> Result<GraphSnapshot, DbError> {
    let edge_rows = match paper {
        None => {
            s.query(
                "SELECT e.id, e.source_id, e.target_id, e.relation_type, e.description,
                        e.confidence, e.review_status, e.weight
                 FROM app.edges e WHERE e.review_status <> 'rejected'
                 ORDER BY e.weight DESC, e.confidence DESC, e.id LIMIT $1",
                &[&MAX_SNAPSHOT_EDGES],
            )
            .await?
        }
        Some(paper) => {
            s.query(
                "WITH RECURSIVE seed AS (
                     SELECT DISTINCT m.node_id AS id FROM app.paper_sections s
                     JOIN app.entity_mentions m ON m.tenant_id = s.tenant_id AND m.section_id = s.id
                     WHERE s.paper_id = $1),
                 reach (id, d) AS (
                     SELECT id, 0 FROM seed
                     UNION
                     SELECT CASE WHEN e.source_id = r.id THEN e.target_id ELSE e.source_id END,
                            r.d + 1
                     FROM reach r JOIN app.edges e
                       ON (e.source_id = r.id OR e.target_id = r.id)
                      AND e.review_status <> 'rejected'
                     WHERE r.d < $2),
                 nodes AS (SELECT DISTINCT id FROM reach LIMIT $3)
                 SELECT e.id, e.source_id, e.target_id, e.relation_type, e.description,
                        e.confidence, e.review_status, e.weight
                 FROM app.edges e
                 WHERE e.review_status <> 'rejected'
                   AND e.source_id IN (SELECT id FROM nodes) AND e.target_id IN (SELECT id FROM nodes)
                 ORDER BY e.weight DESC, e.confidence DESC, e.id LIMIT $4",
                &[&paper, &depth.max(1), &MAX_SNAPSHOT_NODES, &MAX_SNAPSHOT_EDGES],
            )
            .await?
        }
    };
    let edge_ids: Vec<Uuid> = edge_rows.iter().map(|r| r.get(0)).collect();
    let mut node_ids: Vec<Uuid> = edge_rows
        .iter()
        .flat_map(|r| [r.get::<_, Uuid>(1), r.get::<_, Uuid>(2)])
        .collect();
    if let Some(paper) = paper {
        let seeds = s
            .query(
                "SELECT DISTINCT m.node_id FROM app.paper_sections s
                 JOIN app.entity_mentions m ON m.tenant_id = s.tenant_id AND m.section_id = s.id
                 WHERE s.paper_id = $1 LIMIT $2",
                &[&paper, &MAX_SNAPSHOT_NODES],
            )
            .await?;
        node_ids.extend(seeds.iter().map(|r| r.get::<_, Uuid>(0)));
    } else {
        let lonely = s
            .query(
                "SELECT n.id FROM app.nodes n WHERE n.node_type IN ('Task', 'Dataset')
                 ORDER BY n.created_at, n.id LIMIT $1",
                &[&MAX_SNAPSHOT_NODES],
            )
            .await?;
        node_ids.extend(lonely.iter().map(|r| r.get::<_, Uuid>(0)));
    }
    node_ids.sort();
    node_ids.dedup();
    let nodes = s
        .query(
            "SELECT n.id, n.name, n.node_type, n.aliases FROM app.nodes n WHERE n.id = ANY($1)
             ORDER BY n.id",
            &[&node_ids],
        )
        .await?;
    let evidence = s
        .query(
            "SELECT ev.edge_id, array_agg(DISTINCT sec.paper_id),
                    (array_agg(sec.paper_id ORDER BY ev.created_at, ev.id))[1:$2],
                    (array_agg(ev.quote ORDER BY ev.created_at, ev.id))[1:$2]
             FROM app.edge_evidence ev
             JOIN app.paper_sections sec ON sec.tenant_id = ev.tenant_id AND sec.id = ev.section_id
             WHERE ev.edge_id = ANY($1) GROUP BY ev.edge_id",
            &[&edge_ids, &MAX_QUOTES_PER_EDGE],
        )
        .await?;
    let mut by_edge: HashMap<Uuid, (Vec<Uuid>, Vec<SnapQuote>)> = evidence
        .iter()
        .map(|r| {
            let papers: Vec<Uuid> = r.get(2);
            let quotes: Vec<String> = r.get(3);
            let quotes = papers
                .into_iter()
                .zip(quotes)
                .map(|(paper, text)| SnapQuote { paper, text })
                .collect();
            (r.get(0), (r.get(1), quotes))
        })
        .collect();
    Ok(GraphSnapshot {
        nodes: nodes
            .iter()
            .map(|r| SnapNode {
                id: r.get(0),
                name: r.get(1),
                node_type: r.get(2),
                aliases: r.get(3),
            })
            .collect(),
        edges: edge_rows
            .iter()
            .map(|r| {
                let (papers, quotes) = by_edge.remove(&r.get::<_, Uuid>(0)).unwrap_or_default();
                SnapEdge {
                    id: r.get(0),
                    source: r.get(1),
                    target: r.get(2),
                    relation_type: r.get(3),
                    description: r.get(4),
                    confidence: r.get(5),
                    review_status: r.get(6),
                    weight: r.get(7),
                    papers,
                    quotes,
                }
            })
            .collect(),
    })
}

/// One section's database work, detached from the run so it can be spawned.
struct SectionRun {
    db: Database,
    claim: ClaimedJob,
    user: UserId,
    worker: String,
}

impl SectionRun {
    /// Adds `delta` to the job's progress; fails when the job is no longer this worker's.
    async fn bump(&self, s: &TenantSession, delta: &Delta) -> Result<(), JobError> {
        let n = s
            .execute(
                BUMP,
                &[
                    &self.claim.job,
                    &self.worker,
                    &delta.sections_done,
                    &delta.sections_failed,
                    &delta.entities,
                    &delta.relations,
                    &delta.mentions,
                    &delta.dropped,
                    &delta.merge_candidates,
                    &delta.insights,
                    &delta.cost_micros,
                    &delta.error,
                ],
            )
            .await?;
        if n == 1 {
            Ok(())
        } else {
            Err(JobError::lease_lost())
        }
    }

    /// Persists a section with its progress in one transaction; a deadlock is retried.
    async fn persist(
        &self,
        section: &SectionRef,
        extraction: &SectionExtraction,
        provenance: &Provenance,
        cost: i64,
    ) -> Result<(), JobError> {
        let mut tries = 0;
        loop {
            tries += 1;
            let result = async {
                let s = self.db.session(self.claim.tenant, self.user).await?;
                persist::persist_section(&s, section, extraction, provenance, Some(self.claim.job))
                    .await?;
                self.bump(
                    &s,
                    &Delta {
                        sections_done: 1,
                        entities: extraction.entities.len() as i32,
                        relations: extraction.relations.len() as i32,
                        mentions: extraction.mentions.len() as i32,
                        dropped: extraction.dropped.total() as i32,
                        cost_micros: cost,
                        ..Delta::default()
                    },
                )
                .await?;
                s.commit().await?;
                Ok::<_, JobError>(())
            }
            .await;
            match result {
                Err(e) if e.retryable && tries < 3 && e.message.contains("deadlock") => continue,
                other => return other,
            }
        }
    }

    /// Records a section that failed; a retryable failure fails the attempt instead.
    async fn fail(
        &self,
        section: &SectionRef,
        provenance: &Provenance,
        failure: SectionFailure,
        cost: i64,
    ) -> Result<(), JobError> {
        if failure.retryable {
            return Err(JobError::retryable(failure.reason));
        }
        let s = self.db.session(self.claim.tenant, self.user).await?;
        let reason = format!("section {}: {}", section.id, failure.reason);
        persist::record_failure(
            &s,
            section,
            provenance,
            &failure.reason,
            Some(self.claim.job),
        )
        .await?;
        self.bump(
            &s,
            &Delta {
                sections_failed: 1,
                cost_micros: cost,
                error: Some(reason),
                ..Delta::default()
            },
        )
        .await?;
        s.commit().await?;
        Ok(())
    }
}

/// The metered model, as the extraction and reasoning stages call it: each step of a section
/// is one call with its own agent name and idempotency key (job, attempt, section, step).
struct Caller {
    llm: Arc<MeteredLlm>,
    base: CallContext,
    key_prefix: String,
    cost: Arc<AtomicI64>,
}

impl Caller {
    async fn call_model(&self, step: &str, request: &LlmRequest) -> Result<LlmResponse, CallError> {
        let cx = CallContext {
            agent: step.to_owned(),
            idempotency_key: format!("{}:{step}", self.key_prefix),
            ..self.base.clone()
        };
        let metered = self.llm.call(&cx, request).await?;
        self.cost
            .fetch_add(metered.cost.billed.0, Ordering::Relaxed);
        Ok(metered.response)
    }
}

impl ModelCall for Caller {
    fn call<'a>(
        &'a self,
        step: &'a str,
        request: &'a LlmRequest,
    ) -> Pin<Box<dyn Future<Output = Result<LlmResponse, CallError>> + Send + 'a>> {
        Box::pin(self.call_model(step, request))
    }
}
