//! When to try again: exponential backoff with "full jitter".
//!
//! Webhook deliveries and record uploads retry a peer that is down. Without
//! jitter, every queued item of every trunkd retries at the same instants
//! and the peer that comes back is hit by all of them at once; with full
//! jitter (a uniform draw in `[0, cap]`, as the AWS architecture blog
//! recommends) the retries spread out. A floor of `initial / 2` keeps a
//! retry loop from spinning when the draw is near zero.
//!
//! Pure: the caller passes the random draw, so tests are deterministic.

use std::time::Duration;

/// How retries are spaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The ceiling of the first retry's delay.
    pub initial: Duration,
    /// No delay is ever longer than this.
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(300),
        }
    }
}

impl Backoff {
    /// The ceiling of the delay before retry number `attempt` (1 = the first
    /// retry): `initial · 2^(attempt-1)`, capped at `max`.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let shift = attempt.saturating_sub(1).min(31);
        self.initial
            .checked_mul(1u32 << shift)
            .map_or(self.max, |d| d.min(self.max))
    }

    /// The delay before retry number `attempt`, given `random`, a uniform
    /// draw in `[0, 1)`: uniform in `[initial/2, ceiling]` (full jitter with
    /// a floor).
    pub fn delay(&self, attempt: u32, random: f64) -> Duration {
        let ceiling = self.ceiling(attempt);
        let floor = (self.initial / 2).min(ceiling);
        let r = if random.is_finite() {
            random.clamp(0.0, 1.0)
        } else {
            0.0
        };
        floor + (ceiling - floor).mul_f64(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const B: Backoff = Backoff {
        initial: Duration::from_secs(1),
        max: Duration::from_secs(60),
    };

    #[test]
    fn the_ceiling_doubles_per_attempt_up_to_the_maximum() {
        let c: Vec<u64> = (1..=8).map(|a| B.ceiling(a).as_secs()).collect();
        assert_eq!(c, [1, 2, 4, 8, 16, 32, 60, 60]);
        assert_eq!(B.ceiling(0), Duration::from_secs(1));
        assert_eq!(B.ceiling(u32::MAX), Duration::from_secs(60));
    }

    #[test]
    fn the_draw_places_the_delay_between_the_floor_and_the_ceiling() {
        assert_eq!(B.delay(4, 0.0), Duration::from_millis(500));
        assert_eq!(B.delay(4, 1.0), Duration::from_secs(8));
        assert_eq!(B.delay(2, 0.5), Duration::from_millis(1250));
        assert_eq!(B.delay(3, f64::NAN), Duration::from_millis(500));
    }

    proptest! {
        #[test]
        fn a_delay_is_never_below_the_floor_nor_above_the_ceiling(
            attempt in 0u32..100, r in 0.0f64..1.0,
        ) {
            let d = B.delay(attempt, r);
            prop_assert!(d >= B.initial / 2);
            prop_assert!(d <= B.ceiling(attempt));
            prop_assert!(d <= B.max);
        }
    }
}
