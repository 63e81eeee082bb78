//! `name-addr / addr-spec` values: From, To (RFC 3261 §20.20, §20.39),
//! Contact (§20.10), Route and Record-Route (§20.34, §20.30).
//!
//! Where the parameters belong matters: in `<sip:a@b;x=1>;y=2`, `x` is a URI
//! parameter and `y` a header parameter; in the bare form `sip:a@b;y=2`
//! every `;` parameter belongs to the header (§20, RFC 4475 §3.3.12/13),
//! which is why a bare addr-spec containing `?` or `,` is invalid (§20.10,
//! RFC 4475 §3.1.2.13).

use bytes::Bytes;

use crate::chars::{is_token, is_ws, quoted_end, skip_ws, trim_ws};
use crate::error::SyntaxError;
use crate::params::{unquote, HeaderParams, Params};
use crate::sub;
use crate::uri::Uri;

/// A display name: a quoted string or a sequence of tokens (§25.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisplayName {
    raw: Bytes,
    quoted: bool,
}

impl DisplayName {
    /// A display name that will be written as a quoted string; `"` and `\`
    /// are escaped, CR/LF are dropped.
    pub fn quoted(text: &str) -> DisplayName {
        let mut raw = Vec::with_capacity(text.len());
        for b in text.bytes() {
            match b {
                b'"' | b'\\' => {
                    raw.push(b'\\');
                    raw.push(b);
                }
                b'\r' | b'\n' => {}
                _ => raw.push(b),
            }
        }
        DisplayName {
            raw: Bytes::from(raw),
            quoted: true,
        }
    }

    /// As received: the inside of the quotes (escapes intact) or the tokens.
    pub fn as_received(&self) -> &Bytes {
        &self.raw
    }

    /// True for the quoted-string form.
    pub fn is_quoted(&self) -> bool {
        self.quoted
    }

    /// The text with `quoted-pair` escapes resolved.
    pub fn text(&self) -> Vec<u8> {
        if !self.quoted {
            return self.raw.to_vec();
        }
        let mut q = Vec::with_capacity(self.raw.len() + 2);
        q.push(b'"');
        q.extend_from_slice(&self.raw);
        q.push(b'"');
        unquote(&q)
    }

    fn write_to(&self, out: &mut Vec<u8>) {
        if self.quoted {
            out.push(b'"');
            out.extend_from_slice(&self.raw);
            out.push(b'"');
        } else {
            out.extend_from_slice(&self.raw);
        }
    }
}

/// An address with optional display name and header parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameAddr {
    /// Display name, if any.
    pub display_name: Option<DisplayName>,
    /// The address.
    pub uri: Uri,
    /// Header parameters (tag, expires, q, lr is a URI parameter, ...).
    pub params: Params,
}

impl NameAddr {
    /// An address without display name or parameters.
    pub fn new(uri: Uri) -> NameAddr {
        NameAddr {
            display_name: None,
            uri,
            params: Params::new(),
        }
    }

    /// Parses `( name-addr / addr-spec ) *( SEMI param )`; with
    /// `require_angle` only the `name-addr` form is accepted (Route,
    /// Record-Route).
    pub fn parse(v: &Bytes, require_angle: bool) -> Result<NameAddr, SyntaxError> {
        let parts = Parts::split(v, require_angle)?;
        let uri = Uri::parse_slice(v, &v[parts.uri.0..parts.uri.1])?;
        let params = Params::parse_header(v, &v[parts.params..])?;
        Ok(NameAddr {
            display_name: parts.display_name.map(|(raw, quoted)| DisplayName {
                raw: sub(v, raw),
                quoted,
            }),
            uri,
            params,
        })
    }

