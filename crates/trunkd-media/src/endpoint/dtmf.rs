//! DTMF: RFC 4733 telephone-events in RTP (detector and sender), and the
//! SIP INFO bodies some PBXs and carriers use instead
//! (`application/dtmf-relay`, `application/dtmf`).
//!
//! RFC 4733 in brief (§2.3, §2.5): one event (a key press) is a series of
//! packets that all carry the RTP timestamp of the event's start; the first
//! has the marker bit; each repeats the event code with the duration so far;
//! the last has the E bit and is sent three times. A new key press is a new
//! timestamp. Packets can be lost, duplicated or the end can never come, so
//! the detector reports each event once, when its end is known: an end
//! packet, the next event starting, or [`DtmfDetector::poll_timeout`].

use std::collections::VecDeque;
use std::fmt;
use std::time::{Duration, Instant};

use thiserror::Error;

use super::rtp::{parse_rtp, write_rtp_header, RtpContinuity, RtpError};
use super::SAMPLE_RATE;

/// A DTMF key: RFC 4733 §3.2 event codes 0–15 (`0`–`9`, `*` = 10,
/// `#` = 11, `A`–`D` = 12–15).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DtmfDigit(u8);

impl DtmfDigit {
    /// The digit of event code `code`, if it is a DTMF event (0–15).
    pub const fn from_code(code: u8) -> Option<Self> {
        if code <= 15 {
            Some(DtmfDigit(code))
        } else {
            None
        }
    }

    /// The digit written `c` (`0`–`9`, `*`, `#`, `A`–`D` in either case).
    pub fn from_char(c: char) -> Option<Self> {
        let code = match c.to_ascii_uppercase() {
            d @ '0'..='9' => d as u8 - b'0',
            '*' => 10,
            '#' => 11,
            l @ 'A'..='D' => l as u8 - b'A' + 12,
            _ => return None,
        };
        Some(DtmfDigit(code))
    }

    /// The RFC 4733 event code.
    pub const fn code(self) -> u8 {
        self.0
    }

    /// The key's character (`A`–`D` upper case).
    pub fn to_char(self) -> char {
        match self.0 {
            c @ 0..=9 => (b'0' + c) as char,
            10 => '*',
            11 => '#',
            c => (b'A' + c - 12) as char,
        }
    }
}

impl fmt::Display for DtmfDigit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.to_char())
    }
}

/// The 4-byte telephone-event payload (RFC 4733 §2.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TelephoneEvent {
    /// Event code (0–15 are DTMF; others are tones and line events).
    pub event: u8,
    /// The E bit: this packet ends the event.
    pub end: bool,
    /// Power level in −dBm0, 0–63 (the R bit is not kept).
    pub volume: u8,
    /// Duration so far, in timestamp units.
    pub duration: u16,
}

impl TelephoneEvent {
    /// Reads the first event of a payload (more than one would be RFC 2198
    /// redundancy, which has its own payload type).
    ///
    /// # Errors
    ///
    /// [`DtmfError::ShortPayload`] if it has fewer than 4 bytes.
    pub fn parse(payload: &[u8]) -> Result<Self, DtmfError> {
        match payload {
            [event, flags, d0, d1, ..] => Ok(TelephoneEvent {
                event: *event,
                end: flags & 0x80 != 0,
                volume: flags & 0x3f,
                duration: u16::from_be_bytes([*d0, *d1]),
            }),
            _ => Err(DtmfError::ShortPayload(payload.len())),
        }
    }

    /// Appends the 4-byte payload.
    pub fn write(&self, out: &mut Vec<u8>) {
        out.push(self.event);
        out.push((u8::from(self.end) << 7) | (self.volume & 0x3f));
        out.extend_from_slice(&self.duration.to_be_bytes());
    }
}

/// Why a packet given to the detector could not be read.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DtmfError {
    /// Not RTP.
    #[error("not an RTP packet: {0}")]
    Rtp(#[from] RtpError),
    /// A telephone-event payload shorter than 4 bytes.
    #[error("telephone-event payload of {0} bytes, at least 4 expected")]
    ShortPayload(usize),
}

/// How the detector knew an event was over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DigitEnd {
    /// A packet with the E bit.
    EndPacket,
    /// A packet of a later event arrived first (the end packets were lost).
    NextEvent,
    /// Nothing more came for [`DtmfDetector::timeout`].
    Timeout,
}

