//! Response bodies: holding a guard until the body ends, running an end-of-body hook,
//! and the body of the answers buttress writes itself.
//!
//! An HTTP answer is not over when its head arrives: the body may stream for seconds
//! (a report, a feed, a large download), and the server is busy until the last byte.
//! [`GuardBody`] wraps a response body and holds a guard ([`OnBodyEnd`]) until the body
//! ends: end of stream (with the trailers), an error, or the body dropped early. Use it
//! for anything that must last as long as the answer does:
//!
//! - **concurrency permits** (server side): a streamed body still occupies the server
//!   (a worker, a connection, memory), so releasing the permit at the head lets the
//!   concurrency limit admit more work than it thinks;
//! - **round-trip samples**: an adaptive limit learns from how long a call really
//!   takes; a sample taken at the head of a slow stream says the server is fast when it
//!   is not;
//! - **the gRPC end-of-body hook**: a streamed gRPC answer's status is in its trailers;
//!   [`ClassifyAtEnd`] runs a [`ClassifyEos`](crate::classify::ClassifyEos) classifier
//!   on them and hands the [`Classification`](buttress::Classification) to a callback
//!   (a breaker recording the real outcome).
//!
//! Client-side retry, hedge and timeout decide at the head and do not need it; a
//! breaker needs it only for streamed gRPC. A guard that is only a value to drop goes
//! in [`Hold`]; a callback in [`on_end_fn`]; several in a tuple.
//!
//! Layers whose response type must not change (buttress's own, which know nothing of
//! HTTP) can leave guards in the response's extensions with [`HeldGuards::hold`];
//! [`HoldBodyLayer`], outermost, moves them into the body. buttress's own shed and
//! bulkhead layers do so through the [`HoldUntilBodyEnd`] strategy
//! ([`buttress::hold`]): in the stack of
//! [`HttpPolicy::server_layer`](crate::HttpPolicy::server_layer) their permits are
//! held until the body ends, so a streamed answer still counts against their limits
//! and the drain waits for it (the shed's round-trip sample is still taken at the
//! head). The [guide](crate::guide) has the whole list.
//!
//! [`ResponseBody`] is the body of answers that are either the inner service's or one
//! buttress wrote (a rejection), so a service stays one type.
//!
//! # Example
//!
//! ```
//! use std::sync::{Arc, Mutex};
//! use buttress_http::body::{BodyEnd, GuardBody, on_end_fn};
//! use http_body_util::{BodyExt, Full};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let ended = Arc::new(Mutex::new(None));
//! let seen = ended.clone();
//! let body = GuardBody::new(
//!     Full::new(bytes::Bytes::from_static(b"hello")),
//!     on_end_fn(move |end: BodyEnd<'_>| *seen.lock().unwrap() = Some(end.is_complete())),
//! );
//! assert!(ended.lock().unwrap().is_none());
//! let bytes = body.collect().await.unwrap().to_bytes();
//! assert_eq!(&bytes[..], b"hello");
//! assert_eq!(*ended.lock().unwrap(), Some(true));
//! # }
//! ```

mod guard;
mod held;
mod response;

pub use guard::{BodyEnd, ClassifyAtEnd, GuardBody, Hold, OnBodyEnd, OnEndFn, on_end_fn};
pub use held::{HeldGuards, HoldBody, HoldBodyFuture, HoldBodyLayer, HoldUntilBodyEnd};
pub use response::ResponseBody;

#[cfg(test)]
mod tests;
