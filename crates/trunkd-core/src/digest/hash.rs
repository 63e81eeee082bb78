//! The digest arithmetic of RFC 7616 §3.4.1–§3.4.3 (RFC 2617 §3.2.2 for
//! MD5): H(A1), H(A2) and the `response` value.
//!
//! Kept apart from parsing and from nonce handling so the RFC test vectors
//! exercise exactly the code the server and the client share.

use std::fmt;
use std::str::FromStr;

use md5::Md5;
use sha2::{Digest, Sha256};

use super::DigestError;
use crate::secret::DigestSecret;

/// A digest algorithm (RFC 7616 §3.3 `algorithm`). `-sess` variants hash the
/// nonce and cnonce into A1 (RFC 7616 §3.4.2).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Algorithm {
    Md5,
    Md5Sess,
    Sha256,
    Sha256Sess,
}

impl Algorithm {
    /// What trunkd offers in its challenges, in this order. RFC 7616 §3.7
    /// has the server list its preferred algorithm first, but much of the
    /// installed base (SIPp 3.6, older Asterisk and PBX firmware) answers
    /// the *first* challenge it sees and fails on SHA-256. MD5 goes first so
    /// those clients work; RFC 7616 clients choose the strongest challenge
    /// they support, whatever its place, and still pick SHA-256.
    pub const OFFERED: [Algorithm; 2] = [Algorithm::Md5, Algorithm::Sha256];

    /// The token as written in headers (RFC 7616 §3.3, §6.1).
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Md5 => "MD5",
            Algorithm::Md5Sess => "MD5-sess",
            Algorithm::Sha256 => "SHA-256",
            Algorithm::Sha256Sess => "SHA-256-sess",
        }
    }

    /// Whether A1 includes the nonce and cnonce (RFC 7616 §3.4.2).
    pub fn is_session(self) -> bool {
        matches!(self, Algorithm::Md5Sess | Algorithm::Sha256Sess)
    }

    /// Whether this is one of the SHA-256 variants.
    pub fn is_sha256(self) -> bool {
        matches!(self, Algorithm::Sha256 | Algorithm::Sha256Sess)
    }

    /// Length of `response` in hex digits: 32 for MD5, 64 for SHA-256.
    pub fn hex_len(self) -> usize {
        if self.is_sha256() {
            64
        } else {
            32
        }
    }

    /// H(data) as lowercase hex (RFC 7616 §3.4: "the hash output in
    /// lowercase hexadecimal").
    pub(crate) fn hash_hex(self, data: &str) -> String {
        if self.is_sha256() {
            hex(&Sha256::digest(data.as_bytes()))
        } else {
            hex(&Md5::digest(data.as_bytes()))
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Algorithm {
    type Err = DigestError;

    /// Case-insensitive, as RFC 7616 §3.3 compares algorithm tokens.
    fn from_str(s: &str) -> Result<Self, DigestError> {
        [
            Algorithm::Md5,
            Algorithm::Md5Sess,
            Algorithm::Sha256,
            Algorithm::Sha256Sess,
        ]
        .into_iter()
        .find(|a| a.as_str().eq_ignore_ascii_case(s))
        .ok_or_else(|| DigestError::Unsupported(format!("algorithm {s:?}")))
    }
}

/// Lowercase hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    s
}

/// The parts of a digest exchange that feed H(A1) and the response.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Inputs<'a> {
    pub algorithm: Algorithm,
    pub username: &'a str,
    pub realm: &'a str,
    pub nonce: &'a str,
    pub method: &'a str,
    pub uri: &'a str,
    /// `(nc, cnonce)` when `qop=auth`; `None` for RFC 2069-style clients.
    pub qop_auth: Option<(&'a str, &'a str)>,
    /// Needed by the `-sess` algorithms even though RFC 2617 ties it to qop.
    pub cnonce: Option<&'a str>,
}

