//! Configuration files for buttress: named policies, and the routes (server) and
//! hosts (client) that use them.
//!
//! This first version reads the `[policies]` table from JSON into
//! [`buttress::Policy`] values, with errors that name the line and column. TOML and
//! YAML, routes and hosts, lints and hot reload arrive with the configuration work
//! (see `docs/config.md` once it lands).
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//!
//! let config = buttress_config::Config::from_json(r#"{
//!     "policies": {
//!         "default": { "timeout": "5s", "attempt_timeout": "1s" },
//!         "expensive": { "bulkhead": { "max_concurrent": 16 } }
//!     }
//! }"#).unwrap();
//! assert_eq!(config.policies["default"].timeout, Some(Duration::from_secs(5)));
//! assert_eq!(config.policies["expensive"].bulkhead.as_ref().unwrap().max_concurrent, 16);
//! ```
#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::fmt;

use buttress::Policy;

/// A parsed configuration file.
#[derive(Debug, Clone, Default, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct Config {
    /// Policies by name.
    #[serde(default)]
    pub policies: BTreeMap<String, Policy>,
}

/// A configuration file that could not be read.
#[derive(Debug)]
pub struct Error {
    line: usize,
    column: usize,
    message: String,
}

impl Error {
    /// The line (1-based) where the problem is.
    pub fn line(&self) -> usize {
        self.line
    }

    /// The column (1-based) where the problem is.
    pub fn column(&self) -> usize {
        self.column
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "line {}, column {}: {}",
            self.line, self.column, self.message
        )
    }
}

impl std::error::Error for Error {}

impl Config {
    /// Parses a JSON configuration.
    pub fn from_json(text: &str) -> Result<Self, Error> {
        serde_json::from_str(text).map_err(|e| Error {
            line: e.line(),
            column: e.column(),
            message: e.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_durations_name_their_position() {
        let text = "{\n  \"policies\": {\n    \"p\": { \"timeout\": \"fast\" }\n  }\n}";
        let err = Config::from_json(text).unwrap_err();
        assert_eq!(err.line(), 3);
        assert!(
            err.to_string().contains("invalid duration \"fast\""),
            "{err}"
        );
    }

    #[test]
    fn unknown_keys_are_errors() {
        let err = Config::from_json(r#"{"policies": {"p": {"timeuot": "1s"}}}"#).unwrap_err();
        assert!(err.to_string().contains("unknown field `timeuot`"), "{err}");
    }

    #[test]
    fn empty_config_has_no_policies() {
        assert!(Config::from_json("{}").unwrap().policies.is_empty());
    }
}
