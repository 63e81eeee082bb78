//! E.164 phone numbers.
//!
//! An [`E164`] is `+` followed by 1 to 15 digits, the first of which is not 0
//! (no ITU country code starts with 0). Because the first digit is never 0 the
//! digits are stored as one integer: the type is `Copy`, eight bytes, hashes
//! fast, and a 100,000-number inventory is a plain `HashMap<E164, _>`.

use std::fmt;
use std::num::NonZeroU64;
use std::str::FromStr;

use thiserror::Error;

/// Why a string is not an E.164 number.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum E164Error {
    #[error("must start with '+'")]
    NoPlus,
    #[error("must have 1 to 15 digits after '+', has {0}")]
    Length(usize),
    #[error("must have only digits after '+'")]
    NotDigits,
    #[error("must not start with +0 (no country code starts with 0)")]
    LeadingZero,
}

/// A validated E.164 number (ITU-T E.164: at most 15 digits).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct E164(NonZeroU64);

impl E164 {
    /// The number's digits as an integer (without `+`).
    pub fn digits(self) -> u64 {
        self.0.get()
    }

    /// Parses a number that may lack the `+`, as SIP user parts often do
    /// (`sip:12065550100@host`). Visual separators are not accepted.
    ///
    /// # Errors
    /// As [`E164::from_str`], except a missing `+` is accepted.
    pub fn parse_lenient(s: &str) -> Result<Self, E164Error> {
        match s.strip_prefix('+') {
            Some(_) => s.parse(),
            None => parse_digits(s),
        }
    }
}

fn parse_digits(d: &str) -> Result<E164, E164Error> {
    if d.is_empty() || d.len() > 15 {
        return Err(E164Error::Length(d.len()));
    }
    if !d.bytes().all(|b| b.is_ascii_digit()) {
        return Err(E164Error::NotDigits);
    }
    if d.starts_with('0') {
        return Err(E164Error::LeadingZero);
    }
    let mut n = 0u64;
    for b in d.bytes() {
        n = n * 10 + u64::from(b - b'0');
    }
    NonZeroU64::new(n).map(E164).ok_or(E164Error::LeadingZero)
}

impl FromStr for E164 {
    type Err = E164Error;
    fn from_str(s: &str) -> Result<Self, E164Error> {
        let d = s.strip_prefix('+').ok_or(E164Error::NoPlus)?;
        parse_digits(d)
    }
}

impl fmt::Display for E164 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "+{}", self.0)
    }
}

impl fmt::Debug for E164 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "E164(+{})", self.0)
    }
}

impl serde::Serialize for E164 {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn accepts_the_spec_examples() {
        let n: E164 = "+12065550100".parse().unwrap();
        assert_eq!(n.to_string(), "+12065550100");
        assert_eq!(n.digits(), 12065550100);
        assert!("+1".parse::<E164>().is_ok());
        assert!("+999999999999999".parse::<E164>().is_ok());
    }

    #[test]
    fn rejects_what_is_not_e164() {
        assert_eq!("12065550100".parse::<E164>(), Err(E164Error::NoPlus));
        assert_eq!("+".parse::<E164>(), Err(E164Error::Length(0)));
        assert_eq!(
            "+1234567890123456".parse::<E164>(),
            Err(E164Error::Length(16))
        );
        assert_eq!("+1-206-555".parse::<E164>(), Err(E164Error::NotDigits));
        assert_eq!("+0123".parse::<E164>(), Err(E164Error::LeadingZero));
        assert_eq!("+１２".parse::<E164>(), Err(E164Error::NotDigits));
    }

    #[test]
    fn lenient_parse_takes_sip_user_parts() {
        assert_eq!(E164::parse_lenient("12065550100"), "+12065550100".parse());
        assert_eq!(E164::parse_lenient("+44207"), "+44207".parse());
        assert!(E164::parse_lenient("alice").is_err());
    }

    proptest! {
        #[test]
        fn display_round_trips(s in "\\+[1-9][0-9]{0,14}") {
            let n: E164 = s.parse().unwrap();
            prop_assert_eq!(n.to_string(), s);
        }

        #[test]
        fn never_panics(s in "\\PC*") {
            let _ = s.parse::<E164>();
            let _ = E164::parse_lenient(&s);
        }

        #[test]
        fn order_of_equal_length_numbers_is_numeric(a in 1u64..999_999_999_999_999, b in 1u64..999_999_999_999_999) {
            let x: E164 = format!("+{a}").parse().unwrap();
            let y: E164 = format!("+{b}").parse().unwrap();
            prop_assert_eq!(x == y, a == b);
        }
    }
}
