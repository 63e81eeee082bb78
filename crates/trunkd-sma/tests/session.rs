//! The session against the contract, with a fake clock: each test is one
//! rule of docs/sma.md.

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;
use trunkd_sma::{Action, Direction, Input, Output, ParticipantTag};

const PRIMARY: &str = "https://app.example/primary";
const BACKUP: &str = "https://app.example/backup";

const MENU: &str = r##"{"SchemaVersion":"1.0","Actions":[
  {"Type":"Answer"},
  {"Type":"PlayAudioAndGetDigits","Parameters":{"AudioSource":{"Type":"File","Path":"menu.wav"},
   "MinNumberOfDigits":"1","MaxNumberOfDigits":"3","TerminatorDigits":["#"],"Repeat":2}}],
  "TransactionAttributes":{"step":"menu"}}"##;

#[test]
fn an_ivr_call_from_first_invocation_to_hangup() {
    let mut app = App::inbound(&[PRIMARY]);

    // The call arrives: NEW_INBOUND_CALL, sequence 1, to the first endpoint.
    let inv = app.invoked();
    assert_eq!(inv.url, PRIMARY);
    assert_eq!(inv.sequence, 1);
    assert_eq!(
        inv.body,
        concat!(
            r#"{"SchemaVersion":"1.0","Sequence":1,"InvocationEventType":"NEW_INBOUND_CALL","#,
            r#""CallDetails":{"TransactionId":"6f1c4a2e-0b7d-4e5f-9a3c-2d8e1f0a4b6c","#,
            r#""AwsAccountId":"000000000000","AwsRegion":"local","SipMediaApplicationId":"sma-ivr","#,
            r#""SipRuleId":"rule-1","Participants":[{"CallId":"a84e1f2c@203.0.113.7","#,
            r#""ParticipantTag":"LEG-A","To":"+14345550101","From":"+14255550199","#,
            r#""Direction":"Inbound","StartTimeInMilliseconds":"1644539405907","Status":"Connected"}]}}"#
        )
    );

    // Answer, then the menu; the call reports each end.
    app.answers(&inv, MENU);
    assert!(matches!(app.runs(), Action::Answer(_)));
    app.input(Input::Answered);
    let Action::PlayAudioAndGetDigits(menu) = app.runs() else {
        panic!("the menu runs after the answer")
    };
    assert_eq!(
        (
            menu.min_number_of_digits,
            menu.max_number_of_digits,
            menu.repeat
        ),
        (1, 3, 2)
    );
    app.digits("2");

    // The last action of the list: ACTION_SUCCESSFUL with the digits and
    // the attributes the application set.
    let inv = app.invoked();
    assert_eq!(inv.sequence, 2);
    let ev = body(&inv);
    assert_eq!(ev["InvocationEventType"], "ACTION_SUCCESSFUL");
    assert_eq!(
        ev["CallDetails"]["TransactionAttributes"],
        json!({"step":"menu"})
    );
    assert_eq!(
        ev["ActionData"],
        json!({"Type":"PlayAudioAndGetDigits","Parameters":{
            "AudioSource":{"Type":"File","Path":"menu.wav"},
            "MinNumberOfDigits":1,"MaxNumberOfDigits":3,"TerminatorDigits":["#"],
            "InBetweenDigitsDurationInMilliseconds":3000,"Repeat":2,
            "RepeatDurationInMilliseconds":3000},
            "ReceivedDigits":"2"})
    );

    // Goodbye and hang up: no event between the two actions.
    app.answers(
        &inv,
        r#"{"SchemaVersion":"1.0","Actions":[
            {"Type":"PlayAudio","Parameters":{"AudioSource":{"Type":"File","Path":"bye.wav"}}},
            {"Type":"Hangup","Parameters":{"SipResponseCode":"0"}}]}"#,
    );
    assert!(matches!(app.runs(), Action::PlayAudio(_)));
    app.succeeded();
    assert!(matches!(app.runs(), Action::Hangup(h) if h.sip_response_code == 0));
    app.hangup(ParticipantTag::LegA);

    // HANGUP for LEG-A, echoing the application's Hangup.
    let inv = app.invoked();
    assert_eq!(inv.sequence, 3);
    let ev = body(&inv);
    assert_eq!(ev["InvocationEventType"], "HANGUP");
    assert_eq!(
        ev["CallDetails"]["Participants"][0]["Status"],
        "Disconnected"
    );
    assert_eq!(
        ev["CallDetails"]["TransactionAttributes"],
        json!({"step":"menu"})
    );
    assert_eq!(
        ev["ActionData"],
        json!({"Type":"Hangup","Parameters":{"SipResponseCode":0}})
    );

    // Actions in the answer to HANGUP are read for nothing.
    assert!(!app.s.is_finished());
    app.answers(
        &inv,
        r#"{"SchemaVersion":"1.0","Actions":[{"Type":"Pause","Parameters":{"DurationInMilliseconds":100}}]}"#,
    );
    app.nothing();
    assert!(app.s.is_finished());
}

