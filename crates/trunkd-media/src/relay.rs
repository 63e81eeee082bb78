//! The per-call media relay: RTP and RTCP of both legs, symmetric latching,
//! counters, an inactivity detector (SPEC §2.4, §4).
//!
//! A call has two legs (A: one peer, B: the other) and trunkd holds a
//! socket pair per leg, so four sockets. What arrives on leg A's RTP socket
//! from A's peer leaves through leg B's RTP socket to B's peer, and the
//! other way round; RTCP likewise. Leaving through the other leg's own
//! socket is what anchoring means: each peer only ever sees trunkd's address
//! and port from its own leg's SDP.
//!
//! # The hot path
//!
//! One tokio task per call owns the four sockets and all counters: no
//! lock, no allocation and no channel per packet. The task is a single
//! hand-written poll loop rather than a `select!` over four `recv_from`
//! futures: on each wake-up it drains every ready socket into the thread's
//! pair of receive buffers (packets are handled as they come, so one pair
//! serves all four sockets, and all the relays of a thread: `rx.rs`), and
//! a socket that is not ready
//! costs no syscall (tokio caches readiness). The RTCP sockets and the
//! inactivity timer are asked only after they signalled, through a waker of
//! their own (`quiet.rs`): an RTCP packet comes every few seconds, an RTP
//! packet every 20 ms. Receiving is one syscall per
//! datagram, not two: see `rx.rs` (`recvmmsg` asked for two, so that
//! getting one proves the socket empty without an `EAGAIN` call — not
//! batching, which ANCHORS.md found useless with one packet per socket per
//! 20 ms). Sending is one plain `sendto(2)` through [`socket2::SockRef`] on
//! the same file descriptor: tokio's `try_send_to` would consult write
//! readiness, which is unknown until the reactor has run once, and would
//! drop the first packets. A send that would block drops the packet (UDP
//! semantics; the kernel would have dropped it a moment later anyway) and
//! counts it.
//!
//! Measured with `examples/relay_cost.rs` (2-vCPU VM, loopback, 172-byte
//! packets every 20 ms each way, runs interleaved): at 100 and 600 calls the
//! C epoll floor relay of ANCHORS.md cost 8.3–9.0 CPU-µs per packet in that
//! harness, [`bare_relay`] 10.8–11.0 (1.2–1.3×) and this relay 11.4–12.9
//! (1.3–1.5×; rtpengine is 3.2× the floor in ANCHORS.md). About 83% of the
//! relay's time is in the kernel (recv, send, loopback delivery); counters,
//! latching, the observer call and one `Instant::now()` per receive are
//! not visible in a profile.
//!
//! What a packet reads and writes of its call is laid out by cache line
//! (`Side`, `Flow`, the observer's `Received`): a relay thread carries
//! hundreds of calls and visits each once per packet, so the lines a packet
//! touches, not its instructions, are what made trunkd dearer per packet as
//! calls were added (docs/decisions.md, "The relay's state laid out by
//! cache line").
//!
//! On a plain leg payloads are never looked at beyond two bytes, so RFC
//! 4733 telephone-event, T.38 UDPTL (`m=image ... udptl`) and anything else
//! over UDP are relayed byte for byte. The second byte only
//! classifies a datagram on the RTP socket as RTCP (payload type 200–204,
//! RFC 5761 §4) when `a=rtcp-mux` is in use, for the counters and the
//! observer.
//!
//! # SRTP
//!
//! A leg keyed with SDES ([`RelayHandle::set_crypto`], keys from
//! [`crate::sdes`]) is terminated here: what arrives on it is authenticated
//! and decrypted with the peer's key (a forgery, a replay or a plain packet
//! is dropped and counted as `srtp` before it can latch or count as media),
//! the observer sees the plain packet, and it leaves encrypted with the other
//! leg's own key if that leg is SRTP too, or plain if not (interworking).
//! The transforms write into two buffers the task keeps, so SRTP adds no
//! allocation per packet either; `benches/srtp.rs` and docs/performance.md
//! have what the cryptography costs.
//!
//! # Latching (symmetric RTP, RFC 4961 / rtpengine)
//!
//! Each leg, separately for RTP and RTCP, has the peer address from its
//! SDP (`None` until known, or when held with `0.0.0.0`) and a latched
//! address: the source of the peer's packets, which differs from the SDP
//! behind a NAT. Traffic to the peer goes to the latched address, else to
//! the SDP one, else nowhere (counted as `no_peer`).
//!
//! * Non-strict (default): the first packet latches, from any source (the
//!   NATed peer's source is unknown beforehand). Once latched, packets from
//!   another source are dropped — forwarding them would let anyone who
//!   finds the port inject audio ("RTP bleed") — unless the latched source
//!   has been silent for [`RelayConfig::relatch_after`] (default 5 s): then
//!   the new source latches (a peer that changed network, or a PBX that
//!   moved the stream to another media server). rtpengine also refuses to
//!   move a latched stream while it is active.
//! * Strict: before latching, only a source with the SDP's IP address may
//!   latch (any port: NAT port translation is still allowed, other hosts are
//!   not); nothing latches while the SDP address is unknown. After latching,
//!   only the latched source is accepted, until [`RelayHandle::update_peer`].
//!
//! [`RelayHandle::update_peer`] (a re-INVITE) replaces the SDP address; if
//! it changed, the latch is cleared and the next packet latches again. If
//! the SDP address is unchanged (a session refresh, a NATed peer resending
//! its private address) the latch is kept, so a NATed stream does not
//! break on every re-INVITE.
//!
//! # Inactivity
//!
//! The task keeps the arrival time of the last RTP of each direction (any
//! datagram on an RTP socket that is not muxed RTCP: T.38 counts). When no
//! RTP arrived either way for [`RelayConfig::inactivity_timeout`], it sends
//! one [`MediaEvent::Inactive`] and sends another only after RTP resumed
//! and stopped again. The timer is lazy: it is not touched per packet; when
//! it fires it re-arms at last-RTP + timeout. Whether to hang up is the call
//! actor's decision: a call on hold sends no RTP, so the event says how long
//! ago RTCP was last seen.
//!
//! # Stats
//!
//! [`RelayHandle::stats`] asks the task for a snapshot over a oneshot: the
//! counters stay plain `u64`s updated in place, and the observer (the
//! quality math) is cloned at that moment. One request a minute per call
//! costs nothing; atomics would cost on every packet and could not carry
//! the observer's state anyway.

//!
//! # Streams
//!
//! A call carries up to [`MAX_STREAMS`] streams, one per `m=` line of its
//! SDP (audio, video, the second audio stream of a SIPREC session, T.38):
//! stream `i` has its own socket pair facing each leg, and what arrives on
//! leg A's stream `i` leaves through leg B's stream `i`. Stream 0 comes
//! with [`spawn_with_observer`]; the others are added as the SDP that names
//! them crosses ([`RelayHandle::add_stream`]). All of them are owned by the
//! same task and drained by the same poll loop, with the same latching and
//! counters; a call is inactive only when no stream carries RTP. Quality
//! (the observer) is measured on one stream, the call's first audio stream
//! ([`RelayHandle::set_quality_stream`], stream 0 by default); the others
//! are counted only. SRTP is per stream and leg
//! ([`RelayHandle::set_stream_crypto`]; [`RelayHandle::set_crypto`] is
//! stream 0's): each `m=` line has its own SDES keys.
//!
//! # Taps and injection
//!
//! [`RelayHandle::tap`] hands a copy of every accepted packet of a leg (and
//! stream), plain (after SRTP decryption), to a consumer through a bounded
//! channel filled with `try_send`: a slow or gone consumer loses packets
//! (counted in [`RelayStats::taps`]), forwarding never waits for it. Without
//! a tap the packet path does not copy.
//!
//! [`RelayHandle::inject`] sends trunkd's own RTP to a leg's peer on a
//! stream, continuing what that peer has been receiving: the injected
//! packets' SSRC, sequence number and timestamp are rewritten to follow the
//! last packet sent to that peer (the next sequence number; the timestamp
//! advanced by the wall-clock time since, at the payload type's clock rate),
//! and they are encrypted with the leg's SRTP context when the leg is SRTP.
//! [`RelayHandle::inject_start`] with `suppress` stops forwarding the other
//! peer's RTP to that peer meanwhile (replace; there is no mixing).
//! After [`RelayHandle::inject_stop`] the other peer's RTP is forwarded
//! again, renumbered (sequence, timestamp, SSRC) to continue after the
//! injected packets, so the peer sees one stream throughout; the offsets
//! hold until that source changes SSRC. Only then, and only for that
//! direction, does the packet path touch an RTP header.

use std::future::{poll_fn, Future};
use std::io;
use std::net::{SocketAddr, UdpSocket as StdUdpSocket};
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use socket2::{SockAddr, SockRef};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Sleep;

use crate::ctlq::{self, Deferred};
use crate::ports::{BoundPair, MediaSocket, PortPair};
use crate::quiet::Quiet;
use crate::runtimes::LoadGuard;
use crate::rx::{self, RelaySocket, Slots};
use crate::sdes::CryptoSuite;
use crate::srtp::{LegCrypto, SrtpError};

/// Largest datagram relayed. Larger ones (which RTP senders never produce:
/// they packetise to the path MTU) are dropped and counted, not truncated.
pub const MAX_DATAGRAM: usize = rx::SLOT;
/// Packets drained from one socket per wake-up before the task yields, so a
/// flooded call cannot starve the other calls on the same worker.
const BURST: usize = 64;

/// Streams (`m=` lines) one call's relay carries at most. Audio, video and
/// a second audio stream (SIPREC) fit; the anchor answers further `m=`
/// lines with port 0. A constant, not a setting: it bounds the sockets and
/// ports one call can take (two pairs per stream), and no trunking peer
/// needs more.
pub const MAX_STREAMS: usize = 4;

/// RTP clock rate of a payload type with no known rate (the narrowband
/// codecs and RFC 4733 events).
const DEFAULT_CLOCK_RATE: u32 = 8000;

const RTP: usize = 0;
const RTCP: usize = 1;

/// A call leg. trunkd's convention: A is the leg that sent the first offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Leg {
    A,
    B,
}

