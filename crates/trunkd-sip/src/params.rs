//! Parameter lists: header parameters (`*( SEMI generic-param )`, RFC 3261
//! §25.1) and SIP-URI parameters (`uri-parameters`, §19.1.1).
//!
//! Order and duplicates are preserved; names compare case-insensitively
//! (§7.3.1). Values stay exactly as received (quoted strings keep their
//! quotes) so that forwarding never rewrites what it does not understand.

use bytes::Bytes;

use crate::chars::{is_escaped_class, is_token, is_ws, quoted_end, skip_ws, Class};
use crate::error::SyntaxError;
use crate::sub;

/// One `name[=value]` parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Param {
    /// Name as received.
    pub name: Bytes,
    /// Value as received (a quoted-string keeps its quotes); `None` for a
    /// parameter without `=`.
    pub value: Option<Bytes>,
}

impl Param {
    /// The value with surrounding quotes and `quoted-pair` escapes removed.
    pub fn unquoted_value(&self) -> Option<Vec<u8>> {
        self.value.as_ref().map(|v| unquote(v))
    }
}

/// Removes the quotes and `\` escapes of a quoted-string; other input is
/// returned unchanged.
pub fn unquote(v: &[u8]) -> Vec<u8> {
    if v.len() < 2 || v[0] != b'"' || v[v.len() - 1] != b'"' {
        return v.to_vec();
    }
    let inner = &v[1..v.len() - 1];
    let mut out = Vec::with_capacity(inner.len());
    let mut i = 0;
    while i < inner.len() {
        if inner[i] == b'\\' && i + 1 < inner.len() {
            out.push(inner[i + 1]);
            i += 2;
        } else {
            out.push(inner[i]);
            i += 1;
        }
    }
    out
}

/// An ordered parameter list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params(Vec<Param>);

impl Params {
    /// An empty list.
    pub fn new() -> Params {
        Params(Vec::new())
    }

