//! The INVITE policy: what to do with a new INVITE (no To tag, no call with
//! its Call-ID), as one pure decision.
//!
//! [`decide`] runs the whole admission of SPEC §2 in order — the daemon's
//! caps, loop detection, origination (carrier → number → VC or group) or
//! termination (VC identification, CIDR, digest, encryption, CPS, calling
//! plan, caller ID), then routing into a plan of hops — and returns an
//! [`InviteDecision`]: refuse with a status and reason, challenge for
//! credentials, or admit with a plan and the kind of call to start: a
//! bridge, a recording session (SPEC §2.6, [`is_recording_session`])
//! that trunkd answers itself, or an application call (SPEC §6) to a
//! number on a SIP rule, when the engine has a driver for those
//! ([`InviteContext::applications`]; refused 480 otherwise). It
//! touches no socket, clock or random source: the engine passes `now`, the
//! admission state (CPS buckets, nonce counters) and a seeded generator,
//! and counts and answers from the decision, in one place.

use std::net::{IpAddr, SocketAddr};
use std::time::{Instant, SystemTime};

use trunkd_b2bua::{Hop, Peer, TxTransport};
use trunkd_config::Config;
use trunkd_core::admission::{
    admit_recording, admit_termination, called_number, origination_source, origination_target,
    AdmissionState, Now, OriginationTarget, Rejection, TerminationPolicy, TerminationRequest,
};
use trunkd_core::cdr::Direction;
use trunkd_core::digest::NonceIssuer;
use trunkd_core::routing::rfc3263::DnsLookup;
use trunkd_core::routing::{origination_plan, termination_plan, RouteHealthTable};
use trunkd_core::{Host, Route, RuleId, SmaId, SrtpPolicy, VcId};
use trunkd_sip::Request;

use crate::resolver::HostCache;

/// The calls in progress the caps are checked against.
#[derive(Debug, Clone, Copy, Default)]
pub struct Load {
    /// Calls in progress in the whole daemon.
    pub calls: usize,
    /// Calls in progress from the INVITE's source address.
    pub calls_from_source: usize,
}

/// What the policy reads besides the request; all of it is a snapshot or
/// state the engine owns.
pub struct InviteContext<'a> {
    pub config: &'a Config,
    pub hosts: &'a HostCache,
    pub health: &'a RouteHealthTable,
    pub nonce_issuer: &'a NonceIssuer,
    pub now: Instant,
    pub wall: SystemTime,
    pub load: Load,
    /// Application calls can be driven (a driver is registered): a
    /// carrier call to a number on a SIP rule is admitted as
    /// [`CallKind::Application`]; without, it is refused 480 (the one
    /// place that choice is made).
    pub applications: bool,
}

/// A new INVITE and what the transport knows of its sender.
pub struct NewInvite<'a> {
    pub request: &'a Request,
    pub peer: Peer,
    /// TLS with a client certificate that verified (mutual TLS).
    pub client_verified: bool,
}

/// The call actor the engine starts for an admitted INVITE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallKind {
    /// Two legs: the A leg is bridged to a B leg trunkd places through
    /// a plan of hops (termination and origination).
    Bridge,
    /// One leg trunkd answers itself and only receives media on (SIPREC,
    /// RFC 7866, or an INVITE marked record-only; SPEC §2.6): recorded,
    /// never forwarded. The plan is empty.
    Recording,
    /// One leg trunkd answers itself and drives as a SIP media
    /// application (SPEC §6): it plays, listens and records as its driver
    /// asks. A carrier call to a number on SIP rule `rule_id`, whose first
    /// target is `sma_id`. The plan is empty.
    Application { sma_id: SmaId, rule_id: RuleId },
}

/// The engine's answer to a new INVITE.
#[derive(Debug)]
pub enum InviteDecision {
    /// A final non-2xx answer; the call did not happen.
    Refuse(Refusal),
    /// 407 with these `Proxy-Authenticate` values: a step of admission,
    /// neither an attempt nor a failure.
    Challenge {
        vc: Option<VcId>,
        proxy_authenticate: Vec<String>,
    },
    /// Start a call.
    Admit(Box<Admission>),
}

/// Why and how an INVITE is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: u16,
    pub reason: String,
    /// `Retry-After` seconds (503s).
    pub retry_after: Option<u32>,
    /// The text of a `Warning: 399` header (RFC 3261 §20.43) saying
    /// precisely what was wrong with the request (a SIPREC metadata part).
    pub warning: Option<String>,
    /// The label of `admission_rejected_total` and friends.
    pub metric_reason: &'static str,
    /// What the refusal is counted against.
    pub scope: RefusalScope,
}

