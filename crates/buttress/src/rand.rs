//! A seedable, injectable source of randomness.
//!
//! Jitter, chaos and probabilistic throttling draw from a [`Random`] source. The
//! default, [`SplitMix`], is lock-free and, seeded, yields the same sequence for the
//! same order of draws, so a simulation with a seed is deterministic. Any other
//! generator can be plugged in by implementing [`Random`].
//!
//! # Example
//!
//! ```
//! use buttress::rand::{Random, SplitMix};
//!
//! let a = SplitMix::seeded(7);
//! let b = SplitMix::seeded(7);
//! assert_eq!(a.next_u64(), b.next_u64());
//! let x = a.next_f64();
//! assert!((0.0..1.0).contains(&x));
//! ```

use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// A source of uniformly distributed random numbers, shared between threads.
pub trait Random: Send + Sync {
    /// The next 64 random bits.
    fn next_u64(&self) -> u64;

    /// A float uniformly distributed in `[0, 1)`.
    fn next_f64(&self) -> f64 {
        // The top 53 bits fill an f64's mantissa exactly.
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// `true` with probability `p` (clamped to `[0, 1]`).
    fn chance(&self, p: f64) -> bool {
        if p <= 0.0 {
            false
        } else if p >= 1.0 {
            true
        } else {
            self.next_f64() < p
        }
    }
}

/// The SplitMix64 generator over an atomic counter: lock-free, fast, and
/// deterministic for a seed and a given order of draws.
pub struct SplitMix {
    state: AtomicU64,
}

const GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

impl SplitMix {
    /// A generator that yields the same sequence for the same `seed`.
    pub const fn seeded(seed: u64) -> Self {
        Self {
            state: AtomicU64::new(seed),
        }
    }

    /// A generator seeded from the process's random hashing keys.
    pub fn from_entropy() -> Self {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(GAMMA);
        Self::seeded(h.finish())
    }
}

impl Random for SplitMix {
    fn next_u64(&self) -> u64 {
        let mut z = self
            .state
            .fetch_add(GAMMA, Ordering::Relaxed)
            .wrapping_add(GAMMA);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

impl fmt::Debug for SplitMix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SplitMix").finish_non_exhaustive()
    }
}

/// A shared handle to a random source, cheap to clone.
#[derive(Clone)]
pub struct Rng(Arc<dyn Random>);

impl Rng {
    /// Wraps any random source.
    pub fn new(source: impl Random + 'static) -> Self {
        Self(Arc::new(source))
    }

    /// A [`SplitMix`] seeded with `seed`.
    pub fn seeded(seed: u64) -> Self {
        Self::new(SplitMix::seeded(seed))
    }

    /// A [`SplitMix`] seeded from entropy, or with `seed` if given.
    pub fn from_seed(seed: Option<u64>) -> Self {
        match seed {
            Some(s) => Self::seeded(s),
            None => Self::default(),
        }
    }
}

impl Default for Rng {
    fn default() -> Self {
        Self::new(SplitMix::from_entropy())
    }
}

impl Random for Rng {
    fn next_u64(&self) -> u64 {
        self.0.next_u64()
    }
}

impl fmt::Debug for Rng {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rng").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_sequence() {
        let a = Rng::seeded(42);
        let b = Rng::seeded(42);
        let c = Rng::seeded(43);
        let xs: Vec<u64> = (0..16).map(|_| a.next_u64()).collect();
        let ys: Vec<u64> = (0..16).map(|_| b.next_u64()).collect();
        let zs: Vec<u64> = (0..16).map(|_| c.next_u64()).collect();
        assert_eq!(xs, ys);
        assert_ne!(xs, zs);
    }

    #[test]
    fn floats_are_uniform_enough() {
        let r = SplitMix::seeded(1);
        let n = 100_000;
        let mut buckets = [0u32; 10];
        for _ in 0..n {
            let x = r.next_f64();
            assert!((0.0..1.0).contains(&x));
            buckets[(x * 10.0) as usize] += 1;
        }
        for b in buckets {
            // 10,000 expected per bucket; 5 sigma is about 475.
            assert!((9_500..=10_500).contains(&b), "{buckets:?}");
        }
        let hits = (0..n).filter(|_| r.chance(0.25)).count();
        assert!((24_000..=26_000).contains(&hits), "{hits}");
        assert!(!r.chance(0.0) && r.chance(1.0));
    }

    #[test]
    fn entropy_seeds_differ() {
        assert_ne!(
            SplitMix::from_entropy().next_u64(),
            SplitMix::from_entropy().next_u64()
        );
    }
}
