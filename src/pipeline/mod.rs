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

pub mod extract;
pub mod ingest;
pub mod metadata;
pub mod model;
pub mod pdf;
pub mod reason;
pub mod resolve;
pub mod rules;
mod store;
pub mod validate;

pub mod arxiv;

pub use store::{find_paper, store_detected};
pub use store::{store, IngestMutation, IngestOutcome, PaperMeta};
