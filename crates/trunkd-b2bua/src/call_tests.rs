//! The call state machine driven by hand: messages in, outputs checked,
//! no sockets and no clock (time is an argument).

use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use trunkd_core::cdr::CallOutcome;
use trunkd_sip::transaction::{Peer, ServerTxId};
use trunkd_sip::{Method, Request, Response, SipMessage, StatusCode};

use crate::*;

const A_INVITE: &str = "INVITE sip:+12065550199@127.0.0.1:5060 SIP/2.0\r\n\
Via: SIP/2.0/UDP 10.1.1.1:5062;branch=z9hG4bK-a1;received=192.0.2.10\r\n\
Max-Forwards: 70\r\n\
From: \"PBX\" <sip:+12065550100@10.1.1.1>;tag=pbx-tag\r\n\
To: <sip:+12065550199@127.0.0.1>\r\n\
Call-ID: a-leg-call@10.1.1.1\r\n\
CSeq: 7 INVITE\r\n\
Contact: <sip:pbx@10.1.1.1:5062>\r\n\
Record-Route: <sip:10.1.1.254;lr>\r\n\
Content-Type: application/sdp\r\n\
Session-Expires: 1800\r\n\
Content-Length: 4\r\n\r\nv=0\n";

fn req(text: &str) -> Request {
    match SipMessage::parse(Bytes::from(text.to_owned())) {
        Ok(SipMessage::Request(r)) => r,
        other => panic!("not a request: {other:?}"),
    }
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn server_tx(n: u64) -> ServerTxId {
    // Server transaction ids come from the transaction layer; a test makes
    // its own by running one request through an endpoint.
    use trunkd_sip::transaction::{Endpoint, Limits, TimerConfig, TxEvent};
    let mut ep = Endpoint::new(TimerConfig::default(), Limits::default());
    let now = Instant::now();
    let mut id = None;
    for i in 0..=n {
        let r = req(&A_INVITE
            .replace("branch=z9hG4bK-a1", &format!("branch=z9hG4bK-tx{i}"))
            .replace("CSeq: 7", &format!("CSeq: {}", 7 + i)));
        ep.handle_message(
            now,
            SipMessage::Request(r),
            Peer::udp(addr("10.1.1.1:5062")),
        );
        while let Some(ev) = ep.poll_event() {
            if let TxEvent::NewRequest { tx, .. } = ev {
                id = Some(tx);
            }
        }
    }
    id.unwrap()
}

fn hops() -> Vec<Hop> {
    ["192.0.2.20:5060", "192.0.2.21:5060"]
        .iter()
        .map(|a| Hop {
            dest: Peer::udp(addr(a)),
            uri_host: (*a).to_owned(),
            carrier_id: None,
            vc_id: None,
            credentials: None,
            srtp: trunkd_core::SrtpPolicy::Off,
        })
        .collect()
}

struct T {
    call: Call,
    now: Instant,
    invite_tx: ServerTxId,
}

impl T {
    fn new() -> T {
        T::with(A_INVITE, Box::new(PassThrough))
    }

    /// A call from this INVITE through this media anchor.
    fn with(invite: &str, media: Box<dyn MediaAnchor>) -> T {
        let now = Instant::now();
        let invite_tx = server_tx(0);
        let call = Call::new(NewCall {
            seed: 42,
            now,
            wall: SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000),
            local: LocalAddrs {
                udp: Some(addr("127.0.0.1:5060")),
                tcp: None,
                tls: None,
                advertised: None,
            },
            invite: req(invite),
            invite_tx,
            a_dest: Peer::udp(addr("10.1.1.1:5062")),
            b_user: "+12065550199".into(),
            caller: "+12065550100".into(),
            caller_name: None,
            plan: hops(),
            hop_timeout: Duration::from_secs(8),
            routing_deadline: Duration::from_secs(30),
            media,
        });
        T {
            call,
            now,
            invite_tx,
        }
    }

    fn drain(&mut self) -> Vec<CallOutput> {
        std::iter::from_fn(|| self.call.poll_output()).collect()
    }

    /// The B-leg INVITE (or other request) in the outputs.
    fn sent_request(outs: &[CallOutput], method: Method) -> (Request, Peer) {
        outs.iter()
            .find_map(|o| match o {
                CallOutput::SendRequest { request, dest, .. } if request.method == method => {
                    Some((request.clone(), *dest))
                }
                _ => None,
            })
            .unwrap_or_else(|| panic!("no {method:?} in {outs:#?}"))
    }

    fn responses(outs: &[CallOutput]) -> Vec<(ServerTxId, u16)> {
        outs.iter()
            .filter_map(|o| match o {
                CallOutput::SendResponse { tx, response } => Some((*tx, response.status.as_u16())),
                _ => None,
            })
            .collect()
    }

    fn respond_b(&mut self, to: &Request, code: u16, extra: &str) {
        self.respond_b_with_body(to, code, extra, "");
    }

    /// B answers the CANCEL of `invite` with `code`, delivered the way the
    /// engine delivers a CANCEL transaction's responses (no branch).
    fn respond_b_to_cancel(&mut self, invite: &Request, code: u16) {
        let text = String::from_utf8_lossy(&invite.to_bytes()).into_owned();
        let head = text.split("\r\n\r\n").next().unwrap();
        let lines: Vec<String> = head
            .lines()
            .skip(1)
            .filter(|l| {
                ["Via:", "From:", "To:", "Call-ID:"]
                    .iter()
                    .any(|h| l.starts_with(h))
            })
            .map(|l| {
                if l.starts_with("To:") {
                    format!("{l};tag=b-tag")
                } else {
                    l.to_owned()
                }
            })
            .collect();
        let resp = format!(
            "SIP/2.0 {code} OK\r\n{}\r\nCSeq: 1 CANCEL\r\nContent-Length: 0\r\n\r\n",
            lines.join("\r\n")
        );
        let response = match SipMessage::parse(Bytes::from(resp)) {
            Ok(SipMessage::Response(r)) => r,
            other => panic!("{other:?}"),
        };
        self.call.handle(
            self.now,
            CallInput::Response {
                leg: Leg::B,
                branch: Bytes::new(),
                response,
            },
        );
    }

    /// B answers `to` with `extra` headers (each ending in CRLF) and `body`.
    fn respond_b_with_body(&mut self, to: &Request, code: u16, extra: &str, body: &str) {
        let text = String::from_utf8_lossy(&to.to_bytes()).into_owned();
        let head = text.split("\r\n\r\n").next().unwrap();
        let mut lines: Vec<String> = head
            .lines()
            .skip(1)
            .filter(|l| !l.starts_with("Content-Length"))
            .map(str::to_owned)
            .collect();
        for l in lines.iter_mut() {
            if l.starts_with("To:") && code > 100 {
                l.push_str(";tag=b-tag");
            }
        }
        lines.retain(|l| {
            !l.starts_with("Max-Forwards")
                && !l.starts_with("Contact")
                && !l.starts_with("P-Asserted")
                && !l.starts_with("Content-Type")
                && !l.starts_with("Session-Expires")
        });
        let resp = format!("SIP/2.0 {code} Reason\r\n{}\r\nContact: <sip:carrier@192.0.2.20:5060>\r\n{extra}Content-Length: {}\r\n\r\n{body}", lines.join("\r\n"), body.len());
        let response = match SipMessage::parse(Bytes::from(resp)) {
            Ok(SipMessage::Response(r)) => r,
            other => panic!("{other:?}"),
        };
        let branch = to.headers.top_via().unwrap().branch().unwrap().clone();
        self.call.handle(
            self.now,
            CallInput::Response {
                leg: Leg::B,
                branch,
                response,
            },
        );
    }
}

