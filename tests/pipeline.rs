//! The pipeline end to end: papers through a local server speaking Gemini's wire format,
//! validated, resolved and persisted with provenance, metered exactly, as jobs that survive
//! faults (429, malformed output, a worker killed mid-job, a provider that never recovers).

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use common::mock_gemini::{
    json_answer, prompt_of, rate_limited, text_answer, unavailable, Answer, MockGemini, Usage,
};
use common::{seed_tenant, TestDb};
use research_graph::db::TenantSession;
use research_graph::ids::{TenantId, UserId};
use research_graph::llm::{
    ConcurrencyLimiter, GeminiProvider, LlmProvider, OfflineProvider, RecordingSleeper, RetryPolicy,
};
use research_graph::pipeline::ingest::{parse, SourceFormat};
use research_graph::pipeline::jobs::{self, JobKind, JobStatus};
use research_graph::pipeline::runner::{ModelDefaults, Pipeline};
use research_graph::pipeline::worker::{Ended, Worker, WorkerOptions};
use research_graph::pipeline::{store, PaperMeta};
use research_graph::usage::calls::MeteredLlm;
use research_graph::usage::meter::Meter;
use research_graph::usage::pricing::Pricing;
use serde_json::{json, Value};
use uuid::Uuid;

// ---------------------------------------------------------------------------------------------
// Papers and what the mock model answers for each section

const GRAPHNET: &str = "# GraphNet: Message Passing for Link Prediction\n\n## Abstract\n\
    We propose GraphNet, a message passing network for link prediction.\n\n## Results\n\
    GraphNet reaches 0.91 AUC on the Cora dataset.\n";

const REVISITED: &str = "# Graph Networks Revisited\n\n## Abstract\n\
    We evaluate graph neural networks on the   Cora\ndataset once more.\n\n## Results\n\
    GraphNet outperforms GCN on the Cora dataset.\n";

const CONVNETS: &str = "# Convolutional Networks for Images\n\n## Abstract\n\
    A convolutional neural network (CNN) is used for image classification.\n";

/// The answer for one section, by a phrase only that section contains; `k` sets its usage.
fn section_answer(prompt: &str) -> Option<(Value, u64)> {
    if prompt.contains("a message passing network for link prediction") {
        return Some((
            json!({
                "entities": [
                    { "name": "GraphNet", "type": "Method", "description": "A message passing network." },
                    { "name": "link prediction", "type": "Task", "description": "Predicting missing links." },
                ],
                "relations": [
                    { "source": "GraphNet", "target": "link prediction", "type": "USED-FOR",
                      "description": "GraphNet is used for link prediction.", "confidence": 0.9,
                      "evidence": "GraphNet, a message passing network for link prediction" },
                ],
                "mentions": [
                    { "entity": "GraphNet", "evidence": "We propose GraphNet" },
                    { "entity": "link prediction", "evidence": "link prediction" },
                ],
            }),
            1,
        ));
    }
    if prompt.contains("GraphNet reaches 0.91 AUC") {
        return Some((
            json!({
                "entities": [
                    { "name": "GraphNet", "type": "Method" },
                    { "name": "Cora", "type": "Dataset", "description": "A citation graph." },
                    { "name": "AUC", "type": "Metric" },
                    { "name": "message passing", "type": "Model" },
                ],
                "relations": [
                    { "source": "Cora", "target": "GraphNet", "type": "EVALUATE-FOR",
                      "confidence": 0.8, "evidence": "GraphNet reaches 0.91 AUC on the Cora dataset" },
                    { "source": "AUC", "target": "GraphNet", "type": "EVALUATE-FOR",
                      "confidence": 0.4, "evidence": "0.91 AUC" },
                    { "source": "GraphNet", "target": "Cora", "type": "COMPARE",
                      "confidence": 0.9, "evidence": "GraphNet is the best model ever" },
                ],
                "mentions": [
                    { "entity": "GraphNet", "evidence": "GraphNet reaches" },
                    { "entity": "Cora", "evidence": "the Cora dataset" },
                    { "entity": "AUC", "evidence": "0.91 AUC" },
                ],
            }),
            2,
        ));
    }
    if prompt.contains("graph neural networks on the") {
        return Some((
            json!({
                "entities": [
                    { "name": "graph neural networks", "type": "Method" },
                    { "name": "Cora", "type": "Dataset" },
                ],
                "relations": [
                    { "source": "Cora", "target": "graph neural networks", "type": "EVALUATE-FOR",
                      "confidence": 0.7, "evidence": "graph neural networks on the Cora dataset" },
                ],
                "mentions": [
                    { "entity": "graph neural networks", "evidence": "graph neural networks" },
                    { "entity": "Cora", "evidence": "the Cora dataset" },
                ],
            }),
            3,
        ));
    }
    if prompt.contains("GraphNet outperforms GCN") {
        return Some((
            json!({
                "entities": [
                    { "name": "GraphNet", "type": "Method" },
                    { "name": "GCN", "type": "Method" },
                    { "name": "Cora", "type": "Dataset" },
                ],
                "relations": [
                    { "source": "GraphNet", "target": "GCN", "type": "COMPARE",
                      "confidence": 0.85, "evidence": "GraphNet outperforms GCN" },
                    { "source": "Cora", "target": "GraphNet", "type": "EVALUATE-FOR",
                      "confidence": 0.8, "evidence": "GraphNet outperforms GCN on the Cora dataset" },
                ],
                "mentions": [
                    { "entity": "GraphNet", "evidence": "GraphNet outperforms" },
                    { "entity": "GCN", "evidence": "GCN" },
                    { "entity": "Cora", "evidence": "Cora dataset" },
                ],
            }),
            4,
        ));
    }
    if prompt.contains("(CNN) is used for image classification") {
        return Some((
            json!({
                "entities": [
                    { "name": "convolutional neural network", "type": "Method" },
                    { "name": "CNN", "type": "Method" },
                    { "name": "image classification", "type": "Task" },
                ],
                "relations": [
                    { "source": "CNN", "target": "image classification", "type": "USED-FOR",
                      "confidence": 0.9, "evidence": "(CNN) is used for image classification" },
                ],
                "mentions": [
                    { "entity": "convolutional neural network", "evidence": "convolutional neural network" },
                    { "entity": "CNN", "evidence": "CNN" },
                    { "entity": "image classification", "evidence": "image classification" },
                ],
            }),
            5,
        ));
    }
    None
}

