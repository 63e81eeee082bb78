//! The call detail record of SPEC §5.1: one JSON object per call, field
//! names and meanings as the managed service writes them, so tools built
//! for its records read trunkd's.
//!
//! [`build_cdr`] turns what the call layer knows at a call's end
//! ([`CallFacts`]) into a [`Cdr`]; serde writes it. Decisions where SPEC
//! leaves room:
//!
//! - `Status`: `Completed` (answered; ended by either side), `Failed` (a
//!   final response ≥ 300 other than 487, including trunkd's own admission
//!   refusals and exhausted routes), `Cancelled` (CANCEL before answer, or
//!   a 487), `Interrupted` (answered, and trunkd stopped before the call
//!   ended: written from the call journal at the next start, see
//!   [`journal`]). `StatusMessage`: `OK`, or the final response's reason
//!   phrase.
//! - Every field is always present: unknown values are `null` (no auth
//!   user, a number without a name, a number without a country).
//! - `UsageType`: `<region>-<src>-<dst>-<inbound|outbound>-minutes` with
//!   ISO 3166 codes, and `XX` (ISO 3166's user-assigned code, widely used
//!   for "unknown") where a number has no country.
//! - `Region` is the VC's `aws_region`; the `UsageType` region code is the
//!   daemon's `region` (SPEC §3.1).

pub mod billing;
pub mod journal;
pub mod key;
pub mod sdr;

use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

pub use billing::{billable_seconds, MinuteTenths};
pub use key::{cdr_key, record_key, CDR_FOLDER, SDR_FOLDER};
pub use sdr::{build_sdr, sdr_key, Sdr, SdrStatus, StreamFacts, StreamOutcome};

use crate::country::country_of;
use crate::transaction_id::TransactionId;
use crate::{Country, Resources, VcId, E164};

/// `SchemaVersion` of SPEC §5.1.
pub const CDR_SCHEMA_VERSION: &str = "2.0";
/// Default `ServiceCode` (configurable, SPEC §5.1).
pub const DEFAULT_SERVICE_CODE: &str = "AmazonChimeVoiceConnector";
/// The country written in `UsageType` when a number has none.
pub const UNKNOWN_COUNTRY: &str = "XX";

/// Call direction as the managed service names it: termination is
/// `Outbound` (customer → PSTN), origination `Inbound`.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize)]
pub enum Direction {
    Inbound,
    Outbound,
}

impl Direction {
    fn usage_word(self) -> &'static str {
        match self {
            Direction::Inbound => "inbound",
            Direction::Outbound => "outbound",
        }
    }
}

/// `Status` of a CDR.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize)]
pub enum CdrStatus {
    Completed,
    Failed,
    Cancelled,
    Interrupted,
}

/// How a call ended, as the call layer saw it.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum CallOutcome {
    /// Answered, then ended by BYE from either side (or a media timeout).
    Answered,
    /// The caller cancelled before an answer.
    Cancelled,
    /// Ended before answer with this final status (a 487 counts as
    /// cancelled).
    Failed { status: u16, reason: String },
    /// Answered, and trunkd stopped (crash, SIGKILL, power loss) before
    /// the call ended; the end is the journal's last heartbeat.
    Interrupted,
}

/// Everything about a finished call that the CDR needs.
#[derive(Clone, Debug)]
pub struct CallFacts<'a> {
    pub transaction_id: TransactionId,
    /// The A leg's Call-ID.
    pub call_id: &'a str,
    pub voice_connector_id: &'a VcId,
    pub direction: Direction,
    /// Caller and callee as signalled (E.164 text where they are).
    pub source_phone_number: &'a str,
    pub destination_phone_number: &'a str,
    pub sip_auth_user: Option<&'a str>,
    pub start: SystemTime,
    pub answered: Option<SystemTime>,
    pub end: SystemTime,
    pub outcome: CallOutcome,
    pub streaming: bool,
}

/// Daemon settings the CDR reads.
#[derive(Clone, Copy, Debug)]
pub struct CdrSettings<'a> {
    /// `daemon.account_id`.
    pub account_id: &'a str,
    /// `daemon.region`: the `UsageType` region code, and `Region` when the
    /// VC is no longer in the snapshot.
    pub region: &'a str,
    pub service_code: &'a str,
}

/// The CDR JSON object (SPEC §5.1), fields in the managed service's order.
#[derive(Clone, PartialEq, Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Cdr {
    pub aws_account_id: String,
    pub transaction_id: TransactionId,
    pub call_id: String,
    pub voice_connector_id: VcId,
    pub status: CdrStatus,
    pub status_message: String,
    pub sip_auth_user: Option<String>,
    pub billable_duration_seconds: u64,
    pub billable_duration_minutes: MinuteTenths,
    pub schema_version: &'static str,
    pub source_phone_number: String,
    pub source_phone_number_name: Option<String>,
    pub source_country: Option<Country>,
    pub destination_phone_number: String,
    pub destination_phone_number_name: Option<String>,
    pub destination_country: Option<Country>,
    pub usage_type: String,
    pub service_code: String,
    pub direction: Direction,
    pub start_time_epoch_seconds: u64,
    pub end_time_epoch_seconds: u64,
    pub region: String,
    pub streaming: bool,
}

