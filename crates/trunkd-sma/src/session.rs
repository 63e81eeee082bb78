//! One application call, sans-IO: invocations out, the application's
//! answers in, its actions run one at a time.
//!
//! The rules, as the managed service has them:
//! - **One invocation at a time**, numbered from 1 (`Sequence`). Events
//!   that happen while one is outstanding wait in order.
//! - **Endpoints in priority order.** An invocation goes to the first
//!   endpoint; no answer within the response timeout, a connection
//!   failure or a 5xx moves it to the next; a 4xx is retried once on the
//!   same endpoint first. When every endpoint failed the call is ended
//!   ([`Output::EndCall`]: 480 before the answer, BYE after).
//! - **Invalid answers.** An answer that cannot be used is reported with
//!   INVALID_LAMBDA_RESPONSE (its `ErrorType`/`ErrorMessage` say why); an
//!   invalid answer to that ends the call.
//! - **Actions in order, one at a time.** The application hears of an
//!   action when it is the last of its list (ACTION_SUCCESSFUL) or when it
//!   failed (ACTION_FAILED, and the rest of the list is dropped). A new
//!   list replaces what is left of the previous one; an action already
//!   running is not interrupted, and its end is not reported.
//! - **ReceiveDigits** is not run by the call: it succeeds at once and
//!   from then on digits no action took are matched here against its
//!   regex, after `InBetweenDigitsDurationInMilliseconds` without a key;
//!   `FlushDigitsDurationInMilliseconds` after the first key the buffer is
//!   matched a last time and emptied. A match is DIGITS_RECEIVED.
//! - **HANGUP for every participant that leaves**, the application's own
//!   Hangup included (its ActionData then echoes that Hangup). Once no
//!   participant is left, answers are read for nothing: their actions are
//!   ignored.
//! - **TransactionAttributes** from the last answer that had them go into
//!   every later event's CallDetails.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use trunkd_core::{RuleId, SmaId, TransactionId};

use crate::action::{
    dtmf_key, parse_answer, Action, MediaRef, ParseLimits, ReceiveDigits, MAX_DIGITS,
};
use crate::event::{
    ActionData, CallDetails, Direction, InvocationEvent, InvocationEventType, Participant,
    ParticipantStatus, ParticipantTag, SCHEMA_VERSION,
};

/// One URL of a SIP media application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmaEndpoint {
    pub url: String,
    /// 1 is tried first; equal priorities keep their order.
    pub priority: u8,
}

/// How a session behaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionConfig {
    pub endpoints: Vec<SmaEndpoint>,
    /// How long one endpoint has to answer one invocation.
    pub response_timeout: Duration,
    pub limits: ParseLimits,
}

impl SessionConfig {
    /// The defaults: 5 s per endpoint, the managed service's limits.
    pub fn new(endpoints: Vec<SmaEndpoint>) -> Self {
        Self {
            endpoints,
            response_timeout: Duration::from_secs(5),
            limits: ParseLimits::default(),
        }
    }
}

/// What the session is told of the call when it starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewCall {
    pub transaction_id: TransactionId,
    pub account_id: String,
    pub region: String,
    pub sma_id: SmaId,
    /// The rule that matched (inbound calls only).
    pub rule_id: Option<RuleId>,
    /// The call's first leg: inbound for a call to a rule, outbound for a
    /// call the application asked for (NEW_OUTBOUND_CALL).
    pub leg_a: Participant,
    /// CreateSipMediaApplicationCall's `ArgumentsMap` (outbound calls).
    pub arguments: BTreeMap<String, String>,
}

/// Names one HTTP request; answers to an older one are ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestId(pub u64);

/// An HTTP POST to make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    pub id: RequestId,
    /// Index into the endpoints in priority order.
    pub endpoint: usize,
    pub url: String,
    pub sequence: u64,
    pub event_type: InvocationEventType,
    /// The JSON body (signed by the caller of the session, SPEC §6).
    pub body: String,
}

