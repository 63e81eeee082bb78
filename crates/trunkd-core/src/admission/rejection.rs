//! Why a termination call is refused, and how that reads on the wire and in
//! metrics (SPEC §2.1: "each failure with a precise SIP response and a
//! counted metric").
//!
//! | rule (SPEC §2.1 order)           | status | reason phrase                                   | `metric_reason`           |
//! |----------------------------------|--------|-------------------------------------------------|---------------------------|
//! | no VC found                      | 403    | `Forbidden`                                     | `unknown_voice_connector` |
//! | termination disabled             | 403    | `Termination Disabled`                          | `termination_disabled`    |
//! | source not in `cidr_allowed_list`| 403    | `Source Address Not Allowed`                    | `cidr`                    |
//! | no/invalid/stale credentials     | 407    | `Proxy Authentication Required`                 | `auth_challenge`          |
//! | wrong username or password       | 403    | `Forbidden`                                     | `auth_failed`             |
//! | encryption required, no TLS/SRTP | 488    | `Encryption Required`                           | `encryption_required`     |
//! | no verified client certificate   | 403    | `Client Certificate Required`                   | `client_certificate`      |
//! | calls per second exceeded        | 503    | `Calls Per Second Limit Exceeded`               | `cps`                     |
//! | destination not E.164            | 404    | `Not E.164`                                     | `not_e164`                |
//! | country not in calling plan      | 403    | `Destination country XX not in calling plan`    | `calling_plan`            |
//! | country unknown, plan restricted | 403    | `Destination country unknown, not in calling plan` | `calling_plan`         |
//! | caller ID not assigned           | 403    | `Caller ID not assigned`                        | `caller_id`               |
//!
//! A missing client certificate is 403, not 488: it is a failed
//! authentication of the connection, which no change of the SDP offer can
//! fix (488 invites the caller to retry with another offer).
//!
//! An unknown VC or username and a wrong password read the same on the
//! wire (`403 Forbidden`) so nobody can probe which VCs or users exist;
//! only the metric tells them apart.

use std::fmt;

use crate::cps::RetryAfter;
use crate::digest::DigestError;
use crate::Country;

/// A refused termination call.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Rejection {
    UnknownVoiceConnector,
    TerminationDisabled,
    SourceNotAllowed,
    /// Send 407 with one `Proxy-Authenticate` header per value.
    Challenge {
        stale: bool,
        proxy_authenticate: Vec<String>,
        /// What was wrong with the credentials sent, if any were.
        cause: Option<DigestError>,
    },
    AuthFailed,
    EncryptionRequired,
    /// `require_client_certificate` and the connection presented no
    /// certificate verified by `tls.client_ca_file` (or was not TLS).
    ClientCertificateRequired,
    Cps(RetryAfter),
    NotE164 {
        destination: String,
    },
    CallingPlan {
        country: Option<Country>,
        reason: String,
    },
    CallerId {
        /// The caller ID as presented (PAI, else From user), if any.
        presented: Option<String>,
    },
}

impl Rejection {
    /// A calling-plan refusal naming the country (or saying it is unknown).
    pub fn calling_plan(country: Option<Country>) -> Self {
        let reason = match country {
            Some(c) => format!("Destination country {c} not in calling plan"),
            None => "Destination country unknown, not in calling plan".to_owned(),
        };
        Rejection::CallingPlan { country, reason }
    }

    /// The SIP status code of the final response.
    pub fn status(&self) -> u16 {
        match self {
            Rejection::Challenge { .. } => 407,
            Rejection::EncryptionRequired => 488,
            Rejection::Cps(_) => 503,
            Rejection::NotE164 { .. } => 404,
            Rejection::UnknownVoiceConnector
            | Rejection::TerminationDisabled
            | Rejection::SourceNotAllowed
            | Rejection::AuthFailed
            | Rejection::ClientCertificateRequired
            | Rejection::CallingPlan { .. }
            | Rejection::CallerId { .. } => 403,
        }
    }

    /// The reason phrase of the final response (see the module table).
    pub fn reason_phrase(&self) -> &str {
        match self {
            Rejection::UnknownVoiceConnector | Rejection::AuthFailed => "Forbidden",
            Rejection::TerminationDisabled => "Termination Disabled",
            Rejection::SourceNotAllowed => "Source Address Not Allowed",
            Rejection::Challenge { .. } => "Proxy Authentication Required",
            Rejection::EncryptionRequired => "Encryption Required",
            Rejection::ClientCertificateRequired => "Client Certificate Required",
            Rejection::Cps(_) => "Calls Per Second Limit Exceeded",
            Rejection::NotE164 { .. } => "Not E.164",
            Rejection::CallingPlan { reason, .. } => reason,
            Rejection::CallerId { .. } => "Caller ID not assigned",
        }
    }

