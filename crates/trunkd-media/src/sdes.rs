//! SDES key negotiation for the anchor (RFC 4568 `a=crypto`, RFC 3711,
//! RFC 6188 AES-256, RFC 7714 AEAD-GCM): pure logic, no sockets.
//!
//! trunkd terminates SRTP on each leg separately. The keys a peer puts in
//! its `a=crypto` line are the keys *it* encrypts with; trunkd decrypts that
//! leg's media with them and encrypts what it sends to that peer with a key
//! of its own, generated here and sent in the SDP of that leg only. A key
//! never crosses from one leg's SDP to the other's: the rewrite strips every
//! `a=crypto` line it is given and writes the ones [`LegSdes`] decides. So
//! either leg can be SRTP or plain RTP independently (interworking), and a
//! B leg that starts over with another carrier ([`LegSdes::reset`]) gets
//! fresh keys, where rtpengine has been seen to lose SDES after a failover.
//!
//! # Who offers what
//!
//! * When a peer offers, trunkd answers in kind: it picks the strongest
//!   suite of the peer's offer that it supports ([`CryptoSuite::ALL`] order)
//!   and answers with that tag and a fresh key; an SRTP offer with no
//!   supported suite is refused (488), a plain offer gets a plain answer
//!   unless the leg's policy is [`SrtpPolicy::Require`].
//! * When trunkd offers to a peer (the other leg's offer, re-INVITEs, late
//!   offers), it offers SRTP if the leg is already encrypted or its policy
//!   says so, with every suite it supports, strongest first, each with a
//!   fresh key (the suite in force keeps its key, so a session refresh does
//!   not rekey). The peer's answer names the tag it took.
//!
//! Offer and answer are told apart by the call (it knows which message is
//! which, RFC 3264), not guessed here. An answer may come more than once
//! (18x with SDP, then 200): each is matched against the same offer, so a
//! repeated answer gives the same keys.

use std::fmt;

use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine;

/// Standard base64 with padding when encoding; padding optional when
/// decoding (peers differ on the 46-byte AES-256 keys).
const B64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// An SRTP crypto suite trunkd can key with SDES.
///
/// AES_192_CM (RFC 6188) is not here: the SRTP implementation has no
/// 192-bit counter mode. A peer offering it among others gets another
/// suite; a peer offering only it gets 488.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CryptoSuite {
    AeadAes256Gcm,
    Aes256CmHmacSha1_80,
    Aes256CmHmacSha1_32,
    AeadAes128Gcm,
    Aes128CmHmacSha1_80,
    Aes128CmHmacSha1_32,
}

impl CryptoSuite {
    /// Strongest first: key length, then AEAD over HMAC, then tag length.
    /// This is both the answerer's choice order and trunkd's offer order.
    pub const ALL: [CryptoSuite; 6] = [
        CryptoSuite::AeadAes256Gcm,
        CryptoSuite::Aes256CmHmacSha1_80,
        CryptoSuite::Aes256CmHmacSha1_32,
        CryptoSuite::AeadAes128Gcm,
        CryptoSuite::Aes128CmHmacSha1_80,
        CryptoSuite::Aes128CmHmacSha1_32,
    ];

    /// The SDP name (RFC 4568 §6.2, RFC 6188 §7, RFC 7714 §14.2).
    pub fn name(self) -> &'static str {
        match self {
            CryptoSuite::AeadAes256Gcm => "AEAD_AES_256_GCM",
            CryptoSuite::Aes256CmHmacSha1_80 => "AES_256_CM_HMAC_SHA1_80",
            CryptoSuite::Aes256CmHmacSha1_32 => "AES_256_CM_HMAC_SHA1_32",
            CryptoSuite::AeadAes128Gcm => "AEAD_AES_128_GCM",
            CryptoSuite::Aes128CmHmacSha1_80 => "AES_CM_128_HMAC_SHA1_80",
            CryptoSuite::Aes128CmHmacSha1_32 => "AES_CM_128_HMAC_SHA1_32",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.name() == name)
    }

    /// Master key length in bytes.
    pub fn key_len(self) -> usize {
        match self {
            CryptoSuite::AeadAes256Gcm
            | CryptoSuite::Aes256CmHmacSha1_80
            | CryptoSuite::Aes256CmHmacSha1_32 => 32,
            CryptoSuite::AeadAes128Gcm
            | CryptoSuite::Aes128CmHmacSha1_80
            | CryptoSuite::Aes128CmHmacSha1_32 => 16,
        }
    }

    /// Master salt length in bytes (112 bits for counter mode, 96 for GCM).
    pub fn salt_len(self) -> usize {
        match self {
            CryptoSuite::AeadAes256Gcm | CryptoSuite::AeadAes128Gcm => 12,
            _ => 14,
        }
    }

    fn rank(self) -> usize {
        Self::ALL
            .iter()
            .position(|s| *s == self)
            .unwrap_or(usize::MAX)
    }
}

