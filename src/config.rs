//! Command line and environment configuration, typed.

use std::path::PathBuf;
use std::time::Duration;

use clap::builder::BoolishValueParser;
use clap::{Args, Parser, Subcommand};
use jsonwebtoken::Algorithm;

use crate::auth::JwtSettings;
use crate::crypto::{KeyRingError, KeySpec, SecretString};
use crate::db::PoolSettings;
use crate::features::Features;
use crate::graphql::Limits;
use crate::ids::Role;

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
    Serve(Box<ServeArgs>),
    /// Apply pending migrations and exit.
    Migrate(DatabaseArgs),
    /// Manage the master keys that encrypt tenants' API keys.
    Keys(KeysArgs),
    /// Ingest papers (text, Markdown or PDF files, or arXiv ids and links) into a tenant.
    Ingest(IngestArgs),
    /// Run pipeline jobs from the queue (any number of workers, on any machines).
    Worker(Box<WorkerArgs>),
    /// Write one tenant's data to a file, read as an owner of it through row-level security.
    Backup(BackupArgs),
    /// Load a tenant's backup into a migrated database where the tenant does not exist
    /// (needs ADMIN_DATABASE_URL).
    Restore(Box<RestoreArgs>),
}

/// `research-graph backup --tenant SLUG|UUID --out FILE`.
#[derive(Debug, Args)]
pub struct BackupArgs {
    /// The database (read as rg_app; with ADMIN_DATABASE_URL too, its migration version is
    /// read from the migration history).
    #[command(flatten)]
    pub database: DatabaseArgs,

    /// The tenant: its slug or its id.
    #[arg(long, value_name = "SLUG|UUID")]
    pub tenant: String,

    /// The file to write (replaced, once the backup is complete, if it exists).
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,

    /// The owner to read as (default: the local user, owner of the default tenant).
    #[arg(long)]
    pub user: Option<uuid::Uuid>,
}

/// `research-graph restore --in FILE [--tenant-slug NEW]`.
#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// The database (restore needs ADMIN_DATABASE_URL, or the local cluster).
    #[command(flatten)]
    pub database: DatabaseArgs,

    /// The master keys, to check that the tenant's stored API key opens in this deployment.
    #[command(flatten)]
    pub encryption: EncryptionArgs,

    /// The backup file.
    #[arg(long = "in", value_name = "FILE")]
    pub input: PathBuf,

    /// A new slug for the tenant, when its slug is taken in this database (its id stays).
    #[arg(long, value_name = "SLUG")]
    pub tenant_slug: Option<String>,

    /// Leave the tenant's stored API key out (its owner sets it again), e.g. when it was
    /// sealed with a master key this deployment does not have.
    #[arg(long)]
    pub drop_api_key: bool,
}

/// `research-graph worker`.
#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// The database (a worker never migrates: point it at a migrated database, or at the
    /// data directory of a local server).
    #[command(flatten)]
    pub database: DatabaseArgs,

    /// Model providers and pipeline tuning.
    #[command(flatten)]
    pub pipeline: PipelineArgs,

    /// The master keys (to read tenants' own API keys).
    #[command(flatten)]
    pub encryption: EncryptionArgs,

    /// Operator price list laid over the shipped one.
    #[arg(long, env = "PRICING_FILE")]
    pub pricing_file: Option<PathBuf>,
}

/// Model providers, default models and the pipeline's concurrency.
#[derive(Clone, Debug, Args)]
pub struct PipelineArgs {
    /// The platform's Gemini API key (hosted mode). Without it, and without an OpenAI-compatible
    /// server, models default to the offline extractor.
    #[arg(long, env = "GEMINI_API_KEY", hide_env_values = true)]
    pub gemini_api_key: Option<SecretString>,

    /// Gemini API base URL.
    #[arg(long, env = "GEMINI_BASE_URL")]
    pub gemini_base_url: Option<String>,

    /// Base URL of an OpenAI-compatible server (…/v1), e.g. Ollama or vLLM.
    #[arg(long, env = "OPENAI_BASE_URL")]
    pub openai_base_url: Option<String>,

    /// The platform's key for the OpenAI-compatible server, if it needs one.
    #[arg(long, env = "OPENAI_API_KEY", hide_env_values = true)]
    pub openai_api_key: Option<SecretString>,

    /// Extraction model when a tenant's settings name none (default: gemini-2.5-flash with a
    /// Gemini key, else `offline`).
    #[arg(long, env = "DEFAULT_EXTRACTION_MODEL")]
    pub extraction_model: Option<String>,

    /// Reasoning model when a tenant's settings name none (same default).
    #[arg(long, env = "DEFAULT_REASONING_MODEL")]
    pub reasoning_model: Option<String>,

    /// Model calls in flight at once per tenant (per process).
    #[arg(long, env = "LLM_CONCURRENCY", default_value_t = 8)]
    pub llm_concurrency: usize,

    /// Sections of one job extracted at once.
    #[arg(long, env = "SECTION_CONCURRENCY", default_value_t = 4)]
    pub section_concurrency: usize,

