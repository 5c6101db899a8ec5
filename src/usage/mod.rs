//! Usage: what every model call costs, the limits that bound it, and the API that shows it.
//!
//! - [`pricing`]: prices from `pricing.toml` and the cost rules, in exact micro-dollars;
//! - [`meter`]: usage events written in the background, never lost, never failing the work;
//! - [`limits`]: daily and monthly limits, soft or hard (with reservations);
//! - [`calls`]: `MeteredLlm`, the one path of every model call (price, admit, call, meter);
//! - the `usage` GraphQL field (totals, breakdowns, events, limit states) from the daily rollup.

pub mod calls;
mod graphql;
pub mod limits;
pub mod meter;
pub mod pricing;

pub use graphql::UsageQuery;
