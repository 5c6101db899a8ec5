//! The usage meter: every model call becomes a usage event, written in the background so that
//! metering never fails or slows the user's work, and never silently loses an event.
//!
//! `record` puts the event in a bounded buffer (waiting for room when it is full: back-pressure,
//! not loss); `record_durable`, which model calls use, writes it at once and buffers it only
//! when the database cannot take it then, so a process killed after a call has recorded it. A worker writes batches, one tenant session per tenant and user, with `ON CONFLICT
//! (tenant_id, idempotency_key) DO NOTHING` so a retried batch never counts twice. When the
//! database is unavailable the worker keeps the batch and retries with backoff; the buffer holds
//! what arrives meanwhile. An event the database refuses for good (not retryable) is logged with
//! its idempotency key and counted in `rejected`. `shutdown` drains the buffer within a deadline
//! and reports what it could not write.
//!
//! Writing an event also deletes the cost reservation its call held (same transaction), so a
//! hard limit never counts a call twice nor forgets it in between.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::mpsc;
use uuid::Uuid;

use super::pricing::{Cost, Tokens};
use crate::db::{Database, DbError};
use crate::ids::{TenantId, UserId};
use crate::tenants::settings::ExecutionMode;

/// How a call ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// It returned a usable answer.
    Ok,
    /// It failed (the error kind says how).
    Error,
    /// A hard limit refused it before it started.
    Blocked,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Error => "error",
            Outcome::Blocked => "blocked",
        }
    }
}

/// One model call, as recorded.
#[derive(Clone, Debug)]
pub struct UsageEvent {
    /// The tenant that pays.
    pub tenant: TenantId,
    /// The user on whose behalf the call ran (a member of the tenant).
    pub user: UserId,
    /// The pipeline job, if any.
    pub job_id: Option<Uuid>,
    /// The pipeline stage (extract, resolve, reason, …).
    pub stage: String,
    /// The agent that made the call.
    pub agent: String,
    /// The provider (gemini, openai, offline).
    pub provider: String,
    /// The model.
    pub model: String,
    /// Tokens used.
    pub tokens: Tokens,
    /// Provider cost and billed cost.
    pub cost: Cost,
    /// Hosted or bring-your-own key.
    pub execution_mode: ExecutionMode,
    /// Wall time of the call.
    pub latency_ms: i32,
    /// How it ended.
    pub outcome: Outcome,
    /// The error kind, when it failed.
    pub error_kind: Option<String>,
    /// Unique per tenant: a retried write of the same call is ignored.
    pub idempotency_key: String,
    /// When the call ended.
    pub occurred_at: DateTime<Utc>,
    /// The cost reservation the call held under a hard limit, released by this event.
    pub reservation: Option<Uuid>,
}

/// Counters of the meter (also exported in logs at shutdown).
#[derive(Debug, Default)]
pub struct MeterStats {
    /// Events handed to `record`.
    pub recorded: AtomicU64,
    /// Events written (or found already written).
    pub written: AtomicU64,
    /// Write attempts that failed and were retried.
    pub retries: AtomicU64,
    /// Events the database refused for good (logged, never silently).
    pub rejected: AtomicU64,
}

/// A snapshot of [`MeterStats`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MeterCounts {
    /// Events handed to `record`.
    pub recorded: u64,
    /// Events written.
    pub written: u64,
    /// Retried write attempts.
    pub retries: u64,
    /// Events refused for good.
    pub rejected: u64,
}

/// The meter: a bounded buffer and its writer.
pub struct Meter {
    db: Database,
    tx: Mutex<Option<mpsc::Sender<UsageEvent>>>,
    stats: Arc<MeterStats>,
    worker: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

const BATCH: usize = 256;
const MAX_BACKOFF: Duration = Duration::from_secs(2);

impl Meter {
    /// Starts the writer; `capacity` events may wait in the buffer.
    pub fn start(db: Database, capacity: usize) -> Meter {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let stats = Arc::new(MeterStats::default());
        let worker = tokio::spawn(run(db.clone(), rx, Arc::clone(&stats)));
        Meter {
            db,
            tx: Mutex::new(Some(tx)),
            stats,
            worker: Mutex::new(Some(worker)),
        }
    }

