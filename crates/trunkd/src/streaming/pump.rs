//! The pump: the relay tap's packets (both legs of the call's first audio
//! stream) through one [`LegFramer`] per leg (and a [`StereoFramer`] in
//! stereo) to the sink streams' queues. It never waits on a sink: a full
//! queue loses the frame (counted per stream and in
//! `streaming_frames_total{result="dropped"}`).

use crate::deadline::sleep_until;
use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};
use trunkd_media::endpoint::framer::{
    pcm_le_bytes, FramerConfig, FramerEvent, LegFramer, StereoFramer,
};
use trunkd_media::endpoint::g711::G711;
use trunkd_media::endpoint::recorder::Side;
use trunkd_media::{Leg, TappedPacket};

use super::metrics::StreamingMetrics;
use super::{LegName, SinkMsg};

/// One sink stream's queue, as the pump sees it.
pub(crate) struct Outlet {
    leg: LegName,
    sink: &'static str,
    tx: mpsc::Sender<SinkMsg>,
    started: bool,
    dropped: u64,
}

impl Outlet {
    pub(crate) fn new(leg: LegName, sink: &'static str, tx: mpsc::Sender<SinkMsg>) -> Self {
        Outlet {
            leg,
            sink,
            tx,
            started: false,
            dropped: 0,
        }
    }

    fn send(&mut self, msg: SinkMsg, metrics: &StreamingMetrics) {
        if self.tx.try_send(msg).is_err() {
            self.dropped += 1;
            metrics.frame(self.sink, "dropped", 1);
        }
    }
}

/// Where a call's two legs are in the relay's tapped packets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// A bridged call: the first stream, caller on leg A, callee on B.
    Bridge,
    /// A recording session (SIPREC): everything arrives on leg A, the
    /// caller's audio as stream 0 and the callee's as stream 1 (RFC 7866
    /// recorders send one stream per participant; one stream is caller
    /// only).
    Recording,
}

/// The pure part of the pump: packets in, sink messages out.
pub(crate) struct Pump {
    source: Source,
    framers: [LegFramer; 2],
    codecs: [Option<&'static str>; 2],
    payload_types: Vec<(u8, G711)>,
    /// The start frame's codec for a stream whose first event is a key.
    default_codec: &'static str,
    stereo: Option<StereoFramer>,
    pub(crate) outlets: Vec<Outlet>,
    metrics: StreamingMetrics,
}

fn leg_index(leg: Leg) -> usize {
    match leg {
        Leg::A => 0,
        Leg::B => 1,
    }
}

const LEG_NAMES: [LegName; 2] = [LegName::Caller, LegName::Callee];

impl Pump {
    pub(crate) fn new(
        framer: FramerConfig,
        default_codec: &'static str,
        stereo: bool,
        outlets: Vec<Outlet>,
        metrics: StreamingMetrics,
    ) -> Self {
        Pump {
            source: Source::Bridge,
            payload_types: framer.payload_types.clone(),
            framers: [LegFramer::new(framer.clone()), LegFramer::new(framer)],
            codecs: [None, None],
            default_codec,
            stereo: stereo.then(StereoFramer::default),
            outlets,
            metrics,
        }
    }

    /// Reads legs from the tapped packets as `source` places them.
    pub(crate) fn with_source(mut self, source: Source) -> Self {
        self.source = source;
        self
    }

    /// One tapped packet.
    pub(crate) fn packet(&mut self, p: &TappedPacket) {
        if p.rtcp {
            return;
        }
        let i = match self.source {
            Source::Bridge if p.stream == 0 => leg_index(p.leg),
            Source::Recording if p.leg == Leg::A && p.stream < 2 => p.stream,
            _ => return,
        };
        if self.codecs[i].is_none() {
            let pt = p.data.get(1).map(|b| b & 0x7f);
            if let Some(&(_, law)) = self.payload_types.iter().find(|(t, _)| Some(*t) == pt) {
                let codec = super::codec_name(law);
                self.codecs[i] = Some(codec);
                self.start(i, codec);
            }
        }
        // Not RTP: the relay forwarded it; nothing to stream.
        let _ = self.framers[i].handle_packet(p.arrival, &p.data);
        self.drain(i);
    }

