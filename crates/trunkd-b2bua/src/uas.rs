//! A call with one leg where trunkd is the user agent server: the call
//! answers itself (a recording session, an application call) instead of
//! bridging to a B leg.
//!
//! ```text
//!   new ──▶ Offered ──answer──▶ Answered ──ACK──▶ Confirmed ──BYE (either side)──▶ Ended
//!             │                    │                 │
//!             ├──CANCEL──▶ Ended (487)               └──re-INVITE/UPDATE: answered again
//!             └──reject──▶ Ended (final)    └──no ACK (Timer H)──▶ Ended (BYE sent)
//! ```
//!
//! It has the shape of [`crate::Call`] and speaks the same [`CallInput`]s
//! and [`CallOutput`]s (always on [`Leg::A`]), so the engine and the shell
//! treat both alike. The dialog handling here knows nothing of what the
//! call is for: what it answers is the [`SdpAnswerer`]'s business (a
//! recording answers every stream `recvonly`; an application call
//! answers `sendrecv` and plays into the stream), and when it answers is
//! the owner's ([`UasCall::answer`], [`UasCall::reject`]). An in-dialog
//! INFO with a body is answered 200 and its body handed to the owner
//! ([`CallEvent::Info`]: DTMF for an application).

use std::collections::VecDeque;
use std::time::{Instant, SystemTime};

use bytes::Bytes;
use trunkd_core::cdr::CallOutcome;
use trunkd_sip::{Method, Request, StatusCode};

use crate::call::{CallEnd, CallEvent, CallInput, CallOutput};
use crate::leg::{contact_uri, strip_tag, uas_response, LegState};
use crate::media::MediaRefusal;
use crate::rng::Ids;
use crate::{Leg, LocalAddrs, Peer, ServerTxId};

/// What a [`UasCall`] answers an SDP offer with. The media side of the call
/// (the anchor that binds the ports) implements it; tests use a fixed one.
pub trait SdpAnswerer: Send {
    /// trunkd's answer to `offer` (a session description, already taken
    /// out of a multipart body), or why the offer cannot be taken (488,
    /// 503 when no media ports are left).
    ///
    /// # Errors
    /// The refusal the offerer gets.
    fn answer(&mut self, offer: &Bytes) -> Result<Bytes, MediaRefusal>;
}

/// Re-INVITEs kept for [`UasCall::poll_reoffer`] at most.
pub const MAX_REOFFERS: usize = 8;

/// The methods a [`UasCall`] answers in its dialog (`Allow`).
pub const UAS_ALLOW: &str = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE";

/// Everything a UAS call needs at creation.
pub struct NewUasCall {
    pub seed: u64,
    pub now: Instant,
    pub wall: SystemTime,
    pub local: LocalAddrs,
    /// The INVITE and its server transaction.
    pub invite: Request,
    pub invite_tx: ServerTxId,
    /// Where the INVITE came from: in-dialog requests go there.
    pub a_dest: Peer,
    /// A media feature tag for trunkd's Contact (RFC 3840), e.g.
    /// `+sip.srs` for a recording server (RFC 7866 §6.1.2).
    pub contact_feature: Option<&'static str>,
    pub answerer: Box<dyn SdpAnswerer>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// The INVITE waits for [`UasCall::answer`] or [`UasCall::reject`].
    Offered,
    /// 200 sent, no ACK yet.
    Answered,
    Confirmed,
    Ended,
}

pub struct UasCall {
    ids: Ids,
    local: LocalAddrs,
    start: Instant,
    wall_start: SystemTime,
    invite: Request,
    invite_tx: ServerTxId,
    a: LegState,
    contact: String,
    answerer: Box<dyn SdpAnswerer>,
    /// The last SDP trunkd sent: offered again in the 200 to a re-INVITE
    /// without one (RFC 3264 §8: the same session, nothing changed).
    last_answer: Bytes,
    /// Re-INVITEs answered 200, for an owner that asked to see them
    /// ([`UasCall::keep_reoffers`]); `None` keeps none.
    reoffers: Option<VecDeque<Request>>,
    state: State,
    answered_at: Option<Instant>,
    outcome: Option<CallOutcome>,
    out: VecDeque<CallOutput>,
}

