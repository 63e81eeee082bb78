//! The application's answer: `{"SchemaVersion":"1.0","Actions":[…],
//! "TransactionAttributes":{…}}` parsed into typed, validated actions.
//!
//! Parsing is lenient where real applications differ and strict where a
//! mistake would do harm: numbers come as JSON numbers or as numeric
//! strings (the managed service's own examples send both), `a`–`d` are
//! taken for `A`–`D`; but an unknown action, a missing required parameter,
//! a value out of range, a bad regex or a key that is not DTMF refuses the
//! whole answer, as the managed service does, with an [`AnswerError`] that
//! names the action and the parameter. Defaults and ranges are the managed
//! service's where it documents them (docs/sma.md lists each).
//!
//! Every action serialises back to its `Parameters` with the defaults
//! filled in: that is the echo in `ActionData`.

use std::collections::BTreeMap;

use regex::{Regex, RegexBuilder};
use serde::{Serialize, Serializer};
use serde_json::{Map, Value};
use thiserror::Error;

use crate::event::{ParticipantTag, SCHEMA_VERSION};

/// What an answer may hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseLimits {
    /// Actions per answer (the managed service: 10).
    pub max_actions: usize,
    /// Entries of `TransactionAttributes` (the managed service: 10).
    pub max_transaction_attributes: usize,
    /// Bytes of one transaction attribute key or value.
    pub max_attribute_bytes: usize,
    /// Characters of an `InputDigitsRegex`.
    pub max_regex_chars: usize,
    /// Bytes the compiled regex may take (`regex` size limit).
    pub regex_size_limit: usize,
    /// Bytes of the answer's body.
    pub max_body_bytes: usize,
}

impl Default for ParseLimits {
    fn default() -> Self {
        Self {
            max_actions: 10,
            max_transaction_attributes: 10,
            max_attribute_bytes: 1024,
            max_regex_chars: 256,
            regex_size_limit: 64 * 1024,
            max_body_bytes: 256 * 1024,
        }
    }
}

/// Why an answer cannot be used. Each has the `ErrorType` the application
/// gets in INVALID_LAMBDA_RESPONSE ([`AnswerError::error_type`]); the
/// message is the `ErrorMessage`.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum AnswerError {
    #[error("The response is not valid JSON: {0}")]
    NotJson(String),
    #[error("The response is {size} bytes; at most {max} are accepted")]
    TooLarge { size: usize, max: usize },
    #[error("The response is not a JSON object")]
    NotAnObject,
    #[error("SchemaVersion must be \"1.0\"")]
    SchemaVersion,
    #[error("Actions must be an array")]
    ActionsNotArray,
    #[error("Actions has too many items. Maximum number of actions is {max}")]
    TooManyActions { count: usize, max: usize },
    #[error("Action {index} is not an object with a Type")]
    ActionNotObject { index: usize },
    #[error("Action {index}: {kind:?} is not a supported action type")]
    UnknownAction { index: usize, kind: String },
    #[error("Action {index} ({action}): parameter {parameter} is required")]
    MissingParameter {
        index: usize,
        action: &'static str,
        parameter: &'static str,
    },
    #[error("Action {index} ({action}): parameter {parameter} is invalid: {reason}")]
    InvalidParameter {
        index: usize,
        action: &'static str,
        parameter: &'static str,
        reason: String,
    },
    #[error("Transaction Attributes has too many mappings. Maximum number of mappings is {max}")]
    TooManyAttributes { count: usize, max: usize },
    #[error("Transaction Attributes are invalid: {0}")]
    InvalidAttributes(String),
}

impl AnswerError {
    /// The `ErrorType` of the INVALID_LAMBDA_RESPONSE event.
    pub fn error_type(&self) -> &'static str {
        match self {
            Self::NotJson(_) | Self::NotAnObject | Self::TooLarge { .. } => "InvalidLambdaResponse",
            Self::SchemaVersion => "InvalidSchemaVersion",
            Self::ActionsNotArray | Self::ActionNotObject { .. } => "InvalidActionList",
            Self::TooManyActions { .. } => "ActionListInvalidSize",
            Self::UnknownAction { .. } => "InvalidActionType",
            Self::MissingParameter { .. } | Self::InvalidParameter { .. } => {
                "InvalidActionParameter"
            }
            Self::TooManyAttributes { .. } => "TransactionAttributesInvalidMapSize",
            Self::InvalidAttributes(_) => "TransactionAttributesInvalidValue",
        }
    }
}

