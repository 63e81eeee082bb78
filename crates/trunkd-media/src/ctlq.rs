//! The relay's control queue: the call actor's requests (peer updates,
//! keys, taps, injected packets, stats) to its relay task, and the relay's
//! end, which the call actor waits for.
//!
//! Why not a tokio `mpsc` channel: every tokio channel allocates its shared
//! state padded to cache lines (about 0.5 KiB) plus a first block of 32
//! slots up front (32 × the message size), about 3 KiB per call for a queue
//! that carries a handful of messages over a call's life (a
//! memory breakdown is in docs/performance.md, "Issue 15: media"). This one
//! is a `Mutex<VecDeque>` with the task's waker: nothing is allocated until
//! the first message, and never more than the messages waiting. The lock is
//! uncontended (one sender, one receiver, rare messages), and the relay
//! takes it only when something changed: a flag beside the lock says
//! whether there is anything to read, so the poll of a relay woken by a
//! packet (about one per packet) reads one atomic instead of locking and
//! unlocking, which was 4 % of a relay thread's CPU (docs/performance.md,
//! ninth pass).
//!
//! # Deferred sends
//!
//! A relay runs on its own thread ([`crate::RelayRuntimes`]) and the call
//! actor on the signalling runtime, so waking the relay for a message is a
//! cross-thread wake-up (a syscall, and a context switch on a busy machine).
//! Most messages need no wake-up of their own: a new peer address, new
//! keys or clock rates matter only to the next packet, and the relay reads
//! its queue before every packet it handles. [`Sender::send_deferred`]
//! queues without waking; the relay thread's [`Deferred`] batch wakes the
//! task within [`DEFERRED_PERIOD`] if no packet did it first, together
//! with every other task that has deferred messages. Messages that must act
//! at once (an injected packet, a new stream's sockets, a tap) use
//! [`Sender::send`].
//!
//! Semantics are otherwise an unbounded channel's: sending fails once the
//! task has gone, and dropping the last [`Sender`] ends the task (it sees
//! the queue closed after draining it). A relay has one sender; the
//! [`crate::mailbox`] that carries a call task's inputs shares it among the
//! engine, the admin API and an application's bridge. The task's end is the
//! [`Receiver`] being dropped, which the relay task does last, after its
//! sockets are closed and its ports returned: [`Sender::poll_closed`] is
//! what `RelayHandle::stop` waits on.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

/// How long a deferred message may wait for a wake-up: the relay threads
/// batch their deferred work at most this often. Long enough that at
/// 1000 calls/s one wake-up carries about ten calls' starts, stops and
/// answers; short enough that a stats request or a stop is not noticed by
/// a person (a call's records are written at most this much later).
pub(crate) const DEFERRED_PERIOD: Duration = Duration::from_millis(10);

/// A future a relay thread runs.
pub(crate) type RelayFuture = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing here panics while holding a lock; if something did, the
    // state is still consistent (a push or a pop either happened or not).
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One relay thread's deferred work: relay tasks to start and tasks to
/// wake, run together by [`Deferred::run`] on that thread at most
/// [`DEFERRED_PERIOD`] after the first of them arrived. The thread is woken
/// once per batch, not once per call.
#[derive(Default)]
pub(crate) struct Deferred {
    inner: Mutex<DeferredInner>,
}

#[derive(Default)]
struct DeferredInner {
    spawns: Vec<RelayFuture>,
    wakes: Vec<Waker>,
    /// A batch is due: the batcher is (or will be) sleeping towards it.
    armed: bool,
    /// The batcher's waker while it waits for work.
    batcher: Option<Waker>,
    /// The thread has stopped: nothing will run again.
    closed: bool,
}

impl std::fmt::Debug for Deferred {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = lock(&self.inner);
        f.debug_struct("Deferred")
            .field("spawns", &s.spawns.len())
            .field("wakes", &s.wakes.len())
            .field("armed", &s.armed)
            .field("closed", &s.closed)
            .finish()
    }
}

