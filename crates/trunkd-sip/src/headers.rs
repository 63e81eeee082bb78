//! The header section: an ordered list of `name: value` pairs.
//!
//! Order and duplicates are preserved (RFC 3261 §7.3.1: the relative order
//! of same-name rows is significant, e.g. Via, Route). Names compare
//! case-insensitively and compact forms (§7.3.3 and the IANA registry) are
//! the same header as their long forms, so `get("v")` and `get("VIA")` find
//! the same rows. Values are zero-copy slices of the received message; a
//! folded value (§7.3.1 LWS) is unfolded into one line when the message is
//! parsed. Comma-separated lists are split only for headers defined as
//! lists, never inside quoted strings or `<...>`.

use std::sync::Arc;

use bytes::Bytes;

use crate::chars::{is_token_str, trim_ws};
use crate::error::BuildError;
use crate::sub;

macro_rules! known_headers {
    ($( $variant:ident => $name:literal, $compact:expr, $list:expr; )*) => {
        /// Headers this crate knows the canonical name, compact form and
        /// list-ness of.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[allow(missing_docs)]
        pub enum KnownHeader { $( $variant, )* }

        const KNOWN: &[(KnownHeader, &str, Option<u8>, bool)] = &[
            $( (KnownHeader::$variant, $name, $compact, $list), )*
        ];
    };
}

known_headers! {
    Accept => "Accept", None, true;
    AcceptContact => "Accept-Contact", Some(b'a'), true;
    AcceptEncoding => "Accept-Encoding", None, true;
    AcceptLanguage => "Accept-Language", None, true;
    AlertInfo => "Alert-Info", None, true;
    Allow => "Allow", None, true;
    AllowEvents => "Allow-Events", Some(b'u'), true;
    AuthenticationInfo => "Authentication-Info", None, false;
    Authorization => "Authorization", None, false;
    CallId => "Call-ID", Some(b'i'), false;
    CallInfo => "Call-Info", None, true;
    Contact => "Contact", Some(b'm'), true;
    ContentDisposition => "Content-Disposition", None, false;
    ContentEncoding => "Content-Encoding", Some(b'e'), true;
    ContentLanguage => "Content-Language", None, true;
    ContentLength => "Content-Length", Some(b'l'), false;
    ContentType => "Content-Type", Some(b'c'), false;
    CSeq => "CSeq", None, false;
    Date => "Date", None, false;
    Diversion => "Diversion", None, true;
    ErrorInfo => "Error-Info", None, true;
    Event => "Event", Some(b'o'), false;
    Expires => "Expires", None, false;
    From => "From", Some(b'f'), false;
    HistoryInfo => "History-Info", None, true;
    Identity => "Identity", Some(b'y'), false;
    IdentityInfo => "Identity-Info", Some(b'n'), false;
    InReplyTo => "In-Reply-To", None, true;
    MaxForwards => "Max-Forwards", None, false;
    MimeVersion => "MIME-Version", None, false;
    MinExpires => "Min-Expires", None, false;
    MinSe => "Min-SE", None, false;
    Organization => "Organization", None, false;
    PAssertedIdentity => "P-Asserted-Identity", None, true;
    PPreferredIdentity => "P-Preferred-Identity", None, true;
    Path => "Path", None, true;
    Priority => "Priority", None, false;
    Privacy => "Privacy", None, false;
    ProxyAuthenticate => "Proxy-Authenticate", None, false;
    ProxyAuthorization => "Proxy-Authorization", None, false;
    ProxyRequire => "Proxy-Require", None, true;
    RAck => "RAck", None, false;
    Reason => "Reason", None, true;
    RecordRoute => "Record-Route", None, true;
    ReferTo => "Refer-To", Some(b'r'), false;
    ReferredBy => "Referred-By", Some(b'b'), false;
    RejectContact => "Reject-Contact", Some(b'j'), true;
    Replaces => "Replaces", None, false;
    ReplyTo => "Reply-To", None, false;
    RequestDisposition => "Request-Disposition", Some(b'd'), true;
    Require => "Require", None, true;
    RetryAfter => "Retry-After", None, false;
    Route => "Route", None, true;
    RSeq => "RSeq", None, false;
    Server => "Server", None, false;
    ServiceRoute => "Service-Route", None, true;
    SessionExpires => "Session-Expires", Some(b'x'), false;
    SubscriptionState => "Subscription-State", None, false;
    Subject => "Subject", Some(b's'), false;
    Supported => "Supported", Some(b'k'), true;
    Timestamp => "Timestamp", None, false;
    To => "To", Some(b't'), false;
    Unsupported => "Unsupported", None, true;
    UserAgent => "User-Agent", None, false;
    Via => "Via", Some(b'v'), true;
    Warning => "Warning", None, true;
    WwwAuthenticate => "WWW-Authenticate", None, false;
}

