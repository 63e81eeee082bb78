//! The UAS call driven by hand: the dialog of a session trunkd answers
//! itself, message by message.

use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use trunkd_core::cdr::CallOutcome;
use trunkd_sip::transaction::{Peer, ServerTxId};
use trunkd_sip::{Method, Request, SipMessage};

use crate::*;

/// A SIPREC INVITE (RFC 7866 §8.1.1 shape): multipart/mixed, an SDP of
/// two audio streams and the recording metadata.
const SIPREC_INVITE: &str = "INVITE sip:srs@vc-east.trunkd.local SIP/2.0\r\n\
Via: SIP/2.0/UDP 10.1.1.1:5062;branch=z9hG4bK-s1\r\n\
Max-Forwards: 70\r\n\
From: <sip:src@10.1.1.1>;tag=src-tag\r\n\
To: <sip:srs@vc-east.trunkd.local>\r\n\
Call-ID: rec-1@10.1.1.1\r\n\
CSeq: 101 INVITE\r\n\
Contact: <sip:src@10.1.1.1:5062>;+sip.src\r\n\
Record-Route: <sip:10.1.1.254;lr>\r\n\
Require: siprec\r\n\
Content-Type: multipart/mixed;boundary=foobar\r\n\
Content-Length: 265\r\n\r\n\
--foobar\r\n\
Content-Type: application/sdp\r\n\r\n\
v=0\r\n\
o=src 1 1 IN IP4 10.1.1.1\r\n\
s=-\r\n\
c=IN IP4 10.1.1.1\r\n\
t=0 0\r\n\
m=audio 4000 RTP/AVP 0\r\n\
a=label:1\r\n\
--foobar\r\n\
Content-Type: application/rs-metadata+xml\r\n\r\n\
<recording xmlns='urn:ietf:params:xml:ns:recording:1'/>\r\n\
--foobar--\r\n";

/// The SDP part of [`SIPREC_INVITE`], as the answerer must see it.
const OFFER: &str = "v=0\r\no=src 1 1 IN IP4 10.1.1.1\r\ns=-\r\nc=IN IP4 10.1.1.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\na=label:1";

const ANSWER: &str = "v=0\r\no=trunkd 1 1 IN IP4 127.0.0.1\r\ns=trunkd\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0\r\na=label:1\r\na=recvonly\r\n";

/// Answers every offer with [`ANSWER`], or refuses, and keeps the offers.
struct Fixed {
    offers: std::sync::Arc<std::sync::Mutex<Vec<Bytes>>>,
    refuse: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl SdpAnswerer for Fixed {
    fn answer(&mut self, offer: &Bytes) -> Result<Bytes, MediaRefusal> {
        self.offers.lock().unwrap().push(offer.clone());
        if self.refuse.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(MediaRefusal {
                status: 488,
                reason: "Not Acceptable Here (test)".into(),
            });
        }
        Ok(Bytes::from_static(ANSWER.as_bytes()))
    }
}