#[test]
fn a_late_application_loses_the_invocation_to_the_next_endpoint() {
    let mut app = App::inbound(&[PRIMARY, BACKUP]);
    let first = app.invoked();
    assert_eq!(app.s.poll_timeout(), Some(app.t0 + Duration::from_secs(5)));

    app.advance(Duration::from_millis(4999));
    app.nothing();
    app.advance(Duration::from_millis(1));
    let second = app.invoked();
    assert_eq!((second.url.as_str(), second.endpoint), (BACKUP, 1));
    assert_eq!(second.sequence, 1, "the same invocation, not a new one");
    assert_eq!(second.body, first.body);
    assert_ne!(second.id, first.id);

    // The primary answers after all: too late, ignored.
    app.answers(&first, MENU);
    app.nothing();
    app.answers(
        &second,
        r#"{"SchemaVersion":"1.0","Actions":[{"Type":"Answer"}]}"#,
    );
    assert!(matches!(app.runs(), Action::Answer(_)));
}

#[test]
fn a_5xx_moves_on_to_the_next_endpoint_at_once() {
    let mut app = App::inbound(&[PRIMARY, BACKUP]);
    let first = app.invoked();
    app.status(&first, 500, "oops");
    let second = app.invoked();
    assert_eq!(second.url, BACKUP);
    assert_eq!(second.body, first.body);
}

#[test]
fn a_connection_failure_moves_on_to_the_next_endpoint() {
    let mut app = App::inbound(&[PRIMARY, BACKUP]);
    let first = app.invoked();
    app.input(Input::Unreachable { id: first.id });
    assert_eq!(app.invoked().url, BACKUP);
}

#[test]
fn a_4xx_is_retried_once_on_the_same_endpoint() {
    let mut app = App::inbound(&[PRIMARY, BACKUP]);
    let first = app.invoked();
    app.status(&first, 404, "");
    let retry = app.invoked();
    assert_eq!((retry.url.as_str(), retry.sequence), (PRIMARY, 1));
    assert_ne!(retry.id, first.id);
    app.answers(
        &retry,
        r#"{"SchemaVersion":"1.0","Actions":[{"Type":"Answer"}]}"#,
    );
    assert!(matches!(app.runs(), Action::Answer(_)));
}

#[test]
fn a_second_4xx_moves_on_to_the_next_endpoint() {
    let mut app = App::inbound(&[PRIMARY, BACKUP]);
    let first = app.invoked();
    app.status(&first, 403, "");
    let retry = app.invoked();
    app.status(&retry, 404, "");
    let next = app.invoked();
    assert_eq!(next.url, BACKUP);
    // One retry per endpoint: the backup's 4xx is retried too.
    app.status(&next, 429, "");
    assert_eq!(app.invoked().url, BACKUP);
}

