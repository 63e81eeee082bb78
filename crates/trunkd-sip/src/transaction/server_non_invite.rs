//! Non-INVITE server transaction (RFC 3261 §17.2.2, Figure 8).
//!
//! ```text
//!  request: NewRequest
//!  Trying (retransmissions absorbed) --1xx from TU--> Proceeding (retransmissions: resend 1xx)
//!     '------------------- final from TU -----------------'--> Completed (J; resend final)
//!                                                                --J--> Terminated
//!  Trying/Proceeding for 128*T1 without a final response: dropped (Abandon).
//! ```

use std::time::Instant;

use bytes::Bytes;

use super::timer::{TimerTable, TxTimer};
use super::{Ctx, Peer, ServerTxId, TxError, TxId, TxState};
use crate::message::{Request, Response};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Trying,
    Proceeding,
    Completed,
    Terminated,
}

/// One non-INVITE server transaction.
#[derive(Debug)]
pub(crate) struct ServerNonInvite {
    id: ServerTxId,
    /// The request, until the final response: then only `last` is needed,
    /// resent on retransmissions for Timer J's 32 s (issue 15).
    pub(crate) request: Option<Box<Request>>,
    peer: Peer,
    state: State,
    timers: TimerTable,
    last: Option<Bytes>,
}

impl ServerNonInvite {
    /// Creates the transaction for a new request.
    pub(crate) fn start(
        id: ServerTxId,
        request: Request,
        peer: Peer,
        ctx: &mut Ctx<'_>,
    ) -> ServerNonInvite {
        let mut timers = TimerTable::default();
        timers.set(TxTimer::Abandon, ctx.now, ctx.cfg.t1x128);
        ServerNonInvite {
            id,
            request: Some(Box::new(request)),
            peer,
            state: State::Trying,
            timers,
            last: None,
        }
    }

    fn terminate(&mut self) {
        self.state = State::Terminated;
        self.timers.stop_all();
        self.request = None;
    }

    /// A retransmission of the request: resend the last response, if any.
    pub(crate) fn on_retransmission(&mut self, ctx: &mut Ctx<'_>) {
        if let (State::Proceeding | State::Completed, Some(b)) = (self.state, &self.last) {
            ctx.out
                .send(self.peer, b.clone(), Some(TxId::Server(self.id)));
        }
    }

    /// A response from the TU.
    pub(crate) fn send_response(
        &mut self,
        response: &Response,
        ctx: &mut Ctx<'_>,
    ) -> Result<(), TxError> {
        if !matches!(self.state, State::Trying | State::Proceeding) {
            return Err(TxError::InvalidState("a final response was already sent"));
        }
        let bytes = response.to_bytes();
        ctx.out
            .send(self.peer, bytes.clone(), Some(TxId::Server(self.id)));
        self.last = Some(bytes);
        if response.status.is_provisional() {
            self.state = State::Proceeding;
        } else if self.peer.transport.reliable() {
            self.terminate();
        } else {
            self.state = State::Completed;
            self.request = None;
            self.timers.stop_all();
            self.timers.set(TxTimer::J, ctx.now, ctx.cfg.t1x64);
        }
        Ok(())
    }

    /// Runs the expired timers.
    pub(crate) fn on_timeout(&mut self, ctx: &mut Ctx<'_>) {
        while let Some(timer) = self.timers.pop_expired(ctx.now) {
            match (timer, self.state) {
                (TxTimer::J, State::Completed)
                | (TxTimer::Abandon, State::Trying | State::Proceeding) => self.terminate(),
                _ => {}
            }
        }
    }

    pub(crate) fn is_terminated(&self) -> bool {
        self.state == State::Terminated
    }

    pub(crate) fn next_timeout(&self) -> Option<Instant> {
        self.timers.next_timeout()
    }

    pub(crate) fn state(&self) -> TxState {
        match self.state {
            State::Trying => TxState::Trying,
            State::Proceeding => TxState::Proceeding,
            State::Completed => TxState::Completed,
            State::Terminated => TxState::Terminated,
        }
    }
}
