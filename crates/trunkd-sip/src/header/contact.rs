//! Contact (RFC 3261 §20.10), including the `*` wildcard of REGISTER
//! (§10.2.2), and the Route / Record-Route lists (§20.34, §20.30).

use bytes::Bytes;

use crate::error::SyntaxError;
use crate::header::NameAddr;

/// The value(s) of the Contact header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Contact {
    /// `Contact: *` (only valid alone, §20.10).
    Wildcard,
    /// One or more addresses, in order.
    Addresses(Vec<NameAddr>),
}

impl Contact {
    /// Parses all Contact values (already split at top-level commas).
    pub fn parse(values: &[Bytes]) -> Result<Contact, SyntaxError> {
        if values.iter().any(|v| &v[..] == b"*") {
            return if values.len() == 1 {
                Ok(Contact::Wildcard)
            } else {
                Err(SyntaxError("* mixed with addresses"))
            };
        }
        values
            .iter()
            .map(|v| NameAddr::parse(v, false))
            .collect::<Result<Vec<_>, _>>()
            .map(Contact::Addresses)
    }

    /// Checks the values as [`Contact::parse`] would, with the same
    /// errors, building nothing (validation keeps no Contact).
    pub(crate) fn check(values: &[Bytes]) -> Result<(), SyntaxError> {
        if values.iter().any(|v| &v[..] == b"*") {
            return if values.len() == 1 {
                Ok(())
            } else {
                Err(SyntaxError("* mixed with addresses"))
            };
        }
        values
            .iter()
            .try_for_each(|v| NameAddr::check(v, false, |_, _| ()))
    }

    /// The addresses (empty for the wildcard).
    pub fn addresses(&self) -> &[NameAddr] {
        match self {
            Contact::Wildcard => &[],
            Contact::Addresses(a) => a,
        }
    }
}

/// Parses Route / Record-Route values: name-addr form only.
pub(crate) fn parse_route(values: &[Bytes]) -> Result<Vec<NameAddr>, SyntaxError> {
    values.iter().map(|v| NameAddr::parse(v, true)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vals(v: &[&'static str]) -> Vec<Bytes> {
        v.iter().map(|s| Bytes::from_static(s.as_bytes())).collect()
    }

    #[test]
    fn wildcard() {
        assert_eq!(Contact::parse(&vals(&["*"])), Ok(Contact::Wildcard));
        assert!(Contact::parse(&vals(&["*", "<sip:a@b>"])).is_err());
        assert!(Contact::Wildcard.addresses().is_empty());
    }

    #[test]
    fn addresses() {
        let c = Contact::parse(&vals(&["<sip:a@b>;expires=60", "sip:c@d;q=0.5"])).unwrap();
        assert_eq!(c.addresses().len(), 2);
        assert!(Contact::parse(&vals(&[""])).is_err());
        assert!(parse_route(&vals(&["sip:a@b"])).is_err());
        assert_eq!(parse_route(&vals(&["<sip:a@b;lr>"])).unwrap().len(), 1);
    }
}
