use super::*;

const PT: u8 = 101;
const START: RtpContinuity = RtpContinuity {
    ssrc: 0xabcd_0001,
    next_seq: 1000,
    next_ts: 16000,
};

fn digit(c: char) -> DtmfDigit {
    DtmfDigit::from_char(c).unwrap()
}

/// The packets of one key press, 100 ms at 50 ms updates: two updates
/// then three end packets.
fn press(c: char, start: RtpContinuity) -> (Vec<Vec<u8>>, RtpContinuity) {
    let sender = DtmfSender::new(digit(c), DtmfSendConfig::new(PT, start));
    let mut s2 = DtmfSender::new(digit(c), DtmfSendConfig::new(PT, start));
    let t = Instant::now();
    let mut n = 0;
    while s2.poll_packet(t + Duration::from_secs(n)).is_some() {
        n += 1;
    }
    let next = s2.continuity();
    (sender.packets().into_iter().map(|(_, p)| p).collect(), next)
}

fn feed(det: &mut DtmfDetector, now: Instant, packets: &[Vec<u8>]) -> Vec<DetectedDigit> {
    for p in packets {
        assert_eq!(det.handle_packet(now, p), Ok(true));
    }
    std::iter::from_fn(|| det.poll_event()).collect()
}

fn keys(events: &[DetectedDigit]) -> String {
    events.iter().map(|e| e.digit.to_char()).collect()
}

#[test]
fn digits_and_codes() {
    let all = "0123456789*#ABCD";
    for (code, c) in all.chars().enumerate() {
        let d = DtmfDigit::from_code(code as u8).unwrap();
        assert_eq!(d.to_char(), c);
        assert_eq!(DtmfDigit::from_char(c), Some(d));
        assert_eq!(DtmfDigit::from_char(c.to_ascii_lowercase()), Some(d));
        assert_eq!(d.to_string(), c.to_string());
    }
    assert_eq!(DtmfDigit::from_code(16), None);
    assert_eq!(DtmfDigit::from_char('E'), None);
    assert_eq!(DtmfDigit::from_char(' '), None);
}

#[test]
fn telephone_event_payload() {
    let ev = TelephoneEvent {
        event: 11,
        end: true,
        volume: 10,
        duration: 800,
    };
    let mut buf = Vec::new();
    ev.write(&mut buf);
    assert_eq!(buf, vec![11, 0x8a, 0x03, 0x20]);
    assert_eq!(TelephoneEvent::parse(&buf), Ok(ev));
    // The R bit is ignored.
    assert_eq!(
        TelephoneEvent::parse(&[5, 0x4a, 0, 160]).unwrap().volume,
        10
    );
    assert_eq!(
        TelephoneEvent::parse(&[5, 0, 0]),
        Err(DtmfError::ShortPayload(3))
    );
}

#[test]
fn sender_packets_follow_rfc4733() {
    let packets = DtmfSender::new(digit('5'), DtmfSendConfig::new(PT, START)).packets();
    let times: Vec<u128> = packets.iter().map(|(t, _)| t.as_millis()).collect();
    assert_eq!(times, vec![0, 50, 100, 150, 200]);
    // Header: marker + PT 101, seq 1000, ts 16000, SSRC; payload: event 5,
    // volume 10, duration 400.
    assert_eq!(
        packets[0].1,
        vec![
            0x80,
            0x80 | 101,
            0x03,
            0xe8,
            0,
            0,
            0x3e,
            0x80,
            0xab,
            0xcd,
            0,
            1,
            5,
            10,
            0x01,
            0x90
        ]
    );
    let expect = [
        (false, 400u16, 1000u16),
        (false, 800, 1001),
        (true, 800, 1002),
        (true, 800, 1003),
        (true, 800, 1004),
    ];
    for (k, (_, p)) in packets.iter().enumerate() {
        let rtp = parse_rtp(p).unwrap();
        let ev = TelephoneEvent::parse(rtp.payload).unwrap();
        assert_eq!(rtp.marker, k == 0);
        assert_eq!(rtp.timestamp, 16000);
        assert_eq!((ev.end, ev.duration, rtp.seq), expect[k], "packet {k}");
        assert_eq!(ev.event, 5);
    }
}

