//! The relay over real UDP sockets on 127.0.0.1: two "phones" (blocking std
//! sockets on the test thread) talk through a relay running on its own tokio
//! runtime, as trunkd runs it. Counts and waits are bounded.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

use tokio::runtime::Runtime;
use trunkd_media::relay::MAX_DATAGRAM;
use trunkd_media::{
    spawn, spawn_with_observer, Leg, LegSetup, LegSockets, MediaEvent, MediaSocket, PacketObserver,
    PortAllocator, RelayConfig, RelayHandle,
};

const LO: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const WAIT: Duration = Duration::from_secs(2);

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap()
}

/// Each test gets its own slice of ports so tests in parallel don't meet.
fn allocator() -> PortAllocator {
    static NEXT: AtomicU16 = AtomicU16::new(23000);
    let base = NEXT.fetch_add(100, Ordering::Relaxed);
    PortAllocator::new(base, base + 99).unwrap()
}

struct Phone {
    rtp: UdpSocket,
    rtcp: UdpSocket,
}

impl Phone {
    fn new() -> Self {
        Self::on(LO)
    }
    fn on(ip: IpAddr) -> Self {
        let rtp = UdpSocket::bind((ip, 0)).unwrap();
        let rtcp = UdpSocket::bind((ip, 0)).unwrap();
        rtp.set_read_timeout(Some(WAIT)).unwrap();
        rtcp.set_read_timeout(Some(WAIT)).unwrap();
        Self { rtp, rtcp }
    }
    fn rtp_addr(&self) -> SocketAddr {
        self.rtp.local_addr().unwrap()
    }
    fn rtcp_addr(&self) -> SocketAddr {
        self.rtcp.local_addr().unwrap()
    }
}

fn recv(sock: &UdpSocket) -> (Vec<u8>, SocketAddr) {
    let mut buf = [0u8; 5000];
    let (n, from) = sock.recv_from(&mut buf).unwrap();
    (buf[..n].to_vec(), from)
}

/// Asserts nothing arrives within `d`.
fn silent(sock: &UdpSocket, d: Duration) {
    sock.set_read_timeout(Some(d)).unwrap();
    let mut buf = [0u8; 5000];
    let got = sock.recv_from(&mut buf);
    sock.set_read_timeout(Some(WAIT)).unwrap();
    assert!(got.is_err(), "unexpected packet {got:?}");
}

fn setup(alloc: &PortAllocator, rtp: Option<SocketAddr>, rtcp: Option<SocketAddr>) -> LegSetup {
    LegSetup {
        sockets: LegSockets::from(alloc.allocate_bound(LO).unwrap()),
        peer_rtp: rtp,
        peer_rtcp: rtcp,
    }
}

fn no_timeout(strict: bool) -> RelayConfig {
    RelayConfig {
        strict,
        inactivity_timeout: None,
        ..RelayConfig::default()
    }
}

struct Call<O = trunkd_media::NoopObserver> {
    rt: Runtime,
    relay: RelayHandle<O>,
    events: trunkd_media::MediaEvents,
    alloc: PortAllocator,
}

fn start(config: RelayConfig, a: &Phone, b: &Phone) -> Call {
    let rt = runtime();
    let alloc = allocator();
    let (tx, events) = trunkd_media::media_events();
    let relay = {
        let _g = rt.enter();
        spawn(
            config,
            setup(&alloc, Some(a.rtp_addr()), Some(a.rtcp_addr())),
            setup(&alloc, Some(b.rtp_addr()), Some(b.rtcp_addr())),
            tx,
        )
        .unwrap()
    };
    Call {
        rt,
        relay,
        events,
        alloc,
    }
}

/// An RTP-looking packet (version 2, PT 0) with `n` bytes of varied payload.
fn rtp_packet(seq: u16, n: usize) -> Vec<u8> {
    let mut p = vec![0x80, 0x00];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&(u32::from(seq) * 160).to_be_bytes());
    p.extend_from_slice(&0x1234_5678u32.to_be_bytes());
    let mut x = u32::from(seq).wrapping_mul(2_654_435_761) | 1;
    for _ in 0..n {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        p.push(x as u8);
    }
    p
}

fn rtcp_rr(i: u8) -> Vec<u8> {
    // RR, no report blocks, length 1, SSRC.
    vec![0x80, 201, 0, 1, 0xde, 0xad, 0xbe, i]
}

#[test]
fn relays_200_packets_each_way_unchanged_from_the_relay_address() {
    let (a, b) = (Phone::new(), Phone::new());
    let call = start(no_timeout(false), &a, &b);
    let relay_a_rtp = call.relay.local_rtp(Leg::A);
    let relay_b_rtp = call.relay.local_rtp(Leg::B);
    let relay_a_rtcp = call.relay.local_rtcp(Leg::A);
    let relay_b_rtcp = call.relay.local_rtcp(Leg::B);
    assert_eq!(relay_a_rtcp.port(), relay_a_rtp.port() + 1);

    let (mut a_bytes, mut b_bytes) = (0u64, 0u64);
    for i in 0..200u16 {
        let pa = rtp_packet(i, 160);
        // Sizes vary, up to 1400 bytes.
        let pb = rtp_packet(i, usize::from(i) * 7);
        a_bytes += pa.len() as u64;
        b_bytes += pb.len() as u64;
        a.rtp.send_to(&pa, relay_a_rtp).unwrap();
        let (got, from) = recv(&b.rtp);
        assert_eq!(got, pa, "A->B packet {i}");
        assert_eq!(
            from, relay_b_rtp,
            "B sees the relay's B-leg address, not A's"
        );
        b.rtp.send_to(&pb, relay_b_rtp).unwrap();
        let (got, from) = recv(&a.rtp);
        assert_eq!(got, pb, "B->A packet {i}");
        assert_eq!(from, relay_a_rtp);
    }
    for i in 0..10u8 {
        a.rtcp.send_to(&rtcp_rr(i), relay_a_rtcp).unwrap();
        assert_eq!(recv(&b.rtcp), (rtcp_rr(i), relay_b_rtcp));
        b.rtcp.send_to(&rtcp_rr(100 + i), relay_b_rtcp).unwrap();
        assert_eq!(recv(&a.rtcp), (rtcp_rr(100 + i), relay_a_rtcp));
    }

    let stats = call.rt.block_on(call.relay.stats()).unwrap();
    let (sa, sb) = (stats.leg(Leg::A), stats.leg(Leg::B));
    assert_eq!(sa.rx.rtp_packets, 200);
    assert_eq!(sa.rx.rtp_bytes, a_bytes);
    assert_eq!(sb.rx.rtp_packets, 200);
    assert_eq!(sb.rx.rtp_bytes, b_bytes);
    assert_eq!(sa.rx.rtcp_packets, 10);
    assert_eq!(sa.rx.rtcp_bytes, 80);
    assert_eq!(sb.rx.rtcp_packets, 10);
    // What came in on one leg went out on the other.
    assert_eq!(sb.tx, sa.rx);
    assert_eq!(sa.tx, sb.rx);
    assert_eq!(sa.dropped, Default::default());
    assert_eq!(sb.dropped, Default::default());
    assert!(sa.rtp_latched && sb.rtp_latched && sa.rtcp_latched && sb.rtcp_latched);
}

