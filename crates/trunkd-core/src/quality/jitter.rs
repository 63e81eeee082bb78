//! Interarrival jitter (RFC 3550 §6.4.1 and Appendix A.8).
//!
//! For packets i and j (j received after i), with arrival times R and RTP
//! timestamps S in the stream's clock-rate units,
//!
//! ```text
//! D(i,j) = (Rj − Ri) − (Sj − Si)
//! J      = J + (|D(i−1,i)| − J) / 16
//! ```
//!
//! where i−1 is the previous packet *in arrival order* (A.8 keeps the
//! previous packet's transit `R − S`; the difference of two transits is D).
//! Arrival times are `Instant`s converted to the clock rate; D is computed
//! exactly in integers (nanoseconds × clock rate), so a perfectly paced
//! stream has a jitter of exactly 0 whatever its clock rate, and the only
//! rounding is in the final `f64` filter. The integers are 64-bit, which
//! the relay computes for every packet at a native instruction's cost
//! (128-bit ones cost a library call per conversion): D is exact for gaps
//! between two packets of up to 21 hours at 90 kHz (days at the audio
//! rates) and saturates beyond, where it is huge either way. RTP timestamps wrap modulo 2^32
//! and their difference is taken as a signed 32-bit value.
//!
//! The filter output is in timestamp units (what an RR block carries);
//! [`Jitter::jitter_us`] converts it to microseconds for SPEC §4.
//!
//! Analytic checks used by the tests: a stream whose arrivals alternate
//! +d and −d around a perfect schedule has |D| = 2d on every packet, so J
//! converges to 2d (J_n = 2d·(1 − (15/16)^n)); with the sign of the offset
//! drawn at random, |D| is 0 or 2d with probability ½ each, so J hovers
//! around E|D| = d.

use std::time::Instant;

const NANOS_PER_SEC: i64 = 1_000_000_000;

#[derive(Clone, Copy, Debug)]
struct Previous {
    arrival: Instant,
    rtp_timestamp: u32,
}

/// The RFC 3550 A.8 jitter estimator for one RTP source.
#[derive(Clone, Debug, Default)]
pub struct Jitter {
    prev: Option<Previous>,
    /// Clock rate (Hz) the estimate is in; 0 until the first packet.
    clock_rate: u32,
    /// J, in RTP timestamp units (ticks of `clock_rate`).
    jitter_ts: f64,
}

impl Jitter {
    /// An estimator with J = 0 and no previous packet.
    pub fn new() -> Self {
        Jitter::default()
    }

    /// Feeds one packet: `arrival` is when it was received, `rtp_timestamp`
    /// its RTP timestamp, `clock_rate` the payload's RTP clock rate in Hz
    /// (8000 for G.711). The first packet (and the first after
    /// [`Jitter::restart_reference`]) only sets the reference.
    ///
    /// A packet with `clock_rate` 0 is ignored. A change of clock rate (a
    /// codec change on the same SSRC) rescales J to the new rate and
    /// restarts the reference, since timestamps of the two codecs are not
    /// comparable.
    pub fn update(&mut self, arrival: Instant, rtp_timestamp: u32, clock_rate: u32) {
        if clock_rate == 0 {
            return;
        }
        if clock_rate != self.clock_rate {
            if self.clock_rate != 0 {
                self.jitter_ts *= f64::from(clock_rate) / f64::from(self.clock_rate);
            }
            self.clock_rate = clock_rate;
            self.prev = None;
        }
        if let Some(prev) = self.prev {
            // Arrival difference in ns, signed (a caller may pass arrivals
            // slightly out of order).
            let arrival_ns: i64 = if arrival >= prev.arrival {
                i64::try_from((arrival - prev.arrival).as_nanos()).unwrap_or(i64::MAX)
            } else {
                -i64::try_from((prev.arrival - arrival).as_nanos()).unwrap_or(i64::MAX)
            };
            // |ΔS| ≤ 2^31, so ΔS·1e9 ≤ 2.2e18 fits; ΔR·rate and the
            // difference saturate past the range in the module docs.
            let ts_diff = i64::from(rtp_timestamp.wrapping_sub(prev.rtp_timestamp) as i32);
            // D in units of 1e-9 timestamp ticks: (ΔR·rate − ΔS·1e9).
            let d_scaled = arrival_ns
                .saturating_mul(i64::from(clock_rate))
                .saturating_sub(ts_diff * NANOS_PER_SEC);
            let d_ts = d_scaled.unsigned_abs() as f64 / NANOS_PER_SEC as f64;
            self.jitter_ts += (d_ts - self.jitter_ts) / 16.0;
        }
        self.prev = Some(Previous {
            arrival,
            rtp_timestamp,
        });
    }

