//! A PBX – trunkd – carrier harness over a simulated network with a fake
//! clock (STYLE.md: quinn's `Pair`, str0m's `TestRtc`).
//!
//! The PBX and the carrier are `trunkd_sip` transaction endpoints with a
//! few lines of user-agent logic each; trunkd is the sans-IO [`Engine`]
//! plus a sans-IO `trunkd_b2bua::Call` per call it starts (with a
//! pass-through media anchor), or a `trunkd_b2bua::UasCall` for a session
//! trunkd answers itself (with the recording answer on fixed ports),
//! exactly what the shell would run, minus sockets and tasks. Datagrams take `LATENCY`; the clock jumps to the next
//! delivery or timer, so a Timer B of 32 s takes microseconds.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use trunkd_b2bua::{
    Call, CallEvent, CallInput, CallOutput, LocalAddrs, MediaRefusal, PassThrough, SdpAnswerer,
    UasCall,
};
use trunkd_core::digest::{answer_challenge, Challenge};
use trunkd_sip::transaction::{
    ClientTxId, Endpoint, Limits, Peer, TimerConfig, TxEvent, TxTransport,
};
use trunkd_sip::{Request, Response, SipMessage, StatusCode};

use super::machine::{CallKey, Engine, EngineEvent, EngineInput};
use crate::application::AppAction;
use crate::daemon::Shared;

pub const TRUNKD: &str = "127.0.0.1:5060";
pub const PBX: &str = "198.51.100.10:5060";
pub const CARRIER: &str = "203.0.113.20:5060";
const LATENCY: Duration = Duration::from_millis(5);

pub fn addr(s: &str) -> SocketAddr {
    s.parse()
        .unwrap_or_else(|_| unreachable!("test addresses parse"))
}

fn udp(a: SocketAddr) -> Peer {
    Peer {
        addr: a,
        transport: TxTransport::Udp,
    }
}

/// A configuration with one VC (`vc-east`, digest user `pbx1`/`s3cret`,
/// PBX network allowed) terminating to one carrier, plus `extra` TOML.
pub fn config(dir: &std::path::Path, security: &str, extra: &str) -> trunkd_config::Config {
    let text = format!(
        r#"
[daemon]
region = "local"
account_id = "000000000000"
outbound_host_domain = "trunkd.local"
state_dir = "{state}"

[sip]
udp = ["{TRUNKD}"]

[media]
address = "127.0.0.1"
port_min = 40000
port_max = 40100

[admin]
listen = "127.0.0.1:0"

[security]
{security}

[[carriers]]
id = "carrier-a"
source_cidrs = ["203.0.113.0/24"]
hosts = [ {{ host = "203.0.113.20", port = 5060, protocol = "UDP", priority = 1, weight = 100 }} ]

[[voice_connectors]]
id = "vc-east"
name = "East"
[voice_connectors.termination]
cidr_allowed_list = ["198.51.100.0/24"]
cps_limit = 100
carriers = ["carrier-a"]
credentials = [ {{ username = "pbx1", password = "s3cret" }} ]
[voice_connectors.origination]
routes = [ {{ host = "198.51.100.10", port = 5060, protocol = "UDP", priority = 1, weight = 10 }} ]
[voice_connectors.emergency]
calling_country = "US"
emergency_phone_number = "+12065550199"

[[numbers]]
e164_phone_number = "+12065550100"
product_type = "VoiceConnector"
voice_connector_id = "vc-east"
calling_name = "North Campus"
{extra}
"#,
        state = dir.join("var").display(),
    );
    let path = dir.join("trunkd.toml");
    std::fs::write(&path, text).unwrap_or_else(|e| panic!("writing the test config: {e}"));
    match trunkd_config::load(&path) {
        Ok(c) => c,
        Err(e) => panic!("test config invalid: {e:?}"),
    }
}

