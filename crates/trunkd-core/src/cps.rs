//! Calls-per-second limiting for termination (SPEC §2.1: "token bucket per
//! VC, default 1"; a refusal is a 503 with Retry-After, RFC 3261 §20.33).
//!
//! A bucket's rate is the VC's `cps_limit` tokens per second and its burst
//! (capacity) is the same number: a VC with `cps_limit = 10` may start 10
//! calls at once, then 10 per second; an idle second refills the whole
//! burst. A full bucket is where every VC starts. Arithmetic is in integer
//! nano-tokens so no rounding drift accumulates over a long run. Time is an
//! `Instant` passed in; nothing here reads a clock.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::{CpsLimit, Resources, VcId};

const NANOS_PER_SEC: u128 = 1_000_000_000;
/// One token, in nano-tokens.
const TOKEN: u128 = NANOS_PER_SEC;

/// How long until the next token: the `Retry-After` of a 503.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct RetryAfter(pub Duration);

impl RetryAfter {
    /// Whole seconds, rounded up, at least 1: `Retry-After` carries
    /// delta-seconds (RFC 3261 §20.33), and 0 would invite an immediate
    /// retry that is refused again.
    pub fn seconds(self) -> u32 {
        let d = self.0;
        let secs = d.as_secs().saturating_add(u64::from(d.subsec_nanos() > 0));
        u32::try_from(secs.max(1)).unwrap_or(u32::MAX)
    }
}

/// A token bucket of rate = burst = `limit`.
#[derive(Clone, Debug)]
pub struct TokenBucket {
    limit: CpsLimit,
    /// Nano-tokens available at `updated`.
    level: u128,
    updated: Option<Instant>,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(limit: CpsLimit) -> Self {
        TokenBucket {
            limit,
            level: capacity(limit),
            updated: None,
        }
    }

    pub fn limit(&self) -> CpsLimit {
        self.limit
    }

    /// Changes the rate and burst (a reload changed `cps_limit`), keeping
    /// the tokens already earned up to the new burst.
    pub fn set_limit(&mut self, limit: CpsLimit) {
        self.limit = limit;
        self.level = self.level.min(capacity(limit));
    }

    fn refill(&mut self, now: Instant) {
        if let Some(prev) = self.updated {
            // An earlier `now` than the last one (callers on several
            // threads) earns nothing rather than panicking.
            let elapsed = now.saturating_duration_since(prev).as_nanos();
            let earned = elapsed.saturating_mul(u128::from(self.limit.get()));
            self.level = self.level.saturating_add(earned).min(capacity(self.limit));
        }
        if self.updated.is_none_or(|prev| now > prev) {
            self.updated = Some(now);
        }
    }

    /// Takes one token for a call starting at `now`.
    ///
    /// # Errors
    /// `RetryAfter` with the time until a token is available.
    pub fn try_take(&mut self, now: Instant) -> Result<(), RetryAfter> {
        self.refill(now);
        if self.level >= TOKEN {
            self.level -= TOKEN;
            return Ok(());
        }
        let missing = TOKEN - self.level;
        let rate = u128::from(self.limit.get());
        let wait_ns = missing.div_ceil(rate);
        Err(RetryAfter(Duration::from_nanos(
            u64::try_from(wait_ns).unwrap_or(u64::MAX),
        )))
    }
}

fn capacity(limit: CpsLimit) -> u128 {
    u128::from(limit.get()) * TOKEN
}

/// One [`TokenBucket`] per voice connector. Buckets exist only for VCs of
/// the current resources: [`CpsLimiter::sync`] after a reload drops the
/// buckets of removed VCs and applies changed limits, so memory is bounded
/// by the number of VCs.
#[derive(Clone, Debug, Default)]
pub struct CpsLimiter {
    buckets: HashMap<VcId, TokenBucket>,
}

impl CpsLimiter {
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes a token from `vc`'s bucket, creating it full on first use and
    /// updating its rate when `limit` differs from the bucket's.
    ///
    /// # Errors
    /// `RetryAfter` when the VC is over its limit.
    pub fn try_take(&mut self, vc: &VcId, limit: CpsLimit, now: Instant) -> Result<(), RetryAfter> {
        let bucket = self
            .buckets
            .entry(vc.clone())
            .or_insert_with(|| TokenBucket::new(limit));
        if bucket.limit() != limit {
            bucket.set_limit(limit);
        }
        bucket.try_take(now)
    }

    /// Applies a new resource snapshot: forgets VCs that are gone and sets
    /// each remaining bucket's limit to its VC's `cps_limit`.
    pub fn sync(&mut self, resources: &Resources) {
        self.buckets
            .retain(|id, bucket| match resources.voice_connector(id.as_str()) {
                Some(vc) => {
                    bucket.set_limit(vc.termination.cps_limit);
                    true
                }
                None => false,
            });
    }

    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn limit(n: i64) -> CpsLimit {
        CpsLimit::new(n).unwrap()
    }