    /// Forgets the previous packet but keeps J: the next packet only sets
    /// the reference. Used when the sequence restarts (RFC 3550 A.1
    /// re-synchronisation), whose timestamps need not follow the old ones.
    pub fn restart_reference(&mut self) {
        self.prev = None;
    }

    /// J in RTP timestamp units, as an RR block's "interarrival jitter"
    /// field (RFC 3550 §6.4.1), rounded to the nearest tick.
    pub fn jitter_ts(&self) -> u32 {
        // Saturating float-to-int cast; J is never negative.
        self.jitter_ts.round() as u32
    }

    /// J in RTP timestamp units, unrounded.
    pub fn jitter_ts_f64(&self) -> f64 {
        self.jitter_ts
    }

    /// J converted to microseconds with the stream's clock rate (SPEC §4),
    /// rounded to the nearest µs; 0 before any packet.
    pub fn jitter_us(&self) -> u64 {
        if self.clock_rate == 0 {
            return 0;
        }
        (self.jitter_ts * 1e6 / f64::from(self.clock_rate)).round() as u64
    }

    /// The clock rate (Hz) of the last packet, 0 before any.
    pub fn clock_rate(&self) -> u32 {
        self.clock_rate
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::time::Duration;

    fn t0() -> Instant {
        // Leave room for negative offsets.
        Instant::now() + Duration::from_secs(10)
    }

    #[test]
    fn first_packet_only_sets_reference() {
        let mut j = Jitter::new();
        assert_eq!(j.jitter_us(), 0);
        j.update(t0(), 1234, 8000);
        assert_eq!(j.jitter_ts_f64(), 0.0);
        assert_eq!(j.clock_rate(), 8000);
    }

    #[test]
    fn one_late_packet_by_hand() {
        // 8 kHz, 20 ms / 160 ticks. Packet 2 arrives 2 ms late (16 ticks):
        // D = 16 -> J = 16/16 = 1 tick = 125 µs.
        // Packet 3 on time: D = (20 − 2) ms − 20 ms = −16 ticks -> |D| = 16,
        // J = 1 + (16 − 1)/16 = 1.9375 ticks = 242.1875 µs -> 242.
        let t = t0();
        let mut j = Jitter::new();
        j.update(t, 0, 8000);
        j.update(t + Duration::from_millis(22), 160, 8000);
        assert_eq!(j.jitter_ts_f64(), 1.0);
        assert_eq!(j.jitter_us(), 125);
        j.update(t + Duration::from_millis(40), 320, 8000);
        assert_eq!(j.jitter_ts_f64(), 1.9375);
        assert_eq!(j.jitter_ts(), 2);
        assert_eq!(j.jitter_us(), 242);
    }

    #[test]
    fn timestamp_wrap_is_a_small_step() {
        let t = t0();
        let mut j = Jitter::new();
        j.update(t, u32::MAX - 79, 8000);
        j.update(t + Duration::from_millis(20), 80, 8000);
        assert_eq!(j.jitter_ts_f64(), 0.0);
    }

    #[test]
    fn clock_rate_change_rescales_and_restarts_reference() {
        let t = t0();
        let mut j = Jitter::new();
        j.update(t, 0, 8000);
        j.update(t + Duration::from_millis(22), 160, 8000); // J = 1 tick @ 8 kHz
        j.update(t + Duration::from_millis(40), 999_999, 48_000); // reference only
        assert_eq!(j.jitter_ts_f64(), 6.0); // 1 × 48000/8000
        assert_eq!(j.jitter_us(), 125);
    }

    #[test]
    fn zero_clock_rate_is_ignored() {
        let mut j = Jitter::new();
        j.update(t0(), 0, 0);
        assert_eq!(j.clock_rate(), 0);
        assert_eq!(j.jitter_us(), 0);
    }

    #[test]
    fn alternating_offsets_converge_to_two_d() {
        // Arrivals i·20 ms + (−1)^i · 3 ms: |D| = 6 ms = 48 ticks each time,
        // J_n = 48·(1 − (15/16)^n) -> 48 ticks = 6000 µs.
        let t = t0();
        let mut j = Jitter::new();
        let d = Duration::from_millis(3);
        for i in 0..400u32 {
            let base = t + Duration::from_millis(20) * i;
            let at = if i % 2 == 0 { base + d } else { base - d };
            j.update(at, 160 * i, 8000);
        }
        assert!(
            (j.jitter_ts_f64() - 48.0).abs() < 1e-6,
            "{}",
            j.jitter_ts_f64()
        );
        assert_eq!(j.jitter_us(), 6000);
        // After n = 10 updates the closed form holds.
        let mut j = Jitter::new();
        for i in 0..=10u32 {
            let base = t + Duration::from_millis(20) * i;
            let at = if i % 2 == 0 { base + d } else { base - d };
            j.update(at, 160 * i, 8000);
        }
        let expect = 48.0 * (1.0 - (15.0f64 / 16.0).powi(10));
        assert!((j.jitter_ts_f64() - expect).abs() < 1e-9);
    }

    #[test]
    fn a_gap_past_the_exact_range_saturates_to_a_huge_finite_jitter() {
        let t = t0();
        let mut j = Jitter::new();
        j.update(t, 0, 90_000);
        // 30 hours at 90 kHz: ΔR·rate overflows 64 bits.
        j.update(t + Duration::from_secs(30 * 3600), 1, 90_000);
        let got = j.jitter_ts_f64();
        assert!(got.is_finite() && got > 1e8, "{got}");
    }

    proptest! {
        /// The 64-bit arithmetic gives the exact D (checked against 128-bit
        /// integers) for any gap up to 20 hours, at any rate, either sign.
        #[test]
        fn d_is_exact_in_64_bits_for_gaps_up_to_20_hours(
            rate in prop::sample::select(vec![8000u32, 16_000, 48_000, 90_000]),
            gap_ns in 0u64..72_000_000_000_000,
            ts0 in any::<u32>(),
            ts_step in any::<u32>(),
        ) {
            let t = t0();
            let mut j = Jitter::new();
            j.update(t, ts0, rate);
            j.update(t + Duration::from_nanos(gap_ns), ts0.wrapping_add(ts_step), rate);
            let d = i128::from(gap_ns) * i128::from(rate)
                - i128::from(ts_step as i32) * 1_000_000_000;
            let want = d.unsigned_abs() as f64 / 1e9 / 16.0;
            prop_assert_eq!(j.jitter_ts_f64(), want);
        }

        #[test]
        fn perfectly_paced_stream_has_zero_jitter(
            rate in prop::sample::select(vec![8000u32, 16_000, 44_100, 48_000, 90_000]),
            // 10 ms steps: a whole number of ticks at every rate listed.
            ptime_10ms in 1u64..=12,
            ts0 in any::<u32>(),
            n in 2usize..500,
        ) {
            let ptime_ms = 10 * ptime_10ms;
            let t = t0();
            let ticks = u64::from(rate) * ptime_ms / 1000;
            let mut j = Jitter::new();
            for i in 0..n as u64 {
                let ts = ts0.wrapping_add((ticks * i) as u32);
                j.update(t + Duration::from_millis(ptime_ms * i), ts, rate);
            }
            prop_assert_eq!(j.jitter_ts_f64(), 0.0);
            prop_assert_eq!(j.jitter_us(), 0);
        }

        #[test]
        fn alternating_offsets_any_rate(
            rate in prop::sample::select(vec![8000u32, 16_000, 48_000]),
            d_us in 1u64..20_000,
            ts0 in any::<u32>(),
        ) {
            // Converges to 2d whatever the clock rate: J_us -> 2·d_us
            // (200 updates leave 2d·(15/16)^199 ≈ 2d·2.6e-6 of error).
            let t = t0();
            let ticks = rate / 50;
            let mut j = Jitter::new();
            for i in 0..200u64 {
                let base = t + Duration::from_millis(20 * i);
                let d = Duration::from_micros(d_us);
                let at = if i % 2 == 0 { base + d } else { base - d };
                j.update(at, ts0.wrapping_add(ticks.wrapping_mul(i as u32)), rate);
            }
            let got = j.jitter_ts_f64() * 1e6 / f64::from(rate);
            let want = 2.0 * d_us as f64;
            prop_assert!((got - want).abs() <= want * 1e-5 + 1e-6, "got {got} want {want}");
        }

        #[test]
        fn random_sign_offsets_hover_around_d(seed in any::<u64>()) {
            // |D| is 0 or 2d with probability ½ each: E|D| = d. J is an
            // exponential average of the last ~16 samples, so it wanders;
            // average J over the run instead and allow 15 %.
            let t = t0();
            let d = Duration::from_millis(4);
            let mut rng = seed | 1;
            let mut j = Jitter::new();
            let mut sum = 0.0;
            let n = 4000u32;
            for i in 0..n {
                rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
                let base = t + Duration::from_millis(20) * i;
                let at = if rng & 1 == 0 { base + d } else { base - d };
                j.update(at, 160 * i, 8000);
                if i >= 100 { sum += j.jitter_ts_f64(); }
            }
            let mean_ts = sum / f64::from(n - 100);
            // d = 4 ms = 32 ticks.
            prop_assert!((mean_ts - 32.0).abs() < 32.0 * 0.15, "{mean_ts}");
        }
    }
}
