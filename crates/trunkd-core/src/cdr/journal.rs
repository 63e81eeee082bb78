//! The call journal: what a crash of trunkd leaves behind so that every
//! answered call still gets its CDR.
//!
//! A CDR is written when a call ends. If trunkd dies first (a crash,
//! SIGKILL, a power cut), the call would go unbilled. So when a call is
//! answered, trunkd writes one small [`JournalEntry`] durably, and removes
//! it once the call's CDR is written; a writer also rewrites a heartbeat
//! (a wall-clock time) every few seconds. At the next start, every entry
//! still there is a call that was in progress when trunkd stopped: it gets
//! a CDR with `Status` `Interrupted` ([`CallOutcome::Interrupted`]).
//!
//! Its end is the last heartbeat (or the answer, if that came later): the
//! call lasted at least until then, and at most one heartbeat interval
//! longer, so an interrupted call is never over-billed and under-billed by
//! at most that interval. One write per answered call and one per
//! heartbeat, never one per packet.
//!
//! This module is the entry's shape and the rule; the files live in the
//! daemon (`journal.rs` there).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::{CallFacts, CallOutcome, Direction};
use crate::transaction_id::TransactionId;
use crate::VcId;

/// The entry's format version; an entry of another version is left alone.
pub const JOURNAL_VERSION: u32 = 1;

/// What the journal holds about one answered call: everything its CDR
/// needs except how it ended. Plain strings and integers, so an entry
/// written by one version of trunkd is read by the next.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournalEntry {
    pub version: u32,
    pub transaction_id: String,
    pub call_id: String,
    pub voice_connector_id: String,
    pub direction: JournalDirection,
    pub source_phone_number: String,
    pub destination_phone_number: String,
    pub sip_auth_user: Option<String>,
    /// The call's start (its INVITE), milliseconds since the Unix epoch:
    /// it names the CDR's key.
    pub start_ms: u64,
    pub answered_ms: u64,
    pub streaming: bool,
}

/// [`Direction`], as the journal spells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum JournalDirection {
    Inbound,
    Outbound,
}

impl From<Direction> for JournalDirection {
    fn from(d: Direction) -> Self {
        match d {
            Direction::Inbound => JournalDirection::Inbound,
            Direction::Outbound => JournalDirection::Outbound,
        }
    }
}

impl From<JournalDirection> for Direction {
    fn from(d: JournalDirection) -> Self {
        match d {
            JournalDirection::Inbound => Direction::Inbound,
            JournalDirection::Outbound => Direction::Outbound,
        }
    }
}

