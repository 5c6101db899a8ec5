//! Errors of the database layer.

use std::io;

use deadpool_postgres::{PoolError, TimeoutType};
use tokio_postgres::error::SqlState;

/// What went wrong talking to Postgres.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// No connection could be had from the pool (database down, or every connection busy past
    /// the wait timeout).
    #[error("database unavailable: {0}")]
    Pool(#[from] PoolError),
    /// A statement failed.
    #[error("database error: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    /// A pooled connection arrived with a tenant or user already set: some code used a
    /// session-level setting. The connection is discarded and the request refused.
    #[error("pooled connection arrived with a tenant context already set")]
    LeakedContext,
    /// A statement of the session was interrupted (its future dropped), so the transaction was
    /// abandoned rather than committed.
    #[error("a statement of this transaction was interrupted; the transaction was abandoned")]
    Interrupted,
    /// The pool could not be built from the configuration.
    #[error("invalid pool configuration: {0}")]
    Config(String),
}

impl DbError {
    /// The SQLSTATE of a failed statement, if that is what this is.
    pub fn sql_state(&self) -> Option<&SqlState> {
        match self {
            DbError::Postgres(e) => e.code(),
            _ => None,
        }
    }

    /// True when the same work may succeed if tried again: the database or the pool was
    /// unavailable, a statement was interrupted, or the transaction lost a deadlock or a
    /// serialization conflict.
    pub fn is_transient(&self) -> bool {
        self.is_unavailable()
            || matches!(self, DbError::Interrupted)
            || matches!(self.sql_state().map(|c| c.code()), Some("40P01" | "40001"))
    }

    /// True when retrying later can succeed: the database or the pool was unavailable.
    pub fn is_unavailable(&self) -> bool {
        match self {
            DbError::Pool(_) => true,
            DbError::Postgres(e) => match e.code() {
                Some(code) => {
                    code.code().starts_with("08")
                        || *code == SqlState::ADMIN_SHUTDOWN
                        || *code == SqlState::CRASH_SHUTDOWN
                        || *code == SqlState::CANNOT_CONNECT_NOW
                }
                None => {
                    e.is_closed()
                        || std::error::Error::source(e).is_some_and(|s| s.is::<io::Error>())
                }
            },
            _ => false,
        }
    }

    /// True when no connection became free within the pool's wait timeout: every connection
    /// was busy (the pool is exhausted), while the database itself may be answering.
    pub fn is_pool_exhausted(&self) -> bool {
        matches!(self, DbError::Pool(PoolError::Timeout(TimeoutType::Wait)))
    }

    /// True when the database refused the statement for lack of privilege (RLS or grants).
    pub fn is_forbidden(&self) -> bool {
        self.sql_state() == Some(&SqlState::INSUFFICIENT_PRIVILEGE)
    }
}

/// Errors of the local Postgres launcher.
#[derive(Debug, thiserror::Error)]
pub enum LocalPgError {
    /// No server binaries were found anywhere we look.
    #[error(
        "PostgreSQL server binaries (postgres, initdb) not found on PATH, via pg_config or under \
         /usr/lib/postgresql/*/bin: install them (Debian/Ubuntu: apt-get install postgresql) \
         or set DATABASE_URL to an existing server"
    )]
    BinariesNotFound,
    /// Running as root but there is no unprivileged account to run Postgres as.
    #[error(
        "running as root, and Postgres refuses to run as root: create a 'postgres' account \
         (the distribution's postgresql package does) or run as another user"
    )]
    NoUnprivilegedUser,
    /// The data directory cannot be used.
    #[error("data directory {path}: {reason}")]
    DataDir {
        /// The directory in question.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// initdb or postgres failed; the message carries the end of its output.
    #[error("{program} failed: {output}")]
    Process {
        /// The program that failed.
        program: String,
        /// The end of its output.
        output: String,
    },
    /// A server found already running on the directory is not ours to shut down or start.
    #[error("the PostgreSQL server on this data directory was not started by this process")]
    NotOurs,
    /// The server did not accept connections in time.
    #[error("postgres did not become ready within {0} s; see {1}")]
    Timeout(u64, String),
    /// A file system or process error.
    #[error(transparent)]
    Io(#[from] io::Error),
}