#[test]
fn arbitrary_payloads_pass_unchanged_telephone_event_and_t38() {
    let (a, b) = (Phone::new(), Phone::new());
    let call = start(no_timeout(false), &a, &b);
    let to_relay = call.relay.local_rtp(Leg::A);
    let mut payloads: Vec<Vec<u8>> = vec![
        // RFC 4733 telephone-event: RTP PT 101, event 5, end bit, volume 10, duration 800.
        vec![
            0x80, 0xe5, 0, 1, 0, 0, 0, 160, 0, 0, 0, 1, 5, 0x8a, 0x03, 0x20,
        ],
        // T.38 UDPTL: seq number, IFP with a t30 indicator, no redundancy.
        vec![0x00, 0x07, 0x02, 0x00, 0x02, 0x00],
        // Not RTP at all, including a NUL-only and a one-byte datagram.
        vec![0; 40],
        vec![0xff],
        Vec::new(),
        // A datagram of the largest size relayed.
        (0..MAX_DATAGRAM as u32)
            .map(|i| (i * 31 % 251) as u8)
            .collect(),
    ];
    // Every byte value in every position of a short packet.
    payloads.extend((0..=255u8).map(|v| vec![v, v.wrapping_add(1), !v, v ^ 0x5a]));
    for p in &payloads {
        a.rtp.send_to(p, to_relay).unwrap();
        let (got, _) = recv(&b.rtp);
        assert_eq!(&got, p);
    }
    // Oversize: dropped and counted, never truncated.
    a.rtp.send_to(&[7u8; MAX_DATAGRAM + 1], to_relay).unwrap();
    silent(&b.rtp, Duration::from_millis(200));
    let stats = call.rt.block_on(call.relay.stats()).unwrap();
    assert_eq!(stats.a.dropped.oversize, 1);
}

#[test]
fn latches_a_natted_phone_and_returns_traffic_to_its_real_port() {
    // A's SDP says `sdp_a` but A really sends from `nat_a` (NAT).
    let sdp_a = Phone::new();
    let nat_a = Phone::new();
    let b = Phone::new();
    let call = start(no_timeout(false), &sdp_a, &b);
    let relay_a = call.relay.local_rtp(Leg::A);
    let relay_b = call.relay.local_rtp(Leg::B);

    // Before A sends, B's media goes to A's SDP address.
    b.rtp.send_to(b"early", relay_b).unwrap();
    assert_eq!(recv(&sdp_a.rtp).0, b"early");

    nat_a
        .rtp
        .send_to(b"hello from behind NAT", relay_a)
        .unwrap();
    assert_eq!(recv(&b.rtp).0, b"hello from behind NAT");
    for i in 0..20u16 {
        let p = rtp_packet(i, 160);
        b.rtp.send_to(&p, relay_b).unwrap();
        let (got, from) = recv(&nat_a.rtp);
        assert_eq!(got, p);
        assert_eq!(from, relay_a);
    }
    silent(&sdp_a.rtp, Duration::from_millis(100));
    let stats = call.rt.block_on(call.relay.stats()).unwrap();
    assert_eq!(stats.a.rtp_peer, Some(nat_a.rtp_addr()));
    assert!(stats.a.rtp_latched);
    // RTCP latches separately: not yet.
    assert!(!stats.a.rtcp_latched);

    // Non-strict: another source while A is active is not relayed.
    let stray = Phone::new();
    stray.rtp.send_to(b"injected", relay_a).unwrap();
    silent(&b.rtp, Duration::from_millis(100));
    let stats = call.rt.block_on(call.relay.stats()).unwrap();
    assert_eq!(stats.a.dropped.foreign_source, 1);
}

#[test]
fn strict_mode_drops_stray_sources() {
    let (a, b) = (Phone::new(), Phone::new());
    let call = start(no_timeout(true), &a, &b);
    let relay_a = call.relay.local_rtp(Leg::A);

    // Another host (127.0.0.2 is loopback on Linux too) before A latched.
    let other_host = Phone::on(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)));
    other_host.rtp.send_to(b"other host", relay_a).unwrap();
    a.rtp.send_to(b"real", relay_a).unwrap();
    assert_eq!(recv(&b.rtp).0, b"real");
    // Same host, other port, after A latched.
    let stray = Phone::new();
    stray.rtp.send_to(b"stray", relay_a).unwrap();
    a.rtp.send_to(b"real again", relay_a).unwrap();
    assert_eq!(recv(&b.rtp).0, b"real again");
    silent(&b.rtp, Duration::from_millis(100));

    let stats = call.rt.block_on(call.relay.stats()).unwrap();
    assert_eq!(stats.a.dropped.foreign_source, 2);
    assert_eq!(stats.a.rx.rtp_packets, 2);
    assert_eq!(stats.a.rtp_peer, Some(a.rtp_addr()));
}

#[test]
fn update_peer_moves_traffic_hold_and_resume() {
    let (a, b) = (Phone::new(), Phone::new());
    let call = start(no_timeout(false), &a, &b);
    let relay_a = call.relay.local_rtp(Leg::A);

    a.rtp.send_to(b"one", relay_a).unwrap();
    assert_eq!(recv(&b.rtp).0, b"one");

    // Hold in the RFC 2543 style (c=0.0.0.0): B has no address.
    call.relay.update_peer(Leg::B, None, None).unwrap();
    // A stats round trip orders the update before the next packet.
    call.rt.block_on(call.relay.stats()).unwrap();
    a.rtp.send_to(b"held", relay_a).unwrap();
    silent(&b.rtp, Duration::from_millis(100));

    // Resume on another port (a re-INVITE with a new SDP).
    let b2 = Phone::new();
    call.relay
        .update_peer(Leg::B, Some(b2.rtp_addr()), Some(b2.rtcp_addr()))
        .unwrap();
    call.rt.block_on(call.relay.stats()).unwrap();
    for i in 0..10u16 {
        let p = rtp_packet(i, 160);
        a.rtp.send_to(&p, relay_a).unwrap();
        assert_eq!(recv(&b2.rtp).0, p);
    }
    a.rtcp
        .send_to(&rtcp_rr(1), call.relay.local_rtcp(Leg::A))
        .unwrap();
    assert_eq!(recv(&b2.rtcp).0, rtcp_rr(1));
    silent(&b.rtp, Duration::from_millis(100));

    let stats = call.rt.block_on(call.relay.stats()).unwrap();
    assert_eq!(stats.a.dropped.no_peer, 1);
    assert_eq!(stats.b.tx.rtp_packets, 11);
    assert_eq!(stats.b.rtp_peer, Some(b2.rtp_addr()));
}

