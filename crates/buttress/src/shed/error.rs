//! Errors produced by [`Shed`](super::Shed): [`Overloaded`] with
//! [`OverloadReason::Shed`] (no room under the limit or in the queue, or the call
//! left the queue unserved) or [`OverloadReason::Drain`] (the service is draining),
//! each with the configured retry delay.

pub use crate::rejection::{OverloadReason, Overloaded};
