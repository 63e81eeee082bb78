use super::*;

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn keys(suite: CryptoSuite) -> LegKeys {
    LegKeys {
        suite,
        peer: KeyMaterial::generate(suite).unwrap(),
        ours: KeyMaterial::generate(suite).unwrap(),
    }
}

/// The peer's side of a leg: it protects with `peer` and unprotects with
/// `ours`, the mirror of trunkd's [`LegCrypto`].
fn mirror(k: &LegKeys) -> LegCrypto {
    LegCrypto::new(&LegKeys {
        suite: k.suite,
        peer: k.ours.clone(),
        ours: k.peer.clone(),
    })
    .unwrap()
}

fn rtp(seq: u16, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0x80, 0, 0, 0, 0, 0, 0, 160, 0x11, 0x22, 0x33, 0x44];
    p[2..4].copy_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(payload);
    p
}

fn sender_report() -> Vec<u8> {
    let mut p = vec![0x80, 200, 0, 6, 0x11, 0x22, 0x33, 0x44];
    p.extend_from_slice(&[7u8; 20]);
    p
}

/// RFC 3711 Appendix B.3: the key derivation test vectors.
#[test]
fn key_derivation_matches_rfc_3711_b3() {
    let master = KeyMaterial::from_parts(
        &hex("E1F97A0D3E018BE0D64FA32C06DE4139"),
        &hex("0EC675AD498AFEEBB6960B3AABE6"),
    )
    .unwrap();
    let mut cipher_key = [0u8; 16];
    derive(&master, LABEL_RTP_ENCRYPTION, &mut cipher_key);
    assert_eq!(cipher_key.to_vec(), hex("C61E7A93744F39EE10734AFE3FF7A087"));
    let mut salt = [0u8; 14];
    derive(&master, LABEL_RTP_SALT, &mut salt);
    assert_eq!(salt.to_vec(), hex("30CBBC08863D8C85D49DB34A9AE1"));
    let mut auth = [0u8; 20];
    derive(&master, LABEL_RTP_AUTH, &mut auth);
    assert_eq!(
        auth.to_vec(),
        hex("CEBE321F6FF7716B6FD4AB49AF256A156D38BAA4")
    );
}

/// RFC 3711 Appendix B.2: the AES-CM keystream for a given session key
/// and IV.
#[test]
fn counter_mode_keystream_matches_rfc_3711_b2() {
    let aes = Aes::new(&hex("2B7E151628AED2A6ABF7158809CF4F3C"));
    let mut iv = [0u8; 16];
    iv.copy_from_slice(&hex("F0F1F2F3F4F5F6F7F8F9FAFBFCFD0000"));
    let mut stream = [0u8; 48];
    aes.ctr(&iv, &mut stream);
    assert_eq!(
        stream.to_vec(),
        hex("E03EAD0935C95E80E166B16DD92B4EB4D23513162B02D0F72A43A2FE4A5F97AB41E95B3BB0A2E8DD477901E4FCA894C0")
    );
}

#[test]
fn every_suite_round_trips_rtp_and_rtcp_both_ways() {
    for suite in CryptoSuite::ALL {
        let k = keys(suite);
        let mut trunkd = LegCrypto::new(&k).unwrap();
        let mut peer = mirror(&k);
        let plain = rtp(7, &[0xd5; 160]);
        let wire = peer.protect_rtp(&plain).unwrap();
        assert_ne!(&wire[12..172], &plain[12..], "{suite}: payload encrypted");
        assert_eq!(trunkd.unprotect_rtp(&wire).unwrap(), plain, "{suite}");
        let back = trunkd.protect_rtp(&plain).unwrap();
        assert_eq!(peer.unprotect_rtp(&back).unwrap(), plain, "{suite}");

        let sr = sender_report();
        let wire = peer.protect_rtcp(&sr).unwrap();
        assert_eq!(trunkd.unprotect_rtcp(&wire).unwrap(), sr, "{suite} SRTCP");
        let wire = trunkd.protect_rtcp(&sr).unwrap();
        assert_eq!(
            peer.unprotect_rtcp(&wire).unwrap(),
            sr,
            "{suite} SRTCP back"
        );
    }
}

fn webrtc_profile(suite: CryptoSuite) -> webrtc_srtp::protection_profile::ProtectionProfile {
    use webrtc_srtp::protection_profile::ProtectionProfile as P;
    match suite {
        CryptoSuite::AeadAes256Gcm => P::AeadAes256Gcm,
        CryptoSuite::Aes256CmHmacSha1_80 => P::Aes256CmHmacSha1_80,
        CryptoSuite::Aes256CmHmacSha1_32 => P::Aes256CmHmacSha1_32,
        CryptoSuite::AeadAes128Gcm => P::AeadAes128Gcm,
        CryptoSuite::Aes128CmHmacSha1_80 => P::Aes128CmHmacSha1_80,
        CryptoSuite::Aes128CmHmacSha1_32 => P::Aes128CmHmacSha1_32,
    }
}