/// A user agent: a transaction endpoint and what it saw.
pub struct Ua {
    pub endpoint: Endpoint,
    pub addr: SocketAddr,
    /// Final responses to this UA's INVITEs, in order.
    pub finals: Vec<Response>,
    /// Requests this UA received.
    pub requests: Vec<Request>,
    /// Every final response this UA received, to any request.
    pub all_finals: Vec<Response>,
    /// The carrier answers INVITEs with this status (200: with SDP).
    pub answer: u16,
    /// The PBX answers 407s with these credentials.
    pub credentials: Option<(&'static str, &'static str)>,
    /// What this UA answers to OPTIONS; `None`: nothing (it is dead to
    /// probes).
    pub options_answer: Option<u16>,
    invites: HashMap<ClientTxId, (Request, u32)>,
}

impl Ua {
    fn new(addr: SocketAddr) -> Ua {
        Ua {
            endpoint: Endpoint::new(TimerConfig::default(), Limits::default()),
            addr,
            finals: Vec::new(),
            requests: Vec::new(),
            all_finals: Vec::new(),
            answer: 200,
            credentials: None,
            options_answer: Some(200),
            invites: HashMap::new(),
        }
    }
}

pub const SDP: &str = "v=0\r\no=pbx 1 1 IN IP4 198.51.100.10\r\ns=-\r\nc=IN IP4 198.51.100.10\r\nt=0 0\r\nm=audio 30000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";

/// An INVITE from the carrier to `number` at trunkd (origination).
pub fn carrier_invite(call_id: &str, number: &str) -> Request {
    let text = format!(
        "INVITE sip:{number}@{TRUNKD} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {CARRIER};branch=z9hG4bK-{call_id}-1\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:+14155550123@{CARRIER}>;tag=carrier-{call_id}\r\n\
         To: <sip:{number}@{TRUNKD}>\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: 1 INVITE\r\n\
         Contact: <sip:carrier@{CARRIER}>\r\n\
         Content-Type: application/sdp\r\n\
         Content-Length: {}\r\n\r\n{SDP}",
        SDP.len()
    );
    match SipMessage::parse(Bytes::from(text)) {
        Ok(SipMessage::Request(r)) => r,
        other => panic!("test INVITE does not parse: {other:?}"),
    }
}

/// An INVITE from the PBX to `user` at trunkd (`user@host` for another
/// VC's host than vc-east's).
pub fn invite(
    call_id: &str,
    user: &str,
    from: &str,
    extra_headers: &str,
    body: &str,
    content_type: &str,
) -> Request {
    let user = if user.contains('@') {
        user.to_owned()
    } else {
        format!("{user}@vc-east.trunkd.local")
    };
    let text = format!(
        "INVITE sip:{user} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {PBX};branch=z9hG4bK-{call_id}-1\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:{from}@pbx.example>;tag=pbx-{call_id}\r\n\
         To: <sip:{user}>\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: 1 INVITE\r\n\
         Contact: <sip:{from}@{PBX}>\r\n\
         {extra_headers}\
         Content-Type: {content_type}\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    match SipMessage::parse(Bytes::from(text)) {
        Ok(SipMessage::Request(r)) => r,
        other => panic!("test INVITE does not parse: {other:?}"),
    }
}

/// The simulated network: every datagram takes `LATENCY`; with seeded loss
/// and duplication (per mille) when set, as a lossy UDP path would.
#[derive(Default)]
pub struct Net {
    /// Datagrams in flight: (deliver at, from, to, bytes).
    flight: VecDeque<(Instant, SocketAddr, SocketAddr, Bytes)>,
    pub loss_per_mille: u64,
    pub dup_per_mille: u64,
    rng: u64,
    pub lost: u64,
}

impl Net {
    fn chance(&mut self, per_mille: u64) -> bool {
        // xorshift64*, seeded by the first draw.
        if self.rng == 0 {
            self.rng = 0x2545_F491_4F6C_DD1D;
        }
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D) % 1000 < per_mille
    }

    fn send(&mut self, now: Instant, from: SocketAddr, to: SocketAddr, bytes: Bytes) {
        if self.chance(self.loss_per_mille) {
            self.lost += 1;
            return;
        }
        if self.chance(self.dup_per_mille) {
            let later = now + LATENCY * 3;
            self.flight.push_back((later, from, to, bytes.clone()));
        }
        self.flight.push_back((now + LATENCY, from, to, bytes));
    }

    fn next_delivery(&self) -> Option<Instant> {
        self.flight.iter().map(|p| p.0).min()
    }
}

