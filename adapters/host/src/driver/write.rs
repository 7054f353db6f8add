//! What the node task does to its transport: bytes written as the core yields them, what a full
//! socket did not take written and flushed under the core's write timeout, then a close or an
//! open when the core asks for one.

use std::io;
use std::task::{ready, Context, Poll, Waker};
use std::time::Duration;

use subnodesync_core::Node;

use super::Driver;
use crate::runtime::{self, Runtime};
use crate::transport::Transport;

/// How long closing the transport may take before it is simply dropped.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(1);

impl<R: Runtime> Driver<'_, R> {
    /// The transport failed: forget it and tell the core.
    pub(super) fn lost(&mut self, node: &mut Node<'_>, error: String) {
        self.transport = None;
        self.wbuf = Vec::new();
        self.unflushed = false;
        self.write_failed = None;
        self.last_error = Some(error);
        node.handle_disconnected(self.clock.now());
    }

    /// Hands `bytes` to the transport at once, without waiting: over plain TCP a heartbeat goes
    /// from the core's buffer to the socket with no copy. What the socket cannot take yet waits
    /// in `wbuf`, and everything after it too, so the bytes stay in order. Each call is a write
    /// of its own (a TLS record, a WebSocket message), so a burst of packets takes several.
    pub(super) fn transmit(&mut self, bytes: &[u8]) {
        // Bytes for a transport that is gone, or failed, are meaningless to the next one.
        let Some(transport) = self.transport.as_mut() else { return };
        if self.write_failed.is_some() {
            return;
        }
        let mut rest = bytes;
        if self.wbuf.is_empty() {
            let mut cx = Context::from_waker(Waker::noop());
            while !rest.is_empty() {
                match transport.poll_write(&mut cx, rest) {
                    Poll::Ready(Ok(n)) if n > 0 => rest = rest.get(n..).unwrap_or_default(),
                    // Written zero bytes: the slow path reports it.
                    Poll::Ready(Ok(_)) | Poll::Pending => break,
                    Poll::Ready(Err(e)) => {
                        self.write_failed = Some(e);
                        return;
                    }
                }
            }
            self.unflushed = true;
        }
        self.wbuf.extend_from_slice(rest);
    }

    /// Writes what the drain could not, flushes, then closes or opens as the core asked. Returns
    /// whether the core was told something (a failed write), so it must be drained again.
    pub(super) async fn perform_io(&mut self, node: &mut Node<'_>) -> bool {
        let mut told = false;
        if let Some(transport) = self.transport.as_mut() {
            let failed = match self.write_failed.take() {
                Some(e) => Some(e.to_string()),
                None if self.wbuf.is_empty() && !self.unflushed => None,
                None => {
                    let (wbuf, write_timeout) = (&mut self.wbuf, self.write_timeout);
                    // Usually done at once (plain TCP has nothing to flush): no timer then.
                    let at_once = finish_write(transport, wbuf, &mut Context::from_waker(Waker::noop()));
                    let written = match at_once {
                        Poll::Ready(done) => Some(done),
                        // A full socket: rare, so its timer's state is boxed rather than in
                        // every node's task.
                        Poll::Pending => {
                            let finish = std::future::poll_fn(|cx| finish_write(transport, wbuf, cx));
                            Box::pin(runtime::timeout::<R, _>(write_timeout, finish)).await
                        }
                    };
                    match written {
                        Some(Ok(())) => None,
                        Some(Err(e)) => Some(e.to_string()),
                        None => Some(format!("write blocked for {write_timeout:?}")),
                    }
                }
            };
            self.unflushed = false;
            if let Some(e) = failed {
                self.lost(node, e);
                told = true;
            }
        }
        // Capacity only a full socket needed goes back.
        self.wbuf = Vec::new();
        if std::mem::take(&mut self.close) {
            self.connecting = None;
            if let Some(mut transport) = self.transport.take() {
                // Boxed for the same reason.
                let _ = Box::pin(runtime::timeout::<R, _>(SHUTDOWN_TIMEOUT, transport.shutdown())).await;
            }
        }
        if std::mem::take(&mut self.open) {
            tracing::debug!(broker = %self.endpoint.url, "opening transport");
            self.transport = None;
            self.connecting = Some(Box::pin(Transport::connect::<R>(self.endpoint.clone())));
        }
        told
    }
}

/// Writes all of `wbuf` and flushes the transport.
fn finish_write(transport: &mut Transport, wbuf: &mut Vec<u8>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
    while !wbuf.is_empty() {
        match ready!(transport.poll_write(cx, wbuf))? {
            0 => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
            n => drop(wbuf.drain(..n.min(wbuf.len()))),
        }
    }
    transport.poll_flush(cx)
}
