//! The process lifecycle: find or start the database, migrate, serve, shut down.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use poem::listener::{Acceptor, Listener, TcpListener};
use poem::Server;

use crate::auth::{Authenticator, JwtVerifier};
use crate::config::{
    BackupArgs, DatabaseArgs, EncryptionArgs, PipelineArgs, RestoreArgs, RotateArgs, ServeArgs,
    WorkerArgs,
};
use crate::crypto::{KeyRing, ScryptCost};
use crate::db::admin::AdminConnection;
use crate::db::local::{LocalOptions, LocalPostgres, SUPERUSER};
use crate::db::Database;
use crate::graphql::build_schema;
use crate::http::{router, AppState};
use crate::ids::{Role, DEFAULT_TENANT, LOCAL_USER};
use crate::llm::ConcurrencyLimiter;
use crate::pipeline::events::JobEvents;
use crate::pipeline::runner::{ModelDefaults, Pipeline};
use crate::pipeline::worker::{Worker, WorkerOptions};
use crate::tenants::settings::{SettingsCache, SETTINGS_TTL};
use crate::usage::calls::MeteredLlm;
use crate::usage::meter::Meter;

/// The database the local cluster serves.
pub const LOCAL_DATABASE: &str = "research_graph";

/// Connection settings, and the local server when we started one.
pub struct DatabaseTarget {
    /// The application role's settings (absent when only ADMIN_DATABASE_URL was given).
    pub app: Option<tokio_postgres::Config>,
    /// The privileged settings, when known.
    pub admin: Option<tokio_postgres::Config>,
    /// The local server we started (stopped when dropped).
    pub local: Option<LocalPostgres>,
}

impl DatabaseTarget {
    /// Resolves `DATABASE_URL`/`ADMIN_DATABASE_URL`, or, when neither is set, starts the local
    /// server.
    pub async fn open(args: &DatabaseArgs) -> anyhow::Result<DatabaseTarget> {
        if args.database_url.is_some() || args.admin_database_url.is_some() {
            let parse = |url: &Option<String>,
                         name: &str|
             -> anyhow::Result<Option<tokio_postgres::Config>> {
                url.as_deref()
                    .map(|u| {
                        u.parse()
                            .with_context(|| format!("{name} is not a valid connection URL"))
                    })
                    .transpose()
            };
            return Ok(DatabaseTarget {
                app: parse(&args.database_url, "DATABASE_URL")?,
                admin: parse(&args.admin_database_url, "ADMIN_DATABASE_URL")?,
                local: None,
            });
        }
        let options = LocalOptions {
            dir: args.data_dir.clone(),
            ephemeral: false,
        };
        let local = tokio::task::spawn_blocking(move || LocalPostgres::start(options))
            .await
            .context("local PostgreSQL launcher panicked")??;
        let bootstrap = AdminConnection::connect(&local.config(SUPERUSER, "postgres")).await?;
        if bootstrap.ensure_database(LOCAL_DATABASE).await? {
            tracing::info!(database = LOCAL_DATABASE, "created database");
        }
        bootstrap.close().await;
        Ok(DatabaseTarget {
            app: Some(local.config("rg_app", LOCAL_DATABASE)),
            admin: Some(local.config(SUPERUSER, LOCAL_DATABASE)),
            local: Some(local),
        })
    }

    /// Applies pending migrations through the privileged connection, if there is one.
    pub async fn migrate(&self) -> anyhow::Result<Option<AdminConnection>> {
        let Some(admin) = &self.admin else {
            tracing::info!("ADMIN_DATABASE_URL not set: assuming the database is migrated");
            return Ok(None);
        };
        let mut admin = AdminConnection::connect(admin)
            .await
            .context("cannot connect with the privileged (migration) settings")?;
        let report = admin.migrate().await?;
        if report.applied.is_empty() {
            tracing::info!("database schema is up to date");
        }
        for migration in &report.applied {
            tracing::info!(%migration, "applied migration");
        }
        Ok(Some(admin))
    }

