//! SIP over UDP, TCP and TLS: sockets and framing, nothing else.
//!
//! Receive side: each UDP socket has one loop, each TCP connection one task;
//! both parse (`trunkd_sip::SipMessage::parse`) and hand well-formed
//! messages to the engine. Malformed input is answered 400/505 or dropped
//! right here by [`SipService`] and never reaches the engine; it costs a
//! counter, never a task.
//!
//! UDP is read in bursts, up to 16 datagrams per `recvmmsg(2)`.
//!
//! Send side: the engine's [`Sender`] writes UDP datagrams without waiting,
//! a burst's worth per `sendmmsg(2)` (a full socket buffer drops the
//! datagram, which retransmission covers), and writes to TCP and TLS
//! connections through a small queue per connection, connecting on first
//! use (connection reuse per peer and transport, both directions; see
//! [`Sender`]). TLS itself (versions,
//! certificates, reload) is [`crate::tls`]'s.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{mpsc, Semaphore};
use tracing::{debug, warn};
use trunkd_config::SipSettings;
use trunkd_media::udp::Received;
use trunkd_sip::hep::HepTransport;
use trunkd_sip::transaction::{ClientTxId, Peer, TxId, TxTransport};
use trunkd_sip::{frame, Frame};

use crate::engine::{EngineTx, Input};
use crate::metrics::{SipErrorLabels, TransportLabel};
use crate::sip_service::{SipService, Transport};
use crate::udp_queue::{Queued, UdpQueue, UDP_BATCH};

/// Outgoing messages queued per TCP connection before it counts as stuck.
const TCP_QUEUE: usize = 256;

/// Asks the kernel for `bytes` of receive buffer on a SIP UDP listener
/// (`[sip] udp_receive_buffer_bytes`; 0 keeps the kernel's default) and
/// returns the size it reports. Linux caps the request at
/// `net.core.rmem_max` and reports twice what it was asked, the other half
/// being its own bookkeeping per datagram.
///
/// Why: the default (212,992 bytes on Linux) holds about 130 SIP
/// datagrams; at 2,000 calls/s a few milliseconds without a read overflow
/// it, and every datagram dropped costs its call a 500 ms retransmission
/// (docs/performance.md, eleventh pass).
pub fn set_receive_buffer(sock: &UdpSocket, bytes: usize) -> std::io::Result<usize> {
    let s = socket2::SockRef::from(sock);
    if bytes > 0 {
        s.set_recv_buffer_size(bytes)?;
    }
    s.recv_buffer_size()
}

/// Whether the size the kernel reports for a receive buffer means the
/// request was cut (by `net.core.rmem_max`, on Linux).
pub fn receive_buffer_capped(asked: usize, reported: usize) -> bool {
    let kept = if cfg!(target_os = "linux") {
        reported / 2
    } else {
        reported
    };
    asked > 0 && kept < asked
}