impl DeferredInner {
    /// Marks a batch due; the batcher's waker if it must be woken for it
    /// (the first item since the last batch).
    fn arm(&mut self) -> Option<Waker> {
        if self.armed {
            return None;
        }
        self.armed = true;
        self.batcher.take()
    }
}

impl Deferred {
    /// Starts `task` on this thread with the next batch. After the thread
    /// stopped, `task` is dropped (what it owns is released).
    pub(crate) fn spawn(&self, task: RelayFuture) {
        let batcher = {
            let mut s = lock(&self.inner);
            if s.closed {
                drop(s);
                drop(task);
                return;
            }
            s.spawns.push(task);
            s.arm()
        };
        if let Some(w) = batcher {
            w.wake();
        }
    }

    /// Wakes `waker` (a task of this thread) with the next batch.
    fn wake(&self, waker: Waker) {
        let batcher = {
            let mut s = lock(&self.inner);
            if s.closed {
                return;
            }
            s.wakes.push(waker);
            s.arm()
        };
        if let Some(w) = batcher {
            w.wake();
        }
    }

    /// The batcher: runs on the relay thread for the thread's life. Waits
    /// for work, lets [`DEFERRED_PERIOD`] pass so more gathers, then starts
    /// and wakes everything that gathered (on this thread, which costs no
    /// syscall).
    pub(crate) async fn run(self: Arc<Self>) {
        loop {
            std::future::poll_fn(|cx| {
                let mut s = lock(&self.inner);
                if s.armed {
                    Poll::Ready(())
                } else {
                    s.batcher = Some(cx.waker().clone());
                    Poll::Pending
                }
            })
            .await;
            tokio::time::sleep(DEFERRED_PERIOD).await;
            let (spawns, wakes) = {
                let mut s = lock(&self.inner);
                s.armed = false;
                (std::mem::take(&mut s.spawns), std::mem::take(&mut s.wakes))
            };
            for task in spawns {
                drop(tokio::spawn(task));
            }
            for w in wakes {
                w.wake();
            }
        }
    }

    /// The thread stopped: drops what waits (so the relays not yet started
    /// release their sockets and ports, and their handles see them gone)
    /// and refuses more.
    pub(crate) fn close(&self) {
        let (spawns, wakes) = {
            let mut s = lock(&self.inner);
            s.closed = true;
            s.batcher = None;
            (std::mem::take(&mut s.spawns), std::mem::take(&mut s.wakes))
        };
        drop(spawns);
        drop(wakes);
    }
}

struct Shared<T> {
    items: VecDeque<T>,
    /// Senders alive; none: no more messages will come.
    senders: usize,
    /// The receiver was dropped: the task has ended.
    receiver_gone: bool,
    /// The task ended by a panic.
    panicked: bool,
    /// The task's waker.
    waker: Option<Waker>,
    /// Who waits for the task's end.
    closed_waker: Option<Waker>,
}

/// The state both ends share.
struct Queue<T> {
    shared: Mutex<Shared<T>>,
    /// Whether the receiver has anything to read under the lock: a
    /// message, or no sender left. Written only with the lock held (after
    /// the change it announces); read without it by the receiver's fast
    /// path ([`Receiver::poll_recv`]).
    ready: AtomicBool,
}

impl<T> Queue<T> {
    fn lock(&self) -> MutexGuard<'_, Shared<T>> {
        lock(&self.shared)
    }
}

type Inner<T> = Arc<Queue<T>>;

/// The call actor's end.
pub(crate) struct Sender<T> {
    inner: Inner<T>,
    /// The relay thread's batch, for deferred wake-ups; `None` (a relay on
    /// the caller's runtime): deferred sends wake at once.
    deferred: Option<Arc<Deferred>>,
}