#[test]
fn every_endpoint_down_ends_the_call_480_and_hangup_is_still_reported() {
    let mut app = App::inbound(&[PRIMARY, BACKUP]);
    let first = app.invoked();
    app.input(Input::Unreachable { id: first.id });
    let second = app.invoked();
    app.advance(Duration::from_secs(5));
    assert_eq!(
        app.outputs(),
        vec![Output::EndCall {
            sip_response_code: 480
        }]
    );

    // The call ends; the application is told, if it is back.
    app.hangup(ParticipantTag::LegA);
    let inv = app.invoked();
    assert_eq!((event_type(&inv).as_str(), inv.sequence), ("HANGUP", 2));
    assert_ne!(inv.id, second.id);
    app.input(Input::Unreachable { id: inv.id });
    let inv = app.invoked();
    app.status(&inv, 503, "");
    // Nobody to tell, no second EndCall: the session is over.
    app.nothing();
    assert!(app.s.is_finished());
}

#[test]
fn the_application_unreachable_mid_call_ends_the_call() {
    let mut app = App::inbound(&[PRIMARY]);
    let inv = app.invoked();
    app.answers(&inv, MENU);
    app.runs();
    app.input(Input::Answered);
    app.runs();
    app.digits("1");
    let inv = app.invoked();
    app.status(&inv, 502, "");
    // Answered: the lead sends a BYE for this.
    assert_eq!(
        app.outputs(),
        vec![Output::EndCall {
            sip_response_code: 480
        }]
    );
    assert!(app.s.is_answered());
}

#[test]
fn garbage_gets_invalid_lambda_response_and_a_good_answer_then_runs() {
    let mut app = App::inbound(&[PRIMARY]);
    let inv = app.invoked();
    app.answers(&inv, "<html>gateway</html>");
    let inv = app.invoked();
    assert_eq!(inv.sequence, 2);
    let ev = body(&inv);
    assert_eq!(ev["InvocationEventType"], "INVALID_LAMBDA_RESPONSE");
    assert_eq!(ev["ErrorType"], "InvalidLambdaResponse");
    assert_eq!(
        ev["ErrorMessage"],
        "The response is not valid JSON: expected value at line 1 column 1"
    );
    assert!(ev.get("ActionData").is_none());

    app.answers(
        &inv,
        r#"{"SchemaVersion":"1.0","Actions":[{"Type":"Answer"}]}"#,
    );
    assert!(matches!(app.runs(), Action::Answer(_)));
}

