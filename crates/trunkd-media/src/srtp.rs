//! The SRTP transforms of one leg (RFC 3711, RFC 6188, RFC 7714), built
//! from the keys [`crate::sdes::LegSdes`] negotiated.
//!
//! The transform itself is the `webrtc-srtp` crate (key derivation,
//! AES-CM + HMAC-SHA1 and AEAD-GCM, rollover counters, SRTCP index, replay
//! windows); docs/decisions.md says why that crate. This module adds what
//! a relay facing the internet needs around it: length checks before the
//! crate sees a datagram (it indexes into short ones), replay protection
//! always on, and one error type whose only consequence is "drop and count".

use bytes::Bytes;
use webrtc_srtp::context::Context;
use webrtc_srtp::option::{srtcp_replay_protection, srtp_replay_protection};
use webrtc_srtp::protection_profile::ProtectionProfile;

use crate::sdes::{CryptoSuite, KeyMaterial, LegKeys};

/// RFC 3711 §3.3.2: a receiver keeps a replay list of at least 64 indices.
/// Reordering on the internet stays well inside 128 packets (2.5 s of
/// 20 ms audio).
const REPLAY_WINDOW: usize = 128;

/// RTP fixed header.
const RTP_HEADER: usize = 12;
/// RTCP header + sender SSRC.
const RTCP_HEADER: usize = 8;
/// SRTCP E-flag + index (RFC 3711 §3.4).
const SRTCP_INDEX: usize = 4;

fn profile(suite: CryptoSuite) -> ProtectionProfile {
    match suite {
        CryptoSuite::AeadAes256Gcm => ProtectionProfile::AeadAes256Gcm,
        CryptoSuite::Aes256CmHmacSha1_80 => ProtectionProfile::Aes256CmHmacSha1_80,
        CryptoSuite::Aes256CmHmacSha1_32 => ProtectionProfile::Aes256CmHmacSha1_32,
        CryptoSuite::AeadAes128Gcm => ProtectionProfile::AeadAes128Gcm,
        CryptoSuite::Aes128CmHmacSha1_80 => ProtectionProfile::Aes128CmHmacSha1_80,
        CryptoSuite::Aes128CmHmacSha1_32 => ProtectionProfile::Aes128CmHmacSha1_32,
    }
}

/// Why a packet was not transformed. The relay drops the packet and counts
/// it; nothing else happens (an attacker's packets must cost nothing more).
#[derive(Debug, thiserror::Error)]
pub enum SrtpError {
    #[error("packet too short for SRTP")]
    TooShort,
    /// Not RTP/RTCP version 2 at all: STUN, an empty keepalive, garbage.
    #[error("not an RTP or RTCP packet")]
    NotRtp,
    #[error("SRTP: {0}")]
    Transform(#[from] webrtc_srtp::Error),
}

/// One leg's SRTP state: `rx` undoes what the peer protected with its key,
/// `tx` protects what trunkd sends to the peer with trunkd's key.
pub struct LegCrypto {
    suite: CryptoSuite,
    rx: Context,
    tx: Context,
    /// Smallest protected RTP / RTCP packet for this suite.
    min_srtp: usize,
    min_srtcp: usize,
}

impl std::fmt::Debug for LegCrypto {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LegCrypto")
            .field("suite", &self.suite)
            .finish()
    }
}

fn context(suite: CryptoSuite, key: &KeyMaterial) -> Result<Context, SrtpError> {
    Ok(Context::new(
        key.key(),
        key.salt(),
        profile(suite),
        Some(srtp_replay_protection(REPLAY_WINDOW)),
        Some(srtcp_replay_protection(REPLAY_WINDOW)),
    )?)
}

impl LegCrypto {
    /// # Errors
    /// Key or salt lengths that do not fit the suite (never, for keys from
    /// [`crate::sdes`]).
    pub fn new(keys: &LegKeys) -> Result<Self, SrtpError> {
        let p = profile(keys.suite);
        let tag = p.rtp_auth_tag_len() + p.aead_auth_tag_len();
        let rtcp_tag = p.rtcp_auth_tag_len() + p.aead_auth_tag_len();
        Ok(Self {
            suite: keys.suite,
            rx: context(keys.suite, &keys.peer)?,
            tx: context(keys.suite, &keys.ours)?,
            min_srtp: RTP_HEADER + tag,
            min_srtcp: RTCP_HEADER + SRTCP_INDEX + rtcp_tag,
        })
    }

    pub fn suite(&self) -> CryptoSuite {
        self.suite
    }

    /// Authenticates and decrypts an SRTP packet from the peer (replays and
    /// forgeries are errors).
    pub fn unprotect_rtp(&mut self, pkt: &[u8]) -> Result<Bytes, SrtpError> {
        check(pkt, self.min_srtp)?;
        Ok(self.rx.decrypt_rtp(pkt)?)
    }

    pub fn unprotect_rtcp(&mut self, pkt: &[u8]) -> Result<Bytes, SrtpError> {
        check(pkt, self.min_srtcp)?;
        Ok(self.rx.decrypt_rtcp(pkt)?)
    }

    /// Protects an RTP packet for the peer.
    pub fn protect_rtp(&mut self, pkt: &[u8]) -> Result<Bytes, SrtpError> {
        check(pkt, RTP_HEADER)?;
        Ok(self.tx.encrypt_rtp(pkt)?)
    }

