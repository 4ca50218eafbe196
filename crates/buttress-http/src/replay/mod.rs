//! Replayable request bodies, so retry and hedge can send a request with a body again.
//!
//! A request body is a stream: once sent, it is gone. [`ReplayBody`] wraps any
//! [`http_body::Body`] and keeps the bytes it delivers, up to a cap, while the first
//! attempt streams them; a copy made with [`ReplayBody::try_replay`] (or the
//! [`HttpReplay`] strategy the retry and hedge layers take) delivers the identical
//! bytes and trailers again, then, if the original had not been read to its end, goes
//! on reading it. Every copy shares one buffer (an `Arc<Mutex<..>>` never held across
//! an `.await`); the bytes are reference-counted [`Bytes`](bytes::Bytes), not copied.
//!
//! - Past the cap the request is **not replayable**: buffering stops (so a large upload
//!   costs no memory) and `try_replay` returns `None`, so retry sends it once. A body
//!   whose exact size is known to exceed the cap is never buffered at all.
//! - A body that failed is not replayable either.
//! - [`HttpReplay::retry`] replays a body not yet fully read (a server may answer 503
//!   before reading it all); [`HttpReplay::hedge`] replays only a body fully buffered
//!   ([`ReplayBody::is_complete`]): a hedge races the first attempt, which may still be
//!   streaming, and must not wait on it.
//! - buttress's retry layer asks for each copy when the retry is sent, so a body the
//!   first attempt carried past the cap is never replayed. The body's [`ReplayWatch`]
//!   (a request extension) also tells [`HttpClassify`](crate::classify::HttpClassify)
//!   so: it calls the outcome not retryable, and the caller gets the first attempt's
//!   answer at once, without waiting out a backoff (and a retry layer of someone
//!   else's, reading the same classifier, stops too).
//! - [`BufferRequestBodyLayer`], outside retry in a client stack, wraps every request's
//!   body and puts its [`ReplayWatch`] into the request's extensions. Its disabled form (a cap of 0) keeps the type: empty bodies (a `GET`) stay
//!   replayable, others are sent once.
//!
//! When not to use it: requests that are never retried, and bodies too large to keep
//! in memory (raise the cap only as far as you can afford per in-flight request).
//!
//! # Example
//!
//! ```
//! use buttress::Replay;
//! use buttress_http::replay::{HttpReplay, ReplayBody};
//! use http_body_util::{BodyExt, Full};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let body = ReplayBody::new(Full::new(bytes::Bytes::from_static(b"order #7")), 64 * 1024);
//! let req = http::Request::post("/orders").body(body).unwrap();
//! let copy = HttpReplay::retry().replay(&req).expect("within the cap");
//!
//! // The first attempt streams the body...
//! let sent = req.into_body().collect().await.unwrap().to_bytes();
//! // ...and the retry sends the identical bytes.
//! let resent = copy.into_body().collect().await.unwrap().to_bytes();
//! assert_eq!(sent, resent);
//! # }
//! ```

mod body;
mod layer;
mod strategy;

pub use body::{ReplayBody, ReplayError, ReplayWatch};
pub use layer::{BufferRequestBody, BufferRequestBodyLayer, DEFAULT_CAP};
pub use strategy::{CloneRequest, HttpReplay};
