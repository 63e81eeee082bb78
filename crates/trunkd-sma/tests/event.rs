//! Invocation events, byte for byte as the managed service sends them.

mod common;

use std::collections::BTreeMap;

use common::{leg_a, leg_b};
use serde_json::json;
use trunkd_sma::action::{parse_answer, ParseLimits};
use trunkd_sma::{
    ActionData, CallDetails, Direction, InvocationEvent, InvocationEventType, MediaRef,
    ParticipantStatus,
};

fn details() -> CallDetails {
    CallDetails {
        transaction_id: "txn-1".into(),
        transaction_attributes: BTreeMap::new(),
        aws_account_id: "000000000000".into(),
        aws_region: "local".into(),
        sip_media_application_id: "sma-ivr".into(),
        sip_rule_id: Some("rule-1".into()),
        participants: vec![leg_a(Direction::Inbound)],
    }
}

fn action(json: &str) -> trunkd_sma::Action {
    let body = format!(r#"{{"SchemaVersion":"1.0","Actions":[{json}]}}"#);
    parse_answer(body.as_bytes(), &ParseLimits::default())
        .expect("valid")
        .actions
        .remove(0)
}

const LEG_A: &str = concat!(
    r#"{"CallId":"a84e1f2c@203.0.113.7","ParticipantTag":"LEG-A","To":"+14345550101","#,
    r#""From":"+14255550199","Direction":"Inbound","StartTimeInMilliseconds":"1644539405907","#,
    r#""Status":"Connected"}"#
);

#[test]
fn invalid_lambda_response_carries_error_type_and_message_at_the_top() {
    let ev = InvocationEvent {
        schema_version: "1.0",
        sequence: 2,
        invocation_event_type: InvocationEventType::InvalidLambdaResponse,
        call_details: details(),
        action_data: None,
        error_type: Some("TransactionAttributesInvalidMapSize".into()),
        error_message: Some(
            "Transaction Attributes has too many mappings. Maximum number of mappings is 10".into(),
        ),
    };
    assert_eq!(
        ev.to_json(),
        format!(
            concat!(
                r#"{{"SchemaVersion":"1.0","Sequence":2,"InvocationEventType":"INVALID_LAMBDA_RESPONSE","#,
                r#""CallDetails":{{"TransactionId":"txn-1","AwsAccountId":"000000000000","AwsRegion":"local","#,
                r#""SipMediaApplicationId":"sma-ivr","SipRuleId":"rule-1","Participants":[{}]}},"#,
                r#""ErrorType":"TransactionAttributesInvalidMapSize","#,
                r#""ErrorMessage":"Transaction Attributes has too many mappings. Maximum number of mappings is 10"}}"#
            ),
            LEG_A
        )
    );
}

#[test]
fn a_recording_reports_where_it_went_and_which_key_ended_it() {
    let mut data = ActionData::of(&action(
        r##"{"Type":"RecordAudio","Parameters":{"DurationInSeconds":"10","RecordingTerminators":["#"],
            "RecordingDestination":{"Type":"S3","BucketName":"rec","Prefix":"vm/"}}}"##,
    ));
    data.recording_destination = Some(MediaRef::S3 {
        bucket_name: "rec".into(),
        key: "vm/txn-1.wav".into(),
    });
    data.recording_terminator_used = Some("#".into());
    let mut d = details();
    d.transaction_attributes.insert("box".into(), "42".into());
    let ev = InvocationEvent {
        schema_version: "1.0",
        sequence: 4,
        invocation_event_type: InvocationEventType::ActionSuccessful,
        call_details: d,
        action_data: Some(data),
        error_type: None,
        error_message: None,
    };
    assert_eq!(
        ev.to_json(),
        format!(
            concat!(
                r#"{{"SchemaVersion":"1.0","Sequence":4,"InvocationEventType":"ACTION_SUCCESSFUL","#,
                r#""CallDetails":{{"TransactionId":"txn-1","TransactionAttributes":{{"box":"42"}},"#,
                r#""AwsAccountId":"000000000000","AwsRegion":"local","SipMediaApplicationId":"sma-ivr","#,
                r#""SipRuleId":"rule-1","Participants":[{}]}},"#,
                r#""ActionData":{{"Type":"RecordAudio","Parameters":{{"DurationInSeconds":10,"SilenceThreshold":200,"#,
                r##""RecordingTerminators":["#"],"RecordingDestination":{{"Type":"S3","BucketName":"rec","Key":"vm/"}}}},"##,
                r#""RecordingDestination":{{"Type":"S3","BucketName":"rec","Key":"vm/txn-1.wav"}},"#,
                r##""RecordingTerminatorUsed":"#"}}}}"##
            ),
            LEG_A
        )
    );
}

#[test]
fn call_recording_and_a_second_leg() {
    let mut data = ActionData::of(&action(
        r#"{"Type":"StartCallRecording","Parameters":{"Track":"INCOMING","Destination":{"Type":"File","Path":"rec/"}}}"#,
    ));
    data.call_recording_destination = Some(MediaRef::File {
        path: "rec/txn-1.wav".into(),
    });
    let mut d = details();
    let mut b = leg_b();
    b.status = ParticipantStatus::Disconnected;
    d.participants.push(b);
    let ev = InvocationEvent {
        schema_version: "1.0",
        sequence: 9,
        invocation_event_type: InvocationEventType::ActionSuccessful,
        call_details: d,
        action_data: Some(data),
        error_type: None,
        error_message: None,
    };
    let v: serde_json::Value = serde_json::from_str(&ev.to_json()).expect("json");
    assert_eq!(
        v["ActionData"],
        json!({"Type":"StartCallRecording","Parameters":{"Track":"INCOMING",
            "Destination":{"Type":"File","Path":"rec/"}},
            "CallRecordingDestination":{"Type":"File","Path":"rec/txn-1.wav"}})
    );
    assert_eq!(
        v["CallDetails"]["Participants"][1],
        json!({"CallId":"b-leg-1@trunkd","ParticipantTag":"LEG-B","To":"+12065550100",
            "From":"+14345550101","Direction":"Outbound","StartTimeInMilliseconds":"1644539415000",
            "Status":"Disconnected"})
    );
}

#[test]
fn event_type_names() {
    use InvocationEventType::*;
    for t in [
        NewInboundCall,
        NewOutboundCall,
        Ringing,
        CallAnswered,
        ActionSuccessful,
        ActionFailed,
        DigitsReceived,
        Hangup,
        CallUpdateRequested,
        InvalidLambdaResponse,
    ] {
        assert_eq!(serde_json::to_value(t).expect("json"), json!(t.as_str()));
    }
    assert_eq!(CallUpdateRequested.as_str(), "CALL_UPDATE_REQUESTED");
}