/// A key press the detector saw, reported once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DetectedDigit {
    /// The key.
    pub digit: DtmfDigit,
    /// The longest duration the packets reported, in timestamp units (over
    /// all segments of an event longer than 65535 units).
    pub duration_ts: u32,
    /// The same as a time, at the detector's clock rate.
    pub duration: Duration,
    /// Power level in −dBm0 of the last packet.
    pub volume: u8,
    /// SSRC of the stream it came in.
    pub ssrc: u32,
    /// RTP timestamp of the event's start (of its first segment).
    pub timestamp: u32,
    /// How its end was known.
    pub end: DigitEnd,
}

/// Default for [`DtmfDetector::timeout`]: senders refresh an event at least
/// every 50–100 ms, so a second of silence means the end packets were lost.
pub const DEFAULT_DETECTOR_TIMEOUT: Duration = Duration::from_millis(1000);

/// Events remembered after they end, to drop their late duplicates and
/// retransmitted end packets.
const FINISHED_MEMORY: usize = 8;

#[derive(Clone, Copy, Debug)]
struct Ongoing {
    ssrc: u32,
    /// Timestamp of the current segment.
    timestamp: u32,
    /// Timestamp of the first segment, and the duration of the segments
    /// before the current one (RFC 4733 §2.5.1.3: an event longer than
    /// 0xFFFF units goes on in a new segment at timestamp + 0xFFFF).
    first_timestamp: u32,
    earlier_segments: u32,
    digit: DtmfDigit,
    duration: u16,
    volume: u8,
    last_seen: Instant,
}

/// Detects RFC 4733 DTMF in one direction of a leg.
///
/// Feed it every RTP packet of the leg ([`DtmfDetector::handle_packet`]);
/// it ignores other payload types, so it can sit on a relay tap. Drain
/// [`DtmfDetector::poll_event`] after each call, and call
/// [`DtmfDetector::handle_timeout`] at [`DtmfDetector::poll_timeout`].
#[derive(Debug)]
pub struct DtmfDetector {
    payload_type: u8,
    clock_rate: u32,
    timeout: Duration,
    current: Option<Ongoing>,
    finished: VecDeque<(u32, u32)>,
    events: VecDeque<DetectedDigit>,
}

impl DtmfDetector {
    /// A detector for telephone-events with payload type `payload_type`
    /// (the one the SDP's `a=rtpmap:<pt> telephone-event/8000` names).
    pub fn new(payload_type: u8) -> Self {
        DtmfDetector {
            payload_type,
            clock_rate: SAMPLE_RATE,
            timeout: DEFAULT_DETECTOR_TIMEOUT,
            current: None,
            finished: VecDeque::with_capacity(FINISHED_MEMORY),
            events: VecDeque::new(),
        }
    }

    /// Sets how long an event without an end packet lasts after its last
    /// packet.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets the telephone-event clock rate (the rtpmap's; 8000 by default).
    /// A rate of 0 is taken as 8000.
    pub fn with_clock_rate(mut self, clock_rate: u32) -> Self {
        self.clock_rate = if clock_rate == 0 {
            SAMPLE_RATE
        } else {
            clock_rate
        };
        self
    }

