//! RTP/RTCP port-pair allocation over the configured media range (SPEC §2.4,
//! §9: UDP 5000–65000 by default).
//!
//! Each stream of each leg gets a pair: an even RTP port and the odd port
//! above it for RTCP (RFC 3550 §11), so the SDP needs no `a=rtcp`.
//!
//! # Why a FIFO free list
//!
//! Free pairs sit in a queue: allocation takes from the front, release puts
//! at the back. Both are O(1), and a pair just freed is handed out again
//! only after every other free pair has been: late RTP of an ended call (a
//! peer that has not processed the BYE yet, packets in flight, a carrier
//! that keeps streaming for a second) would otherwise land in the next call
//! on that port and be latched or relayed there. With 30,000 pairs that
//! quarantine is as long as it can be. The initial order is shuffled (seeded
//! from std's per-process random hash keys) so the ports of the next calls
//! are not predictable from the outside: a guessed port could be used to
//! inject media and be latched before the real peer sends (the "RTP bleed"
//! class of attacks).
//!
//! # Binding
//!
//! The allocator's view is only trunkd's: another process may hold a port in
//! the range. [`PortAllocator::allocate_bound`] binds both sockets and, when
//! the OS refuses one as in use, moves on to the next pair, a bounded number
//! of times; the refused pair goes to the back of the queue like any freed
//! one.
//!
//! A media socket is made non-blocking by `socket(2)` itself and keeps the
//! address it was bound to ([`MediaSocket`]): a signalling-only call binds
//! four of them, and an `ioctl(FIONBIO)` and a `getsockname(2)` per socket
//! were twelve of the call's fifty-four syscalls (docs/performance.md,
//! "seventh pass").

use std::collections::hash_map::RandomState;
use std::collections::VecDeque;
use std::hash::{BuildHasher, Hasher};
use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::{Arc, Mutex, MutexGuard};

use socket2::{Domain, Protocol, Socket, Type};

/// The default media range (SPEC §9).
pub const DEFAULT_PORT_MIN: u16 = 5000;
pub const DEFAULT_PORT_MAX: u16 = 65000;
/// How many pairs [`PortAllocator::allocate_bound`] tries by default before
/// giving up when the OS refuses them.
pub const DEFAULT_BIND_ATTEMPTS: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum PortError {
    #[error("media port range {min}-{max} holds no even/odd port pair")]
    EmptyRange { min: u16, max: u16 },
    /// Every pair is in use: the caller answers 503.
    #[error("all {pairs} media port pairs in {min}-{max} are in use")]
    Exhausted { min: u16, max: u16, pairs: usize },
    /// The OS refused every pair tried (other processes hold them).
    #[error(
        "the OS refused {attempts} media port pairs in a row (ports held by other processes?)"
    )]
    AllBusy { attempts: usize },
    /// Binding failed for a reason that another port would not fix (the
    /// address is not local, no permission, ...).
    #[error("cannot bind media socket {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
}

#[derive(Debug)]
struct Shared {
    /// The first RTP port (even).
    first: u16,
    pairs: usize,
    min: u16,
    max: u16,
    free: Mutex<VecDeque<u16>>,
}

impl Shared {
    fn free(&self) -> MutexGuard<'_, VecDeque<u16>> {
        // The queue is consistent at every await-free step; a panic elsewhere
        // while holding the lock cannot leave it half-updated.
        self.free
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Allocates RTP/RTCP port pairs; cheap to clone (shared state).
#[derive(Debug, Clone)]
pub struct PortAllocator {
    shared: Arc<Shared>,
    bind_attempts: usize,
}

impl PortAllocator {
    /// A pool over `min..=max`: RTP ports are the even ports from `min`
    /// (rounded up) whose odd neighbour is still `<= max`.
    pub fn new(min: u16, max: u16) -> Result<Self, PortError> {
        let first = u32::from(min.max(2)).next_multiple_of(2);
        let max32 = u32::from(max);
        let pairs = if first < max32 {
            let ports_in_range = max32 - first + 1;
            (ports_in_range / 2) as usize
        } else {
            0
        };
        if pairs == 0 {
            return Err(PortError::EmptyRange { min, max });
        }
        let mut order: Vec<u16> = (0..pairs).map(|i| i as u16).collect();
        shuffle(&mut order);
        Ok(Self {
            shared: Arc::new(Shared {
                first: first as u16,
                pairs,
                min,
                max,
                free: Mutex::new(order.into()),
            }),
            bind_attempts: DEFAULT_BIND_ATTEMPTS,
        })
    }