/// A parsed answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    /// To run in order; empty when the application has nothing to add.
    pub actions: Vec<Action>,
    /// Replaces the call's attributes when present (`None`: keep them).
    pub transaction_attributes: Option<BTreeMap<String, String>>,
}

/// Which participant an action is for: `CallId` wins over
/// `ParticipantTag`; neither means the leg the application was invoked
/// for (LEG-A).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Target {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub call_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub participant_tag: Option<ParticipantTag>,
}

/// Where audio comes from or goes to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "Type")]
pub enum MediaRef {
    /// An object of the configured S3-compatible store. For a recording
    /// destination `Key` is the prefix the file is written under.
    #[serde(rename = "S3", rename_all = "PascalCase")]
    S3 { bucket_name: String, key: String },
    /// An http(s) URL (fetched by the call task, cached, size-capped).
    #[serde(rename = "URL", rename_all = "PascalCase")]
    Url { uri: String },
    /// A local file (the call task confines it to its media directory).
    #[serde(rename = "File", rename_all = "PascalCase")]
    File { path: String },
}

/// A DTMF key list: `0`-`9`, `*`, `#`, `A`-`D`.
pub type Keys = Vec<char>;

/// An `InputDigitsRegex`, compiled. Equal when the patterns are.
#[derive(Debug, Clone)]
pub struct DigitsRegex {
    pattern: String,
    regex: Regex,
}

impl DigitsRegex {
    pub fn as_str(&self) -> &str {
        &self.pattern
    }

    /// Whether `digits` match (anywhere, unless the pattern anchors).
    pub fn is_match(&self, digits: &str) -> bool {
        self.regex.is_match(digits)
    }
}

impl PartialEq for DigitsRegex {
    fn eq(&self, other: &Self) -> bool {
        self.pattern == other.pattern
    }
}

