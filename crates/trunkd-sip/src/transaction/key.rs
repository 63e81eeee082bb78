//! Transaction matching keys.
//!
//! * [`ClientKey`]: a response matches a client transaction when its top
//!   Via branch and its CSeq method equal the request's (§17.1.3).
//! * [`ServerKey`]: a request matches a server transaction (§17.2.3) by
//!   - **RFC 3261** (top Via branch starts with `z9hG4bK`): the branch, the
//!     sent-by (host compared case-insensitively, port as written) and the
//!     method, where ACK counts as INVITE;
//!   - **RFC 2543** (no branch, or one without the magic cookie): the
//!     Request-URI, To tag, From tag, Call-ID, CSeq number and method (ACK
//!     as INVITE) and the whole top Via. An ACK is tried with its own To
//!     tag (re-INVITE) and then without one, checking that its To tag is the
//!     one the transaction answered with (done by the endpoint).
//! * [`MergeKey`]: From tag, Call-ID and CSeq of a request without To tag,
//!   for merged-request detection (§8.2.2.2).
//! * [`AckKey`]: Call-ID, CSeq number and To tag of a 2xx, to find the
//!   INVITE server transaction in Accepted that an ACK for the 2xx (a
//!   request with a new branch) confirms (RFC 6026 §8.7).

use bytes::Bytes;

/// A copy of `b` in its own allocation. Keys kept for a transaction's life
/// are detached: a slice of the received datagram would keep the whole
/// datagram (about 1 KB for an INVITE with SDP) alive for the 32 s a
/// finished transaction is kept, long after the request itself is gone.
fn detach(b: &Bytes) -> Bytes {
    Bytes::copy_from_slice(b)
}

fn detach_opt(b: &Option<Bytes>) -> Option<Bytes> {
    b.as_ref().map(detach)
}

use crate::header::{ViaIds, MAGIC_COOKIE};
use crate::message::{Request, Response};
use crate::method::Method;
use crate::uri::Host;

/// Client transaction key (§17.1.3).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct ClientKey {
    branch: Bytes,
    method: Method,
}

impl ClientKey {
    /// The key of a request about to be sent, from its top Via and method;
    /// `None` without a branch.
    pub(crate) fn of(via: &ViaIds, method: &Method) -> Option<ClientKey> {
        Some(ClientKey {
            branch: via.branch.clone()?,
            method: method.clone(),
        })
    }

    /// The key a response belongs to; `None` when it cannot match anything.
    /// The response was validated (its top Via parsed whole), so only
    /// the branch is read again.
    pub(crate) fn for_response(resp: &Response) -> Option<ClientKey> {
        let branch = resp.headers.top_via_branch().ok()??;
        let cseq = resp.headers.cseq().ok()?;
        Some(ClientKey {
            branch,
            method: cseq.method,
        })
    }

    /// The same branch with another method (a CANCEL's key from its
    /// INVITE's).
    pub(crate) fn with_method(&self, method: Method) -> ClientKey {
        ClientKey {
            branch: self.branch.clone(),
            method,
        }
    }

    /// The key with its bytes in allocations of its own (see [`detach`]).
    pub(crate) fn detached(&self) -> ClientKey {
        ClientKey {
            branch: detach(&self.branch),
            method: self.method.clone(),
        }
    }
}

/// Server transaction key (§17.2.3).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum ServerKey {
    /// Branch with the magic cookie.
    Rfc3261 {
        branch: Bytes,
        host: Bytes,
        port: Option<u16>,
        method: Method,
    },
    /// RFC 2543 peer: no usable branch. Boxed: rare, and twice the size of
    /// the RFC 3261 key, which every transaction keeps twice (its entry and
    /// the table) for as long as 32 s.
    Rfc2543(Box<Rfc2543Key>),
}

/// The RFC 2543 matching fields (§17.2.3).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Rfc2543Key {
    uri: Bytes,
    to_tag: Option<Bytes>,
    from_tag: Option<Bytes>,
    call_id: Bytes,
    cseq: u32,
    method: Method,
    via: Bytes,
}

/// ACK is matched to the INVITE transaction (§17.2.3).
fn tx_method(m: &Method) -> Method {
    match m {
        Method::Ack => Method::Invite,
        other => other.clone(),
    }
}

impl ServerKey {
    /// The transaction key with the method replaced (a CANCEL's INVITE).
    pub(crate) fn with_method(&self, m: Method) -> ServerKey {
        let mut k = self.clone();
        match &mut k {
            ServerKey::Rfc3261 { method, .. } => *method = m,
            ServerKey::Rfc2543(k) => k.method = m,
        }
        k
    }

    /// For RFC 2543 keys, the key with the To tag replaced.
    pub(crate) fn with_to_tag(&self, tag: Option<Bytes>) -> ServerKey {
        let mut k = self.clone();
        if let ServerKey::Rfc2543(k) = &mut k {
            k.to_tag = tag;
        }
        k
    }

