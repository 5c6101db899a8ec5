//! Everything that talks to Postgres.
//!
//! - [`Database`]: the application role's connection pool. Its only doors are
//!   [`Database::session`] (a [`TenantSession`]), the narrow cross-tenant operations that wrap a
//!   SECURITY DEFINER function, and [`Database::ping`]. The pool itself never leaves this module.
//! - [`admin`]: the privileged path (migrations, development bootstrap), kept separate.
//! - [`local`]: starts a Postgres from the machine's own server binaries.

pub mod admin;
mod error;
pub mod local;
mod session;

use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::NoTls;

pub use error::{DbError, LocalPgError};
use session::Begin;
pub use session::TenantSession;

use crate::ids::{Role, TenantId, UserId};
use uuid::Uuid;

/// Pool and connection settings of the application role.
#[derive(Clone, Debug)]
pub struct PoolSettings {
    /// Maximum number of connections.
    pub max_size: usize,
    /// How long a request waits for a free connection before it fails as unavailable.
    pub wait_timeout: Duration,
    /// Server-side limit on one statement.
    pub statement_timeout: Duration,
    /// Server-side limit on a transaction left idle: a last line of defence, since sessions
    /// never wait on anything but their own statements.
    pub idle_in_transaction_timeout: Duration,
}

impl Default for PoolSettings {
    fn default() -> Self {
        PoolSettings {
            max_size: 16,
            wait_timeout: Duration::from_secs(5),
            statement_timeout: Duration::from_secs(30),
            idle_in_transaction_timeout: Duration::from_secs(60),
        }
    }
}

/// The application role's view of the database.
#[derive(Clone)]
pub struct Database {
    pool: Pool,
    config: tokio_postgres::Config,
}

/// The right to open tenant sessions for one tenant and user, and nothing else: what a
/// long-lived subscription holds instead of a pool.
#[derive(Clone)]
pub struct TenantDoor {
    db: Database,
    tenant: TenantId,
    user: UserId,
}

impl TenantDoor {
    /// A new short session for the door's tenant and user.
    pub async fn session(&self) -> Result<TenantSession, DbError> {
        self.db.session(self.tenant, self.user).await
    }

    /// The door's tenant.
    pub fn tenant(&self) -> TenantId {
        self.tenant
    }
}

/// A connection listening for notifications (see [`Database::listen`]); dropping it closes
/// the connection.
pub struct Listener {
    _client: tokio_postgres::Client,
    rx: tokio::sync::mpsc::UnboundedReceiver<tokio_postgres::Notification>,
}

impl Listener {
    /// The next notification; `None` once the connection has ended.
    pub async fn recv(&mut self) -> Option<tokio_postgres::Notification> {
        self.rx.recv().await
    }
}

/// A job claimed by [`Database::claim_job`]: the worker now holds its lease.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClaimedJob {
    /// The job's tenant.
    pub tenant: TenantId,
    /// The job.
    pub job: Uuid,
    /// The member the job runs for (who enqueued it).
    pub user: Option<UserId>,
    /// This attempt's number, from 1.
    pub attempt: i32,
}

impl Database {
    /// Builds the pool (connections are opened lazily). `config` must name the application
    /// role, `rg_app`, which is subject to row-level security.
    pub fn new(
        mut config: tokio_postgres::Config,
        settings: &PoolSettings,
    ) -> Result<Self, DbError> {
        let options = format!(
            "{} -c statement_timeout={} -c idle_in_transaction_session_timeout={}",
            config.get_options().unwrap_or_default(),
            settings.statement_timeout.as_millis(),
            settings.idle_in_transaction_timeout.as_millis(),
        );
        config.options(options.trim());
        if config.get_application_name().is_none() {
            config.application_name("research-graph");
        }
        config.connect_timeout(settings.wait_timeout);
        let manager = Manager::from_config(
            config.clone(),
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(settings.max_size)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(settings.wait_timeout))
            .create_timeout(Some(settings.wait_timeout))
            .recycle_timeout(Some(settings.wait_timeout))
            .build()
            .map_err(|e| DbError::Config(e.to_string()))?;
        Ok(Database { pool, config })
    }

    /// Begins a transaction as `user` in `tenant`. Row-level security decides what it sees:
    /// nothing at all unless `user` is a member of `tenant`.
    pub async fn session(&self, tenant: TenantId, user: UserId) -> Result<TenantSession, DbError> {
        TenantSession::begin(&self.pool, tenant, user, Begin::ReadWrite).await
    }

    /// Like [`Database::session`], but read only and with one snapshot for the whole
    /// transaction (`REPEATABLE READ`): every statement sees the tenant as it was at the first
    /// one, whatever commits meanwhile. What a backup reads through.
    pub async fn snapshot_session(
        &self,
        tenant: TenantId,
        user: UserId,
    ) -> Result<TenantSession, DbError> {
        TenantSession::begin(&self.pool, tenant, user, Begin::Snapshot).await
    }

    /// A [`TenantDoor`] for `tenant` and `user`.
    pub fn door(&self, tenant: TenantId, user: UserId) -> TenantDoor {
        TenantDoor {
            db: self.clone(),
            tenant,
            user,
        }
    }

