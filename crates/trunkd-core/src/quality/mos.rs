//! MOS from a simplified E-model R-factor (SPEC §4, after ITU-T G.107).
//!
//! ```text
//! latency (ms) = RTT/2 + 2·jitter + 10
//! R = 93.2 − latency/40              if latency < 160 ms
//! R = 93.2 − (latency − 120)/10      otherwise
//! R = R − 2.5 · loss%
//! MOS = 1 + 0.035·R + 7·10⁻⁶·R·(R − 60)·(100 − R), clamped to [1.0, 4.4]
//! ```
//!
//! The two latency branches meet at 160 ms (R = 89.2 on both sides). The
//! MOS polynomial is G.107's, which is defined for 0 ≤ R ≤ 100 and fixes
//! MOS = 1 for R < 0 and 4.5 for R > 100; below 0 the polynomial rises
//! again (R = −7.8 would give 1.126), so R < 0 is mapped to 1.0 before the
//! clamp. With that rule MOS never increases when RTT, jitter or loss grow.
//!
//! **Without an RTT there is no MOS** ([`mos`] returns `None`): RTT is
//! absent when the peer sends no RTCP (SPEC §4), and a MOS computed with a
//! made-up delay would look precise while being a guess. rtpengine does the
//! same.
//!
//! # Worked examples (the tests check each)
//!
//! ```text
//! 1. RTT 40 ms, jitter 5 ms, loss 1 %
//!    latency = 40/2 + 2·5 + 10 = 40 ms (< 160)
//!    R   = 93.2 − 40/40 − 2.5·1 = 89.7
//!    MOS = 1 + 0.035·89.7 + 7e-6·89.7·29.7·10.3
//!        = 1 + 3.1395 + 0.192081 = 4.3316
//!
//! 2. RTT 300 ms, jitter 20 ms, no loss
//!    latency = 150 + 40 + 10 = 200 ms (≥ 160)
//!    R   = 93.2 − (200 − 120)/10 = 85.2
//!    MOS = 1 + 2.982 + 7e-6·85.2·25.2·14.8 = 1 + 2.982 + 0.222433 = 4.2044
//!
//! 3. RTT 0, jitter 0, no loss (upper clamp)
//!    latency = 10 ms; R = 93.2 − 0.25 = 92.95
//!    MOS = 1 + 3.25325 + 0.151144 = 4.4044 -> 4.4
//!
//! 4. RTT 40 ms, jitter 5 ms, loss 40 % (R < 0)
//!    R = 92.2 − 100 = −7.8 -> MOS 1.0 (the bare polynomial gives 1.126)
//!
//! 5. RTT 400 ms, jitter 50 ms, loss 10 %
//!    latency = 200 + 100 + 10 = 310 ms; R = 93.2 − 19 − 25 = 49.2
//!    MOS = 1 + 1.722 + 7e-6·49.2·(−10.8)·50.8 = 2.722 − 0.188952 = 2.5330
//! ```

use std::time::Duration;

/// MOS at or above this is reported as this (SPEC §4 upper clamp).
pub const MOS_MAX: f64 = 4.4;
/// MOS floor.
pub const MOS_MIN: f64 = 1.0;

/// The R-factor for a round-trip time, a jitter in microseconds and a loss
/// in percent (0–100; values outside are clamped, NaN counts as 0).
pub fn r_factor(rtt: Duration, jitter_us: u64, loss_percent: f64) -> f64 {
    let rtt_ms = rtt.as_secs_f64() * 1000.0;
    let jitter_ms = jitter_us as f64 / 1000.0;
    let latency_ms = rtt_ms / 2.0 + 2.0 * jitter_ms + 10.0;
    let r = if latency_ms < 160.0 {
        93.2 - latency_ms / 40.0
    } else {
        93.2 - (latency_ms - 120.0) / 10.0
    };
    let loss = if loss_percent.is_nan() {
        0.0
    } else {
        loss_percent.clamp(0.0, 100.0)
    };
    r - 2.5 * loss
}

/// MOS for an R-factor: G.107's polynomial for 0 ≤ R ≤ 100, 1.0 below 0,
/// then clamped to [1.0, 4.4].
pub fn mos_from_r(r: f64) -> f64 {
    if r.is_nan() || r < 0.0 {
        return MOS_MIN;
    }
    let r = r.min(100.0);
    let m = 1.0 + 0.035 * r + 7e-6 * r * (r - 60.0) * (100.0 - r);
    m.clamp(MOS_MIN, MOS_MAX)
}

/// MOS (1.0–4.4) for SPEC §4 from the RTT, the interarrival jitter in µs
/// and the loss in percent; `None` without an RTT (see the module docs).
pub fn mos(rtt: Option<Duration>, jitter_us: u64, loss_percent: f64) -> Option<f64> {
    rtt.map(|rtt| mos_from_r(r_factor(rtt, jitter_us, loss_percent)))
}

