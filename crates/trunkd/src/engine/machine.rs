//! The sans-IO engine: the transaction layer, the dispatch of its events to
//! calls, and the INVITE policy, in one state machine.
//!
//! It has the shape of `trunkd_sip::transaction::Endpoint` and
//! `trunkd_b2bua::Call` (STYLE.md): the shell feeds it one
//! [`EngineInput`] with `now` ([`Engine::handle`]) or a timeout
//! ([`Engine::handle_timeout`]), then drains [`Engine::poll_transmit`]
//! (bytes for a peer) and [`Engine::poll_event`] (calls to start, inputs for
//! calls, records to write), and sleeps until [`Engine::poll_timeout`]. It
//! never reads a clock, a random source or a socket: the seed is given at
//! construction, and the media anchor, the call tasks and the record files
//! belong to the shell. What it keeps:
//!
//! * which call owns each Call-ID, client transaction, branch and server
//!   transaction, so every message reaches its call;
//! * the calls in progress, overall and per source address, for the caps
//!   (a count that only started calls raise and only ended calls lower);
//! * the admission state (CPS buckets, digest nonce counters) and route
//!   health, which the INVITE policy ([`super::invite`]) reads and updates.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use rustc_hash::FxHashMap;
use trunkd_b2bua::{
    CallInput, CallOutput, Leg, LocalAddrs, MediaAnchor, NewCall, NewUasCall, SdpAnswerer,
};
use trunkd_config::Config;
use trunkd_core::admission::AdmissionState;
use trunkd_core::cdr::Direction;
use trunkd_core::digest::{NonceCounter, NonceIssuer};
use trunkd_core::routing::RouteHealthTable;
use trunkd_core::{Route, TransactionId, VcId};
use trunkd_sip::transaction::{
    ClientTxId, Endpoint, Limits, Peer, ServerTxId, TimerConfig, Transmit, TxError, TxEvent, TxId,
};
use trunkd_sip::{Method, Request, Response, SipMessage, StatusCode};

mod probing;

use super::invite::{
    self, Admission, InviteContext, InviteDecision, Load, NewInvite, Refusal, RefusalScope, Rng,
};
use crate::daemon::Shared;

/// The engine's name for a call (its actor).
pub type CallKey = u64;

/// One thing that happened, for [`Engine::handle`].
pub enum EngineInput {
    /// A well-formed message from a transport.
    Message {
        msg: SipMessage,
        peer: Peer,
        /// TLS with a verified client certificate (mutual TLS).
        client_verified: bool,
    },
    /// An output of a call's state machine.
    FromCall { call: CallKey, out: CallOutput },
    /// A call's actor finished: its dialogs and counts are released.
    CallDone { call: CallKey },
    /// The shell could not start the call it was asked to (no media
    /// ports): the INVITE is answered 503 and the call forgotten.
    CallNotStarted { setup: Box<CallSetup> },
    /// A stream connection to `peer` failed or closed.
    ConnectionLost { peer: Peer },
    /// A transmit for a client transaction could not be sent.
    SendFailed { tx: ClientTxId },
    /// A call's hop failed or answered (route health).
    HopOutcome { route: Route, ok: bool },
    /// The shell started, or the configuration was reloaded: probing
    /// takes the routes of the snapshot in force.
    Reconfigured,
    /// Hang up every call; [`EngineEvent::Idle`] when none is left.
    Shutdown,
}

/// What the shell must do.
pub enum EngineEvent {
    /// Start the actor of an admitted call (media anchor, task).
    StartCall(Box<CallSetup>),
    /// Deliver to a call's actor (dropped if its queue is full: the peer
    /// retransmits).
    ToCall {
        call: CallKey,
        input: Box<CallInput>,
    },
    /// Write the CDR of a call that admission refused.
    RefusedCall(Box<RefusedCall>),
    /// `source` failed digest authentication (per-source blocking).
    AuthFailed { source: IpAddr },
    /// Shutdown was asked and no call is left.
    Idle,
}

/// Which way a logged SIP message went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SipDirection {
    In,
    Out,
}

/// One SIP message of a call whose VC has `enable_sip_logs` on (SPEC
/// §5.3), for [`Engine::poll_sip_log`]: as received (re-encoded from the
/// parsed message) or as transmitted, retransmissions included. The shell
/// stamps the time and hands it to the writer.
#[derive(Clone, Debug)]
pub struct SipLog {
    pub vc: VcId,
    pub transaction_id: TransactionId,
    pub direction: SipDirection,
    pub peer: Peer,
    pub bytes: Bytes,
}

/// An admitted call, ready for its actor.
pub struct CallSetup {
    pub key: CallKey,
    pub transaction_id: TransactionId,
    /// The snapshot the call was admitted with; the call keeps it.
    pub config: Arc<Config>,
    pub admission: Admission,
    pub invite: Request,
    pub invite_tx: ServerTxId,
    pub a_dest: Peer,
    pub seed: u64,
    pub now: Instant,
    pub wall: SystemTime,
    local: LocalAddrs,
}

