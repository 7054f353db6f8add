//! A tiny seeded PRNG: the core's SplitMix64, with the draws a simulation needs on top. One seed,
//! one sequence, on every platform.

/// SplitMix64 (`subnodesync_core::Rng`) plus ranges, floats and coin flips.
#[derive(Debug, Clone)]
pub struct Rng {
    inner: subnodesync_core::Rng,
}

impl Rng {
    /// A generator whose whole sequence is fixed by `seed`.
    pub const fn new(seed: u64) -> Self {
        Self { inner: subnodesync_core::Rng::new(seed) }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.inner.next_u64()
    }

    /// A uniform value in `0..n` (`0` when `n` is 0), by multiply-shift.
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// A uniform value in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi.saturating_sub(lo).saturating_add(1))
    }

    /// A uniform float in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && self.unit() < p
    }

    /// Microseconds until the next event of a Poisson process with `per_hour` events an hour;
    /// `u64::MAX` (never) for a rate of zero.
    pub fn exp_micros(&mut self, per_hour: f64) -> u64 {
        if per_hour <= 0.0 {
            return u64::MAX;
        }
        let mean = 3_600_000_000.0 / per_hour;
        // 1 - unit() is in (0, 1], so the logarithm is finite.
        let t = -(1.0 - self.unit()).ln() * mean;
        (t as u64).max(1)
    }

    /// A new generator for a sub-stream, so one actor's draws do not shift another's.
    pub fn fork(&mut self) -> Self {
        Self::new(self.next_u64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_sequence() {
        let (mut a, mut b) = (Rng::new(7), Rng::new(7));
        assert!((0..100).all(|_| a.next_u64() == b.next_u64()));
    }

    #[test]
    fn below_stays_below_and_range_stays_inside() {
        let mut r = Rng::new(1);
        for _ in 0..10_000 {
            assert!(r.below(10) < 10);
            assert!((5..=9).contains(&r.range(5, 9)));
        }
    }
}
