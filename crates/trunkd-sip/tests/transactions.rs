//! Transaction-layer scenarios (RFC 3261 §17, RFC 6026), each driven
//! through two endpoints over the simulated network of `common`, with a
//! fake clock: every timer runs in microseconds of real time.

mod common;

use std::time::Duration;

use common::*;
use proptest::prelude::*;
use trunkd_sip::{
    Endpoint, Limits, Peer, SipMessage, TimerConfig, TxError, TxEvent, TxId, TxState, TxTransport,
};

fn secs(p: &Pair, w: &Wire) -> f64 {
    p.elapsed(w.at)
}

fn times(p: &Pair, from: Side, kind: &str) -> Vec<f64> {
    p.net.sent(from, kind).iter().map(|w| secs(p, w)).collect()
}

fn event_time(p: &Pair, uac: bool, pred: impl Fn(&TxEvent) -> bool) -> f64 {
    let events = if uac { &p.uac_events } else { &p.uas_events };
    let (at, _) = events
        .iter()
        .find(|(_, e)| pred(e))
        .expect("the event happened");
    p.elapsed(*at)
}

/// §17.1.1 / §17.2.1 / RFC 6026: INVITE → 100 → 180 → 200 → ACK, no loss.
#[test]
fn invite_100_180_200_ack_over_udp() {
    let mut p = Pair::udp();
    p.uas_tu = uas_answering(&[180, 200]);
    p.uac_tu = uac_acking();
    let tx = p
        .uac
        .send_request(p.now, invite("z9hG4bKinv1"), p.uas_peer(), None)
        .unwrap();
    assert_eq!(p.uac.state(TxId::Client(tx)), Some(TxState::Calling));
    p.finish();

    assert_eq!(
        p.uac_kinds(),
        [
            "Response 100 INVITE",
            "Response 180 INVITE",
            "Response 200 INVITE",
            "Terminated client"
        ]
    );
    assert_eq!(
        p.uas_kinds(),
        ["NewRequest INVITE", "Ack", "Terminated server"]
    );
    // Exactly one of each on the wire: nothing was lost, nothing resent.
    for (side, kind) in [
        (Side::Uac, "INVITE"),
        (Side::Uas, "100/INVITE"),
        (Side::Uas, "180/INVITE"),
        (Side::Uas, "200/INVITE"),
        (Side::Uac, "ACK"),
    ] {
        assert_eq!(p.net.count(side, kind), 1, "{kind}");
    }
    assert_eq!(p.net.log.len(), 5);
    // Accepted lasts 64*T1 on both sides (Timers L and M).
    let uas_end = event_time(&p, false, |e| matches!(e, TxEvent::Terminated { .. }));
    let uac_end = event_time(&p, true, |e| matches!(e, TxEvent::Terminated { .. }));
    assert!((uas_end - 32.01).abs() < 1e-6, "{uas_end}");
    assert!((uac_end - 32.02).abs() < 1e-6, "{uac_end}");
}

/// The same call with 30% loss each way: retransmissions (Timer A, the 100
/// resent for a retransmitted INVITE, 2xx retransmission, re-ACK) complete
/// it.
#[test]
fn invite_call_completes_with_30_percent_loss() {
    let mut retransmits = 0;
    for seed in 1..=20 {
        let model = NetModel {
            loss_per_mille: 300,
            ..NetModel::default()
        };
        let mut p = Pair::new(TxTransport::Udp, seed, model);
        p.uas_tu = uas_answering(&[180, 200]);
        p.uac_tu = uac_acking();
        p.uac
            .send_request(p.now, invite("z9hG4bKlossy"), p.uas_peer(), None)
            .unwrap();
        p.finish();
        let kinds = p.uac_kinds();
        assert!(
            kinds.contains(&"Response 200 INVITE".to_string()),
            "seed {seed}: {kinds:?}"
        );
        assert!(p.uas_kinds().contains(&"Ack".to_string()), "seed {seed}");
        assert!(!kinds.contains(&"Timeout".to_string()));
        let invites = p.net.count(Side::Uac, "INVITE");
        let oks = p.net.count(Side::Uas, "200/INVITE");
        retransmits += invites - 1 + oks - 1;
    }
    assert!(
        retransmits >= 10,
        "{retransmits} retransmissions over 20 lossy calls"
    );
}

