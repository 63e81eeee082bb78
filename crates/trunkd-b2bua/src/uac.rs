//! A call leg where trunkd is the user agent client and nobody sent trunkd
//! an INVITE: the B leg of an application's CallAndBridge, or the only leg
//! of an outbound application call (CreateSipMediaApplicationCall).
//!
//! ```text
//!   new ──▶ Routing{hop} ──2xx (ACK sent)──▶ Connected ──BYE (either side)──▶ Ended
//!             │  ▲ failover (timeout, transport error, 408, 3xx, 5xx)
//!             │  └─────────────┘
//!             ├──4xx/6xx, or no hop left──▶ Ended (Failed)
//!             └──ring timeout or hang_up──▶ Cancelling ──final──▶ Ended
//! ```
//!
//! It routes like the B leg of [`crate::Call`] (same [`Hop`] plan, the same
//! failover statuses, digest answers to a carrier's 401/407), but what a
//! [`crate::Call`] relays to its A leg is reported here as a [`UacEvent`]
//! for the owner (the application call task) to act on: ringing, the
//! callee's SDP answer, the failure, the callee's BYE. The owner offers the
//! SDP (its media endpoint's) and decides when the leg ends; the leg ACKs
//! 2xx itself because no caller's ACK is waited for.
//!
//! It speaks the same [`CallInput`]s and [`CallOutput`]s as the other
//! calls, on the [`Leg`] its owner names ([`NewUacLeg::side`]: `B` for a
//! leg bridged to a caller, `A` for the first leg of a call trunkd
//! places), so the engine routes its messages by the Call-ID it registers
//! to the owner, and an owner with two legs tells them apart.

use std::collections::VecDeque;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use trunkd_sip::{Method, Request, Response, StatusCode};

use crate::call::{
    answer_hop_challenge, cseq_num, failover_status, reason, CallInput, CallOutput, Hop,
};
use crate::leg::{uas_response, LegState};
use crate::rng::Ids;
use crate::uas::SdpAnswerer;
use crate::{Leg, LocalAddrs, ServerTxId};

/// Everything a UAC leg needs at creation.
pub struct NewUacLeg {
    pub seed: u64,
    pub now: Instant,
    pub wall: SystemTime,
    pub local: LocalAddrs,
    /// The Request-URI and To user (the number called).
    pub callee: String,
    /// The From and P-Asserted-Identity user (CallerIdNumber,
    /// FromPhoneNumber).
    pub caller: String,
    pub plan: Vec<Hop>,
    /// trunkd's SDP offer (the owner's media endpoint).
    pub offer: Bytes,
    /// Extra headers for the INVITE (an application's `SipHeaders`, e.g.
    /// `X-` headers and `User-to-User`), already checked by the owner.
    pub headers: Vec<(String, String)>,
    /// How long one hop may stay silent before the next is tried.
    pub hop_timeout: Duration,
    /// How long the callee may ring before the attempt is cancelled
    /// (CallAndBridge `CallTimeoutSeconds`); counted from creation.
    pub ring_timeout: Duration,
    /// Answers re-offers (re-INVITE, UPDATE) from the callee once
    /// connected. Without one they get 488 and the session goes on as it
    /// was (RFC 3261 §14.2).
    pub reoffer: Option<Box<dyn SdpAnswerer>>,
    /// The leg its messages are tagged with (and come back on).
    pub side: Leg,
}

/// Why a [`UacLeg`] never got connected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UacFailure {
    /// The last final status (408 for no answer in time, 487 when the
    /// owner gave up first).
    pub status: u16,
    pub reason: String,
    /// The ring timeout ran out (CallTimeoutSeconds): the managed service
    /// reports this apart from a busy or rejected callee.
    pub timed_out: bool,
}

/// What the leg tells its owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UacEvent {
    /// The first 18x of an attempt (RINGING for the application), with
    /// early SDP if the callee sent one.
    Ringing { hop: usize, sdp: Option<Bytes> },
    /// `hop` answered; `sdp` is the callee's answer to trunkd's offer (the
    /// owner points its media at it).
    Answered { hop: usize, sdp: Bytes },
    /// The leg ended before it was answered.
    Failed(UacFailure),
    /// The connected leg ended; `by_callee` when the callee sent BYE.
    Ended { by_callee: bool },
}