    /// True for the RFC 2543 rules.
    pub(crate) fn is_rfc2543(&self) -> bool {
        matches!(self, ServerKey::Rfc2543(_))
    }

    /// The key with its bytes in allocations of its own (see [`detach`]).
    pub(crate) fn detached(&self) -> ServerKey {
        match self {
            ServerKey::Rfc3261 {
                branch,
                host,
                port,
                method,
            } => ServerKey::Rfc3261 {
                branch: detach(branch),
                host: detach(host),
                port: *port,
                method: method.clone(),
            },
            ServerKey::Rfc2543(k) => ServerKey::Rfc2543(Box::new(Rfc2543Key {
                uri: detach(&k.uri),
                to_tag: detach_opt(&k.to_tag),
                from_tag: detach_opt(&k.from_tag),
                call_id: detach(&k.call_id),
                cseq: k.cseq,
                method: k.method.clone(),
                via: detach(&k.via),
            })),
        }
    }
}

/// Merged-request key (§8.2.2.2).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct MergeKey {
    from_tag: Option<Bytes>,
    call_id: Bytes,
    cseq: u32,
    method: Method,
}

impl MergeKey {
    /// The key with its bytes in allocations of its own (see [`detach`]).
    pub(crate) fn detached(&self) -> MergeKey {
        MergeKey {
            from_tag: detach_opt(&self.from_tag),
            call_id: detach(&self.call_id),
            cseq: self.cseq,
            method: self.method.clone(),
        }
    }
}

/// Finds the INVITE server transaction an ACK for a 2xx confirms.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct AckKey {
    call_id: Bytes,
    cseq: u32,
    to_tag: Option<Bytes>,
}

impl AckKey {
    /// The key with its bytes in allocations of its own (see [`detach`]).
    pub(crate) fn detached(&self) -> AckKey {
        AckKey {
            call_id: detach(&self.call_id),
            cseq: self.cseq,
            to_tag: detach_opt(&self.to_tag),
        }
    }

    /// The key of a 2xx sent on the transaction for `request`.
    pub(crate) fn for_2xx(request: &Request, response: &Response) -> Option<AckKey> {
        let call_id = request.headers.call_id().ok()?.as_bytes().clone();
        let cseq = request.headers.cseq().ok()?.seq;
        let to_tag = response.headers.to_tag().ok()?;
        Some(AckKey {
            call_id,
            cseq,
            to_tag,
        })
    }
}

/// The identifiers of a received request, parsed once.
#[derive(Debug, Clone)]
pub(crate) struct RequestIds {
    /// Its transaction key.
    pub(crate) key: ServerKey,
    pub(crate) call_id: Bytes,
    pub(crate) cseq: u32,
    pub(crate) from_tag: Option<Bytes>,
    pub(crate) to_tag: Option<Bytes>,
}

impl RequestIds {
    /// `None` when a header needed for matching is missing or invalid (the
    /// parser's validation makes this rare: the message is dropped).
    pub(crate) fn of(req: &Request) -> Option<RequestIds> {
        let h = &req.headers;
        let via = h.top_via_ids().ok()?;
        let call_id = h.call_id().ok()?.as_bytes().clone();
        let cseq = h.cseq().ok()?.seq;
        let from_tag = h.from_tag().ok()?;
        let to_tag = h.to_tag().ok()?;
        let method = tx_method(&req.method);
        let key = match via.branch {
            Some(branch) if branch.starts_with(MAGIC_COOKIE) => ServerKey::Rfc3261 {
                branch,
                host: sent_by_host(&via.host),
                port: via.port,
                method,
            },
            _ => ServerKey::Rfc2543(Box::new(Rfc2543Key {
                uri: req.uri.to_bytes(),
                to_tag: to_tag.clone(),
                from_tag: from_tag.clone(),
                call_id: call_id.clone(),
                cseq,
                method,
                via: {
                    // RFC 2543 peers are rare: the whole Via only for them.
                    let mut v = Vec::new();
                    h.top_via().ok()?.write_to(&mut v);
                    Bytes::from(v)
                },
            })),
        };
        Some(RequestIds {
            key,
            call_id,
            cseq,
            from_tag,
            to_tag,
        })
    }

    /// The merged-request key, for requests without To tag.
    pub(crate) fn merge_key(&self, method: &Method) -> Option<MergeKey> {
        if self.to_tag.is_some() {
            return None;
        }
        Some(MergeKey {
            from_tag: self.from_tag.clone(),
            call_id: self.call_id.clone(),
            cseq: self.cseq,
            method: method.clone(),
        })
    }

    /// The key an ACK for a 2xx is looked up with.
    pub(crate) fn ack_key(&self) -> AckKey {
        AckKey {
            call_id: self.call_id.clone(),
            cseq: self.cseq,
            to_tag: self.to_tag.clone(),
        }
    }
}

