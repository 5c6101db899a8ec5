//! The research pipeline. So far: ingestion (text and Markdown into a paper with sections, once
//! per content hash) and the data passed between the later stages (extraction, validation,
//! resolution, persistence, reasoning), which build on it.

pub mod extract;
pub mod ingest;
pub mod model;
pub mod resolve;
pub mod rules;
mod store;
pub mod validate;

pub use store::{store, IngestMutation, IngestOutcome, PaperMeta};