#[derive(Debug)]
struct Attempt {
    hop: usize,
    branch: Bytes,
    ringing: bool,
    auth_tried: bool,
}

#[derive(Debug)]
enum State {
    Routing(Attempt),
    /// CANCEL sent; waiting for the INVITE's final.
    Cancelling(UacFailure),
    Connected,
    Ended,
}

pub struct UacLeg {
    ids: Ids,
    local: LocalAddrs,
    wall_start: SystemTime,
    start: Instant,
    callee: String,
    caller: String,
    plan: Vec<Hop>,
    offer: Bytes,
    headers: Vec<(String, String)>,
    hop_timeout: Duration,
    ring_deadline: Instant,
    reoffer: Option<Box<dyn SdpAnswerer>>,
    side: Leg,
    leg: Option<LegState>,
    state: State,
    last_failure: (u16, String),
    /// Our ACK to the 2xx, resent when the callee retransmits it.
    acked: Option<Request>,
    answered_at: Option<Instant>,
    /// The time of the input being handled.
    now: Instant,
    finished: bool,
    out: VecDeque<CallOutput>,
    events: VecDeque<UacEvent>,
}

impl UacLeg {
    /// Creates the leg and sends the INVITE to the first hop.
    pub fn new(n: NewUacLeg) -> UacLeg {
        let mut leg = UacLeg {
            ids: Ids::new(n.seed),
            local: n.local,
            wall_start: n.wall,
            start: n.now,
            callee: n.callee,
            caller: n.caller,
            plan: n.plan,
            offer: n.offer,
            headers: n.headers,
            hop_timeout: n.hop_timeout,
            ring_deadline: n.now + n.ring_timeout,
            reoffer: n.reoffer,
            side: n.side,
            leg: None,
            state: State::Ended,
            last_failure: (503, "Service Unavailable".into()),
            acked: None,
            answered_at: None,
            now: n.now,
            finished: false,
            out: VecDeque::new(),
            events: VecDeque::new(),
        };
        leg.try_hop(0);
        leg
    }

    pub fn poll_output(&mut self) -> Option<CallOutput> {
        crate::pop_output(&mut self.out)
    }

    pub fn poll_event(&mut self) -> Option<UacEvent> {
        self.events.pop_front()
    }

    pub fn is_ended(&self) -> bool {
        matches!(self.state, State::Ended) && self.out.is_empty() && self.events.is_empty()
    }

    pub fn is_connected(&self) -> bool {
        matches!(self.state, State::Connected)
    }

    /// When the answered leg was answered, as wall time (CDR).
    pub fn answered_wall(&self) -> Option<SystemTime> {
        self.answered_at
            .map(|t| self.wall_start + t.saturating_duration_since(self.start))
    }

