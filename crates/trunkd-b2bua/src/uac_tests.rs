//! The UAC leg driven by hand: responses in, outputs and events checked,
//! no sockets and no clock (time is an argument).

use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use trunkd_sip::transaction::{Endpoint, Limits, Peer, ServerTxId, TimerConfig, TxEvent};
use trunkd_sip::{Method, Request, Response, SipMessage};

use crate::*;

const OFFER: &str = "v=0\r\no=trunkd 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 20000 RTP/AVP 0\r\n";
const ANSWER: &str = "v=0\r\no=carrier 7 7 IN IP4 192.0.2.20\r\ns=-\r\nc=IN IP4 192.0.2.20\r\nt=0 0\r\nm=audio 30000 RTP/AVP 0\r\n";

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn hops(credentials: Option<(&str, &str)>) -> Vec<Hop> {
    ["192.0.2.20:5060", "192.0.2.21:5060"]
        .iter()
        .map(|a| Hop {
            dest: Peer::udp(addr(a)),
            uri_host: (*a).to_owned(),
            carrier_id: None,
            vc_id: None,
            credentials: credentials.map(|(u, p)| (u.to_owned(), p.to_owned())),
            srtp: trunkd_core::SrtpPolicy::Off,
        })
        .collect()
}

struct T {
    leg: UacLeg,
    now: Instant,
}

fn new_leg(plan: Vec<Hop>) -> T {
    let now = Instant::now();
    let leg = UacLeg::new(NewUacLeg {
        seed: 7,
        now,
        wall: SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000),
        local: LocalAddrs {
            udp: Some(addr("127.0.0.1:5060")),
            tcp: None,
            tls: None,
            advertised: None,
        },
        callee: "+12065550199".into(),
        caller: "+12065550100".into(),
        plan,
        offer: Bytes::from_static(OFFER.as_bytes()),
        headers: vec![("X-Case".into(), "42".into())],
        hop_timeout: Duration::from_secs(8),
        ring_timeout: Duration::from_secs(20),
        reoffer: None,
        side: Leg::B,
    });
    T { leg, now }
}

impl T {
    fn drain(&mut self) -> Vec<CallOutput> {
        std::iter::from_fn(|| self.leg.poll_output()).collect()
    }

    fn events(&mut self) -> Vec<UacEvent> {
        std::iter::from_fn(|| self.leg.poll_event()).collect()
    }

    fn sent(outs: &[CallOutput], method: Method) -> (Request, Peer) {
        outs.iter()
            .find_map(|o| match o {
                CallOutput::SendRequest { request, dest, .. } if request.method == method => {
                    Some((request.clone(), *dest))
                }
                CallOutput::SendStateless { request, dest } if request.method == method => {
                    Some((request.clone(), *dest))
                }
                _ => None,
            })
            .unwrap_or_else(|| panic!("no {method:?} in {outs:#?}"))
    }

    /// The callee answers `to` with `code`, `extra` headers and `body`.
    fn respond(&mut self, to: &Request, code: u16, extra: &str, body: &str) {
        let response = response_to(to, code, extra, body);
        let branch = to.headers.top_via().unwrap().branch().unwrap().clone();
        self.leg.handle(
            self.now,
            CallInput::Response {
                leg: Leg::B,
                branch,
                response,
            },
        );
    }
}

fn response_to(to: &Request, code: u16, extra: &str, body: &str) -> Response {
    let text = String::from_utf8_lossy(&to.to_bytes()).into_owned();
    let head = text.split("\r\n\r\n").next().unwrap();
    let lines: Vec<String> = head
        .lines()
        .skip(1)
        .filter(|l| {
            ["Via:", "From:", "Call-ID:", "CSeq:", "To:"]
                .iter()
                .any(|h| l.starts_with(h))
        })
        .map(|l| {
            if l.starts_with("To:") && code > 100 {
                format!("{l};tag=callee-tag")
            } else {
                l.to_owned()
            }
        })
        .collect();
    let ct = if body.is_empty() {
        String::new()
    } else {
        "Content-Type: application/sdp\r\n".to_owned()
    };
    let resp = format!(
        "SIP/2.0 {code} Reason\r\n{}\r\nContact: <sip:callee@192.0.2.20:5070>\r\n{extra}{ct}Content-Length: {}\r\n\r\n{body}",
        lines.join("\r\n"),
        body.len()
    );
    match SipMessage::parse(Bytes::from(resp)) {
        Ok(SipMessage::Response(r)) => r,
        other => panic!("{other:?}"),
    }
}

