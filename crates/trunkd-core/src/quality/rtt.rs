//! Round-trip time from RTCP report blocks (RFC 3550 §6.4.1), and NTP
//! timestamp helpers.
//!
//! # RFC 3550 §6.4.1
//!
//! A receiver's report block carries LSR, the middle 32 bits of the NTP
//! timestamp of the last SR it received from the source, and DLSR, the
//! delay between receiving that SR and sending the report, both in units of
//! 1/65536 s. The SR's sender, seeing the report arrive at A (middle 32
//! bits of its own NTP clock), computes RTT = A − LSR − DLSR
//! ([`rtt_from_lsr_dlsr`]). That needs the SR to have been *sent by us*.
//!
//! # Why a relay uses [`SrLog`]
//!
//! trunkd relays RTCP end to end: the customer's SRs go to the remote and
//! the remote's reports about the customer's stream come back through
//! trunkd (and the other way round). LSR is then the customer's NTP clock,
//! not trunkd's, so A − LSR means nothing. But trunkd saw that SR go by:
//! it records the SR's NTP middle 32 bits and the `Instant` it forwarded
//! it; when a report block comes back from the remote with that LSR,
//!
//! ```text
//! RTT(trunkd <-> remote) = now − forwarded_at − DLSR
//! ```
//!
//! using only trunkd's monotonic clock (this is how rtpengine computes its
//! per-leg RTT). So:
//!
//! - SRs forwarded towards the remote, with the remote's report blocks,
//!   give RTT trunkd <-> remote (`rtt_btwn_vc_and_rem`);
//! - SRs forwarded towards the customer, with the customer's report
//!   blocks, give RTT trunkd <-> customer (`rtt_btwn_vc_and_cust`).
//!
//! Report blocks count wherever they are: in RRs and inside SRs. A side
//! that sends no RTCP, or whose partner sends no SR (a receive-only
//! peer), has no RTT; SPEC §4 then leaves RTT (and MOS) absent. If trunkd
//! ever originates SRs itself it records them in the same [`SrLog`] with
//! the `Instant` it sent them, and the formula is the same.
//!
//! A result that is negative (DLSR longer than the time trunkd measured)
//! or longer than [`MAX_RTT`] is discarded as a clock or matching error.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// RTTs longer than this are discarded as nonsense.
pub const MAX_RTT: Duration = Duration::from_secs(60);

/// Seconds from the NTP epoch (1900-01-01) to the Unix epoch (1970-01-01).
const NTP_UNIX_OFFSET_SECS: u64 = 2_208_988_800;

/// Number of SRs an [`SrLog`] remembers.
pub const SR_LOG_CAPACITY: usize = 8;

/// RTT = A − LSR − DLSR (RFC 3550 §6.4.1) for a report on an SR that we
/// sent ourselves, where all three are 16.16 fixed-point seconds (units of
/// 1/65536 s) and `arrival_ntp_middle32` is the middle 32 bits of our NTP
/// clock when the report arrived ([`ntp_middle32`]).
///
/// Returns `None` when `lsr` is 0 (the reporter has received no SR), when
/// the result would be negative, or when it exceeds [`MAX_RTT`]. The
/// subtraction A − LSR is modular (the middle 32 bits wrap every 65536 s,
/// about 18.2 hours), so an A slightly before LSR (clock step) gives a huge
/// value and is discarded by the 60 s bound.
pub fn rtt_from_lsr_dlsr(arrival_ntp_middle32: u32, lsr: u32, dlsr: u32) -> Option<Duration> {
    if lsr == 0 {
        return None;
    }
    let since_sr = arrival_ntp_middle32.wrapping_sub(lsr);
    let rtt = since_sr.checked_sub(dlsr)?;
    let rtt = duration_from_ntp_short(rtt);
    (rtt <= MAX_RTT).then_some(rtt)
}

/// A 16.16 fixed-point number of seconds (units of 1/65536 s, as DLSR)
/// as a `Duration`, truncated to the nanosecond.
pub fn duration_from_ntp_short(v: u32) -> Duration {
    let nanos = (u64::from(v) * 1_000_000_000) >> 16;
    Duration::from_nanos(nanos)
}

/// A delay in units of 1/65536 s, as the DLSR field of a report block,
/// rounded to the nearest unit; saturates at `u32::MAX` (≈ 18.2 h).
pub fn dlsr_from_duration(d: Duration) -> u32 {
    let units = (d.as_nanos() * 65_536 + 500_000_000) / 1_000_000_000;
    u32::try_from(units).unwrap_or(u32::MAX)
}

