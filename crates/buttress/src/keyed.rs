//! The bounded map that gives keyed layers one partition of state per key.
//!
//! Bulkheads per tenant, breakers per endpoint, throttles per host: each keeps its state
//! in a [`KeyedMap`]. Keys often come from peers (a header, a host name), so the map is
//! bounded: at most `max_keys` partitions; partitions unused for `idle_timeout` are
//! evicted when room is needed; and once full, new keys share one *overflow*
//! partition rather than growing the map or failing the call. An eviction guard lets a
//! layer refuse to evict an entry (an open breaker must not be forgotten, or a peer
//! could reset it by flooding the map with new keys).
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use std::sync::atomic::{AtomicU32, Ordering};
//! use buttress::keyed::{KeyedConfig, KeyedMap};
//! use tokio::time::Instant;
//!
//! let map = KeyedMap::new(KeyedConfig { max_keys: 2, idle_timeout: Duration::from_secs(60) }, AtomicU32::new(0));
//! let now = Instant::now();
//! map.get_or_insert_with("tenant-a", now, || AtomicU32::new(0)).fetch_add(1, Ordering::Relaxed);
//! map.get_or_insert_with("tenant-b", now, || AtomicU32::new(0)).fetch_add(1, Ordering::Relaxed);
//! // Full: a third tenant shares the overflow partition.
//! let c = map.get_or_insert_with("tenant-c", now, || AtomicU32::new(0));
//! assert!(std::sync::Arc::ptr_eq(&c, map.overflow()));
//! assert_eq!(map.len(), 2);
//! ```

use std::borrow::Borrow;
use std::collections::HashMap;
use std::fmt;
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use crate::util::lock;

/// Bounds of a keyed map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
pub struct KeyedConfig {
    /// At most this many partitions besides the overflow one.
    pub max_keys: usize,
    /// A partition unused this long may be evicted to make room.
    #[cfg_attr(feature = "serde", serde(with = "crate::duration::serde"))]
    pub idle_timeout: Duration,
}

impl Default for KeyedConfig {
    /// 1,024 keys, evictable after 5 minutes idle.
    fn default() -> Self {
        Self {
            max_keys: 1024,
            idle_timeout: Duration::from_secs(300),
        }
    }
}

struct Slot<V> {
    value: Arc<V>,
    last_used: Instant,
}

struct Entries<K, V> {
    map: HashMap<K, Slot<V>>,
    next_sweep: Option<Instant>,
}

/// A bounded map from keys to shared partitions of state; see the [module docs](self).
pub struct KeyedMap<K, V> {
    entries: Mutex<Entries<K, V>>,
    overflow: Arc<V>,
    config: KeyedConfig,
    can_evict: fn(&V) -> bool,
}

impl<K: Hash + Eq, V> KeyedMap<K, V> {
    /// An empty map with `config`, whose overflow partition is `overflow`.
    pub fn new(config: KeyedConfig, overflow: V) -> Self {
        Self {
            entries: Mutex::new(Entries {
                map: HashMap::new(),
                next_sweep: None,
            }),
            overflow: Arc::new(overflow),
            config,
            can_evict: |_| true,
        }
    }

    /// Only entries for which `guard` returns `true` are ever evicted.
    #[must_use]
    pub fn with_eviction_guard(mut self, guard: fn(&V) -> bool) -> Self {
        self.can_evict = guard;
        self
    }

    /// The partition shared by new keys once the map is full.
    pub fn overflow(&self) -> &Arc<V> {
        &self.overflow
    }

    /// The partition for `key`, made by `make` if it is new and there is room (after
    /// evicting idle entries if needed), else the overflow partition.
    pub fn get_or_insert_with<Q>(&self, key: &Q, now: Instant, make: impl FnOnce() -> V) -> Arc<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        let mut e = lock(&self.entries);
        if let Some(slot) = e.map.get_mut(key) {
            slot.last_used = now;
            return slot.value.clone();
        }
        if e.map.len() >= self.config.max_keys {
            self.sweep(&mut e, now);
            if e.map.len() >= self.config.max_keys {
                return self.overflow.clone();
            }
        }
        let value = Arc::new(make());
        e.map.insert(
            key.to_owned(),
            Slot {
                value: value.clone(),
                last_used: now,
            },
        );
        value
    }

    /// The partition for `key`, if it has one.
    pub fn get<Q>(&self, key: &Q) -> Option<Arc<V>>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        lock(&self.entries).map.get(key).map(|s| s.value.clone())
    }

    /// Number of keyed partitions (the overflow partition not counted).
    pub fn len(&self) -> usize {
        lock(&self.entries).map.len()
    }

    /// Whether no key has a partition.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Calls `f` with every keyed partition (under the map's lock: keep it short).
    pub fn for_each(&self, mut f: impl FnMut(&K, &Arc<V>)) {
        for (k, s) in lock(&self.entries).map.iter() {
            f(k, &s.value);
        }
    }

    /// Evicts every evictable entry idle for `idle_timeout` at `now`.
    pub fn evict_idle(&self, now: Instant) {
        let mut e = lock(&self.entries);
        e.next_sweep = None;
        self.sweep(&mut e, now);
    }

    fn sweep(&self, e: &mut Entries<K, V>, now: Instant) {
        // A full map of busy keys would otherwise be rescanned for every new key.
        if e.next_sweep.is_some_and(|t| now < t) {
            return;
        }
        let idle = self.config.idle_timeout;
        let can_evict = self.can_evict;
        e.map.retain(|_, s| {
            now.saturating_duration_since(s.last_used) < idle || !can_evict(&s.value)
        });
        e.next_sweep = Some(now + (idle / 4).max(Duration::from_millis(10)));
    }
}

