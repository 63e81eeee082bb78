//! MIME multipart message bodies (RFC 2046 §5.1) as SIP carries them
//! (RFC 5621): an emergency INVITE's SDP next to its PIDF-LO location
//! (RFC 6442), a SIPREC INVITE's SDP next to its recording metadata
//! (RFC 7866).
//!
//! Why this exists: the media anchor must see the session description
//! wherever it is, and everything else in the body must reach the next hop
//! exactly as sent (a PSAP reads the location, a recorder the metadata;
//! neither is trunkd's to reformat). So the parser keeps byte ranges into
//! the original body, and a rebuild splices the one replaced part body into
//! those bytes: preamble, delimiters, the other parts' headers and bodies
//! and the epilogue are copied unchanged.
//!
//! Tolerance: delimiter lines may end in bare LF as well as CRLF and carry
//! transport padding (spaces and tabs) before the line end (RFC 2046
//! §5.1.1); part headers may be folded and use SIP compact names. Anything
//! else that breaks the grammar is a [`MultipartError`], never a panic.
//!
//! Most callers only need [`session_sdp`] (read the SDP of any body) and
//! [`replace_session_sdp`] (the body to send once that SDP is rewritten):
//!
//! ```
//! use trunkd_sip::{replace_session_sdp, session_sdp, Bytes};
//!
//! let ct = Some(&b"multipart/mixed;boundary=b1"[..]);
//! let body = Bytes::from_static(
//!     b"--b1\r\nContent-Type: application/sdp\r\n\r\nv=0\r\nc=IN IP4 10.0.0.7\r\n\
//!       \r\n--b1\r\nContent-Type: application/pidf+xml\r\n\r\n<presence/>\r\n--b1--\r\n",
//! );
//! let sdp = session_sdp(ct, &body).unwrap();
//! assert_eq!(&sdp[..], b"v=0\r\nc=IN IP4 10.0.0.7\r\n");
//!
//! let anchored = Bytes::from_static(b"v=0\r\nc=IN IP4 192.0.2.1\r\n");
//! let out = replace_session_sdp(ct, &body, &anchored).unwrap();
//! assert_eq!(
//!     &out[..],
//!     &b"--b1\r\nContent-Type: application/sdp\r\n\r\nv=0\r\nc=IN IP4 192.0.2.1\r\n\
//!        \r\n--b1\r\nContent-Type: application/pidf+xml\r\n\r\n<presence/>\r\n--b1--\r\n"[..]
//! );
//! // A plain SDP body is its own session description.
//! let plain = Some(&b"application/sdp"[..]);
//! assert_eq!(session_sdp(plain, &anchored), Some(anchored.clone()));
//! ```

use std::ops::Range;

use bytes::Bytes;
use thiserror::Error;

use crate::chars::{is_token, is_ws, trim_ws};
use crate::error::SyntaxError;
use crate::header::ContentType;
use crate::headers::KnownHeader;
use crate::params::{unquote, Params};
use crate::sub;

