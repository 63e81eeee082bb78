//! Route ordering: distribution, priority order, completeness, hold-down,
//! and the termination and origination plans.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use proptest::prelude::*;

use super::*;
use crate::fixtures::*;
use crate::resources::OutboundCredentials;
use crate::secret::Secret;
use crate::GroupId;

fn rng(seed: u64) -> impl FnMut() -> u32 {
    let mut s = SplitMix(seed);
    move || s.next_u32()
}

fn no_health() -> RouteHealthTable {
    RouteHealthTable::new(Duration::from_secs(30))
}

/// First-pick frequency of each port over `draws` orderings.
fn first_pick_shares(routes: &[Route], seed: u64, draws: u32) -> HashMap<u16, f64> {
    let (mut r, h, now) = (rng(seed), no_health(), Instant::now());
    let mut counts: HashMap<u16, u32> = HashMap::new();
    for _ in 0..draws {
        *counts
            .entry(order_routes(routes, &mut r, &h, now)[0].port.get())
            .or_default() += 1;
    }
    counts
        .into_iter()
        .map(|(p, c)| (p, f64::from(c) / f64::from(draws)))
        .collect()
}

#[test]
fn weights_10_20_70_pick_first_in_proportion() {
    let routes = [
        route("192.0.2.1", 1, 1, 10),
        route("192.0.2.1", 2, 1, 20),
        route("192.0.2.1", 3, 1, 70),
    ];
    let shares = first_pick_shares(&routes, 7, 20_000);
    for (port, expected) in [(1, 0.10), (2, 0.20), (3, 0.70)] {
        let got = shares.get(&port).copied().unwrap_or(0.0);
        assert!(
            (got - expected).abs() < 0.015,
            "port {port}: {got} vs {expected}"
        );
    }
}

#[test]
fn the_second_pick_is_proportional_to_the_remaining_weights() {
    let routes = [
        route("192.0.2.1", 1, 1, 10),
        route("192.0.2.1", 2, 1, 20),
        route("192.0.2.1", 3, 1, 70),
    ];
    let (mut r, h, now) = (rng(11), no_health(), Instant::now());
    let (mut after_3, mut then_2) = (0u32, 0u32);
    for _ in 0..20_000 {
        let o = order_routes(&routes, &mut r, &h, now);
        if o[0].port.get() == 3 {
            after_3 += 1;
            then_2 += u32::from(o[1].port.get() == 2);
        }
    }
    // 20 / (10 + 20) = 2/3.
    let share = f64::from(then_2) / f64::from(after_3);
    assert!((share - 2.0 / 3.0).abs() < 0.02, "{share}");
}

#[test]
fn priority_comes_before_weight() {
    let routes = [
        route("192.0.2.1", 1, 2, 100),
        route("192.0.2.1", 2, 1, 1),
        route("192.0.2.1", 3, 3, 100),
    ];
    let mut r = rng(1);
    for _ in 0..100 {
        let ports: Vec<u16> = order_routes(&routes, &mut r, &no_health(), Instant::now())
            .iter()
            .map(|r| r.port.get())
            .collect();
        assert_eq!(ports, [2, 1, 3]);
    }
}

#[test]
fn held_down_routes_go_last_and_come_back() {
    let routes = [
        route("192.0.2.1", 1, 1, 10),
        route("192.0.2.2", 2, 2, 10),
        route("192.0.2.3", 3, 3, 10),
    ];
    let t0 = Instant::now();
    let mut h = no_health();
    h.record_failure(&routes[0], t0);
    let ports = |h: &RouteHealthTable, now| -> Vec<u16> {
        order_routes(&routes, &mut rng(1), h, now)
            .iter()
            .map(|r| r.port.get())
            .collect()
    };
    assert_eq!(ports(&h, t0), [2, 3, 1]);
    assert_eq!(ports(&h, t0 + Duration::from_secs(29)), [2, 3, 1]);
    assert_eq!(
        ports(&h, t0 + Duration::from_secs(30)),
        [1, 2, 3],
        "hold-down over"
    );
    h.record_failure(&routes[1], t0);
    h.record_failure(&routes[2], t0);
    assert_eq!(
        ports(&h, t0),
        [1, 2, 3],
        "all held down: still all tried, in order"
    );
    h.record_success(&routes[0]);
    assert_eq!(ports(&h, t0), [1, 2, 3]);
    assert_eq!(h.len(), 2);
    h.prune(t0 + Duration::from_secs(30));
    assert!(h.is_empty());
    let mut off = RouteHealthTable::new(Duration::ZERO);
    off.record_failure(&routes[0], t0);
    assert!(!off.is_held_down(&routes[0], t0) && off.is_empty());
}

