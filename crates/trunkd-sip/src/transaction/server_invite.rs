//! INVITE server transaction (RFC 3261 §17.2.1, Figure 7, as updated by
//! RFC 6026 §8.5-8.7 with the Accepted state), plus the UAS core's 2xx
//! retransmission (§13.3.1.4), which the layer does for the TU.
//!
//! ```text
//!  INVITE: 100 Trying (optional), NewRequest
//!  Proceeding --1xx from TU: send--> Proceeding (INVITE retransmission: resend last 1xx)
//!     |-- 2xx from TU: send --> Accepted (2xx resent T1 doubling to T2 until an ACK;
//!     |                         INVITEs absorbed, ACKs passed up) --L--> Terminated
//!     |                         (no ACK by L: AckTimeout)
//!     '-- 3xx-6xx from TU: send --> Completed (G resends, INVITE resends)
//!                                     |-- ACK: absorbed --> Confirmed (I) --I--> Terminated
//!                                     '-- H: Terminated (the ACK never came)
//! ```

use std::time::{Duration, Instant};

use bytes::Bytes;

use super::timer::{backoff, TimerTable, TxTimer};
use super::{Ctx, Peer, ServerTxId, TxError, TxEvent, TxId, TxState};
use crate::message::{Request, Response};
use crate::response::response_for;
use crate::status::StatusCode;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Proceeding,
    Completed,
    Confirmed,
    Accepted { acked: bool },
    Terminated,
}

/// What to do with an ACK that matched this transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AckDisposition {
    /// The ACK for a 3xx-6xx (or a duplicate): the transaction absorbs it.
    Absorb,
    /// The ACK for the 2xx: the TU gets [`TxEvent::Ack`].
    PassUp,
}

/// One INVITE server transaction.
#[derive(Debug)]
pub(crate) struct ServerInvite {
    id: ServerTxId,
    /// The INVITE, while a response may still be sent on it: released with
    /// a final non-2xx or with the ACK for the 2xx, after which the
    /// transaction only absorbs retransmissions for 32 s (Timers H/I, L)
    /// and its keys are all it needs (issue 15: at 2,000 calls/s that is
    /// 64,000 INVITEs not kept).
    pub(crate) request: Option<Box<Request>>,
    peer: Peer,
    state: State,
    timers: TimerTable,
    /// The last response sent, resent on retransmissions and timers;
    /// released once the ACK comes, after which nothing resends it (an
    /// accepted INVITE's transaction lives 32 s more; issue 15).
    last: Option<Bytes>,
    /// The To tag of the last response that had one (the tag a 200 to
    /// CANCEL reuses, §9.2, and an RFC 2543 ACK must carry).
    pub(crate) to_tag: Option<Bytes>,
    interval: Duration,
}

impl ServerInvite {
    /// Creates the transaction for a new INVITE; sends 100 Trying when
    /// `send_trying` (§17.2.1).
    pub(crate) fn start(
        id: ServerTxId,
        request: Request,
        peer: Peer,
        send_trying: bool,
        ctx: &mut Ctx<'_>,
    ) -> ServerInvite {
        let trying =
            send_trying.then(|| response_for(&request, StatusCode::TRYING, "Trying", None));
        let mut tx = ServerInvite {
            id,
            request: Some(Box::new(request)),
            peer,
            state: State::Proceeding,
            timers: TimerTable::default(),
            last: None,
            to_tag: None,
            interval: ctx.cfg.t1,
        };
        if let Some(trying) = trying {
            tx.send(trying.to_bytes(), ctx);
        }
        tx
    }

    fn send(&mut self, bytes: Bytes, ctx: &mut Ctx<'_>) {
        ctx.out
            .send(self.peer, bytes.clone(), Some(TxId::Server(self.id)));
        self.last = Some(bytes);
    }

    fn resend(&self, ctx: &mut Ctx<'_>) {
        if let Some(b) = &self.last {
            ctx.out
                .send(self.peer, b.clone(), Some(TxId::Server(self.id)));
        }
    }

    fn terminate(&mut self) {
        self.state = State::Terminated;
        self.timers.stop_all();
        self.request = None;
    }

    /// A retransmission of the INVITE (§17.2.1; absorbed in Accepted, RFC
    /// 6026 §8.6).
    pub(crate) fn on_retransmission(&mut self, ctx: &mut Ctx<'_>) {
        if let State::Proceeding | State::Completed = self.state {
            self.resend(ctx);
        }
    }

