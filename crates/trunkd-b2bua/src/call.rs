//! The call state machine.
//!
//! ```text
//!   new ──▶ Routing{hop} ──2xx──▶ Connected ──BYE (either side)──▶ Ended (BYE sent to the other)
//!             │  ▲ failover (timeout, transport error, 408, 3xx, 5xx)
//!             │  └─────────────┘
//!             ├──4xx/6xx, or no hop left──▶ Ended (final relayed to A)
//!             └──CANCEL from A──▶ Cancelling ──B final──▶ Ended
//! ```
//! Requests inside the dialog (re-INVITE, UPDATE, INFO, PRACK, OPTIONS,
//! NOTIFY, MESSAGE) are relayed leg to leg, each as a new transaction on the
//! other leg, and their responses relayed back ([`Relay`]).

use std::collections::VecDeque;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use trunkd_core::cdr::CallOutcome;
use trunkd_core::digest::{answer_challenge, Challenge};
use trunkd_core::{CarrierId, VcId};
use trunkd_sip::{Method, Request, Response, StatusCode};

use crate::leg::{contact_uri, copy_end_to_end, strip_tag, uas_response, LegState};
use crate::media::{anchor_body, is_sdp, MediaAnchor, MediaRefusal, SdpRole};
use crate::rng::Ids;
use crate::{Leg, LocalAddrs, Peer, ServerTxId, TxTransport};

/// One place to send the B leg's INVITE.
#[derive(Clone, Debug)]
pub struct Hop {
    pub dest: Peer,
    /// Host (and port) for the Request-URI and To of the B leg.
    pub uri_host: String,
    /// The carrier (termination) …
    pub carrier_id: Option<CarrierId>,
    /// … or the voice connector (origination) this hop belongs to.
    pub vc_id: Option<VcId>,
    /// Digest credentials for the carrier's 401/407.
    pub credentials: Option<(String, String)>,
    /// What the media anchor offers this hop (SRTP or plain RTP).
    pub srtp: trunkd_core::SrtpPolicy,
}

impl Hop {
    /// The Request-URI of a request to this hop: `sip:user@host` (`sip:host`
    /// without a user), with `;transport=` when it is not UDP.
    pub fn target(&self, user: Option<&str>) -> String {
        let mut out = String::with_capacity(64);
        out.push_str("sip:");
        if let Some(user) = user {
            out.push_str(user);
            out.push('@');
        }
        out.push_str(&self.uri_host);
        if let Some(t) = crate::uri_param(self.dest.transport) {
            out.push_str(";transport=");
            out.push_str(t);
        }
        out
    }
}

/// Everything a call needs at creation.
pub struct NewCall {
    pub seed: u64,
    pub now: Instant,
    pub wall: SystemTime,
    pub local: LocalAddrs,
    /// The A leg's INVITE and its server transaction.
    pub invite: Request,
    pub invite_tx: ServerTxId,
    pub a_dest: Peer,
    /// The B leg's Request-URI user (the number to call).
    pub b_user: String,
    /// The B leg's From user (the caller ID) and display name.
    pub caller: String,
    pub caller_name: Option<String>,
    pub plan: Vec<Hop>,
    /// How long one hop may stay silent before the next is tried.
    pub hop_timeout: Duration,
    /// No new hop is started after this long.
    pub routing_deadline: Duration,
    /// Rewrites SDP between the legs ([`crate::PassThrough`] for none).
    pub media: Box<dyn MediaAnchor>,
}

/// Inputs, already matched to this call by the shell.
#[derive(Debug)]
pub enum CallInput {
    /// A new request inside one of the call's dialogs.
    Request {
        leg: Leg,
        tx: ServerTxId,
        request: Request,
    },
    /// The end-to-end ACK for a 2xx trunkd sent on `leg`.
    Ack { leg: Leg, request: Request },
    /// The caller CANCELled the initial INVITE (the layer answered the CANCEL).
    Cancelled,
    /// A response to a request the call sent on `leg`, by its branch.
    Response {
        leg: Leg,
        branch: Bytes,
        response: Response,
    },
    /// A request the call sent got no final response (Timer B/F).
    Timeout { leg: Leg, branch: Bytes },
    /// A request the call sent could not be delivered.
    TransportError { leg: Leg, branch: Bytes },
    /// A 2xx trunkd sent on `leg` was never ACKed.
    AckTimeout { leg: Leg },
    /// A retransmitted 2xx for the B leg's INVITE after its transaction ended.
    StrayResponse { leg: Leg, response: Response },
    /// The daemon is stopping or an operator hung the call up.
    Hangup,
}

/// What the call asks the shell to do, or tells it.
#[derive(Debug)]
pub enum CallOutput {
    /// Start a client transaction. The branch is in the top Via.
    SendRequest {
        leg: Leg,
        request: Request,
        dest: Peer,
        timeout: Option<Duration>,
    },
    /// Send without a transaction (ACK for 2xx).
    SendStateless {
        request: Request,
        dest: Peer,
    },
    /// Respond on a server transaction.
    SendResponse {
        tx: ServerTxId,
        response: Response,
    },
    /// CANCEL the client INVITE transaction with this branch.
    Cancel {
        branch: Bytes,
    },
    /// Route messages with this Call-ID to this call, as `leg`.
    Register {
        call_id: Bytes,
        leg: Leg,
    },
    Unregister {
        call_id: Bytes,
    },
    Event(CallEvent),
}

