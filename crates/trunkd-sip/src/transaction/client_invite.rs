//! INVITE client transaction (RFC 3261 §17.1.1, Figure 5, as updated by
//! RFC 6026 §8.4 with the Accepted state).
//!
//! ```text
//!            send INVITE, A (UDP), B
//!  Calling --1xx--> Proceeding --1xx (pass up, C restarts)
//!     |  A: resend      |
//!     |  B: Timeout     |  C: Timeout (no final response)
//!     +------+----------+
//!            |-- 2xx: pass up --> Accepted (M; every 2xx passed up) --M--> Terminated
//!            '-- 3xx-6xx: ACK, pass up --> Completed (D; re-ACK, absorb) --D--> Terminated
//! ```

use std::time::Duration;

use bytes::Bytes;

use super::timer::{backoff, TimerTable, TxTimer};
use super::{ClientTxId, Ctx, Peer, TxEvent, TxId, TxState};
use crate::message::{Request, Response};

/// The CANCEL attached to an INVITE (§9.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CancelLink {
    /// Not cancelled.
    None,
    /// `cancel()` was called before any provisional: the CANCEL goes out
    /// when one arrives, or is dropped if a final response comes first.
    Pending(ClientTxId),
    /// The CANCEL was sent.
    Sent(ClientTxId),
}

#[derive(Debug, Clone)]
enum State {
    Calling,
    Proceeding,
    /// The ACK, resent for each retransmitted final response.
    Completed {
        ack: Option<Bytes>,
    },
    Accepted,
    Terminated,
}

/// One INVITE client transaction.
#[derive(Debug)]
pub(crate) struct ClientInvite {
    id: ClientTxId,
    /// The INVITE (to build the ACK and the CANCEL), until a final
    /// response: an accepted INVITE's transaction lives 32 s more (Timer
    /// M), a refused one's until Timer D, and neither needs it (issue 15).
    pub(crate) request: Option<Box<Request>>,
    /// The INVITE's wire form, for Timer A's retransmissions: released at
    /// the first response, after which nothing resends it (an accepted
    /// INVITE's transaction lives 32 s more; issue 15).
    bytes: Bytes,
    /// Where the INVITE, its retransmissions, the ACK and the CANCEL go.
    pub(crate) dest: Peer,
    state: State,
    timers: TimerTable,
    a_interval: Duration,
    pub(crate) cancel: CancelLink,
}

impl ClientInvite {
    /// Sends the INVITE and arms Timers A (UDP) and B (§17.1.1.2).
    pub(crate) fn start(
        id: ClientTxId,
        mut request: Request,
        dest: Peer,
        timer_b: Duration,
        ctx: &mut Ctx<'_>,
    ) -> ClientInvite {
        let bytes = request.to_bytes();
        // Kept until the transaction ends (an accepted INVITE: 32 s more),
        // for the CANCEL and the ACK: without the builder's spare rows.
        request.headers.shrink_to_fit();
        let mut tx = ClientInvite {
            id,
            request: Some(Box::new(request)),
            bytes,
            dest,
            state: State::Calling,
            timers: TimerTable::default(),
            a_interval: ctx.cfg.t1,
            cancel: CancelLink::None,
        };
        tx.send_request(ctx);
        if !dest.transport.reliable() {
            tx.timers.set(TxTimer::A, ctx.now, tx.a_interval);
        }
        tx.timers.set(TxTimer::B, ctx.now, timer_b);
        tx
    }

    fn send_request(&self, ctx: &mut Ctx<'_>) {
        ctx.out
            .send(self.dest, self.bytes.clone(), Some(TxId::Client(self.id)));
    }

    fn terminate(&mut self) {
        self.state = State::Terminated;
        self.timers.stop_all();
        self.request = None;
    }

