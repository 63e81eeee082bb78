//! From bytes to [`SipMessage`]: start line, header section, body
//! (RFC 3261 §7, §25; framing of datagrams per §18.3).
//!
//! Single pass over the input, no copies except for folded header values.
//! Lines end with CRLF; a bare LF is tolerated as a line end (liberal
//! receiving), a bare CR is not. CRLFs before the start line are skipped
//! (§7.5).

use bytes::Bytes;

use crate::chars::{is_token_str, is_ws, trim_ws};
use crate::error::{Fault, ParseError, PartialRequest, Unparseable};
use crate::headers::{Header, Headers};
use crate::message::{Request, Response, SipMessage};
use crate::method::Method;
use crate::status::StatusCode;
use crate::sub;
use crate::uri::Uri;
use crate::validate::{check_request, check_response, ParseOptions};

/// Finds the line starting at `from`: returns (end without CR, start of the
/// next line), or `None` when there is no LF.
fn next_line(buf: &[u8], from: usize) -> Option<(usize, usize)> {
    let nl = memchr::memchr(b'\n', &buf[from..])? + from;
    let end = if nl > from && buf[nl - 1] == b'\r' {
        nl - 1
    } else {
        nl
    };
    Some((end, nl + 1))
}

/// A header-section line starting at `from`, as [`next_line`] finds it
/// (end without CR, start of the next line; the rest of the input when
/// there is no LF), or `None` when a CR in it does not end it: the line is
/// malformed. One search for CR or LF per line, where [`next_line`] and a
/// search for a stray CR were two.
fn header_line(buf: &[u8], from: usize) -> Option<(usize, usize)> {
    match memchr::memchr2(b'\r', b'\n', &buf[from..]).map(|k| k + from) {
        None => Some((buf.len(), buf.len())),
        Some(k) if buf[k] == b'\n' => Some((k, k + 1)),
        Some(k) => (buf.get(k + 1) == Some(&b'\n')).then_some((k, k + 2)),
    }
}

/// The header section as far as it could be split into rows.
struct HeaderBlock {
    headers: Headers,
    /// Offset of the body (end of input when unterminated).
    body_start: usize,
    /// An empty line closed the section.
    terminated: bool,
    /// A line could not be understood; parsing stopped there.
    malformed: bool,
}

/// One header being assembled: its name and the (start, end) ranges of its
/// first line's value and continuation lines.
struct Pending {
    name: (usize, usize),
    first: (usize, usize),
    more: Vec<(usize, usize)>,
}

impl Pending {
    fn finish(self, input: &Bytes, rows: &mut Vec<Header>) {
        let name = input.slice(self.name.0..self.name.1);
        let first = &input[self.first.0..self.first.1];
        let value = if self.more.is_empty() {
            sub(input, trim_ws(first))
        } else {
            // RFC 3261 §7.3.1: folding LWS is equivalent to a single SP.
            let mut v = Vec::with_capacity(first.len() + self.more.len() * 32);
            for part in std::iter::once(first).chain(self.more.iter().map(|r| &input[r.0..r.1])) {
                let part = trim_ws(part);
                if part.is_empty() {
                    continue;
                }
                if !v.is_empty() {
                    v.push(b' ');
                }
                v.extend_from_slice(part);
            }
            Bytes::from(v)
        };
        rows.push(Header::parsed(name, value));
    }
}

/// How many rows the header section starting at `pos` holds: its lines up
/// to the empty one, less continuation lines. An upper bound when the
/// section turns out malformed.
fn count_rows(buf: &[u8], mut pos: usize) -> usize {
    let mut rows = 0;
    while pos < buf.len() {
        let (end, next) = next_line(buf, pos).unwrap_or((buf.len(), buf.len()));
        if end == pos {
            break;
        }
        rows += usize::from(!is_ws(buf[pos]));
        pos = next;
    }
    rows
}

