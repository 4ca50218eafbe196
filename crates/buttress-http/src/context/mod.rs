//! The middle tier: a request context scoped over the handler, so its outbound calls
//! inherit the inbound deadline and its answer carries the do-not-retry mark when one
//! of them gave up.
//!
//! A service that calls other services (a middle tier) should not make its callers
//! pass anything by hand:
//!
//! - its outbound calls should stop when the *inbound* deadline passes: nobody is
//!   waiting for the answer any more;
//! - when one of its outbound calls gave up after retries, its own answer should say
//!   so (the do-not-retry mark), or the tier above retries it and every tier below
//!   retries again: three tiers of three attempts make 27 calls to the bottom one.
//!
//! [`ContextScopeLayer`] (server side, just around the handler, inside the deadline
//! and timeout layers) scopes a [`RequestContext`] (the request's deadline and a
//! gave-up flag) as a tokio task-local over the handler's `call` and its future. In the
//! client stack, [`InheritContextLayer`](crate::deadline::InheritContextLayer)
//! (outermost) gives each outbound request the earlier of its own deadline and the
//! context's, and [`DeadlineToHeadersLayer`](crate::deadline::DeadlineToHeadersLayer)
//! does the same when it writes the deadline headers. When a retry layer gives up,
//! [`HttpClassify::mark_gave_up`](crate::classify::HttpClassify) sets the context's
//! flag (and `InheritContextLayer` sets it for any answer that comes back marked), and
//! `ContextScope` marks the handler's answer if it is not a success.
//!
//! The context lives in the task that runs the handler. Work spawned onto other tasks
//! does not see it unless carried: `RequestContext::current()` and
//! [`RequestContext::scope`] (clones share the flag).
//!
//! Use it in every service that both serves requests and makes calls through a
//! buttress client stack. A leaf service gains nothing from it.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use buttress::{Deadline, RequestMeta};
//! use buttress_http::context::{ContextScopeLayer, RequestContext};
//! use http::{Request, Response};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! let handler = service_fn(|_req: Request<()>| async {
//!     // Deep inside the handler, without being passed anything:
//!     let ctx = RequestContext::current().expect("in scope");
//!     assert!(ctx.deadline().is_some());
//!     ctx.mark_gave_up(); // what a retry layer does when it gives up
//!     Ok::<_, std::convert::Infallible>(Response::builder().status(503).body(()).unwrap())
//! });
//! let svc = ServiceBuilder::new().layer(ContextScopeLayer::new()).service(handler);
//!
//! let mut req = Request::new(());
//! req.set_deadline(Deadline::after(tokio::time::Instant::now(), Duration::from_secs(1)));
//! let res = svc.oneshot(req).await.unwrap();
//! assert_eq!(res.headers()["buttress-retry"], "gave-up");
//! # }
//! ```

pub mod future;
mod layer;
mod service;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use buttress::Deadline;
use tokio::task::futures::TaskLocalFuture;

pub use layer::ContextScopeLayer;
pub use service::{ContextScope, MarkGaveUp};

tokio::task_local! {
    static CONTEXT: RequestContext;
}

/// What a handler's outbound calls inherit from the request it serves: the inbound
/// deadline, and a flag a retry layer sets when it gives up.
///
/// Clones share the flag.
#[derive(Debug, Clone, Default)]
pub struct RequestContext {
    deadline: Option<Deadline>,
    gave_up: Arc<AtomicBool>,
}

impl RequestContext {
    /// A context with `deadline` and the flag clear.
    pub fn new(deadline: Option<Deadline>) -> Self {
        Self {
            deadline,
            gave_up: Arc::default(),
        }
    }

    /// The context in scope for the current task, if any.
    pub fn current() -> Option<Self> {
        CONTEXT.try_with(Self::clone).ok()
    }

    /// The deadline of the context in scope, if any (cheaper than
    /// [`current`](Self::current)).
    pub fn current_deadline() -> Option<Deadline> {
        CONTEXT.try_with(|c| c.deadline).ok().flatten()
    }

    /// Sets the gave-up flag of the context in scope; `false` if there is none.
    pub fn mark_current_gave_up() -> bool {
        CONTEXT.try_with(Self::mark_gave_up).is_ok()
    }

    /// The inbound deadline.
    pub fn deadline(&self) -> Option<Deadline> {
        self.deadline
    }

    /// Whether an outbound call of this request gave up after retries (or came back
    /// marked do-not-retry).
    pub fn gave_up(&self) -> bool {
        self.gave_up.load(Ordering::Relaxed)
    }

    /// Records that an outbound call gave up: the answer to this request will carry the
    /// do-not-retry mark unless it is a success.
    pub fn mark_gave_up(&self) {
        self.gave_up.store(true, Ordering::Relaxed);
    }

    /// Runs `f` with this context in scope (for work spawned onto another task).
    pub fn scope<F: Future>(self, f: F) -> TaskLocalFuture<RequestContext, F> {
        CONTEXT.scope(self, f)
    }

    /// Runs `f` with this context in scope, synchronously.
    pub fn sync_scope<R>(self, f: impl FnOnce() -> R) -> R {
        CONTEXT.sync_scope(self, f)
    }
}

#[cfg(test)]
mod tests;