    /// Checks `v` as [`NameAddr::parse`] would, with the same errors, and
    /// builds nothing: each header parameter goes to `each`. The parser's
    /// validation checks From, To and keeps none of them, and building the
    /// URI's and the header's parameter lists was most of what it cost.
    pub(crate) fn check(
        v: &Bytes,
        require_angle: bool,
        each: impl FnMut(&[u8], Option<&[u8]>),
    ) -> Result<(), SyntaxError> {
        let parts = Parts::split(v, require_angle)?;
        Uri::check_slice(v, &v[parts.uri.0..parts.uri.1])?;
        Params::visit_header(&v[parts.params..], each)
    }

    /// One header parameter's value (the first called `name`), the URI
    /// left unparsed and no parameter list built: what a transaction or a
    /// dialog needs of From and To (their tags) on every message, at a
    /// fraction of a whole parse. It reads the parameters as
    /// [`NameAddr::parse`] does and rejects what it rejects in them, but
    /// does not check the URI, so it is for values the parser has
    /// validated.
    pub fn header_param(
        v: &Bytes,
        require_angle: bool,
        name: &str,
    ) -> Result<Option<Bytes>, SyntaxError> {
        let parts = Parts::split(v, require_angle)?;
        Params::header_value(v, &v[parts.params..], name)
    }

    /// The URI of a value as it was received, checked as [`NameAddr::parse`]
    /// checks the whole value (same errors), with nothing built: what a
    /// dialog keeps of a Contact as its remote target (RFC 3261 §12.1:
    /// the Contact's URI, not a re-serialisation of it). Parsing the
    /// value whole, then writing its URI back out, cost about 3 % of a
    /// call's signalling instructions (issue 15).
    pub fn uri_text(v: &Bytes, require_angle: bool) -> Result<Bytes, SyntaxError> {
        let parts = Parts::split(v, require_angle)?;
        let uri = &v[parts.uri.0..parts.uri.1];
        Uri::check_slice(v, uri)?;
        Params::visit_header(&v[parts.params..], |_, _| {})?;
        Ok(sub(v, uri))
    }

    /// The value without its header parameters called `name` (`tag`: a
    /// dialog's local or remote URI, RFC 3261 §12.1), the rest as it was
    /// received, checked as [`NameAddr::parse`] checks the whole value
    /// (same errors). Parsing the value whole and writing it back out
    /// without the parameter cost about 4,000 instructions a value, and
    /// changed what the peer had written (spaces, quoting).
    pub fn without_param(v: &Bytes, require_angle: bool, name: &str) -> Result<Bytes, SyntaxError> {
        let parts = Parts::split(v, require_angle)?;
        Uri::check_slice(v, &v[parts.uri.0..parts.uri.1])?;
        let params = &v[parts.params..];
        // Built only when a parameter goes: (text so far, end of what it
        // has of `params`).
        let mut cut: Option<(Vec<u8>, usize)> = None;
        for p in HeaderParams::new(params) {
            let p = p?;
            if params[p.name.0..p.name.1].eq_ignore_ascii_case(name.as_bytes()) {
                let (text, copied) = cut.get_or_insert_with(|| {
                    let mut text = Vec::with_capacity(v.len());
                    text.extend_from_slice(&v[..parts.params]);
                    (text, 0)
                });
                text.extend_from_slice(&params[*copied..p.extent.0]);
                *copied = p.extent.1;
            }
        }
        Ok(match cut {
            None => v.clone(),
            Some((mut text, copied)) => {
                text.extend_from_slice(&params[copied..]);
                Bytes::from(text)
            }
        })
    }

    /// The `tag` parameter (RFC 3261 §19.3).
    pub fn tag(&self) -> Option<&Bytes> {
        self.params.value("tag")
    }

    /// Writes `["display" ]<uri>;params` (always the name-addr form).
    pub fn write_to(&self, out: &mut Vec<u8>) {
        if let Some(d) = &self.display_name {
            d.write_to(out);
            out.push(b' ');
        }
        out.push(b'<');
        self.uri.write_to(out);
        out.push(b'>');
        self.params.write_to(out);
    }

    /// The serialised value.
    pub fn to_bytes(&self) -> Bytes {
        let mut v = Vec::new();
        self.write_to(&mut v);
        Bytes::from(v)
    }
}