    /// Records an event. Waits while the buffer is full; after shutdown, logs and counts it as
    /// rejected.
    pub async fn record(&self, event: UsageEvent) {
        self.stats.recorded.fetch_add(1, Ordering::Relaxed);
        let tx = self.tx.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let sent = match tx {
            Some(tx) => tx.send(event).await.map_err(|e| e.0),
            None => Err(event),
        };
        if let Err(event) = sent {
            self.stats.rejected.fetch_add(1, Ordering::Relaxed);
            tracing::error!(
                tenant = %event.tenant,
                idempotency_key = %event.idempotency_key,
                "usage event recorded after the meter stopped; not written"
            );
        }
    }

    /// Records an event and waits until it is written, so that a process killed right after
    /// the call loses nothing of it; when the database cannot take it now, the event goes to
    /// the buffer as with [`Meter::record`] (and is written when the database is back).
    pub async fn record_durable(&self, event: UsageEvent) {
        let open = self.tx.lock().unwrap_or_else(|e| e.into_inner()).is_some();
        if !open {
            return self.record(event).await;
        }
        match write(
            &self.db,
            event.tenant,
            event.user,
            std::slice::from_ref(&event),
        )
        .await
        {
            Ok(()) => {
                self.stats.recorded.fetch_add(1, Ordering::Relaxed);
                self.stats.written.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                tracing::debug!(error = %e, "usage event not written at once; buffered");
                self.record(event).await;
            }
        }
    }

    /// The counters now.
    pub fn counts(&self) -> MeterCounts {
        MeterCounts {
            recorded: self.stats.recorded.load(Ordering::Relaxed),
            written: self.stats.written.load(Ordering::Relaxed),
            retries: self.stats.retries.load(Ordering::Relaxed),
            rejected: self.stats.rejected.load(Ordering::Relaxed),
        }
    }

    /// Stops accepting events and writes what is buffered, for at most `deadline`. Returns the
    /// number of events left unwritten (logged as an error when not zero).
    pub async fn shutdown(&self, deadline: Duration) -> u64 {
        drop(self.tx.lock().unwrap_or_else(|e| e.into_inner()).take());
        let worker = self.worker.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(worker) = worker {
            if tokio::time::timeout(deadline, worker).await.is_err() {
                tracing::error!("usage meter did not finish writing before the deadline");
            }
        }
        let c = self.counts();
        let unwritten = c.recorded.saturating_sub(c.written + c.rejected);
        if unwritten > 0 {
            tracing::error!(unwritten, "usage events left unwritten at shutdown");
        }
        tracing::info!(
            recorded = c.recorded,
            written = c.written,
            retries = c.retries,
            rejected = c.rejected,
            "usage meter stopped"
        );
        unwritten
    }
}

async fn run(db: Database, mut rx: mpsc::Receiver<UsageEvent>, stats: Arc<MeterStats>) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < BATCH {
            match rx.try_recv() {
                Ok(event) => batch.push(event),
                Err(_) => break,
            }
        }
        let mut groups: HashMap<(TenantId, UserId), Vec<UsageEvent>> = HashMap::new();
        for event in batch {
            groups
                .entry((event.tenant, event.user))
                .or_default()
                .push(event);
        }
        for ((tenant, user), events) in groups {
            write_with_retry(&db, tenant, user, &events, &stats).await;
        }
    }
}

