//! Whatever the application answers and the call reports, in any order,
//! the session never panics, numbers its invocations 1, 2, 3… (a retry
//! keeps its number; each Invoke supersedes the one before), asks to end
//! the call at most once and comes to an end once the call is over.

mod common;

use std::time::Duration;

use common::*;
use proptest::prelude::*;
use trunkd_sma::{ActionResult, Input, Invocation, Output, ParticipantTag};

#[derive(Debug, Clone)]
enum Step {
    Answer(u16, &'static str),
    Unreachable,
    Wait(u64),
    Answered,
    Succeeded,
    Failed,
    Digit(char),
    JoinB,
    Hangup(ParticipantTag),
    Update,
    Ringing,
}

const BODIES: &[&str] = &[
    "",
    "garbage",
    r#"{"SchemaVersion":"1.0","Actions":[{"Type":"Answer"},{"Type":"Pause","Parameters":{"DurationInMilliseconds":"100"}}]}"#,
    r#"{"SchemaVersion":"1.0","Actions":[{"Type":"ReceiveDigits","Parameters":{"InputDigitsRegex":"^\\d#$","InBetweenDigitsDurationInMilliseconds":300,"FlushDigitsDurationInMilliseconds":900}}]}"#,
    r#"{"SchemaVersion":"1.0","Actions":[{"Type":"Hangup"}]}"#,
    r#"{"SchemaVersion":"1.0","Actions":[{"Type":"PlayAudio","Parameters":{"AudioSource":{"Type":"File","Path":"a.wav"}}},{"Type":"SendDigits","Parameters":{"Digits":"1"}}],"TransactionAttributes":{"k":"v"}}"#,
    r#"{"SchemaVersion":"1.0","Actions":[{"Type":"Nope"}]}"#,
];

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (prop::sample::select(vec![200u16, 200, 200, 404, 500, 302]), prop::sample::select(BODIES.to_vec()))
            .prop_map(|(s, b)| Step::Answer(s, b)),
        1 => Just(Step::Unreachable),
        2 => (0u64..7000).prop_map(Step::Wait),
        1 => Just(Step::Answered),
        2 => Just(Step::Succeeded),
        1 => Just(Step::Failed),
        2 => prop::sample::select(vec!['1', '5', '#', 'x']).prop_map(Step::Digit),
        1 => Just(Step::JoinB),
        1 => prop::sample::select(vec![ParticipantTag::LegA, ParticipantTag::LegB]).prop_map(Step::Hangup),
        1 => Just(Step::Update),
        1 => Just(Step::Ringing),
    ]
}

proptest! {
    #[test]
    fn the_session_holds_its_invariants(steps in prop::collection::vec(step(), 1..60)) {
        let mut app = App::inbound(&["https://a/1", "https://a/2"]);
        let mut current: Option<Invocation> = None;
        let mut last_sequence = 0;
        let mut last_body = String::new();
        let mut end_calls = 0;
        let mut check = |out: Vec<Output>, current: &mut Option<Invocation>| -> Result<(), TestCaseError> {
            for o in out {
                match o {
                    Output::Invoke(i) => {
                        prop_assert!(i.sequence == last_sequence || i.sequence == last_sequence + 1);
                        if i.sequence == last_sequence {
                            prop_assert_eq!(&i.body, &last_body, "a retry is the same request");
                        }
                        last_sequence = i.sequence;
                        last_body = i.body.clone();
                        *current = Some(i);
                    }
                    Output::EndCall { sip_response_code } => {
                        prop_assert_eq!(sip_response_code, 480);
                        end_calls += 1;
                    }
                    Output::Run(_) => {}
                }
            }
            Ok(())
        };
        let out = app.outputs();
        check(out, &mut current)?;
        for s in steps {
            match s {
                Step::Answer(status, body) => {
                    if let Some(i) = current.clone() {
                        app.status(&i, status, body);
                    }
                }
                Step::Unreachable => {
                    if let Some(i) = current.clone() {
                        app.input(Input::Unreachable { id: i.id });
                    }
                }
                Step::Wait(ms) => app.advance(Duration::from_millis(ms)),
                Step::Answered => app.input(Input::Answered),
                Step::Succeeded => app.input(Input::ActionSucceeded(ActionResult::default())),
                Step::Failed => app.input(Input::ActionFailed { error_type: "SystemException".into(), error_message: "x".into() }),
                Step::Digit(c) => app.input(Input::Digit(c)),
                Step::JoinB => app.input(Input::ParticipantJoined(leg_b())),
                Step::Hangup(tag) => app.hangup(tag),
                Step::Update => app.input(Input::UpdateRequested { arguments: args(&[("a", "b")]) }),
                Step::Ringing => app.input(Input::Ringing),
            }
            let out = app.outputs();
            check(out, &mut current)?;
        }
        // The call ends: every participant leaves, every endpoint stays
        // silent; the session must come to its end.
        app.hangup(ParticipantTag::LegA);
        app.hangup(ParticipantTag::LegB);
        for _ in 0..50 {
            app.advance(Duration::from_secs(6));
            let out = app.outputs();
            check(out, &mut current)?;
            if app.s.is_finished() {
                break;
            }
        }
        prop_assert!(app.s.is_finished());
        prop_assert!(end_calls <= 1, "EndCall asked {} times", end_calls);
    }
}