    /// Sends the start to the streams of leg `i` that have none yet.
    fn start(&mut self, i: usize, codec: &'static str) {
        let leg = LEG_NAMES[i];
        for o in &mut self.outlets {
            if !o.started && (o.leg == leg || o.leg == LegName::Both) {
                o.started = true;
                o.send(SinkMsg::Start { codec }, &self.metrics);
            }
        }
    }

    /// Ends key presses whose packets stopped.
    pub(crate) fn timeout(&mut self, now: std::time::Instant) {
        for i in 0..2 {
            self.framers[i].handle_timeout(now);
            self.drain(i);
        }
    }

    pub(crate) fn poll_timeout(&self) -> Option<std::time::Instant> {
        self.framers.iter().filter_map(|f| f.poll_timeout()).min()
    }

    /// The call is over: every partial frame completed and sent.
    pub(crate) fn finish(&mut self) {
        for i in 0..2 {
            self.framers[i].finish();
            self.drain(i);
        }
        if let Some(s) = &mut self.stereo {
            for f in s.finish() {
                let audio = Bytes::from(pcm_le_bytes(&f));
                for o in &mut self.outlets {
                    if o.leg == LegName::Both {
                        o.send(SinkMsg::Audio(audio.clone()), &self.metrics);
                    }
                }
            }
        }
    }

