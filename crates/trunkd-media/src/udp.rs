//! Several UDP datagrams per syscall: `recvmmsg(2)` into the slots of one
//! buffer and `sendmmsg(2)` from a list of (destination, bytes).
//!
//! Both the relay (two datagrams per receive, [`crate::rx`]) and the SIP
//! listener (a burst of requests and responses per wake-up) use these. What
//! they save is the entry into the kernel, not the kernel's work per
//! datagram, which stays the same: on CPUs where a syscall costs more
//! (heavier kernel-entry mitigations) that is where a process that makes
//! fewer of them per message keeps its lead.
//!
//! Linux only; elsewhere callers use std's one-datagram calls.

use std::io;
use std::mem::{size_of, MaybeUninit};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::RawFd;
use std::ptr;

/// The destination form [`send_batch`] takes (made once per datagram).
pub use socket2::SockAddr;

/// What the kernel said of one received datagram.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Received {
    /// Bytes in the slot (at most the slot's size).
    pub len: usize,
    /// `None`: an address of a family other than IPv4/IPv6.
    pub src: Option<SocketAddr>,
    /// The datagram was larger than the slot and was cut (`MSG_TRUNC`).
    pub truncated: bool,
}

/// `recvmmsg(fd, N slots, MSG_DONTWAIT)`: `buf` is cut into `N` slots of
/// `buf.len() / N` bytes, datagram `i` goes to slot `i` and its metadata to
/// `out[i]`. Returns how many arrived (1..=N); an empty queue is an error of
/// kind `WouldBlock`. Fewer than `N` proves the queue was empty when the
/// kernel looked, which is how a caller with edge-triggered readiness
/// learns it without another, empty, call.
///
/// # Panics
/// If `N` is 0 or `buf` is shorter than `N` bytes (a caller's bug, not
/// input).
#[cfg(target_os = "linux")]
pub fn recv_batch<const N: usize>(
    fd: RawFd,
    buf: &mut [u8],
    out: &mut [Received; N],
) -> io::Result<usize> {
    assert!(
        N > 0 && buf.len() >= N,
        "recv_batch: {N} slots in {} bytes",
        buf.len()
    );
    let slot = buf.len() / N;
    let mut addrs: [MaybeUninit<libc::sockaddr_storage>; N] = [const { MaybeUninit::uninit() }; N];
    let mut iovs: [MaybeUninit<libc::iovec>; N] = [const { MaybeUninit::uninit() }; N];
    let mut msgs: [MaybeUninit<libc::mmsghdr>; N] = [const { MaybeUninit::uninit() }; N];
    for (i, chunk) in buf.chunks_exact_mut(slot).take(N).enumerate() {
        let iov = iovs[i].write(libc::iovec {
            iov_base: chunk.as_mut_ptr().cast(),
            iov_len: slot,
        });
        msgs[i].write(header(
            addrs[i].as_mut_ptr().cast(),
            size_of::<libc::sockaddr_storage>() as libc::socklen_t,
            iov,
        ));
    }
    // SAFETY: the N headers were initialised above; each points at a live
    // iovec over its own slot of `buf` and at an address buffer of the
    // declared size, all of which outlive the call. The kernel writes at
    // most `msg_namelen` bytes of address and `iov_len` bytes of data, and
    // fills `msg_len`, `msg_namelen` and `msg_flags` of the first `n`.
    let n = unsafe {
        libc::recvmmsg(
            fd,
            msgs.as_mut_ptr().cast(),
            N as libc::c_uint,
            libc::MSG_DONTWAIT,
            ptr::null_mut(),
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let n = (n as usize).min(N);
    for i in 0..n {
        // SAFETY: initialised above, and the kernel filled the first `n`.
        let msg = unsafe { msgs[i].assume_init_ref() };
        let namelen = msg.msg_hdr.msg_namelen as usize;
        out[i] = Received {
            len: (msg.msg_len as usize).min(slot),
            truncated: msg.msg_hdr.msg_flags & libc::MSG_TRUNC != 0,
            // SAFETY: the kernel wrote `namelen` bytes of the address
            // (bounded by the storage's size, which `to_socket_addr`
            // checks against the family's struct).
            src: to_socket_addr(unsafe { addrs[i].assume_init_ref() }, namelen),
        };
    }
    Ok(n)
}

/// `sendmmsg(fd, ...)` of up to `N` datagrams, each to its own
/// destination. Returns how many the kernel took, from the first; when it
/// took none, the error of the first (`WouldBlock` for a full buffer). A
/// caller that got `k < items.len()` sends again from `items[k]`, which
/// either goes or returns the error that stopped the batch.
#[cfg(target_os = "linux")]
pub fn send_batch<const N: usize>(fd: RawFd, items: &[(&SockAddr, &[u8])]) -> io::Result<usize> {
    let n = items.len().min(N);
    if n == 0 {
        return Ok(0);
    }
    let mut iovs: [MaybeUninit<libc::iovec>; N] = [const { MaybeUninit::uninit() }; N];
    let mut msgs: [MaybeUninit<libc::mmsghdr>; N] = [const { MaybeUninit::uninit() }; N];
    for (i, (dest, bytes)) in items.iter().take(n).enumerate() {
        let iov = iovs[i].write(libc::iovec {
            // The kernel only reads from a send's iovec.
            iov_base: bytes.as_ptr().cast_mut().cast(),
            iov_len: bytes.len(),
        });
        msgs[i].write(header(dest.as_ptr().cast_mut().cast(), dest.len(), iov));
    }
    // SAFETY: the first `n` headers are initialised and point at the
    // callers' addresses and bytes, which outlive the call; the kernel
    // reads them and writes only `msg_len`.
    let sent = unsafe {
        libc::sendmmsg(
            fd,
            msgs.as_mut_ptr().cast(),
            n as libc::c_uint,
            libc::MSG_DONTWAIT,
        )
    };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(sent as usize)
}

/// The header of one datagram: its address buffer and its one iovec.
#[cfg(target_os = "linux")]
fn header(
    name: *mut libc::c_void,
    namelen: libc::socklen_t,
    iov: *mut libc::iovec,
) -> libc::mmsghdr {
    // SAFETY: all-zero is a valid mmsghdr (null pointers, no control data,
    // no flags); the fields the kernel reads are set below.
    let mut msg: libc::mmsghdr = unsafe { std::mem::zeroed() };
    msg.msg_hdr.msg_name = name;
    msg.msg_hdr.msg_namelen = namelen;
    msg.msg_hdr.msg_iov = iov;
    msg.msg_hdr.msg_iovlen = 1;
    msg
}

#[cfg(target_os = "linux")]
fn to_socket_addr(ss: &libc::sockaddr_storage, len: usize) -> Option<SocketAddr> {
    match i32::from(ss.ss_family) {
        libc::AF_INET if len >= size_of::<libc::sockaddr_in>() => {
            // SAFETY: the family says the storage holds a sockaddr_in, and
            // sockaddr_storage is large and aligned enough for it.
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

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use std::net::UdpSocket;
    use std::os::fd::AsRawFd;

    fn pair() -> (UdpSocket, UdpSocket) {
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").unwrap();
        (a, b)
    }

    #[test]
    fn an_empty_queue_would_block() {
        let (a, _) = pair();
        let mut buf = [0u8; 64];
        let mut out = [Received::default(); 2];
        let e = recv_batch(a.as_raw_fd(), &mut buf, &mut out).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
    }

    #[test]
    fn a_batch_goes_out_and_comes_back_in_order_with_sources() {
        let (a, b) = pair();
        let to_b = SockAddr::from(b.local_addr().unwrap());
        let items: Vec<(&SockAddr, &[u8])> = vec![
            (&to_b, b"one".as_slice()),
            (&to_b, b"two!".as_slice()),
            (&to_b, b"three".as_slice()),
        ];
        assert_eq!(send_batch::<8>(a.as_raw_fd(), &items).unwrap(), 3);
        let mut buf = [0u8; 4 * 16];
        let mut out = [Received::default(); 4];
        // Three of four slots filled: the queue was empty after them.
        assert_eq!(recv_batch(b.as_raw_fd(), &mut buf, &mut out).unwrap(), 3);
        let src = Some(a.local_addr().unwrap());
        let lens = [3, 4, 5];
        for (i, want) in [&b"one"[..], b"two!", b"three"].iter().enumerate() {
            assert_eq!(
                out[i],
                Received {
                    len: lens[i],
                    src,
                    truncated: false
                }
            );
            assert_eq!(&buf[16 * i..16 * i + lens[i]], *want);
        }
    }

    #[test]
    fn a_datagram_larger_than_its_slot_is_cut_and_says_so() {
        let (a, b) = pair();
        a.send_to(&[7u8; 40], b.local_addr().unwrap()).unwrap();
        let mut buf = [0u8; 2 * 16];
        let mut out = [Received::default(); 2];
        assert_eq!(recv_batch(b.as_raw_fd(), &mut buf, &mut out).unwrap(), 1);
        assert_eq!(out[0].len, 16);
        assert!(out[0].truncated);
    }

    #[test]
    fn a_batch_larger_than_n_sends_the_first_n() {
        let (a, b) = pair();
        let to_b = SockAddr::from(b.local_addr().unwrap());
        let items: Vec<(&SockAddr, &[u8])> = (0..5).map(|_| (&to_b, b"x".as_slice())).collect();
        assert_eq!(send_batch::<2>(a.as_raw_fd(), &items).unwrap(), 2);
        assert_eq!(send_batch::<8>(a.as_raw_fd(), &[]).unwrap(), 0);
    }

    #[test]
    fn ipv6_sources_are_read() {
        let Ok(a) = UdpSocket::bind("[::1]:0") else {
            return;
        };
        let b = UdpSocket::bind("[::1]:0").unwrap();
        a.send_to(b"v6", b.local_addr().unwrap()).unwrap();
        let mut buf = [0u8; 2 * 8];
        let mut out = [Received::default(); 2];
        assert_eq!(recv_batch(b.as_raw_fd(), &mut buf, &mut out).unwrap(), 1);
        assert_eq!(out[0].src, Some(a.local_addr().unwrap()));
    }
}