/// What the session asks of its call.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// POST this; report [`Input::Response`] or [`Input::Unreachable`]
    /// with its id. A later `Invoke` supersedes an earlier one (the
    /// earlier request may be dropped).
    Invoke(Invocation),
    /// Execute this action and report [`Input::ActionSucceeded`] or
    /// [`Input::ActionFailed`] — except `Answer` (report
    /// [`Input::Answered`]) and `Hangup` (report [`Input::Hangup`] for each
    /// participant that left; `SipResponseCode` 0 is a BYE once answered,
    /// 480 before).
    Run(Action),
    /// The application cannot be reached or keeps answering nonsense: end
    /// the call (this code before the answer, BYE after) and report the
    /// hangups.
    EndCall { sip_response_code: u16 },
}

/// What a succeeded action returns, as ActionData carries it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ActionResult {
    pub received_digits: Option<String>,
    pub recording_destination: Option<MediaRef>,
    pub recording_terminator_used: Option<String>,
    pub call_recording_destination: Option<MediaRef>,
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// The HTTP answer to an invocation (any status).
    Response {
        id: RequestId,
        status: u16,
        body: Vec<u8>,
    },
    /// The request could not be made (connection refused, TLS, DNS…).
    Unreachable { id: RequestId },
    /// The far end of an outbound call is ringing.
    Ringing,
    /// The call was answered (by trunkd for an inbound call, by the far
    /// end for an outbound one).
    Answered,
    /// The running action ended as asked.
    ActionSucceeded(ActionResult),
    /// The running action failed; `error_type` as the managed service
    /// names them (`InvalidAudioSource`, `SystemException`, …).
    ActionFailed {
        error_type: String,
        error_message: String,
    },
    /// A key pressed while no action collected keys.
    Digit(char),
    /// A leg joined (CallAndBridge's LEG-B).
    ParticipantJoined(Participant),
    /// A participant left (either side hung up).
    Hangup { participant: ParticipantTag },
    /// UpdateSipMediaApplicationCall with these arguments.
    UpdateRequested { arguments: BTreeMap<String, String> },
}

#[derive(Debug)]
struct Pending {
    kind: InvocationEventType,
    action_data: Option<ActionData>,
    error: Option<(String, String)>,
}

impl Pending {
    fn new(kind: InvocationEventType, action_data: Option<ActionData>) -> Self {
        Self {
            kind,
            action_data,
            error: None,
        }
    }
}

#[derive(Debug)]
struct InFlight {
    id: RequestId,
    sequence: u64,
    kind: InvocationEventType,
    body: String,
    endpoint: usize,
    retried: bool,
    deadline: Instant,
}

#[derive(Debug)]
struct Running {
    action: Action,
    /// The list it came from; a newer list makes its end unreported.
    list: u64,
}

/// The background ReceiveDigits.
#[derive(Debug)]
struct DigitMatcher {
    action: ReceiveDigits,
    buffer: String,
    in_between_at: Option<Instant>,
    flush_at: Option<Instant>,
}

impl DigitMatcher {
    fn push(&mut self, now: Instant, key: char) {
        if self.buffer.len() >= MAX_DIGITS as usize {
            return;
        }
        self.buffer.push(key);
        if self.flush_at.is_none() {
            self.flush_at = Some(now + ms(self.action.flush_digits_duration_in_milliseconds));
        }
        self.in_between_at = Some(now + ms(self.action.in_between_digits_duration_in_milliseconds));
    }

    fn next_timeout(&self) -> Option<Instant> {
        earliest(self.in_between_at, self.flush_at)
    }

