//! SIP datagrams waiting to go out together.
//!
//! The engine task handles a burst of inputs and then sends what they
//! produced. [`UdpQueue`] keeps those datagrams in order and sends them with
//! one `sendmmsg(2)` per run of up to [`UDP_BATCH`] on the same socket
//! (docs/decisions.md, "SIP over UDP reads and writes bursts"). What the
//! kernel refuses is remembered by its tag (the client transaction to fail
//! over); a full socket buffer is loss, which retransmission covers.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use tokio::net::UdpSocket;
use tracing::debug;
use trunkd_media::udp::SockAddr;

/// Datagrams per `recvmmsg(2)`/`sendmmsg(2)` on a SIP UDP socket.
///
/// At 2000 calls/s a listener's loop wakes about once per call and finds
/// ten or so datagrams waiting, and the engine produces as many per burst.
pub const UDP_BATCH: usize = 16;

/// A UDP datagram waiting for [`UdpQueue::transmit`].
pub struct Queued<T> {
    /// Index of the socket to send from, in the slice given to `transmit`.
    pub sock: usize,
    pub dest: SocketAddr,
    pub bytes: Bytes,
    /// Reported by [`UdpQueue::take_failed`] if the kernel refuses it.
    pub tag: Option<T>,
}

/// Datagrams in the order they were queued, and the tags of those the
/// kernel refused.
pub struct UdpQueue<T> {
    queued: Vec<(Queued<T>, SockAddr)>,
    failed: Vec<T>,
}

impl<T: Copy> UdpQueue<T> {
    pub fn new() -> Self {
        UdpQueue {
            queued: Vec::with_capacity(UDP_BATCH),
            failed: Vec::new(),
        }
    }

    /// Queues `d`; `true` when a whole batch is waiting and the caller
    /// should [`UdpQueue::transmit`] now rather than at the burst's end.
    pub fn push(&mut self, d: Queued<T>) -> bool {
        let to = SockAddr::from(d.dest);
        self.queued.push((d, to));
        self.queued.len() >= UDP_BATCH
    }

    /// Sends everything queued, in order, from `socks[d.sock]`, and calls
    /// `sent(local address, datagram)` for each datagram the kernel took.
    pub fn transmit(
        &mut self,
        socks: &[(Arc<UdpSocket>, SocketAddr)],
        mut sent: impl FnMut(SocketAddr, &Queued<T>),
    ) {
        let queued = &self.queued;
        let mut k = 0;
        while k < queued.len() {
            let sock = queued[k].0.sock;
            let run = queued[k..]
                .iter()
                .take(UDP_BATCH)
                .take_while(|(d, _)| d.sock == sock)
                .count();
            let Some((udp, local)) = socks.get(sock) else {
                // No such socket: a caller's bug; refuse the run.
                self.failed
                    .extend(queued[k..k + run].iter().filter_map(|(d, _)| d.tag));
                k += run;
                continue;
            };
            match send_run(udp, &queued[k..k + run]) {
                Ok(n) => {
                    for (d, _) in &queued[k..k + n] {
                        sent(*local, d);
                    }
                    k += n;
                }
                Err(e) => {
                    let (d, _) = &queued[k];
                    if e.kind() != std::io::ErrorKind::WouldBlock {
                        debug!(error = %e, dest = %d.dest, "UDP send failed");
                        self.failed.extend(d.tag);
                    }
                    k += 1;
                }
            }
        }
        self.queued.clear();
    }

    /// Tags of the datagrams the kernel refused since the last call.
    pub fn take_failed(&mut self) -> Vec<T> {
        std::mem::take(&mut self.failed)
    }
}

/// Sends `run` (one socket's, at most [`UDP_BATCH`]) in one syscall where
/// the OS has one; returns how many went, from the first, or the error
/// that stopped the first.
#[cfg(target_os = "linux")]
fn send_run<T>(sock: &UdpSocket, run: &[(Queued<T>, SockAddr)]) -> std::io::Result<usize> {
    use std::os::fd::AsRawFd;
    let Some((_, first)) = run.first() else {
        return Ok(0);
    };
    let mut items: [(&SockAddr, &[u8]); UDP_BATCH] = [(first, &[]); UDP_BATCH];
    for (item, (d, to)) in items.iter_mut().zip(run) {
        *item = (to, &d.bytes);
    }
    let n = run.len().min(UDP_BATCH);
    trunkd_media::udp::send_batch::<UDP_BATCH>(sock.as_raw_fd(), &items[..n])
}