impl Leg {
    fn index(self) -> usize {
        match self {
            Leg::A => 0,
            Leg::B => 1,
        }
    }
    fn from_index(i: usize) -> Self {
        if i == 0 {
            Leg::A
        } else {
            Leg::B
        }
    }
    pub fn other(self) -> Self {
        match self {
            Leg::A => Leg::B,
            Leg::B => Leg::A,
        }
    }
}

/// Packets and bytes in one direction (bytes are UDP payload bytes: RTP
/// header and payload). SPEC §4's cust2vc/vc2cust/rem2vc/vc2rem are the
/// `rx`/`tx` of the customer and remote legs.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DirCounters {
    pub rtp_packets: u64,
    pub rtp_bytes: u64,
    pub rtcp_packets: u64,
    pub rtcp_bytes: u64,
}

impl DirCounters {
    /// One direction's RTP and RTCP counts as the relay keeps them apart.
    fn of(rtp: Count, rtcp: Count) -> DirCounters {
        DirCounters {
            rtp_packets: rtp.packets,
            rtp_bytes: rtp.bytes,
            rtcp_packets: rtcp.packets,
            rtcp_bytes: rtcp.bytes,
        }
    }

    fn plus(&self, o: &DirCounters) -> DirCounters {
        DirCounters {
            rtp_packets: self.rtp_packets + o.rtp_packets,
            rtp_bytes: self.rtp_bytes + o.rtp_bytes,
            rtcp_packets: self.rtcp_packets + o.rtcp_packets,
            rtcp_bytes: self.rtcp_bytes + o.rtcp_bytes,
        }
    }
}

/// Packets received on a leg and not relayed, by reason.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DropCounters {
    /// From a source that is neither latched nor allowed to latch.
    pub foreign_source: u64,
    /// The other leg's peer address is not known yet (or on hold).
    pub no_peer: u64,
    /// `sendto` failed or would block.
    pub send_failed: u64,
    /// Larger than [`MAX_DATAGRAM`].
    pub oversize: u64,
    /// On an SRTP leg: failed authentication or a replay; or the SRTP
    /// transform towards the other leg refused it.
    pub srtp: u64,
    /// On an SRTP leg: not an SRTP packet at all (STUN, keepalives, too
    /// short to carry a tag), which cannot be authenticated, so is not
    /// relayed.
    pub not_srtp: u64,
}

impl DropCounters {
    /// Both legs' drops together.
    pub fn plus(&self, o: &DropCounters) -> DropCounters {
        DropCounters {
            foreign_source: self.foreign_source + o.foreign_source,
            no_peer: self.no_peer + o.no_peer,
            send_failed: self.send_failed + o.send_failed,
            oversize: self.oversize + o.oversize,
            srtp: self.srtp + o.srtp,
            not_srtp: self.not_srtp + o.not_srtp,
        }
    }
}

/// Called by the relay for every packet it accepts from a peer on the
/// quality stream, before forwarding it, with the time it was read. The
/// quality math (RFC 3550 loss/jitter, RTCP SR/RR for RTT) plugs in here.
///
/// One observer per call, told which leg the packet came from, rather than
/// one per direction: RTT through a relay pairs a sender report forwarded
/// one way with the report block that comes back the other way, so the
/// state spans both directions. `arrival` is also the forwarding time (the
/// packet leaves within the same poll). Implementations must not block or
/// allocate per packet; they run on the relay's task.
pub trait PacketObserver: Send + 'static {
    fn on_rtp(&mut self, _from: Leg, _pkt: &[u8], _arrival: Instant) {}
    fn on_rtcp(&mut self, _from: Leg, _pkt: &[u8], _arrival: Instant) {}
    /// The payload types' clock rates of the observed stream, from the
    /// SDPs' `a=rtpmap` lines (replacing any earlier list). Called off the
    /// packet path ([`RelayHandle::set_clock_rates`]).
    fn set_clock_rates(&mut self, _rates: &[(u8, u32)]) {}
}

/// The default observer: counters only.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct NoopObserver;

impl PacketObserver for NoopObserver {}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayConfig {
    /// See the module docs: strict latching.
    pub strict: bool,
    /// `None` or zero: no inactivity detection. Default 60 s.
    pub inactivity_timeout: Option<Duration>,
    /// Non-strict mode: how long a latched source must have been silent
    /// before another source may take its place. Default 5 s.
    pub relatch_after: Duration,
}

impl Default for RelayConfig {
    fn default() -> Self {
        Self {
            strict: false,
            inactivity_timeout: Some(Duration::from_secs(60)),
            relatch_after: Duration::from_secs(5),
        }
    }
}

/// One leg's sockets (trunkd's side) and, when they come from the
/// allocator, the pair to give back once the sockets are closed.
#[derive(Debug)]
pub struct LegSockets {
    pub rtp: MediaSocket,
    pub rtcp: MediaSocket,
    pub ports: Option<PortPair>,
}

impl From<BoundPair> for LegSockets {
    fn from(b: BoundPair) -> Self {
        Self {
            rtp: b.rtp,
            rtcp: b.rtcp,
            ports: Some(b.ports),
        }
    }
}

/// A leg as the relay starts it: sockets and the peer's SDP addresses.
#[derive(Debug)]
pub struct LegSetup {
    pub sockets: LegSockets,
    pub peer_rtp: Option<SocketAddr>,
    pub peer_rtcp: Option<SocketAddr>,
}

/// What the relay reports on its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaEvent {
    /// No RTP in either direction on any stream for `idle` (>= the
    /// configured timeout). `rtcp_idle`: time since the last RTCP from
    /// either peer, `None` if none ever came; recent RTCP means the peers
    /// are alive (e.g. on hold).
    Inactive {
        idle: Duration,
        rtcp_idle: Option<Duration>,
    },
}

/// At most this many [`MediaEvent`]s wait for the call actor; more are
/// dropped (the relay sends one per inactivity period, so this is never
/// reached by a call actor that reads them).
const MEDIA_EVENTS_QUEUED: usize = 4;

/// The relay's end of its [`MediaEvents`]: made by [`media_events`], given
/// to the spawn functions.
#[derive(Debug)]
pub struct MediaEventSender(ctlq::Sender<MediaEvent>);

impl MediaEventSender {
    /// Queues `event` without waiting; dropped if the call actor is gone or
    /// has [`MEDIA_EVENTS_QUEUED`] unread.
    fn send(&self, event: MediaEvent) {
        let _ = self.0.send_capped(event, MEDIA_EVENTS_QUEUED);
    }
}

/// What a relay reports to its call actor ([`MediaEvent`]s).
///
/// Not a tokio channel: every call has one and it carries next to nothing
/// (one event per inactivity period), and a tokio channel allocates ~3 KiB
/// up front (docs/performance.md, "Issue 15: media"). This one allocates a
/// small shared cell, and [`MediaEvents::closed`] (the placeholder a call
/// actor leaves behind when it takes its receiver) nothing at all.
#[derive(Debug, Default)]
pub struct MediaEvents(Option<ctlq::Receiver<MediaEvent>>);

impl MediaEvents {
    /// Events that never come: `recv` returns `None` at once.
    pub fn closed() -> Self {
        MediaEvents(None)
    }

    /// An event already waiting, if any.
    pub fn try_recv(&mut self) -> Option<MediaEvent> {
        let rx = self.0.as_mut()?;
        let mut cx = Context::from_waker(std::task::Waker::noop());
        match rx.poll_recv(&mut cx) {
            Poll::Ready(event) => event,
            Poll::Pending => None,
        }
    }

    /// The next event; `None` once the relay has ended.
    pub async fn recv(&mut self) -> Option<MediaEvent> {
        let rx = self.0.as_mut()?;
        poll_fn(|cx| rx.poll_recv(cx)).await
    }
}

/// A relay's event queue: the sender goes to the spawn function, the
/// receiver to the call actor.
pub fn media_events() -> (MediaEventSender, MediaEvents) {
    let (tx, rx) = ctlq::queue(None);
    (MediaEventSender(tx), MediaEvents(Some(rx)))
}

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("the media relay must be started inside a tokio runtime")]
    NoRuntime,
    #[error("cannot register media socket with the runtime: {0}")]
    Socket(#[source] io::Error),
    #[error("the media relay task has stopped")]
    Stopped,
    #[error("the media relay task panicked")]
    Panicked,
    #[error("media stream {0} is beyond the relay's {MAX_STREAMS} streams")]
    TooManyStreams(usize),
    #[error("media stream {0} already exists")]
    StreamExists(usize),
    #[error("not an RTP packet (version 2, at least 12 bytes)")]
    NotRtp,
}

/// trunkd's addresses of one stream, facing each leg's peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalAddrs {
    rtp: [SocketAddr; 2],
    rtcp: [SocketAddr; 2],
}

impl LocalAddrs {
    /// trunkd's RTP socket address on `leg` (what goes into that leg's SDP).
    pub fn rtp(&self, leg: Leg) -> SocketAddr {
        self.rtp[leg.index()]
    }
    pub fn rtcp(&self, leg: Leg) -> SocketAddr {
        self.rtcp[leg.index()]
    }
}

/// One leg's view in a stats snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LegStats {
    /// Peer -> trunkd on this leg.
    pub rx: DirCounters,
    /// trunkd -> peer on this leg (injected packets included).
    pub tx: DirCounters,
    /// Packets received on this leg and not relayed.
    pub dropped: DropCounters,
    /// Where RTP for this leg's peer goes now (latched, else SDP).
    pub rtp_peer: Option<SocketAddr>,
    pub rtcp_peer: Option<SocketAddr>,
    pub rtp_latched: bool,
    pub rtcp_latched: bool,
    /// The SRTP suite in force on this leg; `None`: plain RTP.
    pub srtp: Option<CryptoSuite>,
    /// RTP packets trunkd injected towards this leg's peer.
    pub injected: u64,
    /// RTP packets from the other leg not forwarded to this leg's peer
    /// because an injection replaced them.
    pub suppressed: u64,
}

/// One stream's view in a stats snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamStats {
    /// The stream's index (its `m=` line).
    pub index: usize,
    pub a: LegStats,
    pub b: LegStats,
}

/// What the taps got and lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TapStats {
    /// Packets handed to tap consumers.
    pub delivered: u64,
    /// Packets a tap lost because its channel was full (a slow consumer).
    pub dropped: u64,
    /// Taps open now (a tap closes when its receiver is dropped).
    pub open: usize,
}