    /// The digits that matched, if a timer that passed found a match.
    fn on_timeout(&mut self, now: Instant) -> Option<String> {
        if self.in_between_at.is_some_and(|t| t <= now) {
            self.in_between_at = None;
            if self.action.input_digits_regex.is_match(&self.buffer) {
                self.flush_at = None;
                return Some(std::mem::take(&mut self.buffer));
            }
        }
        if self.flush_at.is_some_and(|t| t <= now) {
            self.flush_at = None;
            self.in_between_at = None;
            let digits = std::mem::take(&mut self.buffer);
            if self.action.input_digits_regex.is_match(&digits) {
                return Some(digits);
            }
        }
        None
    }
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// One application call's state machine.
#[derive(Debug)]
pub struct Session {
    config: SessionConfig,
    details: CallDetails,
    direction: Direction,
    next_sequence: u64,
    next_request: u64,
    queue: VecDeque<Pending>,
    in_flight: Option<InFlight>,
    outputs: VecDeque<Output>,
    actions: VecDeque<Action>,
    list: u64,
    running: Option<Running>,
    digits: Option<DigitMatcher>,
    answered: bool,
    /// EndCall was asked for: nothing more is run.
    ending: bool,
    /// No participant is left.
    ended: bool,
}

impl Session {
    /// Starts the call's session: the first invocation (NEW_INBOUND_CALL
    /// or NEW_OUTBOUND_CALL) is ready in [`Session::poll_output`].
    pub fn new(mut config: SessionConfig, call: NewCall, now: Instant) -> Self {
        // Stable: equal priorities keep the configured order.
        config.endpoints.sort_by_key(|e| e.priority);
        let direction = call.leg_a.direction;
        let details = CallDetails {
            transaction_id: call.transaction_id.to_string(),
            transaction_attributes: BTreeMap::new(),
            aws_account_id: call.account_id,
            aws_region: call.region,
            sip_media_application_id: call.sma_id.to_string(),
            sip_rule_id: call.rule_id.map(|r| r.to_string()),
            participants: vec![call.leg_a],
        };
        let mut s = Self {
            config,
            details,
            direction,
            next_sequence: 1,
            next_request: 1,
            queue: VecDeque::new(),
            in_flight: None,
            outputs: VecDeque::new(),
            actions: VecDeque::new(),
            list: 0,
            running: None,
            digits: None,
            answered: false,
            ending: false,
            ended: false,
        };
        let first = match direction {
            Direction::Inbound => Pending::new(InvocationEventType::NewInboundCall, None),
            Direction::Outbound => Pending::new(
                InvocationEventType::NewOutboundCall,
                (!call.arguments.is_empty())
                    .then(|| ActionData::arguments("CallCreateRequest", call.arguments)),
            ),
        };
        s.queue.push_back(first);
        s.pump(now);
        s
    }

    /// Feeds one input, then does what follows from it.
    pub fn handle(&mut self, now: Instant, input: Input) {
        match input {
            Input::Response { id, status, body } => self.on_response(now, id, status, &body),
            Input::Unreachable { id } => {
                if self.in_flight.as_ref().is_some_and(|f| f.id == id) {
                    self.next_endpoint(now);
                }
            }
            Input::Ringing => {
                if self.direction == Direction::Outbound && !self.ended {
                    self.queue
                        .push_back(Pending::new(InvocationEventType::Ringing, None));
                }
            }
            Input::Answered => {
                let was = std::mem::replace(&mut self.answered, true);
                match self.running.take() {
                    Some(r) if matches!(r.action, Action::Answer(_)) => {
                        self.finished(r, Ok(ActionResult::default()))
                    }
                    other => {
                        self.running = other;
                        if !was && self.direction == Direction::Outbound && !self.ended {
                            self.queue
                                .push_back(Pending::new(InvocationEventType::CallAnswered, None));
                        }
                    }
                }
            }
            Input::ActionSucceeded(result) => {
                if let Some(r) = self.running.take() {
                    self.finished(r, Ok(result));
                }
            }
            Input::ActionFailed {
                error_type,
                error_message,
            } => {
                if let Some(r) = self.running.take() {
                    self.finished(r, Err((error_type, error_message)));
                }
            }
            Input::Digit(c) => {
                if let (Some(d), Some(key), false) = (&mut self.digits, dtmf_key(c), self.ended) {
                    d.push(now, key);
                }
            }
            Input::ParticipantJoined(p) => {
                if !self.ended {
                    let list = &mut self.details.participants;
                    match list
                        .iter_mut()
                        .find(|q| q.participant_tag == p.participant_tag)
                    {
                        Some(q) => *q = p,
                        None => list.push(p),
                    }
                }
            }
            Input::Hangup { participant } => self.on_hangup(participant),
            Input::UpdateRequested { arguments } => {
                if !self.ended {
                    self.queue.push_back(Pending::new(
                        InvocationEventType::CallUpdateRequested,
                        Some(ActionData::arguments("CallUpdateRequest", arguments)),
                    ));
                }
            }
        }
        self.pump(now);
    }

