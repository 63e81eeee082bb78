//! Cost of the SRTP transforms per 172-byte G.711 packet (12-byte header,
//! 160-byte payload), per suite: what an SRTP leg adds to the relay's
//! per-packet path (docs/performance.md compares it with plain relaying).
//!
//! `cargo bench -p trunkd-media --bench srtp`

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use trunkd_media::sdes::KeyMaterial;
use trunkd_media::{CryptoSuite, LegCrypto, LegKeys};

fn packet(seq: u16) -> Vec<u8> {
    let mut p = vec![0x80, 0, 0, 0, 0, 0, 0, 0, 0x12, 0x34, 0x56, 0x78];
    p[2..4].copy_from_slice(&seq.to_be_bytes());
    p[4..8].copy_from_slice(&(u32::from(seq) * 160).to_be_bytes());
    p.extend((0..160).map(|i| (i as u8) ^ 0x55));
    p
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("srtp_172_byte_packet");
    g.throughput(Throughput::Elements(1));
    for suite in [
        CryptoSuite::Aes128CmHmacSha1_80,
        CryptoSuite::Aes256CmHmacSha1_80,
        CryptoSuite::AeadAes128Gcm,
        CryptoSuite::AeadAes256Gcm,
    ] {
        let keys = LegKeys {
            suite,
            peer: KeyMaterial::generate(suite).expect("OS randomness"),
            ours: KeyMaterial::generate(suite).expect("OS randomness"),
        };
        let mirror = LegKeys {
            suite,
            peer: keys.ours.clone(),
            ours: keys.peer.clone(),
        };
        // protect: what trunkd does to every packet sent on an SRTP leg.
        let mut tx = LegCrypto::new(&keys).expect("keys fit the suite");
        let mut seq = 0u16;
        g.bench_function(format!("protect/{suite}"), |b| {
            b.iter(|| {
                seq = seq.wrapping_add(1);
                tx.protect_rtp(&packet(seq)).expect("protect")
            })
        });
        // unprotect: authenticate + decrypt + replay check, per packet
        // received; a fresh sequence number each time (replays fail).
        let mut peer = LegCrypto::new(&mirror).expect("keys fit the suite");
        let wire: Vec<_> = (0..u16::MAX)
            .map(|s| peer.protect_rtp(&packet(s)).expect("protect"))
            .collect();
        let mut rx = LegCrypto::new(&keys).expect("keys fit the suite");
        let mut i = 0usize;
        g.bench_function(format!("unprotect/{suite}"), |b| {
            b.iter(|| {
                i += 1;
                if i == wire.len() {
                    // The replay window would refuse a second pass.
                    rx = LegCrypto::new(&keys).expect("keys fit the suite");
                    i = 0;
                }
                rx.unprotect_rtp(&wire[i]).expect("unprotect")
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
