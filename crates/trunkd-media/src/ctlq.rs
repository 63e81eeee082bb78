//! The relay's control queue: the call actor's requests (peer updates,
//! keys, taps, injected packets, stats) to its relay task.
//!
//! Why not a tokio `mpsc` channel: every tokio channel allocates its shared
//! state padded to cache lines (about 0.5 KiB) plus a first block of 32
//! slots up front (32 × the message size), about 3 KiB per call for a queue
//! that carries a handful of messages over a call's life (a
//! memory breakdown is in docs/performance.md, "Issue 15: media"). This one
//! is a `Mutex<VecDeque>` with the task's waker: nothing is allocated until
//! the first message, and never more than the messages waiting. The lock is
//! uncontended (one sender, one receiver, rare messages), and the relay
//! takes it once per wake-up.
//!
//! Semantics are the unbounded channel's the relay used: sending fails once
//! the task has gone, and dropping the [`Sender`] ends the task (it sees
//! the queue closed after draining it).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

struct Shared<T> {
    items: VecDeque<T>,
    /// The sender was dropped: no more messages will come.
    sender_gone: bool,
    /// The receiver was dropped: messages would never be read.
    receiver_gone: bool,
    waker: Option<Waker>,
}

type Inner<T> = Arc<Mutex<Shared<T>>>;

fn lock<T>(inner: &Inner<T>) -> MutexGuard<'_, Shared<T>> {
    // Nothing here panics while holding the lock; if something did, the
    // queue's state is still consistent (a push or a pop either happened
    // or not).
    inner.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The call actor's end.
pub(crate) struct Sender<T> {
    inner: Inner<T>,
}

/// The relay task's end.
pub(crate) struct Receiver<T> {
    inner: Inner<T>,
}

pub(crate) fn queue<T>() -> (Sender<T>, Receiver<T>) {
    let inner = Arc::new(Mutex::new(Shared {
        items: VecDeque::new(),
        sender_gone: false,
        receiver_gone: false,
        waker: None,
    }));
    (
        Sender {
            inner: inner.clone(),
        },
        Receiver { inner },
    )
}

impl<T> Sender<T> {
    /// Queues `item` and wakes the task; gives it back if the task has gone.
    pub(crate) fn send(&self, item: T) -> Result<(), T> {
        let waker = {
            let mut s = lock(&self.inner);
            if s.receiver_gone {
                return Err(item);
            }
            s.items.push_back(item);
            s.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
        Ok(())
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        let waker = {
            let mut s = lock(&self.inner);
            s.sender_gone = true;
            s.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }
}

impl<T> std::fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ctlq::Sender").finish_non_exhaustive()
    }
}

impl<T> Receiver<T> {
    /// The next message; `Ready(None)`: the sender is gone and the queue is
    /// empty. `Pending` registers the task's waker.
    pub(crate) fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<T>> {
        let mut s = lock(&self.inner);
        if let Some(item) = s.items.pop_front() {
            if s.items.is_empty() {
                // Give the memory back: a queue is empty nearly always.
                s.items = VecDeque::new();
            }
            return Poll::Ready(Some(item));
        }
        if s.sender_gone {
            return Poll::Ready(None);
        }
        match &mut s.waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            slot => *slot = Some(cx.waker().clone()),
        }
        Poll::Pending
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        let mut s = lock(&self.inner);
        s.receiver_gone = true;
        s.waker = None;
        // Messages nobody will read (an injected packet, a stats request
        // whose asker then sees the relay stopped) go now.
        s.items = VecDeque::new();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::poll_fn;

    #[test]
    fn messages_in_order_then_closed_when_the_sender_goes() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            let (tx, mut rx) = queue::<u32>();
            tx.send(1).unwrap();
            tx.send(2).unwrap();
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
    fn send_fails_once_the_receiver_is_gone() {
        let (tx, rx) = queue::<&str>();
        drop(rx);
        assert_eq!(tx.send("stop"), Err("stop"));
    }
}