/// A snapshot of a relay, with a clone of its observer.
#[derive(Debug, Clone)]
pub struct RelayStats<O> {
    /// Leg A over all streams: counters are the sums of the streams'; the
    /// peer, latch and SRTP fields are stream 0's.
    pub a: LegStats,
    pub b: LegStats,
    /// Each stream, by index.
    pub streams: Vec<StreamStats>,
    /// The stream the observer measures (see
    /// [`RelayHandle::set_quality_stream`]).
    pub quality_stream: usize,
    pub taps: TapStats,
    pub observer: O,
}

impl<O> RelayStats<O> {
    pub fn leg(&self, leg: Leg) -> &LegStats {
        match leg {
            Leg::A => &self.a,
            Leg::B => &self.b,
        }
    }

    /// `leg` on the quality stream: the counters that go with the
    /// observer's figures (the media metric line). Stream 0's, or the
    /// totals, if the quality stream does not exist.
    pub fn quality_leg(&self, leg: Leg) -> &LegStats {
        match self.stream(self.quality_stream) {
            Some(s) => match leg {
                Leg::A => &s.a,
                Leg::B => &s.b,
            },
            None => self.leg(leg),
        }
    }

    /// Stream `index`, if the relay has it.
    pub fn stream(&self, index: usize) -> Option<&StreamStats> {
        self.streams.iter().find(|s| s.index == index)
    }
}

/// A packet handed to a tap: the plain (decrypted) datagram as it arrived
/// from `leg`'s peer on `stream`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TappedPacket {
    pub leg: Leg,
    pub stream: usize,
    /// Whether it is RTCP (on the RTCP socket, or muxed).
    pub rtcp: bool,
    pub arrival: Instant,
    pub data: Bytes,
}

/// How an injection treats the other peer's RTP meanwhile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct InjectOptions {
    /// Do not forward the other leg's RTP to this leg's peer while
    /// injecting (the injected audio replaces it). RTCP still passes.
    pub suppress: bool,
}

/// One stream's sockets as [`Control::AddStream`] carries them.
struct NewStream {
    index: usize,
    socks: StreamSockets,
    /// Per leg, per kind: the SDP's address.
    peers: [[Option<SocketAddr>; 2]; 2],
    ports: [Option<PortPair>; 2],
}

enum Control<O> {
    UpdatePeer {
        leg: Leg,
        stream: usize,
        rtp: Option<SocketAddr>,
        rtcp: Option<SocketAddr>,
    },
    SetCrypto {
        leg: Leg,
        stream: usize,
        crypto: Option<Box<LegCrypto>>,
    },
    AddStream(Box<NewStream>),
    ClockRates {
        stream: usize,
        rates: Vec<(u8, u32)>,
    },
    QualityStream(usize),
    Tap(Tap),
    InjectStart {
        leg: Leg,
        stream: usize,
        options: InjectOptions,
    },
    Inject {
        leg: Leg,
        stream: usize,
        rtp: Vec<u8>,
    },
    InjectStop {
        leg: Leg,
        stream: usize,
    },
    Stats(oneshot::Sender<RelayStats<O>>),
    Stop,
}

/// The call actor's handle on a running relay. Dropping it stops the relay
/// (the task notices the closed control channel) and releases the ports;
/// [`RelayHandle::stop`] does the same and waits until the sockets are
/// closed.
///
/// On a relay thread ([`crate::RelayRuntimes`]) the relay starts, and most
/// requests reach it, with the thread's next batch or the next packet,
/// whichever comes first (see `ctlq`, "Deferred sends"): at most
/// [`crate::ctlq::DEFERRED_PERIOD`] later. Packets that arrive before the
/// relay starts wait in the socket, none is lost.
#[derive(Debug)]
pub struct RelayHandle<O = NoopObserver> {
    ctl: ctlq::Sender<Control<O>>,
    local: LocalAddrs,
    runtime: tokio::runtime::Handle,
    /// Bit `i`: stream `i` was added (so a second add is refused here,
    /// synchronously, before its sockets travel to the task).
    streams: AtomicU8,
}

impl<O> RelayHandle<O> {
    /// trunkd's RTP socket address on `leg` for stream 0 (what goes into
    /// that leg's SDP).
    pub fn local_rtp(&self, leg: Leg) -> SocketAddr {
        self.local.rtp(leg)
    }
    pub fn local_rtcp(&self, leg: Leg) -> SocketAddr {
        self.local.rtcp(leg)
    }

    /// Queues `c` for the task. Only what must act before the next packet
    /// could make it act wakes the task now: an injected packet (paced by
    /// the caller), a new stream (its sockets are not polled until the task
    /// registers them) and a tap. The rest matters to the next packet, and
    /// the task reads its queue before each: it waits for that packet or
    /// the thread's batch.
    fn send(&self, c: Control<O>) -> Result<(), RelayError> {
        let urgent = matches!(
            c,
            Control::AddStream(_)
                | Control::Tap(_)
                | Control::InjectStart { .. }
                | Control::Inject { .. }
                | Control::InjectStop { .. }
        );
        let sent = if urgent {
            self.ctl.send(c)
        } else {
            self.ctl.send_deferred(c)
        };
        sent.map_err(|_| RelayError::Stopped)
    }

    /// Adds stream `index` (its `m=` line) with a socket pair per leg.
    /// Returns trunkd's addresses for it.
    ///
    /// # Errors
    /// `index` is not below [`MAX_STREAMS`] or was added before (the
    /// sockets are dropped, their ports go back to the pool), a socket
    /// cannot be registered, or the relay stopped.
    pub fn add_stream(
        &self,
        index: usize,
        a: LegSetup,
        b: LegSetup,
    ) -> Result<LocalAddrs, RelayError> {
        if index >= MAX_STREAMS {
            return Err(RelayError::TooManyStreams(index));
        }
        let bit = 1u8 << index;
        if self.streams.fetch_or(bit, Ordering::AcqRel) & bit != 0 {
            return Err(RelayError::StreamExists(index));
        }
        let _guard = self.runtime.enter();
        let (stream, local) = match prepare_stream(index, a, b) {
            Ok(s) => s,
            Err(e) => {
                self.streams.fetch_and(!bit, Ordering::AcqRel);
                return Err(e);
            }
        };
        self.send(Control::AddStream(Box::new(stream)))?;
        Ok(local)
    }

    /// New SDP addresses for `leg`'s peer on stream 0 (re-INVITE, UPDATE,
    /// hold/resume), same sockets. See the module docs for what happens to
    /// the latch.
    pub fn update_peer(
        &self,
        leg: Leg,
        rtp: Option<SocketAddr>,
        rtcp: Option<SocketAddr>,
    ) -> Result<(), RelayError> {
        self.update_stream_peer(leg, 0, rtp, rtcp)
    }

    /// [`RelayHandle::update_peer`] for stream `stream` (ignored by the
    /// task if the stream does not exist).
    pub fn update_stream_peer(
        &self,
        leg: Leg,
        stream: usize,
        rtp: Option<SocketAddr>,
        rtcp: Option<SocketAddr>,
    ) -> Result<(), RelayError> {
        self.send(Control::UpdatePeer {
            leg,
            stream,
            rtp,
            rtcp,
        })
    }

    /// The SRTP transforms for `leg` from now on (`None`: plain RTP), on
    /// stream 0. Set whenever SDES negotiated new keys for the leg; the old
    /// context is dropped, so a new hop never decrypts with a previous
    /// hop's keys.
    pub fn set_crypto(&self, leg: Leg, crypto: Option<LegCrypto>) -> Result<(), RelayError> {
        self.set_stream_crypto(leg, 0, crypto)
    }

    /// [`RelayHandle::set_crypto`] for stream `stream`: each `m=` line has
    /// its own SDES keys (ignored by the task if the stream does not exist).
    pub fn set_stream_crypto(
        &self,
        leg: Leg,
        stream: usize,
        crypto: Option<LegCrypto>,
    ) -> Result<(), RelayError> {
        self.send(Control::SetCrypto {
            leg,
            stream,
            crypto: crypto.map(Box::new),
        })
    }

    /// The payload types' clock rates on `stream` (from the SDPs'
    /// `a=rtpmap`s): used for injected timestamps, and given to the
    /// observer when `stream` is the quality stream.
    pub fn set_clock_rates(&self, stream: usize, rates: Vec<(u8, u32)>) -> Result<(), RelayError> {
        self.send(Control::ClockRates { stream, rates })
    }

    /// The stream the observer measures (the call's first audio stream).
    /// Default 0.
    pub fn set_quality_stream(&self, stream: usize) -> Result<(), RelayError> {
        self.send(Control::QualityStream(stream))
    }

    /// A copy of every packet accepted from `leg`'s peer (`None`: both
    /// legs) on `stream` (`None`: every stream), plain, through a channel
    /// of `capacity` packets (at least 1). When the channel is full the
    /// packet is lost for this tap (counted in [`TapStats::dropped`]);
    /// dropping the receiver closes the tap.
    pub fn tap(
        &self,
        leg: Option<Leg>,
        stream: Option<usize>,
        capacity: usize,
    ) -> Result<mpsc::Receiver<TappedPacket>, RelayError> {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        self.send(Control::Tap(Tap { leg, stream, tx }))?;
        Ok(rx)
    }

    /// Starts an injection towards `leg`'s peer on `stream`: the next
    /// injected packet continues the SSRC, sequence and timestamp that peer
    /// last received. See [`InjectOptions`]. [`RelayHandle::inject`] without
    /// a start injects with the default options.
    pub fn inject_start(
        &self,
        leg: Leg,
        stream: usize,
        options: InjectOptions,
    ) -> Result<(), RelayError> {
        self.send(Control::InjectStart {
            leg,
            stream,
            options,
        })
    }

    /// Sends one plain RTP packet to `leg`'s peer on `stream`, its SSRC,
    /// sequence number and timestamp rewritten for continuity (see the
    /// module docs), encrypted if the leg is SRTP. The caller paces the
    /// packets. A new SSRC in the injected packets (another prompt) is
    /// mapped anew onto the continuing sequence.
    ///
    /// # Errors
    /// `rtp` is not an RTP packet, or the relay stopped.
    pub fn inject(&self, leg: Leg, stream: usize, rtp: Vec<u8>) -> Result<(), RelayError> {
        if rtp.len() < 12 || rtp[0] >> 6 != 2 || rtp.len() > MAX_DATAGRAM {
            return Err(RelayError::NotRtp);
        }
        self.send(Control::Inject { leg, stream, rtp })
    }

