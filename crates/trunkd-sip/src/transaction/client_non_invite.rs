//! Non-INVITE client transaction (RFC 3261 §17.1.2, Figure 6).
//!
//! ```text
//!  (Pending: a CANCEL held until its INVITE gets a provisional, §9.1)
//!            send request, E (UDP), F
//!  Trying --1xx: pass up--> Proceeding (E every T2)
//!     |  E: resend, T1 doubling to T2      |
//!     |  F: Timeout                        |  F: Timeout
//!     '--------- final: pass up -----------'--> Completed (K; absorb) --K--> Terminated
//! ```

use std::time::{Duration, Instant};

use bytes::Bytes;

use super::timer::{backoff, TimerTable, TxTimer};
use super::{ClientTxId, Ctx, Peer, TxEvent, TxId, TxState};
use crate::message::{Request, Response};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Pending,
    Trying,
    Proceeding,
    Completed,
    Terminated,
}

/// One non-INVITE client transaction.
#[derive(Debug)]
pub(crate) struct ClientNonInvite {
    id: ClientTxId,
    /// The request and its wire form, until a final response: Completed
    /// only absorbs retransmitted responses (Timer K).
    pub(crate) request: Option<Box<Request>>,
    bytes: Bytes,
    dest: Peer,
    state: State,
    timers: TimerTable,
    e_interval: Duration,
    timer_f: Duration,
}

impl ClientNonInvite {
    /// Creates the transaction; sends the request now when `send_now`,
    /// otherwise waits in Pending for [`ClientNonInvite::begin`].
    pub(crate) fn start(
        id: ClientTxId,
        mut request: Request,
        dest: Peer,
        timer_f: Duration,
        send_now: bool,
        ctx: &mut Ctx<'_>,
    ) -> ClientNonInvite {
        let bytes = request.to_bytes();
        // Kept until the final response (`Endpoint::request` hands it to
        // the transaction user): without the builder's spare rows.
        request.headers.shrink_to_fit();
        let mut tx = ClientNonInvite {
            id,
            request: Some(Box::new(request)),
            bytes,
            dest,
            state: State::Pending,
            timers: TimerTable::default(),
            e_interval: ctx.cfg.t1,
            timer_f,
        };
        if send_now {
            tx.begin(ctx);
        }
        tx
    }

    /// Sends the request and arms Timers E (UDP) and F (§17.1.2.2).
    pub(crate) fn begin(&mut self, ctx: &mut Ctx<'_>) {
        if self.state != State::Pending {
            return;
        }
        self.state = State::Trying;
        self.send_request(ctx);
        if !self.dest.transport.reliable() {
            self.timers.set(TxTimer::E, ctx.now, self.e_interval);
        }
        self.timers.set(TxTimer::F, ctx.now, self.timer_f);
    }

    fn send_request(&self, ctx: &mut Ctx<'_>) {
        ctx.out
            .send(self.dest, self.bytes.clone(), Some(TxId::Client(self.id)));
    }

    /// Ends the transaction at once (a pending CANCEL whose INVITE ended).
    pub(crate) fn terminate(&mut self) {
        self.state = State::Terminated;
        self.timers.stop_all();
        self.release();
    }

    fn release(&mut self) {
        self.request = None;
        self.bytes = Bytes::new();
    }

    /// A response whose branch and CSeq method match.
    pub(crate) fn on_response(&mut self, response: Response, ctx: &mut Ctx<'_>) {
        match self.state {
            State::Trying | State::Proceeding => {
                let is_final = response.status.is_final();
                ctx.out.event(TxEvent::Response {
                    tx: self.id,
                    response,
                });
                if !is_final {
                    self.state = State::Proceeding;
                } else if self.dest.transport.reliable() {
                    self.terminate();
                } else {
                    self.state = State::Completed;
                    self.release();
                    self.timers.stop_all();
                    self.timers.set(TxTimer::K, ctx.now, ctx.cfg.t4);
                }
            }
            // Pending never sent anything; Completed absorbs retransmissions.
            State::Pending | State::Completed | State::Terminated => {}
        }
    }

    /// Runs the expired timers.
    pub(crate) fn on_timeout(&mut self, ctx: &mut Ctx<'_>) {
        while let Some(timer) = self.timers.pop_expired(ctx.now) {
            match (timer, self.state) {
                (TxTimer::E, State::Trying) => {
                    self.send_request(ctx);
                    self.e_interval = backoff(self.e_interval, Some(ctx.cfg.t2));
                    self.timers.set(TxTimer::E, ctx.now, self.e_interval);
                }
                (TxTimer::E, State::Proceeding) => {
                    self.send_request(ctx);
                    self.timers.set(TxTimer::E, ctx.now, ctx.cfg.t2);
                }
                (TxTimer::F, State::Trying | State::Proceeding) => {
                    ctx.out.event(TxEvent::Timeout { tx: self.id });
                    self.terminate();
                }
                (TxTimer::K, State::Completed) => self.terminate(),
                _ => {}
            }
        }
    }

    /// The transport could not deliver (§17.1.4).
    pub(crate) fn on_transport_error(&mut self, ctx: &mut Ctx<'_>) {
        if let State::Trying | State::Proceeding = self.state {
            ctx.out.event(TxEvent::TransportError { tx: self.id });
            self.terminate();
        }
    }

    pub(crate) fn is_terminated(&self) -> bool {
        self.state == State::Terminated
    }

    pub(crate) fn is_pending(&self) -> bool {
        self.state == State::Pending
    }

    pub(crate) fn next_timeout(&self) -> Option<Instant> {
        self.timers.next_timeout()
    }

    pub(crate) fn state(&self) -> TxState {
        match self.state {
            State::Pending => TxState::Pending,
            State::Trying => TxState::Trying,
            State::Proceeding => TxState::Proceeding,
            State::Completed => TxState::Completed,
            State::Terminated => TxState::Terminated,
        }
    }
}
