//! The relays' own threads: one current-thread tokio runtime per thread,
//! and a relay placed on the first with room.
//!
//! Why not the daemon's multi-threaded runtime: a relay wakes once per
//! packet (with real phones' pacing there is about one packet per wake-up),
//! and on a work-stealing runtime an idle worker woken to steal that task
//! wakes another in turn. docs/performance.md measured it: trunkd's relay
//! cost 1.3–1.6× the bare-relay floor per packet with the default two
//! workers, and the floor's cost with one worker (1.25 wake-ups per packet
//! against 1.05–1.14). A relay never waits on anything but its own sockets,
//! control channel and timers, so it gains nothing from stealing: here each
//! relay stays on the thread it was placed on, and a thread with nothing
//! ready sleeps in `epoll_wait` without waking the others. Signalling keeps
//! the multi-threaded runtime, where its work does move between workers.
//!
//! Channels, `oneshot`s and `JoinHandle`s work across runtimes, so the call
//! task (on the signalling runtime) drives its relay through
//! [`RelayHandle`] exactly as before; only the relay's sockets and timers
//! (inactivity) belong to the relay thread's runtime.
//!
//! # Waking a relay thread once per batch, not once per call
//!
//! Starting a relay, and most requests to it (a peer's address at the
//! answer, clock rates, the stats at the end, the stop), would each wake
//! the relay's thread from the signalling thread: a syscall there, and a
//! context switch on a two-core machine that is busy with signalling.
//! docs/performance.md measured it: +11–17 % CPU per call at 1000 calls/s
//! when relays moved to their own threads. So a new relay's sockets are
//! registered from the signalling thread (an `epoll_ctl`, which wakes
//! nobody: read interest only, see `rx`), its task is handed to the
//! thread's `Deferred` batch, and requests that only matter to the next
//! packet are queued without a wake-up (`ctlq`, "Deferred sends"). Each
//! thread runs its batch at most every `ctlq::DEFERRED_PERIOD` (10 ms),
//! and only when something waits: one wake-up carries every relay started
//! and every request made in that time.
//!
//! # Placement: fill a thread before waking the next
//!
//! Placement counts live relays per thread (a relay counts until its task
//! ends) and gives a new relay to the first thread that has fewer than
//! `relays_per_thread` ([`place`]); only when every thread is that full
//! does it go to the thread with the fewest. Spreading calls evenly
//! instead would cost CPU per packet: a relay thread's fixed cost is its
//! wake-up (a context switch and an `epoll_wait`, several microseconds in a
//! VM), and a thread with more relays finds more packets waiting each time
//! it wakes. docs/performance.md ("Relay threads: packed, not spread")
//! measured it on a 2-vCPU machine: two evenly loaded threads were woken
//! 0.39–0.58 times per packet at 300 and 600 calls and cost 1.3–1.5× the
//! single-threaded bare relay; one thread 0.05–0.13 times, 1.09–1.15×.
//! The cap keeps the capacity of several threads for when one thread's
//! worth of calls is not enough.
//!
//! Dropping [`RelayRuntimes`] (or
//! [`RelayRuntimes::shutdown`]) stops every thread; relays still running
//! then are dropped with their runtime, which closes their sockets and
//! returns their ports.

use std::io;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;

use tokio::runtime::Handle;
use tokio::sync::oneshot;

use crate::ctlq::Deferred;
use crate::relay::{
    spawn_counted, LegSetup, MediaEventSender, PacketObserver, RelayConfig, RelayError, RelayHandle,
};

/// Counts a live relay on its thread; the relay's task holds it, so the
/// count drops when the task ends or is dropped with its runtime.
#[derive(Debug)]
pub(crate) struct LoadGuard(Arc<AtomicUsize>);

impl LoadGuard {
    fn new(load: &Arc<AtomicUsize>) -> Self {
        load.fetch_add(1, Ordering::Relaxed);
        LoadGuard(load.clone())
    }
}

impl Drop for LoadGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

#[derive(Debug)]
struct RelayThread {
    handle: Handle,
    load: Arc<AtomicUsize>,
    deferred: Arc<Deferred>,
}