/// Where a `name-addr / addr-spec` value's pieces are: what the URI and
/// the header parameters are parsed from.
struct Parts<'a> {
    /// The display name (inside the quotes, if quoted) and whether it was
    /// quoted: a slice, so that reading a tag does not build it.
    display_name: Option<(&'a [u8], bool)>,
    /// The URI's byte range.
    uri: (usize, usize),
    /// Where the header parameters start (the rest of the value).
    params: usize,
}

impl Parts<'_> {
    fn split(v: &Bytes, require_angle: bool) -> Result<Parts<'_>, SyntaxError> {
        let s = &v[..];
        let mut i = skip_ws(s, 0);
        let mut display_name = None;
        match s.get(i) {
            // `<URI>`, the form of most From, To and Contact values: no
            // display name to look for.
            Some(b'<') => {}
            Some(b'"') => {
                let end = quoted_end(s, i).ok_or(SyntaxError("unterminated quoted string"))?;
                display_name = Some((&s[i + 1..end - 1], true));
                i = skip_ws(s, end);
                if s.get(i) != Some(&b'<') {
                    return Err(SyntaxError("display name without <URI>"));
                }
            }
            _ => {
                if let Some(lt) = memchr::memchr(b'<', &s[i..]).map(|p| p + i) {
                    // A token display name; anything else before '<' means
                    // this is a bare addr-spec (whose quoted parameters may
                    // contain '<'), which the addr-spec path below judges.
                    let name = trim_ws(&s[i..lt]);
                    if name.iter().all(|&b| is_token(b) || is_ws(b)) {
                        if !name.is_empty() {
                            display_name = Some((name, false));
                        }
                        i = lt;
                    }
                }
            }
        }
        if s.get(i) == Some(&b'<') {
            let close = memchr::memchr(b'>', &s[i..])
                .map(|p| p + i)
                .ok_or(SyntaxError("missing >"))?;
            return Ok(Parts {
                display_name,
                uri: (i + 1, close),
                params: close + 1,
            });
        }
        if require_angle {
            return Err(SyntaxError("<URI> required"));
        }
        let end = s[i..]
            .iter()
            .position(|&b| is_ws(b) || b == b';')
            .map_or(s.len(), |p| p + i);
        if s[i..end].iter().any(|&b| b == b'?' || b == b',') {
            return Err(SyntaxError("addr-spec with ? or , must be in <>"));
        }
        Ok(Parts {
            display_name,
            uri: (i, end),
            params: end,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn na(s: &'static str) -> Result<NameAddr, SyntaxError> {
        NameAddr::parse(&Bytes::from_static(s.as_bytes()), false)
    }

    #[test]
    fn a_header_param_is_that_of_a_whole_parse() {
        for v in [
            "Alice <sip:alice@example.com>;tag=1928301774",
            "\"A <b>; c\" <sip:a@b;tag=uri>;tag=hdr;x",
            "sip:a@b;tag=bare;maddr=x",
            "<sip:a@b;tag=no?subject=x>;tag=yes",
            "tok en <sip:a@b> ; TAG = spaced",
            "sip:a@b",
            "<sip:a@b>;q=\"<;tag=q>\";tag=after;tag=second",
        ] {
            let b = Bytes::from_static(v.as_bytes());
            let whole = NameAddr::parse(&b, false).unwrap_or_else(|e| panic!("{v}: {e:?}"));
            for name in ["tag", "Tag", "x", "q", "maddr", "none"] {
                assert_eq!(
                    NameAddr::header_param(&b, false, name),
                    Ok(whole.params.value(name).cloned()),
                    "{v} {name}"
                );
            }
        }
        for v in [
            "\"open <sip:a@b>",
            "<sip:a@b",
            "sip:a@b?x",
            "x <sip:a@b",
            "\"n\" sip:a@b",
            "<sip:a@b>;tag=1;",
            "<sip:a@b>;tag=\"open",
            "<sip:a@b>;tag=",
            "<sip:a@b> x",
        ] {
            let b = Bytes::from_static(v.as_bytes());
            assert!(NameAddr::header_param(&b, false, "tag").is_err(), "{v}");
            assert!(NameAddr::parse(&b, false).is_err(), "{v}");
        }
        let route = Bytes::from_static(b"sip:p1;lr");
        assert!(NameAddr::header_param(&route, true, "lr").is_err());
    }

    #[test]
    fn bare_addr_spec_params_belong_to_header() {
        let a = na("sip:vivekg@chair-dnrc.example.com ;   tag    = 1918181833n").unwrap();
        assert_eq!(a.tag().map(|t| &t[..]), Some(&b"1918181833n"[..]));
        assert!(a.uri.as_sip().unwrap().params.is_empty());
        let a = na("sip:+19725552222@gw1.example.net;unknownparam").unwrap();
        assert!(a.params.contains("unknownparam"));
        assert!(a.uri.as_sip().unwrap().params.is_empty());
    }

    #[test]
    fn angle_form_params_belong_to_uri() {
        let a = na("<sip:+19725552222@gw1.example.net;unknownparam>").unwrap();
        assert!(a.params.is_empty());
        assert!(a.uri.as_sip().unwrap().params.contains("unknownparam"));
    }

    #[test]
    fn display_names() {
        let a =
            na("\"J Rosenberg \\\\\\\"\"       <sip:jdrosen@example.com> ; tag = 98asjd8").unwrap();
        let d = a.display_name.as_ref().unwrap();
        assert!(d.is_quoted());
        assert_eq!(d.text(), b"J Rosenberg \\\"");
        assert_eq!(a.tag().map(|t| &t[..]), Some(&b"98asjd8"[..]));
        let a = na("caller<sip:caller@example.com>;tag=323").unwrap();
        assert_eq!(a.display_name.unwrap().text(), b"caller");
        let a = na("token1~` token2'+_ token3*%!.- <sip:mundane@example.com>").unwrap();
        assert_eq!(
            a.display_name.unwrap().text(),
            b"token1~` token2'+_ token3*%!.-"
        );
        assert_eq!(DisplayName::quoted("a\"b").text(), b"a\"b");
    }

    #[test]
    fn invalid() {
        assert!(
            na("\"Mr. J. User <sip:j.user@example.com>").is_err(),
            "unbalanced quote"
        );
        assert!(
            na("\"Watson, Thomas\" < sip:t.watson@example.org >").is_err(),
            "spaces in <>"
        );
        assert!(
            na("Watson, Thomas <sip:t.watson@example.org>").is_err(),
            "comma in display name"
        );
        assert!(na("sip:user@example.com?Route=%3Csip:sip.example.com%3E").is_err());
        assert!(na("\"Joe\" <sip:joe@example.org>;;;;").is_err());
        assert!(na("<sip:a@b").is_err());
        assert!(na("\"x\" sip:a@b").is_err());
        assert!(NameAddr::parse(&Bytes::from_static(b"sip:a@b"), true).is_err());
    }

    #[test]
    fn quoted_param_with_angle() {
        let a = na("sip:a@example.com;x=\"<y>\"").unwrap();
        assert_eq!(a.params.value("x").map(|v| &v[..]), Some(&b"\"<y>\""[..]));
    }

    #[test]
    fn other_schemes() {
        assert!(!na("isbn:2983792873").unwrap().uri.is_sip());
        let a = na("<http://www.example.com>;tag=3234233").unwrap();
        assert_eq!(a.uri.scheme(), b"http");
    }

    #[test]
    fn write() {
        let a = na("\"A\" <sip:a@example.com;lr>;tag=1").unwrap();
        assert_eq!(&a.to_bytes()[..], b"\"A\" <sip:a@example.com;lr>;tag=1");
        let a = na("sip:a@example.com;tag=1").unwrap();
        assert_eq!(&a.to_bytes()[..], b"<sip:a@example.com>;tag=1");
    }
}
