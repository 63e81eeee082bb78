//! SIP over UDP and TCP: sockets and framing, nothing else.
//!
//! Receive side: each UDP socket has one loop, each TCP connection one task;
//! both parse (`trunkd_sip::SipMessage::parse`) and hand well-formed
//! messages to the engine. Malformed input is answered 400/505 or dropped
//! right here by [`SipService`] and never reaches the engine; it costs a
//! counter, never a task.
//!
//! Send side: the engine's [`Sender`] writes UDP datagrams without waiting
//! (a full socket buffer drops the datagram, which retransmission covers)
//! and writes to TCP connections through a small queue per connection,
//! connecting on first use (connection reuse per peer, both directions).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{mpsc, Semaphore};
use tracing::{debug, warn};
use trunkd_config::SipSettings;
use trunkd_sip::transaction::{Peer, TxTransport};
use trunkd_sip::{frame, Frame};

use crate::engine::{EngineTx, Input};
use crate::metrics::{SipErrorLabels, SipInLabels, TransportLabel};
use crate::sip_service::{SipService, Transport};

/// Outgoing messages queued per TCP connection before it counts as stuck.
const TCP_QUEUE: usize = 256;

pub async fn serve_udp(
    sock: Arc<UdpSocket>,
    svc: Arc<SipService>,
    engine: EngineTx,
    max_message_bytes: usize,
) {
    // One byte more than allowed tells an oversized datagram from a full one.
    let mut buf = vec![0u8; max_message_bytes + 1];
    loop {
        let (n, src) = match sock.recv_from(&mut buf).await {
            Ok(r) => r,
            Err(e) => {
                // ICMP errors from earlier sends surface here on Linux; the
                // socket itself is fine.
                debug!(error = %e, "UDP receive error");
                continue;
            }
        };
        if n > max_message_bytes {
            svc.metrics()
                .sip_malformed
                .get_or_create(&SipErrorLabels {
                    transport: "udp",
                    action: "too_large",
                })
                .inc();
            continue;
        }
        let data = Bytes::copy_from_slice(&buf[..n]);
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
                let _ = sock.send_to(&reply.bytes, reply.dest).await;
            }
            Err(None) => {}
        }
    }
}