/// Where a refusal is counted and recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefusalScope {
    /// Before admission (the daemon's caps, a bad request): counted in
    /// `sip_requests_refused_total` only, no call attempt.
    Gate,
    /// A call attempt that admission refused: an attempt and a failure of
    /// its VC (if one was found) in `direction`, with a CDR when the VC is
    /// known (SPEC §5.1: every call that reached admission has one).
    Call {
        direction: Direction,
        vc: Option<VcId>,
        /// The caller and the called number as presented, for the CDR.
        source_number: String,
        destination_number: String,
        /// Failed digest credentials: counted per source for blocking.
        auth_failed: bool,
        throttled: bool,
    },
}

/// An admitted call: everything the engine needs to start its actor.
#[derive(Debug)]
pub struct Admission {
    pub kind: CallKind,
    pub direction: Direction,
    /// The VC the call is recorded under until a hop of another VC (a
    /// group's failover) carries it.
    pub vc: Option<VcId>,
    /// The B leg's Request-URI user.
    pub b_user: String,
    /// The B leg's caller ID (From and P-Asserted-Identity user).
    pub caller: String,
    /// The B leg's display name (the caller number's `calling_name`).
    pub caller_name: Option<String>,
    /// The digest user that authenticated the call (CDR `SipAuthUser`).
    pub auth_user: Option<String>,
    /// The caller as the CDR names it (`SourcePhoneNumber`).
    pub source_number: String,
    pub plan: Vec<PlannedHop>,
    /// What SRTP the A leg's peer is held to.
    pub a_srtp: SrtpPolicy,
    pub emergency: bool,
}

/// One hop of the plan and the route it came from (for route health).
#[derive(Debug, Clone)]
pub struct PlannedHop {
    pub hop: Hop,
    pub route: Route,
}

/// A small seeded generator (xorshift64): weights and salts.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }

    pub fn next_u32(&mut self) -> u32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 32) as u32
    }
}

fn refuse_gate(status: u16, reason: &str, metric_reason: &'static str) -> InviteDecision {
    InviteDecision::Refuse(Refusal {
        status,
        reason: reason.to_owned(),
        retry_after: (status == 503).then_some(5),
        warning: None,
        metric_reason,
        scope: RefusalScope::Gate,
    })
}

/// Decides what to do with a new INVITE (SPEC §2.1, §2.2, §8 caps).
pub fn decide(
    ctx: &InviteContext<'_>,
    state: &mut AdmissionState,
    rng: &mut Rng,
    invite: &NewInvite<'_>,
) -> InviteDecision {
    let req = invite.request;
    if !req.uri.is_sip() {
        return refuse_gate(416, "Unsupported URI Scheme", "unsupported_uri");
    }
    let settings = &ctx.config.settings;
    let security = &settings.security;
    // Bounded memory for dialogs (SPEC §8): no new call beyond the caps,
    // overall and per source address.
    if ctx.load.calls >= security.max_calls {
        return refuse_gate(503, "Too Many Calls", "call_cap");
    }
    if security.max_calls_per_source > 0
        && ctx.load.calls_from_source >= security.max_calls_per_source
    {
        return refuse_gate(503, "Too Many Calls", "source_call_cap");
    }
    if matches!(req.headers.max_forwards(), Ok(Some(m)) if m.0 == 0) {
        return refuse_gate(483, "Too Many Hops", "too_many_hops");
    }
    let ruri_host = trunkd_b2bua::leg::request_uri_host(req).unwrap_or_default();
    let domain = &settings.daemon.outbound_host_domain;
    let to_our_domain = ruri_host
        .strip_suffix(domain.as_str())
        .is_some_and(|head| head.ends_with('.'));
    let carrier = if to_our_domain {
        None
    } else {
        origination_source(&ctx.config.resources, invite.peer.addr.ip())
    };
    match carrier {
        Some(_) => originate(ctx, rng, invite, &ruri_host),
        // A recording session goes to a VC, never comes from a carrier.
        None if is_recording_session(req) => record(ctx, state, rng, invite, &ruri_host),
        None => terminate(ctx, state, rng, invite, &ruri_host),
    }
}

/// The header (and Request-URI parameter) that marks an INVITE as a
/// recording-only session without SIPREC metadata (SPEC §2.6).
pub const RECORD_ONLY: &str = "X-Voice-Connector-Record-Only";

