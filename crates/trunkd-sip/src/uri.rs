//! URIs: SIP/SIPS URIs parsed into parts (RFC 3261 §19.1, §25.1) and any
//! other absolute URI kept opaque (RFC 3261 §19: `absoluteURI`).
//!
//! An unknown scheme in a Request-URI is *not* a syntax error: the UAS
//! answers 416 Unsupported URI Scheme (RFC 3261 §8.2.2.1, RFC 4475
//! §3.3.2). [`Uri::Other`] lets the parser accept it and the application
//! decide. All parts are zero-copy slices and stay escaped as received;
//! [`unescape`] decodes `%HH` when a caller needs the characters.

use std::borrow::Cow;
use std::fmt;
use std::io::Write as _;
use std::net::{Ipv4Addr, Ipv6Addr};

use bytes::Bytes;

use crate::chars::{is_escaped_class, Class};
use crate::error::SyntaxError;
use crate::params::Params;
use crate::sub;

/// Host part of a SIP URI or Via sent-by (RFC 3261 §25.1 `host`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Host {
    /// `hostname`, as received (compare case-insensitively).
    Domain(Bytes),
    /// `IPv4address`.
    Ipv4(Ipv4Addr),
    /// `IPv6reference` (written back with brackets).
    Ipv6(Ipv6Addr),
}

impl Host {
    /// Parses `hostname / IPv4address / IPv6reference`.
    ///
    /// A name made only of digits and dots must be a valid IPv4 address;
    /// hostname labels are `alphanum *( alphanum / "-" )` with no leading or
    /// trailing `-`, and a trailing dot is allowed.
    pub fn parse(base: &Bytes, s: &[u8]) -> Result<Host, SyntaxError> {
        if s.first() == Some(&b'[') {
            return match s.strip_prefix(b"[").and_then(|r| r.strip_suffix(b"]")) {
                Some(inner) => parse_ip::<Ipv6Addr>(inner)
                    .map(Host::Ipv6)
                    .ok_or(SyntaxError("invalid IPv6 reference")),
                None => Err(SyntaxError("unterminated IPv6 reference")),
            };
        }
        if s.is_empty() {
            return Err(SyntaxError("empty host"));
        }
        // One pass each: a host is read for every URI and Via of every
        // message, and the iterator chains this replaced cost ~340
        // instructions a host.
        if let Some(a) = parse_ipv4(s) {
            return Ok(Host::Ipv4(a));
        }
        if s.iter().all(|&b| b.is_ascii_digit() || b == b'.') {
            return Err(SyntaxError("invalid IPv4 address"));
        }
        let name = s.strip_suffix(b".").unwrap_or(s);
        if is_hostname(name) {
            Ok(Host::Domain(sub(base, s)))
        } else {
            Err(SyntaxError("invalid hostname"))
        }
    }

    pub(crate) fn write_to(&self, out: &mut Vec<u8>) {
        // Formatted straight into `out` (writing to a Vec cannot fail): a
        // `to_string` here was an allocation per URI written.
        match self {
            Host::Domain(d) => out.extend_from_slice(d),
            Host::Ipv4(a) => out.extend_from_slice(Ipv4Text::new(*a).as_str().as_bytes()),
            Host::Ipv6(a) => {
                let _ = write!(out, "[{a}]");
            }
        }
    }
}

/// An IPv4 address in dotted-decimal text, on the stack.
///
/// `Ipv4Addr`'s own `Display` goes through the formatter four times (about
/// a thousand instructions); a SIP message carries its addresses in Via,
/// Contact and the SDP, written for every message (issue 15).
#[derive(Clone, Copy)]
pub struct Ipv4Text {
    buf: [u8; 15],
    len: u8,
}

impl Ipv4Text {
    /// The text of `a`.
    pub fn new(a: Ipv4Addr) -> Ipv4Text {
        let mut t = Ipv4Text {
            buf: [0; 15],
            len: 0,
        };
        for (i, o) in a.octets().into_iter().enumerate() {
            if i > 0 {
                t.push(b'.');
            }
            if o >= 100 {
                t.push(b'0' + o / 100);
            }
            if o >= 10 {
                t.push(b'0' + o / 10 % 10);
            }
            t.push(b'0' + o % 10);
        }
        t
    }