fn response(r: &Response) -> String {
    String::from_utf8_lossy(&r.to_bytes()).into_owned()
}

#[test]
fn the_b_leg_invite_hides_the_a_legs_topology() {
    let mut t = T::new();
    let outs = t.drain();
    assert!(matches!(&outs[0], CallOutput::Register { leg: Leg::A, .. }));
    let (inv, dest) = T::sent_request(&outs, Method::Invite);
    assert_eq!(dest.addr, addr("192.0.2.20:5060"), "the first hop");
    let text = String::from_utf8_lossy(&inv.to_bytes()).into_owned();
    let head = text.split("\r\n\r\n").next().unwrap();
    for leak in [
        "10.1.1.1",
        "192.0.2.10",
        "10.1.1.254",
        "a-leg-call",
        "pbx-tag",
        "CSeq: 7",
    ] {
        assert!(
            !head.contains(leak),
            "{leak} leaked into the B leg:\n{head}"
        );
    }
    assert!(
        head.starts_with("INVITE sip:+12065550199@192.0.2.20:5060 SIP/2.0\r\n"),
        "{head}"
    );
    assert!(head.contains("Max-Forwards: 69"), "decremented: {head}");
    assert!(
        head.contains("From: <sip:+12065550100@127.0.0.1:5060>;tag="),
        "{head}"
    );
    assert!(
        head.contains("Session-Expires: 1800"),
        "end-to-end headers cross: {head}"
    );
    assert_eq!(inv.body, Bytes::from_static(b"v=0\n"), "the body crosses");
}

