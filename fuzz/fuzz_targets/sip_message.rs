//! The SIP input path of trunkd, as the daemon runs it on every datagram and
//! every TCP stream, down to the transaction layer.
//!
//! The input is read twice:
//! * as one UDP datagram: [`SipMessage::parse`], then what `sip_service.rs`
//!   does with it (the 400/505 of [`error_response`] for a malformed
//!   request, the Via stamping of a good one);
//! * as the bytes of a TCP stream: [`frame`] cuts it into messages, each
//!   parsed the same way.
//!
//! Every message that parses goes, in order, into one sans-IO [`Endpoint`]
//! that already has client transactions out (so fuzzed responses can match
//! them), with a TU that answers every new request. Time moves on between
//! messages, and at the end every timer is run.
//!
//! Invariants checked, beyond "never panics":
//! * `frame` reports sizes inside the buffer and below the limit;
//! * framing and parsing agree on a message's end (its Content-Length);
//! * a message that parsed serialises to bytes that parse again, frame as
//!   exactly one message, and serialise to the same bytes (what trunkd
//!   forwards must be readable, and mean the same); the same fixed point
//!   holds for the Request-URI and the Via, From, To, Contact and route
//!   values trunkd rebuilds;
//! * the session SDP of a body (plain or multipart, as the B2BUA anchors
//!   it) put back unchanged gives back the same body, and one put back
//!   with other bytes is found again exactly;
//! * a response to a request carries the right To tag;
//! * an error answer frames as exactly one message;
//! * everything the endpoint transmits parses;
//! * once every timer has run, no transaction is left (bounded lifetime,
//!   see `trunkd_sip::transaction`).
#![no_main]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use trunkd_sip::{
    error_response, frame, response_for, split_list, Bytes, Endpoint, Frame, Limits, NameAddr,
    Peer, Request, SipMessage, StatusCode, TimerConfig, TxEvent, Uri, Via,
};

/// The daemon's default `sip.max_message_bytes`.
const MAX_MESSAGE_BYTES: usize = 65535;

/// Branches of the endpoint's own client transactions: seeds carry
/// responses with them, so the fuzzer reaches the client state machines.
const CLIENT_INVITE: &str = "z9hG4bKfuzzinv";
const CLIENT_OPTIONS: &str = "z9hG4bKfuzzopt";
const CLIENT_INVITE_TCP: &str = "z9hG4bKfuzztcp";

fuzz_target!(|data: &[u8]| {
    let t0 = Instant::now();
    let mut net = Net::new(t0);

    let datagram = Bytes::copy_from_slice(data);
    if let Some(msg) = accept(datagram) {
        net.deliver(msg, Peer::udp(peer_addr()));
    }

    let mut rest = data;
    while !rest.is_empty() {
        match frame(rest, MAX_MESSAGE_BYTES) {
            Frame::Complete(n) => {
                assert!(n > 0 && n <= rest.len() && n <= MAX_MESSAGE_BYTES, "{n}");
                if let Some(msg) = accept(Bytes::copy_from_slice(&rest[..n])) {
                    // Framing and parsing agree on where the message ends:
                    // no bytes of the next message read as this body.
                    let cl = msg.headers().content_length().ok().flatten();
                    assert_eq!(cl.map(|c| c.0), Some(msg.body().len()), "framed body");
                    net.deliver(msg, Peer::tcp(peer_addr()));
                }
                rest = &rest[n..];
            }
            Frame::KeepAlive(n) => {
                assert!(n == 2 || n == 4, "{n}");
                assert!(n <= rest.len());
                rest = &rest[n..];
            }
            Frame::Incomplete | Frame::TooLarge | Frame::Invalid => break,
        }
    }

    net.finish();
});

fn peer_addr() -> SocketAddr {
    SocketAddr::from(([192, 0, 2, 1], 5060))
}

/// `sip_service::accept` minus the daemon's metrics and rate limits: the
/// message for the engine, or `None` after answering or dropping it.
fn accept(data: Bytes) -> Option<SipMessage> {
    match SipMessage::parse(data) {
        Ok(mut msg) => {
            let wire = msg.to_bytes();
            assert_eq!(frame(&wire, usize::MAX), Frame::Complete(wire.len()));
            match SipMessage::parse(wire.clone()) {
                Ok(again) => {
                    assert_eq!(again.body(), msg.body());
                    assert_eq!(again.to_bytes(), wire, "serialising is not a fixed point");
                }
                Err(e) => panic!(
                    "a parsed message serialises to one that does not parse: {e}\n{}",
                    String::from_utf8_lossy(&wire)
                ),
            }
            check_header_values(msg.headers());
            check_session_sdp(msg.headers(), msg.body());
            if let SipMessage::Request(req) = &mut msg {
                let uri = req.uri.to_bytes();
                match Uri::parse(&uri) {
                    Ok(back) => assert_eq!(back.to_bytes(), uri, "Request-URI"),
                    Err(e) => panic!("a written Request-URI does not parse: {e}: {uri:?}"),
                }
                stamp_top_via(req);
                // The B2BUA reads these from every request it handles.
                let h = &req.headers;
                let _ = (h.contact(), h.max_forwards(), h.content_type());
                let _ = h.values("Record-Route");
                if let Uri::Sip(u) = &req.uri {
                    let _ = u.user_unescaped();
                }
            }
            Some(msg)
        }
        Err(e) => {
            // What the daemon logs about it.
            let _ = (e.to_string(), e.is_drop());
            if let Some(resp) = error_response(&e, Some("fuzz")) {
                let wire = resp.to_bytes();
                assert_eq!(frame(&wire, usize::MAX), Frame::Complete(wire.len()));
            }
            None
        }
    }
}

