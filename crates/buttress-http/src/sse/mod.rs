//! A resumable Server-Sent Events client: when the stream is cut, it reconnects
//! with backoff and resumes from the last event, so its consumer sees one
//! continuous stream.
//!
//! Feeds held open for a long time (prices, chat rooms, notifications, progress of
//! a job) get cut: the server restarts or is deployed, a proxy drops the
//! connection, a NAT forgets it and the stream goes silent without closing. An
//! [`EventSource`] reads a `text/event-stream` response through any HTTP client
//! service and, when the stream ends, fails or stays silent longer than the
//! [idle timeout](SseConfig::idle_timeout):
//!
//! - reconnects after a backoff delay (the shared [`buttress::backoff`], with
//!   jitter and a cap; a server's `retry:` field or a `Retry-After` on a 503
//!   raises the delay), within an optional budget;
//! - resumes with `Last-Event-ID` set to the stream's last event ID, or through a
//!   [`Resume`] hook for servers that resume from something else (a query cursor,
//!   a sequence number in the data);
//! - drops events it already delivered (recognised by their `id`), for servers that
//!   send some again after a reconnection;
//! - never delivers an event cut off before its end: the parser dispatches an
//!   event only at its blank line, and the last event ID moves only then.
//!
//! Answers a restarting server gives (5xx, 429, 408, connection errors) are retried
//! like cuts; a 204 ends the stream (the format's way for a server to say "stop");
//! any other status, or a 2xx that is not `text/event-stream`, ends it with an
//! [`SseError`]. The consumer reads events with [`EventSource::next`] or as a
//! [`Stream`](futures_util::Stream) ([`EventSource::into_stream`]), and watches the
//! connection through an [`SseHandle`] and `tracing` events (target
//! `buttress::sse`).
//!
//! # When to use it, and when not
//!
//! Use it for any SSE feed whose consumer must not miss events across restarts,
//! with servers that honour `Last-Event-ID` (or a resume token a hook can send).
//! Events without an `id` cannot be deduplicated, and a server that cannot resume
//! cannot be made to: the client then sees what the server sends again. For a
//! request/response connection that must come back, see `buttress::reconnect`.
//!
//! # Example
//!
//! ```
//! use std::convert::Infallible;
//! use std::time::Duration;
//! use buttress::backoff::Backoff;
//! use buttress_http::sse::{EventSource, SseConfig};
//! use bytes::Bytes;
//! use http_body_util::Full;
//! use tower::service_fn;
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // A feed of five events whose connection drops after every two; it resumes from
//! // Last-Event-ID and answers 204 once the feed is over.
//! let feed = service_fn(|req: http::Request<()>| async move {
//!     let from = req
//!         .headers()
//!         .get("last-event-id")
//!         .and_then(|v| v.to_str().ok()?.parse::<u32>().ok())
//!         .map_or(1, |last| last + 1);
//!     let body: String = (from..(from + 2).min(6))
//!         .map(|i| format!("id: {i}\ndata: event {i}\n\n"))
//!         .collect();
//!     let answer = http::Response::builder()
//!         .status(if from > 5 { 204 } else { 200 })
//!         .header("content-type", "text/event-stream")
//!         .body(Full::new(Bytes::from(body)))
//!         .unwrap();
//!     Ok::<_, Infallible>(answer)
//! });
//!
//! let config = SseConfig::default().with_backoff(Backoff::constant(Duration::from_millis(10)));
//! let mut events = EventSource::new(feed, "http://feed.example/events".parse()?).with_config(config);
//! let handle = events.handle();
//! let mut seen = Vec::new();
//! while let Some(event) = events.next().await {
//!     seen.push(event?.into_data());
//! }
//! assert_eq!(seen, ["event 1", "event 2", "event 3", "event 4", "event 5"]);
//! assert_eq!(handle.snapshot().disconnects, 3);
//! # Ok(())
//! # }
//! ```

mod client;
mod config;
mod error;
mod handle;
mod parser;
mod resume;

pub use client::{EventSource, LAST_EVENT_ID};
pub use config::SseConfig;
pub use error::SseError;
pub use handle::{SseHandle, SseSnapshot};
pub use parser::{Event, Parser, TooLarge};
pub use resume::{Resume, ResumeFn, resume_fn};

#[cfg(test)]
mod tests;