    fn push(&mut self, b: u8) {
        self.buf[usize::from(self.len)] = b;
        self.len += 1;
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        // Only ASCII digits and dots were written.
        std::str::from_utf8(&self.buf[..usize::from(self.len)]).unwrap_or_default()
    }
}

impl fmt::Display for Ipv4Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut v = Vec::new();
        self.write_to(&mut v);
        f.write_str(&String::from_utf8_lossy(&v))
    }
}

/// `IPv4address = 1*3DIGIT "." 1*3DIGIT "." 1*3DIGIT "." 1*3DIGIT`
/// (RFC 3261 §25.1 allows leading zeros, which `std` refuses).
fn parse_ipv4(s: &[u8]) -> Option<Ipv4Addr> {
    let mut octets = [0u8; 4];
    let (mut n, mut digits, mut value) = (0, 0u32, 0u32);
    for &b in s {
        match b {
            b'0'..=b'9' => {
                digits += 1;
                value = value * 10 + u32::from(b - b'0');
                if digits > 3 || value > 255 {
                    return None;
                }
            }
            b'.' if digits > 0 && n < 3 => {
                octets[n] = value as u8;
                (n, digits, value) = (n + 1, 0, 0);
            }
            _ => return None,
        }
    }
    if digits == 0 || n != 3 {
        return None;
    }
    octets[3] = value as u8;
    Some(Ipv4Addr::from(octets))
}

/// `hostname` without its optional trailing dot: dot-separated labels of
/// `alphanum *( alphanum / "-" )` that do not end in `-`.
fn is_hostname(name: &[u8]) -> bool {
    // The byte before the current one; a dot at the start of each label.
    let mut prev = b'.';
    for &b in name {
        let ok = match b {
            b'.' => prev != b'.' && prev != b'-',
            b'-' => prev != b'.',
            _ => b.is_ascii_alphanumeric(),
        };
        if !ok {
            return false;
        }
        prev = b;
    }
    prev != b'.' && prev != b'-'
}

fn parse_ip<T: std::str::FromStr>(s: &[u8]) -> Option<T> {
    std::str::from_utf8(s).ok()?.parse().ok()
}

/// Parses `host [":" port]`, with an IPv6 reference kept whole.
pub(crate) fn parse_hostport(base: &Bytes, s: &[u8]) -> Result<(Host, Option<u16>), SyntaxError> {
    let split = if s.first() == Some(&b'[') {
        let close = s
            .iter()
            .position(|&b| b == b']')
            .ok_or(SyntaxError("unterminated IPv6 reference"))?;
        match s.get(close + 1) {
            None => None,
            Some(b':') => Some(close + 1),
            Some(_) => return Err(SyntaxError("garbage after IPv6 reference")),
        }
    } else {
        memchr::memchr(b':', s)
    };
    match split {
        None => Ok((Host::parse(base, s)?, None)),
        Some(c) => {
            let host = Host::parse(base, &s[..c])?;
            let port = parse_port(&s[c + 1..])?;
            Ok((host, Some(port)))
        }
    }
}

pub(crate) fn parse_port(s: &[u8]) -> Result<u16, SyntaxError> {
    if s.len() > 5 {
        return Err(SyntaxError("invalid port"));
    }
    crate::chars::parse_digits(s)
        .and_then(|p| u16::try_from(p).ok())
        .ok_or(SyntaxError("invalid port"))
}

/// Whether a parse builds the URI's parameter list or only checks it.
#[derive(Clone, Copy)]
enum Build {
    Whole,
    CheckOnly,
}

