//! End-to-end: the HTTP crate's client and server stacks over real loopback sockets.
//!
//! - [`replay`]: a streamed POST with an `Idempotency-Key` is retried with the
//!   identical bytes; without the key, or past the replay cap, it is sent once.
//! - [`shed`]: a server shedding under load answers 503 + `Retry-After`, and the client
//!   waits at least that long before it retries.
//! - [`deadline`]: the client's total timeout reaches the server as a deadline, the
//!   server's own timeout fires first, and the attempt header counts attempts.
//! - [`tiers`]: three tiers over a failing one retry at one tier only, within the
//!   budget (against 27x for naive retries).
//! - [`reqwest_client`]: reqwest under the client stack retries a 503.
//! - [`grpc`]: tonic under the client stack retries `UNAVAILABLE`; server rejections
//!   come back as the right gRPC status; a negative pushback stops the retry.

mod common;
mod deadline;
mod grpc;
mod replay;
mod reqwest_client;
mod shed;
mod tiers;
