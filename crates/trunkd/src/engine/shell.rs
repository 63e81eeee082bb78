//! The engine's I/O shell: one tokio task that owns the sans-IO
//! [`Engine`], the transports' [`Sender`] and the channels to the call
//! tasks. It reads the clock and the OS random source, feeds inputs to the
//! engine, and carries out what the engine asks: bytes to send, call
//! actors to start (a media anchor and a task each), inputs for calls,
//! records to write. Nothing here decides anything about SIP.

use crate::deadline::sleep_until;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use bytes::Bytes;
use rustc_hash::FxHashMap;
use tokio::sync::mpsc;
use tracing::{debug, warn};
use trunkd_b2bua::{CallOutput, LocalAddrs};
use trunkd_core::Route;
use trunkd_sip::transaction::{Peer, TxId};
use trunkd_sip::SipMessage;

use super::invite::CallKind;
use super::machine::{CallKey, CallSetup, Engine, EngineEvent, EngineInput, RefusedCall};
use crate::call_task::{self, CallContext};
use crate::daemon::Shared;
use crate::transport::Sender;

/// What reaches the engine task.
pub enum Input {
    /// A parsed message from a transport.
    Message { msg: SipMessage, peer: Peer },
    /// An output of a call task.
    FromCall { call: CallKey, out: CallOutput },
    /// A call task finished.
    CallDone { call: CallKey },
    /// A stream connection to `peer` failed or closed.
    ConnectionLost { peer: Peer },
    /// The hop of a finished call attempt failed/succeeded: route health.
    HopOutcome { route: Route, ok: bool },
    /// A reload put a new configuration in force (probing takes its
    /// routes now rather than at the next message).
    Reconfigured,
    /// A peer opened a stream connection: reuse it to send to that peer.
    ConnectionOpened {
        peer: Peer,
        writer: mpsc::Sender<Bytes>,
        /// TLS: the peer's client certificate verified (mutual TLS).
        client_verified: bool,
    },
    /// Place an application's call (CreateSipMediaApplicationCall).
    PlaceApplicationCall(Box<crate::application::OutboundCall>),
    /// Hang up every call; `done` fires when none is left.
    Shutdown {
        done: tokio::sync::oneshot::Sender<()>,
    },
}

pub type EngineTx = mpsc::Sender<Input>;

pub struct EngineTask {
    engine: Engine,
    shared: Arc<Shared>,
    sender: Sender,
    self_tx: EngineTx,
    calls: FxHashMap<CallKey, crate::call_task::CallTx>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    ports: trunkd_media::PortAllocator,
    /// The drivers of application calls (the daemon registers the
    /// webhook driver); set by [`EngineTask::set_application_driver`].
    app_driver: Option<crate::application::DriverFactory>,
    /// The queue to the SIP message log writer (SPEC §5.3).
    sip_log: crate::sip_log::SipLogWriter,
}

impl EngineTask {
    pub fn new(
        shared: Arc<Shared>,
        sender: Sender,
        local: LocalAddrs,
        self_tx: EngineTx,
        ports: trunkd_media::PortAllocator,
    ) -> anyhow::Result<EngineTask> {
        let mut key = [0u8; 32];
        let mut seed = [0u8; 8];
        // Without OS randomness nonces and tags would be predictable: a
        // daemon that cannot get it must not run.
        getrandom::fill(&mut key)
            .and_then(|()| getrandom::fill(&mut seed))
            .map_err(|e| anyhow::anyhow!("the OS random number generator is unavailable: {e}"))?;
        let sip_log = crate::sip_log::SipLogWriter::start(shared.clone())
            .map_err(|e| anyhow::anyhow!("could not start the SIP message log writer: {e}"))?;
        Ok(EngineTask {
            sip_log,
            engine: Engine::new(shared.clone(), local, key, u64::from_le_bytes(seed)),
            shared,
            sender,
            self_tx,
            calls: FxHashMap::default(),
            shutdown: None,
            ports,
            app_driver: None,
        })
    }

    /// Registers the driver of application calls: from now on a carrier
    /// call to a number on a SIP rule is answered by trunkd and driven by
    /// what `factory` returns, instead of refused 480.
    pub fn set_application_driver(&mut self, factory: crate::application::DriverFactory) {
        self.app_driver = Some(factory);
        self.engine.set_applications(true);
    }