/// Why a multipart body cannot be read or rebuilt.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum MultipartError {
    /// The Content-Type is not `multipart/*`.
    #[error("not a multipart Content-Type")]
    NotMultipart,
    /// The Content-Type does not parse.
    #[error("invalid Content-Type: {0}")]
    InvalidContentType(SyntaxError),
    /// A multipart Content-Type without a `boundary` parameter (RFC 2046
    /// §5.1.1 makes it mandatory).
    #[error("multipart Content-Type without a boundary parameter")]
    NoBoundary,
    /// The boundary is empty or contains a line break.
    #[error("invalid multipart boundary")]
    InvalidBoundary,
    /// The body has no delimiter line for its boundary.
    #[error("no multipart delimiter line")]
    NoDelimiter,
    /// The body ends without the close delimiter `--boundary--`.
    #[error("no multipart close delimiter")]
    NoCloseDelimiter,
    /// A body part's header section has a line that is not `name: value`.
    #[error("malformed header in body part {part}")]
    MalformedPartHeader {
        /// Index of the body part (0-based).
        part: usize,
    },
    /// The session description is encoded (base64, quoted-printable): it
    /// cannot be rewritten in place. SIP is 8-bit clean (RFC 5621 §3.2
    /// expects `binary` when the header is present at all).
    #[error("body part {part} has an unsupported Content-Transfer-Encoding")]
    UnsupportedTransferEncoding {
        /// Index of the body part (0-based).
        part: usize,
    },
    /// An error inside the multipart body of part `part`.
    #[error("in body part {part}: {source}")]
    Nested {
        /// Index of the outer body part holding the nested multipart.
        part: usize,
        /// What is wrong inside it.
        source: Box<MultipartError>,
    },
    /// A part index out of range.
    #[error("no body part {0}")]
    NoSuchPart(usize),
    /// The body has no session description to replace.
    #[error("no session description in the body")]
    NoSession,
    /// The new part body contains a delimiter line of an enclosing
    /// boundary: written out, it would split the part (RFC 2046 §5.1.1
    /// forbids the boundary inside encapsulated parts). Nothing is emitted.
    #[error("the new body part contains the multipart boundary")]
    BoundaryInContent,
}

/// `handling` of a Content-Disposition (RFC 3261 §20.11, RFC 5621 §3.2):
/// what a UA must do with a body part it does not understand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Handling {
    /// Reject the message (415) when the part is not understood; the
    /// default when the parameter is absent.
    Required,
    /// The part may be ignored.
    Optional,
    /// Any other token, as received.
    Other(Bytes),
}

/// A Content-Disposition value (RFC 3261 §20.11): `session`, `render`,
/// `icon`, `alert`, `by-reference` (RFC 5621 §9.1) or an extension.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContentDisposition {
    /// The disposition type as received (compare case-insensitively).
    pub disposition: Bytes,
    /// Parameters, e.g. `handling`.
    pub params: Params,
}

impl ContentDisposition {
    /// Parses a Content-Disposition value.
    ///
    /// # Errors
    /// When the value is not `token *(SEMI param)`.
    pub fn parse(v: &Bytes) -> Result<ContentDisposition, SyntaxError> {
        let s = &v[..];
        let start = crate::chars::skip_ws(s, 0);
        let mut end = start;
        while end < s.len() && is_token(s[end]) {
            end += 1;
        }
        if end == start {
            return Err(SyntaxError("expected a disposition type"));
        }
        Ok(ContentDisposition {
            disposition: sub(v, &s[start..end]),
            params: Params::parse_header(v, &s[end..])?,
        })
    }

    /// True for this disposition type (case-insensitive).
    pub fn is(&self, disposition: &str) -> bool {
        self.disposition
            .eq_ignore_ascii_case(disposition.as_bytes())
    }

    /// The `handling` parameter; [`Handling::Required`] when absent.
    pub fn handling(&self) -> Handling {
        match self.params.value("handling") {
            None => Handling::Required,
            Some(v) if v.eq_ignore_ascii_case(b"required") => Handling::Required,
            Some(v) if v.eq_ignore_ascii_case(b"optional") => Handling::Optional,
            Some(v) => Handling::Other(v.clone()),
        }
    }
}

/// One header of a body part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartHeader {
    /// Name as received.
    pub name: Bytes,
    /// Value without surrounding whitespace; a folded value is unfolded (a
    /// copy), any other is a slice of the body.
    pub value: Bytes,
}

/// One body part: its headers and its body, both slices of the multipart
/// body (RFC 2046 §5.1.1 `body-part`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BodyPart {
    headers: Vec<PartHeader>,
    body: Bytes,
    range: Range<usize>,
    /// Where the value of the part's own Content-Length header is, if it
    /// has one on a single line: a replaced body updates it.
    content_length: Option<Range<usize>>,
}

impl BodyPart {
    /// The part's headers, in order.
    pub fn headers(&self) -> &[PartHeader] {
        &self.headers
    }

