//! Termination admission (SPEC §2.1, §2.5): may this INVITE from a
//! customer go out to a carrier, for which VC, to which destination and
//! with which caller ID?
//!
//! One pure function, [`admit_termination`], applies the rules in SPEC
//! order and returns the first failure. The caller parses SIP and owns the
//! clock, the RNG and the state ([`AdmissionState`]); this module only
//! decides.

use std::net::IpAddr;
use std::time::{Instant, SystemTime};

use crate::cps::CpsLimiter;
use crate::digest::{
    self, Algorithm, DigestError, DigestResponse, NonceCounter, NonceIssuer, NONCE_SALT_LEN,
};
use crate::resources::{Assignment, Resources, VoiceConnector};
use crate::secret::{DigestCredential, DigestSecret};
use crate::{country, VcId, E164};

use super::Rejection;

/// What admission needs from a termination INVITE, already parsed.
#[derive(Clone, Copy, Debug)]
pub struct TerminationRequest<'a> {
    /// The SIP method (INVITE); digest responses cover it.
    pub method: &'a str,
    /// The dialled number or emergency code.
    pub request_uri_user: &'a str,
    pub request_uri_host: &'a str,
    /// The address the request came from (after any trusted proxy).
    pub source: IpAddr,
    pub over_tls: bool,
    /// Whether the TLS connection the request came on presented a client
    /// certificate that verified against `tls.client_ca_file` (the I/O
    /// shell knows; admission only reads the answer).
    pub client_certificate_verified: bool,
    /// Whether the SDP offer has SRTP (RTP/SAVP with `a=crypto`).
    pub offers_srtp: bool,
    pub from_user: Option<&'a str>,
    /// The P-Asserted-Identity user, which wins over From (RFC 3325).
    pub pai_user: Option<&'a str>,
    /// The raw `Proxy-Authorization` value, if any.
    pub proxy_authorization: Option<&'a str>,
}

/// Daemon settings admission reads.
#[derive(Clone, Copy, Debug)]
pub struct TerminationPolicy<'a> {
    /// `daemon.outbound_host_domain`: VCs answer at `<vc-id>.<domain>`, and
    /// it is the digest realm (see [`crate::digest`]).
    pub outbound_host_domain: &'a str,
    /// Emergency dial strings besides 911 and 933 (SPEC §2.1 item 4), e.g.
    /// `112`; compared exactly with the request-URI user.
    pub emergency_numbers: &'a [String],
    pub nonce_issuer: &'a NonceIssuer,
}

/// What admission remembers between calls.
#[derive(Clone, Debug, Default)]
pub struct AdmissionState {
    pub cps: CpsLimiter,
    pub nonces: NonceCounter,
}

/// The two clocks admission reads: monotonic for CPS, wall for nonces
/// (nonces must stay valid across processes and restarts of the clock).
#[derive(Clone, Copy, Debug)]
pub struct Now {
    pub instant: Instant,
    pub wall: SystemTime,
}

/// How the VC was found (SPEC §2.1 item 1), for logs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdentifiedBy {
    Host,
    SourceAddress,
    Credentials,
}

/// Where the B-leg INVITE goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Destination {
    Number(E164),
    /// An emergency call (SPEC §2.5): `routing_number` replaces the
    /// request-URI user (DNIS method). `None` when the VC has no emergency
    /// settings, or for the test code 933 without a test number: the dialled
    /// code goes to the carrier unchanged, because blocking an emergency call
    /// is worse than letting the carrier route it, and a test call must
    /// never reach the real emergency routing number.
    Emergency {
        dialled: String,
        routing_number: Option<E164>,
        test: bool,
    },
}

impl Destination {
    /// The user part of the B leg's request-URI.
    pub fn request_uri_user(&self) -> String {
        match self {
            Destination::Number(n) => n.to_string(),
            Destination::Emergency {
                routing_number: Some(n),
                ..
            } => n.to_string(),
            Destination::Emergency {
                dialled,
                routing_number: None,
                ..
            } => dialled.clone(),
        }
    }
}

/// An admitted termination call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Admitted {
    pub vc_id: VcId,
    pub identified_by: IdentifiedBy,
    pub destination: Destination,
    /// The caller ID the B leg presents (From and P-Asserted-Identity user).
    pub caller_id: CallerId,
    /// Whether `caller_id` is the VC's `default_phone_number`.
    pub caller_id_overridden: bool,
    /// The digest username that authenticated the call (CDR `SipAuthUser`).
    pub auth_user: Option<String>,
    pub is_emergency: bool,
}