fn parse_headers(input: &Bytes, mut pos: usize) -> HeaderBlock {
    let buf = &input[..];
    // Sized before the first row: a list that grew by doubling reached 16
    // rows (1,152 bytes), past glibc's per-thread cache of small blocks,
    // and was then shrunk, two trips through the allocator's slow path for
    // every message (issue 15).
    let mut rows = Vec::with_capacity(count_rows(buf, pos));
    let mut pending: Option<Pending> = None;
    let mut malformed = false;
    let mut terminated = false;
    let mut body_start = buf.len();
    while pos < buf.len() {
        let Some((end, next)) = header_line(buf, pos) else {
            malformed = true;
            break;
        };
        let line = &buf[pos..end];
        if line.is_empty() {
            terminated = true;
            body_start = next;
            break;
        }
        if is_ws(line[0]) {
            match pending.as_mut() {
                Some(p) => p.more.push((pos, end)),
                None => {
                    malformed = true;
                    break;
                }
            }
        } else {
            if let Some(p) = pending.take() {
                p.finish(input, &mut rows);
            }
            let Some(colon) = memchr::memchr(b':', line) else {
                malformed = true;
                break;
            };
            // HCOLON allows whitespace before the colon; the line does not
            // start with whitespace (that is a continuation).
            let name = trim_ws(&line[..colon]);
            if !is_token_str(name) {
                malformed = true;
                break;
            }
            pending = Some(Pending {
                name: (pos, pos + name.len()),
                first: (pos + colon + 1, end),
                more: Vec::new(),
            });
        }
        pos = next;
    }
    if let Some(p) = pending {
        p.finish(input, &mut rows);
    }
    // A message may outlive its parse by a call's length (a transaction's
    // or a call's INVITE): room a malformed section did not use goes back.
    rows.shrink_to_fit();
    HeaderBlock {
        headers: Headers::from_rows(rows),
        body_start,
        terminated,
        malformed,
    }
}

/// Applies Content-Length to a datagram (RFC 3261 §18.3).
fn body(input: &Bytes, block: &HeaderBlock) -> Result<Bytes, Fault> {
    if !block.terminated {
        return Err(Fault::Unterminated);
    }
    let available = input.len() - block.body_start;
    match block.headers.content_length()? {
        None => Ok(input.slice(block.body_start..)),
        Some(cl) if cl.0 > available => Err(Fault::ContentLengthMismatch),
        Some(cl) => Ok(input.slice(block.body_start..block.body_start + cl.0)),
    }
}

pub(crate) fn parse(input: Bytes, options: &ParseOptions) -> Result<SipMessage, ParseError> {
    let buf = &input[..];
    let mut pos = 0;
    while pos < buf.len() && (buf[pos] == b'\n' || buf[pos..].starts_with(b"\r\n")) {
        pos += if buf[pos] == b'\n' { 1 } else { 2 };
    }
    if pos >= buf.len() {
        return Err(Unparseable::Empty.into());
    }
    let (end, next) = next_line(buf, pos).ok_or(Unparseable::NoStartLine)?;
    let line = &buf[pos..end];
    if line.len() >= 4 && line[..4].eq_ignore_ascii_case(b"SIP/") {
        parse_response(&input, line, next)
    } else {
        parse_request(&input, line, next, options)
    }
}

/// `SIP-Version` syntax: `"SIP" "/" 1*DIGIT "." 1*DIGIT`.
fn is_version(v: &[u8]) -> bool {
    let Some(num) = v.get(4..).filter(|_| v[..4].eq_ignore_ascii_case(b"SIP/")) else {
        return false;
    };
    match num.iter().position(|&b| b == b'.') {
        Some(dot) => {
            dot > 0
                && dot + 1 < num.len()
                && num[..dot].iter().all(u8::is_ascii_digit)
                && num[dot + 1..].iter().all(u8::is_ascii_digit)
        }
        None => false,
    }
}