#[test]
fn sender_paces_and_continues_the_stream() {
    let config = DtmfSendConfig {
        duration: Duration::from_millis(70),
        interval: Duration::from_millis(20),
        volume: 99,
        ..DtmfSendConfig::new(PT, START)
    };
    let mut s = DtmfSender::new(digit('#'), config);
    let t0 = Instant::now();
    assert_eq!(s.poll_timeout(), None);
    let mut sent = Vec::new();
    let mut now = t0;
    while let Some(p) = s.poll_packet(now) {
        sent.push(((now - t0).as_millis(), p));
        assert_eq!(s.poll_packet(now), None);
        now = s.poll_timeout().unwrap_or(now);
    }
    assert!(s.is_finished());
    assert_eq!(s.poll_timeout(), None);
    // 560 ts units at 160 per update: 4 updates (160, 320, 480, 560), 3 ends.
    let durations: Vec<(u128, u16, bool)> = sent
        .iter()
        .map(|(t, p)| {
            let ev = TelephoneEvent::parse(&p[12..]).unwrap();
            assert_eq!(ev.volume, 63);
            (*t, ev.duration, ev.end)
        })
        .collect();
    assert_eq!(
        durations,
        vec![
            (0, 160, false),
            (20, 320, false),
            (40, 480, false),
            (60, 560, false),
            (80, 560, true),
            (100, 560, true),
            (120, 560, true)
        ]
    );
    // Audio resumes with the next sequence number, 20 ms after the last
    // end packet in timestamp terms.
    assert_eq!(
        s.continuity(),
        RtpContinuity {
            ssrc: START.ssrc,
            next_seq: 1007,
            next_ts: 16000 + 960 + 160
        }
    );
}

#[test]
fn one_press_is_one_digit_despite_three_end_packets() {
    let mut det = DtmfDetector::new(PT);
    let (packets, _) = press('7', START);
    let now = Instant::now();
    let events = feed(&mut det, now, &packets);
    assert_eq!(
        events,
        vec![DetectedDigit {
            digit: digit('7'),
            duration_ts: 800,
            duration: Duration::from_millis(100),
            volume: 10,
            ssrc: START.ssrc,
            timestamp: 16000,
            end: DigitEnd::EndPacket,
        }]
    );
    assert_eq!(det.poll_timeout(), None);
    // The same packets again (a duplicating network): nothing new.
    assert!(feed(&mut det, now, &packets).is_empty());
}

#[test]
fn retransmitted_start_and_duplicates_do_not_repeat_a_digit() {
    let mut det = DtmfDetector::new(PT);
    let (p, _) = press('1', START);
    let now = Instant::now();
    let order = [
        &p[0], &p[0], &p[1], &p[0], &p[1], &p[2], &p[0], &p[3], &p[4],
    ];
    let events = feed(&mut det, now, &order.map(|p| p.clone()));
    assert_eq!(keys(&events), "1");
    assert_eq!(events[0].duration_ts, 800);
}

#[test]
fn consecutive_presses_of_one_key_are_separate_digits() {
    let mut det = DtmfDetector::new(PT);
    let (a, next) = press('1', START);
    let (b, next) = press('1', next);
    let (c, _) = press('#', next);
    let now = Instant::now();
    let all: Vec<Vec<u8>> = [a, b, c].concat();
    let events = feed(&mut det, now, &all);
    assert_eq!(keys(&events), "11#");
    assert!(events.iter().all(|e| e.end == DigitEnd::EndPacket));
}

#[test]
fn lost_middle_packets_still_give_the_digit() {
    let mut det = DtmfDetector::new(PT);
    let (p, _) = press('9', START);
    let events = feed(&mut det, Instant::now(), &[p[0].clone(), p[3].clone()]);
    assert_eq!(keys(&events), "9");
    assert_eq!(events[0].duration_ts, 800);
    // Only end packets arrived (start lost).
    let mut det = DtmfDetector::new(PT);
    let events = feed(&mut det, Instant::now(), &p[2..]);
    assert_eq!(keys(&events), "9");
}

#[test]
fn lost_end_packets_end_the_digit_at_the_next_event() {
    let mut det = DtmfDetector::new(PT);
    let (a, next) = press('4', START);
    let (b, _) = press('2', next);
    let now = Instant::now();
    let events = feed(&mut det, now, &a[..2]);
    assert!(events.is_empty());
    let events = feed(&mut det, now, &b);
    assert_eq!(keys(&events), "42");
    assert_eq!(events[0].end, DigitEnd::NextEvent);
    assert_eq!(events[0].duration_ts, 800);
    assert_eq!(events[1].end, DigitEnd::EndPacket);
    // A's end packets arriving late are ignored.
    assert!(feed(&mut det, now, &a[2..]).is_empty());
}

