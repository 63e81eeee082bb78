//! Countries (ISO 3166-1 alpha-2) and the country of an E.164 number.
//!
//! The table is libphonenumber's metadata, through the `phonenumber` crate
//! (see docs/decisions.md): it covers every ITU country calling code and splits
//! the North American Numbering Plan (+1) into its members (US, CA and the
//! Caribbean countries) by area code. A hand-kept list would rot as plans
//! change; libphonenumber's is updated upstream several times a year.

use std::fmt;
use std::str::FromStr;

use phonenumber::metadata::DATABASE;
use thiserror::Error;

use crate::E164;

/// An ISO 3166-1 alpha-2 code that the numbering-plan table knows
/// (upper case, e.g. `US`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Country([u8; 2]);

#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{0:?} is not an ISO 3166-1 alpha-2 country code with a telephone numbering plan")]
pub struct CountryError(pub String);

impl Country {
    pub fn as_str(&self) -> &str {
        // The bytes are checked ASCII upper-case letters at construction.
        std::str::from_utf8(&self.0).unwrap_or("??")
    }
}

impl FromStr for Country {
    type Err = CountryError;
    fn from_str(s: &str) -> Result<Self, CountryError> {
        let b = s.as_bytes();
        if b.len() != 2 || !b.iter().all(u8::is_ascii_uppercase) || DATABASE.by_id(s).is_none() {
            return Err(CountryError(s.to_owned()));
        }
        Ok(Country([b[0], b[1]]))
    }
}

impl fmt::Display for Country {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Country {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Country({})", self.as_str())
    }
}

impl serde::Serialize for Country {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// The country a number belongs to, or `None` when the numbering plan does
/// not place it in one: a non-geographic code (+800, +881, …), a number too
/// short to be a subscriber number, or a +1 number in an unassigned NANP area
/// code (calling plans must not guess: +1 covers 25 countries).
///
/// For calling codes other than +1, a number the table does not recognise in
/// detail still resolves to the code's main country (+39 06 698 → IT even
/// though the table assigns it to VA only for full-length numbers).
pub fn country_of(number: E164) -> Option<Country> {
    let text = number.to_string();
    let parsed = phonenumber::parse(None, &text).ok()?;
    if let Some(id) = parsed.country().id() {
        return id.as_ref().parse().ok();
    }
    let code = parsed.country().code();
    if code == 1 {
        return None;
    }
    let regions = DATABASE.by_code(&code)?;
    let main = regions
        .iter()
        .find(|m| m.is_main_country_for_code())
        .or_else(|| {
            if regions.len() == 1 {
                regions.first()
            } else {
                None
            }
        })?;
    main.id().parse().ok()
}

/// Whether `number` is a valid number of its numbering plan (length and
/// ranges per libphonenumber's metadata): `+12065550100` is, `+1001` (an
/// extension with a `+` put in front) is not.
pub fn is_valid_number(number: E164) -> bool {
    phonenumber::parse(None, number.to_string()).is_ok_and(|p| phonenumber::is_valid(&p))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(n: &str) -> Option<String> {
        country_of(n.parse().unwrap()).map(|c| c.to_string())
    }

    #[test]
    fn nanp_numbers_resolve_to_their_member_country() {
        assert_eq!(c("+12065550100").as_deref(), Some("US"));
        assert_eq!(c("+14165550100").as_deref(), Some("CA"));
        assert_eq!(c("+18765550100").as_deref(), Some("JM"));
        assert_eq!(c("+12425550100").as_deref(), Some("BS"));
        assert_eq!(c("+17875550100").as_deref(), Some("PR"));
        // 999 is not an assigned area code: no guess.
        assert_eq!(c("+19999999999"), None);
    }

    #[test]
    fn other_codes_resolve() {
        assert_eq!(c("+442079460000").as_deref(), Some("GB"));
        assert_eq!(c("+33123456789").as_deref(), Some("FR"));
        assert_eq!(c("+8613800000000").as_deref(), Some("CN"));
        assert_eq!(c("+79001234567").as_deref(), Some("RU"));
        assert_eq!(c("+77011234567").as_deref(), Some("KZ"));
        assert_eq!(c("+3906698").as_deref(), Some("IT"));
        assert_eq!(c("+81312345678").as_deref(), Some("JP"));
        assert_eq!(c("+27211234567").as_deref(), Some("ZA"));
    }

    #[test]
    fn non_geographic_codes_have_no_country() {
        assert_eq!(c("+80012345678"), None);
        assert_eq!(c("+881234567"), None);
        assert_eq!(c("+1"), None);
    }

    #[test]
    fn every_iso_code_of_the_table_parses_and_others_do_not() {
        for id in ["US", "CA", "JM", "GB", "DE", "IN", "BR", "AU"] {
            assert_eq!(id.parse::<Country>().unwrap().as_str(), id);
        }
        for bad in ["us", "USA", "XX", "", "001", "ZZ"] {
            assert!(bad.parse::<Country>().is_err(), "{bad}");
        }
    }

    #[test]
    fn every_region_of_the_table_resolves_its_example_number() {
        // For each region, its example fixed-line number (from the same
        // metadata) must resolve to a country of the same calling code, and
        // to that very region except where regions share one numbering space
        // (MA/EH, GP/BL/MF, IT/VA: the table cannot tell them apart).
        let (mut checked, mut exact) = (0, 0);
        for m in DATABASE.iter() {
            let Some(example) = m
                .descriptors()
                .fixed_line()
                .and_then(|d| d.example().map(str::to_owned))
            else {
                continue;
            };
            if m.id() == "001" {
                continue;
            }
            let n: E164 = format!("+{}{}", m.country_code(), example).parse().unwrap();
            let got = country_of(n).unwrap_or_else(|| panic!("{n} ({}) has no country", m.id()));
            let same_code = DATABASE.by_id(got.as_str()).map(|g| g.country_code());
            assert_eq!(same_code, Some(m.country_code()), "{n}");
            checked += 1;
            exact += usize::from(got.as_str() == m.id());
        }
        assert!(checked > 200, "only {checked} regions checked");
        assert!(
            checked - exact <= 5,
            "{} of {checked} resolved to a sibling region",
            checked - exact
        );
    }
}