    /// First header with this name: case-insensitive, and a SIP compact
    /// form matches its long name (`c` for Content-Type).
    pub fn header(&self, name: &str) -> Option<&Bytes> {
        let want = KnownHeader::from_name(name.as_bytes());
        self.headers
            .iter()
            .find(|h| {
                h.name.eq_ignore_ascii_case(name.as_bytes())
                    || (want.is_some() && KnownHeader::from_name(&h.name) == want)
            })
            .map(|h| &h.value)
    }

    /// The part's Content-Type; `None` when absent (RFC 2046 §5.1: then
    /// `text/plain`).
    ///
    /// # Errors
    /// When the header is present and does not parse.
    pub fn content_type(&self) -> Result<Option<ContentType>, SyntaxError> {
        self.header("Content-Type")
            .map(ContentType::parse)
            .transpose()
    }

    /// The part's Content-Disposition, if present.
    ///
    /// # Errors
    /// When the header is present and does not parse.
    pub fn disposition(&self) -> Result<Option<ContentDisposition>, SyntaxError> {
        self.header("Content-Disposition")
            .map(ContentDisposition::parse)
            .transpose()
    }

    /// The part's Content-ID (RFC 2045 §7), e.g. `<target123@atlanta.example.com>`,
    /// which a `Geolocation: <cid:…>` header points at (RFC 6442).
    pub fn content_id(&self) -> Option<&Bytes> {
        self.header("Content-ID")
    }

    /// The part's body: a slice of the multipart body, without the line
    /// break that precedes the next delimiter (it belongs to the delimiter).
    pub fn body(&self) -> &Bytes {
        &self.body
    }

    /// Where [`BodyPart::body`] lies in the multipart body.
    pub fn body_range(&self) -> Range<usize> {
        self.range.clone()
    }

    /// True when the part's type/subtype is this one (parameters ignored,
    /// so a part whose parameters are broken is still recognised).
    pub fn is_type(&self, mtype: &str, subtype: &str) -> bool {
        self.header("Content-Type")
            .is_some_and(|v| media_type_is(v, mtype, subtype))
    }

    /// True when the Content-Transfer-Encoding leaves the body as bytes
    /// (absent, `7bit`, `8bit`, `binary`).
    fn is_identity_encoded(&self) -> bool {
        self.header("Content-Transfer-Encoding").is_none_or(|v| {
            [&b"7bit"[..], b"8bit", b"binary"]
                .iter()
                .any(|e| v.eq_ignore_ascii_case(e))
        })
    }
}

/// Where the session description of a multipart body is
/// ([`Multipart::find_session`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionPart {
    /// Index of the top-level body part holding it.
    pub part: usize,
    /// When that part is itself multipart: the index inside it.
    pub nested: Option<usize>,
    /// The SDP: a slice of the body.
    pub sdp: Bytes,
}

/// A parsed multipart body: byte ranges into the original, so that it can
/// be rebuilt with one part body replaced and every other byte unchanged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Multipart {
    body: Bytes,
    subtype: Bytes,
    boundary: Vec<u8>,
    preamble: Range<usize>,
    parts: Vec<BodyPart>,
    epilogue: Range<usize>,
}

/// A delimiter line found in the body.
struct Delimiter {
    /// Where the line break before `--boundary` starts (the end of the
    /// previous part's body, or of the preamble).
    before: usize,
    /// Just after the delimiter line's line break (or the end of input).
    after: usize,
    /// `--boundary--`.
    close: bool,
}

impl Multipart {
    /// Parses `body` as the multipart `content_type` says.
    ///
    /// # Errors
    /// [`MultipartError`] for a non-multipart type, a missing or invalid
    /// boundary, a body without delimiters or close delimiter, or a part
    /// whose header section is malformed.
    pub fn parse(content_type: &ContentType, body: &Bytes) -> Result<Multipart, MultipartError> {
        if !content_type.mtype.eq_ignore_ascii_case(b"multipart") {
            return Err(MultipartError::NotMultipart);
        }
        let boundary = content_type
            .params
            .value("boundary")
            .map(|v| unquote(v))
            .ok_or(MultipartError::NoBoundary)?;
        if boundary.is_empty() || boundary.iter().any(|&b| b == b'\r' || b == b'\n') {
            return Err(MultipartError::InvalidBoundary);
        }
        split(body, &content_type.subtype, boundary)
    }

