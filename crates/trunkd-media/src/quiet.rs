//! Waking a relay task for its quiet sources without asking them on every
//! packet.
//!
//! tokio wakes a task when any future it polled is ready, without saying
//! which. A call's relay task polls its RTP sockets, its RTCP sockets and
//! its inactivity timer, and used to ask all of them on every wake-up,
//! which is about once per relayed packet: two RTCP readiness checks and a
//! timer poll that found nothing almost every time (an RTCP packet comes
//! every few seconds per leg, the timer fires once a minute), about 400 of
//! the relay's 3,000 user-space instructions per packet
//! (`scripts/bench-call-instr --media`).
//!
//! [`Quiet`] gives those quiet sources a waker of their own. Waking it sets
//! a flag, then wakes the task; the task asks the quiet sources only when
//! it took the flag (or when it marked them itself: a first poll, a new
//! stream, a burst cut short). The RTP sockets, which have a packet on
//! almost every wake-up, keep the task's own waker, so the packet path
//! touches nothing more than before. An earlier attempt gave every socket
//! a waker of its own and cost more CPU than it saved (docs/decisions.md,
//! "Per-socket wakers in the relay"); a quiet source's waker runs a few
//! times a minute.
//!
//! No wake-up is lost: a quiet source polled with the quiet waker until it
//! returned `Pending` holds that waker, and when it fires the flag is set
//! before the task is woken, so the poll that follows sees it. The flag is
//! cleared before the sources are asked, so a source that fires meanwhile
//! sets it again and costs one more poll, never a missed one.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Wake, Waker};

/// The flag and the task to wake, shared with the quiet waker.
#[derive(Default)]
struct Shared {
    fired: AtomicBool,
    task: Mutex<Option<Waker>>,
}

impl Wake for Shared {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.fired.store(true, Ordering::Release);
        // Cloned out of the lock: the task's waker runs its scheduler's
        // code, which must not run under this lock.
        let task = self
            .task
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if let Some(task) = task {
            task.wake();
        }
    }
}

/// One relay task's quiet sources: when to ask them, and the waker to ask
/// them with.
pub(crate) struct Quiet {
    shared: Arc<Shared>,
    /// The waker quiet sources are polled with.
    waker: Waker,
    /// The task waker last handed to `shared` (compared on every poll
    /// without taking the lock).
    task: Option<Waker>,
    /// Marked by the task itself: ask the quiet sources on the next poll.
    due: bool,
}

impl Quiet {
    /// Due at once: the first poll asks every quiet source, which
    /// registers the quiet waker with each.
    pub(crate) fn new() -> Self {
        let shared = Arc::new(Shared::default());
        Quiet {
            waker: Waker::from(Arc::clone(&shared)),
            shared,
            task: None,
            due: true,
        }
    }

    /// At the start of a poll of the task whose waker is `task`: keeps the
    /// waker the quiet sources wake current, and says whether to ask them
    /// in this poll (and clears that).
    pub(crate) fn take_due(&mut self, task: &Waker) -> bool {
        if !self.task.as_ref().is_some_and(|w| w.will_wake(task)) {
            *self
                .shared
                .task
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = Some(task.clone());
            self.task = Some(task.clone());
        }
        // A plain load first: the flag is clear on almost every poll, and
        // a read-modify-write would cost every packet.
        if self.shared.fired.load(Ordering::Acquire) {
            self.shared.fired.store(false, Ordering::Release);
            self.due = true;
        }
        std::mem::take(&mut self.due)
    }

    /// Ask the quiet sources on the next poll (one was added, or still has
    /// work after its share of this poll). The caller makes sure there is
    /// a next poll.
    pub(crate) fn mark(&mut self) {
        self.due = true;
    }

    /// The context to poll a quiet source with.
    pub(crate) fn context(&self) -> Context<'_> {
        Context::from_waker(&self.waker)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::Future;
    use std::pin::Pin;
    use std::sync::atomic::AtomicUsize;
    use std::task::Poll;

    /// A task waker that counts its wake-ups.
    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn task() -> (Arc<Count>, Waker) {
        let c = Arc::new(Count(AtomicUsize::new(0)));
        (Arc::clone(&c), Waker::from(c))
    }

    fn wakes(c: &Count) -> usize {
        c.0.load(Ordering::SeqCst)
    }

    /// A quiet source: `Pending` until fired, keeping the last waker.
    #[derive(Default)]
    struct Source {
        ready: bool,
        waker: Option<Waker>,
    }

    impl Source {
        fn fire(&mut self) {
            self.ready = true;
            if let Some(w) = self.waker.take() {
                w.wake();
            }
        }
    }

    impl Future for Source {
        type Output = ();
        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            if std::mem::take(&mut self.ready) {
                return Poll::Ready(());
            }
            self.waker = Some(cx.waker().clone());
            Poll::Pending
        }
    }

    #[test]
    fn the_first_poll_asks_then_only_a_fired_source_makes_it_ask_again() {
        let (count, waker) = task();
        let mut quiet = Quiet::new();
        let mut src = Source::default();
        assert!(quiet.take_due(&waker), "first poll registers the sources");
        assert!(Pin::new(&mut src).poll(&mut quiet.context()).is_pending());
        // Polls for packets: the quiet sources are not asked.
        assert!(!quiet.take_due(&waker));
        assert!(!quiet.take_due(&waker));
        assert_eq!(wakes(&count), 0);
        // The source fires: the task is woken, and its next poll asks.
        src.fire();
        assert_eq!(wakes(&count), 1);
        assert!(quiet.take_due(&waker));
        assert!(Pin::new(&mut src).poll(&mut quiet.context()).is_ready());
        assert!(Pin::new(&mut src).poll(&mut quiet.context()).is_pending());
        assert!(!quiet.take_due(&waker));
    }

    #[test]
    fn a_marked_source_is_asked_on_the_next_poll_without_a_wake_up() {
        let (count, waker) = task();
        let mut quiet = Quiet::new();
        assert!(quiet.take_due(&waker));
        quiet.mark();
        assert_eq!(wakes(&count), 0);
        assert!(quiet.take_due(&waker));
        assert!(!quiet.take_due(&waker));
    }

    #[test]
    fn a_new_task_waker_is_the_one_woken() {
        let (old_count, old) = task();
        let (new_count, new) = task();
        let mut quiet = Quiet::new();
        let mut src = Source::default();
        assert!(quiet.take_due(&old));
        assert!(Pin::new(&mut src).poll(&mut quiet.context()).is_pending());
        // The task moved (another waker polls it now).
        assert!(!quiet.take_due(&new));
        src.fire();
        assert_eq!((wakes(&old_count), wakes(&new_count)), (0, 1));
        assert!(quiet.take_due(&new));
    }

    #[test]
    fn a_source_fired_before_the_task_registered_is_asked_on_its_first_poll() {
        let (count, waker) = task();
        let mut quiet = Quiet::new();
        // Fired through the quiet waker before any task poll: nobody to
        // wake, but the flag holds it.
        quiet.context().waker().wake_by_ref();
        assert_eq!(wakes(&count), 0);
        assert!(quiet.take_due(&waker));
        assert!(!quiet.take_due(&waker));
    }
}