    /// The `reason` label of the rejection counter (snake_case, bounded).
    pub fn metric_reason(&self) -> &'static str {
        match self {
            Rejection::UnknownVoiceConnector => "unknown_voice_connector",
            Rejection::TerminationDisabled => "termination_disabled",
            Rejection::SourceNotAllowed => "cidr",
            Rejection::Challenge { .. } => "auth_challenge",
            Rejection::AuthFailed => "auth_failed",
            Rejection::EncryptionRequired => "encryption_required",
            Rejection::ClientCertificateRequired => "client_certificate",
            Rejection::Cps(_) => "cps",
            Rejection::NotE164 { .. } => "not_e164",
            Rejection::CallingPlan { .. } => "calling_plan",
            Rejection::CallerId { .. } => "caller_id",
        }
    }

    /// The `Retry-After` seconds of a CPS refusal.
    pub fn retry_after(&self) -> Option<u32> {
        match self {
            Rejection::Cps(r) => Some(r.seconds()),
            _ => None,
        }
    }

    /// The `Proxy-Authenticate` values of a 407 (empty otherwise).
    pub fn proxy_authenticate(&self) -> &[String] {
        match self {
            Rejection::Challenge {
                proxy_authenticate, ..
            } => proxy_authenticate,
            _ => &[],
        }
    }

    /// Whether this refusal counts as a throttle (SPEC §2.1, §5.5
    /// `Throttles`).
    pub fn is_throttle(&self) -> bool {
        matches!(self, Rejection::Cps(_))
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.status(), self.reason_phrase())
    }
}

impl std::error::Error for Rejection {}

/// Why an origination call is refused (SPEC §2.2).
///
/// | case                       | status | reason phrase | `metric_reason`     |
/// |----------------------------|--------|---------------|---------------------|
/// | source is no carrier's     | 403    | `Forbidden`   | `unknown_carrier`   |
/// | called number not routable | 404    | `Not Found`   | `number_not_found`  |
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum OriginationRejection {
    UnknownCarrier,
    NotFound,
}

impl OriginationRejection {
    pub fn status(self) -> u16 {
        match self {
            OriginationRejection::UnknownCarrier => 403,
            OriginationRejection::NotFound => 404,
        }
    }

    pub fn reason_phrase(self) -> &'static str {
        match self {
            OriginationRejection::UnknownCarrier => "Forbidden",
            OriginationRejection::NotFound => "Not Found",
        }
    }

    pub fn metric_reason(self) -> &'static str {
        match self {
            OriginationRejection::UnknownCarrier => "unknown_carrier",
            OriginationRejection::NotFound => "number_not_found",
        }
    }
}

impl fmt::Display for OriginationRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.status(), self.reason_phrase())
    }
}

impl std::error::Error for OriginationRejection {}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn table() {
        let us: Country = "US".parse().unwrap();
        let cases = [
            (
                Rejection::UnknownVoiceConnector,
                "403 Forbidden",
                "unknown_voice_connector",
            ),
            (
                Rejection::TerminationDisabled,
                "403 Termination Disabled",
                "termination_disabled",
            ),
            (
                Rejection::SourceNotAllowed,
                "403 Source Address Not Allowed",
                "cidr",
            ),
            (
                Rejection::Challenge {
                    stale: false,
                    proxy_authenticate: vec!["Digest x".into()],
                    cause: None,
                },
                "407 Proxy Authentication Required",
                "auth_challenge",
            ),
            (Rejection::AuthFailed, "403 Forbidden", "auth_failed"),
            (
                Rejection::EncryptionRequired,
                "488 Encryption Required",
                "encryption_required",
            ),
            (
                Rejection::Cps(RetryAfter(Duration::from_millis(1500))),
                "503 Calls Per Second Limit Exceeded",
                "cps",
            ),
            (
                Rejection::NotE164 {
                    destination: "alice".into(),
                },
                "404 Not E.164",
                "not_e164",
            ),
            (
                Rejection::calling_plan(Some(us)),
                "403 Destination country US not in calling plan",
                "calling_plan",
            ),
            (
                Rejection::calling_plan(None),
                "403 Destination country unknown, not in calling plan",
                "calling_plan",
            ),
            (
                Rejection::CallerId { presented: None },
                "403 Caller ID not assigned",
                "caller_id",
            ),
        ];
        for (r, wire, metric) in cases {
            assert_eq!(r.to_string(), wire);
            assert_eq!(r.metric_reason(), metric);
            assert_eq!(r.is_throttle(), metric == "cps");
            assert_eq!(r.retry_after().is_some(), metric == "cps");
            assert_eq!(
                r.proxy_authenticate().is_empty(),
                metric != "auth_challenge"
            );
        }
        assert_eq!(
            Rejection::Cps(RetryAfter(Duration::from_millis(1500))).retry_after(),
            Some(2)
        );
        assert_eq!(
            OriginationRejection::UnknownCarrier.to_string(),
            "403 Forbidden"
        );
        assert_eq!(OriginationRejection::NotFound.to_string(), "404 Not Found");
        assert_eq!(
            OriginationRejection::NotFound.metric_reason(),
            "number_not_found"
        );
    }
}