    /// Applies pending migrations and, with `local_owner`, makes the local user owner of the
    /// default tenant (development mode, and the CLI on the local cluster).
    pub async fn prepare(&self, local_owner: bool) -> anyhow::Result<()> {
        if let Some(admin) = self.migrate().await? {
            if local_owner {
                admin
                    .ensure_owner(DEFAULT_TENANT, LOCAL_USER)
                    .await
                    .context("cannot make the local user owner of the default tenant")?;
            }
            admin.close().await;
        }
        Ok(())
    }

    /// Stops the local server, if we started one, off the async threads.
    pub async fn shutdown(self) {
        if let Some(local) = self.local {
            let _ = tokio::task::spawn_blocking(move || drop(local)).await;
        }
    }
}

/// `research-graph migrate`.
pub async fn migrate(args: DatabaseArgs) -> anyhow::Result<()> {
    let target = DatabaseTarget::open(&args).await?;
    let result = target.migrate().await;
    let admin_missing = matches!(result, Ok(None));
    if let Ok(Some(admin)) = result {
        admin.close().await;
    }
    target.shutdown().await;
    if admin_missing {
        anyhow::bail!(
            "migrate needs ADMIN_DATABASE_URL (a privileged login) when DATABASE_URL is set"
        );
    }
    Ok(())
}

/// `research-graph keys rotate`: re-encrypts every stored API key under the current key id,
/// in one transaction, and prints how many were rotated.
pub async fn rotate_keys(args: RotateArgs) -> anyhow::Result<()> {
    let ring = key_ring(&args.encryption).await?.context(
        "keys rotate needs ENCRYPTION_KEY (and ENCRYPTION_PREVIOUS_KEYS for the older keys)",
    )?;
    let target = DatabaseTarget::open(&args.database).await?;
    let result = rotate_with(&target, &ring).await;
    target.shutdown().await;
    let rotation = result?;
    println!(
        "rotated {} API keys to key id {} ({} already used it)",
        rotation.rotated,
        ring.current_id(),
        rotation.current
    );
    Ok(())
}

async fn rotate_with(
    target: &DatabaseTarget,
    ring: &KeyRing,
) -> anyhow::Result<crate::db::admin::KeyRotation> {
    let admin = target
        .admin
        .as_ref()
        .context("keys rotate needs ADMIN_DATABASE_URL (a privileged login)")?;
    let mut admin = AdminConnection::connect(admin)
        .await
        .context("cannot connect with the privileged (migration) settings")?;
    let result = admin.rotate_api_keys(ring).await;
    admin.close().await;
    Ok(result?)
}

/// `research-graph backup`: one tenant's data to a file, read through a tenant session as an
/// owner (see [`crate::backup`]); prints what it wrote.
pub async fn backup(args: BackupArgs) -> anyhow::Result<()> {
    use crate::backup::SchemaSource;
    use crate::ids::{TenantId, UserId};

    let target = DatabaseTarget::open(&args.database).await?;
    let result = async {
        let user = args.user.map(UserId).unwrap_or(LOCAL_USER);
        if target.local.is_some() {
            target.prepare(args.user.is_none()).await?;
        }
        let app_config = target.app.clone().context(
            "backup needs DATABASE_URL (the rg_app login): it reads through row-level security",
        )?;
        let schema = match &target.admin {
            Some(admin) => {
                let admin = AdminConnection::connect(admin)
                    .await
                    .context("cannot connect with the privileged (migration) settings")?;
                let version = admin.schema_version().await;
                admin.close().await;
                let version = version?.context("the database is not migrated")?;
                (version, SchemaSource::Database)
            }
            None => (crate::db::admin::latest_migration(), SchemaSource::Build),
        };
        let db = Database::new(app_config, &args.database.pool_settings())?;
        let tenant = match uuid::Uuid::parse_str(&args.tenant) {
            Ok(id) => TenantId(id),
            Err(_) => db
                .tenant_for_slug(user, &args.tenant)
                .await?
                .with_context(|| {
                    format!(
                        "no tenant {:?} that user {user} is a member of",
                        args.tenant
                    )
                })?,
        };
        let result = crate::backup::backup(&db, tenant, user, schema, &args.out).await;
        db.close();
        let report = result?;
        let header = &report.header;
        println!(
            "backed up tenant {} ({}): {} rows in {} tables, {} bytes, to {} in {:.2} s",
            header.tenant.slug,
            header.tenant.id,
            report.rows(),
            header.tables.len(),
            report.bytes,
            args.out.display(),
            report.elapsed.as_secs_f64()
        );
        for table in &header.tables {
            println!("  {:<20} {:>9} rows", table.name, table.rows);
        }
        Ok(())
    }
    .await;
    target.shutdown().await;
    result
}

