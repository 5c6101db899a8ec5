//! Proprietary hosted extensions of research-graph (see `hosted/LICENSE`).
//!
//! What a platform operator selling research-graph needs and a team running it for itself does
//! not: usage across all tenants, and invoice lines with the hosted markup. It builds on the MIT
//! core through its public API only, and reaches the database as `rg_platform`, a role that may
//! read usage rows (and tenant names) of every tenant and nothing else.
//!
//! - [`platform`]: the cross-tenant usage queries;
//! - [`billing`]: invoice lines per tenant for a month, as CSV or JSON;
//! - [`api`]: the operators' GraphQL endpoint (`platformUsage`), authorised by a JWT claim.
#![forbid(unsafe_code)]

pub mod api;
pub mod billing;
pub mod platform;

/// The core version this hosted build was compiled against, for operators' diagnostics.
pub fn core_version() -> &'static str {
    research_graph::VERSION
}
