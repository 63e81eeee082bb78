//! Which hosts a call tries, in which order (SPEC §2.1 item 3, §2.2 item
//! 3): Kamailio dispatcher's priority-then-weight algorithm
//! (`DS_ALG_PRIORITY_WEIGHT`), typed.
//!
//! - Lower priority values first (1 = highest, SRV-like, RFC 2782).
//! - Among equal priorities, a weighted random permutation: each next
//!   pick is drawn in proportion to the weights still left, so a route
//!   with weight 70 next to 10 and 20 goes first 70 % of the time.
//! - Routes in hold-down (a recent failure, [`RouteHealthTable`]) go last
//!   rather than away: when everything failed recently, trying anyway beats
//!   refusing the call.
//! - Routes that OPTIONS probing found down ([`probe`]) are left out of a
//!   call's plan while any route of that plan is not; when all are down
//!   they are all tried, in the same order, as the last resort.
//!
//! Randomness is a `FnMut() -> u32` the caller supplies (uniform over
//! `u32`), so tests are reproducible; time is passed in.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

pub mod probe;
pub mod rfc3263;

use crate::admission::OriginationTarget;
use crate::resources::{Carrier, OutboundCredentials, Resources, Route, VoiceConnector};
use crate::types::{Host, Port, Transport};
use crate::{CarrierId, VcId};

/// What identifies a destination for health: the same host, port and
/// transport share one health record whichever carrier or VC lists them.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct RouteKey {
    pub host: Host,
    pub port: Port,
    pub transport: Transport,
}

impl From<&Route> for RouteKey {
    fn from(r: &Route) -> Self {
        RouteKey {
            host: r.host.clone(),
            port: r.port,
            transport: r.protocol,
        }
    }
}

/// Routes that failed recently (timeout, 408, 5xx, transport error: SPEC
/// §2.2 item 3) and until when they are held down.
///
/// Entries exist only for routes that failed; [`RouteHealthTable::prune`]
/// drops the expired ones, so the table never outgrows the set of
/// configured routes that failed within one hold-down.
#[derive(Clone, Debug)]
pub struct RouteHealthTable {
    hold_down: Duration,
    held_until: HashMap<RouteKey, Instant>,
    /// Routes OPTIONS probing has down ([`probe::Prober`]): at most the
    /// configured routes.
    probed_down: HashSet<RouteKey>,
}

impl RouteHealthTable {
    /// Kamailio-like default: 30 s is long enough to spare callers a dead
    /// host's timeouts, short enough that a recovered host gets traffic
    /// back quickly.
    pub const DEFAULT_HOLD_DOWN: Duration = Duration::from_secs(30);

    /// A table where a failure holds a route down for `hold_down`
    /// (`Duration::ZERO` turns hold-down off).
    pub fn new(hold_down: Duration) -> Self {
        RouteHealthTable {
            hold_down,
            held_until: HashMap::new(),
            probed_down: HashSet::new(),
        }
    }

    /// Records what probing found: `down` routes are skipped by the plans
    /// while another route of the plan is not down.
    pub fn set_probed_down(&mut self, route: &Route, down: bool) {
        let key = RouteKey::from(route);
        if down {
            self.probed_down.insert(key);
        } else {
            self.probed_down.remove(&key);
        }
    }

    /// Keeps the probe state of only the routes `keep` says (a reload
    /// removed the others, or turned probing off).
    pub fn retain_probed(&mut self, keep: impl Fn(&RouteKey) -> bool) {
        self.probed_down.retain(|k| keep(k));
    }

    pub fn is_probed_down(&self, route: &Route) -> bool {
        !self.probed_down.is_empty() && self.probed_down.contains(&RouteKey::from(route))
    }

    pub fn record_failure(&mut self, route: &Route, now: Instant) {
        if self.hold_down.is_zero() {
            return;
        }
        self.held_until
            .insert(RouteKey::from(route), now + self.hold_down);
    }

    pub fn record_success(&mut self, route: &Route) {
        self.held_until.remove(&RouteKey::from(route));
    }

    pub fn is_held_down(&self, route: &Route, now: Instant) -> bool {
        self.held_until
            .get(&RouteKey::from(route))
            .is_some_and(|&until| now < until)
    }

    /// Forgets hold-downs that ended by `now`.
    pub fn prune(&mut self, now: Instant) {
        self.held_until.retain(|_, until| now < *until);
    }

