//! The gate between a transport and the engine: parse, count, and answer
//! malformed requests (400 naming the problem, 505 for a bad version) or
//! drop what cannot be parsed, so only well-formed messages reach the
//! engine.

use std::hash::{BuildHasher, Hasher};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use bytes::Bytes;
use tracing::{debug, trace};
use trunkd_sip::{error_response, Headers, ParseError, SipMessage, Via, ViaIds};

use crate::daemon::Shared;
use crate::metrics::{Metrics, SipErrorLabels};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
    Tls,
}

impl Transport {
    fn label(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
        }
    }
}

/// Bytes to send and where (for stream transports: back on the connection
/// the request came on; `dest` is then the peer).
pub struct Reply {
    pub bytes: Bytes,
    pub dest: SocketAddr,
}

/// The methods trunkd implements: the `Allow` header of OPTIONS answers and
/// of every 501.
pub const ALLOW: &str = "INVITE, ACK, BYE, CANCEL, OPTIONS, UPDATE, INFO, PRACK";

/// More sources than this in the rate limiter's table and it starts over:
/// memory stays bounded even under a flood from spoofed addresses.
const MAX_TRACKED_SOURCES: usize = 100_000;

pub struct SipService {
    shared: Arc<Shared>,
    /// Per-source token buckets for out-of-dialog requests (SPEC §8).
    limiter: std::sync::Mutex<std::collections::HashMap<IpAddr, trunkd_core::cps::TokenBucket>>,
    /// Keys the To-tags of stateless answers: a retransmitted OPTIONS gets
    /// the same tag, without keeping state per request.
    tag_key: std::collections::hash_map::RandomState,
    /// `[hep]` export, when enabled: the transports copy every message here.
    hep: Option<crate::hep::HepExporter>,
}

impl SipService {
    pub fn new(shared: Arc<Shared>) -> Self {
        SipService {
            shared,
            limiter: Default::default(),
            tag_key: Default::default(),
            hep: None,
        }
    }

    /// Copies every message the transports receive and send to `hep`.
    pub fn with_hep(mut self, hep: Option<crate::hep::HepExporter>) -> Self {
        self.hep = hep;
        self
    }

    /// Hands a copy of a message that crossed a socket to the HEP
    /// exporter, if any; never blocks.
    pub fn capture(
        &self,
        src: std::net::SocketAddr,
        dst: std::net::SocketAddr,
        transport: trunkd_sip::hep::HepTransport,
        bytes: &bytes::Bytes,
    ) {
        if let Some(hep) = &self.hep {
            hep.capture(crate::hep::Captured {
                src,
                dst,
                transport,
                wall: std::time::SystemTime::now(),
                bytes: bytes.clone(),
                kind: trunkd_sip::hep::HepPayload::Sip,
                correlation_id: None,
            });
        }
    }

    pub fn max_tcp_connections_per_source(&self) -> usize {
        self.shared
            .config()
            .settings
            .security
            .max_tcp_connections_per_source
    }

    pub fn shared(&self) -> &Shared {
        &self.shared
    }

    pub fn metrics(&self) -> &Metrics {
        &self.shared.metrics
    }