/// A `sip:` or `sips:` URI (RFC 3261 §19.1.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SipUri {
    /// `sips:` rather than `sip:`.
    pub secure: bool,
    /// User part, still escaped; may contain `;` (RFC 4475 §3.1.1.9).
    pub user: Option<Bytes>,
    /// Password, still escaped (deprecated by RFC 3261 but legal).
    pub password: Option<Bytes>,
    /// Host.
    pub host: Host,
    /// Port, when present.
    pub port: Option<u16>,
    /// `uri-parameters`, still escaped.
    pub params: Params,
    /// Raw `headers` after `?` (without the `?`), still escaped.
    pub headers: Option<Bytes>,
}

impl SipUri {
    /// A `sip:` URI with just a host.
    pub fn new(host: Host) -> SipUri {
        SipUri {
            secure: false,
            user: None,
            password: None,
            host,
            port: None,
            params: Params::new(),
            headers: None,
        }
    }

    /// Parses what follows `sip:` / `sips:`; with [`Build::CheckOnly`] the
    /// parameters are checked and left out (the caller keeps nothing).
    fn parse_rest(
        base: &Bytes,
        s: &[u8],
        secure: bool,
        build: Build,
    ) -> Result<SipUri, SyntaxError> {
        // userinfo ends at the first '@': '@' is not allowed unescaped in
        // user or password, but ';', '?', '/' are (user-unreserved).
        let (user, password, rest) = match memchr::memchr(b'@', s) {
            Some(at) => {
                let info = &s[..at];
                let (u, p) = match memchr::memchr(b':', info) {
                    Some(c) => (&info[..c], Some(&info[c + 1..])),
                    None => (info, None),
                };
                if u.is_empty() || !is_escaped_class(u, Class::User) {
                    return Err(SyntaxError("invalid user part"));
                }
                if let Some(p) = p {
                    if !is_escaped_class(p, Class::Password) {
                        return Err(SyntaxError("invalid password"));
                    }
                }
                (Some(sub(base, u)), p.map(|p| sub(base, p)), &s[at + 1..])
            }
            None => (None, None, s),
        };
        let (before_q, headers) = match memchr::memchr(b'?', rest) {
            Some(q) => {
                let h = &rest[q + 1..];
                if !valid_uri_headers(h) {
                    return Err(SyntaxError("invalid URI headers"));
                }
                (&rest[..q], Some(sub(base, h)))
            }
            None => (rest, None),
        };
        let (hostport, params) = match memchr::memchr(b';', before_q) {
            Some(sc) => {
                let list = &before_q[sc + 1..];
                let params = match build {
                    Build::Whole => Params::parse_uri(base, list)?,
                    Build::CheckOnly => {
                        Params::visit_uri(list, |_, _| ())?;
                        Params::new()
                    }
                };
                (&before_q[..sc], params)
            }
            None => (before_q, Params::new()),
        };
        let (host, port) = parse_hostport(base, hostport)?;
        Ok(SipUri {
            secure,
            user,
            password,
            host,
            port,
            params,
            headers,
        })
    }

    /// The user part with `%HH` escapes decoded.
    pub fn user_unescaped(&self) -> Option<Cow<'_, [u8]>> {
        self.user.as_deref().map(unescape)
    }

    pub(crate) fn write_to(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(if self.secure { b"sips:" } else { b"sip:" });
        if let Some(u) = &self.user {
            out.extend_from_slice(u);
            if let Some(p) = &self.password {
                out.push(b':');
                out.extend_from_slice(p);
            }
            out.push(b'@');
        }
        self.host.write_to(out);
        if let Some(p) = self.port {
            let _ = write!(out, ":{p}");
        }
        self.params.write_to(out);
        if let Some(h) = &self.headers {
            out.push(b'?');
            out.extend_from_slice(h);
        }
    }
}

/// `headers = "?" header *( "&" header )`, `header = hname "=" hvalue`.
fn valid_uri_headers(h: &[u8]) -> bool {
    h.split(|&b| b == b'&')
        .all(|hdr| match memchr::memchr(b'=', hdr) {
            Some(eq) => {
                eq > 0
                    && is_escaped_class(&hdr[..eq], Class::Header)
                    && is_escaped_class(&hdr[eq + 1..], Class::Header)
            }
            None => false,
        })
}

