use std::sync::Arc;
use std::time::Duration;

use tower_layer::Layer;

use super::state::{RetryConfig, RetryHandle, Shared, budget_for};
use super::{NoAlternatives, Retry};
use crate::budget::Budget;
use crate::classify::DefaultClassify;
use crate::rand::Rng;
use crate::replay::CloneReplay;

/// Applies [`Retry`] to services; every service it makes shares one state (budget,
/// attempt-time estimate, settings).
///
/// - `C` classifies outcomes ([`DefaultClassify`]: errors are retryable failures);
/// - `R` replays requests ([`CloneReplay`]);
/// - `A` says whether another endpoint can take a retry at once ([`NoAlternatives`]).
///
/// A layer built from `None` is a pass-through of the same type.
#[derive(Debug, Clone)]
pub struct RetryLayer<C = DefaultClassify, R = CloneReplay, A = NoAlternatives> {
    shared: Option<Arc<Shared>>,
    classify: C,
    replay: R,
    alternatives: A,
}

impl RetryLayer {
    /// Retries with `config`, creating the shared state now.
    pub fn new(config: RetryConfig) -> Self {
        Self::from_config(Some(config))
    }

    /// Retries with `config`, or passes calls through untouched when `None`.
    pub fn from_config(config: Option<RetryConfig>) -> Self {
        Self::build(config, None)
    }

    /// Like [`from_config`](Self::from_config), labelling the layer's metrics with
    /// `retry="<name>"` (for example the policy's name).
    pub fn from_config_named(config: Option<RetryConfig>, name: &str) -> Self {
        Self::build(config, Some(name))
    }

    /// A pass-through layer.
    pub fn disabled() -> Self {
        Self::from_config(None)
    }

    fn build(config: Option<RetryConfig>, name: Option<&str>) -> Self {
        Self {
            shared: config.map(|c| Arc::new(Shared::new(c, budget_for(&c), name))),
            classify: DefaultClassify,
            replay: CloneReplay,
            alternatives: NoAlternatives,
        }
    }
}

impl<C, R, A> RetryLayer<C, R, A> {
    /// Classifies outcomes with `classify` (which also marks the responses the layer
    /// gives up on; see [`Classify::mark_gave_up`](crate::Classify::mark_gave_up)).
    pub fn with_classify<C2>(self, classify: C2) -> RetryLayer<C2, R, A> {
        RetryLayer {
            shared: self.shared,
            classify,
            replay: self.replay,
            alternatives: self.alternatives,
        }
    }

    /// Replays requests with `replay`.
    pub fn with_replay<R2>(self, replay: R2) -> RetryLayer<C, R2, A> {
        RetryLayer {
            shared: self.shared,
            classify: self.classify,
            replay,
            alternatives: self.alternatives,
        }
    }

    /// Asks `alternatives` whether another endpoint can take a retry without waiting
    /// for a delay hint.
    pub fn with_alternatives<A2>(self, alternatives: A2) -> RetryLayer<C, R, A2> {
        RetryLayer {
            shared: self.shared,
            classify: self.classify,
            replay: self.replay,
            alternatives,
        }
    }

    /// Draws backoff jitter from `rng` (seed it for a deterministic simulation).
    #[must_use]
    pub fn with_rng(self, rng: Rng) -> Self {
        if let Some(s) = &self.shared {
            s.set_rng(rng);
        }
        self
    }

    /// The attempt timeout below this layer, if any: it caps the expected attempt
    /// time used to decide whether another attempt can finish before the deadline.
    #[must_use]
    pub fn with_attempt_timeout(self, timeout: Option<Duration>) -> Self {
        if let Some(s) = &self.shared {
            s.set_attempt_timeout(timeout);
        }
        self
    }

    /// The layer's retry budget, for a hedge layer below it to draw on
    /// (`HedgeLayer::with_budget`, `hedge` feature); `None` for a pass-through layer.
    pub fn budget(&self) -> Option<Budget> {
        self.shared.as_ref().map(|s| s.budget.clone())
    }

    /// A handle to the layer's state; `None` for a pass-through layer.
    pub fn handle(&self) -> Option<RetryHandle> {
        self.shared
            .as_ref()
            .map(|s| RetryHandle { shared: s.clone() })
    }

    /// Whether the layer was built with a config (it may still send every request
    /// once, with `max_attempts` 1).
    pub fn is_enabled(&self) -> bool {
        self.shared.is_some()
    }
}

impl<S, C, R, A> Layer<S> for RetryLayer<C, R, A>
where
    C: Clone,
    R: Clone,
    A: Clone,
{
    type Service = Retry<S, C, R, A>;

    fn layer(&self, inner: S) -> Self::Service {
        Retry::from_parts(
            inner,
            self.shared.clone(),
            self.classify.clone(),
            self.replay.clone(),
            self.alternatives.clone(),
        )
    }
}