impl UasCall {
    /// Takes the INVITE; nothing is answered until [`UasCall::answer`] or
    /// [`UasCall::reject`].
    pub fn new(n: NewUasCall) -> UasCall {
        let mut ids = Ids::new(n.seed);
        let headers = &n.invite.headers;
        let a = LegState {
            call_id: headers.get("Call-ID").cloned().unwrap_or_default(),
            local_tag: ids.tag(),
            remote_tag: headers
                .from_tag()
                .ok()
                .flatten()
                .map(|t| String::from_utf8_lossy(&t).into_owned()),
            local_uri: headers.get("To").map(strip_tag).unwrap_or_default(),
            remote_uri: headers.get("From").map(strip_tag).unwrap_or_default(),
            remote_target: contact_uri(headers)
                .unwrap_or_else(|| String::from_utf8_lossy(&n.invite.uri.to_bytes()).into_owned()),
            // trunkd is the UAS: the route set is the Record-Route as received.
            route_set: headers.values("Record-Route"),
            local_cseq: 0,
            dest: n.a_dest,
        };
        let base = n.local.contact(n.a_dest.transport);
        let contact = match n.contact_feature {
            Some(f) => format!("{base};{f}"),
            None => base,
        };
        let mut call = UasCall {
            ids,
            local: n.local,
            start: n.now,
            wall_start: n.wall,
            invite: n.invite,
            invite_tx: n.invite_tx,
            a,
            contact,
            answerer: n.answerer,
            last_answer: Bytes::new(),
            reoffers: None,
            state: State::Offered,
            answered_at: None,
            outcome: None,
            out: VecDeque::new(),
        };
        call.out.push_back(CallOutput::Register {
            call_id: call.a.call_id.clone(),
            leg: Leg::A,
        });
        call
    }

    /// Answers the INVITE 200 with the answerer's SDP (Contact, To tag,
    /// the INVITE's Record-Route). An INVITE without an offer, or with one
    /// the answerer refuses, is rejected instead (488, or the refusal's
    /// status): trunkd has nothing to offer on its own.
    pub fn answer(&mut self, now: Instant) {
        if self.state != State::Offered {
            return;
        }
        let offer = session_sdp(&self.invite);
        let body = match offer.map(|o| self.answerer.answer(&o)) {
            Some(Ok(body)) => body,
            Some(Err(refusal)) => return self.reject(now, refusal.status, &refusal.reason),
            None => return self.reject(now, 488, "Not Acceptable Here (no SDP offer)"),
        };
        let mut r = uas_response(
            &self.invite,
            StatusCode::OK,
            "OK",
            &self.a.local_tag,
            Some(&self.contact),
        );
        // RFC 3261 §12.1.1: a proxy in front of trunkd stays in the path.
        for rr in self.invite.headers.values("Record-Route") {
            let _ = r.headers.append("Record-Route", rr);
        }
        let _ = r.headers.append("Allow", UAS_ALLOW.to_owned());
        let _ = r
            .headers
            .append("Content-Type", "application/sdp".to_owned());
        r.body = body.clone();
        self.last_answer = body;
        self.out.push_back(CallOutput::SendResponse {
            tx: self.invite_tx,
            response: r,
        });
        self.answered_at = Some(now);
        self.state = State::Answered;
        self.out
            .push_back(CallOutput::Event(CallEvent::Answered { hop: 0 }));
    }

    /// Rejects the INVITE with a final `status` (4xx–6xx) and ends.
    pub fn reject(&mut self, now: Instant, status: u16, reason: &str) {
        if self.state != State::Offered {
            return;
        }
        let code = StatusCode::new(status)
            .filter(|c| c.as_u16() >= 300)
            .unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
        let r = uas_response(&self.invite, code, reason, &self.a.local_tag, None);
        self.out.push_back(CallOutput::SendResponse {
            tx: self.invite_tx,
            response: r,
        });
        self.outcome = Some(CallOutcome::Failed {
            status: code.as_u16(),
            reason: reason.to_owned(),
        });
        self.end(now);
    }

