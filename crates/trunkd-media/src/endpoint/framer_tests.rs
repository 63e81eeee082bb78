use std::time::{Duration, Instant};

use proptest::prelude::*;

use super::*;
use crate::endpoint::dtmf::{DigitEnd, DtmfDigit};
use crate::endpoint::g711::{alaw_decode, ulaw_decode};

fn rtp(pt: u8, seq: u16, ts: u32, ssrc: u32, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0x80, pt];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&ts.to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend_from_slice(payload);
    p
}

/// 160 A-law bytes that differ per packet.
fn payload(k: u16) -> Vec<u8> {
    (0..160u16).map(|i| (i.wrapping_mul(7) ^ k) as u8).collect()
}

fn frames(f: &mut LegFramer) -> Vec<Frame> {
    let mut out = Vec::new();
    while let Some(e) = f.poll_event() {
        if let FramerEvent::Frame(fr) = e {
            out.push(*fr);
        }
    }
    out
}

fn flat(frames: &[Frame]) -> Vec<i16> {
    frames.iter().flat_map(|f| f.iter().copied()).collect()
}

#[test]
fn in_order_pcma_packets_are_their_decoded_samples_in_20ms_frames() {
    let mut f = LegFramer::new(FramerConfig::default());
    let now = Instant::now();
    let mut expected = Vec::new();
    for k in 0..5u16 {
        let pl = payload(k);
        expected.extend(pl.iter().map(|b| alaw_decode(*b)));
        f.handle_packet(now, &rtp(8, k, 1000 + u32::from(k) * 160, 7, &pl))
            .unwrap();
    }
    let out = frames(&mut f);
    assert_eq!(out.len(), 5);
    assert_eq!(flat(&out), expected);
    assert_eq!(pcm_le_bytes(&out[0][..]).len(), FRAME_BYTES);
    assert_eq!(pcm_le_bytes(&[0x1234, -2]), [0x34, 0x12, 0xfe, 0xff]);
    let s = f.stats();
    assert_eq!(
        (s.packets, s.frames, s.audio_samples, s.silence_samples),
        (5, 5, 800, 0)
    );
}

#[test]
fn pcmu_packets_of_80_samples_make_one_frame_per_two_packets() {
    let mut f = LegFramer::new(FramerConfig::default());
    let now = Instant::now();
    let pl: Vec<u8> = (0..80u8).collect();
    f.handle_packet(now, &rtp(0, 1, 0, 1, &pl)).unwrap();
    assert!(f.poll_event().is_none(), "half a frame is held");
    f.handle_packet(now, &rtp(0, 2, 80, 1, &pl)).unwrap();
    let out = frames(&mut f);
    assert_eq!(out.len(), 1);
    let expected: Vec<i16> = pl
        .iter()
        .chain(pl.iter())
        .map(|b| ulaw_decode(*b))
        .collect();
    assert_eq!(flat(&out), expected);
}

#[test]
fn a_gap_in_the_timestamps_is_silence_and_late_or_duplicate_packets_are_dropped() {
    let mut f = LegFramer::new(FramerConfig::default());
    let now = Instant::now();
    f.handle_packet(now, &rtp(8, 0, 0, 9, &payload(0))).unwrap();
    // Packets 1 and 2 lost; 3 arrives.
    f.handle_packet(now, &rtp(8, 3, 480, 9, &payload(3)))
        .unwrap();
    // Then 1 (late: its time is already framed as silence) and 3 again.
    f.handle_packet(now, &rtp(8, 1, 160, 9, &payload(1)))
        .unwrap();
    f.handle_packet(now, &rtp(8, 3, 480, 9, &payload(3)))
        .unwrap();
    let out = frames(&mut f);
    assert_eq!(out.len(), 4);
    assert!(out[1].iter().all(|s| *s == 0) && out[2].iter().all(|s| *s == 0));
    let third: Vec<i16> = payload(3).iter().map(|b| alaw_decode(*b)).collect();
    assert_eq!(out[3][..], third[..]);
    let s = f.stats();
    assert_eq!((s.late_packets, s.silence_samples, s.packets), (2, 320, 2));
}