#[test]
fn health_is_per_host_port_and_transport() {
    let t0 = Instant::now();
    let mut h = no_health();
    let a = route("192.0.2.1", 5060, 1, 10);
    let mut tcp = a.clone();
    tcp.protocol = Transport::Tcp;
    let mut other_priority = a.clone();
    other_priority.priority = crate::Priority::new(5, 100).unwrap();
    h.record_failure(&a, t0);
    assert!(
        h.is_held_down(&other_priority, t0),
        "priority and weight are not part of the key"
    );
    assert!(!h.is_held_down(&tcp, t0));
    assert!(!h.is_held_down(&route("192.0.2.1", 5061, 1, 10), t0));
}

fn carriers() -> Vec<crate::resources::Carrier> {
    let mut b = carrier(
        "carrier-b",
        vec![
            route("192.0.2.20", 5060, 1, 10),
            route("192.0.2.21", 5060, 2, 10),
        ],
        &[],
    );
    b.credentials = Some(OutboundCredentials {
        username: "gw".into(),
        password: Secret::new("pw".into()),
    });
    vec![
        carrier(
            "carrier-a",
            vec![
                route("192.0.2.10", 5060, 2, 10),
                route("192.0.2.11", 5060, 3, 10),
            ],
            &[],
        ),
        b,
    ]
}

