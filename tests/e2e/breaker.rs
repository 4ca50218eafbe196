//! End-to-end tests: breaker (in progress).