/// Why an entry cannot become a CDR.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum JournalError {
    #[error("journal entry version {0} is not {JOURNAL_VERSION}")]
    Version(u32),
    #[error("transaction_id: {0}")]
    TransactionId(#[from] crate::transaction_id::TransactionIdError),
    #[error("voice_connector_id: {0}")]
    VoiceConnectorId(#[from] crate::ids::IdError),
}

fn ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn time(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

impl JournalEntry {
    /// The entry of a call answered at `answered`.
    pub fn answered(facts: &CallFacts<'_>, answered: SystemTime) -> Self {
        JournalEntry {
            version: JOURNAL_VERSION,
            transaction_id: facts.transaction_id.to_string(),
            call_id: facts.call_id.to_owned(),
            voice_connector_id: facts.voice_connector_id.as_str().to_owned(),
            direction: facts.direction.into(),
            source_phone_number: facts.source_phone_number.to_owned(),
            destination_phone_number: facts.destination_phone_number.to_owned(),
            sip_auth_user: facts.sip_auth_user.map(str::to_owned),
            start_ms: ms(facts.start),
            answered_ms: ms(answered),
            streaming: facts.streaming,
        }
    }

    /// The call as trunkd found it at its next start, `last_heartbeat`
    /// being the journal's last heartbeat before it stopped (`None`: no
    /// heartbeat was ever written).
    pub fn interrupted(
        &self,
        last_heartbeat: Option<SystemTime>,
    ) -> Result<InterruptedCall, JournalError> {
        if self.version != JOURNAL_VERSION {
            return Err(JournalError::Version(self.version));
        }
        let answered = time(self.answered_ms);
        let end = last_heartbeat.map_or(answered, |h| h.max(answered));
        Ok(InterruptedCall {
            transaction_id: self.transaction_id.parse()?,
            voice_connector_id: VcId::new(&self.voice_connector_id)?,
            entry: self.clone(),
            end,
        })
    }
}

/// An interrupted call, ready to be written as a CDR.
#[derive(Clone, Debug)]
pub struct InterruptedCall {
    pub transaction_id: TransactionId,
    pub voice_connector_id: VcId,
    entry: JournalEntry,
    pub end: SystemTime,
}

impl InterruptedCall {
    /// Its CDR's facts: answered, ended at the last heartbeat, outcome
    /// [`CallOutcome::Interrupted`].
    pub fn facts(&self) -> CallFacts<'_> {
        let e = &self.entry;
        CallFacts {
            transaction_id: self.transaction_id,
            call_id: &e.call_id,
            voice_connector_id: &self.voice_connector_id,
            direction: e.direction.into(),
            source_phone_number: &e.source_phone_number,
            destination_phone_number: &e.destination_phone_number,
            sip_auth_user: e.sip_auth_user.as_deref(),
            start: time(e.start_ms),
            answered: Some(time(e.answered_ms)),
            end: self.end,
            outcome: CallOutcome::Interrupted,
            streaming: e.streaming,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cdr::{build_cdr, CdrSettings, CdrStatus, DEFAULT_SERVICE_CODE};
    use crate::fixtures::*;
    use proptest::prelude::*;

    const T0: u64 = 1_765_000_000_000;

    fn facts(vc: &VcId) -> CallFacts<'_> {
        CallFacts {
            transaction_id: TransactionId::from_random_bytes([7; 16]),
            call_id: "c1@pbx",
            voice_connector_id: vc,
            direction: Direction::Outbound,
            source_phone_number: "+12065550100",
            destination_phone_number: "+12065550199",
            sip_auth_user: Some("pbx1"),
            start: time(T0),
            answered: None,
            end: time(T0),
            outcome: CallOutcome::Answered,
            streaming: false,
        }
    }

    #[test]
    fn an_interrupted_call_ends_at_the_last_heartbeat_and_is_billed_to_it() {
        let vc = vc_id("vc-east");
        let entry = JournalEntry::answered(&facts(&vc), time(T0 + 2_000));
        let call = entry.interrupted(Some(time(T0 + 62_500))).unwrap();
        let f = call.facts();
        assert_eq!(f.end, time(T0 + 62_500));
        assert_eq!(f.start, time(T0));
        assert_eq!(f.answered, Some(time(T0 + 2_000)));
        let settings = CdrSettings {
            account_id: "000000000000",
            region: "local",
            service_code: DEFAULT_SERVICE_CODE,
        };
        let cdr = build_cdr(
            &f,
            &settings,
            &resources(vec![], vec![], vec![], vec![], vec![]),
        );
        assert_eq!(cdr.status, CdrStatus::Interrupted);
        assert_eq!(cdr.status_message, "trunkd stopped during the call");
        assert_eq!(cdr.billable_duration_seconds, 61);
        assert_eq!(cdr.transaction_id, facts(&vc).transaction_id);
        assert_eq!(cdr.sip_auth_user.as_deref(), Some("pbx1"));
        assert_eq!(cdr.start_time_epoch_seconds, T0 / 1000);
    }

    #[test]
    fn a_heartbeat_older_than_the_answer_or_none_ends_the_call_at_its_answer() {
        let vc = vc_id("vc-east");
        let entry = JournalEntry::answered(&facts(&vc), time(T0 + 2_000));
        for hb in [None, Some(time(T0 - 10_000))] {
            assert_eq!(entry.interrupted(hb).unwrap().end, time(T0 + 2_000));
        }
    }

    #[test]
    fn an_entry_of_another_version_or_with_a_bad_id_is_refused() {
        let vc = vc_id("vc-east");
        let mut e = JournalEntry::answered(&facts(&vc), time(T0));
        e.version = 2;
        assert_eq!(e.interrupted(None).unwrap_err(), JournalError::Version(2));
        let mut e = JournalEntry::answered(&facts(&vc), time(T0));
        e.transaction_id = "nope".into();
        assert!(matches!(
            e.interrupted(None),
            Err(JournalError::TransactionId(_))
        ));
    }

    #[test]
    fn an_entry_survives_its_json_form() {
        let vc = vc_id("vc-east");
        let e = JournalEntry::answered(&facts(&vc), time(T0 + 1));
        let json = serde_json::to_string(&e).unwrap();
        assert!(json.contains("\"direction\":\"Outbound\""), "{json}");
        let back: JournalEntry = serde_json::from_str(&json).unwrap();
        assert_eq!(back, e);
    }

    proptest! {
        /// Never over-billed: the end is never before the answer, and
        /// never after the last heartbeat unless the answer came later.
        #[test]
        fn the_end_lies_between_the_answer_and_the_later_of_answer_and_heartbeat(
            answered in 0u64..10_000_000, hb in proptest::option::of(0u64..10_000_000),
        ) {
            let vc = vc_id("vc-east");
            let e = JournalEntry::answered(&facts(&vc), time(T0 + answered));
            let end = e.interrupted(hb.map(|h| time(T0 + h))).unwrap().end;
            prop_assert!(end >= time(T0 + answered));
            prop_assert_eq!(end, time(T0 + hb.unwrap_or(0).max(answered)));
        }
    }
}
