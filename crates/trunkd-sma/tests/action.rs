//! The application's answer: what is accepted, with which defaults, and
//! how each mistake is worded.

use proptest::prelude::*;
use serde_json::{json, Value};
use trunkd_sma::action::{parse_answer, Action, AnswerError, ParseLimits};

fn parse(body: &str) -> Result<Vec<Action>, AnswerError> {
    parse_answer(body.as_bytes(), &ParseLimits::default()).map(|a| a.actions)
}

/// One action, `params` its Parameters.
fn one(kind: &str, params: Value) -> Result<Action, AnswerError> {
    let body = json!({"SchemaVersion":"1.0","Actions":[{"Type":kind,"Parameters":params}]});
    parse(&body.to_string()).map(|mut v| v.remove(0))
}

/// The action written back with its defaults, as ActionData echoes it.
fn echo(kind: &str, params: Value) -> String {
    one(kind, params).expect("valid").to_json()
}

/// The error's ErrorType and ErrorMessage.
fn refused(kind: &str, params: Value) -> (&'static str, String) {
    let e = one(kind, params).expect_err("invalid");
    (e.error_type(), e.to_string())
}

const FILE: &str = r#"{"Type":"File","Path":"p.wav"}"#;

fn file() -> Value {
    serde_json::from_str(FILE).expect("json")
}

#[test]
fn each_action_with_its_defaults() {
    assert_eq!(
        echo("Answer", json!({})),
        r#"{"Type":"Answer","Parameters":{}}"#
    );
    assert_eq!(
        echo("Hangup", json!({})),
        r#"{"Type":"Hangup","Parameters":{"SipResponseCode":0}}"#
    );
    assert_eq!(
        echo(
            "Pause",
            json!({"DurationInMilliseconds":"1500","CallId":"c-1"})
        ),
        r#"{"Type":"Pause","Parameters":{"DurationInMilliseconds":1500,"CallId":"c-1"}}"#
    );
    assert_eq!(
        echo(
            "PlayAudio",
            json!({"AudioSource":file(),"PlaybackTerminators":["#","*"]})
        ),
        r##"{"Type":"PlayAudio","Parameters":{"AudioSource":{"Type":"File","Path":"p.wav"},"Repeat":1,"PlaybackTerminators":["#","*"]}}"##
    );
    assert_eq!(
        echo(
            "PlayAudioAndGetDigits",
            json!({"AudioSource":file(),"ParticipantTag":"LEG-B"})
        ),
        concat!(
            r#"{"Type":"PlayAudioAndGetDigits","Parameters":{"AudioSource":{"Type":"File","Path":"p.wav"},"#,
            r##""MinNumberOfDigits":0,"MaxNumberOfDigits":128,"TerminatorDigits":["#"],"##,
            r#""InBetweenDigitsDurationInMilliseconds":3000,"Repeat":1,"RepeatDurationInMilliseconds":3000,"#,
            r#""ParticipantTag":"LEG-B"}}"#
        )
    );
    assert_eq!(
        echo(
            "ReceiveDigits",
            json!({"InputDigitsRegex":"^\\d{2}#$","InBetweenDigitsDurationInMilliseconds":"1000",
                   "FlushDigitsDurationInMilliseconds":10000})
        ),
        r##"{"Type":"ReceiveDigits","Parameters":{"InputDigitsRegex":"^\\d{2}#$","InBetweenDigitsDurationInMilliseconds":1000,"FlushDigitsDurationInMilliseconds":10000}}"##
    );
    assert_eq!(
        echo("SendDigits", json!({"Digits":"12*#abcd"})),
        r##"{"Type":"SendDigits","Parameters":{"Digits":"12*#ABCD","ToneDurationInMilliseconds":250}}"##
    );
    assert_eq!(
        echo(
            "RecordAudio",
            json!({"RecordingDestination":{"Type":"S3","BucketName":"rec","Prefix":"calls/"}})
        ),
        concat!(
            r##"{"Type":"RecordAudio","Parameters":{"DurationInSeconds":3600,"SilenceThreshold":200,"RecordingTerminators":["#"],"##,
            r#""RecordingDestination":{"Type":"S3","BucketName":"rec","Key":"calls/"}}}"#
        )
    );
    assert_eq!(
        echo(
            "CallAndBridge",
            json!({"CallerIdNumber":"+14255550199","Endpoints":[
                {"BridgeEndpointType":"AWS","Arn":"vc-east","Uri":"5000"}],
                "SipHeaders":{"User-to-User":"abc;encoding=hex","X-Ref":"7"},
                "RingbackTone":{"Type":"URL","Uri":"https://media.example/ring.wav"}})
        ),
        concat!(
            r#"{"Type":"CallAndBridge","Parameters":{"CallTimeoutSeconds":30,"CallerIdNumber":"+14255550199","#,
            r#""Endpoints":[{"BridgeEndpointType":"AWS","Arn":"vc-east","Uri":"5000"}],"#,
            r#""RingbackTone":{"Type":"URL","Uri":"https://media.example/ring.wav"},"#,
            r#""SipHeaders":{"User-to-User":"abc;encoding=hex","X-Ref":"7"}}}"#
        )
    );
    assert_eq!(
        echo(
            "StartCallRecording",
            json!({"Track":"BOTH","Destination":{"Type":"S3","Location":"rec/calls/2026"}})
        ),
        r#"{"Type":"StartCallRecording","Parameters":{"Track":"BOTH","Destination":{"Type":"S3","BucketName":"rec","Key":"calls/2026"}}}"#
    );
    assert_eq!(
        echo("StopCallRecording", json!({"CallId":"c-9"})),
        r#"{"Type":"StopCallRecording","Parameters":{"CallId":"c-9"}}"#
    );
}

