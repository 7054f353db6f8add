//! The byte stream to the broker, built in up to three layers: a connection (TCP to the broker
//! URL's host, TCP through an HTTP proxy's `CONNECT`, or whatever the application's
//! [`Connector`] opens), then TLS for `mqtts://` and `wss://`, then WebSocket for `ws://` and
//! `wss://`. The driver never learns which it holds: it reads and writes MQTT bytes.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use async_tungstenite::tungstenite::client::IntoClientRequest as _;
use async_tungstenite::tungstenite::http::HeaderValue;
use async_tungstenite::tungstenite::{Bytes, Error as WsError, Message};
use async_tungstenite::WebSocketStream;
use futures_io::{AsyncRead as _, AsyncWrite as _};
use futures_rustls::TlsConnector;
use futures_util::{AsyncWriteExt as _, Sink, StreamExt as _};

use crate::config::{BrokerUrl, ProxyUrl};
use crate::handler::BoxFuture;
use crate::proxy;
use crate::runtime::Runtime;
use crate::tls::Tls;

/// A byte stream a node can speak MQTT over: any `futures-io` reader and writer that can move
/// between threads (a TCP or Unix socket, a TLS stream, a tunnel).
pub trait ByteStream: futures_io::AsyncRead + futures_io::AsyncWrite + Send + Unpin + 'static {}

impl<T: futures_io::AsyncRead + futures_io::AsyncWrite + Send + Unpin + 'static> ByteStream for T {}

/// A boxed [`ByteStream`], what a [`Connector`] yields.
pub type BoxStream = Box<dyn ByteStream>;

/// Opens the connection a node speaks over, in place of a TCP connection to the broker URL's
/// host and port: a tunnel, a proxy of another kind, a Unix socket. The URL's scheme still
/// decides what goes on top (TLS for `mqtts://` and `wss://`, WebSocket for `ws://` and
/// `wss://`), so a connector only moves bytes.
///
/// Called for every connection attempt; the node's connect timeout bounds it, and a failure is
/// retried with backoff like a refused TCP connection. Any
/// `Fn(&BrokerUrl) -> impl Future<Output = io::Result<impl ByteStream>>` closure is a connector.
pub trait Connector: Send + Sync + 'static {
    /// Opens a fresh byte stream for a connection to `url`'s broker.
    fn connect(&self, url: &BrokerUrl) -> BoxFuture<io::Result<BoxStream>>;
}

impl<F, Fut, S> Connector for F
where
    F: Fn(&BrokerUrl) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = io::Result<S>> + Send + 'static,
    S: ByteStream,
{
    fn connect(&self, url: &BrokerUrl) -> BoxFuture<io::Result<BoxStream>> {
        let opening = self(url);
        Box::pin(async move { Ok(Box::new(opening.await?) as BoxStream) })
    }
}

/// Where and how to connect: everything a connection attempt needs, cheap to clone.
#[derive(Clone)]
pub(crate) struct Endpoint {
    pub(crate) url: BrokerUrl,
    /// Set exactly for `mqtts://` and `wss://`.
    pub(crate) tls: Option<Tls>,
    /// The HTTP proxy to tunnel through (only ever for `ws://` and `wss://`).
    pub(crate) proxy: Option<ProxyUrl>,
    /// The application's own way to open the connection, instead of TCP (and the proxy).
    pub(crate) connector: Option<Arc<dyn Connector>>,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("url", &self.url)
            .field("tls", &self.tls.is_some())
            .field("proxy", &self.proxy)
            .field("connector", &self.connector.is_some())
            .finish()
    }
}

/// An open connection to the broker.
pub(crate) enum Transport {
    /// `mqtt://` and `mqtts://`: MQTT bytes straight over the stream.
    Stream(BoxStream),
    /// `ws://` and `wss://`: MQTT bytes in binary WebSocket messages (boxed: its state is large).
    Ws(Box<WebSocket>),
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Stream(_) => "Transport::Stream",
            Self::Ws(_) => "Transport::Ws",
        })
    }
}

impl Transport {
    /// Opens a transport to `endpoint`. The core bounds how long this may take (its connect
    /// timeout, which so covers the proxy, TLS and WebSocket handshakes): the driver drops this
    /// future when the core gives up.
    pub(crate) async fn connect<R: Runtime>(endpoint: Endpoint) -> io::Result<Self> {
        let Endpoint { url, tls, proxy, connector } = endpoint;
        let socket: BoxStream = match (connector, proxy) {
            (Some(connector), _) => connector.connect(&url).await?,
            (None, Some(proxy)) => {
                let mut tcp = R::connect(&proxy.host, proxy.port)
                    .await
                    .map_err(|e| io::Error::new(e.kind(), format!("proxy {proxy}: {e}")))?;
                proxy::tunnel(&mut tcp, &proxy, &url.host, url.port).await?;
                Box::new(tcp)
            }
            (None, None) => Box::new(R::connect(&url.host, url.port).await?),
        };
        let stream: BoxStream = match tls {
            None => socket,
            // The handshake checks the certificate chain and that it is valid for the host.
            Some(Tls { config, server_name }) => {
                Box::new(TlsConnector::from(config).connect(server_name, socket).await?)
            }
        };
        match url.path {
            Some(_) => Ok(Self::Ws(Box::new(WebSocket::open(&url, stream).await?))),
            None => Ok(Self::Stream(stream)),
        }
    }