    /// Parameters in order.
    pub fn iter(&self) -> std::slice::Iter<'_, Param> {
        self.0.iter()
    }

    /// Number of parameters.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when there are no parameters.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// First parameter with this name (case-insensitive).
    pub fn get(&self, name: &str) -> Option<&Param> {
        self.0
            .iter()
            .find(|p| p.name.eq_ignore_ascii_case(name.as_bytes()))
    }

    /// True when a parameter with this name is present, with or without value.
    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// Value of the first parameter with this name, if it has one.
    pub fn value(&self, name: &str) -> Option<&Bytes> {
        self.get(name).and_then(|p| p.value.as_ref())
    }

    /// Replaces (or appends) a header parameter; both parts must be tokens.
    pub fn set(&mut self, name: &str, value: Option<&str>) -> Result<(), SyntaxError> {
        let ok_value = value.is_none_or(|v| !v.is_empty() && v.bytes().all(is_gen_value_char));
        if name.is_empty() || !name.bytes().all(is_token) || !ok_value {
            return Err(SyntaxError("parameter is not a token"));
        }
        self.remove(name);
        self.0.push(Param {
            name: Bytes::copy_from_slice(name.as_bytes()),
            value: value.map(|v| Bytes::copy_from_slice(v.as_bytes())),
        });
        Ok(())
    }

    /// Removes every parameter with this name.
    pub fn remove(&mut self, name: &str) {
        self.0
            .retain(|p| !p.name.eq_ignore_ascii_case(name.as_bytes()));
    }

    /// Writes `;name[=value]` for each parameter.
    pub(crate) fn write_to(&self, out: &mut Vec<u8>) {
        for p in &self.0 {
            out.push(b';');
            out.extend_from_slice(&p.name);
            if let Some(v) = &p.value {
                out.push(b'=');
                out.extend_from_slice(v);
            }
        }
    }

    /// Parses `*( SEMI generic-param )` where `s` (a slice of `base`) starts
    /// with optional whitespace then `;`, and runs to the end of the value.
    pub(crate) fn parse_header(base: &Bytes, s: &[u8]) -> Result<Params, SyntaxError> {
        let mut out = Vec::new();
        Params::visit_header(s, |name, value| {
            out.push(Param {
                name: sub(base, name),
                value: value.map(|v| sub(base, v)),
            })
        })?;
        Ok(Params(out))
    }

    /// Reads `s` as [`Params::parse_header`] does, with the same errors,
    /// handing each parameter to `each` instead of building a list:
    /// validation checks a value and keeps nothing.
    pub(crate) fn visit_header(
        s: &[u8],
        mut each: impl FnMut(&[u8], Option<&[u8]>),
    ) -> Result<(), SyntaxError> {
        for p in HeaderParams::new(s) {
            let RawParam { name, value, .. } = p?;
            each(&s[name.0..name.1], value.map(|v| &s[v.0..v.1]));
        }
        Ok(())
    }

    /// The value of the first header parameter called `name` in `s` (as
    /// [`Params::parse_header`] reads it), without building the list: a
    /// tag is read from every From and To, and a list was an allocation
    /// each time. Every parameter is still checked, so a value that
    /// `parse_header` rejects is an error here too.
    pub(crate) fn header_value(
        base: &Bytes,
        s: &[u8],
        name: &str,
    ) -> Result<Option<Bytes>, SyntaxError> {
        let mut found = None;
        Params::visit_header(s, |n, v| {
            if found.is_none() && n.eq_ignore_ascii_case(name.as_bytes()) {
                found = Some(v.map(|v| sub(base, v)));
            }
        })?;
        Ok(found.flatten())
    }

    /// Parses SIP-URI `uri-parameters` from `s` (no leading `;`, no
    /// whitespace allowed): `name[=value]` separated by `;`, each part
    /// `1*paramchar` (RFC 3261 §25.1).
    pub(crate) fn parse_uri(base: &Bytes, s: &[u8]) -> Result<Params, SyntaxError> {
        let mut out = Vec::new();
        Params::visit_uri(s, |name, value| {
            out.push(Param {
                name: sub(base, name),
                value: value.map(|v| sub(base, v)),
            })
        })?;
        Ok(Params(out))
    }

    /// Reads `s` as [`Params::parse_uri`] does, with the same errors,
    /// handing each parameter to `each` instead of building a list.
    pub(crate) fn visit_uri<'a>(
        s: &'a [u8],
        mut each: impl FnMut(&'a [u8], Option<&'a [u8]>),
    ) -> Result<(), SyntaxError> {
        for part in s.split(|&b| b == b';') {
            let (name, value) = match memchr::memchr(b'=', part) {
                Some(eq) => (&part[..eq], Some(&part[eq + 1..])),
                None => (part, None),
            };
            if name.is_empty() || !is_escaped_class(name, Class::Param) {
                return Err(SyntaxError("invalid URI parameter name"));
            }
            if let Some(v) = value {
                if v.is_empty() || !is_escaped_class(v, Class::Param) {
                    return Err(SyntaxError("invalid URI parameter value"));
                }
            }
            each(name, value);
        }
        Ok(())
    }
}

impl<'a> IntoIterator for &'a Params {
    type Item = &'a Param;
    type IntoIter = std::slice::Iter<'a, Param>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

/// `gen-value = token / host / quoted-string`; unquoted values may be a host,
/// so `:` `[` `]` are allowed for IPv6 (RFC 5118 §4.5).
fn is_gen_value_char(b: u8) -> bool {
    is_token(b) || b == b':' || b == b'[' || b == b']'
}

/// The header parameters of `s` one by one, as byte ranges of the name and
/// the value (quotes included): `*( SEMI generic-param )` (RFC 3261 §25.1),
/// whitespace allowed around `;` and `=`.
pub(crate) struct HeaderParams<'a> {
    s: &'a [u8],
    i: usize,
}

pub(crate) type Range = (usize, usize);

/// One header parameter of [`HeaderParams`], as ranges of its text.
pub(crate) struct RawParam {
    /// From the whitespace before its `;` to the end of its value: the
    /// extents of a list's parameters follow each other, so leaving one
    /// out of the text leaves the others as they were.
    pub(crate) extent: Range,
    pub(crate) name: Range,
    pub(crate) value: Option<Range>,
}

impl<'a> HeaderParams<'a> {
    /// The parameters of `s` (which starts with optional whitespace then
    /// `;`, as [`Params::parse_header`] reads it).
    pub(crate) fn new(s: &'a [u8]) -> Self {
        HeaderParams { s, i: 0 }
    }
}