    pub async fn run(mut self, mut rx: mpsc::Receiver<Input>) {
        self.handle(Input::Reconfigured);
        loop {
            let deadline = self.engine.poll_timeout();
            tokio::select! {
                input = rx.recv() => match input {
                    Some(i) => self.handle(i),
                    None => return,
                },
                _ = sleep_until(deadline) => {
                    self.engine.handle_timeout(Instant::now());
                    self.flush();
                }
            }
            // Everything already queued is handled before the next wait, so
            // one wake-up serves a burst, and its datagrams go out together.
            while let Ok(i) = rx.try_recv() {
                self.handle(i);
            }
            self.transmit();
            self.count_transactions();
        }
    }

    /// Sends the datagrams the burst queued; a refused one fails its client
    /// transaction over, which may queue more, until none is left.
    fn transmit(&mut self) {
        loop {
            self.sender.transmit();
            let failed = self.sender.take_failed();
            if failed.is_empty() {
                return;
            }
            for tx in failed {
                self.send_failed(tx);
                self.flush();
            }
        }
    }

    /// Tells the engine a client transaction's request could not be sent
    /// (it fails over to the next hop).
    fn send_failed(&mut self, tx: trunkd_sip::transaction::ClientTxId) {
        self.engine.handle(
            Instant::now(),
            SystemTime::now(),
            EngineInput::SendFailed { tx },
        );
    }

    /// Publishes the transaction table's size and its refusals: once per
    /// wake-up, two atomic writes.
    fn count_transactions(&mut self) {
        let (live, refused) = self.engine.transactions();
        let m = &self.shared.metrics;
        m.sip_transactions.set(live as i64);
        let counted = m.sip_transaction_limit_refusals.get();
        if refused > counted {
            m.sip_transaction_limit_refusals.inc_by(refused - counted);
        }
    }

    fn handle(&mut self, input: Input) {
        let input = match input {
            Input::Message { msg, peer } => EngineInput::Message {
                client_verified: self.sender.client_verified(peer),
                msg,
                peer,
            },
            Input::FromCall { call, out } => EngineInput::FromCall { call, out },
            Input::CallDone { call } => {
                self.calls.remove(&call);
                self.shared.calls.remove(call);
                EngineInput::CallDone { call }
            }
            Input::ConnectionLost { peer } => {
                self.sender.forget(peer);
                EngineInput::ConnectionLost { peer }
            }
            Input::HopOutcome { route, ok } => EngineInput::HopOutcome { route, ok },
            Input::Reconfigured => {
                let max = self.shared.config().settings.sip.max_transactions;
                self.shared.metrics.sip_transactions_max.set(max as i64);
                EngineInput::Reconfigured
            }
            Input::ConnectionOpened {
                peer,
                writer,
                client_verified,
            } => {
                self.sender.register(peer, writer, client_verified);
                return;
            }
            Input::Shutdown { done } => {
                self.shutdown = Some(done);
                EngineInput::Shutdown
            }
            Input::PlaceApplicationCall(call) => {
                self.place_application_call(*call);
                self.flush();
                return;
            }
        };
        self.engine.handle(Instant::now(), SystemTime::now(), input);
        self.flush();
    }

    /// Sends what the engine transmits and carries out its events, until
    /// neither is left (an event may feed the engine again).
    fn flush(&mut self) {
        loop {
            let mut progressed = false;
            while let Some(t) = self.engine.poll_transmit() {
                progressed = true;
                tracing::trace!(dest = %t.dest.addr, bytes = t.bytes.len(), "transmit");
                if !self.sender.send(t.dest, t.bytes, t.tx) {
                    if let Some(TxId::Client(tx)) = t.tx {
                        self.send_failed(tx);
                    }
                }
            }
            while let Some(log) = self.engine.poll_sip_log() {
                self.sip_log.push(crate::sip_log::Stamped {
                    log,
                    wall: SystemTime::now(),
                });
            }
            while let Some(ev) = self.engine.poll_event() {
                progressed = true;
                self.on_event(ev);
            }
            if !progressed {
                break;
            }
        }
    }