/// `research-graph restore`: loads a tenant's backup through the privileged connection, in
/// one transaction (see [`crate::backup::restore()`]); prints what it did.
pub async fn restore(args: RestoreArgs) -> anyhow::Result<()> {
    use crate::backup::{ApiKeyOutcome, RestoreOptions};

    let ring = key_ring(&args.encryption).await?;
    let target = DatabaseTarget::open(&args.database).await?;
    let result = async {
        if target.local.is_some() {
            target.prepare(false).await?;
        }
        let admin = target
            .admin
            .as_ref()
            .context("restore needs ADMIN_DATABASE_URL (a privileged login)")?;
        let mut admin = AdminConnection::connect(admin)
            .await
            .context("cannot connect with the privileged (migration) settings")?;
        let options = RestoreOptions {
            tenant_slug: args.tenant_slug.as_deref(),
            key_ring: ring.as_deref(),
            drop_api_key: args.drop_api_key,
        };
        let result = crate::backup::restore(&mut admin, &args.input, &options).await;
        admin.close().await;
        let report = result?;
        println!(
            "restored tenant {} ({}): {} rows in {} tables, from {} in {:.2} s",
            report.tenant.slug,
            report.tenant.id,
            report.rows(),
            report.tables.len(),
            args.input.display(),
            report.elapsed.as_secs_f64()
        );
        if report.replaced_empty_default {
            println!("  the database's empty default tenant was replaced by the backup's");
        }
        if report.jobs_cancelled > 0 {
            println!(
                "  {} queued or running jobs restored as cancelled (re-run them with rerunJob)",
                report.jobs_cancelled
            );
        }
        match report.api_key {
            ApiKeyOutcome::None => {}
            ApiKeyOutcome::Kept => {
                println!("  the stored API key opens with this deployment's keys")
            }
            ApiKeyOutcome::Dropped => println!("  the stored API key was left out"),
        }
        if report.rollups_matched == Some(false) {
            println!(
                "  note: the backed-up daily usage rollups differ from those recomputed from the \
                 events; the backed-up ones were kept"
            );
        }
        Ok(())
    }
    .await;
    target.shutdown().await;
    result
}

/// The key ring of `ENCRYPTION_*`, derived at the OWASP cost on a blocking thread (scrypt is
/// slow on purpose); `None` when ENCRYPTION_KEY is not set.
pub async fn key_ring(args: &EncryptionArgs) -> anyhow::Result<Option<Arc<KeyRing>>> {
    let Some((current, previous)) = args.key_specs().map_err(anyhow::Error::msg)? else {
        return Ok(None);
    };
    let ring = tokio::task::spawn_blocking(move || {
        KeyRing::derive(&current, &previous, ScryptCost::Owasp)
    })
    .await
    .context("key derivation panicked")??;
    tracing::info!(
        current_key_id = ring.current_id(),
        key_ids = ?ring.key_ids(),
        "API key encryption ready"
    );
    Ok(Some(Arc::new(ring)))
}