impl fmt::Display for CryptoSuite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Longest master key || salt: AES-256 counter mode, 32 + 14 bytes.
const MAX_KEY_SALT: usize = 46;

/// A master key and salt. `Debug` never shows the bytes: they end up in
/// logs otherwise.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyMaterial {
    bytes: [u8; MAX_KEY_SALT],
    key_len: usize,
    salt_len: usize,
}

impl fmt::Debug for KeyMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyMaterial({} + {} bytes)", self.key_len, self.salt_len)
    }
}

impl KeyMaterial {
    /// A fresh random key and salt for `suite` from the OS generator.
    pub fn generate(suite: CryptoSuite) -> Result<Self, SdesError> {
        let mut bytes = [0u8; MAX_KEY_SALT];
        let n = suite.key_len() + suite.salt_len();
        getrandom::fill(&mut bytes[..n]).map_err(|_| SdesError::Random)?;
        Ok(Self {
            bytes,
            key_len: suite.key_len(),
            salt_len: suite.salt_len(),
        })
    }

    fn from_inline(suite: CryptoSuite, b64: &str) -> Result<Self, CryptoAttrError> {
        let raw = B64.decode(b64).map_err(|_| CryptoAttrError::KeyEncoding)?;
        let n = suite.key_len() + suite.salt_len();
        if raw.len() != n {
            return Err(CryptoAttrError::KeyLength {
                expected: n,
                got: raw.len(),
            });
        }
        let mut bytes = [0u8; MAX_KEY_SALT];
        bytes[..n].copy_from_slice(&raw);
        Ok(Self {
            bytes,
            key_len: suite.key_len(),
            salt_len: suite.salt_len(),
        })
    }

    /// A master key and salt given as bytes (RFC test vectors, tools);
    /// `None` unless they fit a suite (16 or 32-byte key, 12 or 14-byte
    /// salt).
    pub fn from_parts(key: &[u8], salt: &[u8]) -> Option<Self> {
        if !matches!(key.len(), 16 | 32) || !matches!(salt.len(), 12 | 14) {
            return None;
        }
        let mut bytes = [0u8; MAX_KEY_SALT];
        bytes[..key.len()].copy_from_slice(key);
        bytes[key.len()..key.len() + salt.len()].copy_from_slice(salt);
        Some(Self {
            bytes,
            key_len: key.len(),
            salt_len: salt.len(),
        })
    }

    pub fn key(&self) -> &[u8] {
        &self.bytes[..self.key_len]
    }

    pub fn salt(&self) -> &[u8] {
        &self.bytes[self.key_len..self.key_len + self.salt_len]
    }

    fn inline(&self) -> String {
        B64.encode(&self.bytes[..self.key_len + self.salt_len])
    }
}

/// Why one `a=crypto` line cannot be used. Such a line is skipped; the
/// offer as a whole fails only when no line is usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoAttrError {
    #[error("malformed a=crypto line")]
    Syntax,
    #[error("unsupported crypto suite {0}")]
    Suite(String),
    #[error("only inline keys are supported")]
    KeyMethod,
    #[error("key is not base64")]
    KeyEncoding,
    #[error("key and salt are {got} bytes, the suite needs {expected}")]
    KeyLength { expected: usize, got: usize },
    #[error("MKI and multiple keys are not supported")]
    Mki,
    #[error("session parameter {0} is not supported")]
    SessionParam(String),
}

