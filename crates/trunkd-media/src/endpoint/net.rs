//! Thin tokio helpers that drive the sans-IO sources over a UDP socket: for
//! tests, and for an endpoint that owns its media socket. Injection into a
//! relayed leg does not use these; the relay takes the packets from
//! `poll_packet` itself.

use std::io;
use std::net::SocketAddr;
use std::time::Instant;

use tokio::net::UdpSocket;

use super::dtmf::DtmfSender;
use super::player::Player;

/// A source of paced RTP packets ([`Player`], [`DtmfSender`]).
pub trait PacedSource {
    /// The next packet if it is due at `now`.
    fn poll_packet(&mut self, now: Instant) -> Option<Vec<u8>>;
    /// When the next packet is due; `None` when finished (or not started).
    fn poll_timeout(&self) -> Option<Instant>;
}

impl PacedSource for Player {
    fn poll_packet(&mut self, now: Instant) -> Option<Vec<u8>> {
        Player::poll_packet(self, now)
    }
    fn poll_timeout(&self) -> Option<Instant> {
        Player::poll_timeout(self)
    }
}

impl PacedSource for DtmfSender {
    fn poll_packet(&mut self, now: Instant) -> Option<Vec<u8>> {
        DtmfSender::poll_packet(self, now)
    }
    fn poll_timeout(&self) -> Option<Instant> {
        DtmfSender::poll_timeout(self)
    }
}

/// Sends every packet of `source` from `socket` to `dest` at its pace, and
/// returns how many were sent.
///
/// # Errors
///
/// The first send error; the source keeps its state, so the caller can
/// resume.
pub async fn send_paced<S: PacedSource + ?Sized>(
    socket: &UdpSocket,
    dest: SocketAddr,
    source: &mut S,
) -> io::Result<u64> {
    let mut sent = 0;
    loop {
        let now = Instant::now();
        while let Some(packet) = source.poll_packet(now) {
            socket.send_to(&packet, dest).await?;
            sent += 1;
        }
        match source.poll_timeout() {
            Some(at) => tokio::time::sleep_until(at.into()).await,
            None => return Ok(sent),
        }
    }
}
