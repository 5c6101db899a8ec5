//! `jobProgress(jobId)`: a job's state, pushed over graphql-ws each time it changes, until it
//! reaches a final state.
//!
//! The WebSocket connection is authenticated and its tenant resolved once, at
//! `connection_init`; the subscription then holds a [`TenantDoor`] (sessions for that tenant
//! and user only, never a pool). Each announcement for the job on the process's LISTEN hub is
//! read back through a new short tenant session, so what the subscriber sees is still what
//! row-level security lets it see: a job of another tenant is never found.

use std::sync::Arc;

use async_graphql::{Context, Result, Subscription};
use futures_util::stream::{self, Stream};
use tokio::sync::broadcast::error::RecvError;
use uuid::Uuid;

use super::events::{JobEvent, JobEvents};
use super::jobs::{self, Job};
use crate::db::TenantDoor;
use crate::graphql::{db_error, error, ErrorCode};

/// What a subscription connection may use, set at `connection_init`.
#[derive(Clone)]
pub struct SubscriptionScope {
    /// Sessions for the connection's tenant and user.
    pub door: TenantDoor,
    /// The process's job announcements.
    pub events: Arc<JobEvents>,
}

/// The root subscription type.
#[derive(Default)]
pub struct Subscription;

struct Watch {
    scope: SubscriptionScope,
    job: Uuid,
    rx: tokio::sync::broadcast::Receiver<JobEvent>,
    last: Option<chrono::DateTime<chrono::Utc>>,
    done: bool,
}

async fn read(scope: &SubscriptionScope, job: Uuid) -> Result<Option<Job>> {
    let s = scope.door.session().await.map_err(db_error)?;
    let found = jobs::get(&s, job).await.map_err(db_error)?;
    s.commit().await.map_err(db_error)?;
    Ok(found)
}

#[Subscription]
impl Subscription {
    /// The job now, then again each time it changes (stage, progress, state), ending after
    /// it reaches a final state (succeeded, failed, dead, cancelled).
    async fn job_progress(
        &self,
        ctx: &Context<'_>,
        job_id: Uuid,
    ) -> Result<impl Stream<Item = Result<Job>>> {
        let scope = ctx
            .data::<SubscriptionScope>()
            .map_err(|_| {
                error(
                    ErrorCode::Unauthenticated,
                    "subscriptions need an authenticated graphql-ws connection",
                )
            })?
            .clone();
        // Subscribe before the first read, so no change in between is missed.
        let rx = scope.events.subscribe();
        if read(&scope, job_id).await?.is_none() {
            return Err(error(ErrorCode::NotFound, "no such job in this tenant"));
        }
        let watch = Watch {
            scope,
            job: job_id,
            rx,
            last: None,
            done: false,
        };
        Ok(stream::unfold(watch, |mut w| async move {
            if w.done {
                return None;
            }
            loop {
                if w.last.is_some() {
                    match w.rx.recv().await {
                        Ok(JobEvent::Changed { tenant, job, .. })
                            if tenant == w.scope.door.tenant() && job == w.job => {}
                        Ok(JobEvent::Resync) | Err(RecvError::Lagged(_)) => {}
                        Ok(_) => continue,
                        Err(RecvError::Closed) => return None,
                    }
                }
                match read(&w.scope, w.job).await {
                    Ok(Some(job)) => {
                        if w.last == Some(job.updated_at) {
                            continue;
                        }
                        w.last = Some(job.updated_at);
                        w.done = job.status.is_final();
                        return Some((Ok(job), w));
                    }
                    Ok(None) => {
                        w.done = true;
                        return Some((
                            Err(error(ErrorCode::NotFound, "the job no longer exists")),
                            w,
                        ));
                    }
                    Err(e) => {
                        w.done = true;
                        return Some((Err(e), w));
                    }
                }
            }
        }))
    }
}