/// One `a=crypto` attribute: `<tag> <suite> inline:<key||salt>[|lifetime]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CryptoAttr {
    pub tag: u32,
    pub suite: CryptoSuite,
    pub key: KeyMaterial,
}

impl CryptoAttr {
    /// Parses the attribute value (what follows `a=crypto:`).
    ///
    /// Accepted: one inline key with an optional lifetime (ignored: trunkd
    /// never reaches 2^31 packets in a call) and an optional `WSH` window
    /// size hint. Refused: MKIs and several keys (no rekeying without
    /// signalling is done here) and the session parameters that weaken or
    /// change the transform (`UNENCRYPTED_SRTP`, `KDR`, `FEC_ORDER`, ...).
    pub fn parse(value: &str) -> Result<Self, CryptoAttrError> {
        let mut parts = value.split_ascii_whitespace();
        let tag = parts
            .next()
            .and_then(|t| t.parse::<u32>().ok())
            .filter(|t| *t <= 999_999_999)
            .ok_or(CryptoAttrError::Syntax)?;
        let suite_name = parts.next().ok_or(CryptoAttrError::Syntax)?;
        let suite = CryptoSuite::from_name(suite_name)
            .ok_or_else(|| CryptoAttrError::Suite(suite_name.to_owned()))?;
        let key_params = parts.next().ok_or(CryptoAttrError::Syntax)?;
        for p in parts {
            if !p.starts_with("WSH=") {
                let name = p.split('=').next().unwrap_or(p);
                return Err(CryptoAttrError::SessionParam(name.to_owned()));
            }
        }
        if key_params.contains(';') {
            return Err(CryptoAttrError::Mki);
        }
        let inline = key_params
            .strip_prefix("inline:")
            .ok_or(CryptoAttrError::KeyMethod)?;
        let mut fields = inline.split('|');
        let b64 = fields.next().ok_or(CryptoAttrError::Syntax)?;
        for f in fields {
            // Lifetime is `2^n` or a number; an MKI is `value:length`.
            if f.contains(':') {
                return Err(CryptoAttrError::Mki);
            }
        }
        let key = KeyMaterial::from_inline(suite, b64)?;
        Ok(Self { tag, suite, key })
    }

    /// The attribute value trunkd writes after `a=crypto:`.
    pub fn to_value(&self) -> String {
        format!(
            "{} {} inline:{}",
            self.tag,
            self.suite.name(),
            self.key.inline()
        )
    }
}

pub use trunkd_core::SrtpPolicy;

/// Whether an SDP body offers SRTP trunkd can use (SPEC §2.4's "offers
/// SRTP"): its first media section, the one trunkd anchors, has an
/// `a=crypto` line with a supported suite and a well-formed key. A
/// `RTP/SAVP` profile with no usable key is not an SRTP offer.
pub fn offers_srtp(body: &[u8]) -> bool {
    // Most offers are plain: without the attribute's name anywhere in the
    // body there is nothing to find, and parsing it (about a sixtieth of
    // a call's signalling instructions) can wait for the media anchor.
    if memchr::memmem::find(body, b"crypto").is_none() {
        return false;
    }
    crate::sdp::Sdp::parse_bytes(body).is_ok_and(|sdp| {
        sdp.media()
            .first()
            .is_some_and(|m| m.crypto().iter().any(|c| CryptoAttr::parse(c).is_ok()))
    })
}

/// The SRTP keys in force on one leg.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegKeys {
    pub suite: CryptoSuite,
    /// The peer encrypts with this; trunkd decrypts with it.
    pub peer: KeyMaterial,
    /// trunkd encrypts what it sends to the peer with this.
    pub ours: KeyMaterial,
}

/// What trunkd writes into the anchored `m=` section it sends on a leg:
/// the transport protocol and its own `a=crypto` values (none: plain).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaSecurity {
    pub proto: String,
    pub crypto: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SdesError {
    #[error("no supported SRTP crypto suite offered")]
    NoSupportedSuite,
    #[error("SRTP is required on this leg")]
    EncryptionRequired,
    #[error("the SRTP answer names no offered crypto tag")]
    UnknownTag,
    #[error("no randomness for SRTP keys")]
    Random,
}

