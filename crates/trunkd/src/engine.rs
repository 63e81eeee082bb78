//! The SIP engine: one task that owns the transaction layer and routes.
//!
//! Data path (ARCHITECTURE.md): transport tasks parse messages and send them
//! here; the engine feeds them to the sans-IO [`Endpoint`], sends what it
//! transmits, and dispatches its events — a new INVITE through admission
//! and routing to a new call task, everything else to the call that owns
//! the Call-ID, client transaction or server transaction. Call tasks send
//! their outputs back here. The engine is the only owner of the transaction
//! table, the Call-ID index and the admission state, so none of them needs a
//! lock.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use tokio::sync::mpsc;
use tracing::{debug, info, warn};
use trunkd_b2bua::{CallInput, CallOutput, Hop, Leg, LocalAddrs, NewCall};
use trunkd_core::admission::{
    admit_termination, called_number, origination_source, origination_target, AdmissionState, Now,
    OriginationTarget, TerminationPolicy, TerminationRequest,
};
use trunkd_core::digest::{NonceCounter, NonceIssuer};
use trunkd_core::routing::{origination_plan, termination_plan, RouteHealthTable};
use trunkd_core::{Host, Route, SrtpPolicy, TransactionId};
use trunkd_sip::transaction::{
    ClientTxId, Endpoint, Limits, Peer, ServerTxId, TimerConfig, TxEvent, TxId, TxTransport,
};
use trunkd_sip::{Method, Request, Response, SipMessage, StatusCode};

use crate::call_task::{self, CallContext};
use crate::daemon::Shared;
use crate::transport::Sender;

/// What reaches the engine.
pub enum Input {
    /// A parsed message from a transport.
    Message { msg: SipMessage, peer: Peer },
    /// An output of a call task.
    FromCall { call: u64, out: CallOutput },
    /// A call task finished.
    CallDone { call: u64 },
    /// A stream connection to `peer` failed or closed.
    ConnectionLost { peer: Peer },
    /// The hop of a finished call attempt failed/succeeded: route health.
    HopOutcome { route: Route, ok: bool },
    /// A peer opened a stream connection: reuse it to send to that peer.
    ConnectionOpened {
        peer: Peer,
        writer: mpsc::Sender<Bytes>,
        /// TLS: the peer's client certificate verified (mutual TLS).
        client_verified: bool,
    },
    /// Hang up every call; `done` fires when none is left.
    Shutdown {
        done: tokio::sync::oneshot::Sender<()>,
    },
}

pub type EngineTx = mpsc::Sender<Input>;

struct CallEntry {
    tx: mpsc::Sender<CallInput>,
    /// The call's VC, for per-VC response counts.
    vc: Option<trunkd_core::VcId>,
    /// The A leg's source address (`security.max_calls_per_source`).
    source: std::net::IpAddr,
}

pub struct Engine {
    shared: Arc<Shared>,
    endpoint: Endpoint,
    sender: Sender,
    local: LocalAddrs,
    self_tx: EngineTx,
    calls: HashMap<u64, CallEntry>,
    /// Calls in progress per A-leg source address; entries leave at zero.
    calls_by_source: HashMap<std::net::IpAddr, usize>,
    by_call_id: HashMap<Bytes, (u64, Leg)>,
    client_txs: HashMap<ClientTxId, (u64, Leg, Bytes, Peer)>,
    branches: HashMap<Bytes, ClientTxId>,
    server_txs: HashMap<ServerTxId, (u64, Leg)>,
    admission: AdmissionState,
    nonce_issuer: NonceIssuer,
    health: RouteHealthTable,
    rng: u64,
    next_call: u64,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    ports: trunkd_media::PortAllocator,
}