    /// Ends the injection towards `leg`'s peer on `stream`: forwarding
    /// resumes if it was suppressed.
    pub fn inject_stop(&self, leg: Leg, stream: usize) -> Result<(), RelayError> {
        self.send(Control::InjectStop { leg, stream })
    }

    /// A snapshot of the counters and the observer.
    pub async fn stats(&self) -> Result<RelayStats<O>, RelayError> {
        let (tx, rx) = oneshot::channel();
        self.send(Control::Stats(tx))?;
        rx.await.map_err(|_| RelayError::Stopped)
    }

    /// Stops the relay and waits until its sockets are closed and its ports
    /// are back in the pool. Whoever shares the handle sees it stopped
    /// (its requests fail with [`RelayError::Stopped`]).
    ///
    /// # Errors
    /// [`RelayError::Stopped`]: the relay had ended already (its thread
    /// stopped); [`RelayError::Panicked`]: it ended by a panic.
    pub async fn stop(&self) -> Result<(), RelayError> {
        // A task that already ended (the relay thread stopped) has nobody
        // to tell.
        if self.ctl.send_deferred(Control::Stop).is_err() {
            return Err(RelayError::Stopped);
        }
        // The task drops its end of the queue last, after its sockets
        // closed and its ports went back.
        let panicked = poll_fn(|cx| self.ctl.poll_closed(cx)).await;
        if panicked {
            Err(RelayError::Panicked)
        } else {
            Ok(())
        }
    }

    /// Whether the relay task has ended.
    pub fn is_finished(&self) -> bool {
        self.ctl.is_closed()
    }
}

/// Registers a stream's sockets with the runtime (which must be entered).
fn prepare_stream(
    index: usize,
    a: LegSetup,
    b: LegSetup,
) -> Result<(NewStream, LocalAddrs), RelayError> {
    let unspecified = SocketAddr::from(([0, 0, 0, 0], 0));
    let mut local = LocalAddrs {
        rtp: [unspecified; 2],
        rtcp: [unspecified; 2],
    };
    let mut ports = [None, None];
    let mut peers = [[None; 2]; 2];
    let mut socks: Vec<RelaySocket> = Vec::with_capacity(4);
    for (i, setup) in [a, b].into_iter().enumerate() {
        let LegSetup {
            sockets,
            peer_rtp,
            peer_rtcp,
        } = setup;
        ports[i] = sockets.ports;
        for (kind, sock) in [sockets.rtp, sockets.rtcp].into_iter().enumerate() {
            let addr = sock.local_addr();
            if kind == RTP {
                local.rtp[i] = addr;
            } else {
                local.rtcp[i] = addr;
            }
            socks.push(rx::register(sock).map_err(RelayError::Socket)?);
        }
        peers[i] = [peer_rtp, peer_rtcp];
    }
    let mut it = socks.into_iter();
    let (Some(a_rtp), Some(a_rtcp), Some(b_rtp), Some(b_rtcp)) =
        (it.next(), it.next(), it.next(), it.next())
    else {
        return Err(RelayError::Stopped);
    };
    Ok((
        NewStream {
            index,
            socks: [[a_rtp, b_rtp], [a_rtcp, b_rtcp]],
            peers,
            ports,
        },
        local,
    ))
}

/// Starts a relay with the default (no-op) observer.
pub fn spawn(
    config: RelayConfig,
    a: LegSetup,
    b: LegSetup,
    events: MediaEventSender,
) -> Result<RelayHandle<NoopObserver>, RelayError> {
    spawn_with_observer(config, a, b, NoopObserver, events)
}

/// Starts a relay task on the current tokio runtime (which must have time
/// enabled when an inactivity timeout is set), with `a` and `b` as stream
/// 0. `events` ([`media_events`]) receives [`MediaEvent`]s; they are sent
/// without waiting so a slow call actor never stalls media. The daemon places relays on their own threads instead
/// ([`crate::RelayRuntimes`]).
pub fn spawn_with_observer<O: PacketObserver + Clone>(
    config: RelayConfig,
    a: LegSetup,
    b: LegSetup,
    observer: O,
    events: MediaEventSender,
) -> Result<RelayHandle<O>, RelayError> {
    let runtime = tokio::runtime::Handle::try_current().map_err(|_| RelayError::NoRuntime)?;
    spawn_counted(&runtime, None, config, a, b, observer, events, None)
}

/// [`spawn_with_observer`] on `runtime` (any runtime with I/O and, for the
/// inactivity timeout, time enabled), from any thread.
pub fn spawn_with_observer_on<O: PacketObserver + Clone>(
    runtime: &tokio::runtime::Handle,
    config: RelayConfig,
    a: LegSetup,
    b: LegSetup,
    observer: O,
    events: MediaEventSender,
) -> Result<RelayHandle<O>, RelayError> {
    spawn_counted(runtime, None, config, a, b, observer, events, None)
}

/// The relay task's start; `load` counts it on its relay thread until the
/// task ends. With `deferred` (a relay thread's batch), the task starts
/// with the thread's next batch instead of waking the thread now.
#[allow(clippy::too_many_arguments)]
pub(crate) fn spawn_counted<O: PacketObserver + Clone>(
    runtime: &tokio::runtime::Handle,
    deferred: Option<&Arc<Deferred>>,
    config: RelayConfig,
    a: LegSetup,
    b: LegSetup,
    observer: O,
    events: MediaEventSender,
    load: Option<LoadGuard>,
) -> Result<RelayHandle<O>, RelayError> {
    // The sockets and the inactivity timer register with `runtime`'s
    // reactor and timer, whichever thread this runs on.
    let _guard = runtime.enter();
    let now = Instant::now();
    let (first, local) = prepare_stream(0, a, b)?;
    let (ctl_tx, ctl_rx) = ctlq::queue(deferred.cloned());
    let timeout = config.inactivity_timeout.filter(|t| !t.is_zero());
    // Most calls carry one stream: room for more is made when one is added,
    // not reserved in every call's memory.
    let streams = vec![Stream::new(first, 0)];
    let task = Task {
        streams,
        state: State {
            config,
            observer,
            quality_stream: 0,
            last_rtp: [now; 2],
            last_rtcp: None,
            inactive_reported: false,
            scratch: [Vec::new(), Vec::new()],
            taps: Vec::new(),
            tap_totals: TapStats::default(),
        },
        events,
        inactivity: timeout.map(|t| (t, Box::pin(tokio::time::sleep(t)))),
        quiet: Quiet::new(),
        _load: load,
        ctl: ctl_rx,
    };
    // The relay's lines name the call: they are written in the span it was
    // started in (the daemon's call span), on whichever runtime.
    let run = task.run(tracing::Span::current());
    match deferred {
        Some(d) => d.spawn(Box::pin(run)),
        // Detached: the handle learns the end from the control queue.
        None => drop(runtime.spawn(run)),
    }
    Ok(RelayHandle {
        ctl: ctl_tx,
        local,
        runtime: runtime.clone(),
        streams: AtomicU8::new(1),
    })
}

/// The latch of one peer address (RTP or RTCP of one leg): the source the
/// peer's packets come from, and when it was last heard.
///
/// The address from the SDP is kept apart ([`StreamState::sdp`]) and
/// passed in: only the latch is read per packet, and without the SDP's 32
/// bytes a leg's RTP latch, its SRTP state and its detour flag fit in one
/// cache line ([`Side`]).
#[derive(Debug, Default, Clone, Copy)]
struct Peer {
    latched: Option<SocketAddr>,
    /// Last packet accepted from the latched source.
    last_seen: Option<Instant>,
}

/// Sets a peer's SDP address. A changed address clears the latch (the next
/// packet latches again); the same address again (a session refresh, a
/// NATed peer resending its private address) keeps it.
fn set_sdp(slot: &mut Option<SocketAddr>, peer: &mut Peer, sdp: Option<SocketAddr>) {
    if *slot != sdp {
        *slot = sdp;
        *peer = Peer::default();
    }
}

// The SDP's address is passed by reference and read only off the latched
// path, in functions of their own: it lies outside the packet's lines
// (`Side`), and reading it on every packet was a cache miss each.
impl Peer {
    /// Where traffic to this peer goes: the latched source, else the SDP's
    /// address. Converted to `sendto`'s form per packet rather than cached:
    /// a cached `SockAddr` is 136 bytes, four per stream, in every call's
    /// memory, and the conversion is a few stores next to the syscall.
    #[inline]
    fn dest(&self, sdp: &Option<SocketAddr>) -> Option<SockAddr> {
        match self.latched {
            Some(addr) => Some(SockAddr::from(addr)),
            None => unlatched_dest(sdp),
        }
    }

    /// Whether a packet from `src` is accepted; latches when allowed.
    #[inline]
    fn accept(
        &mut self,
        sdp: &Option<SocketAddr>,
        src: SocketAddr,
        now: Instant,
        config: &RelayConfig,
    ) -> bool {
        if self.latched == Some(src) {
            self.last_seen = Some(now);
            return true;
        }
        self.accept_unlatched(sdp, src, now, config)
    }

    #[cold]
    #[inline(never)]
    fn accept_unlatched(
        &mut self,
        sdp: &Option<SocketAddr>,
        src: SocketAddr,
        now: Instant,
        config: &RelayConfig,
    ) -> bool {
        let ok = self.admits_unlatched(sdp, src, now, config);
        if ok {
            self.latch(sdp, src, now);
        }
        ok
    }

    /// Whether a packet from `src` would be accepted, without latching: an
    /// SRTP leg authenticates the packet between this and [`Peer::note`],
    /// so a forged packet never moves the latch.
    #[inline]
    fn admits(
        &self,
        sdp: &Option<SocketAddr>,
        src: SocketAddr,
        now: Instant,
        config: &RelayConfig,
    ) -> bool {
        self.latched == Some(src) || self.admits_unlatched(sdp, src, now, config)
    }

