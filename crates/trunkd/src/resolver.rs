//! Host names of routes and carrier hosts, resolved off the call path.
//!
//! The engine plans a call's hops synchronously and must never wait on
//! DNS, so names are resolved ahead of time: a task resolves every host
//! name the configuration uses at start, after each reload and whenever
//! a name's records expire, and publishes the results in one snapshot the
//! engine reads without locking.
//!
//! What is asked depends on the route (RFC 3263 §4, the rule is in
//! `trunkd-config`): a name with an explicit port gets A and AAAA only; a
//! name without one gets SRV of its protocol, or NAPTR first when no
//! protocol was given either, then A/AAAA of every SRV target. A name
//! with no SRV records falls back to its own A/AAAA with the route's port
//! and transport. The selection among the records (priority, weights, ".")
//! is `trunkd_core::routing::rfc3263`, run per call.
//!
//! TTLs are honoured: each name (and each SRV/NAPTR query) is asked again
//! when its shortest TTL runs out, kept within [`TTL_FLOOR`] and
//! [`TTL_CEILING`] (TTL 0 would otherwise mean a query per loop turn).
//! A lookup that fails (timeout, SERVFAIL) keeps the last good records —
//! a DNS outage is not a route change — and is retried with backoff; a
//! name never resolved has no addresses, and its hops are skipped with a
//! warning.
//!
//! Queries go to the system's nameservers (`/etc/resolv.conf`) unless
//! `[routing] dns_servers` names others. hickory-resolver's own cache is
//! off: this module is the cache, and a second one would serve records
//! past the moment this one asks again.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use hickory_resolver::config::{
    ConnectionConfig, NameServerConfig, ProtocolConfig, ResolverConfig,
};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::{RData, RecordType};
use hickory_resolver::TokioResolver;
use tracing::{debug, warn};
use trunkd_config::Config;
use trunkd_core::routing::rfc3263::{self, DnsLookup, Naptr, Resolution, Service, Srv, Target};
use trunkd_core::{Host, Resources, Route, Transport};

use crate::metrics::{DnsLookupLabels, Metrics};

/// `dns_lookups`, shared with the lookup tasks.
type Lookups = prometheus_client::metrics::family::Family<
    DnsLookupLabels,
    prometheus_client::metrics::counter::Counter,
>;

/// Records are never used longer than this without asking again.
pub const TTL_CEILING: Duration = Duration::from_secs(3600);
/// … nor asked again sooner (TTL 0 included).
pub const TTL_FLOOR: Duration = Duration::from_secs(5);
/// A failed lookup is retried after this, doubling up to [`RETRY_MAX`].
const RETRY_FIRST: Duration = Duration::from_secs(5);
const RETRY_MAX: Duration = Duration::from_secs(300);
/// A lookup that takes longer is abandoned for this round.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);

/// An SRV/NAPTR query a route needs: its name, how it is looked up and
/// its protocol (the SRV transport, or the fallback under NAPTR).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct ServiceKey {
    name: String,
    naptr: bool,
    transport: Transport,
}

impl ServiceKey {
    fn of(route: &Route) -> Option<ServiceKey> {
        match (&route.host, route.dns) {
            (Host::Name(n), DnsLookup::Srv | DnsLookup::Naptr) => Some(ServiceKey {
                name: n.to_string(),
                naptr: route.dns == DnsLookup::Naptr,
                transport: route.protocol,
            }),
            _ => None,
        }
    }

    /// The transports the route may use: its protocol, or all three when
    /// NAPTR chooses (UDP first: what a route without protocol always got).
    fn allowed(&self) -> Vec<Transport> {
        if self.naptr {
            vec![Transport::Udp, Transport::Tcp, Transport::Tls]
        } else {
            vec![self.transport]
        }
    }
}

/// What the engine reads.
#[derive(Default)]
struct Snapshot {
    /// Addresses by host name (lowercase), IPv4 first.
    names: HashMap<String, Vec<IpAddr>>,
    /// SRV records by query; empty: the name has none (fall back to its
    /// addresses).
    services: HashMap<ServiceKey, Vec<Service>>,
}

