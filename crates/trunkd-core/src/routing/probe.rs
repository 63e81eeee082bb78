//! OPTIONS probing of carrier hosts and origination routes (SPEC §2.2 item
//! 3, §3.2 `[probing]`), in the manner of Kamailio's dispatcher: every
//! route is pinged at a fixed interval; `failure_threshold` consecutive
//! failures (a timeout, a transport error or a reply that is not accepted)
//! take it down, `success_threshold` consecutive accepted replies bring it
//! back up. Routing then skips down routes while any route of the call's
//! plan is up ([`super::RouteHealthTable::set_probed_down`]).
//!
//! This is the pure half: which route is due, what a reply means and when a
//! state changes. It never sends a packet or reads a clock; the engine
//! sends the OPTIONS it asks for ([`Prober::poll_probe`]) and reports each
//! outcome back ([`Prober::on_reply`], [`Prober::on_failure`]).
//!
//! Failure modes users of the dispatcher hit, and how they are avoided:
//!
//! - *State stuck after a reload*: [`Prober::set_routes`] keeps the state
//!   of every route still configured and forgets the others, so a removed
//!   route can neither stay down nor be probed for ever, and a re-added one
//!   starts over as up.
//! - *A late reply counted twice or for the wrong probe*: every probe has
//!   an id and at most one is in flight per route; a reply to a probe that
//!   already timed out is ignored.
//! - *A probe flood after a pause*: a route's next probe is scheduled from
//!   when its last probe ended, never to "catch up" missed intervals.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use thiserror::Error;

use super::RouteKey;
use crate::resources::Route;

/// Which reply codes count as the route being alive (`accepted_replies`):
/// whole classes (`"2xx"`) or single codes (`"404"`). A peer that answers
/// OPTIONS with 404 or 405 is up; it only does not like OPTIONS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AcceptedReplies(Vec<ReplyPattern>);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ReplyPattern {
    /// `Nxx`: every code from N00 to N99.
    Class(u16),
    Code(u16),
}

#[derive(Debug, Error, PartialEq, Eq)]
#[error("{0:?} is neither a reply class such as \"2xx\" nor a code from 200 to 699")]
pub struct BadReplyPattern(pub String);

impl AcceptedReplies {
    /// SPEC §3.2's default: 2xx, 403, 404, 405.
    pub fn default_set() -> Self {
        AcceptedReplies(vec![
            ReplyPattern::Class(2),
            ReplyPattern::Code(403),
            ReplyPattern::Code(404),
            ReplyPattern::Code(405),
        ])
    }

    /// Parses the configured list; the first bad entry is the error.
    pub fn parse<S: AsRef<str>>(items: &[S]) -> Result<Self, BadReplyPattern> {
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            let s = item.as_ref().trim();
            let bad = || BadReplyPattern(item.as_ref().to_owned());
            let bytes = s.as_bytes();
            let pattern = if bytes.len() == 3 && bytes[1..].eq_ignore_ascii_case(b"xx") {
                match bytes[0] {
                    d @ b'2'..=b'6' => ReplyPattern::Class(u16::from(d - b'0')),
                    _ => return Err(bad()),
                }
            } else {
                match s.parse::<u16>() {
                    Ok(code) if (200..=699).contains(&code) && s.len() == 3 => {
                        ReplyPattern::Code(code)
                    }
                    _ => return Err(bad()),
                }
            };
            out.push(pattern);
        }
        Ok(AcceptedReplies(out))
    }

    /// Whether a final reply `code` counts as a success.
    pub fn accepts(&self, code: u16) -> bool {
        self.0.iter().any(|p| match *p {
            ReplyPattern::Class(c) => code / 100 == c,
            ReplyPattern::Code(c) => code == c,
        })
    }
}

/// `[probing]`, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeSettings {
    /// Time between the end of one probe of a route and the next.
    pub interval: Duration,
    /// A probe without a final reply by then is a failure.
    pub timeout: Duration,
    pub failure_threshold: NonZeroU32,
    pub success_threshold: NonZeroU32,
    pub accepted: AcceptedReplies,
}