    /// Creates a tenant with `user` as its owner, through the SECURITY DEFINER function
    /// `app.create_tenant` (no tenant context exists yet to satisfy the policies).
    pub async fn create_tenant(
        &self,
        user: UserId,
        name: &str,
        slug: &str,
    ) -> Result<TenantId, DbError> {
        let row = self
            .as_user(user, "SELECT app.create_tenant($1, $2)", &[&name, &slug])
            .await?;
        Ok(TenantId(row.get(0)))
    }

    /// The tenant with `slug`, if `user` is a member of it (`app.tenant_for_slug`).
    pub async fn tenant_for_slug(
        &self,
        user: UserId,
        slug: &str,
    ) -> Result<Option<TenantId>, DbError> {
        let row = self
            .as_user(user, "SELECT app.tenant_for_slug($1)", &[&slug])
            .await?;
        Ok(row.get::<_, Option<Uuid>>(0).map(TenantId))
    }

    /// `user`'s default tenant, while they are a member of it (`app.default_tenant`).
    pub async fn default_tenant(&self, user: UserId) -> Result<Option<TenantId>, DbError> {
        let row = self
            .as_user(user, "SELECT app.default_tenant()", &[])
            .await?;
        Ok(row.get::<_, Option<Uuid>>(0).map(TenantId))
    }

    /// Single-tenant deployments: makes `user` a member of the default tenant with `role`
    /// (member or viewer) unless they already are one (`app.join_default_tenant`).
    pub async fn join_default_tenant(&self, user: UserId, role: Role) -> Result<(), DbError> {
        self.as_user(
            user,
            "SELECT 1 FROM (SELECT app.join_default_tenant($1)) j",
            &[&role.as_str()],
        )
        .await?;
        Ok(())
    }

    /// Runs one statement returning one row in a short transaction where only the user is set:
    /// the door for the SECURITY DEFINER functions that work before a tenant is known.
    async fn as_user(
        &self,
        user: UserId,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<tokio_postgres::Row, DbError> {
        let mut conn = self.pool.get().await?;
        let tx = conn.transaction().await?;
        let set_user = tx
            .prepare_cached("SELECT set_config('app.user_id', $1, true)")
            .await?;
        tx.execute(&set_user, &[&user.to_string()]).await?;
        let statement = tx.prepare_cached(sql).await?;
        let row = tx.query_one(&statement, params).await?;
        tx.commit().await?;
        Ok(row)
    }

    /// Claims the next runnable job for `worker`, holding it for `lease`
    /// (`app.claim_job`: expired leases are reclaimed first; `FOR UPDATE SKIP LOCKED`).
    pub async fn claim_job(
        &self,
        worker: &str,
        lease: Duration,
    ) -> Result<Option<ClaimedJob>, DbError> {
        let conn = self.pool.get().await?;
        let statement = conn
            .prepare_cached(
                "SELECT tenant_id, job_id, user_id, attempt \
                 FROM app.claim_job($1, make_interval(secs => $2))",
            )
            .await?;
        let row = conn
            .query_opt(&statement, &[&worker, &lease.as_secs_f64()])
            .await?;
        Ok(row.map(|r| ClaimedJob {
            tenant: TenantId(r.get(0)),
            job: r.get(1),
            user: r.get::<_, Option<Uuid>>(2).map(UserId),
            attempt: r.get(3),
        }))
    }

    /// Ends job `job`, claimed by `worker`, as failed with `message`, when the member it runs
    /// for may no longer write to its tenant (`app.fail_orphaned_job`). False when the job is no
    /// longer that worker's.
    pub async fn fail_orphaned_job(
        &self,
        job: Uuid,
        worker: &str,
        message: &str,
    ) -> Result<bool, DbError> {
        let conn = self.pool.get().await?;
        let statement = conn
            .prepare_cached("SELECT app.fail_orphaned_job($1, $2, $3)")
            .await?;
        let row = conn
            .query_one(&statement, &[&job, &worker, &message])
            .await?;
        Ok(row.get(0))
    }

    /// Opens a connection of its own (outside the pool) listening on `channel`. No tenant
    /// context is ever set on it; payloads carry ids only. Notifications arrive on
    /// [`Listener::recv`] until the connection ends.
    pub async fn listen(&self, channel: &str) -> Result<Listener, DbError> {
        use futures_util::StreamExt;
        let (client, mut connection) = self.config.connect(NoTls).await?;
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
            while let Some(message) = messages.next().await {
                match message {
                    Ok(tokio_postgres::AsyncMessage::Notification(n)) => {
                        if tx.send(n).is_err() {
                            break;
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "the notification connection ended");
                        break;
                    }
                }
            }
        });
        let quoted = channel.replace('"', "\"\"");
        client
            .batch_execute(&format!("LISTEN \"{quoted}\""))
            .await?;
        Ok(Listener {
            _client: client,
            rx,
        })
    }

    /// Checks that the database answers (readiness), without any tenant context.
    pub async fn ping(&self) -> Result<(), DbError> {
        let conn = self.pool.get().await?;
        conn.simple_query("SELECT 1").await?;
        Ok(())
    }

    /// Closes the pool: waiting requests fail, idle connections are closed.
    pub fn close(&self) {
        self.pool.close();
    }
}