fn parse_request(
    input: &Bytes,
    line: &[u8],
    next: usize,
    options: &ParseOptions,
) -> Result<SipMessage, ParseError> {
    // Method SP Request-URI SP SIP-Version: the method ends at the first SP,
    // the version starts after the last " SIP/". Anything that does not even
    // have that shape is not SIP and is dropped.
    let sp = line
        .iter()
        .position(|&b| b == b' ')
        .ok_or(Unparseable::NoStartLine)?;
    let method_raw = &line[..sp];
    if !is_token_str(method_raw) {
        return Err(Unparseable::NoStartLine.into());
    }
    let vsp = (sp..line.len())
        .rev()
        .find(|&i| {
            line[i] == b' '
                && line.len() >= i + 5
                && line[i + 1..i + 5].eq_ignore_ascii_case(b"SIP/")
        })
        .ok_or(Unparseable::NoStartLine)?;
    let method = Method::parse(&sub(input, method_raw)).map_err(|_| Unparseable::NoStartLine)?;
    let uri_raw = if vsp > sp {
        &line[sp + 1..vsp]
    } else {
        &[][..]
    };
    let version_raw = &line[vsp + 1..];
    let version = trim_ws(version_raw);

    let block = parse_headers(input, next);
    let partial = |headers: Headers| {
        Box::new(PartialRequest {
            method: method.clone(),
            version: sub(input, version),
            headers,
        })
    };
    let bad = |fault: Fault, headers: Headers| ParseError::BadRequest {
        fault,
        request: partial(headers),
    };

    if is_version(version) && !version[4..].eq(b"2.0") {
        return Err(ParseError::VersionNotSupported {
            request: partial(block.headers),
        });
    }
    let line_ok = is_version(version_raw)
        && !uri_raw.is_empty()
        && !uri_raw.iter().any(|&b| is_ws(b) || b < 0x20);
    if !line_ok {
        return Err(bad(Fault::MalformedRequestLine, block.headers));
    }
    if block.malformed {
        return Err(bad(Fault::MalformedHeader, block.headers));
    }
    let uri = match Uri::parse_slice(input, uri_raw) {
        Ok(u) => u,
        Err(_) => return Err(bad(Fault::InvalidRequestUri, block.headers)),
    };
    if let Err(f) = check_request(&method, &uri, &block.headers, options) {
        return Err(bad(f, block.headers));
    }
    match body(input, &block) {
        Ok(body) => Ok(SipMessage::Request(Request {
            method,
            uri,
            headers: block.headers,
            body,
        })),
        Err(f) => Err(bad(f, block.headers)),
    }
}

