//! The SRTP and SRTCP transforms of one leg (RFC 3711; AES-256 counter
//! mode, RFC 6188; AEAD AES-GCM, RFC 7714), built from the keys
//! [`crate::sdes::LegSdes`] negotiated.
//!
//! Written on RustCrypto's block cipher, CTR, HMAC-SHA1 and AES-GCM
//! crates rather than taken whole from `webrtc-srtp`: fuzzing that crate
//! behind this API found that it returns SRTCP packets with a clear E flag
//! without checking their authentication tag, that a forged packet
//! initialises the replay window of its SSRC (so the genuine stream is then
//! refused as "too old"), and that every SSRC a forged packet names gets a
//! state entry that is never freed. docs/decisions.md has the details. The
//! transform here is the RFC's, in place, without allocation:
//!
//! * nothing about a packet is remembered until its tag has verified: the
//!   rollover counter, the replay window and the per-SSRC state are updated
//!   only then, so forged packets cost a tag computation and nothing else;
//! * the per-SSRC table is bounded ([`MAX_SSRCS`]) and holds only SSRCs
//!   that authenticated (or that trunkd itself sent);
//! * the replay window (RFC 3711 §3.3.2) is 128 packets, always on;
//! * SRTCP with the E flag clear is authenticated like any other (the
//!   crate this replaced returned it unchecked) and passed on as it is;
//!   trunkd itself always encrypts.
//!
//! Key derivation is RFC 3711 §4.3 with a key derivation rate of 0 (SDES
//! lines with `KDR` are refused by [`crate::sdes`]), with AES-256 as the PRF
//! for 256-bit master keys (RFC 6188 §6, RFC 7714 §11).

use aes::cipher::{InnerIvInit, KeyInit, StreamCipher};
use aes::{Aes128, Aes256};
use aes_gcm::aead::AeadInPlace;
use aes_gcm::{Aes128Gcm, Aes256Gcm};
use hmac::{Hmac, Mac};
use sha1::Sha1;
use subtle::ConstantTimeEq;

use crate::sdes::{CryptoSuite, KeyMaterial, LegKeys};

/// Replay window per SSRC (RFC 3711 §3.3.2 asks for at least 64).
/// Reordering on the internet stays well inside 128 packets.
const REPLAY_WINDOW: u64 = 128;
/// SSRCs remembered per direction. A call has one or two per side; more
/// are evicted oldest-first (a restarted sender, a new stream after a
/// re-INVITE). Only authenticated SSRCs get here.
pub const MAX_SSRCS: usize = 16;

/// RTP fixed header.
const RTP_HEADER: usize = 12;
/// RTCP header + sender SSRC.
const RTCP_HEADER: usize = 8;
/// SRTCP E flag + 31-bit index (RFC 3711 §3.4).
const SRTCP_INDEX: usize = 4;
/// SRTCP's HMAC tag is 80 bits for every AES-CM suite (RFC 3711 §5.2).
const SRTCP_HMAC_TAG: usize = 10;
/// AES-GCM tag (RFC 7714 §14.2: 16 octets).
const GCM_TAG: usize = 16;

const LABEL_RTP_ENCRYPTION: u8 = 0;
const LABEL_RTP_AUTH: u8 = 1;
const LABEL_RTP_SALT: u8 = 2;
const LABEL_RTCP_ENCRYPTION: u8 = 3;
const LABEL_RTCP_AUTH: u8 = 4;
const LABEL_RTCP_SALT: u8 = 5;

/// Why a packet was not transformed. The relay drops the packet and counts
/// it; nothing else happens (an attacker's packets must cost nothing more).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SrtpError {
    #[error("packet too short for SRTP")]
    TooShort,
    /// Not RTP/RTCP version 2 at all: STUN, an empty keepalive, garbage.
    #[error("not an RTP or RTCP packet")]
    NotRtp,
    /// SRTCP with the E flag clear on an AEAD-GCM leg (RFC 7714 §9.2), a
    /// form no peer trunkd knows sends; on AES-CM legs such packets are
    /// accepted once their tag verifies (RFC 3711 §3.4 lets a sender leave
    /// part of a compound packet in the clear; baresip does for its BYE).
    #[error("unencrypted SRTCP is not accepted on AEAD legs")]
    UnencryptedSrtcp,
    #[error("authentication failed")]
    Authentication,
    #[error("replayed or too old")]
    Replay,
}