    fn on_event(&mut self, ev: EngineEvent) {
        match ev {
            EngineEvent::StartCall(setup) => self.start_call(setup),
            EngineEvent::ToCall { call, input } => {
                if let Some(c) = self.calls.get(&call) {
                    // A full queue means the call task is stuck; the peer
                    // will retransmit, and dropping keeps the engine
                    // responsive.
                    match c.try_send(input) {
                        Ok(()) => {}
                        Err(trunkd_media::MailboxRefused::Full(_)) => {
                            warn!(call, "call input queue full; message dropped")
                        }
                        // The call is ending; its CallDone is on the way.
                        Err(trunkd_media::MailboxRefused::Closed(_)) => {
                            debug!(call, "message for an ended call dropped")
                        }
                    }
                }
            }
            EngineEvent::RefusedCall(r) => write_refused_cdr(&self.shared, *r),
            EngineEvent::AuthFailed { source } => {
                if self.shared.auth_failed(source) {
                    warn!(src = %source, "source blocked after repeated authentication failures");
                }
            }
            EngineEvent::Idle => {
                if let Some(done) = self.shutdown.take() {
                    // The last calls' final datagrams (a BYE's 200, an
                    // ACK) leave before the daemon is told it may exit.
                    self.sender.transmit();
                    let _ = done.send(());
                }
            }
        }
    }

    /// Starts an admitted call: its media anchor (a port pair facing each
    /// leg and the relay) and the task of its kind. No ports left: the
    /// engine answers 503.
    fn start_call(&mut self, setup: Box<CallSetup>) {
        match setup.admission.kind {
            CallKind::Bridge => self.start_bridge(setup),
            CallKind::Recording => self.start_recording(setup),
            CallKind::Application { .. } => self.start_application(setup),
        }
    }

    /// Lists a started call for the admin API (`GET /calls`); the shell
    /// removes it when the call's task is done.
    fn register_active(
        &self,
        setup: &CallSetup,
        kind: &'static str,
        input: &crate::call_task::CallTx,
        relay: Option<&crate::media_anchor::Relay>,
    ) {
        let a = &setup.admission;
        let owner = match &a.kind {
            CallKind::Application { sma_id, .. } => Some(sma_id.to_string()),
            _ => a.vc.as_ref().map(|v| v.to_string()),
        };
        self.shared.calls.register(
            setup.key,
            crate::api::calls::ActiveCall {
                transaction_id: setup.transaction_id,
                owner,
                direction: a.direction,
                kind,
                from: a.source_number.clone(),
                to: a.b_user.clone(),
                started_wall: setup.wall,
                started: setup.now,
                input: input.clone(),
                relay: relay.map(std::sync::Arc::downgrade),
            },
        );
    }

    /// The call's media anchor and relay, or `None` after telling the
    /// engine the call could not start (no media ports).
    fn start_anchor(
        &mut self,
        setup: Box<CallSetup>,
    ) -> Option<(
        Box<CallSetup>,
        crate::media_anchor::RelayAnchor,
        crate::media_anchor::Relay,
        trunkd_media::MediaEvents,
    )> {
        let (media_tx, media_rx) = trunkd_media::media_events();
        let media = &setup.config.settings.media;
        let relay_config = trunkd_media::RelayConfig {
            strict: media.strict_latching,
            inactivity_timeout: media.inactivity_timeout,
            ..Default::default()
        };
        let advertised = media.advertised_address.unwrap_or(media.address);
        // `[hep]`: the call's RTCP goes to the collector too, correlated
        // with the A leg's Call-ID (the B leg's once it is known).
        let rtcp_export = self.shared.hep.get().map(|hep| {
            let call_id = setup
                .invite
                .headers
                .get("Call-ID")
                .cloned()
                .unwrap_or_default();
            crate::hep::RtcpExport::new(hep.clone(), call_id)
        });
        // The relay task's own lines (e.g. "media relay stopped") carry the
        // call's id: it is spawned inside this span and keeps it.
        let span = tracing::info_span!("media", transaction_id = %setup.transaction_id);
        let _entered = span.enter();
        let started = crate::media_anchor::RelayAnchor::start_with_rtcp_export(
            &self.ports,
            media.address,
            advertised,
            relay_config,
            setup.admission.a_srtp,
            media_tx,
            Some(self.shared.metrics.media_ports_in_use.clone()),
            rtcp_export,
        );
        let (anchor, relay) = match started {
            Ok(a) => a,
            Err(e) => {
                warn!(error = %e, "no media anchor for a new call");
                self.engine.handle(
                    Instant::now(),
                    SystemTime::now(),
                    EngineInput::CallNotStarted { setup },
                );
                return None;
            }
        };
        self.shared
            .metrics
            .media_ports_in_use
            .set((self.ports.capacity() - self.ports.available()) as i64);
        Some((setup, anchor, relay, media_rx))
    }

