//! Proprietary hosted extensions of research-graph (see `hosted/LICENSE`).
//!
//! This crate builds on the MIT core through its public extension points only. It is a
//! placeholder until the hosted usage dashboard and billing export land; the boundary is
//! described in `docs/OSS_BOUNDARY.md`.
#![forbid(unsafe_code)]

/// The core version this hosted build was compiled against, for operators' diagnostics.
pub fn core_version() -> &'static str {
    research_graph::VERSION
}