#[test]
fn numbers_come_as_numbers_or_numeric_strings() {
    let as_number = one("PlayAudio", json!({"AudioSource":file(),"Repeat":3})).expect("valid");
    let as_string = one("PlayAudio", json!({"AudioSource":file(),"Repeat":"3"})).expect("valid");
    let as_float = one("PlayAudio", json!({"AudioSource":file(),"Repeat":3.0})).expect("valid");
    assert_eq!(as_number, as_string);
    assert_eq!(as_number, as_float);
}

#[test]
fn empty_answers_have_no_actions() {
    for body in [
        "",
        "  \n",
        "null",
        r#"{"SchemaVersion":"1.0"}"#,
        r#"{"SchemaVersion":"1.0","Actions":null}"#,
    ] {
        assert_eq!(parse(body), Ok(vec![]), "{body:?}");
    }
}

#[test]
fn what_is_wrong_with_an_answer_is_worded_for_the_application() {
    let cases: Vec<(&str, &str, &str)> = vec![
        (
            "[1]",
            "InvalidLambdaResponse",
            "The response is not a JSON object",
        ),
        (
            r#"{"Actions":[]}"#,
            "InvalidSchemaVersion",
            "SchemaVersion must be \"1.0\"",
        ),
        (
            r#"{"SchemaVersion":1.0,"Actions":[]}"#,
            "InvalidSchemaVersion",
            "SchemaVersion must be \"1.0\"",
        ),
        (
            r#"{"SchemaVersion":"1.0","Actions":{}}"#,
            "InvalidActionList",
            "Actions must be an array",
        ),
        (
            r#"{"SchemaVersion":"1.0","Actions":[{"Parameters":{}}]}"#,
            "InvalidActionList",
            "Action 0 is not an object with a Type",
        ),
        (
            r#"{"SchemaVersion":"1.0","Actions":[{"Type":"Answer","Parameters":[]}]}"#,
            "InvalidActionParameter",
            "Action 0 (Answer): parameter Parameters is invalid: not an object",
        ),
        (
            r#"{"SchemaVersion":"1.0","Actions":[],"TransactionAttributes":{"a":1}}"#,
            "TransactionAttributesInvalidValue",
            "Transaction Attributes are invalid: the value of \"a\" is not a string",
        ),
    ];
    for (body, error_type, message) in cases {
        let e = parse(body).expect_err(body);
        assert_eq!(
            (e.error_type(), e.to_string().as_str()),
            (error_type, message),
            "{body}"
        );
    }
    let e = parse_answer(&[b' '; 300_000], &ParseLimits::default()).expect_err("too large");
    assert_eq!(
        e.to_string(),
        "The response is 300000 bytes; at most 262144 are accepted"
    );
}