#[test]
fn a_stream_without_end_packets_times_out() {
    let mut det = DtmfDetector::new(PT).with_timeout(Duration::from_millis(500));
    let (p, _) = press('A', START);
    let t0 = Instant::now();
    assert!(feed(&mut det, t0, &p[..1]).is_empty());
    let t1 = t0 + Duration::from_millis(50);
    assert!(feed(&mut det, t1, &p[1..2]).is_empty());
    assert_eq!(det.poll_timeout(), Some(t1 + Duration::from_millis(500)));
    det.handle_timeout(t1 + Duration::from_millis(499));
    assert_eq!(det.poll_event(), None);
    det.handle_timeout(t1 + Duration::from_millis(500));
    let e = det.poll_event().unwrap();
    assert_eq!(
        (e.digit, e.end, e.duration_ts),
        (digit('A'), DigitEnd::Timeout, 800)
    );
    assert_eq!(det.poll_event(), None);
    assert_eq!(det.poll_timeout(), None);
    // Its end packets, late: no second report.
    assert!(feed(&mut det, t1 + Duration::from_secs(1), &p[2..]).is_empty());
}

#[test]
fn reordered_packets_of_an_earlier_event_are_ignored() {
    let mut det = DtmfDetector::new(PT);
    let (a, next) = press('3', START);
    let (b, _) = press('6', next);
    let now = Instant::now();
    // B starts before A's first packet arrives (A's earlier packets lost
    // until then): A is not reported from a stale packet after B began.
    let events = feed(&mut det, now, &[b[0].clone(), a[1].clone(), b[2].clone()]);
    assert_eq!(keys(&events), "6");
}

#[test]
fn ssrc_change_starts_a_new_event() {
    let mut det = DtmfDetector::new(PT);
    let (a, _) = press('8', START);
    let (b, _) = press('8', RtpContinuity { ssrc: 77, ..START });
    let now = Instant::now();
    let events = feed(&mut det, now, &[a[0].clone(), b[0].clone(), b[2].clone()]);
    assert_eq!(keys(&events), "88");
    assert_eq!(
        (events[0].ssrc, events[0].end),
        (START.ssrc, DigitEnd::NextEvent)
    );
    assert_eq!(events[1].ssrc, 77);
}

#[test]
fn other_payloads_and_garbage() {
    let mut det = DtmfDetector::new(PT);
    let now = Instant::now();
    let mut audio = Vec::new();
    write_rtp_header(&mut audio, false, 0, 1, 2, 3);
    audio.extend_from_slice(&[0xff; 160]);
    assert_eq!(det.handle_packet(now, &audio), Ok(false));
    let mut short = Vec::new();
    write_rtp_header(&mut short, false, PT, 1, 2, 3);
    short.extend_from_slice(&[1, 2]);
    assert_eq!(
        det.handle_packet(now, &short),
        Err(DtmfError::ShortPayload(2))
    );
    assert_eq!(
        det.handle_packet(now, &[1, 2, 3]),
        Err(DtmfError::Rtp(RtpError::Truncated))
    );
    // Event 16 (hook flash) is not a key.
    let mut flash = Vec::new();
    write_rtp_header(&mut flash, true, PT, 1, 2, 3);
    TelephoneEvent {
        event: 16,
        end: true,
        volume: 0,
        duration: 800,
    }
    .write(&mut flash);
    assert_eq!(det.handle_packet(now, &flash), Ok(true));
    assert_eq!(det.poll_event(), None);
    assert_eq!(det.poll_timeout(), None);
}

#[test]
fn clock_rate_scales_the_duration() {
    let mut det = DtmfDetector::new(PT).with_clock_rate(48000);
    let mut p = Vec::new();
    write_rtp_header(&mut p, true, PT, 1, 2, 3);
    TelephoneEvent {
        event: 0,
        end: true,
        volume: 0,
        duration: 4800,
    }
    .write(&mut p);
    det.handle_packet(Instant::now(), &p).unwrap();
    assert_eq!(
        det.poll_event().unwrap().duration,
        Duration::from_millis(100)
    );
}