/// The relay task's end.
pub(crate) struct Receiver<T> {
    inner: Inner<T>,
    /// The waker the queue holds for this task, stored when the queue was
    /// last found empty. While `ready` stays false no sender has touched
    /// the queue since (a push takes the waker and sets `ready`), so a poll
    /// with the same waker has nothing to read and nothing to register.
    parked: Option<Waker>,
}

pub(crate) fn queue<T>(deferred: Option<Arc<Deferred>>) -> (Sender<T>, Receiver<T>) {
    let inner = Arc::new(Queue {
        shared: Mutex::new(Shared {
            items: VecDeque::new(),
            senders: 1,
            receiver_gone: false,
            panicked: false,
            waker: None,
            closed_waker: None,
        }),
        ready: AtomicBool::new(false),
    });
    (
        Sender {
            inner: inner.clone(),
            deferred,
        },
        Receiver {
            inner,
            parked: None,
        },
    )
}

impl<T> Sender<T> {
    /// Queues `item` unless the task has gone or `cap` items already wait
    /// (then `item` is given back), and takes the task's waker, for the
    /// caller to wake now or with the batch.
    fn push(&self, item: T, cap: usize) -> Result<Option<Waker>, T> {
        let mut s = self.inner.lock();
        if s.receiver_gone || s.items.len() >= cap {
            return Err(item);
        }
        s.items.push_back(item);
        self.inner.ready.store(true, Ordering::Release);
        Ok(s.waker.take())
    }

    /// Queues `item` and wakes the task now; gives it back if the task has
    /// gone.
    pub(crate) fn send(&self, item: T) -> Result<(), T> {
        self.send_capped(item, usize::MAX)
    }

    /// [`Sender::send`] unless `cap` items already wait (then `item` is
    /// given back).
    pub(crate) fn send_capped(&self, item: T, cap: usize) -> Result<(), T> {
        if let Some(w) = self.push(item, cap)? {
            w.wake();
        }
        Ok(())
    }

    /// Queues `item`; the task reads it at its next wake-up, a packet's or
    /// the thread's next batch (see the module docs). Gives it back if the
    /// task has gone.
    pub(crate) fn send_deferred(&self, item: T) -> Result<(), T> {
        if let Some(w) = self.push(item, usize::MAX)? {
            self.wake_deferred(w);
        }
        Ok(())
    }

    fn wake_deferred(&self, waker: Waker) {
        match &self.deferred {
            Some(d) => d.wake(waker),
            None => waker.wake(),
        }
    }

    /// `Ready(panicked)` once the task has ended (its receiver dropped).
    pub(crate) fn poll_closed(&self, cx: &mut Context<'_>) -> Poll<bool> {
        let mut s = self.inner.lock();
        if s.receiver_gone {
            return Poll::Ready(s.panicked);
        }
        match &mut s.closed_waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            slot => *slot = Some(cx.waker().clone()),
        }
        Poll::Pending
    }

    /// Whether the task has ended.
    pub(crate) fn is_closed(&self) -> bool {
        self.inner.lock().receiver_gone
    }
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        self.inner.lock().senders += 1;
        Sender {
            inner: self.inner.clone(),
            deferred: self.deferred.clone(),
        }
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        let waker = {
            let mut s = self.inner.lock();
            s.senders -= 1;
            if s.senders > 0 {
                return;
            }
            self.inner.ready.store(true, Ordering::Release);
            s.waker.take()
        };
        // Ending a relay is not urgent: its sockets close with the batch.
        if let Some(w) = waker {
            self.wake_deferred(w);
        }
    }
}

impl<T> std::fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ctlq::Sender").finish_non_exhaustive()
    }
}

impl<T> std::fmt::Debug for Receiver<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ctlq::Receiver").finish_non_exhaustive()
    }
}