/// Whether a route is taking calls, as probing sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProbeState {
    Up,
    Down,
}

/// A route went down or came back up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StateChange {
    pub route: Route,
    pub state: ProbeState,
    /// What the last probe saw: `"408 timeout"`, `"transport error"`, or
    /// the reply's code (`"503"`).
    pub cause: String,
}

/// What one probe's end meant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    pub route: Route,
    /// An accepted reply.
    pub ok: bool,
    /// Set when the route's state changed with this outcome.
    pub change: Option<StateChange>,
}

/// One OPTIONS to send: its id comes back with the outcome.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Probe {
    pub id: ProbeId,
    pub route: Route,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ProbeId(pub u64);

/// The probe state of one route, for metrics and the admin API.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteStatus {
    pub route: Route,
    pub state: ProbeState,
    pub consecutive_failures: u32,
    pub consecutive_successes: u32,
    /// The last final reply or failure, with when it was seen.
    pub last_result: Option<(Instant, String)>,
}

#[derive(Clone, Debug)]
struct Entry {
    route: Route,
    state: ProbeState,
    failures: u32,
    successes: u32,
    next_due: Instant,
    in_flight: Option<(ProbeId, Instant)>,
    last_result: Option<(Instant, String)>,
}

/// The probing of a set of routes. Routes are keyed by host, port and
/// transport ([`RouteKey`]): a host listed by two carriers or VCs is
/// probed once. Routes stay in configuration order (a few hundred at
/// most: a linear search per probe outcome is cheaper than keeping two
/// indexes consistent).
#[derive(Clone, Debug)]
pub struct Prober {
    settings: ProbeSettings,
    entries: Vec<(RouteKey, Entry)>,
    by_id: HashMap<ProbeId, RouteKey>,
    next_id: u64,
}

impl Prober {
    pub fn new(settings: ProbeSettings) -> Self {
        Prober {
            settings,
            entries: Vec::new(),
            by_id: HashMap::new(),
            next_id: 1,
        }
    }

    pub fn settings(&self) -> &ProbeSettings {
        &self.settings
    }

    /// Takes new settings (a reload); states and schedules are kept.
    pub fn set_settings(&mut self, settings: ProbeSettings) {
        self.settings = settings;
    }

    /// The routes to probe from now on. A route already known keeps its
    /// state and schedule; a new one starts up and is probed at once,
    /// spread over the first interval by its position so that a large
    /// configuration does not send every OPTIONS in one burst; a route no
    /// longer listed is forgotten (a reply to its probe in flight is then
    /// ignored).
    pub fn set_routes(&mut self, routes: impl IntoIterator<Item = Route>, now: Instant) {
        let mut old: HashMap<RouteKey, Entry> =
            std::mem::take(&mut self.entries).into_iter().collect();
        let mut next: Vec<(RouteKey, Entry)> = Vec::new();
        let mut fresh = 0u32;
        for route in routes {
            let key = RouteKey::from(&route);
            if next.iter().any(|(k, _)| *k == key) {
                continue;
            }
            let entry = match old.remove(&key) {
                Some(mut e) => {
                    e.route = route;
                    e
                }
                None => {
                    let offset = self.settings.interval.saturating_mul(fresh % 10) / 10;
                    fresh += 1;
                    Entry {
                        route,
                        state: ProbeState::Up,
                        failures: 0,
                        successes: 0,
                        next_due: now + offset,
                        in_flight: None,
                        last_result: None,
                    }
                }
            };
            next.push((key, entry));
        }
        self.entries = next;
        let entries = &self.entries;
        self.by_id
            .retain(|_, key| entries.iter().any(|(k, _)| k == key));
    }

    /// The next probe due at `now`, if any; it is then in flight until its
    /// outcome or its timeout.
    pub fn poll_probe(&mut self, now: Instant) -> Option<Probe> {
        let (key, entry) = self
            .entries
            .iter_mut()
            .find(|(_, e)| e.in_flight.is_none() && e.next_due <= now)?;
        let key = &*key;
        let id = ProbeId(self.next_id);
        self.next_id += 1;
        entry.in_flight = Some((id, now + self.settings.timeout));
        self.by_id.insert(id, key.clone());
        Some(Probe {
            id,
            route: entry.route.clone(),
        })
    }