    /// A two-leg call: the A leg bridged to the plan's B legs.
    fn start_bridge(&mut self, setup: Box<CallSetup>) {
        let Some((setup, anchor, relay, media_rx)) = self.start_anchor(setup) else {
            return;
        };
        let rtcp_export = anchor.rtcp_export();
        let new = setup.new_call(Box::new(anchor));
        let (call_tx, call_rx) = crate::call_task::call_queue();
        let a = &setup.admission;
        let ctx = CallContext {
            key: setup.key,
            transaction_id: setup.transaction_id,
            direction: a.direction,
            vc_id: a.vc.clone(),
            auth_user: a.auth_user.clone(),
            source_number: a.source_number.clone(),
            destination_number: a.b_user.clone(),
            config: setup.config.clone(),
            engine: self.self_tx.clone(),
            shared: self.shared.clone(),
            plan_routes: a.plan.iter().map(|h| h.route.clone()).collect(),
            plan_vcs: a.plan.iter().map(|h| h.hop.vc_id.clone()).collect(),
            relay,
            media_events: media_rx,
            ports: self.ports.clone(),
            rtcp_export,
        };
        self.register_active(&setup, "bridge", &call_tx, Some(&ctx.relay));
        self.calls.insert(setup.key, call_tx);
        tokio::spawn(call_task::run(ctx, new, call_rx));
    }

    /// A recording session (SPEC §2.6): one leg trunkd answers, its
    /// streams anchored receive-only and recorded.
    fn start_recording(&mut self, setup: Box<CallSetup>) {
        let Some((setup, anchor, relay, media_rx)) = self.start_anchor(setup) else {
            return;
        };
        let (answerer, answered) =
            crate::media_anchor::RecvOnlyAnchor::new(anchor, setup.seed >> 1);
        let new = setup.new_uas_call(Box::new(answerer));
        let (call_tx, call_rx) = crate::call_task::call_queue();
        let a = &setup.admission;
        let ctx = crate::recording_task::RecordingContext {
            key: setup.key,
            transaction_id: setup.transaction_id,
            vc_id: a.vc.clone(),
            auth_user: a.auth_user.clone(),
            source_number: a.source_number.clone(),
            destination_number: a.b_user.clone(),
            config: setup.config.clone(),
            engine: self.self_tx.clone(),
            shared: self.shared.clone(),
            relay,
            answered,
            media_events: media_rx,
            ports: self.ports.clone(),
        };
        self.register_active(&setup, "recording", &call_tx, Some(&ctx.relay));
        self.calls.insert(setup.key, call_tx);
        tokio::spawn(crate::recording_task::run(ctx, new, call_rx));
    }
}

