//! The SIP media application contract (SPEC §6), as the managed service's
//! PSTN audio service defines it, so that applications written for it run
//! on trunkd unchanged. Pure and sans-IO: no sockets, no clock, no RNG.
//!
//! - [`event`]: the invocation event trunkd POSTs to the application,
//!   serialised field for field as the managed service sends it.
//! - [`action`]: the application's answer parsed into typed, validated
//!   actions; what is wrong with it is an [`action::AnswerError`] that the
//!   session reports to the application as `INVALID_LAMBDA_RESPONSE`.
//! - [`session`]: one application call's state machine. It numbers the
//!   invocations, tries the application's endpoints in priority order,
//!   runs the answer's actions one at a time and turns what the call does
//!   into the next invocation.
//!
//! # Run loop
//!
//! The call's task owns a [`session::Session`]. After every change it
//! feeds the session one [`session::Input`] (an HTTP answer, an action's
//! end, a digit, a hangup) with `handle(now, input)`, or calls
//! `handle_timeout(now)` once [`session::Session::poll_timeout`] has
//! passed; then it drains [`session::Session::poll_output`]:
//! [`session::Output::Invoke`] is an HTTP POST to make,
//! [`session::Output::Run`] an action for the call to execute and
//! [`session::Output::EndCall`] the end of the call. The session never
//! reads the time itself: tests drive it with a fake clock.

pub mod action;
pub mod event;
pub mod session;

pub use action::{Action, Answer, AnswerError, MediaRef, ParseLimits};
pub use event::{
    ActionData, CallDetails, Direction, InvocationEvent, InvocationEventType, Participant,
    ParticipantStatus, ParticipantTag,
};
pub use session::{
    ActionResult, Input, Invocation, NewCall, Output, RequestId, Session, SessionConfig,
    SmaEndpoint,
};