/// Longest canonical name that [`KnownHeader::from_name`] looks up.
const MAX_NAME: usize = 24;

/// Candidate table indices by (name length, lower-case first letter), so a
/// lookup compares at most a few names (computed at compile time).
const BUCKETS: [[u8; 4]; (MAX_NAME + 1) * 26] = {
    let mut t = [[u8::MAX; 4]; (MAX_NAME + 1) * 26];
    let mut i = 0;
    while i < KNOWN.len() {
        let name = KNOWN[i].1.as_bytes();
        let slot = name.len() * 26 + (name[0].to_ascii_lowercase() - b'a') as usize;
        let mut j = 0;
        while t[slot][j] != u8::MAX {
            j += 1;
        }
        t[slot][j] = i as u8;
        i += 1;
    }
    t
};

/// Each known name folded for [`eq_known`]: lower-case letters, `-` as it
/// is, with the mask that folds a received byte the same way (0x20 where
/// the name has a letter). Known names hold only letters and `-`, which the
/// build checks.
const FOLDED: [([u8; MAX_NAME], [u8; MAX_NAME]); KNOWN.len()] = {
    let mut t = [([0; MAX_NAME], [0; MAX_NAME]); KNOWN.len()];
    let mut i = 0;
    while i < KNOWN.len() {
        let name = KNOWN[i].1.as_bytes();
        assert!(name.len() <= MAX_NAME);
        let mut j = 0;
        while j < name.len() {
            let c = name[j];
            if c.is_ascii_alphabetic() {
                t[i].0[j] = c | 0x20;
                t[i].1[j] = 0x20;
            } else {
                assert!(c == b'-', "a known header name is letters and '-'");
                t[i].0[j] = c;
            }
            j += 1;
        }
        i += 1;
    }
    t
};

/// `name` is known name `i`, in any case (its length already matched).
/// For a letter, `x | 0x20` equals the lower-case letter exactly when `x`
/// is that letter in either case; a `-` is compared as it is. No early
/// exit: the names are short, and a branch per byte cost more than the
/// bytes (`eq_ignore_ascii_case` was a third of a header's lookup).
#[inline]
fn eq_known(name: &[u8], i: usize) -> bool {
    let (folded, mask) = &FOLDED[i];
    name.iter()
        .zip(folded)
        .zip(mask)
        .fold(0u8, |diff, ((&x, &f), &m)| diff | ((x | m) ^ f))
        == 0
}

/// Table index by compact letter.
const COMPACT: [u8; 26] = {
    let mut t = [u8::MAX; 26];
    let mut i = 0;
    while i < KNOWN.len() {
        if let Some(c) = KNOWN[i].2 {
            t[(c - b'a') as usize] = i as u8;
        }
        i += 1;
    }
    t
};

impl KnownHeader {
    /// Recognises a long or compact header name, case-insensitively.
    pub fn from_name(name: &[u8]) -> Option<KnownHeader> {
        let first = name.first()?.to_ascii_lowercase();
        if !first.is_ascii_lowercase() || name.len() > MAX_NAME {
            return None;
        }
        let letter = usize::from(first - b'a');
        if name.len() == 1 {
            return KNOWN.get(usize::from(COMPACT[letter])).map(|k| k.0);
        }
        BUCKETS[name.len() * 26 + letter]
            .iter()
            .take_while(|&&i| i != u8::MAX)
            .map(|&i| usize::from(i))
            .find(|&i| eq_known(name, i))
            .map(|i| KNOWN[i].0)
    }

