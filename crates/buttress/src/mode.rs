/// Whether a layer that can reject enforces its decisions or only reports them.
///
/// In [`Mode::Observe`] a layer computes everything it would in
/// [`Mode::Enforce`] (windows, limits, queue depth) and reports what it would have
/// rejected through its handle, `tracing` and metrics, but lets every call through.
/// Use it to tune a policy on live traffic before turning it on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum Mode {
    /// Reject what the layer's rules reject.
    #[default]
    Enforce,
    /// Report what would be rejected; reject nothing.
    Observe,
}

impl Mode {
    /// Whether the layer should really reject.
    pub const fn enforces(self) -> bool {
        matches!(self, Mode::Enforce)
    }
}

/// Reports a rejection a layer in observe-only mode let through.
///
/// One shared event shape so every layer's dry run can be found the same way:
/// target `buttress::observe`, fields `layer` and `reason`.
#[allow(dead_code)]
pub(crate) fn would_reject(layer: &'static str, reason: &'static str) {
    tracing::debug!(target: "buttress::observe", layer, reason, "would reject (observe-only)");
}