/// The caller ID a call presents to the carrier.
///
/// A routine call always presents a number (the override, or one of the
/// VC's own). An emergency call is never refused for its caller ID, and
/// never given a number nobody dialled: what a PSAP sees is, in order, the
/// VC's `default_phone_number`, the caller's number when it is the VC's or
/// a valid number at all, the VC's `emergency.callback_phone_number`, and
/// else the caller's user part exactly as it was sent (an extension such
/// as `1001` stays `1001`, never `+1001`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CallerId {
    Number(E164),
    /// An emergency caller's user part that is no number, passed on as sent.
    Presented(String),
}

impl CallerId {
    /// The number, when the caller ID is one.
    pub fn number(&self) -> Option<E164> {
        match self {
            CallerId::Number(n) => Some(*n),
            CallerId::Presented(_) => None,
        }
    }
}

impl std::fmt::Display for CallerId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallerId::Number(n) => n.fmt(f),
            CallerId::Presented(u) => f.write_str(u),
        }
    }
}

impl PartialEq<E164> for CallerId {
    fn eq(&self, other: &E164) -> bool {
        self.number() == Some(*other)
    }
}

/// The dial strings SPEC §2.1 item 4 names: 911, and 933 (the US address
/// test service, routed to the test number).
const EMERGENCY: &str = "911";
const EMERGENCY_TEST: &str = "933";

/// Admits or refuses a termination INVITE, checking in SPEC §2.1 order:
///
/// 1. identify the VC: request-URI host `<vc-id>.<outbound_host_domain>`
///    (any case), else the VC whose `cidr_allowed_list` holds the source
///    most specifically (first in file order on a tie), else the first VC
///    with a credential for the digest username. A host in our domain that
///    names no VC is refused, never re-identified by address;
/// 2. termination disabled;
/// 3. source outside a non-empty `cidr_allowed_list`;
/// 4. digest authentication when the VC has credentials;
/// 5. encryption: TLS and SRTP when `require_encryption`; then a verified
///    client certificate when `require_client_certificate` (mutual TLS);
/// 6. emergency numbers skip 7 and 8;
/// 7. calls per second (a token is spent by every request that gets here);
/// 8. destination E.164 (with or without `+`; national formats are not
///    guessed) and its country in `calling_regions` (empty: any);
/// 9. caller ID: `default_phone_number`, else the PAI (else From) user
///    must be a routable inventory number assigned to this VC or a group
///    holding it. An emergency call with a caller ID outside the inventory
///    keeps the presented (E.164) number: it is never blocked for that.
///
/// `salt` feeds a new nonce when the answer is a challenge.
///
/// # Errors
/// The [`Rejection`] of the first rule that fails.
pub fn admit_termination(
    resources: &Resources,
    policy: &TerminationPolicy<'_>,
    state: &mut AdmissionState,
    req: &TerminationRequest<'_>,
    now: Now,
    salt: [u8; NONCE_SALT_LEN],
) -> Result<Admitted, Rejection> {
    let Authenticated {
        vc,
        identified_by,
        auth_user,
    } = authenticate(resources, policy, state, req, now, salt)?;
    let t = &vc.termination;
    // 6 (known before 5): an emergency call.
    let emergency = emergency_destination(vc, req.request_uri_user, policy.emergency_numbers);
    // 5. An emergency call is not refused for want of encryption: a PBX
    // that fell back to UDP or plain RTP still reaches the PSAP. The
    // client certificate, like the digest, is authentication and stays.
    check_encryption(vc, req, emergency.is_some())?;
    let destination = match emergency {
        Some(d) => d,
        None => {
            // 7.
            state
                .cps
                .try_take(&vc.id, t.cps_limit, now.instant)
                .map_err(Rejection::Cps)?;
            // 8.
            let n = E164::parse_lenient(req.request_uri_user).map_err(|_| Rejection::NotE164 {
                destination: req.request_uri_user.to_owned(),
            })?;
            if !t.calling_regions.is_empty() {
                let c = country::country_of(n);
                if !c.is_some_and(|c| t.calling_regions.contains(&c)) {
                    return Err(Rejection::calling_plan(c));
                }
            }
            Destination::Number(n)
        }
    };
    // 9. An emergency call is never blocked by its caller ID (SPEC §2.5),
    // and never given an invented one ([`CallerId`]).
    let is_emergency = matches!(destination, Destination::Emergency { .. });
    let (caller_id, caller_id_overridden) = match t.default_phone_number {
        Some(n) => (CallerId::Number(n), true),
        None => match presented_caller_id(resources, vc, req) {
            Ok(n) => (CallerId::Number(n), false),
            Err(_) if is_emergency => (emergency_caller_id(vc, req), false),
            Err(e) => return Err(e),
        },
    };
    Ok(Admitted {
        vc_id: vc.id.clone(),
        identified_by,
        is_emergency,
        destination,
        caller_id,
        caller_id_overridden,
        auth_user,
    })
}