/// The RTP key schedule of an AES-CM direction, 128 or 256 bits.
///
/// RustCrypto's AES keeps its software (fixsliced) schedule beside the
/// AES-NI one, 704 bytes for AES-128 and 960 for AES-256. The 256-bit
/// variant is boxed so that the common AES-128 suites do not pay for the
/// larger one in every leg: the enum exists twice per SRTP leg, and an
/// SRTP call's memory is mostly these schedules (docs/performance.md).
/// AES-128 stays inline: the common suite takes no pointer per packet.
#[allow(clippy::large_enum_variant)]
#[derive(Clone)]
enum Aes {
    A128(Aes128),
    A256(Box<Aes256>),
}

impl Aes {
    fn new(key: &[u8]) -> Aes {
        match key.len() {
            32 => Aes::A256(Box::new(Aes256::new(key.into()))),
            // Suites only have 128 and 256-bit keys (checked by `sdes`).
            _ => Aes::A128(Aes128::new(key.into())),
        }
    }

    /// AES in counter mode from `iv` (RFC 3711 §4.1.1: the low 16 bits are
    /// the block counter, zero in `iv`), XORed onto `data`.
    fn ctr(&self, iv: &[u8; 16], data: &mut [u8]) {
        match self {
            Aes::A128(a) => ctr_keystream(a.clone(), iv, data),
            Aes::A256(a) => ctr_keystream((**a).clone(), iv, data),
        }
    }
}

/// AES counter mode with a schedule built for this one use, on the stack:
/// for the PRF at key derivation and for SRTCP (a packet every few
/// seconds), whose schedules are not kept (see [`SessionKey`]).
fn ctr_once(key: &[u8], iv: &[u8; 16], data: &mut [u8]) {
    match key.len() {
        32 => ctr_keystream(Aes256::new(key.into()), iv, data),
        _ => ctr_keystream(Aes128::new(key.into()), iv, data),
    }
}

fn ctr_keystream<C>(cipher: C, iv: &[u8; 16], data: &mut [u8])
where
    C: aes::cipher::BlockEncryptMut
        + aes::cipher::BlockCipher
        + aes::cipher::BlockSizeUser<BlockSize = aes::cipher::consts::U16>,
{
    ctr::Ctr128BE::<C>::from_core(ctr::CtrCore::inner_iv_init(cipher, iv.into()))
        .apply_keystream(data)
}

/// An SRTCP session encryption key, kept as its bytes rather than as a key
/// schedule. RTCP is a packet every few seconds per stream, so building
/// the schedule per packet costs nothing measurable, while keeping one per
/// direction cost up to a kilobyte each (two per SRTP leg).
#[derive(Clone)]
struct SessionKey {
    bytes: [u8; 32],
    /// 16 or 32 (the suite's key length).
    len: usize,
}

impl SessionKey {
    fn new(key: &[u8]) -> SessionKey {
        let mut bytes = [0u8; 32];
        let len = key.len().min(32);
        bytes[..len].copy_from_slice(&key[..len]);
        SessionKey { bytes, len }
    }

