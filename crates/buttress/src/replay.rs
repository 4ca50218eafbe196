//! Replay: how retry and hedge get another copy of a request.
//!
//! A strategy value rather than a trait on the request type: the orphan rule would
//! stop the HTTP crate (or you) implementing a buttress trait for
//! `http::Request<SomeoneElsesBody>`. Retry and hedge take a [`Replay`] strategy and
//! ask it for a copy before each extra attempt; `None` means the request cannot be
//! replayed (a body past its buffering cap, say), and the call is sent once.
//!
//! - [`CloneReplay`] clones `Clone` requests.
//! - [`NoReplay`] never replays: retries and hedges are off for that stack.
//! - [`replay_fn`] wraps a closure.
//! - The HTTP crate's strategy replays requests whose body it buffered.
//!
//! # Example
//!
//! ```
//! use buttress::replay::{CloneReplay, NoReplay, Replay, replay_fn};
//!
//! assert_eq!(CloneReplay.replay(&"GET /".to_string()), Some("GET /".to_string()));
//! assert_eq!(Replay::<String>::replay(&NoReplay, &"POST /".to_string()), None);
//! let small_only = replay_fn(|body: &Vec<u8>| (body.len() <= 4).then(|| body.clone()));
//! assert!(small_only.replay(&vec![1, 2, 3]).is_some());
//! assert!(small_only.replay(&vec![0; 64]).is_none());
//! ```

use std::fmt;

/// Makes a copy of a request for another attempt.
pub trait Replay<Req> {
    /// A copy of `req` to send again, or `None` if it cannot be replayed.
    fn replay(&self, req: &Req) -> Option<Req>;
}

/// Replays `Clone` requests by cloning them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CloneReplay;

impl<Req: Clone> Replay<Req> for CloneReplay {
    fn replay(&self, req: &Req) -> Option<Req> {
        Some(req.clone())
    }
}

/// Never replays: every request is sent once.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NoReplay;

impl<Req> Replay<Req> for NoReplay {
    fn replay(&self, _: &Req) -> Option<Req> {
        None
    }
}

/// A replay strategy from a closure.
pub fn replay_fn<F>(f: F) -> ReplayFn<F> {
    ReplayFn { f }
}

/// A [`Replay`] strategy built from a closure; see [`replay_fn`].
#[derive(Clone, Copy)]
pub struct ReplayFn<F> {
    f: F,
}

impl<F> fmt::Debug for ReplayFn<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReplayFn").finish_non_exhaustive()
    }
}

impl<Req, F> Replay<Req> for ReplayFn<F>
where
    F: Fn(&Req) -> Option<Req>,
{
    fn replay(&self, req: &Req) -> Option<Req> {
        (self.f)(req)
    }
}