    /// The ring deadline while routing (transaction timers live in the
    /// transaction layer).
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            State::Routing(_) => Some(self.ring_deadline),
            _ => None,
        }
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        self.now = now;
        if matches!(self.state, State::Routing(_)) && now >= self.ring_deadline {
            self.cancel(UacFailure {
                status: 408,
                reason: "Request Timeout".into(),
                timed_out: true,
            });
        }
    }

    /// The owner ends the leg: CANCEL while routing, BYE when connected.
    pub fn hang_up(&mut self) {
        match self.state {
            State::Routing(_) => self.cancel(UacFailure {
                status: 487,
                reason: "Request Terminated".into(),
                timed_out: false,
            }),
            State::Connected => {
                self.send_bye();
                self.finish(UacEvent::Ended { by_callee: false });
            }
            State::Cancelling(_) | State::Ended => {}
        }
    }

    pub fn handle(&mut self, now: Instant, input: CallInput) {
        self.now = now;
        match input {
            CallInput::Response {
                branch, response, ..
            } => self.on_response(branch, response),
            CallInput::Timeout { branch, .. } => {
                self.on_attempt_failure(branch, 408, "Request Timeout")
            }
            CallInput::TransportError { branch, .. } => {
                self.on_attempt_failure(branch, 503, "Service Unavailable")
            }
            CallInput::Request { tx, request, .. } => self.on_request(tx, request),
            CallInput::StrayResponse { response, .. } if response.status.is_success() => {
                self.resend_ack()
            }
            CallInput::Hangup => self.hang_up(),
            CallInput::Ack { .. }
            | CallInput::Cancelled
            | CallInput::AckTimeout { .. }
            | CallInput::StrayResponse { .. } => {}
        }
        self.handle_timeout(now);
    }

    /// How trunkd appears on the wire for this leg.
    pub fn local(&self) -> &LocalAddrs {
        &self.local
    }

    /// The Call-ID of the current attempt.
    pub fn call_id(&self) -> Option<&Bytes> {
        self.leg.as_ref().map(|l| &l.call_id)
    }

    // ----- routing -------------------------------------------------------

    fn try_hop(&mut self, hop: usize) {
        let Some(h) = self.plan.get(hop).cloned() else {
            let (status, reason) = self.last_failure.clone();
            return self.finish(UacEvent::Failed(UacFailure {
                status,
                reason,
                timed_out: false,
            }));
        };
        let target = h.target(Some(&self.callee));
        let state = LegState {
            call_id: Bytes::from(self.ids.call_id("trunkd")),
            local_tag: self.ids.tag(),
            remote_tag: None,
            local_uri: self.local.name_addr(&self.caller, None, h.dest.transport),
            remote_uri: format!("<sip:{}@{}>", self.callee, h.uri_host),
            remote_target: target,
            route_set: Vec::new(),
            local_cseq: 0,
            dest: h.dest,
        };
        if let Some(old) = self.leg.replace(state.clone()) {
            self.out.push_back(CallOutput::Unregister {
                call_id: old.call_id,
            });
        }
        self.out.push_back(CallOutput::Register {
            call_id: state.call_id,
            leg: self.side,
        });
        let attempt = self.send_invite(hop, None);
        self.state = State::Routing(attempt);
    }

    fn send_invite(&mut self, hop: usize, auth: Option<(&'static str, String)>) -> Attempt {
        let branch = self.ids.branch();
        let local = self.local.clone();
        let auth_tried = auth.is_some();
        let Some(l) = self.leg.as_mut() else {
            return Attempt {
                hop,
                branch: Bytes::new(),
                ringing: false,
                auth_tried,
            };
        };
        let mut req = l.request(Method::Invite, &local, &branch, 70);
        let h = &mut req.headers;
        let _ = h.append("Contact", local.contact(l.dest.transport));
        let _ = h.append(
            "P-Asserted-Identity",
            local.name_addr(&self.caller, None, l.dest.transport),
        );
        for (name, value) in &self.headers {
            // A name or value with CR/LF is refused by the header map: the
            // owner's input cannot inject headers.
            let _ = h.append(name, value.clone());
        }
        if let Some((name, value)) = auth {
            let _ = h.append(name, value);
        }
        let _ = h.append("Content-Type", "application/sdp".to_owned());
        req.body = self.offer.clone();
        let dest = l.dest;
        self.out.push_back(CallOutput::SendRequest {
            leg: self.side,
            request: req,
            dest,
            timeout: Some(self.hop_timeout),
        });
        Attempt {
            hop,
            branch: Bytes::from(branch),
            ringing: false,
            auth_tried,
        }
    }

    fn on_attempt_failure(&mut self, branch: Bytes, code: u16, why: &str) {
        match &self.state {
            State::Routing(att) if att.branch == branch => {
                let hop = att.hop;
                self.next_hop(hop, code, why);
            }
            State::Cancelling(f) => {
                let f = f.clone();
                self.finish(UacEvent::Failed(f));
            }
            // A BYE that got no answer: the leg ended when it left.
            _ => {}
        }
    }

    fn next_hop(&mut self, hop: usize, code: u16, why: &str) {
        self.last_failure = (code, why.to_owned());
        self.try_hop(hop + 1);
    }

    fn on_response(&mut self, branch: Bytes, resp: Response) {
        let code = resp.status.as_u16();
        match &self.state {
            State::Routing(att) if att.branch == branch => self.on_invite_response(resp),
            State::Cancelling(f) if code >= 200 && is_invite(&resp) => {
                let f = f.clone();
                if resp.status.is_success() {
                    // Answered as we cancelled: ACK, then BYE.
                    self.ack(&resp);
                    self.send_bye();
                }
                self.finish(UacEvent::Failed(f));
            }
            State::Connected if resp.status.is_success() && is_invite(&resp) => self.resend_ack(),
            _ => {}
        }
    }

    fn on_invite_response(&mut self, resp: Response) {
        let code = resp.status.as_u16();
        let State::Routing(att) = &mut self.state else {
            return;
        };
        let hop = att.hop;
        if code == 100 {
            return;
        }
        if code < 200 {
            let first = !att.ringing;
            att.ringing = true;
            if let Some(l) = self.leg.as_mut() {
                if resp.headers.to_tag().is_ok_and(|t| t.is_some()) {
                    l.learn_from_response(&resp);
                }
            }
            let sdp = sdp_of(&resp);
            if first || sdp.is_some() {
                self.events.push_back(UacEvent::Ringing { hop, sdp });
            }
            return;
        }
        if resp.status.is_success() {
            self.ack(&resp);
            let Some(sdp) = sdp_of(&resp) else {
                // A 2xx without an answer to our offer is broken (RFC 3264
                // §5): trunkd cannot send media; end the dialog at once.
                self.send_bye();
                return self.finish(UacEvent::Failed(UacFailure {
                    status: 488,
                    reason: "Not Acceptable Here (no SDP answer)".into(),
                    timed_out: false,
                }));
            };
            self.answered_at = Some(self.now);
            self.state = State::Connected;
            self.events.push_back(UacEvent::Answered { hop, sdp });
            return;
        }
        if (code == 401 || code == 407) && !att.auth_tried {
            if let Some(auth) = self.authorization_for(hop, &resp) {
                let attempt = self.send_invite(hop, Some(auth));
                self.state = State::Routing(attempt);
                return;
            }
        }
        let why = reason(&resp);
        if failover_status(code) {
            self.next_hop(hop, code, &why);
        } else {
            self.finish(UacEvent::Failed(UacFailure {
                status: code,
                reason: why,
                timed_out: false,
            }));
        }
    }

    fn authorization_for(&mut self, hop: usize, resp: &Response) -> Option<(&'static str, String)> {
        let hop = self.plan.get(hop)?;
        let uri = self.leg.as_ref()?.remote_target.clone();
        let cnonce = format!("{:016x}", self.ids.next());
        answer_hop_challenge(hop, resp, &uri, &cnonce)
    }

    fn cancel(&mut self, failure: UacFailure) {
        if let State::Routing(att) = &self.state {
            let branch = att.branch.clone();
            self.out.push_back(CallOutput::Cancel { branch });
            self.state = State::Cancelling(failure);
        }
    }

    // ----- in the dialog -------------------------------------------------

    fn on_request(&mut self, tx: ServerTxId, req: Request) {
        if !matches!(self.state, State::Connected) {
            return self.respond(
                tx,
                &req,
                StatusCode::CALL_DOES_NOT_EXIST,
                "Call/Transaction Does Not Exist",
            );
        }
        match req.method {
            Method::Bye => {
                self.respond(tx, &req, StatusCode::OK, "OK");
                self.finish(UacEvent::Ended { by_callee: true });
            }
            Method::Invite | Method::Update => self.on_reoffer(tx, req),
            Method::Options | Method::Info | Method::Notify | Method::Message => {
                self.respond(tx, &req, StatusCode::OK, "OK")
            }
            _ => {
                let code = StatusCode::new(405).unwrap_or(StatusCode::NOT_IMPLEMENTED);
                self.respond(tx, &req, code, "Method Not Allowed")
            }
        }
    }

    /// A refresh without SDP gets our last SDP (RFC 3264 §8: nothing
    /// changed); an offer goes to the owner's answerer, or gets 488.
    fn on_reoffer(&mut self, tx: ServerTxId, req: Request) {
        let ct = req.headers.get("Content-Type").map(|v| &v[..]);
        let offer = trunkd_sip::session_sdp(ct, &req.body).filter(|b| !b.is_empty());
        let body = match (offer, self.reoffer.as_mut()) {
            (None, _) if req.method == Method::Invite => self.offer.clone(),
            (None, _) => Bytes::new(),
            (Some(o), Some(answerer)) => match answerer.answer(&o) {
                Ok(b) => b,
                Err(refusal) => {
                    let code =
                        StatusCode::new(refusal.status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
                    return self.respond(tx, &req, code, &refusal.reason);
                }
            },
            (Some(_), None) => {
                let code = StatusCode::new(488).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
                return self.respond(tx, &req, code, "Not Acceptable Here");
            }
        };
        let Some(l) = self.leg.as_mut() else {
            return;
        };
        if let Some(target) = crate::leg::contact_uri(&req.headers) {
            l.remote_target = target;
        }
        let contact = self.local.contact(l.dest.transport);
        let mut r = uas_response(&req, StatusCode::OK, "OK", &l.local_tag, Some(&contact));
        if !body.is_empty() {
            let _ = r
                .headers
                .append("Content-Type", "application/sdp".to_owned());
        }
        r.body = body;
        self.out
            .push_back(CallOutput::SendResponse { tx, response: r });
    }

    fn respond(&mut self, tx: ServerTxId, req: &Request, status: StatusCode, why: &str) {
        let tag = self
            .leg
            .as_ref()
            .map(|l| l.local_tag.clone())
            .unwrap_or_default();
        let r = uas_response(req, status, why, &tag, None);
        self.out
            .push_back(CallOutput::SendResponse { tx, response: r });
    }

    // ----- ACK, BYE, end -------------------------------------------------

    fn ack(&mut self, resp: &Response) {
        let local = self.local.clone();
        let branch = self.ids.branch();
        if let Some(l) = self.leg.as_mut() {
            l.learn_from_response(resp);
            let cseq = cseq_num(resp).unwrap_or(l.local_cseq);
            let req = l.request_with_cseq(Method::Ack, cseq, &local, &branch, 70);
            self.acked = Some(req.clone());
            self.out.push_back(CallOutput::SendStateless {
                request: req,
                dest: l.dest,
            });
        }
    }

    fn resend_ack(&mut self) {
        if let (Some(ack), Some(l)) = (&self.acked, &self.leg) {
            self.out.push_back(CallOutput::SendStateless {
                request: ack.clone(),
                dest: l.dest,
            });
        }
    }

    fn send_bye(&mut self) {
        let local = self.local.clone();
        let branch = self.ids.branch();
        if let Some(l) = self.leg.as_mut() {
            let req = l.request(Method::Bye, &local, &branch, 70);
            self.out.push_back(CallOutput::SendRequest {
                leg: self.side,
                request: req,
                dest: l.dest,
                timeout: None,
            });
        }
    }

    fn finish(&mut self, event: UacEvent) {
        if self.finished {
            return;
        }
        self.finished = true;
        self.events.push_back(event);
        if let Some(l) = self.leg.take() {
            self.out
                .push_back(CallOutput::Unregister { call_id: l.call_id });
        }
        self.state = State::Ended;
    }
}

fn is_invite(resp: &Response) -> bool {
    resp.headers
        .cseq()
        .ok()
        .is_some_and(|c| c.method == Method::Invite)
}

/// The session description in a response, if any.
fn sdp_of(resp: &Response) -> Option<Bytes> {
    let ct = resp.headers.get("Content-Type").map(|v| &v[..]);
    trunkd_sip::session_sdp(ct, &resp.body).filter(|b| !b.is_empty())
}

#[cfg(test)]
#[path = "uac_tests.rs"]
mod tests;