impl<T> Receiver<T> {
    /// The next message; `Ready(None)`: the sender is gone and the queue is
    /// empty. `Pending` registers the task's waker.
    pub(crate) fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<T>> {
        // Nothing changed since the queue was found empty, and the task's
        // waker is the one it holds: nothing to do. A sender's change made
        // before the wake-up that led here is seen (the wake-up orders it).
        if let Some(w) = &self.parked {
            if !self.inner.ready.load(Ordering::Acquire) && w.will_wake(cx.waker()) {
                return Poll::Pending;
            }
        }
        self.parked = None;
        let mut s = self.inner.lock();
        if let Some(item) = s.items.pop_front() {
            if s.items.is_empty() {
                // Give the memory back: a queue is empty nearly always.
                s.items = VecDeque::new();
            }
            let more = !s.items.is_empty() || s.senders == 0;
            self.inner.ready.store(more, Ordering::Release);
            return Poll::Ready(Some(item));
        }
        if s.senders == 0 {
            return Poll::Ready(None);
        }
        match &mut s.waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            slot => *slot = Some(cx.waker().clone()),
        }
        self.inner.ready.store(false, Ordering::Release);
        self.parked = Some(cx.waker().clone());
        Poll::Pending
    }

    /// The task is unwinding from a panic: [`Sender::poll_closed`] says so.
    pub(crate) fn mark_panicked(&self) {
        self.inner.lock().panicked = true;
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        let closed_waker = {
            let mut s = self.inner.lock();
            s.receiver_gone = true;
            s.waker = None;
            // Messages nobody will read (an injected packet, a stats
            // request whose asker then sees the relay stopped) go now.
            s.items = VecDeque::new();
            s.closed_waker.take()
        };
        if let Some(w) = closed_waker {
            w.wake();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::poll_fn;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn messages_in_order_then_closed_when_the_sender_goes() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            let (tx, mut rx) = queue::<u32>(None);
            tx.send(1).unwrap();
            tx.send_deferred(2).unwrap();
            assert_eq!(poll_fn(|cx| rx.poll_recv(cx)).await, Some(1));
            let waiter = tokio::spawn(async move {
                let mut got = Vec::new();
                while let Some(v) = poll_fn(|cx| rx.poll_recv(cx)).await {
                    got.push(v);
                }
                got
            });
            tokio::task::yield_now().await;
            tx.send(3).unwrap();
            tokio::task::yield_now().await;
            drop(tx);
            assert_eq!(waiter.await.unwrap(), vec![2, 3]);
        });
    }

    #[test]
    fn the_queue_closes_when_the_last_of_its_senders_goes() {
        let (tx, mut rx) = queue::<u8>(None);
        let tx2 = tx.clone();
        let mut cx = Context::from_waker(Waker::noop());
        drop(tx);
        assert_eq!(rx.poll_recv(&mut cx), Poll::Pending);
        tx2.send(7).unwrap();
        drop(tx2);
        assert_eq!(rx.poll_recv(&mut cx), Poll::Ready(Some(7)));
        assert_eq!(rx.poll_recv(&mut cx), Poll::Ready(None));
    }

    struct CountingWaker(AtomicUsize);

    impl std::task::Wake for CountingWaker {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn counting() -> (Arc<CountingWaker>, Waker) {
        let c = Arc::new(CountingWaker(AtomicUsize::new(0)));
        (c.clone(), Waker::from(c))
    }

    /// The lock-free poll of a parked receiver misses nothing: every
    /// message, the last sender's end, and a new waker are still seen.
    #[test]
    fn a_parked_receiver_sees_every_change_without_the_lock() {
        let (tx, mut rx) = queue::<u8>(None);
        let (count, waker) = counting();
        let mut cx = Context::from_waker(&waker);
        assert_eq!(rx.poll_recv(&mut cx), Poll::Pending);
        // Woken by a packet: the fast path, nothing to read.
        assert_eq!(rx.poll_recv(&mut cx), Poll::Pending);
        assert_eq!(count.0.load(Ordering::SeqCst), 0);

        tx.send(1).unwrap();
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
        tx.send_deferred(2).unwrap();
        assert_eq!(rx.poll_recv(&mut cx), Poll::Ready(Some(1)));
        assert_eq!(rx.poll_recv(&mut cx), Poll::Ready(Some(2)));
        assert_eq!(rx.poll_recv(&mut cx), Poll::Pending);

        // Another waker (the task moved): registered, and the one woken.
        let (count2, waker2) = counting();
        let mut cx2 = Context::from_waker(&waker2);
        assert_eq!(rx.poll_recv(&mut cx2), Poll::Pending);
        tx.send(3).unwrap();
        assert_eq!(count2.0.load(Ordering::SeqCst), 1);
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
        assert_eq!(rx.poll_recv(&mut cx2), Poll::Ready(Some(3)));
        assert_eq!(rx.poll_recv(&mut cx2), Poll::Pending);

        drop(tx);
        assert_eq!(count2.0.load(Ordering::SeqCst), 2);
        assert_eq!(rx.poll_recv(&mut cx2), Poll::Ready(None));
        assert_eq!(rx.poll_recv(&mut cx2), Poll::Ready(None));
    }

    #[test]
    fn send_fails_once_the_receiver_is_gone() {
        let (tx, rx) = queue::<&str>(None);
        assert!(!tx.is_closed());
        drop(rx);
        assert!(tx.is_closed());
        assert_eq!(tx.send("stop"), Err("stop"));
        assert_eq!(tx.send_deferred("stop"), Err("stop"));
    }

    #[test]
    fn the_sender_sees_the_end_and_whether_it_was_a_panic() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            let (tx, rx) = queue::<u8>(None);
            let ended = tokio::spawn(async move { poll_fn(|cx| tx.poll_closed(cx)).await });
            tokio::task::yield_now().await;
            assert!(!ended.is_finished());
            drop(rx);
            assert!(!ended.await.unwrap());

            let (tx, rx) = queue::<u8>(None);
            rx.mark_panicked();
            drop(rx);
            assert!(poll_fn(|cx| tx.poll_closed(cx)).await);
        });
    }

    /// A deferred message does not wake the task; the thread's batch does,
    /// one period later, together with the tasks it starts.
    #[test]
    fn deferred_sends_and_starts_wait_for_the_batch() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        rt.block_on(async {
            let deferred = Arc::new(Deferred::default());
            let batcher = tokio::spawn(deferred.clone().run());
            let polls = Arc::new(AtomicUsize::new(0));
            let (tx, mut rx) = queue::<u8>(Some(deferred.clone()));
            let seen = Arc::new(Mutex::new(Vec::new()));
            let (p, s) = (polls.clone(), seen.clone());
            deferred.spawn(Box::pin(async move {
                while let Some(v) = poll_fn(|cx| {
                    p.fetch_add(1, Ordering::SeqCst);
                    rx.poll_recv(cx)
                })
                .await
                {
                    lock(&s).push(v);
                }
            }));
            // Not started until the batch.
            tokio::time::sleep(DEFERRED_PERIOD / 2).await;
            assert_eq!(polls.load(Ordering::SeqCst), 0);
            tokio::time::sleep(DEFERRED_PERIOD).await;
            assert_eq!(polls.load(Ordering::SeqCst), 1);

            tx.send_deferred(7).unwrap();
            tokio::time::sleep(DEFERRED_PERIOD / 2).await;
            assert_eq!(
                polls.load(Ordering::SeqCst),
                1,
                "a deferred send woke the task"
            );
            tokio::time::sleep(DEFERRED_PERIOD).await;
            assert_eq!(*lock(&seen), vec![7]);

            tx.send(8).unwrap();
            tokio::task::yield_now().await;
            assert_eq!(*lock(&seen), vec![7, 8], "an urgent send waits for nothing");

            // Closing drops what was not started yet.
            let (tx2, rx2) = queue::<u8>(Some(deferred.clone()));
            deferred.spawn(Box::pin(async move {
                let _rx = rx2;
                std::future::pending::<()>().await;
            }));
            deferred.close();
            assert!(tx2.is_closed());
            batcher.abort();
        });
    }
}