/// H(A1) as hex (RFC 7616 §3.4.2). A stored HA1 is
/// H(username ":" realm ":" password) for one algorithm family and one
/// realm; it cannot serve the other family.
///
/// # Errors
/// `Unsupported` when the credential holds an HA1 of the other algorithm
/// family, `Malformed` when a `-sess` algorithm has no cnonce.
pub(crate) fn ha1(secret: &DigestSecret, i: &Inputs<'_>) -> Result<String, DigestError> {
    let base = match secret {
        DigestSecret::Password(p) => {
            i.algorithm
                .hash_hex(&format!("{}:{}:{}", i.username, i.realm, p.expose()))
        }
        DigestSecret::Ha1Md5(b) if !i.algorithm.is_sha256() => hex(b),
        DigestSecret::Ha1Sha256(b) if i.algorithm.is_sha256() => hex(b),
        DigestSecret::Ha1Md5(_) | DigestSecret::Ha1Sha256(_) => {
            return Err(DigestError::Unsupported(format!(
                "algorithm {} for a credential stored as an HA1 of the other algorithm",
                i.algorithm
            )))
        }
    };
    if i.algorithm.is_session() {
        let cnonce = i
            .cnonce
            .ok_or_else(|| DigestError::Malformed(format!("{} without cnonce", i.algorithm)))?;
        Ok(i.algorithm
            .hash_hex(&format!("{base}:{}:{cnonce}", i.nonce)))
    } else {
        Ok(base)
    }
}

/// The `response` value (RFC 7616 §3.4.1; RFC 2069 §2.1.2 without qop).
/// A2 = method ":" uri (qop=auth only; auth-int is not supported).
pub(crate) fn response(ha1: &str, i: &Inputs<'_>) -> String {
    let ha2 = i.algorithm.hash_hex(&format!("{}:{}", i.method, i.uri));
    match i.qop_auth {
        Some((nc, cnonce)) => i
            .algorithm
            .hash_hex(&format!("{ha1}:{}:{nc}:{cnonce}:auth:{ha2}", i.nonce)),
        None => i.algorithm.hash_hex(&format!("{ha1}:{}:{ha2}", i.nonce)),
    }
}

/// Equality that does not stop at the first difference, so the time a
/// comparison takes does not tell an attacker how much of a response was
/// right. Case-insensitive for hex digits.
pub(crate) fn hex_eq(a: &str, b: &str) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| {
        acc | (x.to_ascii_lowercase() ^ y.to_ascii_lowercase())
    }) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn algorithm_tokens_are_case_insensitive() {
        assert_eq!("md5".parse::<Algorithm>(), Ok(Algorithm::Md5));
        assert_eq!(
            "sha-256-SESS".parse::<Algorithm>(),
            Ok(Algorithm::Sha256Sess)
        );
        assert!(matches!(
            "SHA-512-256".parse::<Algorithm>(),
            Err(DigestError::Unsupported(_))
        ));
        for a in [
            Algorithm::Md5,
            Algorithm::Md5Sess,
            Algorithm::Sha256,
            Algorithm::Sha256Sess,
        ] {
            assert_eq!(a.as_str().parse::<Algorithm>(), Ok(a));
        }
    }

    #[test]
    fn hashes_are_lowercase_hex_of_the_right_length() {
        assert_eq!(
            Algorithm::Md5.hash_hex(""),
            "d41d8cd98f00b204e9800998ecf8427e"
        );
        assert_eq!(
            Algorithm::Sha256.hash_hex(""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(Algorithm::Md5.hash_hex("x").len(), Algorithm::Md5.hex_len());
        assert_eq!(
            Algorithm::Sha256Sess.hash_hex("x").len(),
            Algorithm::Sha256Sess.hex_len()
        );
    }

    #[test]
    fn hex_eq_ignores_case_and_checks_length() {
        assert!(hex_eq("abCD", "ABcd"));
        assert!(!hex_eq("abcd", "abce"));
        assert!(!hex_eq("abc", "abcd"));
    }
}
