//! What one layer's services share: the unkeyed breaker, the keyed ones, the
//! settings new keys start with, the metric handles and the random source.

use std::any::Any;
use std::hash::Hash;
use std::sync::{Arc, Mutex, OnceLock};

use tokio::time::Instant;

use super::circuit::Circuit;
use super::config::BreakerConfig;
use super::metrics::Metrics;
use super::state::Settings;
use crate::keyed::{KeyedConfig, KeyedMap};
use crate::rand::Rng;
use crate::util::lock;

/// The keyed breakers with their key type erased: a layer's type does not name the
/// key (it depends on the request type), so the map is made at the first keyed call
/// and found again by a downcast (a type-id comparison).
pub(crate) trait KeyedCircuits: Send + Sync {
    fn as_any(&self) -> &dyn Any;
    fn for_each_circuit(&self, f: &mut dyn FnMut(&Arc<Circuit>));
}

impl<K: Hash + Eq + Send + Sync + 'static> KeyedCircuits for KeyedMap<K, Circuit> {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn for_each_circuit(&self, f: &mut dyn FnMut(&Arc<Circuit>)) {
        f(self.overflow());
        self.for_each(|_, c| f(c));
    }
}

pub(crate) struct Shared {
    pub(crate) global: Arc<Circuit>,
    keyed: OnceLock<Arc<dyn KeyedCircuits>>,
    keyed_config: KeyedConfig,
    settings: Mutex<Settings>,
    metrics: Arc<Metrics>,
    rng: Rng,
    pub(crate) reuse_deadline_start: bool,
}

impl Shared {
    pub(crate) fn new(
        config: &BreakerConfig,
        name: &str,
        rng: Rng,
        keyed_config: KeyedConfig,
        reuse_deadline_start: bool,
    ) -> Self {
        let settings = Settings::new(config);
        let metrics = Arc::new(Metrics::new(name));
        Self {
            global: Arc::new(Circuit::new(settings, rng.clone(), metrics.clone())),
            keyed: OnceLock::new(),
            keyed_config,
            settings: Mutex::new(settings),
            metrics,
            rng,
            reuse_deadline_start,
        }
    }

    fn new_circuit(&self) -> Circuit {
        Circuit::new(
            *lock(&self.settings),
            self.rng.clone(),
            self.metrics.clone(),
        )
    }

    /// The breaker for `key`, made on first use (the overflow breaker once the map is
    /// full). Reads the clock once, for the map's idle tracking.
    pub(crate) fn keyed<K: Hash + Eq + Clone + Send + Sync + 'static>(
        &self,
        key: &K,
    ) -> Arc<Circuit> {
        let map = self.keyed.get_or_init(|| {
            Arc::new(
                KeyedMap::<K, Circuit>::new(self.keyed_config, self.new_circuit())
                    .with_eviction_guard(Circuit::is_evictable),
            )
        });
        match map.as_any().downcast_ref::<KeyedMap<K, Circuit>>() {
            Some(map) => map.get_or_insert_with(key, Instant::now(), || self.new_circuit()),
            // Only a partition yielding keys of different types for different request
            // types gets here: those share the unkeyed breaker.
            None => self.global.clone(),
        }
    }

    pub(crate) fn keyed_map<K: Hash + Eq + Send + Sync + 'static>(
        &self,
    ) -> Option<&KeyedMap<K, Circuit>> {
        self.keyed
            .get()?
            .as_any()
            .downcast_ref::<KeyedMap<K, Circuit>>()
    }

    pub(crate) fn reconfigure(&self, config: &BreakerConfig) {
        let settings = Settings::new(config);
        *lock(&self.settings) = settings;
        self.global.reconfigure(settings);
        if let Some(map) = self.keyed.get() {
            map.for_each_circuit(&mut |c| c.reconfigure(settings));
        }
    }
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("name", &self.metrics.name)
            .field("global", &self.global)
            .field("keyed", &self.keyed.get().is_some())
            .finish_non_exhaustive()
    }
}
