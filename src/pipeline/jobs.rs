//! Pipeline jobs: a queue in Postgres, seen and managed through GraphQL.
//!
//! A job is one paper's stage chain (`process_paper`: extract → validate → resolve → persist,
//! section by section) or one reasoning batch (`reasoning`). Members enqueue, cancel and re-run
//! jobs through their tenant session (row-level security as everywhere). Workers claim jobs
//! across tenants through the SECURITY DEFINER function `app.claim_job` (`FOR UPDATE SKIP
//! LOCKED`, so no job is claimed twice) and then work in ordinary short tenant sessions as the
//! member who enqueued the job.
//!
//! States: `queued` → `running` → `succeeded`; a retryable failure goes back to `queued` with
//! a backoff (`run_after`) until `max_attempts` is used up, then `dead` with the last error; a
//! failure that no retry can fix (a refused key, an exhausted quota, a hard usage limit) is
//! `failed` at once; `cancelled` by a member. A running job holds a lease that its worker
//! renews; a lease that expires (the worker died) returns the job to the queue at the next
//! claim. At most one queued or running `process_paper` job exists per paper.

use std::time::Duration;

use async_graphql::{ComplexObject, Context, Enum, InputObject, Object, Result, SimpleObject, ID};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::db::{DbError, TenantSession};
use crate::graphql::loaders::{loader, root_connection, Id, Listing, Row};
use crate::graphql::pagination::{sorted, Connection, Sort, Sql, Window};
use crate::graphql::relay::{row_id, Kind};
use crate::graphql::{db_error, error, max_page_size, session, written, ErrorCode, MemberGuard};
use crate::money::Usd;
use crate::papers::Paper;

/// Attempts a job gets before it is dead-lettered, unless the queue is told otherwise.
pub const DEFAULT_MAX_ATTEMPTS: i32 = 5;

/// What a job does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Enum)]
pub enum JobKind {
    /// Extract, validate, resolve and persist one paper's sections.
    ProcessPaper,
    /// Infer insights over the tenant's graph.
    Reasoning,
}

impl JobKind {
    /// The `jobs.kind` spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::ProcessPaper => "process_paper",
            JobKind::Reasoning => "reasoning",
        }
    }

    /// Parses the `jobs.kind` spelling.
    pub fn parse(s: &str) -> Option<JobKind> {
        match s {
            "process_paper" => Some(JobKind::ProcessPaper),
            "reasoning" => Some(JobKind::Reasoning),
            _ => None,
        }
    }
}

/// Where a job stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Enum)]
pub enum JobStatus {
    /// Waiting for a worker (possibly until `runAfter`, after a failed attempt).
    Queued,
    /// A worker holds it.
    Running,
    /// Done.
    Succeeded,
    /// Failed in a way no retry can fix (see `lastError`).
    Failed,
    /// Failed on every attempt (the dead letter; see `lastError`).
    Dead,
    /// Cancelled by a member.
    Cancelled,
}

impl JobStatus {
    /// The `jobs.status` spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Queued => "queued",
            JobStatus::Running => "running",
            JobStatus::Succeeded => "succeeded",
            JobStatus::Failed => "failed",
            JobStatus::Dead => "dead",
            JobStatus::Cancelled => "cancelled",
        }
    }

    fn parse(s: &str) -> JobStatus {
        match s {
            "running" => JobStatus::Running,
            "succeeded" => JobStatus::Succeeded,
            "failed" => JobStatus::Failed,
            "dead" => JobStatus::Dead,
            "cancelled" => JobStatus::Cancelled,
            _ => JobStatus::Queued,
        }
    }

    /// No further change will happen unless a member re-runs the job.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            JobStatus::Succeeded | JobStatus::Failed | JobStatus::Dead | JobStatus::Cancelled
        )
    }
}