/// The typed views trunkd rebuilds headers from (the B2BUA writes From,
/// To, Contact and routes from them; the service rewrites Vias): what they
/// write must parse back to the same bytes, or a forwarded message would
/// change meaning at the next hop.
fn check_header_values(h: &trunkd_sip::Headers) {
    fn fixed_point<T>(
        what: &str,
        v: &T,
        write: impl Fn(&T, &mut Vec<u8>),
        parse: impl Fn(&Bytes) -> Option<T>,
    ) {
        let mut once = Vec::new();
        write(v, &mut once);
        let once = Bytes::from(once);
        let Some(back) = parse(&once) else {
            panic!(
                "a written {what} does not parse: {}",
                String::from_utf8_lossy(&once)
            );
        };
        let mut twice = Vec::new();
        write(&back, &mut twice);
        assert_eq!(
            String::from_utf8_lossy(&twice),
            String::from_utf8_lossy(&once),
            "writing a {what} is not a fixed point"
        );
    }
    for name in ["From", "To", "Contact", "Route", "Record-Route"] {
        for row in h.get_all(name) {
            for value in split_list(row) {
                if let Ok(na) = NameAddr::parse(&value, false) {
                    fixed_point(name, &na, NameAddr::write_to, |b| {
                        NameAddr::parse(b, false).ok()
                    });
                }
            }
        }
    }
    if let Ok(vias) = h.vias() {
        for via in &vias {
            fixed_point("Via", via, Via::write_to, |b| Via::parse(b).ok());
        }
    }
}

/// The B2BUA's view of a body: its session SDP, found and put back. The
/// same SDP gives the same body; a rewritten one is either refused or is
/// what the next reader finds.
fn check_session_sdp(h: &trunkd_sip::Headers, body: &Bytes) {
    let ct = h.get("Content-Type").map(|v| &v[..]);
    let Ok(Some(sdp)) = trunkd_sip::find_session_sdp(ct, body) else {
        return;
    };
    assert_eq!(
        trunkd_sip::replace_session_sdp(ct, body, &sdp).as_ref(),
        Ok(body),
        "putting the same SDP back changed the body"
    );
    let anchored = Bytes::from_static(b"v=0\r\nc=IN IP4 192.0.2.1\r\n");
    if let Ok(out) = trunkd_sip::replace_session_sdp(ct, body, &anchored) {
        assert_eq!(
            trunkd_sip::find_session_sdp(ct, &out),
            Ok(Some(anchored)),
            "a rebuilt body does not read back"
        );
    }
}

/// What `sip_service.rs`'s `stamp_top_via` does with the library: parse
/// the top Via, set `received`/`rport`, write it back.
fn stamp_top_via(req: &mut Request) {
    let Some(first) = req.headers.get("Via").cloned() else {
        return;
    };
    let vias: Vec<Bytes> = split_list(&first).collect();
    let Some(mut top) = vias.first().and_then(|v| Via::parse(v).ok()) else {
        return;
    };
    let _ = top.params.set("received", Some("192.0.2.1"));
    if top.rport().is_some() {
        let _ = top.params.set("rport", Some("5060"));
    }
    let mut out = Vec::new();
    top.write_to(&mut out);
    let out = Bytes::from(out);
    assert!(
        Via::parse(&out).is_ok(),
        "a stamped Via does not parse again: {}",
        String::from_utf8_lossy(&out)
    );
    let _ = req.headers.replace("Via", out);
}

/// One endpoint, its clock and a TU that answers every request.
struct Net {
    ep: Endpoint,
    now: Instant,
}

impl Net {
    fn new(now: Instant) -> Net {
        let mut ep = Endpoint::new(TimerConfig::default(), Limits::default());
        let udp = Peer::udp(peer_addr());
        let tcp = Peer::tcp(peer_addr());
        for (method, branch, peer) in [
            ("INVITE", CLIENT_INVITE, udp),
            ("OPTIONS", CLIENT_OPTIONS, udp),
            ("INVITE", CLIENT_INVITE_TCP, tcp),
        ] {
            let req = client_request(method, branch, peer);
            if let Err(e) = ep.send_request(now, req, peer, None) {
                panic!("the fixed {method} is refused: {e}");
            }
        }
        let mut net = Net { ep, now };
        net.drain();
        net
    }