#[test]
fn an_invalid_answer_to_invalid_lambda_response_ends_the_call() {
    let mut app = App::inbound(&[PRIMARY]);
    let inv = app.invoked();
    app.answers(
        &inv,
        r#"{"SchemaVersion":"1.0","Actions":[{"Type":"Speak","Parameters":{"Text":"hi"}}]}"#,
    );
    let inv = app.invoked();
    let ev = body(&inv);
    assert_eq!(ev["ErrorType"], "InvalidActionType");
    assert_eq!(
        ev["ErrorMessage"],
        "Action 0: \"Speak\" is not a supported action type"
    );

    app.answers(&inv, r#"{"SchemaVersion":"2.0"}"#);
    assert_eq!(
        app.outputs(),
        vec![Output::EndCall {
            sip_response_code: 480
        }]
    );
    app.hangup(ParticipantTag::LegA);
    let inv = app.invoked();
    assert_eq!((event_type(&inv).as_str(), inv.sequence), ("HANGUP", 3));
    app.answers(&inv, "");
    assert!(app.s.is_finished());
}

#[test]
fn too_many_actions_are_refused_whole() {
    let mut app = App::inbound(&[PRIMARY]);
    let inv = app.invoked();
    let eleven = [r#"{"Type":"Answer"}"#; 11].join(",");
    app.answers(
        &inv,
        &format!(r#"{{"SchemaVersion":"1.0","Actions":[{eleven}]}}"#),
    );
    let ev = body(&app.invoked());
    assert_eq!(ev["ErrorType"], "ActionListInvalidSize");
    assert_eq!(
        ev["ErrorMessage"],
        "Actions has too many items. Maximum number of actions is 10"
    );
}

#[test]
fn a_failed_action_is_reported_and_the_rest_of_its_list_dropped() {
    let mut app = App::inbound(&[PRIMARY]);
    let inv = app.invoked();
    app.answers(
        &inv,
        r#"{"SchemaVersion":"1.0","Actions":[
            {"Type":"PlayAudio","Parameters":{"AudioSource":{"Type":"S3","BucketName":"prompts","Key":"missing.wav"}}},
            {"Type":"Pause","Parameters":{"DurationInMilliseconds":1000}}]}"#,
    );
    app.runs();
    app.input(Input::ActionFailed {
        error_type: "InvalidAudioSource".into(),
        error_message: "Cannot access S3 bucket or audio file.".into(),
    });
    let ev = body(&app.invoked());
    assert_eq!(ev["InvocationEventType"], "ACTION_FAILED");
    assert_eq!(
        ev["ActionData"],
        json!({"Type":"PlayAudio","Parameters":{
            "AudioSource":{"Type":"S3","BucketName":"prompts","Key":"missing.wav"},"Repeat":1},
            "ErrorType":"InvalidAudioSource","ErrorMessage":"Cannot access S3 bucket or audio file."})
    );
    // The Pause never runs.
    app.nothing();
}

#[test]
fn digits_that_miss_the_regex_fail_play_audio_and_get_digits() {
    let mut app = App::inbound(&[PRIMARY]);
    let inv = app.invoked();
    app.answers(
        &inv,
        r#"{"SchemaVersion":"1.0","Actions":[{"Type":"PlayAudioAndGetDigits","Parameters":{
            "InputDigitsRegex":"^[12]$","AudioSource":{"Type":"File","Path":"menu.wav"}}}]}"#,
    );
    app.runs();
    // Barge-in is the call's: the first key stops the prompt and counts.
    app.digits("7");
    let ev = body(&app.invoked());
    assert_eq!(ev["InvocationEventType"], "ACTION_FAILED");
    assert_eq!(ev["ActionData"]["ErrorType"], "InvalidDigitsReceived");
    assert_eq!(
        ev["ActionData"]["ErrorMessage"],
        "\"7\" does not match InputDigitsRegex"
    );
}

const LISTEN: &str = r#"{"SchemaVersion":"1.0","Actions":[{"Type":"ReceiveDigits","Parameters":{
    "InputDigitsRegex":"^\\d{2}#$","InBetweenDigitsDurationInMilliseconds":1000,
    "FlushDigitsDurationInMilliseconds":"10000"}}]}"#;

