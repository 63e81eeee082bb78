//! Messages: requests, responses and their serialisation (RFC 3261 §7).
//!
//! Serialisation always writes `SIP/2.0`, canonical header names, and a
//! Content-Length computed from the body (any Content-Length row in
//! [`Headers`] is ignored), so a message built or modified by the
//! application is framed correctly on every transport (§18.3, §20.14).

use std::io::Write as _;

use bytes::Bytes;

use crate::error::{Fault, HeaderError, ParseError};
use crate::header::CSeq;
use crate::headers::{split_list, Header, Headers};
use crate::method::Method;
use crate::parser;
use crate::status::StatusCode;
use crate::uri::Uri;
use crate::validate::{check_request, ParseOptions};

/// A SIP request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// Method from the Request-Line.
    pub method: Method,
    /// Request-URI; may be a non-SIP URI (answer 416, RFC 3261 §8.2.2.1).
    pub uri: Uri,
    /// Headers in received order.
    pub headers: Headers,
    /// Body, exactly Content-Length bytes.
    pub body: Bytes,
}

/// A SIP response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Status code.
    pub status: StatusCode,
    /// Reason phrase as received (may be empty or UTF-8, RFC 4475 §3.1.1.12).
    pub reason: Bytes,
    /// Headers in received order.
    pub headers: Headers,
    /// Body, exactly Content-Length bytes.
    pub body: Bytes,
}

/// A request or a response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SipMessage {
    /// A request.
    Request(Request),
    /// A response.
    Response(Response),
}

impl SipMessage {
    /// Parses one whole message — a UDP datagram, or a frame cut by
    /// [`frame`](crate::frame) from a stream — with the default
    /// [`ParseOptions`].
    ///
    /// A missing Content-Length means "the rest of the input"; a larger one
    /// is an error; a smaller one truncates the body (RFC 3261 §18.3).
    pub fn parse(input: Bytes) -> Result<SipMessage, ParseError> {
        parser::parse(input, &ParseOptions::default())
    }

    /// [`SipMessage::parse`] with explicit options.
    pub fn parse_with(input: Bytes, options: &ParseOptions) -> Result<SipMessage, ParseError> {
        parser::parse(input, options)
    }

    /// The headers.
    pub fn headers(&self) -> &Headers {
        match self {
            SipMessage::Request(r) => &r.headers,
            SipMessage::Response(r) => &r.headers,
        }
    }

    /// The headers, mutably.
    pub fn headers_mut(&mut self) -> &mut Headers {
        match self {
            SipMessage::Request(r) => &mut r.headers,
            SipMessage::Response(r) => &mut r.headers,
        }
    }

    /// The body.
    pub fn body(&self) -> &Bytes {
        match self {
            SipMessage::Request(r) => &r.body,
            SipMessage::Response(r) => &r.body,
        }
    }

    /// Appends the wire form.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        match self {
            SipMessage::Request(r) => r.write_to(out),
            SipMessage::Response(r) => r.write_to(out),
        }
    }

    /// The wire form.
    pub fn to_bytes(&self) -> Bytes {
        match self {
            SipMessage::Request(r) => r.to_bytes(),
            SipMessage::Response(r) => r.to_bytes(),
        }
    }
}

impl Request {
    /// A request without headers or body.
    pub fn new(method: Method, uri: Uri) -> Request {
        Request {
            method,
            uri,
            headers: Headers::new(),
            body: Bytes::new(),
        }
    }

    /// Checks the mandatory headers (RFC 3261 §8.1.1), as the parser does;
    /// useful for requests assembled by the application.
    pub fn validate(&self, options: &ParseOptions) -> Result<(), Fault> {
        check_request(&self.method, &self.uri, &self.headers, options)
    }

