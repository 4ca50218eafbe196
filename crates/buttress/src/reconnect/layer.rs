use std::sync::Arc;

use tower_layer::Layer;
use tower_service::Service;

use super::Reconnect;
use super::config::ReconnectConfig;
use super::state::{ReconnectHandle, Shared};
use crate::budget::Budget;
use crate::rand::Rng;

/// Wraps a connector (a `Service<Target>` whose responses are connections) in a
/// [`Reconnect`] to `target`.
///
/// Every service it makes shares the layer's settings, budget, random source and
/// [`ReconnectHandle`]; each keeps its own connection.
#[derive(Debug, Clone)]
pub struct ReconnectLayer<Target> {
    target: Target,
    shared: Arc<Shared>,
}

impl<Target> ReconnectLayer<Target> {
    /// Reconnects to `target` as `config` says.
    pub fn new(config: ReconnectConfig, target: Target) -> Self {
        Self::from_config(Some(config), target)
    }

    /// Reconnects as `config` says, or, with `None`, as tower's `Reconnect` does:
    /// at once, with no backoff, handing each connect error to the call waiting for
    /// the connection. Both are the same type, so a policy builds one either way.
    pub fn from_config(config: Option<ReconnectConfig>, target: Target) -> Self {
        Self {
            target,
            shared: Arc::new(Shared::new(config)),
        }
    }

    /// The pass-through form: see [`from_config`](Self::from_config).
    pub fn disabled(target: Target) -> Self {
        Self::from_config(None, target)
    }

    /// Draws backoff jitter from `rng` (by default a generator seeded from
    /// entropy): one seeded source shared by a whole simulation makes it
    /// reproducible.
    #[must_use]
    pub fn with_rng(self, rng: Rng) -> Self {
        self.shared.set_rng(rng);
        self
    }

    /// Takes reconnection attempts from `budget`, shared with other layers (a retry
    /// layer's, typically), instead of the budget of the config.
    #[must_use]
    pub fn with_budget(self, budget: Budget) -> Self {
        self.shared.set_budget(budget);
        self
    }

    /// The handle: state of the connections, and reconfiguration.
    pub fn handle(&self) -> ReconnectHandle {
        ReconnectHandle {
            shared: self.shared.clone(),
        }
    }
}

impl<M, Target> Layer<M> for ReconnectLayer<Target>
where
    M: Service<Target>,
    Target: Clone,
{
    type Service = Reconnect<M, Target>;

    fn layer(&self, mk: M) -> Self::Service {
        Reconnect::with_shared(mk, self.target.clone(), self.shared.clone())
    }
}