    fn entry(self) -> &'static (KnownHeader, &'static str, Option<u8>, bool) {
        // The table holds every variant in declaration order.
        &KNOWN[self as usize]
    }

    /// The canonical long name, e.g. `Call-ID`.
    pub fn canonical(self) -> &'static str {
        self.entry().1
    }

    /// The compact form, e.g. `i` for Call-ID.
    pub fn compact(self) -> Option<char> {
        self.entry().2.map(char::from)
    }

    /// True when the value is a comma-separated list (RFC 3261 §7.3.1), so
    /// that rows may be split and combined.
    pub fn is_list(self) -> bool {
        self.entry().3
    }
}

/// A header name: the spelling received plus its recognised identity.
#[derive(Debug, Clone)]
pub struct HeaderName {
    raw: Bytes,
    known: Option<KnownHeader>,
}

impl HeaderName {
    /// Checks that `name` is a token and recognises it.
    pub fn new(name: &str) -> Result<HeaderName, BuildError> {
        if !is_token_str(name.as_bytes()) {
            return Err(BuildError::InvalidName);
        }
        // A known name spelled canonically (what builders write) points at
        // the static spelling: no allocation for each row of every message
        // built, some of which are kept for a call's life.
        if let Some(k) = KnownHeader::from_name(name.as_bytes()) {
            if k.canonical() == name {
                return Ok(HeaderName {
                    raw: Bytes::from_static(k.canonical().as_bytes()),
                    known: Some(k),
                });
            }
        }
        Ok(HeaderName::from_bytes(Bytes::copy_from_slice(
            name.as_bytes(),
        )))
    }

    pub(crate) fn from_bytes(raw: Bytes) -> HeaderName {
        let known = KnownHeader::from_name(&raw);
        HeaderName { raw, known }
    }

    /// The name as received (or as given to a builder).
    pub fn as_received(&self) -> &[u8] {
        &self.raw
    }

    /// The recognised header, if any.
    pub fn known(&self) -> Option<KnownHeader> {
        self.known
    }

    /// The name written when serialising: canonical long form for known
    /// headers, the received spelling otherwise.
    pub fn as_wire(&self) -> &[u8] {
        match self.known {
            Some(k) => k.canonical().as_bytes(),
            None => &self.raw,
        }
    }

    fn matches(&self, key: &Key<'_>) -> bool {
        match (key, self.known) {
            (Key::Known(k), Some(mine)) => *k == mine,
            (Key::Known(_), None) => false,
            (Key::Other(name), None) => self.raw.eq_ignore_ascii_case(name),
            (Key::Other(_), Some(_)) => false,
        }
    }
}

impl PartialEq for HeaderName {
    fn eq(&self, other: &HeaderName) -> bool {
        match (self.known, other.known) {
            (Some(a), Some(b)) => a == b,
            (None, None) => self.raw.eq_ignore_ascii_case(&other.raw),
            _ => false,
        }
    }
}

impl Eq for HeaderName {}

enum Key<'a> {
    Known(KnownHeader),
    Other(&'a [u8]),
}

fn key(name: &str) -> Key<'_> {
    match KnownHeader::from_name(name.as_bytes()) {
        Some(k) => Key::Known(k),
        None => Key::Other(name.as_bytes()),
    }
}

/// One header row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    name: HeaderName,
    value: Bytes,
}

impl Header {
    /// A row received on the wire (already validated by the parser).
    pub(crate) fn parsed(name: Bytes, value: Bytes) -> Header {
        Header {
            name: HeaderName::from_bytes(name),
            value,
        }
    }

    /// The name.
    pub fn name(&self) -> &HeaderName {
        &self.name
    }

    /// The value: unfolded, without leading or trailing whitespace.
    pub fn value(&self) -> &Bytes {
        &self.value
    }
}

