//! The SDP path of the media anchor (`crates/trunkd/src/media_anchor.rs`):
//! [`Sdp::parse_bytes`], the relay's peer from the SDP, and the rewrite
//! through a [`LegOrigin`] with trunkd's address and ports (only the first
//! m-line anchored, the others declined), for an IPv4 and an IPv6 anchor.
//!
//! Invariants of the rewrite (see the table in `trunkd_media::sdp`):
//! * it never fails for a matching port list, and its output parses again
//!   with the same number of media sections;
//! * each `m=` port is trunkd's RTP port, or 0 for a declined stream;
//! * every `c=` holds trunkd's address, or the unspecified one (a hold);
//!   the session `o=` holds trunkd's address; no ICE attribute is left;
//! * an anchored stream that is not on hold sends RTP and RTCP to trunkd's
//!   ports;
//! * rewriting is a fixed point: rewriting trunkd's own output again with
//!   the same ports and origin gives the same bytes;
//! * a leg's `o=` version stays when the body is unchanged and goes up by
//!   exactly one when it changes (RFC 3264 §8).
#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use libfuzzer_sys::fuzz_target;
use trunkd_media::{LegOrigin, OriginOverride, Sdp, SdpError};

/// trunkd's RTP port facing the leg; RTCP is next to it or not.
const RTP: u16 = 30000;

fuzz_target!(|data: &[u8]| {
    let Ok(sdp) = Sdp::parse_bytes(data) else {
        return;
    };
    // What the anchor reads for the relay and the quality code.
    let _ = (sdp.remote_rtp(0), sdp.remote_rtcp(0), sdp.has_crypto());
    for (i, m) in sdp.media().iter().enumerate() {
        let _ = (sdp.direction(i), m.telephone_event(), m.clock_rate(0));
    }

    let v4 = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 5));
    let v6 = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 5));
    for (addr, rtcp) in [(v4, RTP + 1), (v6, RTP + 3)] {
        check_rewrite(&sdp, addr, (RTP, rtcp));
    }
});

fn check_rewrite(sdp: &Sdp, addr: IpAddr, ours: (u16, u16)) {
    // As `RelayAnchor::rewrite`: the first m-line is anchored unless the
    // peer rejected it, the others are declined.
    let ports: Vec<Option<(u16, u16)>> = sdp
        .media()
        .iter()
        .enumerate()
        .map(|(i, m)| (i == 0 && !m.is_rejected()).then_some(ours))
        .collect();
    if !ports.is_empty() {
        assert!(
            matches!(
                sdp.rewrite(addr, &ports[1..], None),
                Err(SdpError::PortCount { .. })
            ),
            "a port list of the wrong length is refused"
        );
    }

    let mut leg = LegOrigin::new();
    let out = match leg.rewrite(sdp, addr, &ports) {
        Ok(out) => out,
        Err(e) => panic!("the rewrite of a parsed SDP failed: {e}"),
    };
    let first_version = leg.version();
    let again = leg.rewrite(sdp, addr, &ports).ok();
    assert_eq!(again.as_ref(), Some(&out), "same SDP, same body");
    assert_eq!(leg.version(), first_version, "same body, same version");

    let back = match Sdp::parse(&out) {
        Ok(back) => back,
        Err(e) => panic!("the rewritten SDP does not parse: {e}\n{out}"),
    };
    assert_eq!(back.media().len(), sdp.media().len());
    let unspecified = match addr {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    };
    for (i, (m, pair)) in back.media().iter().zip(&ports).enumerate() {
        assert_eq!(
            m.port(),
            pair.map_or(0, |(rtp, _)| rtp),
            "m= port of {i}\n{out}"
        );
        let Some((rtp, rtcp)) = *pair else { continue };
        let conn = back.connection(i);
        assert!(
            conn == Some(addr) || conn == Some(unspecified),
            "c= of anchored stream {i}: {conn:?}\n{out}"
        );
        if conn == Some(addr) {
            assert_eq!(
                back.remote_rtp(i),
                Some(SocketAddr::new(addr, rtp)),
                "{out}"
            );
            assert_eq!(
                back.remote_rtcp(i),
                Some(SocketAddr::new(addr, rtcp)),
                "{out}"
            );
        }
    }
    for line in out.split("\r\n").filter(|l| !l.is_empty()) {
        if let Some(c) = line.strip_prefix("c=") {
            let ip = c.rsplit(' ').next().and_then(|a| a.parse::<IpAddr>().ok());
            assert!(
                ip == Some(addr) || ip == Some(unspecified),
                "a peer address survives in {line:?}\n{out}"
            );
        }
        if let Some(a) = line.strip_prefix("a=") {
            let name = a.split(':').next().unwrap_or(a).trim();
            assert!(
                !(name == "candidate"
                    || name == "remote-candidates"
                    || name == "end-of-candidates"
                    || name.starts_with("ice-")),
                "an ICE attribute survives: {line:?}"
            );
        }
    }
    assert_eq!(back.origin().address, addr.to_string(), "o= address\n{out}");

    // A fixed point: trunkd's output through trunkd again.
    let origin = OriginOverride {
        username: "trunkd",
        session_id: "1",
        version: 7,
    };
    let once = sdp.rewrite(addr, &ports, Some(origin)).ok();
    let twice = once.as_deref().and_then(|o| {
        let back = Sdp::parse(o).ok()?;
        back.rewrite(addr, &ports, Some(origin)).ok()
    });
    assert_eq!(once, twice, "rewriting is not a fixed point");

    // A changed body bumps the leg's version by one.
    let declined = vec![None; ports.len()];
    if let Ok(changed) = leg.rewrite(sdp, addr, &declined) {
        let bumped = leg.version();
        if changed == out {
            assert_eq!(bumped, first_version);
        } else {
            assert_eq!(bumped, first_version.map(|v| v.wrapping_add(1)));
        }
    }
}