/// A call actor as the shell runs it, by kind.
pub enum Actor {
    Bridge(Box<Call>),
    Uas(Box<UasCall>),
    /// An application call and what its scripted driver does when: the
    /// SIP side of `crate::app_task` (Answer and Hangup; media actions
    /// need sockets and are tested there).
    App(Box<UasCall>, VecDeque<(Instant, AppAction)>),
}

impl Actor {
    fn poll_output(&mut self) -> Option<CallOutput> {
        match self {
            Actor::Bridge(c) => c.poll_output(),
            Actor::Uas(c) | Actor::App(c, _) => c.poll_output(),
        }
    }
    fn is_ended(&self) -> bool {
        match self {
            Actor::Bridge(c) => c.is_ended(),
            Actor::Uas(c) | Actor::App(c, _) => c.is_ended(),
        }
    }
    fn poll_timeout(&self) -> Option<Instant> {
        match self {
            Actor::Bridge(c) => c.poll_timeout(),
            Actor::Uas(c) => c.poll_timeout(),
            Actor::App(c, script) if !c.is_ended() => script.front().map(|s| s.0),
            Actor::App(..) => None,
        }
    }
    fn handle_timeout(&mut self, now: Instant) {
        match self {
            Actor::Bridge(c) => c.handle_timeout(now),
            Actor::Uas(c) => c.handle_timeout(now),
            Actor::App(c, script) => {
                while script.front().is_some_and(|s| s.0 <= now) {
                    let Some((_, action)) = script.pop_front() else {
                        break;
                    };
                    match action {
                        AppAction::Answer => c.answer(now),
                        AppAction::Hangup { sip_response_code } if !c.is_answered() => {
                            c.reject(now, sip_response_code, "Rejected")
                        }
                        AppAction::Hangup { .. } => c.handle(now, CallInput::Hangup),
                        // Media actions answer implicitly.
                        _ => c.answer(now),
                    }
                }
            }
        }
    }
    fn handle(&mut self, now: Instant, input: CallInput) {
        match self {
            Actor::Bridge(c) => c.handle(now, input),
            Actor::Uas(c) | Actor::App(c, _) => c.handle(now, input),
        }
    }
}

/// An answer as the anchor would give it, on ports `base + 10·stream`:
/// the recording answer (`trunkd_media::recvonly_answer`) or the
/// application one (`trunkd_media::application_answer`).
struct FixedPorts {
    base: u16,
    session_id: &'static str,
    build: AnswerBuilder,
}

/// `trunkd_media::recvonly_answer` or `trunkd_media::application_answer`.
type AnswerBuilder = fn(
    &trunkd_media::Sdp,
    IpAddr,
    &[Option<(u16, u16)>],
    trunkd_media::OriginOverride<'_>,
    Option<&trunkd_media::MediaSecurity>,
) -> trunkd_media::RecvOnlyAnswer;

const RECORDING_PORTS: FixedPorts = FixedPorts {
    base: 40000,
    session_id: "1",
    build: trunkd_media::recvonly_answer,
};

const APP_PORTS: FixedPorts = FixedPorts {
    base: 42000,
    session_id: "2",
    build: trunkd_media::application_answer,
};

impl SdpAnswerer for FixedPorts {
    fn answer(&mut self, offer: &Bytes) -> Result<Bytes, MediaRefusal> {
        let sdp = trunkd_media::Sdp::parse_bytes(offer).map_err(|e| MediaRefusal {
            status: 488,
            reason: e.to_string(),
        })?;
        let ports: Vec<Option<(u16, u16)>> = (0..sdp.media().len())
            .map(|i| {
                let p = self.base + 10 * i as u16;
                Some((p, p + 1))
            })
            .collect();
        let origin = trunkd_media::OriginOverride {
            username: "trunkd",
            session_id: self.session_id,
            version: 1,
        };
        let a = (self.build)(&sdp, addr(TRUNKD).ip(), &ports, origin, None);
        Ok(Bytes::from(a.sdp))
    }
}