#[test]
fn parameters_out_of_range_or_missing_are_refused() {
    let p = "InvalidActionParameter";
    let cases = vec![
        (refused("Pause", json!({})), "Action 0 (Pause): parameter DurationInMilliseconds is required"),
        (refused("Pause", json!({"DurationInMilliseconds":0})), "Action 0 (Pause): parameter DurationInMilliseconds is invalid: 0 is not within 1..=3600000"),
        (refused("Pause", json!({"DurationInMilliseconds":-5})), "Action 0 (Pause): parameter DurationInMilliseconds is invalid: -5 is not a whole number ≥ 0"),
        (refused("Pause", json!({"DurationInMilliseconds":"1.5"})), "Action 0 (Pause): parameter DurationInMilliseconds is invalid: \"1.5\" is not a number"),
        (refused("Pause", json!({"DurationInMilliseconds":true})), "Action 0 (Pause): parameter DurationInMilliseconds is invalid: true is not a number"),
        (refused("Hangup", json!({"SipResponseCode":302})), "Action 0 (Hangup): parameter SipResponseCode is invalid: 302 is neither 0 nor 400..=699"),
        (refused("Hangup", json!({"SipResponseCode":"700"})), "Action 0 (Hangup): parameter SipResponseCode is invalid: 700 is not within 0..=699"),
        (refused("Hangup", json!({"ParticipantTag":"LEG-C"})), "Action 0 (Hangup): parameter ParticipantTag is invalid: \"LEG-C\" is neither LEG-A nor LEG-B"),
        (refused("PlayAudio", json!({})), "Action 0 (PlayAudio): parameter AudioSource is required"),
        (refused("PlayAudio", json!({"AudioSource":{"Type":"S3","BucketName":"b"}})), "Action 0 (PlayAudio): parameter AudioSource is invalid: Key is required"),
        (refused("PlayAudio", json!({"AudioSource":{"Type":"URL","Uri":"ftp://x/y.wav"}})), "Action 0 (PlayAudio): parameter AudioSource is invalid: Uri must be an http(s) URL of at most 2048 bytes"),
        (refused("PlayAudio", json!({"AudioSource":{"Type":"Polly"}})), "Action 0 (PlayAudio): parameter AudioSource is invalid: Type \"Polly\" is not S3, URL or File"),
        (refused("PlayAudio", json!({"AudioSource":file(),"PlaybackTerminators":["5","E"]})), "Action 0 (PlayAudio): parameter PlaybackTerminators is invalid: 'E' is not a DTMF key (0-9, *, #, A-D)"),
        (refused("PlayAudioAndGetDigits", json!({"AudioSource":file(),"MinNumberOfDigits":5,"MaxNumberOfDigits":4})), "Action 0 (PlayAudioAndGetDigits): parameter MinNumberOfDigits is invalid: 5 is more than MaxNumberOfDigits 4"),
        (refused("PlayAudioAndGetDigits", json!({"AudioSource":file(),"MaxNumberOfDigits":129})), "Action 0 (PlayAudioAndGetDigits): parameter MaxNumberOfDigits is invalid: 129 is not within 1..=128"),
        (refused("ReceiveDigits", json!({"InputDigitsRegex":"\\d","FlushDigitsDurationInMilliseconds":1})), "Action 0 (ReceiveDigits): parameter InBetweenDigitsDurationInMilliseconds is required"),
        (refused("SendDigits", json!({"Digits":"12,3"})), "Action 0 (SendDigits): parameter Digits is invalid: ',' is not a DTMF key (0-9, *, #, A-D)"),
        (refused("SendDigits", json!({"Digits":"1".repeat(51)})), "Action 0 (SendDigits): parameter Digits is invalid: at most 50 keys"),
        (refused("SendDigits", json!({"Digits":"1","ToneDurationInMilliseconds":10})), "Action 0 (SendDigits): parameter ToneDurationInMilliseconds is invalid: 10 is not within 50..=24000"),
        (refused("CallAndBridge", json!({"CallerIdNumber":"4255550199","Endpoints":[]})), "Action 0 (CallAndBridge): parameter CallerIdNumber is invalid: \"4255550199\" is not an E.164 number"),
        (refused("CallAndBridge", json!({"CallerIdNumber":"+14255550199","Endpoints":[]})), "Action 0 (CallAndBridge): parameter Endpoints is invalid: Invalid number of endpoints provided: exactly one is supported"),
        (refused("CallAndBridge", json!({"CallerIdNumber":"+14255550199","Endpoints":[{"BridgeEndpointType":"PSTN","Uri":"sip:x@y"}]})), "Action 0 (CallAndBridge): parameter Endpoints is invalid: \"sip:x@y\" is not an E.164 number"),
        (refused("CallAndBridge", json!({"CallerIdNumber":"+14255550199","CallTimeoutSeconds":121,"Endpoints":[{"BridgeEndpointType":"PSTN","Uri":"+12065550100"}]})), "Action 0 (CallAndBridge): parameter CallTimeoutSeconds is invalid: 121 is not within 1..=120"),
        (refused("CallAndBridge", json!({"CallerIdNumber":"+14255550199","Endpoints":[{"BridgeEndpointType":"PSTN","Uri":"+12065550100"}],"SipHeaders":{"Via":"x"}})), "Action 0 (CallAndBridge): parameter SipHeaders is invalid: Invalid SIP header provided: Via"),
        (refused("StartCallRecording", json!({"Track":"LEFT","Destination":{"Type":"S3","Location":"rec"}})), "Action 0 (StartCallRecording): parameter Track is invalid: \"LEFT\" is not BOTH, INCOMING or OUTGOING"),
    ];
    for ((error_type, message), expected) in cases {
        assert_eq!((error_type, message.as_str()), (p, expected));
    }
    let (t, m) = refused(
        "ReceiveDigits",
        json!({"InputDigitsRegex":"(","InBetweenDigitsDurationInMilliseconds":1,"FlushDigitsDurationInMilliseconds":1}),
    );
    assert_eq!(t, p);
    assert!(
        m.starts_with("Action 0 (ReceiveDigits): parameter InputDigitsRegex is invalid: not a valid regular expression"),
        "{m}"
    );
}

