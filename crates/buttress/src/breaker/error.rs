//! Errors produced by [`Breaker`](super::Breaker), and the configuration error.

pub use super::config::InvalidBreakerConfig;
pub use crate::rejection::CircuitOpen;
