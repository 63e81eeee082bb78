//! Request and response acceptance rules (RFC 3261 §8.1.1, §8.2.2, §16.3).
//!
//! Mandatory request headers: Via (at least one, parseable), From, To,
//! Call-ID, CSeq with the request's method; Contact must parse when present.
//!
//! Policy choices, both settable in [`ParseOptions`]:
//! * **Max-Forwards** is *not* required by default. RFC 3261 §8.1.1.6 makes
//!   it a MUST for UACs, but §16.3 step 3 has a proxy treat its absence as
//!   acceptable and §16.6 step 3 add one; a B2BUA facing many trunks behaves
//!   like that proxy. When present it must be a number in 0..=255.
//! * **Via branch** is *not* required by default either. RFC 4475 §3.1.1.7
//!   (longreq, a message every element must accept) has a topmost Via
//!   without branch, and §3.4.1 (inv2543) asks for RFC 2543 compatibility:
//!   a request without a branch is matched with the RFC 2543 rules of
//!   RFC 3261 §17.2.3 by the transaction layer, not rejected by the parser.
//!   [`ParseOptions::strict`] requires both.

use crate::error::{Fault, HeaderError};
use crate::headers::Headers;
use crate::method::Method;
use crate::uri::Uri;

/// Acceptance policy for [`SipMessage::parse_with`](crate::SipMessage::parse_with).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ParseOptions {
    /// Reject requests without Max-Forwards (default: false).
    pub require_max_forwards: bool,
    /// Reject requests whose topmost Via has no branch (default: false).
    pub require_via_branch: bool,
}

impl ParseOptions {
    /// Rejects requests without Max-Forwards or without a top Via branch:
    /// only RFC 3261 peers.
    pub fn strict() -> ParseOptions {
        ParseOptions {
            require_max_forwards: true,
            require_via_branch: true,
        }
    }
}

/// Checks a request whose start line parsed; the first problem found wins,
/// in the order Request-URI, Via, From, To, Call-ID, CSeq, Max-Forwards,
/// Contact.
pub(crate) fn check_request(
    method: &Method,
    uri: &Uri,
    headers: &Headers,
    options: &ParseOptions,
) -> Result<(), Fault> {
    if let Uri::Sip(u) = uri {
        if u.headers.is_some() {
            return Err(Fault::HeadersInRequestUri);
        }
    }
    let top_has_branch = headers.check_vias()?.ok_or(HeaderError::Missing("Via"))?;
    if options.require_via_branch && !top_has_branch {
        return Err(Fault::MissingViaBranch);
    }
    headers.check_from()?;
    headers.check_to()?;
    headers.call_id()?;
    if headers.cseq()?.method != *method {
        return Err(Fault::CSeqMethodMismatch);
    }
    if headers.max_forwards()?.is_none() && options.require_max_forwards {
        return Err(HeaderError::Missing("Max-Forwards").into());
    }
    headers.check_contact()?;
    Ok(())
}

/// Checks what a response needs to be matched to a client transaction
/// (RFC 3261 §17.1.3, §18.1.2): a parseable top Via, From, To, Call-ID and
/// CSeq.
pub(crate) fn check_response(headers: &Headers) -> Result<(), Fault> {
    headers.check_top_via()?;
    headers.check_from()?;
    headers.check_to()?;
    headers.call_id()?;
    headers.cseq()?;
    Ok(())
}
