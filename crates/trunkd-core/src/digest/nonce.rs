//! Stateless server nonces and nonce-count replay protection
//! (RFC 7616 §3.3 `nonce`, §3.4 `nc`, §5.4–§5.5).
//!
//! A nonce is `hex(issued_at_ms ‖ salt) ‖ hex(MAC)` where
//! `MAC = HMAC-SHA-256(key, issued_at_ms ‖ salt ‖ realm)` truncated to 128
//! bits: 64 hex digits. trunkd keeps no table of issued nonces; the MAC
//! proves a nonce is its own and for this realm, the timestamp bounds its
//! age. The timestamp is in milliseconds (not seconds) so the eviction
//! watermark of [`NonceCounter`] rarely ties with a freshly issued nonce.
//! The key and the salt come from the caller's RNG; `now` from its clock.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::hash::hex;
use super::DigestError;
use crate::secret::decode_hex;

/// Bytes of caller randomness in each nonce.
pub const NONCE_SALT_LEN: usize = 8;
const MAC_LEN: usize = 16;
const NONCE_LEN: usize = 8 + NONCE_SALT_LEN + MAC_LEN;
/// A nonce stamped this far in the future is refused as stale: only a clock
/// stepped backwards produces one.
const MAX_FUTURE_MS: u64 = 1_000;

/// Milliseconds since the Unix epoch; instants before it count as 0.
fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// When a verified nonce was issued, in Unix milliseconds.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub struct IssuedAt(pub u64);

/// Issues and checks trunkd's nonces.
#[derive(Clone)]
pub struct NonceIssuer {
    key: [u8; 32],
    lifetime: Duration,
}

impl fmt::Debug for NonceIssuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NonceIssuer")
            .field("key", &"<redacted>")
            .field("lifetime", &self.lifetime)
            .finish()
    }
}

impl NonceIssuer {
    /// How long a nonce is accepted: Kamailio's `nonce_expire` default.
    /// Shorter makes captured requests useless sooner; longer saves
    /// round trips for clients that reuse nonces across requests.
    pub const DEFAULT_LIFETIME: Duration = Duration::from_secs(300);

    /// `key` must be secret and random (drawn once at start-up by the I/O
    /// shell); nonces issued under another key fail as `BadNonce`, so a
    /// restart costs clients one extra challenge.
    pub fn new(key: [u8; 32], lifetime: Duration) -> Self {
        NonceIssuer { key, lifetime }
    }

    pub fn lifetime(&self) -> Duration {
        self.lifetime
    }

    fn mac(&self, stamp_and_salt: &[u8], realm: &str) -> [u8; MAC_LEN] {
        // HMAC accepts keys of any length: new_from_slice cannot fail.
        let mut out = [0u8; MAC_LEN];
        if let Ok(mut m) = Hmac::<Sha256>::new_from_slice(&self.key) {
            m.update(stamp_and_salt);
            m.update(realm.as_bytes());
            out.copy_from_slice(&m.finalize().into_bytes()[..MAC_LEN]);
        }
        out
    }

    /// A fresh nonce for `realm`.
    pub fn issue(&self, realm: &str, now: SystemTime, salt: [u8; NONCE_SALT_LEN]) -> String {
        let mut body = [0u8; 8 + NONCE_SALT_LEN];
        body[..8].copy_from_slice(&unix_ms(now).to_be_bytes());
        body[8..].copy_from_slice(&salt);
        let mac = self.mac(&body, realm);
        let mut s = hex(&body);
        s.push_str(&hex(&mac));
        s
    }

    /// Checks that `nonce` was issued by this issuer for `realm`, without
    /// looking at its age.
    ///
    /// # Errors
    /// `BadNonce` when it is not hex of the right length or its MAC fails.
    pub fn open(&self, nonce: &str, realm: &str) -> Result<IssuedAt, DigestError> {
        let bytes = decode_hex::<NONCE_LEN>(nonce).ok_or(DigestError::BadNonce)?;
        let (body, tag) = bytes.split_at(8 + NONCE_SALT_LEN);
        let mut m = Hmac::<Sha256>::new_from_slice(&self.key).map_err(|_| DigestError::BadNonce)?;
        m.update(body);
        m.update(realm.as_bytes());
        // Constant-time comparison of the truncated tag.
        m.verify_truncated_left(tag)
            .map_err(|_| DigestError::BadNonce)?;
        let mut stamp = [0u8; 8];
        stamp.copy_from_slice(&body[..8]);
        Ok(IssuedAt(u64::from_be_bytes(stamp)))
    }

    /// Whether a nonce issued at `issued` may still be used at `now`.
    pub fn is_fresh(&self, issued: IssuedAt, now: SystemTime) -> bool {
        let now_ms = unix_ms(now);
        let lifetime_ms = u64::try_from(self.lifetime.as_millis()).unwrap_or(u64::MAX);
        issued.0 <= now_ms.saturating_add(MAX_FUTURE_MS)
            && now_ms.saturating_sub(issued.0) <= lifetime_ms
    }

