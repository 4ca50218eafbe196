//! Errors produced by [`Retry`](super::Retry).
//!
//! Retry makes no errors of its own: the caller gets the last real answer. When the
//! layer gives up on a retryable error (attempts, budget or deadline exhausted, a
//! delay hint above the cap, the inner service not ready for a retry), the error is
//! wrapped in [`DoNotRetry`], whose source is the original error, so that retry
//! layers above do not retry it again. [`is_marked_do_not_retry`] finds the mark
//! anywhere in a source chain.

pub use crate::rejection::{DoNotRetry, is_marked_do_not_retry};