    /// Jobs one worker runs at once.
    #[arg(long, env = "WORKER_CONCURRENCY", default_value_t = 2)]
    pub worker_concurrency: usize,

    /// A job's lease, in seconds (renewed every third of it while the job runs).
    #[arg(long, env = "JOB_LEASE_SECS", default_value_t = 60)]
    pub lease_secs: u64,

    /// First retry delay of a failed job, in seconds (doubled per attempt, jittered).
    #[arg(long, env = "JOB_BACKOFF_SECS", default_value_t = 5)]
    pub backoff_secs: u64,
}

/// `research-graph ingest PATH|ARXIV_ID|ARXIV_URL… --tenant SLUG`.
#[derive(Debug, Args)]
pub struct IngestArgs {
    /// The database.
    #[command(flatten)]
    pub database: DatabaseArgs,

    /// What to ingest: files (`.md`/`.markdown` as Markdown, `.pdf` as PDF, anything else as
    /// plain text), or, for an argument that is no file, an arXiv id (2301.01234v2,
    /// hep-th/9901001) or link (https://arxiv.org/abs/…), fetched from arXiv.
    #[arg(required = true, value_name = "PATH|ARXIV_ID|ARXIV_URL")]
    pub paths: Vec<PathBuf>,

    /// The tenant's slug.
    #[arg(long, default_value = "default")]
    pub tenant: String,

    /// The member to ingest as (default: the local user, owner of the default tenant).
    #[arg(long)]
    pub user: Option<uuid::Uuid>,

    /// The arXiv API's address (a mirror, or a local server in tests).
    #[arg(long, value_name = "URL", default_value = crate::pipeline::arxiv::DEFAULT_BASE)]
    pub arxiv_base: String,
}

/// `research-graph keys …`.
#[derive(Debug, Args)]
pub struct KeysArgs {
    /// What to do with the keys.
    #[command(subcommand)]
    pub command: KeysCommand,
}

/// The `keys` subcommands.
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Re-encrypt every stored API key under the current key id (ENCRYPTION_KEY_ID), opening
    /// them with the current and previous keys; needs ADMIN_DATABASE_URL. Safe to run again.
    Rotate(RotateArgs),
}

/// `research-graph keys rotate`.
#[derive(Clone, Debug, Args)]
pub struct RotateArgs {
    /// The database.
    #[command(flatten)]
    pub database: DatabaseArgs,

    /// The master keys.
    #[command(flatten)]
    pub encryption: EncryptionArgs,
}

/// The master keys that encrypt tenants' API keys at rest.
#[derive(Clone, Debug, Args)]
pub struct EncryptionArgs {
    /// Master secret (at least 16 bytes, long and random) from which the key that encrypts
    /// tenants' API keys is derived. Required with ENABLE_MULTI_TENANT.
    #[arg(long, env = "ENCRYPTION_KEY", hide_env_values = true)]
    pub encryption_key: Option<SecretString>,

    /// Key id of ENCRYPTION_KEY, written into every value it encrypts.
    #[arg(long, env = "ENCRYPTION_KEY_ID", default_value_t = 1)]
    pub encryption_key_id: u16,

    /// Older master keys that still decrypt, as comma-separated `id:secret` pairs (during a
    /// rotation).
    #[arg(long, env = "ENCRYPTION_PREVIOUS_KEYS", hide_env_values = true)]
    pub encryption_previous_keys: Option<SecretString>,
}

impl EncryptionArgs {
    /// The current key and the previous ones, or `None` when ENCRYPTION_KEY is not set.
    pub fn key_specs(&self) -> Result<Option<(KeySpec, Vec<KeySpec>)>, String> {
        let previous = self
            .encryption_previous_keys
            .as_ref()
            .map(KeySpec::parse_list)
            .transpose()
            .map_err(|e: KeyRingError| e.to_string())?
            .unwrap_or_default();
        let Some(secret) = &self.encryption_key else {
            if !previous.is_empty() {
                return Err(
                    "ENCRYPTION_PREVIOUS_KEYS needs ENCRYPTION_KEY (the current key)".into(),
                );
            }
            return Ok(None);
        };
        let current = KeySpec {
            id: self.encryption_key_id,
            secret: secret.clone(),
        };
        Ok(Some((current, previous)))
    }
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

    /// Local development mode: no authentication (every request is the local owner of the
    /// default tenant), GraphiQL and introspection on. Refused with --production.
    #[arg(long, env = "RG_DEV", value_parser = BoolishValueParser::new(), action = clap::ArgAction::SetTrue)]
    pub dev: bool,

    /// Production deployment: refuses --dev.
    #[arg(long, env = "RG_PRODUCTION", value_parser = BoolishValueParser::new(), action = clap::ArgAction::SetTrue)]
    pub production: bool,

    /// An operator's pricing file, laid over the shipped pricing.toml (same format).
    #[arg(long, env = "PRICING_FILE")]
    pub pricing_file: Option<PathBuf>,

    /// GraphQL introspection (and field suggestions); default: on with --dev, off otherwise.
    #[arg(long, env = "RG_INTROSPECTION", value_parser = BoolishValueParser::new())]
    pub introspection: Option<bool>,

