//! Transaction timers (RFC 3261 §17, Table 4 of Appendix A; RFC 6026 §8).
//!
//! Each transaction owns one [`TimerTable`]: one optional deadline per
//! [`TxTimer`]. The [`Endpoint`](super::Endpoint) keeps every transaction's
//! earliest deadline in an ordered set, so `poll_timeout` is O(log n).

use std::time::{Duration, Instant};

/// The timers of the four transaction state machines, one variant per
/// RFC rule. Durations are given for the default T1 = 500 ms, T2 = 4 s,
/// T4 = 5 s; "UDP" timers are not armed on reliable transports (§17.1.1.2,
/// §17.1.2.2, §17.2.1, §17.2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum TxTimer {
    /// INVITE client, Calling: retransmit the INVITE, first after T1, then
    /// doubling without cap (§17.1.1.2). UDP only.
    A,
    /// INVITE client, Calling: give up after 64*T1 (or the caller's
    /// deadline) without any response (§17.1.1.2).
    B,
    /// INVITE client, Proceeding: give up when no final response follows a
    /// provisional (RFC 3261 §16.6 step 11's Timer C, > 3 min, restarted by
    /// each provisional), or 64*T1 after a CANCEL was sent (§9.1).
    C,
    /// INVITE client, Completed: absorb retransmitted final responses
    /// (re-ACK them) for 32 s; zero on reliable transports (§17.1.1.2).
    D,
    /// Non-INVITE client, Trying/Proceeding: retransmit the request, T1
    /// doubling to T2, then every T2 once a provisional arrived
    /// (§17.1.2.2). UDP only.
    E,
    /// Non-INVITE client: give up after 64*T1 (or the caller's deadline)
    /// without a final response (§17.1.2.2).
    F,
    /// INVITE server, Completed: retransmit the 3xx-6xx, T1 doubling to T2
    /// (§17.2.1). UDP only.
    G,
    /// INVITE server, Completed: stop waiting for the ACK after 64*T1
    /// (§17.2.1).
    H,
    /// INVITE server, Confirmed: absorb ACK retransmissions for T4; zero on
    /// reliable transports (§17.2.1).
    I,
    /// Non-INVITE server, Completed: answer request retransmissions for
    /// 64*T1; zero on reliable transports (§17.2.2).
    J,
    /// Non-INVITE client, Completed: absorb response retransmissions for
    /// T4; zero on reliable transports (§17.1.2.2).
    K,
    /// INVITE server, Accepted: leave the state 64*T1 after the 2xx (RFC
    /// 6026 §8.7); without an ACK by then, the TU is told (§13.3.1.4).
    L,
    /// INVITE client, Accepted: pass retransmitted and forked 2xx up for
    /// 64*T1 (RFC 6026 §8.4).
    M,
    /// INVITE server, Accepted: retransmit the 2xx, T1 doubling to T2,
    /// until the ACK arrives (§13.3.1.4; a UAS core duty that the
    /// transaction layer carries out for the TU).
    Retransmit2xx,
    /// Non-INVITE server, Trying/Proceeding: drop a transaction the TU never
    /// answered after 128*T1, twice the client's Timer F (not in the RFC:
    /// keeps the table bounded when a TU forgets a request).
    Abandon,
}

const COUNT: usize = 15;

/// The longest timer: ten years.
const MAX_TIMER: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

impl TxTimer {
    const ALL: [TxTimer; COUNT] = [
        TxTimer::A,
        TxTimer::B,
        TxTimer::C,
        TxTimer::D,
        TxTimer::E,
        TxTimer::F,
        TxTimer::G,
        TxTimer::H,
        TxTimer::I,
        TxTimer::J,
        TxTimer::K,
        TxTimer::L,
        TxTimer::M,
        TxTimer::Retransmit2xx,
        TxTimer::Abandon,
    ];
}

/// One optional deadline per timer.
#[derive(Debug, Clone, Default)]
pub(crate) struct TimerTable {
    slots: [Option<Instant>; COUNT],
}

impl TimerTable {
    /// Arms `timer` to fire `after` from `now`, replacing any earlier
    /// deadline. Durations are capped at ten years, so no configuration can
    /// overflow the clock.
    pub(crate) fn set(&mut self, timer: TxTimer, now: Instant, after: Duration) {
        let at = now.checked_add(after.min(MAX_TIMER)).unwrap_or(now);
        self.slots[timer as usize] = Some(at);
    }

    /// Disarms `timer`.
    pub(crate) fn stop(&mut self, timer: TxTimer) {
        self.slots[timer as usize] = None;
    }

    /// Disarms every timer.
    pub(crate) fn stop_all(&mut self) {
        self.slots = [None; COUNT];
    }

    /// The deadline of `timer`, if armed.
    #[cfg(test)]
    pub(crate) fn get(&self, timer: TxTimer) -> Option<Instant> {
        self.slots[timer as usize]
    }

    /// The earliest deadline.
    pub(crate) fn next_timeout(&self) -> Option<Instant> {
        self.slots.iter().flatten().min().copied()
    }

    /// Disarms and returns the timer with the earliest deadline at or before
    /// `now` (ties in declaration order), if any.
    pub(crate) fn pop_expired(&mut self, now: Instant) -> Option<TxTimer> {
        let (i, _) = self
            .slots
            .iter()
            .enumerate()
            .filter_map(|(i, t)| t.filter(|&t| t <= now).map(|t| (i, t)))
            .min_by_key(|&(i, t)| (t, i))?;
        self.slots[i] = None;
        Some(TxTimer::ALL[i])
    }
}

/// Doubles a retransmission interval, capped at `cap` when given
/// (§17.1.1.2 Timer A has no cap; Timers E and G cap at T2).
pub(crate) fn backoff(interval: Duration, cap: Option<Duration>) -> Duration {
    let doubled = interval.saturating_mul(2);
    match cap {
        Some(c) => doubled.min(c.max(interval)),
        None => doubled,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_pops_in_deadline_order() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut t = TimerTable::default();
        assert_eq!(t.next_timeout(), None);
        t.set(TxTimer::B, t0, ms(32_000));
        t.set(TxTimer::A, t0, ms(500));
        t.set(TxTimer::M, t0, ms(500));
        assert_eq!(t.next_timeout(), Some(t0 + ms(500)));
        assert_eq!(t.pop_expired(t0), None);
        assert_eq!(t.pop_expired(t0 + ms(600)), Some(TxTimer::A));
        assert_eq!(t.pop_expired(t0 + ms(600)), Some(TxTimer::M));
        assert_eq!(t.pop_expired(t0 + ms(600)), None);
        assert_eq!(t.get(TxTimer::B), Some(t0 + ms(32_000)));
        t.stop(TxTimer::B);
        assert_eq!(t.next_timeout(), None);
        t.set(TxTimer::K, t0, Duration::MAX);
        assert!(t.next_timeout().is_some(), "capped, not overflowing");
        t.stop_all();
        assert_eq!(t.next_timeout(), None);
        for (i, timer) in TxTimer::ALL.iter().enumerate() {
            assert_eq!(*timer as usize, i, "ALL is in declaration order");
        }
    }

    #[test]
    fn backoff_caps() {
        let s = Duration::from_secs;
        let ms = Duration::from_millis;
        assert_eq!(backoff(ms(500), None), s(1));
        assert_eq!(backoff(s(16), None), s(32));
        assert_eq!(backoff(s(2), Some(s(4))), s(4));
        assert_eq!(backoff(s(4), Some(s(4))), s(4));
        assert_eq!(
            backoff(s(8), Some(s(4))),
            s(8),
            "never shrinks below the current interval"
        );
    }
}