impl CallSetup {
    /// The call's state machine start, anchored by `media`. The routes and
    /// VCs of the plan stay in `self.admission.plan` for the records.
    pub fn new_call(&self, media: Box<dyn MediaAnchor>) -> NewCall {
        let settings = &self.config.settings;
        let a = &self.admission;
        NewCall {
            seed: self.seed,
            now: self.now,
            wall: self.wall,
            local: self.local.clone(),
            invite: self.invite.clone(),
            invite_tx: self.invite_tx,
            a_dest: self.a_dest,
            b_user: a.b_user.clone(),
            caller: a.caller.clone(),
            caller_name: a.caller_name.clone(),
            plan: a.plan.iter().map(|h| h.hop.clone()).collect(),
            hop_timeout: settings.routing.hop_timeout,
            routing_deadline: settings.routing.deadline,
            media,
        }
    }
}

impl CallSetup {
    /// The state machine start of a call trunkd answers itself (a
    /// recording session), its SDP answered by `answerer`. A recording
    /// server names itself in its Contact (`+sip.srs`, RFC 7866 §6.1.2).
    pub fn new_uas_call(&self, answerer: Box<dyn SdpAnswerer>) -> NewUasCall {
        let feature = match self.admission.kind {
            super::invite::CallKind::Recording => Some("+sip.srs"),
            super::invite::CallKind::Bridge | super::invite::CallKind::Application { .. } => None,
        };
        NewUasCall {
            seed: self.seed,
            now: self.now,
            wall: self.wall,
            local: self.local.clone(),
            invite: self.invite.clone(),
            invite_tx: self.invite_tx,
            a_dest: self.a_dest,
            contact_feature: feature,
            answerer,
        }
    }
}

/// The facts of a refused call's CDR.
pub struct RefusedCall {
    pub config: Arc<Config>,
    pub transaction_id: TransactionId,
    pub call_id: String,
    pub vc: VcId,
    pub direction: Direction,
    pub source_number: String,
    pub destination_number: String,
    pub wall: SystemTime,
    pub status: u16,
    pub reason: String,
}

/// What the transport told of the message being handled.
#[derive(Clone, Copy)]
struct Arrival {
    wall: SystemTime,
    client_verified: bool,
}

struct CallEntry {
    vc: Option<VcId>,
    /// Set when the call's VC has `enable_sip_logs` on: the VC and the
    /// call's transaction id, for its [`SipLog`]s.
    sip_log: Option<(VcId, TransactionId)>,
    /// The A leg's source, when it was counted for
    /// `security.max_calls_per_source` (only while that cap is on).
    counted_source: Option<IpAddr>,
}

/// Which call and leg a client transaction belongs to.
#[derive(Clone)]
struct ClientTx {
    call: CallKey,
    leg: Leg,
    branch: Bytes,
    dest: Peer,
}

pub struct Engine {
    shared: Arc<Shared>,
    config: Arc<Config>,
    endpoint: Endpoint,
    local: LocalAddrs,
    /// Maps keyed by what the engine numbers itself (calls, transactions)
    /// hash with FxHash; maps keyed by what a peer sends (Call-IDs,
    /// branches, source addresses) keep std's seeded SipHash, so a sender
    /// cannot choose colliding keys (docs/decisions.md, "FxHash for maps of
    /// trunkd's own keys").
    calls: FxHashMap<CallKey, CallEntry>,
    /// Calls in progress per counted A-leg source; entries leave at zero.
    calls_by_source: HashMap<IpAddr, usize>,
    by_call_id: HashMap<Bytes, (CallKey, Leg)>,
    client_txs: FxHashMap<ClientTxId, ClientTx>,
    branches: HashMap<Bytes, ClientTxId>,
    server_txs: FxHashMap<ServerTxId, (CallKey, Leg)>,
    admission: AdmissionState,
    nonce_issuer: NonceIssuer,
    health: RouteHealthTable,
    /// OPTIONS probing (`[probing]`); `None` while it is off.
    prober: Option<trunkd_core::routing::probe::Prober>,
    /// The client transactions of probes in flight, with their peer.
    probe_txs: FxHashMap<ClientTxId, (trunkd_core::routing::probe::ProbeId, Peer)>,
    /// The snapshot probing last took its routes from.
    probing_config: Option<Arc<Config>>,
    rng: Rng,
    next_call: CallKey,
    shutting_down: bool,
    events: VecDeque<EngineEvent>,
    /// Application calls are admitted (the shell has a driver for them).
    applications: bool,
    /// The Call-IDs (both legs) of calls with SIP logs on. Empty when no
    /// such call is in progress: then no message is looked at for logging.
    sip_log_ids: HashMap<Bytes, CallKey>,
    sip_logs: VecDeque<SipLog>,
    /// Ended calls whose messages are still logged until the deadline.
    sip_log_lingering: FxHashMap<CallKey, ((VcId, TransactionId), Instant)>,
    /// When a full transaction table was last logged: once per
    /// [`LIMIT_WARN_EVERY`], not once per refused request of an overload.
    limit_warned: Option<Instant>,
}

