use std::sync::Arc;

use tower_layer::Layer;

use super::Chaos;
use super::config::ChaosConfig;
use super::fault::InjectedFault;
use super::state::{ChaosHandle, Shared};
use crate::rand::Rng;

/// Applies [`Chaos`] to services. Every service it makes shares one state: one
/// random stream, one set of counts, one [`ChaosHandle`].
#[derive(Debug, Clone)]
pub struct ChaosLayer<F = InjectedFault> {
    shared: Arc<Shared>,
    fault: F,
}

impl ChaosLayer {
    /// Injects faults as `config` says, from a random source seeded with
    /// `config.seed` (or from entropy).
    pub fn new(config: ChaosConfig) -> Self {
        let rng = Rng::from_seed(config.seed);
        Self::with_rng(config, rng)
    }

    /// Injects faults as `config` says, drawing from `rng` (`config.seed` is not
    /// used): one seeded source shared by a whole simulation makes all of it
    /// reproducible.
    pub fn with_rng(config: ChaosConfig, rng: Rng) -> Self {
        Self {
            shared: Arc::new(Shared::new(config, rng)),
            fault: InjectedFault,
        }
    }

    /// A pass-through: injects nothing until its handle is given rates and enabled.
    /// Calls through it cost one atomic load.
    pub fn disabled() -> Self {
        Self::new(ChaosConfig {
            enabled: false,
            ..ChaosConfig::default()
        })
    }

    /// [`new`](Self::new) for `Some(config)`, [`disabled`](Self::disabled) for
    /// `None`: the same type either way, as a `Policy` needs.
    pub fn from_config(config: Option<ChaosConfig>) -> Self {
        config.map_or_else(Self::disabled, Self::new)
    }
}

impl<F> ChaosLayer<F> {
    /// Answers injected errors with `fault` (a response or an error of your own,
    /// see [`fault_fn`](super::fault_fn)) instead of
    /// [`Injected`](super::error::Injected). The state and handle stay the same.
    pub fn with_fault<F2>(self, fault: F2) -> ChaosLayer<F2> {
        ChaosLayer {
            shared: self.shared,
            fault,
        }
    }

    /// The handle to this layer's fault injection.
    pub fn handle(&self) -> ChaosHandle {
        ChaosHandle::new(self.shared.clone())
    }
}

impl<S, F: Clone> Layer<S> for ChaosLayer<F> {
    type Service = Chaos<S, F>;

    fn layer(&self, inner: S) -> Self::Service {
        Chaos::from_parts(inner, self.shared.clone(), self.fault.clone())
    }
}
