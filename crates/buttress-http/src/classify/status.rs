use std::fmt;

use http::StatusCode;

/// A set of 4xx and 5xx statuses, stored as a bitset so a per-request classifier can
/// copy it for the price of four words.
///
/// Only 400..=599 can be members: retrying any other status has no meaning, and
/// [`insert`](Self::insert) ignores them (returning `false`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct StatusSet {
    bits: [u64; 4],
}

impl StatusSet {
    const FIRST: u16 = 400;
    const LAST: u16 = 599;

    /// The empty set.
    pub const fn empty() -> Self {
        Self { bits: [0; 4] }
    }

    /// The statuses buttress retries by default: 408, 429, 502, 503 and 504.
    pub const fn default_retryable() -> Self {
        Self::empty()
            .with(StatusCode::REQUEST_TIMEOUT)
            .with(StatusCode::TOO_MANY_REQUESTS)
            .with(StatusCode::BAD_GATEWAY)
            .with(StatusCode::SERVICE_UNAVAILABLE)
            .with(StatusCode::GATEWAY_TIMEOUT)
    }

    /// The set with `status` added (unchanged if it is not 4xx or 5xx).
    #[must_use]
    pub const fn with(mut self, status: StatusCode) -> Self {
        let code = status.as_u16();
        if code >= Self::FIRST && code <= Self::LAST {
            let i = (code - Self::FIRST) as usize;
            self.bits[i / 64] |= 1 << (i % 64);
        }
        self
    }

    /// Adds `status`; `false` if it cannot be a member (not 4xx or 5xx).
    pub fn insert(&mut self, status: StatusCode) -> bool {
        *self = self.with(status);
        self.contains(status)
    }

    /// Whether `status` is in the set.
    pub const fn contains(&self, status: StatusCode) -> bool {
        let code = status.as_u16();
        if code < Self::FIRST || code > Self::LAST {
            return false;
        }
        let i = (code - Self::FIRST) as usize;
        self.bits[i / 64] & (1 << (i % 64)) != 0
    }

    /// The members, in ascending order.
    pub fn iter(&self) -> impl Iterator<Item = StatusCode> + '_ {
        (Self::FIRST..=Self::LAST)
            .filter_map(|c| StatusCode::from_u16(c).ok())
            .filter(|s| self.contains(*s))
    }
}

impl fmt::Debug for StatusSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set()
            .entries(self.iter().map(|s| s.as_u16()))
            .finish()
    }
}

impl FromIterator<StatusCode> for StatusSet {
    fn from_iter<I: IntoIterator<Item = StatusCode>>(iter: I) -> Self {
        iter.into_iter().fold(Self::empty(), Self::with)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn defaults() {
        let s = StatusSet::default_retryable();
        let members: Vec<u16> = s.iter().map(|s| s.as_u16()).collect();
        assert_eq!(members, [408, 429, 502, 503, 504]);
        assert!(!s.contains(StatusCode::INTERNAL_SERVER_ERROR));
        assert_eq!(format!("{s:?}"), "{408, 429, 502, 503, 504}");
    }

    #[test]
    fn only_4xx_and_5xx() {
        let mut s = StatusSet::empty();
        assert!(!s.insert(StatusCode::OK));
        assert!(!s.insert(StatusCode::from_u16(600).unwrap()));
        assert!(s.insert(StatusCode::from_u16(599).unwrap()));
        assert!(s.insert(StatusCode::BAD_REQUEST));
        assert_eq!(s.iter().count(), 2);
    }

    proptest! {
        #[test]
        fn behaves_like_a_hash_set(codes in proptest::collection::vec(100u16..1000, 0..40), probe in 100u16..1000) {
            let statuses: Vec<StatusCode> = codes.iter().map(|c| StatusCode::from_u16(*c).unwrap()).collect();
            let set: StatusSet = statuses.iter().copied().collect();
            let model: std::collections::HashSet<u16> = codes.into_iter().filter(|c| (400..600).contains(c)).collect();
            let probe = StatusCode::from_u16(probe).unwrap();
            prop_assert_eq!(set.contains(probe), model.contains(&probe.as_u16()));
            prop_assert_eq!(set.iter().count(), model.len());
        }
    }
}
