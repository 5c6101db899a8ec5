//! Backup and restore of one tenant's data.
//!
//! - [`dump::backup`] reads the tenant through a read-only, single-snapshot tenant session as
//!   `rg_app` (so row-level security, not a `WHERE`, decides which rows can be in the file),
//!   table by table in foreign-key order, with `COPY (SELECT …) TO STDOUT (FORMAT csv)`.
//! - [`restore::restore`] loads a backup through the privileged connection into a migrated
//!   database where the tenant does not exist, in one transaction, after checking every digest.
//!
//! The file:
//!
//! ```text
//! research-graph tenant backup\n        the magic line
//! {"format_version":1,…}\n              the header, one line of JSON (see Header)
//! sha256:<64 hex digits>\n               the SHA-256 of the header line (without its newline)
//! <CSV of table 1><CSV of table 2>…      each table's COPY output, as long as the header says
//! ```
//!
//! Any byte changed anywhere is detected: in the header by its digest, in a table by the
//! table's digest, and a truncated or extended file by its length.

pub mod dump;
pub mod restore;

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

pub use dump::{backup, BackupError, BackupReport};
pub use restore::{restore, ApiKeyOutcome, RestoreError, RestoreOptions, RestoreReport};

/// The first line of every backup.
pub const MAGIC: &str = "research-graph tenant backup";

/// The version of the file layout this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;

/// The tables a backup holds, in foreign-key order: every table comes after the tables it
/// references, so a restore loads them in this order.
pub const TABLES: [&str; 17] = [
    "tenants",
    "tenant_users",
    "tenant_settings",
    "papers",
    "paper_sections",
    "nodes",
    "edges",
    "jobs",
    "entity_mentions",
    "section_extractions",
    "edge_evidence",
    "merge_candidates",
    "inferred_insights",
    "insight_nodes",
    "insight_edges",
    "usage_events",
    "usage_daily",
];

/// Tenant tables a backup leaves out on purpose: reservations are the estimated costs of model
/// calls in flight, meaningless outside the process that made them (they expire anyway).
pub const SKIPPED: [&str; 1] = ["usage_reservations"];

/// A backup's header.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Header {
    /// [`FORMAT_VERSION`] of the build that wrote it.
    pub format_version: u32,
    /// When the backup's snapshot was read (RFC 3339, UTC).
    pub created_at: String,
    /// The program and version that wrote it.
    pub written_by: String,
    /// The newest migration of the database the backup was read from.
    pub schema_version: i64,
    /// Where `schema_version` comes from.
    pub schema_version_source: SchemaSource,
    /// The tenant.
    pub tenant: TenantInfo,
    /// The tables, in the order their data follows the header.
    pub tables: Vec<TableEntry>,
}

/// Where a backup's schema version was read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SchemaSource {
    /// From the database's `refinery_schema_history` (through the privileged connection).
    Database,
    /// The newest migration of the build that wrote the backup: `rg_app` cannot read the
    /// migration history, so without a privileged connection this is the best known.
    Build,
}

/// The tenant a backup holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantInfo {
    /// Its id, kept on restore (every row and the API key's encryption name it).
    pub id: Uuid,
    /// Its slug.
    pub slug: String,
    /// Its name.
    pub name: String,
}

/// One table of a backup.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableEntry {
    /// The table, in schema `app`.
    pub name: String,
    /// The columns of its CSV, in order (generated columns are left out: the database
    /// computes them again).
    pub columns: Vec<String>,
    /// Rows.
    pub rows: u64,
    /// Bytes of CSV.
    pub bytes: u64,
    /// SHA-256 of the CSV, in lowercase hex.
    pub sha256: String,
}

