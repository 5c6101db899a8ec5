//! Writing a backup: one tenant, read as `rg_app` through a snapshot tenant session.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use super::{
    hex, ident, shapes, CsvRecords, Header, SchemaSource, TableEntry, TenantInfo, CATALOG,
    FORMAT_VERSION, MAGIC, TABLES,
};
use crate::db::{Database, DbError};
use crate::ids::{Role, TenantId, UserId};

/// Settings of the backup's transaction: text output that reads back the same anywhere (ISO
/// dates in UTC, floats exact, bytea in hex), and no statement timeout (a table's COPY may
/// take long).
const OUTPUT_SETTINGS: &str = "\
SELECT set_config('DateStyle', 'ISO, YMD', true),
       set_config('TimeZone', 'UTC', true),
       set_config('extra_float_digits', '3', true),
       set_config('bytea_output', 'hex', true),
       set_config('statement_timeout', '0', true)";

/// Why a backup failed. The output file is left as it was (a partial file is removed).
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// The database failed.
    #[error(transparent)]
    Db(#[from] DbError),
    /// The file could not be written.
    #[error("cannot write {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The user is not a member: row-level security would show the session nothing.
    #[error("user {user} is not a member of tenant {tenant}")]
    NotMember {
        /// The tenant.
        tenant: TenantId,
        /// The user.
        user: UserId,
    },
    /// Only owners may take a backup: it holds the tenant's members, settings and usage, which
    /// the API shows to owners only.
    #[error("a backup needs an owner of the tenant; user {user} is a {role} of it")]
    NotOwner {
        /// The user.
        user: UserId,
        /// Their role.
        role: &'static str,
    },
    /// The database lacks a table this build backs up (it is older than the build).
    #[error("the database has no table app.{0}: migrate it first")]
    MissingTable(String),
}

/// What a backup wrote.
#[derive(Clone, Debug)]
pub struct BackupReport {
    /// The header written.
    pub header: Header,
    /// Size of the file.
    pub bytes: u64,
    /// How long it took.
    pub elapsed: Duration,
}

impl BackupReport {
    /// Rows in all tables.
    pub fn rows(&self) -> u64 {
        self.header.tables.iter().map(|t| t.rows).sum()
    }
}

/// Writes a backup of `tenant` to `out`, reading as `user`, who must be an owner of it.
///
/// Every table is read in one `REPEATABLE READ READ ONLY` transaction as `rg_app` with the
/// tenant and user set: the queries have no tenant condition of their own, row-level security
/// alone decides what they return. Rows are ordered by primary key, so the same data gives the
/// same file (but for the header's time). The file is written next to `out` and renamed over
/// it at the end: `out` is never half-written.
pub async fn backup(
    db: &Database,
    tenant: TenantId,
    user: UserId,
    schema_version: (i64, SchemaSource),
    out: &Path,
) -> Result<BackupReport, BackupError> {
    let started = Instant::now();
    let session = db.snapshot_session(tenant, user).await?;
    match session.role() {
        None => return Err(BackupError::NotMember { tenant, user }),
        Some(Role::Owner) => {}
        Some(role) => {
            return Err(BackupError::NotOwner {
                user,
                role: role.as_str(),
            })
        }
    }
    session.query(OUTPUT_SETTINGS, &[]).await?;
    let row = session
        .query_one("SELECT id, slug, name, now() FROM app.tenants", &[])
        .await?;
    let info = TenantInfo {
        id: row.get(0),
        slug: row.get(1),
        name: row.get(2),
    };
    let snapshot: chrono::DateTime<chrono::Utc> = row.get(3);
    let names: Vec<String> = TABLES.iter().map(|t| t.to_string()).collect();
    let shapes = shapes(&session.query(CATALOG, &[&names]).await?);

    let partial = Partial::new(out);
    let mut data = BufWriter::with_capacity(
        super::CHUNK,
        File::create(&partial.data).map_err(io(&partial.data))?,
    );
    let mut tables = Vec::with_capacity(TABLES.len());
    for name in TABLES {
        let shape = shapes
            .iter()
            .find(|s| s.name == name)
            .ok_or_else(|| BackupError::MissingTable(name.to_owned()))?;
        let columns = comma_separated(&shape.columns);
        let sql = format!(
            "COPY (SELECT {columns} FROM app.{} ORDER BY {}) TO STDOUT (FORMAT csv)",
            ident(name),
            comma_separated(&shape.key),
        );
        let mut hasher = Sha256::new();
        let mut records = CsvRecords::default();
        let mut bytes = 0u64;
        session
            .copy_out(&sql, |chunk| {
                hasher.update(chunk);
                records.feed(chunk);
                bytes += chunk.len() as u64;
                data.write_all(chunk).map_err(io(&partial.data))
            })
            .await?;
        tables.push(TableEntry {
            name: name.to_owned(),
            columns: shape.columns.clone(),
            rows: records.records(),
            bytes,
            sha256: hex(&hasher.finalize()),
        });
    }
    session.commit().await?;
    data.flush().map_err(io(&partial.data))?;
    drop(data);

    let header = Header {
        format_version: FORMAT_VERSION,
        created_at: snapshot.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        written_by: format!("research-graph {}", crate::VERSION),
        schema_version: schema_version.0,
        schema_version_source: schema_version.1,
        tenant: info,
        tables,
    };
    let line = serde_json::to_vec(&header).expect("a header serialises");
    let mut file = BufWriter::new(File::create(&partial.file).map_err(io(&partial.file))?);
    let write = |file: &mut BufWriter<File>| -> std::io::Result<()> {
        file.write_all(MAGIC.as_bytes())?;
        file.write_all(b"\n")?;
        file.write_all(&line)?;
        file.write_all(format!("\nsha256:{}\n", hex(&Sha256::digest(&line))).as_bytes())?;
        std::io::copy(&mut File::open(&partial.data)?, file)?;
        file.flush()?;
        file.get_ref().sync_all()
    };
    write(&mut file).map_err(io(&partial.file))?;
    drop(file);
    std::fs::rename(&partial.file, out).map_err(io(out))?;
    let bytes = std::fs::metadata(out).map_err(io(out))?.len();
    Ok(BackupReport {
        header,
        bytes,
        elapsed: started.elapsed(),
    })
}

/// Names `path` in an I/O error, when there is one.
fn io(path: &Path) -> impl FnOnce(std::io::Error) -> BackupError + '_ {
    move |source| BackupError::Io {
        path: path.to_owned(),
        source,
    }
}

fn comma_separated(names: &[String]) -> String {
    names
        .iter()
        .map(|n| ident(n))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The files a backup writes before the final rename, removed when it ends either way.
struct Partial {
    /// The tables' CSV, one after the other.
    data: PathBuf,
    /// The whole file, renamed to the output at the end.
    file: PathBuf,
}

impl Partial {
    fn new(out: &Path) -> Partial {
        let with_suffix = |suffix: &str| {
            let mut name = out.file_name().unwrap_or_default().to_os_string();
            name.push(suffix);
            out.with_file_name(name)
        };
        Partial {
            data: with_suffix(".data.partial"),
            file: with_suffix(".partial"),
        }
    }
}

impl Drop for Partial {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.data);
        let _ = std::fs::remove_file(&self.file);
    }
}
