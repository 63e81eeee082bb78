//! trunkd as the far end of a leg, over real UDP sockets on 127.0.0.1: a
//! prompt played into a relayed leg continues the stream the phone was
//! receiving and silences the other side meanwhile; digits the phone sends
//! are reported once each.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::Duration;

use trunkd_media::endpoint::dtmf::{DtmfDigit, DtmfSendConfig, DtmfSender};
use trunkd_media::endpoint::g711::G711;
use trunkd_media::endpoint::leg::LegEndpoint;
use trunkd_media::endpoint::player::{Player, PlayerConfig};
use trunkd_media::endpoint::{parse_rtp, write_rtp_header, RtpContinuity};
use trunkd_media::{spawn, Leg, LegSetup, LegSockets, PortAllocator, RelayConfig};

const LO: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

fn phone() -> UdpSocket {
    let s = UdpSocket::bind((LO, 0)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    s
}

fn recv(sock: &UdpSocket) -> Vec<u8> {
    let mut buf = [0u8; 2000];
    let (n, _) = sock.recv_from(&mut buf).unwrap();
    buf[..n].to_vec()
}

fn rtp(ssrc: u32, seq: u16, ts: u32, pt: u8, payload: &[u8]) -> Vec<u8> {
    let mut p = Vec::new();
    write_rtp_header(&mut p, false, pt, seq, ts, ssrc);
    p.extend_from_slice(payload);
    p
}

struct Lab {
    rt: tokio::runtime::Runtime,
    relay: Arc<trunkd_media::RelayHandle>,
    a: UdpSocket,
    b: UdpSocket,
    /// The relay's ports facing A and facing B.
    to_a_side: SocketAddr,
    to_b_side: SocketAddr,
    _alloc: PortAllocator,
}

fn lab(base: u16) -> Lab {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let alloc = PortAllocator::new(base, base + 19).unwrap();
    let (a, b) = (phone(), phone());
    let setup = |peer: SocketAddr| LegSetup {
        sockets: LegSockets::from(alloc.allocate_bound(LO).unwrap()),
        peer_rtp: Some(peer),
        peer_rtcp: None,
    };
    let (tx, _events) = trunkd_media::media_events();
    let relay = {
        let _g = rt.enter();
        spawn(
            RelayConfig {
                inactivity_timeout: None,
                ..RelayConfig::default()
            },
            setup(a.local_addr().unwrap()),
            setup(b.local_addr().unwrap()),
            tx,
        )
        .unwrap()
    };
    Lab {
        to_a_side: relay.local_rtp(Leg::A),
        to_b_side: relay.local_rtp(Leg::B),
        relay: Arc::new(relay),
        rt,
        a,
        b,
        _alloc: alloc,
    }
}

#[test]
fn a_prompt_continues_the_stream_the_phone_hears_and_mutes_the_other_side() {
    let l = lab(33_000);
    // B talks to A: SSRC 0xB0B, sequence 100.., timestamps 8000..
    for i in 0..5u16 {
        l.b.send_to(
            &rtp(0xB0B, 100 + i, 8000 + 160 * u32::from(i), 0, &[0xFF; 160]),
            l.to_b_side,
        )
        .unwrap();
        let got = parse_rtp(&recv(&l.a)).map(|p| (p.ssrc, p.seq)).unwrap();
        assert_eq!(got, (0xB0B, 100 + i));
    }
    // trunkd plays 10 packets of a known signal into A.
    let samples: Vec<i16> = (0..1600).map(|i| ((i * 37) % 2000 - 1000) as i16).collect();
    let mut player = Player::new(
        samples.clone(),
        PlayerConfig::new(
            G711::Pcmu,
            RtpContinuity {
                ssrc: 0x1234,
                next_seq: 7,
                next_ts: 0,
            },
        ),
    );
    let endpoint = LegEndpoint::new(l.relay.clone(), Leg::A, 0);
    let play = l.rt.spawn(async move { endpoint.play(&mut player).await });
    let mut heard = Vec::new();
    for _ in 0..10 {
        heard.push(recv(&l.a));
        // B keeps talking meanwhile: suppressed, never reaches A.
        l.b.send_to(&rtp(0xB0B, 200, 99_999, 0, &[0x11; 160]), l.to_b_side)
            .unwrap();
    }
    assert_eq!(l.rt.block_on(play).unwrap().unwrap(), 10);
    let mut expected_payload = Vec::new();
    G711::Pcmu.encode_into(&samples, &mut expected_payload);
    for (i, p) in heard.iter().enumerate() {
        let p = parse_rtp(p).unwrap();
        assert_eq!(p.ssrc, 0xB0B, "the SSRC A was hearing");
        assert_eq!(p.seq, 105 + i as u16, "the sequence continues");
        assert_eq!(p.payload, &expected_payload[i * 160..(i + 1) * 160]);
        assert_ne!(p.payload, &[0x11; 160][..], "B's audio leaked in");
    }
    // After the prompt B is heard again, its numbering following the
    // prompt's. (One of B's packets sent during the prompt may reach the
    // relay only after it ended, on a loaded machine: it is forwarded then.)
    l.b.send_to(&rtp(0xB0B, 201, 100_000, 0, &[0x22; 160]), l.to_b_side)
        .unwrap();
    for expected_seq in 115..125u16 {
        let after = recv(&l.a);
        let after = parse_rtp(&after).unwrap();
        assert_eq!((after.ssrc, after.seq), (0xB0B, expected_seq));
        if after.payload == [0x22; 160] {
            return;
        }
        assert_eq!(after.payload, &[0x11; 160][..]);
    }
    panic!("B's packet after the prompt never arrived");
}

#[test]
fn digits_the_phone_sends_are_reported_once_each() {
    let l = lab(33_100);
    let endpoint = LegEndpoint::new(l.relay.clone(), Leg::A, 0);
    let mut digits = endpoint.digits(101).unwrap();
    // A presses 1, 2, # (RFC 4733, with the three end packets each).
    let mut at = RtpContinuity {
        ssrc: 0xA,
        next_seq: 1,
        next_ts: 1000,
    };
    let mut packets = Vec::new();
    for c in ['1', '2', '#'] {
        let mut config = DtmfSendConfig::new(101, at);
        config.interval = Duration::from_millis(20);
        let sender = DtmfSender::new(DtmfDigit::from_char(c).unwrap(), config);
        let these: Vec<Vec<u8>> = sender.packets().into_iter().map(|(_, p)| p).collect();
        // The next key: a new event, half a second of timestamps later.
        at = RtpContinuity {
            ssrc: at.ssrc,
            next_seq: at.next_seq + these.len() as u16,
            next_ts: at.next_ts + 4000,
        };
        packets.extend(these);
    }
    for p in &packets {
        l.a.send_to(p, l.to_a_side).unwrap();
        std::thread::sleep(Duration::from_millis(2));
    }
    let got: Vec<char> = l.rt.block_on(async {
        let mut got = Vec::new();
        for _ in 0..3 {
            let d = tokio::time::timeout(Duration::from_secs(3), digits.next()).await;
            got.push(d.unwrap().unwrap().digit.to_char());
        }
        got
    });
    assert_eq!(got, ['1', '2', '#']);
    // And B heard them relayed as they were (the listener only copies).
    let relayed = (0..packets.len())
        .filter(|_| l.b.recv_from(&mut [0u8; 2000]).is_ok())
        .count();
    assert_eq!(relayed, packets.len());
}
