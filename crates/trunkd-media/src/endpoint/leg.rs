//! trunkd as the far end of one leg of a relayed call: what an application
//! call (an IVR) does with the call's relay instead of bridging it.
//!
//! The relay keeps doing what it does for every call (latching, SRTP,
//! counters, quality); a [`LegEndpoint`] adds the two things an
//! application needs on a leg:
//!
//! * [`LegEndpoint::play`] paces a sans-IO source (a [`Player`] of a WAV
//!   prompt, a [`DtmfSender`]) into the leg through the relay's injection,
//!   which continues the SSRC, sequence and timestamps the peer was
//!   receiving (and encrypts under the leg's SRTP), replacing the other
//!   leg's audio while it plays;
//! * [`LegEndpoint::digits`] listens to what the leg's peer sends through a
//!   bounded relay tap and reports RFC 4733 digits as they end;
//! * [`LegEndpoint::mirror`] hands a copy of every packet played to a
//!   consumer (a call recording of what trunkd says): the relay's taps
//!   only see what peers send.
//!
//! The sources and the detector are the sans-IO pieces of this module's
//! parent; this file only moves their packets and time in and out.
//!
//! [`Player`]: super::player::Player
//! [`DtmfSender`]: super::dtmf::DtmfSender

use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::mpsc;

use super::dtmf::{DetectedDigit, DtmfDetector};
use super::net::PacedSource;
use crate::relay::{InjectOptions, Leg, RelayError, RelayHandle, TappedPacket};

/// How many tapped packets a digit listener may fall behind before the
/// relay drops them for it (a second of one stream).
const TAP_CAPACITY: usize = 64;

/// One leg (and stream) of a relay, with trunkd as the far end.
pub struct LegEndpoint<O> {
    relay: Arc<RelayHandle<O>>,
    leg: Leg,
    stream: usize,
    mirrors: Mutex<Vec<mpsc::Sender<PlayedPacket>>>,
}

/// A packet [`LegEndpoint::play`] injected, as the source made it (before
/// the relay continues the peer's SSRC, sequence and timestamps).
#[derive(Debug, Clone)]
pub struct PlayedPacket {
    pub sent: Instant,
    pub rtp: Vec<u8>,
}

impl<O> LegEndpoint<O> {
    pub fn new(relay: Arc<RelayHandle<O>>, leg: Leg, stream: usize) -> Self {
        LegEndpoint {
            relay,
            leg,
            stream,
            mirrors: Mutex::new(Vec::new()),
        }
    }

    /// A copy of every packet played from now on, through a channel of
    /// `capacity` packets (at least 1); a full channel loses the packet for
    /// this mirror, never holds the play. Dropping the receiver ends it.
    pub fn mirror(&self, capacity: usize) -> mpsc::Receiver<PlayedPacket> {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        if let Ok(mut m) = self.mirrors.lock() {
            m.retain(|t| !t.is_closed());
            m.push(tx);
        }
        rx
    }

    fn copy_to_mirrors(&self, now: Instant, packet: &[u8]) {
        let Ok(mut m) = self.mirrors.lock() else {
            return;
        };
        if m.is_empty() {
            return;
        }
        m.retain(|t| !t.is_closed());
        for t in m.iter() {
            let _ = t.try_send(PlayedPacket {
                sent: now,
                rtp: packet.to_vec(),
            });
        }
    }

    /// Plays every packet of `source` into the leg at its pace, replacing
    /// what the other leg sends meanwhile (forwarding resumes after, with
    /// the sequence continuing). Returns the packets sent.
    ///
    /// An application that drops the future (a barge-in) calls
    /// [`LegEndpoint::stop`] so the other leg's audio comes back.
    ///
    /// # Errors
    /// The relay has stopped (the call is over).
    pub async fn play<S: PacedSource + ?Sized>(&self, source: &mut S) -> Result<u64, RelayError> {
        self.relay
            .inject_start(self.leg, self.stream, InjectOptions { suppress: true })?;
        let mut sent = 0;
        let outcome = loop {
            let now = Instant::now();
            let mut failed = None;
            while let Some(packet) = source.poll_packet(now) {
                self.copy_to_mirrors(now, &packet);
                if let Err(e) = self.relay.inject(self.leg, self.stream, packet) {
                    failed = Some(e);
                    break;
                }
                sent += 1;
            }
            if let Some(e) = failed {
                break Err(e);
            }
            match source.poll_timeout() {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => break Ok(sent),
            }
        };
        // Whatever happened, the other leg's audio comes back.
        let stopped = self.stop();
        let sent = outcome?;
        stopped.map(|()| sent)
    }

    /// Ends an injection (a barge-in): the other leg's audio resumes.
    ///
    /// # Errors
    /// The relay has stopped.
    pub fn stop(&self) -> Result<(), RelayError> {
        self.relay.inject_stop(self.leg, self.stream)
    }

    /// Listens for RFC 4733 digits from the leg's peer, sent with payload
    /// type `payload_type` (the SDP's `telephone-event` rtpmap).
    ///
    /// # Errors
    /// The relay has stopped.
    pub fn digits(&self, payload_type: u8) -> Result<DigitListener, RelayError> {
        let tap = self
            .relay
            .tap(Some(self.leg), Some(self.stream), TAP_CAPACITY)?;
        Ok(DigitListener {
            tap,
            detector: DtmfDetector::new(payload_type),
        })
    }
}

/// Digits as a leg's peer presses them (see [`LegEndpoint::digits`]).
pub struct DigitListener {
    tap: mpsc::Receiver<TappedPacket>,
    detector: DtmfDetector,
}

impl DigitListener {
    /// The next digit, when its event ends (end packet, a new event, or
    /// the detector's timeout); `None` once the relay has stopped and every
    /// digit was reported.
    pub async fn next(&mut self) -> Option<DetectedDigit> {
        loop {
            if let Some(d) = self.detector.poll_event() {
                return Some(d);
            }
            let deadline = self.detector.poll_timeout();
            tokio::select! {
                packet = self.tap.recv() => match packet {
                    Some(p) if !p.rtcp => {
                        // A packet the detector cannot read is no digit.
                        let _ = self.detector.handle_packet(p.arrival, &p.data);
                    }
                    Some(_) => {}
                    None => {
                        // The relay stopped: an event still open ends now.
                        self.detector.handle_timeout(Instant::now() + self.detector.timeout());
                        return self.detector.poll_event();
                    }
                },
                () = sleep_until(deadline) => self.detector.handle_timeout(Instant::now()),
            }
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d.into()).await,
        None => std::future::pending().await,
    }
}
