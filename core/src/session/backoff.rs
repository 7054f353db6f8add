//! Reconnect backoff: exponential growth with full jitter, between a floor and a cap.

use crate::rng::Rng;
use crate::time::Duration;

/// Reconnect delays: attempt `n` (from 0) waits a uniformly random time in
/// `[min, min(max, min·2ⁿ⁺¹)]`.
///
/// The randomness spreads a fleet that lost its broker at the same moment ("full jitter", already
/// on the first attempt, which is when a whole fleet reconnects at once), the
/// floor keeps even a lucky draw from hammering the broker, and the attempt count only resets
/// when a connection has stayed up (the session decides when), so a broker that accepts and
/// then drops us at once still sees the delays grow.
#[derive(Debug, Clone)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    /// A backoff starting at `min` and never exceeding `max` (`min ≤ max`, checked by the config).
    pub fn new(min: Duration, max: Duration) -> Self {
        Self { min, max, attempt: 0 }
    }

    /// The upper bound of the next delay: `min · 2^(attempt + 1)`, capped at `max`.
    pub fn ceiling(&self) -> Duration {
        let doubled = 1u64.checked_shl(self.attempt + 1).and_then(|f| self.min.as_ticks().checked_mul(f));
        match doubled {
            Some(ticks) if ticks < self.max.as_ticks() => Duration::from_ticks(ticks),
            _ => self.max,
        }
    }

    /// Draws the next delay from `rng` and counts the attempt.
    pub(crate) fn next_delay(&mut self, rng: &mut Rng) -> Duration {
        self.delay_from(rng.next_u64())
    }

    /// The next delay for one 64-bit random draw `r`; counts the attempt.
    pub fn delay_from(&mut self, r: u64) -> Duration {
        let ceiling = self.ceiling();
        let span = ceiling.as_ticks() - self.min.as_ticks().min(ceiling.as_ticks());
        // Lemire's multiply-shift maps r onto 0..=span without division; the result is ≤ span.
        let offset = ((u128::from(r) * (u128::from(span) + 1)) >> 64) as u64;
        if ceiling < self.max {
            self.attempt += 1;
        }
        Duration::from_ticks(self.min.as_ticks() + offset)
    }

    /// Starts over from `min`, after a connection proved stable.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ceiling_doubles_from_min_to_the_cap_and_stays_there() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(900));
        let ceilings: std::vec::Vec<u64> = (0..14)
            .map(|_| {
                let c = b.ceiling().as_secs();
                b.delay_from(u64::MAX);
                c
            })
            .collect();
        assert_eq!(ceilings, [2, 4, 8, 16, 32, 64, 128, 256, 512, 900, 900, 900, 900, 900]);
        b.reset();
        assert_eq!(b.ceiling(), Duration::from_secs(2));
    }

    #[test]
    fn the_extremes_of_the_draw_hit_the_floor_and_the_ceiling() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(900));
        for _ in 0..5 {
            b.delay_from(0);
        }
        assert_eq!(b.clone().delay_from(0), Duration::from_secs(1));
        assert_eq!(b.delay_from(u64::MAX), Duration::from_secs(64));
    }
}
