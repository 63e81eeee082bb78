//! The transaction id (SPEC §1): a UUID trunkd assigns to each call, tying
//! its CDR, SDR, metric logs, events and SIP logs together.

use std::fmt;
use std::str::FromStr;

use thiserror::Error;

/// A version 4 (random) UUID, RFC 9562 §5.4. The caller's RNG supplies
/// the bytes; this type sets the version and variant bits, so no UUID
/// crate or RNG lives in trunkd-core.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TransactionId([u8; 16]);

#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{0:?} is not a UUID in 8-4-4-4-12 hex form")]
pub struct TransactionIdError(pub String);

impl TransactionId {
    /// A v4 UUID from 16 random bytes: 122 of them are kept, the version
    /// nibble becomes 4 and the variant bits 10 (RFC 9562 §4.1, §4.2).
    pub fn from_random_bytes(mut b: [u8; 16]) -> Self {
        b[6] = (b[6] & 0x0f) | 0x40;
        b[8] = (b[8] & 0x3f) | 0x80;
        TransactionId(b)
    }

    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }
}

impl fmt::Display for TransactionId {
    /// Lowercase `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`, written once
    /// from a buffer: a call's span and log lines show it, and sixteen
    /// `{:02x}` through the formatter cost about 5,000 instructions.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut text = [b'-'; 36];
        let mut at = 0;
        for (i, b) in self.0.iter().enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                at += 1;
            }
            text[at] = HEX[usize::from(b >> 4)];
            text[at + 1] = HEX[usize::from(b & 0x0f)];
            at += 2;
        }
        // Only ASCII hex digits and hyphens were written.
        f.pad(std::str::from_utf8(&text).unwrap_or_default())
    }
}

impl fmt::Debug for TransactionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TransactionId({self})")
    }
}

impl FromStr for TransactionId {
    type Err = TransactionIdError;

    /// Any UUID in hyphenated hex form, either case (ids in old records or
    /// from other tools need not be v4).
    fn from_str(s: &str) -> Result<Self, TransactionIdError> {
        let err = || TransactionIdError(s.to_owned());
        let groups: Vec<&str> = s.split('-').collect();
        if groups.iter().map(|g| g.len()).collect::<Vec<_>>() != [8, 4, 4, 4, 12] {
            return Err(err());
        }
        let hex: String = groups.concat();
        crate::secret::decode_hex::<16>(&hex)
            .map(TransactionId)
            .ok_or_else(err)
    }
}

impl serde::Serialize for TransactionId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn formats_as_a_v4_uuid() {
        let id = TransactionId::from_random_bytes([0xff; 16]);
        assert_eq!(id.to_string(), "ffffffff-ffff-4fff-bfff-ffffffffffff");
        let id = TransactionId::from_random_bytes([0; 16]);
        assert_eq!(id.to_string(), "00000000-0000-4000-8000-000000000000");
    }

    #[test]
    fn parses_hyphenated_uuids_only() {
        let s = "0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f0";
        assert_eq!(s.parse::<TransactionId>().unwrap().to_string(), s);
        assert_eq!(
            s.to_uppercase()
                .parse::<TransactionId>()
                .unwrap()
                .to_string(),
            s
        );
        for bad in [
            "",
            "0f1e2d3c4b5a49788695a4b3c2d1e0f0",
            "0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0fg",
            "0f1e2d3c-4b5a-4978-8695a-4b3c2d1e0f0",
        ] {
            assert!(bad.parse::<TransactionId>().is_err(), "{bad}");
        }
    }

    proptest! {
        #[test]
        fn version_and_variant_are_set_and_text_round_trips(b in any::<[u8; 16]>()) {
            let id = TransactionId::from_random_bytes(b);
            let s = id.to_string();
            prop_assert_eq!(s.len(), 36);
            prop_assert_eq!(&s[14..15], "4");
            prop_assert!(["8", "9", "a", "b"].contains(&&s[19..20]));
            prop_assert_eq!(s.parse::<TransactionId>(), Ok(id));
        }
    }
}