impl EngineTask {
    /// An application call (SPEC §6): one leg trunkd answers `sendrecv`
    /// and drives as its driver asks.
    fn start_application(&mut self, setup: Box<CallSetup>) {
        let CallKind::Application { sma_id, rule_id } = setup.admission.kind.clone() else {
            return;
        };
        let Some(factory) = self.app_driver.clone() else {
            // The engine admits none without a driver; a call that got
            // here anyway is not started (503) rather than left hanging.
            self.engine.handle(
                Instant::now(),
                SystemTime::now(),
                EngineInput::CallNotStarted { setup },
            );
            return;
        };
        let Some((setup, anchor, relay, media_rx)) = self.start_anchor(setup) else {
            return;
        };
        let media_ip = anchor.advertised();
        let (answerer, answered) = crate::media_anchor::AppAnchor::new(anchor, setup.seed >> 1);
        let new = setup.new_uas_call(Box::new(answerer));
        let a = &setup.admission;
        let call_id = setup
            .invite
            .headers
            .get("Call-ID")
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .unwrap_or_default();
        let driver = factory(crate::application::AppCall {
            transaction_id: setup.transaction_id,
            sma_id: sma_id.clone(),
            rule_id: rule_id.clone(),
            from_number: a.source_number.clone(),
            to_number: a.b_user.clone(),
            call_id: call_id.clone(),
            arguments: None,
        });
        let (call_tx, call_rx) = crate::call_task::call_queue();
        let ctx = crate::app_task::AppContext {
            key: setup.key,
            transaction_id: setup.transaction_id,
            sma_id,
            rule_id,
            config: setup.config.clone(),
            engine: self.self_tx.clone(),
            shared: self.shared.clone(),
            relay,
            media_ip,
            answered,
            media_events: media_rx,
            ports: self.ports.clone(),
            driver,
            seed: setup.seed,
            call_id,
            source_number: a.source_number.clone(),
            destination_number: a.b_user.clone(),
            outbound: false,
        };
        self.register_active(&setup, "application", &call_tx, Some(&ctx.relay));
        self.calls.insert(setup.key, call_tx);
        tokio::spawn(crate::app_task::run(ctx, new, call_rx));
    }
}

