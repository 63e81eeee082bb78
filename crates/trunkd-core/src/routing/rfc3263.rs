//! RFC 3263 §4 target selection for a route whose host is a domain: which
//! SRV names to ask (from NAPTR, or the defaults), and, from what DNS
//! answered, the ordered list of (address, port, transport) a call tries.
//!
//! No I/O here: the daemon's resolver fetches the records off the call
//! path and keeps them as a [`Resolution`]; the engine calls [`targets`]
//! with its own RNG for every call, so SRV weights spread calls the way
//! RFC 2782 says and each call gets its own weighted order.
//!
//! The rules, with the traps Kamailio and OpenSIPS users hit:
//!
//! - NAPTR (§4.1): only terminal `"s"` records with a SIP service this
//!   route may use (`SIP+D2U`, `SIP+D2T`, `SIPS+D2T`), lowest order, then
//!   lowest preference, first; unknown services (`E2U+sip`, `SIP+D2S`) are
//!   skipped, not errors.
//! - SRV (RFC 2782): lowest priority first; within a priority a weighted
//!   random order where a weight-0 record keeps a small chance; a single
//!   record with target `"."` means "decidedly not available here": no
//!   targets and, unlike a missing SRV, no fallback to A/AAAA.
//! - No NAPTR and no SRV at all (§4.2): the domain's own A/AAAA records with
//!   the route's port and transport, which is exactly what a route with an
//!   explicit port always gets.

use std::collections::BTreeMap;
use std::net::IpAddr;

use crate::types::Transport;

/// How a route's host name becomes addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum DnsLookup {
    /// A/AAAA only, the route's own port and transport: an IP host, or a
    /// host name given with an explicit `port` (RFC 3263 §4.2).
    #[default]
    Address,
    /// SRV of the route's `protocol` (`_sip._udp`, `_sip._tcp` or
    /// `_sips._tcp`), then A/AAAA of each target: no `port`, `protocol`
    /// given.
    Srv,
    /// NAPTR picks the transports, then SRV, then A/AAAA: neither `port`
    /// nor `protocol` given.
    Naptr,
}

/// A NAPTR record, as far as SIP uses it (RFC 3403, RFC 3263 §4.1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Naptr {
    pub order: u16,
    pub preference: u16,
    pub flags: String,
    pub services: String,
    /// The SRV name to ask next (no trailing dot).
    pub replacement: String,
}

/// An SRV record (RFC 2782).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Srv {
    pub priority: u16,
    pub weight: u16,
    pub port: u16,
    /// The target host, lowercase, no trailing dot; `"."` (or empty) is
    /// "no service".
    pub target: String,
}

impl Srv {
    /// RFC 2782: a target of "." means the service is not offered.
    pub fn is_no_service(&self) -> bool {
        self.target.is_empty() || self.target == "."
    }
}

/// The SRV name prefix of a transport (RFC 3263 §4.1).
pub fn srv_prefix(transport: Transport) -> &'static str {
    match transport {
        Transport::Udp => "_sip._udp",
        Transport::Tcp => "_sip._tcp",
        Transport::Tls => "_sips._tcp",
    }
}

/// The transport a NAPTR service field names, if SIP knows it.
pub fn naptr_service(services: &str) -> Option<Transport> {
    match services.to_ascii_uppercase().as_str() {
        "SIP+D2U" => Some(Transport::Udp),
        "SIP+D2T" => Some(Transport::Tcp),
        "SIPS+D2T" => Some(Transport::Tls),
        _ => None,
    }
}

/// The SRV names to ask for `domain`, in order, with their transport.
///
/// From NAPTR when it gave usable records (order, then preference; a
/// transport not in `allowed` is dropped; one name per transport), else
/// the defaults for every allowed transport in the order given (§4.1:
/// "query for SRV records for each transport protocol it supports").
pub fn srv_names(domain: &str, naptr: &[Naptr], allowed: &[Transport]) -> Vec<(Transport, String)> {
    let mut usable: Vec<(&Naptr, Transport)> = naptr
        .iter()
        .filter(|n| n.flags.eq_ignore_ascii_case("s"))
        .filter_map(|n| naptr_service(&n.services).map(|t| (n, t)))
        .filter(|(n, t)| allowed.contains(t) && !n.replacement.is_empty() && n.replacement != ".")
        .collect();
    usable.sort_by_key(|(n, _)| (n.order, n.preference));
    let mut out: Vec<(Transport, String)> = Vec::new();
    for (n, t) in usable {
        if out.iter().all(|(seen, _)| *seen != t) {
            out.push((t, n.replacement.to_ascii_lowercase()));
        }
    }
    if out.is_empty() {
        out = allowed
            .iter()
            .map(|&t| (t, format!("{}.{}", srv_prefix(t), domain)))
            .collect();
    }
    out
}

