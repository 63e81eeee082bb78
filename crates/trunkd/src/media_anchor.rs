//! The media anchor of a call: per stream (`m=` line, up to
//! `trunkd_media::MAX_STREAMS`) two port pairs (one facing each leg's
//! peer), a `trunkd_media` relay between them, and the SDP rewriting that makes
//! both peers send to trunkd (SPEC §2.4). Implements the call's
//! `MediaAnchor` hook, so the call state machine stays free of sockets.
//!
//! Each leg also has its own SDES state (`trunkd_media::sdes`): the keys a
//! leg negotiates are installed in the relay for that leg only, so SRTP
//! and plain legs mix freely and keys never cross.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use prometheus_client::metrics::gauge::Gauge;
use tracing::{debug, warn};
use trunkd_b2bua::{Leg, MediaAnchor, MediaRefusal, SdpAnswerer, SdpRole};
use trunkd_core::SrtpPolicy;
use trunkd_media::{
    AnsweredStream, LegCrypto, LegKeys, LegOrigin, LegSdes, LegSetup, LegSockets, Media,
    MediaEventSender, MediaSecurity, OriginOverride, PortAllocator, PortError, QualityObserver,
    RecvOnlyAnswer, RelayConfig, RelayHandle, RelayRuntimes, Sdp, MAX_STREAMS,
};

pub type Relay = Arc<RelayHandle<QualityObserver>>;

/// The daemon's relay threads (`[media] relay_threads`), set once at start.
/// Without them (unit tests) a relay runs on the caller's runtime. A
/// process-wide cell rather than an argument: the engine shell starts
/// anchors with a fixed set of arguments, and there is one daemon per
/// process.
static RELAY_RUNTIMES: OnceLock<Arc<RelayRuntimes>> = OnceLock::new();

/// Makes every anchor started from now on run its relay on `runtimes`.
/// Returns `false` (and changes nothing) if runtimes were set before.
pub fn use_relay_runtimes(runtimes: Arc<RelayRuntimes>) -> bool {
    RELAY_RUNTIMES.set(runtimes).is_ok()
}

/// Live relays on each of the daemon's relay threads, in thread order;
/// `None` before [`use_relay_runtimes`].
pub fn relay_loads() -> Option<Vec<usize>> {
    RELAY_RUNTIMES.get().map(|r| r.loads())
}

fn media_leg(leg: Leg) -> trunkd_media::Leg {
    match leg {
        Leg::A => trunkd_media::Leg::A,
        Leg::B => trunkd_media::Leg::B,
    }
}