/// A request from the callee inside the dialog, with the server
/// transaction the layer would give it.
fn callee_request(invite: &Request, method: &str, cseq: u32, body: &str) -> (ServerTxId, Request) {
    let call_id = String::from_utf8_lossy(invite.headers.get("Call-ID").unwrap()).into_owned();
    let from = String::from_utf8_lossy(invite.headers.get("From").unwrap()).into_owned();
    let to = String::from_utf8_lossy(invite.headers.get("To").unwrap()).into_owned();
    let ct = if body.is_empty() {
        String::new()
    } else {
        "Content-Type: application/sdp\r\n".to_owned()
    };
    let text = format!(
        "{method} sip:trunkd@127.0.0.1:5060 SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.20:5070;branch=z9hG4bK-callee{cseq}\r\n\
Max-Forwards: 70\r\n\
From: {to};tag=callee-tag\r\n\
To: {from}\r\n\
Call-ID: {call_id}\r\n\
CSeq: {cseq} {method}\r\n\
Contact: <sip:callee@192.0.2.20:5070>\r\n\
{ct}Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut ep = Endpoint::new(TimerConfig::default(), Limits::default());
    let msg = SipMessage::parse(Bytes::from(text)).unwrap();
    let SipMessage::Request(req) = msg.clone() else {
        panic!("not a request")
    };
    ep.handle_message(Instant::now(), msg, Peer::udp(addr("192.0.2.20:5070")));
    let tx = std::iter::from_fn(|| ep.poll_event())
        .find_map(|ev| match ev {
            TxEvent::NewRequest { tx, .. } => Some(tx),
            _ => None,
        })
        .unwrap();
    (tx, req)
}

fn header(r: &Request, name: &str) -> String {
    String::from_utf8_lossy(r.headers.get(name).unwrap()).into_owned()
}

fn responses(outs: &[CallOutput]) -> Vec<u16> {
    outs.iter()
        .filter_map(|o| match o {
            CallOutput::SendResponse { response, .. } => Some(response.status.as_u16()),
            _ => None,
        })
        .collect()
}

/// A leg answered on the first hop, outputs and events drained.
fn connected() -> (T, Request) {
    let mut t = new_leg(hops(None));
    let outs = t.drain();
    let (invite, _) = T::sent(&outs, Method::Invite);
    t.respond(&invite, 200, "", ANSWER);
    t.drain();
    t.events();
    (t, invite)
}

#[test]
fn the_invite_offers_trunkds_sdp_from_the_caller_id_with_the_apps_headers() {
    let mut t = new_leg(hops(None));
    let outs = t.drain();
    let CallOutput::Register { call_id, leg } = &outs[0] else {
        panic!("{outs:#?}")
    };
    assert_eq!(*leg, Leg::B);
    let (invite, dest) = T::sent(&outs, Method::Invite);
    assert_eq!(&invite.headers.get("Call-ID").unwrap()[..], &call_id[..]);
    assert_eq!(dest, Peer::udp(addr("192.0.2.20:5060")));
    assert_eq!(
        String::from_utf8_lossy(&invite.uri.to_bytes()),
        "sip:+12065550199@192.0.2.20:5060"
    );
    assert!(header(&invite, "From").starts_with("<sip:+12065550100@127.0.0.1:5060>;tag="));
    assert_eq!(header(&invite, "To"), "<sip:+12065550199@192.0.2.20:5060>");
    assert_eq!(
        header(&invite, "P-Asserted-Identity"),
        "<sip:+12065550100@127.0.0.1:5060>"
    );
    assert_eq!(header(&invite, "Contact"), "<sip:trunkd@127.0.0.1:5060>");
    assert_eq!(header(&invite, "X-Case"), "42");
    assert_eq!(header(&invite, "CSeq"), "1 INVITE");
    assert_eq!(header(&invite, "Content-Type"), "application/sdp");
    assert_eq!(&invite.body[..], OFFER.as_bytes());
    assert_eq!(t.events(), vec![]);
}

#[test]
fn ringing_then_answer_is_acked_and_hands_the_answer_to_the_owner() {
    let mut t = new_leg(hops(None));
    let outs = t.drain();
    let (invite, _) = T::sent(&outs, Method::Invite);
    t.respond(&invite, 100, "", "");
    t.respond(&invite, 180, "", "");
    t.respond(&invite, 180, "", "");
    assert_eq!(t.events(), vec![UacEvent::Ringing { hop: 0, sdp: None }]);
    t.respond(&invite, 200, "", ANSWER);
    let outs = t.drain();
    let (ack, dest) = T::sent(&outs, Method::Ack);
    assert_eq!(dest, Peer::udp(addr("192.0.2.20:5060")));
    // The ACK goes to the callee's Contact, in the dialog the 2xx made.
    assert_eq!(
        String::from_utf8_lossy(&ack.uri.to_bytes()),
        "sip:callee@192.0.2.20:5070"
    );
    assert_eq!(header(&ack, "CSeq"), "1 ACK");
    assert!(header(&ack, "To").ends_with(";tag=callee-tag"));
    assert_eq!(
        t.events(),
        vec![UacEvent::Answered {
            hop: 0,
            sdp: Bytes::from_static(ANSWER.as_bytes())
        }]
    );
    assert!(t.leg.is_connected());
    assert_eq!(
        t.leg.answered_wall(),
        Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000))
    );
    assert_eq!(t.leg.poll_timeout(), None);
}