    /// Parses a body given the raw Content-Type header value.
    ///
    /// # Errors
    /// As [`Multipart::parse`], and when the value does not parse.
    pub fn parse_with(content_type: &[u8], body: &Bytes) -> Result<Multipart, MultipartError> {
        let ct = ContentType::parse(&Bytes::copy_from_slice(content_type))
            .map_err(MultipartError::InvalidContentType)?;
        Multipart::parse(&ct, body)
    }

    /// The multipart subtype (`mixed`, `alternative`, `related` …).
    pub fn subtype(&self) -> &Bytes {
        &self.subtype
    }

    /// The boundary, unquoted.
    pub fn boundary(&self) -> &[u8] {
        &self.boundary
    }

    /// Text before the first delimiter (not including the line break that
    /// belongs to the delimiter).
    pub fn preamble(&self) -> Bytes {
        self.body.slice(self.preamble.clone())
    }

    /// Everything after the close delimiter's line.
    pub fn epilogue(&self) -> Bytes {
        self.body.slice(self.epilogue.clone())
    }

    /// The body parts, in order.
    pub fn parts(&self) -> &[BodyPart] {
        &self.parts
    }

    /// The whole body this was parsed from.
    pub fn as_bytes(&self) -> &Bytes {
        &self.body
    }

    /// The session description: the first `application/sdp` part whose
    /// Content-Disposition is `session` or absent (RFC 5621 §3.1, RFC 3261
    /// §13.2.1), looking one level into nested multipart parts (e.g. a
    /// `multipart/alternative` inside `multipart/mixed`), in body order.
    ///
    /// # Errors
    /// When a nested multipart part does not parse (its SDP could not be
    /// found), or when the SDP part is base64 or quoted-printable encoded.
    pub fn find_session(&self) -> Result<Option<SessionPart>, MultipartError> {
        for (i, part) in self.parts.iter().enumerate() {
            if is_session_part(part) {
                if !part.is_identity_encoded() {
                    return Err(MultipartError::UnsupportedTransferEncoding { part: i });
                }
                return Ok(Some(SessionPart {
                    part: i,
                    nested: None,
                    sdp: part.body.clone(),
                }));
            }
            let Some(inner) = nested(part).map_err(|e| wrap(i, e))? else {
                continue;
            };
            for (j, p) in inner.parts.iter().enumerate() {
                if is_session_part(p) {
                    if !p.is_identity_encoded() {
                        return Err(wrap(
                            i,
                            MultipartError::UnsupportedTransferEncoding { part: j },
                        ));
                    }
                    return Ok(Some(SessionPart {
                        part: i,
                        nested: Some(j),
                        sdp: p.body.clone(),
                    }));
                }
            }
        }
        Ok(None)
    }

    /// The body with part `index`'s body replaced by `new_body`; every
    /// other byte is the original's, except the value of a Content-Length
    /// header of that part (some UAs write one), which is set to the new
    /// body's length.
    ///
    /// # Errors
    /// [`MultipartError::NoSuchPart`], or
    /// [`MultipartError::BoundaryInContent`] when `new_body` would read as
    /// a delimiter line (then nothing is produced).
    pub fn replace_part_body(
        &self,
        index: usize,
        new_body: &[u8],
    ) -> Result<Bytes, MultipartError> {
        let part = self
            .parts
            .get(index)
            .ok_or(MultipartError::NoSuchPart(index))?;
        let r = part.range.clone();
        if self.body[r.clone()] == *new_body {
            return Ok(self.body.clone());
        }
        let mut out = Vec::with_capacity(self.body.len() + new_body.len() + 8);
        let mut copied = 0;
        if let Some(cl) = &part.content_length {
            out.extend_from_slice(&self.body[..cl.start]);
            out.extend_from_slice(new_body.len().to_string().as_bytes());
            copied = cl.end;
        }
        out.extend_from_slice(&self.body[copied..r.start]);
        let start = out.len();
        out.extend_from_slice(new_body);
        out.extend_from_slice(&self.body[r.end..]);
        let out = Bytes::from(out);
        // The check is the parser itself: the new body must split into the
        // same parts, with the replaced one exactly where it was put.
        let again = self.reparse(&out)?;
        let same = again.parts.len() == self.parts.len()
            && again.parts[index].range == (start..start + new_body.len());
        if same {
            Ok(out)
        } else {
            Err(MultipartError::BoundaryInContent)
        }
    }

