//! The tenant session: the one way to run SQL as a tenant.
//!
//! A session is one pooled connection inside one transaction whose tenant and user were set,
//! transaction-locally, by a single parameterised statement. Everything a request or a pipeline
//! stage runs goes through it, so row-level security always sees the right tenant, and the
//! setting disappears with the transaction: a connection goes back to the pool clean.
//!
//! Ending a session:
//! - [`TenantSession::commit`] or [`TenantSession::rollback`] end it explicitly;
//! - dropping it (an error path, a cancelled request future) rolls back in the background and
//!   only then returns the connection to the pool;
//! - if a statement was still running when the session was dropped, the statement is cancelled
//!   and the connection is closed rather than reused, so a late cancel can never hit the next
//!   borrower's statement.

use std::sync::atomic::{AtomicUsize, Ordering};

use deadpool_postgres::{Object, Pool};
use tokio_postgres::types::ToSql;
use tokio_postgres::{NoTls, Row};

use super::DbError;
use crate::ids::{Role, TenantId, UserId};

/// Sets the tenant and the user for the current transaction only (`is_local = true`), and reads
/// what was there before: anything but empty means a session-level setting leaked into the
/// pool. The materialised CTE is evaluated before the outer projection calls `set_config`.
const SET_CONTEXT: &str = "\
WITH previous AS MATERIALIZED (
    SELECT current_setting('app.tenant_id', true) AS tenant_id,
           current_setting('app.user_id', true) AS user_id
)
SELECT previous.tenant_id, previous.user_id,
       set_config('app.tenant_id', $1, true),
       set_config('app.user_id', $2, true)
FROM previous";

/// The caller's role in the tenant, as the policies will see it.
const MEMBER_ROLE: &str = "SELECT app.member_role()";

/// How a session's transaction begins.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Begin {
    /// Read committed, read and write: requests and pipeline stages.
    ReadWrite,
    /// One snapshot for every statement, and no writes: a consistent read of the tenant
    /// (backups).
    Snapshot,
}

impl Begin {
    fn statement(self) -> &'static str {
        match self {
            Begin::ReadWrite => "BEGIN",
            Begin::Snapshot => "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
        }
    }
}

/// One pooled connection in one transaction, with a tenant and a user set for that transaction.
pub struct TenantSession {
    /// `None` once committed or rolled back.
    conn: Option<Object>,
    tenant: TenantId,
    user: UserId,
    /// The user's role in the tenant, read from the database at the start; `None` when the
    /// user is not a member, in which case row-level security shows the session nothing.
    role: Option<Role>,
    /// Statements started but not finished. Non-zero at drop means a statement may still be
    /// running on the server (its future was dropped mid-way).
    in_flight: AtomicUsize,
    /// Statements run through this session (not counting BEGIN and the context statement):
    /// a cheap N+1 detector for tests and request logs.
    statements: AtomicUsize,
}

impl TenantSession {
    /// Takes a connection from `pool`, begins a transaction and sets the tenant and the user.
    pub(super) async fn begin(
        pool: &Pool,
        tenant: TenantId,
        user: UserId,
        mode: Begin,
    ) -> Result<TenantSession, DbError> {
        let conn = pool.get().await?;
        // From here on, dropping `session` (an error, or this future being cancelled) cleans up.
        let mut session = TenantSession {
            conn: Some(conn),
            tenant,
            user,
            role: None,
            in_flight: AtomicUsize::new(0),
            statements: AtomicUsize::new(0),
        };
        let conn = session.conn();
        let tenant_text = tenant.to_string();
        let user_text = user.to_string();
        let (row, role) = session
            .track_begin(async {
                let (set_context, member_role) = tokio::try_join!(
                    conn.prepare_cached(SET_CONTEXT),
                    conn.prepare_cached(MEMBER_ROLE),
                )?;
                let params: [&(dyn ToSql + Sync); 2] = [&tenant_text, &user_text];
                // All three go out in one round trip: tokio-postgres pipelines concurrent
                // requests, in the order they are first polled.
                let (_, row, role) = tokio::try_join!(
                    conn.batch_execute(mode.statement()),
                    conn.query_one(&set_context, &params),
                    conn.query_one(&member_role, &[]),
                )?;
                Ok::<_, DbError>((row, role))
            })
            .await?;
        let leaked = |value: Option<&str>| value.is_some_and(|v| !v.is_empty());
        if leaked(row.get(0)) || leaked(row.get(1)) {
            tracing::error!(
                "a pooled connection carried a session-level tenant context; discarding it"
            );
            session.discard();
            return Err(DbError::LeakedContext);
        }
        session.role = role.get::<_, Option<&str>>(0).and_then(Role::parse);
        Ok(session)
    }

    /// The tenant this session runs as.
    pub fn tenant(&self) -> TenantId {
        self.tenant
    }

    /// The user this session runs as.
    pub fn user(&self) -> UserId {
        self.user
    }

    /// The user's role in the tenant when the session began (`None`: not a member, and the
    /// session sees no rows).
    pub fn role(&self) -> Option<Role> {
        self.role
    }

