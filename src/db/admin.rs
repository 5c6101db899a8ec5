//! The privileged path: migrations, the development bootstrap, the re-encryption of stored
//! API keys under a new master key and the restore of a tenant's backup (`crate::backup`),
//! nothing else.
//!
//! It connects as the migration login (a superuser, or a database owner with CREATEROLE), which
//! is never used to serve requests. Keeping it in its own type makes every use easy to find.

use tokio_postgres::{Client, Config, NoTls};

use super::DbError;
use crate::crypto::{CryptoError, KeyRing};
use crate::ids::{TenantId, UserId};

mod embedded {
    refinery::embed_migrations!("sql");
}

/// The version of the newest migration this build carries (`V10__…` is 10).
pub fn latest_migration() -> i64 {
    embedded::migrations::runner()
        .get_migrations()
        .iter()
        .map(|m| i64::from(m.version()))
        .max()
        .unwrap_or(0)
}

/// Serialises concurrent migrators (several servers starting at once) on one database.
const MIGRATION_LOCK: i64 = 0x7267_6d69_6772_6174; // "rgmigrat"

/// A privileged connection.
pub struct AdminConnection {
    client: Client,
    connection: tokio::task::JoinHandle<()>,
}

/// What a key rotation did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyRotation {
    /// Stored API keys re-encrypted under the current key id.
    pub rotated: usize,
    /// Stored API keys already under the current key id (checked, left as they were).
    pub current: usize,
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

    /// The version of the newest migration applied to this database (`None`: never migrated).
    pub async fn schema_version(&self) -> Result<Option<i64>, DbError> {
        let exists: bool = self
            .client
            .query_one(
                "SELECT to_regclass('public.refinery_schema_history') IS NOT NULL",
                &[],
            )
            .await?
            .get(0);
        if !exists {
            return Ok(None);
        }
        let row = self
            .client
            .query_one(
                "SELECT max(version)::int8 FROM public.refinery_schema_history",
                &[],
            )
            .await?;
        Ok(row.get(0))
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

    /// Re-encrypts every tenant's stored API key under `ring`'s current key id, in one
    /// transaction: each is opened with the ring (current or previous keys, the tenant as
    /// associated data) and sealed again unless it already uses the current id. A key that does
    /// not open aborts the whole rotation and changes nothing. Running it again rotates nothing.
    ///
    /// The transaction acts as the tables' owner `rg_owner` with row-level security not forced
    /// on `app.tenant_settings` (so a non-superuser migration login sees every row too), and
    /// forces it again before committing; the table is locked meanwhile.
    pub async fn rotate_api_keys(&mut self, ring: &KeyRing) -> Result<KeyRotation, RotateError> {
        let tx = self.client.transaction().await.map_err(DbError::from)?;
        tx.batch_execute(
            "SET LOCAL lock_timeout = '10s'; SET LOCAL ROLE rg_owner; \
             ALTER TABLE app.tenant_settings NO FORCE ROW LEVEL SECURITY",
        )
        .await
        .map_err(DbError::from)?;
        let rows = tx
            .query(
                "SELECT tenant_id, api_key_ciphertext FROM app.tenant_settings \
                 WHERE api_key_ciphertext IS NOT NULL ORDER BY tenant_id",
                &[],
            )
            .await
            .map_err(DbError::from)?;
        let mut tenants = Vec::new();
        let mut sealed = Vec::new();
        let mut current = 0;
        for row in rows {
            let tenant = TenantId(row.get(0));
            let stored: &[u8] = row.get(1);
            let failed = |error| RotateError::Crypto { tenant, error };
            let plaintext = ring.decrypt(tenant, stored).map_err(failed)?;
            if KeyRing::key_id(stored).map_err(failed)? == ring.current_id() {
                current += 1;
                continue;
            }
            sealed.push(ring.encrypt(tenant, &plaintext).map_err(failed)?);
            tenants.push(tenant.0);
        }
        if !tenants.is_empty() {
            tx.execute(
                "UPDATE app.tenant_settings s SET api_key_ciphertext = u.sealed \
                 FROM unnest($1::uuid[], $2::bytea[]) AS u (tenant_id, sealed) \
                 WHERE s.tenant_id = u.tenant_id",
                &[&tenants, &sealed],
            )
            .await
            .map_err(DbError::from)?;
        }
        tx.batch_execute("ALTER TABLE app.tenant_settings FORCE ROW LEVEL SECURITY")
            .await
            .map_err(DbError::from)?;
        tx.commit().await.map_err(DbError::from)?;
        Ok(KeyRotation {
            rotated: tenants.len(),
            current,
        })
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

    /// The underlying client, to open a transaction (the restore of a backup).
    pub(crate) fn client_mut(&mut self) -> &mut Client {
        &mut self.client
    }
}

/// Key rotation failures; nothing was changed.
#[derive(Debug, thiserror::Error)]
pub enum RotateError {
    /// Could not talk to the database.
    #[error(transparent)]
    Db(#[from] DbError),
    /// A tenant's stored key does not open with the configured keys.
    #[error("the stored API key of tenant {tenant} cannot be re-encrypted: {error}")]
    Crypto {
        /// The tenant.
        tenant: TenantId,
        /// Why.
        error: CryptoError,
    },
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
