//! The byte stream to the broker. One variant today (TCP); TLS joins as a second variant, so the
//! driver never learns which one it holds.

use std::io;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::config::{BrokerUrl, Scheme};

/// An open connection to the broker.
#[derive(Debug)]
pub(crate) enum Transport {
    /// `mqtt://`: plain TCP.
    Tcp(TcpStream),
}

impl Transport {
    /// Opens a transport to `url`. The core bounds how long this may take (its connect
    /// timeout): the driver drops this future when the core gives up.
    pub(crate) async fn connect(url: BrokerUrl) -> io::Result<Self> {
        match url.scheme {
            Scheme::Mqtt => {
                let stream = TcpStream::connect((url.host.as_str(), url.port)).await?;
                // MQTT packets are small and latency-bound: do not let Nagle hold PUBACKs back.
                stream.set_nodelay(true)?;
                Ok(Self::Tcp(stream))
            }
            // The builder refuses mqtts:// before a node task exists.
            Scheme::Mqtts => Err(io::Error::new(io::ErrorKind::Unsupported, "TLS is not supported yet")),
        }
    }

    /// Reads what is available; `Ok(0)` is end of stream. Cancel-safe.
    pub(crate) async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Self::Tcp(s) => s.read(buf).await,
        }
    }

    /// Writes all of `bytes`.
    pub(crate) async fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self {
            Self::Tcp(s) => s.write_all(bytes).await,
        }
    }

    /// Shuts the write half down, so the broker sees an orderly close after our DISCONNECT.
    pub(crate) async fn shutdown(&mut self) -> io::Result<()> {
        match self {
            Self::Tcp(s) => s.shutdown().await,
        }
    }
}