#[test]
fn a_long_gap_gives_at_most_max_gap_of_silence() {
    let config = FramerConfig {
        max_gap: Duration::from_millis(100),
        ..FramerConfig::default()
    };
    let mut f = LegFramer::new(config);
    let now = Instant::now();
    f.handle_packet(now, &rtp(8, 0, 0, 9, &payload(0))).unwrap();
    // An hour later (a hold): 100 ms of silence, not an hour.
    f.handle_packet(now, &rtp(8, 1, 8000 * 3600, 9, &payload(1)))
        .unwrap();
    f.handle_packet(now, &rtp(8, 2, 8000 * 3600 + 160, 9, &payload(2)))
        .unwrap();
    let out = frames(&mut f);
    assert_eq!(out.len(), 1 + 5 + 2);
    assert_eq!(f.stats().resyncs, 1);
    assert_eq!(f.stats().silence_samples, 800);
}

#[test]
fn a_new_ssrc_continues_where_the_old_one_stopped() {
    let mut f = LegFramer::new(FramerConfig::default());
    let now = Instant::now();
    f.handle_packet(now, &rtp(8, 0, 0, 1, &payload(0))).unwrap();
    f.handle_packet(now, &rtp(8, 9000, 123_456, 2, &payload(1)))
        .unwrap();
    let out = frames(&mut f);
    assert_eq!(out.len(), 2);
    assert_eq!(f.stats().silence_samples, 0);
    assert_eq!(f.stats().resyncs, 1);
}

fn event(pt: u8, seq: u16, ts: u32, digit: u8, end: bool, duration: u16) -> Vec<u8> {
    let mut pl = vec![digit, if end { 0x80 | 10 } else { 10 }];
    pl.extend_from_slice(&duration.to_be_bytes());
    rtp(pt, seq, ts, 5, &pl)
}

#[test]
fn a_telephone_event_is_one_dtmf_event_between_the_frames_around_it() {
    let mut f = LegFramer::new(FramerConfig::default());
    let now = Instant::now();
    f.handle_packet(now, &rtp(8, 0, 0, 5, &payload(0))).unwrap();
    // Key 5 from ts 160: three updates, then the end packet three times.
    for (i, d) in [160u16, 320, 480].iter().enumerate() {
        f.handle_packet(now, &event(101, 1 + i as u16, 160, 5, false, *d))
            .unwrap();
    }
    for i in 0..3 {
        f.handle_packet(now, &event(101, 4 + i, 160, 5, true, 640))
            .unwrap();
    }
    f.handle_packet(now, &rtp(8, 7, 800, 5, &payload(7)))
        .unwrap();
    let events: Vec<FramerEvent> = std::iter::from_fn(|| f.poll_event()).collect();
    assert_eq!(events.len(), 1 + 1 + 4 + 1, "{events:?}");
    assert!(matches!(events[0], FramerEvent::Frame(_)));
    match &events[1] {
        FramerEvent::Dtmf(d) => {
            assert_eq!(d.digit, DtmfDigit::from_char('5').unwrap());
            assert_eq!(d.end, DigitEnd::EndPacket);
            assert_eq!(d.duration_ts, 640);
        }
        other => panic!("expected the key, got {other:?}"),
    }
    // The event's time (ts 160..800) is silence before the next audio.
    assert!(events[2..6]
        .iter()
        .all(|e| matches!(e, FramerEvent::Frame(fr) if fr.iter().all(|s| *s == 0))));
    assert_eq!(f.stats().digits, 1);
}