    /// [`Peer::admits`] for a source other than the latched one.
    #[cold]
    #[inline(never)]
    fn admits_unlatched(
        &self,
        sdp: &Option<SocketAddr>,
        src: SocketAddr,
        now: Instant,
        config: &RelayConfig,
    ) -> bool {
        match (self.latched, config.strict) {
            (None, false) => true,
            (None, true) => sdp.is_some_and(|sdp| sdp.ip() == src.ip()),
            (Some(_), true) => false,
            (Some(_), false) => self
                .last_seen
                .is_none_or(|seen| now.saturating_duration_since(seen) >= config.relatch_after),
        }
    }

    /// Records an accepted packet from `src`: refreshes or moves the latch.
    #[inline]
    fn note(&mut self, sdp: &Option<SocketAddr>, src: SocketAddr, now: Instant) {
        if self.latched == Some(src) {
            self.last_seen = Some(now);
        } else {
            self.latch(sdp, src, now);
        }
    }

    #[cold]
    #[inline(never)]
    fn latch(&mut self, sdp: &Option<SocketAddr>, src: SocketAddr, now: Instant) {
        tracing::debug!(%src, ?sdp, previous = ?self.latched, "media source latched");
        self.latched = Some(src);
        self.last_seen = Some(now);
    }
}

/// [`Peer::dest`] before anything latched: the SDP's address.
#[cold]
#[inline(never)]
fn unlatched_dest(sdp: &Option<SocketAddr>) -> Option<SockAddr> {
    sdp.map(SockAddr::from)
}

/// Packets and bytes one way, of one kind (RTP or RTCP).
#[derive(Debug, Default, Clone, Copy)]
struct Count {
    packets: u64,
    bytes: u64,
}

impl Count {
    #[inline]
    fn add(&mut self, len: usize) {
        self.packets += 1;
        self.bytes += len as u64;
    }
}

/// What an RTP packet reads of the leg it comes from (the latch, the keys
/// to decrypt it) and of the leg it goes to (the address, the keys to
/// encrypt it, whether it takes the detour): one cache line per leg.
///
/// Why lines and not instructions: a relay thread carries hundreds of
/// calls, and between two packets of one call those of all the others
/// pass, so each line a packet touches is likely a cache miss. At 600
/// calls the packet path's lines of every call no longer fitted a core's
/// L2, and trunkd's CPU per packet rose with the call count while the
/// bare relay's, whose per-call state is a few lines, fell
/// (docs/performance.md, issue 15 thirteenth pass).
#[derive(Default)]
#[repr(align(64))]
struct Side {
    /// The leg's RTP peer.
    rtp: Peer,
    /// SRTP transforms when the leg's stream is encrypted.
    crypto: Option<Box<LegCrypto>>,
    /// RTP forwarded to this leg's peer takes the slow path: it is held
    /// back ([`InjectOptions::suppress`]) or renumbered after an
    /// injection. Kept equal to [`StreamState::detour`] by
    /// [`StreamState::refresh_detour`], so the packet path reads one flag
    /// on this line instead of three states elsewhere.
    detour: bool,
    /// The stream is the quality stream: packets from this leg go to the
    /// observer. Set on both sides by [`StreamState::set_observed`], so
    /// the packet path does not compare the stream's index.
    observed: bool,
}

/// The RTP of one direction, by the leg it comes from: what every
/// forwarded packet writes, in one cache line (see [`Side`]).
#[derive(Debug, Default, Clone, Copy)]
#[repr(align(64))]
struct Flow {
    /// Received from the leg's peer.
    rx: Count,
    /// Sent to the other leg's peer (relayed and injected).
    tx: Count,
    /// The last RTP packet sent to the other leg's peer, which an
    /// injection continues.
    sent: Option<SentRtp>,
}

/// A leg's counters that the RTP path does not touch.
#[derive(Debug, Default, Clone, Copy)]
struct LegCounters {
    rtcp_rx: Count,
    rtcp_tx: Count,
    dropped: DropCounters,
    injected: u64,
    suppressed: u64,
}

/// The header of the last RTP packet sent to a peer, which an injection
/// continues.
#[derive(Debug, Clone, Copy)]
struct SentRtp {
    pt: u8,
    seq: u16,
    ts: u32,
    ssrc: u32,
    at: Instant,
}

/// RFC 3550 §5.1 fixed header fields: (PT, sequence, timestamp, SSRC).
/// The caller checked the length (12 bytes or more).
#[inline]
fn rtp_header(p: &[u8]) -> (u8, u16, u32, u32) {
    (
        p[1] & 0x7f,
        u16::from_be_bytes([p[2], p[3]]),
        u32::from_be_bytes([p[4], p[5], p[6], p[7]]),
        u32::from_be_bytes([p[8], p[9], p[10], p[11]]),
    )
}

/// How the injected packets' numbering maps onto the peer's.
#[derive(Debug, Clone, Copy)]
struct InjectMap {
    in_ssrc: u32,
    in_seq: u16,
    in_ts: u32,
    out_ssrc: u32,
    out_seq: u16,
    out_ts: u32,
}

/// Offsets applied to the forwarded packets of one SSRC after an
/// injection, so the peer's sequence and timestamp do not jump back.
#[derive(Debug, Clone, Copy)]
struct Renumber {
    in_ssrc: u32,
    out_ssrc: u32,
    seq_offset: u16,
    ts_offset: u32,
}

/// Rewrites a forwarded RTP packet (plain, about to be sent to `leg`'s
/// peer) to continue the numbering that peer last received; off the usual
/// path: only after an injection.
#[cold]
#[inline(never)]
fn renumber(
    renumber: &mut Option<Renumber>,
    resync: &mut bool,
    sent: Option<SentRtp>,
    clock_rates: &[(u8, u32)],
    pkt: &mut [u8],
    now: Instant,
) {
    if pkt.len() < 12 {
        return;
    }
    let (_, seq, ts, ssrc) = rtp_header(pkt);
    if std::mem::take(resync) {
        *renumber = sent.map(|last| {
            let rate = clock_rate(clock_rates, last.pt);
            let elapsed = now.saturating_duration_since(last.at).as_micros();
            let gap = (elapsed * u128::from(rate) / 1_000_000).max(1) as u32;
            Renumber {
                in_ssrc: ssrc,
                out_ssrc: last.ssrc,
                seq_offset: last.seq.wrapping_add(1).wrapping_sub(seq),
                ts_offset: last.ts.wrapping_add(gap).wrapping_sub(ts),
            }
        });
    }
    let Some(r) = *renumber else { return };
    if r.in_ssrc != ssrc {
        // A new source: a new stream for the peer too, nothing to continue.
        *renumber = None;
        return;
    }
    pkt[2..4].copy_from_slice(&seq.wrapping_add(r.seq_offset).to_be_bytes());
    pkt[4..8].copy_from_slice(&ts.wrapping_add(r.ts_offset).to_be_bytes());
    pkt[8..12].copy_from_slice(&r.out_ssrc.to_be_bytes());
}

#[derive(Debug, Clone, Copy, Default)]
struct Injecting {
    suppress: bool,
    map: Option<InjectMap>,
}

/// One stream's per-packet state (all but the sockets).
///
/// An RTP packet from leg `l` touches `side[l]`, `side[l ^ 1]` and
/// `flow[l]`, three cache lines; the rest is read on the slow paths
/// (RTCP, drops, injection, a peer not latched yet, stats).
struct StreamState {
    side: [Side; 2],
    /// By the leg the packets come from.
    flow: [Flow; 2],
    index: usize,
    /// Per leg, per kind (RTP, RTCP): the peer's address from the SDP.
    sdp: [[Option<SocketAddr>; 2]; 2],
    /// Per leg: the RTCP peer.
    rtcp: [Peer; 2],
    legs: [LegCounters; 2],
    /// Per leg: an injection towards that leg's peer.
    inject: [Option<Injecting>; 2],
    /// Per leg: after an injection, the renumbering of the forwarded RTP
    /// so it continues what the peer last received.
    renumber: [Option<Renumber>; 2],
    /// Per leg: an injection ended; the next forwarded RTP packet sets
    /// `renumber`.
    resync: [bool; 2],
    clock_rates: Vec<(u8, u32)>,
}

impl StreamState {
    /// Sets a leg's SDP addresses ([`set_sdp`]).
    fn set_sdp(&mut self, leg: usize, rtp: Option<SocketAddr>, rtcp: Option<SocketAddr>) {
        let [sdp_rtp, sdp_rtcp] = &mut self.sdp[leg];
        set_sdp(sdp_rtp, &mut self.side[leg].rtp, rtp);
        set_sdp(sdp_rtcp, &mut self.rtcp[leg], rtcp);
    }

    /// Whether the observer sees this stream ([`Side::observed`]).
    fn set_observed(&mut self, quality_stream: usize) {
        let on = self.index == quality_stream;
        for side in &mut self.side {
            side.observed = on;
        }
    }

    /// Brings [`Side::detour`] up to date after `inject`, `renumber` or
    /// `resync` of `leg` changed.
    fn refresh_detour(&mut self, leg: usize) {
        self.side[leg].detour = detour(self.inject[leg], self.renumber[leg], self.resync[leg]);
    }
}

/// Whether RTP forwarded to a leg's peer must be held back or renumbered,
/// from that leg's injection state.
fn detour(inject: Option<Injecting>, renumber: Option<Renumber>, resync: bool) -> bool {
    inject.is_some_and(|i| i.suppress) || renumber.is_some() || resync
}

/// A payload type's clock rate from the stream's list, else 8 kHz.
fn clock_rate(rates: &[(u8, u32)], pt: u8) -> u32 {
    rates
        .iter()
        .find(|(p, _)| *p == pt)
        .map_or(DEFAULT_CLOCK_RATE, |(_, r)| (*r).max(1))
}

/// The sockets of one stream, by kind then leg: the two RTP sockets, which
/// every packet polls, share a cache line.
type StreamSockets = [[RelaySocket; 2]; 2];

// `repr(C)`: the state's lines first, then the RTP sockets' line, in this
// order. Field order is drop order too: the sockets close before the ports
// return to the pool, so a pair is never handed out while still bound.
#[repr(C)]
struct Stream {
    st: StreamState,
    socks: StreamSockets,
    _ports: [Option<PortPair>; 2],
}

