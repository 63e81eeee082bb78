//! The media anchor of a call: two port pairs (one facing each leg's peer),
//! a `trunkd_media` relay between them, and the SDP rewriting that makes
//! both peers send to trunkd (SPEC §2.4). Implements the call's
//! `MediaAnchor` hook, so the call state machine stays free of sockets.
//!
//! Each leg also has its own SDES state (`trunkd_media::sdes`): the keys a
//! leg negotiates are installed in the relay for that leg only, so SRTP
//! and plain legs mix freely and keys never cross.

use std::net::IpAddr;
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::mpsc;
use trunkd_b2bua::{Leg, MediaAnchor, MediaRefusal, SdpRole};
use trunkd_core::SrtpPolicy;
use trunkd_media::{
    LegCrypto, LegKeys, LegOrigin, LegSdes, LegSetup, LegSockets, MediaEvent, PortAllocator,
    PortError, QualityObserver, RelayConfig, RelayHandle, Sdp,
};

pub type Relay = Arc<RelayHandle<QualityObserver>>;

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
    /// trunkd's (RTP, RTCP) ports facing each leg's peer.
    ports: [(u16, u16); 2],
    advertised: IpAddr,
    origins: [LegOrigin; 2],
    sdes: [LegSdes; 2],
    /// The keys installed in the relay per leg, to install only changes.
    installed: [Option<LegKeys>; 2],
}

impl RelayAnchor {
    /// Binds a port pair per leg on `bind_ip` and starts the relay; peers
    /// are learnt from the SDPs that cross ([`MediaAnchor::rewrite`]).
    ///
    /// # Errors
    /// No ports left in the range (the caller answers 503), or no runtime.
    pub fn start(
        ports: &PortAllocator,
        bind_ip: IpAddr,
        advertised: IpAddr,
        config: RelayConfig,
        a_srtp: SrtpPolicy,
        events: mpsc::Sender<MediaEvent>,
    ) -> Result<(RelayAnchor, Relay), AnchorError> {
        let a = ports.allocate_bound(bind_ip)?;
        let b = ports.allocate_bound(bind_ip)?;
        let pa = (a.ports.rtp(), a.ports.rtcp());
        let pb = (b.ports.rtp(), b.ports.rtcp());
        let setup = |s: trunkd_media::BoundPair| LegSetup {
            sockets: LegSockets::from(s),
            peer_rtp: None,
            peer_rtcp: None,
        };
        let handle = trunkd_media::spawn_with_observer(
            config,
            setup(a),
            setup(b),
            QualityObserver::default(),
            events,
        )?;
        let relay = Arc::new(handle);
        Ok((
            RelayAnchor {
                relay: relay.clone(),
                ports: [pa, pb],
                advertised,
                origins: [LegOrigin::new(), LegOrigin::new()],
                sdes: [LegSdes::new(a_srtp), LegSdes::default()],
                installed: [None, None],
            },
            relay,
        ))
    }
}

impl RelayAnchor {
    /// Installs `leg`'s negotiated keys in the relay if they changed.
    fn sync_crypto(&mut self, leg: Leg) -> Result<(), MediaRefusal> {
        let i = idx(leg);
        let active = self.sdes[i].active();
        if active == self.installed[i].as_ref() {
            return Ok(());
        }
        let crypto = active
            .map(LegCrypto::new)
            .transpose()
            .map_err(|e| MediaRefusal {
                status: 488,
                reason: format!("Not Acceptable Here ({e})"),
            })?;
        let _ = self.relay.set_crypto(media_leg(leg), crypto);
        self.installed[i] = active.cloned();
        Ok(())
    }
}

impl MediaAnchor for RelayAnchor {
    fn rewrite(&mut self, from: Leg, role: SdpRole, sdp: &Bytes) -> Result<Bytes, MediaRefusal> {
        let refuse = |e: &dyn std::fmt::Display| MediaRefusal {
            status: 488,
            reason: format!("Not Acceptable Here ({e})"),
        };
        let parsed = Sdp::parse_bytes(sdp).map_err(|e| refuse(&e))?;
        // The first m-line carries the call's audio (or T.38 image after a
        // fax re-INVITE); further streams are declined (port 0) until
        // multi-stream anchoring is needed.
        let _ =
            self.relay
                .update_peer(media_leg(from), parsed.remote_rtp(0), parsed.remote_rtcp(0));
        let out = from.other();
        let (fi, oi) = (idx(from), idx(out));
        let first = parsed.media().first();
        let proto = first.map_or("RTP/AVP", |m| m.proto());
        let crypto: Vec<&str> = first
            .map(|m| m.crypto().iter().map(String::as_str).collect())
            .unwrap_or_default();
        // SDES per leg: what `from` sent settles or proposes its keys; the
        // other leg gets trunkd's own offer or answer.
        let security = match role {
            SdpRole::Offer => self.sdes[fi]
                .peer_offered(proto, &crypto)
                .and_then(|()| self.sdes[oi].offer(proto)),
            SdpRole::Answer => self.sdes[fi]
                .peer_answered(proto, &crypto)
                .and_then(|()| self.sdes[oi].answer()),
        }
        .map_err(|e| refuse(&e))?;
        self.sync_crypto(from)?;
        self.sync_crypto(out)?;
        let ours = self.ports[oi];
        let ports: Vec<Option<(u16, u16)>> = parsed
            .media()
            .iter()
            .enumerate()
            .map(|(i, m)| (i == 0 && !m.is_rejected()).then_some(ours))
            .collect();
        let text = self.origins[oi]
            .rewrite_secured(&parsed, self.advertised, &ports, Some(&security))
            .map_err(|e| refuse(&e))?;
        Ok(Bytes::from(text))
    }

    fn reset(&mut self, leg: Leg, srtp: SrtpPolicy) {
        // A new hop: its peer is unknown until it answers, and nothing
        // negotiated with the previous hop (keys above all) carries over.
        let _ = self.relay.update_peer(media_leg(leg), None, None);
        self.sdes[idx(leg)].reset(srtp);
        if self.installed[idx(leg)].take().is_some() {
            let _ = self.relay.set_crypto(media_leg(leg), None);
        }
    }
}
