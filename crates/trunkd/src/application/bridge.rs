//! What an application call needs to place a PSTN leg of its own
//! (CallAndBridge, SPEC §6): the carriers it tries, the SDP it offers them
//! and where the callee's answer says to send media.
//!
//! The leg itself is a `trunkd_b2bua::UacLeg` owned by the application
//! call's task ([`crate::app_task`]); its media is the B side of the call's
//! relay, which until then had no peer. Offering the B-side socket and,
//! on the answer, giving the relay the callee's address bridges the
//! caller and the callee through the same relay a bridged carrier call
//! uses — the application's own endpoint stays on the A side.

use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use bytes::Bytes;
use trunkd_b2bua::{Hop, MediaRefusal, SdpAnswerer};
use trunkd_config::Config;
use trunkd_core::admission::OriginationTarget;
use trunkd_core::routing::{application_plan, origination_plan, RouteHealthTable};
use trunkd_core::{Resources, SrtpPolicy};
use trunkd_media::{LegSdes, MediaSecurity};
use trunkd_sma::action::{BridgeEndpoint, VoiceConnectorRef};

use super::BridgeVia;

use crate::media_anchor::Relay;
use crate::resolver::HostCache;

/// The hops a leg of an application tries.
///
/// - [`BridgeVia::Carriers`] (`PSTN`): every carrier's hosts by priority
///   and weight (an application has no voice connector to choose
///   carriers).
/// - [`BridgeVia::Origination`] (`AWS`): the voice connector's origination
///   routes by priority and weight, or a group's voice connectors in item
///   priority order, each with its routes — the plan an origination call
///   to that voice connector gets, TLS routes included.
///
/// Route health is the engine's; an application leg starts from a clean
/// table and relies on failover. Each hop carries its SRTP policy
/// (`SrtpPolicy::for_hop`, as termination and origination calls compute
/// it): the call task offers SRTP when any hop of the plan asks for it
/// (see [`leg_policy`]). An empty plan says why in its error.
pub fn plan(
    config: &Config,
    hosts: &HostCache,
    seed: u64,
    via: &BridgeVia,
) -> Result<Vec<Hop>, String> {
    let mut state = seed | 1;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state as u32
    };
    let health = RouteHealthTable::default();
    let resources = &config.resources;
    let target = match via {
        BridgeVia::Carriers => {
            let hops: Vec<Hop> = application_plan(resources, &mut next, &health, Instant::now())
                .iter()
                .filter_map(|h| {
                    let creds = h
                        .credentials
                        .map(|c| (c.username.clone(), c.password.expose().to_owned()));
                    crate::engine::invite::hop(
                        hosts,
                        &h.route,
                        Some(h.carrier_id.clone()),
                        None,
                        creds,
                        SrtpPolicy::for_hop(h.route.protocol, false, h.route.srtp),
                    )
                    .map(|p| p.hop)
                })
                .collect();
            if hops.is_empty() {
                return Err("no carrier to place the call through".to_owned());
            }
            return Ok(hops);
        }
        BridgeVia::Origination(t) => t,
    };
    let mut hops = Vec::new();
    for leg in origination_plan(resources, target, &mut next, &health, Instant::now()) {
        let required = resources
            .voice_connector(leg.vc_id.as_str())
            .is_some_and(|v| v.require_encryption);
        for r in &leg.routes {
            let srtp = SrtpPolicy::for_hop(r.protocol, required, r.srtp);
            if let Some(p) =
                crate::engine::invite::hop(hosts, r, None, Some(leg.vc_id.clone()), None, srtp)
            {
                hops.push(p.hop);
            }
        }
    }
    if hops.is_empty() {
        return Err(
            "the voice connector has no origination route to place the call through".to_owned(),
        );
    }
    Ok(hops)
}

/// The SRTP policy of a bridged leg over `plan`: the strongest of its
/// hops' (`Require` over `Offer` over `Off`). One offer goes to every hop,
/// so a plan that mixes plain and SRTP routes offers SRTP to all; a plain
/// answer is then taken from a hop that does not require SRTP.
pub fn leg_policy(plan: &[Hop]) -> SrtpPolicy {
    let rank = |p: SrtpPolicy| match p {
        SrtpPolicy::Off => 0,
        SrtpPolicy::Offer => 1,
        SrtpPolicy::Require => 2,
    };
    plan.iter()
        .map(|h| h.srtp)
        .max_by_key(|p| rank(*p))
        .unwrap_or(SrtpPolicy::Off)
}

