//! End-to-end tests: bulkhead (in progress).
