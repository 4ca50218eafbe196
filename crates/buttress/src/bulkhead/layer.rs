use std::sync::Arc;

use tower_layer::Layer;

use super::config::BulkheadConfig;
use super::handle::BulkheadHandle;
use super::service::Bulkhead;
use super::state::Shared;
use crate::hold::ReleaseAtHead;
use crate::keyed::Global;

/// Applies a [`Bulkhead`] to services. Every service it makes shares one state (one
/// set of permits, queues and partitions), made here, in [`new`](Self::new).
///
/// `H` says what happens to a call's permit when its response head is ready: by
/// default ([`ReleaseAtHead`]) it is released; see [`with_hold`](Self::with_hold).
#[derive(Debug, Clone)]
pub struct BulkheadLayer<P = Global, H = ReleaseAtHead> {
    shared: Option<Arc<Shared>>,
    partition: P,
    hold: H,
}

impl BulkheadLayer<Global> {
    /// A bulkhead with `config`, every request in one partition.
    pub fn new(config: BulkheadConfig) -> Self {
        Self {
            shared: Some(Arc::new(Shared::new(config))),
            partition: Global,
            hold: ReleaseAtHead,
        }
    }

    /// A pass-through of the same type: no limit at all, no state, no atomics.
    pub const fn disabled() -> Self {
        Self {
            shared: None,
            partition: Global,
            hold: ReleaseAtHead,
        }
    }

    /// A bulkhead with `config`, or a [pass-through](Self::disabled) for `None`.
    pub fn from_config(config: Option<BulkheadConfig>) -> Self {
        match config {
            Some(config) => Self::new(config),
            None => Self::disabled(),
        }
    }
}

impl<P, H> BulkheadLayer<P, H> {
    /// Gives each key `partition` picks its own partition, with its own limits (the
    /// same settings for all): one tenant or route cannot starve another. Requests
    /// without a key share the unkeyed partition; once the map holds `keys.max_keys`
    /// partitions, new keys share the overflow partition.
    ///
    /// A keyed call reads the clock once and takes the map's lock to find its
    /// partition; unkeyed calls do neither.
    ///
    /// The state stays the same (a handle taken before still sees it). One layer
    /// serves one key type: a request whose key is of another type is put in the
    /// overflow partition.
    pub fn with_partition<P2>(self, partition: P2) -> BulkheadLayer<P2, H> {
        BulkheadLayer {
            shared: self.shared,
            partition,
            hold: self.hold,
        }
    }

    /// Hands each call's permit to `hold` when the response head is ready, instead of
    /// releasing it there: a [`HoldResponse`](crate::hold::HoldResponse) strategy may
    /// keep it with the response (the HTTP crate's `HoldUntilBodyEnd` keeps it until
    /// the body ends), so a streamed answer still counts against the limit. A call
    /// that fails releases its permit at once.
    ///
    /// The state stays the same (a handle taken before still sees it).
    pub fn with_hold<H2>(self, hold: H2) -> BulkheadLayer<P, H2> {
        BulkheadLayer {
            shared: self.shared,
            partition: self.partition,
            hold,
        }
    }

    /// A handle on the layer's state.
    pub fn handle(&self) -> BulkheadHandle {
        BulkheadHandle::new(self.shared.clone())
    }

    /// Whether this layer limits anything (`false` once [disabled](Self::disabled)).
    pub fn is_enabled(&self) -> bool {
        self.shared.is_some()
    }
}

impl<S, P: Clone, H: Clone> Layer<S> for BulkheadLayer<P, H> {
    type Service = Bulkhead<S, P, H>;

    fn layer(&self, inner: S) -> Self::Service {
        Bulkhead::from_parts(
            inner,
            self.shared.clone(),
            self.partition.clone(),
            self.hold.clone(),
        )
    }
}
