//! Events (SPEC §5.4): the envelope, Standard Webhooks signing and the
//! delivery outbox, all pure.
//!
//! - [`envelope`]: the EventBridge-shaped JSON envelope every event
//!   target receives, and the daemon's event names;
//! - [`signing`]: the `whsec_` key and the `webhook-signature` value;
//! - [`outbox`]: which queued (event, target) pair is sent next, when a
//!   failed one is retried and when one is given up, driven by
//!   `handle(now, input)` / `poll_transmit(now)` / `poll_timeout()` like the
//!   SIP transaction layer. The daemon owns the sockets, files and clock.

pub mod envelope;
pub mod outbox;
pub mod signing;

use std::fmt;
use std::str::FromStr;

use thiserror::Error;

/// The id of an `[[event_targets]]` entry: 1 to 64 characters of
/// `[A-Za-z0-9._-]`, so it is safe in a file name, a metric label and a
/// log line as it is.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct TargetId(String);

#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{0:?} must be 1 to 64 characters of A-Z, a-z, 0-9, '.', '_' and '-'")]
pub struct TargetIdError(pub String);

impl TargetId {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for TargetId {
    type Err = TargetIdError;

    fn from_str(s: &str) -> Result<Self, TargetIdError> {
        let ok = (1..=64).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if ok {
            Ok(TargetId(s.to_owned()))
        } else {
            Err(TargetIdError(s.to_owned()))
        }
    }
}

impl fmt::Display for TargetId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_target_id_is_1_to_64_safe_characters() {
        assert_eq!("ops".parse::<TargetId>().unwrap().as_str(), "ops");
        assert!("a.b_c-D9".parse::<TargetId>().is_ok());
        assert!("x".repeat(64).parse::<TargetId>().is_ok());
        for bad in ["", "a b", "a/b", "é", &"x".repeat(65)] {
            assert_eq!(
                bad.parse::<TargetId>(),
                Err(TargetIdError(bad.to_owned())),
                "{bad:?}"
            );
        }
    }
}