    /// How many pairs [`Self::allocate_bound`] tries before giving up.
    pub fn with_bind_attempts(mut self, attempts: usize) -> Self {
        self.bind_attempts = attempts.max(1);
        self
    }

    /// Total pairs in the range.
    pub fn capacity(&self) -> usize {
        self.shared.pairs
    }

    /// Pairs not handed out.
    pub fn available(&self) -> usize {
        self.shared.free().len()
    }

    /// Takes the next free pair without binding it. The pair returns to the
    /// pool when the guard is dropped.
    pub fn allocate(&self) -> Result<PortPair, PortError> {
        let index = self.shared.free().pop_front().ok_or(PortError::Exhausted {
            min: self.shared.min,
            max: self.shared.max,
            pairs: self.shared.pairs,
        })?;
        Ok(PortPair {
            rtp: self.shared.first + 2 * index,
            index,
            shared: Arc::clone(&self.shared),
        })
    }

    /// Takes the next free pair and binds both sockets on `ip`, skipping
    /// pairs whose ports the OS refuses (held by another process). The
    /// sockets are non-blocking, ready for the relay.
    pub fn allocate_bound(&self, ip: IpAddr) -> Result<BoundPair, PortError> {
        for _ in 0..self.bind_attempts {
            let ports = self.allocate()?;
            match bind_pair(ip, &ports) {
                Ok((rtp, rtcp)) => return Ok(BoundPair { rtp, rtcp, ports }),
                Err(BindFailure::Busy(addr)) => {
                    tracing::debug!(%addr, "media port refused by the OS, trying the next pair");
                    // Dropping the guard queues the pair at the back.
                }
                Err(BindFailure::Fatal(addr, source)) => {
                    return Err(PortError::Bind { addr, source })
                }
            }
        }
        Err(PortError::AllBusy {
            attempts: self.bind_attempts,
        })
    }
}

enum BindFailure {
    Busy(SocketAddr),
    Fatal(SocketAddr, io::Error),
}

fn bind_pair(ip: IpAddr, ports: &PortPair) -> Result<(MediaSocket, MediaSocket), BindFailure> {
    let bind = |port| {
        let addr = SocketAddr::new(ip, port);
        MediaSocket::bind(addr).map_err(|e| match e.kind() {
            io::ErrorKind::AddrInUse | io::ErrorKind::PermissionDenied => BindFailure::Busy(addr),
            _ => BindFailure::Fatal(addr, e),
        })
    };
    let rtp = bind(ports.rtp())?;
    let rtcp = bind(ports.rtcp())?;
    Ok((rtp, rtcp))
}

/// A pair taken from the pool; returns it to the back of the free queue on
/// drop. Whoever holds the sockets bound to it must drop them first (as
/// [`BoundPair`]'s field order does), so the pair is never handed out while
/// still bound.
#[derive(Debug)]
pub struct PortPair {
    rtp: u16,
    index: u16,
    shared: Arc<Shared>,
}

impl PortPair {
    pub fn rtp(&self) -> u16 {
        self.rtp
    }
    pub fn rtcp(&self) -> u16 {
        self.rtp + 1
    }
}

impl Drop for PortPair {
    fn drop(&mut self) {
        self.shared.free().push_back(self.index);
    }
}

/// Two bound, non-blocking sockets and the pair they hold. Fields drop in
/// declaration order: sockets first, then the pair goes back to the pool.
#[derive(Debug)]
pub struct BoundPair {
    pub rtp: MediaSocket,
    pub rtcp: MediaSocket,
    pub ports: PortPair,
}

/// A bound, non-blocking UDP socket and the local address it is bound to:
/// what the relay needs of a socket, and nothing that can be otherwise (a
/// blocking socket would stall a relay thread on its first receive).
#[derive(Debug)]
pub struct MediaSocket {
    sock: UdpSocket,
    local: SocketAddr,
}

impl MediaSocket {
    /// Binds a new socket to `addr`, non-blocking and close-on-exec from
    /// the start (`SOCK_NONBLOCK | SOCK_CLOEXEC`: one syscall for the
    /// socket, one for the bind). The local address is asked of the kernel
    /// only when `addr` leaves the port to it (port 0).
    pub fn bind(addr: SocketAddr) -> io::Result<Self> {
        let sock = Socket::new(
            Domain::for_address(addr),
            Type::DGRAM.nonblocking(),
            Some(Protocol::UDP),
        )?;
        sock.bind(&addr.into())?;
        let sock = UdpSocket::from(sock);
        let local = if addr.port() == 0 {
            sock.local_addr()?
        } else {
            addr
        };
        Ok(Self { sock, local })
    }

