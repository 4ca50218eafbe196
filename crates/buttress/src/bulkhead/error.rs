//! Errors produced by [`Bulkhead`](super::Bulkhead).
//!
//! [`BulkheadFull`] when every permit and queue place is taken
//! ([`BulkheadFull::full`]) or a queued call waited `max_wait`
//! ([`BulkheadFull::queue_timeout`]); [`Elapsed`] (total scope, deadline cause) when a
//! queued call's carried deadline passed before it got a permit.

pub use crate::rejection::{BulkheadFull, Cause, Elapsed, Scope};
