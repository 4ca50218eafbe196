//! How long a layer's guard lasts once the response head is ready.
//!
//! The bulkhead and the load shedder hold a permit while a call runs. For most
//! services the call is over when the response arrives; an HTTP answer, though, may
//! stream its body for seconds after its head, and the server stays busy (a worker, a
//! connection, memory) until the last byte. If the permit were released at the head,
//! the limit would admit more work than the server can carry.
//!
//! A [`HoldResponse`] strategy decides what happens to a guard when the head is
//! ready: the layer hands over its whole guard (dropping it, anywhere, at any time,
//! releases the permit exactly once), and the strategy either drops it at once
//! ([`ReleaseAtHead`], the default: no allocation, no cost) or keeps it with the
//! response so that it lasts as long as the response does. buttress itself knows
//! nothing of bodies; the HTTP crate's `HoldUntilBodyEnd` leaves the guard in the
//! response's extensions, and its `HoldBodyLayer` moves it into the body, which
//! drops it when the body ends (complete, failed or dropped unread).
//!
//! **Use it** for a server stack whose answers stream (`Policy::server_layer_parts`
//! takes one; the HTTP crate's server stack sets it). **Do not use it** on a client
//! stack: a client's permit guards the call, not the caller's reading of the answer,
//! and holding it would count the caller's own slowness against the limit. An error
//! has no response to keep a guard in: the permit is released at once.
//!
//! # Example
//!
//! A strategy that keeps the guard in the response itself, so the permit lasts as
//! long as the response; give it to a layer with `with_hold` (the bulkhead's and the
//! load shedder's layers have one).
//!
//! ```
//! use std::sync::Arc;
//! use buttress::hold::{HoldResponse, ReleaseAtHead};
//!
//! /// A response with room for guards.
//! #[derive(Default)]
//! struct Answer {
//!     guards: Vec<Box<dyn Send>>,
//! }
//!
//! #[derive(Debug, Clone, Copy)]
//! struct KeepInAnswer;
//!
//! impl HoldResponse<Answer> for KeepInAnswer {
//!     fn hold<G: Send + 'static>(&self, res: &mut Answer, guard: G) {
//!         res.guards.push(Box::new(guard));
//!     }
//! }
//!
//! // A stand-in for a permit: held while a clone of the `Arc` lives.
//! let permits = Arc::new(());
//! let mut answer = Answer::default();
//! KeepInAnswer.hold(&mut answer, permits.clone());
//! assert_eq!(Arc::strong_count(&permits), 2);
//! drop(answer);
//! assert_eq!(Arc::strong_count(&permits), 1);
//!
//! // The default releases at once.
//! ReleaseAtHead.hold(&mut Answer::default(), permits.clone());
//! assert_eq!(Arc::strong_count(&permits), 1);
//! ```

/// What a layer does with its guard (a permit) when the response head is ready.
///
/// The layer calls [`hold`](Self::hold) once per successful response, with a guard
/// whose drop releases what the call holds. An implementation may drop it at once,
/// keep it in `res`, or keep it anywhere else that lives as long as the response;
/// whatever it does, the guard is released exactly once, when it is dropped.
pub trait HoldResponse<Res> {
    /// Takes `guard` for the response `res`.
    fn hold<G: Send + 'static>(&self, res: &mut Res, guard: G);

    /// Whether [`hold`](Self::hold) always drops its guard at once. A hint only: a
    /// layer may then skip work it would do for a held guard (the load shedder frees
    /// its permit and records its round trip in one step). It is `false` unless
    /// overridden; a wrong answer either way costs a little time, never correctness.
    #[inline]
    fn releases_at_head(&self) -> bool {
        false
    }
}

/// The default strategy: drops the guard at once, so the permit is released when the
/// response head is ready. Costs nothing and allocates nothing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct ReleaseAtHead;

impl<Res> HoldResponse<Res> for ReleaseAtHead {
    #[inline]
    fn hold<G: Send + 'static>(&self, _res: &mut Res, guard: G) {
        drop(guard);
    }

    #[inline]
    fn releases_at_head(&self) -> bool {
        true
    }
}

/// A strategy that keeps guards in the response, for the layers' tests.
#[cfg(all(test, any(feature = "bulkhead", feature = "shed")))]
pub(crate) mod testing {
    use super::HoldResponse;

    /// A response that keeps every guard handed to it until it is dropped.
    #[derive(Default)]
    pub(crate) struct Kept {
        pub(crate) guards: Vec<Box<dyn Send>>,
    }

    #[derive(Debug, Clone, Copy)]
    pub(crate) struct KeepInResponse;

    impl HoldResponse<Kept> for KeepInResponse {
        fn hold<G: Send + 'static>(&self, res: &mut Kept, guard: G) {
            res.guards.push(Box::new(guard));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    struct Counted(Arc<AtomicUsize>);

    impl Drop for Counted {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn release_at_head_drops_the_guard_at_once() {
        let dropped = Arc::new(AtomicUsize::new(0));
        let mut res = ();
        ReleaseAtHead.hold(&mut res, Counted(dropped.clone()));
        assert_eq!(dropped.load(Ordering::SeqCst), 1);
        assert!(HoldResponse::<()>::releases_at_head(&ReleaseAtHead));
    }
}
