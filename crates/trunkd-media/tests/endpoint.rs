//! The media endpoint over real sockets on 127.0.0.1: a prompt played by
//! the player arrives as the recorder writes it, and RFC 4733 digits sent
//! by the DTMF sender are detected once each.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use trunkd_media::endpoint::dtmf::{DigitEnd, DtmfDetector, DtmfDigit, DtmfSendConfig, DtmfSender};
use trunkd_media::endpoint::g711::G711;
use trunkd_media::endpoint::net::send_paced;
use trunkd_media::endpoint::player::{Player, PlayerConfig, Repeat};
use trunkd_media::endpoint::recorder::{Recorder, RecorderConfig};
use trunkd_media::endpoint::wav::{downsample_16k_to_8k, read_wav_file_8k, write_wav_file_8k};
use trunkd_media::endpoint::RtpContinuity;

/// Every test finishes well within this, or fails.
const BOUND: Duration = Duration::from_secs(20);

fn temp(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("trunkd-endpoint-{}-{name}", std::process::id()))
}

async fn pair() -> (UdpSocket, UdpSocket, SocketAddr) {
    let tx = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let rx = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let to = rx.local_addr().unwrap();
    (tx, rx, to)
}

/// Receives until the socket has been quiet for `idle`, handing each
/// datagram to `f` with its arrival time.
async fn receive_until_idle(
    rx: &UdpSocket,
    idle: Duration,
    mut f: impl FnMut(Instant, &[u8]),
) -> usize {
    let mut buf = vec![0u8; 2048];
    let mut n = 0;
    while let Ok(Ok((len, _))) = tokio::time::timeout(idle, rx.recv_from(&mut buf)).await {
        f(Instant::now(), &buf[..len]);
        n += 1;
    }
    n
}

/// A test signal: a 440 Hz tone over a slow ramp, so every packet differs.
fn signal(n: usize) -> Vec<i16> {
    (0..n)
        .map(|i| {
            let t = i as f64 / 8000.0;
            (9000.0 * (2.0 * std::f64::consts::PI * 440.0 * t).sin() + (i as f64 * 3.0) % 6000.0
                - 3000.0) as i16
        })
        .collect()
}

/// Plays `prompt` from `tx` to `to` while `rx` records; returns what the
/// recording holds.
async fn play_and_record(
    prompt: Vec<i16>,
    config: PlayerConfig,
    name: &str,
) -> (Vec<i16>, u64, usize) {
    let (tx, rx, to) = pair().await;
    let out = temp(name);
    let mut recorder = Recorder::create(&out, RecorderConfig::default()).unwrap();
    let receiving = async {
        let n = receive_until_idle(&rx, Duration::from_millis(500), |_, p| {
            recorder.handle_packet(p).unwrap()
        })
        .await;
        (n, recorder)
    };
    let mut player = Player::new(prompt, config);
    let sending = async { send_paced(&tx, to, &mut player).await.unwrap() };
    let (sent, (received, recorder)) =
        tokio::time::timeout(BOUND, async { tokio::join!(sending, receiving) })
            .await
            .unwrap();
    let stats = recorder.finish().unwrap();
    assert_eq!(stats.late_packets, 0);
    let recorded = read_wav_file_8k(&out).unwrap();
    std::fs::remove_file(&out).unwrap();
    (recorded, sent, received)
}

#[tokio::test]
async fn a_wav_prompt_played_over_udp_is_recorded_sample_for_sample() {
    // The prompt as a file, read back the way a prompt would be.
    let original = signal(8000);
    let wav = temp("prompt.wav");
    write_wav_file_8k(&wav, &original).unwrap();
    let prompt = read_wav_file_8k(&wav).unwrap();
    std::fs::remove_file(&wav).unwrap();
    assert_eq!(prompt, original);

    let start = RtpContinuity::random();
    let (recorded, sent, received) =
        play_and_record(prompt, PlayerConfig::new(G711::Pcmu, start), "rec-pcmu.wav").await;
    assert_eq!((sent, received), (50, 50));
    assert_eq!(recorded.len(), 8000);
    for (i, (&r, &o)) in recorded.iter().zip(&original).enumerate() {
        // Exactly the G.711 round trip of each sample, so within half a
        // μ-law step of the original.
        assert_eq!(r, G711::Pcmu.decode(G711::Pcmu.encode(o)), "sample {i}");
        let step = 8i32 << ((!G711::Pcmu.encode(o) >> 4) & 7);
        assert!(
            (i32::from(r) - i32::from(o)).abs() <= step / 2,
            "sample {i}"
        );
    }
}