    fn get(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

/// RFC 3711 §4.3.1 with kdr = 0: `len` bytes of the AES-CM PRF keyed with
/// the master key, at x = label || 0 XOR master salt (salt right-padded to
/// 112 bits for the 96-bit GCM salts, RFC 7714 §11).
fn derive(master: &KeyMaterial, label: u8, out: &mut [u8]) {
    let mut iv = [0u8; 16];
    iv[..master.salt().len()].copy_from_slice(master.salt());
    iv[7] ^= label;
    out.fill(0);
    ctr_once(master.key(), &iv, out);
}

/// The per-direction transform of one master key. The RTP cipher is kept
/// ready (see [`Aes`] on its size); the SRTCP one is built per packet
/// from its [`SessionKey`].
#[allow(clippy::large_enum_variant)]
#[derive(Clone)]
enum Transform {
    /// AES-CM with HMAC-SHA1 (RFC 3711 §4.1.1, §4.2.1).
    Cm {
        rtp_key: Aes,
        rtp_salt: [u8; 14],
        rtp_auth: Hmac<Sha1>,
        rtp_tag: usize,
        rtcp_key: SessionKey,
        rtcp_salt: [u8; 14],
        rtcp_auth: Hmac<Sha1>,
    },
    /// AEAD AES-GCM (RFC 7714).
    Gcm {
        rtp: Box<Gcm>,
        rtp_salt: [u8; 12],
        rtcp_key: SessionKey,
        rtcp_salt: [u8; 12],
    },
}

/// An AES-GCM key (schedule and GHASH key), 128 or 256 bits: boxed in a
/// [`Transform`] for RTP, on the stack for one SRTCP packet; either way
/// the variants' sizes do not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Clone)]
enum Gcm {
    A128(Aes128Gcm),
    A256(Aes256Gcm),
}

impl Gcm {
    fn new(key: &[u8]) -> Gcm {
        match key.len() {
            32 => Gcm::A256(Aes256Gcm::new(key.into())),
            _ => Gcm::A128(Aes128Gcm::new(key.into())),
        }
    }

    fn seal(&self, nonce: &[u8; 12], aad: &[u8], data: &mut [u8]) -> [u8; GCM_TAG] {
        let r = match self {
            Gcm::A128(g) => g.encrypt_in_place_detached(nonce.into(), aad, data),
            Gcm::A256(g) => g.encrypt_in_place_detached(nonce.into(), aad, data),
        };
        // Encryption fails only for messages over 2^36 bytes.
        r.map(Into::into).unwrap_or([0; GCM_TAG])
    }

    fn open(&self, nonce: &[u8; 12], aad: &[u8], data: &mut [u8], tag: &[u8]) -> bool {
        let tag = aes_gcm::Tag::from_slice(tag);
        match self {
            Gcm::A128(g) => g.decrypt_in_place_detached(nonce.into(), aad, data, tag),
            Gcm::A256(g) => g.decrypt_in_place_detached(nonce.into(), aad, data, tag),
        }
        .is_ok()
    }
}

fn hmac_key(master: &KeyMaterial, label: u8) -> Hmac<Sha1> {
    let mut k = [0u8; 20];
    derive(master, label, &mut k);
    // HMAC takes keys of any length.
    <Hmac<Sha1> as Mac>::new_from_slice(&k).unwrap_or_else(|_| unreachable!())
}

impl Transform {
    fn new(suite: CryptoSuite, master: &KeyMaterial) -> Transform {
        let key_len = suite.key_len();
        let mut key = [0u8; 32];
        let key = &mut key[..key_len];
        match suite {
            CryptoSuite::AeadAes128Gcm | CryptoSuite::AeadAes256Gcm => {
                let (mut rtp_salt, mut rtcp_salt) = ([0u8; 12], [0u8; 12]);
                derive(master, LABEL_RTP_ENCRYPTION, key);
                let rtp = Box::new(Gcm::new(key));
                derive(master, LABEL_RTCP_ENCRYPTION, key);
                let rtcp_key = SessionKey::new(key);
                derive(master, LABEL_RTP_SALT, &mut rtp_salt);
                derive(master, LABEL_RTCP_SALT, &mut rtcp_salt);
                Transform::Gcm {
                    rtp,
                    rtp_salt,
                    rtcp_key,
                    rtcp_salt,
                }
            }
            _ => {
                let (mut rtp_salt, mut rtcp_salt) = ([0u8; 14], [0u8; 14]);
                derive(master, LABEL_RTP_ENCRYPTION, key);
                let rtp_key = Aes::new(key);
                derive(master, LABEL_RTCP_ENCRYPTION, key);
                let rtcp_key = SessionKey::new(key);
                derive(master, LABEL_RTP_SALT, &mut rtp_salt);
                derive(master, LABEL_RTCP_SALT, &mut rtcp_salt);
                let rtp_tag = match suite {
                    CryptoSuite::Aes128CmHmacSha1_32 | CryptoSuite::Aes256CmHmacSha1_32 => 4,
                    _ => 10,
                };
                Transform::Cm {
                    rtp_key,
                    rtp_salt,
                    rtp_auth: hmac_key(master, LABEL_RTP_AUTH),
                    rtp_tag,
                    rtcp_key,
                    rtcp_salt,
                    rtcp_auth: hmac_key(master, LABEL_RTCP_AUTH),
                }
            }
        }
    }

    fn rtp_overhead(&self) -> usize {
        match self {
            Transform::Cm { rtp_tag, .. } => *rtp_tag,
            Transform::Gcm { .. } => GCM_TAG,
        }
    }

    fn rtcp_overhead(&self) -> usize {
        SRTCP_INDEX
            + match self {
                Transform::Cm { .. } => SRTCP_HMAC_TAG,
                Transform::Gcm { .. } => GCM_TAG,
            }
    }
}

/// The counter-mode IV (RFC 3711 §4.1.1): (salt · 2^16) XOR (SSRC · 2^64)
/// XOR (index · 2^16).
fn cm_iv(salt: &[u8; 14], ssrc: u32, index: u64) -> [u8; 16] {
    let mut iv = [0u8; 16];
    iv[..14].copy_from_slice(salt);
    for (b, s) in iv[4..8].iter_mut().zip(ssrc.to_be_bytes()) {
        *b ^= s;
    }
    for (b, s) in iv[8..14].iter_mut().zip(&index.to_be_bytes()[2..]) {
        *b ^= s;
    }
    iv
}

/// The GCM nonce (RFC 7714 §8.1 and §9.1): salt XOR (0^16 || SSRC || the
/// 48-bit packet index), the SRTCP index taking the low 32 bits.
fn gcm_iv(salt: &[u8; 12], ssrc: u32, index: u64) -> [u8; 12] {
    let mut iv = *salt;
    for (b, s) in iv[2..6].iter_mut().zip(ssrc.to_be_bytes()) {
        *b ^= s;
    }
    for (b, s) in iv[6..12].iter_mut().zip(&index.to_be_bytes()[2..]) {
        *b ^= s;
    }
    iv
}

/// The RTP header length (fixed part, CSRCs, extension), if the packet
/// holds it.
fn rtp_header_len(pkt: &[u8]) -> Option<usize> {
    let cc = usize::from(pkt.first()? & 0x0f);
    let mut len = RTP_HEADER + 4 * cc;
    if pkt.first()? & 0x10 != 0 {
        let ext = pkt.get(len + 2..len + 4)?;
        len += 4 + 4 * usize::from(u16::from_be_bytes([ext[0], ext[1]]));
    }
    (len <= pkt.len()).then_some(len)
}

/// A sliding replay window over 48-bit SRTP or 31-bit SRTCP indices.
#[derive(Debug, Clone, Copy, Default)]
struct ReplayWindow {
    /// Highest index accepted; `None` before the first packet.
    top: Option<u64>,
    /// Bit i: `top - i` was accepted.
    seen: u128,
}

impl ReplayWindow {
    fn check(&self, index: u64) -> Result<(), SrtpError> {
        let Some(top) = self.top else { return Ok(()) };
        if index > top {
            return Ok(());
        }
        let back = top - index;
        if back >= REPLAY_WINDOW || self.seen & (1u128 << back) != 0 {
            return Err(SrtpError::Replay);
        }
        Ok(())
    }

    fn accept(&mut self, index: u64) {
        match self.top {
            Some(top) if index <= top => self.seen |= 1u128 << (top - index),
            Some(top) => {
                let shift = index - top;
                self.seen = if shift >= 128 { 0 } else { self.seen << shift } | 1;
                self.top = Some(index);
            }
            None => {
                self.seen = 1;
                self.top = Some(index);
            }
        }
    }
}

/// What one direction remembers per SSRC.
#[derive(Debug, Clone, Copy, Default)]
struct SsrcState {
    /// RTP: the highest packet index (ROC · 2^16 + SEQ) authenticated or
    /// sent; `None` before the first.
    rtp_index: Option<u64>,
    rtp_replay: ReplayWindow,
    /// SRTCP: the next index to send, or the replay window of received.
    rtcp_next: u32,
    rtcp_replay: ReplayWindow,
    /// For eviction: a counter value at the last use.
    used: u64,
}

/// A bounded SSRC → state table (linear: it holds a handful).
#[derive(Debug, Clone, Default)]
struct Ssrcs {
    entries: Vec<(u32, SsrcState)>,
    clock: u64,
}

impl Ssrcs {
    fn get(&self, ssrc: u32) -> Option<SsrcState> {
        self.entries
            .iter()
            .find(|(s, _)| *s == ssrc)
            .map(|(_, st)| *st)
    }

    /// Stores `state` for `ssrc`, evicting the least recently used entry
    /// when full.
    fn put(&mut self, ssrc: u32, mut state: SsrcState) {
        self.clock += 1;
        state.used = self.clock;
        if let Some(e) = self.entries.iter_mut().find(|(s, _)| *s == ssrc) {
            e.1 = state;
            return;
        }
        if self.entries.len() >= MAX_SSRCS {
            if let Some(oldest) = self
                .entries
                .iter()
                .enumerate()
                .min_by_key(|(_, (_, st))| st.used)
                .map(|(i, _)| i)
            {
                self.entries.swap_remove(oldest);
            }
        }
        // One entry at a time: a call has one SSRC per direction, and the
        // default growth (to four 104-byte entries) was 1.2 KiB an SRTP
        // call held for nothing. A new SSRC is rare; its copy is cheap.
        self.entries.reserve_exact(1);
        self.entries.push((ssrc, state));
    }
}

/// RFC 3711 Appendix A: the index of a packet with sequence number `seq`,
/// given the highest index seen so far.
fn estimate_index(highest: Option<u64>, seq: u16) -> u64 {
    let Some(highest) = highest else {
        return u64::from(seq);
    };
    let roc = highest >> 16;
    let s_l = (highest & 0xffff) as u16;
    let v = if s_l < 0x8000 {
        // A packet from before the last wrap; with ROC 0 there was none
        // (a jump back at the start of a stream).
        if seq > s_l && seq - s_l > 0x8000 && roc > 0 {
            roc - 1
        } else {
            roc
        }
    } else if s_l - 0x8000 > seq {
        (roc + 1) & 0xffff_ffff
    } else {
        roc
    };
    (v << 16) | u64::from(seq)
}

/// One leg's SRTP state: `rx` undoes what the peer protected with its key,
/// `tx` protects what trunkd sends to the peer with trunkd's key.
pub struct LegCrypto {
    suite: CryptoSuite,
    rx: Transform,
    tx: Transform,
    rx_ssrcs: Ssrcs,
    tx_ssrcs: Ssrcs,
}

impl std::fmt::Debug for LegCrypto {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LegCrypto")
            .field("suite", &self.suite)
            .finish()
    }
}

impl LegCrypto {
    /// # Errors
    /// Never with keys from [`crate::sdes`] (lengths fit the suite by
    /// construction); the `Result` keeps callers honest if that changes.
    pub fn new(keys: &LegKeys) -> Result<Self, SrtpError> {
        Ok(Self {
            suite: keys.suite,
            rx: Transform::new(keys.suite, &keys.peer),
            tx: Transform::new(keys.suite, &keys.ours),
            rx_ssrcs: Ssrcs::default(),
            tx_ssrcs: Ssrcs::default(),
        })
    }