impl EngineTask {
    /// A call an application places (CreateSipMediaApplicationCall): its
    /// first leg is a `UacLeg` through every carrier, offered the relay's
    /// A side (PCMU and `telephone-event`), driven like any application
    /// call once the callee answers.
    fn place_application_call(&mut self, req: crate::application::OutboundCall) {
        use crate::application::bridge;
        let Some(factory) = self.app_driver.clone() else {
            warn!("no application driver; the call is not placed");
            return;
        };
        let Ok(rule_id) = "create-call".parse::<trunkd_core::RuleId>() else {
            return;
        };
        let Some(key) = self.engine.place_call() else {
            warn!("shutting down; the call is not placed");
            return;
        };
        let config = self.shared.config();
        let media = &config.settings.media;
        let (media_tx, media_rx) = trunkd_media::media_events();
        let relay_config = trunkd_media::RelayConfig {
            strict: media.strict_latching,
            inactivity_timeout: media.inactivity_timeout,
            ..Default::default()
        };
        let advertised = media.advertised_address.unwrap_or(media.address);
        let started = crate::media_anchor::RelayAnchor::start(
            &self.ports,
            media.address,
            advertised,
            relay_config,
            trunkd_core::SrtpPolicy::Off,
            media_tx,
            Some(self.shared.metrics.media_ports_in_use.clone()),
        );
        let (anchor, relay) = match started {
            Ok(a) => a,
            Err(e) => {
                warn!(error = %e, "no media anchor for an application's call");
                self.engine.handle(
                    Instant::now(),
                    SystemTime::now(),
                    EngineInput::CallDone { call: key },
                );
                return;
            }
        };
        let mut seed = [0u8; 8];
        if getrandom::fill(&mut seed).is_err() {
            warn!("no OS randomness; the call is not placed");
            self.engine.handle(
                Instant::now(),
                SystemTime::now(),
                EngineInput::CallDone { call: key },
            );
            return;
        }
        let seed = u64::from_le_bytes(seed);
        let media_ip = anchor.advertised();
        // No carrier: an empty plan, which fails the call at once.
        let plan = bridge::plan(
            &config,
            &self.shared.hosts,
            seed.rotate_left(11),
            &crate::application::BridgeVia::Carriers,
        )
        .unwrap_or_default();
        // SRTP (SDES) when a carrier host's policy asks for it, as for
        // CallAndBridge's leg.
        let hop_policies: Vec<trunkd_core::SrtpPolicy> = plan.iter().map(|h| h.srtp).collect();
        let (sdes, security) = match bridge::leg_policy(&plan) {
            trunkd_core::SrtpPolicy::Off => (None, None),
            _ => {
                let mut sdes = trunkd_media::LegSdes::new(trunkd_core::SrtpPolicy::Offer);
                match sdes.offer("RTP/AVP") {
                    Ok(s) => (Some(Arc::new(std::sync::Mutex::new(sdes))), Some(s)),
                    Err(e) => {
                        warn!(error = %e, "no SRTP keys; the call is not placed");
                        self.engine.handle(
                            Instant::now(),
                            SystemTime::now(),
                            EngineInput::CallDone { call: key },
                        );
                        return;
                    }
                }
            }
        };
        // PCMU and PCMA: the callee picks (the call task reads which).
        let a_port = relay.local_rtp(trunkd_media::Leg::A).port();
        let offer = bridge::offer_codecs_secured(
            media_ip,
            a_port,
            seed >> 3,
            &bridge::PLACED_CALL_CODECS,
            Some(101),
            security.as_ref(),
        );
        // The callee's re-offers are answered on the relay's A side in the
        // codec it picked (the call task records it here at the answer).
        let codec = std::sync::Arc::new(std::sync::Mutex::new(bridge::BridgeCodec {
            encoding: "PCMU".into(),
            payload_type: 0,
            telephone_event: Some(101),
        }));
        let reoffer = bridge::Reoffer::new(
            relay.clone(),
            trunkd_media::Leg::A,
            0,
            (media_ip, a_port),
            seed >> 3,
            codec.clone(),
            sdes.clone(),
        );
        let leg = trunkd_b2bua::UacLeg::new(trunkd_b2bua::NewUacLeg {
            seed,
            now: Instant::now(),
            wall: SystemTime::now(),
            local: self.engine.local().clone(),
            callee: req.to.clone(),
            caller: req.from.clone(),
            plan,
            offer,
            headers: req.headers,
            hop_timeout: config.settings.routing.hop_timeout,
            ring_timeout: config.settings.applications.outbound_ring_timeout,
            reoffer: Some(Box::new(reoffer)),
            // The call's first leg: a CallAndBridge on it is the B leg.
            side: trunkd_b2bua::Leg::A,
        });
        let call_id = leg
            .call_id()
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .unwrap_or_default();
        let driver = factory(crate::application::AppCall {
            transaction_id: req.transaction_id,
            sma_id: req.sma_id.clone(),
            rule_id: rule_id.clone(),
            from_number: req.from.clone(),
            to_number: req.to.clone(),
            call_id: call_id.clone(),
            arguments: Some(req.arguments),
        });
        let (call_tx, call_rx) = crate::call_task::call_queue();
        let ctx = crate::app_task::AppContext {
            key,
            transaction_id: req.transaction_id,
            sma_id: req.sma_id,
            rule_id,
            config: config.clone(),
            engine: self.self_tx.clone(),
            shared: self.shared.clone(),
            relay,
            media_ip,
            answered: Default::default(),
            media_events: media_rx,
            ports: self.ports.clone(),
            driver,
            seed,
            call_id,
            source_number: req.from,
            destination_number: req.to,
            outbound: true,
        };
        self.calls.insert(key, call_tx);
        let placed = crate::app_task::PlacedMedia {
            codec,
            sdes,
            hop_policies,
        };
        tokio::spawn(crate::app_task::run_outbound(
            ctx, leg, anchor, placed, call_rx,
        ));
    }
}

/// Writes the CDR of a call that admission refused (SPEC §5.1: every call
/// that reached admission has one), off the engine's thread.
fn write_refused_cdr(shared: &Arc<Shared>, r: RefusedCall) {
    let shared = shared.clone();
    tokio::task::spawn_blocking(move || {
        let facts = trunkd_core::cdr::CallFacts {
            transaction_id: r.transaction_id,
            call_id: &r.call_id,
            voice_connector_id: &r.vc,
            direction: r.direction,
            source_phone_number: &r.source_number,
            destination_phone_number: &r.destination_number,
            sip_auth_user: None,
            start: r.wall,
            answered: None,
            end: r.wall,
            outcome: trunkd_core::cdr::CallOutcome::Failed {
                status: r.status,
                reason: r.reason.clone(),
            },
            streaming: false,
        };
        crate::records::write_cdr(&r.config, &facts, &shared.metrics, None);
    });
}