impl Stream {
    /// A stream of a relay whose observer sees stream `quality_stream`.
    fn new(n: NewStream, quality_stream: usize) -> Self {
        let mut stream = Stream {
            socks: n.socks,
            st: StreamState {
                side: Default::default(),
                flow: Default::default(),
                index: n.index,
                sdp: n.peers,
                rtcp: Default::default(),
                legs: Default::default(),
                inject: [None; 2],
                renumber: [None; 2],
                resync: [false; 2],
                clock_rates: Vec::new(),
            },
            _ports: n.ports,
        };
        stream.st.set_observed(quality_stream);
        stream
    }
}

/// A tap consumer.
struct Tap {
    leg: Option<Leg>,
    stream: Option<usize>,
    tx: mpsc::Sender<TappedPacket>,
}

/// Everything the packet path touches except the sockets and the buffer,
/// so both can be borrowed alongside it.
///
/// `repr(C)`, in this order: what every packet reads or writes comes first
/// (after the task's own, see [`Task`]), the observer's state next, and
/// what only the slow paths touch last (see [`Side`] for why lines count).
#[repr(C)]
struct State<O> {
    last_rtp: [Instant; 2],
    inactive_reported: bool,
    taps: Vec<Tap>,
    observer: O,
    /// The stream the observer sees (its streams' [`Side::observed`]).
    quality_stream: usize,
    config: RelayConfig,
    last_rtcp: Option<Instant>,
    /// The SRTP transforms' output buffers (plain, protected), allocated
    /// on the first SRTP packet and reused.
    scratch: [Vec<u8>; 2],
    tap_totals: TapStats,
}

/// `repr(C)`: the fields every poll reads first (the streams, the quiet
/// flag, the control queue's), then the packet path's [`State`]. Drop
/// order is then not the one the handle needs, which [`Task`]'s `Drop`
/// restores.
#[repr(C)]
struct Task<O> {
    streams: Vec<Stream>,
    /// The RTCP sockets and the inactivity timer are asked only when they
    /// signalled (`quiet.rs`); the RTP sockets on every poll.
    quiet: Quiet,
    ctl: ctlq::Receiver<Control<O>>,
    state: State<O>,
    events: MediaEventSender,
    inactivity: Option<(Duration, Pin<Box<Sleep>>)>,
    /// Counts this relay on its relay thread while the task lives.
    _load: Option<LoadGuard>,
}

impl<O> Drop for Task<O> {
    /// `ctl` must end last: its end tells the handle that the relay is
    /// gone, so the sockets are closed, the ports back and the load
    /// counted down before the fields drop in their declared order.
    fn drop(&mut self) {
        self.streams.clear();
        self._load = None;
    }
}

impl<O: PacketObserver + Clone> Task<O> {
    /// The relay's future: the task itself, polled until it stops.
    ///
    /// Not an `async fn`: an async fn's future keeps its argument twice
    /// (once as given, once moved into its body's state), which cost every
    /// call another copy of the ~1.2 KB task (issue 15). The closure owns
    /// the one copy.
    ///
    /// `span` is entered only while the relay's lines are enabled: the task
    /// is polled about once per packet, and entering the call's span on
    /// every poll (`Instrument`) was 3 % of a relay thread's CPU with debug
    /// off, where the relay writes nothing (docs/performance.md, ninth
    /// pass). Every line the relay writes is at debug level, so that is
    /// the level checked.
    fn run(mut self, span: tracing::Span) -> impl Future<Output = ()> + Send
    where
        O: Send,
    {
        poll_fn(move |cx| {
            let _entered = tracing::enabled!(tracing::Level::DEBUG).then(|| span.enter());
            let stopped = self.poll(cx);
            if stopped.is_ready() {
                tracing::debug!("media relay stopped");
            }
            stopped
        })
    }

    fn stream_mut(&mut self, index: usize) -> Option<&mut Stream> {
        self.streams.iter_mut().find(|s| s.st.index == index)
    }

    /// Applies one control message; `false`: stop.
    fn control(&mut self, c: Control<O>) -> bool {
        match c {
            Control::Stop => return false,
            Control::UpdatePeer {
                leg,
                stream,
                rtp,
                rtcp,
            } => {
                if let Some(s) = self.stream_mut(stream) {
                    s.st.set_sdp(leg.index(), rtp, rtcp);
                }
            }
            Control::SetCrypto {
                leg,
                stream,
                mut crypto,
            } => {
                let Some(s) = self.stream_mut(stream) else {
                    return true;
                };
                let slot = &mut s.st.side[leg.index()].crypto;
                // A rekey on the same leg keeps the streams' counters.
                if let (Some(new), Some(old)) = (crypto.as_mut(), slot.as_ref()) {
                    new.inherit_streams(old);
                }
                *slot = crypto;
            }
            Control::AddStream(n) => {
                // The handle refuses duplicates; keep the invariant anyway.
                if self.stream_mut(n.index).is_none() {
                    self.streams
                        .push(Stream::new(*n, self.state.quality_stream));
                    // Its RTCP sockets are asked (and so registered) in
                    // this poll.
                    self.quiet.mark();
                }
            }
            Control::ClockRates { stream, rates } => {
                if stream == self.state.quality_stream {
                    self.state.observer.set_clock_rates(&rates);
                }
                if let Some(s) = self.stream_mut(stream) {
                    s.st.clock_rates = rates;
                }
            }
            Control::QualityStream(stream) => {
                self.state.quality_stream = stream;
                for s in &mut self.streams {
                    s.st.set_observed(stream);
                }
            }
            Control::Tap(tap) => {
                self.state.taps.retain(|t| !t.tx.is_closed());
                self.state.taps.push(tap);
            }
            Control::InjectStart {
                leg,
                stream,
                options,
            } => {
                if let Some(s) = self.stream_mut(stream) {
                    s.st.inject[leg.index()] = Some(Injecting {
                        suppress: options.suppress,
                        map: None,
                    });
                    s.st.refresh_detour(leg.index());
                }
            }
            Control::Inject { leg, stream, rtp } => {
                let Some(i) = self.streams.iter().position(|s| s.st.index == stream) else {
                    return true;
                };
                let Stream { socks, st, .. } = &mut self.streams[i];
                self.state
                    .inject(socks, st, leg.index(), rtp, Instant::now());
            }
            Control::InjectStop { leg, stream } => {
                if let Some(s) = self.stream_mut(stream) {
                    let injected = s.st.inject[leg.index()]
                        .take()
                        .is_some_and(|i| i.map.is_some());
                    // The other peer's stream resumes renumbered after
                    // what was injected.
                    s.st.resync[leg.index()] |= injected;
                    s.st.refresh_detour(leg.index());
                }
            }
            Control::Stats(reply) => {
                let _ = reply.send(self.state.snapshot(&self.streams));
            }
        }
        true
    }

    /// [`Task::poll_inner`], noting a panic in the control queue (so that
    /// [`RelayHandle::stop`] reports it) before it unwinds on. The catch
    /// costs nothing unless something panics.
    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.poll_inner(cx))) {
            Ok(ready) => ready,
            Err(panic) => {
                self.ctl.mark_panicked();
                std::panic::resume_unwind(panic)
            }
        }
    }

    fn poll_inner(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        // Control first: a stop must not wait behind a packet flood.
        loop {
            match self.ctl.poll_recv(cx) {
                Poll::Ready(Some(c)) => {
                    if !self.control(c) {
                        return Poll::Ready(());
                    }
                }
                Poll::Ready(None) => return Poll::Ready(()),
                Poll::Pending => break,
            }
        }

        let quiet_due = self.quiet.take_due(cx.waker());
        let mut quiet_cx = self.quiet.context();
        let quiet = quiet_due.then_some(&mut quiet_cx);

        // One pair of receive buffers per thread, not per call: packets
        // are handled as they are read, so nothing outlives this poll.
        let (more, quiet_more) =
            rx::with_slots(|slots| drain(&mut self.streams, &mut self.state, cx, quiet, slots));

        // The timer is asked (and its field read) only when due.
        let inactivity = if quiet_due {
            self.inactivity.as_mut()
        } else {
            None
        };
        if let Some((timeout, sleep)) = inactivity {
            while sleep.as_mut().poll(&mut quiet_cx).is_ready() {
                let now = Instant::now();
                let last = self.state.last_rtp[0].max(self.state.last_rtp[1]);
                let idle = now.saturating_duration_since(last);
                let next = if idle >= *timeout {
                    if !self.state.inactive_reported {
                        self.state.inactive_reported = true;
                        let rtcp_idle = self
                            .state
                            .last_rtcp
                            .map(|t| now.saturating_duration_since(t));
                        tracing::debug!(?idle, "media inactive");
                        self.events.send(MediaEvent::Inactive { idle, rtcp_idle });
                    }
                    now + *timeout
                } else {
                    last + *timeout
                };
                sleep.as_mut().reset(tokio::time::Instant::from_std(next));
            }
        }

        if quiet_more {
            self.quiet.mark();
        }
        if more || quiet_more {
            // A socket still has packets: come back after other tasks ran.
            cx.waker().wake_by_ref();
        }
        Poll::Pending
    }
}

/// Reads every ready RTP socket of every stream, and the RTCP sockets when
/// `quiet` (their context) is given, up to [`BURST`] datagrams each, into
/// `slots` and handles each packet. Returns whether an RTP socket, and
/// whether an RTCP socket, still has packets.
fn drain<O: PacketObserver + Clone>(
    streams: &mut [Stream],
    state: &mut State<O>,
    cx: &mut Context<'_>,
    mut quiet: Option<&mut Context<'_>>,
    slots: &mut Slots,
) -> (bool, bool) {
    let mut more = (false, false);
    for stream in streams.iter_mut() {
        for leg in 0..2 {
            more.0 |= drain_socket(stream, state, leg, RTP, cx, slots);
            if let Some(quiet) = quiet.as_deref_mut() {
                more.1 |= drain_socket(stream, state, leg, RTCP, quiet, slots);
            }
        }
    }
    more
}