/// A uniform draw in `0..total` from a uniform `u32`.
fn draw(rng: &mut impl FnMut() -> u32, total: u64) -> u64 {
    (u64::from(rng()) * total) >> 32
}

/// SRV records in the order RFC 2782 says to try them: priority, then
/// the weighted random selection (weight-0 records first in each round's
/// list, so they are picked only when the draw is 0). "." records are
/// left out.
pub fn order_srv(records: &[Srv], rng: &mut impl FnMut() -> u32) -> Vec<Srv> {
    let mut rest: Vec<Srv> = records
        .iter()
        .filter(|r| !r.is_no_service())
        .cloned()
        .collect();
    // Stable: records as DNS listed them, weight 0 first within a priority.
    rest.sort_by_key(|r| (r.priority, r.weight != 0));
    let mut out = Vec::with_capacity(rest.len());
    while let Some(first) = rest.first() {
        let priority = first.priority;
        let end = rest
            .iter()
            .position(|r| r.priority != priority)
            .unwrap_or(rest.len());
        let mut tier: Vec<Srv> = rest.drain(..end).collect();
        while !tier.is_empty() {
            let total: u64 = tier.iter().map(|r| u64::from(r.weight)).sum();
            // RFC 2782: a number in 0..=total, the first record whose
            // running sum reaches it.
            let x = draw(rng, total + 1);
            let mut sum = 0;
            let mut pick = tier.len() - 1;
            for (i, r) in tier.iter().enumerate() {
                sum += u64::from(r.weight);
                if sum >= x {
                    pick = i;
                    break;
                }
            }
            out.push(tier.remove(pick));
        }
    }
    out
}

/// The SRV records of one transport.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Service {
    pub transport: Transport,
    pub records: Vec<Srv>,
}

/// What DNS said about one route host name, as the resolver keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Resolution {
    /// SRV records (by transport, in NAPTR or default order) and the
    /// addresses of their targets (IPv4 first).
    Srv {
        services: Vec<Service>,
        addresses: BTreeMap<String, Vec<IpAddr>>,
    },
    /// No SRV: the name's own addresses with the route's port and
    /// transport.
    Address {
        addrs: Vec<IpAddr>,
        port: u16,
        transport: Transport,
    },
}

/// One place a call may be sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Target {
    pub addr: IpAddr,
    pub port: u16,
    pub transport: Transport,
    /// From the SRV record (0 for an address fallback).
    pub priority: u16,
    pub weight: u16,
}

/// The targets to try, in order: each transport in turn, its SRV records
/// in RFC 2782 order, each target's addresses (IPv4 first). A target with
/// no address is skipped; a "."-only answer gives none. Every (address,
/// port, transport) appears once.
pub fn targets(resolution: &Resolution, rng: &mut impl FnMut() -> u32) -> Vec<Target> {
    let mut out: Vec<Target> = Vec::new();
    let mut push = |t: Target| {
        if !out
            .iter()
            .any(|o| o.addr == t.addr && o.port == t.port && o.transport == t.transport)
        {
            out.push(t);
        }
    };
    match resolution {
        Resolution::Address {
            addrs,
            port,
            transport,
        } => {
            for &addr in addrs {
                push(Target {
                    addr,
                    port: *port,
                    transport: *transport,
                    priority: 0,
                    weight: 0,
                });
            }
        }
        Resolution::Srv {
            services,
            addresses,
        } => {
            for service in services {
                for srv in order_srv(&service.records, rng) {
                    for &addr in addresses.get(&srv.target).into_iter().flatten() {
                        push(Target {
                            addr,
                            port: srv.port,
                            transport: service.transport,
                            priority: srv.priority,
                            weight: srv.weight,
                        });
                    }
                }
            }
        }
    }
    out
}