/// How long the messages of an ended call are still logged: 64·T1, the
/// life of its last transactions (RFC 3261 Timer F/H).
const SIP_LOG_LINGER: Duration = Duration::from_secs(32);

/// At most one warning per this long about a full transaction table.
const LIMIT_WARN_EVERY: Duration = Duration::from_secs(10);

fn tx_limits(config: &Config) -> Limits {
    Limits {
        max_transactions: config.settings.sip.max_transactions,
    }
}

impl Engine {
    /// `nonce_key` signs digest nonces; `seed` drives tags, transaction ids
    /// and weighted choices. Both come from the OS in the daemon and are
    /// fixed in tests.
    pub fn new(shared: Arc<Shared>, local: LocalAddrs, nonce_key: [u8; 32], seed: u64) -> Engine {
        let config = shared.config();
        Engine {
            endpoint: Endpoint::new(TimerConfig::default(), tx_limits(&config)),
            health: RouteHealthTable::new(config.settings.routing.hold_down),
            prober: None,
            probe_txs: FxHashMap::default(),
            probing_config: None,
            config,
            shared,
            local,
            calls: FxHashMap::default(),
            calls_by_source: HashMap::new(),
            by_call_id: HashMap::new(),
            client_txs: FxHashMap::default(),
            branches: HashMap::new(),
            server_txs: FxHashMap::default(),
            admission: AdmissionState {
                cps: Default::default(),
                nonces: NonceCounter::new(65_536),
            },
            nonce_issuer: NonceIssuer::new(nonce_key, Duration::from_secs(300)),
            rng: Rng::new(seed),
            next_call: 1,
            shutting_down: false,
            events: VecDeque::new(),
            applications: false,
            sip_log_ids: HashMap::new(),
            sip_logs: VecDeque::new(),
            sip_log_lingering: FxHashMap::default(),
            limit_warned: None,
        }
    }

    /// Live SIP transactions and the requests refused so far because the
    /// table was full (`[sip] max_transactions`), for the metrics.
    pub fn transactions(&self) -> (usize, u64) {
        (self.endpoint.len(), self.endpoint.limit_refusals())
    }

    /// A call an application places itself (CreateSipMediaApplicationCall):
    /// a key and an entry like an admitted call's, so its messages are
    /// routed to its actor and shutdown waits for it. `None` while
    /// shutting down. The caller starts the actor with [`Engine::local`].
    pub fn place_call(&mut self) -> Option<CallKey> {
        if self.shutting_down {
            return None;
        }
        let key = self.next_call;
        self.next_call += 1;
        self.calls.insert(
            key,
            CallEntry {
                vc: None,
                sip_log: None,
                counted_source: None,
            },
        );
        self.shared
            .metrics
            .engine_calls
            .set(self.calls.len() as i64);
        Some(key)
    }

    /// How trunkd appears on the wire (Via, Contact).
    pub fn local(&self) -> &LocalAddrs {
        &self.local
    }

    /// Whether carrier calls to numbers on SIP rules are admitted as
    /// application calls (the shell turns it on when it has a driver for
    /// them); off, they are refused 480.
    pub fn set_applications(&mut self, on: bool) {
        self.applications = on;
    }

    /// Calls in progress.
    #[cfg(test)]
    pub fn calls(&self) -> usize {
        self.calls.len()
    }

    /// Source addresses with a counted call in progress.
    #[cfg(test)]
    pub fn sources_tracked(&self) -> usize {
        self.calls_by_source.len()
    }