pub async fn serve_udp(
    sock: Arc<UdpSocket>,
    svc: Arc<SipService>,
    engine: EngineTx,
    max_message_bytes: usize,
) {
    // One byte more than allowed per slot tells an oversized datagram from
    // a full one. The buffer is zeroed by the allocator (calloc), so the
    // pages of slots that no burst has reached are never touched.
    // No UDP datagram is longer than 65,535 bytes, whatever the setting.
    let slot = max_message_bytes.min(65_535) + 1;
    let mut buf = vec![0u8; slot * UDP_BATCH];
    let mut got = [Received::default(); UDP_BATCH];
    // The listener's own address, for the HEP copies (`[hep]`).
    let local = sock.local_addr().ok();
    loop {
        let n = match recv_burst(&sock, &mut buf, &mut got).await {
            Ok(n) => n,
            Err(e) => {
                // ICMP errors from earlier sends surface here on Linux; the
                // socket itself is fine.
                debug!(error = %e, "UDP receive error");
                continue;
            }
        };
        for (i, r) in got[..n].iter().enumerate() {
            let Some(src) = r.src else { continue };
            if r.truncated || r.len > max_message_bytes {
                svc.metrics()
                    .sip_malformed
                    .get_or_create(&SipErrorLabels {
                        transport: "udp",
                        action: "too_large",
                    })
                    .inc();
                continue;
            }
            let data = Bytes::copy_from_slice(&buf[i * slot..i * slot + r.len]);
            if let Some(local) = local {
                svc.capture(src, local, HepTransport::Udp, &data);
            }
            match svc.accept(data, src, Transport::Udp) {
                Ok(msg) => {
                    if engine
                        .send(Input::Message {
                            msg,
                            peer: Peer::udp(src),
                        })
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
                Err(Some(reply)) => {
                    if sock.send_to(&reply.bytes, reply.dest).await.is_ok() {
                        if let Some(local) = local {
                            svc.capture(local, reply.dest, HepTransport::Udp, &reply.bytes);
                        }
                    }
                }
                Err(None) => {}
            }
        }
    }
}

/// Waits for the listener to be readable and reads what is queued, up to
/// [`UDP_BATCH`] datagrams, into the slots of `buf`; returns how many.
///
/// Fewer than a full batch proves the queue was empty when the kernel
/// looked, so the closure reports `WouldBlock` after keeping them and
/// tokio clears the readiness itself (race-free: a datagram arriving
/// meanwhile bumps the readiness tick and the clear is skipped). Without
/// that, every burst would end with an empty `recvfrom`.
#[cfg(target_os = "linux")]
async fn recv_burst(
    sock: &UdpSocket,
    buf: &mut [u8],
    got: &mut [Received; UDP_BATCH],
) -> std::io::Result<usize> {
    use std::os::fd::AsRawFd;
    let fd = sock.as_raw_fd();
    loop {
        sock.readable().await?;
        let mut n = 0;
        let res = sock.try_io(tokio::io::Interest::READABLE, || {
            n = trunkd_media::udp::recv_batch(fd, buf, got)?;
            if n < UDP_BATCH {
                Err(std::io::ErrorKind::WouldBlock.into())
            } else {
                Ok(())
            }
        });
        match res {
            Ok(()) => return Ok(n),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if n > 0 {
                    return Ok(n);
                }
                // Really nothing (a spurious wake-up): wait again.
            }
            Err(e) => return Err(e),
        }
    }
}

#[cfg(not(target_os = "linux"))]
async fn recv_burst(
    sock: &UdpSocket,
    buf: &mut [u8],
    got: &mut [Received; UDP_BATCH],
) -> std::io::Result<usize> {
    let slot = buf.len() / UDP_BATCH;
    let (len, src) = sock.recv_from(&mut buf[..slot]).await?;
    got[0] = Received {
        len,
        src: Some(src),
        truncated: false,
    };
    Ok(1)
}

/// Which stream transport a listener or connection speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    Tcp,
    /// TLS over TCP with the daemon's current [`crate::tls::Tls`]
    /// configuration (looked up per handshake, so a reload applies to new
    /// connections only).
    Tls,
}

impl Stream {
    fn label(self) -> &'static str {
        match self {
            Stream::Tcp => "tcp",
            Stream::Tls => "tls",
        }
    }

    fn peer(self, addr: SocketAddr) -> Peer {
        match self {
            Stream::Tcp => Peer::tcp(addr),
            Stream::Tls => Peer {
                addr,
                transport: TxTransport::Tls,
            },
        }
    }

    fn service_transport(self) -> Transport {
        match self {
            Stream::Tcp => Transport::Tcp,
            Stream::Tls => Transport::Tls,
        }
    }
}

