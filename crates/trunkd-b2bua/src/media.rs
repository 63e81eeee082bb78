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

pub trait MediaAnchor: Send {
    /// `sdp` arrived from `from`'s peer (offer or answer: the anchor does
    /// not need to know which); returns the body for the other leg.
    ///
    /// # Errors
    /// When the SDP cannot be anchored.
    fn rewrite(&mut self, from: Leg, sdp: &Bytes) -> Result<Bytes, MediaRefusal>;

    /// The B leg starts over with another hop (failover): whatever was
    /// learnt or negotiated for it is forgotten.
    fn reset(&mut self, leg: Leg);
}

/// Signalling only: bodies cross unchanged.
#[derive(Debug, Default, Clone, Copy)]
pub struct PassThrough;

impl MediaAnchor for PassThrough {
    fn rewrite(&mut self, _from: Leg, sdp: &Bytes) -> Result<Bytes, MediaRefusal> {
        Ok(sdp.clone())
    }

    fn reset(&mut self, _leg: Leg) {}
}

/// True when a message body is an SDP the anchor must see.
pub fn is_sdp(headers: &trunkd_sip::Headers, body: &Bytes) -> bool {
    !body.is_empty()
        && headers
            .get("Content-Type")
            .is_some_and(|ct| ct.len() >= 15 && ct[..15].eq_ignore_ascii_case(b"application/sdp"))
}
