//! The engine's side of OPTIONS probing (SPEC §3.2 `[probing]`): it sends
//! the OPTIONS that `trunkd_core::routing::probe::Prober` asks for through
//! the transaction layer like any other request, feeds the outcomes back,
//! and applies each state change to routing (route health), `/metrics`
//! and events. The prober itself is pure; this file only connects it.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use trunkd_b2bua::leg::LegState;
use trunkd_core::routing::probe::{Outcome, ProbeId, ProbeState, Prober};
use trunkd_core::{Route, SrtpPolicy};
use trunkd_sip::transaction::ClientTxId;
use trunkd_sip::Method;

use super::Engine;

/// Max-Forwards of a probe: it is meant for the next hop only (as
/// Kamailio's dispatcher pings), but a proxy in front of a carrier may
/// forward it once.
const PROBE_MAX_FORWARDS: u8 = 2;

impl Engine {
    /// Takes a new configuration into probing: starts, stops or retunes it
    /// and gives it the routes of the file (every carrier host and every
    /// origination route), keeping the state of the routes still listed.
    pub(super) fn sync_probing(&mut self, now: Instant) {
        if self
            .probing_config
            .as_ref()
            .is_some_and(|c| Arc::ptr_eq(c, &self.config))
        {
            return;
        }
        self.probing_config = Some(self.config.clone());
        let Some(settings) = self.config.settings.routing.probing.clone() else {
            if self.prober.take().is_some() {
                tracing::info!("OPTIONS probing turned off");
            }
            self.probe_txs.clear();
            self.health.retain_probed(|_| false);
            self.shared.metrics.route_probe_forget_all();
            return;
        };
        let routes: Vec<Route> = {
            let r = &self.config.resources;
            r.carriers()
                .iter()
                .flat_map(|c| c.hosts.iter().cloned())
                .chain(
                    r.voice_connectors()
                        .iter()
                        .flat_map(|vc| vc.origination.routes.iter().cloned()),
                )
                .collect()
        };
        let prober = self.prober.get_or_insert_with(|| {
            tracing::info!(interval = ?settings.interval, "OPTIONS probing on");
            Prober::new(settings.clone())
        });
        prober.set_settings(settings);
        prober.set_routes(routes, now);
        let keys: Vec<trunkd_core::routing::RouteKey> = prober
            .statuses()
            .filter(|s| s.state == ProbeState::Down)
            .map(|s| trunkd_core::routing::RouteKey::from(&s.route))
            .collect();
        self.health.retain_probed(|k| keys.contains(k));
        let probed: Vec<Route> = prober.statuses().map(|s| s.route).collect();
        self.shared.metrics.route_probe_keep(&probed);
    }

    /// When the prober next needs the engine.
    pub(super) fn probe_timeout(&self) -> Option<Instant> {
        self.prober.as_ref().and_then(|p| p.poll_timeout())
    }

    /// Fails overdue probes and sends the due ones.
    pub(super) fn drive_probes(&mut self, now: Instant) {
        let Some(prober) = self.prober.as_mut() else {
            return;
        };
        // A probe that timed out keeps its transaction until Timer F; a
        // reply that comes later is ignored by the prober.
        let outcomes = prober.handle_timeout(now);
        let mut due = Vec::new();
        while let Some(p) = prober.poll_probe(now) {
            due.push(p);
        }
        for outcome in outcomes {
            self.apply_probe_outcome(outcome);
        }
        for probe in due {
            self.send_probe(now, probe.id, &probe.route);
        }
    }

    fn send_probe(&mut self, now: Instant, id: ProbeId, route: &Route) {
        let Some(planned) =
            super::invite::hop(&self.shared.hosts, route, None, None, None, SrtpPolicy::Off)
        else {
            self.probe_failed(now, id, "unresolved host");
            return;
        };
        let hop = planned.hop;
        let transport = hop.dest.transport;
        let target = hop.target(None);
        let mut leg = LegState {
            call_id: Bytes::from(format!("{}-probe@trunkd", self.tag())),
            local_tag: self.tag(),
            remote_tag: None,
            local_uri: self.local().name_addr("trunkd", None, transport),
            remote_uri: format!("<sip:{}>", hop.uri_host),
            remote_target: target,
            route_set: Vec::new(),
            local_cseq: 0,
            dest: hop.dest,
        };
        let branch = format!("z9hG4bK{}", self.tag());
        let local = self.local().clone();
        let mut req = leg.request(Method::Options, &local, &branch, PROBE_MAX_FORWARDS);
        let _ = req.headers.append("Accept", "application/sdp");
        let _ = req.headers.append("Content-Length", "0");
        match self.endpoint.send_request(now, req, hop.dest, None) {
            Ok(tx) => {
                self.probe_txs.insert(tx, (id, hop.dest));
            }
            Err(e) => {
                tracing::debug!(error = ?e, "probe not sent");
                self.probe_failed(now, id, "not sent");
            }
        }
    }

    /// Whether `tx` is a probe's transaction (its events are then the
    /// probe's, not a call's).
    pub(super) fn is_probe_tx(&self, tx: &ClientTxId) -> bool {
        self.probe_txs.contains_key(tx)
    }

    /// A final response to a probe's OPTIONS.
    pub(super) fn probe_replied(&mut self, now: Instant, tx: ClientTxId, code: u16) {
        if code < 200 {
            return;
        }
        let Some((id, _)) = self.probe_txs.remove(&tx) else {
            return;
        };
        let Some(prober) = self.prober.as_mut() else {
            return;
        };
        if let Some(outcome) = prober.on_reply(id, code, now) {
            self.apply_probe_outcome(outcome);
        }
    }

    /// A probe's transaction timed out or could not be sent.
    pub(super) fn probe_tx_failed(&mut self, now: Instant, tx: ClientTxId, cause: &str) {
        if let Some((id, _)) = self.probe_txs.remove(&tx) {
            self.probe_failed(now, id, cause);
        }
    }

    pub(super) fn probe_tx_terminated(&mut self, tx: &ClientTxId) {
        self.probe_txs.remove(tx);
    }

    fn probe_failed(&mut self, now: Instant, id: ProbeId, cause: &str) {
        let Some(prober) = self.prober.as_mut() else {
            return;
        };
        if let Some(outcome) = prober.on_failure(id, cause, now) {
            self.apply_probe_outcome(outcome);
        }
    }

    fn apply_probe_outcome(&mut self, outcome: Outcome) {
        self.shared
            .metrics
            .route_probe_result(&outcome.route, outcome.ok);
        let Some(change) = outcome.change else {
            return;
        };
        let up = change.state == ProbeState::Up;
        self.health.set_probed_down(&change.route, !up);
        self.shared.metrics.route_probe_state(&change.route, up);
        self.shared
            .route_state_changed_by(&change.route, up, "probe", &change.cause);
    }
}
