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
use std::net::{SocketAddr, UdpSocket as StdUdpSocket};
use std::task::{Context, Poll};

use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

use crate::ports::MediaSocket;

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

/// Up to two received datagrams.
pub(crate) struct Batch {
    pub count: usize,
    pub lens: [usize; 2],
    /// `None`: the kernel gave an address of an unexpected family.
    pub srcs: [Option<SocketAddr>; 2],
    /// The datagram was larger than the slot and was cut.
    pub truncated: [bool; 2],
}

impl Batch {
    fn empty() -> Self {
        Self {
            count: 0,
            lens: [0; 2],
            srcs: [None; 2],
            truncated: [false; 2],
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
            let n = linux::recvmmsg2(fd, slots, &mut batch)?;
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
                batch.lens[0] = len;
                batch.srcs[0] = Some(src);
                // Cannot tell without MSG_TRUNC: a full slot is taken as cut.
                batch.truncated[0] = len == SLOT;
                return Poll::Ready(Ok(batch));
            }
            Ok(Err(e)) => return Poll::Ready(Err(e)),
            Err(_would_block) => {}
        }
    }
}

#[cfg(target_os = "linux")]
mod linux {
    use super::{Batch, Slots, SLOT};
    use std::io;
    use std::mem::{size_of, zeroed};
    use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
    use std::os::fd::RawFd;
    use std::ptr;

    /// `recvmmsg(fd, 2 slots, MSG_DONTWAIT)`. Returns how many datagrams
    /// were received (1 or 2) and fills `batch`; `EAGAIN` is an error of
    /// kind `WouldBlock`.
    pub(super) fn recvmmsg2(fd: RawFd, slots: &mut Slots, batch: &mut Batch) -> io::Result<usize> {
        // SAFETY: all-zero is a valid value for these plain C structs.
        let mut addrs: [libc::sockaddr_storage; 2] = unsafe { zeroed() };
        let mut msgs: [libc::mmsghdr; 2] = unsafe { zeroed() };
        let [s0, s1] = slots;
        let mut iovs = [
            libc::iovec {
                iov_base: s0.as_mut_ptr().cast(),
                iov_len: SLOT,
            },
            libc::iovec {
                iov_base: s1.as_mut_ptr().cast(),
                iov_len: SLOT,
            },
        ];
        for ((msg, addr), iov) in msgs.iter_mut().zip(addrs.iter_mut()).zip(iovs.iter_mut()) {
            msg.msg_hdr.msg_name = (addr as *mut libc::sockaddr_storage).cast();
            msg.msg_hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            msg.msg_hdr.msg_iov = iov;
            msg.msg_hdr.msg_iovlen = 1;
        }
        // SAFETY: every pointer in `msgs` points at live locals/slots of the
        // declared sizes, which outlive the call; the kernel writes at most
        // `msg_namelen` bytes of address and `iov_len` bytes of data.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                msgs.as_mut_ptr(),
                2,
                libc::MSG_DONTWAIT,
                ptr::null_mut(),
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let n = (n as usize).min(2);
        for i in 0..n {
            batch.lens[i] = (msgs[i].msg_len as usize).min(SLOT);
            batch.truncated[i] = msgs[i].msg_hdr.msg_flags & libc::MSG_TRUNC != 0;
            batch.srcs[i] = to_socket_addr(&addrs[i], msgs[i].msg_hdr.msg_namelen);
        }
        batch.count = n;
        Ok(n)
    }

    fn to_socket_addr(ss: &libc::sockaddr_storage, len: libc::socklen_t) -> Option<SocketAddr> {
        let len = len as usize;
        match i32::from(ss.ss_family) {
            libc::AF_INET if len >= size_of::<libc::sockaddr_in>() => {
                // SAFETY: the family says the storage holds a sockaddr_in,
                // and sockaddr_storage is large and aligned enough for it.
                let sin =
                    unsafe { &*(ss as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
                Some(SocketAddr::V4(SocketAddrV4::new(
                    Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)),
                    u16::from_be(sin.sin_port),
                )))
            }
            libc::AF_INET6 if len >= size_of::<libc::sockaddr_in6>() => {
                // SAFETY: as above, for sockaddr_in6.
                let sin6 =
                    unsafe { &*(ss as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
                Some(SocketAddr::V6(SocketAddrV6::new(
                    Ipv6Addr::from(sin6.sin6_addr.s6_addr),
                    u16::from_be(sin6.sin6_port),
                    sin6.sin6_flowinfo,
                    sin6.sin6_scope_id,
                )))
            }
            _ => None,
        }
    }
}
