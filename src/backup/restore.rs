//! Restoring a backup: through the privileged connection, in one transaction, into a migrated
//! database where the tenant does not exist yet.

use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio_postgres::Transaction;
use uuid::Uuid;

use super::{ident, shapes, BackupFile, FileError, TenantInfo, CATALOG, CHUNK, TABLES};
use crate::crypto::{CryptoError, KeyRing};
use crate::db::admin::AdminConnection;
use crate::db::DbError;
use crate::ids::DEFAULT_TENANT;
use crate::tenants::Slug;

/// How to restore.
#[derive(Clone, Copy, Debug, Default)]
pub struct RestoreOptions<'a> {
    /// A new slug for the tenant (its slug is taken in this database); the id stays.
    pub tenant_slug: Option<&'a str>,
    /// This deployment's master keys, to check that a stored API key opens here.
    pub key_ring: Option<&'a KeyRing>,
    /// Leave the tenant's stored API key out (an owner sets it again).
    pub drop_api_key: bool,
}

/// What became of the tenant's stored API key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApiKeyOutcome {
    /// The backup had none.
    None,
    /// Restored; it opens with this deployment's keys.
    Kept,
    /// Left out (`drop_api_key`).
    Dropped,
}

/// What a restore did.
#[derive(Clone, Debug)]
pub struct RestoreReport {
    /// The tenant, with the slug it has now.
    pub tenant: TenantInfo,
    /// Rows restored per table, in the order loaded.
    pub tables: Vec<(String, u64)>,
    /// Jobs that were queued or running in the backup, restored as cancelled.
    pub jobs_cancelled: u64,
    /// The stored API key.
    pub api_key: ApiKeyOutcome,
    /// Whether the daily usage rollups that the trigger computed from the restored events
    /// equal the backed-up ones (which are what was kept); `None` without rollups.
    pub rollups_matched: Option<bool>,
    /// The database's empty default tenant was replaced by the backup's.
    pub replaced_empty_default: bool,
    /// The login cannot bypass row-level security, so the restore ran as the tables' owner
    /// with row-level security not forced on them for its transaction.
    pub as_table_owner: bool,
    /// How long it took.
    pub elapsed: Duration,
}

impl RestoreReport {
    /// Rows in all tables.
    pub fn rows(&self) -> u64 {
        self.tables.iter().map(|(_, rows)| rows).sum()
    }
}

/// Why a restore was refused or failed. Nothing was written: the transaction rolled back.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// The file is not a readable, intact backup.
    #[error(transparent)]
    File(#[from] FileError),
    /// The database failed.
    #[error(transparent)]
    Db(#[from] DbError),
    /// No migrations were applied to the database.
    #[error("the database is not migrated: run research-graph migrate first")]
    NotMigrated,
    /// The backup was read from a database with newer migrations.
    #[error(
        "the backup's schema (migration V{backup}) is newer than this database's (V{database}): \
         migrate this database with a newer research-graph first"
    )]
    NewerSchema {
        /// The backup's version.
        backup: i64,
        /// The database's version.
        database: i64,
    },
    /// The tenant is here already.
    #[error(
        "tenant {id} already exists in this database (slug {slug:?}); a restore only creates a \
         tenant that does not exist"
    )]
    TenantExists {
        /// Its id.
        id: Uuid,
        /// Its slug here.
        slug: String,
    },
    /// Another tenant has the slug.
    #[error(
        "the slug {0:?} belongs to another tenant in this database: restore with --tenant-slug NEW"
    )]
    SlugTaken(String),
    /// The new slug is not a slug.
    #[error("invalid tenant slug: {0}")]
    InvalidSlug(String),
    /// The database lacks a table of the backup.
    #[error("this database has no table app.{0}: migrate it first")]
    MissingTable(String),
    /// The database lacks a column of the backup.
    #[error("this database's table app.{table} has no column {column:?}, which the backup has")]
    MissingColumn {
        /// The table.
        table: String,
        /// The column.
        column: String,
    },
    /// The tenants table of the backup is not its tenant's one row.
    #[error("the backup's tenants table does not hold exactly the row of tenant {0}")]
    TenantRow(Uuid),
    /// A table loaded another number of rows than the header says.
    #[error("table app.{table}: the backup's header says {expected} rows, {loaded} were loaded")]
    RowCount {
        /// The table.
        table: String,
        /// Rows in the header.
        expected: u64,
        /// Rows loaded.
        loaded: u64,
    },
    /// A table's data names another tenant.
    #[error("table app.{0} of the backup holds rows of another tenant")]
    ForeignRows(String),
    /// The stored API key does not open here.
    #[error(
        "the backup's API key (sealed under key id {key_id}) does not open with this \
         deployment's keys ({error}): give that key as ENCRYPTION_PREVIOUS_KEYS, or restore with \
         --drop-api-key"
    )]
    ApiKey {
        /// The key id the ciphertext names.
        key_id: u16,
        /// Why it does not open.
        error: CryptoError,
    },
    /// The stored API key cannot be checked.
    #[error(
        "the backup holds the tenant's encrypted API key: give ENCRYPTION_KEY (and \
         ENCRYPTION_PREVIOUS_KEYS) so the restore can check that it opens here, or restore \
         with --drop-api-key"
    )]
    ApiKeyUnchecked,
}

