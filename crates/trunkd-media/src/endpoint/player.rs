//! An RTP source playing 8 kHz samples (a prompt) as PCMU or PCMA, one
//! 20 ms packet (160 samples) at a time.
//!
//! Sans-IO: the caller sends what [`Player::poll_packet`] returns and sleeps
//! until [`Player::poll_timeout`]. The first `poll_packet` starts the clock
//! and returns the first packet at once; packet *k* is due 20·*k* ms later.
//! The packets can go out on trunkd's own socket or be injected into a
//! relayed leg: start from that leg's [`RtpContinuity`] and the peer sees
//! one continuous stream.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::g711::G711;
use super::rtp::{write_rtp_header, RtpContinuity};
use super::SAMPLES_PER_PACKET;

/// Packet interval (ptime) of the player.
pub const PTIME: Duration = Duration::from_millis(20);

/// If the caller polls this late for a packet, the player stops catching up
/// (which would send a burst of packets at once) and paces from now on.
pub const MAX_LAG: Duration = Duration::from_millis(100);

/// How many times the samples are played.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Repeat {
    /// This many times in a row, without a gap (0 plays nothing).
    Times(u32),
    /// Until stopped.
    Forever,
}

impl Repeat {
    /// Play once.
    pub const ONCE: Repeat = Repeat::Times(1);
}

/// How a [`Player`] encodes and numbers its packets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PlayerConfig {
    /// μ-law or A-law.
    pub codec: G711,
    /// RTP payload type: the codec's static one (0/8) or the dynamic one the
    /// SDP negotiated for it.
    pub payload_type: u8,
    /// SSRC, first sequence number and first timestamp.
    pub start: RtpContinuity,
    /// How many times to play the samples.
    pub repeat: Repeat,
    /// Set the marker bit on the first packet (the start of a talkspurt,
    /// RFC 3551 §4.1). Leave it on for a fresh stream and for an injection
    /// that follows silence; off continues a running talkspurt.
    pub marker_on_first: bool,
}

impl PlayerConfig {
    /// Plays once with the codec's static payload type, marker on the first
    /// packet.
    pub fn new(codec: G711, start: RtpContinuity) -> Self {
        PlayerConfig {
            codec,
            payload_type: codec.static_payload_type(),
            start,
            repeat: Repeat::ONCE,
            marker_on_first: true,
        }
    }
}

/// Plays samples as paced G.711 RTP packets.
#[derive(Debug)]
pub struct Player {
    samples: Arc<[i16]>,
    config: PlayerConfig,
    /// Next sample to play in the current repetition.
    cursor: usize,
    /// Repetitions started so far (the current one included).
    plays: u32,
    next: RtpContinuity,
    /// When packet 0 (since the last re-anchoring) was due.
    epoch: Option<Instant>,
    /// Packets due since `epoch`.
    since_epoch: u32,
    sent: u64,
    finished: bool,
}

impl Player {
    /// A player for `samples` (8 kHz; share one `Arc` between calls playing
    /// the same prompt).
    pub fn new(samples: impl Into<Arc<[i16]>>, config: PlayerConfig) -> Self {
        let samples = samples.into();
        let finished = samples.is_empty() || config.repeat == Repeat::Times(0);
        Player {
            samples,
            config,
            cursor: 0,
            plays: 1,
            next: config.start,
            epoch: None,
            since_epoch: 0,
            sent: 0,
            finished,
        }
    }

    /// The next packet if it is due at `now`, else `None` (also once
    /// finished). Call until it returns `None`, then sleep until
    /// [`Player::poll_timeout`].
    pub fn poll_packet(&mut self, now: Instant) -> Option<Vec<u8>> {
        if self.finished {
            return None;
        }
        let epoch = *self.epoch.get_or_insert(now);
        let due = epoch + PTIME * self.since_epoch;
        if now < due {
            return None;
        }
        if now.duration_since(due) > MAX_LAG {
            self.epoch = Some(now);
            self.since_epoch = 0;
        }
        self.since_epoch += 1;
        Some(self.build_packet())
    }