    /// The body with the session description at `at` (from
    /// [`Multipart::find_session`]) replaced by `new_sdp`.
    ///
    /// # Errors
    /// As [`Multipart::replace_part_body`], at either level.
    pub fn replace_session(
        &self,
        at: &SessionPart,
        new_sdp: &[u8],
    ) -> Result<Bytes, MultipartError> {
        match at.nested {
            None => self.replace_part_body(at.part, new_sdp),
            Some(j) => {
                let part = self
                    .parts
                    .get(at.part)
                    .ok_or(MultipartError::NoSuchPart(at.part))?;
                let inner = nested(part)
                    .map_err(|e| wrap(at.part, e))?
                    .ok_or(MultipartError::NoSession)?;
                // A boundary clash is the same fault at either level.
                let new_inner = inner.replace_part_body(j, new_sdp).map_err(|e| match e {
                    MultipartError::BoundaryInContent => e,
                    e => wrap(at.part, e),
                })?;
                self.replace_part_body(at.part, &new_inner)
            }
        }
    }

    /// The parser is the check of a rebuilt body: any failure means the
    /// new content broke the structure.
    fn reparse(&self, body: &Bytes) -> Result<Multipart, MultipartError> {
        split(body, &self.subtype, self.boundary.clone())
            .map_err(|_| MultipartError::BoundaryInContent)
    }
}

fn wrap(part: usize, e: MultipartError) -> MultipartError {
    MultipartError::Nested {
        part,
        source: Box::new(e),
    }
}

/// Splits `body` at the delimiter lines of `boundary` (RFC 2046 §5.1.1).
fn split(body: &Bytes, subtype: &Bytes, boundary: Vec<u8>) -> Result<Multipart, MultipartError> {
    let first = find_delimiter(body, &boundary, 0).ok_or(MultipartError::NoDelimiter)?;
    let preamble = 0..first.before;
    let mut parts = Vec::new();
    let mut at = first;
    while !at.close {
        let next =
            find_delimiter(body, &boundary, at.after).ok_or(MultipartError::NoCloseDelimiter)?;
        parts.push(parse_part(body, at.after..next.before, parts.len())?);
        at = next;
    }
    Ok(Multipart {
        body: body.clone(),
        subtype: subtype.clone(),
        boundary,
        preamble,
        parts,
        epilogue: at.after..body.len(),
    })
}

/// The multipart body inside `part`, if it is one.
fn nested(part: &BodyPart) -> Result<Option<Multipart>, MultipartError> {
    let Some(v) = part.header("Content-Type") else {
        return Ok(None);
    };
    if !media_type_is(v, "multipart", "*") {
        return Ok(None);
    }
    let ct = ContentType::parse(v).map_err(MultipartError::InvalidContentType)?;
    Multipart::parse(&ct, &part.body).map(Some)
}

/// `application/sdp` with disposition `session` or none (RFC 5621 §3.1).
fn is_session_part(part: &BodyPart) -> bool {
    if !part.is_type("application", "sdp") || part.body.is_empty() {
        return false;
    }
    match part.header("Content-Disposition") {
        None => true,
        Some(v) => {
            let v = trim_ws(v);
            let end = v.iter().position(|&b| !is_token(b)).unwrap_or(v.len());
            v[..end].eq_ignore_ascii_case(b"session")
        }
    }
}