    /// Appends the wire form.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        out.reserve(self.headers.len() * 48 + self.body.len() + 96);
        out.extend_from_slice(self.method.as_bytes());
        out.push(b' ');
        self.uri.write_to(out);
        out.extend_from_slice(b" SIP/2.0\r\n");
        write_tail(&self.headers, &self.body, out);
    }

    /// The wire form.
    pub fn to_bytes(&self) -> Bytes {
        let mut v = Vec::new();
        self.write_to(&mut v);
        // A transaction keeps these bytes for its retransmissions (32 s
        // after a 2xx): not `write_to`'s estimate of the room needed.
        v.shrink_to_fit();
        Bytes::from(v)
    }

    /// The branch parameter of the topmost Via, if any (RFC 3261 §8.1.1.7).
    pub fn branch(&self) -> Option<Bytes> {
        self.headers.top_via_ids().ok()?.branch
    }

    /// The CANCEL for this request (RFC 3261 §9.1): same Request-URI,
    /// Call-ID, From, To (without any tag a response added) and CSeq number
    /// with method CANCEL, one Via equal to this request's top Via (so the
    /// same branch), this request's Route set and Max-Forwards (70 if it
    /// had none), no body.
    ///
    /// # Errors
    /// A mandatory header of this request is missing or invalid.
    pub fn cancel(&self) -> Result<Request, HeaderError> {
        self.hop_by_hop(Method::Cancel, None)
    }

    /// The ACK for a 3xx-6xx `response` to this INVITE (RFC 3261
    /// §17.1.1.3): like [`Request::cancel`], but with method ACK and the To
    /// header of the response (which carries the UAS's tag).
    ///
    /// # Errors
    /// A mandatory header of this request or the response's To is missing
    /// or invalid.
    pub fn ack_for_non_2xx(&self, response: &Response) -> Result<Request, HeaderError> {
        response.headers.to()?;
        let to = response
            .headers
            .rows("To")
            .next()
            .ok_or(HeaderError::Missing("To"))?;
        self.hop_by_hop(Method::Ack, Some(to.clone()))
    }

    fn hop_by_hop(&self, method: Method, to: Option<Header>) -> Result<Request, HeaderError> {
        let h = &self.headers;
        let top = h.get("Via").ok_or(HeaderError::Missing("Via"))?;
        let top = split_list(top).next().unwrap_or_default();
        h.top_via()?;
        h.from()?;
        h.to()?;
        h.call_id()?;
        let seq = h.cseq()?.seq;
        let mut out = Headers::with_capacity(8);
        out.push_parsed(Bytes::from_static(b"Via"), top);
        for r in h.rows("Route") {
            out.push_row(r.clone());
        }
        match h.rows("Max-Forwards").next() {
            Some(mf) => out.push_row(mf.clone()),
            None => out.push_parsed(
                Bytes::from_static(b"Max-Forwards"),
                Bytes::from_static(b"70"),
            ),
        }
        for name in ["From", "To", "Call-ID"] {
            let row = match (name, &to) {
                ("To", Some(t)) => Some(t.clone()),
                _ => h.rows(name).next().cloned(),
            };
            // Each was checked to be present above.
            if let Some(row) = row {
                out.push_row(row);
            }
        }
        let cseq = CSeq {
            seq,
            method: method.clone(),
        }
        .to_bytes();
        out.push_parsed(Bytes::from_static(b"CSeq"), cseq);
        Ok(Request {
            method,
            uri: self.uri.clone(),
            headers: out,
            body: Bytes::new(),
        })
    }
}

impl Response {
    /// A response without headers or body. CR, LF and other control
    /// characters in `reason` are replaced by spaces.
    pub fn new(status: StatusCode, reason: &str) -> Response {
        Response {
            status,
            reason: sanitize_reason(reason),
            headers: Headers::new(),
            body: Bytes::new(),
        }
    }

    /// Appends the wire form.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        out.reserve(self.headers.len() * 48 + self.body.len() + 64);
        out.extend_from_slice(b"SIP/2.0 ");
        out.extend_from_slice(self.status.as_u16().to_string().as_bytes());
        out.push(b' ');
        out.extend_from_slice(&self.reason);
        out.extend_from_slice(b"\r\n");
        write_tail(&self.headers, &self.body, out);
    }

    /// The wire form.
    pub fn to_bytes(&self) -> Bytes {
        let mut v = Vec::new();
        self.write_to(&mut v);
        // A transaction keeps these bytes for its retransmissions (32 s
        // after a 2xx): not `write_to`'s estimate of the room needed.
        v.shrink_to_fit();
        Bytes::from(v)
    }
}