fn webrtc(suite: CryptoSuite, key: &KeyMaterial) -> webrtc_srtp::context::Context {
    webrtc_srtp::context::Context::new(key.key(), key.salt(), webrtc_profile(suite), None, None)
        .unwrap()
}

/// An independent implementation (webrtc-rs, interoperable with browsers)
/// and trunkd's agree on every suite, both ways, across a sequence number
/// wrap (the rollover counter), with CSRCs and a header extension, and for
/// SRTCP.
#[test]
fn interoperates_with_webrtc_srtp_on_every_suite() {
    for suite in CryptoSuite::ALL {
        let k = keys(suite);
        let mut trunkd = LegCrypto::new(&k).unwrap();
        // The peer encrypts with k.peer (trunkd's rx) and decrypts with
        // k.ours (trunkd's tx).
        let mut peer_tx = webrtc(suite, &k.peer);
        let mut peer_rx = webrtc(suite, &k.ours);
        for (n, seq) in (65_500u16..=65_535).chain(0..40).enumerate() {
            let mut plain = rtp(seq, &[n as u8; 100]);
            if n % 3 == 0 {
                // One CSRC and a one-word RFC 8285 header extension (a
                // well-formed one: webrtc-srtp re-serialises the header it
                // authenticates, trunkd takes the bytes as they are).
                plain[0] = 0x91;
                plain.splice(
                    12..12,
                    [
                        0xaa, 0xbb, 0xcc, 0xdd, 0xbe, 0xde, 0, 1, 0x12, 0xab, 0xcd, 0x00,
                    ],
                );
            }
            let wire = peer_tx.encrypt_rtp(&plain).unwrap();
            let got = trunkd.unprotect_rtp(&wire);
            assert_eq!(got, Ok(plain.clone()), "{suite} seq {seq} n {n}");
            let ours = trunkd.protect_rtp(&plain).unwrap();
            assert_eq!(
                &peer_rx.decrypt_rtp(&ours).unwrap()[..],
                &plain[..],
                "{suite} seq {seq} back"
            );
        }
        for i in 0..5u8 {
            let mut sr = sender_report();
            sr[10] = i;
            let wire = peer_tx.encrypt_rtcp(&sr).unwrap();
            assert_eq!(
                trunkd.unprotect_rtcp(&wire).unwrap(),
                sr,
                "{suite} SRTCP {i}"
            );
            let ours = trunkd.protect_rtcp(&sr).unwrap();
            assert_eq!(
                &peer_rx.decrypt_rtcp(&ours).unwrap()[..],
                &sr[..],
                "{suite} SRTCP back {i}"
            );
        }
    }
}

#[test]
fn replayed_and_forged_packets_are_refused() {
    let k = keys(CryptoSuite::Aes128CmHmacSha1_80);
    let mut trunkd = LegCrypto::new(&k).unwrap();
    let mut peer = mirror(&k);
    let wire = peer.protect_rtp(&rtp(1, &[1; 20])).unwrap();
    assert!(trunkd.unprotect_rtp(&wire).is_ok());
    assert_eq!(trunkd.unprotect_rtp(&wire), Err(SrtpError::Replay));
    let mut forged = peer.protect_rtp(&rtp(2, &[1; 20])).unwrap();
    forged[20] ^= 1;
    assert_eq!(
        trunkd.unprotect_rtp(&forged),
        Err(SrtpError::Authentication)
    );
    // The genuine packet with that index still gets through afterwards.
    let mut again = mirror(&k);
    let _ = again.protect_rtp(&rtp(1, &[1; 20]));
    let good = again.protect_rtp(&rtp(2, &[1; 20])).unwrap();
    assert!(trunkd.unprotect_rtp(&good).is_ok());
    // Reordered within the window: accepted once.
    let late = again.protect_rtp(&rtp(1, &[1; 20])).unwrap();
    assert_eq!(
        trunkd.unprotect_rtp(&late),
        Err(SrtpError::Replay),
        "1 was seen"
    );
}