impl Engine {
    pub fn new(
        shared: Arc<Shared>,
        sender: Sender,
        local: LocalAddrs,
        self_tx: EngineTx,
        ports: trunkd_media::PortAllocator,
    ) -> anyhow::Result<Engine> {
        let mut key = [0u8; 32];
        let mut seed = [0u8; 8];
        // Without OS randomness nonces and tags would be predictable: a
        // daemon that cannot get it must not run.
        getrandom::fill(&mut key)
            .and_then(|()| getrandom::fill(&mut seed))
            .map_err(|e| anyhow::anyhow!("the OS random number generator is unavailable: {e}"))?;
        let hold_down = shared.config().settings.routing.hold_down;
        Ok(Engine {
            endpoint: Endpoint::new(TimerConfig::default(), Limits::default()),
            shared,
            sender,
            local,
            self_tx,
            calls: HashMap::new(),
            calls_by_source: HashMap::new(),
            by_call_id: HashMap::new(),
            client_txs: HashMap::new(),
            branches: HashMap::new(),
            server_txs: HashMap::new(),
            admission: AdmissionState {
                cps: Default::default(),
                nonces: NonceCounter::new(65_536),
            },
            nonce_issuer: NonceIssuer::new(key, Duration::from_secs(300)),
            health: RouteHealthTable::new(hold_down),
            rng: u64::from_le_bytes(seed),
            next_call: 1,
            shutdown: None,
            ports,
        })
    }