/// The origination target an `AWS` endpoint's `Arn` names in `resources`
/// (a voice connector or a group, by ARN or bare id), or why there is
/// none: the message of CallAndBridge's `InvalidActionParameter`.
pub fn resolve(
    resources: &Resources,
    endpoint: &BridgeEndpoint,
) -> Result<OriginationTarget, String> {
    let arn = endpoint.arn.as_deref().unwrap_or_default();
    let vc = |id: &str| {
        resources
            .voice_connector(id)
            .map(|v| OriginationTarget::VoiceConnector(v.id.clone()))
    };
    let group = |id: &str| {
        resources
            .voice_connector_group(id)
            .map(|g| OriginationTarget::Group(g.id.clone()))
    };
    let found = match endpoint.voice_connector() {
        Some(VoiceConnectorRef::VoiceConnector(id)) => vc(id),
        Some(VoiceConnectorRef::Group(id)) => group(id),
        Some(VoiceConnectorRef::Id(id)) => vc(id).or_else(|| group(id)),
        None => {
            return Err(format!(
                "Endpoint parameter is invalid: Arn {arn:?} is not a voice connector or voice connector group ARN"
            ))
        }
    };
    found.ok_or_else(|| {
        format!(
            "Endpoint parameter is invalid: no voice connector or voice connector group {arn:?}"
        )
    })
}

/// The codec of the caller's answered stream, which the callee is offered
/// alone: the relay forwards packets as they are, so both legs must speak
/// the same payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgeCodec {
    pub encoding: String,
    pub payload_type: u8,
    pub telephone_event: Option<u8>,
}

/// trunkd's offer to the callee: one audio stream on the relay's B-side
/// `rtp` port at `ip`, the caller's codec and `telephone-event`.
#[cfg(test)]
pub fn offer(ip: IpAddr, rtp: u16, session_id: u64, codec: &BridgeCodec) -> Bytes {
    offer_secured(ip, rtp, session_id, codec, None)
}

/// [`offer`] with SDES: `security`'s profile (`RTP/SAVP`) and `a=crypto`
/// values when the leg offers SRTP.
pub fn offer_secured(
    ip: IpAddr,
    rtp: u16,
    session_id: u64,
    codec: &BridgeCodec,
    security: Option<&MediaSecurity>,
) -> Bytes {
    let (proto, crypto) = security.map_or(("RTP/AVP", &[][..]), |s| {
        (s.proto.as_str(), s.crypto.as_slice())
    });
    sdp_offer(
        ip,
        rtp,
        session_id,
        proto,
        &[(codec.payload_type, codec.encoding.as_str())],
        codec.telephone_event,
        crypto,
    )
}

/// The codecs a call trunkd places itself offers (CreateSipMediaApplicationCall):
/// PCMU, then PCMA — trunkd plays and records either, so the callee picks.
pub const PLACED_CALL_CODECS: [(u8, &str); 2] = [(0, "PCMU"), (8, "PCMA")];

/// trunkd's offer of `codecs` (payload type, encoding; 8 kHz), in order of
/// preference, and `telephone-event` on one audio stream at `ip:rtp`.
#[cfg(test)]
pub fn offer_codecs(
    ip: IpAddr,
    rtp: u16,
    session_id: u64,
    codecs: &[(u8, &str)],
    telephone_event: Option<u8>,
) -> Bytes {
    sdp_offer(ip, rtp, session_id, "RTP/AVP", codecs, telephone_event, &[])
}

/// [`offer_codecs`] with SDES: `security`'s profile and `a=crypto` values
/// when the leg offers SRTP.
pub fn offer_codecs_secured(
    ip: IpAddr,
    rtp: u16,
    session_id: u64,
    codecs: &[(u8, &str)],
    telephone_event: Option<u8>,
    security: Option<&MediaSecurity>,
) -> Bytes {
    let (proto, crypto) = security.map_or(("RTP/AVP", &[][..]), |s| {
        (s.proto.as_str(), s.crypto.as_slice())
    });
    sdp_offer(ip, rtp, session_id, proto, codecs, telephone_event, crypto)
}

