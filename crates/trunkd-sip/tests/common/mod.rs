//! A deterministic two-endpoint harness for the transaction layer, in the
//! style of quinn-proto's `Pair` and str0m's `TestRtc`: a UAC-side and a
//! UAS-side [`Endpoint`], a simulated network with seeded loss,
//! duplication and reordering, and a fake clock that jumps to the next
//! timer or delivery, so Timer B's 32 s take microseconds.

#![allow(dead_code)]

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use trunkd_sip::{
    response_for, Endpoint, Limits, Peer, Request, Response, SipMessage, StatusCode, TimerConfig,
    TxEvent, TxId, TxTransport,
};

pub const UAC_ADDR: &str = "192.0.2.1:5060";
pub const UAS_ADDR: &str = "192.0.2.2:5060";

pub fn addr(s: &str) -> SocketAddr {
    s.parse().expect("a test address")
}

/// A tiny xorshift64* generator: the network model's only randomness.
#[derive(Debug, Clone)]
pub struct XorShift(u64);

impl XorShift {
    pub fn new(seed: u64) -> XorShift {
        XorShift(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// True with probability `per_mille` / 1000.
    pub fn chance(&mut self, per_mille: u32) -> bool {
        (self.next_u64() % 1000) < u64::from(per_mille)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Uac,
    Uas,
}

impl Side {
    pub fn addr(self) -> SocketAddr {
        match self {
            Side::Uac => addr(UAC_ADDR),
            Side::Uas => addr(UAS_ADDR),
        }
    }
}

/// Loss, duplication and reordering of unreliable datagrams; reliable
/// transports get none of them.
#[derive(Debug, Clone, Copy)]
pub struct NetModel {
    /// One-way delay.
    pub latency: Duration,
    pub loss_per_mille: u32,
    pub dup_per_mille: u32,
    /// Chance that a datagram gets up to `reorder_delay` extra delay.
    pub reorder_per_mille: u32,
    pub reorder_delay: Duration,
}

impl Default for NetModel {
    fn default() -> NetModel {
        NetModel {
            latency: Duration::from_millis(10),
            loss_per_mille: 0,
            dup_per_mille: 0,
            reorder_per_mille: 0,
            reorder_delay: Duration::from_millis(300),
        }
    }
}

/// One message handed to the network, delivered or not.
#[derive(Debug, Clone)]
pub struct Wire {
    pub at: Instant,
    pub from: Side,
    pub bytes: Bytes,
    pub lost: bool,
}

impl Wire {
    /// The start line, e.g. `INVITE sip:bob@... SIP/2.0` or `SIP/2.0 200 OK`.
    pub fn start_line(&self) -> String {
        let text = String::from_utf8_lossy(&self.bytes);
        text.lines().next().unwrap_or_default().to_string()
    }

    /// `INVITE`, `ACK`, ... for requests; `200`, `487`, ... for responses,
    /// suffixed by the CSeq method: `200/INVITE`.
    pub fn kind(&self) -> String {
        let line = self.start_line();
        let text = String::from_utf8_lossy(&self.bytes).to_string();
        let cseq_method = text
            .lines()
            .find(|l| l.starts_with("CSeq:"))
            .and_then(|l| l.split_whitespace().nth(2))
            .unwrap_or("?")
            .to_string();
        if let Some(rest) = line.strip_prefix("SIP/2.0 ") {
            format!("{}/{}", &rest[..3], cseq_method)
        } else {
            line.split(' ').next().unwrap_or_default().to_string()
        }
    }
}

pub struct Packet {
    pub deliver_at: Instant,
    pub from: Side,
    pub to: Side,
    pub transport: TxTransport,
    pub bytes: Bytes,
}

/// Decides to drop a message: `(from, kind, nth message of that kind and
/// direction)` -> drop?
pub type DropFilter = Box<dyn FnMut(Side, &str, usize) -> bool>;

/// The simulated network.
pub struct FakeNet {
    queue: VecDeque<Packet>,
    rng: XorShift,
    pub model: NetModel,
    /// Everything sent to this side is lost (a silent peer).
    pub blackhole: Option<Side>,
    pub filter: Option<DropFilter>,
    pub log: Vec<Wire>,
}

impl FakeNet {
    pub fn new(seed: u64, model: NetModel) -> FakeNet {
        FakeNet {
            queue: VecDeque::new(),
            rng: XorShift::new(seed),
            model,
            blackhole: None,
            filter: None,
            log: Vec::new(),
        }
    }

    pub fn send(
        &mut self,
        now: Instant,
        from: Side,
        to: Side,
        transport: TxTransport,
        bytes: Bytes,
    ) {
        let mut wire = Wire {
            at: now,
            from,
            bytes: bytes.clone(),
            lost: false,
        };
        let kind = wire.kind();
        let nth = self
            .log
            .iter()
            .filter(|w| w.from == from && w.kind() == kind)
            .count();
        let filtered = self.filter.as_mut().is_some_and(|f| f(from, &kind, nth));
        let unreliable = !transport.reliable();
        if self.blackhole == Some(to)
            || filtered
            || (unreliable && self.rng.chance(self.model.loss_per_mille))
        {
            wire.lost = true;
            self.log.push(wire);
            return;
        }
        self.log.push(wire);
        let mut at = now + self.model.latency;
        if unreliable && self.rng.chance(self.model.reorder_per_mille) {
            let extra = self.rng.below(self.model.reorder_delay.as_micros() as u64);
            at += Duration::from_micros(extra);
        }
        let dup = unreliable && self.rng.chance(self.model.dup_per_mille);
        self.push(Packet {
            deliver_at: at,
            from,
            to,
            transport,
            bytes: bytes.clone(),
        });
        if dup {
            let extra = self.rng.below(50_000);
            self.push(Packet {
                deliver_at: at + Duration::from_micros(extra),
                from,
                to,
                transport,
                bytes,
            });
        }
    }

    /// Inserts keeping delivery order (FIFO among equal times).
    fn push(&mut self, p: Packet) {
        let i = self
            .queue
            .iter()
            .position(|q| q.deliver_at > p.deliver_at)
            .unwrap_or(self.queue.len());
        self.queue.insert(i, p);
    }

    pub fn next_delivery(&self) -> Option<Instant> {
        self.queue.front().map(|p| p.deliver_at)
    }

    pub fn pop_due(&mut self, now: Instant) -> Option<Packet> {
        if self.queue.front()?.deliver_at <= now {
            self.queue.pop_front()
        } else {
            None
        }
    }

    /// Messages of `kind` sent by `from` (delivered or lost).
    pub fn sent(&self, from: Side, kind: &str) -> Vec<&Wire> {
        self.log
            .iter()
            .filter(|w| w.from == from && w.kind() == kind)
            .collect()
    }

    pub fn count(&self, from: Side, kind: &str) -> usize {
        self.sent(from, kind).len()
    }
}

/// What a TU callback may use.
pub struct TuCtx<'a> {
    pub ep: &'a mut Endpoint,
    pub now: Instant,
    /// The other side.
    pub peer: Peer,
}

/// A TU: reacts to the events of its endpoint.
pub type Tu = Box<dyn FnMut(&mut TuCtx<'_>, &TxEvent)>;

pub struct Pair {
    pub uac: Endpoint,
    pub uas: Endpoint,
    pub net: FakeNet,
    pub start: Instant,
    pub now: Instant,
    pub transport: TxTransport,
    pub uac_events: Vec<(Instant, TxEvent)>,
    pub uas_events: Vec<(Instant, TxEvent)>,
    pub uac_tu: Tu,
    pub uas_tu: Tu,
    pub steps: usize,
}

impl Pair {
    pub fn new(transport: TxTransport, seed: u64, model: NetModel) -> Pair {
        let now = Instant::now();
        Pair {
            uac: Endpoint::new(TimerConfig::default(), Limits::default()),
            uas: Endpoint::new(TimerConfig::default(), Limits::default()),
            net: FakeNet::new(seed, model),
            start: now,
            now,
            transport,
            uac_events: Vec::new(),
            uas_events: Vec::new(),
            uac_tu: Box::new(|_, _| {}),
            uas_tu: Box::new(|_, _| {}),
            steps: 0,
        }
    }

    pub fn udp() -> Pair {
        Pair::new(TxTransport::Udp, 1, NetModel::default())
    }

    /// The UAS as the UAC sees it.
    pub fn uas_peer(&self) -> Peer {
        Peer {
            addr: Side::Uas.addr(),
            transport: self.transport,
        }
    }

    /// Seconds since the start, to the microsecond.
    pub fn elapsed(&self, at: Instant) -> f64 {
        (at - self.start).as_micros() as f64 / 1e6
    }

    /// Moves every transmit into the network and every event to its TU,
    /// until both endpoints are quiet.
    pub fn drain(&mut self) {
        loop {
            let mut busy = false;
            for side in [Side::Uac, Side::Uas] {
                let ep = match side {
                    Side::Uac => &mut self.uac,
                    Side::Uas => &mut self.uas,
                };
                while let Some(t) = ep.poll_transmit() {
                    let to = if t.dest.addr == Side::Uas.addr() {
                        Side::Uas
                    } else {
                        Side::Uac
                    };
                    self.net.send(self.now, side, to, t.dest.transport, t.bytes);
                    busy = true;
                }
            }
            for side in [Side::Uac, Side::Uas] {
                let (ep, events, tu, peer) = match side {
                    Side::Uac => (
                        &mut self.uac,
                        &mut self.uac_events,
                        &mut self.uac_tu,
                        Side::Uas,
                    ),
                    Side::Uas => (
                        &mut self.uas,
                        &mut self.uas_events,
                        &mut self.uas_tu,
                        Side::Uac,
                    ),
                };
                while let Some(e) = ep.poll_event() {
                    events.push((self.now, e.clone()));
                    let mut ctx = TuCtx {
                        ep,
                        now: self.now,
                        peer: Peer {
                            addr: peer.addr(),
                            transport: self.transport,
                        },
                    };
                    tu(&mut ctx, &e);
                    busy = true;
                }
            }
            if !busy {
                return;
            }
        }
    }

    /// One step: drain, jump the clock to the earliest timer or delivery,
    /// deliver what is due, run due timers, drain. False when idle.
    pub fn step(&mut self) -> bool {
        self.drain();
        let next = [
            self.uac.poll_timeout(),
            self.uas.poll_timeout(),
            self.net.next_delivery(),
        ]
        .into_iter()
        .flatten()
        .min();
        let Some(next) = next else {
            return false;
        };
        self.steps += 1;
        self.now = self.now.max(next);
        while let Some(p) = self.net.pop_due(self.now) {
            let msg = SipMessage::parse(p.bytes).expect("the layer sends parseable messages");
            let from = Peer {
                addr: p.from.addr(),
                transport: p.transport,
            };
            match p.to {
                Side::Uac => self.uac.handle_message(self.now, msg, from),
                Side::Uas => self.uas.handle_message(self.now, msg, from),
            }
            self.drain();
        }
        if self.uac.poll_timeout().is_some_and(|t| t <= self.now) {
            self.uac.handle_timeout(self.now);
        }
        if self.uas.poll_timeout().is_some_and(|t| t <= self.now) {
            self.uas.handle_timeout(self.now);
        }
        self.drain();
        true
    }

    /// Steps until idle; panics after `max_steps`.
    pub fn drive_bounded(&mut self, max_steps: usize) {
        for _ in 0..max_steps {
            if !self.step() {
                return;
            }
        }
        panic!("not idle after {max_steps} steps");
    }

    /// Steps until `done` holds; panics after `max_steps` or when idle.
    pub fn drive_until(&mut self, max_steps: usize, mut done: impl FnMut(&Pair) -> bool) {
        for _ in 0..max_steps {
            self.drain();
            if done(self) {
                return;
            }
            if !self.step() {
                break;
            }
        }
        assert!(done(self), "condition not reached");
    }

    /// Drives until idle and checks that no transaction is left.
    pub fn finish(&mut self) {
        self.drive_bounded(10_000);
        assert_eq!(self.uac.len(), 0, "UAC transactions leaked");
        assert_eq!(self.uas.len(), 0, "UAS transactions leaked");
        assert_eq!(self.uac.poll_timeout(), None);
        assert_eq!(self.uas.poll_timeout(), None);
    }

    /// The UAC-side events, without the timestamps.
    pub fn uac_kinds(&self) -> Vec<String> {
        self.uac_events.iter().map(|(_, e)| describe(e)).collect()
    }

    pub fn uas_kinds(&self) -> Vec<String> {
        self.uas_events.iter().map(|(_, e)| describe(e)).collect()
    }
}

/// A short name for an event: `Response 180`, `NewRequest INVITE`, ...
pub fn describe(e: &TxEvent) -> String {
    match e {
        TxEvent::NewRequest { request, .. } => format!("NewRequest {}", request.method),
        TxEvent::Ack { .. } => "Ack".into(),
        TxEvent::Cancelled { .. } => "Cancelled".into(),
        TxEvent::Response { response, .. } => {
            let m = response
                .headers
                .cseq()
                .map(|c| c.method.to_string())
                .unwrap_or_default();
            format!("Response {} {m}", response.status)
        }
        TxEvent::StrayResponse { response, .. } => format!("StrayResponse {}", response.status),
        TxEvent::Timeout { .. } => "Timeout".into(),
        TxEvent::TransportError { .. } => "TransportError".into(),
        TxEvent::AckTimeout { .. } => "AckTimeout".into(),
        TxEvent::Terminated {
            tx: TxId::Client(_),
        } => "Terminated client".into(),
        TxEvent::Terminated {
            tx: TxId::Server(_),
        } => "Terminated server".into(),
    }
}

// ---- messages ---------------------------------------------------------------

pub fn parse_request(text: &str) -> Request {
    match SipMessage::parse(Bytes::from(text.replace('\n', "\r\n"))) {
        Ok(SipMessage::Request(r)) => r,
        other => panic!("not a request: {other:?}"),
    }
}

/// A request from the UAC (Alice) to the UAS (Bob).
pub fn request(
    method: &str,
    branch: &str,
    call_id: &str,
    cseq: u32,
    transport: TxTransport,
) -> Request {
    let t = match transport {
        TxTransport::Udp => "UDP",
        TxTransport::Tcp => "TCP",
        TxTransport::Tls => "TLS",
    };
    parse_request(&format!(
        "{method} sip:bob@192.0.2.2 SIP/2.0\n\
         Via: SIP/2.0/{t} 192.0.2.1:5060;branch={branch};rport\n\
         Route: <sip:192.0.2.2;lr>\n\
         Max-Forwards: 70\n\
         From: Alice <sip:alice@192.0.2.1>;tag=alice-tag\n\
         To: Bob <sip:bob@192.0.2.2>\n\
         Call-ID: {call_id}\n\
         CSeq: {cseq} {method}\n\
         Contact: <sip:alice@192.0.2.1:5060>\n\n"
    ))
}

pub fn invite(branch: &str) -> Request {
    request("INVITE", branch, "call-1@192.0.2.1", 1, TxTransport::Udp)
}

/// The UAC core's ACK for a 2xx (§13.2.2.4): a new transaction branch
/// derived from the CSeq, so re-ACKs of retransmitted 2xx are identical.
pub fn ack_for_2xx(resp: &Response, transport: TxTransport) -> Request {
    let h = &resp.headers;
    let get = |n: &str| String::from_utf8_lossy(h.get(n).expect("header")).to_string();
    let seq = h.cseq().expect("CSeq").seq;
    let t = match transport {
        TxTransport::Udp => "UDP",
        TxTransport::Tcp => "TCP",
        TxTransport::Tls => "TLS",
    };
    parse_request(&format!(
        "ACK sip:bob@192.0.2.2:5060 SIP/2.0\n\
         Via: SIP/2.0/{t} 192.0.2.1:5060;branch=z9hG4bKack{seq}\n\
         Max-Forwards: 70\n\
         From: {}\n\
         To: {}\n\
         Call-ID: {}\n\
         CSeq: {seq} ACK\n\n",
        get("From"),
        get("To"),
        get("Call-ID"),
    ))
}

/// A UAC TU that ACKs every 2xx to an INVITE (also stray ones).
pub fn uac_acking() -> Tu {
    Box::new(|ctx, e| {
        let resp = match e {
            TxEvent::Response { response, .. } | TxEvent::StrayResponse { response, .. } => {
                response
            }
            _ => return,
        };
        let invite = resp
            .headers
            .cseq()
            .is_ok_and(|c| c.method == trunkd_sip::Method::Invite);
        if invite && resp.status.is_success() {
            let ack = ack_for_2xx(resp, ctx.peer.transport);
            ctx.ep.send_stateless(SipMessage::Request(ack), ctx.peer);
        }
    })
}

pub const UAS_TAG: &str = "bob-tag";

/// Answers `request` on `tx` with `code` (To tag [`UAS_TAG`]).
pub fn answer(ctx: &mut TuCtx<'_>, tx: trunkd_sip::ServerTxId, request: &Request, code: u16) {
    let status = StatusCode::new(code).expect("a valid code");
    let reason = status.canonical_reason().unwrap_or("Whatever");
    let resp = response_for(request, status, reason, Some(UAS_TAG));
    ctx.ep
        .send_response(ctx.now, tx, resp)
        .expect("the transaction takes the response");
}

/// A UAS TU: INVITE -> the given codes in order; other requests -> 200;
/// Cancelled -> 487.
pub fn uas_answering(invite_codes: &'static [u16]) -> Tu {
    Box::new(move |ctx, e| match e {
        TxEvent::NewRequest { tx, request, .. } => {
            if request.method == trunkd_sip::Method::Invite {
                for &c in invite_codes {
                    answer(ctx, *tx, request, c);
                }
            } else {
                answer(ctx, *tx, request, 200);
            }
        }
        TxEvent::Cancelled { tx } => {
            let req = ctx
                .ep
                .request(TxId::Server(*tx))
                .expect("the INVITE transaction is live")
                .clone();
            answer(ctx, *tx, &req, 487);
        }
        _ => {}
    })
}