    /// Fires what is due at `now` (response timeout, digit timers).
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.in_flight.as_ref().is_some_and(|f| f.deadline <= now) {
            self.next_endpoint(now);
        }
        if let Some(d) = &mut self.digits {
            if let Some(digits) = d.on_timeout(now) {
                let mut data = ActionData::of(&Action::ReceiveDigits(d.action.clone()));
                data.received_digits = Some(digits);
                self.queue.push_back(Pending::new(
                    InvocationEventType::DigitsReceived,
                    Some(data),
                ));
            }
        }
        self.pump(now);
    }

    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// When [`Session::handle_timeout`] is next due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        earliest(
            self.in_flight.as_ref().map(|f| f.deadline),
            self.digits.as_ref().and_then(DigitMatcher::next_timeout),
        )
    }

    /// Every participant left and the application was told (or could not
    /// be): the session can be dropped.
    pub fn is_finished(&self) -> bool {
        self.ended && self.in_flight.is_none() && self.queue.is_empty()
    }

    pub fn is_answered(&self) -> bool {
        self.answered
    }

    /// The call as the next event will describe it.
    pub fn call_details(&self) -> &CallDetails {
        &self.details
    }

    /// The Sequence of the last invocation sent (0 before the first).
    pub fn last_sequence(&self) -> u64 {
        self.next_sequence - 1
    }

    fn on_response(&mut self, now: Instant, id: RequestId, status: u16, body: &[u8]) {
        if self.in_flight.as_ref().is_none_or(|f| f.id != id) {
            // A late answer to a request given up on: ignored.
            return;
        }
        match status {
            200..=299 => {
                if let Some(f) = self.in_flight.take() {
                    self.on_answer(f.kind, body);
                }
            }
            400..=499 if self.in_flight.as_ref().is_some_and(|f| !f.retried) => {
                if let Some(mut f) = self.in_flight.take() {
                    f.retried = true;
                    self.send(now, f);
                }
            }
            _ => self.next_endpoint(now),
        }
    }

    fn on_answer(&mut self, kind: InvocationEventType, body: &[u8]) {
        if self.ended {
            // No participant left: nothing to act on.
            return;
        }
        match parse_answer(body, &self.config.limits) {
            Ok(answer) => {
                if let Some(attributes) = answer.transaction_attributes {
                    self.details.transaction_attributes = attributes;
                }
                if !answer.actions.is_empty() && !self.ending {
                    self.list += 1;
                    self.actions = answer.actions.into();
                }
            }
            // Invalid twice in a row: the application cannot run this call.
            Err(_) if kind == InvocationEventType::InvalidLambdaResponse => self.end_call(),
            Err(e) => {
                self.queue.push_front(Pending {
                    kind: InvocationEventType::InvalidLambdaResponse,
                    action_data: None,
                    error: Some((e.error_type().to_string(), e.to_string())),
                });
            }
        }
    }

    fn on_hangup(&mut self, tag: ParticipantTag) {
        let Some(p) = self
            .details
            .participants
            .iter_mut()
            .find(|p| p.participant_tag == tag && p.status == ParticipantStatus::Connected)
        else {
            return;
        };
        p.status = ParticipantStatus::Disconnected;
        // The application's Hangup, while it runs, is echoed in the HANGUP
        // events it causes.
        let data = self
            .running
            .as_ref()
            .filter(|r| matches!(r.action, Action::Hangup(_)))
            .map(|r| ActionData::of(&r.action));
        self.queue
            .push_back(Pending::new(InvocationEventType::Hangup, data));
        let anyone = self
            .details
            .participants
            .iter()
            .any(|p| p.status == ParticipantStatus::Connected);
        if !anyone {
            self.ended = true;
            self.actions.clear();
            self.running = None;
            self.digits = None;
        } else if self
            .running
            .as_ref()
            .is_some_and(|r| matches!(r.action, Action::Hangup(_)))
        {
            // The application hung up one leg; the rest of its list runs.
            if let Some(r) = self.running.take() {
                self.finished(r, Ok(ActionResult::default()));
            }
        }
    }

    /// The running action ended.
    fn finished(&mut self, r: Running, outcome: Result<ActionResult, (String, String)>) {
        if r.list != self.list || self.ended {
            return;
        }
        let mut data = ActionData::of(&r.action);
        match outcome {
            Ok(result) => {
                // The call collects; the regex is checked here.
                if let (Action::PlayAudioAndGetDigits(a), Some(d)) =
                    (&r.action, &result.received_digits)
                {
                    if a.input_digits_regex
                        .as_ref()
                        .is_some_and(|re| !re.is_match(d))
                    {
                        let message = format!("{d:?} does not match InputDigitsRegex");
                        return self.fail(data, "InvalidDigitsReceived".into(), message);
                    }
                }
                if self.actions.is_empty() {
                    data.received_digits = result.received_digits;
                    data.recording_destination = result.recording_destination;
                    data.recording_terminator_used = result.recording_terminator_used;
                    data.call_recording_destination = result.call_recording_destination;
                    self.queue.push_back(Pending::new(
                        InvocationEventType::ActionSuccessful,
                        Some(data),
                    ));
                }
            }
            Err((error_type, message)) => self.fail(data, error_type, message),
        }
    }

    fn fail(&mut self, mut data: ActionData, error_type: String, message: String) {
        self.actions.clear();
        data.error_type = Some(error_type);
        data.error_message = Some(message);
        self.queue
            .push_back(Pending::new(InvocationEventType::ActionFailed, Some(data)));
    }

    /// Ends the call on the application's behalf.
    fn end_call(&mut self) {
        if self.ending || self.ended {
            return;
        }
        self.ending = true;
        self.actions.clear();
        self.queue.retain(|p| p.kind == InvocationEventType::Hangup);
        self.outputs.push_back(Output::EndCall {
            sip_response_code: 480,
        });
    }

    /// Starts what can start: the next action, the next invocation.
    fn pump(&mut self, now: Instant) {
        while self.running.is_none() && !self.ended && !self.ending {
            let Some(action) = self.actions.pop_front() else {
                break;
            };
            let r = Running {
                action,
                list: self.list,
            };
            match &r.action {
                Action::Answer(_) if self.answered => self.finished(r, Ok(ActionResult::default())),
                Action::ReceiveDigits(rd) => {
                    self.digits = Some(DigitMatcher {
                        action: rd.clone(),
                        buffer: String::new(),
                        in_between_at: None,
                        flush_at: None,
                    });
                    let result = ActionResult {
                        received_digits: Some(String::new()),
                        ..ActionResult::default()
                    };
                    self.finished(r, Ok(result));
                }
                action => {
                    self.outputs.push_back(Output::Run(action.clone()));
                    self.running = Some(r);
                }
            }
        }
        while self.in_flight.is_none() {
            let Some(p) = self.queue.pop_front() else {
                break;
            };
            {
                let sequence = self.next_sequence;
                self.next_sequence += 1;
                let (error_type, error_message) = match p.error {
                    Some((t, m)) => (Some(t), Some(m)),
                    None => (None, None),
                };
                let event = InvocationEvent {
                    schema_version: SCHEMA_VERSION,
                    sequence,
                    invocation_event_type: p.kind,
                    call_details: self.details.clone(),
                    action_data: p.action_data,
                    error_type,
                    error_message,
                };
                let f = InFlight {
                    id: RequestId(0),
                    sequence,
                    kind: p.kind,
                    body: event.to_json(),
                    endpoint: 0,
                    retried: false,
                    deadline: now,
                };
                self.send(now, f);
            }
        }
    }

    /// Sends `f` to its endpoint under a new id.
    fn send(&mut self, now: Instant, mut f: InFlight) {
        let Some(endpoint) = self.config.endpoints.get(f.endpoint) else {
            self.all_failed();
            return;
        };
        f.id = RequestId(self.next_request);
        self.next_request += 1;
        f.deadline = now + self.config.response_timeout;
        self.outputs.push_back(Output::Invoke(Invocation {
            id: f.id,
            endpoint: f.endpoint,
            url: endpoint.url.clone(),
            sequence: f.sequence,
            event_type: f.kind,
            body: f.body.clone(),
        }));
        self.in_flight = Some(f);
    }

    fn next_endpoint(&mut self, now: Instant) {
        if let Some(mut f) = self.in_flight.take() {
            f.endpoint += 1;
            f.retried = false;
            self.send(now, f);
        }
    }

    /// No endpoint answered usably: the call cannot go on.
    fn all_failed(&mut self) {
        self.in_flight = None;
        self.end_call();
    }
}