impl Iterator for HeaderParams<'_> {
    type Item = Result<RawParam, SyntaxError>;

    fn next(&mut self) -> Option<Self::Item> {
        let s = self.s;
        let from = self.i;
        let mut i = skip_ws(s, from);
        if i == s.len() {
            return None;
        }
        // An error ends the iteration.
        self.i = s.len();
        if s[i] != b';' {
            return Some(Err(SyntaxError("unexpected character after parameter")));
        }
        i = skip_ws(s, i + 1);
        let start = i;
        while i < s.len() && is_token(s[i]) {
            i += 1;
        }
        if i == start {
            return Some(Err(SyntaxError("empty parameter")));
        }
        let name = (start, i);
        let j = skip_ws(s, i);
        let value = if j < s.len() && s[j] == b'=' {
            let k = skip_ws(s, j + 1);
            let end = if k < s.len() && s[k] == b'"' {
                match quoted_end(s, k) {
                    Some(e) => e,
                    None => return Some(Err(SyntaxError("unterminated quoted string"))),
                }
            } else {
                let mut e = k;
                while e < s.len() && is_gen_value_char(s[e]) {
                    e += 1;
                }
                e
            };
            if end == k {
                return Some(Err(SyntaxError("empty parameter value")));
            }
            i = end;
            Some((k, end))
        } else {
            None
        };
        if i < s.len() && !is_ws(s[i]) && s[i] != b';' {
            return Some(Err(SyntaxError("invalid character in parameter")));
        }
        self.i = i;
        Some(Ok(RawParam {
            extent: (from, i),
            name,
            value,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hp(s: &'static str) -> Result<Params, SyntaxError> {
        let b = Bytes::from_static(s.as_bytes());
        Params::parse_header(&b, &b)
    }

    #[test]
    fn header_params_with_lws() {
        let p = hp(" ; newparam = newvalue ; secondparam ; q = 0.33").unwrap();
        assert_eq!(p.len(), 3);
        assert_eq!(p.value("NEWPARAM").map(|v| &v[..]), Some(&b"newvalue"[..]));
        assert!(p.contains("secondparam") && p.value("secondparam").is_none());
        assert_eq!(p.value("q").map(|v| &v[..]), Some(&b"0.33"[..]));
    }

    #[test]
    fn header_params_quoted_and_ipv6() {
        let p = hp(";x=\"a;b\\\"c\";received=[2001:db8::9:255]").unwrap();
        assert_eq!(p.get("x").unwrap().unquoted_value().unwrap(), b"a;b\"c");
        assert_eq!(
            p.value("received").map(|v| &v[..]),
            Some(&b"[2001:db8::9:255]"[..])
        );
    }

    #[test]
    fn header_params_errors() {
        assert!(hp(";;").is_err());
        assert!(hp(";a=").is_err());
        assert!(hp(";a=\"x").is_err());
        assert!(hp("x").is_err());
        assert!(hp(";a b").is_err());
    }

    #[test]
    fn uri_params() {
        let b = Bytes::from_static(b"lr;unknownwith=value;%6C%72;n%61me=v%61lue%25%34%31");
        let p = Params::parse_uri(&b, &b).unwrap();
        assert_eq!(p.len(), 4);
        assert!(p.contains("lr"));
        assert_eq!(
            p.value("n%61me").map(|v| &v[..]),
            Some(&b"v%61lue%25%34%31"[..])
        );
        let bad = Bytes::from_static(b"a;;b");
        assert!(Params::parse_uri(&bad, &bad).is_err());
        let bad = Bytes::from_static(b" lr");
        assert!(Params::parse_uri(&bad, &bad).is_err());
    }

    #[test]
    fn set_and_write() {
        let mut p = Params::new();
        p.set("tag", Some("abc")).unwrap();
        p.set("lr", None).unwrap();
        p.set("tag", Some("def")).unwrap();
        assert!(p.set("bad name", None).is_err());
        assert!(p.set("x", Some("a\r\n")).is_err());
        let mut out = Vec::new();
        p.write_to(&mut out);
        assert_eq!(out, b";lr;tag=def");
    }
}
