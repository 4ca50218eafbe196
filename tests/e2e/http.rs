//! End-to-end tests: http (in progress).