/// What stopping needs: taken once, by the first shutdown.
#[derive(Debug, Default)]
struct Running {
    stops: Vec<oneshot::Sender<()>>,
    joins: Vec<JoinHandle<()>>,
}

/// The relay threads. See the module docs.
#[derive(Debug)]
pub struct RelayRuntimes {
    threads: Vec<RelayThread>,
    relays_per_thread: NonZeroUsize,
    running: Mutex<Running>,
}

/// Live relays a thread takes before the next thread gets any, the default
/// of `[media] relays_per_thread`. One relay thread carried 800 G.711
/// calls (80,000 packets/s) at 63 % of an AMD EPYC vCPU with no loss
/// (docs/performance.md); 640 keeps a third of the core for SRTP (1.3× the
/// cost of plain RTP per packet) and bursts.
pub const DEFAULT_RELAYS_PER_THREAD: NonZeroUsize = match NonZeroUsize::new(640) {
    Some(n) => n,
    None => unreachable!(),
};

/// The thread a new relay goes to, given each thread's live relays: the
/// first with fewer than `per_thread`, else the one with the fewest (the
/// first of equals). `None` only without threads.
pub fn place<L>(loads: L, per_thread: NonZeroUsize) -> Option<usize>
where
    L: IntoIterator<Item = usize>,
    L::IntoIter: Clone,
{
    let loads = loads.into_iter();
    loads
        .clone()
        .position(|load| load < per_thread.get())
        .or_else(|| {
            loads
                .enumerate()
                .min_by_key(|&(_, load)| load)
                .map(|(i, _)| i)
        })
}

impl RelayRuntimes {
    /// One thread per CPU the process may use
    /// ([`std::thread::available_parallelism`], 1 if unknown): the default
    /// of `[media] relay_threads`.
    pub fn default_threads() -> NonZeroUsize {
        std::thread::available_parallelism().unwrap_or(NonZeroUsize::MIN)
    }

    /// Starts `threads` relay threads, named `trunkd-relay-N`, each running
    /// a current-thread runtime with I/O and time enabled; each takes up to
    /// `relays_per_thread` relays before the next is used ([`place`]).
    ///
    /// # Errors
    /// A runtime or a thread cannot be created (the threads already
    /// started are stopped again).
    pub fn start(threads: NonZeroUsize, relays_per_thread: NonZeroUsize) -> io::Result<Self> {
        let mut started = RelayRuntimes {
            threads: Vec::with_capacity(threads.get()),
            relays_per_thread,
            running: Mutex::new(Running::default()),
        };
        for i in 0..threads.get() {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let handle = runtime.handle().clone();
            let deferred = Arc::new(Deferred::default());
            // Runs once the thread drives the runtime.
            drop(runtime.spawn(deferred.clone().run()));
            let (stop_tx, stop_rx) = oneshot::channel::<()>();
            let join = std::thread::Builder::new()
                .name(format!("trunkd-relay-{i}"))
                .spawn(move || {
                    // The thread drives its runtime until told to stop (or
                    // until the pool is gone: the sender dropped).
                    runtime.block_on(async {
                        let _ = stop_rx.await;
                    });
                    // Dropping the runtime drops the relays still on it.
                    drop(runtime);
                })?;
            started.threads.push(RelayThread {
                handle,
                load: Arc::new(AtomicUsize::new(0)),
                deferred,
            });
            let running = started
                .running
                .get_mut()
                .unwrap_or_else(PoisonError::into_inner);
            running.stops.push(stop_tx);
            running.joins.push(join);
        }
        Ok(started)
    }

    /// How many relay threads there are.
    pub fn threads(&self) -> usize {
        self.threads.len()
    }

    /// Live relays per thread, in thread order.
    pub fn loads(&self) -> Vec<usize> {
        self.threads
            .iter()
            .map(|t| t.load.load(Ordering::Relaxed))
            .collect()
    }

    /// The thread for a new relay: [`place`] over the live counts. Two
    /// calls placed at once may both see a thread one short of full and
    /// both go there: the cap is a target, not a limit.
    fn next_thread(&self) -> Option<&RelayThread> {
        let loads = self.threads.iter().map(|t| t.load.load(Ordering::Relaxed));
        place(loads, self.relays_per_thread).and_then(|i| self.threads.get(i))
    }