    pub fn len(&self) -> usize {
        self.held_until.len()
    }

    pub fn is_empty(&self) -> bool {
        self.held_until.is_empty()
    }
}

impl Default for RouteHealthTable {
    fn default() -> Self {
        RouteHealthTable::new(Self::DEFAULT_HOLD_DOWN)
    }
}

/// A uniform draw in `0..total` from a uniform `u32` (Lemire's
/// multiply-shift: no modulo bias worth the name for totals ≪ 2³²).
fn draw(rng: &mut impl FnMut() -> u32, total: u64) -> u64 {
    (u64::from(rng()) * total) >> 32
}

/// Orders `items` by their route's priority, then by a weighted random
/// permutation within each priority. Health is not looked at.
fn order_by_priority_and_weight<T>(
    mut items: Vec<T>,
    route: impl Fn(&T) -> &Route,
    rng: &mut impl FnMut() -> u32,
) -> Vec<T> {
    // Stable: equal priorities keep file order before the shuffle, which
    // only the RNG then changes.
    items.sort_by_key(|t| route(t).priority);
    let mut out = Vec::with_capacity(items.len());
    let mut rest = items.into_iter().peekable();
    while let Some(first) = rest.next() {
        let priority = route(&first).priority;
        let mut tier = vec![first];
        while let Some(t) = rest.next_if(|t| route(t).priority == priority) {
            tier.push(t);
        }
        while !tier.is_empty() {
            let total: u64 = tier.iter().map(|t| u64::from(route(t).weight.get())).sum();
            let mut x = draw(rng, total);
            let mut pick = tier.len() - 1;
            for (i, t) in tier.iter().enumerate() {
                let w = u64::from(route(t).weight.get());
                if x < w {
                    pick = i;
                    break;
                }
                x -= w;
            }
            out.push(tier.remove(pick));
        }
    }
    out
}

/// Moves items whose route is held down to the end, keeping the order of
/// both parts.
fn demote_held<T>(
    items: Vec<T>,
    route: impl Fn(&T) -> &Route,
    health: &RouteHealthTable,
    now: Instant,
) -> Vec<T> {
    let (mut up, held): (Vec<T>, Vec<T>) = items
        .into_iter()
        .partition(|t| !health.is_held_down(route(t), now));
    up.extend(held);
    up
}

/// Leaves out items whose route probing has down, unless every item's is
/// (then all stay: the last resort beats refusing the call).
fn skip_probed_down<T>(
    items: Vec<T>,
    route: impl Fn(&T) -> &Route,
    health: &RouteHealthTable,
) -> Vec<T> {
    if items.iter().all(|t| health.is_probed_down(route(t))) {
        return items;
    }
    items
        .into_iter()
        .filter(|t| !health.is_probed_down(route(t)))
        .collect()
}

/// The order to try `routes` in: priority, weight, then hold-down last;
/// routes probed down are left out while any is not. Every route appears
/// at most once.
pub fn order_routes(
    routes: &[Route],
    rng: &mut impl FnMut() -> u32,
    health: &RouteHealthTable,
    now: Instant,
) -> Vec<Route> {
    let ordered = order_by_priority_and_weight(routes.to_vec(), |r| r, rng);
    skip_probed_down(demote_held(ordered, |r| r, health, now), |r| r, health)
}

/// One B-leg attempt of a termination call.
#[derive(Clone, Debug)]
pub struct TerminationHop<'r> {
    pub carrier_id: CarrierId,
    pub route: Route,
    /// For the carrier's 401/407 (`digest::answer_challenge`).
    pub credentials: Option<&'r OutboundCredentials>,
}

