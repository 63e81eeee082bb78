//! Receiving on the relay's sockets with one syscall per datagram.
//!
//! tokio's readiness is edge-triggered: after a successful `recvfrom` the
//! socket still counts as readable, and the only way to learn it is empty is
//! another `recvfrom` that fails with `EAGAIN`. A media socket holds one
//! packet per 20 ms, so draining it that way costs two receive syscalls per
//! packet where a level-triggered C relay (ANCHORS.md's floor) needs one.
//!
//! On Linux, [`poll_recv`] asks `recvmmsg(2)` for up to two datagrams with
//! `MSG_DONTWAIT`: getting fewer than two proves the queue was empty at that
//! moment, so the closure given to tokio's `try_io` reports `WouldBlock` and
//! tokio clears the readiness itself, race-free: a datagram that arrives
//! meanwhile bumps the readiness tick and the clear is skipped. This is not
//! batching (ANCHORS.md found batching per socket gains nothing); it is one
//! syscall instead of two. `MSG_TRUNC` in the returned flags also tells an
//! oversized datagram exactly.
//!
//! Elsewhere, plain `recv_from`.
//!
//! # Read interest only
//!
//! A relay socket is registered with the reactor for readability only
//! ([`register`]), not through `tokio::net::UdpSocket`, which asks epoll for
//! `EPOLLIN | EPOLLOUT`. With `EPOLLOUT` in the mask, epoll reports a fresh
//! socket writable the moment it is added (the reactor's thread wakes for
//! every new call's four sockets, to learn nothing), and again each time
//! a sent datagram's buffer space is freed. The relay never waits to write:
//! it sends with a plain `sendto(2)` and drops what would block, so write
//! readiness is never asked for.

use std::cell::RefCell;
use std::io;
use std::net::UdpSocket as StdUdpSocket;
use std::task::{Context, Poll};

use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

use crate::ports::MediaSocket;
use crate::udp::Received;

/// A relay socket: registered for read readiness only (see the module docs).
pub(crate) type RelaySocket = AsyncFd<StdUdpSocket>;

/// Registers `sock` (non-blocking by its type) with the current runtime's
/// reactor for read readiness. Registration is an `epoll_ctl` from the
/// calling thread: the reactor's own thread is not woken.
pub(crate) fn register(sock: MediaSocket) -> io::Result<RelaySocket> {
    let sock = sock.into_std();
    // SAFETY: the `AsyncFd` owns `sock`, a std socket whose descriptor stays
    // open and the same until the `AsyncFd` drops it; nothing here takes the
    // socket out or swaps it (`get_mut` is never used).
    Ok(unsafe { AsyncFd::register_with_interest(sock, Interest::READABLE) }?)
}

/// Receive buffer size per slot; see [`crate::relay::MAX_DATAGRAM`].
pub(crate) const SLOT: usize = 4096;

/// Up to two received datagrams: the first `count` entries of `got`.
pub(crate) struct Batch {
    pub count: usize,
    pub got: [Received; 2],
}

impl Batch {
    fn empty() -> Self {
        Self {
            count: 0,
            got: [Received::default(); 2],
        }
    }
}

pub(crate) type Slots = [[u8; SLOT]; 2];

pub(crate) fn new_slots() -> Box<Slots> {
    Box::new([[0u8; SLOT]; 2])
}

thread_local! {
    /// The relays' receive buffers on this thread, made on first use. A
    /// relay reads a datagram and has forwarded it before its poll returns,
    /// so the relays of one thread can share one pair (8 KiB per thread
    /// instead of per call).
    static SLOTS: RefCell<Option<Box<Slots>>> = const { RefCell::new(None) };
}

/// Runs `f` with this thread's receive buffers. If they are in use (a
/// relay polled from inside another's poll, which trunkd never does) or the
/// thread is being torn down, `f` gets buffers of its own.
pub(crate) fn with_slots<R: Default>(f: impl FnOnce(&mut Slots) -> R) -> R {
    let mut f = Some(f);
    let shared = SLOTS.try_with(|cell| {
        let mut slot = cell.try_borrow_mut().ok()?;
        let f = f.take()?;
        Some(f(slot.get_or_insert_with(new_slots)))
    });
    if let Ok(Some(r)) = shared {
        return r;
    }
    match f.take() {
        Some(f) => f(&mut new_slots()),
        None => R::default(),
    }
}

#[cfg(target_os = "linux")]
pub(crate) fn poll_recv(
    sock: &RelaySocket,
    cx: &mut Context<'_>,
    slots: &mut Slots,
) -> Poll<io::Result<Batch>> {
    use std::os::fd::AsRawFd;

    loop {
        let mut guard = match sock.poll_read_ready(cx) {
            Poll::Ready(Ok(guard)) => guard,
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Pending => return Poll::Pending,
        };
        let mut batch = Batch::empty();
        let fd = sock.as_raw_fd();
        let res = guard.try_io(|_| {
            let n = crate::udp::recv_batch(fd, slots.as_flattened_mut(), &mut batch.got)?;
            batch.count = n;
            if n < 2 {
                // The queue is empty: let tokio clear the readiness.
                Err(io::ErrorKind::WouldBlock.into())
            } else {
                Ok(())
            }
        });
        match res {
            Ok(Ok(())) => return Poll::Ready(Ok(batch)),
            Ok(Err(e)) => return Poll::Ready(Err(e)),
            Err(_would_block) => {
                if batch.count > 0 {
                    return Poll::Ready(Ok(batch));
                }
                // Really nothing: readiness cleared; poll again to register
                // the waker.
            }
        }
    }
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn poll_recv(
    sock: &RelaySocket,
    cx: &mut Context<'_>,
    slots: &mut Slots,
) -> Poll<io::Result<Batch>> {
    loop {
        let mut guard = match sock.poll_read_ready(cx) {
            Poll::Ready(Ok(guard)) => guard,
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Pending => return Poll::Pending,
        };
        match guard.try_io(|s| s.get_ref().recv_from(&mut slots[0])) {
            Ok(Ok((len, src))) => {
                let mut batch = Batch::empty();
                batch.count = 1;
                batch.got[0] = Received {
                    len,
                    src: Some(src),
                    // Cannot tell without MSG_TRUNC: a full slot is taken as cut.
                    truncated: len == SLOT,
                };
                return Poll::Ready(Ok(batch));
            }
            Ok(Err(e)) => return Poll::Ready(Err(e)),
            Err(_would_block) => {}
        }
    }
}