/// An admitted recording session (SPEC §2.6, SIPREC).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdmittedRecording {
    pub vc_id: VcId,
    pub identified_by: IdentifiedBy,
    /// The digest username that authenticated the session (CDR
    /// `SipAuthUser`).
    pub auth_user: Option<String>,
}

/// Admits or refuses a recording session (SIPREC, RFC 7866, or an INVITE
/// marked record-only) sent to a VC.
///
/// A recording session reaches no carrier: trunkd answers it and only
/// receives media. So it passes the rules that say *who* may send it —
/// [`admit_termination`]'s 1–5: the VC identified the same way, termination
/// not disabled, the source in `cidr_allowed_list`, digest authentication,
/// encryption (with no emergency exemption: a recording is no emergency
/// call) and the client certificate — and none of the rules about the call
/// to be placed (SPEC §2.6): no CPS token is spent, the request-URI user
/// may be absent or any string (no E.164, no calling plan), and the caller
/// ID is not checked (the recording client presents whatever the recorded
/// call had).
///
/// # Errors
/// The [`Rejection`] of the first rule that fails (a challenge included).
pub fn admit_recording(
    resources: &Resources,
    policy: &TerminationPolicy<'_>,
    state: &mut AdmissionState,
    req: &TerminationRequest<'_>,
    now: Now,
    salt: [u8; NONCE_SALT_LEN],
) -> Result<AdmittedRecording, Rejection> {
    let Authenticated {
        vc,
        identified_by,
        auth_user,
    } = authenticate(resources, policy, state, req, now, salt)?;
    check_encryption(vc, req, false)?;
    Ok(AdmittedRecording {
        vc_id: vc.id.clone(),
        identified_by,
        auth_user,
    })
}

/// Who sent a request, once rules 1–4 held.
struct Authenticated<'r> {
    vc: &'r VoiceConnector,
    identified_by: IdentifiedBy,
    auth_user: Option<String>,
}

/// Rules 1–4 of [`admit_termination`]: the VC, termination enabled, the
/// source address, digest authentication.
fn authenticate<'r>(
    resources: &'r Resources,
    policy: &TerminationPolicy<'_>,
    state: &mut AdmissionState,
    req: &TerminationRequest<'_>,
    now: Now,
    salt: [u8; NONCE_SALT_LEN],
) -> Result<Authenticated<'r>, Rejection> {
    let realm = policy.outbound_host_domain;
    let challenge = |credentials: &[DigestCredential], stale: bool, cause: Option<DigestError>| {
        Rejection::Challenge {
            stale,
            proxy_authenticate: policy.nonce_issuer.challenges_for(
                realm,
                &offered(credentials),
                stale,
                now.wall,
                salt,
            ),
            cause,
        }
    };
    let auth = req.proxy_authorization.map(DigestResponse::parse);

    // 1. Which VC.
    let (vc, identified_by) = match identify(resources, policy, req, auth.as_ref()) {
        Identity::Found(vc, by) => (vc, by),
        Identity::Unknown => return Err(Rejection::UnknownVoiceConnector),
        Identity::NeedsCredentials(cause) => return Err(challenge(&[], false, cause)),
    };
    let t = &vc.termination;
    // 2.
    if t.disabled {
        return Err(Rejection::TerminationDisabled);
    }
    // 3.
    if !t.cidr_allowed_list.is_empty()
        && !t.cidr_allowed_list.iter().any(|n| n.contains(&req.source))
    {
        return Err(Rejection::SourceNotAllowed);
    }
    // 4.
    let auth_user = if t.credentials.is_empty() {
        None
    } else {
        let auth = match auth {
            None => return Err(challenge(&t.credentials, false, None)),
            Some(Err(e)) => return Err(challenge(&t.credentials, false, Some(e))),
            Some(Ok(a)) => a,
        };
        let verified = digest::verify(
            policy.nonce_issuer,
            &t.credentials,
            &auth,
            req.method,
            realm,
            now.wall,
            &mut state.nonces,
        );
        match verified {
            Ok(c) => Some(c.username.clone()),
            Err(
                DigestError::UnknownUser | DigestError::WrongResponse | DigestError::Unsupported(_),
            ) => return Err(Rejection::AuthFailed),
            Err(e @ (DigestError::Stale | DigestError::Replay)) => {
                return Err(challenge(&t.credentials, true, Some(e)))
            }
            Err(e) => return Err(challenge(&t.credentials, false, Some(e))),
        }
    };
    Ok(Authenticated {
        vc,
        identified_by,
        auth_user,
    })
}

