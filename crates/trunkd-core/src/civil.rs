//! UTC calendar time from a `SystemTime`, for record keys (SPEC §5.1
//! `<yyyy>/<mm>/<dd>/<HH.MM.SS.mmm>`) and ISO-8601 event times (§5.4).
//!
//! Hand-written rather than a date crate: it is one well-known algorithm
//! (Howard Hinnant's `civil_from_days`, proleptic Gregorian calendar, no
//! leap seconds, as Unix time has none) and these are its only uses.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

/// A UTC instant split into calendar fields, millisecond precision.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub struct UtcDateTime {
    pub year: i64,
    /// 1..=12
    pub month: u8,
    /// 1..=31
    pub day: u8,
    pub hour: u8,
    pub minute: u8,
    pub second: u8,
    pub millisecond: u16,
}

impl UtcDateTime {
    /// The calendar time of `t`; instants before 1970 are clamped to the
    /// epoch (trunkd never records calls before it started).
    pub fn from_system_time(t: SystemTime) -> Self {
        let ms = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis());
        Self::from_unix_ms(u64::try_from(ms).unwrap_or(u64::MAX))
    }

    /// The calendar time `ms` milliseconds after the Unix epoch.
    pub fn from_unix_ms(ms: u64) -> Self {
        let secs = ms / 1000;
        let days = secs / 86_400;
        let rem = secs % 86_400;
        let (year, month, day) = civil_from_days(i64::try_from(days).unwrap_or(i64::MAX / 2));
        UtcDateTime {
            year,
            month,
            day,
            // Each is below 24, 60, 60 and 1000: the casts are exact.
            hour: (rem / 3600) as u8,
            minute: (rem % 3600 / 60) as u8,
            second: (rem % 60) as u8,
            millisecond: (ms % 1000) as u16,
        }
    }

    /// `YYYY-MM-DDTHH:MM:SS.mmmZ` (RFC 3339 profile of ISO 8601).
    pub fn to_iso8601(&self) -> String {
        format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
            self.year, self.month, self.day, self.hour, self.minute, self.second, self.millisecond
        )
    }
}

impl fmt::Display for UtcDateTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_iso8601())
    }
}

/// (year, month, day) of the day `z` days after 1970-01-01
/// (Hinnant, "chrono-Compatible Low-Level Date Algorithms").
fn civil_from_days(z: i64) -> (i64, u8, u8) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11]
    let d = doy - (153 * mp + 2) / 5 + 1; // [1, 31]
    let m = if mp < 10 { mp + 3 } else { mp - 9 }; // [1, 12]
    (y + i64::from(m <= 2), m as u8, d as u8)
}

/// Days from 1970-01-01 to (y, m, d): the inverse, for tests.
#[cfg(test)]
fn days_from_civil(y: i64, m: u8, d: u8) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::time::Duration;

    fn at(secs: u64, ms: u64) -> String {
        UtcDateTime::from_system_time(UNIX_EPOCH + Duration::from_millis(secs * 1000 + ms))
            .to_iso8601()
    }

    #[test]
    fn known_instants() {
        // Checked against GNU `date -u -d @<secs>`.
        assert_eq!(at(0, 0), "1970-01-01T00:00:00.000Z");
        assert_eq!(at(951_782_400, 0), "2000-02-29T00:00:00.000Z");
        assert_eq!(at(951_868_799, 999), "2000-02-29T23:59:59.999Z");
        assert_eq!(at(1_565_399_625, 7), "2019-08-10T01:13:45.007Z");
        assert_eq!(at(1_709_164_800, 0), "2024-02-29T00:00:00.000Z");
        assert_eq!(at(4_102_444_799, 0), "2099-12-31T23:59:59.000Z");
        assert_eq!(
            at(4_107_542_400, 0),
            "2100-03-01T00:00:00.000Z",
            "2100 is not a leap year"
        );
        assert_eq!(at(253_402_300_799, 0), "9999-12-31T23:59:59.000Z");
        assert_eq!(
            UtcDateTime::from_system_time(UNIX_EPOCH - Duration::from_secs(5)).to_iso8601(),
            "1970-01-01T00:00:00.000Z"
        );
    }

    proptest! {
        #[test]
        fn fields_are_in_range_and_invert(ms in 0u64..400_000_000_000_000) {
            let t = UtcDateTime::from_unix_ms(ms);
            prop_assert!((1..=12).contains(&t.month) && (1..=31).contains(&t.day));
            prop_assert!(t.hour < 24 && t.minute < 60 && t.second < 60 && t.millisecond < 1000);
            let days = days_from_civil(t.year, t.month, t.day);
            let back = ((days * 86_400 + i64::from(t.hour) * 3600 + i64::from(t.minute) * 60 + i64::from(t.second)) * 1000)
                + i64::from(t.millisecond);
            prop_assert_eq!(back, ms as i64);
        }

        #[test]
        fn consecutive_days_follow_each_other(day in 0i64..3_000_000) {
            let (a, b) = (civil_from_days(day), civil_from_days(day + 1));
            prop_assert!(b > a);
            prop_assert!(b.2 == a.2 + 1 || (b.2 == 1 && (b.1 == a.1 % 12 + 1)));
        }
    }
}
