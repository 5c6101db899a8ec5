//! Job notifications across processes: one LISTEN connection per process on channel `rg_jobs`
//! (a trigger on `app.jobs` announces every change as `"<tenant> <job> <status>"`), fanned out to the
//! subscriptions and workers of this process.
//!
//! Payloads carry ids only: a listener reads the job itself through a tenant session, so what
//! it may see is still decided by row-level security. When the connection drops, the hub
//! reconnects with backoff and announces [`JobEvent::Resync`], since notifications sent
//! meanwhile are lost: subscribers then re-read what they watch.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::broadcast;
use uuid::Uuid;

use crate::db::Database;
use crate::ids::TenantId;

/// The channel the `app.jobs` trigger notifies.
pub const CHANNEL: &str = "rg_jobs";

/// One announcement.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobEvent {
    /// A job changed (created, claimed, progressed, finished).
    Changed {
        /// Its tenant.
        tenant: TenantId,
        /// The job.
        job: Uuid,
        /// It is queued (new, re-run, or back after a failed attempt): workers wake for these.
        queued: bool,
    },
    /// Notifications may have been missed: re-read.
    Resync,
}

/// The per-process hub. Dropping it stops its listener.
pub struct JobEvents {
    tx: broadcast::Sender<JobEvent>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl JobEvents {
    /// Starts the hub's listener task on its own connection.
    pub fn start(db: Database) -> Arc<JobEvents> {
        let (tx, _) = broadcast::channel(1024);
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let sender = tx.clone();
        tokio::spawn(async move {
            let mut delay = Duration::from_millis(100);
            let mut first = true;
            loop {
                let listening = tokio::select! {
                    _ = &mut stopped => return,
                    listening = db.listen(CHANNEL) => listening,
                };
                match listening {
                    Ok(mut listener) => {
                        delay = Duration::from_millis(100);
                        if !first {
                            let _ = sender.send(JobEvent::Resync);
                        }
                        first = false;
                        loop {
                            tokio::select! {
                                _ = &mut stopped => return,
                                n = listener.recv() => match n {
                                    Some(n) => {
                                        if let Some(event) = parse(n.payload()) {
                                            let _ = sender.send(event);
                                        }
                                    }
                                    None => break,
                                },
                            }
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "cannot listen for job notifications"),
                }
                tokio::select! {
                    _ = &mut stopped => return,
                    _ = tokio::time::sleep(delay) => {}
                }
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        });
        Arc::new(JobEvents { tx, _stop: stop })
    }

    /// A receiver of every announcement from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<JobEvent> {
        self.tx.subscribe()
    }
}

fn parse(payload: &str) -> Option<JobEvent> {
    let mut parts = payload.split(' ');
    let (tenant, job, status) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    Some(JobEvent::Changed {
        tenant: TenantId(tenant.parse().ok()?),
        job: job.parse().ok()?,
        queued: status == "queued",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_parse_into_ids_or_nothing() {
        let t = Uuid::new_v4();
        let j = Uuid::new_v4();
        assert_eq!(
            parse(&format!("{t} {j} queued")),
            Some(JobEvent::Changed {
                tenant: TenantId(t),
                job: j,
                queued: true
            })
        );
        assert_eq!(
            parse(&format!("{t} {j} running")),
            Some(JobEvent::Changed {
                tenant: TenantId(t),
                job: j,
                queued: false
            })
        );
        assert_eq!(parse("garbage"), None);
        assert_eq!(parse(&format!("{t} {j}")), None);
        assert_eq!(parse(&format!("{t} not-a-uuid queued")), None);
    }
}