/// Usage of a section's answer: k × (1,000 prompt, 200 output) tokens, so that each call
/// costs exactly k × 800 µ$ at gemini-2.5-flash's $0.30 / $2.50 per 1M (k × 960 µ$ billed with
/// the 20% hosted markup).
fn usage(k: u64) -> Usage {
    Usage {
        prompt: 1000 * k,
        output: 200 * k,
        thoughts: 0,
    }
}

/// A mock that answers every known section, and nothing else.
async fn mock(latency: Duration) -> MockGemini {
    MockGemini::start(latency, |body, _| answer_for(body)).await
}

fn answer_for(body: &Value) -> Answer {
    match section_answer(&prompt_of(body)) {
        Some((value, k)) => json_answer(&value, usage(k)),
        None => json_answer(
            &json!({ "entities": [], "relations": [], "mentions": [] }),
            usage(1),
        ),
    }
}

// ---------------------------------------------------------------------------------------------
// Harness

struct Setup {
    meter: Arc<Meter>,
    pipeline: Arc<Pipeline>,
}

fn setup(t: &TestDb, base: &str, section_concurrency: usize) -> Setup {
    let sleeper = Arc::new(RecordingSleeper::default());
    let gemini = GeminiProvider::new()
        .with_base_url(base)
        .with_policy(RetryPolicy {
            max_attempts: 3,
            base_delay: Duration::from_millis(10),
            max_delay: Duration::from_secs(1),
            attempt_timeout: Duration::from_secs(10),
        })
        .with_sleeper(sleeper);
    let providers: Vec<Arc<dyn LlmProvider>> =
        vec![Arc::new(gemini), Arc::new(OfflineProvider::new())];
    let pricing = Arc::new(Pricing::load(None).unwrap());
    let meter = Arc::new(Meter::start(t.db.clone(), 1024));
    let llm = Arc::new(MeteredLlm::new(
        t.db.clone(),
        Arc::clone(&pricing),
        Arc::clone(&meter),
        ConcurrencyLimiter::new(64),
        providers,
    ));
    let mut keys = std::collections::HashMap::new();
    keys.insert(
        "gemini".to_owned(),
        research_graph::llm::ApiKey::new("AIzaSyTestKey-0123456789abcdefghij"),
    );
    let pipeline = Arc::new(Pipeline::new(
        t.db.clone(),
        llm,
        pricing,
        None,
        keys,
        ModelDefaults {
            extraction: "gemini-2.5-flash".into(),
            reasoning: "gemini-2.5-flash".into(),
        },
        section_concurrency,
    ));
    Setup { meter, pipeline }
}

fn worker(t: &TestDb, s: &Setup, name: &str, lease: Duration) -> Worker {
    Worker::new(
        Arc::clone(&s.pipeline),
        t.db.clone(),
        WorkerOptions {
            name: name.to_owned(),
            concurrency: 1,
            lease,
            poll: Duration::from_millis(50),
            backoff_base: Duration::from_millis(20),
            backoff_max: Duration::from_millis(100),
        },
        None,
    )
}