impl From<tokio_postgres::Error> for RestoreError {
    fn from(error: tokio_postgres::Error) -> Self {
        RestoreError::Db(DbError::from(error))
    }
}

/// Restores the backup at `path` into the database of `admin`.
///
/// First, without touching the database, the file is checked: its header's digest, every
/// table's digest, its length. Then, in one transaction: the database must be migrated at
/// least as far as the backup's source; the tenant must not exist (except the default tenant
/// of a fresh database, which is replaced while it holds no content: no rows but its own,
/// its settings and its members) and its slug must be free. Each table is loaded with
/// `COPY … FROM STDIN` in foreign-key order, must load as many rows as the header says, and
/// every row must be the tenant's. Then:
///
/// - jobs that were queued or running are restored as cancelled, so nothing runs (or calls a
///   model) by itself in this deployment; a member re-runs them with `rerunJob`;
/// - usage events fire the rollup trigger as any insert does; the rollups it computed are
///   replaced by the backed-up ones, so usage is counted once, and the report says whether
///   they were equal;
/// - a stored API key must open with `key_ring` (it is sealed with the tenant id, which is
///   kept, and the source's master key), unless `drop_api_key`.
///
/// A login that bypasses row-level security (a superuser) loads the tables as they are. Any
/// other migration login acts as `rg_owner` with row-level security not forced on the tables
/// for the transaction (as `keys rotate` does): that takes their locks until it commits.
pub async fn restore(
    admin: &mut AdminConnection,
    path: &Path,
    options: &RestoreOptions<'_>,
) -> Result<RestoreReport, RestoreError> {
    let started = Instant::now();
    let file = BackupFile::open(path)?;
    file.verify()?;
    let header = file.header().clone();
    let slug = match options.tenant_slug {
        Some(slug) => Slug::parse(slug)
            .map_err(RestoreError::InvalidSlug)?
            .as_str()
            .to_owned(),
        None => header.tenant.slug.clone(),
    };
    let database = admin
        .schema_version()
        .await?
        .ok_or(RestoreError::NotMigrated)?;
    if header.schema_version > database {
        return Err(RestoreError::NewerSchema {
            backup: header.schema_version,
            database,
        });
    }
    let tenant = header.tenant.id;

    let tx = admin.client_mut().transaction().await?;
    tx.batch_execute(
        "SET LOCAL DateStyle = 'ISO, YMD'; SET LOCAL TimeZone = 'UTC'; \
         SET LOCAL lock_timeout = '10s'; SET LOCAL statement_timeout = 0",
    )
    .await?;
    let bypass: bool = tx
        .query_one(
            "SELECT rolsuper OR rolbypassrls FROM pg_roles WHERE rolname = current_user",
            &[],
        )
        .await?
        .get(0);
    if !bypass {
        tx.batch_execute("SET LOCAL ROLE rg_owner").await?;
        tx.batch_execute(&alter_all("NO FORCE")).await?;
    }

    let mut replaced_empty_default = false;
    if let Some(row) = tx
        .query_opt("SELECT slug FROM app.tenants WHERE id = $1", &[&tenant])
        .await?
    {
        if tenant == DEFAULT_TENANT.0 && !has_content(&tx, tenant).await? {
            tx.execute("DELETE FROM app.tenants WHERE id = $1", &[&tenant])
                .await?;
            replaced_empty_default = true;
        } else {
            return Err(RestoreError::TenantExists {
                id: tenant,
                slug: row.get(0),
            });
        }
    }
    if tx
        .query_opt("SELECT 1 FROM app.tenants WHERE slug = $1", &[&slug])
        .await?
        .is_some()
    {
        return Err(RestoreError::SlugTaken(slug));
    }

    let names: Vec<String> = TABLES.iter().map(|t| t.to_string()).collect();
    let shapes = shapes(&tx.query(CATALOG, &[&names]).await?);
    let mut tables = Vec::new();
    let mut rollups_matched = None;
    for name in TABLES {
        let Some(index) = header.tables.iter().position(|t| t.name == name) else {
            continue;
        };
        let entry = &header.tables[index];
        let shape = shapes
            .iter()
            .find(|s| s.name == name)
            .ok_or_else(|| RestoreError::MissingTable(name.to_owned()))?;
        if let Some(column) = entry.columns.iter().find(|c| !shape.columns.contains(c)) {
            return Err(RestoreError::MissingColumn {
                table: name.to_owned(),
                column: column.clone(),
            });
        }
        let columns = entry
            .columns
            .iter()
            .map(|c| ident(c))
            .collect::<Vec<_>>()
            .join(", ");
        let loaded = match name {
            "tenants" => {
                tx.batch_execute(
                    "CREATE TEMPORARY TABLE rg_restore_tenants (LIKE app.tenants) ON COMMIT DROP",
                )
                .await?;
                let loaded = copy_in(
                    &tx,
                    &file,
                    index,
                    &format!("COPY rg_restore_tenants ({columns}) FROM STDIN (FORMAT csv)"),
                )
                .await?;
                let row = tx
                    .query_one(
                        "SELECT count(*), coalesce(bool_and(id = $1), false) \
                         FROM rg_restore_tenants",
                        &[&tenant],
                    )
                    .await?;
                if row.get::<_, i64>(0) != 1 || !row.get::<_, bool>(1) {
                    return Err(RestoreError::TenantRow(tenant));
                }
                tx.execute("UPDATE rg_restore_tenants SET slug = $1", &[&slug])
                    .await?;
                tx.execute(
                    &format!(
                        "INSERT INTO app.tenants ({columns}) SELECT {columns} \
                         FROM rg_restore_tenants"
                    ),
                    &[],
                )
                .await?;
                loaded
            }
            "usage_daily" => {
                // The trigger has rolled up the restored events already: keep its rows aside
                // to compare, and load the backed-up ones in their place.
                tx.batch_execute(&format!(
                    "CREATE TEMPORARY TABLE rg_restore_rollups ON COMMIT DROP AS \
                     SELECT * FROM app.usage_daily WHERE tenant_id = '{tenant}'"
                ))
                .await?;
                tx.execute(
                    "DELETE FROM app.usage_daily WHERE tenant_id = $1",
                    &[&tenant],
                )
                .await?;
                let loaded = copy_in(
                    &tx,
                    &file,
                    index,
                    &format!("COPY app.usage_daily ({columns}) FROM STDIN (FORMAT csv)"),
                )
                .await?;
                let differing: i64 = tx
                    .query_one(
                        "SELECT count(*) FROM (
                             (SELECT * FROM rg_restore_rollups
                              EXCEPT ALL SELECT * FROM app.usage_daily WHERE tenant_id = $1)
                             UNION ALL
                             (SELECT * FROM app.usage_daily WHERE tenant_id = $1
                              EXCEPT ALL SELECT * FROM rg_restore_rollups)
                         ) d",
                        &[&tenant],
                    )
                    .await?
                    .get(0);
                rollups_matched = Some(differing == 0);
                loaded
            }
            _ => {
                copy_in(
                    &tx,
                    &file,
                    index,
                    &format!(
                        "COPY app.{} ({columns}) FROM STDIN (FORMAT csv)",
                        ident(name)
                    ),
                )
                .await?
            }
        };
        if loaded != entry.rows {
            return Err(RestoreError::RowCount {
                table: name.to_owned(),
                expected: entry.rows,
                loaded,
            });
        }
        let column = if name == "tenants" { "id" } else { "tenant_id" };
        let mine: i64 = tx
            .query_one(
                &format!(
                    "SELECT count(*) FROM app.{} WHERE {column} = $1",
                    ident(name)
                ),
                &[&tenant],
            )
            .await?
            .get(0);
        if mine as u64 != loaded {
            return Err(RestoreError::ForeignRows(name.to_owned()));
        }
        tables.push((name.to_owned(), loaded));
    }

    let jobs_cancelled = tx
        .execute(
            "UPDATE app.jobs SET status = 'cancelled',
                 last_error = 'restored from a backup while ' || status
                              || '; not run here (re-run it with rerunJob)',
                 lease_owner = NULL, lease_expires_at = NULL,
                 finished_at = now(), updated_at = now()
             WHERE tenant_id = $1 AND status IN ('queued', 'running')",
            &[&tenant],
        )
        .await?;

    let sealed: Option<Vec<u8>> = tx
        .query_opt(
            "SELECT api_key_ciphertext FROM app.tenant_settings \
             WHERE tenant_id = $1 AND api_key_ciphertext IS NOT NULL",
            &[&tenant],
        )
        .await?
        .map(|r| r.get(0));
    let api_key = match (sealed, options.key_ring) {
        (None, _) => ApiKeyOutcome::None,
        (Some(_), _) if options.drop_api_key => {
            tx.execute(
                "UPDATE app.tenant_settings SET api_key_provider = NULL, \
                 api_key_ciphertext = NULL, api_key_last4 = NULL, updated_at = now() \
                 WHERE tenant_id = $1",
                &[&tenant],
            )
            .await?;
            ApiKeyOutcome::Dropped
        }
        (Some(_), None) => return Err(RestoreError::ApiKeyUnchecked),
        (Some(sealed), Some(ring)) => {
            let opened = ring.decrypt(crate::ids::TenantId(tenant), &sealed);
            if let Err(error) = opened {
                return Err(RestoreError::ApiKey {
                    key_id: KeyRing::key_id(&sealed).unwrap_or_default(),
                    error,
                });
            }
            ApiKeyOutcome::Kept
        }
    };

    if !bypass {
        tx.batch_execute(&alter_all("FORCE")).await?;
    }
    tx.commit().await?;
    Ok(RestoreReport {
        tenant: TenantInfo {
            slug,
            ..header.tenant
        },
        tables,
        jobs_cancelled,
        api_key,
        rollups_matched,
        replaced_empty_default,
        as_table_owner: !bypass,
        elapsed: started.elapsed(),
    })
}

