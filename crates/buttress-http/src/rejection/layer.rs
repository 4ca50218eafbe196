use tower_layer::Layer;

use super::config::RejectionConfig;
use super::handler::DefaultHandler;
use super::service::RejectionResponse;

/// Applies [`RejectionResponse`] to services; see the [module docs](super).
#[derive(Debug, Clone, Copy, Default)]
pub struct RejectionResponseLayer<H = DefaultHandler> {
    config: RejectionConfig,
    handler: H,
}

impl RejectionResponseLayer {
    /// The default answers, and [`DefaultHandler`] for other errors.
    pub fn new() -> Self {
        Self::default()
    }
}

impl<H> RejectionResponseLayer<H> {
    /// Uses `config`.
    #[must_use]
    pub fn with_config(mut self, config: RejectionConfig) -> Self {
        self.config = config;
        self
    }

    /// Answers errors that are not rejections with `handler`.
    pub fn with_handler<H2>(self, handler: H2) -> RejectionResponseLayer<H2> {
        RejectionResponseLayer {
            config: self.config,
            handler,
        }
    }

    /// The configuration.
    pub const fn config(&self) -> &RejectionConfig {
        &self.config
    }
}

impl<S, H: Clone> Layer<S> for RejectionResponseLayer<H> {
    type Service = RejectionResponse<S, H>;

    fn layer(&self, inner: S) -> Self::Service {
        RejectionResponse::new(inner, self.config, self.handler.clone())
    }
}