fn sent_by_host(host: &Host) -> Bytes {
    let mut v = Vec::new();
    host.write_to(&mut v);
    v.make_ascii_lowercase();
    Bytes::from(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::SipMessage;

    fn req(text: &str) -> Request {
        match SipMessage::parse(Bytes::from(text.replace('\n', "\r\n"))) {
            Ok(SipMessage::Request(r)) => r,
            other => panic!("{other:?}"),
        }
    }

    fn invite(via: &str, to: &str, method: &str) -> Request {
        req(&format!(
            "{method} sip:bob@example.com SIP/2.0\n\
             Via: {via}\n\
             From: <sip:alice@example.com>;tag=f1\n\
             To: {to}\n\
             Call-ID: c1@example.com\n\
             CSeq: 7 {method}\n\
             Max-Forwards: 70\n\n"
        ))
    }

    #[test]
    fn rfc3261_key_ignores_host_case_and_maps_ack() {
        let a = RequestIds::of(&invite(
            "SIP/2.0/UDP PC33.Example.com:5060;branch=z9hG4bKx",
            "<sip:bob@example.com>",
            "INVITE",
        ))
        .unwrap();
        let b = RequestIds::of(&invite(
            "SIP/2.0/UDP pc33.example.COM:5060;branch=z9hG4bKx",
            "<sip:bob@example.com>;tag=t9",
            "ACK",
        ))
        .unwrap();
        assert_eq!(a.key, b.key);
        assert!(!a.key.is_rfc2543());
        let c = RequestIds::of(&invite(
            "SIP/2.0/UDP pc33.example.com:5061;branch=z9hG4bKx",
            "<sip:bob@example.com>",
            "INVITE",
        ))
        .unwrap();
        assert_ne!(a.key, c.key, "sent-by port differs");
        let cancel = RequestIds::of(&invite(
            "SIP/2.0/UDP pc33.example.com:5060;branch=z9hG4bKx",
            "<sip:bob@example.com>",
            "CANCEL",
        ))
        .unwrap();
        assert_ne!(cancel.key, a.key);
        assert_eq!(cancel.key.with_method(Method::Invite), a.key);
    }

    #[test]
    fn rfc2543_key() {
        let inv = RequestIds::of(&invite(
            "SIP/2.0/UDP pc33.example.com",
            "<sip:bob@example.com>",
            "INVITE",
        ))
        .unwrap();
        assert!(inv.key.is_rfc2543());
        let old_branch = RequestIds::of(&invite(
            "SIP/2.0/UDP pc33.example.com;branch=1234",
            "<sip:bob@example.com>",
            "INVITE",
        ))
        .unwrap();
        assert!(old_branch.key.is_rfc2543(), "branch without magic cookie");
        assert_ne!(old_branch.key, inv.key);
        let ack = RequestIds::of(&invite(
            "SIP/2.0/UDP pc33.example.com",
            "<sip:bob@example.com>;tag=t9",
            "ACK",
        ))
        .unwrap();
        assert_ne!(ack.key, inv.key);
        assert_eq!(ack.key.with_to_tag(None), inv.key);
        assert_eq!(ack.to_tag.as_deref(), Some(&b"t9"[..]));
    }

    #[test]
    fn merge_key_only_without_to_tag() {
        let a = RequestIds::of(&invite(
            "SIP/2.0/UDP a;branch=z9hG4bK1",
            "<sip:bob@example.com>",
            "INVITE",
        ))
        .unwrap();
        let b = RequestIds::of(&invite(
            "SIP/2.0/UDP b;branch=z9hG4bK2",
            "<sip:bob@example.com>",
            "INVITE",
        ))
        .unwrap();
        assert_ne!(a.key, b.key);
        assert_eq!(a.merge_key(&Method::Invite), b.merge_key(&Method::Invite));
        let tagged = RequestIds::of(&invite(
            "SIP/2.0/UDP b;branch=z9hG4bK2",
            "<sip:bob@example.com>;tag=x",
            "INVITE",
        ))
        .unwrap();
        assert!(tagged.merge_key(&Method::Invite).is_none());
    }

    #[test]
    fn client_key_from_response() {
        let r = invite(
            "SIP/2.0/UDP a;branch=z9hG4bK1",
            "<sip:bob@example.com>",
            "INVITE",
        );
        let resp = crate::response_for(&r, crate::StatusCode::OK, "OK", Some("t"));
        let k = ClientKey::of(&r.headers.top_via_ids().unwrap(), &r.method).unwrap();
        assert_eq!(ClientKey::for_response(&resp), Some(k.clone()));
        assert_ne!(k.with_method(Method::Cancel), k);
        let ack_key = AckKey::for_2xx(&r, &resp).unwrap();
        let ack = RequestIds::of(&invite(
            "SIP/2.0/UDP a;branch=z9hG4bKother",
            "<sip:bob@example.com>;tag=t",
            "ACK",
        ))
        .unwrap();
        assert_eq!(ack.ack_key(), ack_key);
    }
}
