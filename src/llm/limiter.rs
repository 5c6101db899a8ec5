//! Bounded concurrency of model calls, per tenant.
//!
//! Each tenant has its own semaphore of `per_tenant` permits, so one tenant's burst waits on
//! itself and never holds up another. Semaphores are made on first use; one with no permit out
//! and no waiter is dropped when the map has grown (a fresh one is equivalent), so the map stays
//! about the size of the tenants currently calling.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::ids::TenantId;

/// Below this many tenants, idle semaphores are not looked for.
const PRUNE_FLOOR: usize = 64;

/// Hands out at most `per_tenant` concurrent permits to each tenant.
#[derive(Debug)]
pub struct ConcurrencyLimiter {
    per_tenant: usize,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    semaphores: HashMap<TenantId, Arc<Semaphore>>,
    /// The map's size at which idle semaphores are next dropped.
    prune_at: usize,
}

impl ConcurrencyLimiter {
    /// A limiter of `per_tenant` permits per tenant (at least one).
    pub fn new(per_tenant: usize) -> Self {
        ConcurrencyLimiter {
            per_tenant: per_tenant.clamp(1, Semaphore::MAX_PERMITS),
            state: Mutex::new(State {
                semaphores: HashMap::new(),
                prune_at: PRUNE_FLOOR,
            }),
        }
    }

    /// The permits each tenant has.
    pub fn per_tenant(&self) -> usize {
        self.per_tenant
    }

    /// A permit for `tenant`, waiting while the tenant has all of its permits out. The permit is
    /// given back when dropped.
    pub async fn acquire(&self, tenant: TenantId) -> OwnedSemaphorePermit {
        self.semaphore(tenant)
            .acquire_owned()
            .await
            .expect("the limiter never closes its semaphores")
    }

    /// A permit for `tenant` if one is free now.
    pub fn try_acquire(&self, tenant: TenantId) -> Option<OwnedSemaphorePermit> {
        self.semaphore(tenant).try_acquire_owned().ok()
    }

    /// The permits `tenant` has free now.
    pub fn available(&self, tenant: TenantId) -> usize {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state
            .semaphores
            .get(&tenant)
            .map_or(self.per_tenant, |s| s.available_permits())
    }

    /// The tenant's semaphore, made on first use.
    fn semaphore(&self, tenant: TenantId) -> Arc<Semaphore> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(semaphore) = state.semaphores.get(&tenant) {
            return Arc::clone(semaphore);
        }
        if state.semaphores.len() >= state.prune_at {
            // Only the map holds an idle semaphore: every permit and every waiter holds a clone.
            state
                .semaphores
                .retain(|_, semaphore| Arc::strong_count(semaphore) > 1);
            state.prune_at = (state.semaphores.len() * 2).max(PRUNE_FLOOR);
        }
        let semaphore = Arc::new(Semaphore::new(self.per_tenant));
        state.semaphores.insert(tenant, Arc::clone(&semaphore));
        semaphore
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    #[test]
    fn idle_semaphores_are_dropped_and_busy_ones_kept() {
        let limiter = ConcurrencyLimiter::new(2);
        let busy = TenantId(Uuid::from_u128(u128::MAX));
        let held = limiter.try_acquire(busy).unwrap();
        for n in 0..(PRUNE_FLOOR as u128 * 3) {
            drop(limiter.try_acquire(TenantId(Uuid::from_u128(n))).unwrap());
        }
        let size = limiter.state.lock().unwrap().semaphores.len();
        assert!(size < PRUNE_FLOOR * 2, "{size} semaphores kept");
        assert_eq!(limiter.available(busy), 1);
        drop(held);
        assert_eq!(limiter.available(busy), 2);
    }

    #[test]
    fn zero_permits_means_one() {
        assert_eq!(ConcurrencyLimiter::new(0).per_tenant(), 1);
    }
}