/// Rule 5: TLS and SRTP when the VC requires encryption (unless
/// `exempt`: an emergency call), then a verified client certificate when
/// it requires one (never exempt: it is authentication).
fn check_encryption(
    vc: &VoiceConnector,
    req: &TerminationRequest<'_>,
    exempt: bool,
) -> Result<(), Rejection> {
    if vc.require_encryption && !exempt && !(req.over_tls && req.offers_srtp) {
        return Err(Rejection::EncryptionRequired);
    }
    if vc.termination.require_client_certificate
        && !(req.over_tls && req.client_certificate_verified)
    {
        return Err(Rejection::ClientCertificateRequired);
    }
    Ok(())
}

enum Identity<'r> {
    Found(&'r VoiceConnector, IdentifiedBy),
    Unknown,
    /// No VC by host or address, and no usable credentials to find one by:
    /// challenge, so a PBX that is known only by its username can answer.
    NeedsCredentials(Option<DigestError>),
}

/// The VC whose `cidr_allowed_list` holds `source` most specifically (the
/// longest prefix; the first in file order on a tie).
pub fn voice_connector_by_source(resources: &Resources, source: IpAddr) -> Option<&VoiceConnector> {
    resources
        .voice_connectors()
        .iter()
        .filter_map(|vc| {
            let best = vc
                .termination
                .cidr_allowed_list
                .iter()
                .filter(|n| n.contains(&source))
                .map(|n| n.prefix_len())
                .max();
            best.map(|len| (vc, len))
        })
        // max_by_key keeps the last maximum; reverse so the first in file
        // order wins a tie.
        .rev()
        .max_by_key(|&(_, len)| len)
        .map(|(vc, _)| vc)
}

/// The VC a request names by host, `<vc-id>.<outbound_host_domain>`, or by
/// source address: what admission identifies before credentials.
pub fn voice_connector_for<'r>(
    resources: &'r Resources,
    outbound_host_domain: &str,
    host: &str,
    source: IpAddr,
) -> Option<&'r VoiceConnector> {
    match vc_label(host, outbound_host_domain) {
        Some(label) => resources.voice_connector(&label),
        None => voice_connector_by_source(resources, source),
    }
}

fn identify<'r>(
    resources: &'r Resources,
    policy: &TerminationPolicy<'_>,
    req: &TerminationRequest<'_>,
    auth: Option<&Result<DigestResponse, DigestError>>,
) -> Identity<'r> {
    if let Some(label) = vc_label(req.request_uri_host, policy.outbound_host_domain) {
        return match resources.voice_connector(&label) {
            Some(vc) => Identity::Found(vc, IdentifiedBy::Host),
            None => Identity::Unknown,
        };
    }
    if let Some(vc) = voice_connector_by_source(resources, req.source) {
        return Identity::Found(vc, IdentifiedBy::SourceAddress);
    }
    let any_credentials = resources
        .voice_connectors()
        .iter()
        .any(|vc| !vc.termination.credentials.is_empty());
    match auth {
        Some(Ok(a)) => {
            // A nonce we did not issue gets a challenge whatever the
            // username, so a forged nonce cannot probe usernames.
            if let Err(e) = policy
                .nonce_issuer
                .open(&a.nonce, policy.outbound_host_domain)
            {
                return Identity::NeedsCredentials(Some(e));
            }
            resources
                .voice_connectors()
                .iter()
                .find(|vc| {
                    vc.termination
                        .credentials
                        .iter()
                        .any(|c| c.username == a.username)
                })
                .map_or(Identity::Unknown, |vc| {
                    Identity::Found(vc, IdentifiedBy::Credentials)
                })
        }
        Some(Err(e)) if any_credentials => Identity::NeedsCredentials(Some(e.clone())),
        None if any_credentials => Identity::NeedsCredentials(None),
        _ => Identity::Unknown,
    }
}

