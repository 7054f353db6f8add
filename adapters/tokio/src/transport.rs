//! The byte stream to the broker: plain TCP or TLS over TCP. The driver never learns which one
//! it holds.

use std::io;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use crate::config::BrokerUrl;
use crate::tls::Tls;

/// An open connection to the broker.
#[derive(Debug)]
pub(crate) enum Transport {
    /// `mqtt://`: plain TCP.
    Tcp(TcpStream),
    /// `mqtts://`: TLS over TCP (boxed: the TLS state is large, the TCP variant small).
    Tls(Box<TlsStream<TcpStream>>),
}

impl Transport {
    /// Opens a transport to `url`, with TLS if `tls` is given (the builder gives it exactly
    /// for `mqtts://`). The core bounds how long this may take (its connect timeout, which so
    /// covers the TLS handshake): the driver drops this future when the core gives up.
    pub(crate) async fn connect(url: BrokerUrl, tls: Option<Tls>) -> io::Result<Self> {
        let stream = TcpStream::connect((url.host.as_str(), url.port)).await?;
        // MQTT packets are small and latency-bound: do not let Nagle hold PUBACKs back.
        stream.set_nodelay(true)?;
        match tls {
            None => Ok(Self::Tcp(stream)),
            Some(Tls { config, server_name }) => {
                // The handshake checks the certificate chain and that it is valid for the host.
                let stream = TlsConnector::from(config).connect(server_name, stream).await?;
                Ok(Self::Tls(Box::new(stream)))
            }
        }
    }

    /// Reads what is available; `Ok(0)` is end of stream. Cancel-safe (TLS keeps decrypted
    /// bytes inside the stream, not in the future).
    pub(crate) async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Self::Tcp(s) => s.read(buf).await,
            Self::Tls(s) => s.read(buf).await,
        }
    }

    /// Writes all of `bytes`.
    pub(crate) async fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self {
            Self::Tcp(s) => s.write_all(bytes).await,
            Self::Tls(s) => {
                s.write_all(bytes).await?;
                // TLS buffers records; flushing puts them on the wire now.
                s.flush().await
            }
        }
    }

    /// Shuts the write half down (after a TLS close_notify), so the broker sees an orderly
    /// close after our DISCONNECT.
    pub(crate) async fn shutdown(&mut self) -> io::Result<()> {
        match self {
            Self::Tcp(s) => s.shutdown().await,
            Self::Tls(s) => s.shutdown().await,
        }
    }
}
