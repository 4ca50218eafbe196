use tower_layer::Layer;

use super::ContextScope;

/// Applies [`ContextScope`] to services; see the [module docs](super).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContextScopeLayer {
    enabled: bool,
}

impl Default for ContextScopeLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl ContextScopeLayer {
    /// Scopes a request context over every call.
    pub const fn new() -> Self {
        Self { enabled: true }
    }

    /// A pass-through of the same type: no context, no marks.
    pub const fn disabled() -> Self {
        Self { enabled: false }
    }
}

impl<S> Layer<S> for ContextScopeLayer {
    type Service = ContextScope<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ContextScope::new(inner, self.enabled)
    }
}