    /// The configured end-of-event timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Takes one RTP packet of the stream. Returns whether it was a
    /// telephone-event packet (a tap may keep those out of a recording).
    ///
    /// # Errors
    ///
    /// [`DtmfError`] for a datagram that is not RTP, or a telephone-event
    /// packet too short to read; the detector's state is unchanged.
    pub fn handle_packet(&mut self, now: Instant, packet: &[u8]) -> Result<bool, DtmfError> {
        let rtp = parse_rtp(packet)?;
        if rtp.payload_type != self.payload_type {
            return Ok(false);
        }
        let ev = TelephoneEvent::parse(rtp.payload)?;
        let Some(digit) = DtmfDigit::from_code(ev.event) else {
            return Ok(true); // a tone or line event: not a key
        };
        let key = (rtp.ssrc, rtp.timestamp);
        if self.finished.contains(&key) {
            return Ok(true); // a repeated end packet, or a late duplicate
        }
        if let Some(cur) = &mut self.current {
            if (cur.ssrc, cur.timestamp) == key {
                cur.duration = cur.duration.max(ev.duration);
                cur.volume = ev.volume;
                cur.last_seen = now;
                if ev.end {
                    self.finish(DigitEnd::EndPacket);
                }
                return Ok(true);
            }
            if cur.ssrc == rtp.ssrc && (rtp.timestamp.wrapping_sub(cur.timestamp) as i32) < 0 {
                return Ok(true); // reordered: from an event before this one
            }
            if cur.ssrc == rtp.ssrc
                && cur.digit == digit
                && cur.duration == u16::MAX
                && rtp.timestamp == cur.timestamp.wrapping_add(u32::from(u16::MAX))
            {
                // The next segment of a long key press.
                remember(&mut self.finished, (cur.ssrc, cur.timestamp));
                cur.earlier_segments += u32::from(u16::MAX);
                cur.timestamp = rtp.timestamp;
                cur.duration = ev.duration;
                cur.volume = ev.volume;
                cur.last_seen = now;
                if ev.end {
                    self.finish(DigitEnd::EndPacket);
                }
                return Ok(true);
            }
            self.finish(DigitEnd::NextEvent);
        }
        self.current = Some(Ongoing {
            ssrc: rtp.ssrc,
            timestamp: rtp.timestamp,
            first_timestamp: rtp.timestamp,
            earlier_segments: 0,
            digit,
            duration: ev.duration,
            volume: ev.volume,
            last_seen: now,
        });
        if ev.end {
            // Every packet but an end one lost: still a key press.
            self.finish(DigitEnd::EndPacket);
        }
        Ok(true)
    }

    /// Ends an event whose packets stopped [`DtmfDetector::timeout`] ago.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.poll_timeout().is_some_and(|t| now >= t) {
            self.finish(DigitEnd::Timeout);
        }
    }

    /// When [`DtmfDetector::handle_timeout`] should be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.current.map(|c| c.last_seen + self.timeout)
    }

    /// The next detected key press.
    pub fn poll_event(&mut self) -> Option<DetectedDigit> {
        self.events.pop_front()
    }

    fn finish(&mut self, end: DigitEnd) {
        let Some(cur) = self.current.take() else {
            return;
        };
        remember(&mut self.finished, (cur.ssrc, cur.timestamp));
        let duration_ts = cur.earlier_segments + u32::from(cur.duration);
        let nanos = u64::from(duration_ts) * 1_000_000_000 / u64::from(self.clock_rate);
        self.events.push_back(DetectedDigit {
            digit: cur.digit,
            duration_ts,
            duration: Duration::from_nanos(nanos),
            volume: cur.volume,
            ssrc: cur.ssrc,
            timestamp: cur.first_timestamp,
            end,
        });
    }
}

/// Adds an ended event (or segment) to the bounded memory of those whose
/// late packets are to be dropped.
fn remember(finished: &mut VecDeque<(u32, u32)>, key: (u32, u32)) {
    if finished.len() == FINISHED_MEMORY {
        finished.pop_front();
    }
    finished.push_back(key);
}

/// How a [`DtmfSender`] sends one key press.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DtmfSendConfig {
    /// The telephone-event payload type the peer's SDP gave.
    pub payload_type: u8,
    /// Power level in −dBm0 (0–63; 10 is a common choice).
    pub volume: u8,
    /// How long the key is pressed (capped at 65535 timestamp units, 8.2 s
    /// at 8 kHz: longer events need RFC 4733 §2.5.1.3 segments).
    pub duration: Duration,
    /// Time between update packets. RFC 4733 §2.5.1.2 suggests 50 ms; 20 ms
    /// (the audio ptime) is also common. Taken within 1 ms..=1 s.
    pub interval: Duration,
    /// SSRC, sequence number and timestamp to continue from; the event's
    /// timestamp is `start.next_ts`.
    pub start: RtpContinuity,
}

impl DtmfSendConfig {
    /// 100 ms, volume 10, 50 ms updates.
    pub fn new(payload_type: u8, start: RtpContinuity) -> Self {
        DtmfSendConfig {
            payload_type,
            volume: 10,
            duration: Duration::from_millis(100),
            interval: Duration::from_millis(50),
            start,
        }
    }
}

/// Times the final (E bit) packet is sent (RFC 4733 §2.5.1.4).
pub const END_PACKETS: u32 = 3;