#[tokio::test]
async fn a_16khz_prompt_repeated_as_pcma_is_recorded_sample_for_sample() {
    let wideband: Vec<i16> = (0..3200)
        .map(|i| (8000.0 * (2.0 * std::f64::consts::PI * 1000.0 * i as f64 / 16000.0).sin()) as i16)
        .collect();
    let wav = temp("prompt16.wav");
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 16000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(&wav, spec).unwrap();
    wideband.iter().for_each(|&s| w.write_sample(s).unwrap());
    w.finalize().unwrap();
    let prompt = read_wav_file_8k(&wav).unwrap();
    std::fs::remove_file(&wav).unwrap();
    assert_eq!(prompt, downsample_16k_to_8k(&wideband));

    let config = PlayerConfig {
        payload_type: 8,
        repeat: Repeat::Times(2),
        ..PlayerConfig::new(G711::Pcma, RtpContinuity::random())
    };
    let (recorded, sent, received) = play_and_record(prompt.clone(), config, "rec-pcma.wav").await;
    // 1600 samples twice: 20 packets.
    assert_eq!((sent, received), (20, 20));
    let expected: Vec<i16> = prompt
        .iter()
        .chain(&prompt)
        .map(|&s| G711::Pcma.decode(G711::Pcma.encode(s)))
        .collect();
    assert_eq!(recorded.len(), 3200);
    assert!(
        recorded == expected,
        "recording differs from the A-law round trip of the prompt"
    );
}

#[tokio::test]
async fn dtmf_123_hash_over_udp_is_detected_once_each() {
    let (tx, rx, to) = pair().await;
    let mut detector = DtmfDetector::new(101);
    let mut keys = Vec::new();
    let mut audio_packets = 0;
    let receiving = async {
        receive_until_idle(&rx, Duration::from_millis(700), |now, p| {
            if !detector.handle_packet(now, p).unwrap() {
                audio_packets += 1;
            }
            detector.handle_timeout(now);
            while let Some(d) = detector.poll_event() {
                keys.push(d);
            }
        })
        .await
    };
    let sending = async {
        // A little audio first, then the digits continuing its stream.
        let mut player = Player::new(
            vec![0i16; 800],
            PlayerConfig::new(G711::Pcmu, RtpContinuity::random()),
        );
        let mut sent = send_paced(&tx, to, &mut player).await.unwrap();
        let mut next = player.continuity();
        for c in "123#".chars() {
            let config = DtmfSendConfig {
                interval: Duration::from_millis(20),
                ..DtmfSendConfig::new(101, next)
            };
            let mut sender = DtmfSender::new(DtmfDigit::from_char(c).unwrap(), config);
            let mut first = true;
            loop {
                while let Some(p) = sender.poll_packet(Instant::now()) {
                    tx.send_to(&p, to).await.unwrap();
                    sent += 1;
                    // The network duplicates the first packet of "2".
                    if c == '2' && first {
                        tx.send_to(&p, to).await.unwrap();
                        sent += 1;
                    }
                    first = false;
                }
                match sender.poll_timeout() {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => break,
                }
            }
            next = sender.continuity();
        }
        sent
    };
    let (sent, received) = tokio::time::timeout(BOUND, async { tokio::join!(sending, receiving) })
        .await
        .unwrap();
    // 5 audio packets; per digit 5 updates (100 ms at 20 ms) and 3 end
    // packets; one duplicate.
    assert_eq!(sent, 5 + 4 * 8 + 1);
    assert_eq!(received as u64, sent);
    assert_eq!(audio_packets, 5);
    let digits: String = keys.iter().map(|d| d.digit.to_char()).collect();
    assert_eq!(digits, "123#");
    for d in &keys {
        assert_eq!(d.end, DigitEnd::EndPacket);
        assert_eq!(d.duration, Duration::from_millis(100));
        assert_eq!(d.duration_ts, 800);
    }
    // One stream: the digits carry the audio's SSRC.
    assert!(keys.windows(2).all(|w| w[0].ssrc == w[1].ssrc));
    assert!(detector.poll_timeout().is_none());
}

