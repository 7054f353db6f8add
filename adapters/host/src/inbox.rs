//! The node task's inbox: what the handle, handlers and samplers tell it.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};
use std::task::{Context, Poll};

use futures_util::task::AtomicWaker;

use serde_json::Value;
use subnodesync_core::CommandId;
use subnodesync_sysinfo::Sample;

use crate::command::CommandResult;
use crate::metrics::{MetricValue, Sampler};

/// What the handle, handlers and the sampler tell the node task.
///
/// Kept to a few words (the rare large payloads are boxed): the queue grows in blocks of these.
pub(crate) enum Msg {
    /// Stop cleanly.
    Stop,
    /// Set a custom metric.
    SetMetric(Box<(String, MetricValue)>),
    /// Drop a custom metric.
    RemoveMetric(Box<str>),
    /// A handler's progress update.
    Progress { id: CommandId, update: Box<(String, Option<Value>)> },
    /// A handler's final result (or its failure, panic or timeout, as a result).
    Finished { id: CommandId, result: Box<CommandResult> },
    /// A metrics sample for the pending heartbeat, taken off the runtime.
    Sampled(Sample),
    /// The application's sampler, back from a blocking thread (`None`: it panicked).
    SamplerBack(Option<Box<dyn Sampler>>),
}

impl Msg {
    /// A handler's final result.
    pub(crate) fn finished(id: CommandId, result: CommandResult) -> Self {
        Self::Finished { id, result: Box::new(result) }
    }
}

/// An unbounded queue with one reader, the node task.
///
/// Unlike a channel it allocates nothing until a message arrives: messages are rare (a stop, a
/// metric update, a handler's result), and a process may run thousands of nodes. Waiting costs
/// the node task no lock and no stored future: a flag says whether anything is queued, and the
/// task's waker sits in an [`AtomicWaker`].
#[derive(Default)]
pub(crate) struct Inbox {
    queue: Mutex<VecDeque<Msg>>,
    /// Set while `queue` holds a message; the node task's every wake-up reads only this.
    queued: AtomicBool,
    waker: AtomicWaker,
}

impl std::fmt::Debug for Inbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let queued = self.queue.lock().map_or(0, |q| q.len());
        f.debug_struct("Inbox").field("queued", &queued).finish_non_exhaustive()
    }
}

impl Inbox {
    /// Queues `msg` and wakes the node task.
    pub(crate) fn send(&self, msg: Msg) {
        {
            let mut queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
            queue.push_back(msg);
            self.queued.store(true, Ordering::Release);
        }
        self.waker.wake();
    }

    /// The oldest message, if any.
    pub(crate) fn try_recv(&self) -> Option<Msg> {
        if !self.queued.load(Ordering::Acquire) {
            return None;
        }
        let mut queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
        let msg = queue.pop_front();
        if queue.is_empty() {
            self.queued.store(false, Ordering::Release);
        }
        msg
    }

    /// Drops the node task's waker, once the task has ended: a waker keeps its task's memory.
    pub(crate) fn forget_waker(&self) {
        drop(self.waker.take());
    }

    /// The oldest message, or the task woken when one arrives.
    pub(crate) fn poll_recv(&self, cx: &mut Context<'_>) -> Poll<Msg> {
        if let Some(msg) = self.try_recv() {
            return Poll::Ready(msg);
        }
        self.waker.register(cx.waker());
        // A message sent before the waker was in place would wake nobody: look again.
        self.try_recv().map_or(Poll::Pending, Poll::Ready)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_stay_small_because_every_node_preallocates_a_block_of_them() {
        assert!(std::mem::size_of::<Msg>() <= 32, "Msg is {} bytes", std::mem::size_of::<Msg>());
    }

    #[tokio::test]
    async fn messages_arrive_in_order_and_a_send_before_the_wait_is_not_lost() {
        let inbox = std::sync::Arc::new(Inbox::default());
        assert!(inbox.try_recv().is_none());
        inbox.send(Msg::Stop);
        inbox.send(Msg::RemoveMetric("a".into()));
        let recv = |inbox: std::sync::Arc<Inbox>| async move { std::future::poll_fn(|cx| inbox.poll_recv(cx)).await };
        assert!(matches!(recv(inbox.clone()).await, Msg::Stop));
        assert!(matches!(inbox.try_recv(), Some(Msg::RemoveMetric(name)) if &*name == "a"));
        let sender = inbox.clone();
        let waiter = tokio::spawn(async move { matches!(recv(inbox).await, Msg::Stop) });
        sender.send(Msg::Stop);
        assert!(waiter.await.expect("the waiter ends"));
    }
}