/// Accepts stream connections (TCP or TLS). The caps of SPEC §8 apply to
/// both alike: `sip.max_tcp_connections` slots shared by the listener's
/// connections, `security.max_tcp_connections_per_source`, and (TLS) a
/// handshake deadline so that a client that never speaks cannot keep a
/// slot.
pub async fn serve_stream(
    listener: TcpListener,
    kind: Stream,
    svc: Arc<SipService>,
    engine: EngineTx,
    settings: SipSettings,
) {
    let slots = Arc::new(Semaphore::new(settings.max_tcp_connections));
    let settings = Arc::new(settings);
    let mut conns = tokio::task::JoinSet::new();
    // Connections held per source IP (SPEC §8): the accept loop owns it,
    // each connection task hands its IP back when it ends.
    let mut per_ip: HashMap<std::net::IpAddr, usize> = HashMap::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // EMFILE and friends: back off briefly instead of spinning.
                        warn!(error = %e, transport = kind.label(), "accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let per_source = svc.max_tcp_connections_per_source();
                let held = per_ip.entry(peer.ip()).or_insert(0usize);
                let permit = if *held < per_source { slots.clone().try_acquire_owned().ok() } else { None };
                let Some(permit) = permit else {
                    svc.metrics().sip_tcp_connections_refused.get_or_create(&TransportLabel { transport: kind.label() }).inc();
                    drop(stream);
                    continue;
                };
                *held += 1;
                let (svc, engine, settings) = (svc.clone(), engine.clone(), settings.clone());
                conns.spawn(async move {
                    accepted_connection(stream, peer, kind, &svc, &engine, &settings).await;
                    drop(permit);
                    peer.ip()
                });
            }
            // Reap finished connection tasks so the set stays small.
            Some(done) = conns.join_next(), if !conns.is_empty() => {
                if let Ok(ip) = done {
                    if let Some(n) = per_ip.get_mut(&ip) {
                        *n = n.saturating_sub(1);
                        if *n == 0 {
                            per_ip.remove(&ip);
                        }
                    }
                }
            }
        }
    }
}

/// An accepted connection: the TLS handshake (bounded) when it is TLS, then
/// registered with the engine for reuse, then served.
async fn accepted_connection(
    stream: TcpStream,
    peer: SocketAddr,
    kind: Stream,
    svc: &SipService,
    engine: &EngineTx,
    settings: &SipSettings,
) {
    let _ = stream.set_nodelay(true);
    let ends = Ends {
        peer,
        local: stream.local_addr().ok(),
    };
    let (tx, rx) = mpsc::channel(TCP_QUEUE);
    match kind {
        Stream::Tcp => {
            let opened = Input::ConnectionOpened {
                peer: kind.peer(peer),
                writer: tx,
                client_verified: false,
            };
            if engine.send(opened).await.is_ok() {
                connection(stream, ends, kind, rx, svc, engine, settings).await;
            }
        }
        Stream::Tls => {
            let tls = &svc.shared().tls;
            let Some(acceptor) = tls.acceptor() else {
                // Listeners exist only with a certificate; a reload cannot
                // remove it (validation requires it while sip.tls is set).
                return;
            };
            let handshake = tokio::time::timeout(tls.handshake_timeout(), acceptor.accept(stream));
            let stream = match handshake.await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    debug!(%peer, error = %e, "TLS handshake failed");
                    handshake_failed(svc, "inbound");
                    return;
                }
                Err(_) => {
                    debug!(%peer, "TLS handshake timed out");
                    handshake_failed(svc, "inbound");
                    return;
                }
            };
            // With a client verifier, rustls keeps peer certificates only
            // when they verified (a bad one fails the handshake): presence
            // is proof.
            let client_verified = stream.get_ref().1.peer_certificates().is_some();
            let opened = Input::ConnectionOpened {
                peer: kind.peer(peer),
                writer: tx,
                client_verified,
            };
            if engine.send(opened).await.is_ok() {
                connection(stream, ends, kind, rx, svc, engine, settings).await;
            }
        }
    }
}

fn handshake_failed(svc: &SipService, direction: &'static str) {
    svc.metrics()
        .sip_tls_handshake_failures
        .get_or_create(&crate::metrics::DirectionLabel { direction })
        .inc();
}

/// One stream connection, inbound or outbound, TCP or TLS: reads and
/// frames messages for the engine, writes what the engine queues for this
/// peer.
/// The two ends of a stream connection: the peer's address and ours (for
/// the HEP copies; `None` if the OS would not say).
struct Ends {
    peer: SocketAddr,
    local: Option<SocketAddr>,
}

