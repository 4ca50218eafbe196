use super::{Limit, Sample};
use crate::shed::LimitConfig;

/// A limit that never changes: a plain concurrency cap with the shed layer's queue,
/// priorities and drain around it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fixed {
    limit: usize,
}

impl Fixed {
    /// A fixed limit of `limit` calls (at least one).
    pub fn new(limit: usize) -> Self {
        Self {
            limit: limit.max(1),
        }
    }

    /// `initial` from `config`, kept within `min..=max`.
    pub fn from_config(config: &LimitConfig) -> Self {
        let c = config.normalized();
        Self::new(c.initial)
    }
}

impl Limit for Fixed {
    fn limit(&self) -> usize {
        self.limit
    }

    fn on_sample(&mut self, _: Sample) {}
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::time::Instant;

    use super::*;
    use crate::shed::limit::testing::feed;

    #[test]
    fn never_moves() {
        let mut l = Fixed::new(7);
        let mut now = Instant::now();
        feed(&mut l, &mut now, 100, Duration::from_secs(5), 7, true);
        feed(&mut l, &mut now, 100, Duration::from_millis(1), 7, false);
        assert_eq!(l.limit(), 7);
        assert_eq!(Fixed::new(0).limit(), 1);
        let cfg = LimitConfig {
            initial: 500,
            min: 1,
            max: 64,
            ..LimitConfig::default()
        };
        assert_eq!(Fixed::from_config(&cfg).limit(), 64);
    }
}
