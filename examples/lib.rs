//! The README's code, compiled and run as doctests so the quick starts stay true.
#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