    /// Keep each re-INVITE answered 200 for [`UasCall::poll_reoffer`]: a
    /// recording session reports the SRC's updated metadata (RFC 7866
    /// §7.1.2) from them. At most [`MAX_REOFFERS`] wait; older ones are
    /// dropped.
    pub fn keep_reoffers(&mut self) {
        self.reoffers.get_or_insert_with(VecDeque::new);
    }

    /// The next re-INVITE answered 200 (only with [`UasCall::keep_reoffers`]).
    pub fn poll_reoffer(&mut self) -> Option<Request> {
        self.reoffers.as_mut()?.pop_front()
    }

    pub fn poll_output(&mut self) -> Option<CallOutput> {
        crate::pop_output(&mut self.out)
    }

    pub fn is_ended(&self) -> bool {
        self.state == State::Ended && self.out.is_empty()
    }

    /// Whether the call has been answered and not ended.
    pub fn is_answered(&self) -> bool {
        matches!(self.state, State::Answered | State::Confirmed)
    }

    /// No timer of its own: retransmissions and Timer H live in the
    /// transaction layer, which reports a missing ACK as an input.
    pub fn poll_timeout(&self) -> Option<Instant> {
        None
    }

    pub fn handle_timeout(&mut self, _now: Instant) {}

    /// The Call-ID (CDR CallId).
    pub fn call_id(&self) -> &Bytes {
        &self.a.call_id
    }

    pub fn handle(&mut self, now: Instant, input: CallInput) {
        match input {
            CallInput::Request { tx, request, .. } => self.on_request(now, tx, request),
            CallInput::Ack { request, .. } => {
                let invite_cseq = cseq(&self.invite);
                if self.state == State::Answered && cseq(&request) == invite_cseq {
                    self.state = State::Confirmed;
                }
                // A re-INVITE's ACK (maybe with the answer to the offer in
                // our 200): nothing to do, trunkd never sends media here.
            }
            CallInput::Cancelled => {
                if self.state == State::Offered {
                    let r = uas_response(
                        &self.invite,
                        StatusCode::REQUEST_TERMINATED,
                        "Request Terminated",
                        &self.a.local_tag,
                        None,
                    );
                    self.out.push_back(CallOutput::SendResponse {
                        tx: self.invite_tx,
                        response: r,
                    });
                    self.outcome = Some(CallOutcome::Cancelled);
                    self.end(now);
                }
                // Answered already: the 200 and the CANCEL crossed; the
                // caller ACKs and sends BYE.
            }
            // RFC 3261 §13.3.1.4: no ACK for the 2xx ends the dialog.
            CallInput::AckTimeout { .. } | CallInput::Hangup => self.hang_up(now),
            // Responses to trunkd's BYE, or their absence: the call ended
            // when the BYE left.
            CallInput::Response { .. }
            | CallInput::Timeout { .. }
            | CallInput::TransportError { .. }
            | CallInput::StrayResponse { .. } => {}
        }
    }

