//! The SIP service: one message in, at most one message out.
//!
//! For the foundation this is an out-of-dialog UAS: OPTIONS is answered 200
//! (the keep-alive every PBX and carrier sends), malformed requests get
//! 400/505 naming the problem, and everything else gets the honest RFC 3261
//! answer (481 for dialogs and transactions trunkd does not have, 416 for a
//! URI scheme it cannot route, 501 for methods it does not implement).
//! Calls arrive with the B2BUA; this is where it plugs in.

use std::hash::{BuildHasher, Hasher};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use bytes::Bytes;
use tracing::{debug, trace};
use trunkd_sip::{
    error_response, response_for, Headers, Method, ParseError, Request, Response, SipMessage,
    StatusCode, Via,
};

use crate::daemon::Shared;
use crate::metrics::{Metrics, SipErrorLabels, SipInLabels};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
}

impl Transport {
    fn label(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
        }
    }
}

/// Bytes to send and where (for stream transports: back on the connection
/// the request came on; `dest` is then the peer).
pub struct Reply {
    pub bytes: Bytes,
    pub dest: SocketAddr,
}

/// Methods trunkd answers itself today; the `Allow` header of every 501.
const ALLOW: &str = "OPTIONS, ACK";

pub struct SipService {
    shared: Arc<Shared>,
    /// Keys the To-tags of stateless answers: a retransmitted OPTIONS gets
    /// the same tag, without keeping state per request.
    tag_key: std::collections::hash_map::RandomState,
}

impl SipService {
    pub fn new(shared: Arc<Shared>) -> Self {
        SipService {
            shared,
            tag_key: Default::default(),
        }
    }

    pub fn metrics(&self) -> &Metrics {
        &self.shared.metrics
    }

    /// Handles one message from `src`; returns the answer, if any.
    pub fn handle(&self, data: Bytes, src: SocketAddr, transport: Transport) -> Option<Reply> {
        let t = transport.label();
        let metrics = self.metrics();
        match SipMessage::parse(data) {
            Ok(SipMessage::Request(req)) => {
                metrics
                    .sip_messages_received
                    .get_or_create(&SipInLabels {
                        transport: t,
                        kind: "request",
                    })
                    .inc();
                trace!(method = %String::from_utf8_lossy(req.method.as_bytes()), %src, "request");
                let resp = self.answer(&req)?;
                self.reply(resp, src, transport)
            }
            Ok(SipMessage::Response(resp)) => {
                // No client transactions yet: a response matches nothing
                // and is dropped (RFC 3261 §18.1.2).
                metrics
                    .sip_messages_received
                    .get_or_create(&SipInLabels {
                        transport: t,
                        kind: "response",
                    })
                    .inc();
                debug!(status = resp.status.as_u16(), %src, "stray response dropped");
                None
            }
            Err(e) => {
                let resp = error_response(&e, Some(&self.tag_for(&partial_headers(&e))));
                let action = if resp.is_some() {
                    "rejected"
                } else {
                    "dropped"
                };
                metrics
                    .sip_malformed
                    .get_or_create(&SipErrorLabels {
                        transport: t,
                        action,
                    })
                    .inc();
                debug!(error = %e, %src, action, "malformed SIP message");
                self.reply(resp?, src, transport)
            }
        }
    }

