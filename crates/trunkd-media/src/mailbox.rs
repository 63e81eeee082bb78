//! A bounded mailbox for a task that lives as long as a call: the call
//! task's inputs (the SIP the engine routes to it, a hang-up from the admin
//! API, an application's bridge).
//!
//! Why not a tokio `mpsc` channel: tokio allocates a channel's shared state
//! padded to cache lines (~0.5 KiB) and a first block of 32 slots up front,
//! ~0.8 KiB per call for a queue that is empty nearly all the time (issue
//! 15; docs/performance.md). This is the relay's control queue ([`crate::
//! ctlq`]) without its deferred wake-ups: one small shared cell, and memory
//! only for the messages waiting.

use std::future::poll_fn;

use crate::ctlq;

/// The sending end; cloned for every sender.
#[derive(Debug)]
pub struct MailboxSender<T> {
    inner: ctlq::Sender<T>,
    cap: usize,
}

impl<T> Clone for MailboxSender<T> {
    fn clone(&self) -> Self {
        MailboxSender {
            inner: self.inner.clone(),
            cap: self.cap,
        }
    }
}

/// Why [`MailboxSender::try_send`] gave the message back.
#[derive(Debug, PartialEq, Eq)]
pub enum MailboxRefused<T> {
    /// `cap` messages wait: the receiving task is stuck.
    Full(T),
    /// The receiver is gone: the task has ended.
    Closed(T),
}

impl<T> MailboxSender<T> {
    /// Queues `item` and wakes the receiver, unless the mailbox is full or
    /// its receiver gone.
    pub fn try_send(&self, item: T) -> Result<(), MailboxRefused<T>> {
        self.inner.send_capped(item, self.cap).map_err(|item| {
            if self.inner.is_closed() {
                MailboxRefused::Closed(item)
            } else {
                MailboxRefused::Full(item)
            }
        })
    }

    /// Whether the receiver is gone.
    pub fn is_closed(&self) -> bool {
        self.inner.is_closed()
    }
}

/// The receiving end, owned by the task.
#[derive(Debug)]
pub struct MailboxReceiver<T>(ctlq::Receiver<T>);

impl<T> MailboxReceiver<T> {
    /// The next message; `None` once every sender is gone and nothing waits.
    pub async fn recv(&mut self) -> Option<T> {
        poll_fn(|cx| self.0.poll_recv(cx)).await
    }
}

/// A mailbox holding at most `cap` messages.
pub fn mailbox<T>(cap: usize) -> (MailboxSender<T>, MailboxReceiver<T>) {
    let (tx, rx) = ctlq::queue(None);
    (
        MailboxSender {
            inner: tx,
            cap: cap.max(1),
        },
        MailboxReceiver(rx),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_and_closed_are_told_apart_and_the_message_given_back() {
        let (tx, rx) = mailbox::<u8>(2);
        tx.try_send(1).unwrap();
        tx.clone().try_send(2).unwrap();
        assert_eq!(tx.try_send(3), Err(MailboxRefused::Full(3)));
        drop(rx);
        assert!(tx.is_closed());
        assert_eq!(tx.try_send(4), Err(MailboxRefused::Closed(4)));
    }

    #[test]
    fn the_receiver_reads_in_order_and_ends_with_the_last_sender() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            let (tx, mut rx) = mailbox::<u8>(8);
            let tx2 = tx.clone();
            let reader = tokio::spawn(async move {
                let mut got = Vec::new();
                while let Some(v) = rx.recv().await {
                    got.push(v);
                }
                got
            });
            tokio::task::yield_now().await;
            tx.try_send(1).unwrap();
            drop(tx);
            tokio::task::yield_now().await;
            tx2.try_send(2).unwrap();
            drop(tx2);
            assert_eq!(reader.await.unwrap(), vec![1, 2]);
        });
    }
}