    /// A final reply to probe `id`. `None` when the probe is unknown (it
    /// timed out already, or its route was removed).
    pub fn on_reply(&mut self, id: ProbeId, code: u16, now: Instant) -> Option<Outcome> {
        let ok = self.settings.accepted.accepts(code);
        self.finish(id, ok, code.to_string(), now)
    }

    /// Probe `id` could not be sent or its transaction failed (transport
    /// error, Timer F).
    pub fn on_failure(&mut self, id: ProbeId, cause: &str, now: Instant) -> Option<Outcome> {
        self.finish(id, false, cause.to_owned(), now)
    }

    /// Fails every probe in flight past its timeout.
    pub fn handle_timeout(&mut self, now: Instant) -> Vec<Outcome> {
        let expired: Vec<ProbeId> = self
            .entries
            .iter()
            .map(|(_, e)| e)
            .filter_map(|e| {
                e.in_flight
                    .filter(|&(_, until)| until <= now)
                    .map(|(id, _)| id)
            })
            .collect();
        expired
            .into_iter()
            .filter_map(|id| self.finish(id, false, "408 timeout".to_owned(), now))
            .collect()
    }

    /// The earliest of the next probe due and the next probe timeout.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.entries
            .iter()
            .map(|(_, e)| match e.in_flight {
                Some((_, until)) => until,
                None => e.next_due,
            })
            .min()
    }

    pub fn state(&self, route: &Route) -> Option<ProbeState> {
        let key = RouteKey::from(route);
        self.entries
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, e)| e.state)
    }

    /// Every probed route, in configuration order.
    pub fn statuses(&self) -> impl Iterator<Item = RouteStatus> + '_ {
        self.entries.iter().map(|(_, e)| RouteStatus {
            route: e.route.clone(),
            state: e.state,
            consecutive_failures: e.failures,
            consecutive_successes: e.successes,
            last_result: e.last_result.clone(),
        })
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn finish(&mut self, id: ProbeId, ok: bool, cause: String, now: Instant) -> Option<Outcome> {
        let key = self.by_id.remove(&id)?;
        let (_, entry) = self.entries.iter_mut().find(|(k, _)| *k == key)?;
        if entry.in_flight.map(|(i, _)| i) != Some(id) {
            return None;
        }
        entry.in_flight = None;
        entry.next_due = now + self.settings.interval;
        entry.last_result = Some((now, cause.clone()));
        if ok {
            entry.failures = 0;
            entry.successes = entry.successes.saturating_add(1);
        } else {
            entry.successes = 0;
            entry.failures = entry.failures.saturating_add(1);
        }
        let next = match entry.state {
            ProbeState::Up if entry.failures >= self.settings.failure_threshold.get() => {
                ProbeState::Down
            }
            ProbeState::Down if entry.successes >= self.settings.success_threshold.get() => {
                ProbeState::Up
            }
            s => s,
        };
        let change = (next != entry.state).then(|| StateChange {
            route: entry.route.clone(),
            state: next,
            cause,
        });
        entry.state = next;
        Some(Outcome {
            route: entry.route.clone(),
            ok,
            change,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn route(last: u8) -> Route {
        crate::fixtures::route(&format!("127.0.0.{last}"), 5060, 1, 1)
    }

    fn settings() -> ProbeSettings {
        ProbeSettings {
            interval: Duration::from_secs(10),
            timeout: Duration::from_secs(2),
            failure_threshold: NonZeroU32::new(3).unwrap(),
            success_threshold: NonZeroU32::new(2).unwrap(),
            accepted: AcceptedReplies::default_set(),
        }
    }

    /// Probes `r` once at `now` and answers `code` (0: no answer until the
    /// timeout).
    fn probe_once(p: &mut Prober, now: Instant, code: u16) -> (Instant, Vec<StateChange>) {
        let probe = p.poll_probe(now).expect("a probe is due");
        if code == 0 {
            let t = now + p.settings().timeout;
            let changes = p
                .handle_timeout(t)
                .into_iter()
                .filter_map(|o| o.change)
                .collect();
            (t, changes)
        } else {
            let o = p.on_reply(probe.id, code, now).expect("a known probe");
            assert_eq!(o.ok, [200, 403, 404, 405].contains(&code));
            (now, o.change.into_iter().collect())
        }
    }

    #[test]
    fn the_default_accepts_2xx_403_404_405_and_nothing_else() {
        let a = AcceptedReplies::default_set();
        for code in [200, 202, 299, 403, 404, 405] {
            assert!(a.accepts(code), "{code}");
        }
        for code in [180, 401, 407, 408, 480, 500, 503, 603] {
            assert!(!a.accepts(code), "{code}");
        }
        assert_eq!(
            AcceptedReplies::parse(&["2xx", "403", "404", "405"]).unwrap(),
            a
        );
    }

    #[test]
    fn bad_patterns_are_named() {
        for bad in ["1xx", "7xx", "2x", "99", "700", "abc", "", "2000", "+200"] {
            assert_eq!(
                AcceptedReplies::parse(&[bad]),
                Err(BadReplyPattern(bad.to_owned())),
                "{bad}"
            );
        }
        assert!(AcceptedReplies::parse(&["5XX"]).unwrap().accepts(503));
    }

    #[test]
    fn a_route_goes_down_after_n_failures_and_up_after_m_successes() {
        let t0 = Instant::now();
        let mut p = Prober::new(settings());
        p.set_routes([route(1)], t0);
        let (t, c) = probe_once(&mut p, t0, 0);
        assert!(c.is_empty());
        let (t, c) = probe_once(&mut p, t + Duration::from_secs(10), 503);
        assert!(c.is_empty(), "two failures are not three");
        let (t, c) = probe_once(&mut p, t + Duration::from_secs(10), 0);
        assert_eq!(
            c,
            vec![StateChange {
                route: route(1),
                state: ProbeState::Down,
                cause: "408 timeout".into()
            }]
        );
        assert_eq!(p.state(&route(1)), Some(ProbeState::Down));
        let (t, c) = probe_once(&mut p, t + Duration::from_secs(10), 200);
        assert!(c.is_empty(), "one success is not two");
        let (_, c) = probe_once(&mut p, t + Duration::from_secs(10), 404);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].state, ProbeState::Up);
        assert_eq!(c[0].cause, "404");
    }

    #[test]
    fn a_success_resets_the_failure_count() {
        let t0 = Instant::now();
        let mut p = Prober::new(settings());
        p.set_routes([route(1)], t0);
        let mut t = t0;
        for code in [500, 500, 200, 500, 500, 200, 500, 500] {
            let (end, c) = probe_once(&mut p, t, code);
            assert!(c.is_empty());
            t = end + Duration::from_secs(10);
        }
        assert_eq!(p.state(&route(1)), Some(ProbeState::Up));
    }

    #[test]
    fn the_next_probe_waits_an_interval_after_the_last_one_ended() {
        let t0 = Instant::now();
        let mut p = Prober::new(settings());
        p.set_routes([route(1)], t0);
        let probe = p.poll_probe(t0).unwrap();
        assert_eq!(p.poll_probe(t0), None, "one probe in flight per route");
        assert_eq!(p.poll_timeout(), Some(t0 + Duration::from_secs(2)));
        let t1 = t0 + Duration::from_millis(300);
        p.on_reply(probe.id, 200, t1);
        assert_eq!(p.poll_timeout(), Some(t1 + Duration::from_secs(10)));
        assert_eq!(p.poll_probe(t1 + Duration::from_millis(9_999)), None);
        assert!(p.poll_probe(t1 + Duration::from_secs(10)).is_some());
    }

    #[test]
    fn a_late_reply_to_a_timed_out_probe_is_ignored() {
        let t0 = Instant::now();
        let mut s = settings();
        s.failure_threshold = NonZeroU32::new(1).unwrap();
        s.success_threshold = NonZeroU32::new(1).unwrap();
        let mut p = Prober::new(s);
        p.set_routes([route(1)], t0);
        let probe = p.poll_probe(t0).unwrap();
        let changes = p.handle_timeout(t0 + Duration::from_secs(2));
        assert_eq!(changes[0].change.as_ref().unwrap().state, ProbeState::Down);
        assert_eq!(p.on_reply(probe.id, 200, t0 + Duration::from_secs(3)), None);
        assert_eq!(p.state(&route(1)), Some(ProbeState::Down));
    }

    #[test]
    fn a_reload_keeps_known_routes_and_forgets_removed_ones() {
        let t0 = Instant::now();
        let mut s = settings();
        s.failure_threshold = NonZeroU32::new(1).unwrap();
        let mut p = Prober::new(s);
        p.set_routes([route(1), route(2)], t0);
        let a = p.poll_probe(t0).unwrap();
        let o = p.on_failure(a.id, "transport error", t0).unwrap();
        assert_eq!(o.change.unwrap().state, ProbeState::Down);
        let b = p.poll_probe(t0 + Duration::from_secs(1)).unwrap();
        assert_eq!(b.route, route(2), "spread over the interval");
        // route 2 removed with its probe in flight; route 3 added.
        p.set_routes([route(1), route(3), route(1)], t0 + Duration::from_secs(1));
        assert_eq!(p.len(), 2);
        assert_eq!(p.on_reply(b.id, 200, t0 + Duration::from_secs(1)), None);
        assert_eq!(p.state(&route(1)), Some(ProbeState::Down), "state kept");
        assert_eq!(
            p.state(&route(3)),
            Some(ProbeState::Up),
            "new routes start up"
        );
        assert_eq!(p.state(&route(2)), None);
        p.set_routes([route(3)], t0 + Duration::from_secs(2));
        p.set_routes([route(1)], t0 + Duration::from_secs(2));
        assert_eq!(
            p.state(&route(1)),
            Some(ProbeState::Up),
            "re-added: starts over"
        );
    }

    #[test]
    fn probes_of_a_big_configuration_are_spread_over_the_first_interval() {
        let t0 = Instant::now();
        let mut p = Prober::new(settings());
        p.set_routes((1..=20).map(route), t0);
        let mut at_once = 0;
        while p.poll_probe(t0).is_some() {
            at_once += 1;
        }
        assert_eq!(at_once, 2, "a tenth of the interval apart");
        let mut by_end = at_once;
        while p.poll_probe(t0 + Duration::from_secs(9)).is_some() {
            by_end += 1;
        }
        assert_eq!(by_end, 20);
    }

    proptest! {
        /// Whatever the replies, the state is down exactly when the last
        /// `failure_threshold` outcomes since the last up were failures,
        /// and a probe is never double-counted.
        #[test]
        fn state_follows_the_thresholds(outcomes in proptest::collection::vec(any::<bool>(), 0..60)) {
            let t0 = Instant::now();
            let mut p = Prober::new(settings());
            p.set_routes([route(1)], t0);
            let mut t = t0;
            let mut model = ProbeState::Up;
            let (mut fails, mut oks) = (0u32, 0u32);
            for ok in outcomes {
                let probe = p.poll_probe(t).unwrap();
                let change = p.on_reply(probe.id, if ok { 200 } else { 500 }, t).unwrap().change;
                prop_assert_eq!(p.on_reply(probe.id, 200, t), None);
                if ok { oks += 1; fails = 0 } else { fails += 1; oks = 0 }
                let before = model;
                if model == ProbeState::Up && fails >= 3 { model = ProbeState::Down }
                if model == ProbeState::Down && oks >= 2 { model = ProbeState::Up }
                prop_assert_eq!(change.map(|c| c.state), (before != model).then_some(model));
                prop_assert_eq!(p.state(&route(1)), Some(model));
                t += Duration::from_secs(10);
            }
        }
    }
}