/// When an entry is asked again, and how many times in a row it failed.
#[derive(Clone, Copy, Debug)]
struct Due {
    at: Instant,
    failures: u32,
}

impl Due {
    fn after_success(ttls: impl IntoIterator<Item = u32>, now: Instant) -> Due {
        Due {
            at: now + rfc3263::refresh_after(ttls, TTL_FLOOR, TTL_CEILING),
            failures: 0,
        }
    }

    fn after_failure(previous: Option<Due>, now: Instant) -> Due {
        let failures = previous.map_or(0, |d| d.failures).saturating_add(1);
        let backoff = RETRY_FIRST
            .saturating_mul(1 << failures.saturating_sub(1).min(10))
            .min(RETRY_MAX);
        Due {
            at: now + backoff,
            failures,
        }
    }
}

/// The refresher's own state: the resolver and when each entry is due.
#[derive(Default)]
struct Refresher {
    resolver: Option<(Vec<SocketAddr>, TokioResolver)>,
    names_due: HashMap<String, Due>,
    services_due: HashMap<ServiceKey, Due>,
}

/// Resolved host names and SRV records, read by the engine without waiting.
#[derive(Default)]
pub struct HostCache {
    snapshot: ArcSwap<Snapshot>,
    refresher: tokio::sync::Mutex<Refresher>,
    /// Wakes the refresh loop when a reload resolved new names (their
    /// expiry may come before the loop's sleep ends).
    changed: tokio::sync::Notify,
}

/// The outcome of one DNS query.
enum Answer<T> {
    Records(Vec<T>, Vec<u32>),
    NoData,
    Failed(String),
}

impl HostCache {
    /// Where `route` may be sent, in the order to try: for a name looked
    /// up by SRV, RFC 2782 order drawn from `rng` (so weights spread
    /// calls); otherwise its addresses with its own port and transport.
    /// Empty when nothing resolved yet, or when the SRV records say the
    /// service is not offered (".").
    pub fn targets(&self, route: &Route, rng: &mut impl FnMut() -> u32) -> Vec<Target> {
        let snapshot = self.snapshot.load();
        let address = |addrs: Vec<IpAddr>| Resolution::Address {
            addrs,
            port: route.port.get(),
            transport: route.protocol,
        };
        let resolution = match (&route.host, ServiceKey::of(route)) {
            (Host::Ip(ip), _) => address(vec![*ip]),
            (Host::Name(n), None) => {
                address(snapshot.names.get(n.as_str()).cloned().unwrap_or_default())
            }
            (Host::Name(n), Some(key)) => match snapshot.services.get(&key) {
                Some(services) if !services.is_empty() => {
                    let addresses: BTreeMap<String, Vec<IpAddr>> = services
                        .iter()
                        .flat_map(|s| s.records.iter())
                        .filter_map(|r| {
                            snapshot
                                .names
                                .get(&r.target)
                                .map(|a| (r.target.clone(), a.clone()))
                        })
                        .collect();
                    Resolution::Srv {
                        services: services.clone(),
                        addresses,
                    }
                }
                _ => address(snapshot.names.get(n.as_str()).cloned().unwrap_or_default()),
            },
        };
        rfc3263::targets(&resolution, rng)
    }

    /// The host name of the TLS route or carrier host that `addr` was
    /// resolved from, for SNI and certificate verification (for an SRV
    /// route: the route's domain, RFC 3263 §4 / RFC 5922).
    pub fn tls_name_for(&self, resources: &Resources, addr: SocketAddr) -> Option<String> {
        routes(resources).find_map(|r| match &r.host {
            Host::Name(n)
                if self.targets(r, &mut || 0).iter().any(|t| {
                    t.transport == Transport::Tls && t.addr == addr.ip() && t.port == addr.port()
                }) =>
            {
                Some(n.to_string())
            }
            _ => None,
        })
    }

    /// Resolves everything `config` names that is due or new (at start and
    /// after a reload) and wakes the refresh loop, whose next expiry may
    /// now be sooner.
    pub async fn refresh(&self, config: &Config, metrics: &Metrics) {
        self.refresh_due(config, metrics).await;
        self.changed.notify_one();
    }