    /// The next bytes to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        let t = self.endpoint.poll_transmit()?;
        if !self.sip_log_ids.is_empty() {
            let call = crate::sip_redact::call_id_of(&t.bytes)
                .and_then(|id| self.sip_log_ids.get(id).copied());
            if let Some(call) = call {
                self.log_sip(call, SipDirection::Out, t.dest, t.bytes.clone());
            }
        }
        Some(t)
    }

    /// The next SIP message to log (calls whose VC has `enable_sip_logs`
    /// on). Drain after [`Engine::poll_transmit`].
    pub fn poll_sip_log(&mut self) -> Option<SipLog> {
        self.sip_logs.pop_front()
    }

    fn log_sip(&mut self, call: CallKey, direction: SipDirection, peer: Peer, bytes: Bytes) {
        let log = match self.calls.get(&call) {
            Some(c) => c.sip_log.clone(),
            None => self.sip_log_lingering.get(&call).map(|(l, _)| l.clone()),
        };
        if let Some((vc, transaction_id)) = log {
            self.sip_logs.push_back(SipLog {
                vc,
                transaction_id,
                direction,
                peer,
                bytes,
            });
        }
    }

    /// The next thing the shell must do. Drain after every input.
    pub fn poll_event(&mut self) -> Option<EngineEvent> {
        self.events.pop_front()
    }

    /// When [`Engine::handle_timeout`] is due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match (self.endpoint.poll_timeout(), self.probe_timeout()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Takes the configuration in force now (a reload swapped it).
    fn refresh_config(&mut self, now: Instant) {
        let current = self.shared.config();
        if !Arc::ptr_eq(&current, &self.config) {
            self.config = current;
        }
        self.sync_probing(now);
    }

    /// Stops logging the messages of ended calls past their linger time.
    fn expire_sip_logs(&mut self, now: Instant) {
        if self.sip_log_lingering.is_empty() {
            return;
        }
        let before = self.sip_log_lingering.len();
        self.sip_log_lingering.retain(|_, (_, until)| *until > now);
        if self.sip_log_lingering.len() != before {
            let (calls, lingering) = (&self.calls, &self.sip_log_lingering);
            self.sip_log_ids
                .retain(|_, c| calls.contains_key(c) || lingering.contains_key(c));
        }
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        self.refresh_config(now);
        self.expire_sip_logs(now);
        self.endpoint.handle_timeout(now);
        self.drain_endpoint(now, None);
        self.drive_probes(now);
        self.drain_endpoint(now, None);
    }

    pub fn handle(&mut self, now: Instant, wall: SystemTime, input: EngineInput) {
        // Each input sees the configuration in force when it arrives.
        self.refresh_config(now);
        self.expire_sip_logs(now);
        match input {
            EngineInput::Message {
                msg,
                peer,
                client_verified,
            } => {
                if !self.sip_log_ids.is_empty() {
                    let call = msg
                        .headers()
                        .get("Call-ID")
                        .and_then(|id| self.sip_log_ids.get(id).copied());
                    if let Some(call) = call {
                        self.log_sip(call, SipDirection::In, peer, msg.to_bytes());
                    }
                }
                self.endpoint.handle_message(now, msg, peer);
                self.drain_endpoint(
                    now,
                    Some(Arrival {
                        wall,
                        client_verified,
                    }),
                );
                return;
            }
            EngineInput::FromCall { call, out } => self.on_call_output(now, call, out),
            EngineInput::CallDone { call } => self.forget_call(now, call),
            EngineInput::CallNotStarted { setup } => {
                self.forget_call(now, setup.key);
                self.server_txs.remove(&setup.invite_tx);
                self.shared.metrics.media_port_exhaustions.inc();
                let refusal = Refusal {
                    status: 503,
                    reason: "Media Ports Exhausted".to_owned(),
                    retry_after: Some(5),
                    warning: None,
                    metric_reason: "media_ports",
                    scope: RefusalScope::Call {
                        direction: setup.admission.direction,
                        vc: setup.admission.vc.clone(),
                        source_number: setup.admission.source_number.clone(),
                        destination_number: setup.admission.b_user.clone(),
                        auth_failed: false,
                        throttled: false,
                    },
                };
                let source = setup.a_dest.addr.ip();
                self.refuse(
                    now,
                    wall,
                    source,
                    setup.invite_tx,
                    &setup.invite,
                    &refusal,
                    setup.transaction_id,
                    false,
                );
            }
            EngineInput::ConnectionLost { peer } => {
                let failed: Vec<ClientTxId> = self
                    .client_txs
                    .iter()
                    .filter(|(_, v)| v.dest == peer)
                    .map(|(k, _)| *k)
                    .chain(
                        self.probe_txs
                            .iter()
                            .filter(|(_, (_, dest))| *dest == peer)
                            .map(|(k, _)| *k),
                    )
                    .collect();
                for tx in failed {
                    self.endpoint.transport_error(tx);
                }
            }
            EngineInput::SendFailed { tx } => self.endpoint.transport_error(tx),
            EngineInput::HopOutcome { route, ok } => {
                // A first failure, or a change after one, is an event
                // (docs/events.md); a first success is not (up is assumed).
                let was_up = self.shared.metrics.route_outcome(&route, ok);
                if was_up != ok {
                    self.shared.route_state_changed(&route, ok);
                }
                if ok {
                    self.health.record_success(&route);
                } else {
                    self.health.record_failure(&route, now);
                }
            }
            EngineInput::Reconfigured => {
                self.endpoint.set_limits(tx_limits(&self.shared.config()));
                self.drive_probes(now);
            }
            EngineInput::Shutdown => {
                self.shutting_down = true;
                let keys: Vec<CallKey> = self.calls.keys().copied().collect();
                for call in keys {
                    self.events.push_back(EngineEvent::ToCall {
                        call,
                        input: Box::new(CallInput::Hangup),
                    });
                }
                if self.calls.is_empty() {
                    self.events.push_back(EngineEvent::Idle);
                }
            }
        }
        self.drain_endpoint(now, None);
    }

    fn forget_call(&mut self, now: Instant, call: CallKey) {
        if let Some(entry) = self.calls.remove(&call) {
            if let Some(log) = entry.sip_log.clone() {
                // The last messages (the BYE's 200, retransmissions) come
                // after the call's actor is done: still the call's.
                self.sip_log_lingering
                    .insert(call, (log, now + SIP_LOG_LINGER));
            }
            if let Some(source) = entry.counted_source {
                if let std::collections::hash_map::Entry::Occupied(mut n) =
                    self.calls_by_source.entry(source)
                {
                    *n.get_mut() = n.get().saturating_sub(1);
                    if *n.get() == 0 {
                        n.remove();
                    }
                }
            }
        }
        self.shared
            .metrics
            .engine_calls
            .set(self.calls.len() as i64);
        if self.shutting_down && self.calls.is_empty() {
            self.events.push_back(EngineEvent::Idle);
        }
    }

    /// Dispatches the transaction layer's events; `arrival` describes the
    /// message being handled, if any (only a message starts a request).
    fn drain_endpoint(&mut self, now: Instant, arrival: Option<Arrival>) {
        while let Some(ev) = self.endpoint.poll_event() {
            self.on_tx_event(now, arrival, ev);
        }
    }

    fn deliver(&mut self, call: CallKey, input: CallInput) {
        if self.calls.contains_key(&call) {
            self.events.push_back(EngineEvent::ToCall {
                call,
                input: Box::new(input),
            });
        }
    }

    /// The call and leg owning the dialog (Call-ID) a message belongs to.
    fn dialog_of(&self, headers: &trunkd_sip::Headers) -> Option<(CallKey, Leg)> {
        self.by_call_id.get(headers.get("Call-ID")?).copied()
    }

    /// Delivers what `input` builds from a client transaction's leg and
    /// branch to the call that started the transaction.
    fn deliver_for_client_tx(
        &mut self,
        tx: ClientTxId,
        input: impl FnOnce(Leg, Bytes) -> CallInput,
    ) {
        if let Some(c) = self.client_txs.get(&tx) {
            let (call, leg, branch) = (c.call, c.leg, c.branch.clone());
            self.deliver(call, input(leg, branch));
        }
    }

    fn on_tx_event(&mut self, now: Instant, arrival: Option<Arrival>, ev: TxEvent) {
        match ev {
            TxEvent::NewRequest { tx, request, peer } => match arrival {
                Some(a) => self.on_new_request(now, a, tx, request, peer),
                None => tracing::debug!("a new request without a message; ignored"),
            },
            TxEvent::Ack { request, peer: _ } => {
                if let Some((call, leg)) = self.dialog_of(&request.headers) {
                    self.deliver(call, CallInput::Ack { leg, request });
                }
            }
            TxEvent::Cancelled { tx } => {
                if let Some(&(call, _)) = self.server_txs.get(&tx) {
                    self.deliver(call, CallInput::Cancelled);
                }
            }
            TxEvent::StrayResponse { response, peer: _ } => {
                if let Some((call, leg)) = self.dialog_of(&response.headers) {
                    self.deliver(call, CallInput::StrayResponse { leg, response });
                }
            }
            TxEvent::Response { tx, response } if self.is_probe_tx(&tx) => {
                self.probe_replied(now, tx, response.status.as_u16())
            }
            TxEvent::Timeout { tx } if self.is_probe_tx(&tx) => {
                self.probe_tx_failed(now, tx, "408 timeout")
            }
            TxEvent::TransportError { tx } if self.is_probe_tx(&tx) => {
                self.probe_tx_failed(now, tx, "transport error")
            }
            TxEvent::Response { tx, response } => {
                self.deliver_for_client_tx(tx, |leg, branch| CallInput::Response {
                    leg,
                    branch,
                    response,
                })
            }
            TxEvent::Timeout { tx } => {
                self.deliver_for_client_tx(tx, |leg, branch| CallInput::Timeout { leg, branch })
            }
            TxEvent::TransportError { tx } => self
                .deliver_for_client_tx(tx, |leg, branch| CallInput::TransportError { leg, branch }),
            TxEvent::AckTimeout { tx } => {
                if let Some(&(call, leg)) = self.server_txs.get(&tx) {
                    self.deliver(call, CallInput::AckTimeout { leg });
                }
            }
            TxEvent::Terminated { tx } => match tx {
                TxId::Client(c) => {
                    self.probe_tx_terminated(&c);
                    if let Some(c) = self.client_txs.remove(&c) {
                        self.branches.remove(&c.branch);
                    }
                }
                TxId::Server(s) => {
                    self.server_txs.remove(&s);
                }
            },
        }
    }

    /// 16 lowercase hex digits of fresh randomness (a To tag).
    fn tag(&mut self) -> String {
        let bits = u64::from(self.rng.next_u32()) << 32 | u64::from(self.rng.next_u32());
        let mut t = String::with_capacity(16);
        trunkd_b2bua::push_hex(&mut t, bits, 16);
        t
    }

    fn respond(
        &mut self,
        now: Instant,
        tx: ServerTxId,
        req: &Request,
        code: StatusCode,
        reason: &str,
        extra: &[(&str, String)],
    ) {
        let tag = self.tag();
        let mut resp = trunkd_sip::response_for(req, code, reason, Some(&tag));
        for (name, value) in extra {
            // Values are ours (numbers, challenges): no CR/LF.
            let _ = resp.headers.append(name, value.clone());
        }
        self.send_response(now, tx, resp);
    }

    fn send_response(&mut self, now: Instant, tx: ServerTxId, resp: Response) {
        self.shared
            .metrics
            .response_sent("any", resp.status.as_u16());
        if let Err(e) = self.endpoint.send_response(now, tx, resp) {
            tracing::debug!(error = ?e, %tx, "response on a finished transaction dropped");
        }
    }

    fn on_new_request(
        &mut self,
        now: Instant,
        arrival: Arrival,
        tx: ServerTxId,
        req: Request,
        peer: Peer,
    ) {
        let call_id = req.headers.get("Call-ID").cloned().unwrap_or_default();
        let to_tag = req.headers.to_tag().ok().flatten();
        if let Some(&(call, leg)) = self.by_call_id.get(&call_id) {
            if to_tag.is_some() || req.method != Method::Invite {
                if req.method == Method::Invite {
                    self.server_txs.insert(tx, (call, leg));
                }
                self.deliver(
                    call,
                    CallInput::Request {
                        leg,
                        tx,
                        request: req,
                    },
                );
                return;
            }
        }
        if to_tag.is_some() {
            return self.respond(
                now,
                tx,
                &req,
                StatusCode::CALL_DOES_NOT_EXIST,
                "Call/Transaction Does Not Exist",
                &[],
            );
        }
        match req.method {
            Method::Invite => self.on_invite(now, arrival, tx, req, peer),
            Method::Options => {
                let config = self.config.clone();
                let host = trunkd_b2bua::leg::request_uri_host(&req).unwrap_or_default();
                if let Some(vc) = invite::vc_for(
                    &config.resources,
                    &config.settings.daemon.outbound_host_domain,
                    &host,
                    peer.addr.ip(),
                ) {
                    self.shared
                        .metrics
                        .options_ping(&vc, &config.resources, peer.addr);
                }
                let allow = ("Allow", crate::sip_service::ALLOW.to_owned());
                let accept = ("Accept", "application/sdp".to_owned());
                self.respond(now, tx, &req, StatusCode::OK, "OK", &[allow, accept]);
            }
            Method::Bye | Method::Cancel | Method::Prack | Method::Update | Method::Info => self
                .respond(
                    now,
                    tx,
                    &req,
                    StatusCode::CALL_DOES_NOT_EXIST,
                    "Call/Transaction Does Not Exist",
                    &[],
                ),
            _ => {
                let allow = ("Allow", crate::sip_service::ALLOW.to_owned());
                self.respond(
                    now,
                    tx,
                    &req,
                    StatusCode::NOT_IMPLEMENTED,
                    "Not Implemented",
                    &[allow],
                )
            }
        }
    }

    fn transaction_id(&mut self) -> TransactionId {
        let mut tid = [0u8; 16];
        for chunk in tid.chunks_mut(4) {
            chunk.copy_from_slice(&self.rng.next_u32().to_le_bytes());
        }
        TransactionId::from_random_bytes(tid)
    }

    fn on_invite(
        &mut self,
        now: Instant,
        arrival: Arrival,
        tx: ServerTxId,
        req: Request,
        peer: Peer,
    ) {
        let Arrival {
            wall,
            client_verified,
        } = arrival;
        let config = self.config.clone();
        let source = peer.addr.ip();
        let decision = {
            let ctx = InviteContext {
                config: &config,
                hosts: &self.shared.hosts,
                health: &self.health,
                nonce_issuer: &self.nonce_issuer,
                now,
                wall,
                load: Load {
                    calls: self.calls.len(),
                    calls_from_source: self.calls_by_source.get(&source).copied().unwrap_or(0),
                },
                applications: self.applications,
            };
            let new = NewInvite {
                request: &req,
                peer,
                client_verified,
            };
            invite::decide(&ctx, &mut self.admission, &mut self.rng, &new)
        };
        let transaction_id = self.transaction_id();
        let resources = &config.resources;
        let m = &self.shared.metrics;
        match decision {
            InviteDecision::Challenge {
                vc,
                proxy_authenticate,
            } => {
                // Seen in the admission counters, but neither an attempt
                // nor a failure: the authenticated INVITE is the attempt.
                m.admission_rejected(vc.as_ref(), resources, "auth_challenge");
                let extra: Vec<(&str, String)> = proxy_authenticate
                    .into_iter()
                    .map(|v| ("Proxy-Authenticate", v))
                    .collect();
                self.respond(
                    now,
                    tx,
                    &req,
                    StatusCode::new(407).unwrap_or(StatusCode::SERVICE_UNAVAILABLE),
                    "Proxy Authentication Required",
                    &extra,
                );
            }
            InviteDecision::Refuse(refusal) => {
                self.refuse(now, wall, source, tx, &req, &refusal, transaction_id, true);
            }
            InviteDecision::Admit(admission) => {
                let label = direction_label(admission.direction);
                m.call_attempt(admission.vc.as_ref(), resources, label);
                // The call's task logs in a span with its transaction id;
                // this line comes before it, so it names the id itself
                // (and the Call-ID, to find the call's SIP messages).
                tracing::info!(
                    transaction_id = %transaction_id,
                    call_id = %String::from_utf8_lossy(req.headers.get("Call-ID").map_or(&[][..], |b| b)),
                    vc = admission.vc.as_ref().map(|v| v.as_str()).unwrap_or("-"),
                    direction = label,
                    dest = %admission.b_user,
                    emergency = admission.emergency,
                    kind = ?admission.kind,
                    "call admitted"
                );
                let key = self.next_call;
                self.next_call += 1;
                let cap_on = config.settings.security.max_calls_per_source > 0;
                if cap_on {
                    *self.calls_by_source.entry(source).or_insert(0) += 1;
                }
                let sip_log = admission
                    .vc
                    .as_ref()
                    .filter(|vc| {
                        resources
                            .voice_connector(vc.as_str())
                            .is_some_and(|v| v.logging.enable_sip_logs)
                    })
                    .map(|vc| (vc.clone(), transaction_id));
                if sip_log.is_some() {
                    // The INVITE that started the call is logged here: its
                    // Call-ID was not known as a logged call's on arrival.
                    if let Some(id) = req.headers.get("Call-ID") {
                        self.sip_log_ids.insert(id.clone(), key);
                    }
                }
                self.calls.insert(
                    key,
                    CallEntry {
                        sip_log,
                        vc: admission.vc.clone(),
                        counted_source: cap_on.then_some(source),
                    },
                );
                self.server_txs.insert(tx, (key, Leg::A));
                self.log_sip(key, SipDirection::In, peer, req.to_bytes());
                self.shared
                    .metrics
                    .engine_calls
                    .set(self.calls.len() as i64);
                let seed = u64::from(self.rng.next_u32()) << 32 | u64::from(self.rng.next_u32());
                self.events
                    .push_back(EngineEvent::StartCall(Box::new(CallSetup {
                        key,
                        transaction_id,
                        config: config.clone(),
                        admission: *admission,
                        invite: req,
                        invite_tx: tx,
                        a_dest: peer,
                        seed,
                        now,
                        wall,
                        local: self.local.clone(),
                    })));
            }
        }
    }

    /// Answers a refused INVITE and counts it where it belongs: a refusal
    /// at the gate in `sip_requests_refused_total`, a refused call attempt
    /// as an attempt and a failure of its VC, with a CDR when the VC is
    /// known (SPEC §5.1).
    #[allow(clippy::too_many_arguments)]
    fn refuse(
        &mut self,
        now: Instant,
        wall: SystemTime,
        source: IpAddr,
        tx: ServerTxId,
        req: &Request,
        refusal: &Refusal,
        transaction_id: TransactionId,
        count_attempt: bool,
    ) {
        let config = self.config.clone();
        let resources = &config.resources;
        let m = &self.shared.metrics;
        match &refusal.scope {
            RefusalScope::Gate => {
                m.sip_refused
                    .get_or_create(&crate::metrics::RefusedLabels {
                        reason: refusal.metric_reason,
                    })
                    .inc();
            }
            RefusalScope::Call {
                direction,
                vc,
                source_number,
                destination_number,
                auth_failed,
                throttled,
            } => {
                let label = direction_label(*direction);
                if count_attempt {
                    m.call_attempt(vc.as_ref(), resources, label);
                }
                m.failed(vc.as_ref(), resources, label);
                m.admission_rejected(vc.as_ref(), resources, refusal.metric_reason);
                m.vc_response(vc.as_ref(), resources, refusal.status);
                if *throttled {
                    m.throttled(vc.as_ref(), resources);
                }
                if *auth_failed {
                    // Counted per source (a source failing too often is
                    // blocked at the gate); the metric stays per VC
                    // (bounded labels), the log names the source.
                    tracing::warn!(
                        transaction_id = %transaction_id,
                        src = %source,
                        "digest authentication failed"
                    );
                    self.events.push_back(EngineEvent::AuthFailed { source });
                }
                if let Some(vc) = vc {
                    self.events
                        .push_back(EngineEvent::RefusedCall(Box::new(RefusedCall {
                            config: config.clone(),
                            transaction_id,
                            call_id: String::from_utf8_lossy(
                                req.headers.get("Call-ID").map_or(&[][..], |b| b),
                            )
                            .into_owned(),
                            vc: vc.clone(),
                            direction: *direction,
                            source_number: source_number.clone(),
                            destination_number: destination_number.clone(),
                            wall,
                            status: refusal.status,
                            reason: refusal.reason.clone(),
                        })));
                }
            }
        }
        tracing::debug!(
            transaction_id = %transaction_id,
            call_id = %String::from_utf8_lossy(req.headers.get("Call-ID").map_or(&[][..], |b| b)),
            status = refusal.status,
            reason = refusal.metric_reason,
            "INVITE refused"
        );
        let mut extra = Vec::new();
        if let Some(s) = refusal.retry_after {
            extra.push(("Retry-After", s.to_string()));
        }
        if let Some(w) = &refusal.warning {
            extra.push(("Warning", invite::warning_value(w)));
        }
        if refusal.metric_reason == invite::SIPREC_METADATA {
            m.siprec_sessions
                .get_or_create(&crate::metrics::OutcomeLabel {
                    outcome: "refused_metadata",
                })
                .inc();
        }
        let code = StatusCode::new(refusal.status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
        self.respond(now, tx, req, code, &refusal.reason, &extra);
    }

    fn on_call_output(&mut self, now: Instant, call: CallKey, out: CallOutput) {
        match out {
            CallOutput::SendRequest {
                leg,
                request,
                dest,
                timeout,
            } => {
                let branch = request
                    .headers
                    .top_via_branch()
                    .ok()
                    .flatten()
                    .unwrap_or_default();
                match self.endpoint.send_request(now, request, dest, timeout) {
                    Ok(id) => {
                        self.client_txs.insert(
                            id,
                            ClientTx {
                                call,
                                leg,
                                branch: branch.clone(),
                                dest,
                            },
                        );
                        self.branches.insert(branch, id);
                    }
                    Err(TxError::TooManyTransactions) => {
                        if self
                            .limit_warned
                            .is_none_or(|t| now.duration_since(t) >= LIMIT_WARN_EVERY)
                        {
                            self.limit_warned = Some(now);
                            tracing::warn!(
                                max_transactions =
                                    self.shared.config().settings.sip.max_transactions,
                                "the SIP transaction table is full: calls fail until transactions \
                                 expire (sip_transaction_limit_refusals_total counts them; raise \
                                 [sip] max_transactions for this load)"
                            );
                        }
                        self.deliver(call, CallInput::TransportError { leg, branch });
                    }
                    Err(e) => {
                        tracing::warn!(error = ?e, "could not start a client transaction");
                        self.deliver(call, CallInput::TransportError { leg, branch });
                    }
                }
            }
            CallOutput::SendStateless { request, dest } => self
                .endpoint
                .send_stateless(SipMessage::Request(request), dest),
            CallOutput::SendResponse { tx, response } => {
                if let Some(entry) = self.calls.get(&call) {
                    self.shared.metrics.vc_response(
                        entry.vc.as_ref(),
                        &self.config.resources,
                        response.status.as_u16(),
                    );
                }
                self.send_response(now, tx, response)
            }
            CallOutput::Cancel { branch } => {
                if let Some(&id) = self.branches.get(&branch) {
                    match self.endpoint.cancel(now, id) {
                        Ok(cancel_tx) => {
                            if let Some(c) = self.client_txs.get(&id).cloned() {
                                self.client_txs.insert(
                                    cancel_tx,
                                    ClientTx {
                                        branch: Bytes::new(),
                                        ..c
                                    },
                                );
                            }
                        }
                        Err(e) => tracing::debug!(error = ?e, "CANCEL not sent"),
                    }
                }
            }
            CallOutput::Register { call_id, leg } => {
                if self.calls.get(&call).is_some_and(|c| c.sip_log.is_some()) {
                    self.sip_log_ids.insert(call_id.clone(), call);
                }
                self.by_call_id.insert(call_id, (call, leg));
            }
            CallOutput::Unregister { call_id } => {
                if self
                    .by_call_id
                    .get(&call_id)
                    .is_some_and(|(c, _)| *c == call)
                {
                    self.by_call_id.remove(&call_id);
                }
            }
            CallOutput::Event(_) => {}
        }
    }
}

fn direction_label(d: Direction) -> &'static str {
    match d {
        Direction::Inbound => "inbound",
        Direction::Outbound => "outbound",
    }
}
