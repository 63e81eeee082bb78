//! SIP over UDP and TCP: the sockets, nothing else.
//!
//! Each UDP socket has one receive loop; each TCP connection one task that
//! frames messages by Content-Length (`trunkd_sip::frame`) and is closed on
//! idleness, on a framing error or at the connection cap. Every message goes
//! to [`SipService::handle`], which returns what to send back. A malformed
//! message costs a counter increment, never a task.
//!
//! (This module moves into trunkd-sip with the transaction layer.)

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::Semaphore;
use tracing::{debug, warn};
use trunkd_config::SipSettings;
use trunkd_sip::{frame, Frame};

use crate::metrics::{SipErrorLabels, SipInLabels, TransportLabel};
use crate::sip_service::{SipService, Transport};

pub async fn bind_udp(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    UdpSocket::bind(addr).await
}

pub async fn serve_udp(sock: UdpSocket, svc: Arc<SipService>, max_message_bytes: usize) {
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
        let data = bytes::Bytes::copy_from_slice(&buf[..n]);
        if let Some(reply) = svc.handle(data, src, Transport::Udp) {
            if let Err(e) = sock.send_to(&reply.bytes, reply.dest).await {
                debug!(error = %e, dest = %reply.dest, "UDP send failed");
            }
        }
    }
}

pub async fn serve_tcp(listener: TcpListener, svc: Arc<SipService>, settings: SipSettings) {
    let slots = Arc::new(Semaphore::new(settings.max_tcp_connections));
    let settings = Arc::new(settings);
    let mut conns = tokio::task::JoinSet::new();
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
                let Ok(permit) = slots.clone().try_acquire_owned() else {
                    svc.metrics().sip_tcp_connections_refused.get_or_create(&TransportLabel { transport: "tcp" }).inc();
                    drop(stream);
                    continue;
                };
                let (svc, settings) = (svc.clone(), settings.clone());
                conns.spawn(async move {
                    let gauge = svc.metrics().sip_tcp_connections.get_or_create(&TransportLabel { transport: "tcp" }).clone();
                    gauge.inc();
                    serve_connection(stream, peer, &svc, &settings).await;
                    gauge.dec();
                    drop(permit);
                });
            }
            // Reap finished connection tasks so the set stays small.
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}

async fn serve_connection(
    mut stream: TcpStream,
    peer: SocketAddr,
    svc: &SipService,
    settings: &SipSettings,
) {
    let _ = stream.set_nodelay(true);
    let mut buf = BytesMut::with_capacity(4096);
    loop {
        // Drain every complete message already buffered.
        loop {
            match frame(&buf, settings.max_message_bytes) {
                Frame::Complete(len) => {
                    let msg = buf.split_to(len).freeze();
                    if let Some(reply) = svc.handle(msg, peer, Transport::Tcp) {
                        if stream.write_all(&reply.bytes).await.is_err() {
                            return;
                        }
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
                        return;
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
                    return;
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
                    return;
                }
            }
        }
        match tokio::time::timeout(settings.tcp_idle_timeout, stream.read_buf(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return,
            Ok(Ok(_)) => {}
            Err(_) => {
                debug!(%peer, "TCP connection idle; closing");
                return;
            }
        }
    }
}