#[derive(Debug, Clone)]
pub enum CallEvent {
    /// The B leg INVITE to `hop` failed and another is tried (or none is left).
    HopFailed { hop: usize, status: u16 },
    /// `hop` answered.
    Answered { hop: usize },
    /// The call is over; this is what the records need.
    Ended(CallEnd),
    /// An in-dialog INFO a [`crate::UasCall`] answered 200, with its body
    /// (DTMF as `application/dtmf-relay`, RFC 2976 usage): what the call's
    /// owner may act on. A bridged call relays INFO instead.
    Info { content_type: String, body: Bytes },
}

#[derive(Debug, Clone)]
pub struct CallEnd {
    pub outcome: CallOutcome,
    pub answered: Option<SystemTime>,
    pub end: SystemTime,
    /// The hop that answered, if one did.
    pub hop: Option<usize>,
}

/// An in-dialog request relayed from one leg to the other.
#[derive(Debug)]
struct Relay {
    from_leg: Leg,
    tx: ServerTxId,
    request: Request,
    out_branch: Bytes,
    out_cseq: u32,
}

/// Maps an ACK for a 2xx to a relayed INVITE to the ACK on the other leg.
#[derive(Debug, Clone, Copy)]
struct AckMap {
    from_leg: Leg,
    in_cseq: u32,
    out_cseq: u32,
}

#[derive(Debug)]
struct Attempt {
    hop: usize,
    branch: Bytes,
    cseq: u32,
    got_provisional: bool,
    auth_tried: bool,
}

#[derive(Debug)]
enum State {
    Routing(Attempt),
    /// A CANCELled; waiting for B's final to the INVITE being cancelled.
    Cancelling,
    Connected,
    Ended,
}

pub struct Call {
    ids: Ids,
    local: LocalAddrs,
    start: Instant,
    wall_start: SystemTime,
    invite: Request,
    invite_tx: ServerTxId,
    a: LegState,
    b: Option<LegState>,
    b_user: String,
    caller: String,
    caller_name: Option<String>,
    plan: Vec<Hop>,
    hop_timeout: Duration,
    deadline: Instant,
    max_forwards: u8,
    state: State,
    answered_at: Option<Instant>,
    answered_hop: Option<usize>,
    /// The last failure of a hop, relayed when none is left.
    last_failure: (u16, String),
    outcome: Option<CallOutcome>,
    relays: Vec<Relay>,
    acks: Vec<AckMap>,
    /// ACK owed to B for its 2xx, sent when A's ACK arrives.
    b_ack_pending: bool,
    b_acked: Option<Request>,
    /// RFC 4028: when the session expires unless a refresh (re-INVITE or
    /// UPDATE answered 2xx) arrives first.
    session_expiry: Option<(Duration, Instant)>,
    /// The time of the input being handled.
    now: Instant,
    media: Box<dyn MediaAnchor>,
    /// The A leg's offer as the B leg sees it (anchored anew per hop).
    b_offer: Bytes,
    out: VecDeque<CallOutput>,
}

impl Call {
    /// Creates the call and starts the B leg on the first hop.
    pub fn new(n: NewCall) -> Call {
        let mut ids = Ids::new(n.seed);
        let headers = &n.invite.headers;
        let a_local_tag = ids.tag();
        let to = headers.get("To").map(strip_tag).unwrap_or_default();
        let from = headers.get("From").map(strip_tag).unwrap_or_default();
        let remote_tag = headers
            .from_tag()
            .ok()
            .flatten()
            .map(|t| String::from_utf8_lossy(&t).into_owned());
        let a = LegState {
            call_id: headers.get("Call-ID").cloned().unwrap_or_default(),
            local_tag: a_local_tag,
            remote_tag,
            local_uri: to,
            remote_uri: from,
            remote_target: contact_uri(headers)
                .unwrap_or_else(|| String::from_utf8_lossy(&n.invite.uri.to_bytes()).into_owned()),
            // trunkd is the UAS: the route set is the Record-Route as received.
            route_set: headers.values("Record-Route"),
            local_cseq: 0,
            dest: n.a_dest,
        };
        let max_forwards = headers
            .max_forwards()
            .ok()
            .flatten()
            .map(|m| m.0.saturating_sub(1))
            .unwrap_or(69);
        let mut call = Call {
            ids,
            local: n.local,
            start: n.now,
            wall_start: n.wall,
            invite: n.invite,
            invite_tx: n.invite_tx,
            a,
            b: None,
            b_user: n.b_user,
            caller: n.caller,
            caller_name: n.caller_name,
            plan: n.plan,
            hop_timeout: n.hop_timeout,
            deadline: n.now + n.routing_deadline,
            max_forwards,
            state: State::Ended,
            answered_at: None,
            answered_hop: None,
            last_failure: (503, "Service Unavailable".into()),
            outcome: None,
            relays: Vec::new(),
            acks: Vec::new(),
            b_ack_pending: false,
            b_acked: None,
            session_expiry: None,
            now: n.now,
            media: n.media,
            b_offer: Bytes::new(),
            out: VecDeque::new(),
        };
        call.out.push_back(CallOutput::Register {
            call_id: call.a.call_id.clone(),
            leg: Leg::A,
        });
        call.try_hop(n.now, 0);
        call
    }

