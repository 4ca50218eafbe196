use std::sync::Arc;

use tower_layer::Layer;

use super::config::ThrottleConfig;
use super::state::Shared;
use super::{Throttle, ThrottleHandle};
use crate::classify::DefaultClassify;
use crate::keyed::Global;
use crate::rand::Rng;

/// Applies [`Throttle`] to services. Every service it makes shares one window (or one
/// map of windows per key), reachable through [`handle`](Self::handle).
#[derive(Debug, Clone)]
pub struct ThrottleLayer<C = DefaultClassify, P = Global> {
    shared: Option<Arc<Shared>>,
    classify: C,
    partition: P,
}

impl ThrottleLayer {
    /// Throttles as `config` says, drawing from a source seeded with `config.seed`
    /// (or from entropy).
    pub fn new(config: ThrottleConfig) -> Self {
        Self::with_rng(config, Rng::from_seed(config.seed))
    }

    /// Throttles as `config` says, drawing from `rng` (`config.seed` is not used).
    pub fn with_rng(config: ThrottleConfig, rng: Rng) -> Self {
        Self {
            shared: Some(Arc::new(Shared::new(config, rng))),
            classify: DefaultClassify,
            partition: Global,
        }
    }

    /// A pass-through: calls go straight to the inner service, with no state, no
    /// clock read and no handle.
    pub fn disabled() -> Self {
        Self {
            shared: None,
            classify: DefaultClassify,
            partition: Global,
        }
    }

    /// [`new`](Self::new) for `Some(config)`, [`disabled`](Self::disabled) for
    /// `None`: the same type either way, as `Policy` needs.
    pub fn from_config(config: Option<ThrottleConfig>) -> Self {
        config.map_or_else(Self::disabled, Self::new)
    }
}

impl<C, P> ThrottleLayer<C, P> {
    /// Reads outcomes with `classify` instead of [`DefaultClassify`]: its
    /// [`overload`](crate::Classification::overload) answers (503, 429) are the
    /// refusals the throttle counts.
    pub fn with_classify<C2>(self, classify: C2) -> ThrottleLayer<C2, P> {
        ThrottleLayer {
            shared: self.shared,
            classify,
            partition: self.partition,
        }
    }

    /// Keeps one window per key (per host, say) chosen by `partition`; requests with
    /// no key share the unkeyed window. Keys beyond `config.keys.max_keys` share an
    /// overflow window.
    pub fn with_partition<P2>(self, partition: P2) -> ThrottleLayer<C, P2> {
        ThrottleLayer {
            shared: self.shared,
            classify: self.classify,
            partition,
        }
    }

    /// The handle to this layer's windows; `None` for a disabled layer.
    pub fn handle(&self) -> Option<ThrottleHandle> {
        self.shared.clone().map(ThrottleHandle::new)
    }

    /// Whether this layer throttles (it was built from a config).
    pub fn is_enabled(&self) -> bool {
        self.shared.is_some()
    }
}

impl<S, C: Clone, P: Clone> Layer<S> for ThrottleLayer<C, P> {
    type Service = Throttle<S, C, P>;

    fn layer(&self, inner: S) -> Self::Service {
        Throttle::from_parts(
            inner,
            self.shared.clone(),
            self.classify.clone(),
            self.partition.clone(),
        )
    }
}
