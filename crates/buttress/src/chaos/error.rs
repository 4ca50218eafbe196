//! Errors produced by [`Chaos`](super::Chaos).
//!
//! Both look like upstream failures on purpose: nothing marks them as buttress
//! rejections, so [`Classification::from_error`](crate::Classification::from_error)
//! counts them as failures, retryable if the request is safe to repeat, just as it
//! would a real reset connection.

use std::error::Error;
use std::fmt;

/// The default injected fault: the call was answered with an error and the inner
/// service was not called.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Injected;

impl Injected {
    /// An injected fault.
    pub const fn new() -> Self {
        Self
    }
}

impl fmt::Display for Injected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("injected fault")
    }
}

impl Error for Injected {}

/// An injected abort: the request was sent to the inner service, which may have
/// done the work, and the call was cut off before its answer came back (as when a
/// connection is reset mid-request).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Aborted;

impl Aborted {
    /// An injected abort.
    pub const fn new() -> Self {
        Self
    }
}

impl fmt::Display for Aborted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("injected abort: the call was cut off mid-request")
    }
}

impl Error for Aborted {}
