use std::time::Duration;

use tower_layer::Layer;

use super::Timeout;
use crate::rejection::Scope;

/// Applies a [`Timeout`] to services.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeoutLayer {
    budget: Option<Duration>,
    scope: Scope,
    propagate: bool,
}

impl TimeoutLayer {
    /// A timeout of `scope` with `budget`, or a pass-through (honouring a carried
    /// deadline only) when `budget` is `None`.
    pub const fn new(scope: Scope, budget: Option<Duration>) -> Self {
        Self {
            budget,
            scope,
            propagate: true,
        }
    }

    /// A total timeout: across every attempt of a call.
    pub const fn total(budget: Duration) -> Self {
        Self::new(Scope::Total, Some(budget))
    }

    /// An attempt timeout: for one attempt, below retry.
    pub const fn attempt(budget: Duration) -> Self {
        Self::new(Scope::Attempt, Some(budget))
    }

    /// Whether the enforced deadline is written onto the request for inner layers
    /// (default `true`).
    #[must_use]
    pub const fn propagate(mut self, propagate: bool) -> Self {
        self.propagate = propagate;
        self
    }
}

impl<S> Layer<S> for TimeoutLayer {
    type Service = Timeout<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Timeout::new(inner, self.scope, self.budget).propagate(self.propagate)
    }
}