/// `research-graph serve`.
pub async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    // Configuration errors first, before any database is started.
    let (auth, join_role) = authentication(&args).await?;
    let pricing = pricing(&args)?;
    tracing::debug!(markup_percent = pricing.markup_percent(), "prices loaded");
    if args.features.multi_tenant && args.encryption.encryption_key.is_none() {
        anyhow::bail!(
            "ENABLE_MULTI_TENANT needs ENCRYPTION_KEY (the master secret that encrypts tenants' \
             API keys)"
        );
    }
    let key_ring = key_ring(&args.encryption).await?;
    if key_ring.is_none() {
        tracing::info!("ENCRYPTION_KEY not set: tenants cannot store API keys");
    }
    let defaults = model_defaults(&args.pipeline, &pricing)?;
    let target = DatabaseTarget::open(&args.database).await?;
    let result = run_server(&args, &target, auth, join_role, key_ring, pricing, defaults).await;
    target.shutdown().await;
    result
}

/// The operator's default models: as configured, else Gemini 2.5 Flash when a Gemini key is
/// given, else the offline extractor. Each must have a price.
fn model_defaults(
    args: &PipelineArgs,
    pricing: &crate::usage::pricing::Pricing,
) -> anyhow::Result<ModelDefaults> {
    let fallback = if args.gemini_api_key.is_some() {
        "gemini-2.5-flash"
    } else {
        "offline"
    };
    let defaults = ModelDefaults {
        extraction: args
            .extraction_model
            .clone()
            .unwrap_or_else(|| fallback.to_owned()),
        reasoning: args
            .reasoning_model
            .clone()
            .unwrap_or_else(|| fallback.to_owned()),
    };
    for model in [&defaults.extraction, &defaults.reasoning] {
        if pricing.model(model).is_none() {
            anyhow::bail!("the default model {model:?} has no price (add it to PRICING_FILE)");
        }
    }
    Ok(defaults)
}

/// The metered model gateway and the pipeline over `db`.
fn pipeline(
    db: &Database,
    args: &PipelineArgs,
    pricing: crate::usage::pricing::Pricing,
    defaults: ModelDefaults,
    key_ring: Option<Arc<KeyRing>>,
) -> (Arc<Meter>, Arc<Pipeline>) {
    use crate::llm::{ApiKey, GeminiProvider, LlmProvider, OfflineProvider, OpenAiProvider};

    let mut gemini = GeminiProvider::new();
    if let Some(url) = &args.gemini_base_url {
        gemini = gemini.with_base_url(url.clone());
    }
    let mut openai = OpenAiProvider::new();
    if let Some(url) = &args.openai_base_url {
        openai = openai.with_base_url(url.clone());
    }
    let providers: Vec<Arc<dyn LlmProvider>> = vec![
        Arc::new(gemini),
        Arc::new(openai),
        Arc::new(OfflineProvider::new()),
    ];
    let mut platform_keys = std::collections::HashMap::new();
    if let Some(key) = &args.gemini_api_key {
        platform_keys.insert("gemini".to_owned(), ApiKey::new(key.expose()));
    }
    if let Some(key) = &args.openai_api_key {
        platform_keys.insert("openai".to_owned(), ApiKey::new(key.expose()));
    }
    let pricing = Arc::new(pricing);
    let meter = Arc::new(Meter::start(db.clone(), 10_000));
    let llm = Arc::new(MeteredLlm::new(
        db.clone(),
        Arc::clone(&pricing),
        Arc::clone(&meter),
        ConcurrencyLimiter::new(args.llm_concurrency.max(1)),
        providers,
    ));
    let pipeline = Arc::new(Pipeline::new(
        db.clone(),
        llm,
        pricing,
        key_ring,
        platform_keys,
        defaults,
        args.section_concurrency,
    ));
    (meter, pipeline)
}