async fn connection<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    ends: Ends,
    kind: Stream,
    mut outgoing: mpsc::Receiver<Bytes>,
    svc: &SipService,
    engine: &EngineTx,
    settings: &SipSettings,
) {
    let Ends { peer, local } = ends;
    // A copy of each message to the HEP exporter (`[hep]`), if any.
    let capture = |src: SocketAddr, dst: Option<SocketAddr>, bytes: &Bytes| {
        if let Some(dst) = dst {
            svc.capture(src, dst, HepTransport::Tcp, bytes);
        }
    };
    let label = kind.label();
    let gauge = svc
        .metrics()
        .sip_tcp_connections
        .get_or_create(&TransportLabel { transport: label })
        .clone();
    gauge.inc();
    let mut buf = BytesMut::with_capacity(4096);
    'conn: loop {
        // Drain every complete message already buffered.
        loop {
            match frame(&buf, settings.max_message_bytes) {
                Frame::Complete(len) => {
                    let data = buf.split_to(len).freeze();
                    capture(peer, local, &data);
                    match svc.accept(data, peer, kind.service_transport()) {
                        Ok(msg) => {
                            if engine
                                .send(Input::Message {
                                    msg,
                                    peer: kind.peer(peer),
                                })
                                .await
                                .is_err()
                            {
                                break 'conn;
                            }
                        }
                        Err(Some(reply)) => {
                            if write(&mut stream, &reply.bytes).await.is_err() {
                                break 'conn;
                            }
                            if let Some(local) = local {
                                capture(local, Some(peer), &reply.bytes);
                            }
                        }
                        Err(None) => {}
                    }
                }
                Frame::KeepAlive(len) => {
                    buf.advance(len);
                    svc.metrics().message_received(label, "keepalive");
                    // RFC 5626 §4.4.1: a double-CRLF ping gets a CRLF pong.
                    if len >= 4 && write(&mut stream, b"\r\n").await.is_err() {
                        break 'conn;
                    }
                }
                Frame::Incomplete => break,
                Frame::TooLarge => {
                    svc.metrics()
                        .sip_malformed
                        .get_or_create(&SipErrorLabels {
                            transport: label,
                            action: "too_large",
                        })
                        .inc();
                    debug!(%peer, transport = label, "message over max_message_bytes; closing");
                    break 'conn;
                }
                Frame::Invalid => {
                    // Without a valid Content-Length the stream cannot be
                    // re-synchronised (RFC 3261 §18.3): close it.
                    svc.metrics()
                        .sip_malformed
                        .get_or_create(&SipErrorLabels {
                            transport: label,
                            action: "dropped",
                        })
                        .inc();
                    debug!(%peer, transport = label, "unframeable stream input; closing");
                    break 'conn;
                }
            }
        }
        tokio::select! {
            read = tokio::time::timeout(settings.tcp_idle_timeout, stream.read_buf(&mut buf)) => match read {
                Ok(Ok(0)) | Ok(Err(_)) => {
                    // Whatever is left was a message cut off by the close:
                    // counted like any other unusable input.
                    if buf.iter().any(|b| !b.is_ascii_whitespace()) {
                        svc.metrics()
                            .sip_malformed
                            .get_or_create(&SipErrorLabels {
                                transport: label,
                                action: "truncated",
                            })
                            .inc();
                        debug!(%peer, transport = label, bytes = buf.len(), "connection closed mid-message");
                    }
                    break 'conn;
                }
                Ok(Ok(_)) => {}
                Err(_) => {
                    debug!(%peer, transport = label, "connection idle; closing");
                    break 'conn;
                }
            },
            out = outgoing.recv() => match out {
                Some(bytes) => {
                    if write(&mut stream, &bytes).await.is_err() {
                        break 'conn;
                    }
                    if let Some(local) = local {
                        capture(local, Some(peer), &bytes);
                    }
                }
                None => break 'conn,
            },
        }
    }
    gauge.dec();
    // A TLS close_notify, best effort: the peer learns the close was ours.
    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), stream.shutdown()).await;
    let _ = engine
        .send(Input::ConnectionLost {
            peer: kind.peer(peer),
        })
        .await;
}

/// Writes and flushes: a TLS stream buffers records until flushed.
async fn write<S: AsyncWrite + Unpin>(stream: &mut S, bytes: &[u8]) -> std::io::Result<()> {
    stream.write_all(bytes).await?;
    stream.flush().await
}

/// A stream connection the engine can write to.
struct Conn {
    writer: mpsc::Sender<Bytes>,
    /// TLS only: the peer presented a client certificate that verified.
    client_verified: bool,
}