    fn on_request(&mut self, now: Instant, tx: ServerTxId, req: Request) {
        let in_dialog = matches!(self.state, State::Answered | State::Confirmed);
        if !in_dialog {
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
                self.outcome = Some(CallOutcome::Answered);
                self.end(now);
            }
            Method::Invite | Method::Update => self.on_offer(tx, req),
            Method::Info => {
                self.respond(tx, &req, StatusCode::OK, "OK");
                if !req.body.is_empty() {
                    let content_type = req
                        .headers
                        .get("Content-Type")
                        .map(|v| String::from_utf8_lossy(v).into_owned())
                        .unwrap_or_default();
                    self.out.push_back(CallOutput::Event(CallEvent::Info {
                        content_type,
                        body: req.body.clone(),
                    }));
                }
            }
            Method::Options | Method::Notify | Method::Message | Method::Prack => {
                self.respond(tx, &req, StatusCode::OK, "OK")
            }
            _ => {
                let mut r = uas_response(
                    &req,
                    StatusCode::new(405).unwrap_or(StatusCode::NOT_IMPLEMENTED),
                    "Method Not Allowed",
                    &self.a.local_tag,
                    None,
                );
                let _ = r.headers.append("Allow", UAS_ALLOW.to_owned());
                self.out
                    .push_back(CallOutput::SendResponse { tx, response: r });
            }
        }
    }

    /// A re-INVITE or UPDATE in the dialog: its offer answered anew; one
    /// without an offer gets the last SDP as trunkd's offer (RFC 3264 §8).
    fn on_offer(&mut self, tx: ServerTxId, req: Request) {
        let body = match session_sdp(&req) {
            Some(offer) => match self.answerer.answer(&offer) {
                Ok(b) => b,
                Err(refusal) => {
                    // The session goes on as it was (RFC 3261 §14.2).
                    let code =
                        StatusCode::new(refusal.status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
                    return self.respond(tx, &req, code, &refusal.reason);
                }
            },
            None if req.method == Method::Invite => self.last_answer.clone(),
            None => Bytes::new(),
        };
        if let Some(target) = contact_uri(&req.headers) {
            self.a.remote_target = target;
        }
        let mut r = uas_response(
            &req,
            StatusCode::OK,
            "OK",
            &self.a.local_tag,
            Some(&self.contact),
        );
        if !body.is_empty() {
            let _ = r
                .headers
                .append("Content-Type", "application/sdp".to_owned());
            self.last_answer = body.clone();
        }
        r.body = body;
        self.out
            .push_back(CallOutput::SendResponse { tx, response: r });
        if let (Some(kept), Method::Invite) = (self.reoffers.as_mut(), &req.method) {
            if kept.len() >= MAX_REOFFERS {
                kept.pop_front();
            }
            kept.push_back(req);
        }
    }

    fn respond(&mut self, tx: ServerTxId, req: &Request, status: StatusCode, reason: &str) {
        let r = uas_response(req, status, reason, &self.a.local_tag, None);
        self.out
            .push_back(CallOutput::SendResponse { tx, response: r });
    }

    /// trunkd ends the call: BYE in a dialog, 503 before an answer.
    fn hang_up(&mut self, now: Instant) {
        match self.state {
            State::Offered => self.reject(now, 503, "Service Unavailable"),
            State::Answered | State::Confirmed => {
                let branch = self.ids.branch();
                let req = self.a.request(Method::Bye, &self.local, &branch, 70);
                self.out.push_back(CallOutput::SendRequest {
                    leg: Leg::A,
                    request: req,
                    dest: self.a.dest,
                    timeout: None,
                });
                self.outcome = Some(CallOutcome::Answered);
                self.end(now);
            }
            State::Ended => {}
        }
    }

    fn end(&mut self, now: Instant) {
        if self.state == State::Ended {
            return;
        }
        let wall = |t: Instant| self.wall_start + t.saturating_duration_since(self.start);
        let outcome = self.outcome.take().unwrap_or(CallOutcome::Answered);
        self.out
            .push_back(CallOutput::Event(CallEvent::Ended(CallEnd {
                outcome,
                answered: self.answered_at.map(wall),
                end: wall(now),
                hop: None,
            })));
        self.out.push_back(CallOutput::Unregister {
            call_id: self.a.call_id.clone(),
        });
        self.state = State::Ended;
    }
}

/// The session description of a request: a plain SDP body or the SDP part
/// of a multipart one (RFC 5621; a SIPREC offer sits next to its metadata).
fn session_sdp(req: &Request) -> Option<Bytes> {
    let ct = req.headers.get("Content-Type").map(|v| &v[..]);
    trunkd_sip::session_sdp(ct, &req.body).filter(|b| !b.is_empty())
}

fn cseq(req: &Request) -> Option<u32> {
    req.headers.cseq().ok().map(|c| c.seq)
}

#[cfg(test)]
#[path = "uas_tests.rs"]
mod tests;