    /// One `Proxy-Authenticate`/`WWW-Authenticate` value (RFC 7616 §3.3)
    /// with `qop="auth"` (and no `opaque`: the nonce carries the state).
    /// `stale=true` tells the client its credentials were right and only
    /// the nonce was old, so it retries without prompting (RFC 7616 §3.3).
    pub fn challenge(
        &self,
        realm: &str,
        algorithm: super::Algorithm,
        stale: bool,
        now: SystemTime,
        salt: [u8; NONCE_SALT_LEN],
    ) -> String {
        super::Challenge {
            realm: realm.to_owned(),
            nonce: self.issue(realm, now, salt),
            opaque: None,
            algorithm,
            qop: Some(super::Qop::Auth),
            stale,
        }
        .to_string()
    }

    /// The challenges trunkd sends, one header value per algorithm of
    /// [`super::Algorithm::OFFERED`], SHA-256 first (RFC 7616 §3.7), all
    /// with the same nonce.
    pub fn challenges(
        &self,
        realm: &str,
        stale: bool,
        now: SystemTime,
        salt: [u8; NONCE_SALT_LEN],
    ) -> Vec<String> {
        self.challenges_for(realm, &super::Algorithm::OFFERED, stale, now, salt)
    }

    /// As [`NonceIssuer::challenges`] for the given algorithms, in that
    /// order: admission offers only the algorithms a VC's stored HA1s can
    /// verify, so a client never picks one that must fail.
    pub fn challenges_for(
        &self,
        realm: &str,
        algorithms: &[super::Algorithm],
        stale: bool,
        now: SystemTime,
        salt: [u8; NONCE_SALT_LEN],
    ) -> Vec<String> {
        let nonce = self.issue(realm, now, salt);
        algorithms
            .iter()
            .map(|&algorithm| {
                super::Challenge {
                    realm: realm.to_owned(),
                    nonce: nonce.clone(),
                    opaque: None,
                    algorithm,
                    qop: Some(super::Qop::Auth),
                    stale,
                }
                .to_string()
            })
            .collect()
    }
}

/// The highest nonce count seen per nonce (RFC 7616 §3.4 `nc`, §5.5): a
/// request whose `nc` is not above the last one for its nonce is a replay.
///
/// Memory is bounded: past `capacity` nonces, the one first seen longest ago
/// is forgotten. A forgotten nonce could be replayed, so the counter keeps a
/// watermark, the latest issue time among forgotten nonces; any nonce it
/// does not know that was issued at or before the watermark is refused as
/// `Stale` (the client gets a new nonce, with `stale=true`, and no replay
/// ever passes). Size the capacity above the number of distinct nonces
/// clients use within [`NonceIssuer::lifetime`] to avoid those extra round
/// trips.
#[derive(Clone, Debug)]
pub struct NonceCounter {
    capacity: usize,
    highest: HashMap<String, u32>,
    order: VecDeque<(String, IssuedAt)>,
    watermark: Option<IssuedAt>,
}

impl NonceCounter {
    pub const DEFAULT_CAPACITY: usize = 65_536;

    /// A counter holding at most `capacity` nonces (at least 1).
    pub fn new(capacity: usize) -> Self {
        NonceCounter {
            capacity: capacity.max(1),
            highest: HashMap::new(),
            order: VecDeque::new(),
            watermark: None,
        }
    }

    pub fn len(&self) -> usize {
        self.highest.len()
    }

    pub fn is_empty(&self) -> bool {
        self.highest.is_empty()
    }

    /// Records that `nonce` (issued at `issued`) was used with count `nc`.
    ///
    /// # Errors
    /// `Replay` when `nc` is not above the highest count seen for `nonce`;
    /// `Stale` when `nonce` is unknown but may have been forgotten.
    pub fn check_and_record(
        &mut self,
        nonce: &str,
        issued: IssuedAt,
        nc: u32,
    ) -> Result<(), DigestError> {
        if let Some(highest) = self.highest.get_mut(nonce) {
            if nc <= *highest {
                return Err(DigestError::Replay);
            }
            *highest = nc;
            return Ok(());
        }
        if self.watermark.is_some_and(|w| issued <= w) {
            return Err(DigestError::Stale);
        }
        while self.highest.len() >= self.capacity {
            let Some((old, at)) = self.order.pop_front() else {
                break;
            };
            self.highest.remove(&old);
            self.watermark = Some(self.watermark.map_or(at, |w| w.max(at)));
        }
        self.highest.insert(nonce.to_owned(), nc);
        self.order.push_back((nonce.to_owned(), issued));
        Ok(())
    }
}