pub struct Sim {
    pub now: Instant,
    pub engine: Engine,
    pub shared: Arc<Shared>,
    pub calls: HashMap<CallKey, Actor>,
    pub pbx: Ua,
    pub carrier: Ua,
    /// Datagrams in flight.
    pub net: Net,
    /// What the shell was asked to do, for assertions.
    pub started: Vec<CallKey>,
    pub refused_records: Vec<(String, u16)>,
    /// (source number, destination user) of each started call, as the
    /// admission names them for its CDR.
    pub numbers: Vec<(String, String)>,
    pub auth_failures: Vec<IpAddr>,
    pub call_events: Vec<CallEvent>,
    /// Media ports are exhausted: calls the engine starts are not.
    pub no_media: bool,
    /// The engine said it has no call left after a shutdown.
    pub idle: bool,
    /// The scripted driver of application calls: each action this long
    /// after the call starts (see [`Sim::enable_applications`]).
    pub app_script: Vec<(Duration, AppAction)>,
    /// The kinds of the calls started, in order.
    pub kinds: Vec<super::invite::CallKind>,
    /// The SIP message log lines the engine emitted, in order.
    pub sip_logs: Vec<super::machine::SipLog>,
    _dir: tempdir::Dir,
}

mod tempdir {
    /// A directory removed when dropped.
    pub struct Dir(pub std::path::PathBuf);
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

impl Sim {
    pub fn new(security: &str, extra: &str) -> Sim {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "trunkd-sim-{}-{}",
            std::process::id(),
            N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        let _ = std::fs::create_dir_all(&dir);
        let config = config(&dir, security, extra);
        let tls = crate::tls::TlsConfigs::load(&Default::default())
            .unwrap_or_else(|e| panic!("TLS defaults: {e}"));
        let shared = Arc::new(Shared::new(config, tls));
        let local = LocalAddrs {
            udp: Some(addr(TRUNKD)),
            tcp: None,
            tls: None,
            advertised: None,
        };
        let mut engine = Engine::new(shared.clone(), local, [7; 32], 42);
        let now = Instant::now();
        // As the shell does when it starts: probing takes its routes.
        engine.handle(now, SystemTime::now(), EngineInput::Reconfigured);
        let mut carrier = Ua::new(addr(CARRIER));
        carrier.answer = 200;
        Sim {
            now,
            engine,
            shared,
            calls: HashMap::new(),
            pbx: Ua::new(addr(PBX)),
            carrier,
            net: Net::default(),
            started: Vec::new(),
            refused_records: Vec::new(),
            numbers: Vec::new(),
            auth_failures: Vec::new(),
            call_events: Vec::new(),
            no_media: false,
            idle: false,
            app_script: Vec::new(),
            kinds: Vec::new(),
            sip_logs: Vec::new(),
            _dir: tempdir::Dir(dir),
        }
    }

    /// Registers a scripted application driver, as the shell does with
    /// its driver factory: application calls are admitted from now on.
    pub fn enable_applications(&mut self, script: Vec<(Duration, AppAction)>) {
        self.engine.set_applications(true);
        self.app_script = script;
    }

    /// The PBX sends `req` to trunkd in a new client transaction.
    pub fn pbx_sends(&mut self, req: Request) {
        Self::ua_sends(&mut self.pbx, self.now, req);
        self.pump();
    }

    /// The carrier sends `req` to trunkd (origination).
    pub fn carrier_sends(&mut self, req: Request) {
        Self::ua_sends(&mut self.carrier, self.now, req);
        self.pump();
    }