    /// [`crate::relay::spawn_with_observer`] on the thread [`place`]
    /// chooses. The handle is used from any runtime (or none).
    ///
    /// # Errors
    /// As `spawn_with_observer`; [`RelayError::Stopped`] after
    /// [`RelayRuntimes::shutdown`].
    pub fn spawn_with_observer<O: PacketObserver + Clone>(
        &self,
        config: RelayConfig,
        a: LegSetup,
        b: LegSetup,
        observer: O,
        events: MediaEventSender,
    ) -> Result<RelayHandle<O>, RelayError> {
        let thread = self.next_thread().ok_or(RelayError::Stopped)?;
        if self.is_shut_down() {
            return Err(RelayError::Stopped);
        }
        spawn_counted(
            &thread.handle,
            Some(&thread.deferred),
            config,
            a,
            b,
            observer,
            events,
            Some(LoadGuard::new(&thread.load)),
        )
    }

    fn is_shut_down(&self) -> bool {
        let running = self.running.lock().unwrap_or_else(PoisonError::into_inner);
        running.joins.is_empty()
    }

    /// Stops every relay thread and waits for them; relays still running
    /// are dropped (sockets closed, ports returned). Idempotent. Must not
    /// be called from a relay thread.
    pub fn shutdown(&self) {
        let Running { stops, joins } =
            std::mem::take(&mut *self.running.lock().unwrap_or_else(PoisonError::into_inner));
        for stop in stops {
            let _ = stop.send(());
        }
        for join in joins {
            if join.join().is_err() {
                tracing::warn!("a media relay thread panicked");
            }
        }
        // Relays handed over but not started yet go too.
        for thread in &self.threads {
            thread.deferred.close();
        }
    }
}