/// Ingests `papers` (Markdown) into the tenant and queues a job for each.
async fn ingest(
    t: &TestDb,
    tenant: TenantId,
    user: UserId,
    papers: &[&str],
    max_attempts: i32,
) -> Vec<Uuid> {
    let s = t.session(tenant, user).await;
    let mut ids = Vec::new();
    for text in papers {
        let doc = parse(text, SourceFormat::Markdown).unwrap();
        let paper = store(&s, &doc, SourceFormat::Markdown, &PaperMeta::default())
            .await
            .unwrap()
            .paper;
        let (job, created) = jobs::enqueue(
            &s,
            JobKind::ProcessPaper,
            Some(paper),
            json!({}),
            max_attempts,
        )
        .await
        .unwrap();
        assert!(created);
        ids.push(job.id);
    }
    s.commit().await.unwrap();
    ids
}

/// Runs jobs until the queue has none due.
async fn drain(w: &Worker) -> Vec<(Uuid, Ended)> {
    let mut ran = Vec::new();
    while let Some(r) = w.run_one().await.unwrap() {
        ran.push(r);
    }
    ran
}

async fn job(t: &TestDb, tenant: TenantId, user: UserId, id: Uuid) -> jobs::Job {
    let s = t.session(tenant, user).await;
    let job = jobs::get(&s, id).await.unwrap().unwrap();
    s.rollback().await.unwrap();
    job
}

async fn count(s: &TenantSession, sql: &str) -> i64 {
    s.query_one(sql, &[]).await.unwrap().get(0)
}

/// Rows of the pipeline's tables in the session's tenant.
async fn graph_counts(s: &TenantSession) -> [i64; 5] {
    [
        count(s, "SELECT count(*) FROM app.nodes").await,
        count(s, "SELECT count(*) FROM app.edges").await,
        count(s, "SELECT count(*) FROM app.entity_mentions").await,
        count(s, "SELECT count(*) FROM app.edge_evidence").await,
        count(s, "SELECT count(*) FROM app.section_extractions").await,
    ]
}

// ---------------------------------------------------------------------------------------------
// End to end

