//! Route host names by RFC 3263 through the real binary: a real DNS
//! server (dnsmasq, started here on a free loopback port and killed by
//! its PID) serves NAPTR, SRV and A records; SIPp plays the carrier's
//! SBCs on their own loopback addresses.
//!
//! - A carrier host given as a domain with two SRV targets: a call goes
//!   to the priority-1 target, fails over to priority 2 on its 503, and
//!   after the records change (dnsmasq restarted, TTL 1 s, so trunkd's
//!   5 s floor applies) calls follow the new records without a reload;
//!   with the DNS server gone they keep using the last good records.
//! - A domain with no protocol: NAPTR chooses TCP, and the call goes over
//!   TCP to the SRV target.

use std::net::UdpSocket;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::calls::{assert_ok, pbx_calls, Lab};
use crate::support::*;

const SBC1: &str = "127.0.0.2";
const SBC2: &str = "127.0.0.6";
const SBC3: &str = "127.0.0.7";

/// dnsmasq answering only for `*.test` from its command line, on
/// 127.0.0.1:`port`; killed (by PID) when dropped.
struct Dns {
    child: Child,
}

impl Dns {
    fn start(port: u16, records: &[String]) -> Dns {
        // Debian installs it in /usr/sbin, which a user's PATH may lack.
        let bin = if std::path::Path::new("/usr/sbin/dnsmasq").exists() {
            "/usr/sbin/dnsmasq"
        } else {
            "dnsmasq"
        };
        let child = Command::new(bin)
            .args([
                "--keep-in-foreground",
                "--conf-file=/dev/null",
                "--no-resolv",
                "--no-hosts",
                "--listen-address=127.0.0.1",
                "--bind-interfaces",
                "--pid-file",
                // Answer NXDOMAIN/NODATA for other names under test. (no
                // upstream: REFUSED would be a lookup failure).
                "--local=/test/",
                "--local-ttl=1",
            ])
            .arg(format!("--port={port}"))
            .args(records)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("dnsmasq is installed (scripts/test installs dnsmasq-base)");
        let dns = Dns { child };
        dns.wait_ready(port);
        dns
    }

    /// Polls (bounded) until dnsmasq answers a query on `port`.
    fn wait_ready(&self, port: u16) {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        // A query for "ready.test" A.
        let mut q = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        for label in ["ready", "test"] {
            q.push(label.len() as u8);
            q.extend_from_slice(label.as_bytes());
        }
        q.extend_from_slice(&[0, 0, 1, 0, 1]);
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut buf = [0u8; 512];
        while Instant::now() < deadline {
            let _ = sock.send_to(&q, ("127.0.0.1", port));
            if sock.recv(&mut buf).is_ok() {
                return;
            }
        }
        panic!("dnsmasq did not answer on port {port}");
    }
}

impl Drop for Dns {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn srv(name: &str, target: &str, port: u16, priority: u16) -> String {
    format!("--srv-host={name},{target},{port},{priority},10")
}

fn a(name: &str, ip: &str) -> String {
    format!("--host-record={name},{ip}")
}

fn lookups(d: &Daemon, kind: &str, result: &str) -> f64 {
    d.metric(&format!(
        "dns_lookups_total{{type=\"{kind}\",result=\"{result}\"}}"
    ))
    .unwrap_or(0.0)
}

fn lab_config(ports: Ports, dns_port: u16, hosts: &str) -> String {
    let top = format!("[routing]\ndns_servers = [\"127.0.0.1:{dns_port}\"]\n");
    Lab {
        hosts,
        top: &top,
        ..Default::default()
    }
    .config(ports)
}

#[test]
fn srv_targets_fail_over_by_priority_and_follow_changed_records() {
    let ports = Ports::pick();
    let dns_port = free_port();
    let (p1, p2, p3) = (free_port_on(SBC1), free_port_on(SBC2), free_port_on(SBC3));
    let name = "_sip._udp.carrier.test";
    let mut dns = Dns::start(
        dns_port,
        &[
            srv(name, "sbc1.carrier.test", p1, 1),
            srv(name, "sbc2.carrier.test", p2, 2),
            a("sbc1.carrier.test", SBC1),
            a("sbc2.carrier.test", SBC2),
        ],
    );
    let mut first = SippBg::uas("uas_reject_503.xml", SBC1, p1, &["-m", "1"]);
    let mut second = SippBg::uas("uas_answer.xml", SBC2, p2, &["-m", "1"]);
    // No port: SRV of the protocol (RFC 3263 §4.2).
    let hosts = "{ host = \"carrier.test\", protocol = \"UDP\" }";
    let d = Daemon::start("dns-srv", ports, &lab_config(ports, dns_port, hosts));

    let out = pbx_calls("uac_call.xml", &d, &["-d", "100"]);
    assert_ok(&out, "customer");
    assert!(
        first.wait(Duration::from_secs(10)).0,
        "the priority-1 target got the INVITE and answered 503"
    );
    assert!(
        second.wait(Duration::from_secs(10)).0,
        "the priority-2 target answered"
    );
    let m = d.metrics();
    // Health is keyed by the resolved target, not the name.
    assert_eq!(
        metric_value(
            &m,
            &format!("route_failures_total{{route=\"{SBC1}:{p1}/UDP\"}}")
        ),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        metric_value(&m, &format!("route_up{{route=\"{SBC2}:{p2}/UDP\"}}")),
        Some(1.0),
        "{m}"
    );
    assert!(lookups(&d, "srv", "ok") >= 1.0, "{m}");
    assert!(lookups(&d, "a", "ok") >= 2.0, "{m}");

    // The carrier moves: one new SBC. dnsmasq restarts with the new
    // records; trunkd asks again when the old ones expire (TTL 1 s →
    // the 5 s floor), without a reload.
    let srv_before = lookups(&d, "srv", "ok");
    drop(dns);
    dns = Dns::start(
        dns_port,
        &[
            srv(name, "sbc3.carrier.test", p3, 1),
            a("sbc3.carrier.test", SBC3),
        ],
    );
    let changed = Instant::now();
    let mut third = SippBg::uas("uas_answer.xml", SBC3, p3, &["-m", "1"]);
    // Wait for the first successful SRV lookup after the change. A query
    // that met the restart may fail once and is retried 5 s later.
    let deadline = changed + Duration::from_secs(15);
    while lookups(&d, "srv", "ok") <= srv_before && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        lookups(&d, "srv", "ok") > srv_before,
        "no SRV lookup within 15 s of the change:\n{}",
        d.metrics()
    );
    // The new target's address is resolved in the same round; give the
    // snapshot a moment to be stored.
    std::thread::sleep(Duration::from_millis(300));
    let took = changed.elapsed();
    let out = pbx_calls("uac_call.xml", &d, &["-d", "100"]);
    assert_ok(&out, "customer, after the records changed");
    assert!(
        third.wait(Duration::from_secs(10)).0,
        "the new SRV target answered"
    );
    assert!(
        took < Duration::from_secs(12),
        "records followed after {took:?}"
    );