    pub fn protect_rtcp(&mut self, pkt: &[u8]) -> Result<Bytes, SrtpError> {
        check(pkt, RTCP_HEADER)?;
        Ok(self.tx.encrypt_rtcp(pkt)?)
    }
}

fn check(pkt: &[u8], min: usize) -> Result<(), SrtpError> {
    if !is_rtp_v2(pkt) {
        Err(SrtpError::NotRtp)
    } else if pkt.len() < min {
        Err(SrtpError::TooShort)
    } else {
        Ok(())
    }
}

/// Version 2 in the first two bits: RTP and RTCP alike. Anything else on a
/// media port (STUN, DTLS, garbage) is not for the SRTP transform.
fn is_rtp_v2(pkt: &[u8]) -> bool {
    pkt.first().is_some_and(|b| b >> 6 == 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(suite: CryptoSuite) -> LegKeys {
        LegKeys {
            suite,
            peer: KeyMaterial::generate(suite).unwrap(),
            ours: KeyMaterial::generate(suite).unwrap(),
        }
    }

    /// The peer's side of a leg: it protects with `peer` and unprotects
    /// with `ours`, the mirror of trunkd's [`LegCrypto`].
    fn mirror(k: &LegKeys) -> LegCrypto {
        LegCrypto::new(&LegKeys {
            suite: k.suite,
            peer: k.ours.clone(),
            ours: k.peer.clone(),
        })
        .unwrap()
    }

    fn rtp(seq: u16, payload: &[u8]) -> Vec<u8> {
        let mut p = vec![0x80, 0, 0, 0, 0, 0, 0, 160, 0x11, 0x22, 0x33, 0x44];
        p[2..4].copy_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(payload);
        p
    }

    fn sender_report() -> Vec<u8> {
        let mut p = vec![0x80, 200, 0, 6, 0x11, 0x22, 0x33, 0x44];
        p.extend_from_slice(&[0u8; 20]);
        p
    }

    #[test]
    fn every_suite_round_trips_rtp_and_rtcp_both_ways() {
        for suite in CryptoSuite::ALL {
            let k = keys(suite);
            let mut trunkd = LegCrypto::new(&k).unwrap();
            let mut peer = mirror(&k);
            let plain = rtp(7, &[0xd5; 160]);
            let wire = peer.protect_rtp(&plain).unwrap();
            assert_ne!(&wire[12..172], &plain[12..], "{suite}: payload encrypted");
            assert_eq!(trunkd.unprotect_rtp(&wire).unwrap(), plain, "{suite}");
            let back = trunkd.protect_rtp(&plain).unwrap();
            assert_eq!(peer.unprotect_rtp(&back).unwrap(), plain, "{suite}");

            let sr = sender_report();
            let wire = peer.protect_rtcp(&sr).unwrap();
            assert_eq!(trunkd.unprotect_rtcp(&wire).unwrap(), sr, "{suite} SRTCP");
        }
    }

    #[test]
    fn replayed_and_forged_packets_are_refused() {
        let k = keys(CryptoSuite::Aes128CmHmacSha1_80);
        let mut trunkd = LegCrypto::new(&k).unwrap();
        let mut peer = mirror(&k);
        let wire = peer.protect_rtp(&rtp(1, &[1; 20])).unwrap();
        assert!(trunkd.unprotect_rtp(&wire).is_ok());
        assert!(trunkd.unprotect_rtp(&wire).is_err(), "replay");
        let mut forged = peer.protect_rtp(&rtp(2, &[1; 20])).unwrap().to_vec();
        forged[20] ^= 1;
        assert!(trunkd.unprotect_rtp(&forged).is_err(), "forgery");
        // The genuine packet with that index still gets through afterwards.
        let mut again = mirror(&k);
        let _ = again.protect_rtp(&rtp(1, &[1; 20]));
        let good = again.protect_rtp(&rtp(2, &[1; 20])).unwrap();
        assert!(trunkd.unprotect_rtp(&good).is_ok());
    }

    #[test]
    fn short_and_foreign_datagrams_never_reach_the_transform() {
        let k = keys(CryptoSuite::Aes128CmHmacSha1_32);
        let mut trunkd = LegCrypto::new(&k).unwrap();
        for len in 0..40 {
            let junk = vec![0x80u8; len];
            let _ = trunkd.unprotect_rtp(&junk);
            let _ = trunkd.unprotect_rtcp(&junk);
            let _ = trunkd.protect_rtp(&junk);
            let _ = trunkd.protect_rtcp(&junk);
        }
        assert!(trunkd.unprotect_rtp(&[0u8; 64]).is_err(), "not version 2");
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_are_refused_without_panicking(data in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            let k = keys(CryptoSuite::AeadAes128Gcm);
            let mut trunkd = LegCrypto::new(&k).unwrap();
            proptest::prop_assert!(trunkd.unprotect_rtp(&data).is_err());
            proptest::prop_assert!(trunkd.unprotect_rtcp(&data).is_err());
            let _ = trunkd.protect_rtp(&data);
            let _ = trunkd.protect_rtcp(&data);
        }
    }
}
