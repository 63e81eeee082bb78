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

/// The message's Content-Type value, as the multipart functions take it.
fn content_type(headers: &trunkd_sip::Headers) -> Option<&[u8]> {
    headers.get("Content-Type").map(|v| &v[..])
}

/// True when a message body carries an SDP the anchor must see: an
/// `application/sdp` body, or a multipart body (RFC 5621) with a session
/// description part (an NG911 INVITE's SDP next to its PIDF-LO, a SIPREC
/// INVITE's next to its metadata).
pub fn is_sdp(headers: &trunkd_sip::Headers, body: &Bytes) -> bool {
    trunkd_sip::session_sdp(content_type(headers), body).is_some()
}

/// The body of a message from `from`'s peer as the other leg must see it:
/// its SDP rewritten by `anchor` (a plain SDP body, or the session part of
/// a multipart body, the rest of which crosses byte for byte under the
/// same Content-Type); any other body unchanged.
///
/// # Errors
/// The anchor's refusal; 488 for a multipart body that does not parse and
/// may hold an SDP (it cannot cross with the peer's media addresses in
/// it); 500 when the rewritten SDP cannot be put back (it would contain
/// the body's boundary).
pub fn anchor_body(
    anchor: &mut dyn MediaAnchor,
    from: Leg,
    role: SdpRole,
    headers: &trunkd_sip::Headers,
    body: &Bytes,
) -> Result<Bytes, MediaRefusal> {
    let ct = content_type(headers);
    match trunkd_sip::find_session_sdp(ct, body) {
        Ok(None) => Ok(body.clone()),
        Ok(Some(sdp)) => {
            let new_sdp = anchor.rewrite(from, role, &sdp)?;
            trunkd_sip::replace_session_sdp(ct, body, &new_sdp).map_err(|e| {
                tracing::warn!(error = %e, "rewritten SDP does not fit its multipart body");
                MediaRefusal {
                    status: 500,
                    reason: "Server Internal Error".into(),
                }
            })
        }
        // Unreadable, so no telling where an SDP would be: one that is
        // named at all must not cross unanchored. Other bodies (an INFO's
        // broken multipart) crossed before multipart was understood and
        // still do.
        Err(e) if mentions_sdp(body) => {
            tracing::debug!(error = %e, "unreadable multipart body with an SDP");
            Err(MediaRefusal {
                status: 488,
                reason: "Unreadable Multipart Body".into(),
            })
        }
        Err(_) => Ok(body.clone()),
    }
}

/// True when `application/sdp` appears anywhere in the body (any case).
fn mentions_sdp(body: &[u8]) -> bool {
    const NEEDLE: &[u8] = b"application/sdp";
    body.windows(NEEDLE.len())
        .any(|w| w.eq_ignore_ascii_case(NEEDLE))
}