/// Whether an INVITE asks for a recording session (SPEC §2.6): a
/// multipart body with SIPREC metadata (RFC 7866 §9:
/// `application/rs-metadata+xml`, or the `application/rs-metadata` of
/// earlier drafts that recorders still send), or `X-Voice-Connector-Record-Only: true`
/// as a header or a Request-URI parameter. `Require: siprec` alone does
/// not decide (it comes with the metadata), and it is never refused: the
/// bridge passes option tags end to end and trunkd answers 420 to none.
pub fn is_recording_session(req: &Request) -> bool {
    let yes = |v: &[u8]| v.trim_ascii().eq_ignore_ascii_case(b"true");
    if req.headers.get_all(RECORD_ONLY).any(|v| yes(v)) {
        return true;
    }
    if req
        .uri
        .as_sip()
        .and_then(|u| u.params.value(RECORD_ONLY))
        .is_some_and(|v| yes(v))
    {
        return true;
    }
    let Some(ct) = req.headers.get("Content-Type") else {
        return false;
    };
    trunkd_sip::Multipart::parse_with(ct, &req.body).is_ok_and(|m| {
        m.parts().iter().any(|p| {
            p.is_type("application", "rs-metadata+xml") || p.is_type("application", "rs-metadata")
        })
    })
}

/// The `metric_reason` of a recording session refused for its metadata.
pub const SIPREC_METADATA: &str = "siprec_metadata";

/// The SIPREC metadata of a recording session's INVITE, checked against
/// its SDP: `Ok(None)` for a record-only INVITE without a metadata part;
/// an error naming the problem for a metadata part that is not XML, is
/// too large, describes no participant or no stream, or names a stream
/// label that no m-line of the SDP carries.
pub fn siprec_metadata(
    req: &Request,
) -> Result<Option<trunkd_siprec::Metadata>, trunkd_siprec::MetadataError> {
    let Some(part) = metadata_part(req) else {
        return Ok(None);
    };
    let meta = trunkd_siprec::parse(&part)?;
    meta.check_complete()?;
    let sdp = crate::engine::session_sdp(req);
    if sdp.is_empty() {
        return Err(trunkd_siprec::MetadataError::NoSdp);
    }
    meta.check_labels(&trunkd_siprec::sdp_labels(&sdp))?;
    Ok(Some(meta))
}

/// The body of a request's metadata part (`application/rs-metadata+xml`
/// or the drafts' `application/rs-metadata`), as received.
pub fn metadata_part(req: &Request) -> Option<bytes::Bytes> {
    let ct = req.headers.get("Content-Type")?;
    let m = trunkd_sip::Multipart::parse_with(ct, &req.body).ok()?;
    let part = m.parts().iter().find(|p| {
        p.is_type("application", "rs-metadata+xml") || p.is_type("application", "rs-metadata")
    })?;
    Some(part.body().clone())
}

/// Characters of a reason a `Warning` carries at most: the reason may
/// quote the request (a namespace, an element name).
const WARNING_MAX_CHARS: usize = 200;

/// A `Warning` header value (RFC 3261 §20.43: code 399, miscellaneous)
/// carrying `text` as a quoted string: control characters dropped, at
/// most [`WARNING_MAX_CHARS`] of it.
pub fn warning_value(text: &str) -> String {
    let quoted: String = text
        .chars()
        .filter(|c| !c.is_control())
        .take(WARNING_MAX_CHARS)
        .flat_map(|c| match c {
            '"' | '\\' => vec!['\\', c],
            c => vec![c],
        })
        .collect();
    format!("399 trunkd \"{quoted}\"")
}