/// A job's progress, kept in `jobs.progress` and updated as each section is persisted.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, SimpleObject)]
#[serde(default, rename_all = "camelCase")]
#[graphql(name = "JobProgress", complex)]
pub struct Progress {
    /// Sections of the paper.
    pub sections_total: i32,
    /// Sections extracted and persisted (including those done by earlier attempts).
    pub sections_done: i32,
    /// Sections that failed for good (their reason is in `errors`).
    pub sections_failed: i32,
    /// Entities extracted (before resolution merges them into nodes).
    pub entities: i32,
    /// Relations extracted.
    pub relations: i32,
    /// Mentions extracted.
    pub mentions: i32,
    /// Items dropped by validation (a quote not in the section, a type outside the vocabulary…).
    pub dropped: i32,
    /// Merge candidates proposed by entity resolution.
    pub merge_candidates: i32,
    /// Insights proposed (reasoning jobs).
    pub insights: i32,
    /// Billed cost of the model calls so far, in micro-dollars.
    #[graphql(skip)]
    pub cost_micros: i64,
    /// Errors so far (sections that failed, the last attempt's error), newest last, at most 20.
    pub errors: Vec<String>,
}

#[async_graphql::ComplexObject]
impl Progress {
    /// Billed cost of the model calls so far.
    async fn cost(&self) -> Usd {
        Usd(self.cost_micros)
    }
}

/// A pipeline job.
#[derive(Clone, Debug, SimpleObject)]
#[graphql(complex, name = "PipelineJob")]
pub struct Job {
    /// The job's id (UUID): jobs are not Relay nodes.
    pub id: Uuid,
    /// What it does.
    pub kind: JobKind,
    /// Where it stands.
    pub status: JobStatus,
    /// The stage it is in (or ended in).
    pub stage: Option<String>,
    /// Attempts started.
    pub attempts: i32,
    /// Attempts allowed before the dead letter.
    pub max_attempts: i32,
    /// Not run before this instant (backoff after a failed attempt).
    pub run_after: DateTime<Utc>,
    /// The last error, if an attempt failed.
    pub last_error: Option<String>,
    /// Progress.
    pub progress: Progress,
    /// Reasoning scope, as given.
    #[graphql(skip)]
    pub payload: serde_json::Value,
    /// The paper (`process_paper` jobs).
    #[graphql(skip)]
    pub paper_id: Option<Uuid>,
    /// The member who enqueued it.
    pub created_by: Option<Uuid>,
    /// Enqueued.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
    /// When it reached a final state.
    pub finished_at: Option<DateTime<Utc>>,
}

impl Row for Job {
    const COLUMNS: &'static str = "j.id, j.kind, j.status, j.stage, j.attempts, j.max_attempts, \
        j.run_after, j.last_error, j.progress, j.payload, j.paper_id, j.created_by, j.created_at, \
        j.updated_at, j.finished_at";
    const FROM: &'static str = "FROM app.jobs j";
    const ID: &'static str = "j.id";

    fn from_row(r: &tokio_postgres::Row, o: usize) -> Self {
        Job {
            id: r.get(o),
            kind: JobKind::parse(r.get(o + 1)).unwrap_or(JobKind::ProcessPaper),
            status: JobStatus::parse(r.get(o + 2)),
            stage: r.get(o + 3),
            attempts: r.get(o + 4),
            max_attempts: r.get(o + 5),
            run_after: r.get(o + 6),
            last_error: r.get(o + 7),
            progress: serde_json::from_value(r.get(o + 8)).unwrap_or_default(),
            payload: r.get(o + 9),
            paper_id: r.get(o + 10),
            created_by: r.get(o + 11),
            created_at: r.get(o + 12),
            updated_at: r.get(o + 13),
            finished_at: r.get(o + 14),
        }
    }

    fn row_id(&self) -> Uuid {
        self.id
    }
}

#[ComplexObject]
impl Job {
    /// The paper (`process_paper` jobs).
    async fn paper(&self, ctx: &Context<'_>) -> Result<Option<Paper>> {
        match self.paper_id {
            Some(id) => loader(ctx)?.load_one(Id::<Paper>::new(id)).await,
            None => Ok(None),
        }
    }