/// Found by fuzzing webrtc-srtp behind this API: a forged packet must not
/// move any state, or the genuine stream is refused afterwards.
#[test]
fn a_forged_packet_never_poisons_the_replay_window() {
    for suite in CryptoSuite::ALL {
        let k = keys(suite);
        let mut trunkd = LegCrypto::new(&k).unwrap();
        let mut peer = mirror(&k);
        // A forgery claiming sequence 30000 / SRTCP index 0x20123456.
        let mut forged = rtp(30_000, &[9; 40]);
        forged.extend_from_slice(&[0u8; 16]);
        assert!(trunkd.unprotect_rtp(&forged).is_err());
        let mut forged_rtcp = sender_report();
        forged_rtcp.extend_from_slice(&[0xa0, 0x12, 0x34, 0x56]);
        forged_rtcp.extend_from_slice(&[0u8; 16]);
        assert!(trunkd.unprotect_rtcp(&forged_rtcp).is_err());
        assert!(
            trunkd.rx_ssrcs.entries.is_empty(),
            "{suite}: no state for a forgery"
        );
        // The genuine stream starts at 1 and is accepted.
        let wire = peer.protect_rtp(&rtp(1, &[1; 40])).unwrap();
        assert!(trunkd.unprotect_rtp(&wire).is_ok(), "{suite}");
        let wire = peer.protect_rtcp(&sender_report()).unwrap();
        assert!(trunkd.unprotect_rtcp(&wire).is_ok(), "{suite}");
    }
}

/// Found by fuzzing (fuzz/corpus/srtp/regression-unencrypted-srtcp): an SR
/// with a clear E flag and a made-up tag was accepted by webrtc-srtp for
/// the AES-CM suites.
#[test]
fn forged_unencrypted_srtcp_is_refused_for_every_suite() {
    let forged = b"\x80\xc8\x00\x06\x12\x34\x56\x78AAAABBBBCCCCDDDDEEEE";
    for suite in CryptoSuite::ALL {
        let mut trunkd = LegCrypto::new(&keys(suite)).unwrap();
        assert!(trunkd.unprotect_rtcp(forged).is_err(), "{suite}");
    }
}

/// RFC 3711 §3.4: a sender may leave an SRTCP packet unencrypted (E flag
/// clear); it is still authenticated, and accepted only if its tag
/// verifies (baresip sends its RTCP BYE so).
#[test]
fn authenticated_unencrypted_srtcp_is_accepted_on_aes_cm_legs() {
    for suite in [
        CryptoSuite::Aes128CmHmacSha1_80,
        CryptoSuite::Aes256CmHmacSha1_32,
    ] {
        let k = keys(suite);
        let mut trunkd = LegCrypto::new(&k).unwrap();
        let peer = mirror(&k);
        let Transform::Cm { rtcp_auth, .. } = &peer.tx else {
            unreachable!()
        };
        let sr = sender_report();
        let mut pkt = sr.clone();
        pkt.extend_from_slice(&7u32.to_be_bytes()); // E = 0, index 7
        let mut mac = rtcp_auth.clone();
        mac.update(&pkt);
        pkt.extend_from_slice(&mac.finalize().into_bytes()[..SRTCP_HMAC_TAG]);
        assert_eq!(trunkd.unprotect_rtcp(&pkt), Ok(sr), "{suite}");
        assert_eq!(
            trunkd.unprotect_rtcp(&pkt),
            Err(SrtpError::Replay),
            "{suite}"
        );
        let mut forged = pkt.clone();
        forged[12] ^= 1;
        forged[RTCP_HEADER + 20 + 3] = 8; // a fresh index, a stale tag
        assert_eq!(
            trunkd.unprotect_rtcp(&forged),
            Err(SrtpError::Authentication)
        );
    }
}

/// A re-INVITE that changes the peer's key after the sequence number has
/// wrapped: the new context inherits the rollover counter.
#[test]
fn a_rekey_keeps_the_rollover_counter() {
    let k1 = keys(CryptoSuite::Aes128CmHmacSha1_80);
    let mut trunkd = LegCrypto::new(&k1).unwrap();
    let mut peer = mirror(&k1);
    for seq in (65_530u16..=65_535).chain(0..5) {
        let wire = peer.protect_rtp(&rtp(seq, &[1; 20])).unwrap();
        assert!(trunkd.unprotect_rtp(&wire).is_ok(), "seq {seq}");
    }
    // The peer's new key; like libsrtp's srtp_update it keeps its ROC (1).
    let k2 = LegKeys {
        peer: KeyMaterial::generate(k1.suite).unwrap(),
        ..k1.clone()
    };
    let mut peer2 = mirror(&k2);
    peer2.inherit_streams(&peer);
    let wire = peer2.protect_rtp(&rtp(5, &[2; 20])).unwrap();

    let mut fresh = LegCrypto::new(&k2).unwrap();
    assert!(
        fresh.unprotect_rtp(&wire).is_err(),
        "a context guessing ROC 0 fails"
    );
    let mut rekeyed = LegCrypto::new(&k2).unwrap();
    rekeyed.inherit_streams(&trunkd);
    assert_eq!(rekeyed.unprotect_rtp(&wire), Ok(rtp(5, &[2; 20])));
}