/// Picks the partition a request belongs to, for keyed layers.
///
/// `None` means the layer's shared, unkeyed state. Keys taken from what a peer sends
/// (a header, a host name) must be bounded: take them through an allow-list, since the
/// map's overflow partition is the only thing standing between a flood of distinct
/// keys and a flood of partitions.
pub trait Partition<Req> {
    /// The key type.
    type Key: Hash + Eq + Clone + Send + Sync + 'static;

    /// The key of `req`, or `None` for the shared state.
    fn key(&self, req: &Req) -> Option<Self::Key>;
}

/// No partitioning: every request shares the layer's state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Global;

impl<Req> Partition<Req> for Global {
    type Key = ();

    #[inline]
    fn key(&self, _: &Req) -> Option<()> {
        None
    }
}

/// Partitions by a closure over the request.
pub fn partition_fn<F>(f: F) -> PartitionFn<F> {
    PartitionFn { f }
}

/// A [`Partition`] built from a closure; see [`partition_fn`].
#[derive(Clone, Copy)]
pub struct PartitionFn<F> {
    f: F,
}

impl<F> fmt::Debug for PartitionFn<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PartitionFn").finish_non_exhaustive()
    }
}

impl<Req, K, F> Partition<Req> for PartitionFn<F>
where
    F: Fn(&Req) -> Option<K>,
    K: Hash + Eq + Clone + Send + Sync + 'static,
{
    type Key = K;

    fn key(&self, req: &Req) -> Option<K> {
        (self.f)(req)
    }
}

impl<K, V> fmt::Debug for KeyedMap<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedMap")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};

    fn cfg(max_keys: usize) -> KeyedConfig {
        KeyedConfig {
            max_keys,
            idle_timeout: Duration::from_secs(10),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn same_key_same_partition() {
        let map: KeyedMap<String, u8> = KeyedMap::new(cfg(4), 0);
        let now = Instant::now();
        let a = map.get_or_insert_with("a", now, || 1);
        let b = map.get_or_insert_with("a", now, || 2);
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(*b, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn full_map_uses_overflow_until_idle_entries_go() {
        let map: KeyedMap<String, u8> = KeyedMap::new(cfg(2), 0);
        let t0 = Instant::now();
        map.get_or_insert_with("a", t0, || 1);
        map.get_or_insert_with("b", t0 + Duration::from_secs(5), || 2);
        let c = map.get_or_insert_with("c", t0 + Duration::from_secs(6), || 3);
        assert!(Arc::ptr_eq(&c, map.overflow()));
        // "a" idles out at t0 + 10s: "c" takes its place, "b" stays.
        let c = map.get_or_insert_with("c", t0 + Duration::from_secs(11), || 3);
        assert_eq!(*c, 3);
        assert!(map.get("a").is_none());
        assert!(map.get("b").is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn guarded_entries_are_never_evicted() {
        let map: KeyedMap<String, AtomicBool> = KeyedMap::new(cfg(1), AtomicBool::new(false))
            .with_eviction_guard(|open| !open.load(Ordering::Relaxed));
        let t0 = Instant::now();
        map.get_or_insert_with("open", t0, || AtomicBool::new(true));
        let later = t0 + Duration::from_secs(3600);
        let other = map.get_or_insert_with("new", later, || AtomicBool::new(false));
        assert!(Arc::ptr_eq(&other, map.overflow()));
        assert!(map.get("open").is_some());
        // Once the guard allows it, the idle entry goes.
        map.get("open").unwrap().store(false, Ordering::Relaxed);
        map.evict_idle(later);
        assert!(map.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn use_refreshes_idleness() {
        let map: KeyedMap<String, u8> = KeyedMap::new(cfg(1), 0);
        let t0 = Instant::now();
        for s in 0..30 {
            map.get_or_insert_with("busy", t0 + Duration::from_secs(s), || 1);
        }
        map.evict_idle(t0 + Duration::from_secs(35));
        assert_eq!(map.len(), 1);
        map.evict_idle(t0 + Duration::from_secs(40));
        assert_eq!(map.len(), 0);
    }
}