pub async fn serve_tcp(
    listener: TcpListener,
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
                        warn!(error = %e, "TCP accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let per_source = svc.max_tcp_connections_per_source();
                let held = per_ip.entry(peer.ip()).or_insert(0usize);
                let permit = if *held < per_source { slots.clone().try_acquire_owned().ok() } else { None };
                let Some(permit) = permit else {
                    svc.metrics().sip_tcp_connections_refused.get_or_create(&TransportLabel { transport: "tcp" }).inc();
                    drop(stream);
                    continue;
                };
                *held += 1;
                let (tx, rx) = mpsc::channel(TCP_QUEUE);
                if engine.send(Input::ConnectionOpened { addr: peer, writer: tx }).await.is_err() {
                    return;
                }
                let (svc, engine, settings) = (svc.clone(), engine.clone(), settings.clone());
                conns.spawn(async move {
                    connection(stream, peer, rx, &svc, &engine, &settings).await;
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

/// One TCP connection, inbound or outbound: reads and frames messages for
/// the engine, writes what the engine queues for this peer.
async fn connection(
    mut stream: TcpStream,
    peer: SocketAddr,
    mut outgoing: mpsc::Receiver<Bytes>,
    svc: &SipService,
    engine: &EngineTx,
    settings: &SipSettings,
) {
    let _ = stream.set_nodelay(true);
    let gauge = svc
        .metrics()
        .sip_tcp_connections
        .get_or_create(&TransportLabel { transport: "tcp" })
        .clone();
    gauge.inc();
    let mut buf = BytesMut::with_capacity(4096);
    'conn: loop {
        // Drain every complete message already buffered.
        loop {
            match frame(&buf, settings.max_message_bytes) {
                Frame::Complete(len) => {
                    let data = buf.split_to(len).freeze();
                    match svc.accept(data, peer, Transport::Tcp) {
                        Ok(msg) => {
                            if engine
                                .send(Input::Message {
                                    msg,
                                    peer: Peer::tcp(peer),
                                })
                                .await
                                .is_err()
                            {
                                break 'conn;
                            }
                        }
                        Err(Some(reply)) => {
                            if stream.write_all(&reply.bytes).await.is_err() {
                                break 'conn;
                            }
                        }
                        Err(None) => {}
                    }
                }
                Frame::KeepAlive(len) => {
                    buf.advance(len);
                    svc.metrics()
                        .sip_messages_received
                        .get_or_create(&SipInLabels {
                            transport: "tcp",
                            kind: "keepalive",
                        })
                        .inc();
                    // RFC 5626 §4.4.1: a double-CRLF ping gets a CRLF pong.
                    if len >= 4 && stream.write_all(b"\r\n").await.is_err() {
                        break 'conn;
                    }
                }
                Frame::Incomplete => break,
                Frame::TooLarge => {
                    svc.metrics()
                        .sip_malformed
                        .get_or_create(&SipErrorLabels {
                            transport: "tcp",
                            action: "too_large",
                        })
                        .inc();
                    debug!(%peer, "TCP message over max_message_bytes; closing");
                    break 'conn;
                }
                Frame::Invalid => {
                    // Without a valid Content-Length the stream cannot be
                    // re-synchronised (RFC 3261 §18.3): close it.
                    svc.metrics()
                        .sip_malformed
                        .get_or_create(&SipErrorLabels {
                            transport: "tcp",
                            action: "dropped",
                        })
                        .inc();
                    debug!(%peer, "unframeable TCP input; closing");
                    break 'conn;
                }
            }
        }
        tokio::select! {
            read = tokio::time::timeout(settings.tcp_idle_timeout, stream.read_buf(&mut buf)) => match read {
                Ok(Ok(0)) | Ok(Err(_)) => break 'conn,
                Ok(Ok(_)) => {}
                Err(_) => {
                    debug!(%peer, "TCP connection idle; closing");
                    break 'conn;
                }
            },
            out = outgoing.recv() => match out {
                Some(bytes) => {
                    if stream.write_all(&bytes).await.is_err() {
                        break 'conn;
                    }
                }
                None => break 'conn,
            },
        }
    }
    gauge.dec();
    let _ = engine.send(Input::ConnectionLost { addr: peer }).await;
}

/// The engine's way out: UDP sockets and the TCP connection table.
pub struct Sender {
    udp: Vec<Arc<UdpSocket>>,
    tcp: HashMap<SocketAddr, mpsc::Sender<Bytes>>,
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
        Sender {
            udp,
            tcp: HashMap::new(),
            svc,
            engine,
            settings: Arc::new(settings),
        }
    }

    /// Queues `bytes` for `dest`. `false` when it certainly cannot be sent
    /// (no socket of that family, a stuck connection): the caller reports a
    /// transport error for the transaction.
    pub fn send(&mut self, dest: Peer, bytes: Bytes) -> bool {
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
        match dest.transport {
            TxTransport::Udp => {
                let Some(sock) = self.udp_for(dest.addr) else {
                    return false;
                };
                match sock.try_send_to(&bytes, dest.addr) {
                    Ok(_) => true,
                    // A full buffer is loss; retransmission covers it.
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => true,
                    Err(e) => {
                        debug!(error = %e, dest = %dest.addr, "UDP send failed");
                        false
                    }
                }
            }
            TxTransport::Tcp => {
                if let Some(conn) = self.tcp.get(&dest.addr) {
                    return conn.try_send(bytes).is_ok();
                }
                let (tx, rx) = mpsc::channel(TCP_QUEUE);
                let _ = tx.try_send(bytes);
                self.tcp.insert(dest.addr, tx);
                let (svc, engine, settings) =
                    (self.svc.clone(), self.engine.clone(), self.settings.clone());
                tokio::spawn(async move {
                    match tokio::time::timeout(
                        std::time::Duration::from_secs(5),
                        TcpStream::connect(dest.addr),
                    )
                    .await
                    {
                        Ok(Ok(stream)) => {
                            connection(stream, dest.addr, rx, &svc, &engine, &settings).await
                        }
                        _ => {
                            debug!(dest = %dest.addr, "TCP connect failed");
                            let _ = engine.send(Input::ConnectionLost { addr: dest.addr }).await;
                        }
                    }
                });
                true
            }
            // TLS arrives with the encryption issue.
            TxTransport::Tls => false,
        }
    }

    /// A connection to `addr` (opened by the peer) to reuse for sending.
    pub fn register(&mut self, addr: SocketAddr, writer: mpsc::Sender<Bytes>) {
        self.tcp.insert(addr, writer);
    }

    pub fn forget(&mut self, addr: SocketAddr) {
        self.tcp.remove(&addr);
    }

    fn udp_for(&self, dest: SocketAddr) -> Option<&Arc<UdpSocket>> {
        self.udp
            .iter()
            .find(|s| s.local_addr().is_ok_and(|l| l.is_ipv4() == dest.is_ipv4()))
    }
}