#[test]
fn early_media_is_reported_with_its_sdp() {
    let mut t = new_leg(hops(None));
    let outs = t.drain();
    let (invite, _) = T::sent(&outs, Method::Invite);
    t.respond(&invite, 183, "", ANSWER);
    assert_eq!(
        t.events(),
        vec![UacEvent::Ringing {
            hop: 0,
            sdp: Some(Bytes::from_static(ANSWER.as_bytes()))
        }]
    );
}

#[test]
fn a_503_fails_over_to_the_next_hop_and_a_486_there_is_final() {
    let mut t = new_leg(hops(None));
    let outs = t.drain();
    let (first, _) = T::sent(&outs, Method::Invite);
    t.respond(&first, 503, "", "");
    let outs = t.drain();
    let (second, dest) = T::sent(&outs, Method::Invite);
    assert_eq!(dest, Peer::udp(addr("192.0.2.21:5060")));
    assert_ne!(header(&second, "Call-ID"), header(&first, "Call-ID"));
    assert!(outs.iter().any(|o| matches!(o,
        CallOutput::Unregister { call_id } if call_id[..] == *first.headers.get("Call-ID").unwrap())));
    assert_eq!(t.events(), vec![]);
    t.respond(&second, 486, "", "");
    assert_eq!(
        t.events(),
        vec![UacEvent::Failed(UacFailure {
            status: 486,
            reason: "Reason".into(),
            timed_out: false,
        })]
    );
    let outs = t.drain();
    assert!(outs.iter().any(|o| matches!(o,
        CallOutput::Unregister { call_id } if call_id[..] == *second.headers.get("Call-ID").unwrap())));
    assert!(t.leg.is_ended());
}

