//! The state one layer shares with every service it makes: the unkeyed partition, the
//! map of keyed partitions and the counters.

use std::any::Any;
use std::fmt;
use std::hash::Hash;
use std::sync::{Arc, OnceLock, PoisonError, RwLock, RwLockReadGuard};

use tokio::time::Instant;

use super::config::BulkheadConfig;
use super::limiter::{Gauges, Limiter, Stats};
use crate::keyed::KeyedMap;

/// The map of keyed partitions, with its key type erased: the key type comes from
/// `Partition<Req>`, known only when a request arrives, while the state is made with
/// the layer.
trait Partitions: Send + Sync {
    fn as_any(&self) -> &dyn Any;
    fn overflow(&self) -> &Arc<Limiter>;
    fn for_each(&self, f: &mut dyn FnMut(&Limiter));
    fn len(&self) -> usize;
}

impl<K> Partitions for KeyedMap<K, Limiter>
where
    K: Hash + Eq + Send + Sync + 'static,
{
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn overflow(&self) -> &Arc<Limiter> {
        KeyedMap::overflow(self)
    }

    fn for_each(&self, f: &mut dyn FnMut(&Limiter)) {
        KeyedMap::for_each(self, |_, l| f(l));
    }

    fn len(&self) -> usize {
        KeyedMap::len(self)
    }
}

pub(crate) struct Shared {
    /// The partition of requests without a key (all of them, unkeyed).
    pub(crate) unkeyed: Arc<Limiter>,
    /// Made when the first keyed request arrives.
    keyed: OnceLock<Box<dyn Partitions>>,
    /// The settings new partitions get. Read-locked while a keyed partition is looked
    /// up (and possibly made), write-locked while new settings are applied, so that no
    /// partition is made with old settings after a reconfigure has passed over the map.
    config: RwLock<BulkheadConfig>,
    stats: Arc<Stats>,
    keyed_gauges: Gauges,
    overflow_gauges: Gauges,
}

/// Totals across every partition.
pub(crate) struct Totals {
    pub(crate) running: usize,
    pub(crate) queued: usize,
    pub(crate) partitions: usize,
    pub(crate) rejected: u64,
    pub(crate) would_reject: u64,
}

impl Shared {
    pub(crate) fn new(config: BulkheadConfig) -> Self {
        let stats = Arc::new(Stats::registered());
        let unkeyed = Arc::new(Limiter::new(
            &config.limits(),
            stats.clone(),
            Gauges::registered("unkeyed"),
        ));
        Self {
            unkeyed,
            keyed: OnceLock::new(),
            config: RwLock::new(config),
            stats,
            keyed_gauges: Gauges::registered("keyed"),
            overflow_gauges: Gauges::registered("overflow"),
        }
    }

    fn read_config(&self) -> RwLockReadGuard<'_, BulkheadConfig> {
        self.config.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// The partition of `key`: its own while the map has room, else the overflow one.
    pub(crate) fn keyed<K>(&self, key: &K) -> Arc<Limiter>
    where
        K: Hash + Eq + Clone + Send + Sync + 'static,
    {
        let config = self.read_config();
        let map = self.keyed.get_or_init(|| {
            let overflow = Limiter::new(
                &config.limits(),
                self.stats.clone(),
                self.overflow_gauges.clone(),
            );
            Box::new(
                KeyedMap::<K, Limiter>::new(config.keys, overflow)
                    .with_eviction_guard(Limiter::is_idle),
            )
        });
        match map.as_any().downcast_ref::<KeyedMap<K, Limiter>>() {
            Some(map) => map.get_or_insert_with(key, Instant::now(), || {
                Limiter::new(
                    &config.limits(),
                    self.stats.clone(),
                    self.keyed_gauges.clone(),
                )
            }),
            // One layer used with two key types: the second shares the overflow
            // partition rather than growing a second map.
            None => map.overflow().clone(),
        }
    }

    /// Applies `config` to every partition.
    pub(crate) fn reconfigure(&self, config: BulkheadConfig) {
        let mut current = self.config.write().unwrap_or_else(PoisonError::into_inner);
        let limits = config.limits();
        *current = config;
        self.each(&mut |l| l.set_limits(&limits));
        drop(current);
        tracing::debug!(target: "buttress::bulkhead", ?limits, "bulkhead reconfigured");
    }

    /// Changes `max_concurrent` of every partition.
    pub(crate) fn resize(&self, max_concurrent: usize) {
        let mut current = self.config.write().unwrap_or_else(PoisonError::into_inner);
        current.max_concurrent = max_concurrent;
        self.each(&mut |l| l.resize(max_concurrent));
        drop(current);
        tracing::debug!(target: "buttress::bulkhead", max_concurrent, "bulkhead resized");
    }

    pub(crate) fn config(&self) -> BulkheadConfig {
        self.read_config().clone()
    }

    fn each(&self, f: &mut dyn FnMut(&Limiter)) {
        f(&self.unkeyed);
        if let Some(map) = self.keyed.get() {
            f(map.overflow());
            map.for_each(f);
        }
    }

    pub(crate) fn totals(&self) -> Totals {
        let mut totals = Totals {
            running: 0,
            queued: 0,
            partitions: self.keyed.get().map_or(0, |m| m.len()),
            rejected: self.stats.rejected(),
            would_reject: self.stats.would_rejected(),
        };
        self.each(&mut |l| {
            totals.running += l.running();
            totals.queued += l.queued();
        });
        totals
    }
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared")
            .field("unkeyed", &self.unkeyed)
            .field("partitions", &self.keyed.get().map_or(0, |m| m.len()))
            .finish_non_exhaustive()
    }
}