/// The ordered header list of a message.
///
/// The rows are shared between clones and copied on the first change
/// (`Arc::make_mut`): a received INVITE is held by its server transaction,
/// by the engine and by the call at once, and each used to own a copy of
/// every row (~70 bytes a row) for as long as the call lasted (issue 15,
/// docs/performance.md "Memory per call, second pass").
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers {
    entries: Arc<Vec<Header>>,
}

impl Headers {
    /// An empty list.
    pub fn new() -> Headers {
        Headers::default()
    }

    pub(crate) fn with_capacity(n: usize) -> Headers {
        Headers {
            entries: Arc::new(Vec::with_capacity(n)),
        }
    }

    /// Gives back the unused capacity of a list that is complete (a parsed
    /// message's, a request a transaction keeps): it may be kept for a
    /// transaction's or a call's lifetime.
    pub fn shrink_to_fit(&mut self) {
        if self.entries.capacity() > self.entries.len() {
            self.rows_mut().shrink_to_fit();
        }
    }

    /// The rows, to change: copied first when another clone shares them.
    fn rows_mut(&mut self) -> &mut Vec<Header> {
        Arc::make_mut(&mut self.entries)
    }

    /// Appends a row received on the wire (already validated by the parser).
    pub(crate) fn push_parsed(&mut self, name: Bytes, value: Bytes) {
        self.rows_mut().push(Header::parsed(name, value));
    }

    /// The list of a parsed message, its rows gathered first: the parser
    /// builds a `Vec` it alone owns and shares it once, rather than asking
    /// `Arc::make_mut` (an atomic compare-and-swap) for every row.
    pub(crate) fn from_rows(rows: Vec<Header>) -> Headers {
        Headers {
            entries: Arc::new(rows),
        }
    }

    /// Appends a row of another message. A [`Header`] is only ever made by
    /// the parser or by a checked builder, so the row needs no checking
    /// again: how a B2BUA copies end-to-end headers from one leg to the
    /// other.
    pub fn push_row(&mut self, h: Header) {
        self.rows_mut().push(h);
    }

    /// Room for `additional` more rows, allocated exactly: for a message
    /// whose row count is known before it is built.
    pub fn reserve(&mut self, additional: usize) {
        self.rows_mut().reserve_exact(additional);
    }

    /// Rows the list has room for without growing.
    #[cfg(test)]
    pub(crate) fn capacity(&self) -> usize {
        self.entries.capacity()
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when there are no rows.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// All rows in order.
    pub fn iter(&self) -> std::slice::Iter<'_, Header> {
        self.entries.iter()
    }