/// Reads up to [`BURST`] datagrams from one socket and handles each;
/// `true`: it still has packets.
#[inline(always)]
fn drain_socket<O: PacketObserver + Clone>(
    stream: &mut Stream,
    state: &mut State<O>,
    leg: usize,
    kind: usize,
    cx: &mut Context<'_>,
    slots: &mut Slots,
) -> bool {
    let Stream { socks, st, .. } = stream;
    for _ in 0..BURST {
        match rx::poll_recv(&socks[kind][leg], cx, slots) {
            Poll::Ready(Ok(batch)) => {
                let now = Instant::now();
                for i in 0..batch.count {
                    let dropped = &mut st.legs[leg].dropped;
                    if batch.got[i].truncated {
                        dropped.oversize += 1;
                        continue;
                    }
                    let Some(src) = batch.got[i].src else {
                        dropped.foreign_source += 1;
                        continue;
                    };
                    let pkt = &mut slots[i][..batch.got[i].len];
                    state.on_packet(socks, st, leg, kind, src, pkt, now);
                }
            }
            Poll::Ready(Err(e)) => {
                // UDP receive errors are per datagram (an ICMP error queued
                // on the socket): note and go on.
                tracing::debug!(error = %e, leg, kind, "media socket receive error");
            }
            Poll::Pending => return false,
        }
    }
    true
}

impl<O: PacketObserver + Clone> State<O> {
    /// The per-packet path: latch check, classify, count, observe, tap,
    /// forward.
    #[inline]
    #[allow(clippy::too_many_arguments)]
    fn on_packet(
        &mut self,
        socks: &StreamSockets,
        st: &mut StreamState,
        leg: usize,
        kind: usize,
        src: SocketAddr,
        pkt: &mut [u8],
        now: Instant,
    ) {
        let rtcp = kind == RTCP || is_muxed_rtcp(pkt);
        let wire_len = pkt.len();
        let other = leg ^ 1;
        // The two legs' hot lines, borrowed apart (the SRTP states of both,
        // the RTP latches), and the stream's other fields beside them.
        let StreamState {
            side,
            flow,
            index,
            sdp,
            rtcp: rtcp_peers,
            legs,
            inject,
            renumber: renumbering,
            resync,
            clock_rates,
        } = st;
        let (rx_side, tx_side) = {
            let [a, b] = side;
            if leg == 0 {
                (a, b)
            } else {
                (b, a)
            }
        };
        let from_peer = if kind == RTP {
            &mut rx_side.rtp
        } else {
            &mut rtcp_peers[leg]
        };
        let from_sdp = &sdp[leg][kind];
        // Two scratch buffers kept by the task: the transforms write into
        // them, so an SRTP packet costs no allocation either.
        let [plain_buf, wire_buf] = &mut self.scratch;
        let plain: &mut [u8] = match rx_side.crypto.as_deref_mut() {
            None => {
                if !from_peer.accept(from_sdp, src, now, &self.config) {
                    legs[leg].dropped.foreign_source += 1;
                    return;
                }
                pkt
            }
            Some(c) => {
                if !from_peer.admits(from_sdp, src, now, &self.config) {
                    legs[leg].dropped.foreign_source += 1;
                    return;
                }
                let r = if rtcp {
                    c.unprotect_rtcp_into(pkt, plain_buf)
                } else {
                    c.unprotect_rtp_into(pkt, plain_buf)
                };
                match r {
                    Ok(()) => {
                        from_peer.note(from_sdp, src, now);
                        &mut plain_buf[..]
                    }
                    Err(SrtpError::NotRtp | SrtpError::TooShort) => {
                        legs[leg].dropped.not_srtp += 1;
                        return;
                    }
                    Err(e) => {
                        if legs[leg].dropped.srtp == 0 {
                            tracing::debug!(error = %e, leg, len = pkt.len(), "SRTP packet refused");
                        }
                        legs[leg].dropped.srtp += 1;
                        return;
                    }
                }
            }
        };
        if rtcp {
            legs[leg].rtcp_rx.add(wire_len);
        } else {
            flow[leg].rx.add(wire_len);
        }
        // Quality is measured on the plain packets: after decryption.
        let from = Leg::from_index(leg);
        let observed = rx_side.observed;
        if rtcp {
            self.last_rtcp = Some(now);
            if observed {
                self.observer.on_rtcp(from, plain, now);
            }
        } else {
            self.last_rtp[leg] = now;
            self.inactive_reported = false;
            if observed {
                self.observer.on_rtp(from, plain, now);
            }
        }
        if !self.taps.is_empty() {
            tap_out(
                &mut self.taps,
                &mut self.tap_totals,
                from,
                *index,
                rtcp,
                plain,
                now,
            );
        }

        if !rtcp && tx_side.detour {
            if inject[other].is_some_and(|i| i.suppress) {
                legs[other].suppressed += 1;
                return;
            }
            renumber(
                &mut renumbering[other],
                &mut resync[other],
                flow[leg].sent,
                clock_rates,
                plain,
                now,
            );
            tx_side.detour = detour(inject[other], renumbering[other], resync[other]);
        }
        let plain: &[u8] = plain;
        let dest = if kind == RTP {
            tx_side.rtp.dest(&sdp[other][RTP])
        } else {
            rtcp_peers[other].dest(&sdp[other][RTCP])
        };
        let Some(dest) = dest else {
            legs[leg].dropped.no_peer += 1;
            return;
        };
        let out: &[u8] = match tx_side.crypto.as_deref_mut() {
            None => plain,
            Some(c) => {
                let r = if rtcp {
                    c.protect_rtcp_into(plain, wire_buf)
                } else {
                    c.protect_rtp_into(plain, wire_buf)
                };
                match r {
                    Ok(()) => wire_buf,
                    // Not RTP (STUN, keepalives from a plain peer): nothing
                    // to protect, so nothing to send to an SRTP peer.
                    Err(SrtpError::NotRtp | SrtpError::TooShort) => {
                        legs[leg].dropped.not_srtp += 1;
                        return;
                    }
                    Err(_) => {
                        legs[leg].dropped.srtp += 1;
                        return;
                    }
                }
            }
        };
        match SockRef::from(socks[kind][other].get_ref()).send_to(out, &dest) {
            Ok(_) => {
                if rtcp {
                    legs[other].rtcp_tx.add(out.len());
                } else {
                    let f = &mut flow[leg];
                    f.tx.add(out.len());
                    if plain.len() >= 12 {
                        let (pt, seq, ts, ssrc) = rtp_header(plain);
                        f.sent = Some(SentRtp {
                            pt,
                            seq,
                            ts,
                            ssrc,
                            at: now,
                        });
                    }
                }
            }
            Err(e) => {
                if legs[leg].dropped.send_failed == 0 {
                    tracing::debug!(error = %e, leg = other, "media send failed");
                }
                legs[leg].dropped.send_failed += 1;
            }
        }
    }

    /// Sends trunkd's RTP packet `rtp` to `leg`'s peer on this stream,
    /// renumbered to continue what the peer last received.
    fn inject(
        &mut self,
        socks: &StreamSockets,
        st: &mut StreamState,
        leg: usize,
        mut rtp: Vec<u8>,
        now: Instant,
    ) {
        // `RelayHandle::inject` checked the header.
        if rtp.len() < 12 {
            return;
        }
        let (pt, seq, ts, ssrc) = rtp_header(&rtp);
        // What was sent to `leg`'s peer is the other leg's flow.
        let toward = leg ^ 1;
        let last = st.flow[toward].sent;
        let rate = last.map_or(DEFAULT_CLOCK_RATE, |l| clock_rate(&st.clock_rates, l.pt));
        let inj = st.inject[leg].get_or_insert_with(Injecting::default);
        let map = match inj.map {
            Some(m) if m.in_ssrc == ssrc => m,
            _ => {
                let m = match last {
                    Some(l) => {
                        // The timestamp advances by the time since the last
                        // packet the peer got, at least one tick.
                        let elapsed = now.saturating_duration_since(l.at).as_micros();
                        let gap = (elapsed * u128::from(rate) / 1_000_000).max(1);
                        InjectMap {
                            in_ssrc: ssrc,
                            in_seq: seq,
                            in_ts: ts,
                            out_ssrc: l.ssrc,
                            out_seq: l.seq.wrapping_add(1),
                            out_ts: l.ts.wrapping_add(gap as u32),
                        }
                    }
                    // Nothing sent to this peer yet: nothing to continue.
                    None => InjectMap {
                        in_ssrc: ssrc,
                        in_seq: seq,
                        in_ts: ts,
                        out_ssrc: ssrc,
                        out_seq: seq,
                        out_ts: ts,
                    },
                };
                inj.map = Some(m);
                m
            }
        };
        let out_seq = map.out_seq.wrapping_add(seq.wrapping_sub(map.in_seq));
        let out_ts = map.out_ts.wrapping_add(ts.wrapping_sub(map.in_ts));
        rtp[2..4].copy_from_slice(&out_seq.to_be_bytes());
        rtp[4..8].copy_from_slice(&out_ts.to_be_bytes());
        rtp[8..12].copy_from_slice(&map.out_ssrc.to_be_bytes());
        st.refresh_detour(leg);
        let Some(dest) = st.side[leg].rtp.dest(&st.sdp[leg][RTP]) else {
            st.legs[toward].dropped.no_peer += 1;
            return;
        };
        let crypto = st.side[leg].crypto.as_deref_mut();
        let wire_buf = &mut self.scratch[1];
        let out: &[u8] = match crypto {
            None => &rtp,
            Some(c) => match c.protect_rtp_into(&rtp, wire_buf) {
                Ok(()) => wire_buf,
                Err(e) => {
                    tracing::debug!(error = %e, leg, "injected packet not protected");
                    return;
                }
            },
        };
        match SockRef::from(socks[RTP][leg].get_ref()).send_to(out, &dest) {
            Ok(_) => {
                st.flow[toward].tx.add(out.len());
                st.legs[leg].injected += 1;
                st.flow[toward].sent = Some(SentRtp {
                    pt,
                    seq: out_seq,
                    ts: out_ts,
                    ssrc: map.out_ssrc,
                    at: now,
                });
            }
            Err(e) => tracing::debug!(error = %e, leg, "injected packet not sent"),
        }
    }