    /// The reasoning scope's paper, if the scope was one paper.
    async fn scope_paper_id(&self) -> Option<Uuid> {
        self.payload
            .get("paperId")
            .and_then(|v| v.as_str())
            .and_then(|s| s.parse().ok())
    }
}

/// Reads one job in the session's tenant.
pub async fn get(session: &TenantSession, id: Uuid) -> Result<Option<Job>, DbError> {
    let sql = format!("SELECT {} FROM app.jobs j WHERE j.id = $1", Job::COLUMNS);
    Ok(session
        .query_opt(&sql, &[&id])
        .await?
        .map(|r| Job::from_row(&r, 0)))
}

/// Enqueues a job in the session's tenant, for the session's user. A `process_paper` job for a
/// paper that already has one queued or running returns that one instead (`created` false).
pub async fn enqueue(
    session: &TenantSession,
    kind: JobKind,
    paper: Option<Uuid>,
    payload: serde_json::Value,
    max_attempts: i32,
) -> Result<(Job, bool), DbError> {
    let sql = format!(
        "INSERT INTO app.jobs AS j (tenant_id, kind, paper_id, payload, max_attempts, created_by)
         VALUES (app.tenant_id(), $1, $2, $3, $4, app.user_id())
         ON CONFLICT (tenant_id, paper_id, kind) WHERE status IN ('queued', 'running')
             AND paper_id IS NOT NULL
         DO NOTHING
         RETURNING {}",
        Job::COLUMNS
    );
    let row = session
        .query_opt(&sql, &[&kind.as_str(), &paper, &payload, &max_attempts])
        .await?;
    if let Some(row) = row {
        return Ok((Job::from_row(&row, 0), true));
    }
    let sql = format!(
        "SELECT {} FROM app.jobs j WHERE j.paper_id = $1 AND j.kind = $2
           AND j.status IN ('queued', 'running')",
        Job::COLUMNS
    );
    let row = session.query_one(&sql, &[&paper, &kind.as_str()]).await?;
    Ok((Job::from_row(&row, 0), false))
}

/// Cancels a queued or running job (a running one stops at its worker's next lease renewal).
pub async fn cancel(session: &TenantSession, id: Uuid) -> Result<Option<Job>, DbError> {
    let sql = format!(
        "UPDATE app.jobs j SET status = 'cancelled', finished_at = now(), updated_at = now(),
             lease_owner = NULL, lease_expires_at = NULL
         WHERE j.id = $1 AND j.status IN ('queued', 'running') RETURNING {}",
        Job::COLUMNS
    );
    Ok(session
        .query_opt(&sql, &[&id])
        .await?
        .map(|r| Job::from_row(&r, 0)))
}

/// Queues a finished job again with fresh attempts. Work already persisted (sections done) is
/// kept and skipped; failed sections are tried again.
pub async fn rerun(session: &TenantSession, id: Uuid) -> Result<Option<Job>, DbError> {
    session
        .execute(
            "DELETE FROM app.section_extractions x USING app.paper_sections s, app.jobs j
             WHERE j.id = $1 AND s.paper_id = j.paper_id AND x.section_id = s.id
               AND x.status = 'failed'",
            &[&id],
        )
        .await?;
    let sql = format!(
        "UPDATE app.jobs j SET status = 'queued', attempts = 0, run_after = now(),
             last_error = NULL, finished_at = NULL, stage = NULL, updated_at = now(),
             progress = '{{}}', created_by = app.user_id()
         WHERE j.id = $1 AND j.status IN ('succeeded', 'failed', 'dead', 'cancelled')
         RETURNING {}",
        Job::COLUMNS
    );
    Ok(session
        .query_opt(&sql, &[&id])
        .await?
        .map(|r| Job::from_row(&r, 0)))
}

/// Backoff before attempt `attempt + 1`, after `attempt` failed: 2^(attempt-1) × `base`, at most
/// `max`, with ±20% jitter so that jobs failing together do not return together.
pub fn backoff(attempt: i32, base: Duration, max: Duration) -> Duration {
    let exp = base.saturating_mul(1u32 << (attempt.clamp(1, 16) - 1) as u32);
    let capped = exp.min(max);
    let jitter = rand::random_range(0.8..1.2);
    capped.mul_f64(jitter)
}