/// Origination: carrier → customer (SPEC §2.2).
fn originate(
    ctx: &InviteContext<'_>,
    rng: &mut Rng,
    invite: &NewInvite<'_>,
    ruri_host: &str,
) -> InviteDecision {
    let req = invite.request;
    let resources = &ctx.config.resources;
    let ruri_user = trunkd_b2bua::leg::request_uri_user(req).unwrap_or_default();
    let to_user = trunkd_b2bua::leg::header_user(&req.headers, "To");
    let called = called_number(Some(&ruri_user), to_user.as_deref());
    let called_text = called.map(|n| n.to_string()).unwrap_or(ruri_user);
    let caller = trunkd_b2bua::leg::header_user(&req.headers, "P-Asserted-Identity")
        .or_else(|| trunkd_b2bua::leg::header_user(&req.headers, "From"))
        .unwrap_or_else(|| "anonymous".into());
    let target = origination_target(resources, &called_text, ruri_host);
    let first_vc = match &target {
        OriginationTarget::VoiceConnector(v) => Some(v.clone()),
        OriginationTarget::Group(g) => resources.voice_connector_group(g.as_str()).and_then(|g| {
            g.voice_connector_items
                .first()
                .map(|i| i.voice_connector_id.clone())
        }),
        _ => None,
    };
    let refuse = |status: u16, reason: &str, metric_reason: &'static str| {
        InviteDecision::Refuse(Refusal {
            status,
            reason: reason.to_owned(),
            retry_after: None,
            warning: None,
            metric_reason,
            scope: RefusalScope::Call {
                direction: Direction::Inbound,
                vc: first_vc.clone(),
                source_number: caller.clone(),
                destination_number: called_text.clone(),
                auth_failed: false,
                throttled: false,
            },
        })
    };
    if let OriginationTarget::SipRule(rule_id) = &target {
        // The rule's first target by priority (the managed service tries
        // further targets in other regions; trunkd is one region).
        let sma_id = resources
            .sip_rules()
            .iter()
            .find(|r| &r.id == rule_id && !r.disabled)
            .and_then(|r| r.target_applications.first())
            .map(|t| t.sip_media_application_id.clone());
        return match sma_id {
            Some(sma_id) if ctx.applications => InviteDecision::Admit(Box::new(Admission {
                kind: CallKind::Application {
                    sma_id,
                    rule_id: rule_id.clone(),
                },
                direction: Direction::Inbound,
                vc: None,
                b_user: called_text,
                source_number: caller.clone(),
                caller,
                caller_name: None,
                auth_user: None,
                plan: Vec::new(),
                a_srtp: SrtpPolicy::for_hop(transport_of(invite.peer), false, None),
                emergency: false,
            })),
            // No driver (the daemon until the webhook driver exists), or
            // a rule with no application to run.
            _ => refuse(
                480,
                "SIP Media Applications Not Available",
                "sip_media_application",
            ),
        };
    }
    let mut next = || rng.next_u32();
    let legs = origination_plan(resources, &target, &mut next, ctx.health, ctx.now);
    let mut plan: Vec<PlannedHop> = Vec::new();
    for leg in legs {
        let vc = leg.vc_id.clone();
        let required = resources
            .voice_connector(vc.as_str())
            .is_some_and(|v| v.require_encryption);
        for r in leg.routes {
            plan.extend(hops(
                ctx.hosts,
                &r,
                &mut next,
                &HopOwner {
                    carrier: None,
                    vc: Some(vc.clone()),
                    credentials: None,
                    srtp: |t| SrtpPolicy::for_hop(t, required, r.srtp),
                },
            ));
        }
    }
    let plan = demote_held_targets(plan, ctx.health, ctx.now);
    if plan.is_empty() {
        return refuse(404, "Not Found", "not_found");
    }
    InviteDecision::Admit(Box::new(Admission {
        kind: CallKind::Bridge,
        direction: Direction::Inbound,
        vc: first_vc,
        b_user: called_text,
        source_number: caller.clone(),
        caller,
        caller_name: None,
        auth_user: None,
        plan,
        a_srtp: SrtpPolicy::for_hop(transport_of(invite.peer), false, None),
        emergency: false,
    }))
}

/// Termination: customer → carrier (SPEC §2.1).
fn terminate(
    ctx: &InviteContext<'_>,
    state: &mut AdmissionState,
    rng: &mut Rng,
    invite: &NewInvite<'_>,
    ruri_host: &str,
) -> InviteDecision {
    let resources = &ctx.config.resources;
    let domain = &ctx.config.settings.daemon.outbound_host_domain;
    let c = CustomerRequest::read(invite);
    let (ruri_user, from_user, source) = (c.ruri_user.clone(), c.from_user.clone(), c.source);
    let (policy, now, salt) = c.admission_inputs(ctx, rng);
    let admitted = admit_termination(
        resources,
        &policy,
        state,
        &c.termination_request(invite, ruri_host, true),
        now,
        salt,
    );
    let admitted = match admitted {
        Ok(a) => a,
        Err(rej) => {
            let vc = vc_for(resources, domain, ruri_host, source);
            return termination_refused(&rej, vc, from_user.unwrap_or_default(), ruri_user);
        }
    };
    let Some(vc) = resources.voice_connector(admitted.vc_id.as_str()) else {
        // Admission found the VC in this same snapshot; a VC it names and
        // the snapshot lacks is a bug, answered rather than left hanging.
        return refused_call(
            Refusal {
                status: 500,
                reason: "Server Internal Error".to_owned(),
                retry_after: None,
                warning: None,
                metric_reason: "internal",
                scope: RefusalScope::Gate,
            },
            Some(admitted.vc_id.clone()),
            from_user.unwrap_or_default(),
            ruri_user,
            false,
            false,
        );
    };
    let mut next = || rng.next_u32();
    let planned = termination_plan(resources, vc, &mut next, ctx.health, ctx.now);
    let mut plan: Vec<PlannedHop> = Vec::new();
    for h in &planned {
        let credentials = h
            .credentials
            .map(|c| (c.username.clone(), c.password.expose().to_owned()));
        plan.extend(hops(
            ctx.hosts,
            &h.route,
            &mut next,
            &HopOwner {
                carrier: Some(h.carrier_id.clone()),
                vc: None,
                credentials,
                srtp: |t| SrtpPolicy::for_hop(t, false, h.route.srtp),
            },
        ));
    }
    let plan = demote_held_targets(plan, ctx.health, ctx.now);
    let caller = admitted.caller_id.to_string();
    // SPEC §1 numbers: a number's `calling_name` is the display name its
    // calls present.
    let caller_name = admitted
        .caller_id
        .number()
        .and_then(|n| resources.number(n))
        .and_then(|n| n.calling_name.clone());
    InviteDecision::Admit(Box::new(Admission {
        kind: CallKind::Bridge,
        direction: Direction::Outbound,
        vc: Some(admitted.vc_id.clone()),
        b_user: admitted.destination.request_uri_user(),
        source_number: caller.clone(),
        caller,
        caller_name,
        auth_user: admitted.auth_user.clone(),
        plan,
        // SRTP only for a customer whose VC requires encryption (admission
        // checked the offer; this keeps re-INVITEs from dropping it),
        // offered over TLS when trunkd is the offerer.
        // An emergency call is held to nothing (admission let it through
        // without encryption): SRTP if the PBX offers it, plain otherwise.
        a_srtp: SrtpPolicy::for_hop(
            transport_of(invite.peer),
            vc.require_encryption && !admitted.is_emergency,
            None,
        ),
        emergency: admitted.is_emergency,
    }))
}