    fn deliver(&mut self, msg: SipMessage, peer: Peer) {
        self.now += Duration::from_millis(300);
        self.run_timers_until(self.now);
        self.ep.handle_message(self.now, msg, peer);
        self.drain();
    }

    /// Runs every timer (bounded): afterwards nothing may be left.
    fn finish(&mut self) {
        for _ in 0..100_000 {
            let Some(at) = self.ep.poll_timeout() else {
                assert!(
                    self.ep.is_empty(),
                    "{} transactions outlive every timer",
                    self.ep.len()
                );
                return;
            };
            self.now = self.now.max(at);
            self.ep.handle_timeout(self.now);
            self.drain();
        }
        panic!("timers never stop");
    }

    fn run_timers_until(&mut self, now: Instant) {
        for _ in 0..10_000 {
            match self.ep.poll_timeout() {
                Some(at) if at <= now => {
                    self.ep.handle_timeout(at);
                    self.drain();
                }
                _ => return,
            }
        }
        panic!("timers never stop");
    }

    fn drain(&mut self) {
        loop {
            while let Some(t) = self.ep.poll_transmit() {
                if let Err(e) = SipMessage::parse(t.bytes.clone()) {
                    panic!(
                        "the endpoint sent a message that does not parse: {e}\n{}",
                        String::from_utf8_lossy(&t.bytes)
                    );
                }
            }
            let Some(ev) = self.ep.poll_event() else {
                return;
            };
            self.tu(ev);
        }
    }

    /// The TU answers every new request (a provisional first for some),
    /// 487s a cancelled INVITE, and ACKs nothing (the layer handles the
    /// non-2xx ACK; a missing 2xx ACK only ends in Timer M).
    fn tu(&mut self, ev: TxEvent) {
        match ev {
            TxEvent::NewRequest { tx, request, .. } => {
                let codes: &[u16] = match request.headers.cseq().map(|c| c.seq % 6) {
                    Ok(0) => &[100, 180, 200],
                    Ok(1) => &[183, 486],
                    Ok(2) => &[200],
                    Ok(3) => &[302],
                    Ok(4) => &[180, 180, 603],
                    _ => &[503],
                };
                for &code in codes {
                    let Some(status) = StatusCode::new(code) else {
                        continue;
                    };
                    let resp = response_for(&request, status, "Fuzz", Some("uas"));
                    check_to_tag(&request, &resp);
                    let _ = self.ep.send_response(self.now, tx, resp);
                }
            }
            TxEvent::Cancelled { tx } => {
                if let Some(req) = self.ep.request(tx.into()).cloned() {
                    let resp = response_for(
                        &req,
                        StatusCode::REQUEST_TERMINATED,
                        "Request Terminated",
                        Some("uas"),
                    );
                    let _ = self.ep.send_response(self.now, tx, resp);
                }
            }
            TxEvent::Response { tx, response } => {
                // Some provisionals get the INVITE cancelled.
                if response.status.as_u16() == 180 {
                    let _ = self.ep.cancel(self.now, tx);
                }
            }
            TxEvent::Ack { .. }
            | TxEvent::StrayResponse { .. }
            | TxEvent::Timeout { .. }
            | TxEvent::TransportError { .. }
            | TxEvent::AckTimeout { .. }
            | TxEvent::Terminated { .. } => {}
        }
    }
}

/// `response_for`'s contract: a To without a tag gets the UAS's tag on
/// every response but 100, and one with a tag keeps it.
fn check_to_tag(request: &Request, resp: &trunkd_sip::Response) {
    let (Ok(req_to), Ok(resp_to)) = (request.headers.to(), resp.headers.to()) else {
        panic!("a response to a valid request has no valid To");
    };
    let expected = match req_to.tag() {
        Some(t) => Some(t.clone()),
        None if resp.status.as_u16() > 100 => Some(Bytes::from_static(b"uas")),
        None => None,
    };
    assert_eq!(
        resp_to.tag().cloned(),
        expected,
        "To tag of a {}",
        resp.status.as_u16()
    );
}

fn client_request(method: &str, branch: &str, peer: Peer) -> Request {
    let transport = if peer.transport.reliable() {
        "TCP"
    } else {
        "UDP"
    };
    let text = format!(
        "{method} sip:+12065550199@192.0.2.1 SIP/2.0\r\n\
         Via: SIP/2.0/{transport} 192.0.2.9:5060;branch={branch}\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:+12065550100@192.0.2.9>;tag=fuzzuac\r\n\
         To: <sip:+12065550199@192.0.2.1>\r\n\
         Call-ID: {branch}@192.0.2.9\r\n\
         CSeq: 1 {method}\r\n\
         Contact: <sip:trunkd@192.0.2.9:5060>\r\n\
         Content-Length: 0\r\n\r\n"
    );
    match SipMessage::parse(Bytes::from(text)) {
        Ok(SipMessage::Request(r)) => r,
        other => panic!("the fixed {method} does not parse: {other:?}"),
    }
}
