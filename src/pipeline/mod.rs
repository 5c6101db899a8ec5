//! The research pipeline. So far: ingestion (text and Markdown into a paper with sections, once
//! per content hash), the data passed between the later stages ([`model`]), and the extraction
//! stage as library code without a database:
//!
//! - [`extract`]: the versioned prompts and schema, and the per-section driver (extraction, one
//!   repair, optional gleaning) over any [`extract::ModelCall`];
//! - [`rules`]: the offline extractor, deterministic rules in place of a model;
//! - [`validate`]: what of an extraction is kept, with quotes located at character offsets;
//! - [`resolve`]: entity keys, abbreviations defined in a section, near-duplicate candidates.
//!
//! Persistence, jobs and reasoning build on these.

pub mod extract;
pub mod ingest;
pub mod model;
pub mod resolve;
pub mod rules;
mod store;
pub mod validate;

pub use store::{store, IngestMutation, IngestOutcome, PaperMeta};
