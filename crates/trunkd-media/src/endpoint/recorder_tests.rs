use std::cell::RefCell;
use std::io::{Cursor, SeekFrom};
use std::rc::Rc;

use super::*;
use crate::endpoint::g711::{alaw_decode, ulaw_decode};
use crate::endpoint::rtp::write_rtp_header;

/// A writer the test can look into while the recorder owns it.
#[derive(Clone, Default)]
struct Shared(Rc<RefCell<Cursor<Vec<u8>>>>);

impl Write for Shared {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.borrow_mut().write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Seek for Shared {
    fn seek(&mut self, pos: SeekFrom) -> std::io::Result<u64> {
        self.0.borrow_mut().seek(pos)
    }
}

impl Shared {
    fn len(&self) -> usize {
        self.0.borrow().get_ref().len()
    }
    fn samples(&self) -> (u16, Vec<i16>) {
        let bytes = self.0.borrow().get_ref().clone();
        let mut r = hound::WavReader::new(&bytes[..]).unwrap();
        let spec = r.spec();
        assert_eq!((spec.sample_rate, spec.bits_per_sample), (8000, 16));
        (
            spec.channels,
            r.samples::<i16>().map(|s| s.unwrap()).collect(),
        )
    }
}

/// Compares long sample vectors without printing them whole.
fn assert_same(actual: &[i16], expected: &[i16]) {
    if let Some(i) = actual.iter().zip(expected).position(|(a, e)| a != e) {
        panic!("differ at sample {i}: {} vs {}", actual[i], expected[i]);
    }
    assert_eq!(actual.len(), expected.len(), "lengths");
}

const SSRC: u32 = 0x5555_0001;

/// A 20 ms packet whose payload is the byte pattern `fill + i`.
fn packet(pt: u8, seq: u16, ts: u32, fill: u8) -> Vec<u8> {
    packet_n(pt, seq, ts, fill, 160)
}

fn packet_n(pt: u8, seq: u16, ts: u32, fill: u8, n: usize) -> Vec<u8> {
    let mut p = Vec::new();
    write_rtp_header(&mut p, false, pt, seq, ts, SSRC);
    p.extend((0..n).map(|i| fill.wrapping_add(i as u8)));
    p
}

fn ulaw(fill: u8, n: usize) -> Vec<i16> {
    (0..n)
        .map(|i| ulaw_decode(fill.wrapping_add(i as u8)))
        .collect()
}

fn recorder(config: RecorderConfig) -> (Recorder<Shared>, Shared) {
    let out = Shared::default();
    (Recorder::new(out.clone(), config).unwrap(), out)
}

#[test]
fn in_order_packets_are_decoded_back_to_back() {
    let (mut rec, out) = recorder(RecorderConfig::default());
    rec.handle_packet(&packet(0, 10, 1000, 0)).unwrap();
    rec.handle_packet(&packet(8, 11, 1160, 50)).unwrap();
    let stats = rec.finish().unwrap();
    let mut expected = ulaw(0, 160);
    expected.extend((0..160).map(|i| alaw_decode(50u8.wrapping_add(i as u8))));
    assert_eq!(out.samples().0, 1);
    assert_same(&out.samples().1, &expected);
    assert_eq!(
        stats,
        LegRecordStats {
            packets: 2,
            audio_samples: 320,
            ..Default::default()
        }
    );
}

#[test]
fn gaps_become_silence_up_to_the_bound() {
    let config = RecorderConfig {
        max_gap: Duration::from_millis(100),
        ..Default::default()
    };
    let (mut rec, out) = recorder(config);
    rec.handle_packet(&packet(0, 1, 0, 1)).unwrap();
    // Two packets lost: 320 samples of silence.
    rec.handle_packet(&packet(0, 4, 480, 2)).unwrap();
    // A DTMF event (skipped), then audio 100 ms after the last: 800
    // samples of silence, just within the bound.
    rec.handle_packet(&packet_n(101, 5, 640, 0, 4)).unwrap();
    rec.handle_packet(&packet(0, 9, 640 + 800, 3)).unwrap();
    // Back from hold 10 s later: only 800 samples (100 ms) of silence.
    rec.handle_packet(&packet(0, 10, 640 + 960 + 80_000, 4))
        .unwrap();
    // And the stream goes on from there.
    rec.handle_packet(&packet(0, 11, 640 + 960 + 80_160, 5))
        .unwrap();
    let stats = rec.finish().unwrap();
    let mut expected = ulaw(1, 160);
    expected.extend(vec![0; 320]);
    expected.extend(ulaw(2, 160));
    expected.extend(vec![0; 800]);
    expected.extend(ulaw(3, 160));
    expected.extend(vec![0; 800]);
    expected.extend(ulaw(4, 160));
    expected.extend(ulaw(5, 160));
    assert_same(&out.samples().1, &expected);
    assert_eq!(
        stats,
        LegRecordStats {
            packets: 5,
            audio_samples: 800,
            silence_samples: 1920,
            late_packets: 0,
            skipped_packets: 1,
            resyncs: 1,
        }
    );
}

#[test]
fn late_and_duplicate_packets_are_dropped() {
    let (mut rec, out) = recorder(RecorderConfig::default());
    rec.handle_packet(&packet(0, 1, 0, 1)).unwrap();
    rec.handle_packet(&packet(0, 3, 320, 3)).unwrap(); // 2 lost...
    rec.handle_packet(&packet(0, 2, 160, 2)).unwrap(); // ...arrives late
    rec.handle_packet(&packet(0, 3, 320, 3)).unwrap(); // duplicate
                                                       // Overlapping the end by 80 samples: only the new 80 written.
    rec.handle_packet(&packet(0, 4, 400, 4)).unwrap();
    let stats = rec.finish().unwrap();
    let mut expected = ulaw(1, 160);
    expected.extend(vec![0; 160]);
    expected.extend(ulaw(3, 160));
    expected.extend(ulaw(4, 160).split_off(80));
    assert_eq!(out.samples().0, 1);
    assert_same(&out.samples().1, &expected);
    assert_eq!(
        (stats.late_packets, stats.packets, stats.audio_samples),
        (2, 3, 400)
    );
}

#[test]
fn timestamps_wrap_and_ssrc_changes_continue() {
    let (mut rec, out) = recorder(RecorderConfig::default());
    rec.handle_packet(&packet(0, 65535, u32::MAX - 159, 1))
        .unwrap();
    rec.handle_packet(&packet(0, 0, 160, 2)).unwrap(); // one lost across the wrap
    let mut other = packet(0, 7, 99_999, 3);
    other[8..12].copy_from_slice(&7u32.to_be_bytes());
    rec.handle_packet(&other).unwrap();
    let stats = rec.finish().unwrap();
    let mut expected = ulaw(1, 160);
    expected.extend(vec![0; 160]);
    expected.extend(ulaw(2, 160));
    expected.extend(ulaw(3, 160));
    assert_eq!(out.samples().0, 1);
    assert_same(&out.samples().1, &expected);
    assert_eq!(stats.resyncs, 1);
}

#[test]
fn dynamic_payload_types_and_garbage() {
    let config = RecorderConfig {
        payload_types: vec![(96, G711::Pcma)],
        ..Default::default()
    };
    let (mut rec, out) = recorder(config);
    assert!(matches!(
        rec.handle_packet(&[0x80, 0, 1]),
        Err(RecordError::Rtp(RtpError::Truncated))
    ));
    rec.handle_packet(&packet(0, 1, 0, 1)).unwrap(); // PCMU not configured
    rec.handle_packet(&packet_n(96, 2, 0, 9, 3)).unwrap();
    assert_eq!(rec.stats().skipped_packets, 1);
    rec.finish().unwrap();
    assert_eq!(
        out.samples(),
        (1, vec![alaw_decode(9), alaw_decode(10), alaw_decode(11)])
    );
}

#[test]
fn samples_reach_the_writer_as_they_come() {
    let (mut rec, out) = recorder(RecorderConfig::default());
    let header = out.len();
    assert_eq!(header, 44);
    for k in 0..500u16 {
        rec.handle_packet(&packet(0, k, u32::from(k) * 160, 0))
            .unwrap();
        // Nothing is held back: the file has every sample so far.
        assert_eq!(out.len(), header + 320 * (usize::from(k) + 1));
    }
    rec.finish().unwrap();
    assert_eq!(out.samples().1.len(), 80_000);
}

#[test]
fn create_writes_a_file() {
    let path = std::env::temp_dir().join(format!("trunkd-rec-{}.wav", std::process::id()));
    let mut rec = Recorder::create(&path, RecorderConfig::default()).unwrap();
    rec.handle_packet(&packet(0, 1, 0, 0)).unwrap();
    rec.finish().unwrap();
    let samples = crate::endpoint::wav::read_wav_file_8k(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    assert_eq!(samples, ulaw(0, 160));
    assert!(Recorder::create("/nonexistent/dir/x.wav", RecorderConfig::default()).is_err());
}

fn stereo() -> (StereoRecorder<Shared>, Shared, Instant) {
    let out = Shared::default();
    let t0 = Instant::now();
    (
        StereoRecorder::new(out.clone(), RecorderConfig::default(), t0).unwrap(),
        out,
        t0,
    )
}

fn split(samples: &[i16]) -> (Vec<i16>, Vec<i16>) {
    (
        samples.iter().step_by(2).copied().collect(),
        samples.iter().skip(1).step_by(2).copied().collect(),
    )
}

#[test]
fn stereo_puts_caller_left_and_callee_right_aligned_by_arrival() {
    let (mut rec, out, t0) = stereo();
    let ms = |n| t0 + Duration::from_millis(n);
    // Caller from the start; callee's first packet arrives 40 ms later, its
    // own timestamps unrelated to the caller's.
    for k in 0..10u16 {
        rec.handle_packet(
            ms(20 * u64::from(k)),
            Side::Caller,
            &packet(0, k, 5000 + u32::from(k) * 160, 1),
        )
        .unwrap();
        if k >= 2 {
            let j = k - 2;
            rec.handle_packet(
                ms(20 * u64::from(k)),
                Side::Callee,
                &packet(8, 900 + j, 77 + u32::from(j) * 160, 2),
            )
            .unwrap();
        }
    }
    let (caller, callee) = rec.finish().unwrap();
    let (channels, samples) = out.samples();
    assert_eq!(channels, 2);
    let (left, right) = split(&samples);
    assert_eq!(left.len(), 1600);
    let mut exp_left = Vec::new();
    for _ in 0..10 {
        exp_left.extend(ulaw(1, 160));
    }
    assert_same(&left, &exp_left);
    let mut exp_right = vec![0; 320];
    for _ in 0..8 {
        exp_right.extend((0..160).map(|i| alaw_decode(2u8.wrapping_add(i as u8))));
    }
    assert_same(&right, &exp_right);
    assert_eq!((caller.audio_samples, caller.silence_samples), (1600, 0));
    assert_eq!((callee.audio_samples, callee.silence_samples), (1280, 320));
}

#[test]
fn stereo_holds_one_leg_at_most_the_skew_while_the_other_is_silent() {
    let (mut rec, out, t0) = stereo();
    // Only the caller talks, for 2 s.
    for k in 0..100u16 {
        let now = t0 + Duration::from_millis(20 * u64::from(k));
        rec.handle_packet(now, Side::Caller, &packet(0, k, u32::from(k) * 160, 3))
            .unwrap();
        let written = (out.len() - 44) / 4;
        let held = 160 * (usize::from(k) + 1) - written;
        assert!(held <= 4000, "{held} samples held at packet {k}");
    }
    // The callee starts late: its audio goes after what was written.
    let now = t0 + Duration::from_millis(2000);
    rec.handle_packet(now, Side::Callee, &packet(0, 1, 123, 4))
        .unwrap();
    let (caller, callee) = rec.finish().unwrap();
    let (left, right) = split(&out.samples().1);
    // It arrived at 2.0 s: it covers 2.0-2.02 s, where the caller is
    // silent.
    assert_eq!(left.len(), 16_160);
    assert!(left[16_000..].iter().all(|&s| s == 0));
    assert!(right[..16_000].iter().all(|&s| s == 0));
    assert_eq!(right[16_000..], ulaw(4, 160)[..]);
    assert_eq!(
        (callee.audio_samples, callee.silence_samples),
        (160, 16_000)
    );
    assert_eq!(
        (caller.audio_samples, caller.silence_samples),
        (16_000, 160)
    );
}