/// The engine's way out: UDP sockets and the stream connection table.
///
/// Stream connections are keyed by peer address *and* transport: one
/// connection per destination, reused for every later request and
/// response to it, whichever side opened it (RFC 3261 §18, RFC 5923's
/// spirit without the alias negotiation). A TCP and a TLS connection to
/// the same address are different connections.
///
/// UDP datagrams are queued by [`Sender::send`] and go out together, one
/// `sendmmsg(2)` per [`UDP_BATCH`] of them, when the engine task has
/// handled everything that woke it ([`Sender::transmit`]), or as soon as a
/// batch is full. Nothing waits longer than the handling of that burst.
pub struct Sender {
    /// The UDP listeners with their local addresses, read once: a
    /// `getsockname` per datagram sent was two syscalls per message.
    udp: Vec<(Arc<UdpSocket>, SocketAddr)>,
    /// Datagrams queued for the next [`Sender::transmit`], tagged with the
    /// client transaction to fail over if the kernel refuses them.
    udp_out: UdpQueue<ClientTxId>,
    conns: HashMap<Peer, Conn>,
    svc: Arc<SipService>,
    engine: EngineTx,
    settings: Arc<SipSettings>,
}

impl Sender {
    pub fn new(
        udp: Vec<Arc<UdpSocket>>,
        svc: Arc<SipService>,
        engine: EngineTx,
        settings: SipSettings,
    ) -> Sender {
        let udp = udp
            .into_iter()
            .filter_map(|s| s.local_addr().ok().map(|a| (s, a)))
            .collect();
        Sender {
            udp,
            udp_out: UdpQueue::new(),
            conns: HashMap::new(),
            svc,
            engine,
            settings: Arc::new(settings),
        }
    }

    /// Queues `bytes` for `dest`. `false` when it certainly cannot be sent
    /// (no socket of that family, a stuck connection): the caller reports a
    /// transport error for the transaction. A UDP datagram the kernel
    /// refuses later, in [`Sender::transmit`], is reported there for `tx`.
    pub fn send(&mut self, dest: Peer, bytes: Bytes, tx: Option<TxId>) -> bool {
        // Responses are counted on the wire, retransmissions included.
        if let Some(&class) = bytes.strip_prefix(b"SIP/2.0 ").and_then(|r| r.first()) {
            let t = match dest.transport {
                TxTransport::Udp => "udp",
                TxTransport::Tcp => "tcp",
                TxTransport::Tls => "tls",
            };
            self.svc
                .metrics()
                .response_sent(t, u16::from(class.wrapping_sub(b'0')) * 100);
        }
        let kind = match dest.transport {
            TxTransport::Udp => {
                let Some(sock) = self.udp_for(dest.addr) else {
                    return false;
                };
                let full = self.udp_out.push(Queued {
                    sock,
                    dest: dest.addr,
                    bytes,
                    tag: match tx {
                        Some(TxId::Client(tx)) => Some(tx),
                        _ => None,
                    },
                });
                if full {
                    self.transmit();
                }
                return true;
            }
            TxTransport::Tcp => Stream::Tcp,
            TxTransport::Tls => Stream::Tls,
        };
        if let Some(conn) = self.conns.get(&dest) {
            return conn.writer.try_send(bytes).is_ok();
        }
        let (tx, rx) = mpsc::channel(TCP_QUEUE);
        let _ = tx.try_send(bytes);
        self.conns.insert(
            dest,
            Conn {
                writer: tx,
                client_verified: false,
            },
        );
        let (svc, engine, settings) =
            (self.svc.clone(), self.engine.clone(), self.settings.clone());
        tokio::spawn(async move {
            outgoing_connection(dest, kind, rx, &svc, &engine, &settings).await;
        });
        true
    }

    /// A connection to `peer` (opened by the peer) to reuse for sending.
    pub fn register(&mut self, peer: Peer, writer: mpsc::Sender<Bytes>, client_verified: bool) {
        self.conns.insert(
            peer,
            Conn {
                writer,
                client_verified,
            },
        );
    }

    pub fn forget(&mut self, peer: Peer) {
        self.conns.remove(&peer);
    }

    /// Whether `peer` is a TLS connection whose client certificate verified
    /// against `tls.client_ca_file` (mutual TLS, for admission).
    pub fn client_verified(&self, peer: Peer) -> bool {
        peer.transport == TxTransport::Tls
            && self.conns.get(&peer).is_some_and(|c| c.client_verified)
    }

