use std::sync::Arc;

use tower_layer::Layer;

use super::config::{InboundDeadlineConfig, OutboundDeadlineConfig};
use super::service::{DeadlineFromHeaders, DeadlineToHeaders, InheritContext};

/// Applies [`DeadlineFromHeaders`] to services (server side); see the
/// [module docs](super).
#[derive(Debug, Clone)]
pub struct DeadlineFromHeadersLayer {
    config: Option<Arc<InboundDeadlineConfig>>,
}

impl DeadlineFromHeadersLayer {
    /// Reads deadlines as `config` says.
    pub fn new(config: InboundDeadlineConfig) -> Self {
        Self {
            config: Some(Arc::new(config)),
        }
    }

    /// Reads deadlines as `config` says, or passes requests through when `None`.
    pub fn from_config(config: Option<InboundDeadlineConfig>) -> Self {
        Self {
            config: config.map(Arc::new),
        }
    }

    /// A pass-through of the same type.
    pub const fn disabled() -> Self {
        Self { config: None }
    }
}

impl Default for DeadlineFromHeadersLayer {
    fn default() -> Self {
        Self::new(InboundDeadlineConfig::default())
    }
}

impl<S> Layer<S> for DeadlineFromHeadersLayer {
    type Service = DeadlineFromHeaders<S>;

    fn layer(&self, inner: S) -> Self::Service {
        DeadlineFromHeaders::new(inner, self.config.clone())
    }
}

/// Applies [`DeadlineToHeaders`] to services (client side, just above the transport);
/// see the [module docs](super).
#[derive(Debug, Clone)]
pub struct DeadlineToHeadersLayer {
    config: Option<Arc<OutboundDeadlineConfig>>,
}

impl DeadlineToHeadersLayer {
    /// Writes deadlines and attempt numbers as `config` says.
    pub fn new(config: OutboundDeadlineConfig) -> Self {
        Self {
            config: Some(Arc::new(config)),
        }
    }

    /// Writes as `config` says, or passes requests through when `None`.
    pub fn from_config(config: Option<OutboundDeadlineConfig>) -> Self {
        Self {
            config: config.map(Arc::new),
        }
    }

    /// A pass-through of the same type.
    pub const fn disabled() -> Self {
        Self { config: None }
    }
}

impl Default for DeadlineToHeadersLayer {
    fn default() -> Self {
        Self::new(OutboundDeadlineConfig::default())
    }
}

impl<S> Layer<S> for DeadlineToHeadersLayer {
    type Service = DeadlineToHeaders<S>;

    fn layer(&self, inner: S) -> Self::Service {
        DeadlineToHeaders::new(inner, self.config.clone())
    }
}

/// Applies [`InheritContext`] to services (client side, outermost); see the
/// [module docs](super).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InheritContextLayer {
    enabled: bool,
}

impl InheritContextLayer {
    /// Inherits the request context's deadline and reports marked answers to it.
    pub const fn new() -> Self {
        Self { enabled: true }
    }

    /// A pass-through of the same type.
    pub const fn disabled() -> Self {
        Self { enabled: false }
    }
}

impl Default for InheritContextLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl<S> Layer<S> for InheritContextLayer {
    type Service = InheritContext<S>;

    fn layer(&self, inner: S) -> Self::Service {
        InheritContext::new(inner, self.enabled)
    }
}