    pub fn suite(&self) -> CryptoSuite {
        self.suite
    }

    /// Takes over the streams of the context this one replaces on the same
    /// leg (a re-INVITE that changed a key): each SSRC keeps its rollover
    /// counter, highest index, SRTCP index and replay window, as libsrtp's
    /// `srtp_update` does. Without this, a rekey after the first sequence
    /// number wrap (about 22 minutes of 20 ms audio) would guess the
    /// rollover counter as 0 and fail every packet. A new hop (failover)
    /// starts from nothing instead: the relay drops the old context first.
    pub fn inherit_streams(&mut self, old: &LegCrypto) {
        self.rx_ssrcs = old.rx_ssrcs.clone();
        self.tx_ssrcs = old.tx_ssrcs.clone();
    }

    /// Authenticates and decrypts an SRTP packet from the peer into `out`
    /// (cleared first). Replays and forgeries are errors and change no
    /// state.
    pub fn unprotect_rtp_into(&mut self, pkt: &[u8], out: &mut Vec<u8>) -> Result<(), SrtpError> {
        check(pkt)?;
        let overhead = self.rx.rtp_overhead();
        let body_end = pkt.len().checked_sub(overhead).ok_or(SrtpError::TooShort)?;
        let header = rtp_header_len(&pkt[..body_end]).ok_or(SrtpError::TooShort)?;
        let seq = u16::from_be_bytes([pkt[2], pkt[3]]);
        let ssrc = u32::from_be_bytes([pkt[8], pkt[9], pkt[10], pkt[11]]);
        let mut state = self.rx_ssrcs.get(ssrc).unwrap_or_default();
        let index = estimate_index(state.rtp_index, seq);
        state.rtp_replay.check(index)?;
        let roc = (index >> 16) as u32;
        out.clear();
        out.extend_from_slice(&pkt[..body_end]);
        match &self.rx {
            Transform::Cm {
                rtp_key,
                rtp_salt,
                rtp_auth,
                rtp_tag,
                ..
            } => {
                let mut mac = rtp_auth.clone();
                mac.update(&pkt[..body_end]);
                mac.update(&roc.to_be_bytes());
                let full = mac.finalize().into_bytes();
                if full[..*rtp_tag].ct_eq(&pkt[body_end..]).unwrap_u8() != 1 {
                    return Err(SrtpError::Authentication);
                }
                rtp_key.ctr(&cm_iv(rtp_salt, ssrc, index), &mut out[header..]);
            }
            Transform::Gcm { rtp, rtp_salt, .. } => {
                let (aad, data) = out.split_at_mut(header);
                if !rtp.open(&gcm_iv(rtp_salt, ssrc, index), aad, data, &pkt[body_end..]) {
                    return Err(SrtpError::Authentication);
                }
            }
        }
        // Authenticated: now the packet may move the state.
        if state.rtp_index.is_none_or(|h| index > h) {
            state.rtp_index = Some(index);
        }
        state.rtp_replay.accept(index);
        self.rx_ssrcs.put(ssrc, state);
        Ok(())
    }