#[cfg(not(target_os = "linux"))]
fn send_run<T>(sock: &UdpSocket, run: &[(Queued<T>, SockAddr)]) -> std::io::Result<usize> {
    match run.first() {
        Some((d, _)) => sock.try_send_to(&d.bytes, d.dest).map(|_| 1),
        None => Ok(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    async fn socket(addr: &str) -> (Arc<UdpSocket>, SocketAddr) {
        let s = UdpSocket::bind(addr).await.unwrap();
        let a = s.local_addr().unwrap();
        (Arc::new(s), a)
    }

    async fn receive(sock: &UdpSocket, n: usize) -> Vec<Vec<u8>> {
        let mut got = Vec::new();
        let mut buf = [0u8; 64];
        for _ in 0..n {
            let (len, _) = tokio::time::timeout(Duration::from_secs(2), sock.recv_from(&mut buf))
                .await
                .expect("a datagram within 2 s")
                .unwrap();
            got.push(buf[..len].to_vec());
        }
        got
    }

    fn datagram(sock: usize, dest: SocketAddr, i: u32) -> Queued<u32> {
        Queued {
            sock,
            dest,
            bytes: Bytes::from(format!("d{i}")),
            tag: Some(i),
        }
    }

    #[tokio::test]
    async fn forty_datagrams_go_out_in_order_in_batches() {
        let socks = [socket("127.0.0.1:0").await];
        let (rx, to) = socket("127.0.0.1:0").await;
        let mut q = UdpQueue::new();
        let mut full_at = Vec::new();
        for i in 0..40 {
            if q.push(datagram(0, to, i)) {
                full_at.push(i);
                q.transmit(&socks, |_, _| {});
            }
        }
        assert_eq!(full_at, [15, 31], "a whole batch asks to be sent");
        let mut sent = Vec::new();
        q.transmit(&socks, |local, d| sent.push((local, d.tag)));
        assert_eq!(sent.len(), 8, "the rest at the burst's end");
        assert!(sent.iter().all(|(local, _)| *local == socks[0].1));
        let want: Vec<Vec<u8>> = (0..40).map(|i| format!("d{i}").into_bytes()).collect();
        assert_eq!(receive(&rx, 40).await, want);
        assert!(q.take_failed().is_empty());
    }

    #[tokio::test]
    async fn a_refused_datagram_is_reported_and_the_rest_still_go() {
        let socks = [socket("127.0.0.1:0").await];
        let (rx, to) = socket("127.0.0.1:0").await;
        // Without SO_BROADCAST the kernel refuses a broadcast destination
        // (EACCES): a refusal that is not a full buffer.
        let broadcast: SocketAddr = "255.255.255.255:5060".parse().unwrap();
        let mut q = UdpQueue::new();
        q.push(datagram(0, to, 0));
        q.push(datagram(0, broadcast, 1));
        q.push(datagram(0, to, 2));
        let mut sent = Vec::new();
        q.transmit(&socks, |_, d| sent.push(d.tag));
        assert_eq!(sent, [Some(0), Some(2)]);
        assert_eq!(q.take_failed(), [1]);
        assert!(q.take_failed().is_empty(), "reported once");
        assert_eq!(receive(&rx, 2).await, [b"d0".to_vec(), b"d2".to_vec()]);
    }

    #[tokio::test]
    async fn each_datagram_leaves_from_its_own_socket() {
        let socks = [socket("127.0.0.1:0").await, socket("127.0.0.2:0").await];
        let (rx, to) = socket("127.0.0.1:0").await;
        let mut q = UdpQueue::new();
        for i in 0..6 {
            q.push(datagram((i % 3 == 2) as usize, to, i as u32));
        }
        q.transmit(&socks, |_, _| {});
        let mut buf = [0u8; 64];
        let mut from = Vec::new();
        for _ in 0..6 {
            let (len, src) = tokio::time::timeout(Duration::from_secs(2), rx.recv_from(&mut buf))
                .await
                .expect("a datagram within 2 s")
                .unwrap();
            from.push((String::from_utf8_lossy(&buf[..len]).into_owned(), src));
        }
        let want: Vec<(String, SocketAddr)> = (0..6)
            .map(|i| (format!("d{i}"), socks[(i % 3 == 2) as usize].1))
            .collect();
        assert_eq!(from, want, "in order, each from its socket");
    }
}
