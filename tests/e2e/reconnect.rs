//! End-to-end tests: reconnect (in progress).