    /// Resolves what is due (and everything `config` names that was never
    /// resolved), publishes the result, and says when to call again.
    pub async fn refresh_due(&self, config: &Config, metrics: &Metrics) -> Instant {
        let mut state = self.refresher.lock().await;
        let servers = &config.settings.routing.dns_servers;
        let resolver = match &state.resolver {
            Some((s, r)) if s == servers => r.clone(),
            _ => match build_resolver(servers) {
                Ok(r) => {
                    // New nameservers: everything is asked again.
                    state.names_due.clear();
                    state.services_due.clear();
                    state.resolver = Some((servers.clone(), r.clone()));
                    r
                }
                Err(e) => {
                    warn!(error = %e, "no DNS resolver (route host names keep their addresses)");
                    return Instant::now() + RETRY_FIRST;
                }
            },
        };
        let previous = self.snapshot.load_full();
        let now = Instant::now();
        let counts = &metrics.dns_lookups;

        // SRV (and NAPTR) first: their targets are names to resolve.
        let mut service_keys: Vec<ServiceKey> = routes(&config.resources)
            .filter_map(ServiceKey::of)
            .collect();
        let mut seen = std::collections::HashSet::new();
        service_keys.retain(|k| seen.insert(k.clone()));
        let mut services = HashMap::with_capacity(service_keys.len());
        // Due lookups run at once: a dead nameserver costs one timeout per
        // round, not one per name.
        let mut lookups = tokio::task::JoinSet::new();
        for key in service_keys {
            let due = state.services_due.get(&key).copied();
            if let (Some(d), Some(kept)) = (due, previous.services.get(&key)) {
                if now < d.at {
                    services.insert(key, kept.clone());
                    continue;
                }
            }
            let (resolver, counts) = (resolver.clone(), counts.clone());
            lookups.spawn(async move {
                let found = lookup_services(&resolver, &key, &counts).await;
                (key, found)
            });
        }
        // A lookup task does not panic by design; if one did, its name
        // would miss this round's snapshot and be looked up next round.
        while let Some(done) = lookups.join_next().await {
            let Ok((key, found)) = done else { continue };
            let due = state.services_due.get(&key).copied();
            let kept = previous.services.get(&key).cloned();
            match found {
                Ok((found, ttls)) => {
                    debug!(host = %key.name, ?found, "route SRV records");
                    state
                        .services_due
                        .insert(key.clone(), Due::after_success(ttls, now));
                    services.insert(key, found);
                }
                Err(e) => {
                    warn!(host = %key.name, error = %e, "route SRV lookup failed; keeping the last records");
                    state
                        .services_due
                        .insert(key.clone(), Due::after_failure(due, now));
                    services.insert(key, kept.unwrap_or_default());
                }
            }
        }

        // Then addresses: names of address routes, SRV targets, and names
        // without SRV records (their own A/AAAA is the fallback).
        let mut wanted: Vec<String> = routes(&config.resources)
            .filter_map(|r| match (&r.host, ServiceKey::of(r)) {
                (Host::Name(n), None) => Some(n.to_string()),
                // The SRV name's own A/AAAA only as its fallback.
                (Host::Name(n), Some(key)) if services.get(&key).is_none_or(Vec::is_empty) => {
                    Some(n.to_string())
                }
                _ => None,
            })
            .chain(
                services
                    .values()
                    .flatten()
                    .flat_map(|s| s.records.iter())
                    .filter(|r| !r.is_no_service())
                    .map(|r| r.target.clone()),
            )
            .collect();
        wanted.sort();
        wanted.dedup();
        let mut names = HashMap::with_capacity(wanted.len());
        let mut lookups = tokio::task::JoinSet::new();
        for name in wanted {
            let due = state.names_due.get(&name).copied();
            if let (Some(d), Some(kept)) = (due, previous.names.get(&name)) {
                if now < d.at {
                    names.insert(name, kept.clone());
                    continue;
                }
            }
            let (resolver, counts) = (resolver.clone(), counts.clone());
            lookups.spawn(async move {
                let found = lookup_addresses(&resolver, &name, &counts).await;
                (name, found)
            });
        }
        while let Some(done) = lookups.join_next().await {
            let Ok((name, (mut addrs, ttls, failed))) = done else {
                continue;
            };
            let due = state.names_due.get(&name).copied();
            let kept = previous.names.get(&name).cloned();
            if addrs.is_empty() {
                // Keep what worked before: a DNS outage is not a route change.
                if let Some(e) = failed {
                    warn!(host = %name, error = %e, "route host name lookup failed; keeping the last addresses");
                } else {
                    warn!(host = %name, "route host name has no A/AAAA records; keeping the last addresses");
                }
                state
                    .names_due
                    .insert(name.clone(), Due::after_failure(due, now));
                addrs = kept.unwrap_or_default();
            } else {
                state
                    .names_due
                    .insert(name.clone(), Due::after_success(ttls, now));
            }
            addrs.sort_by_key(|a| (a.is_ipv6(), *a));
            addrs.dedup();
            debug!(host = %name, ?addrs, "route host name resolved");
            names.insert(name, addrs);
        }
        state.names_due.retain(|n, _| names.contains_key(n));
        state.services_due.retain(|k, _| services.contains_key(k));
        self.snapshot.store(Arc::new(Snapshot { names, services }));
        state
            .names_due
            .values()
            .chain(state.services_due.values())
            .map(|d| d.at)
            .min()
            .unwrap_or(now + TTL_CEILING)
    }

