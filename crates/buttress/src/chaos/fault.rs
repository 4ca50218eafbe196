use std::fmt;

use super::error::Injected;
use crate::BoxError;

/// What a call that draws an error gets instead of calling the inner service.
///
/// The default, [`InjectedFault`], fails with [`Injected`]. To inject what your
/// callee really answers when it is in trouble (a 503, a `RESOURCE_EXHAUSTED`, your
/// client's own connection error), pass a [`fault_fn`] to
/// [`ChaosLayer::with_fault`](super::ChaosLayer::with_fault).
pub trait Fault<Res> {
    /// The result of one injected fault.
    fn fault(&self) -> Result<Res, BoxError>;
}

/// The default fault: fails with [`Injected`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InjectedFault;

impl<Res> Fault<Res> for InjectedFault {
    fn fault(&self) -> Result<Res, BoxError> {
        Err(Injected::new().into())
    }
}

/// A [`Fault`] from a closure: `Ok(response)` injects an answer, `Err(e)` an error.
///
/// ```
/// use buttress::chaos::{fault_fn, Fault};
///
/// let unavailable = fault_fn(|| {
///     Ok(http::Response::builder().status(503).body(String::new())?)
/// });
/// let response = unavailable.fault().unwrap();
/// assert_eq!(response.status(), 503);
/// ```
pub fn fault_fn<F, Res>(f: F) -> FaultFn<F>
where
    F: Fn() -> Result<Res, BoxError>,
{
    FaultFn { f }
}

/// A [`Fault`] built from a closure; see [`fault_fn`].
#[derive(Clone, Copy)]
pub struct FaultFn<F> {
    f: F,
}

impl<F> fmt::Debug for FaultFn<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultFn").finish_non_exhaustive()
    }
}

impl<F, Res> Fault<Res> for FaultFn<F>
where
    F: Fn() -> Result<Res, BoxError>,
{
    fn fault(&self) -> Result<Res, BoxError> {
        (self.f)()
    }
}