    /// Takes one message from `src`: a well-formed one is returned for the
    /// engine (a request's top Via stamped with `received`/`rport`, RFC 3261
    /// §18.2.1 and RFC 3581, so every response built from it goes back the
    /// way it came); a malformed one is counted and answered (`Err(Some)`)
    /// or dropped (`Err(None)`).
    pub fn accept(
        &self,
        data: Bytes,
        src: SocketAddr,
        transport: Transport,
    ) -> Result<SipMessage, Option<Reply>> {
        let t = transport.label();
        let metrics = self.metrics();
        match SipMessage::parse(data) {
            Ok(SipMessage::Request(mut req)) => {
                metrics.message_received(t, "request");
                trace!(method = %String::from_utf8_lossy(req.method.as_bytes()), %src, "request");
                if transport == Transport::Udp {
                    stamp_top_via(&mut req.headers, src);
                }
                let out_of_dialog = req.method != trunkd_sip::Method::Ack
                    && req.headers.to_tag().ok().is_none_or(|t| t.is_none());
                if out_of_dialog {
                    if let Some(refusal) = self.abuse_check(&req, src) {
                        metrics
                            .sip_refused
                            .get_or_create(&crate::metrics::RefusedLabels { reason: refusal })
                            .inc();
                        if refusal == "rate_limit"
                            && self.shared.config().settings.security.rate_limit_action
                                == trunkd_config::RateLimitAction::Reject
                        {
                            let mut resp = trunkd_sip::response_for(
                                &req,
                                trunkd_sip::StatusCode::SERVICE_UNAVAILABLE,
                                "Service Unavailable",
                                Some(&self.tag_for(&req.headers)),
                            );
                            let _ = resp.headers.append("Retry-After", "1");
                            let dest = if transport == Transport::Udp {
                                response_dest(&resp.headers, src)
                            } else {
                                src
                            };
                            return Err(Some(Reply {
                                bytes: resp.to_bytes(),
                                dest,
                            }));
                        }
                        return Err(None);
                    }
                }
                Ok(SipMessage::Request(req))
            }
            Ok(resp @ SipMessage::Response(_)) => {
                metrics.message_received(t, "response");
                Ok(resp)
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
                let Some(mut resp) = resp else {
                    return Err(None);
                };
                let dest = match transport {
                    Transport::Tcp | Transport::Tls => src,
                    Transport::Udp => {
                        stamp_top_via(&mut resp.headers, src);
                        response_dest(&resp.headers, src)
                    }
                };
                metrics.response_sent(t, resp.status.as_u16());
                Err(Some(Reply {
                    bytes: resp.to_bytes(),
                    dest,
                }))
            }
        }
    }

