//! Command line and environment configuration, typed.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::db::PoolSettings;

/// research-graph: multi-tenant research knowledge graphs on PostgreSQL, served as GraphQL.
#[derive(Debug, Parser)]
#[command(name = "research-graph", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Apply migrations, then serve GraphQL over HTTP.
    Serve(ServeArgs),
    /// Apply pending migrations and exit.
    Migrate(DatabaseArgs),
}

/// Where the database is.
#[derive(Clone, Debug, Args)]
pub struct DatabaseArgs {
    /// Connection URL of the application role (rg_app). Without it, a local PostgreSQL is
    /// started from the machine's server binaries, in --data-dir.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,

    /// Privileged connection URL, used only for migrations (superuser, or database owner with
    /// CREATEROLE). Without it, an external database is assumed migrated already.
    #[arg(long, env = "ADMIN_DATABASE_URL", hide_env_values = true)]
    pub admin_database_url: Option<String>,

    /// Directory of the local PostgreSQL (used only without DATABASE_URL).
    #[arg(long, env = "RG_DATA_DIR", default_value = ".research-graph")]
    pub data_dir: PathBuf,

    /// Maximum connections in the application pool.
    #[arg(long, env = "DATABASE_POOL_SIZE", default_value_t = 16)]
    pub pool_size: usize,

    /// Seconds a request waits for a free connection before failing as unavailable.
    #[arg(long, env = "DATABASE_WAIT_TIMEOUT_SECS", default_value_t = 5)]
    pub pool_wait_timeout_secs: u64,

    /// Server-side limit on one SQL statement, in seconds.
    #[arg(long, env = "STATEMENT_TIMEOUT_SECS", default_value_t = 30)]
    pub statement_timeout_secs: u64,
}

impl DatabaseArgs {
    /// The pool settings these arguments describe.
    pub fn pool_settings(&self) -> PoolSettings {
        PoolSettings {
            max_size: self.pool_size.max(1),
            wait_timeout: Duration::from_secs(self.pool_wait_timeout_secs.max(1)),
            statement_timeout: Duration::from_secs(self.statement_timeout_secs.max(1)),
            ..PoolSettings::default()
        }
    }
}

/// How to serve.
#[derive(Clone, Debug, Args)]
pub struct ServeArgs {
    /// The database.
    #[command(flatten)]
    pub database: DatabaseArgs,

    /// TCP port to listen on (0 picks a free one).
    #[arg(long, env = "PORT", default_value_t = 8080)]
    pub port: u16,

    /// Address to listen on.
    #[arg(long, env = "HOST", default_value = "127.0.0.1")]
    pub host: String,

    /// Local development mode: GraphiQL and introspection on, every request acts as the local
    /// owner of the default tenant.
    #[arg(long, env = "RG_DEV")]
    pub dev: bool,

    /// Seconds to let in-flight requests finish after SIGINT/SIGTERM.
    #[arg(long, env = "SHUTDOWN_TIMEOUT_SECS", default_value_t = 30)]
    pub shutdown_timeout_secs: u64,
}
