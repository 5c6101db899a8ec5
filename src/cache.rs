//! In-process caches of tenant data are keyed by tenant: the type offers no way to look a value
//! up without naming the tenant it belongs to, so an entry of tenant A can never be served to B.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::ids::TenantId;

/// A small TTL cache whose every key includes the tenant.
pub struct TenantCache<K, V> {
    entries: Mutex<HashMap<(TenantId, K), (Instant, V)>>,
    ttl: Duration,
    capacity: usize,
}

impl<K: Eq + Hash + Clone, V: Clone> TenantCache<K, V> {
    /// Entries live `ttl`; at `capacity` entries, expired ones are dropped, then everything.
    pub fn new(ttl: Duration, capacity: usize) -> Self {
        TenantCache {
            entries: Mutex::new(HashMap::new()),
            ttl,
            capacity: capacity.max(1),
        }
    }

    /// The fresh value of `key` in `tenant`, if cached.
    pub fn get(&self, tenant: TenantId, key: &K) -> Option<V> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries
            .get(&(tenant, key.clone()))
            .filter(|(at, _)| at.elapsed() < self.ttl)
            .map(|(_, v)| v.clone())
    }

    /// Caches `value` for `key` in `tenant`.
    pub fn insert(&self, tenant: TenantId, key: K, value: V) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= self.capacity {
            let ttl = self.ttl;
            entries.retain(|_, (at, _)| at.elapsed() < ttl);
            if entries.len() >= self.capacity {
                entries.clear();
            }
        }
        entries.insert((tenant, key), (Instant::now(), value));
    }

    /// Forgets `key` in `tenant` (after a write in this process).
    pub fn invalidate(&self, tenant: TenantId, key: &K) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.remove(&(tenant, key.clone()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    #[test]
    fn an_entry_of_one_tenant_is_never_served_to_another() {
        let cache = TenantCache::new(Duration::from_secs(60), 10);
        let a = TenantId(Uuid::new_v4());
        let b = TenantId(Uuid::new_v4());
        cache.insert(a, "settings", "A's value");
        assert_eq!(cache.get(a, &"settings"), Some("A's value"));
        assert_eq!(cache.get(b, &"settings"), None);
        cache.insert(b, "settings", "B's value");
        assert_eq!(cache.get(a, &"settings"), Some("A's value"));
        assert_eq!(cache.get(b, &"settings"), Some("B's value"));
        cache.invalidate(a, &"settings");
        assert_eq!(cache.get(a, &"settings"), None);
        assert_eq!(cache.get(b, &"settings"), Some("B's value"));
    }

    #[test]
    fn entries_expire_and_capacity_is_bounded() {
        let cache = TenantCache::new(Duration::ZERO, 2);
        let a = TenantId(Uuid::new_v4());
        cache.insert(a, 1, 1);
        assert_eq!(cache.get(a, &1), None, "expired at once");
        for k in 0..100 {
            cache.insert(a, k, k);
        }
        assert!(cache.entries.lock().unwrap().len() <= 2);
    }
}