/// What a peer offered on the anchored stream.
#[derive(Debug, Clone)]
struct PeerOffer {
    proto: String,
    /// Usable attributes, in the peer's order.
    attrs: Vec<CryptoAttr>,
    /// Whether the offer asked for SRTP at all (a `SAVP` profile or any
    /// `a=crypto` line, usable or not).
    secure: bool,
}

/// SDES state of one leg. See the module docs.
#[derive(Debug, Clone, Default)]
pub struct LegSdes {
    policy: SrtpPolicy,
    /// Boxed: ~140 bytes a plain call (most calls) would carry per leg
    /// and stream for nothing (issue 15).
    active: Option<Box<LegKeys>>,
    /// The last offer trunkd sent this leg's peer (kept: answers repeat).
    our_offer: Option<Vec<CryptoAttr>>,
    /// The last offer this leg's peer sent.
    peer_offer: Option<PeerOffer>,
}

/// Whether an `m=` protocol is RTP (the profiles SDES applies to).
fn rtp_profile(proto: &str) -> Option<(&'static str, &'static str)> {
    // (plain, secure) forms of the same profile.
    match proto.to_ascii_uppercase().as_str() {
        "RTP/AVP" | "RTP/SAVP" => Some(("RTP/AVP", "RTP/SAVP")),
        "RTP/AVPF" | "RTP/SAVPF" => Some(("RTP/AVPF", "RTP/SAVPF")),
        _ => None,
    }
}

fn is_secure_proto(proto: &str) -> bool {
    proto.to_ascii_uppercase().contains("SAVP")
}

impl LegSdes {
    pub fn new(policy: SrtpPolicy) -> Self {
        Self {
            policy,
            ..Self::default()
        }
    }

    pub fn policy(&self) -> SrtpPolicy {
        self.policy
    }

    /// The keys in force (`None`: plain RTP).
    pub fn active(&self) -> Option<&LegKeys> {
        self.active.as_deref()
    }

    /// The leg starts over with another peer (failover): nothing learnt or
    /// offered before applies, and no key is reused.
    pub fn reset(&mut self, policy: SrtpPolicy) {
        *self = Self::new(policy);
    }

    /// The peer offered `proto` with these `a=crypto` values.
    ///
    /// # Errors
    /// An offer trunkd will not be able to answer ([`LegSdes::answer`]'s
    /// errors), reported now so the call is refused before another leg is
    /// involved.
    pub fn peer_offered(&mut self, proto: &str, crypto: &[&str]) -> Result<(), SdesError> {
        let attrs: Vec<CryptoAttr> = crypto
            .iter()
            .filter_map(|v| match CryptoAttr::parse(v) {
                Ok(a) => Some(a),
                Err(e) => {
                    tracing::debug!(error = %e, "a=crypto line skipped");
                    None
                }
            })
            .collect();
        let offer = PeerOffer {
            proto: proto.to_owned(),
            attrs,
            secure: is_secure_proto(proto) || !crypto.is_empty(),
        };
        let rtp = rtp_profile(proto).is_some();
        let result = match (rtp, offer.secure) {
            (true, true) if offer.attrs.is_empty() => Err(SdesError::NoSupportedSuite),
            (true, false) if self.policy == SrtpPolicy::Require => {
                Err(SdesError::EncryptionRequired)
            }
            _ => Ok(()),
        };
        self.peer_offer = Some(offer);
        result
    }