/// The VC label of `host` when it is `<label>.<domain>` (any case, with or
/// without a trailing dot).
fn vc_label(host: &str, domain: &str) -> Option<String> {
    let host = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
    let domain = domain
        .strip_suffix('.')
        .unwrap_or(domain)
        .to_ascii_lowercase();
    let label = host.strip_suffix(&domain)?.strip_suffix('.')?;
    (!label.is_empty()).then(|| label.to_owned())
}

/// The algorithms to challenge with: both, unless every credential is an
/// HA1 of one family, which can verify only that family.
fn offered(credentials: &[DigestCredential]) -> Vec<Algorithm> {
    let all = |f: fn(&DigestSecret) -> bool| {
        !credentials.is_empty() && credentials.iter().all(|c| f(&c.secret))
    };
    if all(|s| matches!(s, DigestSecret::Ha1Md5(_))) {
        vec![Algorithm::Md5]
    } else if all(|s| matches!(s, DigestSecret::Ha1Sha256(_))) {
        vec![Algorithm::Sha256]
    } else {
        Algorithm::OFFERED.to_vec()
    }
}

fn emergency_destination(
    vc: &VoiceConnector,
    dialled: &str,
    extra: &[String],
) -> Option<Destination> {
    let test = dialled == EMERGENCY_TEST;
    if !(test || dialled == EMERGENCY || extra.iter().any(|e| e == dialled)) {
        return None;
    }
    let routing_number = vc.emergency.as_ref().and_then(|e| {
        if test {
            e.test_phone_number
        } else {
            Some(e.emergency_phone_number)
        }
    });
    Some(Destination::Emergency {
        dialled: dialled.to_owned(),
        routing_number,
        test,
    })
}

/// The caller ID of an emergency call whose presented number is not the
/// VC's: a valid number is kept (the PSAP sees what the caller sent), an
/// extension or other user part gets the VC's callback number, or goes
/// out untouched when there is none.
fn emergency_caller_id(vc: &VoiceConnector, req: &TerminationRequest<'_>) -> CallerId {
    let presented = req.pai_user.or(req.from_user);
    if let Some(n) = presented
        .and_then(|p| E164::parse_lenient(p).ok())
        .filter(|n| country::is_valid_number(*n))
    {
        return CallerId::Number(n);
    }
    if let Some(n) = vc.emergency.as_ref().and_then(|e| e.callback_phone_number) {
        return CallerId::Number(n);
    }
    CallerId::Presented(presented.unwrap_or("anonymous").to_owned())
}

/// SPEC §2.1 caller-ID rule without an override: the presented number must
/// be ours to present (SPEC §7: a number places calls only while assigned).
fn presented_caller_id(
    resources: &Resources,
    vc: &VoiceConnector,
    req: &TerminationRequest<'_>,
) -> Result<E164, Rejection> {
    let presented = req.pai_user.or(req.from_user);
    let refuse = || Rejection::CallerId {
        presented: presented.map(str::to_owned),
    };
    let n = presented
        .and_then(|p| E164::parse_lenient(p).ok())
        .ok_or_else(refuse)?;
    let number = resources
        .number(n)
        .filter(|num| num.is_routable())
        .ok_or_else(refuse)?;
    let ours = match &number.assignment {
        Assignment::VoiceConnector(id) => *id == vc.id,
        Assignment::VoiceConnectorGroup(g) => resources
            .voice_connector_group(g.as_str())
            .is_some_and(|g| {
                g.voice_connector_items
                    .iter()
                    .any(|i| i.voice_connector_id == vc.id)
            }),
        Assignment::Unassigned | Assignment::SipRule(_) => false,
    };
    if ours {
        Ok(n)
    } else {
        Err(refuse())
    }
}

#[cfg(test)]
#[path = "termination_tests.rs"]
mod tests;