#[test]
fn sip_info_dtmf_relay_bodies() {
    let d = |c| DtmfDigit::from_char(c).unwrap();
    assert_eq!(
        parse_dtmf_relay(b"Signal=5\r\nDuration=160\r\n"),
        Ok(InfoDtmf {
            digit: d('5'),
            duration: Some(Duration::from_millis(160))
        })
    );
    assert_eq!(
        parse_dtmf_relay(b"signal= *\nDURATION = 250"),
        Ok(InfoDtmf {
            digit: d('*'),
            duration: Some(Duration::from_millis(250))
        })
    );
    assert_eq!(
        parse_dtmf_relay(b"Signal=#\r\n"),
        Ok(InfoDtmf {
            digit: d('#'),
            duration: None
        })
    );
    assert_eq!(parse_dtmf_relay(b"Signal=11\r\n").unwrap().digit, d('#'));
    assert_eq!(parse_dtmf_relay(b"Signal=d\r\n").unwrap().digit, d('D'));
    assert_eq!(
        parse_dtmf_relay(b"Foo=bar\r\nSignal=0\r\n\r\n")
            .unwrap()
            .digit,
        d('0')
    );
    assert_eq!(
        parse_dtmf_relay(b"Duration=160\r\n"),
        Err(InfoDtmfError::MissingSignal)
    );
    assert_eq!(parse_dtmf_relay(b""), Err(InfoDtmfError::MissingSignal));
    assert_eq!(
        parse_dtmf_relay(b"Signal=\r\n"),
        Err(InfoDtmfError::BadSignal(String::new()))
    );
    assert_eq!(
        parse_dtmf_relay(b"Signal=X\r\n"),
        Err(InfoDtmfError::BadSignal("X".into()))
    );
    assert_eq!(
        parse_dtmf_relay(b"Signal=16\r\n"),
        Err(InfoDtmfError::BadSignal("16".into()))
    );
    assert_eq!(
        parse_dtmf_relay(b"Signal=12 3"),
        Err(InfoDtmfError::BadSignal("12 3".into()))
    );
    assert_eq!(
        parse_dtmf_relay(b"Signal=1\r\nDuration=-5\r\n"),
        Err(InfoDtmfError::BadDuration("-5".into()))
    );
    assert_eq!(
        parse_dtmf_relay(b"Signal=\xff"),
        Err(InfoDtmfError::NotText)
    );
}

#[test]
fn sip_info_dtmf_bodies_and_content_types() {
    let d = |c| DtmfDigit::from_char(c).unwrap();
    assert_eq!(
        parse_dtmf(b"5"),
        Ok(InfoDtmf {
            digit: d('5'),
            duration: None
        })
    );
    assert_eq!(parse_dtmf(b" #\r\n").unwrap().digit, d('#'));
    assert_eq!(
        parse_dtmf(b"55"),
        Err(InfoDtmfError::BadSignal("55".into()))
    );
    assert_eq!(
        parse_dtmf(b""),
        Err(InfoDtmfError::BadSignal(String::new()))
    );
    assert_eq!(
        parse_info_dtmf("Application/DTMF-Relay", b"Signal=2")
            .unwrap()
            .digit,
        d('2')
    );
    assert_eq!(
        parse_info_dtmf("application/dtmf; charset=x", b"3")
            .unwrap()
            .digit,
        d('3')
    );
    assert_eq!(
        parse_info_dtmf("application/sdp", b"v=0"),
        Err(InfoDtmfError::ContentType("application/sdp".into()))
    );
    let body = dtmf_relay_body(d('#'), Duration::from_millis(160));
    assert_eq!(body, "Signal=#\r\nDuration=160\r\n");
    assert_eq!(
        parse_dtmf_relay(body.as_bytes()),
        Ok(InfoDtmf {
            digit: d('#'),
            duration: Some(Duration::from_millis(160))
        })
    );
}

#[test]
fn a_key_held_past_65535_units_is_one_digit_over_its_segments() {
    // RFC 4733 §2.5.1.3: a 10 s press at 8 kHz is a first segment of 0xFFFF
    // units, then a second one at timestamp + 0xFFFF.
    let mut det = DtmfDetector::new(PT);
    let seg = |seq: u16, ts: u32, end: bool, duration: u16| {
        let mut p = Vec::new();
        write_rtp_header(&mut p, seq == 1, PT, seq, ts, 42);
        TelephoneEvent {
            event: 0,
            end,
            volume: 10,
            duration,
        }
        .write(&mut p);
        p
    };
    let t0 = Instant::now();
    let first = 1000u32;
    let second = first + 0xFFFF;
    let packets = [
        seg(1, first, false, 400),
        seg(2, first, false, 30_000),
        seg(3, first, false, 0xFFFF),
        seg(4, first, false, 0xFFFF),
        seg(5, second, false, 400),
        seg(3, first, false, 0xFFFF), // late repeat of the first segment
        seg(6, second, true, 14_465),
        seg(7, second, true, 14_465),
    ];
    let events = feed(&mut det, t0, &packets);
    assert_eq!(events.len(), 1, "{events:?}");
    let e = events[0];
    assert_eq!(
        (e.digit, e.end, e.timestamp),
        (digit('0'), DigitEnd::EndPacket, first)
    );
    assert_eq!(e.duration_ts, 80_000);
    assert_eq!(e.duration, Duration::from_secs(10));
}