    /// When the next packet is due: `None` before the first
    /// [`Player::poll_packet`] (which starts the clock) and once finished.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.finished {
            return None;
        }
        self.epoch.map(|e| e + PTIME * self.since_epoch)
    }

    /// Whether every packet has been handed out (or the player was stopped).
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// Stops playing (barge-in); no more packets.
    pub fn stop(&mut self) {
        self.finished = true;
    }

    /// Where the stream continues: for the next prompt or DTMF into the same
    /// leg, or for the relay to resume the leg's numbering.
    pub fn continuity(&self) -> RtpContinuity {
        self.next
    }

    /// Packets handed out so far.
    pub fn packets_sent(&self) -> u64 {
        self.sent
    }

    fn build_packet(&mut self) -> Vec<u8> {
        let codec = self.config.codec;
        let mut packet = Vec::with_capacity(12 + SAMPLES_PER_PACKET);
        write_rtp_header(
            &mut packet,
            self.sent == 0 && self.config.marker_on_first,
            self.config.payload_type,
            self.next.next_seq,
            self.next.next_ts,
            self.next.ssrc,
        );
        while packet.len() < 12 + SAMPLES_PER_PACKET {
            if self.cursor == self.samples.len() {
                let more = match self.config.repeat {
                    Repeat::Forever => true,
                    Repeat::Times(n) => self.plays < n,
                };
                if !more {
                    // The last packet is padded with silence to 20 ms.
                    packet.resize(12 + SAMPLES_PER_PACKET, codec.silence());
                    self.finished = true;
                    break;
                }
                self.plays += 1;
                self.cursor = 0;
            }
            let take =
                (self.samples.len() - self.cursor).min(12 + SAMPLES_PER_PACKET - packet.len());
            codec.encode_into(&self.samples[self.cursor..self.cursor + take], &mut packet);
            self.cursor += take;
        }
        if !self.finished && self.cursor == self.samples.len() {
            self.finished = match self.config.repeat {
                Repeat::Forever => false,
                Repeat::Times(n) => self.plays >= n,
            };
        }
        self.next.next_seq = self.next.next_seq.wrapping_add(1);
        self.next.next_ts = self.next.next_ts.wrapping_add(SAMPLES_PER_PACKET as u32);
        self.sent += 1;
        packet
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::endpoint::g711::{alaw_decode, ulaw_decode};
    use crate::endpoint::rtp::parse_rtp;

    const START: RtpContinuity = RtpContinuity {
        ssrc: 0x1122_3344,
        next_seq: 65534,
        next_ts: u32::MAX - 200,
    };

    /// Drains every packet, polling at each due time.
    fn play_all(player: &mut Player, t0: Instant) -> Vec<(Duration, Vec<u8>)> {
        let mut out = Vec::new();
        let mut now = t0;
        for _ in 0..10_000 {
            while let Some(p) = player.poll_packet(now) {
                out.push((now - t0, p));
            }
            match player.poll_timeout() {
                Some(t) => now = t,
                None => return out,
            }
        }
        panic!("player never finished");
    }

    #[test]
    fn packets_are_20ms_of_g711_with_a_correct_header() {
        let samples: Vec<i16> = (0..400).map(|i| (i * 50) as i16).collect();
        let mut player = Player::new(samples.clone(), PlayerConfig::new(G711::Pcmu, START));
        let t0 = Instant::now();
        let packets = play_all(&mut player, t0);
        // 400 samples: 160 + 160 + 80 and 80 of silence.
        assert_eq!(packets.len(), 3);
        let times: Vec<_> = packets.iter().map(|(t, _)| t.as_millis()).collect();
        assert_eq!(times, vec![0, 20, 40]);
        for (k, (_, p)) in packets.iter().enumerate() {
            assert_eq!(p.len(), 12 + 160);
            let rtp = parse_rtp(p).unwrap();
            assert_eq!(rtp.marker, k == 0);
            assert_eq!(rtp.payload_type, 0);
            assert_eq!(rtp.ssrc, 0x1122_3344);
            assert_eq!(rtp.seq, 65534u16.wrapping_add(k as u16));
            assert_eq!(rtp.timestamp, (u32::MAX - 200).wrapping_add(160 * k as u32));
        }
        assert_eq!(
            &packets[0].1[..12],
            &[0x80, 0x80, 0xff, 0xfe, 0xff, 0xff, 0xff, 0x37, 0x11, 0x22, 0x33, 0x44]
        );
        let decoded: Vec<i16> = packets
            .iter()
            .flat_map(|(_, p)| p[12..].iter().map(|&b| ulaw_decode(b)))
            .collect();
        for (i, &s) in samples.iter().enumerate() {
            assert_eq!(decoded[i], ulaw_decode(G711::Pcmu.encode(s)), "sample {i}");
        }
        assert!(decoded[400..].iter().all(|&s| s == 0));
        assert!(player.is_finished());
        assert_eq!(
            player.continuity(),
            RtpContinuity {
                ssrc: 0x1122_3344,
                next_seq: 1,
                next_ts: (u32::MAX - 200).wrapping_add(480)
            }
        );
    }

    #[test]
    fn pcma_with_a_dynamic_payload_type() {
        let config = PlayerConfig {
            payload_type: 101,
            ..PlayerConfig::new(G711::Pcma, START)
        };
        let mut player = Player::new(vec![1000i16; 160], config);
        let p = player.poll_packet(Instant::now()).unwrap();
        assert_eq!(p[1], 0x80 | 101);
        assert!(p[12..]
            .iter()
            .all(|&b| alaw_decode(b) == alaw_decode(G711::Pcma.encode(1000))));
        assert!(player.is_finished());
        assert_eq!(player.poll_packet(Instant::now()), None);
    }

    #[test]
    fn repeats_run_on_without_a_gap() {
        // 100 samples × 4 = 400 samples = 3 packets, the repetitions packed
        // back to back across packet boundaries.
        let samples: Vec<i16> = (0..100).map(|i| i * 100).collect();
        let config = PlayerConfig {
            repeat: Repeat::Times(4),
            ..PlayerConfig::new(G711::Pcmu, START)
        };
        let mut player = Player::new(samples.clone(), config);
        let packets = play_all(&mut player, Instant::now());
        assert_eq!(packets.len(), 3);
        let bytes: Vec<u8> = packets.iter().flat_map(|(_, p)| p[12..].to_vec()).collect();
        let mut expected = Vec::new();
        for _ in 0..4 {
            G711::Pcmu.encode_into(&samples, &mut expected);
        }
        expected.resize(480, 0xff);
        assert_eq!(bytes, expected);
        let markers = packets.iter().filter(|(_, p)| p[1] & 0x80 != 0).count();
        assert_eq!(markers, 1);
    }

    #[test]
    fn exact_multiple_of_a_packet_has_no_silence_packet() {
        let mut player = Player::new(vec![0i16; 320], PlayerConfig::new(G711::Pcmu, START));
        assert_eq!(play_all(&mut player, Instant::now()).len(), 2);
        let config = PlayerConfig {
            repeat: Repeat::Times(3),
            ..PlayerConfig::new(G711::Pcmu, START)
        };
        let mut player = Player::new(vec![0i16; 160], config);
        assert_eq!(play_all(&mut player, Instant::now()).len(), 3);
    }

    #[test]
    fn forever_until_stopped_and_nothing_to_play() {
        let config = PlayerConfig {
            repeat: Repeat::Forever,
            ..PlayerConfig::new(G711::Pcmu, START)
        };
        let mut player = Player::new(vec![5i16; 50], config);
        let t0 = Instant::now();
        for k in 0..100u32 {
            assert!(player.poll_packet(t0 + PTIME * k).is_some(), "packet {k}");
        }
        player.stop();
        assert_eq!(player.poll_packet(t0 + PTIME * 100), None);
        assert_eq!(player.poll_timeout(), None);
        assert_eq!(player.continuity().next_seq, 65534u16.wrapping_add(100));

        let mut empty = Player::new(Vec::<i16>::new(), PlayerConfig::new(G711::Pcmu, START));
        assert!(empty.is_finished());
        assert_eq!(empty.poll_packet(t0), None);
        let zero = PlayerConfig {
            repeat: Repeat::Times(0),
            ..PlayerConfig::new(G711::Pcmu, START)
        };
        assert!(Player::new(vec![1i16; 10], zero).is_finished());
    }

    #[test]
    fn paces_at_20ms_and_does_not_burst_after_a_stall() {
        let mut player = Player::new(vec![0i16; 160 * 50], PlayerConfig::new(G711::Pcmu, START));
        let t0 = Instant::now();
        assert_eq!(player.poll_timeout(), None);
        assert!(player.poll_packet(t0).is_some());
        assert_eq!(player.poll_packet(t0), None);
        assert_eq!(player.poll_timeout(), Some(t0 + PTIME));
        assert_eq!(player.poll_packet(t0 + Duration::from_millis(19)), None);
        assert!(player.poll_packet(t0 + PTIME).is_some());
        // A little late: catches up, two packets at once.
        let late = t0 + Duration::from_millis(65);
        assert!(player.poll_packet(late).is_some());
        assert!(player.poll_packet(late).is_some());
        assert_eq!(player.poll_packet(late), None);
        assert_eq!(player.poll_timeout(), Some(t0 + Duration::from_millis(80)));
        // Stalled a second: one packet, then 20 ms pacing from there.
        let stall = t0 + Duration::from_secs(1);
        assert!(player.poll_packet(stall).is_some());
        assert_eq!(player.poll_packet(stall), None);
        assert_eq!(player.poll_timeout(), Some(stall + PTIME));
        assert_eq!(player.packets_sent(), 5);
    }
}