    /// trunkd's answer to the peer's last offer; sets the keys in force.
    /// With no offer seen (a broken peer), the answer is plain.
    pub fn answer(&mut self) -> Result<MediaSecurity, SdesError> {
        let Some(offer) = &self.peer_offer else {
            self.active = None;
            return Ok(MediaSecurity {
                proto: "RTP/AVP".to_owned(),
                crypto: Vec::new(),
            });
        };
        if !offer.secure || rtp_profile(&offer.proto).is_none() {
            if self.policy == SrtpPolicy::Require && rtp_profile(&offer.proto).is_some() {
                return Err(SdesError::EncryptionRequired);
            }
            self.active = None;
            return Ok(MediaSecurity {
                proto: offer.proto.clone(),
                crypto: Vec::new(),
            });
        }
        let chosen = offer
            .attrs
            .iter()
            .min_by_key(|a| a.suite.rank())
            .ok_or(SdesError::NoSupportedSuite)?;
        // The same offer answered again (18x then 200, a refresh) keeps
        // trunkd's key: the peer already decrypts with it.
        let ours = match &self.active {
            Some(k) if k.suite == chosen.suite && k.peer == chosen.key => k.ours.clone(),
            _ => KeyMaterial::generate(chosen.suite)?,
        };
        let answer = CryptoAttr {
            tag: chosen.tag,
            suite: chosen.suite,
            key: ours.clone(),
        };
        self.active = Some(Box::new(LegKeys {
            suite: chosen.suite,
            peer: chosen.key.clone(),
            ours,
        }));
        Ok(MediaSecurity {
            proto: offer.proto.clone(),
            crypto: vec![answer.to_value()],
        })
    }

    /// trunkd's offer to the peer, built on the protocol of the stream
    /// being offered (`base_proto`, from the other leg).
    pub fn offer(&mut self, base_proto: &str) -> Result<MediaSecurity, SdesError> {
        let Some((plain, secure)) = rtp_profile(base_proto) else {
            // Not RTP (T.38 UDPTL, ...): SDES does not apply.
            self.our_offer = Some(Vec::new());
            return Ok(MediaSecurity {
                proto: base_proto.to_owned(),
                crypto: Vec::new(),
            });
        };
        if self.active.is_none() && self.policy == SrtpPolicy::Off {
            self.our_offer = Some(Vec::new());
            return Ok(MediaSecurity {
                proto: plain.to_owned(),
                crypto: Vec::new(),
            });
        }
        let mut attrs = Vec::with_capacity(CryptoSuite::ALL.len());
        if let Some(k) = &self.active {
            attrs.push(CryptoAttr {
                tag: 1,
                suite: k.suite,
                key: k.ours.clone(),
            });
        }
        for suite in CryptoSuite::ALL {
            if attrs.iter().any(|a| a.suite == suite) {
                continue;
            }
            attrs.push(CryptoAttr {
                tag: attrs.len() as u32 + 1,
                suite,
                key: KeyMaterial::generate(suite)?,
            });
        }
        let crypto = attrs.iter().map(CryptoAttr::to_value).collect();
        self.our_offer = Some(attrs);
        Ok(MediaSecurity {
            proto: secure.to_owned(),
            crypto,
        })
    }

