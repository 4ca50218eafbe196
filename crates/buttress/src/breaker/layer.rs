use std::fmt;
use std::sync::Arc;

use tower_layer::Layer;

use super::config::BreakerConfig;
use super::handle::BreakerHandle;
use super::service::Breaker;
use super::shared::Shared;
use crate::classify::DefaultClassify;
use crate::keyed::{Global, KeyedConfig};
use crate::rand::Rng;

/// Applies a [`Breaker`] to services. Every service it makes shares its breakers: the
/// state is made when the layer is built, never in [`Layer::layer`].
///
/// Built from `None` ([`from_config`](Self::from_config),
/// [`disabled`](Self::disabled)) it is a pass-through of the same type.
#[derive(Clone)]
pub struct BreakerLayer<C = DefaultClassify, P = Global> {
    shared: Option<Arc<Shared>>,
    classify: C,
    partition: P,
}

impl BreakerLayer {
    /// A breaker with `config`, the default classifier and one breaker for all calls.
    pub fn new(config: BreakerConfig) -> Self {
        Self::builder(config).build()
    }

    /// A breaker with `config`, or a pass-through when `None`.
    pub fn from_config(config: Option<BreakerConfig>) -> Self {
        BreakerBuilder::from_config(config).build()
    }

    /// A pass-through.
    pub fn disabled() -> Self {
        Self::from_config(None)
    }

    /// A builder to set the classifier, the partition, a name and a random source.
    pub fn builder(config: BreakerConfig) -> BreakerBuilder {
        BreakerBuilder::from_config(Some(config))
    }
}

impl<C, P> BreakerLayer<C, P> {
    /// The handle of the layer's breakers.
    pub fn handle(&self) -> BreakerHandle {
        BreakerHandle::new(self.shared.clone())
    }

    /// Whether this layer is a pass-through.
    pub fn is_disabled(&self) -> bool {
        self.shared.is_none()
    }
}

impl<S, C: Clone, P: Clone> Layer<S> for BreakerLayer<C, P> {
    type Service = Breaker<S, C, P>;

    fn layer(&self, inner: S) -> Self::Service {
        Breaker::from_parts(
            inner,
            self.shared.clone(),
            self.classify.clone(),
            self.partition.clone(),
        )
    }
}

impl<C: fmt::Debug, P: fmt::Debug> fmt::Debug for BreakerLayer<C, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BreakerLayer")
            .field("shared", &self.shared)
            .field("classify", &self.classify)
            .field("partition", &self.partition)
            .finish()
    }
}

/// Builds a [`BreakerLayer`]; see [`BreakerLayer::builder`].
#[derive(Debug, Clone)]
pub struct BreakerBuilder<C = DefaultClassify, P = Global> {
    config: Option<BreakerConfig>,
    name: String,
    rng: Option<Rng>,
    classify: C,
    partition: P,
    keyed: KeyedConfig,
    reuse_deadline_start: bool,
}

impl BreakerBuilder {
    /// A builder for `config`, or for a pass-through when `None`.
    pub fn from_config(config: Option<BreakerConfig>) -> Self {
        Self {
            config,
            name: "default".to_owned(),
            rng: None,
            classify: DefaultClassify,
            partition: Global,
            keyed: KeyedConfig::default(),
            reuse_deadline_start: true,
        }
    }
}

impl<C, P> BreakerBuilder<C, P> {
    /// Names the breaker in metrics (label `breaker`) and logs (default `"default"`).
    #[must_use]
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// The random source of the open-time jitter (seed it for reproducible runs;
    /// default: seeded from entropy).
    #[must_use]
    pub fn rng(mut self, rng: Rng) -> Self {
        self.rng = Some(rng);
        self
    }

    /// Whether a first attempt's start is the instant carried with its deadline
    /// (default `true`, saving a clock read per call with slow-call detection on; time
    /// spent above the breaker before the call, waiting for readiness say, then
    /// counts toward slowness). With `false`, the breaker reads the clock in `call`.
    #[must_use]
    pub fn reuse_deadline_start(mut self, reuse: bool) -> Self {
        self.reuse_deadline_start = reuse;
        self
    }

    /// Classifies outcomes with `classify`.
    pub fn classify<C2>(self, classify: C2) -> BreakerBuilder<C2, P> {
        BreakerBuilder {
            config: self.config,
            name: self.name,
            rng: self.rng,
            classify,
            partition: self.partition,
            keyed: self.keyed,
            reuse_deadline_start: self.reuse_deadline_start,
        }
    }

    /// One breaker per key that `partition` finds in a request (requests without a
    /// key share the unkeyed breaker), in a map bounded by `keyed`. Open breakers are
    /// never evicted. Keyed breakers cannot gate `poll_ready` (which sees no request):
    /// in gate mode they reject like reject mode, and only the unkeyed breaker gates.
    pub fn partition<P2>(self, partition: P2, keyed: KeyedConfig) -> BreakerBuilder<C, P2> {
        BreakerBuilder {
            config: self.config,
            name: self.name,
            rng: self.rng,
            classify: self.classify,
            partition,
            keyed,
            reuse_deadline_start: self.reuse_deadline_start,
        }
    }

    /// Builds the layer, creating its state.
    pub fn build(self) -> BreakerLayer<C, P> {
        let shared = self.config.map(|config| {
            let rng = self.rng.unwrap_or_default();
            Arc::new(Shared::new(
                &config,
                &self.name,
                rng,
                self.keyed,
                self.reuse_deadline_start,
            ))
        });
        BreakerLayer {
            shared,
            classify: self.classify,
            partition: self.partition,
        }
    }
}
