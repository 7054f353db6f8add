//! The byte stream to the broker: plain TCP or TLS over TCP, on any runtime. The driver never
//! learns which one it holds.

use std::io;

use futures_rustls::client::TlsStream;
use futures_rustls::TlsConnector;
use futures_util::{AsyncReadExt, AsyncWriteExt};

use crate::config::BrokerUrl;
use crate::runtime::Runtime;
use crate::tls::Tls;

/// An open connection to the broker.
pub(crate) enum Transport<R: Runtime> {
    /// `mqtt://`: plain TCP.
    Tcp(R::Tcp),
    /// `mqtts://`: TLS over TCP (boxed: the TLS state is large, the TCP variant small).
    Tls(Box<TlsStream<R::Tcp>>),
}

impl<R: Runtime> std::fmt::Debug for Transport<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Tcp(_) => "Transport::Tcp",
            Self::Tls(_) => "Transport::Tls",
        })
    }
}

impl<R: Runtime> Transport<R> {
    /// Opens a transport to `url`, with TLS if `tls` is given (the builder gives it exactly
    /// for `mqtts://`). The core bounds how long this may take (its connect timeout, which so
    /// covers the TLS handshake): the driver drops this future when the core gives up.
    pub(crate) async fn connect(url: BrokerUrl, tls: Option<Tls>) -> io::Result<Self> {
        let stream = R::connect(&url.host, url.port).await?;
        match tls {
            None => Ok(Self::Tcp(stream)),
            Some(Tls { config, server_name }) => {
                // The handshake checks the certificate chain and that it is valid for the host.
                let stream = TlsConnector::from(config).connect(server_name, stream).await?;
                Ok(Self::Tls(Box::new(stream)))
            }
        }
    }

    /// Reads what is there (at least one byte, or 0 at end of stream).
    pub(crate) async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Self::Tcp(s) => s.read(buf).await,
            Self::Tls(s) => s.read(buf).await,
        }
    }

    /// Writes all of `buf` (and flushes it through TLS).
    pub(crate) async fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match self {
            Self::Tcp(s) => s.write_all(buf).await,
            Self::Tls(s) => {
                s.write_all(buf).await?;
                s.flush().await
            }
        }
    }

    /// Closes the write side (TLS: close_notify first).
    pub(crate) async fn shutdown(&mut self) -> io::Result<()> {
        match self {
            Self::Tcp(s) => s.close().await,
            Self::Tls(s) => s.close().await,
        }
    }
}