/// `lost` out of `expected` packets, in percent (0 when nothing was
/// expected; at most 100).
pub fn loss_percent(lost: u64, expected: u64) -> f64 {
    if expected == 0 {
        return 0.0;
    }
    (lost as f64 * 100.0 / expected as f64).min(100.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ms(v: u64) -> Option<Duration> {
        Some(Duration::from_millis(v))
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn worked_example_1_short_latency_with_loss() {
        // latency = 40/2 + 2·5 + 10 = 40; R = 93.2 − 1 − 2.5·1 = 89.7
        assert!(close(r_factor(Duration::from_millis(40), 5000, 1.0), 89.7));
        // 1 + 0.035·89.7 + 7e-6·89.7·29.7·10.3 = 1 + 3.1395 + 0.192080889
        assert!(close(mos(ms(40), 5000, 1.0).unwrap(), 4.331_580_889));
    }

    #[test]
    fn worked_example_2_long_latency_branch() {
        // latency = 150 + 40 + 10 = 200 ≥ 160: R = 93.2 − (200 − 120)/10 = 85.2
        assert!(close(
            r_factor(Duration::from_millis(300), 20_000, 0.0),
            85.2
        ));
        // 1 + 2.982 + 7e-6·85.2·25.2·14.8 = 1 + 2.982 + 0.222433344
        assert!(close(mos(ms(300), 20_000, 0.0).unwrap(), 4.204_433_344));
    }

    #[test]
    fn worked_example_3_upper_clamp() {
        // latency 10: R = 92.95; polynomial 4.404394368 > 4.4
        assert!(close(r_factor(Duration::ZERO, 0, 0.0), 92.95));
        assert_eq!(mos(Some(Duration::ZERO), 0, 0.0), Some(4.4));
    }

    #[test]
    fn worked_example_4_negative_r_is_floor() {
        // R = 92.2 − 2.5·40 = −7.8 < 0 -> 1.0 (polynomial: 1.126062664)
        assert!(close(r_factor(Duration::from_millis(40), 5000, 40.0), -7.8));
        assert_eq!(mos(ms(40), 5000, 40.0), Some(1.0));
    }

    #[test]
    fn worked_example_5_mid_range() {
        // latency = 200 + 100 + 10 = 310: R = 93.2 − 19 − 25 = 49.2
        assert!(close(
            r_factor(Duration::from_millis(400), 50_000, 10.0),
            49.2
        ));
        // 1 + 1.722 + 7e-6·49.2·(−10.8)·50.8 = 2.722 − 0.188951616
        assert!(close(mos(ms(400), 50_000, 10.0).unwrap(), 2.533_048_384));
    }

    #[test]
    fn branches_meet_at_160_ms() {
        // latency 160 exactly (RTT 300, jitter 0): long branch, 93.2 − 4.
        assert!(close(r_factor(Duration::from_millis(300), 0, 0.0), 89.2));
        // latency just below: 93.2 − 159.999/40 ≈ 89.2.
        let r = r_factor(Duration::from_micros(299_998), 0, 0.0);
        assert!((r - 89.2).abs() < 1e-4);
    }

    #[test]
    fn low_r_polynomial_dip_is_clamped_to_one() {
        // At R = 3 the polynomial is 1 + 0.105 + 7e-6·3·(−57)·97 = 0.988891.
        assert_eq!(mos_from_r(3.0), 1.0);
        assert_eq!(mos_from_r(0.0), 1.0);
        assert_eq!(mos_from_r(-50.0), 1.0);
        assert_eq!(mos_from_r(f64::NAN), 1.0);
        // R = 20: 1 + 0.7 + 7e-6·20·(−40)·80 = 1.252.
        assert!(close(mos_from_r(20.0), 1.252));
        assert_eq!(mos_from_r(150.0), 4.4);
    }

    #[test]
    fn no_rtt_no_mos() {
        assert_eq!(mos(None, 0, 0.0), None);
    }

    #[test]
    fn odd_loss_inputs() {
        assert_eq!(
            r_factor(Duration::ZERO, 0, -5.0),
            r_factor(Duration::ZERO, 0, 0.0)
        );
        assert_eq!(
            r_factor(Duration::ZERO, 0, f64::NAN),
            r_factor(Duration::ZERO, 0, 0.0)
        );
        assert_eq!(
            r_factor(Duration::ZERO, 0, 500.0),
            r_factor(Duration::ZERO, 0, 100.0)
        );
        assert_eq!(mos(Some(Duration::ZERO), 0, f64::INFINITY), Some(1.0));
    }

    #[test]
    fn loss_percent_values() {
        assert_eq!(loss_percent(0, 0), 0.0);
        assert_eq!(loss_percent(5, 0), 0.0);
        assert_eq!(loss_percent(1, 200), 0.5);
        assert_eq!(loss_percent(300, 200), 100.0);
    }

    proptest! {
        #[test]
        fn monotone_non_increasing(
            rtt_us in 0u64..3_000_000, jitter_us in 0u64..500_000, loss in 0.0f64..100.0,
            d_rtt in 0u64..500_000, d_jit in 0u64..100_000, d_loss in 0.0f64..20.0,
        ) {
            let rtt = Duration::from_micros(rtt_us);
            let base = mos(Some(rtt), jitter_us, loss).unwrap();
            prop_assert!((1.0..=4.4).contains(&base));
            let worse_rtt = mos(Some(rtt + Duration::from_micros(d_rtt)), jitter_us, loss).unwrap();
            let worse_jit = mos(Some(rtt), jitter_us + d_jit, loss).unwrap();
            let worse_loss = mos(Some(rtt), jitter_us, loss + d_loss).unwrap();
            prop_assert!(worse_rtt <= base, "rtt {base} -> {worse_rtt}");
            prop_assert!(worse_jit <= base, "jitter {base} -> {worse_jit}");
            prop_assert!(worse_loss <= base, "loss {base} -> {worse_loss}");
        }

        #[test]
        fn mos_from_r_is_monotone(a in -200.0f64..200.0, d in 0.0f64..50.0) {
            prop_assert!(mos_from_r(a) <= mos_from_r(a + d));
        }
    }
}