fn idx(leg: Leg) -> usize {
    match leg {
        Leg::A => 0,
        Leg::B => 1,
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AnchorError {
    #[error("no media ports left: {0}")]
    Ports(#[from] PortError),
    #[error("media relay: {0}")]
    Relay(#[from] trunkd_media::RelayError),
}

pub struct RelayAnchor {
    relay: Relay,
    allocator: PortAllocator,
    bind_ip: IpAddr,
    /// Updated whenever a stream takes ports (they return when the relay
    /// stops; the call task sets the gauge then).
    ports_in_use: Option<Gauge>,
    /// Per stream (`m=` line) the relay carries: trunkd's (RTP, RTCP) ports
    /// facing each leg's peer. `None`: not anchored (yet).
    streams: [Option<[(u16, u16); 2]>; MAX_STREAMS],
    /// Per stream: what was negotiated on it, made when an SDP first names
    /// the stream. Boxed and on demand: most calls have one stream, and
    /// four of these inline cost every call about 2.5 KiB.
    negotiated: [Option<Box<StreamNegotiation>>; MAX_STREAMS],
    /// Per leg: the SRTP policy a stream's SDES starts with (leg A's from
    /// admission, leg B's from the hop being tried).
    srtp: [SrtpPolicy; 2],
    /// The stream quality is measured on (the first audio `m=` line).
    quality_stream: usize,
    advertised: IpAddr,
    origins: [LegOrigin; 2],
    /// `[hep]` RTCP export: told each leg's addresses of the quality stream.
    rtcp_export: Option<Arc<crate::hep::RtcpExport>>,
}

/// One stream's negotiated state.
#[derive(Debug)]
struct StreamNegotiation {
    /// Per leg: the payload types' clock rates that leg's peer listed, so
    /// the relay measures and injects at the right rate.
    rates: [Vec<(u8, u32)>; 2],
    /// The clock rates last given to the relay.
    rates_sent: Vec<(u8, u32)>,
    /// SDES per leg: each `m=` line has its own keys.
    sdes: [LegSdes; 2],
    /// The keys installed in the relay per leg, to install only changes
    /// (boxed: plain calls carry none).
    installed: [Option<Box<LegKeys>>; 2],
}

/// Stream `stream`'s negotiated state, made on first use with each leg's
/// SRTP policy.
fn negotiation(
    negotiated: &mut [Option<Box<StreamNegotiation>>; MAX_STREAMS],
    srtp: [SrtpPolicy; 2],
    stream: usize,
) -> &mut StreamNegotiation {
    negotiated[stream].get_or_insert_with(|| {
        Box::new(StreamNegotiation {
            rates: Default::default(),
            rates_sent: Vec::new(),
            sdes: [LegSdes::new(srtp[0]), LegSdes::new(srtp[1])],
            installed: Default::default(),
        })
    })
}

impl RelayAnchor {
    /// The call's `[hep]` RTCP export, if any.
    pub fn rtcp_export(&self) -> Option<Arc<crate::hep::RtcpExport>> {
        self.rtcp_export.clone()
    }

    /// The address trunkd's SDPs name for this relay's sockets.
    pub fn advertised(&self) -> IpAddr {
        self.advertised
    }
}

impl RelayAnchor {
    /// Binds a port pair per leg on `bind_ip` for the first stream and
    /// starts the relay; peers are learnt from the SDPs that cross
    /// ([`MediaAnchor::rewrite`]), which also add the other streams.
    /// `ports_in_use` (optional) is set when later streams take ports.
    ///
    /// # Errors
    /// No ports left in the range (the caller answers 503), or no runtime.
    #[allow(clippy::too_many_arguments)]
    pub fn start(
        ports: &PortAllocator,
        bind_ip: IpAddr,
        advertised: IpAddr,
        config: RelayConfig,
        a_srtp: SrtpPolicy,
        events: MediaEventSender,
        ports_in_use: Option<Gauge>,
    ) -> Result<(RelayAnchor, Relay), AnchorError> {
        Self::start_with_rtcp_export(
            ports,
            bind_ip,
            advertised,
            config,
            a_srtp,
            events,
            ports_in_use,
            None,
        )
    }

    /// [`RelayAnchor::start`], with the quality stream's RTCP copied to
    /// `rtcp_export` (HEP) when given.
    #[allow(clippy::too_many_arguments)]
    pub fn start_with_rtcp_export(
        ports: &PortAllocator,
        bind_ip: IpAddr,
        advertised: IpAddr,
        config: RelayConfig,
        a_srtp: SrtpPolicy,
        events: MediaEventSender,
        ports_in_use: Option<Gauge>,
        rtcp_export: Option<Arc<crate::hep::RtcpExport>>,
    ) -> Result<(RelayAnchor, Relay), AnchorError> {
        let a = ports.allocate_bound(bind_ip)?;
        let b = ports.allocate_bound(bind_ip)?;
        let pa = (a.ports.rtp(), a.ports.rtcp());
        let pb = (b.ports.rtp(), b.ports.rtcp());
        let observer = match &rtcp_export {
            Some(e) => QualityObserver::default().with_rtcp_tap(e.clone()),
            None => QualityObserver::default(),
        };
        let handle = match RELAY_RUNTIMES.get() {
            Some(runtimes) => {
                runtimes.spawn_with_observer(config, setup(a), setup(b), observer, events)?
            }
            None => {
                trunkd_media::spawn_with_observer(config, setup(a), setup(b), observer, events)?
            }
        };
        let relay = Arc::new(handle);
        let mut streams = [None; MAX_STREAMS];
        streams[0] = Some([pa, pb]);
        Ok((
            RelayAnchor {
                relay: relay.clone(),
                allocator: ports.clone(),
                bind_ip,
                ports_in_use,
                streams,
                negotiated: Default::default(),
                srtp: [a_srtp, SrtpPolicy::default()],
                quality_stream: 0,
                advertised,
                origins: [LegOrigin::new(), LegOrigin::new()],
                rtcp_export,
            },
            relay,
        ))
    }
}

fn setup(s: trunkd_media::BoundPair) -> LegSetup {
    LegSetup {
        sockets: LegSockets::from(s),
        peer_rtp: None,
        peer_rtcp: None,
    }
}

/// Whether an `m=` section asks for SRTP.
fn is_secured(m: &Media) -> bool {
    m.proto().to_ascii_uppercase().contains("SAVP") || m.has_crypto()
}

/// The clock rates of an `m=` section's payload types: its `a=rtpmap`s,
/// and the RFC 3551 static table for the others.
fn clock_rates(m: &Media) -> Vec<(u8, u32)> {
    m.formats()
        .iter()
        .filter_map(|f| f.parse::<u8>().ok())
        .filter_map(|pt| m.clock_rate(pt).map(|r| (pt, r)))
        .collect()
}

impl RelayAnchor {
    /// The clock rates last given to the relay for `stream`.
    fn rates_sent(&self, stream: usize) -> Vec<(u8, u32)> {
        self.negotiated
            .get(stream)
            .and_then(Option::as_ref)
            .map(|n| n.rates_sent.clone())
            .unwrap_or_default()
    }

    /// Installs `leg`'s negotiated keys of `stream` in the relay if they
    /// changed.
    /// The quality stream's addresses on `from`'s side for the HEP RTCP
    /// copies: the peer's RTCP address from its SDP and trunkd's socket
    /// it sends to (the RTP one when the peer muxes RTCP onto RTP).
    fn tell_rtcp_export(&self, export: &crate::hep::RtcpExport, from: Leg, parsed: &Sdp) {
        let q = self.quality_stream;
        let Some(Some(pairs)) = self.streams.get(q) else {
            return;
        };
        let (rtp_port, rtcp_port) = pairs[idx(from)];
        let (peer_rtp, peer_rtcp) = (parsed.remote_rtp(q), parsed.remote_rtcp(q));
        let muxed = peer_rtcp.is_some() && peer_rtcp == peer_rtp;
        let ip = if self.bind_ip.is_unspecified() {
            self.advertised
        } else {
            self.bind_ip
        };
        let local = SocketAddr::new(ip, if muxed { rtp_port } else { rtcp_port });
        export.set_addrs(media_leg(from), local, peer_rtcp);
    }

    fn sync_crypto(&mut self, leg: Leg, stream: usize) -> Result<(), MediaRefusal> {
        let i = idx(leg);
        let n = negotiation(&mut self.negotiated, self.srtp, stream);
        let active = n.sdes[i].active();
        if active == n.installed[i].as_deref() {
            return Ok(());
        }
        let crypto = active
            .map(LegCrypto::new)
            .transpose()
            .map_err(|e| MediaRefusal {
                status: 488,
                reason: format!("Not Acceptable Here ({e})"),
            })?;
        n.installed[i] = active.cloned().map(Box::new);
        let _ = self.relay.set_stream_crypto(media_leg(leg), stream, crypto);
        Ok(())
    }

    /// Stream `index`'s ports, allocating a pair per leg and adding the
    /// stream to the relay the first time. `None` when the pool is empty
    /// (the stream is declined, the call goes on).
    fn stream_ports(&mut self, index: usize) -> Option<[(u16, u16); 2]> {
        if let Some(p) = self.streams.get(index).copied().flatten() {
            return Some(p);
        }
        if index >= MAX_STREAMS {
            return None;
        }
        let pairs = self
            .allocator
            .allocate_bound(self.bind_ip)
            .and_then(|a| Ok((a, self.allocator.allocate_bound(self.bind_ip)?)));
        let (a, b) = match pairs {
            Ok(p) => p,
            Err(e) => {
                warn!(error = %e, stream = index, "no media ports for a further stream; declined");
                return None;
            }
        };
        let ports = [
            (a.ports.rtp(), a.ports.rtcp()),
            (b.ports.rtp(), b.ports.rtcp()),
        ];
        if let Err(e) = self.relay.add_stream(index, setup(a), setup(b)) {
            warn!(error = %e, stream = index, "media stream not added; declined");
            return None;
        }
        if let Some(g) = &self.ports_in_use {
            g.set((self.allocator.capacity() - self.allocator.available()) as i64);
        }
        self.streams[index] = Some(ports);
        Some(ports)
    }

    /// Tells the relay the clock rates of `stream` (both legs' lists, the
    /// sender's first) if they changed.
    fn sync_rates(&mut self, stream: usize, from: usize) {
        let n = negotiation(&mut self.negotiated, self.srtp, stream);
        let mut merged = n.rates[from].clone();
        for r in &n.rates[from ^ 1] {
            if !merged.iter().any(|(pt, _)| *pt == r.0) {
                merged.push(*r);
            }
        }
        if merged != n.rates_sent {
            n.rates_sent = merged.clone();
            let _ = self.relay.set_clock_rates(stream, merged);
        }
    }
}

/// An offer anchored for trunkd's own answer: the parsed offer, trunkd's
/// (RTP, RTCP) ports per stream (`None`: refused), and the SDES answer.
type LocalAnswer = (Sdp, Vec<Option<(u16, u16)>>, MediaSecurity);

impl RelayAnchor {
    /// Anchors an offer from `leg` that trunkd answers itself (no other
    /// leg): SDES with that leg only, its side of every stream's ports, the
    /// peer's addresses learnt. The other leg's sockets stay without a peer,
    /// so the relay forwards nothing (it counts `no_peer` drops) while its
    /// taps and inactivity timer see every packet.
    fn anchor_local_answer(&mut self, leg: Leg, sdp: &Bytes) -> Result<LocalAnswer, MediaRefusal> {
        let refuse = |e: &dyn std::fmt::Display| MediaRefusal {
            status: 488,
            reason: format!("Not Acceptable Here ({e})"),
        };
        let parsed = Sdp::parse_bytes(sdp).map_err(|e| refuse(&e))?;
        if parsed
            .media()
            .iter()
            .enumerate()
            .any(|(i, m)| i > 0 && !m.is_rejected() && is_secured(m))
        {
            return Err(refuse(&"SRTP on a stream other than the first"));
        }
        let i = idx(leg);
        let first = parsed.media().first();
        let proto = first.map_or("RTP/AVP", |m| m.proto());
        let crypto: Vec<&str> = first
            .map(|m| m.crypto().iter().map(String::as_str).collect())
            .unwrap_or_default();
        // SDES on the first stream only for a session trunkd answers itself
        // (recording servers send one secured stream per call, if any).
        let sdes = &mut negotiation(&mut self.negotiated, self.srtp, 0).sdes[i];
        let security = sdes
            .peer_offered(proto, &crypto)
            .and_then(|()| sdes.answer())
            .map_err(|e| refuse(&e))?;
        self.sync_crypto(leg, 0)?;
        let mut ports = Vec::with_capacity(parsed.media().len());
        for (s, m) in parsed.media().iter().enumerate() {
            let pair = if m.is_rejected() || s >= MAX_STREAMS {
                None
            } else {
                self.stream_ports(s)
            };
            if pair.is_some() {
                let _ = self.relay.update_stream_peer(
                    media_leg(leg),
                    s,
                    parsed.remote_rtp(s),
                    parsed.remote_rtcp(s),
                );
                negotiation(&mut self.negotiated, self.srtp, s).rates[i] = clock_rates(m);
                self.sync_rates(s, i);
            }
            ports.push(pair.map(|p| p[i]));
        }
        let quality = parsed
            .media()
            .iter()
            .take(MAX_STREAMS)
            .position(|m| m.kind().eq_ignore_ascii_case("audio") && !m.is_rejected())
            .unwrap_or(0);
        if quality != self.quality_stream {
            self.quality_stream = quality;
            let _ = self.relay.set_quality_stream(quality);
            let rates = self.rates_sent(quality);
            let _ = self.relay.set_clock_rates(quality, rates);
        }
        Ok((parsed, ports, security))
    }
}

/// What a recording session answered, per offered stream (the recorder
/// reads it to know which streams are audio and in which codec).
pub type Answered = Arc<std::sync::Mutex<Vec<AnsweredStream>>>;

/// The media side of a session trunkd only receives (SIPREC, SPEC §2.6):
/// the A leg's streams anchored on the relay, answered `recvonly` with
/// [`trunkd_media::recvonly_answer`]. The relay's B side is never given a
/// peer: nothing received is forwarded.
pub struct RecvOnlyAnchor {
    anchor: RelayAnchor,
    /// `trunkd_media::recvonly_answer`, or the application answer.
    builder: AnswerBuilder,
    session_id: String,
    /// RFC 3264 §8: `o=` version, bumped when the answer changes.
    version: u64,
    last: Option<String>,
    answered: Answered,
}

impl RecvOnlyAnchor {
    /// `session_id` is the `o=` session id of trunkd's SDPs in the dialog.
    pub fn new(anchor: RelayAnchor, session_id: u64) -> (RecvOnlyAnchor, Answered) {
        let answered = Answered::default();
        (
            RecvOnlyAnchor {
                anchor,
                builder: trunkd_media::recvonly_answer,
                session_id: session_id.to_string(),
                version: 1,
                last: None,
                answered: answered.clone(),
            },
            answered,
        )
    }

    fn build(
        &self,
        offer: &Sdp,
        ports: &[Option<(u16, u16)>],
        sec: &MediaSecurity,
    ) -> RecvOnlyAnswer {
        (self.builder)(
            offer,
            self.anchor.advertised,
            ports,
            OriginOverride {
                username: "trunkd",
                session_id: &self.session_id,
                version: self.version,
            },
            Some(sec),
        )
    }
}

impl SdpAnswerer for RecvOnlyAnchor {
    fn answer(&mut self, offer: &Bytes) -> Result<Bytes, MediaRefusal> {
        let (parsed, ports, security) = self.anchor.anchor_local_answer(Leg::A, offer)?;
        let mut answer = self.build(&parsed, &ports, &security);
        if self.last.as_ref().is_some_and(|l| *l != answer.sdp) {
            self.version += 1;
            answer = self.build(&parsed, &ports, &security);
        }
        self.last = Some(answer.sdp.clone());
        if let Ok(mut a) = self.answered.lock() {
            *a = answer.streams;
        }
        Ok(Bytes::from(answer.sdp))
    }
}

/// The signature of the answer builders of `trunkd_media::recvonly`.
type AnswerBuilder = fn(
    &Sdp,
    IpAddr,
    &[Option<(u16, u16)>],
    OriginOverride<'_>,
    Option<&MediaSecurity>,
) -> RecvOnlyAnswer;

/// The media side of an application call (SPEC §6): the A leg's first
/// G.711 audio stream anchored on the relay and answered `sendrecv`
/// (`trunkd_media::application_answer`) on trunkd's A-side ports; the
/// other streams refused. trunkd plays into the stream and listens to it
/// through the relay (`trunkd_media::endpoint::leg::LegEndpoint`).
pub struct AppAnchor(RecvOnlyAnchor);

impl AppAnchor {
    /// `session_id` is the `o=` session id of trunkd's SDPs in the dialog.
    pub fn new(anchor: RelayAnchor, session_id: u64) -> (AppAnchor, Answered) {
        let (mut inner, answered) = RecvOnlyAnchor::new(anchor, session_id);
        inner.builder = trunkd_media::application_answer;
        (AppAnchor(inner), answered)
    }
}

impl SdpAnswerer for AppAnchor {
    /// # Errors
    /// 488 for an offer without a G.711 audio stream: an application has
    /// nothing to play or hear in it.
    fn answer(&mut self, offer: &Bytes) -> Result<Bytes, MediaRefusal> {
        let sdp = self.0.answer(offer)?;
        let taken = self
            .0
            .answered
            .lock()
            .is_ok_and(|a| a.iter().any(|s| s.ports.is_some()));
        if !taken {
            return Err(MediaRefusal {
                status: 488,
                reason: "Not Acceptable Here (no G.711 audio stream)".to_owned(),
            });
        }
        Ok(sdp)
    }
}

impl MediaAnchor for RelayAnchor {
    fn rewrite(&mut self, from: Leg, role: SdpRole, sdp: &Bytes) -> Result<Bytes, MediaRefusal> {
        let refuse = |e: &dyn std::fmt::Display| MediaRefusal {
            status: 488,
            reason: format!("Not Acceptable Here ({e})"),
        };
        let parsed = Sdp::parse_bytes(sdp).map_err(|e| refuse(&e))?;
        let out = from.other();
        let (fi, oi) = (idx(from), idx(out));
        // Every `m=` line is anchored on its own stream, up to
        // MAX_STREAMS; a stream the peer rejected (port 0) stays rejected
        // on the other leg and takes no ports, and so do the lines beyond
        // the cap.
        let n = parsed.media().len();
        let mut ports: Vec<Option<(u16, u16)>> = Vec::with_capacity(n);
        let mut security: Vec<Option<MediaSecurity>> = Vec::with_capacity(n);
        for (i, m) in parsed.media().iter().enumerate() {
            let mut pair = if m.is_rejected() || i >= MAX_STREAMS {
                None
            } else {
                self.stream_ports(i)
            };
            let mut sec = None;
            if pair.is_some() {
                // SDES per leg and stream: what `from` sent settles or
                // proposes its keys; the other leg gets trunkd's own offer
                // or answer.
                let proto = m.proto();
                let crypto: Vec<&str> = m.crypto().iter().map(String::as_str).collect();
                let sdes = &mut negotiation(&mut self.negotiated, self.srtp, i).sdes;
                let negotiated = match role {
                    SdpRole::Offer => sdes[fi]
                        .peer_offered(proto, &crypto)
                        .and_then(|()| sdes[oi].offer(proto)),
                    SdpRole::Answer => sdes[fi]
                        .peer_answered(proto, &crypto)
                        .and_then(|()| sdes[oi].answer()),
                };
                match negotiated {
                    Ok(s) => {
                        self.sync_crypto(from, i)?;
                        self.sync_crypto(out, i)?;
                        sec = Some(s);
                    }
                    // The call's main stream decides the call.
                    Err(e) if i == 0 => return Err(refuse(&e)),
                    // A further stream that cannot be secured as the leg
                    // requires is declined; the call goes on without it.
                    Err(e) => {
                        debug!(error = %e, stream = i, "media stream declined");
                        pair = None;
                    }
                }
            }
            if i < MAX_STREAMS && self.streams[i].is_some() {
                let (rtp, rtcp) = if pair.is_some() {
                    (parsed.remote_rtp(i), parsed.remote_rtcp(i))
                } else {
                    (None, None)
                };
                let _ = self.relay.update_stream_peer(media_leg(from), i, rtp, rtcp);
                negotiation(&mut self.negotiated, self.srtp, i).rates[fi] = clock_rates(m);
                self.sync_rates(i, fi);
            }
            ports.push(pair.map(|p| p[oi]));
            security.push(sec);
        }
        // Quality on the first audio stream (the first stream otherwise:
        // T.38 after a fax re-INVITE, or a video-only call).
        let quality = parsed
            .media()
            .iter()
            .take(MAX_STREAMS)
            .position(|m| m.kind().eq_ignore_ascii_case("audio") && !m.is_rejected())
            .unwrap_or(0);
        if quality != self.quality_stream {
            self.quality_stream = quality;
            let _ = self.relay.set_quality_stream(quality);
            // The observer takes the new stream's rates.
            let rates = self.rates_sent(quality);
            let _ = self.relay.set_clock_rates(quality, rates);
        }
        if let Some(export) = &self.rtcp_export {
            self.tell_rtcp_export(export, from, &parsed);
        }
        let security: Vec<Option<&MediaSecurity>> = security.iter().map(Option::as_ref).collect();
        let text = self.origins[oi]
            .rewrite_streams(&parsed, self.advertised, &ports, &security)
            .map_err(|e| refuse(&e))?;
        Ok(Bytes::from(text))
    }

    fn reset(&mut self, leg: Leg, srtp: SrtpPolicy) {
        // A new hop: its peer is unknown until it answers, and nothing
        // negotiated with the previous hop (keys above all) carries over.
        let l = idx(leg);
        // Streams negotiated later start with the new hop's policy.
        self.srtp[l] = srtp;
        for (i, s) in self.streams.iter().enumerate() {
            if s.is_some() {
                let _ = self.relay.update_stream_peer(media_leg(leg), i, None, None);
            }
            let Some(n) = self.negotiated[i].as_mut() else {
                continue;
            };
            n.rates[l].clear();
            n.sdes[l].reset(srtp);
            if n.installed[l].take().is_some() {
                let _ = self.relay.set_stream_crypto(media_leg(leg), i, None);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    const LO: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

    /// The anchor lives as long as its call: per-stream state is boxed on
    /// demand rather than four streams' worth inline (3.4 KiB before,
    /// docs/performance.md "Issue 15: media").
    #[test]
    fn per_call_anchor_state_stays_small() {
        use std::mem::size_of;
        assert!(size_of::<RelayAnchor>() <= 320);
        assert!(size_of::<StreamNegotiation>() <= 800);
    }

    /// A stream's negotiation state is made when an SDP names it, with
    /// each leg's policy at that moment (leg B's changes with the hop).
    #[tokio::test]
    async fn stream_state_is_made_on_demand() {
        let alloc = PortAllocator::new(31500, 31599).unwrap();
        let (mut anchor, _relay, _rx) = anchor(&alloc);
        assert!(anchor.negotiated.iter().all(Option::is_none));
        anchor
            .rewrite(Leg::A, SdpRole::Offer, &offer("m=audio 4000 RTP/AVP 0\r\n"))
            .unwrap();
        assert!(anchor.negotiated[0].is_some());
        assert!(anchor.negotiated[1..].iter().all(Option::is_none));
    }

    fn anchor(alloc: &PortAllocator) -> (RelayAnchor, Relay, trunkd_media::MediaEvents) {
        let (tx, rx) = trunkd_media::media_events();
        let (anchor, relay) = RelayAnchor::start(
            alloc,
            LO,
            LO,
            RelayConfig::default(),
            SrtpPolicy::default(),
            tx,
            None,
        )
        .unwrap();
        (anchor, relay, rx)
    }

    fn offer(media: &str) -> Bytes {
        Bytes::from(format!(
            "v=0\r\no=peer 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n{media}"
        ))
    }

    /// The `m=` ports of a rewritten SDP, in order.
    fn m_ports(sdp: &Bytes) -> Vec<u16> {
        let sdp = Sdp::parse_bytes(sdp).unwrap();
        sdp.media().iter().map(|m| m.port()).collect()
    }

    #[tokio::test]
    async fn every_m_line_gets_its_own_ports_and_rejected_ones_stay_rejected() {
        let alloc = PortAllocator::new(31000, 31099).unwrap();
        let (mut anchor, relay, _events) = anchor(&alloc);
        assert_eq!(alloc.capacity() - alloc.available(), 2);
        let sdp = offer(
            "m=audio 4000 RTP/AVP 0\r\n\
             m=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n\
             m=video 4002 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n",
        );
        let out = anchor.rewrite(Leg::A, SdpRole::Offer, &sdp).unwrap();
        let ports = m_ports(&out);
        // Stream 0's B-side pair, nothing for the rejected line, a new pair
        // for the third line.
        assert_eq!(ports[0], relay.local_rtp(trunkd_media::Leg::B).port());
        assert_eq!(ports[1], 0);
        assert_ne!(ports[2], 0);
        assert_ne!(ports[2], ports[0]);
        assert_eq!(alloc.capacity() - alloc.available(), 4);
        // The answer gets A-side ports; the same offer again takes no more.
        let answer =
            offer("m=audio 5000 RTP/AVP 0\r\nm=video 0 RTP/AVP 96\r\nm=video 5002 RTP/AVP 96\r\n");
        let back = anchor.rewrite(Leg::B, SdpRole::Answer, &answer).unwrap();
        let back_ports = m_ports(&back);
        assert_eq!(back_ports[0], relay.local_rtp(trunkd_media::Leg::A).port());
        assert_eq!(back_ports[1], 0);
        assert_ne!(back_ports[2], 0);
        anchor.rewrite(Leg::A, SdpRole::Offer, &sdp).unwrap();
        assert_eq!(alloc.capacity() - alloc.available(), 4);
        drop(anchor);
        let relay = Arc::try_unwrap(relay).unwrap();
        relay.stop().await.unwrap();
        assert_eq!(alloc.available(), alloc.capacity());
    }

    #[tokio::test]
    async fn m_lines_beyond_the_cap_are_declined() {
        let alloc = PortAllocator::new(31100, 31199).unwrap();
        let (mut anchor, _relay, _events) = anchor(&alloc);
        let lines: String = (0..MAX_STREAMS + 2)
            .map(|i| format!("m=audio {} RTP/AVP 0\r\n", 4000 + 2 * i))
            .collect();
        let out = anchor
            .rewrite(Leg::A, SdpRole::Offer, &offer(&lines))
            .unwrap();
        let ports = m_ports(&out);
        assert!(ports[..MAX_STREAMS].iter().all(|p| *p != 0), "{ports:?}");
        assert_eq!(&ports[MAX_STREAMS..], &[0, 0]);
        assert_eq!(alloc.capacity() - alloc.available(), 2 * MAX_STREAMS);
    }

    #[tokio::test]
    async fn each_secured_stream_gets_its_own_keys_on_each_leg() {
        let alloc = PortAllocator::new(31200, 31299).unwrap();
        let (mut anchor, relay, _events) = anchor(&alloc);
        // B's hop offers SRTP (as over TLS).
        anchor.reset(Leg::B, SrtpPolicy::Offer);
        let audio_key = "1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz";
        let video_key = "1 AES_CM_128_HMAC_SHA1_80 inline:d0RmdmcmVCspeEc3QGZiNWpVLFJhQX1cfHAwJSoj";
        let sdp = offer(&format!(
            "m=audio 4000 RTP/SAVP 0\r\na=crypto:{audio_key}\r\n\
             m=video 4002 RTP/SAVP 96\r\na=crypto:{video_key}\r\n"
        ));
        let out = anchor.rewrite(Leg::A, SdpRole::Offer, &sdp).unwrap();
        let text = std::str::from_utf8(&out).unwrap();
        assert!(!text.contains("WVNfX19"), "A's keys never reach B:\n{text}");
        assert!(
            !text.contains("d0RmdmcmV"),
            "A's keys never reach B:\n{text}"
        );
        let parsed = Sdp::parse_bytes(&out).unwrap();
        let (audio, video) = (&parsed.media()[0], &parsed.media()[1]);
        assert_eq!(audio.proto(), "RTP/SAVP");
        assert_eq!(video.proto(), "RTP/SAVP");
        assert!(audio.has_crypto() && video.has_crypto(), "{text}");
        assert_ne!(audio.crypto(), video.crypto(), "one key per stream");
        // A's side is settled when B answers with its own keys per stream.
        let answer = offer(&format!(
            "m=audio 5000 RTP/SAVP 0\r\na=crypto:{}\r\n\
             m=video 5002 RTP/SAVP 96\r\na=crypto:{}\r\n",
            answer_attr(audio.crypto(), "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNk"),
            answer_attr(video.crypto(), "MTIzNDU2Nzg5MDEyMzQ1Njc4OTAxMjM0NTY3ODkw"),
        ));
        let back = anchor.rewrite(Leg::B, SdpRole::Answer, &answer).unwrap();
        let back = Sdp::parse_bytes(&back).unwrap();
        assert!(back.media()[0].has_crypto() && back.media()[1].has_crypto());
        assert_ne!(back.media()[0].crypto(), back.media()[1].crypto());
        let stats = relay.stats().await.unwrap();
        for stream in [0, 1] {
            let s = stats.stream(stream).unwrap();
            assert!(s.a.srtp.is_some() && s.b.srtp.is_some(), "stream {stream}");
        }
    }

    /// An answer to trunkd's offered AES_CM_128_HMAC_SHA1_80 `a=crypto`:
    /// same tag and suite, the answerer's own key (30 bytes, base64).
    fn answer_attr(offered: &[String], key: &str) -> String {
        let line = offered
            .iter()
            .find(|c| c.contains(" AES_CM_128_HMAC_SHA1_80 "))
            .unwrap();
        let tag = line.split(' ').next().unwrap();
        format!("{tag} AES_CM_128_HMAC_SHA1_80 inline:{key}")
    }

    #[tokio::test]
    async fn srtp_towards_a_plain_leg_leaks_no_key_and_plain_video_stays_plain() {
        let alloc = PortAllocator::new(31300, 31399).unwrap();
        let (mut anchor, relay, _events) = anchor(&alloc);
        let key = "1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz";
        let sdp = offer(&format!(
            "m=audio 4000 RTP/SAVP 0\r\na=crypto:{key}\r\nm=video 4002 RTP/AVP 96\r\n"
        ));
        let out = anchor.rewrite(Leg::A, SdpRole::Offer, &sdp).unwrap();
        let text = std::str::from_utf8(&out).unwrap();
        assert!(!text.contains("a=crypto"), "{text}");
        let parsed = Sdp::parse_bytes(&out).unwrap();
        assert_eq!(parsed.media()[0].proto(), "RTP/AVP");
        assert_eq!(parsed.media()[1].proto(), "RTP/AVP");
        assert_ne!(parsed.media()[1].port(), 0);
        let answer = offer("m=audio 5000 RTP/AVP 0\r\nm=video 5002 RTP/AVP 96\r\n");
        let back = anchor.rewrite(Leg::B, SdpRole::Answer, &answer).unwrap();
        let back = Sdp::parse_bytes(&back).unwrap();
        assert_eq!(back.media()[0].proto(), "RTP/SAVP");
        assert!(back.media()[0].has_crypto());
        assert_eq!(back.media()[1].proto(), "RTP/AVP");
        assert!(!back.media()[1].has_crypto());
        let stats = relay.stats().await.unwrap();
        assert!(stats.stream(0).unwrap().a.srtp.is_some());
        assert_eq!(stats.stream(1).unwrap().a.srtp, None);
        assert_eq!(stats.stream(0).unwrap().b.srtp, None);
    }

    /// A session trunkd answers itself: the A side anchored and answered
    /// recvonly, RTP from the peer reaches the tap, nothing is forwarded
    /// (the B side has no peer), and the `o=` version moves only when the
    /// answer does.
    #[tokio::test]
    async fn a_recvonly_answer_anchors_the_a_side_and_forwards_nothing() {
        let alloc = PortAllocator::new(31300, 31399).unwrap();
        let (anchor, relay, _events) = anchor(&alloc);
        let (mut rec, answered) = RecvOnlyAnchor::new(anchor, 77);
        let peer = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let peer_port = peer.local_addr().unwrap().port();
        let offer_with = |label: &str| {
            Bytes::from(format!(
                "v=0\r\no=src 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
                 m=audio {peer_port} RTP/AVP 0\r\na=label:{label}\r\na=sendonly\r\nm=audio 0 RTP/AVP 0\r\n"
            ))
        };
        let offer = offer_with("1");
        let sdp = rec.answer(&offer).unwrap();
        let a_port = relay.local_rtp(trunkd_media::Leg::A).port();
        let expected = |version: u64, label: &str| {
            format!(
                "v=0\r\no=trunkd 77 {version} IN IP4 127.0.0.1\r\ns=trunkd\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
                 m=audio {a_port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=label:{label}\r\na=recvonly\r\nm=audio 0 RTP/AVP 0\r\n"
            )
        };
        assert_eq!(String::from_utf8_lossy(&sdp), expected(1, "1"));
        assert_eq!(answered.lock().unwrap().len(), 2);
        // The same offer (a refresh): the same answer, the same version.
        assert_eq!(rec.answer(&offer).unwrap(), sdp);
        let changed = rec.answer(&offer_with("7")).unwrap();
        assert_eq!(String::from_utf8_lossy(&changed), expected(2, "7"));
        assert_eq!(alloc.capacity() - alloc.available(), 2, "one stream");

        let mut tap = relay.tap(Some(trunkd_media::Leg::A), None, 8).unwrap();
        let mut rtp = vec![0x80, 0, 0, 1, 0, 0, 0, 160, 0, 0, 0, 9];
        rtp.extend_from_slice(&[0xff; 160]);
        peer.send_to(&rtp, ("127.0.0.1", a_port)).unwrap();
        let got = tokio::time::timeout(std::time::Duration::from_secs(2), tap.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got.data, rtp);
        let stats = relay.stats().await.unwrap();
        assert_eq!(stats.a.rx.rtp_packets, 1);
        assert_eq!(stats.b.tx.rtp_packets, 0, "nothing forwarded");
        assert_eq!(stats.a.dropped.no_peer, 1);
    }

    /// An application call: the first audio stream answered `sendrecv` on
    /// the A side, the video refused, and what trunkd injects reaches the
    /// phone.
    #[tokio::test]
    async fn an_application_answer_is_sendrecv_on_the_a_side_and_injection_reaches_the_phone() {
        let alloc = PortAllocator::new(31400, 31499).unwrap();
        let (anchor, relay, _events) = anchor(&alloc);
        let (mut app, answered) = AppAnchor::new(anchor, 9);
        let peer = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        peer.set_read_timeout(Some(std::time::Duration::from_secs(2)))
            .unwrap();
        let peer_port = peer.local_addr().unwrap().port();
        let offer = Bytes::from(format!(
            "v=0\r\no=phone 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
             m=audio {peer_port} RTP/AVP 8 0 101\r\na=rtpmap:101 telephone-event/8000\r\n\
             m=video 6000 RTP/AVP 96\r\n"
        ));
        let sdp = app.answer(&offer).unwrap();
        let a_port = relay.local_rtp(trunkd_media::Leg::A).port();
        assert_eq!(
            String::from_utf8_lossy(&sdp),
            format!(
                "v=0\r\no=trunkd 9 1 IN IP4 127.0.0.1\r\ns=trunkd\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
                 m=audio {a_port} RTP/AVP 8 101\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\n\
                 a=sendrecv\r\nm=video 0 RTP/AVP 96\r\n"
            )
        );
        assert_eq!(answered.lock().unwrap()[0].telephone_event, Some(101));
        let mut rtp = vec![0x80, 8, 0, 1, 0, 0, 0, 160, 0, 0, 0, 9];
        rtp.extend_from_slice(&[0xd5; 160]);
        relay.inject(trunkd_media::Leg::A, 0, rtp).unwrap();
        // The relay has sent it once it answers (a blocking receive before
        // that would stall this single-threaded runtime).
        let st = relay.stats().await.unwrap();
        assert_eq!(st.stream(0).unwrap().a.injected, 1);
        let mut buf = [0u8; 400];
        let (n, from) = peer.recv_from(&mut buf).unwrap();
        assert_eq!(from.port(), a_port);
        assert_eq!((n, &buf[12..n]), (172, &[0xd5u8; 160][..]));
    }
}