/// How long records are used before they are asked again: the shortest
/// TTL, kept within `[floor, ceiling]` (TTL 0, which dnsmasq serves for
/// its local records by default, means "ask again soon", not "ask on every
/// call").
pub fn refresh_after(
    ttls: impl IntoIterator<Item = u32>,
    floor: std::time::Duration,
    ceiling: std::time::Duration,
) -> std::time::Duration {
    let shortest = ttls
        .into_iter()
        .min()
        .map(|s| std::time::Duration::from_secs(u64::from(s)))
        .unwrap_or(ceiling);
    shortest.clamp(floor, ceiling)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::time::Duration;

    fn srv(priority: u16, weight: u16, port: u16, target: &str) -> Srv {
        Srv {
            priority,
            weight,
            port,
            target: target.into(),
        }
    }

    fn naptr(order: u16, preference: u16, services: &str, replacement: &str) -> Naptr {
        Naptr {
            order,
            preference,
            flags: "S".into(),
            services: services.into(),
            replacement: replacement.into(),
        }
    }

    fn xorshift(seed: u64) -> impl FnMut() -> u32 {
        let mut s = seed | 1;
        move || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 32) as u32
        }
    }

    const ALL: [Transport; 3] = [Transport::Udp, Transport::Tcp, Transport::Tls];

    #[test]
    fn naptr_order_then_preference_picks_the_srv_names() {
        let records = [
            naptr(20, 10, "SIP+D2U", "_sip._udp.example.com"),
            naptr(10, 20, "SIP+D2T", "_sip._tcp.example.com"),
            naptr(10, 10, "SIPS+D2T", "_sips._tcp.example.com"),
            naptr(5, 10, "E2U+sip", "ignored.example.com"),
        ];
        assert_eq!(
            srv_names("example.com", &records, &ALL),
            vec![
                (Transport::Tls, "_sips._tcp.example.com".to_owned()),
                (Transport::Tcp, "_sip._tcp.example.com".to_owned()),
                (Transport::Udp, "_sip._udp.example.com".to_owned()),
            ]
        );
    }

    #[test]
    fn naptr_transports_the_route_may_not_use_are_dropped() {
        let records = [
            naptr(10, 10, "SIPS+D2T", "_sips._tcp.example.com"),
            naptr(20, 10, "SIP+D2T", "_sip._tcp.example.com"),
        ];
        assert_eq!(
            srv_names("example.com", &records, &[Transport::Udp, Transport::Tcp]),
            vec![(Transport::Tcp, "_sip._tcp.example.com".to_owned())]
        );
    }

    #[test]
    fn no_usable_naptr_asks_the_default_srv_names() {
        let records = [Naptr {
            flags: "U".into(),
            ..naptr(10, 10, "SIP+D2T", "_sip._tcp.example.com")
        }];
        assert_eq!(
            srv_names("example.com", &records, &[Transport::Udp, Transport::Tcp]),
            vec![
                (Transport::Udp, "_sip._udp.example.com".to_owned()),
                (Transport::Tcp, "_sip._tcp.example.com".to_owned()),
            ]
        );
    }

    #[test]
    fn srv_priority_comes_before_weight() {
        let records = [
            srv(2, 100, 5062, "b.example.com"),
            srv(1, 1, 5061, "a.example.com"),
        ];
        for seed in 0..50 {
            let order = order_srv(&records, &mut xorshift(seed));
            assert_eq!(order[0].target, "a.example.com");
            assert_eq!(order[1].target, "b.example.com");
        }
    }

    #[test]
    fn srv_weights_split_first_picks_in_proportion() {
        let records = [srv(1, 70, 5060, "a"), srv(1, 30, 5060, "b")];
        let mut rng = xorshift(7);
        let n = 10_000;
        let a_first = (0..n)
            .filter(|_| order_srv(&records, &mut rng)[0].target == "a")
            .count();
        // 70/101 of draws land on a (0..=100, running sums 70 and 100).
        assert!((6700..7150).contains(&a_first), "{a_first}");
    }

    #[test]
    fn a_weight_zero_record_is_rarely_first_but_never_dropped() {
        let records = [srv(1, 0, 5060, "zero"), srv(1, 50, 5060, "fifty")];
        let mut rng = xorshift(3);
        let mut zero_first = 0;
        for _ in 0..5100 {
            let order = order_srv(&records, &mut rng);
            assert_eq!(order.len(), 2);
            zero_first += usize::from(order[0].target == "zero");
        }
        // Chance 1/51.
        assert!((40..170).contains(&zero_first), "{zero_first}");
    }

    #[test]
    fn a_dot_target_means_no_service_and_no_fallback() {
        let resolution = Resolution::Srv {
            services: vec![Service {
                transport: Transport::Udp,
                records: vec![srv(0, 0, 0, ".")],
            }],
            addresses: BTreeMap::new(),
        };
        assert_eq!(targets(&resolution, &mut xorshift(1)), vec![]);
    }

    #[test]
    fn targets_expand_each_srv_record_to_its_addresses() {
        let a: IpAddr = "127.0.0.2".parse().unwrap();
        let a6: IpAddr = "::1".parse().unwrap();
        let b: IpAddr = "127.0.0.3".parse().unwrap();
        let resolution = Resolution::Srv {
            services: vec![
                Service {
                    transport: Transport::Tcp,
                    records: vec![srv(2, 1, 5070, "b.example.com")],
                },
                Service {
                    transport: Transport::Udp,
                    records: vec![
                        srv(2, 1, 5080, "b.example.com"),
                        srv(1, 1, 5060, "a.example.com"),
                        srv(1, 1, 5090, "gone.example.com"),
                    ],
                },
            ],
            addresses: BTreeMap::from([
                ("a.example.com".to_owned(), vec![a, a6]),
                ("b.example.com".to_owned(), vec![b]),
            ]),
        };
        let got = targets(&resolution, &mut xorshift(1));
        let brief: Vec<(IpAddr, u16, Transport)> =
            got.iter().map(|t| (t.addr, t.port, t.transport)).collect();
        assert_eq!(
            brief,
            vec![
                (b, 5070, Transport::Tcp),
                (a, 5060, Transport::Udp),
                (a6, 5060, Transport::Udp),
                (b, 5080, Transport::Udp),
            ]
        );
    }

    #[test]
    fn no_srv_falls_back_to_the_names_addresses() {
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let resolution = Resolution::Address {
            addrs: vec![a],
            port: 5060,
            transport: Transport::Udp,
        };
        assert_eq!(
            targets(&resolution, &mut xorshift(1)),
            vec![Target {
                addr: a,
                port: 5060,
                transport: Transport::Udp,
                priority: 0,
                weight: 0
            }]
        );
    }

    #[test]
    fn ttls_are_kept_between_floor_and_ceiling() {
        let (floor, ceiling) = (Duration::from_secs(5), Duration::from_secs(3600));
        assert_eq!(refresh_after([0, 300], floor, ceiling), floor);
        assert_eq!(
            refresh_after([300, 60], floor, ceiling),
            Duration::from_secs(60)
        );
        assert_eq!(refresh_after([86_400], floor, ceiling), ceiling);
        assert_eq!(refresh_after([], floor, ceiling), ceiling);
    }

    fn arb_srv() -> impl Strategy<Value = Srv> {
        (
            0u16..4,
            0u16..100,
            1u16..10,
            prop_oneof![Just(".".to_owned()), "[a-d]".prop_map(String::from)],
        )
            .prop_map(|(p, w, port, t)| srv(p, w, port, &t))
    }

    proptest! {
        #[test]
        fn order_srv_is_a_permutation_in_priority_order(
            records in prop::collection::vec(arb_srv(), 0..12),
            seed in any::<u64>(),
        ) {
            let order = order_srv(&records, &mut xorshift(seed));
            let mut want: Vec<Srv> = records.iter().filter(|r| !r.is_no_service()).cloned().collect();
            let mut got = order.clone();
            let key = |r: &Srv| (r.priority, r.weight, r.port, r.target.clone());
            want.sort_by_key(key);
            got.sort_by_key(key);
            prop_assert_eq!(got, want);
            prop_assert!(order.windows(2).all(|w| w[0].priority <= w[1].priority));
        }

        #[test]
        fn targets_are_unique_and_only_from_known_addresses(
            records in prop::collection::vec(arb_srv(), 0..12),
            seed in any::<u64>(),
        ) {
            let addr = |i: u8| IpAddr::from([127, 0, 0, i]);
            let resolution = Resolution::Srv {
                services: vec![Service { transport: Transport::Udp, records: records.clone() }],
                addresses: BTreeMap::from([
                    ("a".to_owned(), vec![addr(1)]),
                    ("b".to_owned(), vec![addr(2), addr(3)]),
                    ("c".to_owned(), vec![]),
                ]),
            };
            let got = targets(&resolution, &mut xorshift(seed));
            for (i, t) in got.iter().enumerate() {
                prop_assert!(got[i + 1..].iter().all(|o| (o.addr, o.port) != (t.addr, t.port)));
                prop_assert!(records.iter().any(|r| r.port == t.port && !r.is_no_service()));
            }
            let reachable: std::collections::BTreeSet<(IpAddr, u16)> = records
                .iter()
                .filter(|r| r.target == "a" || r.target == "b")
                .flat_map(|r| match r.target.as_str() {
                    "a" => vec![(addr(1), r.port)],
                    _ => vec![(addr(2), r.port), (addr(3), r.port)],
                })
                .collect();
            prop_assert_eq!(got.len(), reachable.len());
        }
    }
}
