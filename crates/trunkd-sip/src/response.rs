//! Building responses to requests (RFC 3261 §8.2.6).
//!
//! §8.2.6.2: the response copies every Via (same values, same order), From,
//! To, Call-ID and CSeq; the UAS adds a To tag to every response but 100
//! Trying when the request had none. Tags are supplied by the caller: this
//! crate holds no random number generator.

use bytes::Bytes;

use crate::chars::is_token;
use crate::error::ParseError;
use crate::headers::{Headers, KnownHeader};
use crate::message::{Request, Response};
use crate::method::Method;
use crate::status::StatusCode;

/// The response to `req` with `status` and `reason`, Content-Length 0; the
/// request's rows are copied as they are (it was validated when parsed).
///
/// `to_tag` is appended to To when the status is above 100 and To has no
/// tag yet; bytes outside `token` are dropped from it.
pub fn response_for(
    req: &Request,
    status: StatusCode,
    reason: &str,
    to_tag: Option<&str>,
) -> Response {
    build(&req.headers, status, reason, to_tag, Rows::AsReceived)
}

/// The 400 or 505 answer to a request that failed to parse, copying the
/// headers that are available and well formed; `None` when the message must
/// be dropped instead: an unparseable message, or an ACK (never answered,
/// RFC 3261 §17.1.1.3, §17.2.1).
pub fn error_response(err: &ParseError, to_tag: Option<&str>) -> Option<Response> {
    match err {
        ParseError::Unparseable(_) => None,
        ParseError::BadRequest { request, .. } | ParseError::VersionNotSupported { request }
            if request.method == Method::Ack =>
        {
            None
        }
        ParseError::BadRequest { fault, request } => Some(build(
            &request.headers,
            StatusCode::BAD_REQUEST,
            &fault.reason_phrase(),
            to_tag,
            Rows::WellFormed,
        )),
        ParseError::VersionNotSupported { request } => Some(build(
            &request.headers,
            StatusCode::VERSION_NOT_SUPPORTED,
            "Version Not Supported",
            to_tag,
            Rows::WellFormed,
        )),
    }
}

/// Which request rows a response copies.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Rows {
    /// As they are: the request passed validation when it was parsed, and
    /// §8.2.6.2 copies them unchanged. Parsing From, Call-ID and CSeq again
    /// for every response was a tenth of a call's signalling instructions
    /// (issue 15).
    AsReceived,
    /// Only those that parse: the request failed validation, and a row
    /// that does not parse is left out rather than echoed.
    WellFormed,
}

fn build(
    headers: &Headers,
    status: StatusCode,
    reason: &str,
    to_tag: Option<&str>,
    rows: Rows,
) -> Response {
    let mut resp = Response::new(status, reason);
    let out = &mut resp.headers;
    out.reserve(headers.rows_of(KnownHeader::Via).count() + 4);
    for h in headers.rows_of(KnownHeader::Via) {
        out.push_row(h.clone());
    }
    // Whether a row goes in: always as received, else only if it parses.
    let copies = |parses: fn(&Headers) -> bool| rows == Rows::AsReceived || parses(headers);
    if copies(|h| h.from().is_ok()) {
        out.extend_first(headers, KnownHeader::From);
    }
    if copies(|h| h.to().is_ok()) {
        // The tag to add, if any: only then does To's own tag need reading.
        let tag = to_tag
            .filter(|_| status.as_u16() > 100)
            .map(|t| t.bytes().filter(|&b| is_token(b)).collect::<Vec<u8>>())
            .filter(|t| !t.is_empty());
        match (tag, headers.get_of(KnownHeader::To)) {
            (Some(tag), Some(raw)) if headers.to_tag() == Ok(None) => {
                let mut v = Vec::with_capacity(raw.len() + tag.len() + 5);
                v.extend_from_slice(raw);
                v.extend_from_slice(b";tag=");
                v.extend_from_slice(&tag);
                out.push_parsed(Bytes::from_static(b"To"), Bytes::from(v));
            }
            _ => out.extend_first(headers, KnownHeader::To),
        }
    }
    if copies(|h| h.call_id().is_ok()) {
        out.extend_first(headers, KnownHeader::CallId);
    }
    if copies(|h| h.cseq().is_ok()) {
        out.extend_first(headers, KnownHeader::CSeq);
    }
    resp
}

