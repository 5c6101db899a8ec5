//! The worker: claims jobs, holds their leases, runs them, and records how they ended.
//!
//! Any number of workers (in `research-graph worker` processes, or embedded in `serve`) share
//! one queue. A worker claims a job through [`Database::claim_job`], renews the lease every
//! third of its length while the job runs, and stops the job the moment a renewal finds the job
//! no longer its own (cancelled by a member, or reclaimed after a stall). Stages are
//! idempotent and persist section by section, so a job stopped anywhere — a renewal lost, the
//! process killed — is re-run without duplicates.
//!
//! How an attempt ends: success → `succeeded`; a retryable error → `queued` again after a
//! jittered exponential backoff, or `dead` once `max_attempts` attempts were made; an error no
//! retry can fix → `failed`. On shutdown, jobs still running are given back to the queue with
//! the attempt not counted.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::Instrument;
use uuid::Uuid;

use super::events::{JobEvent, JobEvents};
use super::jobs::backoff;
use super::runner::{JobError, Pipeline};
use crate::db::{ClaimedJob, Database, DbError, TenantSession};
use crate::ids::{Role, UserId};

/// Why a job ended when the member it runs for may no longer write to its tenant.
const ORPHANED: &str =
    "the member who queued this job may no longer write to the tenant; re-run it as another member";

/// How a worker behaves.
#[derive(Clone, Debug)]
pub struct WorkerOptions {
    /// The worker's name in leases (unique per worker: host, process id and a random part).
    pub name: String,
    /// Jobs run at once.
    pub concurrency: usize,
    /// Lease length; renewed every third of it.
    pub lease: Duration,
    /// How often the queue is polled when no notification arrives.
    pub poll: Duration,
    /// First retry delay; doubled per attempt.
    pub backoff_base: Duration,
    /// Longest retry delay.
    pub backoff_max: Duration,
}

impl Default for WorkerOptions {
    fn default() -> Self {
        WorkerOptions {
            name: default_name(),
            concurrency: 2,
            lease: Duration::from_secs(60),
            poll: Duration::from_secs(2),
            backoff_base: Duration::from_secs(5),
            backoff_max: Duration::from_secs(600),
        }
    }
}

/// A worker name unique across machines and processes.
pub fn default_name() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "worker".to_owned());
    format!(
        "{host}:{}:{}",
        std::process::id(),
        &Uuid::new_v4().simple().to_string()[..8]
    )
}

/// A worker over one queue.
pub struct Worker {
    pipeline: Arc<Pipeline>,
    db: Database,
    options: WorkerOptions,
    events: Option<Arc<JobEvents>>,
}

/// How one claimed job ended, as the worker recorded it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ended {
    /// It succeeded.
    Succeeded,
    /// It failed and was queued again (or dead-lettered).
    Failed(String),
    /// The lease was lost (cancelled or reclaimed): nothing recorded.
    LeaseLost,
    /// The worker shut down: the job went back to the queue.
    Released,
}

impl Worker {
    /// A worker running `pipeline`'s jobs from `db`'s queue; `events` wakes it when a job is
    /// queued (without it, it polls).
    pub fn new(
        pipeline: Arc<Pipeline>,
        db: Database,
        options: WorkerOptions,
        events: Option<Arc<JobEvents>>,
    ) -> Worker {
        Worker {
            pipeline,
            db,
            options,
            events,
        }
    }

    /// The worker's name.
    pub fn name(&self) -> &str {
        &self.options.name
    }

