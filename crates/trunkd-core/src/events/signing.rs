//! Standard Webhooks signing (SPEC §5.4; standardwebhooks.com).
//!
//! A receiver verifies a delivery with the headers
//!
//! - `webhook-id`: the event's id, the same on every retry (receivers use
//!   it to drop duplicates);
//! - `webhook-timestamp`: Unix seconds of this attempt (receivers refuse
//!   stale ones to stop replays);
//! - `webhook-signature`: `v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}.{body}")>`.
//!
//! The configured secret is `whsec_` followed by the standard base64 of the
//! key bytes; the HMAC key is the decoded bytes, not the string. Written by
//! hand (a dozen lines over `hmac`/`sha2`, already used for digest nonces)
//! rather than with a Standard Webhooks crate: see docs/decisions.md.

use std::fmt;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use thiserror::Error;

/// The decoded key of a `whsec_…` secret. Its `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookKey(Vec<u8>);

/// Why a secret is not a usable key. Never contains the secret.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum WebhookKeyError {
    #[error("must start with \"whsec_\" (a Standard Webhooks secret)")]
    Prefix,
    #[error("is not standard base64 after \"whsec_\"")]
    Base64,
    #[error("decodes to {0} bytes; the key must be 24 to 64 bytes long")]
    Length(usize),
}

impl WebhookKey {
    /// Parses `whsec_<base64>`. The Standard Webhooks specification asks
    /// for keys of 24 to 64 random bytes; shorter keys are refused so a
    /// typo cannot leave webhooks signed with a guessable key.
    pub fn from_whsec(secret: &str) -> Result<Self, WebhookKeyError> {
        let b64 = secret
            .strip_prefix("whsec_")
            .ok_or(WebhookKeyError::Prefix)?;
        let key = STANDARD
            .decode(b64.trim())
            .map_err(|_| WebhookKeyError::Base64)?;
        if !(24..=64).contains(&key.len()) {
            return Err(WebhookKeyError::Length(key.len()));
        }
        Ok(WebhookKey(key))
    }

    /// The secret as it was written (`whsec_` and the key in base64), for
    /// the code that makes sure it never appears in a log.
    pub fn to_whsec(&self) -> String {
        format!("whsec_{}", STANDARD.encode(&self.0))
    }

    /// The `webhook-signature` header value for one attempt.
    pub fn sign(&self, msg_id: &str, timestamp: u64, body: &[u8]) -> String {
        format!("v1,{}", STANDARD.encode(self.mac(msg_id, timestamp, body)))
    }

    /// Whether `header` (space-separated `v1,<sig>` entries, as receivers
    /// see it) holds a valid signature of this message. Constant time per
    /// entry. Used by tests and by anyone checking trunkd's own output.
    pub fn verify(&self, msg_id: &str, timestamp: u64, body: &[u8], header: &str) -> bool {
        header.split(' ').any(|entry| {
            let Some(sig) = entry.strip_prefix("v1,") else {
                return false;
            };
            let Ok(sig) = STANDARD.decode(sig) else {
                return false;
            };
            self.hmac(msg_id, timestamp, body)
                .verify_slice(&sig)
                .is_ok()
        })
    }

    fn hmac(&self, msg_id: &str, timestamp: u64, body: &[u8]) -> Hmac<Sha256> {
        // HMAC accepts keys of any length: this cannot fail.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.0)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        mac.update(msg_id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        mac
    }

    fn mac(&self, msg_id: &str, timestamp: u64, body: &[u8]) -> Vec<u8> {
        self.hmac(msg_id, timestamp, body)
            .finalize()
            .into_bytes()
            .to_vec()
    }
}

impl fmt::Debug for WebhookKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WebhookKey(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of the Standard Webhooks specification and of its
    /// reference libraries' tests.
    const SPEC_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    #[test]
    fn the_reference_test_vector_of_the_specification() {
        let key = WebhookKey::from_whsec(SPEC_SECRET).unwrap();
        let sig = key.sign(
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1_614_265_330,
            br#"{"test": 2432232314}"#,
        );
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn verification_accepts_the_signature_and_nothing_else() {
        let key = WebhookKey::from_whsec(SPEC_SECRET).unwrap();
        let (id, ts, body) = ("msg_1", 1_700_000_000, b"{}".as_slice());
        let sig = key.sign(id, ts, body);
        assert!(key.verify(id, ts, body, &sig));
        assert!(key.verify(id, ts, body, &format!("v1,AAAA {sig}")));
        assert!(!key.verify(id, ts + 1, body, &sig));
        assert!(!key.verify("msg_2", ts, body, &sig));
        assert!(!key.verify(id, ts, b"{ }", &sig));
        assert!(!key.verify(id, ts, body, &sig.replacen("v1,", "v2,", 1)));
        assert!(!key.verify(id, ts, body, "v1,not base64!"));
        let other = WebhookKey::from_whsec("whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA").unwrap();
        assert!(!other.verify(id, ts, body, &sig));
    }

    #[test]
    fn a_key_gives_back_the_secret_it_was_read_from() {
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        assert_eq!(WebhookKey::from_whsec(secret).unwrap().to_whsec(), secret);
    }

    #[test]
    fn a_secret_must_be_whsec_and_base64_of_24_to_64_bytes() {
        assert_eq!(
            WebhookKey::from_whsec("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
            Err(WebhookKeyError::Prefix)
        );
        assert_eq!(
            WebhookKey::from_whsec("whsec_not*base64"),
            Err(WebhookKeyError::Base64)
        );
        assert_eq!(
            WebhookKey::from_whsec("whsec_c2hvcnQ="),
            Err(WebhookKeyError::Length(5))
        );
        let max = format!("whsec_{}", STANDARD.encode([7u8; 64]));
        assert!(WebhookKey::from_whsec(&max).is_ok());
        let long = format!("whsec_{}", STANDARD.encode([7u8; 65]));
        assert_eq!(
            WebhookKey::from_whsec(&long),
            Err(WebhookKeyError::Length(65))
        );
    }

    #[test]
    fn debug_never_shows_the_key() {
        let key = WebhookKey::from_whsec(SPEC_SECRET).unwrap();
        assert_eq!(format!("{key:?}"), "WebhookKey(<redacted>)");
    }
}