    // DNS goes away: the records expire, the lookup fails, and calls keep
    // going to the last good target.
    drop(dns);
    let errors_before = lookups(&d, "srv", "error");
    let mut fourth = SippBg::uas("uas_answer.xml", SBC3, p3, &["-m", "1"]);
    let deadline = Instant::now() + Duration::from_secs(20);
    while lookups(&d, "srv", "error") <= errors_before && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        lookups(&d, "srv", "error") > errors_before,
        "no failed SRV lookup within 20 s of the server going away:\n{}",
        d.metrics()
    );
    let out = pbx_calls("uac_call.xml", &d, &["-d", "100"]);
    assert_ok(&out, "customer, with the DNS server down");
    assert!(
        fourth.wait(Duration::from_secs(10)).0,
        "the last good SRV target answered"
    );
    assert!(!d.log().contains("panicked"), "{}", d.log());
}

#[test]
fn naptr_chooses_tcp_for_a_domain_without_protocol() {
    let ports = Ports::pick();
    let dns_port = free_port();
    let (p, pu) = (free_port_on(SBC1), free_port_on(SBC2));
    let _dns = Dns::start(
        dns_port,
        &[
            "--naptr-record=naptr.test,10,10,S,SIP+D2T,,_sip._tcp.naptr.test".to_owned(),
            "--naptr-record=naptr.test,20,10,S,SIP+D2U,,_sip._udp.naptr.test".to_owned(),
            srv("_sip._tcp.naptr.test", "sbc.naptr.test", p, 1),
            // UDP is there too, but NAPTR orders it after TCP (without
            // NAPTR, UDP would be asked first).
            srv("_sip._udp.naptr.test", "sbc-udp.naptr.test", pu, 1),
            a("sbc.naptr.test", SBC1),
            a("sbc-udp.naptr.test", SBC2),
        ],
    );
    let mut uas = SippBg::uas("uas_answer.xml", SBC1, p, &["-m", "1", "-t", "t1"]);
    let _udp = SippBg::uas("uas_reject_503.xml", SBC2, pu, &["-m", "1"]);
    // Neither port nor protocol: NAPTR first (RFC 3263 §4.1).
    let hosts = "{ host = \"naptr.test\" }";
    let d = Daemon::start("dns-naptr", ports, &lab_config(ports, dns_port, hosts));
    let out = pbx_calls("uac_call.xml", &d, &["-d", "100"]);
    assert_ok(&out, "customer");
    let (ok, text) = uas.wait(Duration::from_secs(10));
    assert!(ok, "the TCP target answered: {text}");
    let m = d.metrics();
    assert!(lookups(&d, "naptr", "ok") >= 1.0, "{m}");
    assert_eq!(
        metric_value(
            &m,
            &format!("route_failures_total{{route=\"{SBC2}:{pu}/UDP\"}}")
        ),
        None,
        "the UDP target was not tried first: {m}"
    );
    assert_eq!(
        metric_value(&m, &format!("route_up{{route=\"{SBC1}:{p}/TCP\"}}")),
        Some(1.0),
        "{m}"
    );
}
