//! The per-call media metric timer (SPEC §4, §5.3): a line every interval
//! (60 s) of a call, and one at its end. Sans-IO: time is passed in.
//!
//! # How the caller uses it
//!
//! ```text
//! let mut ticker = MetricsTicker::new(answered_at, Duration::from_secs(60));
//! loop {
//!     select! {
//!         _ = sleep_until(ticker.poll_timeout()?) => {
//!             if ticker.handle_timeout(now) { write_line(now) }
//!         }
//!         call ends => { if ticker.finish() { write_line(now) }; break }
//!     }
//! }
//! ```
//!
//! `write_line` snapshots the call's statistics, which are **cumulative
//! over the call**: the [`RtpRxStats`](super::RtpRxStats) of each leg and
//! the send counters live as long as the call and are never reset at a
//! tick, so a packet lost in minute 1 is still in `packets_lost` at minute
//! 5 (SPEC §4). The ticker itself holds no statistics; to compute a MOS
//! over the last interval only, keep the previous line's
//! [`DirectionStats`](super::DirectionStats) and use
//! [`DirectionStats::since`](super::DirectionStats::since).
//!
//! Ticks fall at `start + k·interval` (k = 1, 2, …), never drifting with
//! late wake-ups. If the caller wakes up after several ticks have passed
//! (a stalled task), one line is emitted and the next tick is the first
//! one after `now`: the figures are cumulative, so nothing is lost by
//! coalescing.

use std::time::{Duration, Instant};

/// Shortest interval accepted; shorter ones (0 included) are raised to it.
pub const MIN_INTERVAL: Duration = Duration::from_secs(1);

/// Per-call metric-line timer.
#[derive(Clone, Debug)]
pub struct MetricsTicker {
    start: Instant,
    interval: Duration,
    /// Index k of the next tick (at start + k·interval).
    next_k: u32,
    /// Lines emitted, the final one included.
    lines: u32,
    finished: bool,
}

impl MetricsTicker {
    /// A ticker for a call whose metrics start at `start` (the answer, or
    /// the first media), emitting every `interval` (SPEC: 60 s; at least
    /// [`MIN_INTERVAL`]).
    pub fn new(start: Instant, interval: Duration) -> Self {
        MetricsTicker {
            start,
            interval: interval.max(MIN_INTERVAL),
            next_k: 1,
            lines: 0,
            finished: false,
        }
    }

    /// `start + k·interval`; `None` if not representable (centuries
    /// away: such a tick never comes).
    fn tick_at(&self, k: u32) -> Option<Instant> {
        self.start.checked_add(self.interval.checked_mul(k)?)
    }

    /// When the next per-interval line is due; `None` after [`finish`].
    ///
    /// [`finish`]: MetricsTicker::finish
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.finished {
            return None;
        }
        self.tick_at(self.next_k)
    }

    /// Advances to `now`. Returns `true` when a line is due (at most one
    /// per call, however many ticks passed); `false` before the next tick
    /// or after [`MetricsTicker::finish`].
    pub fn handle_timeout(&mut self, now: Instant) -> bool {
        match self.poll_timeout() {
            Some(due) if now >= due => {}
            _ => return false,
        }
        // Next k with start + k·interval > now.
        let elapsed = now.saturating_duration_since(self.start).as_nanos();
        let k = elapsed / self.interval.as_nanos().max(1) + 1;
        self.next_k = u32::try_from(k)
            .unwrap_or(u32::MAX)
            .max(self.next_k.saturating_add(1));
        self.lines = self.lines.saturating_add(1);
        true
    }

    /// The call ended: returns `true` the first time (write the
    /// end-of-call line, SPEC §4 "and once at its end", even if a
    /// per-interval line was just written), `false` afterwards. The ticker
    /// then has no more timeouts.
    pub fn finish(&mut self) -> bool {
        if self.finished {
            return false;
        }
        self.finished = true;
        self.lines = self.lines.saturating_add(1);
        true
    }

    /// Whether [`MetricsTicker::finish`] was called.
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// Lines emitted so far (per-interval and final).
    pub fn lines_emitted(&self) -> u32 {
        self.lines
    }

    /// The interval in use.
    pub fn interval(&self) -> Duration {
        self.interval
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MIN: Duration = Duration::from_secs(60);

    #[test]
    fn ticks_every_minute_without_drift() {
        let t0 = Instant::now();
        let mut t = MetricsTicker::new(t0, MIN);
        assert_eq!(t.poll_timeout(), Some(t0 + MIN));
        assert!(!t.handle_timeout(t0 + Duration::from_secs(59)));
        // Woken 300 ms late: the next tick is still at 120 s.
        assert!(t.handle_timeout(t0 + MIN + Duration::from_millis(300)));
        assert_eq!(t.poll_timeout(), Some(t0 + 2 * MIN));
        // Spurious wake-up at the same time: nothing.
        assert!(!t.handle_timeout(t0 + MIN + Duration::from_millis(300)));
        assert!(t.handle_timeout(t0 + 2 * MIN));
        assert_eq!(t.poll_timeout(), Some(t0 + 3 * MIN));
        assert_eq!(t.lines_emitted(), 2);
    }

    #[test]
    fn missed_ticks_coalesce_into_one_line() {
        let t0 = Instant::now();
        let mut t = MetricsTicker::new(t0, MIN);
        assert!(t.handle_timeout(t0 + Duration::from_secs(250)));
        assert_eq!(t.poll_timeout(), Some(t0 + 5 * MIN));
        assert_eq!(t.lines_emitted(), 1);
    }

    #[test]
    fn finish_emits_once_and_stops() {
        let t0 = Instant::now();
        let mut t = MetricsTicker::new(t0, MIN);
        assert!(t.handle_timeout(t0 + MIN));
        assert!(t.finish());
        assert!(!t.finish());
        assert!(t.is_finished());
        assert_eq!(t.poll_timeout(), None);
        assert!(!t.handle_timeout(t0 + 10 * MIN));
        assert_eq!(t.lines_emitted(), 2);
    }

    #[test]
    fn short_call_gets_only_the_final_line() {
        let t0 = Instant::now();
        let mut t = MetricsTicker::new(t0, MIN);
        assert!(!t.handle_timeout(t0 + Duration::from_secs(12)));
        assert!(t.finish());
        assert_eq!(t.lines_emitted(), 1);
    }

    #[test]
    fn zero_interval_is_raised() {
        let t0 = Instant::now();
        let t = MetricsTicker::new(t0, Duration::ZERO);
        assert_eq!(t.interval(), MIN_INTERVAL);
        assert_eq!(t.poll_timeout(), Some(t0 + MIN_INTERVAL));
    }

    proptest! {
        /// Driving the ticker by its own timeouts for an N-second call
        /// gives floor(N / 60) minute lines plus the final one, and the
        /// deadlines are exactly the minute marks.
        #[test]
        fn lines_for_a_call(secs in 0u64..4000, jitter_ms in 0u64..900) {
            let t0 = Instant::now();
            let end = t0 + Duration::from_secs(secs);
            let mut t = MetricsTicker::new(t0, MIN);
            let mut k = 1u32;
            while let Some(at) = t.poll_timeout() {
                prop_assert_eq!(at, t0 + MIN * k);
                if at > end { break; }
                prop_assert!(t.handle_timeout(at + Duration::from_millis(jitter_ms)));
                k += 1;
            }
            prop_assert!(t.finish());
            prop_assert_eq!(u64::from(t.lines_emitted()), secs / 60 + 1);
        }
    }
}