/// A termination call refused by admission: counted and recorded as a
/// call of `vc` (the outbound direction).
fn refused_call(
    refusal: Refusal,
    vc: Option<VcId>,
    source_number: String,
    destination_number: String,
    auth_failed: bool,
    throttled: bool,
) -> InviteDecision {
    InviteDecision::Refuse(Refusal {
        scope: RefusalScope::Call {
            direction: Direction::Outbound,
            vc,
            source_number,
            destination_number,
            auth_failed,
            throttled,
        },
        ..refusal
    })
}

/// The decision for a termination (or recording) request admission
/// refused: a challenge, or a refusal counted against `vc`.
fn termination_refused(
    rej: &Rejection,
    vc: Option<VcId>,
    source_number: String,
    destination_number: String,
) -> InviteDecision {
    if !rej.proxy_authenticate().is_empty() {
        return InviteDecision::Challenge {
            vc,
            proxy_authenticate: rej.proxy_authenticate().to_vec(),
        };
    }
    refused_call(
        Refusal {
            status: rej.status(),
            reason: rej.reason_phrase().to_owned(),
            retry_after: rej.retry_after(),
            warning: None,
            metric_reason: rej.metric_reason(),
            scope: RefusalScope::Gate,
        },
        vc,
        source_number,
        destination_number,
        rej.metric_reason() == "auth_failed",
        rej.is_throttle(),
    )
}

/// A recording session to a VC (SPEC §2.6): admitted by who sends it
/// (`admit_recording`: VC, CIDR, digest, encryption, client certificate),
/// not by what it would dial (no CPS, E.164, calling plan or caller ID).
fn record(
    ctx: &InviteContext<'_>,
    state: &mut AdmissionState,
    rng: &mut Rng,
    invite: &NewInvite<'_>,
    ruri_host: &str,
) -> InviteDecision {
    let resources = &ctx.config.resources;
    let domain = &ctx.config.settings.daemon.outbound_host_domain;
    let c = CustomerRequest::read(invite);
    let (ruri_user, from_user, source) = (c.ruri_user.clone(), c.from_user.clone(), c.source);
    let (policy, now, salt) = c.admission_inputs(ctx, rng);
    // A recording's caller ID is the recorded call's business, not trunkd's:
    // no PAI is read.
    let treq = c.termination_request(invite, ruri_host, false);
    let source_number = from_user.clone().unwrap_or_default();
    let admitted = match admit_recording(resources, &policy, state, &treq, now, salt) {
        Ok(a) => a,
        Err(rej) => {
            let vc = vc_for(resources, domain, ruri_host, source);
            return termination_refused(&rej, vc, source_number, ruri_user);
        }
    };
    // Who sent it is settled; now what it describes (RFC 7866 §6.1.1).
    // Refused before anything is allocated: the engine answers, counts
    // and records the refusal like any refused call of the VC.
    let metadata = match siprec_metadata(invite.request) {
        Ok(m) => m,
        Err(e) => {
            return refused_call(
                Refusal {
                    status: 400,
                    reason: "Invalid SIPREC Metadata".to_owned(),
                    retry_after: None,
                    warning: Some(e.to_string()),
                    metric_reason: SIPREC_METADATA,
                    scope: RefusalScope::Gate,
                },
                Some(admitted.vc_id.clone()),
                source_number,
                ruri_user,
                false,
                false,
            );
        }
    };
    // A Request-URI without a user (an SRC that dials the SRS's address)
    // names no number: the CDR takes the recorded call's own, the first
    // two participants of the metadata (caller, callee) — docs/siprec.md.
    let (source_number, ruri_user) = match &metadata {
        Some(m) if ruri_user.is_empty() => {
            let (from, to) = m.numbers();
            (
                from.map_or(source_number, str::to_owned),
                to.unwrap_or_default().to_owned(),
            )
        }
        _ => (source_number, ruri_user),
    };
    let required = resources
        .voice_connector(admitted.vc_id.as_str())
        .is_some_and(|v| v.require_encryption);
    InviteDecision::Admit(Box::new(Admission {
        kind: CallKind::Recording,
        direction: Direction::Outbound,
        vc: Some(admitted.vc_id),
        b_user: ruri_user,
        caller: source_number.clone(),
        caller_name: None,
        auth_user: admitted.auth_user,
        source_number,
        plan: Vec::new(),
        a_srtp: SrtpPolicy::for_hop(transport_of(invite.peer), required, None),
        emergency: false,
    }))
}