/// Sends one key press as RFC 4733 packets, paced like the
/// [`Player`](super::player::Player).
///
/// Packet *k* goes out at *k* × interval: first the updates, each with the
/// duration the event will have reached at the end of that interval (the
/// last one the full duration), then [`END_PACKETS`] end packets with the
/// full duration. All carry the event's start timestamp and consecutive
/// sequence numbers; the first has the marker bit.
#[derive(Debug)]
pub struct DtmfSender {
    digit: DtmfDigit,
    config: DtmfSendConfig,
    total_ts: u16,
    interval_ts: u32,
    updates: u32,
    sent: u32,
    epoch: Option<Instant>,
}

impl DtmfSender {
    /// A sender for `digit`.
    pub fn new(digit: DtmfDigit, config: DtmfSendConfig) -> Self {
        let to_ts = |d: Duration| d.as_micros() * u128::from(SAMPLE_RATE) / 1_000_000;
        let total_ts = to_ts(config.duration).clamp(1, u128::from(u16::MAX)) as u16;
        let interval = config
            .interval
            .clamp(Duration::from_millis(1), Duration::from_secs(1));
        let interval_ts = to_ts(interval).max(1) as u32;
        let updates = u32::from(total_ts).div_ceil(interval_ts);
        DtmfSender {
            digit,
            config: DtmfSendConfig { interval, ..config },
            total_ts,
            interval_ts,
            updates,
            sent: 0,
            epoch: None,
        }
    }

    /// Every packet with its send time after the first, for callers that
    /// schedule them themselves.
    pub fn packets(mut self) -> Vec<(Duration, Vec<u8>)> {
        let mut out = Vec::with_capacity((self.updates + END_PACKETS) as usize);
        while !self.is_finished() {
            let at = self.config.interval * self.sent;
            out.push((at, self.build_packet()));
        }
        out
    }

    /// The next packet if it is due at `now` (the first call starts the
    /// clock and returns the first packet).
    pub fn poll_packet(&mut self, now: Instant) -> Option<Vec<u8>> {
        if self.is_finished() {
            return None;
        }
        let epoch = *self.epoch.get_or_insert(now);
        if now < epoch + self.config.interval * self.sent {
            return None;
        }
        Some(self.build_packet())
    }

    /// When the next packet is due (`None` before the first
    /// [`DtmfSender::poll_packet`] and once finished).
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.is_finished() {
            return None;
        }
        self.epoch.map(|e| e + self.config.interval * self.sent)
    }

    /// Whether every packet has been handed out.
    pub fn is_finished(&self) -> bool {
        self.sent >= self.updates + END_PACKETS
    }

    /// Where the stream continues after this event: the next sequence
    /// number, and the timestamp of audio sent one 20 ms frame after the last
    /// end packet (the event's timestamp plus the time it took to send).
    pub fn continuity(&self) -> RtpContinuity {
        let start = self.config.start;
        let elapsed_ts =
            self.interval_ts * (self.updates + END_PACKETS - 1) + super::SAMPLES_PER_PACKET as u32;
        RtpContinuity {
            ssrc: start.ssrc,
            next_seq: start.next_seq.wrapping_add(self.sent as u16),
            next_ts: if self.is_finished() {
                start.next_ts.wrapping_add(elapsed_ts)
            } else {
                start.next_ts
            },
        }
    }

    fn build_packet(&mut self) -> Vec<u8> {
        let k = self.sent;
        let end = k >= self.updates;
        let duration = if end {
            self.total_ts
        } else {
            ((k + 1) * self.interval_ts).min(u32::from(self.total_ts)) as u16
        };
        let start = self.config.start;
        let mut packet = Vec::with_capacity(16);
        write_rtp_header(
            &mut packet,
            k == 0,
            self.config.payload_type,
            start.next_seq.wrapping_add(k as u16),
            start.next_ts,
            start.ssrc,
        );
        TelephoneEvent {
            event: self.digit.code(),
            end,
            volume: self.config.volume.min(63),
            duration,
        }
        .write(&mut packet);
        self.sent += 1;
        packet
    }
}

/// A DTMF key from a SIP INFO body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InfoDtmf {
    /// The key.
    pub digit: DtmfDigit,
    /// `Duration=` of `application/dtmf-relay` (milliseconds), if given.
    pub duration: Option<Duration>,
}