    fn random(&mut self) -> u64 {
        self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub async fn run(mut self, mut rx: mpsc::Receiver<Input>) {
        loop {
            let deadline = self.endpoint.poll_timeout();
            tokio::select! {
                input = rx.recv() => match input {
                    Some(i) => self.handle(i),
                    None => return,
                },
                _ = sleep_until(deadline) => {
                    let now = Instant::now();
                    self.endpoint.handle_timeout(now);
                    self.flush(now);
                }
            }
            // Everything already queued is handled before the next wait, so
            // one wake-up serves a burst.
            while let Ok(i) = rx.try_recv() {
                self.handle(i);
            }
        }
    }

    fn handle(&mut self, input: Input) {
        let now = Instant::now();
        match input {
            Input::Message { msg, peer } => self.endpoint.handle_message(now, msg, peer),
            Input::FromCall { call, out } => self.on_call_output(now, call, out),
            Input::CallDone { call } => {
                if let Some(entry) = self.calls.remove(&call) {
                    if let std::collections::hash_map::Entry::Occupied(mut n) =
                        self.calls_by_source.entry(entry.source)
                    {
                        *n.get_mut() -= 1;
                        if *n.get() == 0 {
                            n.remove();
                        }
                    }
                }
                self.shared
                    .metrics
                    .engine_calls
                    .set(self.calls.len() as i64);
                if self.calls.is_empty() {
                    if let Some(done) = self.shutdown.take() {
                        let _ = done.send(());
                    }
                }
            }
            Input::ConnectionOpened {
                peer,
                writer,
                client_verified,
            } => self.sender.register(peer, writer, client_verified),
            Input::Shutdown { done } => {
                let keys: Vec<u64> = self.calls.keys().copied().collect();
                for k in keys {
                    self.deliver(k, CallInput::Hangup);
                }
                if self.calls.is_empty() {
                    let _ = done.send(());
                } else {
                    self.shutdown = Some(done);
                }
            }
            Input::ConnectionLost { peer } => {
                self.sender.forget(peer);
                let failed: Vec<ClientTxId> = self
                    .client_txs
                    .iter()
                    .filter(|(_, v)| v.3 == peer)
                    .map(|(k, _)| *k)
                    .collect();
                for tx in failed {
                    self.endpoint.transport_error(tx);
                }
            }
            Input::HopOutcome { route, ok } => {
                self.shared.metrics.route_outcome(&route, ok);
                if ok {
                    self.health.record_success(&route);
                } else {
                    self.health.record_failure(&route, now);
                }
            }
        }
        self.flush(now);
    }

    /// Sends what the endpoint transmits and dispatches its events.
    fn flush(&mut self, now: Instant) {
        loop {
            let mut progressed = false;
            while let Some(t) = self.endpoint.poll_transmit() {
                progressed = true;
                tracing::trace!(dest = %t.dest.addr, bytes = t.bytes.len(), "transmit");
                if !self.sender.send(t.dest, t.bytes) {
                    if let Some(TxId::Client(tx)) = t.tx {
                        self.endpoint.transport_error(tx);
                    }
                }
            }
            while let Some(ev) = self.endpoint.poll_event() {
                progressed = true;
                tracing::trace!(event = ?std::mem::discriminant(&ev), "transaction event");
                self.on_event(now, ev);
            }
            if !progressed {
                break;
            }
        }
    }

    fn deliver(&mut self, call: u64, input: CallInput) {
        if let Some(c) = self.calls.get(&call) {
            // A full queue means the call task is stuck; the peer will
            // retransmit, and dropping keeps the engine responsive.
            match c.tx.try_send(input) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(_)) => {
                    warn!(call, "call input queue full; message dropped")
                }
                // The call is ending; its CallDone is on the way.
                Err(mpsc::error::TrySendError::Closed(_)) => {
                    debug!(call, "message for an ended call dropped")
                }
            }
        }
    }

    fn on_event(&mut self, now: Instant, ev: TxEvent) {
        match ev {
            TxEvent::NewRequest { tx, request, peer } => {
                self.on_new_request(now, tx, request, peer)
            }
            TxEvent::Ack { request, peer: _ } => {
                let Some(call_id) = request.headers.get("Call-ID").cloned() else {
                    return;
                };
                if let Some(&(call, leg)) = self.by_call_id.get(&call_id) {
                    self.deliver(call, CallInput::Ack { leg, request });
                }
            }
            TxEvent::Cancelled { tx } => {
                if let Some(&(call, _)) = self.server_txs.get(&tx) {
                    self.deliver(call, CallInput::Cancelled);
                }
            }
            TxEvent::Response { tx, response } => {
                if let Some((call, leg, branch, _)) = self.client_txs.get(&tx).cloned() {
                    self.deliver(
                        call,
                        CallInput::Response {
                            leg,
                            branch,
                            response,
                        },
                    );
                }
            }
            TxEvent::StrayResponse { response, peer: _ } => {
                let Some(call_id) = response.headers.get("Call-ID").cloned() else {
                    return;
                };
                if let Some(&(call, leg)) = self.by_call_id.get(&call_id) {
                    self.deliver(call, CallInput::StrayResponse { leg, response });
                }
            }
            TxEvent::Timeout { tx } => {
                if let Some((call, leg, branch, _)) = self.client_txs.get(&tx).cloned() {
                    self.deliver(call, CallInput::Timeout { leg, branch });
                }
            }
            TxEvent::TransportError { tx } => {
                if let Some((call, leg, branch, _)) = self.client_txs.get(&tx).cloned() {
                    self.deliver(call, CallInput::TransportError { leg, branch });
                }
            }
            TxEvent::AckTimeout { tx } => {
                if let Some(&(call, leg)) = self.server_txs.get(&tx) {
                    self.deliver(call, CallInput::AckTimeout { leg });
                }
            }
            TxEvent::Terminated { tx } => match tx {
                TxId::Client(c) => {
                    if let Some((_, _, branch, _)) = self.client_txs.remove(&c) {
                        self.branches.remove(&branch);
                    }
                }
                TxId::Server(s) => {
                    self.server_txs.remove(&s);
                }
            },
        }
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
        let tag = format!("{:016x}", self.random());
        let mut resp = trunkd_sip::response_for(req, code, reason, Some(&tag));
        for (name, value) in extra {
            let _ = resp.headers.append(name, value.clone());
        }
        self.send_response(now, tx, resp);
    }

    fn send_response(&mut self, now: Instant, tx: ServerTxId, resp: Response) {
        self.shared
            .metrics
            .response_sent("any", resp.status.as_u16());
        if let Err(e) = self.endpoint.send_response(now, tx, resp) {
            debug!(error = ?e, %tx, "response on a finished transaction dropped");
        }
    }

    fn on_new_request(&mut self, now: Instant, tx: ServerTxId, req: Request, peer: Peer) {
        let call_id = req.headers.get("Call-ID").cloned().unwrap_or_default();
        let to_tag = req.headers.to().ok().and_then(|t| t.tag().cloned());
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
            Method::Invite => self.on_invite(now, tx, req, peer),
            Method::Options => {
                let config = self.shared.config();
                let host = trunkd_b2bua::leg::request_uri_host(&req).unwrap_or_default();
                if let Some(vc) = vc_for_metrics(
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

    fn on_invite(&mut self, now: Instant, tx: ServerTxId, req: Request, peer: Peer) {
        if !req.uri.is_sip() {
            return self.respond(
                now,
                tx,
                &req,
                StatusCode::UNSUPPORTED_URI_SCHEME,
                "Unsupported URI Scheme",
                &[],
            );
        }
        let security = &self.shared.config().settings.security;
        let from_source = self
            .calls_by_source
            .get(&peer.addr.ip())
            .copied()
            .unwrap_or(0);
        let over = if self.calls.len() >= security.max_calls {
            Some("call_cap")
        } else if security.max_calls_per_source > 0 && from_source >= security.max_calls_per_source
        {
            Some("source_call_cap")
        } else {
            None
        };
        if let Some(reason) = over {
            // Bounded memory for dialogs (SPEC §8): no new call beyond the
            // caps, overall and per source address.
            let m = &self.shared.metrics;
            m.sip_refused
                .get_or_create(&crate::metrics::RefusedLabels { reason })
                .inc();
            return self.respond(
                now,
                tx,
                &req,
                StatusCode::SERVICE_UNAVAILABLE,
                "Too Many Calls",
                &[("Retry-After", "5".to_owned())],
            );
        }
        if matches!(req.headers.max_forwards(), Ok(Some(m)) if m.0 == 0) {
            return self.respond(
                now,
                tx,
                &req,
                StatusCode::TOO_MANY_HOPS,
                "Too Many Hops",
                &[],
            );
        }
        let config = self.shared.config();
        let settings = &config.settings;
        let resources = &config.resources;
        let shared = self.shared.clone();
        let hosts = &shared.hosts;
        let ruri_host = trunkd_b2bua::leg::request_uri_host(&req).unwrap_or_default();
        let ruri_user = trunkd_b2bua::leg::request_uri_user(&req).unwrap_or_default();
        let domain = &settings.daemon.outbound_host_domain;
        let to_our_domain = ruri_host.ends_with(&format!(".{domain}"));
        let carrier = if to_our_domain {
            None
        } else {
            origination_source(resources, peer.addr.ip())
        };

        let wall = SystemTime::now();
        let mut tid = [0u8; 16];
        tid[..8].copy_from_slice(&self.random().to_le_bytes());
        tid[8..].copy_from_slice(&self.random().to_le_bytes());
        let transaction_id = TransactionId::from_random_bytes(tid);
        let seed = self.random();
        let mut rng_state = self.random();
        let mut rng = move || {
            rng_state ^= rng_state << 13;
            rng_state ^= rng_state >> 7;
            rng_state ^= rng_state << 17;
            (rng_state >> 32) as u32
        };

        let (direction, vc_id, b_user, caller, auth_user, plan): (
            _,
            _,
            String,
            String,
            Option<String>,
            Vec<PlannedHop>,
        ) = match carrier {
            Some(c) => {
                // Origination: carrier → customer (SPEC §2.2).
                let to_user = trunkd_b2bua::leg::header_user(&req.headers, "To");
                let called = called_number(Some(&ruri_user), to_user.as_deref());
                let called_text = called.map(|n| n.to_string()).unwrap_or(ruri_user.clone());
                let target = origination_target(resources, &called_text, &ruri_host);
                let vc_id = match &target {
                    OriginationTarget::VoiceConnector(v) => Some(v.clone()),
                    OriginationTarget::Group(g) => {
                        resources.voice_connector_group(g.as_str()).and_then(|g| {
                            g.voice_connector_items
                                .first()
                                .map(|i| i.voice_connector_id.clone())
                        })
                    }
                    _ => None,
                };
                let legs = origination_plan(resources, &target, &mut rng, &self.health, now);
                let plan: Vec<PlannedHop> = legs
                    .into_iter()
                    .flat_map(|leg| {
                        let vc = leg.vc_id.clone();
                        let required = resources
                            .voice_connector(vc.as_str())
                            .is_some_and(|v| v.require_encryption);
                        leg.routes.into_iter().filter_map(move |r| {
                            let srtp = SrtpPolicy::for_hop(r.protocol, required, r.srtp);
                            hop(hosts, &r, None, Some(vc.clone()), None, srtp)
                        })
                    })
                    .collect();
                let m = &self.shared.metrics;
                m.call_attempt(vc_id.as_ref(), resources, "inbound");
                if matches!(target, OriginationTarget::SipRule(_)) {
                    m.admission_rejected(vc_id.as_ref(), resources, "sip_media_application");
                    return self.respond(
                        now,
                        tx,
                        &req,
                        StatusCode::new(480).unwrap_or(StatusCode::NOT_FOUND),
                        "SIP Media Applications Not Available",
                        &[],
                    );
                }
                if plan.is_empty() {
                    m.admission_rejected(vc_id.as_ref(), resources, "not_found");
                    return self.respond(now, tx, &req, StatusCode::NOT_FOUND, "Not Found", &[]);
                }
                info!(carrier = %c.id, called = %called_text, "origination call admitted");
                let caller = trunkd_b2bua::leg::header_user(&req.headers, "P-Asserted-Identity")
                    .or_else(|| trunkd_b2bua::leg::header_user(&req.headers, "From"))
                    .unwrap_or_else(|| "anonymous".into());
                (
                    trunkd_core::cdr::Direction::Inbound,
                    vc_id,
                    called_text,
                    caller,
                    None,
                    plan,
                )
            }
            None => {
                // Termination: customer → carrier (SPEC §2.1).
                let from_user = trunkd_b2bua::leg::header_user(&req.headers, "From");
                let pai_user = trunkd_b2bua::leg::header_user(&req.headers, "P-Asserted-Identity");
                let proxy_auth = req
                    .headers
                    .get("Proxy-Authorization")
                    .map(|v| String::from_utf8_lossy(v).into_owned());
                let offers_srtp = trunkd_media::sdes::offers_srtp(&req.body);
                let treq = TerminationRequest {
                    method: "INVITE",
                    request_uri_user: &ruri_user,
                    request_uri_host: &ruri_host,
                    source: peer.addr.ip(),
                    over_tls: peer.transport == TxTransport::Tls,
                    client_certificate_verified: self.sender.client_verified(peer),
                    offers_srtp,
                    from_user: from_user.as_deref(),
                    pai_user: pai_user.as_deref(),
                    proxy_authorization: proxy_auth.as_deref(),
                };
                let policy = TerminationPolicy {
                    outbound_host_domain: domain,
                    emergency_numbers: &settings.routing.emergency_numbers,
                    nonce_issuer: &self.nonce_issuer,
                };
                let mut salt = [0u8; 8];
                salt.copy_from_slice(&seed.rotate_left(17).to_le_bytes());
                let admitted = admit_termination(
                    resources,
                    &policy,
                    &mut self.admission,
                    &treq,
                    Now { instant: now, wall },
                    salt,
                );
                *self.calls_by_source.entry(peer.addr.ip()).or_insert(0) += 1;
                let admitted = match admitted {
                    Ok(a) => a,
                    Err(rej) => {
                        let vc = vc_for_metrics(resources, domain, &ruri_host, peer.addr.ip());
                        let m = &self.shared.metrics;
                        m.call_attempt(vc.as_ref(), resources, "outbound");
                        m.admission_rejected(vc.as_ref(), resources, rej.metric_reason());
                        if rej.metric_reason() == "auth_failed" {
                            // Counted per source (a source failing too often
                            // is blocked at the gate); the metric stays per
                            // VC (bounded labels), the log names the source.
                            warn!(src = %peer.addr.ip(), "digest authentication failed");
                            if self.shared.auth_failed(peer.addr.ip()) {
                                warn!(src = %peer.addr.ip(), "source blocked after repeated authentication failures");
                            }
                        }
                        m.vc_response(vc.as_ref(), resources, rej.status());
                        if rej.is_throttle() {
                            m.throttled(vc.as_ref(), resources);
                        }
                        let mut extra: Vec<(&str, String)> = rej
                            .proxy_authenticate()
                            .iter()
                            .map(|v| ("Proxy-Authenticate", v.clone()))
                            .collect();
                        if let Some(s) = rej.retry_after() {
                            extra.push(("Retry-After", s.to_string()));
                        }
                        let code = StatusCode::new(rej.status())
                            .unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
                        debug!(status = rej.status(), reason = rej.metric_reason(), src = %peer.addr, "termination refused");
                        // A refused call that reached a VC has a CDR; a digest
                        // challenge is a step of admission, not a refusal.
                        if let (Some(vc), true) = (&vc, rej.proxy_authenticate().is_empty()) {
                            let caller = from_user.clone().unwrap_or_default();
                            self.refused_cdr(
                                &config,
                                vc,
                                &req,
                                transaction_id,
                                wall,
                                &caller,
                                &ruri_user,
                                rej.status(),
                                rej.reason_phrase(),
                            );
                        }
                        return self.respond(now, tx, &req, code, rej.reason_phrase(), &extra);
                    }
                };
                let Some(vc) = resources.voice_connector(admitted.vc_id.as_str()) else {
                    return;
                };
                let hops = termination_plan(resources, vc, &mut rng, &self.health, now);
                let plan: Vec<PlannedHop> = hops
                    .iter()
                    .filter_map(|h| {
                        let creds = h
                            .credentials
                            .map(|c| (c.username.clone(), c.password.expose().to_owned()));
                        let srtp = SrtpPolicy::for_hop(h.route.protocol, false, h.route.srtp);
                        hop(
                            hosts,
                            &h.route,
                            Some(h.carrier_id.clone()),
                            None,
                            creds,
                            srtp,
                        )
                    })
                    .collect();
                self.shared
                    .metrics
                    .call_attempt(Some(&admitted.vc_id), resources, "outbound");
                info!(vc = %admitted.vc_id, dest = %admitted.destination.request_uri_user(), "termination call admitted");
                (
                    trunkd_core::cdr::Direction::Outbound,
                    Some(admitted.vc_id.clone()),
                    admitted.destination.request_uri_user(),
                    admitted.caller_id.to_string(),
                    admitted.auth_user.clone(),
                    plan,
                )
            }
        };

        // Media anchor: a port pair facing each leg, and the relay.
        let (media_tx, media_rx) = mpsc::channel(4);
        let media = &settings.media;
        let relay_config = trunkd_media::RelayConfig {
            strict: media.strict_latching,
            inactivity_timeout: media.inactivity_timeout,
            ..Default::default()
        };
        let advertised = media.advertised_address.unwrap_or(media.address);
        // The A leg: SRTP only for a customer whose VC requires encryption
        // (admission checked the offer; this keeps re-INVITEs from
        // dropping it), offered over TLS when trunkd is the offerer.
        let a_requires = direction == trunkd_core::cdr::Direction::Outbound
            && vc_id
                .as_ref()
                .and_then(|v| resources.voice_connector(v.as_str()))
                .is_some_and(|v| v.require_encryption);
        let a_transport = match peer.transport {
            TxTransport::Tls => trunkd_core::Transport::Tls,
            TxTransport::Tcp => trunkd_core::Transport::Tcp,
            TxTransport::Udp => trunkd_core::Transport::Udp,
        };
        let a_srtp = SrtpPolicy::for_hop(a_transport, a_requires, None);
        let anchor = match crate::media_anchor::RelayAnchor::start(
            &self.ports,
            media.address,
            advertised,
            relay_config,
            a_srtp,
            media_tx,
            Some(self.shared.metrics.media_ports_in_use.clone()),
        ) {
            Ok(a) => a,
            Err(e) => {
                warn!(error = %e, "no media anchor for a new call");
                self.shared.metrics.media_port_exhaustions.inc();
                return self.respond(
                    now,
                    tx,
                    &req,
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Media Ports Exhausted",
                    &[("Retry-After", "5".to_owned())],
                );
            }
        };
        self.shared
            .metrics
            .media_ports_in_use
            .set((self.ports.capacity() - self.ports.available()) as i64);
        let (anchor, relay) = anchor;
        let key = self.next_call;
        self.next_call += 1;
        let (call_tx, call_rx) = mpsc::channel(64);
        let source_number = trunkd_b2bua::leg::header_user(&req.headers, "P-Asserted-Identity")
            .or_else(|| trunkd_b2bua::leg::header_user(&req.headers, "From"))
            .unwrap_or_default();
        let ctx_vc = vc_id.clone();
        let ctx = CallContext {
            key,
            transaction_id,
            direction,
            vc_id,
            auth_user,
            source_number: if direction == trunkd_core::cdr::Direction::Outbound {
                caller.clone()
            } else {
                source_number
            },
            destination_number: b_user.clone(),
            config: config.clone(),
            engine: self.self_tx.clone(),
            shared: self.shared.clone(),
            plan_routes: plan.iter().map(|h| h.route.clone()).collect(),
            relay,
            media_events: media_rx,
            ports: self.ports.clone(),
        };
        let new = NewCall {
            seed,
            now,
            wall,
            local: self.local.clone(),
            invite: req,
            invite_tx: tx,
            a_dest: peer,
            b_user,
            caller,
            caller_name: None,
            plan: plan.into_iter().map(|h| h.hop).collect(),
            hop_timeout: settings.routing.hop_timeout,
            routing_deadline: settings.routing.deadline,
            media: Box::new(anchor),
        };
        self.server_txs.insert(tx, (key, Leg::A));
        self.calls.insert(
            key,
            CallEntry {
                tx: call_tx,
                vc: ctx_vc,
                source: peer.addr.ip(),
            },
        );
        self.shared
            .metrics
            .engine_calls
            .set(self.calls.len() as i64);
        tokio::spawn(call_task::run(ctx, new, call_rx));
    }

    /// Writes the CDR of a call that admission refused (SPEC §5.1: every
    /// call that reached admission has one), off the engine's thread.
    #[allow(clippy::too_many_arguments)]
    fn refused_cdr(
        &self,
        config: &Arc<trunkd_config::Config>,
        vc: &trunkd_core::VcId,
        req: &Request,
        transaction_id: TransactionId,
        wall: SystemTime,
        source: &str,
        destination: &str,
        status: u16,
        reason: &str,
    ) {
        let (config, vc, shared) = (config.clone(), vc.clone(), self.shared.clone());
        let call_id = String::from_utf8_lossy(
            req.headers
                .get("Call-ID")
                .map(|b| b.as_ref())
                .unwrap_or_default(),
        )
        .into_owned();
        let (source, destination, reason) =
            (source.to_owned(), destination.to_owned(), reason.to_owned());
        tokio::task::spawn_blocking(move || {
            let facts = trunkd_core::cdr::CallFacts {
                transaction_id,
                call_id: &call_id,
                voice_connector_id: &vc,
                direction: trunkd_core::cdr::Direction::Outbound,
                source_phone_number: &source,
                destination_phone_number: &destination,
                sip_auth_user: None,
                start: wall,
                answered: None,
                end: wall,
                outcome: trunkd_core::cdr::CallOutcome::Failed { status, reason },
                streaming: false,
            };
            crate::records::write_cdr(&config, &facts, &shared.metrics);
        });
    }

    fn on_call_output(&mut self, now: Instant, call: u64, out: CallOutput) {
        match out {
            CallOutput::SendRequest {
                leg,
                request,
                dest,
                timeout,
            } => {
                let branch = request
                    .headers
                    .top_via()
                    .ok()
                    .and_then(|v| v.branch().cloned())
                    .unwrap_or_default();
                match self.endpoint.send_request(now, request, dest, timeout) {
                    Ok(id) => {
                        self.client_txs
                            .insert(id, (call, leg, branch.clone(), dest));
                        self.branches.insert(branch, id);
                    }
                    Err(e) => {
                        warn!(error = ?e, "could not start a client transaction");
                        self.deliver(call, CallInput::TransportError { leg, branch });
                    }
                }
            }
            CallOutput::SendStateless { request, dest } => self
                .endpoint
                .send_stateless(SipMessage::Request(request), dest),
            CallOutput::SendResponse { tx, response } => {
                if let Some(entry) = self.calls.get(&call) {
                    let config = self.shared.config();
                    self.shared.metrics.vc_response(
                        entry.vc.as_ref(),
                        &config.resources,
                        response.status.as_u16(),
                    );
                }
                self.send_response(now, tx, response)
            }
            CallOutput::Cancel { branch } => {
                if let Some(&id) = self.branches.get(&branch) {
                    match self.endpoint.cancel(now, id) {
                        Ok(cancel_tx) => {
                            if let Some((c, leg, _, dest)) = self.client_txs.get(&id).cloned() {
                                self.client_txs
                                    .insert(cancel_tx, (c, leg, Bytes::new(), dest));
                            }
                        }
                        Err(e) => debug!(error = ?e, "CANCEL not sent"),
                    }
                }
            }
            CallOutput::Register { call_id, leg } => {
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

/// A hop for a configured route. A host name takes its first resolved
/// address (IPv4 first; `resolver` keeps them current off this path); a
/// name with no address yet is skipped with a warning.
fn hop(
    hosts: &crate::resolver::HostCache,
    route: &Route,
    carrier: Option<trunkd_core::CarrierId>,
    vc: Option<trunkd_core::VcId>,
    credentials: Option<(String, String)>,
    srtp: SrtpPolicy,
) -> Option<PlannedHop> {
    let (ip, uri_host) = match &route.host {
        Host::Ip(ip) => (
            *ip,
            match ip {
                std::net::IpAddr::V6(a) => format!("[{a}]:{}", route.port),
                std::net::IpAddr::V4(a) => format!("{a}:{}", route.port),
            },
        ),
        Host::Name(n) => match hosts.lookup(n).first() {
            // The Request-URI keeps the name (the peer's own identity).
            Some(ip) => (*ip, format!("{n}:{}", route.port)),
            None => {
                warn!(host = %n, "route host name has no address; skipping this hop");
                return None;
            }
        },
    };
    let addr = SocketAddr::new(ip, route.port.get());
    let transport = trunkd_b2bua::tx_transport(route.protocol);
    Some(PlannedHop {
        hop: Hop {
            dest: Peer { addr, transport },
            uri_host,
            carrier_id: carrier,
            vc_id: vc,
            credentials,
            srtp,
        },
        route: route.clone(),
    })
}

/// The VC a request belongs to, for labelling metrics of requests that
/// admission refused or that are not calls (admission's own rule).
fn vc_for_metrics(
    resources: &trunkd_core::Resources,
    domain: &str,
    host: &str,
    source: std::net::IpAddr,
) -> Option<trunkd_core::VcId> {
    trunkd_core::admission::voice_connector_for(resources, domain, host, source)
        .map(|v| v.id.clone())
}

struct PlannedHop {
    hop: Hop,
    route: Route,
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(tokio::time::Instant::from_std(d)).await,
        None => std::future::pending().await,
    }
}