/// What termination and recording admission read from a customer's
/// INVITE, parsed once.
struct CustomerRequest {
    ruri_user: String,
    from_user: Option<String>,
    pai_user: Option<String>,
    proxy_authorization: Option<String>,
    offers_srtp: bool,
    source: IpAddr,
}

impl CustomerRequest {
    fn read(invite: &NewInvite<'_>) -> CustomerRequest {
        let req = invite.request;
        CustomerRequest {
            ruri_user: trunkd_b2bua::leg::request_uri_user(req).unwrap_or_default(),
            from_user: trunkd_b2bua::leg::header_user(&req.headers, "From"),
            pai_user: trunkd_b2bua::leg::header_user(&req.headers, "P-Asserted-Identity"),
            proxy_authorization: req
                .headers
                .get("Proxy-Authorization")
                .map(|v| String::from_utf8_lossy(v).into_owned()),
            offers_srtp: trunkd_media::sdes::offers_srtp(&crate::engine::session_sdp(req)),
            source: invite.peer.addr.ip(),
        }
    }

    /// The admission input; `with_pai`: whether the P-Asserted-Identity
    /// user counts as the caller.
    fn termination_request<'a>(
        &'a self,
        invite: &NewInvite<'_>,
        ruri_host: &'a str,
        with_pai: bool,
    ) -> TerminationRequest<'a> {
        TerminationRequest {
            method: "INVITE",
            request_uri_user: &self.ruri_user,
            request_uri_host: ruri_host,
            source: self.source,
            over_tls: invite.peer.transport == TxTransport::Tls,
            client_certificate_verified: invite.client_verified,
            offers_srtp: self.offers_srtp,
            from_user: self.from_user.as_deref(),
            pai_user: self.pai_user.as_deref().filter(|_| with_pai),
            proxy_authorization: self.proxy_authorization.as_deref(),
        }
    }

    /// The policy, the time and a fresh nonce salt for admission.
    fn admission_inputs<'c>(
        &self,
        ctx: &InviteContext<'c>,
        rng: &mut Rng,
    ) -> (TerminationPolicy<'c>, Now, [u8; 8]) {
        let settings = &ctx.config.settings;
        let policy = TerminationPolicy {
            outbound_host_domain: &settings.daemon.outbound_host_domain,
            emergency_numbers: &settings.routing.emergency_numbers,
            nonce_issuer: ctx.nonce_issuer,
        };
        let mut salt = [0u8; 8];
        salt[..4].copy_from_slice(&rng.next_u32().to_le_bytes());
        salt[4..].copy_from_slice(&rng.next_u32().to_le_bytes());
        let now = Now {
            instant: ctx.now,
            wall: ctx.wall,
        };
        (policy, now, salt)
    }
}

fn transport_of(peer: Peer) -> trunkd_core::Transport {
    match peer.transport {
        TxTransport::Tls => trunkd_core::Transport::Tls,
        TxTransport::Tcp => trunkd_core::Transport::Tcp,
        TxTransport::Udp => trunkd_core::Transport::Udp,
    }
}

/// The VC a request belongs to, for labelling metrics of requests that
/// admission refused or that are not calls (admission's own rule).
pub fn vc_for(
    resources: &trunkd_core::Resources,
    domain: &str,
    host: &str,
    source: IpAddr,
) -> Option<VcId> {
    trunkd_core::admission::voice_connector_for(resources, domain, host, source)
        .map(|v| v.id.clone())
}