/// §17.1.1.3: the client transaction ACKs a 486 itself (same branch, To
/// with the UAS tag, CSeq ACK, the INVITE's Route); the server transaction
/// absorbs it; the TU sees the 486 once although it was retransmitted.
#[test]
fn invite_486_is_acked_by_the_client_layer_and_absorbed() {
    let mut p = Pair::udp();
    p.uas_tu = uas_answering(&[486]);
    // The first ACK is lost: Timer G resends the 486 and the UAC re-ACKs.
    p.net.filter = Some(Box::new(|from, kind, nth| {
        from == Side::Uac && kind == "ACK" && nth == 0
    }));
    p.uac
        .send_request(p.now, invite("z9hG4bKbusy"), p.uas_peer(), None)
        .unwrap();
    p.finish();

    assert_eq!(
        p.uac_kinds(),
        [
            "Response 100 INVITE",
            "Response 486 INVITE",
            "Terminated client"
        ]
    );
    assert_eq!(
        p.uas_kinds(),
        ["NewRequest INVITE", "Terminated server"],
        "ACK absorbed"
    );
    assert_eq!(times(&p, Side::Uas, "486/INVITE"), [0.01, 0.51]);
    assert_eq!(p.net.count(Side::Uac, "ACK"), 2);
    let ack = String::from_utf8(p.net.sent(Side::Uac, "ACK")[0].bytes.to_vec()).unwrap();
    assert_eq!(
        ack,
        "ACK sip:bob@192.0.2.2 SIP/2.0\r\n\
         Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKbusy;rport\r\n\
         Route: <sip:192.0.2.2;lr>\r\n\
         Max-Forwards: 70\r\n\
         From: Alice <sip:alice@192.0.2.1>;tag=alice-tag\r\n\
         To: Bob <sip:bob@192.0.2.2>;tag=bob-tag\r\n\
         Call-ID: call-1@192.0.2.1\r\n\
         CSeq: 1 ACK\r\n\
         Content-Length: 0\r\n\r\n"
    );
    // Timer D (32 s) on the client; Timer I (T4) after the ACK on the server.
    let uac_end = event_time(&p, true, |e| matches!(e, TxEvent::Terminated { .. }));
    assert!((uac_end - 32.02).abs() < 1e-6, "{uac_end}");
    let uas_end = event_time(&p, false, |e| matches!(e, TxEvent::Terminated { .. }));
    assert!((uas_end - (0.53 + 5.0)).abs() < 1e-6, "{uas_end}");
}

/// §17.1.1.2: a silent UAS. Timer A doubles (0, .5, 1.5, 3.5, 7.5, 15.5,
/// 31.5 s) and Timer B fires at 64*T1 = 32 s: Timeout, then Terminated.
#[test]
fn timer_b_fires_when_the_uas_is_silent() {
    let wall = std::time::Instant::now();
    let mut p = Pair::udp();
    p.net.blackhole = Some(Side::Uas);
    let tx = p
        .uac
        .send_request(p.now, invite("z9hG4bKsilent"), p.uas_peer(), None)
        .unwrap();
    p.finish();
    assert_eq!(
        times(&p, Side::Uac, "INVITE"),
        [0.0, 0.5, 1.5, 3.5, 7.5, 15.5, 31.5]
    );
    assert_eq!(p.uac_kinds(), ["Timeout", "Terminated client"]);
    assert_eq!(p.uac_events[0].1, TxEvent::Timeout { tx });
    assert_eq!(p.elapsed(p.uac_events[0].0), 32.0);
    assert!(wall.elapsed() < Duration::from_secs(2), "fake time");
}

/// A caller-supplied Timer B (failover) replaces 64*T1.
#[test]
fn per_request_timer_b_for_failover() {
    let mut p = Pair::udp();
    p.net.blackhole = Some(Side::Uas);
    p.uac
        .send_request(
            p.now,
            invite("z9hG4bKfailover"),
            p.uas_peer(),
            Some(Duration::from_secs(2)),
        )
        .unwrap();
    p.finish();
    assert_eq!(times(&p, Side::Uac, "INVITE"), [0.0, 0.5, 1.5]);
    assert_eq!(p.elapsed(p.uac_events[0].0), 2.0);
    assert_eq!(p.uac_kinds(), ["Timeout", "Terminated client"]);
}

/// §17.1.1.2 over TCP: no Timer A, one INVITE on the wire, Timer B still
/// fires; Timers D and I are zero, so a 486 call ends at once.
#[test]
fn tcp_has_no_retransmissions_and_timer_b_still_fires() {
    let mut p = Pair::new(TxTransport::Tcp, 1, NetModel::default());
    p.net.blackhole = Some(Side::Uas);
    let inv = request("INVITE", "z9hG4bKtcp", "call-tcp", 1, TxTransport::Tcp);
    p.uac.send_request(p.now, inv, p.uas_peer(), None).unwrap();
    p.finish();
    assert_eq!(p.net.count(Side::Uac, "INVITE"), 1);
    assert_eq!(p.uac_kinds(), ["Timeout", "Terminated client"]);
    assert_eq!(p.elapsed(p.uac_events[0].0), 32.0);

    let mut p = Pair::new(TxTransport::Tcp, 1, NetModel::default());
    p.uas_tu = uas_answering(&[486]);
    let inv = request("INVITE", "z9hG4bKtcp2", "call-tcp2", 1, TxTransport::Tcp);
    p.uac.send_request(p.now, inv, p.uas_peer(), None).unwrap();
    p.finish();
    assert_eq!(
        p.uac_kinds(),
        [
            "Response 100 INVITE",
            "Response 486 INVITE",
            "Terminated client"
        ]
    );
    assert_eq!(p.uas_kinds(), ["NewRequest INVITE", "Terminated server"]);
    let uac_end = event_time(&p, true, |e| matches!(e, TxEvent::Terminated { .. }));
    assert!((uac_end - 0.02).abs() < 1e-6, "Timer D is zero: {uac_end}");
    let uas_end = event_time(&p, false, |e| matches!(e, TxEvent::Terminated { .. }));
    assert!((uas_end - 0.03).abs() < 1e-6, "Timer I is zero: {uas_end}");
    assert_eq!(p.net.log.len(), 4, "INVITE, 100, 486, ACK: nothing resent");
}