    /// Waits until `next` or until another refresh (a reload) ran.
    pub async fn wait(&self, next: Instant) {
        tokio::select! {
            _ = tokio::time::sleep_until(next.into()) => {}
            _ = self.changed.notified() => {}
        }
    }
}

#[cfg(test)]
impl HostCache {
    /// A cache holding `names` and, for `route`, `services` (tests of
    /// planning without DNS).
    pub(crate) fn with_records(
        names: &[(&str, &[IpAddr])],
        route: &Route,
        services: Vec<Service>,
    ) -> HostCache {
        let cache = HostCache::default();
        let mut snapshot = Snapshot::default();
        for (n, a) in names {
            snapshot.names.insert((*n).to_owned(), a.to_vec());
        }
        if let Some(key) = ServiceKey::of(route) {
            snapshot.services.insert(key, services);
        }
        cache.snapshot.store(Arc::new(snapshot));
        cache
    }
}

fn build_resolver(servers: &[SocketAddr]) -> Result<TokioResolver, String> {
    let mut builder = if servers.is_empty() {
        TokioResolver::builder_tokio().map_err(|e| e.to_string())?
    } else {
        let name_servers = servers
            .iter()
            .map(|s| {
                let conn = |protocol| {
                    let mut c = ConnectionConfig::new(protocol);
                    c.port = s.port();
                    c
                };
                NameServerConfig::new(
                    s.ip(),
                    true,
                    vec![conn(ProtocolConfig::Udp), conn(ProtocolConfig::Tcp)],
                )
            })
            .collect();
        TokioResolver::builder_with_config(
            ResolverConfig::from_name_servers(name_servers),
            TokioRuntimeProvider::default(),
        )
    };
    let options = builder.options_mut();
    options.cache_size = 0;
    options.timeout = Duration::from_secs(2);
    options.attempts = 2;
    builder.build().map_err(|e| e.to_string())
}

/// A fully qualified form of `name`, so no search domain is appended.
fn fqdn(name: &str) -> String {
    if name.ends_with('.') {
        name.to_owned()
    } else {
        format!("{name}.")
    }
}

/// `name` as the snapshot keys it: lowercase, no trailing dot.
fn plain(name: &impl ToString) -> String {
    name.to_string().trim_end_matches('.').to_ascii_lowercase()
}