    /// Rows with this name (long or compact form, any case), in order.
    pub fn rows<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Header> + 'a {
        let k = key(name);
        self.entries.iter().filter(move |h| h.name.matches(&k))
    }

    /// Rows of a known header (long or compact form), in order. The same
    /// rows as [`Headers::rows`] with its canonical name, without
    /// recognising the name first: what the typed accessors and the call
    /// layer use on every message.
    pub fn rows_of(&self, k: KnownHeader) -> impl Iterator<Item = &Header> + '_ {
        self.entries.iter().filter(move |h| h.name.known == Some(k))
    }

    /// Value of the first row of a known header.
    pub fn get_of(&self, k: KnownHeader) -> Option<&Bytes> {
        self.rows_of(k).next().map(|h| &h.value)
    }

    /// Value of the first row with this name.
    pub fn get(&self, name: &str) -> Option<&Bytes> {
        let k = key(name);
        self.entries
            .iter()
            .find(|h| h.name.matches(&k))
            .map(|h| &h.value)
    }

    /// Values of every row with this name, in order (rows are not split).
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Bytes> + 'a {
        self.rows(name).map(|h| &h.value)
    }

    /// Number of rows with this name.
    pub fn count(&self, name: &str) -> usize {
        let k = key(name);
        self.entries.iter().filter(|h| h.name.matches(&k)).count()
    }

    /// True when at least one row has this name.
    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// Every value of this header: rows of list headers (Via, Contact,
    /// Route, ...) are split at top-level commas; other headers yield whole
    /// rows, since their grammar may contain commas (Date, WWW-Authenticate,
    /// unknown headers).
    pub fn values(&self, name: &str) -> Vec<Bytes> {
        match KnownHeader::from_name(name.as_bytes()) {
            Some(k) => self.values_of(k),
            None => self.get_all(name).cloned().collect(),
        }
    }

    /// [`Headers::values`] of a known header.
    pub fn values_of(&self, k: KnownHeader) -> Vec<Bytes> {
        let mut out = Vec::new();
        for h in self.rows_of(k) {
            if k.is_list() {
                out.extend(split_list(&h.value));
            } else {
                out.push(h.value.clone());
            }
        }
        out
    }

    fn checked(name: &str, value: Bytes) -> Result<Header, BuildError> {
        let name = HeaderName::new(name)?;
        // memchr2: a built value (a Via, a From with its URI) is tens of
        // bytes, and a byte loop here was a fifth of building a request.
        if memchr::memchr2(b'\r', b'\n', &value).is_some() {
            return Err(BuildError::InvalidValue);
        }
        // A built value rarely has blanks to trim; slicing it anyway would
        // turn its owned buffer into a shared one: an allocation per row.
        let trimmed = trim_ws(&value);
        let value = if trimmed.len() == value.len() {
            value
        } else {
            sub(&value, trimmed)
        };
        Ok(Header { name, value })
    }

    /// Appends a row at the end.
    pub fn append(&mut self, name: &str, value: impl Into<Bytes>) -> Result<(), BuildError> {
        let h = Headers::checked(name, value.into())?;
        self.rows_mut().push(h);
        Ok(())
    }

    /// Inserts a row at `index` (clamped to the end of the list).
    pub fn insert(
        &mut self,
        index: usize,
        name: &str,
        value: impl Into<Bytes>,
    ) -> Result<(), BuildError> {
        let h = Headers::checked(name, value.into())?;
        let rows = self.rows_mut();
        rows.insert(index.min(rows.len()), h);
        Ok(())
    }

    /// Inserts a row before the first row of the same name, or at the top
    /// when there is none: how a proxy adds its Via or Record-Route
    /// (RFC 3261 §16.6).
    pub fn prepend(&mut self, name: &str, value: impl Into<Bytes>) -> Result<(), BuildError> {
        let h = Headers::checked(name, value.into())?;
        let at = self
            .entries
            .iter()
            .position(|e| e.name == h.name)
            .unwrap_or(0);
        self.rows_mut().insert(at, h);
        Ok(())
    }

    /// Removes every row with this name; returns how many were removed.
    pub fn remove(&mut self, name: &str) -> usize {
        let k = key(name);
        if !self.entries.iter().any(|h| h.name.matches(&k)) {
            return 0; // nothing to remove: the rows stay shared
        }
        let rows = self.rows_mut();
        let before = rows.len();
        rows.retain(|h| !h.name.matches(&k));
        before - rows.len()
    }

    /// Replaces the value of the first row with this name, keeping the row's
    /// place, its name as received and every other row: how a stateless
    /// element stamps the top Via (RFC 3261 §18.2.1). Returns whether a row
    /// was there to change.
    pub fn set_first(&mut self, name: &str, value: impl Into<Bytes>) -> Result<bool, BuildError> {
        let checked = Headers::checked(name, value.into())?;
        let k = key(name);
        match self.entries.iter().position(|e| e.name.matches(&k)) {
            Some(i) => {
                self.rows_mut()[i].value = checked.value;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Replaces every row with this name by one row, kept at the position of
    /// the first removed row (or appended).
    pub fn replace(&mut self, name: &str, value: impl Into<Bytes>) -> Result<(), BuildError> {
        let h = Headers::checked(name, value.into())?;
        let k = key(name);
        let at = self.entries.iter().position(|e| e.name.matches(&k));
        let rows = self.rows_mut();
        rows.retain(|e| !e.name.matches(&k));
        match at {
            Some(i) => rows.insert(i.min(rows.len()), h),
            None => rows.push(h),
        }
        Ok(())
    }

    /// Writes `Name: value CRLF` for every row except Content-Length (which
    /// the message writer recomputes).
    pub(crate) fn write_to(&self, out: &mut Vec<u8>) {
        for h in self.entries.iter() {
            if h.name.known == Some(KnownHeader::ContentLength) {
                continue;
            }
            out.extend_from_slice(h.name.as_wire());
            out.extend_from_slice(b": ");
            out.extend_from_slice(&h.value);
            out.extend_from_slice(b"\r\n");
        }
    }
}

impl<'a> IntoIterator for &'a Headers {
    type Item = &'a Header;
    type IntoIter = std::slice::Iter<'a, Header>;
    fn into_iter(self) -> Self::IntoIter {
        self.entries.iter()
    }
}

/// Splits a list value at commas that are outside quoted strings and
/// `<...>`; elements are trimmed zero-copy slices and may be empty (the
/// typed parsers reject empty elements: RFC 3261 has no null list elements).
pub fn split_list(v: &Bytes) -> SplitList<'_> {
    SplitList {
        v,
        pos: 0,
        done: false,
    }
}

/// Iterator returned by [`split_list`].
#[derive(Debug, Clone)]
pub struct SplitList<'a> {
    v: &'a Bytes,
    pos: usize,
    done: bool,
}

