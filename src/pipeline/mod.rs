//! The research pipeline. So far: ingestion (text and Markdown into a paper with sections, once
//! per content hash). Extraction, resolution, reasoning and jobs build on it.

pub mod ingest;
mod store;

pub use store::{store, IngestMutation, IngestOutcome, PaperMeta};