#[test]
fn receive_digits_succeeds_at_once_then_reports_each_match() {
    let mut app = App::inbound(&[PRIMARY]);
    let inv = app.invoked();
    app.answers(&inv, LISTEN);
    // Not run by the call: it listens from now on.
    let inv = app.invoked();
    let ev = body(&inv);
    assert_eq!(ev["InvocationEventType"], "ACTION_SUCCESSFUL");
    assert_eq!(ev["ActionData"]["ReceivedDigits"], "");
    app.answers(&inv, r#"{"SchemaVersion":"1.0","Actions":[]}"#);

    app.press("1");
    app.advance(Duration::from_millis(300));
    app.press("1");
    app.advance(Duration::from_millis(300));
    app.press("#");
    // Checked only after a second without a key.
    app.advance(Duration::from_millis(999));
    app.nothing();
    app.advance(Duration::from_millis(1));
    let inv = app.invoked();
    let ev = body(&inv);
    assert_eq!(ev["InvocationEventType"], "DIGITS_RECEIVED");
    assert_eq!(
        ev["ActionData"],
        json!({"Type":"ReceiveDigits","Parameters":{"InputDigitsRegex":"^\\d{2}#$",
            "InBetweenDigitsDurationInMilliseconds":1000,"FlushDigitsDurationInMilliseconds":10000},
            "ReceivedDigits":"11#"})
    );
    app.answers(&inv, "");

    // It keeps listening: a pause mid-entry is waited out until the flush.
    app.press("4");
    app.advance(Duration::from_millis(1500));
    app.nothing();
    app.press("2#");
    app.advance(Duration::from_millis(1000));
    assert_eq!(body(&app.invoked())["ActionData"]["ReceivedDigits"], "42#");
}

#[test]
fn receive_digits_flushes_what_never_matched() {
    let mut app = App::inbound(&[PRIMARY]);
    let inv = app.invoked();
    app.answers(&inv, LISTEN);
    let inv = app.invoked();
    app.answers(&inv, "");

    app.press("5");
    app.advance(Duration::from_secs(10));
    app.nothing();
    // The flushed 5 is gone: 12# alone matches.
    app.press("12#");
    app.advance(Duration::from_secs(1));
    assert_eq!(body(&app.invoked())["ActionData"]["ReceivedDigits"], "12#");
}

#[test]
fn digits_before_any_receive_digits_are_discarded() {
    let mut app = App::inbound(&[PRIMARY]);
    let inv = app.invoked();
    app.press("123#");
    app.advance(Duration::from_secs(4));
    app.nothing();
    app.answers(&inv, "");
    app.nothing();
}

#[test]
fn events_wait_for_the_outstanding_invocation_in_order() {
    let mut app = App::inbound(&[PRIMARY]);
    let inv = app.invoked();
    app.answers(&inv, LISTEN);
    let outstanding = app.invoked();
    // A match while ACTION_SUCCESSFUL is unanswered waits its turn.
    app.press("99#");
    app.advance(Duration::from_millis(1000));
    app.nothing();
    app.answers(&outstanding, "");
    let next = app.invoked();
    assert_eq!(
        (event_type(&next).as_str(), next.sequence),
        ("DIGITS_RECEIVED", 3)
    );
}

#[test]
fn call_update_requested_carries_the_arguments_and_its_actions_replace_the_rest() {
    let mut app = App::inbound(&[PRIMARY]);
    let inv = app.invoked();
    app.answers(
        &inv,
        r#"{"SchemaVersion":"1.0","Actions":[
            {"Type":"Pause","Parameters":{"DurationInMilliseconds":60000}},
            {"Type":"PlayAudio","Parameters":{"AudioSource":{"Type":"File","Path":"hold.wav"}}}]}"#,
    );
    assert!(matches!(app.runs(), Action::Pause(_)));
    app.input(Input::UpdateRequested {
        arguments: args(&[("action", "transfer"), ("agent", "42")]),
    });
    let inv = app.invoked();
    assert_eq!(
        inv.body,
        concat!(
            r#"{"SchemaVersion":"1.0","Sequence":2,"InvocationEventType":"CALL_UPDATE_REQUESTED","#,
            r#""CallDetails":{"TransactionId":"6f1c4a2e-0b7d-4e5f-9a3c-2d8e1f0a4b6c","#,
            r#""AwsAccountId":"000000000000","AwsRegion":"local","SipMediaApplicationId":"sma-ivr","#,
            r#""SipRuleId":"rule-1","Participants":[{"CallId":"a84e1f2c@203.0.113.7","#,
            r#""ParticipantTag":"LEG-A","To":"+14345550101","From":"+14255550199","#,
            r#""Direction":"Inbound","StartTimeInMilliseconds":"1644539405907","Status":"Connected"}]},"#,
            r#""ActionData":{"Type":"CallUpdateRequest","Parameters":{"Arguments":{"action":"transfer","agent":"42"}}}}"#
        )
    );
    app.answers(
        &inv,
        r#"{"SchemaVersion":"1.0","Actions":[{"Type":"SendDigits","Parameters":{"Digits":"1a#"}}]}"#,
    );
    // The Pause runs to its end, unreported; then the new list, not hold.wav.
    app.nothing();
    app.succeeded();
    let Action::SendDigits(send) = app.runs() else {
        panic!("the new list runs")
    };
    assert_eq!(
        (send.digits.as_str(), send.tone_duration_in_milliseconds),
        ("1A#", 250)
    );
    app.succeeded();
    assert_eq!(event_type(&app.invoked()), "ACTION_SUCCESSFUL");
}