/// True when a Content-Type value's `type/subtype` matches (`*` matches
/// any subtype); parameters are not looked at.
fn media_type_is(v: &[u8], mtype: &str, subtype: &str) -> bool {
    let v = trim_ws(v);
    let end = v.iter().position(|&b| b == b';').unwrap_or(v.len());
    let mut it = v[..end].splitn(2, |&b| b == b'/');
    let (Some(t), Some(s)) = (it.next(), it.next()) else {
        return false;
    };
    trim_ws(t).eq_ignore_ascii_case(mtype.as_bytes())
        && (subtype == "*" || trim_ws(s).eq_ignore_ascii_case(subtype.as_bytes()))
}

/// The first delimiter line at or after `from`: `--boundary` at the start
/// of the body or of a line (the preceding line break must lie at or after
/// `from`, i.e. belong to the part being closed), optionally `--`, then
/// transport padding and CRLF, LF or the end of the body.
fn find_delimiter(body: &[u8], boundary: &[u8], from: usize) -> Option<Delimiter> {
    let mut p = from;
    loop {
        let line_start = p == 0 || (p > from && body.get(p - 1) == Some(&b'\n'));
        if line_start {
            if let Some(d) = delimiter_at(body, boundary, p, from) {
                return Some(d);
            }
        }
        // Next line start after p.
        let rest = body.get(p..)?;
        let lf = rest.iter().position(|&b| b == b'\n')?;
        p += lf + 1;
    }
}

fn delimiter_at(body: &[u8], boundary: &[u8], p: usize, from: usize) -> Option<Delimiter> {
    let rest = &body[p..];
    if rest.len() < 2 + boundary.len()
        || &rest[..2] != b"--"
        || &rest[2..2 + boundary.len()] != boundary
    {
        return None;
    }
    let mut q = p + 2 + boundary.len();
    let close = body.get(q..q + 2) == Some(&b"--"[..]);
    if close {
        q += 2;
    }
    while q < body.len() && is_ws(body[q]) {
        q += 1;
    }
    let after = match body.get(q) {
        None => q,
        Some(b'\n') => q + 1,
        Some(b'\r') if body.get(q + 1) == Some(&b'\n') => q + 2,
        Some(_) => return None,
    };
    let before = if p == 0 || p == from {
        p
    } else if p >= 2 && p - 2 >= from && body[p - 2] == b'\r' {
        p - 2
    } else {
        p - 1
    };
    Some(Delimiter {
        before,
        after,
        close,
    })
}

/// Parses `body[r]` as `MIME-part-headers [CRLF *OCTET]`.
fn parse_part(body: &Bytes, r: Range<usize>, index: usize) -> Result<BodyPart, MultipartError> {
    let bad = || MultipartError::MalformedPartHeader { part: index };
    let s = &body[r.clone()];
    let mut headers: Vec<PartHeader> = Vec::new();
    let mut content_length: Option<Range<usize>> = None;
    let mut content_length_seen = false;
    let mut i = 0;
    let body_start = loop {
        if i == s.len() {
            // Headers only, no body (the blank line is optional then).
            break s.len();
        }
        let eol = s[i..].iter().position(|&b| b == b'\n').map(|n| i + n);
        let (line_end, next) = match eol {
            Some(n) => (if n > i && s[n - 1] == b'\r' { n - 1 } else { n }, n + 1),
            None => (s.len(), s.len()),
        };
        let line = &s[i..line_end];
        if line.is_empty() {
            break next;
        }
        if line.contains(&b'\r') {
            return Err(bad());
        }
        if is_ws(line[0]) {
            // Continuation of the previous header (RFC 5322 folding).
            let last = headers.last_mut().ok_or_else(bad)?;
            if is_content_length(&last.name) {
                // Folded: left as it is.
                content_length = None;
            }
            let mut v = last.value.to_vec();
            let more = trim_ws(line);
            if !more.is_empty() {
                if !v.is_empty() {
                    v.push(b' ');
                }
                v.extend_from_slice(more);
            }
            last.value = Bytes::from(v);
        } else {
            let colon = line.iter().position(|&b| b == b':').ok_or_else(bad)?;
            let name = trim_ws(&line[..colon]);
            if name.is_empty() || !name.iter().all(|&b| is_token(b)) {
                return Err(bad());
            }
            let raw = &line[colon + 1..];
            let value = trim_ws(raw);
            if is_content_length(name) && !content_length_seen {
                content_length_seen = true;
                let lead = raw.iter().take_while(|&&b| is_ws(b)).count();
                let at = r.start + i + colon + 1 + lead;
                content_length = Some(at..at + value.len());
            }
            headers.push(PartHeader {
                name: sub(body, name),
                value: sub(body, value),
            });
        }
        i = next;
    };
    let range = r.start + body_start..r.end;
    Ok(BodyPart {
        headers,
        body: body.slice(range.clone()),
        range,
        content_length,
    })
}

