//! Resource identifiers.
//!
//! Ids are cheap to clone (`Arc<str>`) because they are copied into every call,
//! record and metric label. Each kind has its own type so a `VcId` can never be
//! passed where a `GroupId` is expected.

use std::fmt;
use std::sync::Arc;

use thiserror::Error;

/// Why a string is not a valid id.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum IdError {
    #[error("must not be empty")]
    Empty,
    #[error("is {0} characters long, at most 64 are allowed")]
    TooLong(usize),
    #[error("contains {0:?}; allowed are {1}")]
    BadChar(char, &'static str),
}

fn check(s: &str, allowed: fn(char) -> bool, what: &'static str) -> Result<(), IdError> {
    if s.is_empty() {
        return Err(IdError::Empty);
    }
    let n = s.chars().count();
    if n > 64 {
        return Err(IdError::TooLong(n));
    }
    match s.chars().find(|c| !allowed(*c)) {
        Some(c) => Err(IdError::BadChar(c, what)),
        None => Ok(()),
    }
}

/// A voice connector id is also the first DNS label of the host customers
/// send to (`<vc-id>.<outbound_host_domain>`), hence lowercase letters, digits
/// and `-` only.
fn vc_char(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'
}

/// Other ids never appear in a hostname; `_` and `.` are allowed too.
fn other_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $allowed:expr, $what:expr) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(Arc<str>);

        impl $name {
            /// Validates and wraps `s`.
            ///
            /// # Errors
            /// When `s` is empty, longer than 64 characters or has a character
            /// outside the allowed set.
            pub fn new(s: &str) -> Result<Self, IdError> {
                check(s, $allowed, $what)?;
                Ok(Self(Arc::from(s)))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), &*self.0)
            }
        }

        impl std::str::FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                Self::new(s)
            }
        }

        impl std::borrow::Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }
    };
}

id_type!(
    /// `[a-z0-9-]{1,64}`: a voice connector.
    VcId, vc_char, "a-z, 0-9 and '-'"
);
id_type!(
    /// A voice connector group.
    GroupId, other_char, "A-Z, a-z, 0-9, '-', '_' and '.'"
);
id_type!(
    /// An upstream carrier.
    CarrierId, other_char, "A-Z, a-z, 0-9, '-', '_' and '.'"
);
id_type!(
    /// A SIP media application.
    SmaId, other_char, "A-Z, a-z, 0-9, '-', '_' and '.'"
);
id_type!(
    /// A SIP rule.
    RuleId, other_char, "A-Z, a-z, 0-9, '-', '_' and '.'"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vc_ids_are_dns_labels() {
        assert!(VcId::new("vc-east-1").is_ok());
        assert_eq!(VcId::new(""), Err(IdError::Empty));
        assert_eq!(
            VcId::new("VC").unwrap_err().to_string(),
            "contains 'V'; allowed are a-z, 0-9 and '-'"
        );
        assert_eq!(VcId::new(&"a".repeat(65)), Err(IdError::TooLong(65)));
        assert!(VcId::new(&"a".repeat(64)).is_ok());
    }

    #[test]
    fn other_ids_allow_underscore_and_dot() {
        assert!(CarrierId::new("Carrier_A.1").is_ok());
        assert!(CarrierId::new("a b").is_err());
    }
}
