//! A session driven by a fake clock, and helpers that read like the
//! contract: the application answers, the call reports.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::str::FromStr;
use std::time::{Duration, Instant};

use serde_json::Value;
use trunkd_core::{RuleId, SmaId, TransactionId};
use trunkd_sma::session::NewCall;
use trunkd_sma::{
    Action, ActionResult, Direction, Input, Invocation, Output, Participant, ParticipantStatus,
    ParticipantTag, Session, SessionConfig, SmaEndpoint,
};

pub const TXN: &str = "6f1c4a2e-0b7d-4e5f-9a3c-2d8e1f0a4b6c";

pub fn leg_a(direction: Direction) -> Participant {
    Participant {
        call_id: "a84e1f2c@203.0.113.7".into(),
        participant_tag: ParticipantTag::LegA,
        to: "+14345550101".into(),
        from: "+14255550199".into(),
        direction,
        start_time_in_milliseconds: 1_644_539_405_907,
        status: ParticipantStatus::Connected,
    }
}

pub fn leg_b() -> Participant {
    Participant {
        call_id: "b-leg-1@trunkd".into(),
        participant_tag: ParticipantTag::LegB,
        to: "+12065550100".into(),
        from: "+14345550101".into(),
        direction: Direction::Outbound,
        start_time_in_milliseconds: 1_644_539_415_000,
        status: ParticipantStatus::Connected,
    }
}

pub fn new_call(direction: Direction, arguments: BTreeMap<String, String>) -> NewCall {
    NewCall {
        transaction_id: TransactionId::from_str(TXN).expect("a valid UUID"),
        account_id: "000000000000".into(),
        region: "local".into(),
        sma_id: SmaId::new("sma-ivr").expect("a valid id"),
        rule_id: (direction == Direction::Inbound)
            .then(|| RuleId::new("rule-1").expect("a valid id")),
        leg_a: leg_a(direction),
        arguments,
    }
}

pub struct App {
    pub s: Session,
    pub now: Instant,
    pub t0: Instant,
}

impl App {
    /// An inbound call to an application with these endpoints (priority in
    /// the given order).
    pub fn inbound(urls: &[&str]) -> Self {
        Self::start(urls, Direction::Inbound, BTreeMap::new())
    }

    pub fn start(urls: &[&str], direction: Direction, arguments: BTreeMap<String, String>) -> Self {
        let endpoints = urls
            .iter()
            .enumerate()
            .map(|(i, u)| SmaEndpoint {
                url: u.to_string(),
                priority: (i + 1) as u8,
            })
            .collect();
        let t0 = Instant::now();
        Self {
            s: Session::new(
                SessionConfig::new(endpoints),
                new_call(direction, arguments),
                t0,
            ),
            now: t0,
            t0,
        }
    }

    pub fn outputs(&mut self) -> Vec<Output> {
        std::iter::from_fn(|| self.s.poll_output()).collect()
    }

    /// The one output there must be: an invocation.
    pub fn invoked(&mut self) -> Invocation {
        match self.outputs().as_slice() {
            [Output::Invoke(i)] => i.clone(),
            other => panic!("expected one invocation, got {other:?}"),
        }
    }

    /// The one output there must be: an action to run.
    pub fn runs(&mut self) -> Action {
        match self.outputs().as_slice() {
            [Output::Run(a)] => a.clone(),
            other => panic!("expected one action, got {other:?}"),
        }
    }

    pub fn nothing(&mut self) {
        let out = self.outputs();
        assert!(out.is_empty(), "expected no output, got {out:?}");
    }

    pub fn input(&mut self, input: Input) {
        self.s.handle(self.now, input);
    }

    /// The application answers `inv` with 200 and `body`.
    pub fn answers(&mut self, inv: &Invocation, body: &str) {
        self.status(inv, 200, body);
    }

    pub fn status(&mut self, inv: &Invocation, status: u16, body: &str) {
        self.input(Input::Response {
            id: inv.id,
            status,
            body: body.as_bytes().to_vec(),
        });
    }

    pub fn succeeded(&mut self) {
        self.input(Input::ActionSucceeded(ActionResult::default()));
    }

    pub fn digits(&mut self, digits: &str) {
        self.input(Input::ActionSucceeded(ActionResult {
            received_digits: Some(digits.into()),
            ..ActionResult::default()
        }));
    }

    pub fn hangup(&mut self, tag: ParticipantTag) {
        self.input(Input::Hangup { participant: tag });
    }

    /// Lets `d` pass, firing the timers that fall due in it in order.
    pub fn advance(&mut self, d: Duration) {
        let end = self.now + d;
        while let Some(t) = self.s.poll_timeout().filter(|t| *t <= end) {
            self.now = self.now.max(t);
            self.s.handle_timeout(self.now);
        }
        self.now = end;
    }

    /// A key pressed now.
    pub fn press(&mut self, keys: &str) {
        for c in keys.chars() {
            self.input(Input::Digit(c));
        }
    }
}

/// The invocation's body as JSON.
pub fn body(inv: &Invocation) -> Value {
    serde_json::from_str(&inv.body).expect("the body is JSON")
}

pub fn event_type(inv: &Invocation) -> String {
    body(inv)["InvocationEventType"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

pub fn args(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}