fn sdp_offer(
    ip: IpAddr,
    rtp: u16,
    session_id: u64,
    proto: &str,
    codecs: &[(u8, &str)],
    telephone_event: Option<u8>,
    crypto: &[String],
) -> Bytes {
    let family = if ip.is_ipv6() { "IP6" } else { "IP4" };
    let mut formats = Vec::new();
    let mut attrs = String::new();
    for (pt, encoding) in codecs {
        formats.push(pt.to_string());
        attrs.push_str(&format!("a=rtpmap:{pt} {encoding}/8000\r\n"));
    }
    let mut formats = formats.join(" ");
    if let Some(te) = telephone_event {
        formats.push_str(&format!(" {te}"));
        attrs.push_str(&format!(
            "a=rtpmap:{te} telephone-event/8000\r\na=fmtp:{te} 0-15\r\n"
        ));
    }
    Bytes::from(format!(
        "v=0\r\no=trunkd {session_id} 1 IN {family} {ip}\r\ns=trunkd\r\nc=IN {family} {ip}\r\nt=0 0\r\n\
m=audio {rtp} {proto} {formats}\r\n{attrs}{crypto}a=ptime:20\r\na=sendrecv\r\n",
        crypto = crypto
            .iter()
            .map(|c| format!("a=crypto:{c}\r\n"))
            .collect::<String>()
    ))
}

/// Answers a re-offer (re-INVITE, UPDATE) from a leg an application call
/// placed (CallAndBridge's callee, or the callee of a placed call) on the
/// relay side `leg`: the leg's media moves to the new address (the relay
/// is told), its direction is mirrored (hold: `sendonly` is answered
/// `recvonly`), and the codec stays the one in use — the relay forwards
/// packets unchanged, so an offer without it is refused 488. The answer
/// is trunkd's SDP with its `o=` version raised (RFC 3264 §8), and every
/// other `m=` line of the offer rejected (port 0).
pub struct Reoffer {
    relay: Relay,
    leg: trunkd_media::Leg,
    stream: usize,
    ip: IpAddr,
    rtp: u16,
    session_id: u64,
    version: u64,
    codec: std::sync::Arc<std::sync::Mutex<BridgeCodec>>,
    /// The leg's SDES state when it is SRTP (shared with the call task,
    /// which set the keys from the first answer).
    sdes: Option<SharedSdes>,
}

/// A bridged leg's SDES state, shared by the call task and [`Reoffer`].
pub type SharedSdes = std::sync::Arc<std::sync::Mutex<LegSdes>>;

impl Reoffer {
    /// For the leg whose first offer was `session_id`'s version 1, on
    /// `ip:rtp`; `codec` is the codec in use (shared: a placed call learns
    /// it from the callee's answer).
    pub fn new(
        relay: Relay,
        leg: trunkd_media::Leg,
        stream: usize,
        (ip, rtp): (IpAddr, u16),
        session_id: u64,
        codec: std::sync::Arc<std::sync::Mutex<BridgeCodec>>,
        sdes: Option<SharedSdes>,
    ) -> Self {
        Reoffer {
            relay,
            leg,
            stream,
            ip,
            rtp,
            session_id,
            version: 1,
            codec,
            sdes,
        }
    }
}

