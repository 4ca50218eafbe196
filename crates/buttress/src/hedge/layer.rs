use std::sync::Arc;

use tower_layer::Layer;

use super::Hedge;
use super::state::{HedgeConfig, HedgeHandle, Shared, own_budget};
use crate::budget::Budget;
use crate::classify::DefaultClassify;
use crate::replay::CloneReplay;

/// Applies [`Hedge`] to services; every service it makes shares one state (latency
/// histogram, budget, settings).
///
/// A layer built from `None` is a pass-through of the same type.
#[derive(Debug, Clone)]
pub struct HedgeLayer<C = DefaultClassify, R = CloneReplay> {
    shared: Option<Arc<Shared>>,
    classify: C,
    replay: R,
}

impl HedgeLayer {
    /// Hedges with `config` and a budget of its own (the default
    /// [`BudgetConfig`](crate::budget::BudgetConfig)), into which every call deposits.
    pub fn new(config: HedgeConfig) -> Self {
        Self::from_config(Some(config))
    }

    /// Hedges with `config`, or passes calls through untouched when `None`.
    pub fn from_config(config: Option<HedgeConfig>) -> Self {
        Self::build(config, None)
    }

    /// Like [`from_config`](Self::from_config), labelling the layer's metrics with
    /// `hedge="<name>"`.
    pub fn from_config_named(config: Option<HedgeConfig>, name: &str) -> Self {
        Self::build(config, Some(name.to_owned()))
    }

    /// A pass-through layer.
    pub fn disabled() -> Self {
        Self::from_config(None)
    }

    fn build(config: Option<HedgeConfig>, name: Option<String>) -> Self {
        Self {
            shared: config.map(|c| Arc::new(Shared::new(c, own_budget(), true, name))),
            classify: DefaultClassify,
            replay: CloneReplay,
        }
    }
}

impl<C, R> HedgeLayer<C, R> {
    /// Classifies copies' outcomes with `classify`: the first copy classified a
    /// success wins; only requests it calls safe are hedged.
    pub fn with_classify<C2>(self, classify: C2) -> HedgeLayer<C2, R> {
        HedgeLayer {
            shared: self.shared,
            classify,
            replay: self.replay,
        }
    }

    /// Makes copies with `replay`.
    pub fn with_replay<R2>(self, replay: R2) -> HedgeLayer<C, R2> {
        HedgeLayer {
            shared: self.shared,
            classify: self.classify,
            replay,
        }
    }

    /// Draws extra copies from `budget`, which a retry layer above fills
    /// (`RetryLayer::budget`): this layer then only withdraws, so an original request
    /// is counted once, and retries and hedges together stay within one budget.
    ///
    /// Call it while building the stack: it replaces the layer's state, so a handle
    /// taken before keeps the old one.
    #[must_use]
    pub fn with_budget(mut self, budget: Budget) -> Self {
        if let Some(old) = &self.shared {
            self.shared = Some(Arc::new(Shared::new(
                old.config(),
                budget,
                false,
                old.name.clone(),
            )));
        }
        self
    }

    /// The budget the layer draws on; `None` for a pass-through layer.
    pub fn budget(&self) -> Option<Budget> {
        self.shared.as_ref().map(|s| s.budget.clone())
    }

    /// A handle to the layer's state; `None` for a pass-through layer.
    pub fn handle(&self) -> Option<HedgeHandle> {
        self.shared
            .as_ref()
            .map(|s| HedgeHandle { shared: s.clone() })
    }

    /// Whether the layer was built with a config.
    pub fn is_enabled(&self) -> bool {
        self.shared.is_some()
    }
}

impl<S, C, R> Layer<S> for HedgeLayer<C, R>
where
    C: Clone,
    R: Clone,
{
    type Service = Hedge<S, C, R>;

    fn layer(&self, inner: S) -> Self::Service {
        Hedge::from_parts(
            inner,
            self.shared.clone(),
            self.classify.clone(),
            self.replay.clone(),
        )
    }
}