    /// Protects an RTP packet for the peer into `out` (cleared first).
    pub fn protect_rtp_into(&mut self, pkt: &[u8], out: &mut Vec<u8>) -> Result<(), SrtpError> {
        check(pkt)?;
        let header = rtp_header_len(pkt).ok_or(SrtpError::TooShort)?;
        let seq = u16::from_be_bytes([pkt[2], pkt[3]]);
        let ssrc = u32::from_be_bytes([pkt[8], pkt[9], pkt[10], pkt[11]]);
        let mut state = self.tx_ssrcs.get(ssrc).unwrap_or_default();
        // The sender's own index follows the same estimate: a relayed
        // stream keeps its sequence numbers, reordered packets included.
        let index = estimate_index(state.rtp_index, seq);
        let roc = (index >> 16) as u32;
        out.clear();
        out.extend_from_slice(pkt);
        match &self.tx {
            Transform::Cm {
                rtp_key,
                rtp_salt,
                rtp_auth,
                rtp_tag,
                ..
            } => {
                rtp_key.ctr(&cm_iv(rtp_salt, ssrc, index), &mut out[header..]);
                let mut mac = rtp_auth.clone();
                mac.update(out);
                mac.update(&roc.to_be_bytes());
                let full = mac.finalize().into_bytes();
                out.extend_from_slice(&full[..*rtp_tag]);
            }
            Transform::Gcm { rtp, rtp_salt, .. } => {
                let (aad, data) = out.split_at_mut(header);
                let tag = rtp.seal(&gcm_iv(rtp_salt, ssrc, index), aad, data);
                out.extend_from_slice(&tag);
            }
        }
        if state.rtp_index.is_none_or(|h| index > h) {
            state.rtp_index = Some(index);
        }
        self.tx_ssrcs.put(ssrc, state);
        Ok(())
    }