#[test]
fn the_ssrc_table_is_bounded() {
    let k = keys(CryptoSuite::Aes128CmHmacSha1_80);
    let mut trunkd = LegCrypto::new(&k).unwrap();
    let mut peer = mirror(&k);
    for ssrc in 0..(MAX_SSRCS as u32 * 3) {
        let mut p = rtp(5, &[3; 20]);
        p[8..12].copy_from_slice(&ssrc.to_be_bytes());
        let wire = peer.protect_rtp(&p).unwrap();
        assert!(trunkd.unprotect_rtp(&wire).is_ok());
    }
    assert!(trunkd.rx_ssrcs.entries.len() <= MAX_SSRCS);
    assert!(peer.tx_ssrcs.entries.len() <= MAX_SSRCS);
}

#[test]
fn short_and_foreign_datagrams_never_reach_the_transform() {
    let k = keys(CryptoSuite::Aes128CmHmacSha1_32);
    let mut trunkd = LegCrypto::new(&k).unwrap();
    for len in 0..40 {
        let junk = vec![0x80u8; len];
        assert!(trunkd.unprotect_rtp(&junk).is_err());
        assert!(trunkd.unprotect_rtcp(&junk).is_err());
        let _ = trunkd.protect_rtp(&junk);
        let _ = trunkd.protect_rtcp(&junk);
    }
    assert_eq!(trunkd.unprotect_rtp(&[0u8; 64]), Err(SrtpError::NotRtp));
    // A header extension longer than the packet.
    let mut p = rtp(1, &[0xbe, 0xde, 0xff, 0xff, 0, 0, 0, 0]);
    p[0] = 0x90;
    assert!(trunkd.protect_rtp(&p).is_err());
}

#[test]
fn index_estimation_follows_rfc_3711_appendix_a() {
    assert_eq!(estimate_index(None, 5), 5);
    assert_eq!(estimate_index(Some(65_535), 0), 1 << 16, "wrap");
    assert_eq!(
        estimate_index(Some((1 << 16) | 2), 65_534),
        65_534,
        "late from before the wrap"
    );
    assert_eq!(
        estimate_index(Some((3 << 16) | 40_000), 40_001),
        (3 << 16) | 40_001
    );
    assert_eq!(
        estimate_index(Some(100), 65_000),
        65_000,
        "ROC 0 cannot go below"
    );
}

proptest::proptest! {
    #[test]
    fn arbitrary_bytes_are_refused_without_panicking(data in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
        for suite in [CryptoSuite::AeadAes128Gcm, CryptoSuite::Aes128CmHmacSha1_80] {
            let mut trunkd = LegCrypto::new(&keys(suite)).unwrap();
            proptest::prop_assert!(trunkd.unprotect_rtp(&data).is_err());
            proptest::prop_assert!(trunkd.unprotect_rtcp(&data).is_err());
            let _ = trunkd.protect_rtp(&data);
            let _ = trunkd.protect_rtcp(&data);
        }
    }
}

/// An SRTP leg's state is the bulk of an SRTP call's memory (issue 15,
/// RSS per media call <= 24 KiB): the RTP key schedules only, SRTCP's
/// built per packet, AES-256's boxed. 4,624 bytes before that; a
/// dependency upgrade that grows it should be a decision, not a surprise.
#[test]
fn an_srtp_leg_keeps_only_its_rtp_key_schedules() {
    let size = std::mem::size_of::<LegCrypto>();
    assert!(size <= 2304, "LegCrypto is {size} bytes");
    // The SRTCP keys still work: a round trip on every suite is
    // `every_suite_round_trips_rtp_and_rtcp_both_ways`.

    // A stream's SSRC table holds what it has, not room for four.
    let k = keys(CryptoSuite::Aes128CmHmacSha1_80);
    let mut trunkd = LegCrypto::new(&k).unwrap();
    let mut peer = mirror(&k);
    for seq in 0..50 {
        let wire = peer.protect_rtp(&rtp(seq, &[7; 160])).unwrap();
        trunkd.unprotect_rtp(&wire).unwrap();
    }
    let wire = peer.protect_rtcp(&sender_report()).unwrap();
    trunkd.unprotect_rtcp(&wire).unwrap();
    assert_eq!(trunkd.rx_ssrcs.entries.capacity(), 1);
    assert_eq!(peer.tx_ssrcs.entries.capacity(), 1);
}