#[test]
fn the_caller_hanging_up_mid_action_is_one_hangup_event() {
    let mut app = App::inbound(&[PRIMARY]);
    let inv = app.invoked();
    app.answers(&inv, MENU);
    app.runs();
    app.input(Input::Answered);
    app.runs();
    app.hangup(ParticipantTag::LegA);
    let inv = app.invoked();
    let ev = body(&inv);
    assert_eq!(ev["InvocationEventType"], "HANGUP");
    assert!(ev.get("ActionData").is_none());
    // The aborted action's end and a second hangup are not reported.
    app.input(Input::ActionFailed {
        error_type: "SystemException".into(),
        error_message: "aborted".into(),
    });
    app.hangup(ParticipantTag::LegA);
    app.nothing();
    app.answers(&inv, "");
    assert!(app.s.is_finished());
}

#[test]
fn a_bridge_reports_both_legs_and_a_hangup_per_leg() {
    let mut app = App::inbound(&[PRIMARY]);
    let inv = app.invoked();
    app.answers(
        &inv,
        r#"{"SchemaVersion":"1.0","Actions":[{"Type":"CallAndBridge","Parameters":{
            "CallTimeoutSeconds":"20","CallerIdNumber":"+14345550101",
            "Endpoints":[{"BridgeEndpointType":"PSTN","Uri":"+12065550100"}],
            "SipHeaders":{"X-Ticket":"T-1"}}}]}"#,
    );
    let Action::CallAndBridge(bridge) = app.runs() else {
        panic!("the bridge runs")
    };
    assert_eq!(bridge.call_timeout_seconds, 20);
    app.input(Input::ParticipantJoined(leg_b()));
    app.succeeded();
    let inv = app.invoked();
    let ev = body(&inv);
    assert_eq!(ev["InvocationEventType"], "ACTION_SUCCESSFUL");
    assert_eq!(
        ev["CallDetails"]["Participants"][1]["ParticipantTag"],
        "LEG-B"
    );
    app.answers(&inv, "");

    // The callee hangs up first: HANGUP for LEG-B, LEG-A still connected.
    app.hangup(ParticipantTag::LegB);
    let inv = app.invoked();
    let ev = body(&inv);
    assert_eq!(ev["InvocationEventType"], "HANGUP");
    assert_eq!(ev["CallDetails"]["Participants"][0]["Status"], "Connected");
    assert_eq!(
        ev["CallDetails"]["Participants"][1]["Status"],
        "Disconnected"
    );
    app.answers(
        &inv,
        r#"{"SchemaVersion":"1.0","Actions":[{"Type":"Hangup"}]}"#,
    );
    assert!(matches!(app.runs(), Action::Hangup(_)));
    app.hangup(ParticipantTag::LegA);
    let ev = body(&app.invoked());
    assert_eq!(ev["InvocationEventType"], "HANGUP");
    assert_eq!(
        ev["CallDetails"]["Participants"][0]["Status"],
        "Disconnected"
    );
    assert_eq!(ev["ActionData"]["Type"], "Hangup");
}

#[test]
fn an_outbound_call_rings_and_is_answered() {
    let mut app = App::start(&[PRIMARY], Direction::Outbound, args(&[("campaign", "c7")]));
    let inv = app.invoked();
    let ev = body(&inv);
    assert_eq!(ev["InvocationEventType"], "NEW_OUTBOUND_CALL");
    assert!(ev["CallDetails"].get("SipRuleId").is_none());
    assert_eq!(
        ev["ActionData"],
        json!({"Type":"CallCreateRequest","Parameters":{"Arguments":{"campaign":"c7"}}})
    );
    app.answers(&inv, "");
    app.input(Input::Ringing);
    let inv = app.invoked();
    assert_eq!((event_type(&inv).as_str(), inv.sequence), ("RINGING", 2));
    app.answers(&inv, "");
    app.input(Input::Answered);
    let inv = app.invoked();
    assert_eq!(
        (event_type(&inv).as_str(), inv.sequence),
        ("CALL_ANSWERED", 3)
    );
}