    /// Runs until `shutdown` turns true: claims jobs while fewer than `concurrency` run, then
    /// waits for a notification, a finished job or the poll interval. On shutdown, running
    /// jobs are stopped and given back to the queue.
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let mut running: JoinSet<()> = JoinSet::new();
        let mut wake = self.events.as_ref().map(|e| e.subscribe());
        let (stop_tx, stop_rx) = watch::channel(false);
        tracing::info!(worker = %self.options.name, "worker started");
        loop {
            if *shutdown.borrow() {
                break;
            }
            while running.len() < self.options.concurrency.max(1) {
                match self
                    .db
                    .claim_job(&self.options.name, self.options.lease)
                    .await
                {
                    Ok(Some(claim)) => {
                        let me = Arc::clone(&self);
                        let stop = stop_rx.clone();
                        running.spawn(async move {
                            me.process(claim, stop).await;
                        });
                    }
                    Ok(None) => break,
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot claim a job");
                        break;
                    }
                }
            }
            let poll = tokio::time::sleep(self.options.poll);
            tokio::select! {
                _ = shutdown.changed() => {}
                Some(_) = running.join_next(), if !running.is_empty() => {}
                _ = poll => {}
                _ = queued(wake.as_mut()) => {}
            }
        }
        let _ = stop_tx.send(true);
        while running.join_next().await.is_some() {}
        tracing::info!(worker = %self.options.name, "worker stopped");
    }

    /// Claims and runs at most one job, to completion; `None` when the queue had none.
    pub async fn run_one(&self) -> Result<Option<(Uuid, Ended)>, DbError> {
        let Some(claim) = self
            .db
            .claim_job(&self.options.name, self.options.lease)
            .await?
        else {
            return Ok(None);
        };
        let (_stop_tx, stop_rx) = watch::channel(false);
        let ended = self.process(claim, stop_rx).await;
        Ok(Some((claim.job, ended)))
    }

    /// Runs one claimed job with its lease renewed, and records how it ended.
    async fn process(&self, claim: ClaimedJob, stop: watch::Receiver<bool>) -> Ended {
        let span = tracing::info_span!("job", job = %claim.job, tenant = %claim.tenant.0,
            attempt = claim.attempt);
        self.process_in_span(claim, stop).instrument(span).await
    }

    async fn process_in_span(&self, claim: ClaimedJob, mut stop: watch::Receiver<bool>) -> Ended {
        let Some(user) = claim.user else {
            self.finish(
                &claim,
                UserId(Uuid::nil()),
                Err(JobError::fatal("the job has no owner")),
            )
            .await;
            return Ended::Failed("the job has no owner".into());
        };
        let work = self.pipeline.run_job(&claim, user, &self.options.name);
        let renew = self.keep_lease(&claim, user);
        let result = tokio::select! {
            r = work => Some(r),
            lost = renew => {
                tracing::warn!(reason = %lost, "lease lost; the job is stopped");
                return Ended::LeaseLost;
            }
            _ = stop.wait_for(|s| *s) => None,
        };
        match result {
            Some(Err(e)) if e.lease_lost => {
                tracing::info!("the job was cancelled or taken over; stopped");
                Ended::LeaseLost
            }
            Some(outcome) => {
                let ended = match &outcome {
                    Ok(()) => Ended::Succeeded,
                    Err(e) => Ended::Failed(e.message.clone()),
                };
                self.finish(&claim, user, outcome).await;
                ended
            }
            None => {
                self.release(&claim, user).await;
                Ended::Released
            }
        }
    }

    /// Renews the lease every third of its length; returns when a renewal fails to find the
    /// job still held by this worker (or the database stays unreachable past the lease).
    async fn keep_lease(&self, claim: &ClaimedJob, user: UserId) -> String {
        let every = self.options.lease / 3;
        let mut last_ok = tokio::time::Instant::now();
        loop {
            tokio::time::sleep(every).await;
            match self.renew(claim, user).await {
                Ok(true) => last_ok = tokio::time::Instant::now(),
                Ok(false) => return "the job was cancelled or taken over".to_owned(),
                Err(e) => {
                    if last_ok.elapsed() >= self.options.lease {
                        return format!("the lease could not be renewed: {e}");
                    }
                }
            }
        }
    }

    /// A session as the member the job runs for, or `None` once the job has been ended as
    /// failed because that member may no longer write to the tenant: their session could not
    /// record the job's end, so it goes through the definer door (otherwise the job would cycle
    /// through lease expiry to the dead letter).
    async fn writer_session(
        &self,
        claim: &ClaimedJob,
        user: UserId,
    ) -> Result<Option<TenantSession>, DbError> {
        let s = self.db.session(claim.tenant, user).await?;
        if s.role().is_some_and(|r| r != Role::Viewer) {
            return Ok(Some(s));
        }
        s.rollback().await?;
        self.db
            .fail_orphaned_job(claim.job, &self.options.name, ORPHANED)
            .await?;
        Ok(None)
    }

    async fn renew(&self, claim: &ClaimedJob, user: UserId) -> Result<bool, DbError> {
        let Some(s) = self.writer_session(claim, user).await? else {
            return Ok(false);
        };
        let n = s
            .execute(
                "UPDATE app.jobs SET lease_expires_at = now() + make_interval(secs => $3)
                 WHERE id = $1 AND status = 'running' AND lease_owner = $2",
                &[
                    &claim.job,
                    &self.options.name,
                    &self.options.lease.as_secs_f64(),
                ],
            )
            .await?;
        s.commit().await?;
        Ok(n == 1)
    }

    /// Records the end of an attempt, if the job is still this worker's.
    async fn finish(&self, claim: &ClaimedJob, user: UserId, outcome: Result<(), JobError>) {
        let result = async {
            let Some(s) = self.writer_session(claim, user).await? else {
                return Ok(());
            };
            match outcome {
                Ok(()) => {
                    s.execute(
                        "UPDATE app.jobs SET status = 'succeeded', finished_at = now(),
                             updated_at = now(), lease_owner = NULL, lease_expires_at = NULL,
                             last_error = NULL
                         WHERE id = $1 AND status = 'running' AND lease_owner = $2",
                        &[&claim.job, &self.options.name],
                    )
                    .await?;
                }
                Err(error) => {
                    let delay = backoff(
                        claim.attempt,
                        self.options.backoff_base,
                        self.options.backoff_max,
                    );
                    let message = truncate(&error.message, 2000);
                    s.execute(
                        "UPDATE app.jobs SET
                             status = CASE WHEN NOT $3 THEN 'failed'
                                           WHEN attempts >= max_attempts THEN 'dead'
                                           ELSE 'queued' END,
                             finished_at = CASE WHEN NOT $3 OR attempts >= max_attempts
                                                THEN now() END,
                             run_after = now() + make_interval(secs => $4),
                             last_error = $5,
                             progress = jsonb_set(progress, '{errors}',
                                 (SELECT coalesce(jsonb_agg(e), '[]') FROM (
                                     SELECT e FROM jsonb_array_elements(
                                         coalesce(progress->'errors', '[]') || to_jsonb($5::text))
                                         WITH ORDINALITY AS x(e, n)
                                     ORDER BY n DESC LIMIT 20) r)),
                             updated_at = now(), lease_owner = NULL, lease_expires_at = NULL
                         WHERE id = $1 AND status = 'running' AND lease_owner = $2",
                        &[
                            &claim.job,
                            &self.options.name,
                            &error.retryable,
                            &delay.as_secs_f64(),
                            &message,
                        ],
                    )
                    .await?;
                }
            }
            s.commit().await
        }
        .await;
        if let Err(e) = result {
            tracing::warn!(error = %e, "could not record the end of the job; its lease will expire");
        }
    }

    /// Gives a job back to the queue at shutdown without counting the attempt.
    async fn release(&self, claim: &ClaimedJob, user: UserId) {
        let result = async {
            let s = self.db.session(claim.tenant, user).await?;
            s.execute(
                "UPDATE app.jobs SET status = 'queued', attempts = greatest(attempts - 1, 0),
                     run_after = now(), updated_at = now(), lease_owner = NULL,
                     lease_expires_at = NULL
                 WHERE id = $1 AND status = 'running' AND lease_owner = $2",
                &[&claim.job, &self.options.name],
            )
            .await?;
            s.commit().await
        }
        .await;
        if let Err(e) = result {
            tracing::warn!(error = %e, "could not release the job; its lease will expire");
        }
    }
}

/// Resolves when a job is announced queued (or announcements may have been missed); never
/// without a hub.
async fn queued(wake: Option<&mut tokio::sync::broadcast::Receiver<JobEvent>>) {
    let Some(rx) = wake else {
        return std::future::pending().await;
    };
    loop {
        match rx.recv().await {
            Ok(JobEvent::Changed { queued: true, .. }) | Ok(JobEvent::Resync) => return,
            Ok(JobEvent::Changed { .. }) => {}
            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => return,
            Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                return std::future::pending().await
            }
        }
    }
}

fn truncate(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((cut, _)) => format!("{}…", &s[..cut]),
        None => s.to_owned(),
    }
}