/// Why a backup file cannot be read. Nothing has been written to any database.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The first line is not [`MAGIC`].
    #[error("{0} is not a research-graph tenant backup")]
    NotABackup(PathBuf),
    /// The header does not match its digest.
    #[error("the backup's header is damaged: its SHA-256 does not match")]
    HeaderDamaged,
    /// The header matches its digest but is not a header this build understands.
    #[error("the backup's header is not valid: {0}")]
    HeaderInvalid(String),
    /// Written by a newer build.
    #[error(
        "the backup has format version {found}; this research-graph reads version {FORMAT_VERSION}"
    )]
    NewerFormat {
        /// The file's version.
        found: u32,
    },
    /// The file is not as long as its header says.
    #[error(
        "the backup is truncated or has bytes added: its header describes {expected} bytes, the \
         file has {found}"
    )]
    Length {
        /// Bytes the header accounts for.
        expected: u64,
        /// Bytes in the file.
        found: u64,
    },
    /// A table's data does not match its digest.
    #[error("the data of table app.{0} in the backup is damaged: its SHA-256 does not match")]
    TableDamaged(String),
    /// A table this build does not restore, or one named twice.
    #[error("the backup names table {0:?}, which is not a tenant table this build restores")]
    UnknownTable(String),
    /// No `tenants` table.
    #[error("the backup has no tenants table")]
    NoTenantTable,
}

/// A backup file whose header has been read and checked (not yet its tables: see
/// [`BackupFile::verify`]).
#[derive(Debug)]
pub struct BackupFile {
    path: PathBuf,
    header: Header,
    /// Offset of each table's data, in header order.
    offsets: Vec<u64>,
}

/// Bytes read from a backup file at a time.
pub(crate) const CHUNK: usize = 256 << 10;

/// The longest header line read, so that a wrong file does not fill memory.
const MAX_HEADER_BYTES: u64 = 16 << 20;

impl BackupFile {
    /// Reads and checks the header of the backup at `path`: the magic line, the header's
    /// digest, its format version, its tables and the file's length.
    pub fn open(path: &Path) -> Result<BackupFile, FileError> {
        let io = |source| FileError::Io {
            path: path.to_owned(),
            source,
        };
        let file = File::open(path).map_err(io)?;
        let found = file.metadata().map_err(io)?.len();
        let mut reader = BufReader::new(file).take(MAX_HEADER_BYTES);
        let mut magic = Vec::new();
        reader.read_until(b'\n', &mut magic).map_err(io)?;
        if magic != format!("{MAGIC}\n").as_bytes() {
            return Err(FileError::NotABackup(path.to_owned()));
        }
        let mut line = Vec::new();
        reader.read_until(b'\n', &mut line).map_err(io)?;
        let mut digest = Vec::new();
        reader.read_until(b'\n', &mut digest).map_err(io)?;
        let (Some(b'\n'), Some(b'\n')) = (line.last(), digest.last()) else {
            return Err(FileError::HeaderDamaged);
        };
        line.pop();
        digest.pop();
        if digest != format!("sha256:{}", hex(&Sha256::digest(&line))).as_bytes() {
            return Err(FileError::HeaderDamaged);
        }
        #[derive(Deserialize)]
        struct Version {
            format_version: u32,
        }
        let version: Version =
            serde_json::from_slice(&line).map_err(|e| FileError::HeaderInvalid(e.to_string()))?;
        if version.format_version > FORMAT_VERSION {
            return Err(FileError::NewerFormat {
                found: version.format_version,
            });
        }
        let header: Header =
            serde_json::from_slice(&line).map_err(|e| FileError::HeaderInvalid(e.to_string()))?;
        let mut seen = Vec::new();
        for table in &header.tables {
            if !TABLES.contains(&table.name.as_str()) || seen.contains(&table.name) {
                return Err(FileError::UnknownTable(table.name.clone()));
            }
            seen.push(table.name.clone());
        }
        if !seen.iter().any(|t| t == "tenants") {
            return Err(FileError::NoTenantTable);
        }
        let start = (magic.len() + line.len() + 1 + digest.len() + 1) as u64;
        let mut offsets = Vec::with_capacity(header.tables.len());
        let mut end = start;
        for table in &header.tables {
            offsets.push(end);
            end = end.saturating_add(table.bytes);
        }
        if end != found {
            return Err(FileError::Length {
                expected: end,
                found,
            });
        }
        Ok(BackupFile {
            path: path.to_owned(),
            header,
            offsets,
        })
    }

    /// The header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// Reads every table's data and checks it against its digest.
    pub fn verify(&self) -> Result<(), FileError> {
        let mut buffer = vec![0; CHUNK];
        for index in 0..self.header.tables.len() {
            let mut section = self.section(index)?;
            while section.read(&mut buffer)?.is_some() {}
            section.finish()?;
        }
        Ok(())
    }