#[test]
fn a_regex_is_bounded_in_length_and_compiled_size() {
    let limits = ParseLimits {
        regex_size_limit: 10_000,
        ..ParseLimits::default()
    };
    let body = json!({"SchemaVersion":"1.0","Actions":[{"Type":"ReceiveDigits","Parameters":{
        "InputDigitsRegex":"(\\d{100}){100}","InBetweenDigitsDurationInMilliseconds":1,
        "FlushDigitsDurationInMilliseconds":1}}]});
    let e = parse_answer(body.to_string().as_bytes(), &limits).expect_err("too big");
    assert_eq!(e.error_type(), "InvalidActionParameter");
    assert!(e.to_string().contains("size limit"), "{e}");

    let long = "1".repeat(257);
    let (_, m) = refused(
        "PlayAudioAndGetDigits",
        json!({"AudioSource":file(),"InputDigitsRegex":long}),
    );
    assert_eq!(
        m,
        "Action 0 (PlayAudioAndGetDigits): parameter InputDigitsRegex is invalid: longer than 256 characters"
    );
}

#[test]
fn the_action_limit_is_configurable() {
    let limits = ParseLimits {
        max_actions: 2,
        ..ParseLimits::default()
    };
    let three = r#"{"SchemaVersion":"1.0","Actions":[{"Type":"Answer"},{"Type":"Answer"},{"Type":"Answer"}]}"#;
    let e = parse_answer(three.as_bytes(), &limits).expect_err("three");
    assert_eq!(e, AnswerError::TooManyActions { count: 3, max: 2 });
    assert!(parse(three).is_ok());
}

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        "[0-9#*A-Za-z:/.+-]{0,12}".prop_map(Value::String),
        prop::sample::select(vec![
            "S3",
            "URL",
            "File",
            "LEG-A",
            "LEG-B",
            "PSTN",
            "AWS",
            "BOTH",
            "1.0",
            "#",
            "+14255550199",
            "^\\d+$",
            "(",
            "https://x/y.wav",
        ])
        .prop_map(|s| Value::String(s.into())),
    ];
    leaf.prop_recursive(4, 48, 8, |inner| {
        let key = prop::sample::select(vec![
            "Type",
            "Parameters",
            "AudioSource",
            "BucketName",
            "Key",
            "Uri",
            "Path",
            "Repeat",
            "Digits",
            "Endpoints",
            "InputDigitsRegex",
            "SipResponseCode",
            "CallerIdNumber",
            "BridgeEndpointType",
            "Arn",
            "Track",
            "Destination",
            "Location",
            "SipHeaders",
            "MinNumberOfDigits",
            "MaxNumberOfDigits",
            "TerminatorDigits",
            "x",
        ]);
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(key.prop_map(String::from), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn action_type() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "Answer",
        "Hangup",
        "Pause",
        "PlayAudio",
        "PlayAudioAndGetDigits",
        "ReceiveDigits",
        "SendDigits",
        "RecordAudio",
        "CallAndBridge",
        "StartCallRecording",
        "StopCallRecording",
        "Speak",
    ])
}