/// A URI from a Request-URI or a name-addr.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Uri {
    /// `sip:` / `sips:`.
    Sip(SipUri),
    /// Any other absolute URI (`tel:`, `http:`, unknown schemes), opaque.
    Other {
        /// Scheme as received, without the colon.
        scheme: Bytes,
        /// The whole URI text.
        raw: Bytes,
    },
}

impl Uri {
    /// Parses `SIP-URI / SIPS-URI / absoluteURI`; `s` is a slice of `base`.
    pub fn parse_slice(base: &Bytes, s: &[u8]) -> Result<Uri, SyntaxError> {
        Uri::parse_as(base, s, Build::Whole)
    }

    /// Checks `s` as [`Uri::parse_slice`] would, with the same errors,
    /// without building its parameter list: what validation needs of the
    /// URIs in From and To, which it then drops.
    pub(crate) fn check_slice(base: &Bytes, s: &[u8]) -> Result<(), SyntaxError> {
        Uri::parse_as(base, s, Build::CheckOnly).map(drop)
    }

    fn parse_as(base: &Bytes, s: &[u8], build: Build) -> Result<Uri, SyntaxError> {
        let colon = s
            .iter()
            .position(|&b| b == b':')
            .ok_or(SyntaxError("URI without scheme"))?;
        let scheme = &s[..colon];
        // scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )
        let scheme_ok = scheme.first().is_some_and(u8::is_ascii_alphabetic)
            && scheme
                .iter()
                .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'));
        if !scheme_ok {
            return Err(SyntaxError("invalid URI scheme"));
        }
        let rest = &s[colon + 1..];
        if scheme.eq_ignore_ascii_case(b"sip") {
            SipUri::parse_rest(base, rest, false, build).map(Uri::Sip)
        } else if scheme.eq_ignore_ascii_case(b"sips") {
            SipUri::parse_rest(base, rest, true, build).map(Uri::Sip)
        } else if rest.is_empty() || !is_escaped_class(rest, Class::Uric) {
            Err(SyntaxError("invalid absolute URI"))
        } else {
            Ok(Uri::Other {
                scheme: sub(base, scheme),
                raw: sub(base, s),
            })
        }
    }

    /// Parses a whole byte string as a URI.
    pub fn parse(b: &Bytes) -> Result<Uri, SyntaxError> {
        Uri::parse_slice(b, b)
    }

    /// The scheme, lower-cased for `sip`/`sips`, as received otherwise.
    pub fn scheme(&self) -> &[u8] {
        match self {
            Uri::Sip(u) if u.secure => b"sips",
            Uri::Sip(_) => b"sip",
            Uri::Other { scheme, .. } => scheme,
        }
    }

    /// The SIP URI, if this is one.
    pub fn as_sip(&self) -> Option<&SipUri> {
        match self {
            Uri::Sip(u) => Some(u),
            Uri::Other { .. } => None,
        }
    }

    /// True for `sip:` and `sips:`.
    pub fn is_sip(&self) -> bool {
        matches!(self, Uri::Sip(_))
    }

    /// Appends the URI text.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        match self {
            Uri::Sip(u) => u.write_to(out),
            Uri::Other { raw, .. } => out.extend_from_slice(raw),
        }
    }

    /// The URI text as bytes.
    pub fn to_bytes(&self) -> Bytes {
        let mut v = Vec::new();
        self.write_to(&mut v);
        Bytes::from(v)
    }
}

impl fmt::Display for Uri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&String::from_utf8_lossy(&self.to_bytes()))
    }
}

