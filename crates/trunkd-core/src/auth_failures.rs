//! Failed digest authentications counted per source address, and the
//! temporary block a source earns by failing too often (SPEC §8): what
//! Kamailio operators build with `pike` and `htable`, and fail2ban does
//! from logs. Pure: the caller passes the time.
//!
//! A source is blocked when `threshold` failures fall within `window`; the
//! block lasts `block_for`, after which the source starts from zero. The
//! table is bounded: past [`MAX_SOURCES`] it starts over, so a flood of
//! spoofed sources costs a fixed amount of memory (and at worst forgets
//! some counts, never blocks an innocent source).

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Sources tracked at most.
pub const MAX_SOURCES: usize = 100_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthFailurePolicy {
    /// Failures within `window` that block a source; 0 disables blocking.
    pub threshold: u32,
    pub window: Duration,
    pub block_for: Duration,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    window_start: Instant,
    failures: u32,
    blocked_until: Option<Instant>,
}

/// What recording a failure did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// Counted; the source is not blocked.
    Counted(u32),
    /// This failure reached the threshold: the source is blocked from now.
    Blocked,
}

#[derive(Debug, Default)]
pub struct AuthFailures {
    sources: HashMap<IpAddr, Entry>,
}

impl AuthFailures {
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts a failed authentication from `ip` at `now`.
    pub fn record(&mut self, ip: IpAddr, now: Instant, policy: &AuthFailurePolicy) -> Recorded {
        if self.sources.len() >= MAX_SOURCES && !self.sources.contains_key(&ip) {
            self.sources.clear();
        }
        let e = self.sources.entry(ip).or_insert(Entry {
            window_start: now,
            failures: 0,
            blocked_until: None,
        });
        if e.blocked_until.is_some_and(|until| now >= until)
            || now.saturating_duration_since(e.window_start) >= policy.window
        {
            *e = Entry {
                window_start: now,
                failures: 0,
                blocked_until: None,
            };
        }
        e.failures = e.failures.saturating_add(1);
        if policy.threshold > 0 && e.failures >= policy.threshold && e.blocked_until.is_none() {
            e.blocked_until = Some(now + policy.block_for);
            return Recorded::Blocked;
        }
        Recorded::Counted(e.failures)
    }

    /// Whether `ip` is blocked at `now`.
    pub fn is_blocked(&self, ip: IpAddr, now: Instant) -> bool {
        self.sources
            .get(&ip)
            .and_then(|e| e.blocked_until)
            .is_some_and(|until| now < until)
    }

    /// Sources blocked at `now` (for a gauge; walks the table).
    pub fn blocked(&self, now: Instant) -> usize {
        self.sources
            .values()
            .filter(|e| e.blocked_until.is_some_and(|u| now < u))
            .count()
    }

    pub fn len(&self) -> usize {
        self.sources.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sources.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: AuthFailurePolicy = AuthFailurePolicy {
        threshold: 3,
        window: Duration::from_secs(60),
        block_for: Duration::from_secs(300),
    };

    fn ip(n: u8) -> IpAddr {
        IpAddr::from([192, 0, 2, n])
    }

    #[test]
    fn the_third_failure_in_a_minute_blocks_for_five_minutes() {
        let t0 = Instant::now();
        let mut f = AuthFailures::new();
        assert_eq!(f.record(ip(1), t0, &POLICY), Recorded::Counted(1));
        assert_eq!(
            f.record(ip(1), t0 + Duration::from_secs(10), &POLICY),
            Recorded::Counted(2)
        );
        assert!(!f.is_blocked(ip(1), t0 + Duration::from_secs(11)));
        assert_eq!(
            f.record(ip(1), t0 + Duration::from_secs(20), &POLICY),
            Recorded::Blocked
        );
        assert!(f.is_blocked(ip(1), t0 + Duration::from_secs(21)));
        assert!(
            !f.is_blocked(ip(2), t0 + Duration::from_secs(21)),
            "only that source"
        );
        assert_eq!(f.blocked(t0 + Duration::from_secs(21)), 1);
        assert!(f.is_blocked(ip(1), t0 + Duration::from_secs(319)));
        assert!(
            !f.is_blocked(ip(1), t0 + Duration::from_secs(320)),
            "the block ends"
        );
        // After the block the source starts from zero.
        assert_eq!(
            f.record(ip(1), t0 + Duration::from_secs(321), &POLICY),
            Recorded::Counted(1)
        );
    }

    #[test]
    fn failures_spread_over_more_than_the_window_never_block() {
        let t0 = Instant::now();
        let mut f = AuthFailures::new();
        for i in 0..10u64 {
            let r = f.record(ip(1), t0 + Duration::from_secs(i * 31), &POLICY);
            assert_ne!(r, Recorded::Blocked, "failure {i}");
        }
    }

    #[test]
    fn threshold_zero_counts_but_never_blocks() {
        let t0 = Instant::now();
        let off = AuthFailurePolicy {
            threshold: 0,
            ..POLICY
        };
        let mut f = AuthFailures::new();
        for i in 0..100 {
            assert_eq!(f.record(ip(1), t0, &off), Recorded::Counted(i + 1));
        }
        assert!(!f.is_blocked(ip(1), t0));
    }

    #[test]
    fn the_table_stays_bounded_under_spoofed_sources() {
        let t0 = Instant::now();
        let mut f = AuthFailures::new();
        for i in 0..(MAX_SOURCES as u32 + 10) {
            let a = IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            f.record(a, t0, &POLICY);
        }
        assert!(f.len() <= MAX_SOURCES);
    }
}
