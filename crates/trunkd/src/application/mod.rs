//! The driver interface of an application call (SPEC §6, SIP media
//! applications): a call in which trunkd itself is the far end of the A
//! leg — it answers, plays, listens and records — told what to do by a
//! driver.
//!
//! The driver is a pair of bounded channels: the call's task
//! ([`crate::app_task`]) receives [`AppAction`]s and sends [`AppEvent`]s.
//! Actions run one at a time, in the order sent; each ends with
//! [`AppEvent::ActionSucceeded`] or [`AppEvent::ActionFailed`] (except
//! `Answer` and `Hangup`, which report [`AppEvent::Answered`] and
//! [`AppEvent::Hangup`]). The names follow the managed service's actions
//! (`PlayAudio`, `PlayAudioAndGetDigits`, `SendDigits`, `RecordAudio`,
//! `Pause`, `Hangup`) so that the webhook driver ([`webhook`]) maps them
//! one to one; the daemon registers it (see [`DriverFactory`]).
//!
//! The driver must keep reading events: the channel is bounded, and a
//! full one holds the call's task (its signalling included) until the
//! driver catches up — backpressure rather than lost events. A driver that
//! drops its action sender ends the call (Hangup, 480 before the answer).
//!
//! Prompts arrive as samples (8 kHz, decoded by the driver from a WAV with
//! `trunkd_media::endpoint::wav`): the task never touches files it did not
//! create.

pub mod audio;
pub mod bridge;
pub mod silence;
pub mod webhook;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use trunkd_core::{RuleId, SmaId, TransactionId};

/// How many actions and events the channels hold.
pub const CHANNEL_CAPACITY: usize = 16;

/// What a driver asks the call to do next.
#[derive(Debug, Clone)]
pub enum AppAction {
    /// Answer the INVITE (200 with trunkd's `sendrecv` SDP). An action
    /// that needs media answers implicitly first, as the managed service
    /// does.
    Answer,
    /// Do nothing for `duration` (the call stays up; answers implicitly).
    Pause { duration: Duration },
    /// Play `samples` (8 kHz mono) `repeat` times; a key of
    /// `terminators` (`PlaybackTerminators`) stops it.
    PlayAudio {
        samples: Arc<[i16]>,
        repeat: u32,
        terminators: Vec<char>,
    },
    /// Play a prompt and collect digits; a digit pressed during the
    /// prompt stops it (barge-in) and counts. Too few digits, or digits
    /// `regex` does not match (`InputDigitsRegex`): play `failure_samples`
    /// (if any) and try again, `attempts` times in all (the managed
    /// service's `Repeat`), then fail (`InvalidDigitsReceived`).
    PlayAudioAndGetDigits {
        samples: Arc<[i16]>,
        failure_samples: Option<Arc<[i16]>>,
        attempts: u32,
        digits: DigitCollection,
        regex: Option<trunkd_sma::action::DigitsRegex>,
    },
    /// Collect digits without a prompt, in the foreground (not the
    /// managed service's background `ReceiveDigits`, which the driver
    /// builds from [`AppEvent::Digits`]: keys no action collects). The
    /// webhook driver has no use for it (the managed service has no such
    /// action); the task's tests drive it.
    #[allow(dead_code)]
    CollectDigits { digits: DigitCollection },
    /// Send `digits` (0-9, *, #, A-D) to the caller as RFC 4733 events,
    /// each pressed for `tone_duration`.
    SendDigits {
        digits: String,
        tone_duration: Duration,
    },
    /// Record what the caller sends to a WAV file at `path` (8 kHz mono),
    /// for at most `max_duration`, until a digit of `terminators`, or —
    /// with `silence` (`SilenceThreshold`, `SilenceDurationInSeconds`) —
    /// until the caller has been quiet that long ([`silence`]).
    RecordAudio {
        path: PathBuf,
        max_duration: Duration,
        terminators: Vec<char>,
        silence: Option<(u32, Duration)>,
    },
    /// Start recording the call in the background to a WAV file at
    /// `path` (the action succeeds at once; the call goes on): `Incoming`
    /// is what the caller sends (mono), `Outgoing` what trunkd plays to the
    /// caller (mono: the prompts and tones, back to back), `Both` a stereo
    /// file, the caller left and trunkd right, on one timeline. A
    /// recording already running is stopped first.
    StartCallRecording {
        path: PathBuf,
        track: trunkd_sma::action::Track,
    },
    /// Stop the call recording; it succeeds with
    /// [`ActionData::CallRecording`] (or fails when none runs). A recording
    /// still running at hangup is finished before [`AppEvent::Hangup`].
    StopCallRecording,
    /// End the call: BYE once answered, else `sip_response_code` (4xx–6xx)
    /// to the INVITE.
    Hangup { sip_response_code: u16 },
    /// Call `to` through the carriers or a voice connector (`via`) from
    /// `caller_id` with the extra `headers`, ringing at most `timeout`,
    /// and bridge the caller to it
    /// (answers first). Ends with [`AppEvent::BridgeJoined`] then
    /// `ActionSucceeded`, or `ActionFailed`; the callee's hangup later is
    /// [`AppEvent::BridgeLeft`].
    CallAndBridge {
        to: String,
        caller_id: String,
        timeout: Duration,
        headers: Vec<(String, String)>,
        /// Through the carriers (`PSTN`) or a voice connector's
        /// origination routes (`AWS`).
        via: BridgeVia,
        /// `RingbackTone` (8 kHz mono): played to the caller, looped, from
        /// the INVITE until the callee answers or the leg fails.
        ringback: Option<Arc<[i16]>>,
    },
    /// Hang up the bridged leg only (Hangup with `ParticipantTag` LEG-B).
    HangupBridged,
}