#[test]
fn finishing_completes_the_last_frame_and_ends_an_unterminated_key() {
    let mut f = LegFramer::new(FramerConfig::default());
    let now = Instant::now();
    f.handle_packet(now, &rtp(0, 0, 0, 5, &[0x00; 100]))
        .unwrap();
    f.handle_packet(now, &event(101, 1, 100, 11, false, 160))
        .unwrap();
    assert!(f.poll_event().is_none());
    f.finish();
    let events: Vec<FramerEvent> = std::iter::from_fn(|| f.poll_event()).collect();
    assert_eq!(events.len(), 2);
    assert!(
        matches!(&events[0], FramerEvent::Dtmf(d) if d.digit.to_char() == '#' && d.end == DigitEnd::Timeout)
    );
    match &events[1] {
        FramerEvent::Frame(fr) => {
            assert!(fr[..100].iter().all(|s| *s == ulaw_decode(0x00) && *s != 0));
            assert!(fr[100..].iter().all(|s| *s == 0));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn not_rtp_is_an_error_and_changes_nothing() {
    let mut f = LegFramer::new(FramerConfig::default());
    assert!(f.handle_packet(Instant::now(), &[0x80, 8, 0]).is_err());
    assert!(f.handle_packet(Instant::now(), &[0x40; 20]).is_err());
    assert_eq!(f.stats(), FramerStats::default());
}

fn frame_of(v: i16) -> Box<Frame> {
    Box::new([v; FRAME_SAMPLES])
}

#[test]
fn stereo_interleaves_caller_left_callee_right() {
    let mut s = StereoFramer::default();
    s.push(Side::Caller, frame_of(1));
    assert_eq!(s.poll_frame(), None, "waits for the callee");
    s.push(Side::Callee, frame_of(-2));
    let f = s.poll_frame().unwrap();
    assert_eq!(f.len(), FRAME_SAMPLES * 2);
    assert_eq!(&f[..4], &[1, -2, 1, -2]);
    assert_eq!(pcm_le_bytes(&f).len(), 2 * FRAME_BYTES);
}

#[test]
fn stereo_fills_a_silent_leg_once_the_other_is_too_far_ahead() {
    let mut s = StereoFramer::new(3);
    for v in 1..=4 {
        s.push(Side::Callee, frame_of(v));
    }
    let f = s.poll_frame().unwrap();
    assert_eq!(
        &f[..4],
        &[0, 1, 0, 1],
        "caller silent, callee's first frame"
    );
    assert_eq!(s.poll_frame(), None, "three frames ahead is allowed");
    s.push(Side::Caller, frame_of(9));
    assert_eq!(&s.poll_frame().unwrap()[..2], &[9, 2]);
    let rest = s.finish();
    assert_eq!(rest.len(), 2);
    assert_eq!(&rest[1][..2], &[0, 4]);
}

proptest! {
    /// Whatever the packets (order, gaps, duplicates, SSRCs, sizes, other
    /// payload types), nothing panics, every frame is whole, and the
    /// frames hold exactly the audio and silence counted.
    #[test]
    fn frames_are_always_whole_and_account_for_every_sample(
        packets in proptest::collection::vec(
            (0u8..3, any::<u16>(), -2000i32..4000, 0usize..400, 0u32..3),
            0..80,
        )
    ) {
        let mut f = LegFramer::new(FramerConfig {
            max_gap: Duration::from_millis(200),
            ..FramerConfig::default()
        });
        let now = Instant::now();
        let mut ts = 0u32;
        for (kind, seq, jump, len, ssrc) in packets {
            ts = ts.wrapping_add(jump as u32);
            let pt = [0u8, 8, 13][kind as usize];
            let pl = vec![0x55u8; len];
            f.handle_packet(now, &rtp(pt, seq, ts, ssrc, &pl)).unwrap();
        }
        f.finish();
        let mut n = 0u64;
        while let Some(e) = f.poll_event() {
            if let FramerEvent::Frame(fr) = e {
                prop_assert_eq!(fr.len(), FRAME_SAMPLES);
                n += 1;
            }
        }
        let s = f.stats();
        prop_assert_eq!(n, s.frames);
        prop_assert_eq!(n * FRAME_SAMPLES as u64, s.audio_samples + s.silence_samples);
    }

    /// Random bytes are an error or a packet, never a panic.
    #[test]
    fn any_datagram_is_safe(data in proptest::collection::vec(any::<u8>(), 0..300)) {
        let mut f = LegFramer::new(FramerConfig::default());
        let _ = f.handle_packet(Instant::now(), &data);
        f.finish();
    }

    /// A stereo framer never holds more than the skew plus one frame of a
    /// leg whose partner is silent, and every stereo frame is whole.
    #[test]
    fn stereo_memory_is_bounded(sides in proptest::collection::vec(any::<bool>(), 0..200)) {
        let mut s = StereoFramer::new(4);
        for caller in sides {
            s.push(if caller { Side::Caller } else { Side::Callee }, frame_of(1));
            while let Some(f) = s.poll_frame() {
                prop_assert_eq!(f.len(), 2 * FRAME_SAMPLES);
            }
            prop_assert!(s.caller.len() <= 4 && s.callee.len() <= 4);
        }
    }
}