impl Serialize for DigitsRegex {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.pattern)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct AnswerCall {
    #[serde(flatten)]
    pub target: Target,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Hangup {
    /// 0: normal clearing (BYE; 480 before the answer), else 400–699.
    pub sip_response_code: u16,
    #[serde(flatten)]
    pub target: Target,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Pause {
    pub duration_in_milliseconds: u64,
    #[serde(flatten)]
    pub target: Target,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct PlayAudio {
    pub audio_source: MediaRef,
    pub repeat: u32,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub playback_terminators: Keys,
    #[serde(flatten)]
    pub target: Target,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct PlayAudioAndGetDigits {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input_digits_regex: Option<DigitsRegex>,
    pub audio_source: MediaRef,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure_audio_source: Option<MediaRef>,
    pub min_number_of_digits: u32,
    pub max_number_of_digits: u32,
    pub terminator_digits: Keys,
    pub in_between_digits_duration_in_milliseconds: u64,
    pub repeat: u32,
    pub repeat_duration_in_milliseconds: u64,
    #[serde(flatten)]
    pub target: Target,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ReceiveDigits {
    pub input_digits_regex: DigitsRegex,
    pub in_between_digits_duration_in_milliseconds: u64,
    pub flush_digits_duration_in_milliseconds: u64,
    #[serde(flatten)]
    pub target: Target,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct SendDigits {
    pub digits: String,
    pub tone_duration_in_milliseconds: u64,
    #[serde(flatten)]
    pub target: Target,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct RecordAudio {
    pub duration_in_seconds: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub silence_duration_in_seconds: Option<u32>,
    pub silence_threshold: u32,
    pub recording_terminators: Keys,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recording_destination: Option<MediaRef>,
    #[serde(flatten)]
    pub target: Target,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum BridgeEndpointType {
    /// A number reached through the carriers (termination routing).
    #[serde(rename = "PSTN")]
    Pstn,
    /// A voice connector's origination routes (`Arn`: its id or ARN).
    #[serde(rename = "AWS")]
    Aws,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct BridgeEndpoint {
    pub bridge_endpoint_type: BridgeEndpointType,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub arn: Option<String>,
    pub uri: String,
}

/// What an `AWS` endpoint's `Arn` names: a voice connector or a voice
/// connector group, by id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VoiceConnectorRef<'a> {
    /// `arn:aws:chime:<region>:<account>:vc/<id>`.
    VoiceConnector(&'a str),
    /// `arn:aws:chime:<region>:<account>:vcg/<id>`.
    Group(&'a str),
    /// A bare id (no `arn:` prefix): a voice connector's or a group's,
    /// whichever has it (trunkd's ids are unique across both in practice;
    /// the voice connector wins).
    Id(&'a str),
}

impl BridgeEndpoint {
    /// The voice connector (or group) an `AWS` endpoint's `Arn` names, in
    /// the managed service's ARN form or as a bare id; `None` for a PSTN
    /// endpoint or an ARN that is not a Chime voice connector's. Region
    /// and account are not checked: trunkd is one region of one account.
    pub fn voice_connector(&self) -> Option<VoiceConnectorRef<'_>> {
        let arn = self.arn.as_deref()?;
        if self.bridge_endpoint_type != BridgeEndpointType::Aws {
            return None;
        }
        let Some(rest) = arn.strip_prefix("arn:") else {
            let ok = !arn.is_empty() && !arn.contains([':', '/']);
            return ok.then_some(VoiceConnectorRef::Id(arn));
        };
        // partition:service:region:account:resource
        let mut parts = rest.splitn(5, ':');
        let (_partition, service) = (parts.next()?, parts.next()?);
        let (_region, _account, resource) = (parts.next()?, parts.next()?, parts.next()?);
        if service != "chime" {
            return None;
        }
        let (kind, id) = resource.split_once('/')?;
        if id.is_empty() || id.contains('/') {
            return None;
        }
        match kind {
            "vc" => Some(VoiceConnectorRef::VoiceConnector(id)),
            "vcg" => Some(VoiceConnectorRef::Group(id)),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct CallAndBridge {
    pub call_timeout_seconds: u32,
    pub caller_id_number: String,
    pub endpoints: Vec<BridgeEndpoint>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ringback_tone: Option<MediaRef>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub sip_headers: BTreeMap<String, String>,
    #[serde(flatten)]
    pub target: Target,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Track {
    Both,
    Incoming,
    Outgoing,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct StartCallRecording {
    pub track: Track,
    pub destination: MediaRef,
    #[serde(flatten)]
    pub target: Target,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct StopCallRecording {
    #[serde(flatten)]
    pub target: Target,
}

/// One action of an answer. Serialises to its `Parameters`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Action {
    Answer(AnswerCall),
    Hangup(Hangup),
    Pause(Pause),
    PlayAudio(PlayAudio),
    PlayAudioAndGetDigits(PlayAudioAndGetDigits),
    ReceiveDigits(ReceiveDigits),
    SendDigits(SendDigits),
    RecordAudio(RecordAudio),
    CallAndBridge(CallAndBridge),
    StartCallRecording(StartCallRecording),
    StopCallRecording(StopCallRecording),
}

impl Action {
    /// The managed service's `Type`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Answer(_) => "Answer",
            Self::Hangup(_) => "Hangup",
            Self::Pause(_) => "Pause",
            Self::PlayAudio(_) => "PlayAudio",
            Self::PlayAudioAndGetDigits(_) => "PlayAudioAndGetDigits",
            Self::ReceiveDigits(_) => "ReceiveDigits",
            Self::SendDigits(_) => "SendDigits",
            Self::RecordAudio(_) => "RecordAudio",
            Self::CallAndBridge(_) => "CallAndBridge",
            Self::StartCallRecording(_) => "StartCallRecording",
            Self::StopCallRecording(_) => "StopCallRecording",
        }
    }

    /// Who the action is for.
    pub fn target(&self) -> &Target {
        match self {
            Self::Answer(a) => &a.target,
            Self::Hangup(a) => &a.target,
            Self::Pause(a) => &a.target,
            Self::PlayAudio(a) => &a.target,
            Self::PlayAudioAndGetDigits(a) => &a.target,
            Self::ReceiveDigits(a) => &a.target,
            Self::SendDigits(a) => &a.target,
            Self::RecordAudio(a) => &a.target,
            Self::CallAndBridge(a) => &a.target,
            Self::StartCallRecording(a) => &a.target,
            Self::StopCallRecording(a) => &a.target,
        }
    }

    /// The action as the application would write it
    /// (`{"Type":…,"Parameters":{…}}`), defaults filled in.
    pub fn to_json(&self) -> String {
        #[derive(Serialize)]
        struct Wire<'a> {
            #[serde(rename = "Type")]
            kind: &'a str,
            #[serde(rename = "Parameters")]
            parameters: &'a Action,
        }
        // Cannot fail: string keys only, no failing Serialize impl.
        serde_json::to_string(&Wire {
            kind: self.name(),
            parameters: self,
        })
        .expect("an action always serialises")
    }
}

/// Parses and validates an answer.
///
/// An empty body (or one of blanks, or `null`) is an answer with no
/// actions: applications answer HANGUP that way.
///
/// # Errors
/// The first thing wrong with it, as the application will be told.
pub fn parse_answer(body: &[u8], limits: &ParseLimits) -> Result<Answer, AnswerError> {
    if body.len() > limits.max_body_bytes {
        return Err(AnswerError::TooLarge {
            size: body.len(),
            max: limits.max_body_bytes,
        });
    }
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Answer {
            actions: Vec::new(),
            transaction_attributes: None,
        });
    }
    let value: Value =
        serde_json::from_slice(body).map_err(|e| AnswerError::NotJson(e.to_string()))?;
    let obj = match value {
        Value::Object(o) => o,
        Value::Null => {
            return Ok(Answer {
                actions: Vec::new(),
                transaction_attributes: None,
            })
        }
        _ => return Err(AnswerError::NotAnObject),
    };
    match obj.get("SchemaVersion") {
        Some(Value::String(s)) if s == SCHEMA_VERSION => {}
        _ => return Err(AnswerError::SchemaVersion),
    }
    let list = match obj.get("Actions") {
        None | Some(Value::Null) => &[][..],
        Some(Value::Array(a)) => &a[..],
        Some(_) => return Err(AnswerError::ActionsNotArray),
    };
    if list.len() > limits.max_actions {
        return Err(AnswerError::TooManyActions {
            count: list.len(),
            max: limits.max_actions,
        });
    }
    let actions = list
        .iter()
        .enumerate()
        .map(|(index, a)| parse_action(index, a, limits))
        .collect::<Result<Vec<_>, _>>()?;
    let transaction_attributes = match obj.get("TransactionAttributes") {
        None | Some(Value::Null) => None,
        Some(v) => Some(parse_attributes(v, limits)?),
    };
    Ok(Answer {
        actions,
        transaction_attributes,
    })
}

fn parse_attributes(
    v: &Value,
    limits: &ParseLimits,
) -> Result<BTreeMap<String, String>, AnswerError> {
    let Value::Object(map) = v else {
        return Err(AnswerError::InvalidAttributes("not an object".into()));
    };
    if map.len() > limits.max_transaction_attributes {
        return Err(AnswerError::TooManyAttributes {
            count: map.len(),
            max: limits.max_transaction_attributes,
        });
    }
    let mut out = BTreeMap::new();
    for (k, v) in map {
        let Value::String(s) = v else {
            return Err(AnswerError::InvalidAttributes(format!(
                "the value of {k:?} is not a string"
            )));
        };
        if k.len() > limits.max_attribute_bytes || s.len() > limits.max_attribute_bytes {
            return Err(AnswerError::InvalidAttributes(format!(
                "{k:?}: keys and values are at most {} bytes",
                limits.max_attribute_bytes
            )));
        }
        out.insert(k.clone(), s.clone());
    }
    Ok(out)
}

/// The parameters of one action, with what is needed to word an error.
struct Params<'a> {
    index: usize,
    action: &'static str,
    map: &'a Map<String, Value>,
    limits: &'a ParseLimits,
}

static EMPTY: std::sync::OnceLock<Map<String, Value>> = std::sync::OnceLock::new();

impl<'a> Params<'a> {
    fn missing(&self, parameter: &'static str) -> AnswerError {
        AnswerError::MissingParameter {
            index: self.index,
            action: self.action,
            parameter,
        }
    }

    fn invalid(&self, parameter: &'static str, reason: impl Into<String>) -> AnswerError {
        AnswerError::InvalidParameter {
            index: self.index,
            action: self.action,
            parameter,
            reason: reason.into(),
        }
    }

    /// The value, `None` when absent or `null`.
    fn get(&self, name: &'static str) -> Option<&'a Value> {
        self.map.get(name).filter(|v| !v.is_null())
    }

    fn req(&self, name: &'static str) -> Result<&'a Value, AnswerError> {
        self.get(name).ok_or_else(|| self.missing(name))
    }

    /// An unsigned integer as a JSON number or a string of decimal digits,
    /// within `min..=max`.
    fn uint(&self, name: &'static str, min: u64, max: u64) -> Result<Option<u64>, AnswerError> {
        let Some(v) = self.get(name) else {
            return Ok(None);
        };
        let n = match v {
            Value::Number(n) => match (n.as_u64(), n.as_f64()) {
                (Some(u), _) => u,
                (None, Some(f)) if f.fract() == 0.0 && f >= 0.0 && f <= u64::MAX as f64 => f as u64,
                _ => return Err(self.invalid(name, format!("{n} is not a whole number ≥ 0"))),
            },
            Value::String(s)
                if !s.is_empty() && s.len() <= 20 && s.bytes().all(|b| b.is_ascii_digit()) =>
            {
                s.parse::<u64>()
                    .map_err(|_| self.invalid(name, format!("{s:?} is too large")))?
            }
            other => return Err(self.invalid(name, format!("{other} is not a number"))),
        };
        if n < min || n > max {
            return Err(self.invalid(name, format!("{n} is not within {min}..={max}")));
        }
        Ok(Some(n))
    }

    fn uint_or(
        &self,
        name: &'static str,
        min: u64,
        max: u64,
        default: u64,
    ) -> Result<u64, AnswerError> {
        Ok(self.uint(name, min, max)?.unwrap_or(default))
    }

    fn uint_req(&self, name: &'static str, min: u64, max: u64) -> Result<u64, AnswerError> {
        self.uint(name, min, max)?.ok_or_else(|| self.missing(name))
    }

    fn string(&self, name: &'static str) -> Result<Option<&'a str>, AnswerError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(other) => Err(self.invalid(name, format!("{other} is not a string"))),
        }
    }

    fn string_req(&self, name: &'static str) -> Result<&'a str, AnswerError> {
        match self.string(name)? {
            Some(s) if !s.is_empty() => Ok(s),
            Some(_) => Err(self.invalid(name, "must not be empty")),
            None => Err(self.missing(name)),
        }
    }

    fn target(&self) -> Result<Target, AnswerError> {
        let call_id = self.string("CallId")?.map(str::to_string);
        if call_id
            .as_deref()
            .is_some_and(|c| c.is_empty() || c.len() > 256)
        {
            return Err(self.invalid("CallId", "must be 1 to 256 bytes"));
        }
        let participant_tag = match self.string("ParticipantTag")? {
            None => None,
            Some(t) => Some(ParticipantTag::parse(t).ok_or_else(|| {
                self.invalid(
                    "ParticipantTag",
                    format!("{t:?} is neither LEG-A nor LEG-B"),
                )
            })?),
        };
        Ok(Target {
            call_id,
            participant_tag,
        })
    }

    /// DTMF keys, as an array of one-key strings (the managed service's
    /// form) or as one string of keys.
    fn keys(&self, name: &'static str, default: &[char]) -> Result<Keys, AnswerError> {
        let raw: Vec<&str> = match self.get(name) {
            None => return Ok(default.to_vec()),
            Some(Value::String(s)) => vec![s.as_str()],
            Some(Value::Array(a)) => a
                .iter()
                .map(|v| {
                    v.as_str()
                        .ok_or_else(|| self.invalid(name, format!("{v} is not a string")))
                })
                .collect::<Result<_, _>>()?,
            Some(other) => return Err(self.invalid(name, format!("{other} is not a list of keys"))),
        };
        let mut keys = Vec::new();
        for c in raw.iter().flat_map(|s| s.chars()) {
            let k = dtmf_key(c).ok_or_else(|| {
                self.invalid(name, format!("{c:?} is not a DTMF key (0-9, *, #, A-D)"))
            })?;
            if !keys.contains(&k) {
                keys.push(k);
            }
        }
        if keys.len() > 16 {
            return Err(self.invalid(name, "at most 16 keys"));
        }
        Ok(keys)
    }

    fn regex(&self, name: &'static str) -> Result<Option<DigitsRegex>, AnswerError> {
        let Some(p) = self.string(name)? else {
            return Ok(None);
        };
        if p.is_empty() {
            return Err(self.invalid(name, "must not be empty"));
        }
        if p.chars().count() > self.limits.max_regex_chars {
            return Err(self.invalid(
                name,
                format!("longer than {} characters", self.limits.max_regex_chars),
            ));
        }
        let regex = RegexBuilder::new(p)
            .size_limit(self.limits.regex_size_limit)
            .dfa_size_limit(self.limits.regex_size_limit)
            .build()
            .map_err(|e| self.invalid(name, format!("not a valid regular expression: {e}")))?;
        Ok(Some(DigitsRegex {
            pattern: p.to_string(),
            regex,
        }))
    }

    fn media(
        &self,
        name: &'static str,
        destination: bool,
    ) -> Result<Option<MediaRef>, AnswerError> {
        let Some(v) = self.get(name) else {
            return Ok(None);
        };
        let Value::Object(m) = v else {
            return Err(self.invalid(name, "not an object"));
        };
        let field = |f: &str| -> Result<Option<&str>, AnswerError> {
            match m.get(f) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) if !s.is_empty() => Ok(Some(s.as_str())),
                Some(_) => Err(self.invalid(name, format!("{f} must be a non-empty string"))),
            }
        };
        let need = |f: &'static str| -> Result<&str, AnswerError> {
            field(f)?.ok_or_else(|| self.invalid(name, format!("{f} is required")))
        };
        let r = match field("Type")? {
            Some("S3") => {
                if destination {
                    // The managed service writes recordings under a
                    // `Prefix` (RecordAudio) or a `Location` "bucket/prefix"
                    // (StartCallRecording); `Key` is taken too.
                    if let Some(loc) = field("Location")? {
                        let (bucket, prefix) = loc.split_once('/').unwrap_or((loc, ""));
                        if bucket.is_empty() {
                            return Err(self.invalid(name, "Location has no bucket"));
                        }
                        MediaRef::S3 {
                            bucket_name: bucket.to_string(),
                            key: prefix.to_string(),
                        }
                    } else {
                        MediaRef::S3 {
                            bucket_name: need("BucketName")?.to_string(),
                            key: field("Key")?.or(field("Prefix")?).unwrap_or("").to_string(),
                        }
                    }
                } else {
                    MediaRef::S3 {
                        bucket_name: need("BucketName")?.to_string(),
                        key: need("Key")?.to_string(),
                    }
                }
            }
            Some("URL") => {
                let uri = need("Uri")?;
                let lower = uri.to_ascii_lowercase();
                if !(lower.starts_with("http://") || lower.starts_with("https://"))
                    || uri.len() > 2048
                {
                    return Err(
                        self.invalid(name, "Uri must be an http(s) URL of at most 2048 bytes")
                    );
                }
                MediaRef::Url {
                    uri: uri.to_string(),
                }
            }
            Some("File") => {
                let path = need("Path")?;
                if path.contains('\0') || path.len() > 1024 {
                    return Err(
                        self.invalid(name, "Path must be a file path of at most 1024 bytes")
                    );
                }
                MediaRef::File {
                    path: path.to_string(),
                }
            }
            Some(t) => return Err(self.invalid(name, format!("Type {t:?} is not S3, URL or File"))),
            None => return Err(self.invalid(name, "Type is required")),
        };
        Ok(Some(r))
    }
}

/// The key `c` stands for, `a`–`d` as `A`–`D`.
pub fn dtmf_key(c: char) -> Option<char> {
    match c {
        '0'..='9' | '*' | '#' | 'A'..='D' => Some(c),
        'a'..='d' => Some(c.to_ascii_uppercase()),
        _ => None,
    }
}

fn is_e164(s: &str) -> bool {
    let Some(d) = s.strip_prefix('+') else {
        return false;
    };
    (2..=15).contains(&d.len()) && d.bytes().all(|b| b.is_ascii_digit()) && !d.starts_with('0')
}

/// What a SIP header name of CallAndBridge may be: the managed service
/// passes `x-` headers, `User-to-User` and `Diversion`.
fn allowed_sip_header(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    let token = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    token && (lower.starts_with("x-") || lower == "user-to-user" || lower == "diversion")
}

fn parse_action(index: usize, v: &Value, limits: &ParseLimits) -> Result<Action, AnswerError> {
    let Value::Object(obj) = v else {
        return Err(AnswerError::ActionNotObject { index });
    };
    let Some(Value::String(kind)) = obj.get("Type") else {
        return Err(AnswerError::ActionNotObject { index });
    };
    let action: &'static str = match kind.as_str() {
        "Answer" => "Answer",
        "Hangup" => "Hangup",
        "Pause" => "Pause",
        "PlayAudio" => "PlayAudio",
        "PlayAudioAndGetDigits" => "PlayAudioAndGetDigits",
        "ReceiveDigits" => "ReceiveDigits",
        "SendDigits" => "SendDigits",
        "RecordAudio" => "RecordAudio",
        "CallAndBridge" => "CallAndBridge",
        "StartCallRecording" => "StartCallRecording",
        "StopCallRecording" => "StopCallRecording",
        other => {
            return Err(AnswerError::UnknownAction {
                index,
                kind: other.chars().take(64).collect(),
            })
        }
    };
    let map = match obj.get("Parameters") {
        None | Some(Value::Null) => EMPTY.get_or_init(Map::new),
        Some(Value::Object(m)) => m,
        Some(_) => {
            return Err(AnswerError::InvalidParameter {
                index,
                action,
                parameter: "Parameters",
                reason: "not an object".into(),
            })
        }
    };
    let p = Params {
        index,
        action,
        map,
        limits,
    };
    let target = p.target()?;
    Ok(match action {
        "Answer" => Action::Answer(AnswerCall { target }),
        "Hangup" => {
            let code = p.uint_or("SipResponseCode", 0, 699, 0)?;
            if code != 0 && code < 400 {
                return Err(p.invalid(
                    "SipResponseCode",
                    format!("{code} is neither 0 nor 400..=699"),
                ));
            }
            Action::Hangup(Hangup {
                sip_response_code: code as u16,
                target,
            })
        }
        "Pause" => Action::Pause(Pause {
            duration_in_milliseconds: p.uint_req("DurationInMilliseconds", 1, MAX_PAUSE_MS)?,
            target,
        }),
        "PlayAudio" => Action::PlayAudio(PlayAudio {
            audio_source: p
                .media("AudioSource", false)?
                .ok_or_else(|| p.missing("AudioSource"))?,
            repeat: p.uint_or("Repeat", 1, MAX_REPEAT, 1)? as u32,
            playback_terminators: p.keys("PlaybackTerminators", &[])?,
            target,
        }),
        "PlayAudioAndGetDigits" => {
            let min = p.uint_or("MinNumberOfDigits", 0, MAX_DIGITS, 0)?;
            let max = p.uint_or("MaxNumberOfDigits", 1, MAX_DIGITS, MAX_DIGITS)?;
            if min > max {
                return Err(p.invalid(
                    "MinNumberOfDigits",
                    format!("{min} is more than MaxNumberOfDigits {max}"),
                ));
            }
            Action::PlayAudioAndGetDigits(PlayAudioAndGetDigits {
                input_digits_regex: p.regex("InputDigitsRegex")?,
                audio_source: p
                    .media("AudioSource", false)?
                    .ok_or_else(|| p.missing("AudioSource"))?,
                failure_audio_source: p.media("FailureAudioSource", false)?,
                min_number_of_digits: min as u32,
                max_number_of_digits: max as u32,
                terminator_digits: p.keys("TerminatorDigits", &['#'])?,
                in_between_digits_duration_in_milliseconds: p.uint_or(
                    "InBetweenDigitsDurationInMilliseconds",
                    1,
                    MAX_DIGIT_WAIT_MS,
                    3000,
                )?,
                repeat: p.uint_or("Repeat", 1, MAX_REPEAT, 1)? as u32,
                repeat_duration_in_milliseconds: p.uint_or(
                    "RepeatDurationInMilliseconds",
                    1,
                    MAX_DIGIT_WAIT_MS,
                    3000,
                )?,
                target,
            })
        }
        "ReceiveDigits" => Action::ReceiveDigits(ReceiveDigits {
            input_digits_regex: p
                .regex("InputDigitsRegex")?
                .ok_or_else(|| p.missing("InputDigitsRegex"))?,
            in_between_digits_duration_in_milliseconds: p.uint_req(
                "InBetweenDigitsDurationInMilliseconds",
                1,
                MAX_DIGIT_WAIT_MS,
            )?,
            flush_digits_duration_in_milliseconds: p.uint_req(
                "FlushDigitsDurationInMilliseconds",
                1,
                MAX_DIGIT_WAIT_MS,
            )?,
            target,
        }),
        "SendDigits" => {
            let raw = p.string_req("Digits")?;
            let digits = raw
                .chars()
                .map(|c| {
                    dtmf_key(c).ok_or_else(|| {
                        p.invalid(
                            "Digits",
                            format!("{c:?} is not a DTMF key (0-9, *, #, A-D)"),
                        )
                    })
                })
                .collect::<Result<String, _>>()?;
            if digits.len() > MAX_SEND_DIGITS {
                return Err(p.invalid("Digits", format!("at most {MAX_SEND_DIGITS} keys")));
            }
            Action::SendDigits(SendDigits {
                digits,
                tone_duration_in_milliseconds: p.uint_or(
                    "ToneDurationInMilliseconds",
                    50,
                    24_000,
                    250,
                )?,
                target,
            })
        }
        "RecordAudio" => Action::RecordAudio(RecordAudio {
            duration_in_seconds: p.uint_or("DurationInSeconds", 1, MAX_RECORD_S, MAX_RECORD_S)?
                as u32,
            silence_duration_in_seconds: p
                .uint("SilenceDurationInSeconds", 1, 1000)?
                .map(|n| n as u32),
            silence_threshold: p.uint_or("SilenceThreshold", 1, 1000, 200)? as u32,
            recording_terminators: p.keys("RecordingTerminators", &['#'])?,
            recording_destination: p.media("RecordingDestination", true)?,
            target,
        }),
        "CallAndBridge" => {
            let caller = p.string_req("CallerIdNumber")?;
            if !is_e164(caller) {
                return Err(p.invalid(
                    "CallerIdNumber",
                    format!("{caller:?} is not an E.164 number"),
                ));
            }
            let Value::Array(list) = p.req("Endpoints")? else {
                return Err(p.invalid("Endpoints", "not an array"));
            };
            if list.len() != 1 {
                return Err(p.invalid(
                    "Endpoints",
                    "Invalid number of endpoints provided: exactly one is supported",
                ));
            }
            let mut endpoints = Vec::new();
            for e in list {
                let Value::Object(m) = e else {
                    return Err(p.invalid("Endpoints", "an endpoint is not an object"));
                };
                let s = |f: &str| m.get(f).and_then(Value::as_str).filter(|s| !s.is_empty());
                let uri = s("Uri").ok_or_else(|| p.invalid("Endpoints", "Uri is required"))?;
                let (kind, arn) = match s("BridgeEndpointType") {
                    Some("PSTN") => {
                        if !is_e164(uri) {
                            return Err(
                                p.invalid("Endpoints", format!("{uri:?} is not an E.164 number"))
                            );
                        }
                        (BridgeEndpointType::Pstn, None)
                    }
                    Some("AWS") => {
                        let arn = s("Arn").ok_or_else(|| {
                            p.invalid("Endpoints", "Arn (the voice connector) is required for AWS")
                        })?;
                        if uri.len() > 256 {
                            return Err(p.invalid("Endpoints", "Uri is longer than 256 bytes"));
                        }
                        (BridgeEndpointType::Aws, Some(arn.to_string()))
                    }
                    _ => {
                        return Err(p.invalid("Endpoints", "BridgeEndpointType must be PSTN or AWS"))
                    }
                };
                endpoints.push(BridgeEndpoint {
                    bridge_endpoint_type: kind,
                    arn,
                    uri: uri.to_string(),
                });
            }
            let mut sip_headers = BTreeMap::new();
            match p.get("SipHeaders") {
                None => {}
                Some(Value::Object(m)) => {
                    if m.len() > 10 {
                        return Err(p.invalid("SipHeaders", "at most 10 headers"));
                    }
                    for (k, v) in m {
                        let Some(v) = v.as_str() else {
                            return Err(p.invalid(
                                "SipHeaders",
                                format!("the value of {k} is not a string"),
                            ));
                        };
                        if !allowed_sip_header(k) {
                            return Err(p.invalid(
                                "SipHeaders",
                                format!("Invalid SIP header provided: {k}"),
                            ));
                        }
                        if v.len() > 2048 || v.chars().any(|c| c.is_control()) {
                            return Err(p.invalid(
                                "SipHeaders",
                                format!("the value of {k} is too long or has control characters"),
                            ));
                        }
                        sip_headers.insert(k.clone(), v.to_string());
                    }
                }
                Some(_) => return Err(p.invalid("SipHeaders", "not an object")),
            }
            Action::CallAndBridge(CallAndBridge {
                call_timeout_seconds: p.uint_or("CallTimeoutSeconds", 1, 120, 30)? as u32,
                caller_id_number: caller.to_string(),
                endpoints,
                ringback_tone: p.media("RingbackTone", false)?,
                sip_headers,
                target,
            })
        }
        "StartCallRecording" => {
            let track = match p.string_req("Track")? {
                "BOTH" => Track::Both,
                "INCOMING" => Track::Incoming,
                "OUTGOING" => Track::Outgoing,
                t => {
                    return Err(
                        p.invalid("Track", format!("{t:?} is not BOTH, INCOMING or OUTGOING"))
                    )
                }
            };
            Action::StartCallRecording(StartCallRecording {
                track,
                destination: p
                    .media("Destination", true)?
                    .ok_or_else(|| p.missing("Destination"))?,
                target,
            })
        }
        _ => Action::StopCallRecording(StopCallRecording { target }),
    })
}

/// Longest Pause (one hour: trunkd's bound, the managed service gives none).
pub const MAX_PAUSE_MS: u64 = 3_600_000;
/// Most plays of one prompt (trunkd's bound).
pub const MAX_REPEAT: u64 = 100;
/// Most digits PlayAudioAndGetDigits collects (the managed service: 128).
pub const MAX_DIGITS: u64 = 128;
/// Longest wait for a digit (trunkd's bound: ten minutes).
pub const MAX_DIGIT_WAIT_MS: u64 = 600_000;
/// Most keys of one SendDigits (the managed service: 50).
pub const MAX_SEND_DIGITS: usize = 50;
/// Longest recording and its default (trunkd's bound: one hour).
pub const MAX_RECORD_S: u64 = 3600;
