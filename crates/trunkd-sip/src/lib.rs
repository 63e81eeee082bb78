//! The SIP message layer of trunkd: parsing, typed header views, stream
//! framing, response building and the transaction layer (RFC 3261).
//!
//! Design:
//! * **Zero-copy.** A message is parsed from one [`Bytes`] buffer; header
//!   names, values, URIs parts and the body are slices of it. Only folded
//!   header values are copied (to unfold them).
//! * **Lazy.** Parsing splits the message into rows and validates what
//!   RFC 3261 §8.1.1 / §8.2.2 makes mandatory; any other header is parsed
//!   only when read, through the typed accessors on [`Headers`].
//! * **Classified errors.** [`ParseError`] says whether to drop the message,
//!   answer 400 (with a reason phrase naming the problem) or answer 505, and
//!   carries what is needed to build that answer ([`error_response`]).
//! * **Never panics** on any input (property-tested), and accepts all the
//!   valid RFC 4475 torture messages (see `RFC4475.md`).
//! * **Transactions.** [`transaction::Endpoint`] is the sans-IO RFC 3261
//!   §17 / RFC 6026 transaction layer: messages and `now` in, transmits,
//!   events and the next deadline out (see the module docs for its run
//!   loop and coverage).
//! * **Multipart bodies.** [`multipart`] reads RFC 2046 / RFC 5621 bodies
//!   (SDP next to a PIDF-LO or SIPREC metadata) and rebuilds them with only
//!   the SDP part replaced ([`session_sdp`], [`replace_session_sdp`]).

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod chars;
mod error;
mod framing;
pub mod header;
mod headers;
pub mod hep;
mod message;
mod method;
pub mod multipart;
mod params;
mod parser;
mod response;
mod status;
pub mod transaction;
mod uri;
mod validate;

pub use bytes::Bytes;
pub use error::{
    BuildError, Fault, HeaderError, ParseError, PartialRequest, SyntaxError, Unparseable,
};
pub use framing::{frame, Frame};
pub use header::{
    CSeq, CallId, Contact, ContentLength, ContentType, DisplayName, MaxForwards, NameAddr,
    Transport, Via, ViaIds,
};
pub use headers::{split_list, Header, HeaderName, Headers, KnownHeader, SplitList};
pub use message::{Request, Response, SipMessage};
pub use method::Method;
pub use multipart::{
    find_session_sdp, replace_session_sdp, session_sdp, BodyPart, ContentDisposition, Handling,
    Multipart, MultipartError, PartHeader, SessionPart,
};
pub use params::{unquote, Param, Params};
pub use response::{error_response, response_for};
pub use status::StatusCode;
pub use transaction::{
    ClientTxId, Endpoint, Limits, Peer, ServerTxId, TimerConfig, Transmit, TxError, TxEvent, TxId,
    TxState, TxTransport,
};
pub use uri::{unescape, Host, Ipv4Text, SipUri, Uri};
pub use validate::ParseOptions;

/// A zero-copy slice of `base` for `s`, which must lie inside `base`; falls
/// back to a copy otherwise, so that a logic error can never panic.
pub(crate) fn sub(base: &Bytes, s: &[u8]) -> Bytes {
    let b = base.as_ptr() as usize;
    let p = s.as_ptr() as usize;
    if s.is_empty() {
        Bytes::new()
    } else if p >= b && p + s.len() <= b + base.len() {
        base.slice(p - b..p - b + s.len())
    } else {
        Bytes::copy_from_slice(s)
    }
}