/// §17.1.2 / §17.2.2: OPTIONS and BYE over a lossy network complete
/// through Timer E retransmissions; the server answers retransmissions with
/// its last response.
#[test]
fn non_invite_with_loss() {
    for seed in 1..=10 {
        for method in ["OPTIONS", "BYE"] {
            let model = NetModel {
                loss_per_mille: 300,
                ..NetModel::default()
            };
            let mut p = Pair::new(TxTransport::Udp, seed, model);
            p.uas_tu = uas_answering(&[]);
            let req = request(method, "z9hG4bKni", "call-ni", 2, TxTransport::Udp);
            p.uac.send_request(p.now, req, p.uas_peer(), None).unwrap();
            p.finish();
            assert_eq!(
                p.uac_kinds(),
                [
                    format!("Response 200 {method}"),
                    "Terminated client".to_string()
                ],
                "seed {seed}"
            );
            assert_eq!(
                p.uas_kinds(),
                [format!("NewRequest {method}"), "Terminated server".into()]
            );
            let sent = p.net.count(Side::Uac, method);
            let answered = p.net.count(Side::Uas, &format!("200/{method}"));
            assert!(sent >= answered, "a 200 per request that arrived");
        }
    }
}

/// §17.1.2.2: Timer E doubles to T2 (0, .5, 1.5, 3.5, 7.5, then every 4 s)
/// and Timer F fires at 32 s.
#[test]
fn timer_f_fires_for_an_unanswered_bye() {
    let mut p = Pair::udp();
    p.net.blackhole = Some(Side::Uas);
    let bye = request("BYE", "z9hG4bKbye", "call-bye", 2, TxTransport::Udp);
    p.uac.send_request(p.now, bye, p.uas_peer(), None).unwrap();
    p.finish();
    assert_eq!(
        times(&p, Side::Uac, "BYE"),
        [0.0, 0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    );
    assert_eq!(p.uac_kinds(), ["Timeout", "Terminated client"]);
    assert_eq!(p.elapsed(p.uac_events[0].0), 32.0);
}

/// §17.1.2.2: after a provisional, Timer E fires every T2; each
/// retransmission is answered with the last provisional (§17.2.2). The
/// TU never answers finally: Timer F at the client; the server drops its
/// transaction after 128*T1.
#[test]
fn non_invite_proceeding_retransmits_every_t2() {
    let mut p = Pair::udp();
    p.uas_tu = Box::new(|ctx, e| {
        if let TxEvent::NewRequest { tx, request, .. } = e {
            answer(ctx, *tx, request, 100);
        }
    });
    let req = request("OPTIONS", "z9hG4bKslow", "call-slow", 1, TxTransport::Udp);
    p.uac.send_request(p.now, req, p.uas_peer(), None).unwrap();
    p.finish();
    let t = times(&p, Side::Uac, "OPTIONS");
    assert_eq!(t, [0.0, 0.5, 4.5, 8.5, 12.5, 16.5, 20.5, 24.5, 28.5]);
    assert_eq!(p.net.count(Side::Uas, "100/OPTIONS"), t.len());
    // Every provisional is passed up (§17.1.2.2), then F fires.
    let mut expected = vec!["Response 100 OPTIONS"; t.len()];
    expected.extend(["Timeout", "Terminated client"]);
    assert_eq!(p.uac_kinds(), expected);
    let uas_end = event_time(&p, false, |e| matches!(e, TxEvent::Terminated { .. }));
    assert!((uas_end - 64.01).abs() < 1e-6, "{uas_end}");
}

/// §9.1 / §9.2: CANCEL after a provisional. The UAS layer answers the
/// CANCEL 200 and reports Cancelled; the TU answers 487; the UAC layer ACKs.
#[test]
fn cancel_after_provisional() {
    let mut p = Pair::udp();
    p.uas_tu = uas_answering(&[180]);
    let cancel_id = std::rc::Rc::new(std::cell::Cell::new(None));
    let c = cancel_id.clone();
    p.uac_tu = Box::new(move |ctx, e| {
        if let TxEvent::Response { tx, response } = e {
            if response.status.as_u16() == 180 {
                c.set(Some(ctx.ep.cancel(ctx.now, *tx).expect("cancellable")));
            }
        }
    });
    let inv = p
        .uac
        .send_request(p.now, invite("z9hG4bKcancel"), p.uas_peer(), None)
        .unwrap();
    p.finish();
    let cancel_tx = cancel_id.get().expect("cancelled");
    assert_eq!(
        p.uac_kinds(),
        [
            "Response 100 INVITE",
            "Response 180 INVITE",
            "Response 200 CANCEL",
            "Response 487 INVITE",
            "Terminated client",
            "Terminated client"
        ]
    );
    // The CANCEL ends after Timer K (T4), the INVITE after Timer D (32 s).
    let ends: Vec<(f64, TxId)> = p
        .uac_events
        .iter()
        .filter_map(|(at, e)| match e {
            TxEvent::Terminated { tx } => Some((p.elapsed(*at), *tx)),
            _ => None,
        })
        .collect();
    assert_eq!(ends[0].1, TxId::Client(cancel_tx));
    assert_eq!(ends[1].1, TxId::Client(inv));
    assert!(
        p.uac_events.iter().any(|(_, e)| matches!(e,
        TxEvent::Response { tx, response } if *tx == cancel_tx && response.status.as_u16() == 200))
    );
    assert!(p.uac_events.iter().any(|(_, e)| matches!(e,
        TxEvent::Response { tx, response } if *tx == inv && response.status.as_u16() == 487)));
    assert_eq!(
        p.uas_kinds(),
        ["NewRequest INVITE", "Cancelled", "Terminated server"]
    );
    let cancel = String::from_utf8(p.net.sent(Side::Uac, "CANCEL")[0].bytes.to_vec()).unwrap();
    assert!(cancel.starts_with("CANCEL sip:bob@192.0.2.2 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKcancel;rport\r\n"));
    assert!(cancel.contains("\r\nCSeq: 1 CANCEL\r\n"));
    assert!(
        cancel.contains("\r\nTo: Bob <sip:bob@192.0.2.2>\r\n"),
        "no tag"
    );
    let ok = String::from_utf8(p.net.sent(Side::Uas, "200/CANCEL")[0].bytes.to_vec()).unwrap();
    assert!(
        ok.contains(";tag=bob-tag"),
        "the 200 to CANCEL reuses the INVITE's To tag"
    );
    assert_eq!(p.net.count(Side::Uac, "ACK"), 1);
}

/// §9.1: a CANCEL requested before any provisional is held (Pending) and
/// sent when the first provisional arrives.
#[test]
fn cancel_before_provisional_waits_for_one() {
    let mut p = Pair::udp();
    p.uas.set_send_trying(false);
    p.uas_tu = Box::new(|ctx, e| {
        if let TxEvent::Cancelled { tx } = e {
            let req = ctx.ep.request(TxId::Server(*tx)).unwrap().clone();
            answer(ctx, *tx, &req, 487);
        }
    });
    let inv = p
        .uac
        .send_request(p.now, invite("z9hG4bKearly"), p.uas_peer(), None)
        .unwrap();
    let cancel = p.uac.cancel(p.now, inv).unwrap();
    assert_eq!(p.uac.cancel(p.now, inv), Ok(cancel), "idempotent");
    assert_eq!(p.uac.state(TxId::Client(cancel)), Some(TxState::Pending));
    // No provisional yet: the INVITE is retransmitted, no CANCEL goes out.
    p.drive_until(100, |p| p.net.count(Side::Uac, "INVITE") == 3);
    assert_eq!(p.net.count(Side::Uac, "CANCEL"), 0);
    assert_eq!(p.uas_kinds(), ["NewRequest INVITE"]);
    let (stx, req) = match &p.uas_events[0].1 {
        TxEvent::NewRequest { tx, request, .. } => (*tx, request.clone()),
        e => panic!("{e:?}"),
    };
    let ringing = trunkd_sip::response_for(
        &req,
        trunkd_sip::StatusCode::RINGING,
        "Ringing",
        Some(UAS_TAG),
    );
    p.uas.send_response(p.now, stx, ringing).unwrap();
    p.finish();
    let cancels = times(&p, Side::Uac, "CANCEL");
    assert_eq!(cancels.len(), 1);
    assert!(cancels[0] > 1.5, "sent after the 180 arrived");
    // The INVITE retransmitted at 1.5 s crossed the 180: the UAS answered
    // it with the 180 again, and every provisional is passed up.
    assert_eq!(
        p.uac_kinds(),
        [
            "Response 180 INVITE",
            "Response 180 INVITE",
            "Response 200 CANCEL",
            "Response 487 INVITE",
            "Terminated client",
            "Terminated client"
        ]
    );
    assert_eq!(p.net.count(Side::Uac, "CANCEL"), 1, "sent once");
    assert_eq!(
        p.uas_kinds(),
        ["NewRequest INVITE", "Cancelled", "Terminated server"]
    );
}

/// §9.1: a pending CANCEL is dropped when a final response comes first.
#[test]
fn pending_cancel_is_dropped_by_a_final_response() {
    let mut p = Pair::udp();
    p.uas.set_send_trying(false);
    p.uas_tu = uas_answering(&[200]);
    p.uac_tu = uac_acking();
    let inv = p
        .uac
        .send_request(p.now, invite("z9hG4bKrace"), p.uas_peer(), None)
        .unwrap();
    let cancel = p.uac.cancel(p.now, inv).unwrap();
    p.finish();
    assert_eq!(p.net.count(Side::Uac, "CANCEL"), 0);
    assert_eq!(
        p.uac_kinds(),
        [
            "Response 200 INVITE",
            "Terminated client",
            "Terminated client"
        ]
    );
    assert_eq!(
        p.uac_events[1].1,
        TxEvent::Terminated {
            tx: TxId::Client(cancel)
        }
    );
    assert_eq!(
        p.uas_kinds(),
        ["NewRequest INVITE", "Ack", "Terminated server"]
    );
}

/// §9.2: a CANCEL that matches no transaction gets a stateless 481.
#[test]
fn cancel_matching_nothing_gets_481() {
    let mut p = Pair::udp();
    let cancel = request("CANCEL", "z9hG4bKnothing", "call-x", 1, TxTransport::Udp);
    p.uac
        .send_request(p.now, cancel, p.uas_peer(), None)
        .unwrap();
    p.finish();
    assert_eq!(p.uac_kinds(), ["Response 481 CANCEL", "Terminated client"]);
    assert!(p.uas_kinds().is_empty(), "no event at the UAS");
}

/// §13.3.1.4 / RFC 6026: the UAS retransmits the 2xx (T1, 2T1, ..) while
/// ACKs are lost; the UAC passes every 2xx up and its TU ACKs each; the
/// first ACK that arrives stops the retransmissions.
#[test]
fn ok_is_retransmitted_until_the_ack_arrives() {
    let mut p = Pair::udp();
    p.uas_tu = uas_answering(&[200]);
    p.uac_tu = uac_acking();
    p.net.filter = Some(Box::new(|from, kind, nth| {
        from == Side::Uac && kind == "ACK" && nth < 2
    }));
    p.uac
        .send_request(p.now, invite("z9hG4bKretx"), p.uas_peer(), None)
        .unwrap();
    p.finish();
    assert_eq!(times(&p, Side::Uas, "200/INVITE"), [0.01, 0.51, 1.51]);
    assert_eq!(times(&p, Side::Uac, "ACK"), [0.02, 0.52, 1.52]);
    assert_eq!(
        p.uac_kinds(),
        [
            "Response 100 INVITE",
            "Response 200 INVITE",
            "Response 200 INVITE",
            "Response 200 INVITE",
            "Terminated client"
        ]
    );
    assert_eq!(
        p.uas_kinds(),
        ["NewRequest INVITE", "Ack", "Terminated server"]
    );
}

/// §13.3.1.4: no ACK within 64*T1 → AckTimeout (the TU sends BYE). The 2xx
/// went out at 0, .5, 1.5, 3.5, 7.5, then every T2.
#[test]
fn ack_timeout_when_no_ack_comes() {
    let mut p = Pair::udp();
    p.uas_tu = uas_answering(&[200]);
    p.uac
        .send_request(p.now, invite("z9hG4bKnoack"), p.uas_peer(), None)
        .unwrap();
    p.finish();
    let sent: Vec<f64> = times(&p, Side::Uas, "200/INVITE")
        .iter()
        .map(|t| ((t - 0.01) * 1e6).round() / 1e6)
        .collect();
    assert_eq!(
        sent,
        [0.0, 0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    );
    assert_eq!(
        p.uas_kinds(),
        ["NewRequest INVITE", "AckTimeout", "Terminated server"]
    );
    let t = event_time(&p, false, |e| matches!(e, TxEvent::AckTimeout { .. }));
    assert!((t - 32.01).abs() < 1e-6, "{t}");
    // The UAC passed every 2xx up (its TU did not ACK).
    let oks = p
        .uac_kinds()
        .iter()
        .filter(|k| *k == "Response 200 INVITE")
        .count();
    assert_eq!(oks, 11);
}

/// §13.2.2.4: a 2xx retransmitted after the client transaction ended is a
/// StrayResponse, which the TU ACKs again.
#[test]
fn stray_2xx_after_timer_m() {
    let mut p = Pair::udp();
    p.uas_tu = uas_answering(&[200]);
    p.uac_tu = uac_acking();
    // All ACKs are lost, so the UAS retransmits its 2xx for 32 s; with
    // T1 = 100 ms the UAC's Timer M (64*T1) ends its transaction at 6.4 s.
    p.uac = Endpoint::new(
        TimerConfig {
            t1: Duration::from_millis(100),
            ..TimerConfig::default()
        },
        Limits::default(),
    );
    p.net.filter = Some(Box::new(|from, kind, _| from == Side::Uac && kind == "ACK"));
    p.uac
        .send_request(p.now, invite("z9hG4bKstray"), p.uas_peer(), None)
        .unwrap();
    p.finish();
    let strays = p
        .uac_kinds()
        .iter()
        .filter(|k| k.starts_with("StrayResponse 200"))
        .count();
    assert!(strays > 0);
    assert_eq!(
        p.net.count(Side::Uac, "ACK"),
        p.net.count(Side::Uas, "200/INVITE"),
        "every 2xx was ACKed, stray or not"
    );
    assert!(p.uas_kinds().contains(&"AckTimeout".to_string()));
}

/// §8.2.2.2: the same request (From tag, Call-ID, CSeq) arriving on a
/// second branch while the first is live gets a stateless 482.
#[test]
fn merged_request_gets_482() {
    let mut p = Pair::udp();
    p.uas_tu = Box::new(|_, _| {}); // the TU is still thinking
    p.uac
        .send_request(p.now, invite("z9hG4bKpath1"), p.uas_peer(), None)
        .unwrap();
    let second = p
        .uac
        .send_request(p.now, invite("z9hG4bKpath2"), p.uas_peer(), None)
        .unwrap();
    p.drive_until(100, |p| p.uac_kinds().len() >= 3);
    assert!(p.uac_events.iter().any(|(_, e)| matches!(e,
        TxEvent::Response { tx, response } if *tx == second && response.status.as_u16() == 482)));
    assert_eq!(
        p.uas_kinds(),
        ["NewRequest INVITE"],
        "no event for the merged request"
    );
    assert_eq!(p.uas.len(), 1);
    let loop_detected =
        String::from_utf8(p.net.sent(Side::Uas, "482/INVITE")[0].bytes.to_vec()).unwrap();
    assert!(loop_detected.starts_with("SIP/2.0 482 Loop Detected\r\n"));
    assert!(loop_detected.contains("branch=z9hG4bKpath2"));
    // Let the first INVITE be answered so everything ends.
    let (stx, req) = match &p.uas_events[0].1 {
        TxEvent::NewRequest { tx, request, .. } => (*tx, request.clone()),
        e => panic!("{e:?}"),
    };
    let busy = trunkd_sip::response_for(
        &req,
        trunkd_sip::StatusCode::BUSY_HERE,
        "Busy Here",
        Some(UAS_TAG),
    );
    p.uas.send_response(p.now, stx, busy).unwrap();
    p.finish();
}

/// Limits: at `max_transactions` a new request gets a stateless 503 with
/// Retry-After, and `send_request` fails with TooManyTransactions.
#[test]
fn transaction_cap_gets_503() {
    let mut p = Pair::udp();
    p.uas = Endpoint::new(
        TimerConfig::default(),
        Limits {
            max_transactions: 1,
        },
    );
    p.uas_tu = Box::new(|_, _| {}); // keeps the first OPTIONS open
    p.uac = Endpoint::new(
        TimerConfig::default(),
        Limits {
            max_transactions: 2,
        },
    );
    let a = request("OPTIONS", "z9hG4bKcap1", "cap-1", 1, TxTransport::Udp);
    let b = request("OPTIONS", "z9hG4bKcap2", "cap-2", 1, TxTransport::Udp);
    let c = request("OPTIONS", "z9hG4bKcap3", "cap-3", 1, TxTransport::Udp);
    p.uac.send_request(p.now, a, p.uas_peer(), None).unwrap();
    let second = p.uac.send_request(p.now, b, p.uas_peer(), None).unwrap();
    assert_eq!(
        p.uac.send_request(p.now, c, p.uas_peer(), None),
        Err(TxError::TooManyTransactions)
    );
    p.drive_until(100, |p| !p.uac_events.is_empty());
    match &p.uac_events[0].1 {
        TxEvent::Response { tx, response } => {
            assert_eq!(*tx, second);
            assert_eq!(response.status.as_u16(), 503);
            assert_eq!(&response.headers.get("Retry-After").unwrap()[..], b"5");
        }
        e => panic!("{e:?}"),
    }
    assert_eq!(p.uas_kinds(), ["NewRequest OPTIONS"]);
    // Both refusals are counted, for the daemon's metric.
    assert_eq!(p.uac.limit_refusals(), 1);
    assert_eq!(p.uas.limit_refusals(), 1);
    p.finish();
    assert_eq!(
        p.uac_kinds(),
        [
            "Response 503 OPTIONS",
            "Terminated client",
            "Timeout",
            "Terminated client"
        ]
    );
    // A raised limit (a reload) lets the refused request in.
    let c = request("OPTIONS", "z9hG4bKcap3", "cap-3", 1, TxTransport::Udp);
    p.uac.set_limits(Limits {
        max_transactions: 10,
    });
    assert!(p.uac.send_request(p.now, c, p.uas_peer(), None).is_ok());
}

/// §17.2.3 for RFC 2543 peers (no magic cookie): a retransmitted INVITE is
/// matched by Request-URI, tags, Call-ID, CSeq and top Via; the ACK for the
/// 486, carrying the UAS's To tag, is absorbed.
#[test]
fn rfc2543_requests_are_matched_without_branch() {
    let mut ep = Endpoint::new(TimerConfig::default(), Limits::default());
    let now = std::time::Instant::now();
    let peer = Peer::udp(addr(UAC_ADDR));
    let text = |method: &str, to_tag: &str| {
        format!(
            "{method} sip:bob@192.0.2.2 SIP/2.0\n\
             Via: SIP/2.0/UDP 192.0.2.1:5060\n\
             From: <sip:alice@192.0.2.1>;tag=a1\n\
             To: <sip:bob@192.0.2.2>{to_tag}\n\
             Call-ID: old@192.0.2.1\n\
             CSeq: 5 {method}\n\n"
        )
    };
    let msg = |t: String| SipMessage::Request(parse_request(&t));
    ep.handle_message(now, msg(text("INVITE", "")), peer);
    let tx = match ep.poll_event() {
        Some(TxEvent::NewRequest { tx, .. }) => tx,
        e => panic!("{e:?}"),
    };
    assert!(ep.poll_transmit().is_some(), "100 Trying");
    ep.handle_message(now, msg(text("INVITE", "")), peer);
    assert_eq!(ep.poll_event(), None, "a retransmission");
    assert!(ep.poll_transmit().is_some(), "100 resent");
    let req = ep.request(TxId::Server(tx)).unwrap().clone();
    let busy = trunkd_sip::response_for(
        &req,
        trunkd_sip::StatusCode::BUSY_HERE,
        "Busy Here",
        Some("b9"),
    );
    ep.send_response(now, tx, busy).unwrap();
    assert!(ep.poll_transmit().is_some());
    ep.handle_message(now, msg(text("ACK", ";tag=b9")), peer);
    assert_eq!(ep.poll_event(), None, "ACK absorbed");
    assert_eq!(ep.state(TxId::Server(tx)), Some(TxState::Confirmed));
    ep.handle_message(now, msg(text("ACK", ";tag=other")), peer);
    assert!(
        matches!(ep.poll_event(), Some(TxEvent::Ack { .. })),
        "another dialog's ACK goes up"
    );
    let later = now + Duration::from_secs(5);
    assert_eq!(ep.poll_timeout(), Some(later), "Timer I");
    ep.handle_timeout(later);
    assert_eq!(
        ep.poll_event(),
        Some(TxEvent::Terminated {
            tx: TxId::Server(tx)
        })
    );
    assert_eq!(ep.len(), 0);
}

/// §17.1.4: a transport error before a final response ends the client
/// transaction with TransportError (treated as 503 by the TU).
#[test]
fn transport_error_ends_the_client_transaction() {
    let mut p = Pair::udp();
    p.net.blackhole = Some(Side::Uas);
    let tx = p
        .uac
        .send_request(p.now, invite("z9hG4bKicmp"), p.uas_peer(), None)
        .unwrap();
    p.drive_until(10, |p| p.now >= p.start + Duration::from_millis(500));
    p.uac.transport_error(tx);
    p.finish();
    assert_eq!(p.uac_kinds(), ["TransportError", "Terminated client"]);
    assert_eq!(p.net.count(Side::Uac, "INVITE"), 2);
}

/// A stray ACK (no transaction, no Accepted 2xx) goes up to the TU.
#[test]
fn stray_ack_goes_up() {
    let mut p = Pair::udp();
    let ack = request("ACK", "z9hG4bKlone", "call-lone", 1, TxTransport::Udp);
    p.uac.send_stateless(SipMessage::Request(ack), p.uas_peer());
    p.finish();
    assert_eq!(p.uas_kinds(), ["Ack"]);
}

// ---- property -----------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Whatever the loss, duplication and reordering, the basic call ends
    /// established or with a Timeout (never a panic), the UAS either saw the
    /// ACK, gave up with AckTimeout, or never got the INVITE, and no
    /// transaction is left behind.
    #[test]
    fn basic_call_survives_any_network(
        seed in any::<u64>(),
        loss in 0u32..600,
        dup in 0u32..400,
        reorder in 0u32..500,
        tcp in any::<bool>(),
    ) {
        let model = NetModel {
            loss_per_mille: loss,
            dup_per_mille: dup,
            reorder_per_mille: reorder,
            ..NetModel::default()
        };
        let transport = if tcp { TxTransport::Tcp } else { TxTransport::Udp };
        let mut p = Pair::new(transport, seed, model);
        p.uas_tu = uas_answering(&[180, 200]);
        p.uac_tu = uac_acking();
        let inv = request("INVITE", "z9hG4bKprop", "call-prop", 1, transport);
        p.uac.send_request(p.now, inv, p.uas_peer(), None).unwrap();
        p.finish();
        let uac = p.uac_kinds();
        let established = uac.contains(&"Response 200 INVITE".to_string());
        let timed_out = uac.contains(&"Timeout".to_string());
        prop_assert!(established ^ timed_out, "{:?}", uac);
        let uas = p.uas_kinds();
        if established {
            let acked = uas.contains(&"Ack".to_string());
            let ack_timeout = uas.contains(&"AckTimeout".to_string());
            prop_assert!(acked || ack_timeout, "{:?}", uas);
        }
        prop_assert!(uas.iter().filter(|k| *k == "NewRequest INVITE").count() <= 1);
        prop_assert!(p.steps < 10_000);
    }
}

#[test]
fn api_misuse_is_an_error() {
    let mut ep = Endpoint::new(TimerConfig::default(), Limits::default());
    let now = std::time::Instant::now();
    let peer = Peer::udp(addr(UAS_ADDR));
    let ack = request("ACK", "z9hG4bKa", "c", 1, TxTransport::Udp);
    assert!(matches!(
        ep.send_request(now, ack, peer, None),
        Err(TxError::InvalidState(_))
    ));
    let mut nobranch = request("OPTIONS", "z9hG4bKa", "c", 1, TxTransport::Udp);
    nobranch
        .headers
        .replace("Via", "SIP/2.0/UDP 192.0.2.1:5060")
        .unwrap();
    assert_eq!(
        ep.send_request(now, nobranch, peer, None),
        Err(TxError::NoBranch)
    );
    let opt = request("OPTIONS", "z9hG4bKo", "c", 1, TxTransport::Udp);
    let tx = ep.send_request(now, opt.clone(), peer, None).unwrap();
    assert_eq!(
        ep.send_request(now, opt, peer, None),
        Err(TxError::BranchInUse)
    );
    assert!(
        matches!(ep.cancel(now, tx), Err(TxError::InvalidState(_))),
        "not an INVITE"
    );
    let inv = ep
        .send_request(now, invite("z9hG4bKi"), peer, None)
        .unwrap();
    assert_eq!(ep.len(), 2);
    // A 486 arrives: the INVITE is Completed and can no longer be cancelled.
    let busy = trunkd_sip::response_for(
        ep.request(TxId::Client(inv)).unwrap(),
        trunkd_sip::StatusCode::BUSY_HERE,
        "Busy Here",
        Some("t"),
    );
    ep.handle_message(now, SipMessage::Response(busy), peer);
    assert!(matches!(ep.cancel(now, inv), Err(TxError::InvalidState(_))));
    let fake = match ep.poll_event() {
        Some(TxEvent::Response { tx, .. }) => tx,
        e => panic!("{e:?}"),
    };
    assert_eq!(fake, inv);
    while ep.poll_transmit().is_some() {}
    while ep.poll_event().is_some() {}
    // Unknown ids.
    let mut other = Endpoint::new(TimerConfig::default(), Limits::default());
    assert_eq!(other.cancel(now, inv), Err(TxError::UnknownTransaction));
    let resp = trunkd_sip::Response::new(trunkd_sip::StatusCode::OK, "OK");
    let mut uas = Endpoint::new(TimerConfig::default(), Limits::default());
    uas.handle_message(
        now,
        SipMessage::Request(invite("z9hG4bKs")),
        Peer::udp(addr(UAC_ADDR)),
    );
    let stx = match uas.poll_event() {
        Some(TxEvent::NewRequest { tx, .. }) => tx,
        e => panic!("{e:?}"),
    };
    assert_eq!(
        other.send_response(now, stx, resp.clone()),
        Err(TxError::UnknownTransaction)
    );
    let req = uas.request(TxId::Server(stx)).unwrap().clone();
    let decline = trunkd_sip::response_for(
        &req,
        trunkd_sip::StatusCode::new(603).unwrap(),
        "Decline",
        Some("t"),
    );
    uas.send_response(now, stx, decline.clone()).unwrap();
    assert!(matches!(
        uas.send_response(now, stx, decline),
        Err(TxError::InvalidState(_))
    ));
}