/// The 64-bit NTP timestamp (RFC 5905: 32.32 fixed-point seconds since
/// 1900-01-01 UTC, era 0 wrapping in 2036) of a wall-clock time. Times
/// before 1970 count back from the Unix epoch.
pub fn ntp_from_system_time(t: SystemTime) -> u64 {
    let ntp_epoch_offset = NTP_UNIX_OFFSET_SECS << 32;
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => ntp_epoch_offset.wrapping_add(ntp_from_duration(d)),
        Err(e) => ntp_epoch_offset.wrapping_sub(ntp_from_duration(e.duration())),
    }
}

/// A duration as 32.32 fixed-point seconds (seconds modulo 2^32).
fn ntp_from_duration(d: Duration) -> u64 {
    let frac = (u64::from(d.subsec_nanos()) << 32) / 1_000_000_000;
    (d.as_secs() << 32).wrapping_add(frac)
}

/// The middle 32 bits of a 64-bit NTP timestamp (16.16 fixed-point
/// seconds): what LSR carries (RFC 3550 §6.4.1).
pub fn ntp_middle32(ntp: u64) -> u32 {
    (ntp >> 16) as u32
}

/// Maps monotonic `Instant`s to NTP timestamps through one anchor pair
/// read by the I/O shell (`Instant::now()` and `SystemTime::now()` at the
/// same moment). Used when trunkd itself sends SRs or computes A for
/// [`rtt_from_lsr_dlsr`]; later steps of the wall clock do not affect it.
#[derive(Debug, Clone, Copy)]
pub struct NtpClock {
    anchor: Instant,
    anchor_ntp: u64,
}

impl NtpClock {
    /// `anchor` and `wall` are the same moment.
    pub fn new(anchor: Instant, wall: SystemTime) -> Self {
        NtpClock {
            anchor,
            anchor_ntp: ntp_from_system_time(wall),
        }
    }

    /// The 64-bit NTP timestamp of `t`.
    pub fn ntp_at(&self, t: Instant) -> u64 {
        if t >= self.anchor {
            self.anchor_ntp
                .wrapping_add(ntp_from_duration(t - self.anchor))
        } else {
            self.anchor_ntp
                .wrapping_sub(ntp_from_duration(self.anchor - t))
        }
    }

    /// The middle 32 bits of the NTP timestamp of `t`.
    pub fn middle32_at(&self, t: Instant) -> u32 {
        ntp_middle32(self.ntp_at(t))
    }
}

/// The last SR received from a source, to fill LSR/DLSR when trunkd builds
/// a report block about that source itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LastSrReceived {
    /// Middle 32 bits of the SR's NTP timestamp.
    pub lsr: u32,
    /// When the SR arrived.
    pub received_at: Instant,
}

impl LastSrReceived {
    /// DLSR at `now`: the time since the SR arrived, in 1/65536 s (0 if
    /// `now` is before the arrival).
    pub fn dlsr(&self, now: Instant) -> u32 {
        dlsr_from_duration(now.saturating_duration_since(self.received_at))
    }
}

/// The SRs trunkd forwarded (or sent) in one direction of one call side:
/// their NTP middle 32 bits and when they left trunkd. The last
/// [`SR_LOG_CAPACITY`] are kept in a ring (no allocation); at one SR every
/// ~5 s that is 40 s of history, far longer than a report takes to come
/// back (a receiver reports on the last SR it got, within one RTCP
/// interval). Each call keeps two of these, so the ring is short. Entries are matched by LSR alone: two SRs with the same
/// middle 32 bits would have to be sent within 15 µs of each other.
#[derive(Debug, Clone, Default)]
pub struct SrLog {
    entries: [Option<(u32, Instant)>; SR_LOG_CAPACITY],
    next: usize,
}

impl SrLog {
    pub fn new() -> Self {
        SrLog::default()
    }

    /// Records an SR whose NTP middle 32 bits are `lsr`
    /// ([`crate::quality::SenderInfo::ntp_middle32`]), forwarded at
    /// `forwarded_at`. A second copy of the same SR (a duplicate datagram)
    /// keeps the first time; `lsr` 0 is ignored (it means "no SR").
    pub fn record(&mut self, lsr: u32, forwarded_at: Instant) {
        if lsr == 0 || self.entries.iter().flatten().any(|&(l, _)| l == lsr) {
            return;
        }
        if let Some(slot) = self.entries.get_mut(self.next) {
            *slot = Some((lsr, forwarded_at));
        }
        self.next = (self.next + 1) % SR_LOG_CAPACITY;
    }

