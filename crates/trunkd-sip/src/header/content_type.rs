//! Content-Type (RFC 3261 §20.15): `m-type SLASH m-subtype *(SEMI m-parameter)`.

use bytes::Bytes;

use crate::chars::{is_token, skip_ws};
use crate::error::SyntaxError;
use crate::params::Params;
use crate::sub;

/// A media type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContentType {
    /// Type, e.g. `application` (compare case-insensitively).
    pub mtype: Bytes,
    /// Subtype, e.g. `sdp`.
    pub subtype: Bytes,
    /// Parameters, e.g. `boundary`.
    pub params: Params,
}

impl ContentType {
    /// Parses a Content-Type value.
    pub fn parse(v: &Bytes) -> Result<ContentType, SyntaxError> {
        let s = &v[..];
        let token = |from: usize| {
            let mut e = from;
            while e < s.len() && is_token(s[e]) {
                e += 1;
            }
            e
        };
        let t0 = skip_ws(s, 0);
        let t1 = token(t0);
        let slash = skip_ws(s, t1);
        if t1 == t0 || s.get(slash) != Some(&b'/') {
            return Err(SyntaxError("expected type/subtype"));
        }
        let s0 = skip_ws(s, slash + 1);
        let s1 = token(s0);
        if s1 == s0 {
            return Err(SyntaxError("expected type/subtype"));
        }
        Ok(ContentType {
            mtype: sub(v, &s[t0..t1]),
            subtype: sub(v, &s[s0..s1]),
            params: Params::parse_header(v, &s[s1..])?,
        })
    }

    /// True for `type/subtype`, compared case-insensitively.
    pub fn is(&self, mtype: &str, subtype: &str) -> bool {
        self.mtype.eq_ignore_ascii_case(mtype.as_bytes())
            && self.subtype.eq_ignore_ascii_case(subtype.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse() {
        let c = ContentType::parse(&Bytes::from_static(
            b"multipart/mixed;boundary=7a9cbec02ceef655",
        ))
        .unwrap();
        assert!(c.is("Multipart", "MIXED"));
        assert_eq!(
            c.params.value("boundary").map(|v| &v[..]),
            Some(&b"7a9cbec02ceef655"[..])
        );
        assert!(
            ContentType::parse(&Bytes::from_static(b"application / sdp"))
                .unwrap()
                .is("application", "sdp")
        );
        for bad in [
            "application",
            "application/",
            "/sdp",
            "application/sdp;",
            "",
        ] {
            assert!(
                ContentType::parse(&Bytes::from_static(bad.as_bytes())).is_err(),
                "{bad}"
            );
        }
    }
}
