//! research-graph: multi-tenant research knowledge graphs on PostgreSQL, served as GraphQL.
//!
//! Where to look first:
//! - a request enters in [`http`], gets a [`db::TenantSession`] and runs the [`graphql`] schema;
//! - the tenant is set, transaction-locally, in [`db::TenantSession`]'s `begin`;
//! - row-level security lives in `sql/` (the migrations), not in Rust.
//!
//! `docs/ARCHITECTURE.md` has the full map and the invariants.
#![forbid(unsafe_code)]

pub mod app;
pub mod auth;
pub mod backup;
pub mod cache;
pub mod config;
pub mod crypto;
pub mod db;
pub mod features;
pub mod graph;
pub mod graphql;
pub mod http;
pub mod ids;
pub mod insights;
pub mod llm;
pub mod money;
pub mod papers;
pub mod pipeline;
pub mod search;
pub mod telemetry;
pub mod tenants;
pub mod usage;

/// This build's version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
