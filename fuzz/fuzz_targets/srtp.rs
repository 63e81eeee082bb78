//! What an SRTP leg does with bytes from the network: SDES `a=crypto`
//! values from a peer's SDP ([`CryptoAttr::parse`]) and datagrams on an
//! SRTP leg ([`LegCrypto`]'s unprotect, then protect for the other leg).
//!
//! * The input as an `a=crypto` value: it parses or is refused; a parsed
//!   one writes back to a value that parses to the same attribute.
//! * The input as a datagram (RTP and RTCP), for every suite: unprotecting
//!   random bytes must fail without panicking (they carry no valid tag);
//!   a packet the peer's side protected must come back unchanged, and a
//!   second time must be refused as a replay; protecting arbitrary bytes
//!   must not panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use trunkd_media::sdes::{CryptoAttr, KeyMaterial};
use trunkd_media::{CryptoSuite, LegCrypto, LegKeys};

/// Fixed keys: the fuzzer explores packets, not keys.
fn keys(suite: CryptoSuite) -> (LegKeys, LegKeys) {
    let key = |first: u8| -> KeyMaterial {
        let mut k: Vec<u8> = (0..suite.key_len() as u8).collect();
        k[0] = first;
        let salt: Vec<u8> = (100..100 + suite.salt_len() as u8).collect();
        KeyMaterial::from_parts(&k, &salt).expect("suite lengths")
    };
    let (a, b) = (key(1), key(2));
    (
        LegKeys { suite, peer: a.clone(), ours: b.clone() },
        LegKeys { suite, peer: b, ours: a },
    )
}

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(attr) = CryptoAttr::parse(text) {
            let again = CryptoAttr::parse(&attr.to_value()).expect("trunkd's own value parses");
            assert_eq!(again, attr);
        }
    }
    for suite in CryptoSuite::ALL {
        let (trunkd_keys, peer_keys) = keys(suite);
        let mut trunkd = LegCrypto::new(&trunkd_keys).expect("keys fit");
        let mut peer = LegCrypto::new(&peer_keys).expect("keys fit");
        assert!(trunkd.unprotect_rtp(data).is_err(), "random bytes authenticated");
        assert!(trunkd.unprotect_rtcp(data).is_err(), "random bytes authenticated");
        if let Ok(wire) = peer.protect_rtp(data) {
            let plain = trunkd.unprotect_rtp(&wire).expect("the peer's packet");
            assert_eq!(&plain[..], data);
            assert!(trunkd.unprotect_rtp(&wire).is_err(), "a replay");
        }
        if let Ok(wire) = peer.protect_rtcp(data) {
            let plain = trunkd.unprotect_rtcp(&wire).expect("the peer's RTCP");
            assert_eq!(&plain[..], data);
            assert!(trunkd.unprotect_rtcp(&wire).is_err(), "an SRTCP replay");
        }
    }
});