#[test]
fn inactivity_event_fires_once_per_silence() {
    let (a, b) = (Phone::new(), Phone::new());
    let mut call = start(
        RelayConfig {
            inactivity_timeout: Some(Duration::from_millis(300)),
            ..RelayConfig::default()
        },
        &a,
        &b,
    );
    let relay_a = call.relay.local_rtp(Leg::A);
    let started = Instant::now();
    // Media for 500 ms: no event.
    while started.elapsed() < Duration::from_millis(500) {
        a.rtp.send_to(&rtp_packet(1, 160), relay_a).unwrap();
        recv(&b.rtp);
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(call.events.try_recv().is_none());
    let stopped = Instant::now();
    let ev = call
        .rt
        .block_on(async { tokio::time::timeout(WAIT, call.events.recv()).await })
        .unwrap()
        .unwrap();
    let waited = stopped.elapsed();
    let MediaEvent::Inactive { idle, rtcp_idle } = ev;
    assert!(idle >= Duration::from_millis(300), "{idle:?}");
    assert_eq!(rtcp_idle, None);
    assert!(
        waited >= Duration::from_millis(250) && waited < Duration::from_millis(1500),
        "{waited:?}"
    );
    // Only once per silence.
    std::thread::sleep(Duration::from_millis(700));
    assert!(call.events.try_recv().is_none());
    // Media resumes, then stops again: a second event.
    a.rtp.send_to(&rtp_packet(2, 160), relay_a).unwrap();
    recv(&b.rtp);
    let ev = call
        .rt
        .block_on(async { tokio::time::timeout(WAIT, call.events.recv()).await })
        .unwrap();
    assert!(matches!(ev, Some(MediaEvent::Inactive { .. })));
}

#[test]
fn stop_and_drop_release_the_ports() {
    let (a, b) = (Phone::new(), Phone::new());
    let call = start(no_timeout(false), &a, &b);
    let ports = [
        call.relay.local_rtp(Leg::A),
        call.relay.local_rtcp(Leg::A),
        call.relay.local_rtp(Leg::B),
        call.relay.local_rtcp(Leg::B),
    ];
    assert_eq!(call.alloc.available(), call.alloc.capacity() - 2);
    // Held while running.
    for p in ports {
        assert!(UdpSocket::bind(p).is_err(), "{p} should be in use");
    }
    call.rt.block_on(call.relay.stop()).unwrap();
    for p in ports {
        UdpSocket::bind(p).unwrap();
    }
    assert_eq!(call.alloc.available(), call.alloc.capacity());

    // Dropping the handle stops the task too (asynchronously).
    let call = start(no_timeout(false), &a, &b);
    let p = call.relay.local_rtp(Leg::A);
    let alloc = call.alloc.clone();
    drop(call.relay);
    let deadline = Instant::now() + WAIT;
    while UdpSocket::bind(p).is_err() {
        assert!(
            Instant::now() < deadline,
            "port {p} not released after drop"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    while alloc.available() != alloc.capacity() {
        assert!(Instant::now() < deadline, "pairs not returned after drop");
        std::thread::sleep(Duration::from_millis(10));
    }
    drop(call.rt);
}

/// Counts what it is shown, per leg: stands for the quality math.
#[derive(Debug, Clone, Default)]
struct Counting {
    rtp: [u64; 2],
    rtcp: [u64; 2],
    last_len: usize,
    rates: Vec<(u8, u32)>,
}

impl PacketObserver for Counting {
    fn on_rtp(&mut self, from: Leg, pkt: &[u8], _arrival: Instant) {
        self.rtp[from as usize] += 1;
        self.last_len = pkt.len();
    }
    fn on_rtcp(&mut self, from: Leg, _pkt: &[u8], _arrival: Instant) {
        self.rtcp[from as usize] += 1;
    }
    fn set_clock_rates(&mut self, rates: &[(u8, u32)]) {
        self.rates = rates.to_vec();
    }
}

#[test]
fn observer_sees_every_packet_and_muxed_rtcp() {
    let (a, b) = (Phone::new(), Phone::new());
    let rt = runtime();
    let alloc = allocator();
    let (tx, _events) = trunkd_media::media_events();
    let relay = {
        let _g = rt.enter();
        spawn_with_observer(
            no_timeout(false),
            setup(&alloc, Some(a.rtp_addr()), Some(a.rtcp_addr())),
            setup(&alloc, Some(b.rtp_addr()), Some(b.rtcp_addr())),
            Counting::default(),
            tx,
        )
        .unwrap()
    };
    for i in 0..5u16 {
        a.rtp
            .send_to(&rtp_packet(i, 160), relay.local_rtp(Leg::A))
            .unwrap();
        recv(&b.rtp);
    }
    // rtcp-mux: RTCP on the RTP socket is relayed on the RTP path but
    // counted and observed as RTCP.
    b.rtp.send_to(&rtcp_rr(9), relay.local_rtp(Leg::B)).unwrap();
    assert_eq!(recv(&a.rtp).0, rtcp_rr(9));
    b.rtcp
        .send_to(&rtcp_rr(8), relay.local_rtcp(Leg::B))
        .unwrap();
    assert_eq!(recv(&a.rtcp).0, rtcp_rr(8));

    let stats = rt.block_on(relay.stats()).unwrap();
    assert_eq!(stats.observer.rtp, [5, 0]);
    assert_eq!(stats.observer.rtcp, [0, 2]);
    assert_eq!(stats.observer.last_len, 172);
    assert_eq!(stats.b.rx.rtcp_packets, 2);
    assert_eq!(stats.b.rx.rtp_packets, 0);
    assert_eq!(stats.a.tx.rtcp_packets, 2);
    rt.block_on(relay.stop()).unwrap();
}

#[test]
fn spawn_outside_a_runtime_is_an_error_not_a_panic() {
    let alloc = allocator();
    let (tx, _rx) = trunkd_media::media_events();
    let r = spawn(
        RelayConfig::default(),
        setup(&alloc, None, None),
        setup(&alloc, None, None),
        tx,
    );
    assert!(matches!(r, Err(trunkd_media::RelayError::NoRuntime)));
    // The sockets were dropped with the error: the pairs are back.
    assert_eq!(alloc.available(), alloc.capacity());
}

#[test]
fn bursts_arrive_complete_and_in_order() {
    let (a, b) = (Phone::new(), Phone::new());
    let call = start(no_timeout(false), &a, &b);
    let relay_a = call.relay.local_rtp(Leg::A);
    // Latch first, then a burst the relay drains several datagrams at a time.
    a.rtp.send_to(&rtp_packet(0, 160), relay_a).unwrap();
    recv(&b.rtp);
    for round in 0..5u16 {
        for i in 0..50u16 {
            a.rtp
                .send_to(&rtp_packet(round * 100 + i, 160), relay_a)
                .unwrap();
        }
        for i in 0..50u16 {
            assert_eq!(recv(&b.rtp).0, rtp_packet(round * 100 + i, 160));
        }
    }
    let stats = call.rt.block_on(call.relay.stats()).unwrap();
    assert_eq!(stats.a.rx.rtp_packets, 251);
    assert_eq!(stats.b.tx.rtp_packets, 251);
}

/// RTCP sockets are asked only when they signal (the relay's quiet waker):
/// a burst beyond one poll's share (64 reads of up to two datagrams) must
/// still come through whole, with RTP flowing beside it, and RTCP must keep
/// flowing after it.
#[test]
fn an_rtcp_burst_beside_rtp_arrives_complete_and_in_order() {
    let (a, b) = (Phone::new(), Phone::new());
    let call = start(no_timeout(false), &a, &b);
    let (relay_a_rtp, relay_a_rtcp) = (call.relay.local_rtp(Leg::A), call.relay.local_rtcp(Leg::A));
    a.rtp.send_to(&rtp_packet(0, 160), relay_a_rtp).unwrap();
    recv(&b.rtp);
    for i in 0..150u8 {
        a.rtcp.send_to(&rtcp_rr(i), relay_a_rtcp).unwrap();
        if i % 10 == 0 {
            a.rtp
                .send_to(&rtp_packet(u16::from(i) + 1, 160), relay_a_rtp)
                .unwrap();
        }
    }
    for i in 0..150u8 {
        assert_eq!(recv(&b.rtcp).0, rtcp_rr(i), "RTCP {i}");
    }
    for i in 0..15u16 {
        assert_eq!(recv(&b.rtp).0, rtp_packet(i * 10 + 1, 160), "RTP {i}");
    }
    // Quiet again, then one more report: the quiet waker is still armed.
    silent(&b.rtcp, Duration::from_millis(50));
    a.rtcp.send_to(&rtcp_rr(200), relay_a_rtcp).unwrap();
    assert_eq!(recv(&b.rtcp).0, rtcp_rr(200));
    let stats = call.rt.block_on(call.relay.stats()).unwrap();
    assert_eq!(stats.a.rx.rtcp_packets, 151);
    assert_eq!(stats.b.tx.rtcp_packets, 151);
    assert_eq!(stats.a.rx.rtp_packets, 16);
}

#[test]
fn dual_stack_call_ipv4_leg_to_ipv6_leg() {
    let v6 = IpAddr::V6(std::net::Ipv6Addr::LOCALHOST);
    if UdpSocket::bind((v6, 0)).is_err() {
        // No IPv6 loopback here: nothing to test.
        return;
    }
    let a = Phone::new();
    let b = Phone::on(v6);
    let rt = runtime();
    let (tx, _events) = trunkd_media::media_events();
    let leg = |ip: IpAddr, peer: &Phone| LegSetup {
        sockets: LegSockets {
            rtp: MediaSocket::bind(SocketAddr::new(ip, 0)).unwrap(),
            rtcp: MediaSocket::bind(SocketAddr::new(ip, 0)).unwrap(),
            ports: None,
        },
        peer_rtp: Some(peer.rtp_addr()),
        peer_rtcp: Some(peer.rtcp_addr()),
    };
    let relay = {
        let _g = rt.enter();
        spawn(no_timeout(false), leg(LO, &a), leg(v6, &b), tx).unwrap()
    };
    for i in 0..10u16 {
        let p = rtp_packet(i, 160);
        a.rtp.send_to(&p, relay.local_rtp(Leg::A)).unwrap();
        assert_eq!(recv(&b.rtp), (p.clone(), relay.local_rtp(Leg::B)));
        b.rtp.send_to(&p, relay.local_rtp(Leg::B)).unwrap();
        assert_eq!(recv(&a.rtp), (p, relay.local_rtp(Leg::A)));
    }
    let stats = rt.block_on(relay.stats()).unwrap();
    // The IPv6 source was read back exactly (latched to the phone's address).
    assert_eq!(stats.b.rtp_peer, Some(b.rtp_addr()));
    assert!(stats.b.rtp_latched);
}

mod srtp {
    use super::*;
    use trunkd_media::sdes::KeyMaterial;
    use trunkd_media::{CryptoSuite, LegCrypto, LegKeys};

    fn keys(suite: CryptoSuite) -> LegKeys {
        LegKeys {
            suite,
            peer: KeyMaterial::generate(suite).unwrap(),
            ours: KeyMaterial::generate(suite).unwrap(),
        }
    }

    /// The phone's side of an SRTP leg: the mirror of trunkd's keys.
    fn phone_side(k: &LegKeys) -> LegCrypto {
        LegCrypto::new(&LegKeys {
            suite: k.suite,
            peer: k.ours.clone(),
            ours: k.peer.clone(),
        })
        .unwrap()
    }

    fn sr(ssrc: u8) -> Vec<u8> {
        let mut p = vec![0x80, 200, 0, 6, 0, 0, 0, ssrc];
        p.extend_from_slice(&[7u8; 20]);
        p
    }

    fn start_observed(a: &Phone, b: &Phone) -> (Runtime, RelayHandle<Counting>, PortAllocator) {
        let rt = runtime();
        let alloc = allocator();
        let (tx, _events) = trunkd_media::media_events();
        let relay = {
            let _g = rt.enter();
            spawn_with_observer(
                no_timeout(false),
                setup(&alloc, Some(a.rtp_addr()), Some(a.rtcp_addr())),
                setup(&alloc, Some(b.rtp_addr()), Some(b.rtcp_addr())),
                Counting::default(),
                tx,
            )
            .unwrap()
        };
        (rt, relay, alloc)
    }

    #[test]
    fn srtp_leg_to_plain_leg_interworks_both_ways_and_measures_plain_packets() {
        let (a, b) = (Phone::new(), Phone::new());
        let (rt, relay, _alloc) = start_observed(&a, &b);
        let ka = keys(CryptoSuite::Aes128CmHmacSha1_80);
        relay
            .set_crypto(Leg::A, Some(LegCrypto::new(&ka).unwrap()))
            .unwrap();
        let mut phone_a = phone_side(&ka);

        for i in 0..20u16 {
            let plain = rtp_packet(i, 160);
            let wire = phone_a.protect_rtp(&plain).unwrap();
            a.rtp.send_to(&wire, relay.local_rtp(Leg::A)).unwrap();
            assert_eq!(
                recv(&b.rtp).0,
                plain,
                "B (plain RTP) gets the decrypted packet {i}"
            );

            let back = rtp_packet(1000 + i, 160);
            b.rtp.send_to(&back, relay.local_rtp(Leg::B)).unwrap();
            let (got, _) = recv(&a.rtp);
            assert_ne!(got, back, "A's leg is encrypted");
            assert_eq!(phone_a.unprotect_rtp(&got).unwrap(), back);
        }
        let wire = phone_a.protect_rtcp(&sr(1)).unwrap();
        a.rtcp.send_to(&wire, relay.local_rtcp(Leg::A)).unwrap();
        assert_eq!(recv(&b.rtcp).0, sr(1), "SRTCP decrypted for the plain leg");

        let stats = rt.block_on(relay.stats()).unwrap();
        assert_eq!(stats.observer.rtp, [20, 20]);
        assert_eq!(stats.observer.last_len, 172, "the observer sees plain RTP");
        assert_eq!(stats.a.srtp, Some(CryptoSuite::Aes128CmHmacSha1_80));
        assert_eq!(stats.b.srtp, None);
        assert_eq!(stats.a.rx.rtp_packets, 20);
        assert_eq!(stats.a.rx.rtp_bytes, 20 * 182, "wire bytes, tag included");
        assert_eq!(stats.a.dropped.srtp, 0);
        rt.block_on(relay.stop()).unwrap();
    }

    #[test]
    fn each_stream_has_its_own_srtp_context() {
        let (a, b) = (Phone::new(), Phone::new());
        let (av, bv) = (Phone::new(), Phone::new());
        let call = start_counting(&a, &b, no_timeout(false));
        let video = add_video(&call, &av, &bv);
        let suite = CryptoSuite::Aes128CmHmacSha1_80;
        let (k_audio, k_video) = (keys(suite), keys(suite));
        call.relay
            .set_crypto(Leg::A, Some(LegCrypto::new(&k_audio).unwrap()))
            .unwrap();
        call.relay
            .set_stream_crypto(Leg::A, 1, Some(LegCrypto::new(&k_video).unwrap()))
            .unwrap();
        let (mut pa, mut pv) = (phone_side(&k_audio), phone_side(&k_video));
        for i in 0..5u16 {
            let audio = rtp_packet(i, 160);
            let vid = rtp_with(96, i, 0, 0x71de, 900);
            a.rtp
                .send_to(
                    &pa.protect_rtp(&audio).unwrap(),
                    call.relay.local_rtp(Leg::A),
                )
                .unwrap();
            av.rtp
                .send_to(&pv.protect_rtp(&vid).unwrap(), video.rtp(Leg::A))
                .unwrap();
            assert_eq!(recv(&b.rtp).0, audio);
            assert_eq!(recv(&bv.rtp).0, vid);
            // And back, each encrypted with its own stream's key.
            bv.rtp.send_to(&vid, video.rtp(Leg::B)).unwrap();
            assert_eq!(pv.unprotect_rtp(&recv(&av.rtp).0).unwrap(), vid);
        }
        // Video encrypted with the audio key does not authenticate.
        let wrong = pa.protect_rtp(&rtp_with(96, 9, 0, 0x71de, 900)).unwrap();
        av.rtp.send_to(&wrong, video.rtp(Leg::A)).unwrap();
        silent(&bv.rtp, Duration::from_millis(150));
        let stats = call.rt.block_on(call.relay.stats()).unwrap();
        let s1 = stats.stream(1).unwrap();
        assert_eq!(s1.a.srtp, Some(suite));
        assert_eq!(s1.a.dropped.srtp, 1);
        assert_eq!(s1.a.rx.rtp_packets, 5);
        assert_eq!(stats.stream(0).unwrap().a.dropped.srtp, 0);
    }

    #[test]
    fn both_legs_srtp_with_their_own_keys() {
        let (a, b) = (Phone::new(), Phone::new());
        let (rt, relay, _alloc) = start_observed(&a, &b);
        let ka = keys(CryptoSuite::AeadAes256Gcm);
        let kb = keys(CryptoSuite::Aes128CmHmacSha1_32);
        relay
            .set_crypto(Leg::A, Some(LegCrypto::new(&ka).unwrap()))
            .unwrap();
        relay
            .set_crypto(Leg::B, Some(LegCrypto::new(&kb).unwrap()))
            .unwrap();
        let (mut pa, mut pb) = (phone_side(&ka), phone_side(&kb));
        for i in 0..10u16 {
            let plain = rtp_packet(i, 160);
            let wire = pa.protect_rtp(&plain).unwrap();
            a.rtp.send_to(&wire, relay.local_rtp(Leg::A)).unwrap();
            let (got, _) = recv(&b.rtp);
            assert_ne!(got, wire, "re-encrypted with B's own key, never forwarded");
            assert_eq!(pb.unprotect_rtp(&got).unwrap(), plain);
        }
        rt.block_on(relay.stop()).unwrap();
    }

    #[test]
    fn forged_replayed_and_plain_packets_on_an_srtp_leg_are_dropped_and_never_latch() {
        let (a, b, intruder) = (Phone::new(), Phone::new(), Phone::new());
        let (rt, relay, _alloc) = start_observed(&a, &b);
        let ka = keys(CryptoSuite::Aes128CmHmacSha1_80);
        relay
            .set_crypto(Leg::A, Some(LegCrypto::new(&ka).unwrap()))
            .unwrap();
        let mut pa = phone_side(&ka);

        // Before A's first packet, an intruder sends plain RTP: not latched.
        intruder
            .rtp
            .send_to(&rtp_packet(1, 160), relay.local_rtp(Leg::A))
            .unwrap();
        silent(&b.rtp, Duration::from_millis(200));
        let good = pa.protect_rtp(&rtp_packet(1, 160)).unwrap();
        a.rtp.send_to(&good, relay.local_rtp(Leg::A)).unwrap();
        recv(&b.rtp);
        // A replay of A's packet and a forged one.
        a.rtp.send_to(&good, relay.local_rtp(Leg::A)).unwrap();
        let mut forged = pa.protect_rtp(&rtp_packet(2, 160)).unwrap().to_vec();
        forged[30] ^= 0xff;
        a.rtp.send_to(&forged, relay.local_rtp(Leg::A)).unwrap();
        silent(&b.rtp, Duration::from_millis(200));

        let stats = rt.block_on(relay.stats()).unwrap();
        assert_eq!(stats.a.dropped.srtp, 3);
        assert_eq!(stats.a.rx.rtp_packets, 1);
        assert_eq!(
            stats.a.rtp_peer,
            Some(a.rtp_addr()),
            "the intruder never latched"
        );
        rt.block_on(relay.stop()).unwrap();
    }
}

/// A packet with the given header fields and `n` bytes of payload.
fn rtp_with(pt: u8, seq: u16, ts: u32, ssrc: u32, n: usize) -> Vec<u8> {
    let mut p = rtp_packet(seq, n);
    p[1] = pt;
    p[4..8].copy_from_slice(&ts.to_be_bytes());
    p[8..12].copy_from_slice(&ssrc.to_be_bytes());
    p
}

fn header(p: &[u8]) -> (u16, u32, u32) {
    (
        u16::from_be_bytes([p[2], p[3]]),
        u32::from_be_bytes([p[4], p[5], p[6], p[7]]),
        u32::from_be_bytes([p[8], p[9], p[10], p[11]]),
    )
}

fn start_counting(a: &Phone, b: &Phone, config: RelayConfig) -> Call<Counting> {
    let rt = runtime();
    let alloc = allocator();
    let (tx, events) = trunkd_media::media_events();
    let relay = {
        let _g = rt.enter();
        spawn_with_observer(
            config,
            setup(&alloc, Some(a.rtp_addr()), Some(a.rtcp_addr())),
            setup(&alloc, Some(b.rtp_addr()), Some(b.rtcp_addr())),
            Counting::default(),
            tx,
        )
        .unwrap()
    };
    Call {
        rt,
        relay,
        events,
        alloc,
    }
}

/// Adds stream 1 between the two video phones.
fn add_video(call: &Call<Counting>, a: &Phone, b: &Phone) -> trunkd_media::LocalAddrs {
    call.relay
        .add_stream(
            1,
            setup(&call.alloc, Some(a.rtp_addr()), Some(a.rtcp_addr())),
            setup(&call.alloc, Some(b.rtp_addr()), Some(b.rtcp_addr())),
        )
        .unwrap()
}

mod streams {
    use super::*;
    use trunkd_media::{RelayError, MAX_STREAMS};

    #[test]
    fn audio_and_video_are_relayed_both_ways_each_on_its_own_ports() {
        let (a, b) = (Phone::new(), Phone::new());
        let (av, bv) = (Phone::new(), Phone::new());
        let call = start_counting(&a, &b, no_timeout(false));
        let video = add_video(&call, &av, &bv);
        let (ra, rb) = (call.relay.local_rtp(Leg::A), call.relay.local_rtp(Leg::B));
        assert_ne!(video.rtp(Leg::A), ra);
        assert_ne!(video.rtp(Leg::B), rb);
        assert_eq!(video.rtcp(Leg::A).port(), video.rtp(Leg::A).port() + 1);

        let (mut audio_bytes, mut video_bytes) = (0u64, 0u64);
        for i in 0..50u16 {
            let audio = rtp_with(0, i, u32::from(i) * 160, 0xa0d1, 160);
            let vid = rtp_with(96, i, u32::from(i) * 3000, 0x71de, 900 + usize::from(i));
            audio_bytes += audio.len() as u64;
            video_bytes += vid.len() as u64;
            a.rtp.send_to(&audio, ra).unwrap();
            av.rtp.send_to(&vid, video.rtp(Leg::A)).unwrap();
            assert_eq!(recv(&b.rtp), (audio.clone(), rb), "audio A->B {i}");
            assert_eq!(
                recv(&bv.rtp),
                (vid.clone(), video.rtp(Leg::B)),
                "video A->B {i}"
            );
            b.rtp.send_to(&audio, rb).unwrap();
            bv.rtp.send_to(&vid, video.rtp(Leg::B)).unwrap();
            assert_eq!(recv(&a.rtp), (audio, ra), "audio B->A {i}");
            assert_eq!(recv(&av.rtp), (vid, video.rtp(Leg::A)), "video B->A {i}");
        }
        bv.rtcp.send_to(&rtcp_rr(3), video.rtcp(Leg::B)).unwrap();
        assert_eq!(recv(&av.rtcp), (rtcp_rr(3), video.rtcp(Leg::A)));
        // Nothing crossed between the streams.
        silent(&b.rtp, Duration::from_millis(100));
        silent(&av.rtp, Duration::from_millis(10));

        let stats = call.rt.block_on(call.relay.stats()).unwrap();
        let s0 = stats.stream(0).unwrap();
        let s1 = stats.stream(1).unwrap();
        assert_eq!(stats.streams.len(), 2);
        assert_eq!(s0.a.rx.rtp_packets, 50);
        assert_eq!(s0.a.rx.rtp_bytes, audio_bytes);
        assert_eq!(s0.b.tx, s0.a.rx);
        assert_eq!(s1.a.rx.rtp_packets, 50);
        assert_eq!(s1.a.rx.rtp_bytes, video_bytes);
        assert_eq!(s1.b.rx.rtcp_packets, 1);
        assert_eq!(s1.a.tx, s1.b.rx);
        // The call's totals are the streams' sums.
        assert_eq!(stats.a.rx.rtp_packets, 100);
        assert_eq!(stats.a.rx.rtp_bytes, audio_bytes + video_bytes);
        assert_eq!(stats.b.tx.rtp_bytes, audio_bytes + video_bytes);
        // Quality is measured on stream 0 only.
        assert_eq!(stats.observer.rtp, [50, 50]);
        assert_eq!(stats.observer.rtcp, [0, 0]);
        call.rt.block_on(call.relay.stop()).unwrap();
        assert_eq!(call.alloc.available(), call.alloc.capacity());
    }

    #[test]
    fn streams_are_refused_twice_and_beyond_the_cap_and_their_ports_return() {
        let (a, b) = (Phone::new(), Phone::new());
        let call = start_counting(&a, &b, no_timeout(false));
        let twice = call.relay.add_stream(
            0,
            setup(&call.alloc, None, None),
            setup(&call.alloc, None, None),
        );
        assert!(
            matches!(twice, Err(RelayError::StreamExists(0))),
            "{twice:?}"
        );
        let beyond = call.relay.add_stream(
            MAX_STREAMS,
            setup(&call.alloc, None, None),
            setup(&call.alloc, None, None),
        );
        assert!(matches!(beyond, Err(RelayError::TooManyStreams(4))));
        // The refused streams' ports are back already; stream 0's are out.
        assert_eq!(call.alloc.capacity() - call.alloc.available(), 2);
        for i in 1..MAX_STREAMS {
            call.relay
                .add_stream(
                    i,
                    setup(&call.alloc, None, None),
                    setup(&call.alloc, None, None),
                )
                .unwrap();
        }
        assert_eq!(
            call.alloc.capacity() - call.alloc.available(),
            2 * MAX_STREAMS
        );
        call.rt.block_on(call.relay.stop()).unwrap();
        assert_eq!(call.alloc.available(), call.alloc.capacity());
    }

    #[test]
    fn a_stream_without_a_peer_forwards_nothing() {
        // A stream whose peer on B rejected it (no SDP address): what A
        // sends on it goes nowhere and is counted.
        let (a, b) = (Phone::new(), Phone::new());
        let call = start_counting(&a, &b, no_timeout(false));
        let (av, bv) = (Phone::new(), Phone::new());
        let video = call
            .relay
            .add_stream(
                1,
                setup(&call.alloc, Some(av.rtp_addr()), Some(av.rtcp_addr())),
                setup(&call.alloc, None, None),
            )
            .unwrap();
        for i in 0..3 {
            av.rtp
                .send_to(&rtp_packet(i, 100), video.rtp(Leg::A))
                .unwrap();
        }
        silent(&bv.rtp, Duration::from_millis(150));
        let stats = call.rt.block_on(call.relay.stats()).unwrap();
        assert_eq!(stats.stream(1).unwrap().a.dropped.no_peer, 3);
        assert_eq!(stats.stream(1).unwrap().b.tx.rtp_packets, 0);
    }

    #[test]
    fn video_alone_keeps_the_call_active() {
        let (a, b) = (Phone::new(), Phone::new());
        let (av, bv) = (Phone::new(), Phone::new());
        let config = RelayConfig {
            inactivity_timeout: Some(Duration::from_millis(300)),
            ..no_timeout(false)
        };
        let mut call = start_counting(&a, &b, config);
        let video = add_video(&call, &av, &bv);
        let t0 = Instant::now();
        let mut i = 0;
        while t0.elapsed() < Duration::from_millis(900) {
            av.rtp
                .send_to(&rtp_packet(i, 500), video.rtp(Leg::A))
                .unwrap();
            recv(&bv.rtp);
            i += 1;
            std::thread::sleep(Duration::from_millis(40));
        }
        assert!(
            call.events.try_recv().is_none(),
            "no inactivity while video flows"
        );
        // Video stops too: inactive within the timeout (plus slack).
        let ev = call
            .rt
            .block_on(async { tokio::time::timeout(WAIT, call.events.recv()).await })
            .unwrap()
            .unwrap();
        let MediaEvent::Inactive { idle, .. } = ev;
        assert!(idle >= Duration::from_millis(300), "{idle:?}");
    }

    #[test]
    fn clock_rates_reach_the_observer_of_the_quality_stream_only() {
        let (a, b) = (Phone::new(), Phone::new());
        let (av, bv) = (Phone::new(), Phone::new());
        let call = start_counting(&a, &b, no_timeout(false));
        let video = add_video(&call, &av, &bv);
        call.relay.set_clock_rates(1, vec![(96, 90000)]).unwrap();
        call.relay
            .set_clock_rates(0, vec![(97, 16000), (101, 16000)])
            .unwrap();
        let stats = call.rt.block_on(call.relay.stats()).unwrap();
        assert_eq!(stats.observer.rates, vec![(97, 16000), (101, 16000)]);
        // Moving quality to stream 1 (say the audio is the second m-line):
        // the observer sees stream 1's packets, not stream 0's.
        call.relay.set_quality_stream(1).unwrap();
        a.rtp
            .send_to(&rtp_packet(1, 10), call.relay.local_rtp(Leg::A))
            .unwrap();
        recv(&b.rtp);
        av.rtp
            .send_to(&rtp_packet(1, 10), video.rtp(Leg::A))
            .unwrap();
        recv(&bv.rtp);
        av.rtp
            .send_to(&rtp_packet(2, 10), video.rtp(Leg::A))
            .unwrap();
        recv(&bv.rtp);
        let stats = call.rt.block_on(call.relay.stats()).unwrap();
        assert_eq!(stats.observer.rtp, [2, 0]);
    }
}

mod taps {
    use super::*;

    #[test]
    fn a_tap_gets_every_packet_of_its_leg_while_it_keeps_up() {
        let (a, b) = (Phone::new(), Phone::new());
        let call = start(no_timeout(false), &a, &b);
        let mut tap = call.relay.tap(Some(Leg::A), None, 64).unwrap();
        let before = Instant::now();
        for i in 0..40u16 {
            let p = rtp_packet(i, 160);
            a.rtp.send_to(&p, call.relay.local_rtp(Leg::A)).unwrap();
            assert_eq!(recv(&b.rtp).0, p);
            // B's packets are not A's: not tapped.
            b.rtp
                .send_to(&rtp_packet(500 + i, 20), call.relay.local_rtp(Leg::B))
                .unwrap();
            recv(&a.rtp);
            // The tap got it before it was forwarded.
            let got = tap.try_recv().unwrap();
            assert_eq!(got.leg, Leg::A);
            assert_eq!(got.stream, 0);
            assert!(!got.rtcp);
            assert_eq!(&got.data[..], &p[..]);
            assert!(got.arrival >= before && got.arrival <= Instant::now());
        }
        a.rtcp
            .send_to(&rtcp_rr(1), call.relay.local_rtcp(Leg::A))
            .unwrap();
        recv(&b.rtcp);
        let got = tap.try_recv().unwrap();
        assert!(got.rtcp);
        assert_eq!(&got.data[..], &rtcp_rr(1)[..]);
        assert!(tap.try_recv().is_err(), "nothing from B");
        let stats = call.rt.block_on(call.relay.stats()).unwrap();
        assert_eq!(stats.taps.delivered, 41);
        assert_eq!(stats.taps.dropped, 0);
        assert_eq!(stats.taps.open, 1);
    }

    #[test]
    fn a_consumer_that_does_not_read_loses_packets_and_never_delays_forwarding() {
        let (a, b) = (Phone::new(), Phone::new());
        let call = start(no_timeout(false), &a, &b);
        let mut stuck = call.relay.tap(None, Some(0), 4).unwrap();
        let t0 = Instant::now();
        for i in 0..100u16 {
            let p = rtp_packet(i, 160);
            a.rtp.send_to(&p, call.relay.local_rtp(Leg::A)).unwrap();
            assert_eq!(recv(&b.rtp).0, p, "forwarded {i}");
        }
        // 100 round trips through loopback: far below one receive timeout
        // each, i.e. forwarding never waited for the tap.
        assert!(t0.elapsed() < WAIT, "{:?}", t0.elapsed());
        let stats = call.rt.block_on(call.relay.stats()).unwrap();
        assert_eq!(stats.taps.delivered, 4);
        assert_eq!(stats.taps.dropped, 96);
        assert_eq!(stats.a.rx.rtp_packets, 100);
        assert_eq!(stats.b.tx.rtp_packets, 100);
        // The first four are there, in order.
        for i in 0..4u16 {
            assert_eq!(&stuck.try_recv().unwrap().data[..], &rtp_packet(i, 160)[..]);
        }
        // A gone consumer: its tap closes, forwarding goes on.
        drop(stuck);
        a.rtp
            .send_to(&rtp_packet(100, 160), call.relay.local_rtp(Leg::A))
            .unwrap();
        recv(&b.rtp);
        let stats = call.rt.block_on(call.relay.stats()).unwrap();
        assert_eq!(stats.taps.open, 0);
        assert_eq!(stats.taps.dropped, 96);
    }
}

mod inject {
    use super::*;
    use trunkd_media::InjectOptions;

    const PEER_SSRC: u32 = 0x1234_5678;

    /// B's phone sends `n` packets from `seq0` to A's; returns A's last.
    fn b_talks(call: &Call, a: &Phone, b: &Phone, seq0: u16, n: u16) -> Vec<u8> {
        let mut last = Vec::new();
        for i in seq0..seq0 + n {
            let p = rtp_with(0, i, u32::from(i) * 160, PEER_SSRC, 160);
            b.rtp.send_to(&p, call.relay.local_rtp(Leg::B)).unwrap();
            last = recv(&a.rtp).0;
            assert_eq!(last, p);
        }
        last
    }

    #[test]
    fn injected_rtp_continues_the_ssrc_sequence_and_timestamp_the_peer_got() {
        let (a, b) = (Phone::new(), Phone::new());
        let call = start(no_timeout(false), &a, &b);
        b_talks(&call, &a, &b, 1000, 9);
        // Before B's last packet goes out, so before the relay forwards it
        // (the instant the relay continues the timestamp from): taken after
        // A got it, this bound was later than the relay's own by the hop's
        // latency, and a loaded machine overstepped it by a tick.
        let last_sent = Instant::now();
        b_talks(&call, &a, &b, 1009, 1);
        std::thread::sleep(Duration::from_millis(100));
        call.relay
            .inject_start(Leg::A, 0, InjectOptions { suppress: true })
            .unwrap();
        let mut first_ts = 0;
        for k in 0..5u16 {
            // A prompt with its own numbering.
            let p = rtp_with(0, 7 + k, 50_000 + u32::from(k) * 160, 0xaaaa, 160);
            call.relay.inject(Leg::A, 0, p.clone()).unwrap();
            let (got, from) = recv(&a.rtp);
            assert_eq!(from, call.relay.local_rtp(Leg::A));
            let (seq, ts, ssrc) = header(&got);
            assert_eq!(ssrc, PEER_SSRC, "the SSRC A has been receiving");
            assert_eq!(seq, 1010 + k, "the sequence continues without a gap");
            if k == 0 {
                // The timestamp advanced by the pause at 8 kHz.
                let last_ts = 1009 * 160;
                let gap = ts - last_ts;
                // At least the 100 ms slept (800 ticks), at most the time
                // since just before B's last packet was sent.
                let min = 100 * 8;
                let max = last_sent.elapsed().as_micros() as u32 * 8 / 1000;
                assert!(gap >= min && gap <= max, "gap {gap} not in {min}..={max}");
                first_ts = ts;
            } else {
                assert_eq!(ts, first_ts + u32::from(k) * 160);
            }
            assert_eq!(&got[12..], &p[12..], "payload untouched");
            assert_eq!(got[1], p[1]);
        }
        // Meanwhile B's packets to A are replaced, not forwarded.
        for i in 0..3u16 {
            b.rtp
                .send_to(
                    &rtp_with(0, 1010 + i, 0, PEER_SSRC, 160),
                    call.relay.local_rtp(Leg::B),
                )
                .unwrap();
        }
        silent(&a.rtp, Duration::from_millis(150));
        let stats = call.rt.block_on(call.relay.stats()).unwrap();
        assert_eq!(stats.a.injected, 5);
        assert_eq!(stats.a.suppressed, 3);
        assert_eq!(stats.a.tx.rtp_packets, 15);
        // Stopped: B is heard again, renumbered to continue after the
        // injected packets (its own numbering went on while suppressed).
        call.relay.inject_stop(Leg::A, 0).unwrap();
        let mut resumed_ts = 0;
        for i in 0..3u16 {
            let p = rtp_with(0, 1013 + i, (1013 + u32::from(i)) * 160, PEER_SSRC, 160);
            b.rtp.send_to(&p, call.relay.local_rtp(Leg::B)).unwrap();
            let got = recv(&a.rtp).0;
            let (seq, ts, ssrc) = header(&got);
            assert_eq!((seq, ssrc), (1015 + i, PEER_SSRC));
            if i == 0 {
                assert!(ts > first_ts + 4 * 160, "after the injected ones");
                resumed_ts = ts;
            } else {
                assert_eq!(ts, resumed_ts + u32::from(i) * 160);
            }
            assert_eq!(&got[12..], &p[12..]);
        }
    }

    #[test]
    fn a_second_prompt_with_a_new_ssrc_continues_after_the_first() {
        let (a, b) = (Phone::new(), Phone::new());
        let call = start(no_timeout(false), &a, &b);
        b_talks(&call, &a, &b, 1, 3);
        for (ssrc, seq0) in [(0xaaaa_u32, 100u16), (0xbbbb, 9)] {
            for k in 0..3u16 {
                let p = rtp_with(0, seq0 + k, u32::from(k) * 160, ssrc, 40);
                call.relay.inject(Leg::A, 0, p).unwrap();
            }
        }
        let seqs: Vec<(u16, u32)> = (0..6)
            .map(|_| {
                let (s, _, ssrc) = header(&recv(&a.rtp).0);
                (s, ssrc)
            })
            .collect();
        assert_eq!(
            seqs,
            (4..10).map(|s| (s, PEER_SSRC)).collect::<Vec<_>>(),
            "one continuous sequence on A's SSRC"
        );
        let bad = call.relay.inject(Leg::A, 0, vec![0x80, 0, 1]);
        assert!(matches!(bad, Err(trunkd_media::RelayError::NotRtp)));
    }

    #[test]
    fn injection_under_srtp_is_encrypted_with_the_legs_context_and_continues() {
        use trunkd_media::sdes::KeyMaterial;
        use trunkd_media::{CryptoSuite, LegCrypto, LegKeys};
        let suite = CryptoSuite::Aes128CmHmacSha1_80;
        let k = LegKeys {
            suite,
            peer: KeyMaterial::generate(suite).unwrap(),
            ours: KeyMaterial::generate(suite).unwrap(),
        };
        let mut phone_a = LegCrypto::new(&LegKeys {
            suite,
            peer: k.ours.clone(),
            ours: k.peer.clone(),
        })
        .unwrap();
        let (a, b) = (Phone::new(), Phone::new());
        let call = start(no_timeout(false), &a, &b);
        call.relay
            .set_crypto(Leg::A, Some(LegCrypto::new(&k).unwrap()))
            .unwrap();
        // Near the 16-bit wrap, so the injected packets cross it: the
        // rollover counter must follow for A to decrypt them.
        for i in 65530..=65534u16 {
            let p = rtp_with(0, i, u32::from(i) * 160, PEER_SSRC, 160);
            b.rtp.send_to(&p, call.relay.local_rtp(Leg::B)).unwrap();
            assert_eq!(phone_a.unprotect_rtp(&recv(&a.rtp).0).unwrap(), p);
        }
        let mut tap = call.relay.tap(Some(Leg::B), None, 8).unwrap();
        for k in 0..4u16 {
            let p = rtp_with(0, k, u32::from(k) * 160, 0xaaaa, 160);
            call.relay.inject(Leg::A, 0, p.clone()).unwrap();
            let wire = recv(&a.rtp).0;
            let plain = phone_a.unprotect_rtp(&wire).expect("A decrypts it");
            let (seq, _, ssrc) = header(&plain);
            assert_eq!((seq, ssrc), (65535u16.wrapping_add(k), PEER_SSRC));
            assert_eq!(&plain[12..], &p[12..]);
        }
        // Injected packets are not B's: the tap on B saw nothing new.
        assert!(tap.try_recv().is_err());
        // B resumes with its own numbering; A gets it renumbered after the
        // injected packets and still decrypts it (same rollover counter).
        call.relay.inject_stop(Leg::A, 0).unwrap();
        for i in 0..3u16 {
            let p = rtp_with(0, 65535u16.wrapping_add(i), 0, PEER_SSRC, 160);
            b.rtp.send_to(&p, call.relay.local_rtp(Leg::B)).unwrap();
            let plain = phone_a
                .unprotect_rtp(&recv(&a.rtp).0)
                .expect("A decrypts B again");
            assert_eq!(header(&plain).0, 3 + i);
            assert_eq!(&plain[12..], &p[12..]);
        }
    }
}