#[tokio::test]
async fn three_papers_through_mock_gemini_give_the_expected_graph_with_evidence_and_exact_usage() {
    let t = TestDb::new().await;
    let (tenant, owner) = t.create_tenant("lab").await;
    let m = mock(Duration::ZERO).await;
    let s = setup(&t, &m.base, 4);
    let ids = ingest(&t, tenant, owner, &[GRAPHNET, REVISITED, CONVNETS], 5).await;
    let w = worker(&t, &s, "w1", Duration::from_secs(30));
    let ran = drain(&w).await;
    assert_eq!(ran.len(), 3);
    assert!(ran.iter().all(|(_, e)| *e == Ended::Succeeded), "{ran:?}");

    let first = job(&t, tenant, owner, ids[0]).await;
    assert_eq!(first.status, JobStatus::Succeeded);
    assert_eq!(first.attempts, 1);
    assert_eq!(first.progress.sections_total, 2);
    assert_eq!(first.progress.sections_done, 2);
    // The "Model" entity (a type outside the vocabulary) and the relation whose quote is not
    // in the section are dropped.
    assert_eq!(first.progress.dropped, 2, "{:?}", first.progress);
    assert_eq!(first.progress.cost_micros, 960 + 2 * 960);

    let db = t.session(tenant, owner).await;
    let nodes: Vec<(String, String, Vec<String>)> = db
        .query(
            "SELECT node_type, name, aliases FROM app.nodes ORDER BY node_type, name",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    let names: Vec<(&str, &str)> = nodes
        .iter()
        .map(|(t, n, _)| (t.as_str(), n.as_str()))
        .collect();
    assert_eq!(
        names,
        vec![
            ("Dataset", "Cora"),
            ("Method", "GCN"),
            ("Method", "GraphNet"),
            ("Method", "convolutional neural network"),
            ("Method", "graph neural networks"),
            ("Metric", "AUC"),
            ("Task", "image classification"),
            ("Task", "link prediction"),
        ]
    );
    let cnn = nodes
        .iter()
        .find(|(_, n, _)| n == "convolutional neural network")
        .unwrap();
    assert_eq!(cnn.2, vec!["CNN".to_owned()], "the acronym is an alias");

    let edges: Vec<(String, String, String, String, f64)> = db
        .query(
            "SELECT s.name, e.relation_type, t.name, e.review_status, e.weight
             FROM app.edges e JOIN app.nodes s ON s.id = e.source_id JOIN app.nodes t ON t.id = e.target_id
             ORDER BY 1, 2, 3",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
        .collect();
    let e = |s: &str, r: &str, t: &str, st: &str, w: f64| {
        (s.to_owned(), r.to_owned(), t.to_owned(), st.to_owned(), w)
    };
    assert_eq!(
        edges,
        vec![
            e("AUC", "EVALUATE-FOR", "GraphNet", "pending", 1.0),
            e("Cora", "EVALUATE-FOR", "GraphNet", "proposed", 2.0),
            e(
                "Cora",
                "EVALUATE-FOR",
                "graph neural networks",
                "proposed",
                1.0
            ),
            e("GraphNet", "COMPARE", "GCN", "proposed", 1.0),
            e("GraphNet", "USED-FOR", "link prediction", "proposed", 1.0),
            e(
                "convolutional neural network",
                "USED-FOR",
                "image classification",
                "proposed",
                1.0
            ),
        ]
    );

    // Every piece of evidence and every mention is the section's own text at its offsets.
    let misplaced = count(
        &db,
        "SELECT count(*) FROM app.edge_evidence ev JOIN app.paper_sections s ON s.id = ev.section_id
         WHERE substr(s.content, ev.start_offset + 1, ev.end_offset - ev.start_offset) <> ev.quote",
    )
    .await;
    assert_eq!(misplaced, 0);
    let misplaced = count(
        &db,
        "SELECT count(*) FROM app.entity_mentions m JOIN app.paper_sections s ON s.id = m.section_id
         WHERE substr(s.content, m.start_offset + 1, m.end_offset - m.start_offset) <> m.quote",
    )
    .await;
    assert_eq!(misplaced, 0);
    // The quote given with other white space is stored as the section wrote it.
    let stored: String = db
        .query_one(
            "SELECT ev.quote FROM app.edge_evidence ev JOIN app.edges e ON e.id = ev.edge_id
             JOIN app.nodes t ON t.id = e.target_id WHERE t.name = 'graph neural networks'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(stored, "graph neural networks on the   Cora\ndataset");
    assert_eq!(
        count(&db, "SELECT count(*) FROM app.edges e WHERE NOT EXISTS (SELECT 1 FROM app.edge_evidence ev WHERE ev.edge_id = e.id)").await,
        0,
        "every edge has evidence"
    );
    assert_eq!(
        count(&db, "SELECT count(*) FROM app.nodes n WHERE NOT EXISTS (SELECT 1 FROM app.entity_mentions m WHERE m.node_id = n.id)").await,
        0,
        "every node has a mention"
    );
    assert_eq!(
        count(&db, "SELECT count(*) FROM app.entity_mentions").await,
        13
    );
    assert_eq!(
        count(&db, "SELECT count(*) FROM app.entity_mentions WHERE agent <> 'extractor' OR model <> 'gemini-2.5-flash' OR job_id IS NULL OR prompt_version = ''").await,
        0,
        "provenance on every mention"
    );
    db.rollback().await.unwrap();

    // Usage: one event per section, exactly the mock's tokens, priced exactly.
    assert_eq!(s.meter.shutdown(Duration::from_secs(10)).await, 0);
    let db = t.session(tenant, owner).await;
    type Event = (i64, i64, i64, i64, String, String, Option<Uuid>);
    let events: Vec<Event> = db
        .query(
            "SELECT input_tokens, output_tokens, base_cost_micros, billed_cost_micros, stage,
                    outcome, job_id
             FROM app.usage_events ORDER BY input_tokens",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| {
            (
                r.get(0),
                r.get(1),
                r.get(2),
                r.get(3),
                r.get(4),
                r.get(5),
                r.get(6),
            )
        })
        .collect();
    assert_eq!(events.len(), 5, "{events:?}");
    for (k, ev) in (1..=5).zip(&events) {
        assert_eq!((ev.0, ev.1), (1000 * k, 200 * k));
        assert_eq!((ev.2, ev.3), (800 * k, 960 * k));
        assert_eq!((ev.4.as_str(), ev.5.as_str()), ("extract", "ok"));
        assert!(ev.6.is_some_and(|j| ids.contains(&j)));
    }
    assert_eq!(m.calls(), 5);
}

#[tokio::test]
async fn a_rerun_of_a_finished_paper_persists_nothing_twice_and_calls_no_model() {
    let t = TestDb::new().await;
    let (tenant, owner) = t.create_tenant("lab").await;
    let m = mock(Duration::ZERO).await;
    let s = setup(&t, &m.base, 2);
    let ids = ingest(&t, tenant, owner, &[GRAPHNET, REVISITED], 5).await;
    let w = worker(&t, &s, "w1", Duration::from_secs(30));
    drain(&w).await;
    let db = t.session(tenant, owner).await;
    let before = graph_counts(&db).await;
    let rerun = jobs::rerun(&db, ids[0]).await.unwrap().unwrap();
    assert_eq!(rerun.status, JobStatus::Queued);
    db.commit().await.unwrap();
    let calls = m.calls();
    let ran = drain(&w).await;
    assert_eq!(ran, vec![(ids[0], Ended::Succeeded)]);
    assert_eq!(m.calls(), calls, "done sections are not extracted again");
    let db = t.session(tenant, owner).await;
    assert_eq!(graph_counts(&db).await, before);
    let again = jobs::get(&db, ids[0]).await.unwrap().unwrap();
    assert_eq!(again.progress.sections_done, 2);
}

// ---------------------------------------------------------------------------------------------
// Faults

#[tokio::test]
async fn a_429_then_success_is_retried_inside_the_call_and_metered_once() {
    let t = TestDb::new().await;
    let (tenant, owner) = t.create_tenant("lab").await;
    let m = MockGemini::start(Duration::ZERO, |body, n| {
        if n == 0 {
            rate_limited("0.5s")
        } else {
            answer_for(body)
        }
    })
    .await;
    let s = setup(&t, &m.base, 1);
    let ids = ingest(&t, tenant, owner, &[CONVNETS], 5).await;
    let ran = drain(&worker(&t, &s, "w1", Duration::from_secs(30))).await;
    assert_eq!(ran, vec![(ids[0], Ended::Succeeded)]);
    assert_eq!(m.calls(), 2);
    s.meter.shutdown(Duration::from_secs(10)).await;
    let db = t.session(tenant, owner).await;
    assert_eq!(count(&db, "SELECT count(*) FROM app.usage_events").await, 1);
    assert_eq!(
        count(&db, "SELECT count(*) FROM app.edges").await,
        1,
        "the section was persisted"
    );
}

const MALFORMED: &str = "{\"entities\": [{\"name\": \"MALFORMED-OUTPUT-7\", \"type\": ";

#[tokio::test]
async fn malformed_json_is_repaired_once_and_both_calls_are_metered() {
    let t = TestDb::new().await;
    let (tenant, owner) = t.create_tenant("lab").await;
    let m = MockGemini::start(Duration::ZERO, |body, _| {
        let prompt = prompt_of(body);
        if prompt.contains("MALFORMED-OUTPUT-7") {
            // The repair request carries the broken output: answer properly.
            let (value, _) = section_answer(CONVNETS).unwrap();
            json_answer(&value, usage(1))
        } else {
            text_answer(MALFORMED, usage(2))
        }
    })
    .await;
    let s = setup(&t, &m.base, 1);
    let ids = ingest(&t, tenant, owner, &[CONVNETS], 5).await;
    let ran = drain(&worker(&t, &s, "w1", Duration::from_secs(30))).await;
    assert_eq!(ran, vec![(ids[0], Ended::Succeeded)]);
    assert_eq!(m.calls(), 2);
    s.meter.shutdown(Duration::from_secs(10)).await;
    let db = t.session(tenant, owner).await;
    let events: Vec<(String, String, i64)> = db
        .query(
            "SELECT outcome, coalesce(error_kind, ''), input_tokens FROM app.usage_events
             ORDER BY input_tokens",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(
        events,
        vec![
            ("ok".to_owned(), String::new(), 1000),
            ("error".to_owned(), "malformed_output".to_owned(), 2000),
        ]
    );
    assert_eq!(count(&db, "SELECT count(*) FROM app.edges").await, 1);
}

#[tokio::test]
async fn output_still_malformed_after_the_repair_fails_the_section_with_its_reason() {
    let t = TestDb::new().await;
    let (tenant, owner) = t.create_tenant("lab").await;
    let m = MockGemini::start(Duration::ZERO, |_, _| text_answer(MALFORMED, usage(1))).await;
    let s = setup(&t, &m.base, 1);
    let ids = ingest(&t, tenant, owner, &[GRAPHNET], 5).await;
    let ran = drain(&worker(&t, &s, "w1", Duration::from_secs(30))).await;
    // The job itself succeeds: failed sections are recorded, and a re-run retries them.
    assert_eq!(ran, vec![(ids[0], Ended::Succeeded)]);
    assert_eq!(m.calls(), 4, "one extraction and one repair per section");
    let j = job(&t, tenant, owner, ids[0]).await;
    assert_eq!(j.progress.sections_failed, 2);
    assert_eq!(j.progress.sections_done, 0);
    assert_eq!(j.progress.errors.len(), 2, "{:?}", j.progress.errors);
    let db = t.session(tenant, owner).await;
    let reasons: Vec<String> = db
        .query(
            "SELECT reason FROM app.section_extractions WHERE status = 'failed'",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(reasons.len(), 2);
    assert!(
        reasons.iter().all(|r| r.to_lowercase().contains("json")),
        "{reasons:?}"
    );
    assert_eq!(count(&db, "SELECT count(*) FROM app.nodes").await, 0);
}

#[tokio::test]
async fn a_provider_that_never_recovers_sends_the_job_to_the_dead_letter() {
    let t = TestDb::new().await;
    let (tenant, owner) = t.create_tenant("lab").await;
    let m = MockGemini::start(Duration::ZERO, |_, _| unavailable()).await;
    let s = setup(&t, &m.base, 1);
    let ids = ingest(&t, tenant, owner, &[CONVNETS], 3).await;
    let w = worker(&t, &s, "w1", Duration::from_secs(30));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let mut attempts = Vec::new();
    loop {
        attempts.extend(drain(&w).await);
        let j = job(&t, tenant, owner, ids[0]).await;
        if j.status.is_final() || tokio::time::Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    let j = job(&t, tenant, owner, ids[0]).await;
    assert_eq!(j.status, JobStatus::Dead);
    assert_eq!(j.attempts, 3);
    assert_eq!(attempts.len(), 3);
    assert!(
        j.last_error
            .as_deref()
            .unwrap_or("")
            .contains("unavailable"),
        "{:?}",
        j.last_error
    );
    assert!(j.finished_at.is_some());
    // Three job attempts, each of three HTTP attempts (the provider's own retries).
    assert_eq!(m.calls(), 9);
    s.meter.shutdown(Duration::from_secs(10)).await;
    let db = t.session(tenant, owner).await;
    assert_eq!(
        count(&db, "SELECT count(*) FROM app.usage_events WHERE outcome = 'error' AND error_kind = 'unavailable'").await,
        3,
        "each attempt's call is metered, under its own idempotency key"
    );
}

#[tokio::test]
async fn a_worker_aborted_mid_job_leaves_no_duplicates_once_another_finishes_it() {
    let t = TestDb::new().await;
    let (tenant, owner) = t.create_tenant("lab").await;
    let (clean, clean_owner) = t.create_tenant("clean").await;
    let m = mock(Duration::from_millis(150)).await;
    let s = setup(&t, &m.base, 1);

    // The reference: the same papers, processed without interruption.
    ingest(&t, clean, clean_owner, &[GRAPHNET, REVISITED], 5).await;
    drain(&worker(&t, &s, "reference", Duration::from_secs(30))).await;

    let ids = ingest(&t, tenant, owner, &[GRAPHNET, REVISITED], 5).await;
    let lease = Duration::from_millis(900);
    let doomed = Arc::new(worker(&t, &s, "doomed", lease));
    let task = tokio::spawn({
        let doomed = Arc::clone(&doomed);
        async move { doomed.run_one().await }
    });
    // Abort once the first section is persisted and the second is in flight.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let j = job(&t, tenant, owner, ids[0]).await;
        if j.progress.sections_done >= 1 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "no progress");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    task.abort();
    let _ = task.await;
    let stuck = job(&t, tenant, owner, ids[0]).await;
    assert_eq!(
        stuck.status,
        JobStatus::Running,
        "the dead worker still holds the lease"
    );

    // Another worker takes the job over once the lease has expired.
    let rescuer = worker(&t, &s, "rescuer", Duration::from_secs(30));
    let mut ran = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while ran.len() < 2 && tokio::time::Instant::now() < deadline {
        ran.extend(drain(&rescuer).await);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ran.contains(&(ids[0], Ended::Succeeded)), "{ran:?}");
    let j = job(&t, tenant, owner, ids[0]).await;
    assert_eq!(j.status, JobStatus::Succeeded);
    assert_eq!(j.attempts, 2);

    let a = t.session(tenant, owner).await;
    let b = t.session(clean, clean_owner).await;
    assert_eq!(graph_counts(&a).await, graph_counts(&b).await);
    for table in [
        "app.nodes",
        "app.edges",
        "app.entity_mentions",
        "app.edge_evidence",
    ] {
        let sql = format!("SELECT count(*) FROM {table}");
        assert_eq!(count(&a, &sql).await, count(&b, &sql).await, "{table}");
    }
    let weights = "SELECT coalesce(sum(weight), 0)::bigint FROM app.edges";
    assert_eq!(count(&a, weights).await, count(&b, weights).await);
}

#[tokio::test]
async fn two_workers_run_a_hundred_jobs_each_exactly_once() {
    let t = TestDb::with_pool_size(8).await;
    let (tenant, owner) = t.create_tenant("lab").await;
    let m = mock(Duration::ZERO).await;
    let s = setup(&t, &m.base, 1);
    let db = t.session(tenant, owner).await;
    db.execute(
        "UPDATE app.tenant_settings SET extraction_model = 'offline'",
        &[],
    )
    .await
    .unwrap();
    db.commit().await.unwrap();
    let papers: Vec<String> = (0..100)
        .map(|i| format!("# Paper {i}\n\n## Abstract\nWe propose Method{i} for task {i} on the Set{i} dataset.\n"))
        .collect();
    let refs: Vec<&str> = papers.iter().map(String::as_str).collect();
    let ids = ingest(&t, tenant, owner, &refs, 5).await;
    let a = Arc::new(worker(&t, &s, "worker-a", Duration::from_secs(30)));
    let b = Arc::new(worker(&t, &s, "worker-b", Duration::from_secs(30)));
    let run = |w: Arc<Worker>| tokio::spawn(async move { drain(&w).await });
    let (ra, rb) = tokio::join!(run(a), run(b));
    let (ra, rb) = (ra.unwrap(), rb.unwrap());
    assert!(!ra.is_empty() && !rb.is_empty(), "both workers took jobs");
    let mut seen = HashSet::new();
    for (id, ended) in ra.iter().chain(&rb) {
        assert_eq!(*ended, Ended::Succeeded);
        assert!(seen.insert(*id), "job {id} ran twice");
    }
    assert_eq!(seen, ids.iter().copied().collect::<HashSet<_>>());
    let db = t.session(tenant, owner).await;
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM app.jobs WHERE status = 'succeeded' AND attempts = 1"
        )
        .await,
        100
    );
    assert_eq!(m.calls(), 0, "the offline extractor calls no model");
}

#[tokio::test]
async fn a_cancelled_job_is_not_run_and_a_running_one_stops() {
    let t = TestDb::new().await;
    let (tenant, owner) = t.create_tenant("lab").await;
    let m = mock(Duration::from_millis(400)).await;
    let s = setup(&t, &m.base, 1);
    let ids = ingest(&t, tenant, owner, &[GRAPHNET, CONVNETS], 5).await;
    let db = t.session(tenant, owner).await;
    let cancelled = jobs::cancel(&db, ids[1]).await.unwrap().unwrap();
    assert_eq!(cancelled.status, JobStatus::Cancelled);
    db.commit().await.unwrap();

    let w = Arc::new(worker(&t, &s, "w1", Duration::from_millis(600)));
    let task = tokio::spawn({
        let w = Arc::clone(&w);
        async move { w.run_one().await }
    });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while job(&t, tenant, owner, ids[0]).await.status != JobStatus::Running {
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let db = t.session(tenant, owner).await;
    jobs::cancel(&db, ids[0]).await.unwrap().unwrap();
    db.commit().await.unwrap();
    let ended = tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("the worker stops the cancelled job at its next renewal or progress update")
        .unwrap()
        .unwrap();
    assert_eq!(ended, Some((ids[0], Ended::LeaseLost)));
    assert_eq!(
        w.run_one().await.unwrap(),
        None,
        "the cancelled job is never claimed"
    );
    assert_eq!(
        job(&t, tenant, owner, ids[0]).await.status,
        JobStatus::Cancelled
    );
}

#[tokio::test]
async fn jobs_of_one_tenant_are_invisible_to_another_and_run_as_their_tenant() {
    let t = TestDb::new().await;
    let a = seed_tenant(&t, "alpha", "10.1/a", "k").await;
    let b = seed_tenant(&t, "beta", "10.1/b", "k").await;
    let m = mock(Duration::ZERO).await;
    let s = setup(&t, &m.base, 1);
    let ids = ingest(&t, a.tenant, a.owner, &[CONVNETS], 5).await;
    let sb = t.session(b.tenant, b.owner).await;
    assert!(jobs::get(&sb, ids[0]).await.unwrap().is_none());
    assert!(jobs::cancel(&sb, ids[0]).await.unwrap().is_none());
    sb.rollback().await.unwrap();
    // The seeded jobs have no paper content to extract; the new one lands in alpha only.
    drain(&worker(&t, &s, "w1", Duration::from_secs(30))).await;
    let sa = t.session(a.tenant, a.owner).await;
    let sb = t.session(b.tenant, b.owner).await;
    assert_eq!(
        count(
            &sa,
            "SELECT count(*) FROM app.nodes WHERE name = 'image classification'"
        )
        .await,
        1
    );
    assert_eq!(
        count(
            &sb,
            "SELECT count(*) FROM app.nodes WHERE name = 'image classification'"
        )
        .await,
        0
    );
}

// ---------------------------------------------------------------------------------------------
// Throughput (run with --ignored --nocapture; figures go to docs/BENCHMARKS.md)

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark"]
async fn throughput_with_50ms_model_latency() {
    let t = TestDb::with_pool_size(16).await;
    let mut line = String::new();
    for concurrency in [1usize, 8] {
        let (tenant, owner) = t.create_tenant(&format!("bench{concurrency}")).await;
        let m = mock(Duration::from_millis(50)).await;
        let s = setup(&t, &m.base, concurrency);
        // 4 papers of 12 sections each.
        let papers: Vec<String> = (0..4)
            .map(|p| {
                let mut text = format!("# Throughput Paper {p}\n\n");
                for k in 0..12 {
                    text.push_str(&format!(
                        "## Section {k}\nWe propose GraphNet{p}x{k} for link prediction. GraphNet reaches 0.91 AUC on the Cora dataset.\n\n"
                    ));
                }
                text
            })
            .collect();
        let refs: Vec<&str> = papers.iter().map(String::as_str).collect();
        ingest(&t, tenant, owner, &refs, 5).await;
        let w = worker(&t, &s, "bench", Duration::from_secs(60));
        let started = std::time::Instant::now();
        let ran = drain(&w).await;
        let elapsed = started.elapsed();
        assert!(ran.iter().all(|(_, e)| *e == Ended::Succeeded));
        let db = t.session(tenant, owner).await;
        let sections = count(
            &db,
            "SELECT count(*) FROM app.section_extractions WHERE status = 'done'",
        )
        .await;
        let rate = sections as f64 / elapsed.as_secs_f64();
        line.push_str(&format!(
            "concurrency {concurrency}: {sections} sections in {:.2} s = {rate:.1} sections/s (max {} calls in flight)\n",
            elapsed.as_secs_f64(),
            m.max_in_flight()
        ));
    }
    println!("{line}");
}

#[tokio::test]
async fn a_job_whose_member_lost_write_access_fails_with_a_clear_reason() {
    let t = TestDb::new().await;
    let (tenant, owner) = t.create_tenant("lab").await;
    let member = t
        .add_member(tenant, owner, research_graph::ids::Role::Member)
        .await;
    let m = mock(Duration::ZERO).await;
    let s = setup(&t, &m.base, 1);
    let ids = ingest(&t, tenant, member, &[CONVNETS], 5).await;
    let db = t.session(tenant, owner).await;
    db.execute(
        "DELETE FROM app.tenant_users WHERE user_id = $1",
        &[&member.0],
    )
    .await
    .unwrap();
    db.commit().await.unwrap();
    let ran = drain(&worker(&t, &s, "w1", Duration::from_secs(30))).await;
    assert_eq!(ran.len(), 1, "{ran:?}");
    let j = job(&t, tenant, owner, ids[0]).await;
    assert_eq!(
        j.status,
        JobStatus::Failed,
        "not left to expire and be retried"
    );
    assert_eq!(j.attempts, 1);
    assert!(
        j.last_error
            .as_deref()
            .unwrap_or("")
            .contains("may no longer write"),
        "{:?}",
        j.last_error
    );
    assert_eq!(
        m.calls(),
        0,
        "no model was called for a member without write access"
    );
}

#[tokio::test]
async fn an_idle_worker_wakes_when_a_job_is_queued_not_at_its_next_poll() {
    let t = TestDb::new().await;
    let (tenant, owner) = t.create_tenant("lab").await;
    let m = mock(Duration::ZERO).await;
    let s = setup(&t, &m.base, 1);
    let events = research_graph::pipeline::events::JobEvents::start(t.db.clone());
    let w = Arc::new(Worker::new(
        Arc::clone(&s.pipeline),
        t.db.clone(),
        WorkerOptions {
            name: "sleeper".into(),
            concurrency: 1,
            lease: Duration::from_secs(30),
            poll: Duration::from_secs(600),
            backoff_base: Duration::from_millis(20),
            backoff_max: Duration::from_millis(100),
        },
        Some(events),
    ));
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let running = tokio::spawn(Arc::clone(&w).run(stopped));
    // Let the worker find the queue empty and go to sleep for its (long) poll interval.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = std::time::Instant::now();
    let ids = ingest(&t, tenant, owner, &[CONVNETS], 5).await;
    loop {
        if job(&t, tenant, owner, ids[0]).await.status == JobStatus::Succeeded {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the worker slept through the notification"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.send(true).unwrap();
    running.await.unwrap();
}
