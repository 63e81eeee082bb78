//! The streaming detail record of SPEC §5.2: one per streamed call (a
//! recording session, a call streamed to a sink), written when its
//! streaming ends, under the CDR's key layout in the `…-SDRs` folder and
//! with the call's own `TransactionId`, so a billing tool joins the two.
//!
//! Decisions where SPEC leaves room:
//!
//! - `Status` is `Completed` when streaming delivered what it received,
//!   `Failed` when it could not (no sink accepted the audio, or it broke
//!   off); `StatusMessage` says which in words (`Streaming succeeded`, or
//!   the failure).
//! - `BillableDurationSeconds` is the streaming session's duration, start
//!   to end, rounded up like the CDR's.
//! - `UsageType` is `<region>-VC-kinesis-audio-streaming` with the
//!   daemon's region code, the managed service's spelling, so cost reports
//!   written for it keep working; `Region` is the VC's.

use std::time::SystemTime;

use serde::Serialize;

use super::{billable_seconds, epoch_seconds, record_key, CdrSettings, SDR_FOLDER};
use crate::transaction_id::TransactionId;
use crate::{Resources, VcId};

/// `SchemaVersion` of SPEC §5.2.
pub const SDR_SCHEMA_VERSION: &str = "1.0";

/// How a call's streaming ended.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum StreamOutcome {
    Succeeded,
    Failed { reason: String },
}

/// What the streaming side knows when a call's streaming ends.
#[derive(Clone, Debug)]
pub struct StreamFacts<'a> {
    pub transaction_id: TransactionId,
    pub call_id: &'a str,
    pub voice_connector_id: &'a VcId,
    pub start: SystemTime,
    pub end: SystemTime,
    pub outcome: StreamOutcome,
}

/// `Status` of an SDR.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize)]
pub enum SdrStatus {
    Completed,
    Failed,
}

#[derive(Clone, PartialEq, Eq, Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Sdr {
    pub schema_version: &'static str,
    pub aws_account_id: String,
    pub transaction_id: TransactionId,
    pub call_id: String,
    pub voice_connector_id: VcId,
    pub start_time_epoch_seconds: u64,
    pub end_time_epoch_seconds: u64,
    pub status: SdrStatus,
    pub status_message: String,
    pub service_code: String,
    pub usage_type: String,
    pub billable_duration_seconds: u64,
    pub region: String,
}

/// The SDR of a call whose streaming ended.
pub fn build_sdr(
    facts: &StreamFacts<'_>,
    settings: &CdrSettings<'_>,
    resources: &Resources,
) -> Sdr {
    let streamed_ms = facts
        .end
        .duration_since(facts.start)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    let (status, status_message) = match &facts.outcome {
        StreamOutcome::Succeeded => (SdrStatus::Completed, "Streaming succeeded".to_owned()),
        StreamOutcome::Failed { reason } => (SdrStatus::Failed, reason.clone()),
    };
    let region = resources
        .voice_connector(facts.voice_connector_id.as_str())
        .map_or_else(|| settings.region.to_owned(), |vc| vc.aws_region.clone());
    Sdr {
        schema_version: SDR_SCHEMA_VERSION,
        aws_account_id: settings.account_id.to_owned(),
        transaction_id: facts.transaction_id,
        call_id: facts.call_id.to_owned(),
        voice_connector_id: facts.voice_connector_id.clone(),
        start_time_epoch_seconds: epoch_seconds(facts.start),
        end_time_epoch_seconds: epoch_seconds(facts.end),
        status,
        status_message,
        service_code: settings.service_code.to_owned(),
        usage_type: format!("{}-VC-kinesis-audio-streaming", settings.region),
        billable_duration_seconds: billable_seconds(streamed_ms),
        region,
    }
}

/// An SDR's key (SPEC §5.2: as the CDR's, in the SDR folder).
pub fn sdr_key(
    prefix: &str,
    vc_id: &VcId,
    start: SystemTime,
    transaction_id: TransactionId,
) -> String {
    record_key(prefix, SDR_FOLDER, vc_id, start, transaction_id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::*;
    use std::time::{Duration, UNIX_EPOCH};

    const SETTINGS: CdrSettings<'static> = CdrSettings {
        account_id: "000000000000",
        region: "local",
        service_code: "AmazonChimeVoiceConnector",
    };

    fn world() -> Resources {
        let mut v = vc("vc-east");
        v.aws_region = "us-east-1".into();
        resources(vec![v], vec![], vec![], vec![], vec![])
    }

    #[test]
    fn a_streamed_call_has_the_spec_fields_in_the_managed_services_spelling() {
        let vc = vc_id("vc-east");
        let start = UNIX_EPOCH + Duration::from_millis(1_565_399_625_042);
        let facts = StreamFacts {
            transaction_id: TransactionId::from_random_bytes([0xab; 16]),
            call_id: "abc@pbx",
            voice_connector_id: &vc,
            start,
            end: start + Duration::from_millis(61_001),
            outcome: StreamOutcome::Succeeded,
        };
        let sdr = build_sdr(&facts, &SETTINGS, &world());
        let json = serde_json::to_value(&sdr).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "SchemaVersion": "1.0",
                "AwsAccountId": "000000000000",
                "TransactionId": "abababab-abab-4bab-abab-abababababab",
                "CallId": "abc@pbx",
                "VoiceConnectorId": "vc-east",
                "StartTimeEpochSeconds": 1_565_399_625u64,
                "EndTimeEpochSeconds": 1_565_399_686u64,
                "Status": "Completed",
                "StatusMessage": "Streaming succeeded",
                "ServiceCode": "AmazonChimeVoiceConnector",
                "UsageType": "local-VC-kinesis-audio-streaming",
                "BillableDurationSeconds": 62,
                "Region": "us-east-1",
            })
        );
        assert_eq!(
            sdr_key("", &vc, start, facts.transaction_id),
            "Amazon-Chime-Voice-Connector-SDRs/json/vc-east/2019/08/10/01.13.45.042_abababab-abab-4bab-abab-abababababab"
        );
    }

    #[test]
    fn a_failed_stream_says_why_and_an_end_before_the_start_bills_nothing() {
        let vc = vc_id("vc-gone");
        let start = UNIX_EPOCH + Duration::from_secs(100);
        let sdr = build_sdr(
            &StreamFacts {
                transaction_id: TransactionId::from_random_bytes([1; 16]),
                call_id: "x",
                voice_connector_id: &vc,
                start,
                end: start - Duration::from_secs(1),
                outcome: StreamOutcome::Failed {
                    reason: "No sink accepted the audio".into(),
                },
            },
            &SETTINGS,
            &world(),
        );
        assert_eq!(sdr.status, SdrStatus::Failed);
        assert_eq!(sdr.status_message, "No sink accepted the audio");
        assert_eq!(sdr.billable_duration_seconds, 0);
        // A VC no longer in the snapshot: the daemon's region.
        assert_eq!(sdr.region, "local");
    }
}