/// What the relay does for an injection, without sockets: a tap follows the
/// peer's stream, a prompt and a digit continue it, and the receiving side
/// sees one stream (same SSRC, no sequence or timestamp discontinuity).
#[test]
fn injection_continues_the_relayed_stream() {
    use trunkd_media::endpoint::StreamTracker;
    let t0 = Instant::now();
    let ms = |n: u64| t0 + Duration::from_millis(n);
    let peer = RtpContinuity {
        ssrc: 0xfeed,
        next_seq: 65530,
        next_ts: 4_294_960_000,
    };
    let mut peer_player = Player::new(signal(1600), PlayerConfig::new(G711::Pcmu, peer));
    let mut tracker = StreamTracker::new();
    let mut on_wire = Vec::new();
    for k in 0..10 {
        let p = peer_player.poll_packet(ms(20 * k)).unwrap();
        tracker.observe(ms(20 * k), &p).unwrap();
        on_wire.push(p);
    }
    // Inject at the next packet time: a prompt, then a digit, then the
    // prompt again, each continuing the last.
    let start = tracker.continuity_at(ms(200), 8000).unwrap();
    assert_eq!(start, peer_player.continuity());
    let config = PlayerConfig {
        marker_on_first: false,
        ..PlayerConfig::new(G711::Pcmu, start)
    };
    let mut prompt = Player::new(signal(800), config);
    let mut now = ms(200);
    while !prompt.is_finished() {
        on_wire.extend(prompt.poll_packet(now));
        now += Duration::from_millis(20);
    }
    let dtmf = DtmfSender::new(
        DtmfDigit::from_char('5').unwrap(),
        DtmfSendConfig::new(101, prompt.continuity()),
    );
    let mut sender = dtmf;
    while !sender.is_finished() {
        on_wire.extend(sender.poll_packet(now));
        now += Duration::from_millis(50);
    }
    let after = sender.continuity();
    let mut again = Player::new(signal(320), PlayerConfig::new(G711::Pcmu, after));
    on_wire.extend(again.poll_packet(now));
    on_wire.extend(again.poll_packet(now + Duration::from_millis(20)));

    // Sequence numbers run on by one across every source, one SSRC.
    let seqs: Vec<u16> = on_wire
        .iter()
        .map(|p| u16::from_be_bytes([p[2], p[3]]))
        .collect();
    assert!(
        seqs.windows(2).all(|w| w[1] == w[0].wrapping_add(1)),
        "{seqs:?}"
    );
    assert!(on_wire.iter().all(|p| p[8..12] == 0xfeedu32.to_be_bytes()));
    // A recorder on the far side: no resync, no late packet, and the only
    // silence is the DTMF event's time.
    let mut rec =
        Recorder::new(std::io::Cursor::new(Vec::new()), RecorderConfig::default()).unwrap();
    let mut det = DtmfDetector::new(101);
    for p in &on_wire {
        rec.handle_packet(p).unwrap();
        det.handle_packet(now, p).unwrap();
    }
    let stats = rec.finish().unwrap();
    assert_eq!(
        (stats.resyncs, stats.late_packets, stats.skipped_packets),
        (0, 0, 5)
    );
    assert_eq!(stats.audio_samples, 1600 + 800 + 320);
    // 2 updates + 3 end packets at 50 ms, and one 20 ms frame after.
    assert_eq!(stats.silence_samples, 4 * 400 + 160);
    assert_eq!(det.poll_event().map(|d| d.digit.to_char()), Some('5'));
}