/// Which jobs to list.
#[derive(Clone, Debug, Default, InputObject)]
pub struct JobFilter {
    /// Only these states.
    pub status: Option<Vec<JobStatus>>,
    /// Only these kinds.
    pub kinds: Option<Vec<JobKind>>,
    /// Only this paper's jobs.
    pub paper_id: Option<ID>,
}

/// A job listing (newest first).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct JobListing {
    window: Window,
    status: Option<Vec<JobStatus>>,
    kinds: Option<Vec<JobKind>>,
    paper: Option<Uuid>,
}

impl Listing for JobListing {
    type Item = Job;

    fn root_from(&self) -> &'static str {
        "FROM app.jobs j WHERE true"
    }

    fn child_from(&self) -> &'static str {
        "FROM app.jobs j WHERE j.paper_id = k.parent"
    }

    fn filters(&self, sql: &mut Sql) {
        if let Some(status) = &self.status {
            let status: Vec<&'static str> = status.iter().map(|s| s.as_str()).collect();
            sql.push(" AND j.status = ANY(").bind(status).push(")");
        }
        if let Some(kinds) = &self.kinds {
            let kinds: Vec<&'static str> = kinds.iter().map(|s| s.as_str()).collect();
            sql.push(" AND j.kind = ANY(").bind(kinds).push(")");
        }
        if let Some(paper) = self.paper {
            sql.push(" AND j.paper_id = ").bind(paper);
        }
    }

    fn sort(&self) -> Sort {
        Sort {
            name: "created_at_desc",
            column: "j.created_at",
            sql_type: "timestamptz",
            id_column: "j.id",
            desc: true,
        }
    }

    fn window(&self) -> &Window {
        &self.window
    }
}

/// Job queries.
#[derive(Default)]
pub struct JobQuery;

#[Object]
impl JobQuery {
    /// One pipeline job.
    #[graphql(guard = "MemberGuard")]
    async fn pipeline_job(&self, ctx: &Context<'_>, id: Uuid) -> Result<Option<Job>> {
        get(session(ctx)?, id).await.map_err(db_error)
    }

    /// The tenant's pipeline jobs, newest first.
    #[graphql(
        guard = "MemberGuard",
        complexity = "child_complexity.saturating_mul(first.or(last).unwrap_or(20).max(1) as usize).min(1 << 32)"
    )]
    async fn pipeline_jobs(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        last: Option<i32>,
        before: Option<String>,
        filter: Option<JobFilter>,
    ) -> Result<Connection<Job>> {
        let window = Window::new(first, after, last, before, max_page_size(ctx))?;
        let f = filter.unwrap_or_default();
        let paper = match f.paper_id {
            Some(id) => Some(row_id(&id, Kind::Paper, "paperId")?),
            None => None,
        };
        let listing = JobListing {
            window,
            status: sorted(f.status),
            kinds: sorted(f.kinds),
            paper,
        };
        root_connection(ctx, listing).await
    }
}

/// What reasoning looks at.
#[derive(Clone, Debug, Default, InputObject)]
pub struct ReasoningScope {
    /// Only the entities of this paper and their neighbourhood (default: the whole graph).
    pub paper_id: Option<ID>,
}

/// Job mutations.
#[derive(Default)]
pub struct JobMutation;

fn check_writer(session: &TenantSession) -> Result<()> {
    match session.role() {
        Some(crate::ids::Role::Owner | crate::ids::Role::Member) => Ok(()),
        _ => Err(error(ErrorCode::Forbidden, "viewers cannot start jobs")),
    }
}

