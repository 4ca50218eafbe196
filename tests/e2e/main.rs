//! End-to-end tests over real loopback sockets: one test binary, one module per area.

mod breaker;
mod bulkhead;
mod http;
mod reconnect;
mod retry;
mod shed;