    /// A response whose branch and CSeq method match (§17.1.1.2, RFC 6026).
    pub(crate) fn on_response(&mut self, response: Response, ctx: &mut Ctx<'_>) {
        let status = response.status;
        if let State::Calling = self.state {
            self.bytes = Bytes::new();
        }
        match self.state {
            State::Calling | State::Proceeding if status.is_provisional() => {
                self.state = State::Proceeding;
                self.timers.stop(TxTimer::A);
                self.timers.stop(TxTimer::B);
                // After a CANCEL went out, C keeps its 64*T1 deadline.
                if !matches!(self.cancel, CancelLink::Sent(_)) {
                    match ctx.cfg.timer_c {
                        Some(c) => self.timers.set(TxTimer::C, ctx.now, c),
                        None => self.timers.stop(TxTimer::C),
                    }
                }
                self.pass_up(response, ctx);
            }
            State::Calling | State::Proceeding if status.is_success() => {
                self.state = State::Accepted;
                self.request = None;
                self.timers.stop_all();
                self.timers.set(TxTimer::M, ctx.now, ctx.cfg.t1x64);
                self.pass_up(response, ctx);
            }
            State::Calling | State::Proceeding => {
                // 3xx-6xx: the transaction itself ACKs (§17.1.1.3).
                let ack = self
                    .request
                    .take()
                    .and_then(|r| r.ack_for_non_2xx(&response).ok())
                    .map(|a| a.to_bytes());
                self.timers.stop_all();
                if let Some(ack) = &ack {
                    ctx.out
                        .send(self.dest, ack.clone(), Some(TxId::Client(self.id)));
                }
                self.pass_up(response, ctx);
                if self.dest.transport.reliable() {
                    self.terminate();
                } else {
                    self.state = State::Completed { ack };
                    let d = Duration::from_secs(32).max(ctx.cfg.t1x64);
                    self.timers.set(TxTimer::D, ctx.now, d);
                }
            }
            State::Accepted if status.is_success() => self.pass_up(response, ctx),
            State::Completed { ref ack } if status.is_final() && !status.is_success() => {
                if let Some(ack) = ack {
                    ctx.out
                        .send(self.dest, ack.clone(), Some(TxId::Client(self.id)));
                }
            }
            State::Accepted | State::Completed { .. } | State::Terminated => {}
        }
    }

    fn pass_up(&self, response: Response, ctx: &mut Ctx<'_>) {
        ctx.out.event(TxEvent::Response {
            tx: self.id,
            response,
        });
    }

    /// Runs the expired timers.
    pub(crate) fn on_timeout(&mut self, ctx: &mut Ctx<'_>) {
        while let Some(timer) = self.timers.pop_expired(ctx.now) {
            match (timer, &self.state) {
                (TxTimer::A, State::Calling) => {
                    self.send_request(ctx);
                    self.a_interval = backoff(self.a_interval, None);
                    self.timers.set(TxTimer::A, ctx.now, self.a_interval);
                }
                (TxTimer::B, State::Calling) | (TxTimer::C, State::Proceeding) => {
                    ctx.out.event(TxEvent::Timeout { tx: self.id });
                    self.terminate();
                }
                (TxTimer::D, State::Completed { .. }) | (TxTimer::M, State::Accepted) => {
                    self.terminate();
                }
                // A timer left over from an earlier state: ignore.
                _ => {}
            }
        }
    }

    /// The CANCEL went out: give the INVITE 64*T1 more for its final
    /// response, then report a timeout (§9.1).
    pub(crate) fn cancel_sent(&mut self, ctx: &mut Ctx<'_>) {
        if let State::Proceeding = self.state {
            self.timers.set(TxTimer::C, ctx.now, ctx.cfg.t1x64);
        }
    }

    /// The transport could not deliver (§17.1.4): fatal before a final
    /// response, ignored after.
    pub(crate) fn on_transport_error(&mut self, ctx: &mut Ctx<'_>) {
        if let State::Calling | State::Proceeding = self.state {
            ctx.out.event(TxEvent::TransportError { tx: self.id });
            self.terminate();
        }
    }

    pub(crate) fn is_terminated(&self) -> bool {
        matches!(self.state, State::Terminated)
    }

    /// True once a provisional, and no final, response arrived.
    pub(crate) fn is_proceeding(&self) -> bool {
        matches!(self.state, State::Proceeding)
    }

    /// True in Calling (no response yet).
    pub(crate) fn is_calling(&self) -> bool {
        matches!(self.state, State::Calling)
    }

    pub(crate) fn next_timeout(&self) -> Option<std::time::Instant> {
        self.timers.next_timeout()
    }

    pub(crate) fn state(&self) -> TxState {
        match self.state {
            State::Calling => TxState::Calling,
            State::Proceeding => TxState::Proceeding,
            State::Completed { .. } => TxState::Completed,
            State::Accepted => TxState::Accepted,
            State::Terminated => TxState::Terminated,
        }
    }
}