impl Iterator for SplitList<'_> {
    type Item = Bytes;

    fn next(&mut self) -> Option<Bytes> {
        if self.done {
            return None;
        }
        let v = self.v;
        let start = self.pos;
        let mut i = start;
        // Jumps between the bytes that matter with memchr: a Via or a
        // Contact is read this way on every message, tens of bytes each.
        while i < v.len() {
            let Some(k) = memchr::memchr3(b'"', b'<', b',', &v[i..]) else {
                break;
            };
            i += k;
            match v[i] {
                b'"' => i = crate::chars::quoted_end(v, i).unwrap_or(v.len()),
                b'<' => {
                    // Inside <...> a comma or quote is the URI's own.
                    match memchr::memchr(b'>', &v[i + 1..]) {
                        Some(k) => i += k + 2,
                        None => i = v.len(),
                    }
                }
                _ => {
                    self.pos = i + 1;
                    return Some(sub(v, trim_ws(&v[start..i])));
                }
            }
        }
        self.done = true;
        Some(sub(v, trim_ws(&v[start..])))
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn set_first_changes_only_the_first_rows_value_in_place() {
        let mut h = Headers::new();
        h.append("From", "<sip:a@x>;tag=1").unwrap();
        h.append("v", "SIP/2.0/UDP a;branch=z9hG4bK1").unwrap();
        h.append("Via", "SIP/2.0/UDP b;branch=z9hG4bK2").unwrap();
        assert!(h.set_first("Via", "SIP/2.0/UDP c;branch=z9hG4bK3").unwrap());
        let rows: Vec<(&[u8], &[u8])> = h
            .iter()
            .map(|r| (r.name().as_wire(), r.value().as_ref()))
            .collect();
        assert_eq!(
            rows,
            [
                (&b"From"[..], &b"<sip:a@x>;tag=1"[..]),
                (b"Via", b"SIP/2.0/UDP c;branch=z9hG4bK3"),
                (b"Via", b"SIP/2.0/UDP b;branch=z9hG4bK2"),
            ]
        );
        assert!(!h.set_first("Route", "<sip:r>").unwrap());
        assert!(h.set_first("Via", "bad\r\nInjected: x").is_err());
    }

    use super::*;

    #[test]
    fn a_clone_shares_the_rows_until_one_of_them_changes() {
        let original = sample();
        let mut copy = original.clone();
        assert!(Arc::ptr_eq(&original.entries, &copy.entries));
        // Removing nothing leaves them shared.
        assert_eq!(copy.remove("Route"), 0);
        assert!(!copy.set_first("Route", "<sip:r>").unwrap());
        assert!(Arc::ptr_eq(&original.entries, &copy.entries));
        copy.set_first("To", "<sip:c@example.com>").unwrap();
        assert!(!Arc::ptr_eq(&original.entries, &copy.entries));
        assert_eq!(
            original.get("To").map(|v| v.as_ref()),
            Some(&b"<sip:b@example.com>"[..])
        );
        assert_eq!(
            copy.get("To").map(|v| v.as_ref()),
            Some(&b"<sip:c@example.com>"[..])
        );
        assert_eq!(original.len(), copy.len());
        assert_eq!(copy.remove("Via"), 2);
        assert_eq!((original.len(), copy.len()), (4, 2));
    }

    #[test]
    fn a_list_is_one_pointer_and_a_canonical_name_is_not_copied() {
        assert_eq!(std::mem::size_of::<Headers>(), 8);
        let h = sample();
        assert_eq!(
            h.iter().nth(1).map(|r| r.name().as_received()),
            Some(&b"To"[..])
        );
        assert_eq!(
            h.iter().nth(1).map(|r| r.name().as_received().as_ptr()),
            Some(KnownHeader::To.canonical().as_ptr())
        );
        // Any other spelling is kept as given.
        assert_eq!(
            h.iter().nth(2).map(|r| r.name().as_received()),
            Some(&b"VIA"[..])
        );
        assert_eq!(
            h.iter().nth(2).map(|r| r.name().as_wire()),
            Some(&b"Via"[..])
        );
    }

    #[test]
    fn shrink_to_fit_keeps_the_rows() {
        let mut h = Headers::with_capacity(16);
        h.append("To", "<sip:b@example.com>").unwrap();
        h.shrink_to_fit();
        assert_eq!(h.entries.capacity(), 1);
        assert_eq!(
            h.get("to").map(|v| v.as_ref()),
            Some(&b"<sip:b@example.com>"[..])
        );
    }

    fn sample() -> Headers {
        let mut h = Headers::new();
        h.append("v", "SIP/2.0/UDP a;branch=z9hG4bK1").unwrap();
        h.append("To", "<sip:b@example.com>").unwrap();
        h.append("VIA", "SIP/2.0/UDP b;branch=z9hG4bK2, SIP/2.0/UDP c")
            .unwrap();
        h.append("X-Custom", "a, b").unwrap();
        h
    }

    #[test]
    fn compact_and_case() {
        let h = sample();
        assert_eq!(h.count("Via"), 2);
        assert_eq!(h.count("v"), 2);
        assert_eq!(
            h.get("t").map(|v| &v[..]),
            Some(&b"<sip:b@example.com>"[..])
        );
        assert_eq!(h.get("x-custom").map(|v| &v[..]), Some(&b"a, b"[..]));
        assert_eq!(h.values("Via").len(), 3);
        assert_eq!(
            h.values("X-Custom").len(),
            1,
            "unknown headers are not split"
        );
        assert!(h.get("Contact").is_none());
        assert_eq!(KnownHeader::from_name(b"I"), Some(KnownHeader::CallId));
        assert_eq!(KnownHeader::CallId.compact(), Some('i'));
        assert_eq!(
            KnownHeader::from_name(b"call-id").map(KnownHeader::canonical),
            Some("Call-ID")
        );
        for k in KNOWN {
            assert_eq!(k.0.entry().0, k.0, "table order");
            assert_eq!(KnownHeader::from_name(k.1.as_bytes()), Some(k.0));
            assert_eq!(
                KnownHeader::from_name(k.1.to_ascii_uppercase().as_bytes()),
                Some(k.0)
            );
            if let Some(c) = k.2 {
                assert_eq!(KnownHeader::from_name(&[c.to_ascii_uppercase()]), Some(k.0));
            }
        }
        assert_eq!(KnownHeader::from_name(b"X-Via"), None);
        assert_eq!(KnownHeader::from_name(b"q"), None);
        assert_eq!(KnownHeader::from_name(b""), None);
        assert_eq!(KnownHeader::from_name(b"%"), None);
    }

    #[test]
    fn build_ops() {
        let mut h = sample();
        h.prepend("Via", "SIP/2.0/TCP top;branch=z9hG4bK0").unwrap();
        assert!(h.get("Via").unwrap().starts_with(b"SIP/2.0/TCP top"));
        assert_eq!(h.remove("via"), 3);
        h.insert(99, "Max-Forwards", "70").unwrap();
        h.insert(0, "Subject", "hi").unwrap();
        assert_eq!(h.iter().next().unwrap().name().as_wire(), b"Subject");
        assert_eq!(h.iter().last().unwrap().name().as_wire(), b"Max-Forwards");
        h.remove("Subject");
        h.remove("Max-Forwards");
        h.replace("To", "<sip:c@example.com>").unwrap();
        assert_eq!(h.count("To"), 1);
        assert_eq!(h.iter().next().unwrap().name().as_wire(), b"To");
        assert_eq!(h.append("Bad Name", "x"), Err(BuildError::InvalidName));
        assert_eq!(
            h.append("X", "a\r\nInjected: 1"),
            Err(BuildError::InvalidValue)
        );
        let mut out = Vec::new();
        h.write_to(&mut out);
        assert_eq!(out, b"To: <sip:c@example.com>\r\nX-Custom: a, b\r\n");
    }

    #[test]
    fn split() {
        let v = Bytes::from_static(b"\"a,b\" <sip:x@y;a=1,2>, <sip:z@w> ,,");
        let parts: Vec<Bytes> = split_list(&v).collect();
        assert_eq!(parts.len(), 4);
        assert_eq!(&parts[0][..], b"\"a,b\" <sip:x@y;a=1,2>");
        assert_eq!(&parts[1][..], b"<sip:z@w>");
        assert!(parts[2].is_empty() && parts[3].is_empty());
    }

    /// The byte-by-byte reading the memchr jumps replaced: commas split
    /// outside quoted strings and <...>.
    fn split_bytewise(v: &[u8]) -> Vec<Vec<u8>> {
        let (mut out, mut start, mut i, mut in_angle) = (Vec::new(), 0, 0, false);
        while i < v.len() {
            match v[i] {
                b'"' if !in_angle => {
                    i = crate::chars::quoted_end(v, i).unwrap_or(v.len());
                    continue;
                }
                b'<' => in_angle = true,
                b'>' => in_angle = false,
                b',' if !in_angle => {
                    out.push(super::trim_ws(&v[start..i]).to_vec());
                    start = i + 1;
                }
                _ => {}
            }
            i += 1;
        }
        out.push(super::trim_ws(&v[start..]).to_vec());
        out
    }

    proptest::proptest! {
        #[test]
        fn split_list_splits_as_the_bytewise_reading(
            v in proptest::collection::vec(
                proptest::sample::select(b"a ,<>\"\\;=\r".to_vec()), 0..40)
        ) {
            let bytes = bytes::Bytes::from(v.clone());
            let ours: Vec<Vec<u8>> = super::split_list(&bytes).map(|b| b.to_vec()).collect();
            proptest::prop_assert_eq!(ours, split_bytewise(&v));
        }
    }

    proptest::proptest! {
        /// The folded comparison finds what a case-insensitive comparison
        /// finds, for known names in any case and with any one byte
        /// changed (a CR where a `-` was, `_` for `-`, a digit...).
        #[test]
        fn known_names_are_found_as_a_case_insensitive_comparison_finds_them(
            i in 0..super::KNOWN.len(),
            flips in proptest::collection::vec(proptest::bool::ANY, 24),
            change in proptest::option::of((0usize..24, proptest::num::u8::ANY)),
        ) {
            let mut name: Vec<u8> = super::KNOWN[i].1.bytes().collect();
            for (b, flip) in name.iter_mut().zip(&flips) {
                if *flip {
                    *b ^= 0x20 * u8::from(b.is_ascii_alphabetic());
                }
            }
            if let Some((at, b)) = change {
                let at = at % name.len();
                name[at] = b;
            }
            let reference = super::KNOWN
                .iter()
                .find(|k| name.len() > 1 && k.1.as_bytes().eq_ignore_ascii_case(&name))
                .map(|k| k.0);
            if name.len() > 1 {
                proptest::prop_assert_eq!(super::KnownHeader::from_name(&name), reference);
            }
        }
    }
}
