//! Errors produced by [`Timeout`](super::Timeout).

pub use crate::rejection::{Cause, Elapsed, Scope};