    /// Runs a statement and returns its rows. Statements are prepared once per connection and
    /// cached; concurrent calls on one session are pipelined on its connection.
    pub async fn query(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, DbError> {
        let conn = self.conn();
        self.track(async {
            let statement = conn.prepare_cached(sql).await?;
            Ok(conn.query(&statement, params).await?)
        })
        .await
    }

    /// Runs a statement that returns exactly one row.
    pub async fn query_one(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Row, DbError> {
        let conn = self.conn();
        self.track(async {
            let statement = conn.prepare_cached(sql).await?;
            Ok(conn.query_one(&statement, params).await?)
        })
        .await
    }

    /// Runs a statement that returns at most one row.
    pub async fn query_opt(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>, DbError> {
        let conn = self.conn();
        self.track(async {
            let statement = conn.prepare_cached(sql).await?;
            Ok(conn.query_opt(&statement, params).await?)
        })
        .await
    }

    /// Runs a statement and returns the number of rows it affected.
    pub async fn execute(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64, DbError> {
        let conn = self.conn();
        self.track(async {
            let statement = conn.prepare_cached(sql).await?;
            Ok(conn.execute(&statement, params).await?)
        })
        .await
    }

    /// Runs `COPY (…) TO STDOUT` and hands its output to `sink` chunk by chunk, in order.
    /// Row-level security applies to the query inside the COPY as to any other. When `sink`
    /// fails, the rest of the output is not read: the session counts the statement as still
    /// running, so dropping it cancels the COPY and closes the connection.
    pub async fn copy_out<E: From<DbError>>(
        &self,
        sql: &str,
        mut sink: impl FnMut(&[u8]) -> Result<(), E>,
    ) -> Result<(), E> {
        use futures_util::StreamExt;
        let conn = self.conn();
        self.statements.fetch_add(1, Ordering::Relaxed);
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        let outcome: Result<Option<E>, DbError> = async {
            let stream = conn.copy_out(sql).await?;
            let mut stream = std::pin::pin!(stream);
            while let Some(chunk) = stream.next().await {
                if let Err(error) = sink(&chunk?) {
                    return Ok(Some(error));
                }
            }
            Ok(None)
        }
        .await;
        match outcome {
            // The COPY may still be sending: leave it counted as running.
            Ok(Some(sink_error)) => Err(sink_error),
            Ok(None) => {
                self.in_flight.fetch_sub(1, Ordering::AcqRel);
                Ok(())
            }
            Err(error) => {
                self.in_flight.fetch_sub(1, Ordering::AcqRel);
                Err(error.into())
            }
        }
    }

    /// Commits the transaction and returns the connection to the pool.
    pub async fn commit(mut self) -> Result<(), DbError> {
        self.finish("COMMIT").await
    }

    /// Rolls the transaction back and returns the connection to the pool.
    pub async fn rollback(mut self) -> Result<(), DbError> {
        self.finish("ROLLBACK").await
    }

    async fn finish(&mut self, statement: &str) -> Result<(), DbError> {
        let mut guard = DiscardUnlessReleased(self.conn.take());
        let conn = guard
            .0
            .as_ref()
            .expect("an unfinished session holds its connection");
        if self.in_flight.load(Ordering::Acquire) > 0 {
            // A statement future was dropped mid-way: the connection may still be busy.
            return Err(DbError::Interrupted);
        }
        conn.batch_execute(statement).await?;
        guard.release();
        Ok(())
    }

    fn conn(&self) -> &Object {
        self.conn
            .as_ref()
            .expect("a session is only used before commit or rollback")
    }

    /// How many statements this session has run so far.
    pub fn statement_count(&self) -> usize {
        self.statements.load(Ordering::Relaxed)
    }

    /// Runs `work`, counting it as in flight until it completes. A future dropped before
    /// completion leaves the count raised, which `Drop` reads.
    async fn track<T>(&self, work: impl std::future::Future<Output = T>) -> T {
        self.statements.fetch_add(1, Ordering::Relaxed);
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        let result = work.await;
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
        result
    }

    /// [`track`](Self::track) for the opening statements, which are not counted.
    async fn track_begin<T>(&self, work: impl std::future::Future<Output = T>) -> T {
        let result = self.track(work).await;
        self.statements.fetch_sub(1, Ordering::Relaxed);
        result
    }

    /// Closes the connection instead of returning it to the pool.
    fn discard(mut self) {
        if let Some(conn) = self.conn.take() {
            drop(Object::take(conn));
        }
    }
}

impl Drop for TenantSession {
    fn drop(&mut self) {
        let Some(conn) = self.conn.take() else {
            return;
        };
        let busy = self.in_flight.load(Ordering::Acquire) > 0;
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(abort(DiscardUnlessReleased(Some(conn)), busy));
            }
            // No runtime to roll back on: closing the connection aborts the transaction.
            Err(_) => drop(Object::take(conn)),
        }
    }
}

/// Ends an abandoned session: roll back and return the connection to the pool, or, when a
/// statement may still be running, cancel it and close the connection.
async fn abort(mut guard: DiscardUnlessReleased, busy: bool) {
    let Some(conn) = guard.0.as_ref() else {
        return;
    };
    if busy {
        let _ = conn.cancel_token().cancel_query(NoTls).await;
        return;
    }
    if conn.batch_execute("ROLLBACK").await.is_ok() {
        guard.release();
    }
}

/// Holds a connection that is closed on drop unless [`release`](Self::release)d back to the
/// pool. A task that is itself dropped half-way (runtime shutdown) therefore never returns a
/// connection that might still be inside a transaction.
struct DiscardUnlessReleased(Option<Object>);

impl DiscardUnlessReleased {
    fn release(&mut self) {
        // Dropping the Object returns it to the pool.
        drop(self.0.take());
    }
}

impl Drop for DiscardUnlessReleased {
    fn drop(&mut self) {
        if let Some(conn) = self.0.take() {
            drop(Object::take(conn));
        }
    }
}