    /// The address the socket is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The socket, for sending and receiving outside a relay (tests, tools).
    pub fn socket(&self) -> &UdpSocket {
        &self.sock
    }

    pub fn into_std(self) -> UdpSocket {
        self.sock
    }
}

/// Takes a socket bound elsewhere: made non-blocking, its address read once.
impl TryFrom<UdpSocket> for MediaSocket {
    type Error = io::Error;

    fn try_from(sock: UdpSocket) -> io::Result<Self> {
        sock.set_nonblocking(true)?;
        let local = sock.local_addr()?;
        Ok(Self { sock, local })
    }
}

/// Fisher–Yates with a xorshift generator seeded from std's random hash
/// keys: unpredictability from outside is the goal, not statistical quality,
/// and it avoids a dependency for a one-off shuffle.
fn shuffle(items: &mut [u16]) {
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_usize(items.len());
    let mut x = hasher.finish() | 1;
    for i in (1..items.len()).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let j = (x % (i as u64 + 1)) as usize;
        items.swap(i, j);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;
    use std::net::Ipv4Addr;

    const LO: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

    #[test]
    fn range_rounding() {
        let a = PortAllocator::new(5001, 5006).unwrap();
        // Pairs 5002/5003 and 5004/5005; 5006 has no odd neighbour in range.
        assert_eq!(a.capacity(), 2);
        let ports: HashSet<u16> = (0..2)
            .map(|_| a.allocate().unwrap())
            .map(|p| p.rtp())
            .collect();
        assert_eq!(ports, HashSet::from([5002, 5004]));
        assert_eq!(PortAllocator::new(5000, 65000).unwrap().capacity(), 30000);
        assert_eq!(PortAllocator::new(0, 3).unwrap().capacity(), 1);
        assert!(matches!(
            PortAllocator::new(5000, 5000),
            Err(PortError::EmptyRange { .. })
        ));
        assert!(matches!(
            PortAllocator::new(7000, 5000),
            Err(PortError::EmptyRange { .. })
        ));
        assert_eq!(PortAllocator::new(65534, 65535).unwrap().capacity(), 1);
    }

    #[test]
    fn pairs_are_even_odd_and_distinct_until_exhausted() {
        let a = PortAllocator::new(20000, 20199).unwrap();
        let held: Vec<PortPair> = (0..100).map(|_| a.allocate().unwrap()).collect();
        let rtps: HashSet<u16> = held.iter().map(PortPair::rtp).collect();
        assert_eq!(rtps.len(), 100);
        for p in &held {
            assert_eq!(p.rtp() % 2, 0);
            assert_eq!(p.rtcp(), p.rtp() + 1);
            assert!((20000..=20199).contains(&p.rtp()) && p.rtcp() <= 20199);
        }
        assert_eq!(a.available(), 0);
        let err = a.allocate().unwrap_err();
        assert!(matches!(err, PortError::Exhausted { pairs: 100, .. }));
        assert_eq!(
            err.to_string(),
            "all 100 media port pairs in 20000-20199 are in use"
        );
        drop(held);
        assert_eq!(a.available(), 100);
    }

    #[test]
    fn guard_frees_and_just_freed_is_reused_last() {
        let a = PortAllocator::new(20000, 20019).unwrap(); // 10 pairs
        let first = a.allocate().unwrap();
        let freed = first.rtp();
        drop(first);
        assert_eq!(a.available(), 10);
        // The 9 other pairs come before the one just freed.
        let next: Vec<PortPair> = (0..9).map(|_| a.allocate().unwrap()).collect();
        assert!(next.iter().all(|p| p.rtp() != freed));
        assert_eq!(a.allocate().unwrap().rtp(), freed);
    }

    #[test]
    fn allocate_bound_binds_and_skips_busy_ports() {
        let a = PortAllocator::new(21000, 21007).unwrap(); // 4 pairs
                                                           // Another "process" holds the RTP port of one pair and the RTCP port
                                                           // of another.
        let busy1 = UdpSocket::bind((LO, 21000)).unwrap();
        let busy2 = UdpSocket::bind((LO, 21005)).unwrap();
        let b1 = a.allocate_bound(LO).unwrap();
        let b2 = a.allocate_bound(LO).unwrap();
        let mut got = HashSet::from([b1.ports.rtp(), b2.ports.rtp()]);
        assert_eq!(got, HashSet::from([21002, 21006]));
        // The address kept beside each socket is the one the kernel has.
        for (sock, port) in [(&b1.rtp, b1.ports.rtp()), (&b1.rtcp, b1.ports.rtcp())] {
            assert_eq!(sock.local_addr().port(), port);
            assert_eq!(sock.socket().local_addr().unwrap(), sock.local_addr());
        }
        // Only busy pairs are left: bounded attempts, then AllBusy.
        let err = a.allocate_bound(LO).unwrap_err();
        assert!(matches!(err, PortError::AllBusy { .. }), "{err}");
        // The other process lets go: the pairs become usable.
        drop((busy1, busy2));
        got.insert(a.allocate_bound(LO).map(|b| b.ports.rtp()).unwrap());
        // Dropping a BoundPair closes its sockets and frees the pair: it can
        // be bound again right away.
        let port = b1.ports.rtp();
        drop(b1);
        UdpSocket::bind((LO, port)).unwrap();
        UdpSocket::bind((LO, port + 1)).unwrap();
        drop(b2);
    }

    #[test]
    fn allocate_bound_exhaustion_and_foreign_address() {
        let a = PortAllocator::new(21100, 21103).unwrap(); // 2 pairs
        let _x = a.allocate_bound(LO).unwrap();
        let _y = a.allocate_bound(LO).unwrap();
        assert!(matches!(
            a.allocate_bound(LO),
            Err(PortError::Exhausted { .. })
        ));
        // An address this host does not have: fatal, not retried.
        let b = PortAllocator::new(21200, 21203).unwrap();
        let err = b
            .allocate_bound(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 77)))
            .unwrap_err();
        assert!(matches!(err, PortError::Bind { .. }), "{err}");
        assert_eq!(b.available(), 2);
    }

    #[test]
    fn media_sockets_never_block_and_know_their_address() {
        for sock in [
            MediaSocket::bind(SocketAddr::new(LO, 0)).unwrap(),
            MediaSocket::try_from(UdpSocket::bind((LO, 0)).unwrap()).unwrap(),
        ] {
            // Port 0: the kernel's choice is what is kept.
            assert_ne!(sock.local_addr().port(), 0);
            assert_eq!(sock.socket().local_addr().unwrap(), sock.local_addr());
            let mut buf = [0u8; 16];
            let err = sock.socket().recv_from(&mut buf).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
        }
    }

    #[test]
    fn shuffle_is_a_permutation() {
        let mut v: Vec<u16> = (0..1000).collect();
        shuffle(&mut v);
        let mut sorted = v.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..1000).collect::<Vec<u16>>());
        assert_ne!(v, sorted);
    }
}