impl Drop for RelayRuntimes {
    fn drop(&mut self) {
        self.shutdown();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::MediaSocket;
    use crate::relay::{Leg, LegSockets};
    use std::net::{SocketAddr, UdpSocket};
    use std::time::Duration;

    fn bound() -> MediaSocket {
        MediaSocket::bind(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap()
    }

    fn leg(peer: Option<SocketAddr>) -> LegSetup {
        LegSetup {
            sockets: LegSockets {
                rtp: bound(),
                rtcp: bound(),
                ports: None,
            },
            peer_rtp: peer,
            peer_rtcp: None,
        }
    }

    fn rtp(seq: u16) -> Vec<u8> {
        let mut p = vec![0u8; 172];
        p[0] = 0x80;
        p[2..4].copy_from_slice(&seq.to_be_bytes());
        p[8..12].copy_from_slice(&0x1234_5678u32.to_be_bytes());
        p
    }

    fn n(v: usize) -> NonZeroUsize {
        NonZeroUsize::new(v).unwrap()
    }

    #[test]
    fn a_thread_fills_to_its_cap_before_the_next_gets_a_relay() {
        assert_eq!(place([0, 0], n(2)), Some(0));
        assert_eq!(place([1, 0], n(2)), Some(0));
        assert_eq!(place([2, 0], n(2)), Some(1));
        assert_eq!(place([2, 1, 0], n(2)), Some(1));
        // A relay that ended on the first thread frees room there first.
        assert_eq!(place([1, 2], n(2)), Some(0));
    }

    #[test]
    fn when_every_thread_is_full_the_fewest_take_the_overflow() {
        assert_eq!(place([2, 2], n(2)), Some(0));
        assert_eq!(place([3, 2], n(2)), Some(1));
        assert_eq!(place([5, 3, 4], n(2)), Some(1));
        assert_eq!(place([], n(2)), None);
    }

    proptest::proptest! {
        /// Placing relays one by one from empty threads fills them in
        /// order to the cap, then keeps them within one of each other.
        #[test]
        fn placement_packs_then_balances(threads in 1usize..6, cap in 1usize..20, relays in 0usize..200) {
            let mut loads = vec![0usize; threads];
            for _ in 0..relays {
                let i = place(loads.iter().copied(), n(cap)).unwrap();
                loads[i] += 1;
            }
            let total = threads * cap;
            if relays <= total {
                // Full threads, then the partly filled one, then empty ones.
                for (i, &load) in loads.iter().enumerate() {
                    let expect = relays.saturating_sub(i * cap).min(cap);
                    proptest::prop_assert_eq!(load, expect);
                }
            } else {
                let (lo, hi) = (loads.iter().min().unwrap(), loads.iter().max().unwrap());
                proptest::prop_assert!(hi - lo <= 1);
                proptest::prop_assert_eq!(loads.iter().sum::<usize>(), relays);
            }
        }
    }

    /// Relays fill a thread to its cap, then go to the next; they relay
    /// packets there, and their count drops when they stop.
    #[test]
    fn relays_fill_relay_and_end_on_their_threads() {
        let pool = RelayRuntimes::start(n(2), n(2)).unwrap();
        assert_eq!(pool.threads(), 2);
        let signalling = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        signalling.block_on(async {
            let phone_a = UdpSocket::bind("127.0.0.1:0").unwrap();
            let phone_b = UdpSocket::bind("127.0.0.1:0").unwrap();
            phone_a
                .set_read_timeout(Some(Duration::from_secs(2)))
                .unwrap();
            phone_b
                .set_read_timeout(Some(Duration::from_secs(2)))
                .unwrap();
            let mut handles = Vec::new();
            for _ in 0..3 {
                let (tx, _rx) = crate::relay::media_events();
                let h = pool
                    .spawn_with_observer(
                        RelayConfig::default(),
                        leg(Some(phone_a.local_addr().unwrap())),
                        leg(Some(phone_b.local_addr().unwrap())),
                        crate::relay::NoopObserver,
                        tx,
                    )
                    .unwrap();
                handles.push(h);
            }
            assert_eq!(pool.loads(), vec![2, 1]);

            // The first relay forwards A's packet to B, byte for byte. The
            // packet is sent before the thread's batch has started the relay:
            // it waits in the socket, it is not lost.
            let sent = rtp(7);
            phone_a
                .send_to(&sent, handles[0].local_rtp(Leg::A))
                .unwrap();
            let (got, from) = tokio::task::spawn_blocking(move || {
                let mut buf = [0u8; 2048];
                let (n, from) = phone_b.recv_from(&mut buf)?;
                Ok::<_, io::Error>((buf[..n].to_vec(), from))
            })
            .await
            .unwrap()
            .unwrap();
            assert_eq!(got, sent);
            assert_eq!(from, handles[0].local_rtp(Leg::B));
            let stats = handles[0].stats().await.unwrap();
            assert_eq!(stats.a.rx.rtp_packets, 1);
            assert_eq!(stats.b.tx.rtp_packets, 1);

            let first = handles.remove(0);
            first.stop().await.unwrap();
            assert_eq!(pool.loads(), vec![1, 1]);
            // A handle dropped (not stopped) ends its relay too: the third
            // relay, on thread 1.
            drop(handles.pop());
            for _ in 0..100 {
                if pool.loads() == vec![1, 0] {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            assert_eq!(pool.loads(), vec![1, 0]);
        });
    }

    /// Shutdown ends the relays still running: their handles see a stopped
    /// relay, and nothing more can be spawned.
    #[test]
    fn shutdown_drops_running_relays() {
        let pool = RelayRuntimes::start(n(1), DEFAULT_RELAYS_PER_THREAD).unwrap();
        let (tx, _rx) = crate::relay::media_events();
        let h = pool
            .spawn_with_observer(
                RelayConfig::default(),
                leg(None),
                leg(None),
                crate::relay::NoopObserver,
                tx,
            )
            .unwrap();
        assert_eq!(pool.loads(), vec![1]);
        pool.shutdown();
        assert_eq!(pool.loads(), vec![0]);
        assert!(h.is_finished());
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        assert!(matches!(rt.block_on(h.stop()), Err(RelayError::Stopped)));
        let (tx, _rx) = crate::relay::media_events();
        assert!(matches!(
            pool.spawn_with_observer(
                RelayConfig::default(),
                leg(None),
                leg(None),
                crate::relay::NoopObserver,
                tx,
            ),
            Err(RelayError::Stopped)
        ));
        pool.shutdown();
    }
}
