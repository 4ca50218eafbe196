//! Errors produced by [`Throttle`](super::Throttle): [`Overloaded`] with
//! [`OverloadReason::Throttle`] and the configured retry delay, for a call refused
//! locally without being sent.

pub use crate::rejection::{OverloadReason, Overloaded};