fn hosts(plan: &[TerminationHop<'_>]) -> Vec<String> {
    plan.iter()
        .map(|h| format!("{}:{}", h.carrier_id, h.route.host))
        .collect()
}

#[test]
fn termination_plan_follows_the_vcs_carrier_order() {
    let mut v = vc("vc-east");
    v.termination.carriers = vec![
        CarrierId::new("carrier-a").unwrap(),
        CarrierId::new("gone").unwrap(),
        CarrierId::new("carrier-b").unwrap(),
    ];
    let res = resources(vec![v.clone()], vec![], carriers(), vec![], vec![]);
    let plan = termination_plan(&res, &v, &mut rng(1), &no_health(), Instant::now());
    assert_eq!(
        hosts(&plan),
        [
            "carrier-a:192.0.2.10",
            "carrier-a:192.0.2.11",
            "carrier-b:192.0.2.20",
            "carrier-b:192.0.2.21"
        ]
    );
    assert!(plan[0].credentials.is_none());
    assert_eq!(plan[2].credentials.map(|c| c.username.as_str()), Some("gw"));
}

#[test]
fn termination_plan_default_pools_all_carriers_by_host_priority() {
    let v = vc("vc-east");
    let res = resources(vec![v.clone()], vec![], carriers(), vec![], vec![]);
    let t0 = Instant::now();
    let plan = termination_plan(&res, &v, &mut rng(1), &no_health(), t0);
    let order = hosts(&plan);
    assert_eq!(order[0], "carrier-b:192.0.2.20", "the only priority-1 host");
    assert_eq!(order[3], "carrier-a:192.0.2.11", "the only priority-3 host");
    assert_eq!(order.len(), 4);
    // A held-down host moves to the end of the whole plan.
    let mut h = no_health();
    h.record_failure(&plan[0].route, t0);
    let order = hosts(&termination_plan(&res, &v, &mut rng(1), &h, t0));
    assert_eq!(
        order.last().map(String::as_str),
        Some("carrier-b:192.0.2.20")
    );
}

#[test]
fn an_application_call_pools_every_carrier_like_a_vc_without_carriers() {
    let res = resources(vec![], vec![], carriers(), vec![], vec![]);
    let t0 = Instant::now();
    let plan = application_plan(&res, &mut rng(1), &no_health(), t0);
    let order = hosts(&plan);
    assert_eq!(order.len(), 4);
    assert_eq!(order[0], "carrier-b:192.0.2.20", "the only priority-1 host");
    assert_eq!(order[3], "carrier-a:192.0.2.11", "the only priority-3 host");
    assert_eq!(plan[0].credentials.map(|c| c.username.as_str()), Some("gw"));
    let mut h = no_health();
    h.record_failure(&plan[0].route, t0);
    let order = hosts(&application_plan(&res, &mut rng(1), &h, t0));
    assert_eq!(
        order.last().map(String::as_str),
        Some("carrier-b:192.0.2.20")
    );
    let empty = resources(vec![], vec![], vec![], vec![], vec![]);
    assert!(application_plan(&empty, &mut rng(1), &no_health(), t0).is_empty());
}

#[test]
fn origination_plan_for_a_vc_and_a_group() {
    let mut east = vc("vc-east");
    east.origination.routes = vec![
        route("192.0.2.50", 5060, 2, 10),
        route("192.0.2.51", 5060, 1, 10),
    ];
    let mut off = vc("vc-off");
    off.origination.disabled = true;
    let mut empty = vc("vc-empty");
    empty.origination.routes.clear();
    let res = resources(
        vec![east, vc("vc-west"), off, empty],
        vec![group("grp", &["vc-off", "vc-west", "vc-empty", "vc-east"])],
        vec![],
        vec![],
        vec![],
    );
    let (t0, h) = (Instant::now(), no_health());
    let plan = origination_plan(
        &res,
        &OriginationTarget::VoiceConnector(vc_id("vc-east")),
        &mut rng(1),
        &h,
        t0,
    );
    assert_eq!(plan.len(), 1);
    let ports: Vec<String> = plan[0].routes.iter().map(|r| r.host.to_string()).collect();
    assert_eq!(ports, ["192.0.2.51", "192.0.2.50"]);
    let plan = origination_plan(
        &res,
        &OriginationTarget::Group(GroupId::new("grp").unwrap()),
        &mut rng(1),
        &h,
        t0,
    );
    let vcs: Vec<&str> = plan.iter().map(|l| l.vc_id.as_str()).collect();
    assert_eq!(
        vcs,
        ["vc-west", "vc-east"],
        "item priority order, unusable VCs skipped"
    );
    assert!(origination_plan(&res, &OriginationTarget::NotFound, &mut rng(1), &h, t0).is_empty());
    assert!(origination_plan(
        &res,
        &OriginationTarget::VoiceConnector(vc_id("vc-off")),
        &mut rng(1),
        &h,
        t0
    )
    .is_empty());
}

fn routes_strategy() -> impl Strategy<Value = Vec<Route>> {
    proptest::collection::vec((1i64..5, 1i64..=100, 0u8..3), 0..20).prop_map(|v| {
        v.into_iter()
            .enumerate()
            .map(|(i, (p, w, h))| route(&format!("192.0.2.{h}"), 5000 + i as i64, p, w))
            .collect()
    })
}

proptest! {
    /// Every route appears exactly once; healthy routes come first, and
    /// within the healthy and the held-down parts priorities never go
    /// backwards.
    #[test]
    fn ordering_is_a_priority_respecting_permutation(routes in routes_strategy(), seed in any::<u64>(), held in proptest::collection::vec(any::<bool>(), 20)) {
        let t0 = Instant::now();
        let mut h = no_health();
        for (r, &down) in routes.iter().zip(&held) {
            if down { h.record_failure(r, t0); }
        }
        let out = order_routes(&routes, &mut rng(seed), &h, t0);
        let mut a: Vec<u16> = routes.iter().map(|r| r.port.get()).collect();
        let mut b: Vec<u16> = out.iter().map(|r| r.port.get()).collect();
        a.sort_unstable();
        b.sort_unstable();
        prop_assert_eq!(a, b);
        let split = out.iter().position(|r| h.is_held_down(r, t0)).unwrap_or(out.len());
        prop_assert!(out[split..].iter().all(|r| h.is_held_down(r, t0)));
        for part in [&out[..split], &out[split..]] {
            prop_assert!(part.windows(2).all(|w| w[0].priority <= w[1].priority));
        }
    }

}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]

    /// For random weights, first-pick frequencies match weight shares.
    #[test]
    fn first_pick_matches_weights(weights in proptest::collection::vec(1i64..=100, 2..5), seed in any::<u64>()) {
        let routes: Vec<Route> = weights.iter().enumerate().map(|(i, &w)| route("192.0.2.1", i as i64 + 1, 1, w)).collect();
        let shares = first_pick_shares(&routes, seed, 20_000);
        let total: i64 = weights.iter().sum();
        for (i, &w) in weights.iter().enumerate() {
            let expected = w as f64 / total as f64;
            let got = shares.get(&(i as u16 + 1)).copied().unwrap_or(0.0);
            // 5 standard deviations of a binomial share (σ ≤ 0.0036 over
            // 20,000 draws): a false failure is a one-in-a-million event.
            prop_assert!((got - expected).abs() < 0.018, "route {} weight {}: {} vs {}", i, w, got, expected);
        }
    }
}

/// Probing: a route found down is skipped while another is up, and tried
/// when it is the only hope.
#[test]
fn routes_probed_down_are_skipped_while_another_is_up() {
    let (a, b) = (route("10.0.0.1", 5060, 1, 1), route("10.0.0.2", 5060, 2, 1));
    let mut h = no_health();
    let now = Instant::now();
    h.set_probed_down(&a, true);
    let got = order_routes(&[a.clone(), b.clone()], &mut rng(1), &h, now);
    assert_eq!(got, vec![b.clone()]);
    h.set_probed_down(&b, true);
    let got = order_routes(&[a.clone(), b.clone()], &mut rng(1), &h, now);
    assert_eq!(
        got,
        vec![a.clone(), b.clone()],
        "all down: all tried, in order"
    );
    h.set_probed_down(&a, false);
    let got = order_routes(&[a.clone(), b.clone()], &mut rng(1), &h, now);
    assert_eq!(got, vec![a.clone()]);
    h.retain_probed(|_| false);
    assert!(!h.is_probed_down(&b));
}