    /// Authenticates and decrypts an SRTCP packet from the peer into `out`.
    pub fn unprotect_rtcp_into(&mut self, pkt: &[u8], out: &mut Vec<u8>) -> Result<(), SrtpError> {
        check(pkt)?;
        let overhead = self.rx.rtcp_overhead();
        if pkt.len() < RTCP_HEADER + overhead {
            return Err(SrtpError::TooShort);
        }
        let ssrc = u32::from_be_bytes([pkt[4], pkt[5], pkt[6], pkt[7]]);
        let (e_at, body_end) = match &self.rx {
            // header | encrypted | E+index | tag
            Transform::Cm { .. } => {
                let e_at = pkt.len() - SRTCP_HMAC_TAG - SRTCP_INDEX;
                (e_at, e_at)
            }
            // header | encrypted + tag | E+index
            Transform::Gcm { .. } => (pkt.len() - SRTCP_INDEX, pkt.len() - SRTCP_INDEX - GCM_TAG),
        };
        let e_word = u32::from_be_bytes([pkt[e_at], pkt[e_at + 1], pkt[e_at + 2], pkt[e_at + 3]]);
        let encrypted = e_word & 0x8000_0000 != 0;
        if !encrypted && matches!(self.rx, Transform::Gcm { .. }) {
            return Err(SrtpError::UnencryptedSrtcp);
        }
        let index = u64::from(e_word & 0x7fff_ffff);
        let mut state = self.rx_ssrcs.get(ssrc).unwrap_or_default();
        state.rtcp_replay.check(index)?;
        out.clear();
        out.extend_from_slice(&pkt[..body_end]);
        match &self.rx {
            Transform::Cm {
                rtcp_key,
                rtcp_salt,
                rtcp_auth,
                ..
            } => {
                let tag_at = pkt.len() - SRTCP_HMAC_TAG;
                let mut mac = rtcp_auth.clone();
                mac.update(&pkt[..tag_at]);
                let full = mac.finalize().into_bytes();
                if full[..SRTCP_HMAC_TAG].ct_eq(&pkt[tag_at..]).unwrap_u8() != 1 {
                    return Err(SrtpError::Authentication);
                }
                if encrypted {
                    ctr_once(
                        rtcp_key.get(),
                        &cm_iv(rtcp_salt, ssrc, index),
                        &mut out[RTCP_HEADER..],
                    );
                }
            }
            Transform::Gcm {
                rtcp_key,
                rtcp_salt,
                ..
            } => {
                let mut aad = [0u8; RTCP_HEADER + SRTCP_INDEX];
                aad[..RTCP_HEADER].copy_from_slice(&pkt[..RTCP_HEADER]);
                aad[RTCP_HEADER..].copy_from_slice(&e_word.to_be_bytes());
                let tag = &pkt[body_end..body_end + GCM_TAG];
                if !Gcm::new(rtcp_key.get()).open(
                    &gcm_iv(rtcp_salt, ssrc, index),
                    &aad,
                    &mut out[RTCP_HEADER..],
                    tag,
                ) {
                    return Err(SrtpError::Authentication);
                }
            }
        }
        state.rtcp_replay.accept(index);
        self.rx_ssrcs.put(ssrc, state);
        Ok(())
    }