/// `ALTER TABLE … {how} ROW LEVEL SECURITY` for every table a backup holds.
fn alter_all(how: &str) -> String {
    TABLES
        .iter()
        .map(|t| format!("ALTER TABLE app.{} {how} ROW LEVEL SECURITY;", ident(t)))
        .collect()
}

/// Whether the tenant has any row besides its own, its settings and its members.
async fn has_content(tx: &Transaction<'_>, tenant: Uuid) -> Result<bool, RestoreError> {
    let sql = TABLES
        .iter()
        .filter(|t| !matches!(**t, "tenants" | "tenant_users" | "tenant_settings"))
        .map(|t| {
            format!(
                "EXISTS (SELECT 1 FROM app.{} WHERE tenant_id = $1)",
                ident(t)
            )
        })
        .collect::<Vec<_>>()
        .join(" OR ");
    Ok(tx
        .query_one(&format!("SELECT {sql}"), &[&tenant])
        .await?
        .get(0))
}

/// Streams the data of the table at `index` of `file` into `copy` (a `COPY … FROM STDIN`),
/// checking its digest on the way; returns the rows loaded. A digest that no longer matches
/// (the file changed since it was verified) aborts the COPY.
async fn copy_in(
    tx: &Transaction<'_>,
    file: &BackupFile,
    index: usize,
    copy: &str,
) -> Result<u64, RestoreError> {
    use futures_util::SinkExt;
    let mut section = file.section(index)?;
    let sink = tx.copy_in::<str, Bytes>(copy).await?;
    let mut sink = std::pin::pin!(sink);
    let mut buffer = vec![0; CHUNK];
    while let Some(chunk) = section.read(&mut buffer)? {
        sink.send(Bytes::copy_from_slice(chunk)).await?;
    }
    section.finish()?;
    Ok(sink.as_mut().finish().await?)
}