    /// A response from the TU.
    pub(crate) fn send_response(
        &mut self,
        response: &Response,
        ctx: &mut Ctx<'_>,
    ) -> Result<(), TxError> {
        let status = response.status;
        match self.state {
            State::Proceeding | State::Accepted { .. } if status.is_success() => {}
            State::Proceeding => {}
            State::Accepted { .. } => {
                return Err(TxError::InvalidState("only a 2xx may follow a 2xx"));
            }
            State::Completed | State::Confirmed | State::Terminated => {
                return Err(TxError::InvalidState("a final response was already sent"));
            }
        }
        if let Some(tag) = response.headers.to_tag().ok().flatten() {
            // Its own copy: kept for 32 s, it must not keep the response's
            // buffer alive.
            self.to_tag = Some(Bytes::copy_from_slice(&tag));
        }
        self.send(response.to_bytes(), ctx);
        if status.is_provisional() {
            return Ok(());
        }
        if status.is_success() {
            if let State::Proceeding = self.state {
                self.state = State::Accepted { acked: false };
                self.interval = ctx.cfg.t1;
                self.timers
                    .set(TxTimer::Retransmit2xx, ctx.now, self.interval);
                self.timers.set(TxTimer::L, ctx.now, ctx.cfg.t1x64);
            }
        } else {
            self.state = State::Completed;
            self.request = None;
            if !self.peer.transport.reliable() {
                self.interval = ctx.cfg.t1;
                self.timers.set(TxTimer::G, ctx.now, self.interval);
            }
            self.timers.set(TxTimer::H, ctx.now, ctx.cfg.t1x64);
        }
        Ok(())
    }

    /// An ACK matched this transaction (by branch, or for a 2xx by Call-ID,
    /// CSeq and To tag).
    pub(crate) fn on_ack(&mut self, ctx: &mut Ctx<'_>) -> AckDisposition {
        match self.state {
            State::Completed => {
                self.last = None;
                self.timers.stop_all();
                if self.peer.transport.reliable() {
                    self.terminate();
                } else {
                    self.state = State::Confirmed;
                    self.timers.set(TxTimer::I, ctx.now, ctx.cfg.t4);
                }
                AckDisposition::Absorb
            }
            State::Accepted { .. } => {
                self.last = None;
                self.request = None;
                self.state = State::Accepted { acked: true };
                self.timers.stop(TxTimer::Retransmit2xx);
                AckDisposition::PassUp
            }
            State::Proceeding | State::Confirmed | State::Terminated => AckDisposition::Absorb,
        }
    }

    /// Runs the expired timers.
    pub(crate) fn on_timeout(&mut self, ctx: &mut Ctx<'_>) {
        while let Some(timer) = self.timers.pop_expired(ctx.now) {
            match (timer, self.state) {
                (TxTimer::G, State::Completed) => {
                    self.resend(ctx);
                    self.interval = backoff(self.interval, Some(ctx.cfg.t2));
                    self.timers.set(TxTimer::G, ctx.now, self.interval);
                }
                (TxTimer::Retransmit2xx, State::Accepted { acked: false }) => {
                    self.resend(ctx);
                    self.interval = backoff(self.interval, Some(ctx.cfg.t2));
                    self.timers
                        .set(TxTimer::Retransmit2xx, ctx.now, self.interval);
                }
                (TxTimer::H, State::Completed) | (TxTimer::I, State::Confirmed) => {
                    self.terminate();
                }
                (TxTimer::L, State::Accepted { acked }) => {
                    if !acked {
                        ctx.out.event(TxEvent::AckTimeout { tx: self.id });
                    }
                    self.terminate();
                }
                _ => {}
            }
        }
    }

    pub(crate) fn is_terminated(&self) -> bool {
        self.state == State::Terminated
    }

    /// True before any final response.
    pub(crate) fn is_proceeding(&self) -> bool {
        self.state == State::Proceeding
    }

    pub(crate) fn next_timeout(&self) -> Option<Instant> {
        self.timers.next_timeout()
    }

    pub(crate) fn state(&self) -> TxState {
        match self.state {
            State::Proceeding => TxState::Proceeding,
            State::Completed => TxState::Completed,
            State::Confirmed => TxState::Confirmed,
            State::Accepted { .. } => TxState::Accepted,
            State::Terminated => TxState::Terminated,
        }
    }
}