    /// Protects an RTCP packet for the peer into `out` (always encrypted:
    /// E flag set).
    pub fn protect_rtcp_into(&mut self, pkt: &[u8], out: &mut Vec<u8>) -> Result<(), SrtpError> {
        check(pkt)?;
        if pkt.len() < RTCP_HEADER {
            return Err(SrtpError::TooShort);
        }
        let ssrc = u32::from_be_bytes([pkt[4], pkt[5], pkt[6], pkt[7]]);
        let mut state = self.tx_ssrcs.get(ssrc).unwrap_or_default();
        let index = state.rtcp_next & 0x7fff_ffff;
        let e_word = (0x8000_0000 | index).to_be_bytes();
        out.clear();
        out.extend_from_slice(pkt);
        match &self.tx {
            Transform::Cm {
                rtcp_key,
                rtcp_salt,
                rtcp_auth,
                ..
            } => {
                ctr_once(
                    rtcp_key.get(),
                    &cm_iv(rtcp_salt, ssrc, u64::from(index)),
                    &mut out[RTCP_HEADER..],
                );
                out.extend_from_slice(&e_word);
                let mut mac = rtcp_auth.clone();
                mac.update(out);
                let full = mac.finalize().into_bytes();
                out.extend_from_slice(&full[..SRTCP_HMAC_TAG]);
            }
            Transform::Gcm {
                rtcp_key,
                rtcp_salt,
                ..
            } => {
                let mut aad = [0u8; RTCP_HEADER + SRTCP_INDEX];
                aad[..RTCP_HEADER].copy_from_slice(&pkt[..RTCP_HEADER]);
                aad[RTCP_HEADER..].copy_from_slice(&e_word);
                let tag = Gcm::new(rtcp_key.get()).seal(
                    &gcm_iv(rtcp_salt, ssrc, u64::from(index)),
                    &aad,
                    &mut out[RTCP_HEADER..],
                );
                out.extend_from_slice(&tag);
                out.extend_from_slice(&e_word);
            }
        }
        state.rtcp_next = (index + 1) & 0x7fff_ffff;
        self.tx_ssrcs.put(ssrc, state);
        Ok(())
    }

