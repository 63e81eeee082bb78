//! Secrets: digest credentials and webhook secrets.
//!
//! Their `Debug` never prints the secret, so a `tracing` field or an error
//! message that formats a resource cannot leak it (SPEC §8).

use std::fmt;

/// A string that must never appear in logs, records or metrics.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: String) -> Self {
        Secret(s)
    }

    /// The secret itself, for the code that computes a digest or signature.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// What a digest credential stores: the password, or only a pre-computed
/// HA1 = H(username ":" realm ":" password) so the file need not hold the
/// password (RFC 7616 §3.4.2). An HA1 is tied to one realm and algorithm.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum DigestSecret {
    Password(Secret),
    Ha1Md5([u8; 16]),
    Ha1Sha256([u8; 32]),
}

/// A username and its secret, as a customer PBX presents them to trunkd.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct DigestCredential {
    pub username: String,
    pub secret: DigestSecret,
}

/// Decodes a lowercase or uppercase hex string into exactly `N` bytes.
pub fn decode_hex<const N: usize>(s: &str) -> Option<[u8; N]> {
    let b = s.as_bytes();
    if b.len() != 2 * N {
        return None;
    }
    let mut out = [0u8; N];
    for (i, pair) in b.chunks_exact(2).enumerate() {
        let hi = (pair[0] as char).to_digit(16)?;
        let lo = (pair[1] as char).to_digit(16)?;
        out[i] = (hi * 16 + lo) as u8;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_redacts() {
        let c = DigestCredential {
            username: "pbx1".into(),
            secret: DigestSecret::Password(Secret::new("hunter2".into())),
        };
        let s = format!("{c:?}");
        assert!(!s.contains("hunter2"), "{s}");
        assert!(s.contains("pbx1"));
    }

    #[test]
    fn hex() {
        assert_eq!(decode_hex::<2>("0aFF"), Some([0x0a, 0xff]));
        assert_eq!(decode_hex::<2>("0aF"), None);
        assert_eq!(decode_hex::<1>("zz"), None);
    }
}