    fn answer(&self, req: &Request) -> Option<Response> {
        let tag = self.tag_for(&req.headers);
        let respond = |code: StatusCode, reason: &str| response_for(req, code, reason, Some(&tag));
        let in_dialog = req.headers.to().ok().is_some_and(|to| to.tag().is_some());
        let resp = match &req.method {
            Method::Ack => return None,
            _ if !req.uri.is_sip() => {
                respond(StatusCode::UNSUPPORTED_URI_SCHEME, "Unsupported URI Scheme")
            }
            Method::Cancel => respond(
                StatusCode::CALL_DOES_NOT_EXIST,
                "Call/Transaction Does Not Exist",
            ),
            _ if in_dialog => respond(
                StatusCode::CALL_DOES_NOT_EXIST,
                "Call/Transaction Does Not Exist",
            ),
            Method::Options => {
                let mut r = respond(StatusCode::OK, "OK");
                let h = &mut r.headers;
                // Values are constants without CR/LF: append cannot fail.
                let _ = h.append("Allow", ALLOW);
                let _ = h.append("Accept", "application/sdp");
                let _ = h.append("Server", concat!("trunkd/", env!("CARGO_PKG_VERSION")));
                r
            }
            _ => {
                let mut r = respond(StatusCode::NOT_IMPLEMENTED, "Not Implemented");
                let _ = r.headers.append("Allow", ALLOW);
                r
            }
        };
        Some(resp)
    }

    /// Serialises `resp` and picks its destination: for UDP per RFC 3261
    /// §18.2.2 and RFC 3581 (the source address, marking the top Via with
    /// `received`/`rport`); for TCP, the connection it came on.
    fn reply(&self, mut resp: Response, src: SocketAddr, transport: Transport) -> Option<Reply> {
        let dest = match transport {
            Transport::Tcp => src,
            Transport::Udp => mark_top_via(&mut resp.headers, src),
        };
        self.metrics()
            .response_sent(transport.label(), resp.status.as_u16());
        Some(Reply {
            bytes: resp.to_bytes(),
            dest,
        })
    }

    fn tag_for(&self, headers: &Headers) -> String {
        let mut h = self.tag_key.build_hasher();
        for name in ["Call-ID", "From"] {
            if let Some(v) = headers.get(name) {
                h.write(v);
            }
        }
        format!("{:016x}", h.finish())
    }
}

fn partial_headers(e: &ParseError) -> Headers {
    e.partial_request()
        .map(|p| p.headers.clone())
        .unwrap_or_default()
}

/// Adds `received` (and the `rport` value) to the top Via of a response and
/// returns where a UDP response goes: the source port when the client asked
/// for rport, else the Via's sent-by port (default 5060), at the source IP.
fn mark_top_via(headers: &mut Headers, src: SocketAddr) -> SocketAddr {
    let Some(first) = headers.get("Via").cloned() else {
        return src;
    };
    let mut vias: Vec<Bytes> = trunkd_sip::split_list(&first).collect();
    let Some(top) = vias.first().and_then(|v| Via::parse(v).ok()) else {
        return src;
    };
    let mut top = top;
    let sent_by_ip = match &top.host {
        trunkd_sip::Host::Ipv4(a) => Some(IpAddr::V4(*a)),
        trunkd_sip::Host::Ipv6(a) => Some(IpAddr::V6(*a)),
        _ => None,
    };
    let wants_rport = top.rport().is_some();
    if sent_by_ip != Some(src.ip()) || wants_rport {
        let _ = top.params.set("received", Some(&src.ip().to_string()));
    }
    if wants_rport {
        let _ = top.params.set("rport", Some(&src.port().to_string()));
    }
    let mut out = Vec::with_capacity(first.len() + 32);
    top.write_to(&mut out);
    vias[0] = Bytes::from(out);
    let joined = vias
        .iter()
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .collect::<Vec<_>>()
        .join(", ");
    replace_first(headers, "Via", joined);
    if wants_rport {
        src
    } else {
        SocketAddr::new(src.ip(), top.port.unwrap_or(5060))
    }
}

/// Replaces the first row named `name`, keeping every other row in place.
fn replace_first(headers: &mut Headers, name: &str, value: String) {
    let mut rebuilt = Headers::new();
    let mut done = false;
    for h in headers.iter() {
        let n = String::from_utf8_lossy(h.name().as_wire()).into_owned();
        let is_target = !done && h.name().known().map(|k| k.canonical()) == Some(name);
        let v = if is_target {
            done = true;
            Bytes::from(value.clone())
        } else {
            h.value().clone()
        };
        let _ = rebuilt.append(&n, v);
    }
    *headers = rebuilt;
}