/// A hop for a configured route: its first target (see [`hops`]), for
/// callers that try one place per route (probing, application legs).
pub(crate) fn hop(
    hosts: &HostCache,
    route: &Route,
    carrier: Option<trunkd_core::CarrierId>,
    vc: Option<VcId>,
    credentials: Option<(String, String)>,
    srtp: SrtpPolicy,
) -> Option<PlannedHop> {
    // RFC 2782 order with a draw of 0: the first record of the best
    // priority, the same every time (a probe keeps probing one target).
    hops(
        hosts,
        route,
        &mut || 0,
        &HopOwner {
            carrier,
            vc,
            credentials,
            srtp: |_| srtp,
        },
    )
    .into_iter()
    .next()
}

/// Who a route's hops belong to, and the SRTP policy for a transport (an
/// SRV or NAPTR answer may choose the transport).
pub(crate) struct HopOwner<F: Fn(trunkd_core::Transport) -> SrtpPolicy> {
    pub carrier: Option<trunkd_core::CarrierId>,
    pub vc: Option<VcId>,
    pub credentials: Option<(String, String)>,
    pub srtp: F,
}

/// The hops of a configured route, in the order to try them. An IP host
/// or a name with a port is one hop per address (the first: IPv4 first;
/// `resolver` keeps them current off this path); a name resolved by SRV
/// (RFC 3263) is one hop per target in RFC 2782 order drawn from `rng`,
/// so a call fails over from one SRV target to the next as it does from
/// one route to the next. Each such hop carries a route keyed by the
/// target's address, port and transport, so hold-down and route metrics
/// follow the target that failed, not the name. A name with no target
/// yet gives none, with a warning.
pub(crate) fn hops<F: Fn(trunkd_core::Transport) -> SrtpPolicy>(
    hosts: &HostCache,
    route: &Route,
    rng: &mut impl FnMut() -> u32,
    owner: &HopOwner<F>,
) -> Vec<PlannedHop> {
    let mut targets = hosts.targets(route, rng);
    if route.dns == DnsLookup::Address {
        // One place per route, as always: failover is between routes.
        targets.truncate(1);
    }
    if targets.is_empty() {
        if let Host::Name(n) = &route.host {
            tracing::warn!(host = %n, "route host name has no address; skipping this hop");
        }
        return Vec::new();
    }
    targets
        .into_iter()
        .map(|t| {
            let addr = SocketAddr::new(t.addr, t.port);
            let uri_host = match (&route.host, route.dns) {
                (Host::Ip(IpAddr::V6(a)), _) => format!("[{a}]:{}", route.port),
                (Host::Ip(IpAddr::V4(a)), _) => format!("{a}:{}", route.port),
                // The Request-URI keeps the name (the peer's own identity).
                (Host::Name(n), DnsLookup::Address) => format!("{n}:{}", route.port),
                // RFC 3263: the URI names the domain; DNS chose the rest.
                (Host::Name(n), _) => n.to_string(),
            };
            let planned_route = match (&route.host, route.dns) {
                (Host::Name(n), DnsLookup::Srv | DnsLookup::Naptr) => Route {
                    host: Host::Ip(t.addr),
                    port: trunkd_core::Port::new(i64::from(t.port)).unwrap_or(route.port),
                    protocol: t.transport,
                    dns: DnsLookup::Address,
                    tls_server_name: route.tls_server_name.clone().or_else(|| {
                        (t.transport == trunkd_core::Transport::Tls).then(|| n.to_string())
                    }),
                    ..route.clone()
                },
                _ => route.clone(),
            };
            PlannedHop {
                hop: Hop {
                    dest: Peer {
                        addr,
                        transport: trunkd_b2bua::tx_transport(t.transport),
                    },
                    uri_host,
                    carrier_id: owner.carrier.clone(),
                    vc_id: owner.vc.clone(),
                    credentials: owner.credentials.clone(),
                    srtp: (owner.srtp)(t.transport),
                },
                route: planned_route,
            }
        })
        .collect()
}

/// Moves hops whose (resolved) route is held down to the end, keeping the
/// order of both parts. Routing already did this for configured routes;
/// this catches SRV targets, whose health is keyed by their address.
fn demote_held_targets(
    plan: Vec<PlannedHop>,
    health: &RouteHealthTable,
    now: Instant,
) -> Vec<PlannedHop> {
    let (mut up, held): (Vec<PlannedHop>, Vec<PlannedHop>) = plan
        .into_iter()
        .partition(|p| !health.is_held_down(&p.route, now));
    up.extend(held);
    up
}