fn worker_options(args: &PipelineArgs) -> WorkerOptions {
    WorkerOptions {
        concurrency: args.worker_concurrency.max(1),
        lease: Duration::from_secs(args.lease_secs.max(3)),
        backoff_base: Duration::from_secs(args.backoff_secs.max(1)),
        ..WorkerOptions::default()
    }
}

/// `research-graph worker`: runs jobs until SIGINT or SIGTERM, then gives running jobs back to
/// the queue and writes the usage events still buffered.
pub async fn worker(args: WorkerArgs) -> anyhow::Result<()> {
    let pricing = load_pricing(args.pricing_file.as_deref())?;
    let defaults = model_defaults(&args.pipeline, &pricing)?;
    let key_ring = key_ring(&args.encryption).await?;
    let target = DatabaseTarget::open(&args.database).await?;
    let result = async {
        let app_config = target.app.clone().context(
            "worker needs DATABASE_URL (the rg_app login) when ADMIN_DATABASE_URL is set",
        )?;
        if target.local.is_some() {
            target.prepare(true).await?;
        }
        let db = Database::new(app_config, &args.database.pool_settings())?;
        db.ping()
            .await
            .context("cannot connect as the application role (rg_app)")?;
        let (meter, pipeline) = self::pipeline(&db, &args.pipeline, pricing, defaults, key_ring);
        let events = JobEvents::start(db.clone());
        let worker = Arc::new(Worker::new(
            pipeline,
            db.clone(),
            worker_options(&args.pipeline),
            Some(events),
        ));
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let signal = shutdown_signal()?;
        let run = tokio::spawn(Arc::clone(&worker).run(stopped));
        signal.await;
        let _ = stop.send(true);
        let _ = run.await;
        let unwritten = meter.shutdown(Duration::from_secs(10)).await;
        if unwritten > 0 {
            tracing::error!(unwritten, "usage events could not be written before exit");
        }
        db.close();
        Ok(())
    }
    .await;
    target.shutdown().await;
    result
}

/// The price list: the shipped one with `PRICING_FILE` laid over it. An invalid file stops the
/// start, since every model call is priced from it.
pub fn pricing(args: &ServeArgs) -> anyhow::Result<crate::usage::pricing::Pricing> {
    load_pricing(args.pricing_file.as_deref())
}

fn load_pricing(
    pricing_file: Option<&std::path::Path>,
) -> anyhow::Result<crate::usage::pricing::Pricing> {
    let operator = match pricing_file {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .with_context(|| format!("cannot read PRICING_FILE {}", path.display()))?,
        ),
        None => None,
    };
    crate::usage::pricing::Pricing::load(operator.as_deref()).context("invalid PRICING_FILE")
}

/// How requests will be authenticated, and the single-tenant join role.
async fn authentication(args: &ServeArgs) -> anyhow::Result<(Authenticator, Option<Role>)> {
    if args.dev && args.production {
        anyhow::bail!("--dev (RG_DEV) is refused when --production (RG_PRODUCTION) is set");
    }
    let join_role = args.join_role().map_err(anyhow::Error::msg)?;
    let auth = if args.dev {
        tracing::warn!(
            "development mode: no authentication, every request is the local owner of the \
             default tenant; do not expose this server"
        );
        Authenticator::Dev
    } else {
        let settings = args
            .auth
            .jwt_settings()
            .map_err(anyhow::Error::msg)?
            .context(
                "authentication needs JWT_SECRET or JWT_JWKS_URL (or --dev for local development)",
            )?;
        let verifier = JwtVerifier::new(settings).map_err(anyhow::Error::msg)?;
        verifier.prime().await;
        Authenticator::Jwt(Box::new(verifier))
    };
    Ok((auth, join_role))
}