impl Default for NonceCounter {
    fn default() -> Self {
        NonceCounter::new(Self::DEFAULT_CAPACITY)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn issuer() -> NonceIssuer {
        NonceIssuer::new([7; 32], Duration::from_secs(300))
    }

    #[test]
    fn a_nonce_opens_for_its_realm_only() {
        let i = issuer();
        let n = i.issue("trunkd.local", at(1_700_000_000), [1; 8]);
        assert_eq!(n.len(), 64);
        assert_eq!(i.open(&n, "trunkd.local"), Ok(IssuedAt(1_700_000_000_000)));
        assert_eq!(i.open(&n, "other.example"), Err(DigestError::BadNonce));
        assert_eq!(
            NonceIssuer::new([8; 32], Duration::from_secs(1)).open(&n, "trunkd.local"),
            Err(DigestError::BadNonce)
        );
        assert_eq!(
            i.open(&n.to_uppercase(), "trunkd.local"),
            Ok(IssuedAt(1_700_000_000_000))
        );
    }

    #[test]
    fn tampered_or_foreign_nonces_are_bad() {
        let i = issuer();
        let n = i.issue("r", at(1_700_000_000), [1; 8]);
        // Move the timestamp forward by one: the MAC no longer matches.
        let mut forged = n.clone().into_bytes();
        forged[15] = if forged[15] == b'0' { b'1' } else { b'0' };
        let forged = String::from_utf8(forged).unwrap();
        for bad in [
            forged.as_str(),
            "",
            "dcd98b7102dd2f0e8b11d0f600bfb0c093",
            &n[..63],
            &format!("{n}00"),
        ] {
            assert_eq!(i.open(bad, "r"), Err(DigestError::BadNonce), "{bad}");
        }
    }

    #[test]
    fn freshness_is_the_lifetime_inclusive() {
        let i = issuer();
        let t = IssuedAt(1_700_000_000_000);
        assert!(i.is_fresh(t, at(1_700_000_000)));
        assert!(i.is_fresh(t, at(1_700_000_300)));
        assert!(!i.is_fresh(t, at(1_700_000_301)));
        // A nonce from the future (the clock went back by more than 1 s).
        assert!(i.is_fresh(t, at(1_699_999_999)));
        assert!(!i.is_fresh(t, at(1_699_999_998)));
    }

    #[test]
    fn challenges_offer_md5_then_sha256_with_one_nonce() {
        let v = issuer().challenges("trunkd.local", true, at(1_700_000_000), [2; 8]);
        assert_eq!(v.len(), 2);
        assert!(
            v[0].starts_with("Digest realm=\"trunkd.local\", nonce=\""),
            "{}",
            v[0]
        );
        assert!(
            v[0].contains("algorithm=MD5, qop=\"auth\", stale=true"),
            "{}",
            v[0]
        );
        assert!(
            v[1].contains("algorithm=SHA-256, qop=\"auth\", stale=true"),
            "{}",
            v[1]
        );
        assert_eq!(
            v[0].split("nonce=").nth(1).map(|s| &s[..66]),
            v[1].split("nonce=").nth(1).map(|s| &s[..66])
        );
    }

    #[test]
    fn nonce_counts_must_increase() {
        let mut c = NonceCounter::new(10);
        let t = IssuedAt(5);
        assert_eq!(c.check_and_record("a", t, 1), Ok(()));
        assert_eq!(c.check_and_record("a", t, 1), Err(DigestError::Replay));
        assert_eq!(c.check_and_record("a", t, 3), Ok(()));
        assert_eq!(c.check_and_record("a", t, 2), Err(DigestError::Replay));
        assert_eq!(c.check_and_record("b", t, 1), Ok(()));
        assert_eq!(c.len(), 2);
    }

    #[test]
    fn eviction_is_oldest_first_and_forgotten_nonces_are_stale() {
        let mut c = NonceCounter::new(2);
        assert_eq!(c.check_and_record("a", IssuedAt(10), 1), Ok(()));
        assert_eq!(c.check_and_record("b", IssuedAt(20), 1), Ok(()));
        assert_eq!(c.check_and_record("c", IssuedAt(30), 1), Ok(())); // forgets a
        assert_eq!(c.len(), 2);
        assert_eq!(
            c.check_and_record("a", IssuedAt(10), 2),
            Err(DigestError::Stale)
        );
        assert_eq!(
            c.check_and_record("z", IssuedAt(9), 1),
            Err(DigestError::Stale)
        );
        assert_eq!(
            c.check_and_record("b", IssuedAt(20), 1),
            Err(DigestError::Replay)
        );
        assert_eq!(c.check_and_record("d", IssuedAt(11), 1), Ok(())); // forgets b
        assert_eq!(
            c.check_and_record("b", IssuedAt(20), 2),
            Err(DigestError::Stale)
        );
        assert_eq!(
            NonceCounter::new(0).check_and_record("x", IssuedAt(1), 1),
            Ok(())
        );
    }

    proptest! {
        /// Whatever the sequence, an (nonce, nc) pair is never accepted
        /// twice, and memory never exceeds the capacity.
        #[test]
        fn no_pair_is_accepted_twice(ops in proptest::collection::vec((0u8..6, 0u32..4), 0..200), cap in 1usize..5) {
            let mut c = NonceCounter::new(cap);
            let mut accepted = std::collections::HashSet::new();
            for (n, nc) in ops {
                let nonce = n.to_string();
                if c.check_and_record(&nonce, IssuedAt(u64::from(n)), nc).is_ok() {
                    prop_assert!(accepted.insert((n, nc)), "({n}, {nc}) accepted twice");
                }
                prop_assert!(c.len() <= cap);
            }
        }

        #[test]
        fn open_never_panics(s in "\\PC*") {
            let _ = issuer().open(&s, "r");
        }
    }
}