    /// The peer answered trunkd's offer with `proto` and these `a=crypto`
    /// values; sets the keys in force.
    pub fn peer_answered(&mut self, proto: &str, crypto: &[&str]) -> Result<(), SdesError> {
        let offered = self.our_offer.as_deref().unwrap_or(&[]);
        if offered.is_empty() {
            // We offered plain (or nothing): whatever keys come back are
            // not for an offer of ours.
            self.active = None;
            return Ok(());
        }
        if crypto.is_empty() {
            if self.policy == SrtpPolicy::Require || is_secure_proto(proto) {
                return Err(SdesError::EncryptionRequired);
            }
            // RFC 4568 wants a rejected stream, but plain answers to SRTP
            // offers are common; unless SRTP is required, take it.
            self.active = None;
            return Ok(());
        }
        for v in crypto {
            let Ok(a) = CryptoAttr::parse(v) else {
                continue;
            };
            if let Some(mine) = offered
                .iter()
                .find(|o| o.tag == a.tag && o.suite == a.suite)
            {
                self.active = Some(Box::new(LegKeys {
                    suite: a.suite,
                    peer: a.key,
                    ours: mine.key.clone(),
                }));
                return Ok(());
            }
        }
        Err(SdesError::UnknownTag)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const K128: &str = "WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz";

    fn attr(tag: u32, suite: CryptoSuite) -> String {
        CryptoAttr {
            tag,
            suite,
            key: KeyMaterial::generate(suite).unwrap(),
        }
        .to_value()
    }

    #[test]
    fn parses_the_rfc_4568_example() {
        let a =
            CryptoAttr::parse(&format!("1 AES_CM_128_HMAC_SHA1_80 inline:{K128}|2^20")).unwrap();
        assert_eq!(a.tag, 1);
        assert_eq!(a.suite, CryptoSuite::Aes128CmHmacSha1_80);
        assert_eq!(a.key.key().len(), 16);
        assert_eq!(a.key.salt().len(), 14);
        assert_eq!(
            CryptoAttr::parse(&a.to_value()).unwrap(),
            a,
            "what trunkd writes parses back"
        );
    }

    #[test]
    fn refuses_what_it_cannot_do() {
        let cases = [
            (
                format!("1 AES_CM_128_HMAC_SHA1_80 inline:{K128}|2^20|1:4"),
                CryptoAttrError::Mki,
            ),
            (
                format!("1 AES_CM_128_HMAC_SHA1_80 inline:{K128};inline:{K128}"),
                CryptoAttrError::Mki,
            ),
            (
                format!("1 AES_CM_128_HMAC_SHA1_80 inline:{K128} UNENCRYPTED_SRTP"),
                CryptoAttrError::SessionParam("UNENCRYPTED_SRTP".into()),
            ),
            (
                format!("1 AES_192_CM_HMAC_SHA1_80 inline:{K128}"),
                CryptoAttrError::Suite("AES_192_CM_HMAC_SHA1_80".into()),
            ),
            (
                format!("1 AES_256_CM_HMAC_SHA1_80 inline:{K128}"),
                CryptoAttrError::KeyLength {
                    expected: 46,
                    got: 30,
                },
            ),
            (
                "x AES_CM_128_HMAC_SHA1_80 inline:abc".into(),
                CryptoAttrError::Syntax,
            ),
            (
                "1 AES_CM_128_HMAC_SHA1_80 uri:x".into(),
                CryptoAttrError::KeyMethod,
            ),
            (
                "1 AES_CM_128_HMAC_SHA1_80 inline:!!!".into(),
                CryptoAttrError::KeyEncoding,
            ),
        ];
        for (line, want) in cases {
            assert_eq!(CryptoAttr::parse(&line), Err(want), "{line}");
        }
        // The window size hint is harmless.
        assert!(
            CryptoAttr::parse(&format!("1 AES_CM_128_HMAC_SHA1_80 inline:{K128} WSH=64")).is_ok()
        );
    }

    #[test]
    fn answer_picks_the_strongest_supported_suite_with_a_fresh_key() {
        let mut leg = LegSdes::new(SrtpPolicy::Off);
        let offered = [
            attr(1, CryptoSuite::Aes128CmHmacSha1_80),
            attr(2, CryptoSuite::Aes256CmHmacSha1_80),
            format!("3 AES_192_CM_HMAC_SHA1_80 inline:{K128}"),
            attr(4, CryptoSuite::Aes128CmHmacSha1_32),
        ];
        let refs: Vec<&str> = offered.iter().map(String::as_str).collect();
        leg.peer_offered("RTP/SAVP", &refs).unwrap();
        let ans = leg.answer().unwrap();
        assert_eq!(ans.proto, "RTP/SAVP");
        assert_eq!(ans.crypto.len(), 1);
        let mine = CryptoAttr::parse(&ans.crypto[0]).unwrap();
        assert_eq!(
            (mine.tag, mine.suite),
            (2, CryptoSuite::Aes256CmHmacSha1_80)
        );
        let keys = leg.active().unwrap();
        assert_eq!(keys.peer, CryptoAttr::parse(&offered[1]).unwrap().key);
        assert_eq!(keys.ours, mine.key);
        assert_ne!(keys.ours, keys.peer, "trunkd never echoes the peer's key");

        // The same offer answered again keeps trunkd's key.
        assert_eq!(leg.answer().unwrap(), ans);
    }

    #[test]
    fn srtp_offer_without_a_usable_suite_is_refused() {
        let mut leg = LegSdes::new(SrtpPolicy::Off);
        let only = format!("1 AES_192_CM_HMAC_SHA1_80 inline:{K128}");
        assert_eq!(
            leg.peer_offered("RTP/SAVP", &[&only]),
            Err(SdesError::NoSupportedSuite)
        );
        assert_eq!(leg.answer(), Err(SdesError::NoSupportedSuite));
        assert_eq!(
            leg.peer_offered("RTP/SAVP", &[]),
            Err(SdesError::NoSupportedSuite)
        );
        assert_eq!(leg.answer(), Err(SdesError::NoSupportedSuite));
    }

    #[test]
    fn plain_offer_gets_plain_answer_unless_required() {
        let mut leg = LegSdes::new(SrtpPolicy::Offer);
        leg.peer_offered("RTP/AVP", &[]).unwrap();
        let ans = leg.answer().unwrap();
        assert_eq!(
            ans,
            MediaSecurity {
                proto: "RTP/AVP".into(),
                crypto: vec![]
            }
        );
        assert!(leg.active().is_none());

        let mut strict = LegSdes::new(SrtpPolicy::Require);
        assert_eq!(
            strict.peer_offered("RTP/AVP", &[]),
            Err(SdesError::EncryptionRequired)
        );
        assert_eq!(strict.answer(), Err(SdesError::EncryptionRequired));
        // T.38 is not RTP: SDES does not apply even when required.
        strict.peer_offered("udptl", &[]).unwrap();
        assert!(strict.answer().is_ok());
    }

    #[test]
    fn offer_lists_every_suite_strongest_first_with_distinct_fresh_keys() {
        let mut leg = LegSdes::new(SrtpPolicy::Offer);
        let off = leg.offer("RTP/AVP").unwrap();
        assert_eq!(off.proto, "RTP/SAVP");
        let attrs: Vec<CryptoAttr> = off
            .crypto
            .iter()
            .map(|v| CryptoAttr::parse(v).unwrap())
            .collect();
        let suites: Vec<CryptoSuite> = attrs.iter().map(|a| a.suite).collect();
        assert_eq!(suites, CryptoSuite::ALL);
        let tags: Vec<u32> = attrs.iter().map(|a| a.tag).collect();
        assert_eq!(tags, [1, 2, 3, 4, 5, 6]);
        for (i, a) in attrs.iter().enumerate() {
            for b in &attrs[i + 1..] {
                assert_ne!(a.key.key()[..16], b.key.key()[..16]);
            }
        }
        // AVPF keeps its feedback profile.
        assert_eq!(leg.offer("RTP/AVPF").unwrap().proto, "RTP/SAVPF");
    }

    #[test]
    fn answer_to_our_offer_sets_keys_by_tag() {
        let mut leg = LegSdes::new(SrtpPolicy::Offer);
        let off = leg.offer("RTP/AVP").unwrap();
        let offered: Vec<CryptoAttr> = off
            .crypto
            .iter()
            .map(|v| CryptoAttr::parse(v).unwrap())
            .collect();
        let pick = &offered[4]; // tag 5, AES_CM_128_HMAC_SHA1_80
        let theirs = attr(pick.tag, pick.suite);
        leg.peer_answered("RTP/SAVP", &[&theirs]).unwrap();
        let keys = leg.active().unwrap();
        assert_eq!(keys.suite, CryptoSuite::Aes128CmHmacSha1_80);
        assert_eq!(keys.ours, pick.key);
        assert_eq!(keys.peer, CryptoAttr::parse(&theirs).unwrap().key);

        // A tag we never offered is an error; so is a suite swapped under a tag.
        let bogus = attr(9, CryptoSuite::Aes128CmHmacSha1_80);
        assert_eq!(
            leg.peer_answered("RTP/SAVP", &[&bogus]),
            Err(SdesError::UnknownTag)
        );
        let swapped = attr(1, CryptoSuite::Aes128CmHmacSha1_80);
        assert_eq!(
            leg.peer_answered("RTP/SAVP", &[&swapped]),
            Err(SdesError::UnknownTag)
        );
    }

    #[test]
    fn a_refresh_offer_keeps_the_suite_in_force_and_its_key() {
        let mut leg = LegSdes::new(SrtpPolicy::Offer);
        let off = leg.offer("RTP/AVP").unwrap();
        let first = CryptoAttr::parse(&off.crypto[3]).unwrap();
        let theirs = attr(first.tag, first.suite);
        leg.peer_answered("RTP/SAVP", &[&theirs]).unwrap();
        let again = leg.offer("RTP/AVP").unwrap();
        let lead = CryptoAttr::parse(&again.crypto[0]).unwrap();
        assert_eq!(
            (lead.tag, lead.suite, &lead.key),
            (1, first.suite, &first.key)
        );
        assert_eq!(again.crypto.len(), CryptoSuite::ALL.len());
    }

    #[test]
    fn plain_answers_to_srtp_offers() {
        let mut leg = LegSdes::new(SrtpPolicy::Offer);
        leg.offer("RTP/AVP").unwrap();
        leg.peer_answered("RTP/AVP", &[]).unwrap();
        assert!(leg.active().is_none(), "interworking: the leg stays plain");

        let mut strict = LegSdes::new(SrtpPolicy::Require);
        strict.offer("RTP/AVP").unwrap();
        assert_eq!(
            strict.peer_answered("RTP/AVP", &[]),
            Err(SdesError::EncryptionRequired)
        );
    }

    #[test]
    fn a_plain_policy_offers_plain_and_strips_savp() {
        let mut leg = LegSdes::new(SrtpPolicy::Off);
        let off = leg.offer("RTP/SAVP").unwrap();
        assert_eq!(
            off,
            MediaSecurity {
                proto: "RTP/AVP".into(),
                crypto: vec![]
            }
        );
        // Keys in an answer to a plain offer are ignored.
        let stray = attr(1, CryptoSuite::Aes128CmHmacSha1_80);
        leg.peer_answered("RTP/SAVP", &[&stray]).unwrap();
        assert!(leg.active().is_none());
    }

    #[test]
    fn reset_forgets_keys_so_failover_negotiates_fresh_ones() {
        let mut leg = LegSdes::new(SrtpPolicy::Offer);
        let first = leg.offer("RTP/AVP").unwrap();
        leg.reset(SrtpPolicy::Offer);
        let second = leg.offer("RTP/AVP").unwrap();
        for (a, b) in first.crypto.iter().zip(&second.crypto) {
            assert_ne!(a, b, "a new hop never sees the previous hop's keys");
        }
        assert!(leg.active().is_none());
    }

    #[test]
    fn an_srtp_offer_needs_a_usable_key_on_the_anchored_stream() {
        let sdp = |m: &str| {
            format!("v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n{m}")
        };
        let good = sdp(&format!(
            "m=audio 4000 RTP/SAVP 0\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{K128}\r\n"
        ));
        assert!(offers_srtp(good.as_bytes()));
        assert!(
            !offers_srtp(sdp("m=audio 4000 RTP/SAVP 0\r\n").as_bytes()),
            "SAVP without a key"
        );
        let only_192 = sdp(&format!(
            "m=audio 4000 RTP/SAVP 0\r\na=crypto:1 AES_192_CM_HMAC_SHA1_80 inline:{K128}\r\n"
        ));
        assert!(!offers_srtp(only_192.as_bytes()));
        assert!(!offers_srtp(sdp("m=audio 4000 RTP/AVP 0\r\n").as_bytes()));
        assert!(!offers_srtp(b""));
        assert!(!offers_srtp(b"v=0 RTP/SAVP a=crypto:"), "not SDP at all");
        // The parser trims an attribute's name, and the shortcut for bodies
        // without "crypto" must not miss what it would find.
        let spaced = sdp(&format!(
            "m=audio 4000 RTP/SAVP 0\r\na= crypto :1 AES_CM_128_HMAC_SHA1_80 inline:{K128}\r\n"
        ));
        let parsed = crate::sdp::Sdp::parse(&spaced).unwrap();
        assert_eq!(parsed.media()[0].crypto().len(), 1);
        assert!(offers_srtp(spaced.as_bytes()));
    }

    #[test]
    fn key_material_debug_hides_the_key() {
        let k = KeyMaterial::generate(CryptoSuite::Aes128CmHmacSha1_80).unwrap();
        assert_eq!(format!("{k:?}"), "KeyMaterial(16 + 14 bytes)");
    }
}