async fn write_with_retry(
    db: &Database,
    tenant: TenantId,
    user: UserId,
    events: &[UsageEvent],
    stats: &MeterStats,
) {
    let mut backoff = Duration::from_millis(50);
    loop {
        match write(db, tenant, user, events).await {
            Ok(()) => {
                stats
                    .written
                    .fetch_add(events.len() as u64, Ordering::Relaxed);
                return;
            }
            Err(e) if e.is_unavailable() || matches!(e, DbError::Interrupted) => {
                stats.retries.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, events = events.len(), ?backoff, "usage write failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
            Err(e) if events.len() > 1 => {
                // One bad event must not take the batch down with it: write them one by one.
                tracing::warn!(error = %e, "usage batch refused; writing its events one by one");
                for event in events {
                    Box::pin(write_with_retry(
                        db,
                        tenant,
                        user,
                        std::slice::from_ref(event),
                        stats,
                    ))
                    .await;
                }
                return;
            }
            Err(e) => {
                stats
                    .rejected
                    .fetch_add(events.len() as u64, Ordering::Relaxed);
                let keys: Vec<&str> = events.iter().map(|e| e.idempotency_key.as_str()).collect();
                tracing::error!(error = %e, %tenant, ?keys, "usage events refused by the database");
                return;
            }
        }
    }
}

const INSERT: &str = "\
INSERT INTO app.usage_events (tenant_id, job_id, stage, agent, provider, model, input_tokens,
    cached_tokens, output_tokens, thinking_tokens, base_cost_micros, billed_cost_micros,
    execution_mode, latency_ms, outcome, error_kind, idempotency_key, occurred_at)
SELECT app.tenant_id(), e.* FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[],
    $6::bigint[], $7::bigint[], $8::bigint[], $9::bigint[], $10::bigint[], $11::bigint[],
    $12::text[], $13::int[], $14::text[], $15::text[], $16::text[], $17::timestamptz[]) AS e
ON CONFLICT (tenant_id, idempotency_key) DO NOTHING";

async fn write(
    db: &Database,
    tenant: TenantId,
    user: UserId,
    events: &[UsageEvent],
) -> Result<(), DbError> {
    let session = db.session(tenant, user).await?;
    let col = |f: &dyn Fn(&UsageEvent) -> i64| events.iter().map(f).collect::<Vec<i64>>();
    let jobs: Vec<Option<Uuid>> = events.iter().map(|e| e.job_id).collect();
    let stages: Vec<&str> = events.iter().map(|e| e.stage.as_str()).collect();
    let agents: Vec<&str> = events.iter().map(|e| e.agent.as_str()).collect();
    let providers: Vec<&str> = events.iter().map(|e| e.provider.as_str()).collect();
    let models: Vec<&str> = events.iter().map(|e| e.model.as_str()).collect();
    let input = col(&|e| e.tokens.input as i64);
    let cached = col(&|e| e.tokens.cached as i64);
    let output = col(&|e| e.tokens.output as i64);
    let thinking = col(&|e| e.tokens.thinking as i64);
    let base = col(&|e| e.cost.base.0);
    let billed = col(&|e| e.cost.billed.0);
    let modes: Vec<&str> = events
        .iter()
        .map(|e| match e.execution_mode {
            ExecutionMode::Hosted => "hosted",
            ExecutionMode::ByoKey => "byo_key",
        })
        .collect();
    let latency: Vec<i32> = events.iter().map(|e| e.latency_ms.max(0)).collect();
    let outcomes: Vec<&str> = events.iter().map(|e| e.outcome.as_str()).collect();
    let kinds: Vec<Option<&str>> = events.iter().map(|e| e.error_kind.as_deref()).collect();
    let keys: Vec<&str> = events.iter().map(|e| e.idempotency_key.as_str()).collect();
    let at: Vec<DateTime<Utc>> = events.iter().map(|e| e.occurred_at).collect();
    session
        .execute(
            INSERT,
            &[
                &jobs, &stages, &agents, &providers, &models, &input, &cached, &output, &thinking,
                &base, &billed, &modes, &latency, &outcomes, &kinds, &keys, &at,
            ],
        )
        .await?;
    let reservations: Vec<Uuid> = events.iter().filter_map(|e| e.reservation).collect();
    if !reservations.is_empty() {
        session
            .execute(
                "DELETE FROM app.usage_reservations WHERE id = ANY($1)",
                &[&reservations],
            )
            .await?;
    }
    session.commit().await
}