    fn ua_sends(ua: &mut Ua, now: Instant, req: Request) {
        match ua
            .endpoint
            .send_request(now, req.clone(), udp(addr(TRUNKD)), None)
        {
            Ok(id) => {
                ua.invites.insert(id, (req, 1));
            }
            Err(e) => panic!("{} could not send: {e:?}", ua.addr),
        }
    }

    /// Asks the engine to hang up every call (SIGTERM).
    pub fn shutdown(&mut self) {
        self.engine
            .handle(self.now, SystemTime::now(), EngineInput::Shutdown);
        self.pump();
    }

    /// The PBX sends `req` (an in-dialog request) to trunkd; its final
    /// response lands in `pbx.all_finals` only.
    pub fn pbx_sends_in_dialog(&mut self, req: Request) {
        let now = self.now;
        if let Err(e) = self
            .pbx
            .endpoint
            .send_request(now, req, udp(addr(TRUNKD)), None)
        {
            panic!("PBX could not send: {e:?}");
        }
        self.pump();
    }

    /// Runs until nothing is in flight and no timer is due within
    /// `horizon`; at most `max_steps` steps.
    pub fn run_for(&mut self, horizon: Duration) {
        let end = self.now + horizon;
        for _ in 0..100_000 {
            self.pump();
            let next = [
                self.net.next_delivery(),
                self.engine.poll_timeout(),
                self.pbx.endpoint.poll_timeout(),
                self.carrier.endpoint.poll_timeout(),
                self.calls.values().filter_map(|c| c.poll_timeout()).min(),
            ]
            .into_iter()
            .flatten()
            .min();
            match next {
                Some(t) if t <= end => {
                    self.now = self.now.max(t);
                    self.tick();
                }
                _ => {
                    self.now = end;
                    return;
                }
            }
        }
        panic!("the simulation did not settle");
    }

    fn tick(&mut self) {
        let now = self.now;
        while let Some(i) = self.net.flight.iter().position(|p| p.0 <= now) {
            let Some((_, from, to, bytes)) = self.net.flight.remove(i) else {
                break;
            };
            let Ok(msg) = SipMessage::parse(bytes) else {
                continue;
            };
            if to == addr(TRUNKD) {
                self.engine.handle(
                    now,
                    SystemTime::now(),
                    EngineInput::Message {
                        msg,
                        peer: udp(from),
                        client_verified: false,
                    },
                );
            } else if to == self.pbx.addr {
                self.pbx.endpoint.handle_message(now, msg, udp(from));
            } else if to == self.carrier.addr {
                self.carrier.endpoint.handle_message(now, msg, udp(from));
            }
        }
        if self.engine.poll_timeout().is_some_and(|t| t <= now) {
            self.engine.handle_timeout(now);
        }
        for ua in [&mut self.pbx, &mut self.carrier] {
            if ua.endpoint.poll_timeout().is_some_and(|t| t <= now) {
                ua.endpoint.handle_timeout(now);
            }
        }
        for call in self.calls.values_mut() {
            if call.poll_timeout().is_some_and(|t| t <= now) {
                call.handle_timeout(now);
            }
        }
        self.pump();
    }

    /// Moves everything that is ready, until nothing moves.
    fn pump(&mut self) {
        let now = self.now;
        loop {
            let mut moved = false;
            while let Some(t) = self.engine.poll_transmit() {
                moved = true;
                self.net.send(now, addr(TRUNKD), t.dest.addr, t.bytes);
            }
            while let Some(l) = self.engine.poll_sip_log() {
                self.sip_logs.push(l);
            }
            while let Some(ev) = self.engine.poll_event() {
                moved = true;
                self.on_engine_event(ev);
            }
            let keys: Vec<CallKey> = self.calls.keys().copied().collect();
            for key in keys {
                let mut outs = Vec::new();
                if let Some(call) = self.calls.get_mut(&key) {
                    while let Some(o) = call.poll_output() {
                        outs.push(o);
                    }
                }
                for out in outs {
                    moved = true;
                    match out {
                        trunkd_b2bua::CallOutput::Event(ev) => self.call_events.push(ev),
                        out => self.engine.handle(
                            now,
                            SystemTime::now(),
                            EngineInput::FromCall { call: key, out },
                        ),
                    }
                }
                if self.calls.get(&key).is_some_and(|c| c.is_ended()) {
                    self.calls.remove(&key);
                    self.engine
                        .handle(now, SystemTime::now(), EngineInput::CallDone { call: key });
                    moved = true;
                }
            }
            moved |= self.ua_step(true);
            moved |= self.ua_step(false);
            if !moved {
                break;
            }
        }
    }