fn epoch_seconds(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// The `Status` and `StatusMessage` of an outcome.
pub fn status_of(outcome: &CallOutcome) -> (CdrStatus, String) {
    match outcome {
        CallOutcome::Answered => (CdrStatus::Completed, "OK".to_owned()),
        CallOutcome::Cancelled => (CdrStatus::Cancelled, "Request Terminated".to_owned()),
        CallOutcome::Failed {
            status: 487,
            reason,
        } => (CdrStatus::Cancelled, reason.clone()),
        CallOutcome::Failed { reason, .. } => (CdrStatus::Failed, reason.clone()),
        CallOutcome::Interrupted => (
            CdrStatus::Interrupted,
            "trunkd stopped during the call".to_owned(),
        ),
    }
}

/// `<region>-<src>-<dst>-<inbound|outbound>-minutes`.
pub fn usage_type(
    region: &str,
    source: Option<Country>,
    destination: Option<Country>,
    direction: Direction,
) -> String {
    let code = |c: Option<Country>| c.map_or_else(|| UNKNOWN_COUNTRY.to_owned(), |c| c.to_string());
    format!(
        "{region}-{}-{}-{}-minutes",
        code(source),
        code(destination),
        direction.usage_word()
    )
}

/// Builds the CDR of a finished call. Number names come from the
/// inventory (`name`), countries from the numbering plan; billing counts
/// from answer to end only (SPEC §5.1: rounded up).
pub fn build_cdr(facts: &CallFacts<'_>, settings: &CdrSettings<'_>, resources: &Resources) -> Cdr {
    let number = |s: &str| E164::parse_lenient(s).ok();
    let name = |n: Option<E164>| {
        n.and_then(|n| resources.number(n))
            .and_then(|num| num.name.clone())
    };
    let (src, dst) = (
        number(facts.source_phone_number),
        number(facts.destination_phone_number),
    );
    let (src_country, dst_country) = (src.and_then(country_of), dst.and_then(country_of));
    let answered_ms = match (&facts.outcome, facts.answered) {
        (CallOutcome::Answered | CallOutcome::Interrupted, Some(a)) => facts
            .end
            .duration_since(a)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        _ => 0,
    };
    let seconds = billable_seconds(answered_ms);
    let (status, status_message) = status_of(&facts.outcome);
    let region = resources
        .voice_connector(facts.voice_connector_id.as_str())
        .map_or_else(|| settings.region.to_owned(), |vc| vc.aws_region.clone());
    Cdr {
        aws_account_id: settings.account_id.to_owned(),
        transaction_id: facts.transaction_id,
        call_id: facts.call_id.to_owned(),
        voice_connector_id: facts.voice_connector_id.clone(),
        status,
        status_message,
        sip_auth_user: facts.sip_auth_user.map(str::to_owned),
        billable_duration_seconds: seconds,
        billable_duration_minutes: MinuteTenths::from_billable_seconds(seconds),
        schema_version: CDR_SCHEMA_VERSION,
        source_phone_number: facts.source_phone_number.to_owned(),
        source_phone_number_name: name(src),
        source_country: src_country,
        destination_phone_number: facts.destination_phone_number.to_owned(),
        destination_phone_number_name: name(dst),
        destination_country: dst_country,
        usage_type: usage_type(settings.region, src_country, dst_country, facts.direction),
        service_code: settings.service_code.to_owned(),
        direction: facts.direction,
        start_time_epoch_seconds: epoch_seconds(facts.start),
        end_time_epoch_seconds: epoch_seconds(facts.end),
        region,
        streaming: facts.streaming,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::*;
    use crate::resources::Assignment;
    use std::time::Duration;

    fn world() -> Resources {
        let mut v = vc("vc-east");
        v.aws_region = "us-east-1".into();
        let mut n = number("+12065550100", Assignment::VoiceConnector(vc_id("vc-east")));
        n.name = Some("North Campus Reception".into());
        resources(vec![v], vec![], vec![], vec![n], vec![])
    }

    const SETTINGS: CdrSettings<'static> = CdrSettings {
        account_id: "000000000000",
        region: "local",
        service_code: DEFAULT_SERVICE_CODE,
    };

    fn facts<'a>(
        vc: &'a VcId,
        outcome: CallOutcome,
        answered_ms: Option<u64>,
        end_ms: u64,
    ) -> CallFacts<'a> {
        let start = UNIX_EPOCH + Duration::from_millis(1_565_399_625_042);
        CallFacts {
            transaction_id: TransactionId::from_random_bytes([0x11; 16]),
            call_id: "a84b4c76e66710@pbx1",
            voice_connector_id: vc,
            direction: Direction::Outbound,
            source_phone_number: "+12065550100",
            destination_phone_number: "+442079460000",
            sip_auth_user: Some("pbx1"),
            start,
            answered: answered_ms.map(|ms| start + Duration::from_millis(ms)),
            end: start + Duration::from_millis(end_ms),
            outcome,
            streaming: false,
        }
    }

    #[test]
    fn full_cdr_json_text() {
        let vc = vc_id("vc-east");
        let cdr = build_cdr(
            &facts(&vc, CallOutcome::Answered, Some(2_000), 92_500),
            &SETTINGS,
            &world(),
        );
        let json = serde_json::to_string(&cdr).unwrap();
        assert_eq!(
            json,
            concat!(
                r#"{"AwsAccountId":"000000000000","#,
                r#""TransactionId":"11111111-1111-4111-9111-111111111111","#,
                r#""CallId":"a84b4c76e66710@pbx1","VoiceConnectorId":"vc-east","#,
                r#""Status":"Completed","StatusMessage":"OK","SipAuthUser":"pbx1","#,
                r#""BillableDurationSeconds":91,"BillableDurationMinutes":1.6,"SchemaVersion":"2.0","#,
                r#""SourcePhoneNumber":"+12065550100","SourcePhoneNumberName":"North Campus Reception","SourceCountry":"US","#,
                r#""DestinationPhoneNumber":"+442079460000","DestinationPhoneNumberName":null,"DestinationCountry":"GB","#,
                r#""UsageType":"local-US-GB-outbound-minutes","ServiceCode":"AmazonChimeVoiceConnector","#,
                r#""Direction":"Outbound","StartTimeEpochSeconds":1565399625,"EndTimeEpochSeconds":1565399717,"#,
                r#""Region":"us-east-1","Streaming":false}"#
            )
        );
    }

    #[test]
    fn unanswered_calls_bill_nothing() {
        let vc = vc_id("vc-east");
        let busy = CallOutcome::Failed {
            status: 486,
            reason: "Busy Here".into(),
        };
        let cdr = build_cdr(&facts(&vc, busy, None, 5_000), &SETTINGS, &world());
        assert_eq!(
            (cdr.status, cdr.status_message.as_str()),
            (CdrStatus::Failed, "Busy Here")
        );
        assert_eq!(
            (cdr.billable_duration_seconds, cdr.billable_duration_minutes),
            (0, MinuteTenths(0))
        );
        let json = serde_json::to_string(&cdr).unwrap();
        assert!(
            json.contains(r#""BillableDurationSeconds":0,"BillableDurationMinutes":0.0,"#),
            "{json}"
        );
        // An answer time with a failure outcome still bills nothing.
        let cdr = build_cdr(
            &facts(&vc, CallOutcome::Cancelled, Some(1_000), 5_000),
            &SETTINGS,
            &world(),
        );
        assert_eq!(
            (cdr.status, cdr.billable_duration_seconds),
            (CdrStatus::Cancelled, 0)
        );
    }

    #[test]
    fn statuses() {
        assert_eq!(
            status_of(&CallOutcome::Answered),
            (CdrStatus::Completed, "OK".into())
        );
        assert_eq!(
            status_of(&CallOutcome::Cancelled),
            (CdrStatus::Cancelled, "Request Terminated".into())
        );
        let t = CallOutcome::Failed {
            status: 487,
            reason: "Request Terminated".into(),
        };
        assert_eq!(status_of(&t).0, CdrStatus::Cancelled);
        let t = CallOutcome::Failed {
            status: 503,
            reason: "Calls Per Second Limit Exceeded".into(),
        };
        assert_eq!(
            status_of(&t),
            (CdrStatus::Failed, "Calls Per Second Limit Exceeded".into())
        );
    }

    #[test]
    fn unknown_countries_and_vcs() {
        let vc = vc_id("vc-gone");
        let mut f = facts(&vc, CallOutcome::Answered, Some(0), 6_001);
        f.destination_phone_number = "911";
        f.source_phone_number = "+80012345678";
        f.direction = Direction::Inbound;
        f.sip_auth_user = None;
        let cdr = build_cdr(&f, &SETTINGS, &world());
        assert_eq!(cdr.usage_type, "local-XX-XX-inbound-minutes");
        assert_eq!((cdr.source_country, cdr.destination_country), (None, None));
        assert_eq!(
            cdr.region, "local",
            "VC gone from the snapshot: the daemon's region"
        );
        assert_eq!(cdr.billable_duration_minutes, MinuteTenths(2));
        let json = serde_json::to_string(&cdr).unwrap();
        assert!(
            json.contains(r#""SipAuthUser":null"#) && json.contains(r#""Direction":"Inbound""#),
            "{json}"
        );
        assert_eq!(
            usage_type(
                "local",
                "US".parse().ok(),
                "CA".parse().ok(),
                Direction::Outbound
            ),
            "local-US-CA-outbound-minutes"
        );
    }

    #[test]
    fn end_before_answer_bills_zero() {
        let vc = vc_id("vc-east");
        let cdr = build_cdr(
            &facts(&vc, CallOutcome::Answered, Some(5_000), 1_000),
            &SETTINGS,
            &world(),
        );
        assert_eq!(cdr.billable_duration_seconds, 0);
    }
}