    /// Single-tenant mode: the role (member, viewer or none) an authenticated user who is not
    /// yet a member gets in the default tenant on their first request.
    #[arg(long, env = "SINGLE_TENANT_JOIN_ROLE", default_value = "member")]
    pub single_tenant_join_role: String,

    /// Authentication.
    #[command(flatten)]
    pub auth: AuthArgs,

    /// Feature flags.
    #[command(flatten)]
    pub features: Features,

    /// Limits on GraphQL requests.
    #[command(flatten)]
    pub limits: Limits,

    /// The master keys that encrypt tenants' API keys.
    #[command(flatten)]
    pub encryption: EncryptionArgs,

    /// Seconds to let in-flight requests finish after SIGINT/SIGTERM.
    #[arg(long, env = "SHUTDOWN_TIMEOUT_SECS", default_value_t = 30)]
    pub shutdown_timeout_secs: u64,

    /// Model providers and pipeline tuning.
    #[command(flatten)]
    pub pipeline: PipelineArgs,

    /// Run a pipeline worker inside the server process.
    #[arg(long, env = "EMBEDDED_WORKER", default_value_t = true,
          value_parser = BoolishValueParser::new(), action = clap::ArgAction::Set)]
    pub embedded_worker: bool,

    /// Seed the default tenant with the demo papers, processed by the offline extractor (with
    /// --dev, for a first look in GraphiQL).
    #[arg(long, env = "RG_DEMO", value_parser = BoolishValueParser::new(), action = clap::ArgAction::SetTrue)]
    pub demo: bool,
}

impl ServeArgs {
    /// The role new users get in single-tenant mode, if any.
    pub fn join_role(&self) -> Result<Option<Role>, String> {
        match self.single_tenant_join_role.as_str() {
            "none" => Ok(None),
            "member" => Ok(Some(Role::Member)),
            "viewer" => Ok(Some(Role::Viewer)),
            other => Err(format!(
                "SINGLE_TENANT_JOIN_ROLE must be member, viewer or none, not {other:?}"
            )),
        }
    }
}

/// How bearer tokens are verified.
#[derive(Clone, Debug, Args)]
pub struct AuthArgs {
    /// HS256 shared secret (at least 32 bytes), as Supabase issues.
    #[arg(long, env = "JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<crate::crypto::SecretString>,

    /// JWKS URL for ES256/RS256 keys.
    #[arg(long, env = "JWT_JWKS_URL")]
    pub jwt_jwks_url: Option<String>,

    /// Accepted algorithms, comma-separated. Default: HS256 with a secret; ES256 and RS256
    /// with a JWKS URL.
    #[arg(long, env = "JWT_ALGORITHMS", value_delimiter = ',')]
    pub jwt_algorithms: Vec<String>,

    /// Accepted audiences (`aud`), comma-separated.
    #[arg(
        long,
        env = "JWT_AUDIENCE",
        value_delimiter = ',',
        default_value = "authenticated"
    )]
    pub jwt_audience: Vec<String>,

    /// Required issuer (`iss`).
    #[arg(long, env = "JWT_ISSUER")]
    pub jwt_issuer: Option<String>,

    /// Clock skew allowed on `exp` and `nbf`, in seconds.
    #[arg(long, env = "JWT_LEEWAY_SECS", default_value_t = 30)]
    pub jwt_leeway_secs: u64,

    /// At most one JWKS refresh per this many seconds when tokens name unknown keys.
    #[arg(long, env = "JWKS_MIN_REFRESH_SECS", default_value_t = 30)]
    pub jwks_min_refresh_secs: u64,
}

impl AuthArgs {
    /// The verifier settings, or `None` when neither a secret nor a JWKS URL is configured.
    pub fn jwt_settings(&self) -> Result<Option<JwtSettings>, String> {
        if self.jwt_secret.is_none() && self.jwt_jwks_url.is_none() {
            return Ok(None);
        }
        let algorithms = if self.jwt_algorithms.is_empty() {
            let mut defaults = Vec::new();
            if self.jwt_secret.is_some() {
                defaults.push(Algorithm::HS256);
            }
            if self.jwt_jwks_url.is_some() {
                defaults.extend([Algorithm::ES256, Algorithm::RS256]);
            }
            defaults
        } else {
            self.jwt_algorithms
                .iter()
                .map(|a| {
                    a.trim()
                        .parse::<Algorithm>()
                        .map_err(|_| format!("unknown JWT algorithm {a:?}"))
                })
                .collect::<Result<_, _>>()?
        };
        Ok(Some(JwtSettings {
            hmac_secret: self.jwt_secret.as_ref().map(|s| s.expose().to_owned()),
            jwks_url: self.jwt_jwks_url.clone(),
            algorithms,
            audiences: self.jwt_audience.clone(),
            issuer: self.jwt_issuer.clone(),
            leeway: Duration::from_secs(self.jwt_leeway_secs),
            jwks_min_refresh_interval: Duration::from_secs(self.jwks_min_refresh_secs),
        }))
    }
}