    fn on_engine_event(&mut self, ev: EngineEvent) {
        let now = self.now;
        match ev {
            EngineEvent::StartCall(setup) => {
                if self.no_media {
                    self.engine.handle(
                        now,
                        SystemTime::now(),
                        EngineInput::CallNotStarted { setup },
                    );
                    return;
                }
                self.started.push(setup.key);
                self.kinds.push(setup.admission.kind.clone());
                self.numbers.push((
                    setup.admission.source_number.clone(),
                    setup.admission.b_user.clone(),
                ));
                let actor = match setup.admission.kind {
                    super::invite::CallKind::Bridge => {
                        Actor::Bridge(Box::new(Call::new(setup.new_call(Box::new(PassThrough)))))
                    }
                    super::invite::CallKind::Recording => {
                        let mut call = UasCall::new(setup.new_uas_call(Box::new(RECORDING_PORTS)));
                        call.answer(now);
                        Actor::Uas(Box::new(call))
                    }
                    super::invite::CallKind::Application { .. } => {
                        let call = UasCall::new(setup.new_uas_call(Box::new(APP_PORTS)));
                        let script = self
                            .app_script
                            .iter()
                            .map(|(after, a)| (now + *after, a.clone()))
                            .collect();
                        Actor::App(Box::new(call), script)
                    }
                };
                self.calls.insert(setup.key, actor);
            }
            EngineEvent::ToCall { call, input } => {
                if let Some(c) = self.calls.get_mut(&call) {
                    c.handle(now, *input);
                }
            }
            EngineEvent::RefusedCall(r) => self.refused_records.push((r.vc.to_string(), r.status)),
            EngineEvent::AuthFailed { source } => self.auth_failures.push(source),
            EngineEvent::Idle => self.idle = true,
        }
    }

