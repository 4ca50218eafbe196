//! End-to-end tests: retry (in progress).