fn write_tail(headers: &Headers, body: &Bytes, out: &mut Vec<u8>) {
    headers.write_to(out);
    // Writing to a Vec cannot fail.
    let _ = write!(out, "Content-Length: {}\r\n\r\n", body.len());
    out.extend_from_slice(body);
}

pub(crate) fn sanitize_reason(reason: &str) -> Bytes {
    let cleaned: Vec<u8> = reason
        .bytes()
        .map(|b| if b < 0x20 || b == 0x7f { b' ' } else { b })
        .collect();
    Bytes::from(cleaned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serialise_recomputes_content_length() {
        let uri = Uri::parse(&Bytes::from_static(b"sip:bob@example.com")).unwrap();
        let mut r = Request::new(Method::Options, uri);
        r.headers
            .append("Via", "SIP/2.0/UDP h;branch=z9hG4bK1")
            .unwrap();
        r.headers.append("l", "999").unwrap();
        r.body = Bytes::from_static(b"hello");
        let wire = r.to_bytes();
        assert_eq!(
            &wire[..],
            &b"OPTIONS sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nContent-Length: 5\r\n\r\nhello"[..]
        );
    }

    #[test]
    fn cancel_and_ack_for_non_2xx() {
        let text = "INVITE sip:bob@example.com SIP/2.0\r\n\
            Via: SIP/2.0/UDP p1.example.com;branch=z9hG4bKtop, SIP/2.0/UDP a.example.com;branch=z9hG4bKa\r\n\
            Route: <sip:p2.example.com;lr>\r\n\
            Route: <sip:p3.example.com;lr>\r\n\
            From: <sip:alice@example.com>;tag=1\r\n\
            To: <sip:bob@example.com>\r\n\
            Call-ID: c@example.com\r\n\
            CSeq: 314 INVITE\r\n\
            Require: 100rel\r\n\
            Content-Type: application/sdp\r\n\
            Content-Length: 3\r\n\r\nv=0";
        let inv = match SipMessage::parse(Bytes::from(text)).unwrap() {
            SipMessage::Request(r) => r,
            SipMessage::Response(_) => unreachable!(),
        };
        assert_eq!(inv.branch().as_deref(), Some(&b"z9hG4bKtop"[..]));
        let cancel = inv.cancel().unwrap();
        assert_eq!(
            String::from_utf8(cancel.to_bytes().to_vec()).unwrap(),
            "CANCEL sip:bob@example.com SIP/2.0\r\n\
             Via: SIP/2.0/UDP p1.example.com;branch=z9hG4bKtop\r\n\
             Route: <sip:p2.example.com;lr>\r\n\
             Route: <sip:p3.example.com;lr>\r\n\
             Max-Forwards: 70\r\n\
             From: <sip:alice@example.com>;tag=1\r\n\
             To: <sip:bob@example.com>\r\n\
             Call-ID: c@example.com\r\n\
             CSeq: 314 CANCEL\r\n\
             Content-Length: 0\r\n\r\n"
        );
        let busy = crate::response_for(&inv, StatusCode::new(486).unwrap(), "Busy", Some("b7"));
        let ack = inv.ack_for_non_2xx(&busy).unwrap();
        assert_eq!(ack.method, Method::Ack);
        assert_eq!(ack.headers.cseq().unwrap().seq, 314);
        assert_eq!(
            &ack.headers.get("To").unwrap()[..],
            b"<sip:bob@example.com>;tag=b7"
        );
        assert_eq!(ack.headers.count("Via"), 1);
        assert_eq!(ack.headers.count("Route"), 2);
        assert!(ack.body.is_empty() && !ack.headers.contains("Require"));
        assert!(ack.validate(&ParseOptions::strict()).is_ok());
        assert!(cancel.validate(&ParseOptions::strict()).is_ok());
        let bare = Request::new(Method::Invite, inv.uri.clone());
        assert_eq!(bare.cancel(), Err(HeaderError::Missing("Via")));
        assert_eq!(bare.branch(), None);
    }

    #[test]
    fn response_reason_is_sanitised() {
        let r = Response::new(StatusCode::OK, "O\r\nK");
        assert_eq!(
            &r.to_bytes()[..],
            b"SIP/2.0 200 O  K\r\nContent-Length: 0\r\n\r\n"
        );
    }
}
