//! Which of a relay's sockets the reactor has signalled readable since the
//! relay task last looked.
//!
//! A relay task owns up to 16 sockets (four streams, two legs, RTP and
//! RTCP) and tokio wakes it when any of them becomes readable, without
//! saying which. Asking each socket costs ~200 instructions when it has
//! nothing (tokio's readiness check, the waker comparison, the loop around
//! it), and a call's task used to ask all four of its sockets for every
//! packet, one of which had arrived: the bare relay asks two. Measured with
//! `scripts/bench-call-instr --media`, that was about a fifth of the
//! relay's user-space instructions per packet (issue 15).
//!
//! Instead each socket is polled with a waker of its own. When the reactor
//! wakes it, it records the socket's bit in a [`ReadySet`] shared with the
//! task and wakes the task. The task registers its own waker, then takes
//! the bits, and polls only those sockets. The order (register, then take)
//! leaves no gap: a socket signalled after the take sets its bit again and
//! finds the new waker, so the task runs once more. A socket polled with
//! its waker until it returned `Pending` is registered with the reactor;
//! one left with data (a burst cut short) is marked again by the task
//! itself ([`ReadySet::mark`]); a new socket is marked when it is added, so
//! its first poll registers it.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::task::{Wake, Waker};

use atomic_waker::AtomicWaker;

/// Bits of sockets to look at, and the task to wake for them.
#[derive(Default)]
pub(crate) struct ReadySet {
    bits: AtomicU32,
    task: AtomicWaker,
}

impl ReadySet {
    pub(crate) fn new() -> Arc<ReadySet> {
        Arc::new(ReadySet::default())
    }

    /// Registers the task's waker, then takes the bits signalled or marked
    /// since the last take.
    pub(crate) fn take(&self, task: &Waker) -> u32 {
        self.task.register(task);
        self.bits.swap(0, Ordering::AcqRel)
    }

    /// Marks `bits` to be looked at on the next take, without waking the
    /// task (the caller does, or is about to poll anyway).
    pub(crate) fn mark(&self, bits: u32) {
        self.bits.fetch_or(bits, Ordering::Release);
    }

    /// The waker to poll the socket of `bit` with.
    pub(crate) fn waker(self: &Arc<ReadySet>, bit: u32) -> Waker {
        Waker::from(Arc::new(SocketWaker {
            set: Arc::clone(self),
            bit,
        }))
    }
}

/// One socket's waker: records its bit, then wakes the task.
struct SocketWaker {
    set: Arc<ReadySet>,
    bit: u32,
}

impl Wake for SocketWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.set.mark(self.bit);
        self.set.task.wake();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

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

    #[test]
    fn a_socket_wake_sets_its_bit_and_wakes_the_task_once_registered() {
        let set = ReadySet::new();
        let (count, waker) = task();
        let a = set.waker(1);
        let b = set.waker(4);
        // Before the task registered: the bit is kept, nobody to wake.
        a.wake_by_ref();
        assert_eq!(set.take(&waker), 1);
        assert_eq!(count.0.load(Ordering::SeqCst), 0);
        // Registered: a wake sets the bit and wakes the task.
        b.wake_by_ref();
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
        // A second wake before the task ran adds its bit; the task's waker
        // was taken by the first, so no second wake-up is owed.
        a.wake();
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
        assert_eq!(set.take(&waker), 1 | 4);
        assert_eq!(set.take(&waker), 0);
    }

    #[test]
    fn marked_bits_wait_for_the_next_take_without_a_wake_up() {
        let set = ReadySet::new();
        let (count, waker) = task();
        assert_eq!(set.take(&waker), 0);
        set.mark(2 | 8);
        assert_eq!(count.0.load(Ordering::SeqCst), 0);
        assert_eq!(set.take(&waker), 2 | 8);
    }
}