#[Object]
impl JobMutation {
    /// Queues the extraction of a paper's graph (or returns the paper's queued or running job).
    #[graphql(guard = "MemberGuard")]
    async fn process_paper(&self, ctx: &Context<'_>, paper_id: ID) -> Result<Job> {
        let paper = row_id(&paper_id, Kind::Paper, "paperId")?;
        let s = session(ctx)?;
        check_writer(s)?;
        let exists = s
            .query_opt("SELECT 1 FROM app.papers WHERE id = $1", &[&paper])
            .await
            .map_err(db_error)?;
        if exists.is_none() {
            return Err(error(ErrorCode::NotFound, "no such paper in this tenant"));
        }
        let (job, _) = enqueue(
            s,
            JobKind::ProcessPaper,
            Some(paper),
            serde_json::json!({}),
            DEFAULT_MAX_ATTEMPTS,
        )
        .await
        .map_err(db_error)?;
        Ok(job)
    }

    /// Queues a reasoning batch over the tenant's graph (within the tenant's depth limit).
    #[graphql(guard = "MemberGuard")]
    async fn run_reasoning(&self, ctx: &Context<'_>, scope: Option<ReasoningScope>) -> Result<Job> {
        let s = session(ctx)?;
        check_writer(s)?;
        let mut payload = serde_json::json!({});
        if let Some(id) = scope.and_then(|s| s.paper_id) {
            let paper = row_id(&id, Kind::Paper, "scope.paperId")?;
            let exists = s
                .query_opt("SELECT 1 FROM app.papers WHERE id = $1", &[&paper])
                .await
                .map_err(db_error)?;
            if exists.is_none() {
                return Err(error(ErrorCode::NotFound, "no such paper in this tenant"));
            }
            payload["paperId"] = serde_json::Value::String(paper.to_string());
        }
        let (job, _) = enqueue(s, JobKind::Reasoning, None, payload, DEFAULT_MAX_ATTEMPTS)
            .await
            .map_err(db_error)?;
        Ok(job)
    }

    /// Cancels a queued or running job.
    #[graphql(guard = "MemberGuard")]
    async fn cancel_job(&self, ctx: &Context<'_>, id: Uuid) -> Result<Job> {
        let s = session(ctx)?;
        let job = cancel(s, id).await.map_err(db_error)?;
        match job {
            Some(job) => Ok(job),
            None => match get(s, id).await.map_err(db_error)? {
                Some(job) if s.role().is_some_and(|r| r != crate::ids::Role::Viewer) => Err(error(
                    ErrorCode::BadUserInput,
                    format!("the job is {} and cannot be cancelled", job.status.as_str()),
                )),
                other => written(s, other, "job"),
            },
        }
    }

    /// Queues a finished (succeeded, failed, dead or cancelled) job again with fresh attempts;
    /// what it already persisted is kept, failed sections are tried again.
    #[graphql(guard = "MemberGuard")]
    async fn rerun_job(&self, ctx: &Context<'_>, id: Uuid) -> Result<Job> {
        let s = session(ctx)?;
        check_writer(s)?;
        let job = rerun(s, id).await.map_err(|e| {
            if e.sql_state().map(|c| c.code()) == Some("23505") {
                return error(
                    ErrorCode::BadUserInput,
                    "this paper already has a queued or running job",
                );
            }
            db_error(e)
        })?;
        match job {
            Some(job) => Ok(job),
            None => match get(s, id).await.map_err(db_error)? {
                Some(job) => Err(error(
                    ErrorCode::BadUserInput,
                    format!("the job is {} and cannot be re-run", job.status.as_str()),
                )),
                None => Err(error(ErrorCode::NotFound, "no such job in this tenant")),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_with_jitter() {
        let base = Duration::from_secs(2);
        let max = Duration::from_secs(60);
        for (attempt, expected) in [(1, 2.0), (2, 4.0), (3, 8.0), (6, 60.0), (40, 60.0)] {
            let d = backoff(attempt, base, max).as_secs_f64();
            assert!(
                d >= expected * 0.8 && d <= expected * 1.2,
                "attempt {attempt}: {d}"
            );
        }
    }

    #[test]
    fn progress_reads_missing_fields_as_zero() {
        let p: Progress = serde_json::from_value(serde_json::json!({"sectionsDone": 3})).unwrap();
        assert_eq!(p.sections_done, 3);
        assert_eq!(p.cost_micros, 0);
        assert!(p.errors.is_empty());
    }
}