    /// Scanner User-Agents and sources over their rate (SPEC §8): the reason
    /// to refuse an out-of-dialog request, if any.
    fn abuse_check(&self, req: &trunkd_sip::Request, src: SocketAddr) -> Option<&'static str> {
        if self.shared.is_blocked(src.ip()) {
            return Some("auth_blocked");
        }
        let config = self.shared.config();
        let sec = &config.settings.security;
        if let Some(ua) = req.headers.get("User-Agent") {
            if sec
                .scanner_user_agents
                .iter()
                .any(|s| contains_ignore_ascii_case(ua, s.as_bytes()))
            {
                return Some("scanner");
            }
        }
        let limit = trunkd_core::CpsLimit::new(i64::from(sec.rate_limit_per_source)).ok()?;
        let mut table = self.limiter.lock().unwrap_or_else(|p| p.into_inner());
        if table.len() >= MAX_TRACKED_SOURCES && !table.contains_key(&src.ip()) {
            table.clear();
        }
        let bucket = table
            .entry(src.ip())
            .or_insert_with(|| trunkd_core::cps::TokenBucket::new(limit));
        bucket.set_limit(limit);
        bucket
            .try_take(std::time::Instant::now())
            .err()
            .map(|_| "rate_limit")
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

/// Whether `hay` holds `needle`, ASCII letters compared without case. A
/// User-Agent is looked for every configured scanner name in each
/// out-of-dialog request; lowercased copies of both were an allocation per
/// name.
fn contains_ignore_ascii_case(hay: &[u8], needle: &[u8]) -> bool {
    needle.is_empty()
        || hay
            .windows(needle.len())
            .any(|w| w.eq_ignore_ascii_case(needle))
}

/// Adds `received` (and the `rport` value) to the top Via (RFC 3261
/// §18.2.1, RFC 3581 §4).
fn stamp_top_via(headers: &mut Headers, src: SocketAddr) {
    let Some(first) = headers.get("Via") else {
        return;
    };
    let mut vias = trunkd_sip::split_list(first);
    let Some(top) = vias.next() else {
        return;
    };
    let Ok(ids) = ViaIds::parse(&top) else {
        return;
    };
    let sent_by_ip = match &ids.host {
        trunkd_sip::Host::Ipv4(a) => Some(IpAddr::V4(*a)),
        trunkd_sip::Host::Ipv6(a) => Some(IpAddr::V6(*a)),
        _ => None,
    };
    let wants_rport = ids.rport.is_some();
    let wants_received = sent_by_ip != Some(src.ip()) || wants_rport;
    // The common case (sent-by is the source, no rport): nothing to stamp,
    // and the message is passed on as parsed, its Via read without a
    // parameter list.
    if !wants_received {
        return;
    }
    let Ok(mut top) = Via::parse(&top) else {
        return;
    };
    let _ = top.params.set("received", Some(&src.ip().to_string()));
    if wants_rport {
        let _ = top.params.set("rport", Some(&src.port().to_string()));
    }
    let mut out = Vec::with_capacity(first.len() + 40);
    top.write_to(&mut out);
    for v in vias {
        out.extend_from_slice(b", ");
        out.extend_from_slice(&v);
    }
    let _ = headers.set_first("Via", out);
}

/// Where a UDP response goes (RFC 3261 §18.2.2, RFC 3581): the source port
/// when the client asked for rport, else the Via's sent-by port (default
/// 5060), at the source IP.
fn response_dest(headers: &Headers, src: SocketAddr) -> SocketAddr {
    match headers.top_via_ids() {
        Ok(v) if v.rport.is_none() => SocketAddr::new(src.ip(), v.port.unwrap_or(5060)),
        _ => src,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn via_rows(h: &Headers) -> Vec<String> {
        h.get_all("Via")
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .collect()
    }

    #[test]
    fn a_scanner_name_is_found_in_a_user_agent_whatever_the_case() {
        let found =
            |ua: &str, name: &str| contains_ignore_ascii_case(ua.as_bytes(), name.as_bytes());
        assert!(found("friendly-scanner", "friendly-scanner"));
        assert!(found("Mozilla FRIENDLY-Scanner/1.0", "friendly-scanner"));
        assert!(found("sipvicious", "SIPVicious"));
        assert!(found("x smap", "smap"));
        assert!(found("anything", ""));
        assert!(!found("smaP-", "smap-x"));
        assert!(!found("sip", "sipsak"));
        assert!(!found("", "smap"));
        assert!(!found("Linphone/5 (sma p)", "smap"));
    }

    proptest::proptest! {
        /// The search without copies finds what lowercasing both and
        /// `str::contains` found.
        #[test]
        fn scanner_search_is_lowercased_contains(ua in "[a-zA-Z -]{0,24}", name in "[a-zA-Z-]{0,5}") {
            proptest::prop_assert_eq!(
                contains_ignore_ascii_case(ua.as_bytes(), name.as_bytes()),
                ua.to_ascii_lowercase().contains(&name.to_ascii_lowercase())
            );
        }
    }

    #[test]
    fn a_top_via_whose_sent_by_is_the_source_is_left_as_received() {
        let mut h = Headers::new();
        h.append("v", "SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK1")
            .unwrap();
        h.append("From", "<sip:a@x>;tag=1").unwrap();
        stamp_top_via(&mut h, "127.0.0.1:5070".parse().unwrap());
        assert_eq!(via_rows(&h), ["SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK1"]);
    }

    #[test]
    fn rport_and_received_go_on_the_top_via_only_keeping_the_rows_order() {
        let mut h = Headers::new();
        h.append("To", "<sip:b@x>").unwrap();
        h.append(
            "Via",
            "SIP/2.0/UDP pbx.example.com;rport;branch=z9hG4bKa, SIP/2.0/UDP 10.0.0.9:5060;branch=z9hG4bKb",
        )
        .unwrap();
        h.append("Via", "SIP/2.0/TCP 10.0.0.8;branch=z9hG4bKc")
            .unwrap();
        stamp_top_via(&mut h, "192.0.2.7:40123".parse().unwrap());
        assert_eq!(
            via_rows(&h),
            [
                "SIP/2.0/UDP pbx.example.com;branch=z9hG4bKa;received=192.0.2.7;rport=40123, SIP/2.0/UDP 10.0.0.9:5060;branch=z9hG4bKb",
                "SIP/2.0/TCP 10.0.0.8;branch=z9hG4bKc",
            ]
        );
        assert_eq!(h.iter().next().unwrap().name().as_wire(), b"To");
    }
}