    fn snapshot(&self, streams: &[Stream]) -> RelayStats<O> {
        let leg = |st: &StreamState, i: usize| {
            let (rtp, rtcp) = (&st.side[i].rtp, &st.rtcp[i]);
            let c = &st.legs[i];
            LegStats {
                // RTP received from leg i is flow i's; sent to it, the
                // other flow's.
                rx: DirCounters::of(st.flow[i].rx, c.rtcp_rx),
                tx: DirCounters::of(st.flow[i ^ 1].tx, c.rtcp_tx),
                dropped: c.dropped,
                rtp_peer: rtp.latched.or(st.sdp[i][RTP]),
                rtcp_peer: rtcp.latched.or(st.sdp[i][RTCP]),
                rtp_latched: rtp.latched.is_some(),
                rtcp_latched: rtcp.latched.is_some(),
                srtp: st.side[i].crypto.as_ref().map(|c| c.suite()),
                injected: c.injected,
                suppressed: c.suppressed,
            }
        };
        let mut per: Vec<StreamStats> = streams
            .iter()
            .map(|s| StreamStats {
                index: s.st.index,
                a: leg(&s.st, 0),
                b: leg(&s.st, 1),
            })
            .collect();
        per.sort_by_key(|s| s.index);
        let total = |pick: fn(&StreamStats) -> &LegStats| {
            let mut t = per
                .iter()
                .find(|s| s.index == 0)
                .map(pick)
                .copied()
                .unwrap_or_default();
            for s in per.iter().filter(|s| s.index != 0) {
                let l = pick(s);
                t.rx = t.rx.plus(&l.rx);
                t.tx = t.tx.plus(&l.tx);
                t.dropped = t.dropped.plus(&l.dropped);
                t.injected += l.injected;
                t.suppressed += l.suppressed;
            }
            t
        };
        let a = total(|s| &s.a);
        let b = total(|s| &s.b);
        RelayStats {
            a,
            b,
            streams: per,
            quality_stream: self.quality_stream,
            taps: TapStats {
                open: self.taps.iter().filter(|t| !t.tx.is_closed()).count(),
                ..self.tap_totals
            },
            observer: self.observer.clone(),
        }
    }
}

/// Hands a copy of `pkt` to every tap that wants it, never waiting.
#[cold]
#[inline(never)]
fn tap_out(
    taps: &mut Vec<Tap>,
    totals: &mut TapStats,
    leg: Leg,
    stream: usize,
    rtcp: bool,
    pkt: &[u8],
    arrival: Instant,
) {
    let mut data: Option<Bytes> = None;
    // `retain` moves no memory it need not and allocates nothing.
    taps.retain(|t| {
        if t.leg.is_some_and(|l| l != leg) || t.stream.is_some_and(|s| s != stream) {
            return !t.tx.is_closed();
        }
        let packet = TappedPacket {
            leg,
            stream,
            rtcp,
            arrival,
            data: data
                .get_or_insert_with(|| Bytes::copy_from_slice(pkt))
                .clone(),
        };
        match t.tx.try_send(packet) {
            Ok(()) => totals.delivered += 1,
            Err(mpsc::error::TrySendError::Full(_)) => totals.dropped += 1,
            // A gone consumer: its tap is removed; nobody to count a loss
            // for.
            Err(mpsc::error::TrySendError::Closed(_)) => return false,
        }
        true
    });
}

/// RFC 5761 §4: with RTP and RTCP on one port, a datagram whose second byte
/// is 200..=204 (SR, RR, SDES, BYE, APP) is RTCP. Version 2 is checked too.
#[inline]
fn is_muxed_rtcp(pkt: &[u8]) -> bool {
    pkt.len() >= 8 && pkt[0] >> 6 == 2 && (200..=204).contains(&pkt[1])
}

/// The benchmark floor of ANCHORS.md done the project's way: one socket per
/// leg, latch each side's first source, forward every datagram to the other
/// side; no SDP, no stats, no timers, no allocation. Same receive/send
/// mechanics as the real relay, so the difference between the two is what
/// the relay's features cost. Runs until a socket error other than
/// would-block.
pub async fn bare_relay(a: StdUdpSocket, b: StdUdpSocket) -> io::Result<()> {
    let socks = [
        rx::register(MediaSocket::try_from(a)?)?,
        rx::register(MediaSocket::try_from(b)?)?,
    ];
    let mut peers: [Option<(SocketAddr, SockAddr)>; 2] = [None, None];
    let mut slots = rx::new_slots();
    poll_fn(|cx| {
        for side in 0..2 {
            for _ in 0..BURST {
                let batch = match rx::poll_recv(&socks[side], cx, &mut slots) {
                    Poll::Ready(Ok(batch)) => batch,
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Pending => break,
                };
                for i in 0..batch.count {
                    let Some(src) = batch.got[i].src else {
                        continue;
                    };
                    if peers[side].as_ref().is_none_or(|(addr, _)| *addr != src) {
                        peers[side] = Some((src, SockAddr::from(src)));
                    }
                    if let Some((_, dest)) = &peers[side ^ 1] {
                        let pkt = &slots[i][..batch.got[i].len];
                        let _ = SockRef::from(socks[side ^ 1].get_ref()).send_to(pkt, dest);
                    }
                }
            }
        }
        Poll::Pending
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What every relay carries for the call's life (docs/performance.md,
    /// "Issue 15: media"): the task's state, and no receive buffers of its
    /// own (they are per thread: `rx::with_slots`). Bounds at today's
    /// sizes, so growth is a decision, not an accident.
    #[test]
    fn per_call_relay_state_stays_small() {
        use std::mem::size_of;
        // The observer holds the optional `[hep]` RTCP tap (an
        // `Option<Arc<dyn RtcpTap>>`) and two 8-entry SR logs; a peer keeps
        // its addresses as `SocketAddr`s, not cached 136-byte `SockAddr`s.
        // The control queue's receiver keeps the waker it parked (16
        // bytes), which spares a lock per packet (ctlq). `Quiet` (48
        // bytes, and a 48-byte shared flag on the heap) spares the RTCP
        // sockets' and the timer's polls per packet (quiet.rs).
        assert!(size_of::<crate::quiet::Quiet>() <= 48);
        // The observer's per-leg receive state is two aligned cache lines
        // each (quality.rs, `Received`): 64 bytes more than packed, and the
        // alignment pads the task by as much again (issue 15, thirteenth
        // pass: lines touched per packet, not bytes per call, set the
        // relay's cost at hundreds of calls).
        assert!(size_of::<Task<crate::QualityObserver>>() <= 1408);
        // The observer keeps each leg's last payload type's clock rate,
        // which spares reading its rate list, on the heap, for every
        // packet.
        assert!(size_of::<crate::QualityObserver>() <= 960);
        // A packet's lines (`Side`, `Flow`): one each, and the two RTP
        // sockets in one more.
        assert_eq!(size_of::<Side>(), 64);
        assert_eq!(size_of::<Flow>(), 64);
        assert!(2 * size_of::<RelaySocket>() <= 64);
        assert!(size_of::<Stream>() <= 1088);
        assert!(size_of::<Peer>() <= 48);
        // A control message is queued only while it waits (ctlq), but a
        // big variant would still cost every queued message.
        assert!(size_of::<Control<crate::QualityObserver>>() <= 80);
        assert_eq!(size_of::<rx::Slots>(), 2 * MAX_DATAGRAM);
    }

    #[test]
    fn muxed_rtcp_classification() {
        let mut sr = [0u8; 28];
        sr[0] = 0x80;
        sr[1] = 200;
        assert!(is_muxed_rtcp(&sr));
        sr[1] = 0x80; // RTP with marker bit, PT 0
        assert!(!is_muxed_rtcp(&sr));
        sr[1] = 204;
        sr[0] = 0x40; // version 1
        assert!(!is_muxed_rtcp(&sr));
        assert!(!is_muxed_rtcp(&[0x80, 200]));
    }

    fn cfg(strict: bool) -> RelayConfig {
        RelayConfig {
            strict,
            inactivity_timeout: None,
            relatch_after: Duration::from_secs(5),
        }
    }

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn latch_non_strict() {
        let t0 = Instant::now();
        let c = cfg(false);
        let at = |secs| t0 + Duration::from_secs(secs);
        let mut p = Peer::default();
        let mut sdp = None;
        set_sdp(&mut sdp, &mut p, Some(sa("10.0.0.1:4000")));
        // NAT: another address latches.
        assert!(p.accept(&sdp, sa("198.51.100.1:61000"), t0, &c));
        assert_eq!(p.latched, Some(sa("198.51.100.1:61000")));
        // A stray while the latched one is active: dropped.
        assert!(!p.accept(&sdp, sa("198.51.100.9:5000"), at(1), &c));
        assert!(p.accept(&sdp, sa("198.51.100.1:61000"), at(2), &c));
        assert!(!p.accept(&sdp, sa("198.51.100.9:5000"), at(6), &c));
        // Latched silent for 5 s: the new source takes over.
        assert!(p.accept(&sdp, sa("198.51.100.9:5000"), at(7), &c));
        assert_eq!(p.latched, Some(sa("198.51.100.9:5000")));
        // Traffic goes to the latched source, not the SDP's address.
        assert_eq!(
            p.dest(&sdp).and_then(|d| d.as_socket()),
            Some(sa("198.51.100.9:5000"))
        );
        // Same SDP again keeps the latch; a new SDP clears it.
        set_sdp(&mut sdp, &mut p, Some(sa("10.0.0.1:4000")));
        assert_eq!(p.latched, Some(sa("198.51.100.9:5000")));
        set_sdp(&mut sdp, &mut p, Some(sa("10.0.0.1:4002")));
        assert_eq!(p.latched, None);
        assert_eq!(
            p.dest(&sdp).and_then(|d| d.as_socket()),
            Some(sa("10.0.0.1:4002"))
        );
    }

    #[test]
    fn latch_strict() {
        let t0 = Instant::now();
        let c = cfg(true);
        let mut p = Peer::default();
        let mut sdp = None;
        // Unknown SDP address: nothing latches.
        assert!(!p.accept(&sdp, sa("10.0.0.1:4000"), t0, &c));
        set_sdp(&mut sdp, &mut p, Some(sa("10.0.0.1:4000")));
        assert!(!p.accept(&sdp, sa("10.0.0.2:4000"), t0, &c));
        // Same IP, other port (port translation): latches.
        assert!(p.accept(&sdp, sa("10.0.0.1:4444"), t0, &c));
        // Never re-latches by itself, however long the silence.
        assert!(!p.accept(
            &sdp,
            sa("10.0.0.1:4000"),
            t0 + Duration::from_secs(3600),
            &c
        ));
    }
}