/// Why a SIP INFO body is not a DTMF key.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum InfoDtmfError {
    /// Neither `application/dtmf-relay` nor `application/dtmf`.
    #[error("not a DTMF content type: {0}")]
    ContentType(String),
    /// The body is not UTF-8 text.
    #[error("DTMF body is not text")]
    NotText,
    /// `application/dtmf-relay` without a `Signal=` line.
    #[error("no Signal= line in the dtmf-relay body")]
    MissingSignal,
    /// A signal that is not a key.
    #[error("not a DTMF key: {0:?}")]
    BadSignal(String),
    /// A `Duration=` that is not a number of milliseconds.
    #[error("bad Duration: {0:?}")]
    BadDuration(String),
}

/// Parses a SIP INFO DTMF body by its Content-Type (parameters and case
/// ignored).
///
/// # Errors
///
/// [`InfoDtmfError`]: another content type, or a body that is not a key.
pub fn parse_info_dtmf(content_type: &str, body: &[u8]) -> Result<InfoDtmf, InfoDtmfError> {
    let media = content_type.split(';').next().unwrap_or("").trim();
    if media.eq_ignore_ascii_case("application/dtmf-relay") {
        parse_dtmf_relay(body)
    } else if media.eq_ignore_ascii_case("application/dtmf") {
        parse_dtmf(body)
    } else {
        Err(InfoDtmfError::ContentType(media.to_owned()))
    }
}

/// Parses an `application/dtmf-relay` body (`Signal=5\r\nDuration=160\r\n`):
/// keys case-insensitive, blanks around `=` and values ignored, `\n` or
/// `\r\n` line ends, unknown lines skipped, `Duration` optional.
///
/// # Errors
///
/// [`InfoDtmfError`] for a missing or bad `Signal`, a bad `Duration`, or a
/// body that is not text.
pub fn parse_dtmf_relay(body: &[u8]) -> Result<InfoDtmf, InfoDtmfError> {
    let text = std::str::from_utf8(body).map_err(|_| InfoDtmfError::NotText)?;
    let mut digit = None;
    let mut duration = None;
    for line in text.lines() {
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let value = value.trim();
        match key.trim() {
            k if k.eq_ignore_ascii_case("signal") && digit.is_none() => {
                digit = Some(parse_signal(value)?);
            }
            k if k.eq_ignore_ascii_case("duration") && duration.is_none() => {
                let ms: u64 = value
                    .parse()
                    .map_err(|_| InfoDtmfError::BadDuration(value.to_owned()))?;
                duration = Some(Duration::from_millis(ms));
            }
            _ => {}
        }
    }
    Ok(InfoDtmf {
        digit: digit.ok_or(InfoDtmfError::MissingSignal)?,
        duration,
    })
}

/// Parses an `application/dtmf` body: the key alone (`5`), blanks ignored.
///
/// # Errors
///
/// [`InfoDtmfError::BadSignal`] if it is not one key.
pub fn parse_dtmf(body: &[u8]) -> Result<InfoDtmf, InfoDtmfError> {
    let text = std::str::from_utf8(body).map_err(|_| InfoDtmfError::NotText)?;
    Ok(InfoDtmf {
        digit: parse_signal(text.trim())?,
        duration: None,
    })
}

/// A key given as its character (`5`, `*`, `a`) or its event code
/// (`10` for `*`, `11` for `#`), as some senders do.
fn parse_signal(value: &str) -> Result<DtmfDigit, InfoDtmfError> {
    let bad = || InfoDtmfError::BadSignal(value.to_owned());
    let mut chars = value.chars();
    match (chars.next(), chars.next()) {
        (Some(c), None) => DtmfDigit::from_char(c).ok_or_else(bad),
        _ => value
            .parse::<u8>()
            .ok()
            .and_then(DtmfDigit::from_code)
            .ok_or_else(bad),
    }
}

/// The `application/dtmf-relay` body for a key (what trunkd sends when it
/// converts RFC 4733 to SIP INFO).
pub fn dtmf_relay_body(digit: DtmfDigit, duration: Duration) -> String {
    format!("Signal={}\r\nDuration={}\r\n", digit, duration.as_millis())
}

#[cfg(test)]
#[path = "dtmf_tests.rs"]
mod tests;