    /// [`LegCrypto::unprotect_rtp_into`] into a new buffer.
    pub fn unprotect_rtp(&mut self, pkt: &[u8]) -> Result<Vec<u8>, SrtpError> {
        let mut out = Vec::with_capacity(pkt.len());
        self.unprotect_rtp_into(pkt, &mut out).map(|()| out)
    }

    /// [`LegCrypto::protect_rtp_into`] into a new buffer.
    pub fn protect_rtp(&mut self, pkt: &[u8]) -> Result<Vec<u8>, SrtpError> {
        let mut out = Vec::with_capacity(pkt.len() + GCM_TAG);
        self.protect_rtp_into(pkt, &mut out).map(|()| out)
    }

    /// [`LegCrypto::unprotect_rtcp_into`] into a new buffer.
    pub fn unprotect_rtcp(&mut self, pkt: &[u8]) -> Result<Vec<u8>, SrtpError> {
        let mut out = Vec::with_capacity(pkt.len());
        self.unprotect_rtcp_into(pkt, &mut out).map(|()| out)
    }

    /// [`LegCrypto::protect_rtcp_into`] into a new buffer.
    pub fn protect_rtcp(&mut self, pkt: &[u8]) -> Result<Vec<u8>, SrtpError> {
        let mut out = Vec::with_capacity(pkt.len() + SRTCP_INDEX + GCM_TAG);
        self.protect_rtcp_into(pkt, &mut out).map(|()| out)
    }
}

/// Version 2 in the first two bits (RTP and RTCP alike), and a length that
/// can hold the fixed header. Anything else on a media port (STUN, DTLS,
/// keepalives, garbage) is not for the SRTP transform.
fn check(pkt: &[u8]) -> Result<(), SrtpError> {
    match pkt.first() {
        Some(b) if b >> 6 == 2 => {}
        _ => return Err(SrtpError::NotRtp),
    }
    if pkt.len() < RTCP_HEADER {
        return Err(SrtpError::TooShort);
    }
    Ok(())
}

#[cfg(test)]
#[path = "srtp_tests.rs"]
mod tests;