fn is_content_length(name: &[u8]) -> bool {
    KnownHeader::from_name(name) == Some(KnownHeader::ContentLength)
}

/// The session description of a message body: the body itself when the
/// Content-Type is `application/sdp`, the SDP part
/// ([`Multipart::find_session`]) of a multipart body, `None` otherwise,
/// for an empty body, or for a multipart body that does not parse.
///
/// `content_type` is the message's Content-Type header value (e.g.
/// `headers.get("Content-Type").map(|v| &v[..])`). Use
/// [`find_session_sdp`] to tell "no SDP" from "a multipart body that does
/// not parse".
pub fn session_sdp(content_type: Option<&[u8]>, body: &Bytes) -> Option<Bytes> {
    find_session_sdp(content_type, body).ok().flatten()
}

/// As [`session_sdp`], with the parse failure of a multipart body
/// reported.
///
/// # Errors
/// When the Content-Type is `multipart/*` and the body (or a nested
/// multipart part) does not parse, or its SDP part is encoded.
pub fn find_session_sdp(
    content_type: Option<&[u8]>,
    body: &Bytes,
) -> Result<Option<Bytes>, MultipartError> {
    let Some(ct) = content_type else {
        return Ok(None);
    };
    if body.is_empty() {
        return Ok(None);
    }
    if media_type_is(ct, "application", "sdp") {
        return Ok(Some(body.clone()));
    }
    if !media_type_is(ct, "multipart", "*") {
        return Ok(None);
    }
    let m = Multipart::parse_with(ct, body)?;
    Ok(m.find_session()?.map(|s| s.sdp))
}

/// The body to send once its session description is rewritten to
/// `new_sdp`: `new_sdp` itself for an `application/sdp` body; for a
/// multipart body, the original with only the SDP part's body replaced
/// (same boundary, so the message's Content-Type stays valid; the caller
/// sets Content-Length from the returned body).
///
/// # Errors
/// [`MultipartError::NoSession`] when the body has no session description;
/// a parse error of the multipart body; [`MultipartError::BoundaryInContent`]
/// when `new_sdp` contains a delimiter line of the boundary.
pub fn replace_session_sdp(
    content_type: Option<&[u8]>,
    body: &Bytes,
    new_sdp: &Bytes,
) -> Result<Bytes, MultipartError> {
    let ct = content_type.ok_or(MultipartError::NoSession)?;
    if body.is_empty() {
        return Err(MultipartError::NoSession);
    }
    if media_type_is(ct, "application", "sdp") {
        return Ok(new_sdp.clone());
    }
    if !media_type_is(ct, "multipart", "*") {
        return Err(MultipartError::NoSession);
    }
    let m = Multipart::parse_with(ct, body)?;
    let at = m.find_session()?.ok_or(MultipartError::NoSession)?;
    m.replace_session(&at, new_sdp)
}

#[cfg(test)]
#[path = "multipart_tests.rs"]
mod tests;
