//! End-to-end tests: shed (in progress).