#[test]
fn answer_on_an_answered_call_succeeds_without_running() {
    let mut app = App::inbound(&[PRIMARY]);
    let inv = app.invoked();
    app.answers(
        &inv,
        r#"{"SchemaVersion":"1.0","Actions":[{"Type":"Answer"}]}"#,
    );
    app.runs();
    app.input(Input::Answered);
    let inv = app.invoked();
    assert_eq!(
        body(&inv)["ActionData"],
        json!({"Type":"Answer","Parameters":{}})
    );
    app.answers(&inv, r#"{"SchemaVersion":"1.0","Actions":[{"Type":"Answer","Parameters":{"ParticipantTag":"LEG-A"}}]}"#);
    let ev = body(&app.invoked());
    assert_eq!(
        ev["ActionData"],
        json!({"Type":"Answer","Parameters":{"ParticipantTag":"LEG-A"}})
    );
}

#[test]
fn transaction_attributes_stay_until_replaced() {
    let mut app = App::inbound(&[PRIMARY]);
    let inv = app.invoked();
    app.answers(&inv, r#"{"SchemaVersion":"1.0","Actions":[{"Type":"Answer"}],"TransactionAttributes":{"a":"1"}}"#);
    app.runs();
    app.input(Input::Answered);
    let inv = app.invoked();
    assert_eq!(
        body(&inv)["CallDetails"]["TransactionAttributes"],
        json!({"a":"1"})
    );
    app.answers(&inv, r#"{"SchemaVersion":"1.0","Actions":[{"Type":"Pause","Parameters":{"DurationInMilliseconds":"10"}}]}"#);
    app.runs();
    app.succeeded();
    let inv = app.invoked();
    assert_eq!(
        body(&inv)["CallDetails"]["TransactionAttributes"],
        json!({"a":"1"})
    );
    app.answers(
        &inv,
        r#"{"SchemaVersion":"1.0","TransactionAttributes":{"b":"2"}}"#,
    );
    app.hangup(ParticipantTag::LegA);
    assert_eq!(
        body(&app.invoked())["CallDetails"]["TransactionAttributes"],
        json!({"b":"2"})
    );
}

#[test]
fn too_many_transaction_attributes_are_refused_in_the_managed_service_words() {
    let mut app = App::inbound(&[PRIMARY]);
    let inv = app.invoked();
    let attrs: Vec<String> = (1..=11)
        .map(|i| format!(r#""key{i}":"value{i}""#))
        .collect();
    app.answers(
        &inv,
        &format!(
            r#"{{"SchemaVersion":"1.0","Actions":[],"TransactionAttributes":{{{}}}}}"#,
            attrs.join(",")
        ),
    );
    let ev = body(&app.invoked());
    assert_eq!(ev["ErrorType"], "TransactionAttributesInvalidMapSize");
    assert_eq!(
        ev["ErrorMessage"],
        "Transaction Attributes has too many mappings. Maximum number of mappings is 10"
    );
}

#[test]
fn hanging_up_one_leg_lets_the_list_go_on() {
    let mut app = App::inbound(&[PRIMARY]);
    let inv = app.invoked();
    app.answers(&inv, "");
    app.input(Input::ParticipantJoined(leg_b()));
    app.input(Input::UpdateRequested {
        arguments: args(&[("drop", "agent")]),
    });
    let inv = app.invoked();
    app.answers(
        &inv,
        r#"{"SchemaVersion":"1.0","Actions":[
            {"Type":"Hangup","Parameters":{"ParticipantTag":"LEG-B"}},
            {"Type":"PlayAudio","Parameters":{"AudioSource":{"Type":"File","Path":"survey.wav"}}}]}"#,
    );
    assert!(matches!(app.runs(), Action::Hangup(_)));
    app.hangup(ParticipantTag::LegB);
    // LEG-B's HANGUP echoes the Hangup; the survey plays meanwhile.
    let out = app.outputs();
    let [Output::Run(Action::PlayAudio(_)), Output::Invoke(inv)] = out.as_slice() else {
        panic!("the survey and HANGUP for LEG-B")
    };
    let inv = inv.clone();
    assert_eq!(
        body(&inv)["ActionData"],
        json!({"Type":"Hangup","Parameters":{"SipResponseCode":0,"ParticipantTag":"LEG-B"}})
    );
    app.answers(&inv, "");
    app.succeeded();
    let inv = app.invoked();
    assert_eq!(body(&inv)["ActionData"]["Type"], "PlayAudio");
    app.answers(&inv, "");
    // The caller leaves on their own: no echo.
    app.hangup(ParticipantTag::LegA);
    assert!(body(&app.invoked()).get("ActionData").is_none());
}

#[test]
fn a_caller_gone_before_the_first_answer_gets_no_actions_run() {
    let mut app = App::inbound(&[PRIMARY]);
    let first = app.invoked();
    app.hangup(ParticipantTag::LegA);
    // HANGUP waits for NEW_INBOUND_CALL's answer, whose actions are moot.
    app.nothing();
    app.answers(&first, MENU);
    let inv = app.invoked();
    assert_eq!((event_type(&inv).as_str(), inv.sequence), ("HANGUP", 2));
    app.answers(&inv, "");
    assert!(app.s.is_finished());
    assert_eq!(app.s.poll_timeout(), None);
}

#[test]
fn receive_digits_buffers_at_most_128_keys() {
    let mut app = App::inbound(&[PRIMARY]);
    let inv = app.invoked();
    app.answers(
        &inv,
        r#"{"SchemaVersion":"1.0","Actions":[{"Type":"ReceiveDigits","Parameters":{
            "InputDigitsRegex":"^\\d+$","InBetweenDigitsDurationInMilliseconds":500,
            "FlushDigitsDurationInMilliseconds":60000}}]}"#,
    );
    let inv = app.invoked();
    app.answers(&inv, "");
    app.press(&"7".repeat(200));
    // Not keys: ignored.
    app.press("xyz");
    assert_eq!(
        app.s.poll_timeout(),
        Some(app.now + Duration::from_millis(500))
    );
    app.advance(Duration::from_millis(500));
    assert_eq!(
        body(&app.invoked())["ActionData"]["ReceivedDigits"],
        "7".repeat(128)
    );
}

