//! Pipeline workers for tests: one over the offline extractor and reasoner (no model called),
//! and a helper that runs the queue dry.

#![allow(dead_code)]

use std::sync::Arc;

use research_graph::db::Database;
use research_graph::llm::{ConcurrencyLimiter, LlmProvider, OfflineProvider};
use research_graph::pipeline::runner::{ModelDefaults, Pipeline};
use research_graph::pipeline::worker::{Ended, Worker, WorkerOptions};
use research_graph::usage::calls::MeteredLlm;
use research_graph::usage::meter::Meter;
use research_graph::usage::pricing::Pricing;
use uuid::Uuid;

/// A worker named `name` whose default models are `offline`, and its meter.
pub fn offline_worker(db: &Database, name: &str) -> (Worker, Arc<Meter>) {
    let providers: Vec<Arc<dyn LlmProvider>> = vec![Arc::new(OfflineProvider::new())];
    let pricing = Arc::new(Pricing::load(None).unwrap());
    let meter = Arc::new(Meter::start(db.clone(), 1024));
    let llm = Arc::new(MeteredLlm::new(
        db.clone(),
        Arc::clone(&pricing),
        Arc::clone(&meter),
        ConcurrencyLimiter::new(8),
        providers,
    ));
    let pipeline = Arc::new(Pipeline::new(
        db.clone(),
        llm,
        pricing,
        None,
        Default::default(),
        ModelDefaults {
            extraction: "offline".into(),
            reasoning: "offline".into(),
        },
        2,
    ));
    let worker = Worker::new(
        pipeline,
        db.clone(),
        WorkerOptions {
            name: name.into(),
            ..WorkerOptions::default()
        },
        None,
    );
    (worker, meter)
}

/// Runs jobs until none is due; returns what ran and how it ended.
pub async fn drain(w: &Worker) -> Vec<(Uuid, Ended)> {
    let mut ran = Vec::new();
    while let Some(r) = w.run_one().await.unwrap() {
        ran.push(r);
    }
    ran
}