#[test]
fn every_hop_timing_out_reports_the_last_failure() {
    let mut t = new_leg(hops(None));
    for _ in 0..2 {
        let outs = t.drain();
        let (invite, _) = T::sent(&outs, Method::Invite);
        let branch = invite.headers.top_via().unwrap().branch().unwrap().clone();
        t.leg.handle(
            t.now,
            CallInput::Timeout {
                leg: Leg::B,
                branch,
            },
        );
    }
    assert_eq!(
        t.events(),
        vec![UacEvent::Failed(UacFailure {
            status: 408,
            reason: "Request Timeout".into(),
            timed_out: false,
        })]
    );
}

#[test]
fn the_ring_timeout_cancels_and_reports_a_timeout() {
    let mut t = new_leg(hops(None));
    let outs = t.drain();
    let (invite, _) = T::sent(&outs, Method::Invite);
    t.respond(&invite, 180, "", "");
    t.events();
    assert_eq!(t.leg.poll_timeout(), Some(t.now + Duration::from_secs(20)));
    t.leg.handle_timeout(t.now + Duration::from_secs(19));
    assert!(t.drain().is_empty());
    t.now += Duration::from_secs(20);
    t.leg.handle_timeout(t.now);
    let outs = t.drain();
    let branch = invite.headers.top_via().unwrap().branch().unwrap().clone();
    assert!(
        matches!(&outs[..], [CallOutput::Cancel { branch: b }] if *b == branch),
        "{outs:#?}"
    );
    assert_eq!(t.events(), vec![]);
    t.respond(&invite, 487, "", "");
    assert_eq!(
        t.events(),
        vec![UacEvent::Failed(UacFailure {
            status: 408,
            reason: "Request Timeout".into(),
            timed_out: true,
        })]
    );
}

#[test]
fn an_answer_crossing_the_cancel_is_acked_and_hung_up() {
    let mut t = new_leg(hops(None));
    let outs = t.drain();
    let (invite, _) = T::sent(&outs, Method::Invite);
    t.leg.hang_up();
    t.drain();
    t.respond(&invite, 200, "", ANSWER);
    let outs = t.drain();
    T::sent(&outs, Method::Ack);
    let (bye, _) = T::sent(&outs, Method::Bye);
    assert_eq!(header(&bye, "CSeq"), "2 BYE");
    assert_eq!(
        t.events(),
        vec![UacEvent::Failed(UacFailure {
            status: 487,
            reason: "Request Terminated".into(),
            timed_out: false,
        })]
    );
}

#[test]
fn a_proxy_challenge_is_answered_once_with_the_hops_credentials() {
    let mut t = new_leg(hops(Some(("trunk", "secret"))));
    let outs = t.drain();
    let (invite, _) = T::sent(&outs, Method::Invite);
    t.respond(
        &invite,
        407,
        "Proxy-Authenticate: Digest realm=\"carrier\", nonce=\"abc\", qop=\"auth\"\r\n",
        "",
    );
    let outs = t.drain();
    let (again, _) = T::sent(&outs, Method::Invite);
    assert_eq!(header(&again, "CSeq"), "2 INVITE");
    assert_eq!(header(&again, "Call-ID"), header(&invite, "Call-ID"));
    let auth = header(&again, "Proxy-Authorization");
    assert!(auth.starts_with("Digest "), "{auth}");
    assert!(auth.contains("username=\"trunk\""), "{auth}");
    assert!(
        auth.contains("uri=\"sip:+12065550199@192.0.2.20:5060\""),
        "{auth}"
    );
    // A second challenge is a failure (wrong credentials), not a loop.
    t.respond(
        &again,
        407,
        "Proxy-Authenticate: Digest realm=\"carrier\", nonce=\"def\", qop=\"auth\"\r\n",
        "",
    );
    assert_eq!(
        t.events(),
        vec![UacEvent::Failed(UacFailure {
            status: 407,
            reason: "Reason".into(),
            timed_out: false,
        })]
    );
}

#[test]
fn a_retransmitted_2xx_gets_the_same_ack_again() {
    let (mut t, invite) = connected();
    let response = response_to(&invite, 200, "", ANSWER);
    t.leg.handle(
        t.now,
        CallInput::StrayResponse {
            leg: Leg::B,
            response,
        },
    );
    let outs = t.drain();
    let (ack, _) = T::sent(&outs, Method::Ack);
    assert_eq!(header(&ack, "CSeq"), "1 ACK");
    assert_eq!(t.events(), vec![]);
}