    pub fn poll_output(&mut self) -> Option<CallOutput> {
        crate::pop_output(&mut self.out)
    }

    pub fn is_ended(&self) -> bool {
        matches!(self.state, State::Ended) && self.out.is_empty()
    }

    /// The routing deadline while routing; nothing otherwise (transaction
    /// timers live in the transaction layer).
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            State::Routing(_) => Some(self.deadline),
            State::Connected => self.session_expiry.map(|(_, at)| at),
            _ => None,
        }
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        // Routing: past the deadline only the attempt in flight may still
        // succeed; `next_hop` will not start another.
        if let (State::Connected, Some((_, at))) = (&self.state, self.session_expiry) {
            if now >= at {
                // RFC 4028 §10: no refresh within the interval ends the
                // session; both sides get a BYE.
                self.hang_up(now, None);
            }
        }
    }

    /// Arms (or re-arms, on a refresh) the session timer from a 2xx.
    fn session_refreshed(&mut self, now: Instant, resp: &Response) {
        let interval = resp
            .headers
            .get("Session-Expires")
            .and_then(|v| {
                String::from_utf8_lossy(v)
                    .split(';')
                    .next()
                    .and_then(|s| s.trim().parse::<u64>().ok())
            })
            .map(Duration::from_secs)
            .or(self.session_expiry.map(|(d, _)| d));
        // RFC 4028 §10: the session expires at the interval minus a margin
        // of a third (at most 32 s) after the last refresh; we give the
        // refresher the whole interval plus that margin before ending it.
        self.session_expiry = interval
            .filter(|d| !d.is_zero())
            .map(|d| (d, now + d + (d / 3).min(Duration::from_secs(32))));
    }

    pub fn handle(&mut self, now: Instant, input: CallInput) {
        self.now = now;
        match input {
            CallInput::Request { leg, tx, request } => self.on_request(now, leg, tx, request),
            CallInput::Ack { leg, request } => self.on_ack(leg, &request),
            CallInput::Cancelled => self.on_cancel(now),
            CallInput::Response {
                leg,
                branch,
                response,
            } => self.on_response(now, leg, branch, response),
            CallInput::Timeout { leg, branch } => {
                self.on_failure(now, leg, branch, 408, "Request Timeout")
            }
            CallInput::TransportError { leg, branch } => {
                self.on_failure(now, leg, branch, 503, "Service Unavailable")
            }
            CallInput::AckTimeout { .. } => self.hang_up(now, None),
            CallInput::StrayResponse {
                leg: Leg::B,
                response,
            } if response.status.is_success() => {
                // Our ACK was lost: the B side retransmits its 2xx.
                if let (Some(ack), Some(b)) = (&self.b_acked, &self.b) {
                    self.out.push_back(CallOutput::SendStateless {
                        request: ack.clone(),
                        dest: b.dest,
                    });
                }
            }
            CallInput::StrayResponse { .. } => {}
            CallInput::Hangup => self.hang_up(now, None),
        }
    }

    // ----- routing -------------------------------------------------------

    fn try_hop(&mut self, now: Instant, hop: usize) {
        let Some(h) = self.plan.get(hop).cloned() else {
            let (code, reason) = self.last_failure.clone();
            self.fail_a(now, code, &reason, None);
            return;
        };
        let call_id = Bytes::from(self.ids.call_id("trunkd"));
        let local_uri =
            self.local
                .name_addr(&self.caller, self.caller_name.as_deref(), h.dest.transport);
        let target = h.target(Some(&self.b_user));
        let b = LegState {
            call_id: call_id.clone(),
            local_tag: self.ids.tag(),
            remote_tag: None,
            local_uri,
            remote_uri: ["<sip:", &self.b_user, "@", &h.uri_host, ">"].concat(),
            remote_target: target,
            route_set: Vec::new(),
            local_cseq: 0,
            dest: h.dest,
        };
        self.media.reset(Leg::B, h.srtp);
        let (headers, body) = (self.invite.headers.clone(), self.invite.body.clone());
        match self.cross(Leg::A, SdpRole::Offer, &headers, &body) {
            Ok(offer) => self.b_offer = offer,
            Err(refusal) => {
                let _ = now;
                return self.fail_a(now, refusal.status, &refusal.reason, None);
            }
        }
        if let Some(old) = self.b.replace(b) {
            self.out.push_back(CallOutput::Unregister {
                call_id: old.call_id,
            });
        }
        self.out.push_back(CallOutput::Register {
            call_id,
            leg: Leg::B,
        });
        let attempt = self.send_b_invite(hop, None);
        self.state = State::Routing(attempt);
        let _ = now;
    }

    fn send_b_invite(
        &mut self,
        hop: usize,
        authorization: Option<(&'static str, String)>,
    ) -> Attempt {
        let branch = self.ids.branch();
        let local = self.local.clone();
        let mf = self.max_forwards;
        let Some(b) = self.b.as_mut() else {
            return Attempt {
                hop,
                branch: Bytes::new(),
                cseq: 0,
                got_provisional: false,
                auth_tried: false,
            };
        };
        let mut req = b.request(Method::Invite, &local, &branch, mf);
        let h = &mut req.headers;
        let _ = h.append("Contact", local.contact(b.dest.transport));
        let pai = local.name_addr(&self.caller, self.caller_name.as_deref(), b.dest.transport);
        let _ = h.append("P-Asserted-Identity", pai);
        copy_end_to_end(&self.invite.headers, h);
        let auth_tried = authorization.is_some();
        if let Some((name, value)) = authorization {
            let _ = h.append(name, value);
        }
        req.body = self.b_offer.clone();
        let cseq = b.local_cseq;
        let dest = b.dest;
        self.out.push_back(CallOutput::SendRequest {
            leg: Leg::B,
            request: req,
            dest,
            timeout: Some(self.hop_timeout),
        });
        Attempt {
            hop,
            branch: Bytes::from(branch),
            cseq,
            got_provisional: false,
            auth_tried,
        }
    }

    /// The attempt in flight failed with `code`: next hop, or give up.
    fn next_hop(&mut self, now: Instant, hop: usize, code: u16, reason: &str) {
        self.out.push_back(CallOutput::Event(CallEvent::HopFailed {
            hop,
            status: code,
        }));
        self.last_failure = (code, reason.to_owned());
        if now >= self.deadline {
            self.fail_a(now, code, reason, None);
        } else {
            self.try_hop(now, hop + 1);
        }
    }

    /// Ends an unanswered call with a final response to A.
    fn fail_a(&mut self, now: Instant, code: u16, reason: &str, from: Option<&Response>) {
        let status = StatusCode::new(code).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
        let mut resp = uas_response(&self.invite, status, reason, &self.a.local_tag, None);
        if let Some(r) = from {
            copy_end_to_end(&r.headers, &mut resp.headers);
        }
        self.out.push_back(CallOutput::SendResponse {
            tx: self.invite_tx,
            response: resp,
        });
        self.outcome = Some(CallOutcome::Failed {
            status: code,
            reason: reason.to_owned(),
        });
        self.end(now);
    }

    // ----- responses -----------------------------------------------------

    fn on_response(&mut self, now: Instant, leg: Leg, branch: Bytes, resp: Response) {
        let code = resp.status.as_u16();
        if leg == Leg::B {
            if let State::Routing(att) = &self.state {
                if att.branch == branch {
                    return self.on_b_invite_response(now, resp);
                }
            }
            if matches!(self.state, State::Cancelling) {
                // Only the INVITE's final response ends a cancelled call.
                // The CANCEL's own 200 (which the engine delivers here too)
                // must not be taken for an answer: it would be ACKed and
                // BYEd as one, to a callee that is about to send its 487.
                if code >= 200 && is_invite(&resp) {
                    if resp.status.is_success() {
                        // Answered after we cancelled: ACK and hang up B.
                        self.ack_b(&resp);
                        self.send_bye(Leg::B);
                    }
                    return self.end(now);
                }
                return;
            }
        }
        // A 2xx retransmission for the initial INVITE while connected.
        if leg == Leg::B
            && matches!(self.state, State::Connected)
            && resp.status.is_success()
            && is_invite(&resp)
        {
            if let (Some(ack), Some(b)) = (&self.b_acked, &self.b) {
                if cseq_num(&resp) == cseq_num_req(ack) {
                    self.out.push_back(CallOutput::SendStateless {
                        request: ack.clone(),
                        dest: b.dest,
                    });
                    return;
                }
            }
        }
        self.on_relay_response(leg, branch, resp);
    }

    fn on_b_invite_response(&mut self, now: Instant, resp: Response) {
        let code = resp.status.as_u16();
        let State::Routing(att) = &mut self.state else {
            return;
        };
        let hop = att.hop;
        if code < 200 {
            if code == 100 {
                return;
            }
            att.got_provisional = true;
            if let Some(b) = self.b.as_mut() {
                if resp.headers.to_tag().is_ok_and(|t| t.is_some()) {
                    b.learn_from_response(&resp);
                }
            }
            let mut r = self.a_response_like(&resp);
            // Early media: an SDP in a provisional is anchored too. One that
            // cannot be is not relayed (the caller hears ringback locally).
            let role = self.invite_response_role();
            match self.cross(Leg::B, role, &resp.headers, &resp.body) {
                Ok(body) => r.body = body,
                Err(_) => {
                    r.headers.remove("Content-Type");
                }
            }
            self.out.push_back(CallOutput::SendResponse {
                tx: self.invite_tx,
                response: r,
            });
            return;
        }
        if resp.status.is_success() {
            if let Some(b) = self.b.as_mut() {
                b.learn_from_response(&resp);
            }
            let mut r = self.a_response_like(&resp);
            let role = self.invite_response_role();
            match self.cross(Leg::B, role, &resp.headers, &resp.body) {
                Ok(body) => r.body = body,
                Err(refusal) => {
                    // The callee answered with media we cannot anchor: end
                    // its leg and tell the caller why.
                    self.ack_b(&resp);
                    self.send_bye(Leg::B);
                    return self.fail_a(now, refusal.status, &refusal.reason, None);
                }
            }
            self.out.push_back(CallOutput::SendResponse {
                tx: self.invite_tx,
                response: r,
            });
            self.b_ack_pending = true;
            self.session_refreshed(now, &resp);
            self.answered_at = Some(now);
            self.answered_hop = Some(hop);
            self.state = State::Connected;
            self.out
                .push_back(CallOutput::Event(CallEvent::Answered { hop }));
            // The caller's ACK triggers ours; if A's ACK body carries SDP
            // (late offer) it is relayed.
            return;
        }
        if (code == 401 || code == 407) && !att.auth_tried {
            if let Some(auth) = self.authorization_for(hop, &resp) {
                let attempt = self.send_b_invite(hop, Some(auth));
                self.state = State::Routing(attempt);
                return;
            }
        }
        let reason_text = reason(&resp);
        if failover_status(code) {
            self.next_hop(now, hop, code, &reason_text);
        } else {
            self.out.push_back(CallOutput::Event(CallEvent::HopFailed {
                hop,
                status: code,
            }));
            self.fail_a(now, code, &reason_text, Some(&resp));
        }
    }

    /// The A leg's response mirroring B's answer to the INVITE: its status,
    /// reason and end-to-end headers, with the A leg's tag and our Contact
    /// (the body is anchored by the caller).
    fn a_response_like(&self, resp: &Response) -> Response {
        let mut r = uas_response(
            &self.invite,
            resp.status,
            &reason(resp),
            &self.a.local_tag,
            Some(&self.local.contact(self.a.dest.transport)),
        );
        copy_end_to_end(&resp.headers, &mut r.headers);
        // RFC 3261 §12.1.1: a response that establishes a dialog (early or
        // confirmed) carries the request's Record-Route, so a proxy in
        // front of trunkd (Kamailio, an SBC) stays in the dialog's path.
        let code = resp.status.as_u16();
        if (101..300).contains(&code) {
            for rr in self.invite.headers.values("Record-Route") {
                let _ = r.headers.append("Record-Route", rr);
            }
        }
        r
    }

    fn authorization_for(&mut self, hop: usize, resp: &Response) -> Option<(&'static str, String)> {
        let hop = self.plan.get(hop)?;
        let uri = self.b.as_ref()?.remote_target.clone();
        let cnonce = format!("{:016x}", self.ids.next());
        answer_hop_challenge(hop, resp, &uri, &cnonce)
    }

    fn on_failure(&mut self, now: Instant, leg: Leg, branch: Bytes, code: u16, reason: &str) {
        if leg == Leg::B {
            if let State::Routing(att) = &self.state {
                if att.branch == branch {
                    let hop = att.hop;
                    return self.next_hop(now, hop, code, reason);
                }
            }
            if matches!(self.state, State::Cancelling) {
                return self.end(now);
            }
        }
        // A relayed request timed out: answer it, and a dialog whose peer
        // stopped answering is over (RFC 3261 §12.2.1.2).
        let fake = Response::new(
            StatusCode::new(code).unwrap_or(StatusCode::REQUEST_TIMEOUT),
            reason,
        );
        self.on_relay_response(leg, branch, fake);
        if code == 408 || code == 503 {
            self.hang_up(now, Some(leg));
        }
    }

    // ----- requests ------------------------------------------------------

    fn on_request(&mut self, now: Instant, leg: Leg, tx: ServerTxId, req: Request) {
        let connected = matches!(self.state, State::Connected);
        match &req.method {
            Method::Bye
                if connected || (leg == Leg::B && matches!(self.state, State::Routing(_))) =>
            {
                self.respond(leg, tx, &req, StatusCode::OK, "OK");
                self.outcome.get_or_insert(CallOutcome::Answered);
                self.hang_up(now, Some(leg));
            }
            _ if !connected => {
                // In-dialog requests before answer (UPDATE/PRACK/INFO in an
                // early dialog) are relayed too when the B dialog exists.
                if leg == Leg::A
                    && matches!(self.state, State::Routing(_))
                    && self.b.as_ref().is_some_and(|b| b.remote_tag.is_some())
                {
                    self.relay(leg, tx, req);
                } else {
                    self.respond(
                        leg,
                        tx,
                        &req,
                        StatusCode::CALL_DOES_NOT_EXIST,
                        "Call/Transaction Does Not Exist",
                    );
                }
            }
            _ => self.relay(leg, tx, req),
        }
    }

    fn respond(
        &mut self,
        leg: Leg,
        tx: ServerTxId,
        req: &Request,
        status: StatusCode,
        reason: &str,
    ) {
        let tag = self
            .leg(leg)
            .map(|l| l.local_tag.clone())
            .unwrap_or_default();
        let resp = uas_response(req, status, reason, &tag, None);
        self.out
            .push_back(CallOutput::SendResponse { tx, response: resp });
    }

    fn leg(&self, leg: Leg) -> Option<&LegState> {
        match leg {
            Leg::A => Some(&self.a),
            Leg::B => self.b.as_ref(),
        }
    }

    fn leg_mut(&mut self, leg: Leg) -> Option<&mut LegState> {
        match leg {
            Leg::A => Some(&mut self.a),
            Leg::B => self.b.as_mut(),
        }
    }

    /// Relays an in-dialog request to the other leg as a new transaction.
    fn relay(&mut self, from_leg: Leg, tx: ServerTxId, req: Request) {
        let out_leg = from_leg.other();
        let branch = self.ids.branch();
        let local = self.local.clone();
        let mf = self.max_forwards;
        let contact_needed = matches!(
            req.method,
            Method::Invite | Method::Update | Method::Subscribe | Method::Notify
        );
        // PRACK's RAck names the INVITE's CSeq, which differs per leg.
        let rack = (req.method == Method::Prack)
            .then(|| self.translate_rack(&req, out_leg))
            .flatten();
        // PRACK and ACK carry answers (to an offer in a reliable 18x or a
        // 2xx); every other request body is an offer.
        let role = match req.method {
            Method::Prack | Method::Ack => SdpRole::Answer,
            _ => SdpRole::Offer,
        };
        let body = match self.cross(from_leg, role, &req.headers, &req.body) {
            Ok(b) => b,
            Err(refusal) => {
                let status =
                    StatusCode::new(refusal.status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
                return self.respond(from_leg, tx, &req, status, &refusal.reason);
            }
        };
        let Some(out) = self.leg_mut(out_leg) else {
            return self.respond(
                from_leg,
                tx,
                &req,
                StatusCode::CALL_DOES_NOT_EXIST,
                "Call/Transaction Does Not Exist",
            );
        };
        let mut r = out.request(req.method.clone(), &local, &branch, mf);
        if contact_needed {
            let _ = r
                .headers
                .append("Contact", local.contact(out.dest.transport));
        }
        copy_end_to_end(&req.headers, &mut r.headers);
        if let Some(rack) = rack {
            let _ = r.headers.append("RAck", rack);
        }
        r.body = body;
        let out_cseq = out.local_cseq;
        let dest = out.dest;
        self.out.push_back(CallOutput::SendRequest {
            leg: out_leg,
            request: r,
            dest,
            timeout: None,
        });
        self.relays.push(Relay {
            from_leg,
            tx,
            request: req,
            out_branch: Bytes::from(branch),
            out_cseq,
        });
    }

    fn translate_rack(&self, req: &Request, out_leg: Leg) -> Option<String> {
        let rack = String::from_utf8_lossy(req.headers.get("RAck")?).into_owned();
        let mut parts = rack.split_whitespace();
        let rseq = parts.next()?;
        // The INVITE on the out leg: the A leg's INVITE CSeq, or ours on B.
        let invite_cseq = match out_leg {
            Leg::A => cseq_num_req(&self.invite)?,
            Leg::B => match &self.state {
                State::Routing(att) => att.cseq,
                _ => self.b.as_ref().map(|b| b.local_cseq).unwrap_or(1),
            },
        };
        Some(format!("{rseq} {invite_cseq} INVITE"))
    }

    fn on_relay_response(&mut self, leg: Leg, branch: Bytes, resp: Response) {
        let refresh = self.relays.iter().any(|r| {
            r.from_leg == leg.other()
                && r.out_branch == branch
                && matches!(r.request.method, Method::Invite | Method::Update)
        });
        if refresh && resp.status.is_success() {
            // Refreshes are relayed; their 2xx restarts the session timer.
            self.session_refreshed(self.session_now(), &resp);
        }
        let Some(i) = self
            .relays
            .iter()
            .position(|r| r.from_leg == leg.other() && r.out_branch == branch)
        else {
            return;
        };
        let code = resp.status.as_u16();
        if code == 100 {
            return;
        }
        let from_leg = self.relays[i].from_leg;
        let tag = self
            .leg(from_leg)
            .map(|l| l.local_tag.clone())
            .unwrap_or_default();
        let proto = self
            .leg(from_leg)
            .map(|l| l.dest.transport)
            .unwrap_or(TxTransport::Udp);
        let contact = matches!(
            self.relays[i].request.method,
            Method::Invite | Method::Update
        )
        .then(|| self.local.contact(proto));
        let mut r = uas_response(
            &self.relays[i].request,
            resp.status,
            &reason(&resp),
            &tag,
            contact.as_deref(),
        );
        copy_end_to_end(&resp.headers, &mut r.headers);
        // A response answers the request's offer; to a request without
        // one (re-INVITE with no SDP) it is the offer.
        let role = if is_sdp(
            &self.relays[i].request.headers,
            &self.relays[i].request.body,
        ) {
            SdpRole::Answer
        } else {
            SdpRole::Offer
        };
        match self.cross(leg, role, &resp.headers, &resp.body) {
            Ok(body) => r.body = body,
            Err(refusal) => {
                // An answer we cannot anchor must not reach the other side
                // with the peer's addresses in it.
                r.status =
                    StatusCode::new(refusal.status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
                r.reason = Bytes::from(refusal.reason);
                r.headers.remove("Content-Type");
            }
        }
        let tx = self.relays[i].tx;
        self.out
            .push_back(CallOutput::SendResponse { tx, response: r });
        if code >= 200 {
            let relay = self.relays.swap_remove(i);
            if relay.request.method == Method::Invite && resp.status.is_success() {
                if let Some(in_cseq) = cseq_num_req(&relay.request) {
                    self.acks.push(AckMap {
                        from_leg,
                        in_cseq,
                        out_cseq: relay.out_cseq,
                    });
                }
                if let Some(l) = self.leg_mut(leg) {
                    if let Some(target) = contact_uri(&resp.headers) {
                        l.remote_target = target;
                    }
                }
            }
        }
    }

    fn on_ack(&mut self, leg: Leg, ack: &Request) {
        let Some(cseq) = cseq_num_req(ack) else {
            return;
        };
        let initial =
            leg == Leg::A && self.b_ack_pending && Some(cseq) == cseq_num_req(&self.invite);
        let mapped = if initial {
            None
        } else {
            match self
                .acks
                .iter()
                .position(|m| m.from_leg == leg && m.in_cseq == cseq)
            {
                Some(i) => Some(self.acks.swap_remove(i).out_cseq),
                None => return,
            }
        };
        // An ACK may carry the answer to a late offer: anchored like any SDP.
        let body = self
            .cross(leg, SdpRole::Answer, &ack.headers, &ack.body)
            .unwrap_or_default();
        let local = self.local.clone();
        let branch = self.ids.branch();
        let mf = self.max_forwards;
        let Some(out) = self.leg(leg.other()) else {
            return;
        };
        let out_cseq = mapped.unwrap_or(out.local_cseq);
        let mut req = out.request_with_cseq(Method::Ack, out_cseq, &local, &branch, mf);
        copy_end_to_end(&ack.headers, &mut req.headers);
        req.body = body;
        let dest = out.dest;
        if initial {
            self.b_ack_pending = false;
            // Kept for the call's life (resent on a retransmitted 2xx) and
            // sharing its rows with the copy sent: no spare capacity.
            req.headers.shrink_to_fit();
            self.b_acked = Some(req.clone());
        }
        self.out
            .push_back(CallOutput::SendStateless { request: req, dest });
    }

    /// ACKs a 2xx on the B leg ourselves (used when A is gone).
    fn ack_b(&mut self, resp: &Response) {
        let local = self.local.clone();
        let branch = self.ids.branch();
        let mf = self.max_forwards;
        if let Some(b) = self.b.as_mut() {
            b.learn_from_response(resp);
            let cseq = cseq_num(resp).unwrap_or(b.local_cseq);
            let req = b.request_with_cseq(Method::Ack, cseq, &local, &branch, mf);
            self.out.push_back(CallOutput::SendStateless {
                request: req,
                dest: b.dest,
            });
        }
    }

    fn on_cancel(&mut self, now: Instant) {
        match &self.state {
            State::Routing(att) => {
                let branch = att.branch.clone();
                self.out.push_back(CallOutput::Cancel { branch });
                let resp = uas_response(
                    &self.invite,
                    StatusCode::REQUEST_TERMINATED,
                    "Request Terminated",
                    &self.a.local_tag,
                    None,
                );
                self.out.push_back(CallOutput::SendResponse {
                    tx: self.invite_tx,
                    response: resp,
                });
                self.outcome = Some(CallOutcome::Cancelled);
                self.state = State::Cancelling;
            }
            // Too late: the call is answered (the 200 and CANCEL crossed).
            _ => {
                let _ = now;
            }
        }
    }

    // ----- ending --------------------------------------------------------

    /// Hangs up every leg except `except` (the one that sent BYE).
    fn hang_up(&mut self, now: Instant, except: Option<Leg>) {
        match self.state {
            State::Connected => {
                for leg in [Leg::A, Leg::B] {
                    if Some(leg) != except {
                        self.send_bye(leg);
                    }
                }
                // The call ends when the BYEs leave: their transactions run
                // on in the transaction layer, and the records must not wait
                // for a peer that may never answer (daemon shutdown).
                self.outcome.get_or_insert(CallOutcome::Answered);
                self.end(now);
            }
            State::Routing(_) => {
                if except == Some(Leg::B) {
                    // The B side gave up in an early dialog: fail the call.
                    self.fail_a(now, 503, "Service Unavailable", None);
                } else {
                    self.on_cancel(now);
                    self.fail_a(now, 503, "Service Unavailable", None);
                }
            }
            State::Cancelling | State::Ended => self.end(now),
        }
    }

    fn send_bye(&mut self, leg: Leg) -> Option<Bytes> {
        let local = self.local.clone();
        let branch = self.ids.branch();
        let mf = 70;
        let l = self.leg_mut(leg)?;
        l.remote_tag.as_ref()?;
        let req = l.request(Method::Bye, &local, &branch, mf);
        let dest = l.dest;
        self.out.push_back(CallOutput::SendRequest {
            leg,
            request: req,
            dest,
            timeout: None,
        });
        Some(Bytes::from(branch))
    }

    fn end(&mut self, now: Instant) {
        if matches!(self.state, State::Ended) && self.outcome.is_none() {
            return;
        }
        let wall = |t: Instant| self.wall_start + t.saturating_duration_since(self.start);
        let outcome = self.outcome.take().unwrap_or(CallOutcome::Failed {
            status: 500,
            reason: "Server Internal Error".into(),
        });
        let end = CallEnd {
            outcome,
            answered: self.answered_at.map(wall),
            end: wall(now),
            hop: self.answered_hop,
        };
        self.out.push_back(CallOutput::Event(CallEvent::Ended(end)));
        self.out.push_back(CallOutput::Unregister {
            call_id: self.a.call_id.clone(),
        });
        if let Some(b) = &self.b {
            self.out.push_back(CallOutput::Unregister {
                call_id: b.call_id.clone(),
            });
        }
        self.state = State::Ended;
    }

    /// The body of a message from `from` as the other leg must see it
    /// (plain or multipart SDP anchored, see [`anchor_body`]).
    fn cross(
        &mut self,
        from: Leg,
        role: SdpRole,
        headers: &trunkd_sip::Headers,
        body: &Bytes,
    ) -> Result<Bytes, MediaRefusal> {
        anchor_body(self.media.as_mut(), from, role, headers, body)
    }

    /// An SDP in B's response to our INVITE answers A's offer, or is B's
    /// offer when A's INVITE had none (late offer; A answers in its ACK).
    fn invite_response_role(&self) -> SdpRole {
        if is_sdp(&self.invite.headers, &self.invite.body) {
            SdpRole::Answer
        } else {
            SdpRole::Offer
        }
    }

    fn session_now(&self) -> Instant {
        self.now
    }

    /// The A leg's Call-ID (CDR CallId).
    pub fn a_call_id(&self) -> &Bytes {
        &self.a.call_id
    }

    /// The B leg's Call-ID once its INVITE went out.
    pub fn b_call_id(&self) -> Option<&Bytes> {
        self.b.as_ref().map(|b| &b.call_id)
    }
}

/// 408, 3xx and 5xx move on to the next hop (SPEC §2.1 item 3, §2.2 item 3);
/// other 4xx and 6xx are the callee's answer and go back to the caller.
pub(crate) fn failover_status(code: u16) -> bool {
    code == 408 || (300..400).contains(&code) || (500..600).contains(&code)
}

pub(crate) fn reason(resp: &Response) -> String {
    let r = String::from_utf8_lossy(&resp.reason).trim().to_owned();
    if r.is_empty() {
        resp.status.canonical_reason().unwrap_or("").to_owned()
    } else {
        r
    }
}

fn is_invite(resp: &Response) -> bool {
    resp.headers
        .cseq()
        .ok()
        .is_some_and(|c| c.method == Method::Invite)
}

pub(crate) fn cseq_num(resp: &Response) -> Option<u32> {
    resp.headers.cseq().ok().map(|c| c.seq)
}

fn cseq_num_req(req: &Request) -> Option<u32> {
    req.headers.cseq().ok().map(|c| c.seq)
}

/// The header and value that answer a carrier's 401/407 to a hop's INVITE
/// with the hop's credentials (`None`: the hop has none, or the challenge
/// cannot be answered). Shared by the bridged B leg and the application's
/// UAC leg.
pub(crate) fn answer_hop_challenge(
    hop: &Hop,
    resp: &Response,
    uri: &str,
    cnonce: &str,
) -> Option<(&'static str, String)> {
    let (user, password) = hop.credentials.as_ref()?;
    let (challenge_header, answer_header) = if resp.status.as_u16() == 401 {
        ("WWW-Authenticate", "Authorization")
    } else {
        ("Proxy-Authenticate", "Proxy-Authorization")
    };
    let values: Vec<String> = resp
        .headers
        .get_all(challenge_header)
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .collect();
    let challenge = Challenge::best(values.iter().map(String::as_str)).ok()?;
    Some((
        answer_header,
        answer_challenge(&challenge, user, password, "INVITE", uri, cnonce, 1),
    ))
}