    /// Reads what is there (at least one byte, or 0 at end of stream). Poll-based, so the node
    /// task keeps no read future between wake-ups.
    pub(crate) fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        match self {
            Self::Stream(s) => Pin::new(s).poll_read(cx, buf),
            Self::Ws(ws) => ws.poll_read(cx, buf),
        }
    }

    /// Takes what it can of `buf` (a WebSocket: all of it, as one binary message), returning how
    /// much; [`poll_flush`](Self::poll_flush) then pushes it out (through TLS).
    pub(crate) fn poll_write(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self {
            Self::Stream(s) => Pin::new(s).poll_write(cx, buf),
            Self::Ws(ws) => ws.poll_write(cx, buf),
        }
    }

    /// Pushes out what was written.
    pub(crate) fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            Self::Stream(s) => Pin::new(s).poll_flush(cx),
            Self::Ws(ws) => Pin::new(&mut ws.ws).poll_flush(cx).map_err(ws_error),
        }
    }

    /// Closes the write side (WebSocket: a Close frame first; TLS: close_notify first).
    pub(crate) async fn shutdown(&mut self) -> io::Result<()> {
        match self {
            Self::Stream(s) => s.close().await,
            Self::Ws(ws) => ws.close().await,
        }
    }
}

/// MQTT over a WebSocket (MQTT 3.1.1 §6): binary messages only, subprotocol `mqtt`. Messages
/// carry bytes, not packets: a packet may span messages and a message hold several, and the
/// core frames them either way.
pub(crate) struct WebSocket {
    ws: WebSocketStream<BoxStream>,
    /// What is left of the last binary message after a read that was too small for it.
    pending: Bytes,
}

impl WebSocket {
    /// The opening handshake: `GET <path>` with `Sec-WebSocket-Protocol: mqtt`; the broker must
    /// accept the upgrade and choose `mqtt`.
    async fn open(url: &BrokerUrl, stream: BoxStream) -> io::Result<Self> {
        let mut request = url.to_string().into_client_request().map_err(ws_error)?;
        request.headers_mut().insert("Sec-WebSocket-Protocol", HeaderValue::from_static("mqtt"));
        let (ws, _response) = async_tungstenite::client_async(request, stream).await.map_err(ws_error)?;
        Ok(Self { ws, pending: Bytes::new() })
    }

    /// Reads from the current binary message, or waits for the next. Pings are answered by the
    /// WebSocket layer on the next read or write; a Close or the end of the stream reads as 0.
    fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        loop {
            if !self.pending.is_empty() {
                let n = buf.len().min(self.pending.len());
                buf[..n].copy_from_slice(&self.pending.split_to(n));
                return Poll::Ready(Ok(n));
            }
            // A partly received message stays in the WebSocket's own buffer.
            match ready!(self.ws.poll_next_unpin(cx)) {
                Some(Ok(Message::Binary(data))) => self.pending = data,
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                Some(Ok(Message::Close(_))) | None => return Poll::Ready(Ok(0)),
                // MQTT 3.1.1 §6: "If any other type of data frame is received the recipient
                // MUST close the Network Connection".
                Some(Ok(Message::Text(_))) => {
                    let error = io::Error::new(io::ErrorKind::InvalidData, "the broker sent a WebSocket text message");
                    return Poll::Ready(Err(error));
                }
                Some(Err(e)) => return Poll::Ready(Err(ws_error(e))),
            }
        }
    }

    /// Queues `buf` as one binary message once the WebSocket has room for it.
    fn poll_write(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let mut ws = Pin::new(&mut self.ws);
        ready!(ws.as_mut().poll_ready(cx)).map_err(ws_error)?;
        ws.start_send(Message::Binary(Bytes::copy_from_slice(buf))).map_err(ws_error)?;
        Poll::Ready(Ok(buf.len()))
    }

    /// Sends a Close frame, then closes the stream beneath (TLS: close_notify).
    async fn close(&mut self) -> io::Result<()> {
        match self.ws.close(None).await {
            Ok(()) | Err(WsError::ConnectionClosed | WsError::AlreadyClosed) => {}
            Err(e) => return Err(ws_error(e)),
        }
        self.ws.get_mut().close().await
    }
}

/// A WebSocket error as the I/O error the driver reports.
fn ws_error(error: WsError) -> io::Error {
    match error {
        WsError::Io(e) => e,
        WsError::ConnectionClosed | WsError::AlreadyClosed => {
            io::Error::new(io::ErrorKind::ConnectionAborted, "WebSocket closed")
        }
        // A refused upgrade names the HTTP status, and says nothing else useful.
        WsError::Http(response) => io::Error::new(
            io::ErrorKind::ConnectionRefused,
            format!("WebSocket upgrade refused: HTTP {}", response.status()),
        ),
        other => io::Error::new(io::ErrorKind::InvalidData, format!("WebSocket: {other}")),
    }
}