async fn run_server(
    args: &ServeArgs,
    target: &DatabaseTarget,
    auth: Authenticator,
    join_role: Option<Role>,
    key_ring: Option<Arc<KeyRing>>,
    pricing: crate::usage::pricing::Pricing,
    defaults: ModelDefaults,
) -> anyhow::Result<()> {
    let app_config = target
        .app
        .clone()
        .context("serve needs DATABASE_URL (the rg_app login) when ADMIN_DATABASE_URL is set")?;
    target.prepare(args.dev || args.demo).await?;
    let db = Database::new(app_config, &args.database.pool_settings())?;
    db.ping()
        .await
        .context("cannot connect as the application role (rg_app)")?;

    tracing::info!(
        multi_tenant = args.features.multi_tenant,
        usage_tracking = args.features.usage_tracking,
        hosted_queue = args.features.hosted_queue,
        billing = args.features.billing,
        "features"
    );
    tracing::info!(limits = ?args.limits, "GraphQL limits");
    tracing::info!(extraction = %defaults.extraction, reasoning = %defaults.reasoning,
        "default models");
    let (meter, pipeline) =
        self::pipeline(&db, &args.pipeline, pricing, defaults, key_ring.clone());
    let events = JobEvents::start(db.clone());
    let worker = Arc::new(Worker::new(
        pipeline,
        db.clone(),
        worker_options(&args.pipeline),
        Some(Arc::clone(&events)),
    ));
    if args.demo {
        crate::pipeline::demo::seed(&db, &worker)
            .await
            .context("cannot seed the demo papers")?;
    }
    let (stop_worker, worker_stopped) = tokio::sync::watch::channel(false);
    let embedded = args
        .embedded_worker
        .then(|| tokio::spawn(Arc::clone(&worker).run(worker_stopped)));
    let state = Arc::new(AppState {
        db: db.clone(),
        schema: build_schema(args.introspection.unwrap_or(args.dev), &args.limits),
        graphiql: args.dev,
        auth,
        features: args.features,
        join_role,
        settings_cache: Arc::new(SettingsCache::new(SETTINGS_TTL, 10_000)),
        key_ring,
        events: Some(events),
    });
    let shutdown = shutdown_signal()?;
    let acceptor = TcpListener::bind((args.host.as_str(), args.port))
        .into_acceptor()
        .await
        .with_context(|| format!("cannot listen on {}:{}", args.host, args.port))?;
    for addr in acceptor.local_addr() {
        tracing::info!(address = %addr, "research-graph listening");
    }
    Server::new_with_acceptor(acceptor)
        .run_with_graceful_shutdown(
            router(state),
            shutdown,
            Some(Duration::from_secs(args.shutdown_timeout_secs)),
        )
        .await?;
    let _ = stop_worker.send(true);
    if let Some(embedded) = embedded {
        let _ = embedded.await;
    }
    let unwritten = meter.shutdown(Duration::from_secs(10)).await;
    if unwritten > 0 {
        tracing::error!(unwritten, "usage events could not be written before exit");
    }
    db.close();
    tracing::info!("server stopped");
    Ok(())
}

/// Listens for SIGINT and SIGTERM from now on (before the server binds, so a signal that
/// arrives while it starts is not lost), resolving when one arrives.
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?;
    let mut terminate = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
        tracing::info!("shutdown requested; finishing in-flight requests");
    })
}