    /// The PBX (`pbx` true) or the carrier: transmits and user-agent logic.
    fn ua_step(&mut self, pbx: bool) -> bool {
        let now = self.now;
        let ua = if pbx {
            &mut self.pbx
        } else {
            &mut self.carrier
        };
        let mut moved = false;
        while let Some(t) = ua.endpoint.poll_transmit() {
            moved = true;
            self.net.send(now, ua.addr, t.dest.addr, t.bytes);
        }
        while let Some(ev) = ua.endpoint.poll_event() {
            moved = true;
            match ev {
                TxEvent::Response { tx, response } => {
                    let code = response.status.as_u16();
                    if code < 200 {
                        continue;
                    }
                    ua.all_finals.push(response.clone());
                    let Some((req, cseq)) = ua.invites.get(&tx).cloned() else {
                        continue;
                    };
                    if code == 407 && cseq == 1 {
                        if let Some((user, pass)) = ua.credentials {
                            let retry = authorized(&req, &response, user, pass);
                            if let Ok(id) = ua.endpoint.send_request(
                                now,
                                retry.clone(),
                                udp(addr(TRUNKD)),
                                None,
                            ) {
                                ua.invites.insert(id, (retry, 2));
                            }
                            ua.finals.push(response);
                            continue;
                        }
                    }
                    if (200..300).contains(&code) {
                        let ack = ack_for(ua.addr, &req, &response, cseq);
                        ua.endpoint
                            .send_stateless(SipMessage::Request(ack), udp(addr(TRUNKD)));
                    }
                    ua.finals.push(response);
                }
                TxEvent::NewRequest {
                    tx,
                    request,
                    peer: _,
                } => {
                    ua.requests.push(request.clone());
                    let code = match request.method {
                        trunkd_sip::Method::Invite => ua.answer,
                        trunkd_sip::Method::Options => match ua.options_answer {
                            Some(c) => c,
                            None => continue,
                        },
                        _ => 200,
                    };
                    let mut resp = trunkd_sip::response_for(
                        &request,
                        StatusCode::new(code).unwrap_or(StatusCode::OK),
                        "Sim",
                        Some("carrier-tag"),
                    );
                    if request.method == trunkd_sip::Method::Invite && code == 200 {
                        let _ = resp.headers.append("Contact", format!("<sip:c@{CARRIER}>"));
                        let _ = resp
                            .headers
                            .append("Content-Type", "application/sdp".to_owned());
                        resp.body = Bytes::from_static(SDP.as_bytes());
                    }
                    let _ = ua.endpoint.send_response(now, tx, resp);
                }
                _ => {}
            }
        }
        moved
    }
}

/// The INVITE again, CSeq 2 and a new branch, with a digest answer.
fn authorized(req: &Request, challenge: &Response, user: &str, pass: &str) -> Request {
    let values: Vec<String> = challenge
        .headers
        .values("Proxy-Authenticate")
        .iter()
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .collect();
    let ch = Challenge::best(values.iter().map(String::as_str))
        .unwrap_or_else(|e| panic!("trunkd's challenge does not parse: {e:?}"));
    let uri = String::from_utf8_lossy(&req.uri.to_bytes()).into_owned();
    let answer = answer_challenge(&ch, user, pass, "INVITE", &uri, "cnonce1", 1);
    let text = String::from_utf8_lossy(&SipMessage::Request(req.clone()).to_bytes())
        .replace("CSeq: 1 INVITE", "CSeq: 2 INVITE")
        .replace(";branch=z9hG4bK-", ";branch=z9hG4bK-2-")
        .replacen(
            "Max-Forwards: 70\r\n",
            &format!("Max-Forwards: 70\r\nProxy-Authorization: {answer}\r\n"),
            1,
        );
    match SipMessage::parse(Bytes::from(text)) {
        Ok(SipMessage::Request(r)) => r,
        other => panic!("authorized INVITE does not parse: {other:?}"),
    }
}

fn ack_for(via: SocketAddr, req: &Request, resp: &Response, cseq: u32) -> Request {
    let to = resp
        .headers
        .get("To")
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .unwrap_or_default();
    let from = req
        .headers
        .get("From")
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .unwrap_or_default();
    let call_id = req
        .headers
        .get("Call-ID")
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .unwrap_or_default();
    let uri = String::from_utf8_lossy(&req.uri.to_bytes()).into_owned();
    let text = format!(
        "ACK {uri} SIP/2.0\r\nVia: SIP/2.0/UDP {via};branch=z9hG4bK-ack-{call_id}-{cseq}\r\nMax-Forwards: 70\r\nFrom: {from}\r\nTo: {to}\r\nCall-ID: {call_id}\r\nCSeq: {cseq} ACK\r\nContent-Length: 0\r\n\r\n"
    );
    match SipMessage::parse(Bytes::from(text)) {
        Ok(SipMessage::Request(r)) => r,
        other => panic!("ACK does not parse: {other:?}"),
    }
}

/// The PBX's BYE in the dialog `resp` (a 2xx to `req`) established.
pub fn bye_for(req: &Request, resp: &Response) -> Request {
    let text =
        String::from_utf8_lossy(&SipMessage::Request(ack_for(addr(PBX), req, resp, 1)).to_bytes())
            .replace("ACK ", "BYE ")
            .replace("CSeq: 1 ACK", "CSeq: 9 BYE")
            .replace("branch=z9hG4bK-ack-", "branch=z9hG4bK-bye-");
    match SipMessage::parse(Bytes::from(text)) {
        Ok(SipMessage::Request(r)) => r,
        other => panic!("BYE does not parse: {other:?}"),
    }
}
