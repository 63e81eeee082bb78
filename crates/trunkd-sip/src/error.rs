//! Error types, grouped by what the receiver must do about them.
//!
//! RFC 3261 leaves a receiver three reactions to a broken message, and
//! [`ParseError`] names exactly those: drop it silently (no start line, a
//! response nobody can match — §18.1.2 / §16.7), answer `400 Bad Request`
//! with a reason phrase that names the problem (§8.2.2 / §21.4.1), or answer
//! `505 Version Not Supported` (§8.2.2 / §21.5.6).

use bytes::Bytes;
use thiserror::Error;

use crate::headers::Headers;
use crate::method::Method;

/// A grammar violation inside one header value or URI, with a short,
/// static description of what was wrong (for logs, never for the wire).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("{0}")]
pub struct SyntaxError(pub &'static str);

/// Why a header the caller asked for could not be produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum HeaderError {
    /// The header is mandatory here and absent.
    #[error("missing {0} header")]
    Missing(&'static str),
    /// The header may appear once only (RFC 3261 §7.3.1) and appears more often.
    #[error("more than one {0} header")]
    Multiple(&'static str),
    /// The header is present but does not match its grammar.
    #[error("invalid {name} header: {detail}")]
    Invalid {
        /// Canonical header name.
        name: &'static str,
        /// What was wrong.
        detail: &'static str,
    },
}

/// What is wrong with a message whose start line was understood.
///
/// For requests this becomes the reason phrase of a `400 Bad Request`
/// ([`Fault::reason_phrase`]); for responses it is a reason to drop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum Fault {
    /// Request-Line is not `Method SP Request-URI SP SIP-Version` with single
    /// spaces (RFC 3261 §7.1; RFC 4475 §3.1.2.9, §3.1.2.10).
    #[error("malformed Request-Line")]
    MalformedRequestLine,
    /// Request-URI does not parse (RFC 4475 §3.1.2.7, §3.1.2.8).
    #[error("invalid Request-URI")]
    InvalidRequestUri,
    /// A SIP Request-URI carries `?headers`, which RFC 3261 §19.1.1 forbids
    /// there (RFC 4475 §3.1.2.11).
    #[error("headers in the Request-URI")]
    HeadersInRequestUri,
    /// A header line has no colon, an invalid name, a bare CR, or a
    /// continuation line with nothing to continue.
    #[error("malformed header line")]
    MalformedHeader,
    /// A specific header is missing, repeated, or invalid.
    #[error(transparent)]
    Header(#[from] HeaderError),
    /// The CSeq method differs from the Request-Line method (RFC 3261 §8.1.1.5,
    /// RFC 4475 §3.1.2.17).
    #[error("CSeq method does not match the request method")]
    CSeqMethodMismatch,
    /// The topmost Via has no branch parameter (RFC 3261 §8.1.1.7).
    #[error("Via without branch parameter")]
    MissingViaBranch,
    /// The header section is not closed by an empty line (RFC 3261 §7).
    #[error("header section not terminated by an empty line")]
    Unterminated,
    /// Content-Length is larger than the bytes that arrived (RFC 3261 §18.3).
    #[error("Content-Length larger than the body")]
    ContentLengthMismatch,
}

impl Fault {
    /// The reason phrase for the `400` answer, e.g. `Missing Call-ID`,
    /// `Invalid CSeq`, `Content-Length mismatch`.
    pub fn reason_phrase(&self) -> String {
        match self {
            Fault::MalformedRequestLine => "Malformed Request-Line".into(),
            Fault::InvalidRequestUri => "Invalid Request-URI".into(),
            Fault::HeadersInRequestUri => "Headers not allowed in Request-URI".into(),
            Fault::MalformedHeader => "Malformed header line".into(),
            Fault::Header(HeaderError::Missing(n)) => format!("Missing {n}"),
            Fault::Header(HeaderError::Multiple(n)) => format!("Multiple {n}"),
            Fault::Header(HeaderError::Invalid { name, .. }) => format!("Invalid {name}"),
            Fault::CSeqMethodMismatch => "CSeq method mismatch".into(),
            Fault::MissingViaBranch => "Missing Via branch".into(),
            Fault::Unterminated => "Missing empty line after headers".into(),
            Fault::ContentLengthMismatch => "Content-Length mismatch".into(),
        }
    }
}

/// Reasons to drop a datagram without answering.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum Unparseable {
    /// Nothing but (possibly) CRLFs.
    #[error("empty message")]
    Empty,
    /// The first line is neither a Request-Line nor a Status-Line: binary
    /// garbage, HTTP, or a truncated datagram.
    #[error("no SIP start line")]
    NoStartLine,
    /// A Status-Line with a bad version or a status code outside 100..=699
    /// (RFC 4475 §3.1.2.19). Responses are never answered.
    #[error("malformed Status-Line")]
    BadStatusLine,
    /// A response with a well-formed Status-Line but broken headers or
    /// framing (RFC 4475 §3.1.2.5): it cannot be matched to a transaction.
    #[error("invalid response: {0}")]
    BadResponse(Fault),
}

/// What could be recovered from a request that has to be answered with an
/// error: enough to build the 400/505 (RFC 3261 §8.2.6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartialRequest {
    /// Request method, as on the Request-Line.
    pub method: Method,
    /// SIP-Version token of the Request-Line, e.g. `SIP/7.0`.
    pub version: Bytes,
    /// Every header line that could be split into name and value, in order.
    pub headers: Headers,
}

/// Why [`SipMessage::parse`](crate::SipMessage::parse) refused a message,
/// classified by the reaction RFC 3261 expects.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ParseError {
    /// Drop silently.
    #[error("unparseable message, dropped: {0}")]
    Unparseable(#[from] Unparseable),
    /// Answer `400 Bad Request` with [`Fault::reason_phrase`] (unless the
    /// method is ACK, which is never answered: see
    /// [`error_response`](crate::error_response)).
    #[error("400 {}", fault.reason_phrase())]
    BadRequest {
        /// What is wrong.
        fault: Fault,
        /// What is needed to answer.
        request: Box<PartialRequest>,
    },
    /// Answer `505 Version Not Supported` (RFC 3261 §8.2.2, §21.5.6).
    #[error("505 SIP version {} not supported", String::from_utf8_lossy(&request.version))]
    VersionNotSupported {
        /// What is needed to answer.
        request: Box<PartialRequest>,
    },
}

impl ParseError {
    /// The request-level part of the error, when there is one to answer.
    pub fn partial_request(&self) -> Option<&PartialRequest> {
        match self {
            ParseError::Unparseable(_) => None,
            ParseError::BadRequest { request, .. }
            | ParseError::VersionNotSupported { request } => Some(request),
        }
    }

    /// True when the message must be dropped without an answer.
    pub fn is_drop(&self) -> bool {
        matches!(self, ParseError::Unparseable(_))
    }
}

/// A header name or value that cannot be put on the wire (header injection
/// guard for messages built by the application).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum BuildError {
    /// The name is not a `token` (RFC 3261 §7.3.1).
    #[error("header name is not a token")]
    InvalidName,
    /// The value contains CR or LF, which would end the header line.
    #[error("header value contains CR or LF")]
    InvalidValue,
}
