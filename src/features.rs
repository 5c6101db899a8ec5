//! Feature flags, read from the environment once at start-up and shown to clients through the
//! `features` query so a frontend can adapt.

use clap::builder::BoolishValueParser;
use clap::Args;

/// What this deployment offers.
#[derive(Clone, Copy, Debug, Args, async_graphql::SimpleObject)]
pub struct Features {
    /// Many tenants, chosen per request (header, path or the user's default). Off: everything
    /// runs in the default tenant and tenant headers are ignored (single-tenant deployments).
    #[arg(long = "enable-multi-tenant", env = "ENABLE_MULTI_TENANT", default_value_t = false,
          value_parser = BoolishValueParser::new(), action = clap::ArgAction::Set)]
    pub multi_tenant: bool,

    /// Every model call is recorded as a usage event with tokens and cost.
    #[arg(long = "enable-usage-tracking", env = "ENABLE_USAGE_TRACKING", default_value_t = true,
          value_parser = BoolishValueParser::new(), action = clap::ArgAction::Set)]
    pub usage_tracking: bool,

    /// Pipeline jobs run on the hosted queue (hosted part).
    #[arg(long = "enable-hosted-queue", env = "ENABLE_HOSTED_QUEUE", default_value_t = false,
          value_parser = BoolishValueParser::new(), action = clap::ArgAction::Set)]
    pub hosted_queue: bool,

    /// Platform usage and billing export (hosted part).
    #[arg(long = "enable-billing", env = "ENABLE_BILLING", default_value_t = false,
          value_parser = BoolishValueParser::new(), action = clap::ArgAction::Set)]
    pub billing: bool,
}

impl Default for Features {
    fn default() -> Self {
        Features {
            multi_tenant: false,
            usage_tracking: true,
            hosted_queue: false,
            billing: false,
        }
    }
}
