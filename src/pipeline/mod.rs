//! The research pipeline. Ingestion (text, Markdown, PDF and arXiv into a paper with sections,
//! once per content hash, with detected metadata); the data passed between the later stages
//! ([`model`]); the stages as library code without a database:
//!
//! - [`extract`]: the versioned prompts and schema, and the per-section driver (extraction, one
//!   repair, optional gleaning) over any [`extract::ModelCall`];
//! - [`rules`]: the offline extractor, deterministic rules in place of a model;
//! - [`validate`]: what of an extraction is kept, with quotes located at character offsets;
//! - [`resolve`]: entity keys, abbreviations defined in a section, near-duplicate candidates;
//! - [`reason`]: the reasoning prompt, validation of proposed insights, the offline reasoner;
//!
//! and the jobs that run them: [`jobs`] (the queue), [`worker`], [`runner`], [`persist`],
//! [`candidates`], [`events`] and [`progress`] (live progress), [`demo`].

pub mod arxiv;
pub mod candidates;
pub mod demo;
pub mod events;
pub mod extract;
pub mod ingest;
pub mod jobs;
pub mod metadata;
pub mod model;
pub mod pdf;
pub mod persist;
pub mod progress;
pub mod reason;
pub mod resolve;
pub mod rules;
pub mod runner;
mod store;
pub mod validate;
pub mod worker;

pub use candidates::{CandidateMutation, CandidateQuery};
pub use jobs::{JobMutation, JobQuery};
pub use store::{find_paper, store_detected};
pub use store::{store, IngestMutation, IngestOutcome, PaperMeta};
