//! The privileged path: migrations and the development bootstrap, nothing else.
//!
//! It connects as the migration login (a superuser, or a database owner with CREATEROLE), which
//! is never used to serve requests. Keeping it in its own type makes every use easy to find.

use tokio_postgres::{Client, Config, NoTls};

use super::DbError;
use crate::ids::{TenantId, UserId};

mod embedded {
    refinery::embed_migrations!("sql");
}

/// Serialises concurrent migrators (several servers starting at once) on one database.
const MIGRATION_LOCK: i64 = 0x7267_6d69_6772_6174; // "rgmigrat"

/// A privileged connection.
pub struct AdminConnection {
    client: Client,
    connection: tokio::task::JoinHandle<()>,
}

/// What a migration run did.
#[derive(Debug)]
pub struct MigrationReport {
    /// Names of the migrations applied by this run, in order (empty when up to date).
    pub applied: Vec<String>,
}

impl AdminConnection {
    /// Connects with the privileged configuration.
    pub async fn connect(config: &Config) -> Result<Self, DbError> {
        let (client, connection) = config.connect(NoTls).await?;
        let connection = tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::warn!(%error, "admin connection closed with an error");
            }
        });
        Ok(AdminConnection { client, connection })
    }

    /// Applies the migrations in `sql/` that this database has not yet recorded, each in its own
    /// transaction, under an advisory lock so that concurrent starts do not race.
    pub async fn migrate(&mut self) -> Result<MigrationReport, MigrateError> {
        self.client
            .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
            .await
            .map_err(DbError::from)?;
        let result = embedded::migrations::runner()
            .set_abort_divergent(true)
            .run_async(&mut self.client)
            .await;
        let unlock = self
            .client
            .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
            .await;
        let report = result.map_err(|e| MigrateError::Migration(e.to_string()))?;
        unlock.map_err(DbError::from)?;
        Ok(MigrationReport {
            applied: report
                .applied_migrations()
                .iter()
                .map(|m| m.to_string())
                .collect(),
        })
    }

    /// Makes `user` an owner of `tenant` (development mode's local user). Needs a login that
    /// bypasses row-level security (the local cluster's superuser).
    pub async fn ensure_owner(&self, tenant: TenantId, user: UserId) -> Result<(), DbError> {
        self.client
            .execute(
                "INSERT INTO app.tenant_users (tenant_id, user_id, role) VALUES ($1, $2, 'owner') \
                 ON CONFLICT (tenant_id, user_id) DO UPDATE SET role = 'owner'",
                &[&tenant.0, &user.0],
            )
            .await?;
        Ok(())
    }

    /// Creates database `name` if it does not exist (used on the local cluster).
    pub async fn ensure_database(&self, name: &str) -> Result<bool, DbError> {
        let exists = self
            .client
            .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
            .await?
            .is_some();
        if !exists {
            // Identifiers cannot be parameters; quote it as Postgres would.
            let quoted = format!("\"{}\"", name.replace('"', "\"\""));
            self.client
                .batch_execute(&format!("CREATE DATABASE {quoted}"))
                .await?;
        }
        Ok(!exists)
    }

    /// Closes the connection and waits until the server has been told.
    pub async fn close(self) {
        drop(self.client);
        let _ = self.connection.await;
    }

    /// The underlying client, for tests and tools that need raw privileged SQL.
    pub fn client(&self) -> &Client {
        &self.client
    }
}

/// Migration failures.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    /// Could not talk to the database.
    #[error(transparent)]
    Db(#[from] DbError),
    /// A migration failed or the recorded history diverges from `sql/`.
    #[error("migration failed: {0}")]
    Migration(String),
}
