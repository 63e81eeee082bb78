//! The invocation event: what trunkd POSTs to a SIP media application.
//!
//! Field names, their order and their JSON types are the managed
//! service's, because applications parse them: `StartTimeInMilliseconds`
//! is a string there, `Sequence` a number, optional fields are left out
//! rather than sent as `null`. Maps are `BTreeMap`s so that the text is
//! the same on every run (golden tests compare it byte for byte).

use std::collections::BTreeMap;

use serde::{Serialize, Serializer};

use crate::action::{Action, MediaRef};

/// The only schema version there is.
pub const SCHEMA_VERSION: &str = "1.0";

/// Why the application is invoked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum InvocationEventType {
    /// A call to a number or host of one of the application's SIP rules.
    NewInboundCall,
    /// A call the application asked for (CreateSipMediaApplicationCall).
    NewOutboundCall,
    /// The far end of an outbound call is ringing.
    Ringing,
    /// The far end of an outbound call answered.
    CallAnswered,
    /// The last action of a list ended well.
    ActionSuccessful,
    /// An action failed; the rest of its list was dropped.
    ActionFailed,
    /// A background `ReceiveDigits` matched.
    DigitsReceived,
    /// A participant left the call.
    Hangup,
    /// UpdateSipMediaApplicationCall was called for this call.
    CallUpdateRequested,
    /// The application's previous answer could not be used.
    InvalidLambdaResponse,
}

impl InvocationEventType {
    /// The name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NewInboundCall => "NEW_INBOUND_CALL",
            Self::NewOutboundCall => "NEW_OUTBOUND_CALL",
            Self::Ringing => "RINGING",
            Self::CallAnswered => "CALL_ANSWERED",
            Self::ActionSuccessful => "ACTION_SUCCESSFUL",
            Self::ActionFailed => "ACTION_FAILED",
            Self::DigitsReceived => "DIGITS_RECEIVED",
            Self::Hangup => "HANGUP",
            Self::CallUpdateRequested => "CALL_UPDATE_REQUESTED",
            Self::InvalidLambdaResponse => "INVALID_LAMBDA_RESPONSE",
        }
    }
}

/// Which leg of the call a participant is: the call the application got
/// (A) or the one it bridged or placed (B).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum ParticipantTag {
    #[serde(rename = "LEG-A")]
    LegA,
    #[serde(rename = "LEG-B")]
    LegB,
}

impl ParticipantTag {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::LegA => "LEG-A",
            Self::LegB => "LEG-B",
        }
    }

    /// Parses the wire form (exactly `LEG-A` or `LEG-B`).
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "LEG-A" => Some(Self::LegA),
            "LEG-B" => Some(Self::LegB),
            _ => None,
        }
    }
}

/// Seen from trunkd: a call that came in, or one trunkd placed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Direction {
    Inbound,
    Outbound,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum ParticipantStatus {
    Connected,
    Disconnected,
}

/// One leg of the call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Participant {
    /// The leg's SIP Call-ID.
    pub call_id: String,
    pub participant_tag: ParticipantTag,
    pub to: String,
    pub from: String,
    pub direction: Direction,
    /// Milliseconds since the Unix epoch; a JSON string on the wire, as the
    /// managed service sends it.
    #[serde(serialize_with = "as_string")]
    pub start_time_in_milliseconds: u64,
    pub status: ParticipantStatus,
}

fn as_string<S: Serializer>(v: &u64, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(v)
}

/// What the application is told about the call in every event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct CallDetails {
    pub transaction_id: String,
    /// The attributes the application set in its last answer that had
    /// them; left out until it sets some.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub transaction_attributes: BTreeMap<String, String>,
    pub aws_account_id: String,
    pub aws_region: String,
    pub sip_media_application_id: String,
    /// Absent for outbound calls, which no rule matched.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sip_rule_id: Option<String>,
    pub participants: Vec<Participant>,
}

/// The `Parameters` of an [`ActionData`]: the action as trunkd understood
/// it (defaults filled in), or the arguments of a create/update request.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum ActionParameters {
    Action(Box<Action>),
    Arguments {
        #[serde(rename = "Arguments")]
        arguments: BTreeMap<String, String>,
    },
}

/// The action an event reports on, echoed, with its results.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ActionData {
    /// The action's name (`PlayAudio`, …), or `CallUpdateRequest` /
    /// `CallCreateRequest` for the admin operations' arguments.
    #[serde(rename = "Type")]
    pub kind: String,
    pub parameters: ActionParameters,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub received_digits: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recording_destination: Option<MediaRef>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recording_terminator_used: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub call_recording_destination: Option<MediaRef>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
}

impl ActionData {
    /// The echo of `action` with no results yet.
    pub fn of(action: &Action) -> Self {
        Self::with(
            action.name().to_string(),
            ActionParameters::Action(Box::new(action.clone())),
        )
    }

    /// The arguments of CreateSipMediaApplicationCall (`CallCreateRequest`)
    /// or UpdateSipMediaApplicationCall (`CallUpdateRequest`).
    pub fn arguments(kind: &str, arguments: BTreeMap<String, String>) -> Self {
        Self::with(kind.to_string(), ActionParameters::Arguments { arguments })
    }

    fn with(kind: String, parameters: ActionParameters) -> Self {
        Self {
            kind,
            parameters,
            received_digits: None,
            recording_destination: None,
            recording_terminator_used: None,
            call_recording_destination: None,
            error_type: None,
            error_message: None,
        }
    }
}

/// One invocation of the application.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct InvocationEvent {
    pub schema_version: &'static str,
    /// 1 for the first invocation of the call, then one more each time.
    pub sequence: u64,
    pub invocation_event_type: InvocationEventType,
    pub call_details: CallDetails,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action_data: Option<ActionData>,
    /// Why the last answer was refused (INVALID_LAMBDA_RESPONSE).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
}

impl InvocationEvent {
    /// The request body.
    pub fn to_json(&self) -> String {
        // Cannot fail: every map has string keys and no Serialize impl
        // here returns an error.
        serde_json::to_string(self).expect("an invocation event always serialises")
    }
}