impl SdpAnswerer for Reoffer {
    fn answer(&mut self, offer: &Bytes) -> Result<Bytes, MediaRefusal> {
        let refuse = |why: &str| MediaRefusal {
            status: 488,
            reason: format!("Not Acceptable Here ({why})"),
        };
        let parsed = trunkd_media::sdp::Sdp::parse_bytes(offer).map_err(|_| refuse("not SDP"))?;
        let index = parsed
            .media()
            .iter()
            .position(|m| m.kind() == "audio" && !m.is_rejected())
            .ok_or_else(|| refuse("no audio stream"))?;
        let codec = self
            .codec
            .lock()
            .map(|c| c.clone())
            .map_err(|_| refuse("no codec"))?;
        let m = &parsed.media()[index];
        if !m
            .formats()
            .iter()
            .any(|f| *f == codec.payload_type.to_string())
        {
            return Err(refuse("the codec in use is not offered"));
        }
        let telephone_event = m.telephone_event().map(|(pt, _)| pt);
        // SRTP stays SRTP (new keys are taken), plain stays plain.
        let security = match &self.sdes {
            Some(sdes) => {
                let mut sdes = sdes.lock().map_err(|_| refuse("SDES state"))?;
                let crypto: Vec<&str> = m.crypto().iter().map(String::as_str).collect();
                sdes.peer_offered(m.proto(), &crypto)
                    .map_err(|e| refuse(&e.to_string()))?;
                let security = sdes.answer().map_err(|e| refuse(&e.to_string()))?;
                let keys = sdes
                    .active()
                    .map(trunkd_media::LegCrypto::new)
                    .transpose()
                    .map_err(|e| refuse(&e.to_string()))?;
                let _ = self.relay.set_stream_crypto(self.leg, self.stream, keys);
                security
            }
            None if m.proto().to_ascii_uppercase().contains("SAVP") || !m.crypto().is_empty() => {
                return Err(refuse("SRTP on a plain leg"));
            }
            None => MediaSecurity {
                proto: "RTP/AVP".to_owned(),
                crypto: Vec::new(),
            },
        };
        use trunkd_media::sdp::Direction;
        let direction = match parsed.direction(index).unwrap_or(Direction::SendRecv) {
            Direction::SendOnly => "recvonly",
            Direction::RecvOnly => "sendonly",
            Direction::Inactive => "inactive",
            Direction::SendRecv => "sendrecv",
        };
        // A hold by `c=0.0.0.0` (RFC 2543 style) keeps the old address.
        if let Some(rtp) = parsed
            .remote_rtp(index)
            .filter(|a| !a.ip().is_unspecified())
        {
            if let Err(e) = self.relay.update_stream_peer(
                self.leg,
                self.stream,
                Some(rtp),
                parsed.remote_rtcp(index),
            ) {
                tracing::warn!(error = %e, "the re-offer's media could not be set");
            }
        }
        self.version += 1;
        let family = if self.ip.is_ipv6() { "IP6" } else { "IP4" };
        let ip = self.ip;
        let mut text = format!(
            "v=0\r\no=trunkd {} {} IN {family} {ip}\r\ns=trunkd\r\nc=IN {family} {ip}\r\nt=0 0\r\n",
            self.session_id, self.version
        );
        for (i, other) in parsed.media().iter().enumerate() {
            if i != index {
                let first = other
                    .formats()
                    .first()
                    .map_or("0", trunkd_media::sdp::SmolStr::as_str);
                text.push_str(&format!(
                    "m={} 0 {} {first}\r\n",
                    other.kind(),
                    other.proto()
                ));
                continue;
            }
            let pt = codec.payload_type;
            let mut formats = pt.to_string();
            let mut attrs = format!("a=rtpmap:{pt} {}/8000\r\n", codec.encoding);
            if let Some(te) = telephone_event {
                formats.push_str(&format!(" {te}"));
                attrs.push_str(&format!(
                    "a=rtpmap:{te} telephone-event/8000\r\na=fmtp:{te} 0-15\r\n"
                ));
            }
            for c in &security.crypto {
                attrs.push_str(&format!("a=crypto:{c}\r\n"));
            }
            text.push_str(&format!(
                "m=audio {} {} {formats}\r\n{attrs}a=ptime:20\r\na={direction}\r\n",
                self.rtp, security.proto
            ));
        }
        Ok(Bytes::from(text))
    }
}

/// The codec the callee's answer picked for its first audio stream: the
/// first of its formats that is PCMU or PCMA (by static payload type or
/// `rtpmap`), with the answer's `telephone-event` payload type. `None`
/// when the answer takes neither (trunkd offered nothing else).
pub fn answer_codec(sdp: &[u8]) -> Option<BridgeCodec> {
    let parsed = trunkd_media::sdp::Sdp::parse_bytes(sdp).ok()?;
    let m = parsed
        .media()
        .iter()
        .find(|m| m.kind() == "audio" && !m.is_rejected())?;
    let telephone_event = m.telephone_event().map(|(pt, _)| pt);
    m.formats().iter().find_map(|f| {
        let pt: u8 = f.parse().ok()?;
        let encoding = match m.rtpmaps().iter().find(|r| r.payload_type == pt) {
            Some(r) if r.clock_rate == 8000 => r.encoding.to_ascii_uppercase(),
            Some(_) => return None,
            None => match pt {
                0 => "PCMU".to_owned(),
                8 => "PCMA".to_owned(),
                _ => return None,
            },
        };
        matches!(encoding.as_str(), "PCMU" | "PCMA").then_some(BridgeCodec {
            encoding,
            payload_type: pt,
            telephone_event,
        })
    })
}