/// The hosts a termination call from `vc` tries, in order (SPEC §2.1 item
/// 3, §3.1 `termination.carriers`):
///
/// - `termination.carriers` set: carriers in that order (ids not in
///   `resources` are skipped), each carrier's hosts by priority and weight;
/// - empty ("default: all carriers by host priority"): the hosts of all
///   carriers pooled and ordered by priority and weight across carriers,
///   so the best-priority host of any carrier goes first.
///
/// Either way, held-down hosts go to the end of the whole plan, so a call
/// moves on to the next carrier before retrying one that just failed.
pub fn termination_plan<'r>(
    resources: &'r Resources,
    vc: &VoiceConnector,
    rng: &mut impl FnMut() -> u32,
    health: &RouteHealthTable,
    now: Instant,
) -> Vec<TerminationHop<'r>> {
    let hops = |c: &'r Carrier| -> Vec<TerminationHop<'r>> {
        c.hosts
            .iter()
            .map(|r| TerminationHop {
                carrier_id: c.id.clone(),
                route: r.clone(),
                credentials: c.credentials.as_ref(),
            })
            .collect()
    };
    let plan = if vc.termination.carriers.is_empty() {
        let pooled = resources.carriers().iter().flat_map(hops).collect();
        order_by_priority_and_weight(pooled, |h| &h.route, rng)
    } else {
        vc.termination
            .carriers
            .iter()
            .filter_map(|id| resources.carrier(id.as_str()))
            .flat_map(|c| order_by_priority_and_weight(hops(c), |h| &h.route, rng))
            .collect()
    };
    let plan = demote_held(plan, |h| &h.route, health, now);
    skip_probed_down(plan, |h| &h.route, health)
}

/// The hosts a PSTN call placed by a SIP media application tries
/// (CallAndBridge with `BridgeEndpointType: PSTN`,
/// CreateSipMediaApplicationCall): an application call has no voice
/// connector, so it takes the default of [`termination_plan`] — the hosts
/// of all carriers pooled by priority and weight, held-down hosts last.
pub fn application_plan<'r>(
    resources: &'r Resources,
    rng: &mut impl FnMut() -> u32,
    health: &RouteHealthTable,
    now: Instant,
) -> Vec<TerminationHop<'r>> {
    let pooled = resources
        .carriers()
        .iter()
        .flat_map(|c| {
            c.hosts.iter().map(|r| TerminationHop {
                carrier_id: c.id.clone(),
                route: r.clone(),
                credentials: c.credentials.as_ref(),
            })
        })
        .collect();
    let plan = order_by_priority_and_weight(pooled, |h| &h.route, rng);
    let plan = demote_held(plan, |h| &h.route, health, now);
    skip_probed_down(plan, |h| &h.route, health)
}

/// The routes of one VC an origination call tries before moving on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OriginationLeg {
    pub vc_id: VcId,
    pub routes: Vec<Route>,
}

/// The VCs and routes an origination call tries (SPEC §2.2 item 3): a VC's
/// routes by [`order_routes`]; for a group, its VCs in item priority order,
/// each with its routes, after all of which the next VC is tried. VCs that
/// are missing, have origination disabled or have no routes are skipped.
/// A SIP rule or NotFound target has no plan (empty). Routes probed down
/// are left out while any route of any of the plan's VCs is not, and a VC
/// left without routes is then skipped.
pub fn origination_plan(
    resources: &Resources,
    target: &OriginationTarget,
    rng: &mut impl FnMut() -> u32,
    health: &RouteHealthTable,
    now: Instant,
) -> Vec<OriginationLeg> {
    let ids: Vec<&VcId> = match target {
        OriginationTarget::VoiceConnector(id) => vec![id],
        OriginationTarget::Group(g) => resources
            .voice_connector_group(g.as_str())
            .map(|g| {
                g.voice_connector_items
                    .iter()
                    .map(|i| &i.voice_connector_id)
                    .collect()
            })
            .unwrap_or_default(),
        OriginationTarget::SipRule(_) | OriginationTarget::NotFound => Vec::new(),
    };
    let vcs: Vec<&VoiceConnector> = ids
        .into_iter()
        .filter_map(|id| resources.voice_connector(id.as_str()))
        .filter(|vc| !vc.origination.disabled && !vc.origination.routes.is_empty())
        .collect();
    let any_up = vcs
        .iter()
        .flat_map(|vc| &vc.origination.routes)
        .any(|r| !health.is_probed_down(r));
    vcs.into_iter()
        .map(|vc| {
            let ordered = order_by_priority_and_weight(vc.origination.routes.clone(), |r| r, rng);
            let mut routes = demote_held(ordered, |r| r, health, now);
            if any_up {
                routes.retain(|r| !health.is_probed_down(r));
            }
            OriginationLeg {
                vc_id: vc.id.clone(),
                routes,
            }
        })
        .filter(|leg| !leg.routes.is_empty())
        .collect()
}

#[cfg(test)]
mod tests;
