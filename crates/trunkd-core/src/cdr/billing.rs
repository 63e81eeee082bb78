//! Billable duration (SPEC §5.1): `BillableDurationSeconds` is the
//! answered time rounded up to whole seconds; `BillableDurationMinutes` is
//! those seconds in tenths of a minute (6-second increments), rounded up.
//!
//! | answered for | seconds | minutes |
//! |--------------|---------|---------|
//! | not answered | 0       | 0.0     |
//! | 0 ms         | 0       | 0.0     |
//! | 1 ms         | 1       | 0.1     |
//! | 6 s          | 6       | 0.1     |
//! | 6.001 s      | 7       | 0.2     |
//! | 60 s         | 60      | 1.0     |

use serde::{Serialize, Serializer};

/// Whole seconds, rounded up: `ceil(answered_ms / 1000)`.
pub fn billable_seconds(answered_ms: u64) -> u64 {
    answered_ms.div_ceil(1000)
}

/// A duration in tenths of a minute, written in JSON as a number with one
/// decimal place (`0.1`, `1.5`, `12.0`).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug, Default)]
pub struct MinuteTenths(pub u64);

impl MinuteTenths {
    /// `ceil(seconds / 6)`: each started 6-second increment counts.
    pub fn from_billable_seconds(seconds: u64) -> Self {
        MinuteTenths(seconds.div_ceil(6))
    }
}

impl Serialize for MinuteTenths {
    /// As `tenths as f64 / 10.0`. Dividing an exact integer by 10 gives the
    /// double nearest to the decimal `t/10`, and serde_json prints the
    /// shortest text that reads back as that double: the decimal itself
    /// with one digit after the point (`1.5`, never `1.5000000000000002`,
    /// and `1.0` for whole minutes). Exact up to 2⁵³ tenths; the tests check
    /// the text up to 10¹⁰ tenths (19,000 years of call).
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // Up to 2^53 the conversion is exact; calls never come near it.
        s.serialize_f64(self.0 as f64 / 10.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn minutes(ms: u64) -> String {
        serde_json::to_string(&MinuteTenths::from_billable_seconds(billable_seconds(ms))).unwrap()
    }

    #[test]
    fn edge_cases() {
        assert_eq!((billable_seconds(0), minutes(0)), (0, "0.0".into()));
        assert_eq!((billable_seconds(1), minutes(1)), (1, "0.1".into()));
        assert_eq!((billable_seconds(999), minutes(999)), (1, "0.1".into()));
        assert_eq!((billable_seconds(1000), minutes(1000)), (1, "0.1".into()));
        assert_eq!((billable_seconds(1001), minutes(1001)), (2, "0.1".into()));
        assert_eq!((billable_seconds(6000), minutes(6000)), (6, "0.1".into()));
        assert_eq!((billable_seconds(6001), minutes(6001)), (7, "0.2".into()));
        assert_eq!(
            (billable_seconds(18_000), minutes(18_000)),
            (18, "0.3".into())
        );
        assert_eq!(
            (billable_seconds(60_000), minutes(60_000)),
            (60, "1.0".into())
        );
        assert_eq!(
            (billable_seconds(90_000), minutes(90_000)),
            (90, "1.5".into())
        );
        assert_eq!(billable_seconds(u64::MAX), u64::MAX / 1000 + 1);
    }

    proptest! {
        #[test]
        fn json_text_has_exactly_one_decimal(t in 0u64..10_000_000_000) {
            let text = serde_json::to_string(&MinuteTenths(t)).unwrap();
            prop_assert_eq!(text, format!("{}.{}", t / 10, t % 10));
        }

        #[test]
        fn rounding_is_up_and_tight(ms in 0u64..100_000_000_000) {
            let s = billable_seconds(ms);
            prop_assert!(s * 1000 >= ms && (s == 0 || (s - 1) * 1000 < ms));
            let t = MinuteTenths::from_billable_seconds(s).0;
            prop_assert!(t * 6 >= s && (t == 0 || (t - 1) * 6 < s));
        }
    }
}