/// Where the callee's answer says to send RTP and RTCP (its first audio
/// stream), or `None` if the answer takes no audio.
pub fn answer_peer(sdp: &[u8]) -> Option<(SocketAddr, Option<SocketAddr>)> {
    let parsed = trunkd_media::sdp::Sdp::parse_bytes(sdp).ok()?;
    let index = parsed
        .media()
        .iter()
        .position(|m| m.kind() == "audio" && !m.is_rejected())?;
    let rtp = parsed.remote_rtp(index)?;
    Some((rtp, parsed.remote_rtcp(index)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pcmu() -> BridgeCodec {
        BridgeCodec {
            encoding: "PCMU".into(),
            payload_type: 0,
            telephone_event: Some(101),
        }
    }

    /// vc-east (one UDP route), vc-tls (a TLS route, and a UDP route that
    /// requires SRTP), vc-off (origination disabled) and a group of
    /// vc-tls then vc-east.
    fn lab(dir: &std::path::Path) -> Config {
        crate::engine::sim::config(
            dir,
            "",
            r#"
[[voice_connectors]]
id = "vc-tls"
[voice_connectors.origination]
routes = [ { host = "198.51.100.20", port = 5061, protocol = "TLS", priority = 1 },
           { host = "198.51.100.21", port = 5060, protocol = "UDP", priority = 2, srtp = "require" } ]

[[voice_connectors]]
id = "vc-off"
[voice_connectors.origination]
disabled = true
routes = [ { host = "198.51.100.30", port = 5060, protocol = "UDP" } ]

[[voice_connector_groups]]
id = "grp"
voice_connector_items = [ { voice_connector_id = "vc-tls", priority = 1 }, { voice_connector_id = "vc-east", priority = 2 } ]
"#,
        )
    }

    fn aws(arn: &str) -> BridgeEndpoint {
        BridgeEndpoint {
            bridge_endpoint_type: trunkd_sma::action::BridgeEndpointType::Aws,
            arn: Some(arn.to_owned()),
            uri: "5000".to_owned(),
        }
    }

    #[test]
    fn an_arn_resolves_to_a_configured_voice_connector_or_group() {
        let dir =
            std::env::temp_dir().join(format!("trunkd-bridge-resolve-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let c = lab(&dir);
        let r = &c.resources;
        let vc = |id: &str| OriginationTarget::VoiceConnector(trunkd_core::VcId::new(id).unwrap());
        assert_eq!(
            resolve(r, &aws("arn:aws:chime:us-east-1:123456789012:vc/vc-east")),
            Ok(vc("vc-east"))
        );
        assert_eq!(resolve(r, &aws("vc-tls")), Ok(vc("vc-tls")));
        assert!(matches!(
            resolve(r, &aws("arn:aws:chime:us-east-1:123456789012:vcg/grp")),
            Ok(OriginationTarget::Group(g)) if g.as_str() == "grp"
        ));
        assert!(matches!(
            resolve(r, &aws("grp")),
            Ok(OriginationTarget::Group(_))
        ));
        assert_eq!(
            resolve(r, &aws("arn:aws:chime:us-east-1:123456789012:vc/grp")),
            Err("Endpoint parameter is invalid: no voice connector or voice connector group \"arn:aws:chime:us-east-1:123456789012:vc/grp\"".to_owned()),
            "a group is not a voice connector"
        );
        assert_eq!(
            resolve(r, &aws("arn:aws:s3:::bucket")),
            Err("Endpoint parameter is invalid: Arn \"arn:aws:s3:::bucket\" is not a voice connector or voice connector group ARN".to_owned())
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_voice_connectors_plan_is_its_origination_routes_with_their_srtp_policy() {
        let dir = std::env::temp_dir().join(format!("trunkd-bridge-plan-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let c = lab(&dir);
        let hosts = HostCache::default();
        let via = |arn: &str| BridgeVia::Origination(resolve(&c.resources, &aws(arn)).unwrap());
        let group = plan(&c, &hosts, 7, &via("grp")).unwrap();
        let got: Vec<(String, SrtpPolicy, Option<String>)> = group
            .iter()
            .map(|h| {
                (
                    h.dest.addr.to_string(),
                    h.srtp,
                    h.vc_id.as_ref().map(|v| v.to_string()),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                (
                    "198.51.100.20:5061".to_owned(),
                    SrtpPolicy::Offer,
                    Some("vc-tls".to_owned())
                ),
                (
                    "198.51.100.21:5060".to_owned(),
                    SrtpPolicy::Require,
                    Some("vc-tls".to_owned())
                ),
                (
                    "198.51.100.10:5060".to_owned(),
                    SrtpPolicy::Off,
                    Some("vc-east".to_owned())
                ),
            ]
        );
        assert_eq!(group[0].dest.transport, trunkd_b2bua::TxTransport::Tls);
        assert_eq!(leg_policy(&group), SrtpPolicy::Require);
        let east = plan(&c, &hosts, 7, &via("vc-east")).unwrap();
        assert_eq!(leg_policy(&east), SrtpPolicy::Off);
        assert_eq!(
            plan(&c, &hosts, 7, &via("vc-off")).map(|p| p.len()),
            Err(
                "the voice connector has no origination route to place the call through".to_owned()
            )
        );
        let pstn = plan(&c, &hosts, 7, &BridgeVia::Carriers).unwrap();
        assert_eq!(pstn.len(), 1);
        assert_eq!(pstn[0].dest.addr.to_string(), "203.0.113.20:5060");
        assert_eq!(leg_policy(&[]), SrtpPolicy::Off);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_callee_is_offered_the_callers_codec_on_the_b_side_port() {
        let sdp = offer("127.0.0.1".parse().unwrap(), 20002, 77, &pcmu());
        assert_eq!(
            String::from_utf8_lossy(&sdp),
            "v=0\r\no=trunkd 77 1 IN IP4 127.0.0.1\r\ns=trunkd\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
m=audio 20002 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-15\r\na=ptime:20\r\na=sendrecv\r\n"
        );
        let ipv6 = offer(
            "::1".parse().unwrap(),
            20002,
            1,
            &BridgeCodec {
                telephone_event: None,
                ..pcmu()
            },
        );
        let text = String::from_utf8_lossy(&ipv6);
        assert!(text.contains("c=IN IP6 ::1\r\n"), "{text}");
        assert!(text.contains("m=audio 20002 RTP/AVP 0\r\n"), "{text}");
    }

    #[test]
    fn a_placed_call_offers_pcmu_and_pcma_and_takes_the_answers_pick() {
        let sdp = offer_codecs(
            "127.0.0.1".parse().unwrap(),
            20000,
            5,
            &PLACED_CALL_CODECS,
            Some(101),
        );
        let text = String::from_utf8_lossy(&sdp);
        assert!(
            text.contains(
                "m=audio 20000 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\n"
            ),
            "{text}"
        );
        let head = "v=0\r\no=- 1 1 IN IP4 192.0.2.9\r\ns=-\r\nc=IN IP4 192.0.2.9\r\nt=0 0\r\n";
        let pcma =
            format!("{head}m=audio 30000 RTP/AVP 8 96\r\na=rtpmap:96 telephone-event/8000\r\n");
        assert_eq!(
            answer_codec(pcma.as_bytes()),
            Some(BridgeCodec {
                encoding: "PCMA".into(),
                payload_type: 8,
                telephone_event: Some(96),
            })
        );
        let pcmu = format!("{head}m=audio 30000 RTP/AVP 0 8\r\n");
        assert_eq!(
            answer_codec(pcmu.as_bytes()),
            Some(BridgeCodec {
                encoding: "PCMU".into(),
                payload_type: 0,
                telephone_event: None,
            })
        );
        let g722 = format!("{head}m=audio 30000 RTP/AVP 9\r\n");
        assert_eq!(answer_codec(g722.as_bytes()), None);
    }

    #[test]
    fn the_answer_gives_the_callees_media_address() {
        let answer = b"v=0\r\no=- 1 1 IN IP4 192.0.2.9\r\ns=-\r\nc=IN IP4 192.0.2.9\r\nt=0 0\r\n\
m=video 0 RTP/AVP 96\r\nm=audio 30000 RTP/AVP 0\r\n";
        assert_eq!(
            answer_peer(answer),
            Some((
                "192.0.2.9:30000".parse().unwrap(),
                Some("192.0.2.9:30001".parse().unwrap())
            ))
        );
        assert_eq!(answer_peer(b"not sdp"), None);
        let rejected = b"v=0\r\no=- 1 1 IN IP4 192.0.2.9\r\ns=-\r\nc=IN IP4 192.0.2.9\r\nt=0 0\r\nm=audio 0 RTP/AVP 0\r\n";
        assert_eq!(answer_peer(rejected), None);
    }
}