impl AppAction {
    /// The managed service's name of the action (events name it).
    pub fn name(&self) -> &'static str {
        match self {
            AppAction::Answer => "Answer",
            AppAction::Pause { .. } => "Pause",
            AppAction::PlayAudio { .. } => "PlayAudio",
            AppAction::PlayAudioAndGetDigits { .. } => "PlayAudioAndGetDigits",
            AppAction::CollectDigits { .. } => "CollectDigits",
            AppAction::SendDigits { .. } => "SendDigits",
            AppAction::RecordAudio { .. } => "RecordAudio",
            AppAction::Hangup { .. } | AppAction::HangupBridged => "Hangup",
            AppAction::CallAndBridge { .. } => "CallAndBridge",
            AppAction::StartCallRecording { .. } => "StartCallRecording",
            AppAction::StopCallRecording => "StopCallRecording",
        }
    }
}

/// Where CallAndBridge's leg goes (the endpoint's `BridgeEndpointType`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BridgeVia {
    /// `PSTN`: every carrier's hosts by priority and weight.
    Carriers,
    /// `AWS`: the origination routes of a voice connector, or of a group's
    /// voice connectors in item priority order — as an origination call to
    /// it would try them.
    Origination(trunkd_core::admission::OriginationTarget),
}

/// How digits are collected: until `max_digits`, a terminator (not part
/// of the result), or `timeout` without a digit (after the prompt ends,
/// and between digits). Fewer than `min_digits` fails the action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DigitCollection {
    pub min_digits: usize,
    pub max_digits: usize,
    pub terminators: Vec<char>,
    pub timeout: Duration,
}

/// What the call tells its driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppEvent {
    /// The call was answered (200 sent).
    Answered,
    /// An action ended as asked.
    ActionSucceeded {
        action: &'static str,
        data: ActionData,
    },
    /// An action could not be carried out; the call goes on.
    ActionFailed {
        action: &'static str,
        /// The managed service's error type (`InvalidDigitsReceived`, …).
        error_type: &'static str,
        message: String,
    },
    /// Digits the caller pressed that no action took: while no action
    /// runs, and those the running one does not use (PlayAudio's keys
    /// other than its terminators, any key during Pause or RecordAudio
    /// other than its terminators) — what a background ReceiveDigits
    /// listens to. Keys pressed during SendDigits are reported when it
    /// ends.
    Digits { digits: String },
    /// The callee of a call trunkd placed rings.
    Ringing,
    /// The bridged leg answered (before CallAndBridge's
    /// `ActionSucceeded`): its Call-ID and numbers.
    BridgeJoined {
        call_id: String,
        to: String,
        from: String,
    },
    /// The bridged leg is over (the callee hung up, or the application
    /// hung it up); the caller's leg goes on.
    BridgeLeft,
    /// The call is over; the last event.
    Hangup { by: HangupBy },
}

/// What a succeeded action returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActionData {
    None,
    /// The digits collected, terminator excluded.
    Digits(String),
    /// The file written and how much audio it holds.
    Recording {
        path: PathBuf,
        duration: Duration,
        /// The key of `terminators` that ended it (`RecordingTerminatorUsed`).
        terminator: Option<char>,
    },
    /// A call recording finished (StopCallRecording): its file and length.
    CallRecording {
        path: PathBuf,
        duration: Duration,
    },
}

/// Who ended the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HangupBy {
    Caller,
    Application,
}

/// The task's end of a driver: actions in, events out.
pub struct AppChannels {
    pub actions: mpsc::Receiver<AppAction>,
    pub events: mpsc::Sender<AppEvent>,
}

/// The driver's end: actions out, events in.
pub struct DriverChannels {
    pub actions: mpsc::Sender<AppAction>,
    pub events: mpsc::Receiver<AppEvent>,
}

/// A connected pair of channel ends.
pub fn channels() -> (AppChannels, DriverChannels) {
    let (action_tx, action_rx) = mpsc::channel(CHANNEL_CAPACITY);
    let (event_tx, event_rx) = mpsc::channel(CHANNEL_CAPACITY);
    (
        AppChannels {
            actions: action_rx,
            events: event_tx,
        },
        DriverChannels {
            actions: action_tx,
            events: event_rx,
        },
    )
}

/// What a driver is told of a new application call.
#[derive(Debug, Clone)]
pub struct AppCall {
    pub transaction_id: TransactionId,
    pub sma_id: SmaId,
    pub rule_id: RuleId,
    /// The caller and the called number as the INVITE gave them.
    pub from_number: String,
    pub to_number: String,
    pub call_id: String,
    /// A call trunkd places (CreateSipMediaApplicationCall) with these
    /// `ArgumentsMap`; `None` for a carrier's call to a SIP rule.
    pub arguments: Option<std::collections::BTreeMap<String, String>>,
}

/// A call a SIP media application asks trunkd to place
/// (CreateSipMediaApplicationCall, `POST /sip-media-applications/{id}/calls`).
#[derive(Debug, Clone)]
pub struct OutboundCall {
    pub transaction_id: TransactionId,
    pub sma_id: SmaId,
    /// `FromPhoneNumber` (the caller ID) and `ToPhoneNumber`.
    pub from: String,
    pub to: String,
    /// `SipHeaders` for the INVITE.
    pub headers: Vec<(String, String)>,
    /// `ArgumentsMap`, handed to NEW_OUTBOUND_CALL.
    pub arguments: std::collections::BTreeMap<String, String>,
}

/// Makes the driver of each new application call (the webhook driver will
/// post the call to the SIP media application and turn its answers into
/// actions). The engine only admits application calls when a factory is
/// registered; the daemon registers [`webhook::factory`].
pub type DriverFactory = Arc<dyn Fn(AppCall) -> AppChannels + Send + Sync>;