    #[test]
    fn a_burst_admits_exactly_the_limit() {
        let t0 = Instant::now();
        for n in [1, 2, 10, 100] {
            let mut b = TokenBucket::new(limit(n));
            let admitted = (0..n * 3).filter(|_| b.try_take(t0).is_ok()).count();
            assert_eq!(admitted as i64, n);
        }
    }

    #[test]
    fn refill_is_limit_per_second() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(limit(10));
        for _ in 0..10 {
            b.try_take(t0).unwrap();
        }
        assert!(b.try_take(t0 + Duration::from_millis(99)).is_err());
        assert!(b.try_take(t0 + Duration::from_millis(100)).is_ok());
        assert!(b.try_take(t0 + Duration::from_millis(100)).is_err());
        // A long idle time refills the burst, not more.
        let later = t0 + Duration::from_secs(3600);
        assert_eq!((0..20).filter(|_| b.try_take(later).is_ok()).count(), 10);
    }

    #[test]
    fn retry_after_is_the_time_to_the_next_token() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(limit(1));
        b.try_take(t0).unwrap();
        assert_eq!(b.try_take(t0), Err(RetryAfter(Duration::from_secs(1))));
        assert_eq!(
            b.try_take(t0 + Duration::from_millis(250)),
            Err(RetryAfter(Duration::from_millis(750)))
        );
        let mut b = TokenBucket::new(limit(4));
        for _ in 0..4 {
            b.try_take(t0).unwrap();
        }
        assert_eq!(b.try_take(t0), Err(RetryAfter(Duration::from_millis(250))));
    }

    #[test]
    fn retry_after_header_seconds_round_up_to_at_least_one() {
        assert_eq!(RetryAfter(Duration::ZERO).seconds(), 1);
        assert_eq!(RetryAfter(Duration::from_nanos(1)).seconds(), 1);
        assert_eq!(RetryAfter(Duration::from_millis(999)).seconds(), 1);
        assert_eq!(RetryAfter(Duration::from_secs(1)).seconds(), 1);
        assert_eq!(RetryAfter(Duration::from_millis(1001)).seconds(), 2);
        assert_eq!(RetryAfter(Duration::MAX).seconds(), u32::MAX);
    }

    #[test]
    fn time_going_backwards_earns_nothing() {
        let t0 = Instant::now() + Duration::from_secs(10);
        let mut b = TokenBucket::new(limit(1));
        b.try_take(t0).unwrap();
        assert!(b.try_take(t0 - Duration::from_secs(5)).is_err());
        assert!(b.try_take(t0 + Duration::from_secs(1)).is_ok());
    }

    #[test]
    fn limiter_keys_by_vc_and_follows_reloads() {
        let t0 = Instant::now();
        let (a, b) = (VcId::new("vc-a").unwrap(), VcId::new("vc-b").unwrap());
        let mut l = CpsLimiter::new();
        assert!(l.try_take(&a, limit(1), t0).is_ok());
        assert!(l.try_take(&a, limit(1), t0).is_err());
        assert!(l.try_take(&b, limit(1), t0).is_ok(), "separate buckets");
        // The limit rises from 1 to 5: the rate follows at once.
        assert!(l
            .try_take(&a, limit(5), t0 + Duration::from_millis(200))
            .is_ok());
        assert_eq!(l.len(), 2);
        l.sync(&Resources::default());
        assert!(
            l.is_empty(),
            "VCs gone from the snapshot lose their buckets"
        );
    }

    #[test]
    fn lowering_the_limit_caps_the_saved_burst() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(limit(10));
        b.set_limit(limit(2));
        assert_eq!((0..10).filter(|_| b.try_take(t0).is_ok()).count(), 2);
    }

    proptest! {
        /// Over any window starting from a full bucket, admissions never
        /// exceed burst + rate × elapsed, and a caller who waits the
        /// Retry-After it was given is admitted.
        #[test]
        fn admissions_stay_within_the_envelope(
            n in 1i64..50,
            gaps_ms in proptest::collection::vec(0u64..400, 1..200),
        ) {
            let t0 = Instant::now();
            let mut b = TokenBucket::new(limit(n));
            let (mut t, mut admitted) = (t0, 0u64);
            for g in gaps_ms {
                t += Duration::from_millis(g);
                match b.try_take(t) {
                    Ok(()) => admitted += 1,
                    Err(RetryAfter(d)) => {
                        prop_assert!(d > Duration::ZERO && d <= Duration::from_secs(1));
                        let mut probe = b.clone();
                        prop_assert!(probe.try_take(t + d).is_ok());
                    }
                }
                let elapsed_ns = (t - t0).as_nanos();
                let bound = n as u128 + elapsed_ns * n as u128 / NANOS_PER_SEC;
                prop_assert!(u128::from(admitted) <= bound, "{admitted} > {bound}");
            }
        }
    }
}
