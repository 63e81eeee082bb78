//! Single-token headers: CSeq (RFC 3261 §20.16), Call-ID (§20.8),
//! Max-Forwards (§20.22), Content-Length (§20.14).
//!
//! Numbers accept leading zeros (RFC 4475 §3.1.1.1: `0068`, `0009`) and
//! reject signs, overflow and anything beyond their range (§3.1.2.4).

use bytes::Bytes;

use crate::chars::{is_token_str, is_word_str, is_ws, parse_digits, trim_ws};
use crate::error::SyntaxError;
use crate::method::Method;
use crate::sub;

/// `CSeq: 1*DIGIT LWS Method`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CSeq {
    /// Sequence number; a 32-bit unsigned integer (§8.1.1.5).
    pub seq: u32,
    /// Method; must equal the request's (§8.1.1.5).
    pub method: Method,
}

impl CSeq {
    /// Parses a CSeq value.
    pub fn parse(v: &Bytes) -> Result<CSeq, SyntaxError> {
        let s = trim_ws(v);
        let digits_end = s
            .iter()
            .position(|&b| !b.is_ascii_digit())
            .unwrap_or(s.len());
        let seq = parse_digits(&s[..digits_end])
            .and_then(|n| u32::try_from(n).ok())
            .ok_or(SyntaxError("sequence number is not a 32-bit integer"))?;
        let rest = &s[digits_end..];
        if !rest.first().copied().is_some_and(is_ws) {
            return Err(SyntaxError("missing method"));
        }
        let m = trim_ws(rest);
        if !is_token_str(m) {
            return Err(SyntaxError("method is not a token"));
        }
        Ok(CSeq {
            seq,
            method: Method::parse(&sub(v, m))?,
        })
    }

    /// `seq SP method`.
    pub fn to_bytes(&self) -> Bytes {
        let mut v = self.seq.to_string().into_bytes();
        v.push(b' ');
        v.extend_from_slice(self.method.as_bytes());
        Bytes::from(v)
    }
}

/// `Call-ID: word ["@" word]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CallId(Bytes);

impl CallId {
    /// Parses a Call-ID value.
    pub fn parse(v: &Bytes) -> Result<CallId, SyntaxError> {
        let s = trim_ws(v);
        let ok = match memchr::memchr(b'@', s) {
            Some(at) => is_word_str(&s[..at]) && is_word_str(&s[at + 1..]),
            None => is_word_str(s),
        };
        if ok {
            Ok(CallId(sub(v, s)))
        } else {
            Err(SyntaxError("not word [@ word]"))
        }
    }

    /// The Call-ID (compared byte for byte, §20.8).
    pub fn as_bytes(&self) -> &Bytes {
        &self.0
    }
}

/// `Max-Forwards: 1*DIGIT`, 0 to 255 (§20.22 with the §8.1.1.6 range).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct MaxForwards(pub u8);

impl MaxForwards {
    /// Parses a Max-Forwards value.
    pub fn parse(v: &[u8]) -> Result<MaxForwards, SyntaxError> {
        parse_digits(trim_ws(v))
            .and_then(|n| u8::try_from(n).ok())
            .map(MaxForwards)
            .ok_or(SyntaxError("not a number in 0..=255"))
    }
}

/// `Content-Length: 1*DIGIT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ContentLength(pub usize);

impl ContentLength {
    /// Parses a Content-Length value (no sign, no overflow).
    pub fn parse(v: &[u8]) -> Result<ContentLength, SyntaxError> {
        parse_digits(trim_ws(v))
            .and_then(|n| usize::try_from(n).ok())
            .map(ContentLength)
            .ok_or(SyntaxError("not a non-negative integer"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &'static str) -> Bytes {
        Bytes::from_static(s.as_bytes())
    }

    #[test]
    fn cseq() {
        let c = CSeq::parse(&b("0009 INVITE")).unwrap();
        assert_eq!((c.seq, c.method), (9, Method::Invite));
        let c = CSeq::parse(&b("139122385 !interesting-Method0123456789_*+`.%indeed'~")).unwrap();
        assert!(c.method.is_extension());
        assert_eq!(
            &c.to_bytes()[..],
            b"139122385 !interesting-Method0123456789_*+`.%indeed'~"
        );
        assert_eq!(
            CSeq::parse(&b("4294967295 BYE")).map(|c| c.seq),
            Ok(u32::MAX)
        );
        for bad in [
            "36893488147419103232 REGISTER",
            "INVITE",
            "1",
            "1INVITE",
            "-1 INVITE",
            "1 IN VITE",
            "",
        ] {
            assert!(CSeq::parse(&b(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn call_id() {
        assert!(CallId::parse(&b("intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{")).is_ok());
        assert_eq!(CallId::parse(&b(" a@b ")).unwrap().as_bytes(), &b("a@b"));
        for bad in ["", "a@", "@b", "a@b@c", "a b", "a;b"] {
            assert!(CallId::parse(&b(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn numbers() {
        assert_eq!(MaxForwards::parse(b"0068"), Ok(MaxForwards(68)));
        assert_eq!(MaxForwards::parse(b"255"), Ok(MaxForwards(255)));
        assert!(MaxForwards::parse(b"300").is_err());
        assert!(MaxForwards::parse(b"").is_err());
        assert_eq!(ContentLength::parse(b" 150 "), Ok(ContentLength(150)));
        assert!(ContentLength::parse(b"-999").is_err());
        assert!(ContentLength::parse(b"five").is_err());
        assert!(ContentLength::parse(b"99999999999999999999999").is_err());
    }
}
