//! Host names of routes and carrier hosts, resolved off the call path.
//!
//! The engine plans a call's hops synchronously and must never wait on
//! DNS, so names are resolved ahead of time: a task resolves every host
//! name the configuration uses (A and AAAA through the system resolver,
//! `getaddrinfo`) at start, after each reload and every
//! [`REFRESH`], and publishes the results in one snapshot the engine reads
//! without locking. A name that does not resolve keeps its previous
//! addresses (a DNS outage must not take routes down); a name never
//! resolved has none, and its hops are skipped with a warning.
//!
//! Not done here: RFC 3263 NAPTR/SRV selection. A route names its host,
//! port and transport; only the address comes from DNS.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tracing::{debug, warn};
use trunkd_core::{Host, Resources, Route, Transport};

/// How often names are resolved again (DNS TTLs of carrier SBCs are
/// minutes; a moved SBC is picked up within this).
pub const REFRESH: Duration = Duration::from_secs(30);
/// A lookup that takes longer is abandoned for this round.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);

/// Resolved addresses by host name (lowercase), IPv4 first.
#[derive(Default)]
pub struct HostCache {
    names: ArcSwap<HashMap<String, Vec<IpAddr>>>,
}

impl HostCache {
    /// The addresses of `name`, IPv4 first; empty when never resolved.
    pub fn lookup(&self, name: &str) -> Vec<IpAddr> {
        self.names.load().get(name).cloned().unwrap_or_default()
    }

    /// The host name of the TLS route or carrier host that `addr` was
    /// resolved from, for SNI and certificate verification.
    pub fn tls_name_for(&self, resources: &Resources, addr: SocketAddr) -> Option<String> {
        let names = self.names.load();
        routes(resources)
            .filter(|r| r.protocol == Transport::Tls && r.port.get() == addr.port())
            .find_map(|r| match &r.host {
                Host::Name(n)
                    if names
                        .get(n.as_str())
                        .is_some_and(|a| a.contains(&addr.ip())) =>
                {
                    Some(n.to_string())
                }
                _ => None,
            })
    }

    /// Resolves every host name `resources` uses and publishes the result.
    pub async fn refresh(&self, resources: &Resources) {
        let mut wanted: Vec<String> = routes(resources)
            .filter_map(|r| match &r.host {
                Host::Name(n) => Some(n.to_string()),
                Host::Ip(_) => None,
            })
            .collect();
        wanted.sort();
        wanted.dedup();
        let previous = self.names.load_full();
        let mut next = HashMap::with_capacity(wanted.len());
        for name in wanted {
            let lookup = tokio::net::lookup_host((name.clone(), 0));
            let found = tokio::time::timeout(LOOKUP_TIMEOUT, lookup).await;
            let mut addrs: Vec<IpAddr> = match found {
                Ok(Ok(it)) => it.map(|a| a.ip()).collect(),
                Ok(Err(e)) => {
                    warn!(host = %name, error = %e, "route host name does not resolve");
                    Vec::new()
                }
                Err(_) => {
                    warn!(host = %name, "route host name lookup timed out");
                    Vec::new()
                }
            };
            if addrs.is_empty() {
                // Keep what worked before: a DNS outage is not a route change.
                addrs = previous.get(&name).cloned().unwrap_or_default();
            }
            addrs.sort_by_key(|a| (a.is_ipv6(), *a));
            addrs.dedup();
            debug!(host = %name, ?addrs, "route host name resolved");
            next.insert(name, addrs);
        }
        self.names.store(Arc::new(next));
    }
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