    /// A reader of the data of the table at `index` in the header, checking its digest.
    pub(crate) fn section(&self, index: usize) -> Result<Section, FileError> {
        let table = &self.header.tables[index];
        let io = |source| FileError::Io {
            path: self.path.clone(),
            source,
        };
        let mut file = File::open(&self.path).map_err(io)?;
        file.seek(SeekFrom::Start(self.offsets[index]))
            .map_err(io)?;
        Ok(Section {
            path: self.path.clone(),
            table: table.name.clone(),
            expected: table.sha256.clone(),
            file,
            left: table.bytes,
            hasher: Sha256::new(),
        })
    }
}

/// One table's data in a backup file, read in chunks and hashed on the way.
pub(crate) struct Section {
    path: PathBuf,
    table: String,
    expected: String,
    file: File,
    left: u64,
    hasher: Sha256,
}

impl Section {
    /// The next chunk (at most `buffer.len()` bytes), or `None` at the end of the table.
    pub(crate) fn read<'b>(&mut self, buffer: &'b mut [u8]) -> Result<Option<&'b [u8]>, FileError> {
        if self.left == 0 {
            return Ok(None);
        }
        let want = buffer
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let chunk = &mut buffer[..want];
        self.file
            .read_exact(chunk)
            .map_err(|source| FileError::Io {
                path: self.path.clone(),
                source,
            })?;
        self.left -= want as u64;
        self.hasher.update(&*chunk);
        Ok(Some(chunk))
    }

    /// Checks the digest of everything read (which must be the whole table).
    pub(crate) fn finish(&mut self) -> Result<(), FileError> {
        let digest = hex(&std::mem::take(&mut self.hasher).finalize());
        if self.left != 0 || digest != self.expected {
            return Err(FileError::TableDamaged(self.table.clone()));
        }
        Ok(())
    }
}

/// Counts the records of Postgres' CSV output as it streams by: a record ends at a newline
/// outside quotes (a quote inside a quoted field is doubled, so it toggles twice).
#[derive(Debug, Default)]
pub(crate) struct CsvRecords {
    in_quotes: bool,
    records: u64,
}

impl CsvRecords {
    pub(crate) fn feed(&mut self, bytes: &[u8]) {
        for &b in bytes {
            match b {
                b'"' => self.in_quotes = !self.in_quotes,
                b'\n' if !self.in_quotes => self.records += 1,
                _ => {}
            }
        }
    }

    pub(crate) fn records(&self) -> u64 {
        self.records
    }
}

/// Lowercase hex.
pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// A SQL identifier, quoted as Postgres would.
pub(crate) fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Each table's columns (generated ones left out) and primary key, from the catalog: what a
/// backup copies and orders by, and what a restore checks the file's columns against.
pub(crate) const CATALOG: &str = "\
SELECT c.relname::text,
       array(SELECT a.attname::text FROM pg_attribute a
             WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
               AND a.attgenerated = ''
             ORDER BY a.attnum),
       array(SELECT a.attname::text
             FROM pg_index i
             CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k (attnum, ord)
             JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
             WHERE i.indrelid = c.oid AND i.indisprimary
             ORDER BY k.ord)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'app' AND c.relkind = 'r' AND c.relname = ANY ($1)";

/// A table's columns and primary key, as [`CATALOG`] reads them.
#[derive(Clone, Debug)]
pub(crate) struct TableShape {
    pub(crate) name: String,
    pub(crate) columns: Vec<String>,
    pub(crate) key: Vec<String>,
}

pub(crate) fn shapes(rows: &[tokio_postgres::Row]) -> Vec<TableShape> {
    rows.iter()
        .map(|r| TableShape {
            name: r.get(0),
            columns: r.get(1),
            key: r.get(2),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_records_are_counted_across_chunks_and_quoted_newlines() {
        let mut count = CsvRecords::default();
        count.feed(b"a,\"x\ny\"\nb,\"he said \"\"");
        count.feed(b"hi\"\"\n\"\nc,d\n");
        assert_eq!(count.records(), 3);
    }

    #[test]
    fn identifiers_are_quoted() {
        assert_eq!(ident("tenant_id"), "\"tenant_id\"");
        assert_eq!(ident("a\"b"), "\"a\"\"b\"");
    }
}