    /// RTT for a report block with `lsr` and `dlsr` (1/65536 s) received at
    /// `now`: now − forwarded_at − DLSR. `None` when `lsr` is 0 or unknown
    /// (too old, or an SR that did not pass through here), when the result
    /// is negative, or when it exceeds [`MAX_RTT`].
    pub fn rtt_for_block(&self, lsr: u32, dlsr: u32, now: Instant) -> Option<Duration> {
        if lsr == 0 {
            return None;
        }
        let &(_, at) = self.entries.iter().flatten().find(|&&(l, _)| l == lsr)?;
        let rtt = now
            .checked_duration_since(at)?
            .checked_sub(duration_from_ntp_short(dlsr))?;
        (rtt <= MAX_RTT).then_some(rtt)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn rfc_3550_example() {
        // §6.4.1's example: A = 0xb710:8000 (46864.500 s), DLSR =
        // 0x0005:4000 (5.250 s), LSR = 0xb705:2000 (46853.125 s):
        // A − LSR − DLSR = 0x0006:2000 = 6.125 s.
        let rtt = rtt_from_lsr_dlsr(0xB710_8000, 0xB705_2000, 0x0005_4000);
        assert_eq!(rtt, Some(Duration::from_millis(6125)));
    }

    #[test]
    fn rtt_edge_cases() {
        assert_eq!(rtt_from_lsr_dlsr(100, 0, 0), None, "no SR");
        // DLSR longer than A − LSR: negative.
        assert_eq!(
            rtt_from_lsr_dlsr(0x0001_0000, 0x0000_8000, 0x0000_8001),
            None
        );
        assert_eq!(
            rtt_from_lsr_dlsr(0x0001_0000, 0x0000_8000, 0x0000_8000),
            Some(Duration::ZERO)
        );
        // A before LSR (wraps to ~18 h): absurd.
        assert_eq!(rtt_from_lsr_dlsr(0x0000_1000, 0x0000_2000, 0), None);
        // Exactly 60 s accepted, 60 s + 1 unit not.
        let lsr = 0x1000_0000;
        assert_eq!(rtt_from_lsr_dlsr(lsr + (60 << 16), lsr, 0), Some(MAX_RTT));
        assert_eq!(rtt_from_lsr_dlsr(lsr + (60 << 16) + 1, lsr, 0), None);
        // Across the wrap of the middle 32 bits: 2 s.
        assert_eq!(
            rtt_from_lsr_dlsr(0x0001_0000, 0xFFFF_0000, 0),
            Some(Duration::from_secs(2))
        );
    }

    #[test]
    fn unit_conversions() {
        assert_eq!(
            duration_from_ntp_short(0x0001_8000),
            Duration::from_millis(1500)
        );
        // One unit = 15258.789… ns, truncated.
        assert_eq!(duration_from_ntp_short(1), Duration::from_nanos(15_258));
        assert_eq!(dlsr_from_duration(Duration::from_millis(1500)), 0x0001_8000);
        assert_eq!(dlsr_from_duration(Duration::from_nanos(7_000)), 0);
        assert_eq!(dlsr_from_duration(Duration::from_nanos(8_000)), 1);
        assert_eq!(dlsr_from_duration(Duration::from_secs(100_000)), u32::MAX);
    }

    #[test]
    fn ntp_of_known_times() {
        assert_eq!(ntp_from_system_time(UNIX_EPOCH), 2_208_988_800u64 << 32);
        let t = UNIX_EPOCH + Duration::from_millis(1_700_000_000_500);
        let ntp = ntp_from_system_time(t);
        assert_eq!(ntp >> 32, 1_700_000_000 + 2_208_988_800);
        assert_eq!(ntp as u32, 0x8000_0000);
        // Middle 32: low 16 bits of the seconds, high 16 of the fraction.
        assert_eq!(
            ntp_middle32(ntp),
            (((1_700_000_000u64 + 2_208_988_800) as u32) << 16) | 0x8000
        );
        let before = UNIX_EPOCH - Duration::from_secs(1);
        assert_eq!(ntp_from_system_time(before) >> 32, 2_208_988_799);
    }

    #[test]
    fn ntp_clock_follows_instants() {
        let i0 = Instant::now() + Duration::from_secs(5);
        let clock = NtpClock::new(i0, UNIX_EPOCH + Duration::from_secs(1000));
        let base = (2_208_988_800u64 + 1000) << 32;
        assert_eq!(clock.ntp_at(i0), base);
        assert_eq!(
            clock.ntp_at(i0 + Duration::from_millis(250)),
            base + (1u64 << 30)
        );
        assert_eq!(
            clock.ntp_at(i0 - Duration::from_secs(2)),
            base - (2u64 << 32)
        );
        assert_eq!(
            clock.middle32_at(i0 + Duration::from_millis(500)),
            ntp_middle32(base) + 0x8000
        );
    }

    #[test]
    fn own_sr_round_trip_with_ntp_clock() {
        // trunkd sends an SR at t0, the peer holds it 300 ms (DLSR) and the
        // RR arrives at t0 + 380 ms: RTT 80 ms (± one 1/65536 s unit).
        let t0 = Instant::now();
        let clock = NtpClock::new(
            t0,
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
        );
        let lsr = clock.middle32_at(t0);
        let dlsr = dlsr_from_duration(Duration::from_millis(300));
        let a = clock.middle32_at(t0 + Duration::from_millis(380));
        let rtt = rtt_from_lsr_dlsr(a, lsr, dlsr).unwrap();
        assert!(
            rtt.abs_diff(Duration::from_millis(80)) < Duration::from_micros(31),
            "{rtt:?}"
        );
    }

    #[test]
    fn sr_log_relay_rtt() {
        let t0 = Instant::now();
        let mut log = SrLog::new();
        log.record(0xAAAA_0001, t0);
        // Peer got it, waited 1.5 s, its RR reaches trunkd 1.56 s after
        // forwarding: RTT = 60 ms (DLSR 1.5 s is exact in 1/65536 s).
        let rtt = log.rtt_for_block(0xAAAA_0001, 0x0001_8000, t0 + Duration::from_millis(1560));
        assert_eq!(rtt, Some(Duration::from_millis(60)));
        // Unknown LSR, zero LSR, negative, too old.
        assert_eq!(log.rtt_for_block(0xAAAA_0002, 0, t0), None);
        assert_eq!(log.rtt_for_block(0, 0, t0), None);
        assert_eq!(
            log.rtt_for_block(0xAAAA_0001, 0x0002_0000, t0 + Duration::from_secs(1)),
            None
        );
        assert_eq!(
            log.rtt_for_block(0xAAAA_0001, 0, t0 + Duration::from_secs(61)),
            None
        );
        // now before the forward time.
        let later = t0 + Duration::from_secs(1);
        log.record(0xAAAA_0003, later);
        assert_eq!(log.rtt_for_block(0xAAAA_0003, 0, t0), None);
    }

    #[test]
    fn sr_log_keeps_first_copy_and_forgets_the_oldest() {
        let t0 = Instant::now();
        let mut log = SrLog::new();
        log.record(7, t0);
        log.record(7, t0 + Duration::from_millis(500));
        assert_eq!(
            log.rtt_for_block(7, 0, t0 + Duration::from_secs(1)),
            Some(Duration::from_secs(1))
        );
        log.record(0, t0);
        for i in 0..SR_LOG_CAPACITY as u32 - 1 {
            log.record(100 + i, t0);
        }
        // 16 entries: 7 and 100..=114.
        assert!(log.rtt_for_block(7, 0, t0).is_some());
        log.record(1000, t0);
        assert_eq!(log.rtt_for_block(7, 0, t0), None);
        assert!(log.rtt_for_block(100, 0, t0).is_some());
        assert!(log.rtt_for_block(1000, 0, t0).is_some());
    }

    proptest! {
        #[test]
        fn rtt_is_bounded_and_consistent(a in any::<u32>(), lsr in any::<u32>(), dlsr in any::<u32>()) {
            if let Some(rtt) = rtt_from_lsr_dlsr(a, lsr, dlsr) {
                prop_assert!(rtt <= MAX_RTT);
                prop_assert!(lsr != 0);
                // Adding the RTT and DLSR back gives A (within rounding).
                let back = lsr.wrapping_add(dlsr).wrapping_add(dlsr_from_duration(rtt));
                prop_assert!(back.abs_diff(a) <= 1);
            }
        }

        #[test]
        fn sr_log_recovers_simulated_rtt(rtt_us in 20u64..2_000_000, hold_ms in 0u64..10_000, lsr in 1u32..) {
            let t0 = Instant::now();
            let mut log = SrLog::new();
            log.record(lsr, t0);
            let hold = Duration::from_millis(hold_ms);
            let now = t0 + hold + Duration::from_micros(rtt_us);
            let got = log.rtt_for_block(lsr, dlsr_from_duration(hold), now);
            // DLSR rounds the hold to 1/65536 s: allow one unit (15.3 µs),
            // and keep the RTT above half a unit so it cannot go negative.
            let got = got.map(|d| d.as_micros() as i64);
            prop_assert!(got.is_some_and(|g| (g - rtt_us as i64).abs() <= 16), "{got:?} vs {rtt_us}");
        }
    }
}
