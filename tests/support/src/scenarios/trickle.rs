//! A transport that is slow to take bytes: every write of the node's goes out in pieces, some of
//! them only after the node waited for room, and must still reach the broker whole and in order.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_io::{AsyncRead, AsyncWrite};
use serde_json::json;
use subnodesync_host::{BrokerUrl, NodeBuilder, Runtime};

use super::{echo_and_count, online};
use crate::{outcome, Engine};

/// Most bytes [`Trickle`] takes in one write.
const BYTES_PER_WRITE: usize = 3;

/// A byte stream that takes at most [`BYTES_PER_WRITE`] bytes a write and is not ready on every
/// other write or flush (waking its task at once, as a socket that drains would).
struct Trickle<S> {
    inner: S,
    write_ready: bool,
    flush_ready: bool,
}

/// Flips `ready`; when it was unset, wakes the task and says "not yet".
fn every_other(ready: &mut bool, cx: &mut Context<'_>) -> Poll<()> {
    *ready = !*ready;
    if *ready {
        cx.waker().wake_by_ref();
        Poll::Pending
    } else {
        Poll::Ready(())
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Trickle<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        std::task::ready!(every_other(&mut this.write_ready, cx));
        let piece = buf.get(..buf.len().min(BYTES_PER_WRITE)).unwrap_or(buf);
        Pin::new(&mut this.inner).poll_write(cx, piece)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        std::task::ready!(every_other(&mut this.flush_ready, cx));
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_close(cx)
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Trickle<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

/// Through a transport that takes three bytes at a time and often is not ready, the node
/// registers, answers a command whose result spans many writes, heartbeats and stops cleanly:
/// every packet arrives whole and in order.
pub async fn a_transport_that_takes_a_few_bytes_at_a_time_carries_every_packet_whole<R: Runtime>(
    port: u16,
    node: impl Fn(&str) -> NodeBuilder<R>,
) {
    let mut engine = Engine::connect(port, &["subnodesync/#"]).await;
    let builder = node("trickled").connector(|url: &BrokerUrl| {
        let (host, port) = (url.host.clone(), url.port);
        async move {
            let inner = R::connect(&host, port).await?;
            Ok(Trickle { inner, write_ready: false, flush_ready: false })
        }
    });
    let (handle, base) = online(echo_and_count(builder), &mut engine).await;

    let text = "0123456789".repeat(60);
    let echo = engine.ask(&base, "r-long", "echo", json!({ "text": text })).await;
    assert_eq!(outcome(&echo), (Some(true), Some("echoed")));
    assert_eq!(echo["data"]["text"], text.as_str());
    let heartbeat = engine.expect_on(&format!("{base}/heartbeat")).await;
    assert_eq!(heartbeat.json()["instance_id"], handle.instance_id());
    assert_eq!(engine.ask(&base, "r-ping", "ping", json!({})).await["message"], "pong");

    handle.stop().await;
    engine.expect_status(&base, "offline").await;
}