#[cfg(test)]
mod warning_tests {
    use super::warning_value;

    #[test]
    fn a_warning_is_one_quoted_bounded_line() {
        assert_eq!(
            warning_value("label \"7\" \\ x\r\nInjected: 1"),
            "399 trunkd \"label \\\"7\\\" \\\\ xInjected: 1\""
        );
        let long = "n".repeat(1000);
        assert_eq!(
            warning_value(&long),
            format!("399 trunkd \"{}\"", "n".repeat(200))
        );
    }
}

#[cfg(test)]
mod srv_hop_tests {
    use super::*;
    use crate::resolver::HostCache;
    use trunkd_core::routing::rfc3263::{Service, Srv};
    use trunkd_core::{Port, Priority, Transport, Weight};

    fn route(host: &str, dns: DnsLookup) -> Route {
        Route {
            host: host.parse().unwrap(),
            port: Port::new(5060).unwrap(),
            protocol: Transport::Udp,
            priority: Priority::new(1, 100).unwrap(),
            weight: Weight::new(1).unwrap(),
            srtp: None,
            tls_server_name: None,
            dns,
        }
    }

    fn srv(priority: u16, port: u16, target: &str) -> Srv {
        Srv {
            priority,
            weight: 10,
            port,
            target: target.into(),
        }
    }

    fn plan(hosts: &HostCache, r: &Route) -> Vec<PlannedHop> {
        hops(
            hosts,
            r,
            &mut || 0x8000_0000,
            &HopOwner {
                carrier: None,
                vc: None,
                credentials: None,
                srtp: |_| SrtpPolicy::Off,
            },
        )
    }

    fn dests(plan: &[PlannedHop]) -> Vec<String> {
        plan.iter()
            .map(|p| {
                format!(
                    "{} {:?} {}",
                    p.hop.dest.addr, p.hop.dest.transport, p.hop.uri_host
                )
            })
            .collect()
    }

    #[test]
    fn each_srv_target_is_a_hop_keyed_by_its_address_in_priority_order() {
        let r = route("carrier.test", DnsLookup::Srv);
        let sbc1: IpAddr = "127.0.0.2".parse().unwrap();
        let sbc2: IpAddr = "127.0.0.6".parse().unwrap();
        let hosts = HostCache::with_records(
            &[
                ("sbc1.carrier.test", &[sbc1]),
                ("sbc2.carrier.test", &[sbc2]),
            ],
            &r,
            vec![Service {
                transport: Transport::Udp,
                records: vec![
                    srv(2, 5090, "sbc2.carrier.test"),
                    srv(1, 5080, "sbc1.carrier.test"),
                ],
            }],
        );
        let p = plan(&hosts, &r);
        assert_eq!(
            dests(&p),
            [
                "127.0.0.2:5080 Udp carrier.test",
                "127.0.0.6:5090 Udp carrier.test"
            ]
        );
        assert_eq!(p[0].route.host, Host::Ip(sbc1));
        assert_eq!(p[0].route.port.get(), 5080);
        assert_eq!(p[0].route.dns, DnsLookup::Address);

        // The priority-1 target failed: it goes last, the other target of
        // the same name first.
        let now = Instant::now();
        let mut health = RouteHealthTable::default();
        health.record_failure(&p[0].route, now);
        assert_eq!(
            dests(&demote_held_targets(p, &health, now)),
            [
                "127.0.0.6:5090 Udp carrier.test",
                "127.0.0.2:5080 Udp carrier.test"
            ]
        );
    }

    #[test]
    fn a_dot_srv_target_gives_no_hop_and_a_name_without_srv_its_address() {
        let r = route("carrier.test", DnsLookup::Srv);
        let own: IpAddr = "192.0.2.1".parse().unwrap();
        let none = HostCache::with_records(
            &[("carrier.test", &[own])],
            &r,
            vec![Service {
                transport: Transport::Udp,
                records: vec![srv(0, 0, ".")],
            }],
        );
        assert!(plan(&none, &r).is_empty());
        let fallback = HostCache::with_records(&[("carrier.test", &[own])], &r, vec![]);
        assert_eq!(
            dests(&plan(&fallback, &r)),
            ["192.0.2.1:5060 Udp carrier.test"]
        );
    }

    #[test]
    fn a_name_with_a_port_keeps_one_hop_and_its_port_in_the_uri() {
        let r = route("sbc.example", DnsLookup::Address);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let hosts = HostCache::with_records(&[("sbc.example", &[a, b])], &r, vec![]);
        assert_eq!(
            dests(&plan(&hosts, &r)),
            ["192.0.2.1:5060 Udp sbc.example:5060"]
        );
    }
}