fn req(text: &str) -> Request {
    match SipMessage::parse(Bytes::from(text.to_owned())) {
        Ok(SipMessage::Request(r)) => r,
        other => panic!("not a request: {other:?}"),
    }
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// `n + 1` distinct server transaction ids from a real transaction layer.
fn server_txs(n: usize) -> Vec<ServerTxId> {
    use trunkd_sip::transaction::{Endpoint, Limits, TimerConfig, TxEvent};
    let mut ep = Endpoint::new(TimerConfig::default(), Limits::default());
    let now = Instant::now();
    let mut ids = Vec::new();
    for i in 0..=n {
        let r = req(&SIPREC_INVITE
            .replace("branch=z9hG4bK-s1", &format!("branch=z9hG4bK-t{i}"))
            .replace("CSeq: 101", &format!("CSeq: {}", 101 + i)));
        ep.handle_message(
            now,
            SipMessage::Request(r),
            Peer::udp(addr("10.1.1.1:5062")),
        );
        while let Some(ev) = ep.poll_event() {
            if let TxEvent::NewRequest { tx, .. } = ev {
                ids.push(tx);
            }
        }
    }
    ids
}

struct T {
    call: UasCall,
    now: Instant,
    txs: Vec<ServerTxId>,
    offers: std::sync::Arc<std::sync::Mutex<Vec<Bytes>>>,
    refuse: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl T {
    fn new(invite: &str, refuse: bool) -> T {
        let now = Instant::now();
        let txs = server_txs(16);
        let offers = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let refuse = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(refuse));
        let call = UasCall::new(NewUasCall {
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
            invite_tx: txs[0],
            a_dest: Peer::udp(addr("10.1.1.1:5062")),
            contact_feature: Some("+sip.srs"),
            answerer: Box::new(Fixed {
                offers: offers.clone(),
                refuse: refuse.clone(),
            }),
        });
        T {
            call,
            now,
            txs,
            offers,
            refuse,
        }
    }

    fn drain(&mut self) -> Vec<CallOutput> {
        std::iter::from_fn(|| self.call.poll_output()).collect()
    }

    fn in_dialog(&mut self, method: &str, cseq: u32, tx: usize, extra: &str, body: &str) {
        let text = format!(
            "{method} sip:trunkd@127.0.0.1:5060 SIP/2.0\r\n\
             Via: SIP/2.0/UDP 10.1.1.1:5062;branch=z9hG4bK-d{cseq}\r\n\
             Max-Forwards: 70\r\n\
             From: <sip:src@10.1.1.1>;tag=src-tag\r\n\
             To: <sip:srs@vc-east.trunkd.local>;tag=bdd732262feb6e95\r\n\
             Call-ID: rec-1@10.1.1.1\r\n\
             CSeq: {cseq} {method}\r\n\
             {extra}Content-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let input = if method == "ACK" {
            CallInput::Ack {
                leg: Leg::A,
                request: req(&text),
            }
        } else {
            CallInput::Request {
                leg: Leg::A,
                tx: self.txs[tx],
                request: req(&text),
            }
        };
        self.call.handle(self.now, input);
    }
}

fn responses(outs: &[CallOutput]) -> Vec<(ServerTxId, u16)> {
    outs.iter()
        .filter_map(|o| match o {
            CallOutput::SendResponse { tx, response } => Some((*tx, response.status.as_u16())),
            _ => None,
        })
        .collect()
}

fn ended(outs: &[CallOutput]) -> Option<CallEnd> {
    outs.iter().find_map(|o| match o {
        CallOutput::Event(CallEvent::Ended(e)) => Some(e.clone()),
        _ => None,
    })
}

#[test]
fn a_siprec_invite_is_answered_200_with_the_answerers_sdp_exactly() {
    let mut t = T::new(SIPREC_INVITE, false);
    let outs = t.drain();
    // Registered, nothing answered before the owner says so.
    assert!(matches!(
        &outs[..],
        [CallOutput::Register { leg: Leg::A, .. }]
    ));
    t.call.answer(t.now);
    let outs = t.drain();
    // The answerer saw the SDP part only.
    assert_eq!(t.offers.lock().unwrap()[0], OFFER.as_bytes());
    let CallOutput::SendResponse { tx, response } = &outs[0] else {
        panic!("{outs:?}");
    };
    assert_eq!(*tx, t.txs[0]);
    assert_eq!(
        String::from_utf8_lossy(&response.to_bytes()),
        format!(
            "SIP/2.0 200 OK\r\n\
Via: SIP/2.0/UDP 10.1.1.1:5062;branch=z9hG4bK-s1\r\n\
From: <sip:src@10.1.1.1>;tag=src-tag\r\n\
To: <sip:srs@vc-east.trunkd.local>;tag=bdd732262feb6e95\r\n\
Call-ID: rec-1@10.1.1.1\r\n\
CSeq: 101 INVITE\r\n\
Contact: <sip:trunkd@127.0.0.1:5060>;+sip.srs\r\n\
Record-Route: <sip:10.1.1.254;lr>\r\n\
Allow: INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE\r\n\
Content-Type: application/sdp\r\n\
Content-Length: {}\r\n\r\n{ANSWER}",
            ANSWER.len()
        )
    );
    assert!(matches!(
        outs[1],
        CallOutput::Event(CallEvent::Answered { hop: 0 })
    ));
    assert!(t.call.is_answered());
}

#[test]
fn ack_then_bye_ends_answered_with_200() {
    let mut t = T::new(SIPREC_INVITE, false);
    t.call.answer(t.now);
    t.drain();
    t.in_dialog("ACK", 101, 0, "", "");
    assert!(t.drain().is_empty());
    t.now += Duration::from_secs(30);
    t.in_dialog("BYE", 102, 1, "", "");
    let outs = t.drain();
    assert_eq!(responses(&outs), [(t.txs[1], 200)]);
    let end = ended(&outs).unwrap();
    assert_eq!(end.outcome, CallOutcome::Answered);
    assert_eq!(
        end.end
            .duration_since(end.answered.unwrap())
            .unwrap()
            .as_secs(),
        30
    );
    assert!(matches!(outs.last(), Some(CallOutput::Unregister { .. })));
    assert!(t.call.is_ended());
}

#[test]
fn cancel_before_the_answer_is_487_and_cancelled() {
    let mut t = T::new(SIPREC_INVITE, false);
    t.drain();
    t.call.handle(t.now, CallInput::Cancelled);
    let outs = t.drain();
    assert_eq!(responses(&outs), [(t.txs[0], 487)]);
    assert_eq!(ended(&outs).unwrap().outcome, CallOutcome::Cancelled);
    assert!(t.call.is_ended());
    // Answering afterwards does nothing.
    t.call.answer(t.now);
    assert!(t.drain().is_empty());
}

#[test]
fn cancel_after_the_answer_changes_nothing() {
    let mut t = T::new(SIPREC_INVITE, false);
    t.call.answer(t.now);
    t.drain();
    t.call.handle(t.now, CallInput::Cancelled);
    assert!(t.drain().is_empty());
    assert!(t.call.is_answered());
}

#[test]
fn re_invite_is_answered_again_and_update_info_options_get_200() {
    let mut t = T::new(SIPREC_INVITE, false);
    t.call.answer(t.now);
    t.drain();
    t.in_dialog("ACK", 101, 0, "", "");
    let sdp = "v=0\r\no=src 1 2 IN IP4 10.1.1.1\r\ns=-\r\nc=IN IP4 10.1.1.1\r\nt=0 0\r\nm=audio 4010 RTP/AVP 0\r\n";
    t.in_dialog(
        "INVITE",
        102,
        1,
        "Contact: <sip:src@10.1.1.2:5062>\r\nContent-Type: application/sdp\r\n",
        sdp,
    );
    let outs = t.drain();
    let CallOutput::SendResponse { response, .. } = &outs[0] else {
        panic!("{outs:?}");
    };
    assert_eq!(response.status.as_u16(), 200);
    assert_eq!(response.body, ANSWER.as_bytes());
    assert_eq!(t.offers.lock().unwrap()[1], sdp.as_bytes());
    // A re-INVITE without SDP: the last answer is trunkd's offer.
    t.in_dialog("INVITE", 103, 2, "", "");
    let outs = t.drain();
    let CallOutput::SendResponse { response, .. } = &outs[0] else {
        panic!("{outs:?}");
    };
    assert_eq!(response.body, ANSWER.as_bytes());
    assert_eq!(t.offers.lock().unwrap().len(), 2, "no new offer to answer");
    for (i, m) in ["UPDATE", "INFO", "OPTIONS"].iter().enumerate() {
        t.in_dialog(m, 104 + i as u32, 3, "", "");
        assert_eq!(responses(&t.drain()), [(t.txs[3], 200)], "{m}");
    }
    t.in_dialog("REFER", 110, 4, "", "");
    assert_eq!(responses(&t.drain()), [(t.txs[4], 405)]);
    // The BYE trunkd sends goes to the re-INVITE's new Contact, through
    // the route set of the initial INVITE.
    t.call.handle(t.now, CallInput::Hangup);
    let outs = t.drain();
    let (bye, dest) = outs
        .iter()
        .find_map(|o| match o {
            CallOutput::SendRequest { request, dest, .. } => Some((request.clone(), *dest)),
            _ => None,
        })
        .unwrap();
    assert_eq!(bye.method, Method::Bye);
    assert_eq!(dest.addr, addr("10.1.1.1:5062"));
    let text = String::from_utf8_lossy(&bye.to_bytes()).into_owned();
    assert!(
        text.starts_with("BYE sip:src@10.1.1.2:5062 SIP/2.0\r\n"),
        "{text}"
    );
    assert!(
        text.contains("\r\nRoute: <sip:10.1.1.254;lr>\r\n"),
        "{text}"
    );
    assert!(
        text.contains("\r\nFrom: <sip:srs@vc-east.trunkd.local>;tag=bdd732262feb6e95\r\n"),
        "{text}"
    );
    assert_eq!(ended(&outs).unwrap().outcome, CallOutcome::Answered);
}

/// A recording session asks to see the re-INVITEs it answered (their
/// updated SIPREC metadata): each answered one, in order, bounded; never
/// an UPDATE, and none unless asked.
#[test]
fn kept_re_invites_are_polled_in_order_and_bounded() {
    let sdp = "v=0\r\no=src 1 2 IN IP4 10.1.1.1\r\ns=-\r\nc=IN IP4 10.1.1.1\r\nt=0 0\r\nm=audio 4010 RTP/AVP 0\r\n";
    let mut plain = T::new(SIPREC_INVITE, false);
    plain.call.answer(plain.now);
    plain.drain();
    plain.in_dialog("INVITE", 102, 0, "Content-Type: application/sdp\r\n", sdp);
    plain.drain();
    assert!(plain.call.poll_reoffer().is_none(), "not kept unless asked");

    let mut t = T::new(SIPREC_INVITE, false);
    t.call.keep_reoffers();
    t.call.answer(t.now);
    t.drain();
    assert!(
        t.call.poll_reoffer().is_none(),
        "the initial INVITE is not one"
    );
    let n = crate::uas::MAX_REOFFERS as u32 + 2;
    for i in 0..n {
        t.in_dialog(
            "INVITE",
            102 + i,
            1 + i as usize,
            "Content-Type: application/sdp\r\n",
            sdp,
        );
        t.drain();
    }
    t.in_dialog(
        "UPDATE",
        200,
        1 + n as usize,
        "Content-Type: application/sdp\r\n",
        sdp,
    );
    t.drain();
    let seqs: Vec<u32> = std::iter::from_fn(|| t.call.poll_reoffer())
        .map(|r| r.headers.cseq().unwrap().seq)
        .collect();
    assert_eq!(seqs, (104..102 + n).collect::<Vec<_>>());
}

#[test]
fn a_refused_offer_is_its_status_and_a_refused_re_invite_keeps_the_session() {
    let mut t = T::new(SIPREC_INVITE, true);
    t.call.answer(t.now);
    let outs = t.drain();
    assert_eq!(responses(&outs), [(t.txs[0], 488)]);
    assert_eq!(
        ended(&outs).unwrap().outcome,
        CallOutcome::Failed {
            status: 488,
            reason: "Not Acceptable Here (test)".into()
        }
    );
    let mut t = T::new(SIPREC_INVITE, false);
    t.call.answer(t.now);
    t.drain();
    t.refuse.store(true, std::sync::atomic::Ordering::Relaxed);
    t.in_dialog(
        "INVITE",
        102,
        1,
        "Content-Type: application/sdp\r\n",
        "v=0\r\no=src 1 2 IN IP4 10.1.1.1\r\ns=-\r\nc=IN IP4 10.1.1.1\r\nt=0 0\r\nm=audio 4010 RTP/AVP 0\r\n",
    );
    assert_eq!(responses(&t.drain()), [(t.txs[1], 488)]);
    assert!(t.call.is_answered());
}

#[test]
fn no_ack_ends_the_call_with_a_bye() {
    let mut t = T::new(SIPREC_INVITE, false);
    t.call.answer(t.now);
    t.drain();
    t.call.handle(t.now, CallInput::AckTimeout { leg: Leg::A });
    let outs = t.drain();
    assert!(outs.iter().any(|o| matches!(
        o,
        CallOutput::SendRequest { request, .. } if request.method == Method::Bye
    )));
    assert!(ended(&outs).is_some());
    assert!(t.call.is_ended());
}

#[test]
fn an_invite_without_an_offer_is_488() {
    let plain = SIPREC_INVITE
        .split("Content-Type: multipart")
        .next()
        .unwrap()
        .to_owned()
        + "Content-Length: 0\r\n\r\n";
    let mut t = T::new(&plain, false);
    t.call.answer(t.now);
    let outs = t.drain();
    assert_eq!(responses(&outs), [(t.txs[0], 488)]);
    assert!(t.offers.lock().unwrap().is_empty());
    assert!(t.call.is_ended());
}

#[test]
fn requests_before_the_answer_are_481() {
    let mut t = T::new(SIPREC_INVITE, false);
    t.drain();
    t.in_dialog("INFO", 102, 1, "", "");
    assert_eq!(responses(&t.drain()), [(t.txs[1], 481)]);
}

#[test]
fn an_info_with_a_body_is_answered_200_and_handed_to_the_owner() {
    let mut t = T::new(SIPREC_INVITE, false);
    t.call.answer(t.now);
    t.drain();
    t.in_dialog(
        "INFO",
        102,
        1,
        "Content-Type: application/dtmf-relay\r\n",
        "Signal=5\r\nDuration=160\r\n",
    );
    let outs = t.drain();
    assert_eq!(responses(&outs), [(t.txs[1], 200)]);
    let info: Vec<_> = outs
        .iter()
        .filter_map(|o| match o {
            CallOutput::Event(CallEvent::Info { content_type, body }) => {
                Some((content_type.clone(), body.clone()))
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        info,
        [(
            "application/dtmf-relay".to_owned(),
            Bytes::from_static(b"Signal=5\r\nDuration=160\r\n")
        )]
    );
    // An INFO without a body (a keep-alive) is only answered.
    t.in_dialog("INFO", 103, 2, "", "");
    let outs = t.drain();
    assert_eq!(responses(&outs), [(t.txs[2], 200)]);
    assert_eq!(outs.len(), 1);
}