/// `research-graph ingest`: each file or arXiv paper in its own short transaction, with a
/// progress bar; what was ingested before is reported unchanged. Fails when any failed.
pub async fn ingest(args: crate::config::IngestArgs) -> anyhow::Result<()> {
    use crate::pipeline::arxiv::{self, ArxivClient, ArxivId};

    let target = DatabaseTarget::open(&args.database).await?;
    let result = async {
        let user = args.user.map(crate::ids::UserId).unwrap_or(LOCAL_USER);
        target
            .prepare(target.local.is_some() && args.user.is_none())
            .await?;
        let app_config = target.app.clone().context(
            "ingest needs DATABASE_URL (the rg_app login) when ADMIN_DATABASE_URL is set",
        )?;
        let db = Database::new(app_config, &args.database.pool_settings())?;
        let tenant = if args.tenant == "default" {
            DEFAULT_TENANT
        } else {
            db.tenant_for_slug(user, &args.tenant)
                .await?
                .with_context(|| {
                    format!(
                        "no tenant {:?} that user {user} is a member of",
                        args.tenant
                    )
                })?
        };
        let bar = indicatif::ProgressBar::new(args.paths.len() as u64);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} {wide_msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        let client = ArxivClient::new(&args.arxiv_base);
        let (mut created, mut unchanged, mut failed) = (0, 0, 0);
        for path in &args.paths {
            bar.set_message(path.display().to_string());
            let outcome = if path.is_file() {
                ingest_file(&db, tenant, user, path).await
            } else if path.exists() {
                Err(anyhow::anyhow!("not a file"))
            } else if let Some(id) = path.to_str().and_then(ArxivId::parse) {
                bar.set_message(format!("{} (from arXiv)", path.display()));
                arxiv::ingest(&db, tenant, user, &client, &id)
                    .await
                    .map(|o| o.stored)
                    .map_err(anyhow::Error::from)
            } else {
                Err(anyhow::anyhow!(
                    "no such file, and not an arXiv id or link either"
                ))
            };
            match outcome {
                Ok(o) if o.created => {
                    created += 1;
                    bar.suspend(|| {
                        eprintln!("ingested {} ({} sections)", path.display(), o.sections)
                    });
                }
                Ok(_) => {
                    unchanged += 1;
                    bar.suspend(|| eprintln!("unchanged {} (ingested before)", path.display()));
                }
                Err(e) => {
                    failed += 1;
                    bar.suspend(|| eprintln!("failed {}: {e:#}", path.display()));
                }
            }
            bar.inc(1);
        }
        bar.finish_and_clear();
        println!("{created} ingested, {unchanged} unchanged, {failed} failed");
        if failed > 0 {
            anyhow::bail!("{failed} of {} papers failed", args.paths.len());
        }
        Ok(())
    }
    .await;
    target.shutdown().await;
    result
}

/// Reads, parses and stores one file: `.md`/`.markdown` as Markdown, `.pdf` as PDF, anything
/// else as plain text; metadata not given are detected in the text.
async fn ingest_file(
    db: &Database,
    tenant: crate::ids::TenantId,
    user: crate::ids::UserId,
    path: &std::path::Path,
) -> anyhow::Result<crate::pipeline::IngestOutcome> {
    use crate::papers::SourceKind;
    use crate::pipeline::ingest::{parse, IngestError, SourceFormat};
    use crate::pipeline::pdf::{self, MAX_PDF_BYTES};
    use crate::pipeline::{metadata, store_detected, PaperMeta};

    let extension = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    let (text, format, kind) = match extension.as_deref() {
        Some("pdf") => {
            let size = std::fs::metadata(path)
                .with_context(|| format!("cannot read {}", path.display()))?
                .len();
            if size > MAX_PDF_BYTES as u64 {
                return Err(IngestError::PdfTooLarge.into());
            }
            let bytes =
                std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
            let text = tokio::task::spawn_blocking(move || pdf::extract_text(&bytes)).await??;
            (text, SourceFormat::Text, SourceKind::Pdf)
        }
        other => {
            let format = match other {
                Some("md" | "markdown") => SourceFormat::Markdown,
                _ => SourceFormat::Text,
            };
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            (text, format, SourceKind::from(format))
        }
    };
    let doc = parse(&text, format)?;
    let session = db.session(tenant, user).await?;
    if session.role().is_none() {
        anyhow::bail!("user {user} is not a member of the tenant");
    }
    let detected = metadata::detect(&text);
    let outcome = store_detected(&session, &doc, kind, &PaperMeta::default(), detected).await?;
    session.commit().await?;
    Ok(outcome)
}
