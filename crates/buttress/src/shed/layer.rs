use std::sync::Arc;

use tower_layer::Layer;

use super::config::ShedConfig;
use super::limit::{Algo, Limit};
use super::state::Shared;
use super::{Shed, ShedHandle};
use crate::classify::DefaultClassify;
use crate::hold::ReleaseAtHead;

/// Applies [`Shed`] to services. Every service it makes shares one limit, one queue
/// and one drain switch, reachable through [`handle`](Self::handle).
///
/// `H` says what happens to a call's permit when its response head is ready: by
/// default ([`ReleaseAtHead`]) it is released; see [`with_hold`](Self::with_hold).
#[derive(Debug, Clone)]
pub struct ShedLayer<C = DefaultClassify, H = ReleaseAtHead> {
    shared: Option<Arc<Shared>>,
    classify: C,
    hold: H,
}

impl ShedLayer {
    /// Sheds load as `config` says, with the algorithm it names.
    pub fn new(config: ShedConfig) -> Self {
        // The built-ins by value: the window-based ones are then fed without a lock.
        let limit = Algo::from_config(&config.limit);
        Self::with_algo(config, limit)
    }

    /// Sheds load as `config` says, but with `limit` as the algorithm (your own, or a
    /// built-in one tuned beyond what the config offers). `config.limit` is then
    /// unused until a [`reconfigure`](ShedHandle::reconfigure) changes it.
    pub fn with_limit(config: ShedConfig, limit: impl Limit + 'static) -> Self {
        Self::with_algo(config, Algo::Sampled(Box::new(limit)))
    }

    fn with_algo(config: ShedConfig, limit: Algo) -> Self {
        Self {
            shared: Some(Arc::new(Shared::new(config, limit))),
            classify: DefaultClassify,
            hold: ReleaseAtHead,
        }
    }

    /// A pass-through: calls go straight to the inner service, with no state, no
    /// clock read and no handle.
    pub fn disabled() -> Self {
        Self {
            shared: None,
            classify: DefaultClassify,
            hold: ReleaseAtHead,
        }
    }

    /// [`new`](Self::new) for `Some(config)`, [`disabled`](Self::disabled) for
    /// `None`: the same type either way, as `Policy` needs.
    pub fn from_config(config: Option<ShedConfig>) -> Self {
        config.map_or_else(Self::disabled, Self::new)
    }
}

impl<C, H> ShedLayer<C, H> {
    /// Reads outcomes with `classify` instead of [`DefaultClassify`]: its
    /// [`overload`](crate::Classification::overload) answers (a 503 or 429 from the
    /// handler) are drops for the limit algorithm.
    pub fn with_classify<C2>(self, classify: C2) -> ShedLayer<C2, H> {
        ShedLayer {
            shared: self.shared,
            classify,
            hold: self.hold,
        }
    }

    /// Hands each call's in-flight permit to `hold` when the response head is ready,
    /// instead of freeing it there: a [`HoldResponse`](crate::hold::HoldResponse)
    /// strategy may keep it with the response (the HTTP crate's `HoldUntilBodyEnd`
    /// keeps it until the body ends), so a streamed answer still counts as in flight,
    /// against the limit and for [`drained`](ShedHandle::drained). The round-trip
    /// sample is still taken at the head. A call that fails frees its permit at once.
    pub fn with_hold<H2>(self, hold: H2) -> ShedLayer<C, H2> {
        ShedLayer {
            shared: self.shared,
            classify: self.classify,
            hold,
        }
    }

    /// The handle to this layer's limit, queue and drain switch; `None` for a
    /// disabled layer.
    pub fn handle(&self) -> Option<ShedHandle> {
        self.shared.clone().map(ShedHandle::new)
    }

    /// Whether this layer sheds (it was built from a config).
    pub fn is_enabled(&self) -> bool {
        self.shared.is_some()
    }
}

impl<S, C: Clone, H: Clone> Layer<S> for ShedLayer<C, H> {
    type Service = Shed<S, C, H>;

    fn layer(&self, inner: S) -> Self::Service {
        Shed::from_parts(
            inner,
            self.shared.clone(),
            self.classify.clone(),
            self.hold.clone(),
        )
    }
}
