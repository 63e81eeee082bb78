//! The media anchor of a call: two port pairs (one facing each leg's peer),
//! a `trunkd_media` relay between them, and the SDP rewriting that makes
//! both peers send to trunkd (SPEC §2.4). Implements the call's
//! `MediaAnchor` hook, so the call state machine stays free of sockets.

use std::net::IpAddr;
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::mpsc;
use trunkd_b2bua::{Leg, MediaAnchor, MediaRefusal};
use trunkd_media::{
    LegOrigin, LegSetup, LegSockets, MediaEvent, PortAllocator, PortError, QualityObserver,
    RelayConfig, RelayHandle, Sdp,
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
            },
            relay,
        ))
    }
}

impl MediaAnchor for RelayAnchor {
    fn rewrite(&mut self, from: Leg, sdp: &Bytes) -> Result<Bytes, MediaRefusal> {
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
        let ours = self.ports[idx(out)];
        let ports: Vec<Option<(u16, u16)>> = parsed
            .media()
            .iter()
            .enumerate()
            .map(|(i, m)| (i == 0 && !m.is_rejected()).then_some(ours))
            .collect();
        let text = self.origins[idx(out)]
            .rewrite(&parsed, self.advertised, &ports)
            .map_err(|e| refuse(&e))?;
        Ok(Bytes::from(text))
    }

    fn reset(&mut self, leg: Leg) {
        // A new B hop: its peer is unknown until it answers.
        let _ = self.relay.update_peer(media_leg(leg), None, None);
    }
}