#[test]
fn failover_on_503_then_answer_ack_and_bye_from_the_callee() {
    let mut t = T::new();
    let (inv1, _) = T::sent_request(&t.drain(), Method::Invite);
    t.respond_b(&inv1, 503, "");
    let outs = t.drain();
    assert!(outs.iter().any(|o| matches!(
        o,
        CallOutput::Event(CallEvent::HopFailed {
            hop: 0,
            status: 503
        })
    )));
    let (inv2, dest) = T::sent_request(&outs, Method::Invite);
    assert_eq!(dest.addr, addr("192.0.2.21:5060"), "the second hop");
    assert_ne!(
        inv1.headers.get("Call-ID"),
        inv2.headers.get("Call-ID"),
        "a fresh B-leg Call-ID per attempt"
    );
    assert!(
        T::responses(&outs).is_empty(),
        "the caller hears nothing of the failed hop"
    );

    t.respond_b(&inv2, 180, "");
    let outs = t.drain();
    assert_eq!(T::responses(&outs), vec![(t.invite_tx, 180)]);
    t.respond_b(&inv2, 200, "");
    let outs = t.drain();
    assert_eq!(T::responses(&outs), vec![(t.invite_tx, 200)]);
    let ok = outs
        .iter()
        .find_map(|o| match o {
            CallOutput::SendResponse { response, .. } => Some(response.clone()),
            _ => None,
        })
        .unwrap();
    let ok_text = response(&ok);
    assert!(
        ok_text.contains("Contact: <sip:trunkd@127.0.0.1:5060>"),
        "our Contact, not the carrier's: {ok_text}"
    );
    assert!(!ok_text.contains("192.0.2.2"), "{ok_text}");
    assert!(
        ok_text.contains("Record-Route: <sip:10.1.1.254;lr>\r\n"),
        "RFC 3261 §12.1.1: the caller's proxy stays in the dialog: {ok_text}"
    );
    assert!(outs
        .iter()
        .any(|o| matches!(o, CallOutput::Event(CallEvent::Answered { hop: 1 }))));

    // The caller's ACK makes ours on B.
    let ack = req(&A_INVITE
        .replace("INVITE sip", "ACK sip")
        .replace("CSeq: 7 INVITE", "CSeq: 7 ACK")
        .replace(
            "To: <sip:+12065550199@127.0.0.1>",
            "To: <sip:+12065550199@127.0.0.1>;tag=x",
        ));
    t.call.handle(
        t.now,
        CallInput::Ack {
            leg: Leg::A,
            request: ack,
        },
    );
    let outs = t.drain();
    let b_ack = outs
        .iter()
        .find_map(|o| match o {
            CallOutput::SendStateless { request, .. } => Some(request.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(b_ack.method, Method::Ack);
    assert_eq!(
        b_ack.headers.cseq().unwrap().seq,
        inv2.headers.cseq().unwrap().seq
    );

    // The callee hangs up: 200 to it, BYE to the caller, then the end.
    let bye_tx = server_tx(1);
    let bye = req(&format!(
        "BYE sip:trunkd@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.21:5060;branch=z9hG4bK-bye\r\nMax-Forwards: 70\r\nFrom: <sip:+12065550199@192.0.2.21>;tag=b-tag\r\nTo: {};tag={}\r\nCall-ID: {}\r\nCSeq: 1 BYE\r\nContent-Length: 0\r\n\r\n",
        String::from_utf8_lossy(inv2.headers.get("From").unwrap()).split(";tag=").next().unwrap(),
        String::from_utf8_lossy(inv2.headers.get("From").unwrap()).split(";tag=").nth(1).unwrap(),
        String::from_utf8_lossy(inv2.headers.get("Call-ID").unwrap()),
    ));
    t.call.handle(
        t.now,
        CallInput::Request {
            leg: Leg::B,
            tx: bye_tx,
            request: bye,
        },
    );
    let outs = t.drain();
    assert_eq!(T::responses(&outs), vec![(bye_tx, 200)]);
    let (a_bye, dest) = T::sent_request(&outs, Method::Bye);
    assert_eq!(
        dest.addr,
        addr("10.1.1.1:5062"),
        "to where the caller's INVITE came from"
    );
    let a_bye_text = String::from_utf8_lossy(&a_bye.to_bytes()).into_owned();
    assert!(
        a_bye_text.contains("Call-ID: a-leg-call@10.1.1.1"),
        "{a_bye_text}"
    );
    assert!(
        a_bye_text.contains("To: \"PBX\" <sip:+12065550100@10.1.1.1>;tag=pbx-tag"),
        "{a_bye_text}"
    );
    assert!(
        a_bye_text.contains("Route: <sip:10.1.1.254;lr>"),
        "the A leg's route set: {a_bye_text}"
    );
    // The call ends as the BYE leaves (its transaction runs on in the
    // transaction layer): records never wait for a peer's 200.
    let end = outs
        .iter()
        .find_map(|o| match o {
            CallOutput::Event(CallEvent::Ended(e)) => Some(e.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(end.outcome, CallOutcome::Answered);
    assert!(end.answered.is_some());
    assert!(t.call.is_ended());
}

#[test]
fn a_486_from_the_callee_goes_back_without_failover() {
    let mut t = T::new();
    let (inv, _) = T::sent_request(&t.drain(), Method::Invite);
    t.respond_b(&inv, 486, "");
    let outs = t.drain();
    assert_eq!(T::responses(&outs), vec![(t.invite_tx, 486)]);
    assert!(
        !outs
            .iter()
            .any(|o| matches!(o, CallOutput::SendRequest { .. })),
        "no second hop for a 4xx"
    );
    let end = outs
        .iter()
        .find_map(|o| match o {
            CallOutput::Event(CallEvent::Ended(e)) => Some(e.clone()),
            _ => None,
        })
        .unwrap();
    assert!(matches!(
        end.outcome,
        CallOutcome::Failed { status: 486, .. }
    ));
}

#[test]
fn every_hop_failing_relays_the_last_failure() {
    let mut t = T::new();
    let (inv1, _) = T::sent_request(&t.drain(), Method::Invite);
    t.call.handle(
        t.now,
        CallInput::Timeout {
            leg: Leg::B,
            branch: inv1.headers.top_via().unwrap().branch().unwrap().clone(),
        },
    );
    let (inv2, _) = T::sent_request(&t.drain(), Method::Invite);
    t.respond_b(&inv2, 502, "");
    let outs = t.drain();
    assert_eq!(T::responses(&outs), vec![(t.invite_tx, 502)]);
}

#[test]
fn cancel_before_answer_cancels_b_and_answers_487() {
    let mut t = T::new();
    let (inv, _) = T::sent_request(&t.drain(), Method::Invite);
    t.respond_b(&inv, 180, "");
    t.drain();
    t.call.handle(t.now, CallInput::Cancelled);
    let outs = t.drain();
    assert!(outs.iter().any(|o| matches!(o, CallOutput::Cancel { .. })));
    assert_eq!(T::responses(&outs), vec![(t.invite_tx, 487)]);
    // The callee's 200 to the CANCEL comes before its 487: it is not an
    // answer, so nothing is ACKed or BYEd and the call waits for the 487.
    t.respond_b_to_cancel(&inv, 200);
    let outs = t.drain();
    assert!(
        !outs.iter().any(|o| matches!(
            o,
            CallOutput::SendStateless { .. }
                | CallOutput::SendRequest { .. }
                | CallOutput::Event(CallEvent::Ended(_))
        )),
        "{outs:?}"
    );
    t.respond_b(&inv, 487, "");
    let outs = t.drain();
    let end = outs
        .iter()
        .find_map(|o| match o {
            CallOutput::Event(CallEvent::Ended(e)) => Some(e.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(end.outcome, CallOutcome::Cancelled);
}

#[test]
fn an_unrefreshed_session_ends_with_bye_both_ways() {
    let mut t = T::new();
    let (inv, _) = T::sent_request(&t.drain(), Method::Invite);
    t.respond_b(&inv, 200, "Session-Expires: 90;refresher=uac\r\n");
    t.drain();
    let expiry = t.call.poll_timeout().expect("a session timer is armed");
    assert_eq!(expiry, t.now + Duration::from_secs(90 + 30));
    t.call.handle_timeout(expiry);
    let outs = t.drain();
    let byes = outs.iter().filter(|o| matches!(o, CallOutput::SendRequest { request, .. } if request.method == Method::Bye)).count();
    assert_eq!(byes, 2);
}

#[test]
fn the_routing_deadline_stops_failover() {
    let mut t = T::new();
    let (inv1, _) = T::sent_request(&t.drain(), Method::Invite);
    t.now += Duration::from_secs(31);
    t.respond_b(&inv1, 503, "");
    let outs = t.drain();
    assert!(
        !outs
            .iter()
            .any(|o| matches!(o, CallOutput::SendRequest { .. })),
        "no hop after the deadline"
    );
    assert_eq!(T::responses(&outs), vec![(t.invite_tx, 503)]);
}

#[test]
fn status_code_zero_never_happens() {
    // Guards the one fallible conversion in fail_a.
    assert!(StatusCode::new(0).is_none());
}

/// An anchor whose output is recognisable (`a=anchored:<leg>-<role>` at
/// trunkd's address) and which keeps every SDP it was shown.
#[derive(Clone, Default)]
struct Marking(std::sync::Arc<std::sync::Mutex<Vec<(Leg, SdpRole, Bytes)>>>);

impl Marking {
    fn seen(&self) -> Vec<(Leg, SdpRole, Bytes)> {
        self.0.lock().map(|v| v.clone()).unwrap_or_default()
    }

    fn sdp(from: Leg, role: SdpRole) -> String {
        format!("v=0\r\nc=IN IP4 192.0.2.99\r\nm=audio 40000 RTP/AVP 0\r\na=anchored:{from:?}-{role:?}\r\n")
    }
}

impl MediaAnchor for Marking {
    fn rewrite(&mut self, from: Leg, role: SdpRole, sdp: &Bytes) -> Result<Bytes, MediaRefusal> {
        if let Ok(mut v) = self.0.lock() {
            v.push((from, role, sdp.clone()));
        }
        Ok(Bytes::from(Marking::sdp(from, role)))
    }

    fn reset(&mut self, _leg: Leg, _srtp: trunkd_core::SrtpPolicy) {}
}

const CALLER_SDP: &str = "v=0\r\n\
o=pbx 1 1 IN IP4 10.1.1.1\r\n\
s=-\r\n\
c=IN IP4 10.1.1.1\r\n\
t=0 0\r\n\
m=audio 16384 RTP/AVP 0\r\n";

/// A PIDF-LO as an NG911 caller sends it (RFC 6442 §3.1), CRLF and all.
const PIDF: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\r\n\
<presence xmlns=\"urn:ietf:params:xml:ns:pidf\"\r\n\
    xmlns:gp=\"urn:ietf:params:xml:ns:pidf:geopriv10\"\r\n\
    xmlns:gml=\"http://www.opengis.net/gml\"\r\n\
    entity=\"pres:+12065550100@10.1.1.1\">\r\n\
  <tuple id=\"loc1\"><status><gp:geopriv><gp:location-info>\r\n\
    <gml:Point srsName=\"urn:ogc:def:crs:EPSG::4326\"><gml:pos>47.6 -122.3</gml:pos></gml:Point>\r\n\
  </gp:location-info></gp:geopriv></status></tuple>\r\n\
</presence>\r\n";

/// The NG911 body around an SDP: preamble, SDP part, PIDF part, epilogue.
fn ng911_body(sdp: &str) -> String {
    format!(
        "preamble\r\n--unique-boundary-1\r\n\
Content-Type: application/sdp\r\n\
\r\n\
{sdp}\r\n\
--unique-boundary-1\r\n\
Content-Type: application/pidf+xml\r\n\
Content-ID: <loc1@10.1.1.1>\r\n\
Content-Disposition: render;handling=optional\r\n\
\r\n\
{PIDF}\r\n\
--unique-boundary-1--\r\n"
    )
}

const MULTIPART_CT: &str = "multipart/mixed;boundary=unique-boundary-1";

/// A_INVITE with `body` under `content_type`, and the NG911 headers.
fn invite_with(content_type: &str, body: &str) -> String {
    A_INVITE
        .replace(
            "Content-Type: application/sdp\r\n",
            &format!(
                "Content-Type: {content_type}\r\n\
                 Geolocation: <cid:loc1@10.1.1.1>\r\n\
                 Geolocation-Routing: yes\r\n\
                 MIME-Version: 1.0\r\n"
            ),
        )
        .replace(
            "Content-Length: 4\r\n\r\nv=0\n",
            &format!("Content-Length: {}\r\n\r\n{body}", body.len()),
        )
}

fn wire(r: &Request) -> String {
    String::from_utf8_lossy(&r.to_bytes()).into_owned()
}

#[test]
fn an_ng911_invite_has_its_sdp_part_anchored_and_its_pidf_lo_untouched() {
    let anchor = Marking::default();
    let mut t = T::with(
        &invite_with(MULTIPART_CT, &ng911_body(CALLER_SDP)),
        Box::new(anchor.clone()),
    );
    let (inv, _) = T::sent_request(&t.drain(), Method::Invite);

    assert_eq!(
        anchor.seen(),
        vec![(Leg::A, SdpRole::Offer, Bytes::from(CALLER_SDP))],
        "the anchor sees the SDP part, nothing else"
    );
    let expected = ng911_body(&Marking::sdp(Leg::A, SdpRole::Offer));
    assert_eq!(String::from_utf8_lossy(&inv.body), expected);
    let m = trunkd_sip::Multipart::parse_with(MULTIPART_CT.as_bytes(), &inv.body).unwrap();
    assert_eq!(
        &m.parts()[1].body()[..],
        PIDF.as_bytes(),
        "PIDF byte for byte"
    );

    let text = wire(&inv);
    for h in [
        format!("Content-Type: {MULTIPART_CT}\r\n"),
        "Geolocation: <cid:loc1@10.1.1.1>\r\n".to_owned(),
        "Geolocation-Routing: yes\r\n".to_owned(),
        "MIME-Version: 1.0\r\n".to_owned(),
        format!("Content-Length: {}\r\n", expected.len()),
    ] {
        assert!(text.contains(&h), "{h:?} missing:\n{text}");
    }
    assert!(
        !text.contains("16384") && !text.contains("c=IN IP4 10.1.1.1"),
        "the caller's media address leaked:\n{text}"
    );
}

#[test]
fn a_multipart_answer_is_anchored_the_same_way() {
    let anchor = Marking::default();
    let mut t = T::with(
        &invite_with(MULTIPART_CT, &ng911_body(CALLER_SDP)),
        Box::new(anchor.clone()),
    );
    let (inv, _) = T::sent_request(&t.drain(), Method::Invite);
    let callee_sdp = "v=0\r\nc=IN IP4 192.0.2.20\r\nm=audio 20000 RTP/AVP 0\r\n";
    let metadata =
        "<?xml version=\"1.0\"?>\r\n<recording xmlns='urn:ietf:params:xml:ns:recording:1'/>\r\n";
    let answer = format!(
        "--ans\r\nContent-Type: application/sdp\r\nContent-Disposition: session\r\n\r\n{callee_sdp}\r\n\
--ans\r\nContent-Type: application/rs-metadata+xml\r\nContent-Disposition: recording-session\r\n\r\n{metadata}\r\n\
--ans--\r\n"
    );
    t.respond_b_with_body(
        &inv,
        200,
        "Content-Type: multipart/mixed; boundary=\"ans\"\r\n",
        &answer,
    );
    let outs = t.drain();
    let ok = outs
        .iter()
        .find_map(|o| match o {
            CallOutput::SendResponse { response, .. } => Some(response.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(ok.status.as_u16(), 200);
    assert_eq!(
        anchor.seen().last(),
        Some(&(Leg::B, SdpRole::Answer, Bytes::from(callee_sdp))),
        "an SDP in a multipart INVITE is an offer: B's SDP answers it"
    );
    assert_eq!(
        String::from_utf8_lossy(&ok.body),
        answer.replace(callee_sdp, &Marking::sdp(Leg::B, SdpRole::Answer))
    );
    let text = response(&ok);
    assert!(
        text.contains("Content-Type: multipart/mixed; boundary=\"ans\"\r\n"),
        "{text}"
    );
    assert!(
        text.contains(&format!("Content-Length: {}\r\n", ok.body.len())),
        "{text}"
    );
    assert!(!text.contains("192.0.2.20\r\nm=audio 20000"), "{text}");
}

#[test]
fn a_multipart_body_without_sdp_crosses_unchanged() {
    let body = "--b\r\nContent-Type: application/pidf+xml\r\n\r\n<presence/>\r\n--b--\r\n";
    let anchor = Marking::default();
    let mut t = T::with(
        &invite_with("multipart/mixed;boundary=b", body),
        Box::new(anchor.clone()),
    );
    let (inv, _) = T::sent_request(&t.drain(), Method::Invite);
    assert_eq!(inv.body, Bytes::from(body));
    assert!(anchor.seen().is_empty(), "no SDP, nothing for the anchor");
}

#[test]
fn an_unreadable_multipart_body_naming_sdp_is_refused_not_leaked() {
    // No close delimiter: where the SDP ends cannot be known.
    let body = format!(
        "--b\r\nContent-Type: application/sdp\r\n\r\n{CALLER_SDP}\r\n--b\r\nContent-Type: application/pidf+xml\r\n\r\n{PIDF}"
    );
    let anchor = Marking::default();
    let mut t = T::with(
        &invite_with("multipart/mixed;boundary=b", &body),
        Box::new(anchor.clone()),
    );
    let outs = t.drain();
    assert!(
        !outs
            .iter()
            .any(|o| matches!(o, CallOutput::SendRequest { .. })),
        "nothing goes to the carrier: {outs:#?}"
    );
    assert_eq!(T::responses(&outs), vec![(t.invite_tx, 488)]);
    assert!(anchor.seen().is_empty());
}

#[test]
fn an_unreadable_multipart_body_without_sdp_still_crosses() {
    let body = "--b\r\nContent-Type: application/pidf+xml\r\n\r\n<presence/>\r\n";
    let mut t = T::with(
        &invite_with("multipart/mixed;boundary=b", body),
        Box::new(Marking::default()),
    );
    let (inv, _) = T::sent_request(&t.drain(), Method::Invite);
    assert_eq!(inv.body, Bytes::from(body));
}

/// The B leg's Request-URI names the transport only when it is not UDP
/// (RFC 3261 §19.1.1: UDP is the default), and a probe has no user part.
#[test]
fn a_hops_request_uri_carries_the_transport_unless_udp() {
    let mut hop = hops().remove(0);
    assert_eq!(
        hop.target(Some("+15550100")),
        "sip:+15550100@192.0.2.20:5060"
    );
    assert_eq!(hop.target(None), "sip:192.0.2.20:5060");
    hop.dest = Peer {
        addr: addr("192.0.2.20:5061"),
        transport: TxTransport::Tls,
    };
    hop.uri_host = "carrier.example.net".to_owned();
    assert_eq!(
        hop.target(Some("+15550100")),
        "sip:+15550100@carrier.example.net;transport=tls"
    );
}
