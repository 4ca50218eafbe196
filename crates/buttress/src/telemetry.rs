//! Metric handles that cost nothing when the `metrics` feature is off.
//!
//! Handles are registered once, when a layer (or a keyed partition) is built, never
//! per call: the `metrics` facade looks a handle up by name and labels, which would
//! cost a hash and possibly an allocation on every request. Install the recorder
//! before building stacks; handles made earlier stay no-ops. Names and labels are
//! listed in `docs/metrics.md`.
#![allow(dead_code)]

/// Labels attached to a metric: `(name, value)` pairs.
pub(crate) type Labels = Vec<(&'static str, String)>;

#[cfg(feature = "metrics")]
fn to_labels(labels: &[(&'static str, String)]) -> Vec<metrics::Label> {
    labels
        .iter()
        .map(|(k, v)| metrics::Label::new(*k, v.clone()))
        .collect()
}

/// A monotonically increasing count.
#[derive(Clone, Default)]
pub(crate) struct Counter {
    #[cfg(feature = "metrics")]
    inner: Option<metrics::Counter>,
}

impl Counter {
    pub(crate) fn register(name: &'static str, labels: &[(&'static str, String)]) -> Self {
        #[cfg(feature = "metrics")]
        {
            Self {
                inner: Some(metrics::counter!(name, to_labels(labels))),
            }
        }
        #[cfg(not(feature = "metrics"))]
        {
            let _ = (name, labels);
            Self {}
        }
    }

    #[inline]
    pub(crate) fn increment(&self, n: u64) {
        #[cfg(feature = "metrics")]
        if let Some(c) = &self.inner {
            c.increment(n);
        }
        #[cfg(not(feature = "metrics"))]
        let _ = n;
    }
}

/// A value that goes up and down.
#[derive(Clone, Default)]
pub(crate) struct Gauge {
    #[cfg(feature = "metrics")]
    inner: Option<metrics::Gauge>,
}

impl Gauge {
    pub(crate) fn register(name: &'static str, labels: &[(&'static str, String)]) -> Self {
        #[cfg(feature = "metrics")]
        {
            Self {
                inner: Some(metrics::gauge!(name, to_labels(labels))),
            }
        }
        #[cfg(not(feature = "metrics"))]
        {
            let _ = (name, labels);
            Self {}
        }
    }

    #[inline]
    pub(crate) fn set(&self, value: f64) {
        #[cfg(feature = "metrics")]
        if let Some(g) = &self.inner {
            g.set(value);
        }
        #[cfg(not(feature = "metrics"))]
        let _ = value;
    }

    /// Adds `value`: for a gauge several partitions share, each adding its own part.
    #[inline]
    pub(crate) fn increment(&self, value: f64) {
        #[cfg(feature = "metrics")]
        if let Some(g) = &self.inner {
            g.increment(value);
        }
        #[cfg(not(feature = "metrics"))]
        let _ = value;
    }

    /// Subtracts `value`.
    #[inline]
    pub(crate) fn decrement(&self, value: f64) {
        #[cfg(feature = "metrics")]
        if let Some(g) = &self.inner {
            g.decrement(value);
        }
        #[cfg(not(feature = "metrics"))]
        let _ = value;
    }
}

impl std::fmt::Debug for Counter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Counter")
    }
}

impl std::fmt::Debug for Gauge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Gauge")
    }
}