proptest! {
    #[test]
    fn parsing_never_panics_on_arbitrary_json(v in arb_json()) {
        let _ = parse_answer(v.to_string().as_bytes(), &ParseLimits::default());
    }

    #[test]
    fn parsing_never_panics_on_arbitrary_actions(kind in action_type(), params in arb_json()) {
        let body = json!({"SchemaVersion":"1.0","Actions":[{"Type":kind,"Parameters":params}]});
        if let Ok(answer) = parse_answer(body.to_string().as_bytes(), &ParseLimits::default()) {
            // Whatever is accepted is echoed back to the same action.
            for a in answer.actions {
                let again = format!(r#"{{"SchemaVersion":"1.0","Actions":[{}]}}"#, a.to_json());
                let back = parse_answer(again.as_bytes(), &ParseLimits::default());
                prop_assert_eq!(back.map(|b| b.actions), Ok(vec![a]));
            }
        }
    }

    #[test]
    fn parsing_never_panics_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = parse_answer(&bytes, &ParseLimits::default());
    }

    #[test]
    fn numbers_as_strings_round_trip(ms in 1u64..=3_600_000, tone in 50u64..=24_000, repeat in 1u64..=100) {
        let as_numbers = json!({"SchemaVersion":"1.0","Actions":[
            {"Type":"Pause","Parameters":{"DurationInMilliseconds":ms}},
            {"Type":"SendDigits","Parameters":{"Digits":"1","ToneDurationInMilliseconds":tone}},
            {"Type":"PlayAudio","Parameters":{"AudioSource":file(),"Repeat":repeat}}]});
        let as_strings = json!({"SchemaVersion":"1.0","Actions":[
            {"Type":"Pause","Parameters":{"DurationInMilliseconds":ms.to_string()}},
            {"Type":"SendDigits","Parameters":{"Digits":"1","ToneDurationInMilliseconds":tone.to_string()}},
            {"Type":"PlayAudio","Parameters":{"AudioSource":file(),"Repeat":repeat.to_string()}}]});
        let a = parse_answer(as_numbers.to_string().as_bytes(), &ParseLimits::default());
        let b = parse_answer(as_strings.to_string().as_bytes(), &ParseLimits::default());
        prop_assert!(a.is_ok());
        prop_assert_eq!(&a, &b);
        let actions = a.map(|a| a.actions).unwrap_or_default();
        let echoed: Vec<String> = actions.iter().map(Action::to_json).collect();
        prop_assert_eq!(&echoed[0], &format!(r#"{{"Type":"Pause","Parameters":{{"DurationInMilliseconds":{ms}}}}}"#));
        let again = format!(r#"{{"SchemaVersion":"1.0","Actions":[{}]}}"#, echoed.join(","));
        let c = parse_answer(again.as_bytes(), &ParseLimits::default()).map(|a| a.actions);
        prop_assert_eq!(c, Ok(actions));
    }
}

#[test]
fn an_aws_endpoint_names_a_voice_connector_or_group_by_arn_or_id() {
    use trunkd_sma::action::{BridgeEndpoint, BridgeEndpointType, VoiceConnectorRef};
    let aws = |arn: &str| BridgeEndpoint {
        bridge_endpoint_type: BridgeEndpointType::Aws,
        arn: Some(arn.to_owned()),
        uri: "5000".to_owned(),
    };
    let vc = aws("arn:aws:chime:us-east-1:0123456789101:vc/abcdefg1hijklm2nopq3rs");
    assert_eq!(
        vc.voice_connector(),
        Some(VoiceConnectorRef::VoiceConnector("abcdefg1hijklm2nopq3rs"))
    );
    let group = aws("arn:aws:chime:eu-central-1:0123456789101:vcg/grp-main");
    assert_eq!(
        group.voice_connector(),
        Some(VoiceConnectorRef::Group("grp-main"))
    );
    assert_eq!(
        aws("vc-east").voice_connector(),
        Some(VoiceConnectorRef::Id("vc-east"))
    );
    for wrong in [
        "arn:aws:s3:us-east-1:0123456789101:vc/x",
        "arn:aws:chime:us-east-1:0123456789101:sma/x",
        "arn:aws:chime:us-east-1:0123456789101:vc/",
        "arn:aws:chime:us-east-1:vc/x",
        "vc/x",
        "a:b",
    ] {
        assert_eq!(aws(wrong).voice_connector(), None, "{wrong}");
    }
    let pstn = BridgeEndpoint {
        bridge_endpoint_type: BridgeEndpointType::Pstn,
        arn: None,
        uri: "+12065550100".to_owned(),
    };
    assert_eq!(pstn.voice_connector(), None);
}
