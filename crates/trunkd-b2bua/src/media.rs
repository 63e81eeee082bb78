//! The call's view of the media anchor.
//!
//! Every SDP body that crosses from one leg to the other goes through a
//! [`MediaAnchor`]: the anchor learns where that leg's peer sends and
//! receives media and returns the SDP the other leg must see (trunkd's own
//! media address and ports). The call stays sans-IO: the anchor that binds
//! sockets and relays packets lives with the I/O shell; tests and a
//! signalling-only deployment use [`PassThrough`].

use bytes::Bytes;

use crate::Leg;

/// Why an SDP cannot be anchored: the status and reason the offerer gets
/// (488 for an SDP that cannot be used, 503 when no media ports are left).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaRefusal {
    pub status: u16,
    pub reason: String,
}

/// Which half of an RFC 3264 exchange an SDP body is. The call knows it
/// from the message that carries the body; the anchor needs it for SDES
/// (an offer gets trunkd's keys for every suite, an answer one key).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SdpRole {
    Offer,
    Answer,
}

pub trait MediaAnchor: Send {
    /// `sdp` arrived from `from`'s peer as an offer or an answer; returns
    /// the body for the other leg.
    ///
    /// # Errors
    /// When the SDP cannot be anchored.
    fn rewrite(&mut self, from: Leg, role: SdpRole, sdp: &Bytes) -> Result<Bytes, MediaRefusal>;

    /// `leg` starts over with another hop (failover, and the first hop):
    /// whatever was learnt or negotiated for it is forgotten, and `srtp`
    /// says what to offer the new hop.
    fn reset(&mut self, leg: Leg, srtp: trunkd_core::SrtpPolicy);
}

/// Signalling only: bodies cross unchanged.
#[derive(Debug, Default, Clone, Copy)]
pub struct PassThrough;

impl MediaAnchor for PassThrough {
    fn rewrite(&mut self, _from: Leg, _role: SdpRole, sdp: &Bytes) -> Result<Bytes, MediaRefusal> {
        Ok(sdp.clone())
    }

    fn reset(&mut self, _leg: Leg, _srtp: trunkd_core::SrtpPolicy) {}
}

/// True when a message body is an SDP the anchor must see.
pub fn is_sdp(headers: &trunkd_sip::Headers, body: &Bytes) -> bool {
    !body.is_empty()
        && headers
            .get("Content-Type")
            .is_some_and(|ct| ct.len() >= 15 && ct[..15].eq_ignore_ascii_case(b"application/sdp"))
}