    fn udp_for(&self, dest: SocketAddr) -> Option<usize> {
        self.udp
            .iter()
            .position(|(_, l)| l.is_ipv4() == dest.is_ipv4())
    }

    /// Sends the queued UDP datagrams, in order, a `sendmmsg(2)` per run of
    /// up to [`UDP_BATCH`] on the same socket ([`UdpQueue`]).
    pub fn transmit(&mut self) {
        let svc = &self.svc;
        self.udp_out.transmit(&self.udp, |local, d| {
            svc.capture(local, d.dest, HepTransport::Udp, &d.bytes)
        });
    }

    /// Client transactions whose datagram the kernel refused since the last
    /// call: the engine fails them over (`SendFailed`).
    pub fn take_failed(&mut self) -> Vec<ClientTxId> {
        self.udp_out.take_failed()
    }
}

/// Connects to `dest` (TCP, then the TLS handshake for TLS; both bounded),
/// then serves the connection. A failure is reported to the engine as a
/// lost connection, which fails the transactions waiting on it (failover).
async fn outgoing_connection(
    dest: Peer,
    kind: Stream,
    rx: mpsc::Receiver<Bytes>,
    svc: &SipService,
    engine: &EngineTx,
    settings: &SipSettings,
) {
    let lost = || async {
        let _ = engine.send(Input::ConnectionLost { peer: dest }).await;
    };
    let connect = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        TcpStream::connect(dest.addr),
    );
    let stream = match connect.await {
        Ok(Ok(s)) => s,
        _ => {
            debug!(dest = %dest.addr, transport = kind.label(), "connect failed");
            return lost().await;
        }
    };
    let _ = stream.set_nodelay(true);
    let ends = Ends {
        peer: dest.addr,
        local: stream.local_addr().ok(),
    };
    match kind {
        Stream::Tcp => connection(stream, ends, kind, rx, svc, engine, settings).await,
        Stream::Tls => {
            let tls = &svc.shared().tls;
            // The name to send (SNI) and verify: the route's
            // `tls_server_name`, else the host name the address was
            // resolved from; else the certificate must name the IP and no
            // SNI is sent for an IP literal (RFC 6066 §3).
            let config = svc.shared().config();
            let host = config
                .resources
                .tls_server_name(dest.addr)
                .map(str::to_owned)
                .or_else(|| {
                    svc.shared()
                        .hosts
                        .tls_name_for(&config.resources, dest.addr)
                })
                .unwrap_or_else(|| dest.addr.ip().to_string());
            let name = crate::tls::server_name(&host, dest.addr.ip());
            let handshake = tokio::time::timeout(
                tls.handshake_timeout(),
                tls.connector().connect(name, stream),
            );
            match handshake.await {
                Ok(Ok(s)) => connection(s, ends, kind, rx, svc, engine, settings).await,
                Ok(Err(e)) => {
                    // Operators need this one: an expired or misissued
                    // carrier certificate stops every call to it.
                    warn!(dest = %dest.addr, error = %e, "outgoing TLS handshake failed");
                    handshake_failed(svc, "outbound");
                    lost().await
                }
                Err(_) => {
                    warn!(dest = %dest.addr, "outgoing TLS handshake timed out");
                    handshake_failed(svc, "outbound");
                    lost().await
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rmem_max() -> Option<usize> {
        std::fs::read_to_string("/proc/sys/net/core/rmem_max")
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    #[tokio::test]
    async fn the_receive_buffer_is_what_was_asked_up_to_the_kernels_cap() {
        let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let default = set_receive_buffer(&sock, 0).unwrap();
        let asked = 1 << 20;
        let reported = set_receive_buffer(&sock, asked).unwrap();
        match rmem_max() {
            // Linux: twice what it keeps, which is the request up to the cap.
            Some(max) => {
                assert_eq!(reported, 2 * asked.min(max), "rmem_max {max}");
                assert_eq!(receive_buffer_capped(asked, reported), max < asked);
            }
            None => assert!(reported >= default),
        }
        assert!(!receive_buffer_capped(0, default));
    }

    #[test]
    fn a_buffer_cut_by_the_cap_is_told_apart() {
        if cfg!(target_os = "linux") {
            assert!(!receive_buffer_capped(4 << 20, 8 << 20));
            assert!(receive_buffer_capped(4 << 20, 425_984));
        }
    }
}