#[test]
fn a_2xx_without_an_answer_is_acked_then_ended() {
    let mut t = new_leg(hops(None));
    let outs = t.drain();
    let (invite, _) = T::sent(&outs, Method::Invite);
    t.respond(&invite, 200, "", "");
    let outs = t.drain();
    T::sent(&outs, Method::Ack);
    T::sent(&outs, Method::Bye);
    assert_eq!(
        t.events(),
        vec![UacEvent::Failed(UacFailure {
            status: 488,
            reason: "Not Acceptable Here (no SDP answer)".into(),
            timed_out: false,
        })]
    );
}

#[test]
fn the_callees_bye_is_answered_and_reported() {
    let (mut t, invite) = connected();
    let (tx, bye) = callee_request(&invite, "BYE", 1, "");
    t.leg.handle(
        t.now,
        CallInput::Request {
            leg: Leg::B,
            tx,
            request: bye,
        },
    );
    let outs = t.drain();
    assert_eq!(responses(&outs), vec![200]);
    assert_eq!(t.events(), vec![UacEvent::Ended { by_callee: true }]);
    assert!(t.leg.is_ended());
}

#[test]
fn the_owner_hangs_up_a_connected_leg_with_bye() {
    let (mut t, invite) = connected();
    t.leg.hang_up();
    let outs = t.drain();
    let (bye, dest) = T::sent(&outs, Method::Bye);
    assert_eq!(dest, Peer::udp(addr("192.0.2.20:5060")));
    assert_eq!(header(&bye, "CSeq"), "2 BYE");
    assert_eq!(header(&bye, "Call-ID"), header(&invite, "Call-ID"));
    assert!(header(&bye, "To").ends_with(";tag=callee-tag"));
    assert_eq!(t.events(), vec![UacEvent::Ended { by_callee: false }]);
    assert!(t.leg.is_ended());
    // Hanging up twice sends nothing more.
    t.leg.hang_up();
    assert!(t.drain().is_empty());
}

#[test]
fn refreshes_keep_the_session_and_new_offers_without_an_answerer_get_488() {
    let (mut t, invite) = connected();
    let (tx, refresh) = callee_request(&invite, "INVITE", 2, "");
    t.leg.handle(
        t.now,
        CallInput::Request {
            leg: Leg::B,
            tx,
            request: refresh,
        },
    );
    let outs = t.drain();
    let CallOutput::SendResponse { response, .. } = &outs[0] else {
        panic!("{outs:#?}")
    };
    assert_eq!(response.status.as_u16(), 200);
    assert_eq!(&response.body[..], OFFER.as_bytes());
    let (tx, reoffer) = callee_request(&invite, "INVITE", 3, ANSWER);
    t.leg.handle(
        t.now,
        CallInput::Request {
            leg: Leg::B,
            tx,
            request: reoffer,
        },
    );
    assert_eq!(responses(&t.drain()), vec![488]);
    assert!(t.leg.is_connected());
}

#[test]
fn requests_before_the_answer_are_refused() {
    let mut t = new_leg(hops(None));
    let outs = t.drain();
    let (invite, _) = T::sent(&outs, Method::Invite);
    let (tx, bye) = callee_request(&invite, "BYE", 1, "");
    t.leg.handle(
        t.now,
        CallInput::Request {
            leg: Leg::B,
            tx,
            request: bye,
        },
    );
    assert_eq!(responses(&t.drain()), vec![481]);
}

#[test]
fn no_hop_at_all_fails_at_once() {
    let mut t = new_leg(Vec::new());
    assert!(t.drain().is_empty());
    assert_eq!(
        t.events(),
        vec![UacEvent::Failed(UacFailure {
            status: 503,
            reason: "Service Unavailable".into(),
            timed_out: false,
        })]
    );
    assert!(t.leg.is_ended());
}