/// Decodes `%HH` escapes; malformed escapes are left as they are.
pub fn unescape(s: &[u8]) -> Cow<'_, [u8]> {
    if !s.contains(&b'%') {
        return Cow::Borrowed(s);
    }
    let hex = |b: u8| (b as char).to_digit(16);
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'%' && i + 2 < s.len() {
            if let (Some(h), Some(l)) = (hex(s[i + 1]), hex(s[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(s[i]);
        i += 1;
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    /// The readings the one-pass ones replaced: the reference.
    fn host_reference(s: &[u8]) -> Result<Option<[u8; 4]>, &'static str> {
        if s.is_empty() {
            return Err("empty host");
        }
        if s.iter().all(|&b| b.is_ascii_digit() || b == b'.') {
            let mut parts = s.split(|&b| b == b'.');
            let mut octets = [0u8; 4];
            for o in &mut octets {
                let part = parts
                    .next()
                    .filter(|p| (1..=3).contains(&p.len()))
                    .ok_or("invalid IPv4 address")?;
                *o = crate::chars::parse_digits(part)
                    .and_then(|d| u8::try_from(d).ok())
                    .ok_or("invalid IPv4 address")?;
            }
            return if parts.next().is_none() {
                Ok(Some(octets))
            } else {
                Err("invalid IPv4 address")
            };
        }
        let name = s.strip_suffix(b".").unwrap_or(s);
        let valid_label = |l: &[u8]| {
            !l.is_empty()
                && l.iter().all(|&b| b.is_ascii_alphanumeric() || b == b'-')
                && l[0] != b'-'
                && l[l.len() - 1] != b'-'
        };
        if name.split(|&b| b == b'.').all(valid_label) {
            Ok(None)
        } else {
            Err("invalid hostname")
        }
    }

    use proptest::strategy::Strategy;

    proptest::proptest! {
        #[test]
        fn hosts_are_read_as_the_reference_reads_them(
            s in proptest::prop_oneof![
                proptest::collection::vec(proptest::sample::select(b"0129.-aZ_".to_vec()), 0..20),
                proptest::collection::vec(
                    proptest::sample::select(vec!["0", "007", "255", "256", "999", "1", "1234", ""]),
                    1..6,
                )
                .prop_map(|parts| parts.join(".").into_bytes()),
            ]
        ) {
            let ours = super::Host::parse(&Bytes::new(), &s)
                .map(|h| match h {
                    super::Host::Ipv4(a) => Some(a.octets()),
                    _ => None,
                })
                .map_err(|e| e.0);
            proptest::prop_assert_eq!(ours, host_reference(&s), "{:?}", String::from_utf8_lossy(&s));
        }
    }

    use super::*;

    #[test]
    fn ipv4_text_is_std_display() {
        for a in [
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::LOCALHOST,
            Ipv4Addr::BROADCAST,
            Ipv4Addr::new(10, 0, 9, 100),
            Ipv4Addr::new(192, 168, 20, 1),
            Ipv4Addr::new(1, 99, 101, 250),
        ] {
            assert_eq!(Ipv4Text::new(a).as_str(), a.to_string());
            assert_eq!(format!("{:>16}", Ipv4Text::new(a)), format!("{a:>16}"));
        }
        for n in (0..=u32::MAX).step_by(16_777_259) {
            let a = Ipv4Addr::from(n);
            assert_eq!(Ipv4Text::new(a).to_string(), a.to_string());
        }
    }

    fn p(s: &'static str) -> Result<Uri, SyntaxError> {
        Uri::parse(&Bytes::from_static(s.as_bytes()))
    }

    fn sip(s: &'static str) -> SipUri {
        match p(s) {
            Ok(Uri::Sip(u)) => u,
            other => panic!("{s}: {other:?}"),
        }
    }

    #[test]
    fn plain() {
        let u = sip("sip:vivekg@chair-dnrc.example.com;unknownparam");
        assert_eq!(u.user.as_deref(), Some(&b"vivekg"[..]));
        assert_eq!(
            u.host,
            Host::Domain(Bytes::from_static(b"chair-dnrc.example.com"))
        );
        assert!(u.params.contains("unknownparam"));
        assert_eq!(u.port, None);
    }

    #[test]
    fn unusual_characters_and_password() {
        let u = sip("sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*:&it+has=1,weird!*pas$wo~d_too.(doesn't-it)@example.com");
        assert_eq!(
            u.user.as_deref(),
            Some(&b"1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"[..])
        );
        assert_eq!(
            u.password.as_deref(),
            Some(&b"&it+has=1,weird!*pas$wo~d_too.(doesn't-it)"[..])
        );
        assert!(u.params.is_empty() && u.headers.is_none());
    }

    #[test]
    fn semicolon_in_user() {
        let u = sip("sip:user;par=u%40example.net@example.com");
        assert_eq!(u.user.as_deref(), Some(&b"user;par=u%40example.net"[..]));
        assert_eq!(
            u.user_unescaped().unwrap().as_ref(),
            b"user;par=u@example.net"
        );
        assert!(u.params.is_empty());
    }

    #[test]
    fn escapes() {
        let u = sip("sip:%75se%72@example.com");
        assert_eq!(u.user_unescaped().unwrap().as_ref(), b"user");
        let u = sip("sip:null-%00-null@example.com");
        assert_eq!(u.user_unescaped().unwrap().as_ref(), b"null-\0-null");
        assert!(p("sip:%zz@example.com").is_err());
        assert_eq!(unescape(b"a%4"), Cow::Borrowed(&b"a%4"[..]));
        assert_eq!(unescape(b"%41%"), Cow::<[u8]>::Owned(b"A%".to_vec()));
    }

    #[test]
    fn hosts_and_ports() {
        let u = sip("sips:[2001:db8::10]:5070;transport=tcp");
        assert!(u.secure);
        assert_eq!(u.host, Host::Ipv6("2001:db8::10".parse().unwrap()));
        assert_eq!(u.port, Some(5070));
        let u = sip("sip:127.0.0.1:5080");
        assert_eq!(u.host, Host::Ipv4(Ipv4Addr::LOCALHOST));
        assert!(
            p("sip:2001:db8::10").is_err(),
            "RFC 5118 §4.2: IPv6 without brackets"
        );
        assert!(p("sip:host:").is_err());
        assert!(p("sip:host:70000").is_err());
        assert!(p("sip:1192.168.1.1").is_err());
        assert!(p("sip:192.168.1").is_err());
        assert!(p("sip:192.168.1.256").is_err());
        assert!(p("sip:1.2.3.4.5").is_err());
        assert_eq!(
            sip("sip:192.168.001.010").host,
            Host::Ipv4(Ipv4Addr::new(192, 168, 1, 10))
        );
        assert!(p("sip:-bad.example.com").is_err());
        assert!(p("sip:user@").is_err());
        assert!(p("sip:[::1").is_err());
        assert!(sip("sip:example.com.").host == Host::Domain(Bytes::from_static(b"example.com.")));
    }

    #[test]
    fn headers() {
        let u = sip("sip:user@example.com?Route=%3Csip:sip.example.com%3E");
        assert_eq!(
            u.headers.as_deref(),
            Some(&b"Route=%3Csip:sip.example.com%3E"[..])
        );
        assert!(p("sip:user@example.com?Route").is_err());
    }

    #[test]
    fn other_schemes() {
        for s in [
            "nobodyKnowsThisScheme:totallyopaquecontent",
            "soap.beep://192.0.2.103:3002",
            "isbn:2983792873",
            "http://www.example.com",
            "tel:+1-212-555-0101",
            "name:John_Smith",
        ] {
            match p(s) {
                Ok(Uri::Other { raw, .. }) => assert_eq!(&raw[..], s.as_bytes()),
                other => panic!("{s}: {other:?}"),
            }
        }
        assert_eq!(p("SIP:a@b.c").unwrap().scheme(), b"sip");
        assert!(p("<sip:user@example.com>").is_err());
        assert!(p("sip:user@example.com; lr").is_err());
        assert!(p("noscheme").is_err());
        assert!(p("x:").is_err());
        assert!(p("1x:abc").is_err());
    }

    #[test]
    fn roundtrip() {
        for s in [
            "sip:vivekg@chair-dnrc.example.com;unknownparam",
            "sips:u:pw@[::1]:5061;lr;x=y?a=b&c=d",
            "sip:192.0.2.1",
            "tel:+15551234",
        ] {
            assert_eq!(p(s).unwrap().to_string(), s);
        }
    }
}
