//! trunkd's media anchor (SPEC §2.4): SDP rewriting so both peers send their
//! media to trunkd, RTP/RTCP port-pair allocation over the configured range,
//! and the per-call relay task with symmetric latching, counters and an
//! inactivity detector.
//!
//! How a call actor uses it:
//!
//! 1. For each leg and stream, [`ports::PortAllocator::allocate_bound`] a
//!    pair of sockets (exhaustion: answer 503).
//! 2. Parse the peer's SDP ([`sdp::Sdp::parse`]; an error is a 488 with the
//!    error's text), and send the other leg [`sdp::LegOrigin::rewrite`] of it
//!    with trunkd's address and that leg's ports.
//! 3. Start the relay ([`relay::spawn`]) with each leg's sockets and peer
//!    address from its SDP ([`sdp::Sdp::remote_rtp`]/[`sdp::Sdp::remote_rtcp`]);
//!    later SDPs update it with [`relay::RelayHandle::update_peer`]. Each
//!    further `m=` line is a stream of its own
//!    ([`relay::RelayHandle::add_stream`], up to [`relay::MAX_STREAMS`]).
//!    Taps ([`relay::RelayHandle::tap`]) copy packets out; injection
//!    ([`relay::RelayHandle::inject`]) sends trunkd's own RTP to a peer.
//! 4. Every minute, [`relay::RelayHandle::stats`]; at the end, drop or
//!    [`relay::RelayHandle::stop`] the handle: the sockets close and the
//!    ports return to the pool.
//!
//! Calls trunkd answers itself (IVR) use the sans-IO pieces in [`endpoint`]:
//! G.711, WAV, a prompt player, RFC 4733 DTMF and a recorder; a session it
//! only receives (SIPREC) is answered by [`recvonly::recvonly_answer`], an
//! application call (one G.711 stream both ways) by
//! [`recvonly::application_answer`].
//!
//! The quality math (loss, jitter, RTT, MOS) lives in `trunkd-core::quality`
//! and plugs in through [`relay::PacketObserver`].

mod ctlq;
pub mod endpoint;
pub mod mailbox;
pub mod ports;
pub mod quality;
mod quiet;
pub mod recvonly;
pub mod relay;
pub mod runtimes;
mod rx;
pub mod sdes;
pub mod sdp;
pub mod srtp;
pub mod udp;

pub use mailbox::{mailbox, MailboxReceiver, MailboxRefused, MailboxSender};
pub use ports::{BoundPair, MediaSocket, PortAllocator, PortError, PortPair};
pub use quality::{PeerReport, QualityObserver, RtcpTap};
pub use recvonly::{
    application_answer, recvonly_answer, AnsweredCodec, AnsweredStream, RecvOnlyAnswer,
};
pub use relay::{
    bare_relay, media_events, spawn, spawn_with_observer, spawn_with_observer_on, DirCounters,
    DropCounters, InjectOptions, Leg, LegSetup, LegSockets, LegStats, LocalAddrs, MediaEvent,
    MediaEventSender, MediaEvents, NoopObserver, PacketObserver, RelayConfig, RelayError,
    RelayHandle, RelayStats, StreamStats, TapStats, TappedPacket, MAX_STREAMS,
};
pub use runtimes::RelayRuntimes;
pub use sdes::{CryptoSuite, LegKeys, LegSdes, MediaSecurity, SdesError, SrtpPolicy};
pub use sdp::{Direction, LegOrigin, Media, Origin, OriginOverride, RtpMap, Sdp, SdpError};
pub use srtp::{LegCrypto, SrtpError};
