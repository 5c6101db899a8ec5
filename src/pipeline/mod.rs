//! The research pipeline. So far: ingestion (text and Markdown into a paper with sections, once
//! per content hash), the data passed between the later stages (extraction, validation,
//! resolution, persistence, reasoning), which build on it, and the reasoning stage's prompt,
//! validation and offline rules ([`reason`]).

pub mod arxiv;
pub mod ingest;
pub mod metadata;
pub mod model;
pub mod pdf;
pub mod reason;
mod store;

pub use store::{find_paper, store_detected};
pub use store::{store, IngestMutation, IngestOutcome, PaperMeta};
