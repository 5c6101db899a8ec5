//! The benchmark harness of research-graph: a deterministic multi-tenant data generator
//! ([`generate`]) and a GraphQL load driver ([`load`]). Both derive every row id from
//! [`ids`], so the driver and the pgbench scripts address generated rows without a lookup.

#![forbid(unsafe_code)]

pub mod generate;
pub mod ids;
pub mod load;
pub mod report;
pub mod vocabulary;