async fn query<T>(
    resolver: &TokioResolver,
    name: &str,
    kind: RecordType,
    counts: &Lookups,
    pick: impl Fn(&RData) -> Option<T>,
) -> Answer<T> {
    let label = match kind {
        RecordType::NAPTR => "naptr",
        RecordType::SRV => "srv",
        RecordType::A => "a",
        _ => "aaaa",
    };
    let found = tokio::time::timeout(LOOKUP_TIMEOUT, resolver.lookup(fqdn(name), kind)).await;
    let answer = match found {
        Ok(Ok(lookup)) => {
            let (mut records, mut ttls) = (Vec::new(), Vec::new());
            for r in lookup.answers() {
                if let Some(t) = pick(&r.data) {
                    records.push(t);
                    ttls.push(r.ttl);
                }
            }
            if records.is_empty() {
                Answer::NoData
            } else {
                Answer::Records(records, ttls)
            }
        }
        Ok(Err(e)) if e.is_no_records_found() => Answer::NoData,
        Ok(Err(e)) => Answer::Failed(e.to_string()),
        Err(_) => Answer::Failed("timed out".to_owned()),
    };
    let result = match &answer {
        Answer::Records(..) => "ok",
        Answer::NoData => "nodata",
        Answer::Failed(_) => "error",
    };
    counts
        .get_or_create(&DnsLookupLabels {
            r#type: label,
            result,
        })
        .inc();
    answer
}

/// NAPTR (when the route lets DNS choose the transport), then SRV of each
/// name it gave (or the defaults). `Ok(empty)` is "no SRV records".
async fn lookup_services(
    resolver: &TokioResolver,
    key: &ServiceKey,
    counts: &Lookups,
) -> Result<(Vec<Service>, Vec<u32>), String> {
    let mut all_ttls = Vec::new();
    let mut naptr = Vec::new();
    if key.naptr {
        match query(
            resolver,
            &key.name,
            RecordType::NAPTR,
            counts,
            |d| match d {
                RData::NAPTR(n) => Some(Naptr {
                    order: n.order,
                    preference: n.preference,
                    flags: String::from_utf8_lossy(&n.flags).into_owned(),
                    services: String::from_utf8_lossy(&n.services).into_owned(),
                    replacement: plain(&n.replacement),
                }),
                _ => None,
            },
        )
        .await
        {
            Answer::Records(r, ttls) => {
                naptr = r;
                all_ttls.extend(ttls);
            }
            Answer::NoData => {}
            Answer::Failed(e) => return Err(format!("NAPTR: {e}")),
        }
    }
    let mut services = Vec::new();
    for (transport, srv_name) in rfc3263::srv_names(&key.name, &naptr, &key.allowed()) {
        match query(resolver, &srv_name, RecordType::SRV, counts, |d| match d {
            RData::SRV(s) => Some(Srv {
                priority: s.priority,
                weight: s.weight,
                port: s.port,
                target: match plain(&s.target) {
                    t if t.is_empty() => ".".to_owned(),
                    t => t,
                },
            }),
            _ => None,
        })
        .await
        {
            Answer::Records(records, ttls) => {
                all_ttls.extend(ttls);
                services.push(Service { transport, records });
            }
            Answer::NoData => {}
            Answer::Failed(e) => return Err(format!("SRV {srv_name}: {e}")),
        }
    }
    Ok((services, all_ttls))
}

/// A and AAAA of `name`: the addresses, their TTLs, and the error when a
/// query failed (rather than said there are none).
async fn lookup_addresses(
    resolver: &TokioResolver,
    name: &str,
    counts: &Lookups,
) -> (Vec<IpAddr>, Vec<u32>, Option<String>) {
    let (mut addrs, mut ttls, mut failed) = (Vec::new(), Vec::new(), None);
    for kind in [RecordType::A, RecordType::AAAA] {
        match query(resolver, name, kind, counts, |d| d.ip_addr()).await {
            Answer::Records(a, t) => {
                addrs.extend(a);
                ttls.extend(t);
            }
            Answer::NoData => {}
            Answer::Failed(e) => failed = Some(e),
        }
    }
    (addrs, ttls, failed)
}

/// Every carrier host and VC origination route.
fn routes(resources: &Resources) -> impl Iterator<Item = &Route> {
    resources
        .carriers()
        .iter()
        .flat_map(|c| c.hosts.iter())
        .chain(
            resources
                .voice_connectors()
                .iter()
                .flat_map(|v| v.origination.routes.iter()),
        )
}