#[test]
fn barge_in_through_receive_digits_while_a_prompt_plays() {
    let mut app = App::inbound(&[PRIMARY]);
    let inv = app.invoked();
    // Listen in the background, then play a long menu and wait.
    app.answers(
        &inv,
        r##"{"SchemaVersion":"1.0","Actions":[
            {"Type":"ReceiveDigits","Parameters":{"InputDigitsRegex":"^[1-3]$",
              "InBetweenDigitsDurationInMilliseconds":200,"FlushDigitsDurationInMilliseconds":2000}},
            {"Type":"PlayAudio","Parameters":{"AudioSource":{"Type":"File","Path":"menu.wav"}}},
            {"Type":"Pause","Parameters":{"DurationInMilliseconds":5000}}]}"##,
    );
    assert!(matches!(app.runs(), Action::PlayAudio(_)));
    // The caller presses 2 over the prompt.
    app.advance(Duration::from_millis(800));
    app.press("2");
    app.advance(Duration::from_millis(200));
    let inv = app.invoked();
    let ev = body(&inv);
    assert_eq!(ev["InvocationEventType"], "DIGITS_RECEIVED");
    assert_eq!(ev["ActionData"]["ReceivedDigits"], "2");
    // The application routes the caller: its list replaces the Pause.
    app.answers(
        &inv,
        r#"{"SchemaVersion":"1.0","Actions":[{"Type":"PlayAudio","Parameters":{"AudioSource":{"Type":"File","Path":"sales.wav"}}}]}"#,
    );
    app.nothing();
    app.succeeded();
    let Action::PlayAudio(next) = app.runs() else {
        panic!("the new list")
    };
    assert_eq!(
        next.audio_source,
        trunkd_sma::MediaRef::File {
            path: "sales.wav".into()
        }
    );
}