fn parse_response(input: &Bytes, line: &[u8], next: usize) -> Result<SipMessage, ParseError> {
    // Status-Line = SIP-Version SP Status-Code SP Reason-Phrase. A missing
    // SP after the code is tolerated (RFC 4475 §3.1.1.13 calls the SP
    // required but allows a liberal receiver to accept its absence).
    let bad_line = || ParseError::from(Unparseable::BadStatusLine);
    let sp = line.iter().position(|&b| b == b' ').ok_or_else(bad_line)?;
    if !line[..sp].eq_ignore_ascii_case(b"SIP/2.0") {
        return Err(bad_line());
    }
    let rest = &line[sp + 1..];
    let code = rest.get(..3).ok_or_else(bad_line)?;
    if !code.iter().all(u8::is_ascii_digit) {
        return Err(bad_line());
    }
    let status = StatusCode::new(
        code.iter()
            .fold(0u16, |acc, &d| acc * 10 + u16::from(d - b'0')),
    )
    .ok_or_else(bad_line)?;
    let reason = match rest.get(3) {
        None => &rest[3..],
        Some(b' ') => &rest[4..],
        Some(_) => return Err(bad_line()),
    };
    if reason
        .iter()
        .any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f)
    {
        return Err(bad_line());
    }
    let block = parse_headers(input, next);
    let drop = |f: Fault| ParseError::from(Unparseable::BadResponse(f));
    if block.malformed {
        return Err(drop(Fault::MalformedHeader));
    }
    check_response(&block.headers).map_err(drop)?;
    let body = body(input, &block).map_err(drop)?;
    Ok(SipMessage::Response(Response {
        status,
        reason: sub(input, reason),
        headers: block.headers,
        body,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::HeaderError;

    const INVITE: &str = "INVITE sip:bob@example.com SIP/2.0\r\n\
        Via: SIP/2.0/UDP pc33.example.com;branch=z9hG4bK776asdhds\r\n\
        Max-Forwards: 70\r\n\
        To: Bob <sip:bob@example.com>\r\n\
        From: Alice <sip:alice@example.com>;tag=1928301774\r\n\
        Call-ID: a84b4c76e66710@pc33.example.com\r\n\
        CSeq: 314159 INVITE\r\n\
        Contact: <sip:alice@pc33.example.com>\r\n\
        Content-Type: application/sdp\r\n\
        Content-Length: 4\r\n\r\nv=0\r\n";

    fn parse_str(s: &str) -> Result<SipMessage, ParseError> {
        SipMessage::parse(Bytes::copy_from_slice(s.as_bytes()))
    }

    fn fault(s: &str) -> Fault {
        match parse_str(s) {
            Err(ParseError::BadRequest { fault, .. }) => fault,
            other => panic!("expected 400, got {other:?}"),
        }
    }

    #[test]
    fn request() {
        let SipMessage::Request(r) = parse_str(INVITE).unwrap() else {
            panic!()
        };
        assert_eq!(r.method, Method::Invite);
        assert_eq!(&r.body[..], b"v=0\r\n"[..4].as_ref());
        assert_eq!(r.headers.len(), 9);
    }

    #[test]
    fn the_header_list_is_sized_to_its_rows() {
        // Folded rows count once; the body's lines not at all.
        let folded = INVITE.replace("Max-Forwards: 70\r\n", "Max-Forwards:\r\n 70\r\n");
        for (text, rows) in [(INVITE.to_owned(), 9), (folded, 9)] {
            let start = text.find("\r\n").unwrap() + 2;
            assert_eq!(count_rows(text.as_bytes(), start), rows, "{text}");
            let SipMessage::Request(r) = parse_str(&text).unwrap() else {
                panic!()
            };
            assert_eq!(r.headers.len(), rows);
            assert_eq!(r.headers.capacity(), rows);
        }
        // Unterminated: the last line is a row too.
        assert_eq!(count_rows(b"A: 1\r\nB: 2", 0), 2);
        assert_eq!(count_rows(b"\r\nA: 1\r\n", 0), 0);
    }

    #[test]
    fn leading_crlf_and_bare_lf() {
        let s = format!("\r\n\r\n{}", INVITE.replace("\r\n", "\n"));
        let SipMessage::Request(r) = parse_str(&s).unwrap() else {
            panic!()
        };
        assert_eq!(&r.body[..], b"v=0\n");
    }

    #[test]
    fn a_bare_or_repeated_tag_in_from_or_to_is_a_400() {
        for (from, to) in [
            (
                "From: Alice <sip:alice@example.com>;tag=1928301774",
                "To: Bob <sip:bob@example.com>;tag",
            ),
            (
                "From: Alice <sip:alice@example.com>;tag=1;tag=2",
                "To: Bob <sip:bob@example.com>",
            ),
        ] {
            let text = INVITE
                .replace("From: Alice <sip:alice@example.com>;tag=1928301774", from)
                .replace("To: Bob <sip:bob@example.com>", to);
            assert!(
                matches!(fault(&text), Fault::Header(HeaderError::Invalid { .. })),
                "{from} / {to}"
            );
        }
    }

    #[test]
    fn content_length_rules() {
        // missing: rest of the datagram
        let s = INVITE.replace("Content-Length: 4\r\n", "");
        assert_eq!(parse_str(&s).unwrap().body().len(), 5);
        // smaller: truncation
        let s = INVITE.replace("Content-Length: 4", "Content-Length: 2");
        assert_eq!(&parse_str(&s).unwrap().body()[..], b"v=");
        // larger: 400
        let s = INVITE.replace("Content-Length: 4", "Content-Length: 6");
        assert_eq!(fault(&s), Fault::ContentLengthMismatch);
        let s = INVITE.replace("Content-Length: 4", "Content-Length: -4");
        assert!(matches!(
            fault(&s),
            Fault::Header(HeaderError::Invalid {
                name: "Content-Length",
                ..
            })
        ));
        let s = INVITE.replace("Content-Length: 4", "l: 4\r\nContent-Length: 4");
        assert_eq!(
            fault(&s),
            Fault::Header(HeaderError::Multiple("Content-Length"))
        );
    }

    #[test]
    fn faults() {
        assert_eq!(
            fault(&INVITE.replace("CSeq: 314159 INVITE", "CSeq: 1 BYE")),
            Fault::CSeqMethodMismatch
        );
        assert_eq!(
            fault(&INVITE.replace("Call-ID", "X-Call-ID")),
            Fault::Header(HeaderError::Missing("Call-ID"))
        );
        assert!(parse_str(&INVITE.replace(";branch=z9hG4bK776asdhds", "")).is_ok());
        let strict = SipMessage::parse_with(
            Bytes::from(INVITE.replace(";branch=z9hG4bK776asdhds", "")),
            &ParseOptions::strict(),
        );
        assert!(matches!(
            strict,
            Err(ParseError::BadRequest {
                fault: Fault::MissingViaBranch,
                ..
            })
        ));
        assert_eq!(
            fault(&INVITE.replace("Max-Forwards: 70", "Max-Forwards: 256")).reason_phrase(),
            "Invalid Max-Forwards"
        );
        assert_eq!(
            fault(&INVITE.replace("Max-Forwards: 70", "Max-Forwards 70")),
            Fault::MalformedHeader
        );
        // A line starting with SP continues the previous header (here Via).
        assert!(matches!(
            fault(&INVITE.replace("Max-Forwards: 70", " Max-Forwards: 70")),
            Fault::Header(HeaderError::Invalid { name: "Via", .. })
        ));
        assert_eq!(
            fault(&INVITE.replace("Max-Forwards: 70", "Max-Forwards: 7\r0")),
            Fault::MalformedHeader
        );
        assert_eq!(
            fault(&INVITE.replace(
                "INVITE sip:bob@example.com SIP/2.0",
                "INVITE sip:bob@example.com SIP/2.0 "
            )),
            Fault::MalformedRequestLine
        );
        assert_eq!(
            fault(&INVITE.replace("INVITE sip:bob@example.com SIP/2.0", "INVITE  SIP/2.0")),
            Fault::MalformedRequestLine
        );
        assert_eq!(
            fault(&INVITE.replace("sip:bob@example.com SIP", "sip:bob@ex ample.com SIP")),
            Fault::MalformedRequestLine
        );
        assert_eq!(
            fault(&INVITE.replace("sip:bob@example.com SIP", "sip:bob@ SIP")),
            Fault::InvalidRequestUri
        );
        assert_eq!(fault(&INVITE[..INVITE.len() - 7]), Fault::Unterminated);
        let opts = ParseOptions {
            require_max_forwards: true,
            ..ParseOptions::default()
        };
        let s = Bytes::from(INVITE.replace("Max-Forwards: 70\r\n", ""));
        assert!(SipMessage::parse(s.clone()).is_ok());
        assert!(matches!(
            SipMessage::parse_with(s, &opts),
            Err(ParseError::BadRequest {
                fault: Fault::Header(HeaderError::Missing("Max-Forwards")),
                ..
            })
        ));
    }

    #[test]
    fn version() {
        let s = INVITE.replace(" SIP/2.0\r\nVia", " SIP/3.0\r\nVia");
        let Err(ParseError::VersionNotSupported { request }) = parse_str(&s) else {
            panic!()
        };
        assert_eq!(&request.version[..], b"SIP/3.0");
        assert_eq!(request.headers.len(), 9);
        assert!(is_version(b"sip/2.0"));
        assert!(!is_version(b"SIP/2"));
        assert!(!is_version(b"SIP/.0"));
        assert!(!is_version(b"SIP/2."));
    }

    #[test]
    fn drops() {
        for s in [
            "",
            "\r\n\r\n",
            "garbage",
            "\x00\x01\x02\n",
            "GET / HTTP/1.1\r\n\r\n",
            "INVITE\r\n\r\n",
            "SIP/2.0 4294967301 big\r\n\r\n",
            "SIP/2.0 99 low\r\n\r\n",
            "SIP/3.0 200 OK\r\n\r\n",
            "SIP/2.0 200OK\r\n\r\n",
            "SIP/2.0 20\r\n",
            "IN,VITE sip:a@b SIP/2.0\r\n\r\n",
        ] {
            assert!(
                parse_str(s).map_err(|e| e.is_drop()).err().unwrap_or(false),
                "{s:?}"
            );
        }
    }

    #[test]
    fn responses() {
        let ok =
            "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\n\
                  To: <sip:c@d>;tag=2\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n";
        let SipMessage::Response(r) = parse_str(ok).unwrap() else {
            panic!()
        };
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(&r.reason[..], b"OK");
        let no_sp = ok.replace("200 OK", "180");
        let SipMessage::Response(r) = parse_str(&no_sp).unwrap() else {
            panic!()
        };
        assert!(r.reason.is_empty());
        let broken = ok.replace("CSeq: 1 INVITE", "CSeq: x INVITE");
        assert!(matches!(
            parse_str(&broken),
            Err(ParseError::Unparseable(Unparseable::BadResponse(_)))
        ));
        let cl = ok.replace("Content-Length: 0", "Content-Length: 10");
        assert!(parse_str(&cl).unwrap_err().is_drop());
    }

    #[test]
    fn folding() {
        let s = INVITE
            .replace("Max-Forwards: 70", "Max-Forwards:\r\n 70")
            .replace("CSeq: 314159 INVITE", "CSeq: 314159\r\n\t INVITE");
        let SipMessage::Request(r) = parse_str(&s).unwrap() else {
            panic!()
        };
        assert_eq!(&r.headers.get("CSeq").unwrap()[..], b"314159 INVITE");
        assert_eq!(&r.headers.get("Max-Forwards").unwrap()[..], b"70");
        assert_eq!(
            fault(&INVITE.replace(
                "INVITE sip:bob@example.com SIP/2.0\r\n",
                "INVITE sip:bob@example.com SIP/2.0\r\n x\r\n"
            )),
            Fault::MalformedHeader
        );
    }

    proptest::proptest! {
        /// A header line is the line up to its LF (less a CR before it),
        /// and malformed when a CR is left in it.
        #[test]
        fn a_header_line_ends_at_lf_and_no_other_cr_is_allowed(
            buf in proptest::collection::vec(
                proptest::sample::select(b"a: \r\n".to_vec()),
                0..12,
            ),
            from in 0usize..12,
        ) {
            let from = from.min(buf.len());
            let (end, next) = next_line(&buf, from).unwrap_or((buf.len(), buf.len()));
            let reference = (!buf[from..end].contains(&b'\r')).then_some((end, next));
            proptest::prop_assert_eq!(header_line(&buf, from), reference, "{:?}", buf);
        }
    }
}