impl Headers {
    fn extend_first(&mut self, from: &Headers, k: KnownHeader) {
        if let Some(h) = from.rows_of(k).next() {
            self.push_row(h.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::SipMessage;

    const REQ: &str = "INVITE sip:bob@example.com SIP/2.0\r\n\
        v: SIP/2.0/UDP p1.example.com;branch=z9hG4bK1\r\n\
        Via: SIP/2.0/UDP pc33.example.com;branch=z9hG4bK776asdhds, SIP/2.0/UDP x.example.com;branch=z9hG4bK3\r\n\
        Max-Forwards: 70\r\n\
        t: sip:bob@example.com\r\n\
        f: Alice <sip:alice@example.com>;tag=1928301774\r\n\
        i: a84b4c76e66710@pc33.example.com\r\n\
        CSeq: 314159 INVITE\r\n\
        Content-Length: 0\r\n\r\n";

    fn req() -> Request {
        match SipMessage::parse(Bytes::from_static(REQ.as_bytes())) {
            Ok(SipMessage::Request(r)) => r,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn copies_and_tags() {
        let r = response_for(&req(), StatusCode::RINGING, "Ringing", Some("as83k"));
        let wire = r.to_bytes();
        let text = String::from_utf8(wire.to_vec()).unwrap();
        assert_eq!(
            text,
            "SIP/2.0 180 Ringing\r\n\
             Via: SIP/2.0/UDP p1.example.com;branch=z9hG4bK1\r\n\
             Via: SIP/2.0/UDP pc33.example.com;branch=z9hG4bK776asdhds, SIP/2.0/UDP x.example.com;branch=z9hG4bK3\r\n\
             From: Alice <sip:alice@example.com>;tag=1928301774\r\n\
             To: sip:bob@example.com;tag=as83k\r\n\
             Call-ID: a84b4c76e66710@pc33.example.com\r\n\
             CSeq: 314159 INVITE\r\n\
             Content-Length: 0\r\n\r\n"
        );
        assert!(SipMessage::parse(wire).is_ok(), "the response parses");
    }

    #[test]
    fn no_tag_on_100_or_when_present() {
        let r = response_for(&req(), StatusCode::TRYING, "Trying", Some("x"));
        assert_eq!(&r.headers.get("To").unwrap()[..], b"sip:bob@example.com");
        let mut q = req();
        q.headers
            .replace("To", "<sip:bob@example.com>;tag=old")
            .unwrap();
        let r = response_for(&q, StatusCode::OK, "OK", Some("new"));
        assert_eq!(
            &r.headers.get("To").unwrap()[..],
            b"<sip:bob@example.com>;tag=old"
        );
        let r = response_for(&req(), StatusCode::OK, "OK", Some("\r\n"));
        assert_eq!(&r.headers.get("To").unwrap()[..], b"sip:bob@example.com");
    }

    #[test]
    fn error_responses() {
        let bad = REQ.replace("CSeq: 314159 INVITE", "CSeq: 99999999999 INVITE");
        let err = SipMessage::parse(Bytes::from(bad)).unwrap_err();
        let r = error_response(&err, Some("t1")).unwrap();
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        assert_eq!(&r.reason[..], b"Invalid CSeq");
        assert!(
            r.headers.get("CSeq").is_none(),
            "unparseable CSeq is not copied"
        );
        assert_eq!(r.headers.count("Via"), 2);
        let vers = REQ.replace("SIP/2.0\r\nv:", "SIP/3.0\r\nv:");
        let err = SipMessage::parse(Bytes::from(vers)).unwrap_err();
        let r = error_response(&err, None).unwrap();
        assert_eq!(r.status, StatusCode::VERSION_NOT_SUPPORTED);
        assert_eq!(r.headers.len(), 6);
        let ack = REQ
            .replace("INVITE sip:", "ACK sip:")
            .replace("314159 INVITE", "314159 ACK")
            .replace("i: a84b", "X: a84b");
        let err = SipMessage::parse(Bytes::from(ack)).unwrap_err();
        assert!(
            !err.is_drop() && error_response(&err, None).is_none(),
            "ACK is never answered"
        );
        let drop = SipMessage::parse(Bytes::from_static(b"\x00garbage")).unwrap_err();
        assert!(error_response(&drop, None).is_none());
    }
}
