//! The event envelope (SPEC §5.4) and the details trunkd fills in.
//!
//! The envelope has the shape of an Amazon EventBridge event, as the
//! managed service sends them, so consumers written for it parse trunkd's
//! events unchanged. `source` is [`SOURCE`] (`"trunkd"`), not
//! `"aws.chime"`: a consumer that sees both can tell them apart, and one
//! that does not care ignores `source` (the detail types and details are
//! the managed service's).

use std::collections::BTreeMap;

use serde::Serialize;

use crate::civil::UtcDateTime;
use crate::TransactionId;

/// `source` of every event trunkd emits.
pub const SOURCE: &str = "trunkd";

/// The streaming status event of the managed service.
pub const STREAMING_STATUS: &str = "Chime VoiceConnector Streaming Status";
/// A carrier host or origination route went down or came back up.
pub const ROUTE_STATE_CHANGE: &str = "trunkd Route State Change";
/// `SIGHUP`, `trunkd reload` or `POST /reload` found an invalid file.
pub const RELOAD_FAILED: &str = "trunkd Configuration Reload Failed";
/// A record sink's spool passed its high-water mark.
pub const SINK_BACKLOG_HIGH: &str = "trunkd Sink Backlog High";
/// A write through the admin API changed the configuration file.
pub const CONFIGURATION_CHANGED: &str = "trunkd Configuration Changed";

/// The ordering key of events that belong to no call: they are delivered
/// to each target in the order they were emitted.
pub const DAEMON_ORDERING_KEY: &str = "daemon";

/// One event, as every target receives it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Envelope {
    pub version: &'static str,
    /// A UUID (v4), also the `webhook-id` of every delivery attempt.
    pub id: String,
    #[serde(rename = "detail-type")]
    pub detail_type: String,
    pub source: &'static str,
    /// `daemon.account_id`.
    pub account: String,
    /// ISO-8601 UTC to the second, e.g. `2026-12-03T06:50:00Z`.
    pub time: String,
    pub region: String,
    pub resources: Vec<String>,
    pub detail: serde_json::Value,
}

impl Envelope {
    /// An event emitted at `unix_ms`; `random` is 16 bytes from the
    /// caller's RNG for the id.
    pub fn new(
        random: [u8; 16],
        unix_ms: u64,
        account: &str,
        region: &str,
        detail_type: &str,
        detail: serde_json::Value,
    ) -> Self {
        Envelope {
            version: "0",
            id: TransactionId::from_random_bytes(random).to_string(),
            detail_type: detail_type.to_owned(),
            source: SOURCE,
            account: account.to_owned(),
            time: iso8601_seconds(unix_ms),
            region: region.to_owned(),
            resources: Vec::new(),
            detail,
        }
    }

    /// The JSON body, the exact bytes that are signed and sent.
    pub fn to_json(&self) -> String {
        // A struct of strings and a JSON value: serialization cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// `YYYY-MM-DDTHH:MM:SSZ`, as EventBridge writes `time`.
pub fn iso8601_seconds(unix_ms: u64) -> String {
    let t = UtcDateTime::from_unix_ms(unix_ms);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year, t.month, t.day, t.hour, t.minute, t.second
    )
}

/// `streamingStatus` of a [`STREAMING_STATUS`] event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum StreamingStatus {
    Started,
    Updated,
    Ended,
    Failed,
}

/// `sdp` of a streaming status event: which stream of the offer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SdpRef {
    pub media_index: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub media_label: Option<String>,
}

/// The detail of a [`STREAMING_STATUS`] event, with the fields of the
/// managed service that trunkd can fill (`startFragmentNumber` is a Kinesis
/// notion and is left out).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StreamingDetail {
    pub streaming_status: StreamingStatus,
    pub call_id: String,
    /// `Inbound` or `Outbound`.
    pub direction: String,
    pub from_number: String,
    pub to_number: String,
    /// from, to, call-id, cseq, contact, content-type, content-length of
    /// the INVITE, lowercase names.
    pub invite_headers: BTreeMap<String, String>,
    pub is_caller: bool,
    pub media_type: &'static str,
    pub sdp: SdpRef,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub siprec_metadata: Option<String>,
    pub start_time: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end_time: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fail_time: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure_reason: Option<String>,
    /// The sink's stream URI (a `file://` path for a WAV sink).
    pub stream_arn: String,
    pub transaction_id: String,
    pub voice_connector_id: String,
    pub version: &'static str,
}

impl StreamingDetail {
    pub fn to_value(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_envelope_has_the_eventbridge_fields_in_order() {
        let e = Envelope::new(
            [0u8; 16],
            1_796_280_600_123,
            "123456789012",
            "us-east-1",
            RELOAD_FAILED,
            serde_json::json!({"errors": ["x"]}),
        );
        assert_eq!(
            e.to_json(),
            concat!(
                r#"{"version":"0","id":"00000000-0000-4000-8000-000000000000","#,
                r#""detail-type":"trunkd Configuration Reload Failed","source":"trunkd","#,
                r#""account":"123456789012","time":"2026-12-03T06:50:00Z","#,
                r#""region":"us-east-1","resources":[],"detail":{"errors":["x"]}}"#
            )
        );
    }

    #[test]
    fn a_streaming_detail_names_its_fields_as_the_managed_service_does() {
        let d = StreamingDetail {
            streaming_status: StreamingStatus::Ended,
            call_id: "c1".into(),
            direction: "Outbound".into(),
            from_number: "+12065550100".into(),
            to_number: "rec".into(),
            invite_headers: BTreeMap::from([("cseq".into(), "1 INVITE".into())]),
            is_caller: true,
            media_type: "audio/L16",
            sdp: SdpRef {
                media_index: 0,
                media_label: Some("1".into()),
            },
            siprec_metadata: None,
            start_time: "2026-12-03T06:50:00Z".into(),
            end_time: Some("2026-12-03T06:51:00Z".into()),
            fail_time: None,
            failure_reason: None,
            stream_arn: "file:///var/audio/t-0.wav".into(),
            transaction_id: "t".into(),
            voice_connector_id: "vc".into(),
            version: "0",
        };
        assert_eq!(
            serde_json::to_string(&d).unwrap(),
            concat!(
                r#"{"streamingStatus":"ENDED","callId":"c1","direction":"Outbound","#,
                r#""fromNumber":"+12065550100","toNumber":"rec","inviteHeaders":{"cseq":"1 INVITE"},"#,
                r#""isCaller":true,"mediaType":"audio/L16","sdp":{"mediaIndex":0,"mediaLabel":"1"},"#,
                r#""startTime":"2026-12-03T06:50:00Z","endTime":"2026-12-03T06:51:00Z","#,
                r#""streamArn":"file:///var/audio/t-0.wav","transactionId":"t","voiceConnectorId":"vc","version":"0"}"#
            )
        );
    }
}