    fn drain(&mut self, i: usize) {
        let leg = LEG_NAMES[i];
        while let Some(ev) = self.framers[i].poll_event() {
            match ev {
                FramerEvent::Frame(frame) => match &mut self.stereo {
                    Some(s) => {
                        let side = if i == 0 { Side::Caller } else { Side::Callee };
                        s.push(side, frame);
                        while let Some(f) = s.poll_frame() {
                            let audio = Bytes::from(pcm_le_bytes(&f));
                            for o in &mut self.outlets {
                                if o.leg == LegName::Both {
                                    o.send(SinkMsg::Audio(audio.clone()), &self.metrics);
                                }
                            }
                        }
                    }
                    None => {
                        let audio = Bytes::from(pcm_le_bytes(&frame[..]));
                        for o in &mut self.outlets {
                            if o.leg == leg {
                                o.send(SinkMsg::Audio(audio.clone()), &self.metrics);
                            }
                        }
                    }
                },
                FramerEvent::Dtmf(d) => {
                    // A key before any audio: the streams start with the
                    // offer's codec.
                    self.start(i, self.default_codec);
                    let digit = d.digit.to_char();
                    for o in &mut self.outlets {
                        if o.leg == leg || o.leg == LegName::Both {
                            o.send(SinkMsg::Dtmf { digit, leg }, &self.metrics);
                        }
                    }
                }
            }
        }
    }
}

/// Runs the pump until `stop` or the tap closes; returns the frames each
/// outlet lost, in outlet order. The outlets' queues close when it returns,
/// which ends the sink streams.
pub(crate) async fn run(
    mut tap: mpsc::Receiver<TappedPacket>,
    mut stop: oneshot::Receiver<()>,
    mut pump: Pump,
) -> Vec<u64> {
    loop {
        let deadline = pump.poll_timeout();
        tokio::select! {
            p = tap.recv() => match p {
                Some(p) => pump.packet(&p),
                None => break,
            },
            _ = &mut stop => {
                // What the tap already holds is still the call's audio.
                while let Ok(p) = tap.try_recv() {
                    pump.packet(&p);
                }
                break;
            }
            _ = sleep_until(deadline) => pump.timeout(std::time::Instant::now()),
        }
    }
    pump.finish();
    pump.outlets.iter().map(|o| o.dropped).collect()
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use trunkd_media::endpoint::g711::alaw_decode;

    use super::*;

    fn tapped(leg: Leg, pt: u8, seq: u16, payload: &[u8]) -> TappedPacket {
        tapped_at(leg, pt, seq, u32::from(seq) * 160, payload)
    }

    fn tapped_at(leg: Leg, pt: u8, seq: u16, ts: u32, payload: &[u8]) -> TappedPacket {
        let mut data = vec![0x80, pt];
        data.extend_from_slice(&seq.to_be_bytes());
        data.extend_from_slice(&ts.to_be_bytes());
        data.extend_from_slice(&[0, 0, 0, 1]);
        data.extend_from_slice(payload);
        TappedPacket {
            leg,
            stream: 0,
            rtcp: false,
            arrival: Instant::now(),
            data: Bytes::from(data),
        }
    }

    fn drain(rx: &mut mpsc::Receiver<SinkMsg>) -> Vec<SinkMsg> {
        std::iter::from_fn(|| rx.try_recv().ok()).collect()
    }

    #[test]
    fn per_leg_each_leg_goes_to_its_own_stream_after_a_start_with_its_codec() {
        let (tx_a, mut rx_a) = mpsc::channel(16);
        let (tx_b, mut rx_b) = mpsc::channel(16);
        let outlets = vec![
            Outlet::new(LegName::Caller, "websocket", tx_a),
            Outlet::new(LegName::Callee, "websocket", tx_b),
        ];
        let mut pump = Pump::new(
            FramerConfig::default(),
            "PCMU",
            false,
            outlets,
            StreamingMetrics::default(),
        );
        let pl: Vec<u8> = (0..160u16).map(|i| i as u8).collect();
        pump.packet(&tapped(Leg::A, 8, 1, &pl));
        pump.packet(&tapped(Leg::B, 0, 1, &[0xff; 160]));
        let a = drain(&mut rx_a);
        assert!(matches!(a[0], SinkMsg::Start { codec: "PCMA" }));
        match &a[1] {
            SinkMsg::Audio(b) => {
                assert_eq!(b.len(), 320);
                let expected: Vec<u8> = pl
                    .iter()
                    .flat_map(|x| alaw_decode(*x).to_le_bytes())
                    .collect();
                assert_eq!(&b[..], &expected[..]);
            }
            other => panic!("{other:?}"),
        }
        let b = drain(&mut rx_b);
        assert!(matches!(b[0], SinkMsg::Start { codec: "PCMU" }));
        assert_eq!(b.len(), 2);
    }

    #[test]
    fn a_full_queue_drops_and_counts_without_waiting() {
        let (tx, mut rx) = mpsc::channel(2);
        let metrics = StreamingMetrics::default();
        let mut pump = Pump::new(
            FramerConfig::default(),
            "PCMU",
            true,
            vec![Outlet::new(LegName::Both, "wav", tx)],
            metrics.clone(),
        );
        for seq in 0..5 {
            pump.packet(&tapped(Leg::A, 8, seq, &[0xd5; 160]));
            pump.packet(&tapped(Leg::B, 8, seq, &[0xd5; 160]));
        }
        // Start and one stereo frame fit; four frames were dropped.
        let got = drain(&mut rx);
        assert_eq!(got.len(), 2);
        assert!(matches!(&got[1], SinkMsg::Audio(b) if b.len() == 640));
        assert_eq!(pump.outlets[0].dropped, 4);
        let dropped = metrics
            .frames
            .get_or_create(&super::super::metrics::FrameLabels {
                sink: "wav",
                result: "dropped",
            })
            .get();
        assert_eq!(dropped, 4);
    }

    #[test]
    fn a_key_before_any_audio_starts_the_stream_with_the_offers_codec() {
        let (tx, mut rx) = mpsc::channel(16);
        let mut pump = Pump::new(
            FramerConfig::default(),
            "PCMA",
            true,
            vec![Outlet::new(LegName::Both, "websocket", tx)],
            StreamingMetrics::default(),
        );
        // Key 7: start, then the end packet three times.
        pump.packet(&tapped_at(Leg::B, 101, 1, 800, &[7, 0x0a, 0, 160]));
        for seq in 2..5 {
            pump.packet(&tapped_at(Leg::B, 101, seq, 800, &[7, 0x8a, 3, 0x20]));
        }
        let got = drain(&mut rx);
        assert_eq!(got.len(), 2, "{got:?}");
        assert!(matches!(got[0], SinkMsg::Start { codec: "PCMA" }));
        assert!(matches!(
            got[1],
            SinkMsg::Dtmf {
                digit: '7',
                leg: LegName::Callee
            }
        ));
    }
}
